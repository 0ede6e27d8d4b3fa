package p2p

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestKeepWarm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ix := startNet(t, testConfig(t, 1))
	a := startNet(t, testConfig(t, 2))
	b := startNet(t, testConfig(t, 3))
	gone := startNet(t, testConfig(t, 4))
	for _, n := range []*Net{a, b, gone} {
		ix.Host().Peerstore().AddAddrs(n.ID(), n.Host().Addrs(), time.Hour)
	}
	goneID := gone.ID()
	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}
	cm := ix.Host().ConnManager()
	connected := func(p peer.ID) bool { return ix.Host().Network().Connectedness(p) == network.Connected }

	// Every peer of the set is protected; those not connected are dialled; one that cannot be
	// reached stays in the set, protected, and is dialled again at the next call.
	ix.KeepWarm([]peer.ID{a.ID(), b.ID(), goneID, ix.ID()})
	waitFor(ctx, t, "warm connections to a and b", func() bool { return connected(a.ID()) && connected(b.ID()) })
	for _, p := range []peer.ID{a.ID(), b.ID(), goneID} {
		if !cm.IsProtected(p, warmTag) {
			t.Fatalf("%s not protected", p)
		}
	}
	waitFor(ctx, t, "the failed dial to end", func() bool {
		ix.warm.mu.Lock()
		defer ix.warm.mu.Unlock()
		return !ix.warm.dialing[goneID]
	})
	if held, conn := ix.Warm(); held != 3 || conn != 2 {
		t.Fatalf("warm: %d held, %d connected; want 3, 2", held, conn)
	}

	// A peer that leaves the set loses its protection; its connection stays until trimmed.
	ix.KeepWarm([]peer.ID{b.ID()})
	if cm.IsProtected(a.ID(), warmTag) || cm.IsProtected(goneID, warmTag) || !cm.IsProtected(b.ID(), warmTag) {
		t.Fatal("protection does not follow the set")
	}
	if !connected(a.ID()) {
		t.Fatal("leaving the set closed the connection")
	}
	ix.KeepWarm(nil)
	if cm.IsProtected(b.ID(), warmTag) {
		t.Fatal("empty set left b protected")
	}
	if held, _ := ix.Warm(); held != 0 {
		t.Fatalf("%d held after an empty set", held)
	}
}

func TestHold(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := startNet(t, testConfig(t, 1))
	b := startNet(t, testConfig(t, 2))
	a.Host().Peerstore().AddAddrs(b.ID(), b.Host().Addrs(), time.Hour)
	b.HandleStream("/rendermesh/test-hold/1.0.0", func(ctx context.Context, s network.Stream) error {
		<-ctx.Done()
		return nil
	})
	s1, err := a.NewStream(ctx, b.ID(), "/rendermesh/test-hold/1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := a.NewStream(ctx, b.ID(), "/rendermesh/test-hold/1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	cm := a.Host().ConnManager()
	r1, r2 := a.Hold(s1), a.Hold(s2)
	if !cm.IsProtected(b.ID(), "") {
		t.Fatal("held stream's peer not protected")
	}
	r1()
	if !cm.IsProtected(b.ID(), "") {
		t.Fatal("one stream's release dropped the other's protection")
	}
	r2()
	if cm.IsProtected(b.ID(), "") {
		t.Fatal("protected after every release")
	}
	_ = s1.Reset()
	_ = s2.Reset()
}
