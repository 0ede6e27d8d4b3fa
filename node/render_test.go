package node

import (
	"context"
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
	done := make(chan *ConnectResult, 1)
	go func() {
		res, _ := d.Light.Connect(ctx, &pb.MatchRequest{App: "demo"}, ConnectOptions{Network: d.Network(), Stakes: d.Stakes(),
			Hold: 8 * time.Second, Render: RenderOptions{Play: true, Width: 320, Height: 180, Loopback: true}})
		done <- res
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
		case <-time.After(100 * time.Millisecond):
		}
	}
	res := <-done
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
