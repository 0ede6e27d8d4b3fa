package rendernetns

import (
	"context"
	"crypto/rand"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/internal/netnstest"
	"github.com/rendermesh/rendermesh/render/turn"
)

// Bounds of one session in the namespaces. No test asserts on durations: these keep a failure
// from hanging CI. The child bound exceeds the consumer's hold so that a child reports its own
// outcome before it is killed, and the parent's exceeds the child's.
const (
	childBound  = 60 * time.Second
	parentBound = 90 * time.Second
)

// requireNetns skips where namespaces cannot be built (not root, no iproute2).
func requireNetns(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("render sessions between network namespaces: not a short test")
	}
	if err := netnstest.Available(); err != nil {
		t.Skip(err)
	}
}

// A consumer in a and a container in b cannot reach each other (internal/netnstest). With TURN
// credentials for the relay in r and ICE policy "all", the real render path (VP8, DTLS-SRTP,
// congestion control) must fall back to the relay and play; with no relay it must fail, in
// bounded time, rather than hang.
func TestRenderFallsBackToRelay(t *testing.T) {
	requireNetns(t)
	n := netnstest.Setup(t)
	consumer := func(ctx context.Context, p string) *exec.Cmd { return n.CommandContext(ctx, netnstest.A, p) }
	container := func(ctx context.Context, p string) *exec.Cmd { return n.CommandContext(ctx, netnstest.B, p) }
	media := childConfig{Bound: childBound, Width: 640, Height: 360, FPS: 30, Threads: 1}

	t.Run("policy all with a relay: connects through it", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), parentBound)
		defer cancel()
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		relay := startChild(ctx, t, func(ctx context.Context, p string) *exec.Cmd { return n.CommandContext(ctx, netnstest.R, p) },
			"relay", childConfig{Bound: parentBound, Secret: secret, RelayIP: n.RelayIP.String()})
		var ready relayReady
		relay.await(ctx, "ready", &ready)

		// As in a match: the consumer gets credentials for the relay and passes them to the
		// container in its offer, so both ends allocate.
		ice := turn.ForSession(ready.URLs, secret, "render-netns", 10*time.Minute, time.Now())
		play := media
		play.ICEServers = []turn.ICEServer{ice}
		play.Hold = 5 * time.Second
		s := startSession(ctx, t, consumer, container, play, media)
		pr, sr := s.reports(ctx)

		_ = relay.stdin.Close()
		var st turn.Stats
		relay.await(ctx, "stats", &st)
		relay.wait(ctx)
		logSession(t, "relayed (netnstest, policy all)", pr, sr)
		t.Logf("relay stats: %+v", st)

		if pr.Err != "" || sr.Err != "" {
			t.Fatalf("play: %s; serve: %s", pr.Err, sr.Err)
		}
		if pr.Report == nil || sr.Report == nil {
			t.Fatalf("missing report: play %v, serve %v", pr.Report, sr.Report)
		}
		if pr.Report.FramesStamped == 0 {
			t.Fatal("no stamped frame arrived through the relay")
		}
		if !pr.Report.Relay || !sr.Report.Relay {
			t.Errorf("consumer relay %v, container relay %v: want both true, the direct path is blocked", pr.Report.Relay, sr.Report.Relay)
		}
		if st.AllocationsTotal == 0 || st.BytesToPeers == 0 || st.AuthFailures != 0 {
			t.Errorf("relay stats %+v: want allocations, relayed bytes, no auth failures", st)
		}
	})

	t.Run("no relay: play fails", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), parentBound)
		defer cancel()
		play := media
		play.Hold = 45 * time.Second // far beyond ICE's checking timeout (3 s + 8 s in render)
		s := startSession(ctx, t, consumer, container, play, media)
		pr, sr := s.reports(ctx)
		logSession(t, "no relay", pr, sr)
		took := time.Duration(pr.Ended - pr.Began)
		t.Logf("play failed after %v: %s; serve: %q, report %+v", took, pr.Err, sr.Err, sr.Report)
		if pr.Err == "" {
			t.Fatalf("play with no path and no relay returned no error after %v (%d frames)", took, len(pr.Frames))
		}
		// Both ends' ICE agents give up at about the same time: the consumer sees its own
		// failure, or the container's report that it found no path.
		if !strings.Contains(pr.Err, "connection failed") && !strings.Contains(pr.Err, "no path") {
			t.Errorf("play error %q: want the connection failure or the container's no-path refusal", pr.Err)
		}
		if len(pr.Frames) != 0 {
			t.Errorf("%d frames decoded over a blocked path", len(pr.Frames))
		}
	})
}
