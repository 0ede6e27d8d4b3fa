package rendernetns

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/render/turn"
)

// The same session direct and through the relay, over the same two links: first-frame time and
// frame latency are logged for comparison (no timed assertion).
func TestDirectVsRelayed(t *testing.T) {
	requireNetns(t)
	n := setupRouted(t)
	logLoad(t)
	media := childConfig{Bound: childBound, Width: 640, Height: 360, FPS: 30, Threads: 1, Hold: 5 * time.Second}

	t.Run("direct", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), parentBound)
		defer cancel()
		pr, sr := startSession(ctx, t, n.in(nsA), n.in(nsB), media, media).reports(ctx)
		logSession(t, "direct (routed)", pr, sr)
		requirePlayed(t, pr, sr)
		if pr.Report.Relay || sr.Report.Relay {
			t.Errorf("a session with no relay configured reports relay: consumer %v, container %v", pr.Report.Relay, sr.Report.Relay)
		}
	})

	t.Run("relayed", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), parentBound)
		defer cancel()
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		relay := startChild(ctx, t, n.in(nsR), "relay", childConfig{Bound: parentBound, Secret: secret, RelayIP: n.RelayIP.String()})
		var ready relayReady
		relay.await(ctx, "ready", &ready)
		play := media
		play.RelayOnly = true
		play.ICEServers = []turn.ICEServer{turn.ForSession(ready.URLs, secret, "render-routed", 10*time.Minute, time.Now())}
		pr, sr := startSession(ctx, t, n.in(nsA), n.in(nsB), play, media).reports(ctx)
		_ = relay.stdin.Close()
		var st turn.Stats
		relay.await(ctx, "stats", &st)
		relay.wait(ctx)
		logSession(t, "relayed (routed, relay only)", pr, sr)
		t.Logf("relay stats: %+v", st)
		requirePlayed(t, pr, sr)
		if !pr.Report.Relay || !sr.Report.Relay {
			t.Errorf("relay-only session: consumer relay %v, container relay %v; want both true", pr.Report.Relay, sr.Report.Relay)
		}
	})
}

// requirePlayed fails t unless both ends ended cleanly and stamped frames arrived.
func requirePlayed(t *testing.T, pr *playReport, sr *serveReport) {
	t.Helper()
	if pr.Err != "" || sr.Err != "" {
		t.Fatalf("play: %s; serve: %s", pr.Err, sr.Err)
	}
	if pr.Report == nil || sr.Report == nil {
		t.Fatalf("missing report: play %v, serve %v", pr.Report, sr.Report)
	}
	if pr.Report.FramesStamped == 0 {
		t.Fatal("no stamped frame arrived")
	}
}

// The timeline of TestBandwidthCut, from the consumer's first frame.
const (
	steady     = 4 * time.Second // before the cut
	cutFor     = 8 * time.Second // at cutRate
	recoverFor = 20 * time.Second
	cutRate    = "800kbit"
)

