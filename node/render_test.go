package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// A render stream cut while its session lives is reopened to the same container, and the stream
// goes on: the consumer counts the reconnect, and frames arrive after it.
func TestRenderReconnectsWithinTheSession(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet of 6 nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := StartDevnet(ctx, DevnetConfig{Nodes: 6, Epoch: 10 * time.Second, Committee: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WaitServing(ctx, false); err != nil {
		t.Fatal(err)
	}
	type connected struct {
		res *ConnectResult
		err error
	}
	done := make(chan connected, 1)
	go func() {
		for {
			res, err := d.Light.Connect(ctx, &pb.MatchRequest{App: "demo"}, ConnectOptions{Network: d.Network(), Stakes: d.Stakes(),
				Hold: 8 * time.Second, Render: RenderOptions{Play: true, Width: 320, Height: 180, Loopback: true}})
			// Refused (seen on a loaded machine: an indexer that has not yet indexed a container,
			// or whose one container is still held by WaitServing's match): ask again, as a
			// consumer would.
			if err == nil && res.Match != nil && !res.Match.Matched && ctx.Err() == nil {
				t.Logf("refused (%s: %s); asking again", res.Match.Reason, res.Match.Detail)
				time.Sleep(time.Second)
				continue
			}
			done <- connected{res, err}
			return
		}
	}()
	// Once the container streams, cut its render stream (as a broken connection would).
	cut := false
	for !cut {
		for _, n := range d.Nodes {
			if n.cont == nil {
				continue
			}
			for _, s := range n.cont.Sessions() {
				n.renders.mu.Lock()
				_, live := n.renders.active[string(s.ID)]
				n.renders.mu.Unlock()
				if live {
					time.Sleep(1500 * time.Millisecond) // let it stream a little (wall clock: real sockets)
					cut = n.renders.breakStream(s.ID)
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("no render stream started")
		case c := <-done:
			t.Fatalf("the session ended before its render stream was cut: %v; %s", c.err, describe(c.res))
		case <-time.After(100 * time.Millisecond):
		}
	}
	c := <-done
	res := c.res
	if c.err != nil {
		t.Logf("connect: %v", c.err)
	}
	if res == nil || res.SessionErr != nil || res.Render == nil {
		t.Fatalf("session: %+v", res)
	}
	if res.Render.Reconnects == 0 || res.RenderErr != nil {
		t.Fatalf("render: %d reconnects, err %v; want the stream reopened", res.Render.Reconnects, res.RenderErr)
	}
	if res.Render.FramesStamped == 0 {
		t.Fatal("no frames")
	}
	t.Logf("%d reconnect(s), %d stamped frames, %d ICE restarts", res.Render.Reconnects, res.Render.FramesStamped, res.Render.Restarts)
}

// describe says what a connect result holds, for a test's failure.
func describe(res *ConnectResult) string {
	if res == nil {
		return "no result"
	}
	s := fmt.Sprintf("session error %v, render error %v", res.SessionErr, res.RenderErr)
	if m := res.Match; m != nil {
		s = fmt.Sprintf("matched %v (reason %q, %s), ", m.Matched, m.Reason, m.Detail) + s
	}
	if res.Render != nil {
		s += fmt.Sprintf(", render: %d frames, %d reconnects", res.Render.FramesStamped, res.Render.Reconnects)
	}
	return s
}
