package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/node"
)

// browserRun is what render/web/e2e/run.mjs prints.
type browserRun struct {
	OK                bool     `json:"ok"`
	Error             string   `json:"error"`
	ConsoleErrors     []string `json:"consoleErrors"`
	FramesStamped     int      `json:"framesStamped"`
	Width             int      `json:"width"`
	Height            int      `json:"height"`
	FPS               float64  `json:"fps"`
	FrameLatencyMsP50 *float64 `json:"frameLatencyMsP50"`
	FrameLatencyMsP99 *float64 `json:"frameLatencyMsP99"`
	InputRttMsP50     *float64 `json:"inputRttMsP50"`
	FirstFrameMs      *float64 `json:"firstFrameMs"`
	Relay             *bool    `json:"relay"`
	StatsShared       *int     `json:"statsShared"`
	StatsError        *string  `json:"statsError"`
}

// runBrowser drives the web client in Debian's Chromium through playwright-core.
func runBrowser(t *testing.T, base string, args ...string) (browserRun, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"run.mjs", base}, args...)...)
	cmd.Dir = filepath.Join("..", "..", "render", "web", "e2e")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, _ := cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var r browserRun
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("run.mjs printed no JSON (%v): %s\nstderr: %s", err, out, stderr.String())
	}
	return r, stderr.String()
}

// TestWebClient plays the devnet's stream in headless Chromium through the page node 0 serves: the
// page's signalling goes through node 0 (WHEP-style), which gets matched and opens the session;
// the media flows from the container to the browser, directly, then forced through the relay.
func TestWebClient(t *testing.T) {
	if testing.Short() || os.Getenv("RENDERMESH_E2E") != "1" {
		t.Skip("set RENDERMESH_E2E=1 (make test does) to drive the web client in Chromium")
	}
	if _, err := os.Stat(filepath.Join("..", "..", "render", "web", "e2e", "node_modules", "playwright-core")); err != nil {
		t.Fatal("render/web/e2e/node_modules is missing: run make deps")
	}
	clearEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// One checker: containers serve once it passed them, and the direct session shares its
	// statistics with it (checks during sessions).
	d, err := node.StartDevnet(ctx, node.DevnetConfig{Nodes: 6, Epoch: 10 * time.Second, Committee: 6, Relay: true, Web: "127.0.0.1:0", Checkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	base := "http://" + d.Nodes[0].AdminAddr()
	if err := d.WaitServing(ctx, true); err != nil { // a committee serves, with relay grants
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		relay bool
		share bool
	}{
		{"direct", []string{"--seconds", "4", "--share-stats"}, false, true},
		{"relay", []string{"--seconds", "3", "--relay"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, stderr := runBrowser(t, base, tc.args...)
			if !r.OK || r.FramesStamped == 0 || r.FirstFrameMs == nil || r.FrameLatencyMsP50 == nil {
				t.Fatalf("browser: %+v\nstderr: %s", r, stderr)
			}
			if r.Relay == nil || *r.Relay != tc.relay {
				t.Errorf("relay = %v, want %v", r.Relay, tc.relay)
			}
			// A shared session's last sample (the whole session: about 5 s) reaches the checker.
			switch {
			case tc.share && (r.StatsShared == nil || *r.StatsShared < 1):
				t.Errorf("the checker took no sample of a session that shares its statistics: shared %v, last error %v", derefInt(r.StatsShared), derefString(r.StatsError))
			case !tc.share && r.StatsShared != nil:
				t.Errorf("a session without consent shared %d samples", *r.StatsShared)
			}
			t.Logf("%s: %dx%d, %d stamped frames, %.1f fps, first frame %.0f ms, frame latency p50 %.1f ms, input rtt %.1f ms, samples shared %d",
				tc.name, r.Width, r.Height, r.FramesStamped, r.FPS, *r.FirstFrameMs, *r.FrameLatencyMsP50, deref(r.InputRttMsP50), derefInt(r.StatsShared))
		})
	}
}

func deref(f *float64) float64 {
	if f == nil {
		return -1
	}
	return *f
}

func derefInt(i *int) int {
	if i == nil {
		return -1
	}
	return *i
}

func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
