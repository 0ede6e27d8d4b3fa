package rendernetns

import (
	"context"
	"testing"
	"time"
)

// TestNetworkChangeRestartsICE: the consumer's host gains an address mid-session (it joined another
// network); the consumer notices, restarts ICE on the same signalling stream, and the stream goes on.
func TestNetworkChangeRestartsICE(t *testing.T) {
	requireNetns(t)
	n := setupRouted(t)
	ctx, cancel := context.WithTimeout(context.Background(), parentBound)
	defer cancel()
	media := childConfig{Bound: childBound, Width: 320, Height: 180, FPS: 30, Threads: 1}
	play := media
	play.Hold = 6 * time.Second
	play.Watch = 300 * time.Millisecond
	s := startSession(ctx, t, n.in(nsA), n.in(nsB), play, media)
	time.Sleep(2 * time.Second) // the stream runs on the wall clock: real sockets
	changed := time.Now()
	if err := ip("-n", n.names[nsA], "addr", "add", "10.78.1.77/24", "dev", "veth-r"); err != nil {
		t.Fatal(err)
	}
	pr, sr := s.reports(ctx)
	logSession(t, "network change", pr, sr)
	requirePlayed(t, pr, sr)
	if pr.Report.Restarts == 0 || sr.Report.Restarts == 0 {
		t.Fatalf("ICE restarts: consumer %d, container %d; want the address change to restart ICE", pr.Report.Restarts, sr.Report.Restarts)
	}
	after := 0
	for _, f := range pr.Frames {
		if f.OK && time.Unix(0, f.At).After(changed.Add(time.Second)) {
			after++
		}
	}
	if after == 0 {
		t.Fatal("no frame after the address change")
	}
	t.Logf("%d frames in the second after the change onwards; restarts: consumer %d, container %d", after, pr.Report.Restarts, sr.Report.Restarts)
}
