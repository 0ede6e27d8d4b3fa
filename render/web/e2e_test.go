package web

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/render/input"
)

// e2eResult is run.mjs's line of JSON.
type e2eResult struct {
	OK                bool     `json:"ok"`
	Error             string   `json:"error"`
	PageError         string   `json:"pageError"`
	ConsoleErrors     []string `json:"consoleErrors"`
	FramesStamped     int      `json:"framesStamped"`
	Width             int      `json:"width"`
	Height            int      `json:"height"`
	FrameLatencyMsP50 *float64 `json:"frameLatencyMsP50"`
	InputRttMsP50     *float64 `json:"inputRttMsP50"`
	FirstFrameMs      *float64 `json:"firstFrameMs"`
	Relay             *bool    `json:"relay"`
	Reconnects        int      `json:"reconnects"`
	Match             struct {
		Container string `json:"container"`
		SessionID string `json:"session_id"`
	} `json:"match"`
}

// runE2E runs e2e/run.mjs against base with args and returns its result and exit error.
func runE2E(t *testing.T, base string, args ...string) (e2eResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"run.mjs", base}, args...)...)
	cmd.Dir = "e2e"
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var r e2eResult
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &r); jerr != nil {
		t.Fatalf("run.mjs %v printed %q (stderr %q): %v", args, out, stderr.String(), jerr)
	}
	t.Logf("run.mjs %v: %s", args, lines[len(lines)-1])
	return r, err
}

// TestE2E drives the page in Chromium against the fake node: a direct session, a relay-only one
// and a refused one. It needs node, Chromium and `npm install` in render/web/e2e, so it runs only
// with RENDERMESH_E2E=1.
func TestE2E(t *testing.T) {
	if os.Getenv("RENDERMESH_E2E") != "1" {
		t.Skip("set RENDERMESH_E2E=1 to drive the page in Chromium (needs node, Chromium and npm install in render/web/e2e)")
	}
	if _, err := os.Stat(filepath.Join("e2e", "node_modules", "playwright-core")); err != nil {
		t.Skip("render/web/e2e/node_modules is missing: run npm install there")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	node := newFakeNode(t)
	defer node.Close()
	srv := httptest.NewServer(node.Handler())
	defer srv.Close()

	t.Run("direct", func(t *testing.T) {
		r, err := runE2E(t, srv.URL, "--seconds", "2")
		if err != nil || !r.OK {
			t.Fatalf("run failed (%v): %s; page: %s; console: %q", err, r.Error, r.PageError, r.ConsoleErrors)
		}
		checkPlayed(t, r)
		if r.Relay == nil || *r.Relay {
			t.Errorf("relay = %v, want false", r.Relay)
		}

		events, invalid, pongs, deleted, live := node.seen()
		if invalid != 0 {
			t.Errorf("%d input messages did not decode", invalid)
		}
		if pongs == 0 {
			t.Error("the page answered none of the node's pings")
		}
		if deleted != 1 || live != 0 {
			t.Errorf("after disconnect: %d sessions deleted, %d live; want 1, 0", deleted, live)
		}
		// run.mjs clicks, sweeps the pointer, presses four keys and turns the wheel.
		var keys []string
		var moves, downs, ups, wheels int
		for _, e := range events {
			switch e.Type {
			case input.TypeMove:
				moves++
			case input.TypeDown:
				downs++
			case input.TypeUp:
				ups++
			case input.TypeWheel:
				wheels++
			case input.TypeKey:
				if e.Down {
					keys = append(keys, e.Code)
				}
			}
		}
		if moves < 10 || downs != 1 || ups != 1 || wheels != 1 {
			t.Errorf("%d moves, %d downs, %d ups, %d wheels; want ≥10, 1, 1, 1", moves, downs, ups, wheels)
		}
		if want := []string{"KeyW", "KeyA", "Space", "ArrowLeft"}; !slices.Equal(keys, want) {
			t.Errorf("keys pressed %v, want %v", keys, want)
		}
		// The click at (0.25, 0.75) of the picture lands there: the letterboxing is accounted for.
		var st input.State
		for _, e := range events {
			if e.Type == input.TypeDown && (math.Abs(st.X-0.25) > 0.01 || math.Abs(st.Y-0.75) > 0.01) {
				t.Errorf("clicked at (%.4f, %.4f), want (0.25, 0.75)", st.X, st.Y)
			}
			st.Apply(e)
		}
		if st.Buttons != 0 || len(st.Keys()) != 0 {
			t.Errorf("left held: buttons %b, keys %v", st.Buttons, st.Keys())
		}
	})

	t.Run("relay", func(t *testing.T) {
		r, err := runE2E(t, srv.URL, "--seconds", "2", "--relay")
		if err != nil || !r.OK {
			t.Fatalf("run failed (%v): %s; page: %s; console: %q", err, r.Error, r.PageError, r.ConsoleErrors)
		}
		checkPlayed(t, r)
		if r.Relay == nil || !*r.Relay {
			t.Errorf("relay = %v, want true", r.Relay)
		}
		if r.Reconnects != 1 {
			t.Errorf("reconnects = %d; a fresh page learns the TURN server from the first answer and connects again once", r.Reconnects)
		}
	})

	t.Run("refused", func(t *testing.T) {
		r, err := runE2E(t, srv.URL, "--app", "nope", "--timeout", "10")
		if err == nil || r.OK {
			t.Fatal("a session for an unknown app succeeded")
		}
		if !strings.Contains(r.Error, `no such app ("nope" is not offered here)`) || !strings.Contains(r.PageError, "no such app") {
			t.Errorf("error %q, page error %q; want the node's error and reason", r.Error, r.PageError)
		}
	})
}

func checkPlayed(t *testing.T, r e2eResult) {
	t.Helper()
	if r.FramesStamped < 5 || r.Width != 16*fixtureMBW || r.Height != 16*fixtureMBH {
		t.Errorf("%d stamped frames of %dx%d; want ≥5 of %dx%d", r.FramesStamped, r.Width, r.Height, 16*fixtureMBW, 16*fixtureMBH)
	}
	if r.FrameLatencyMsP50 == nil || *r.FrameLatencyMsP50 <= 0 || r.FirstFrameMs == nil || r.InputRttMsP50 == nil {
		t.Errorf("frame latency p50 %v, first frame %v, input RTT p50 %v: want all measured", r.FrameLatencyMsP50, r.FirstFrameMs, r.InputRttMsP50)
	}
	if r.Match.Container == "" || r.Match.SessionID == "" {
		t.Errorf("match info %+v not shown", r.Match)
	}
}