// A 720p stream loses most of its bandwidth for a while, then gets it back: the stream must
// carry on, and resume once the bandwidth returns. What happens in between (frames lost, keyframe
// requests, resolution steps, the rate the sender settles at, how long latency takes to come
// back) is measured and logged, not asserted: the machine running the test is shared.
//
// The cut is a token bucket on r's link towards the consumer, the container→consumer direction:
//
//	tc qdisc replace dev veth-a root tbf rate 800kbit burst 32kbit latency 50ms
func TestBandwidthCut(t *testing.T) {
	requireNetns(t)
	n := setupRouted(t)
	logLoad(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*parentBound)
	defer cancel()
	bound := steady + cutFor + recoverFor + childBound
	media := childConfig{Bound: bound, Width: 1280, Height: 720, FPS: 30} // libvpx's default two threads
	s := startSession(ctx, t, n.in(nsA), n.in(nsB), media, media)
	first := s.play.await(ctx, "first", nil)

	pause(ctx, t, steady)
	cutAt := time.Now()
	if err := n.tc("qdisc", "replace", "dev", towardsA, "root", "tbf", "rate", cutRate, "burst", "32kbit", "latency", "50ms"); err != nil {
		t.Fatal(err)
	}
	pause(ctx, t, cutFor)
	restoreAt := time.Now()
	if err := n.tc("qdisc", "del", "dev", towardsA, "root"); err != nil {
		t.Fatal(err)
	}
	pause(ctx, t, recoverFor)
	s.play.interrupt()
	pr, sr := s.reports(ctx)
	endAt := pr.Ended

	logSession(t, "720p direct, bandwidth cut", pr, sr)
	pre := window{first.At + int64(time.Second), cutAt.UnixNano()}
	cut := window{cutAt.UnixNano(), restoreAt.UnixNano()}
	post := window{restoreAt.UnixNano(), endAt}
	rel := func(at int64) string {
		switch {
		case at < cut.from:
			return fmt.Sprintf("cut%+.1fs", time.Duration(at-cut.from).Seconds())
		case at < post.from:
			return fmt.Sprintf("cut+%.1fs", time.Duration(at-cut.from).Seconds())
		default:
			return fmt.Sprintf("restore+%.1fs", time.Duration(at-post.from).Seconds())
		}
	}
	phPre, phCut, phPost := summarise(pr.Frames, pre), summarise(pr.Frames, cut), summarise(pr.Frames, post)
	t.Logf("before the cut (%v): %v", time.Duration(pre.to-pre.from).Round(time.Millisecond), phPre)
	t.Logf("during the cut (%v at %s): %v", time.Duration(cut.to-cut.from).Round(time.Millisecond), cutRate, phCut)
	t.Logf("after the restore (%v): %v", time.Duration(post.to-post.from).Round(time.Millisecond), phPost)
	// Second by second, aligned on the cut and on the restore.
	var seconds []window
	for from := cut.from - int64(3*time.Second); from+int64(time.Second/2) < cut.to; from += int64(time.Second) {
		seconds = append(seconds, window{from, min(from+int64(time.Second), cut.to)})
	}
	for from := post.from; from+int64(time.Second) <= post.to; from += int64(time.Second) {
		seconds = append(seconds, window{from, from + int64(time.Second)})
	}
	for _, w := range seconds {
		ph := summarise(pr.Frames, w)
		t.Logf("  %-14s %2d frames, %2d missing, freeze %4dms, latency p50 %5.1fms max %5.1fms, sent %5.0f received %5.0f kbit/s, %s",
			rel(w.from), ph.decoded, ph.missing, ph.maxGap.Milliseconds(), ms(ph.p50), ms(ph.max),
			rate(sr.Traffic, w, true), rate(pr.Traffic, w, false), strings.Join(ph.sizes, "→"))
	}

	// Rates: what the container pushed (its namespace's tx, i.e. the encoder's target, which
	// follows the congestion controller's estimate) and what reached the consumer (rx).
	last2 := func(w window) window { return window{max(w.from, w.to-int64(2*time.Second)), w.to} }
	t.Logf("container sent %.0f / %.0f / %.0f kbit/s (last 2 s before the cut / of the cut / of the session); consumer received %.0f / %.0f / %.0f kbit/s",
		rate(sr.Traffic, last2(pre), true), rate(sr.Traffic, last2(cut), true), rate(sr.Traffic, last2(post), true),
		rate(pr.Traffic, last2(pre), false), rate(pr.Traffic, last2(cut), false), rate(pr.Traffic, last2(post), false))
	t.Logf("container sent %.0f kbit/s on average during the cut, into a %s link", rate(sr.Traffic, cut, true), cutRate)
	if tr := sr.Traffic; len(tr) > 1 && sr.Report != nil && sr.Report.Bytes > 0 {
		wire := tr[len(tr)-1].TxBytes - tr[0].TxBytes
		t.Logf("container put %d bytes on the wire for %d bytes of encoded video (%.2fx: headers, RTCP, ICE, retransmissions)",
			wire, sr.Report.Bytes, float64(wire)/float64(sr.Report.Bytes))
	}
	for _, l := range sr.Logs {
		if strings.Contains(l.Msg, "resolution") || strings.Contains(l.Msg, "connection") {
			t.Logf("  container %s: %s %v", rel(l.At), l.Msg, l.Attrs)
		}
	}
	for _, l := range pr.Logs {
		t.Logf("  consumer %s: %s %v", rel(l.At), l.Msg, l.Attrs)
	}

	limit := phPre.p50 + max(phPre.p50/2, 10*time.Millisecond)
	if took, ok := recovery(pr.Frames, post.from, limit, 15); ok {
		t.Logf("recovery: latency back under %v (pre-cut p50 %v) for 15 frames in a row %v after the restore",
			limit.Round(100*time.Microsecond), phPre.p50.Round(100*time.Microsecond), took.Round(time.Millisecond))
	} else {
		t.Logf("recovery: latency not back under %v for 15 frames in a row within %v of the restore", limit, time.Duration(post.to-post.from))
	}
	if took, ok := firstSize(pr.Frames, post.from, media.Width, media.Height); ok {
		t.Logf("recovery: back at %dx%d %v after the restore", media.Width, media.Height, took.Round(time.Millisecond))
	} else {
		t.Logf("recovery: not back at %dx%d within %v of the restore", media.Width, media.Height, time.Duration(post.to-post.from))
	}

	if pr.Err != "" || sr.Err != "" {
		t.Errorf("play: %s; serve: %s", pr.Err, sr.Err)
	}
	if phPost.stamped == 0 {
		t.Fatalf("no frame decoded after the bandwidth came back: %v", phPost)
	}
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// logLoad logs the machine's load average: the measurements depend on what else runs.
func logLoad(t *testing.T) {
	t.Helper()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.Logf("load average %s on %d CPUs", strings.TrimSpace(string(b)), runtime.NumCPU())
	}
}

// pause waits d, or fails t when ctx ends first.
func pause(ctx context.Context, t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		t.Fatalf("test bound reached: %v", ctx.Err())
	}
}
