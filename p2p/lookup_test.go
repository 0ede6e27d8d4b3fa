package p2p

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// silentDHTPeer speaks the DHT's protocol (answering with no closer peers, providers or values)
// until silence is set; then it reads requests and never answers, as a crashed peer behind a
// connection that still looks open, or one behind a cut.
type silentDHTPeer struct {
	host.Host
	silent atomic.Bool
}

func newSilentDHTPeer(t *testing.T) *silentDHTPeer {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New), libp2p.Muxer(yamux.ID, yamux.DefaultTransport))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	s := &silentDHTPeer{Host: h}
	h.SetStreamHandler(protocol.ID(DHTProtocolPrefix+"/kad/1.0.0"), func(st network.Stream) {
		defer st.Close()
		for {
			req := &dhtpb.Message{}
			if err := ReadMsg(st, req, 4<<10); err != nil {
				return
			}
			if s.silent.Load() {
				continue // asked, never answers
			}
			if err := WriteMsg(st, &dhtpb.Message{Type: req.Type, Key: req.Key}); err != nil {
				return
			}
		}
	})
	return s
}

// TestLookupStallEnds: a provider lookup that waits only on a peer that has gone silent ends after
// the lookup patience with the providers found, not after the DHT's 10 s, and the silent peer is
// suspected: out of the routing table, and skipped when another peer names it, so the next lookup
// does not wait on it at all. A new connection with it clears the suspicion.
func TestLookupStallEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	provider := startNet(t, testConfig(t, 31))
	silent := newSilentDHTPeer(t)
	cfg := testConfig(t, 32)
	cfg.Bootstrap = []peer.AddrInfo{addrInfo(provider)}
	// Far above a loopback answer even under the race detector on a busy machine, far below the
	// DHT's 10 s: the second lookup must not stall on the provider being slow.
	cfg.LookupPatience = 2 * time.Second
	cfg.Metrics = NewMetrics(nil)
	a := startNet(t, cfg)
	if err := a.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	// Both know the silent peer while it still answers: it is in a's routing table (a seed of a's
	// lookups) and in the provider's (which names it to a as a closer peer).
	ai := peer.AddrInfo{ID: silent.ID(), Addrs: silent.Addrs()}
	for _, n := range []*Net{a, provider} {
		if err := n.Host().Connect(ctx, ai); err != nil {
			t.Fatal(err)
		}
		waitFor(ctx, t, "the silent peer in the routing table", func() bool {
			return slices.Contains(n.dht.RoutingTable().ListPeers(), silent.ID())
		})
	}
	if err := provider.Provide(ctx, "gpu:H100"); err != nil {
		t.Fatal(err)
	}
	silent.silent.Store(true)

	find := func() []peer.ID {
		var ids []peer.ID
		if err := a.StreamProviders(ctx, "gpu:H100", 0, func(pi peer.AddrInfo) { ids = append(ids, pi.ID) }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := find(); !slices.Contains(got, provider.ID()) {
		t.Fatalf("found %v, want the provider %s", got, provider.ID())
	}
	if n := testutil.ToFloat64(cfg.Metrics.LookupStalls); n != 1 {
		t.Fatalf("%v stalled lookups, want 1: the lookup waited on the silent peer until the DHT's timeout", n)
	}
	if !a.Suspected(silent.ID()) {
		t.Fatal("the silent peer is not suspected")
	}
	if slices.Contains(a.dht.RoutingTable().ListPeers(), silent.ID()) {
		t.Fatal("the silent peer is still in the routing table")
	}
	if !slices.Contains(provider.dht.RoutingTable().ListPeers(), silent.ID()) {
		t.Fatal("the provider dropped the silent peer: the next lookup would not hear of it")
	}

	if got := find(); !slices.Contains(got, provider.ID()) {
		t.Fatalf("second lookup found %v, want the provider %s", got, provider.ID())
	}
	if n := testutil.ToFloat64(cfg.Metrics.LookupStalls); n != 1 {
		t.Fatalf("%v stalled lookups after the second, want still 1: it asked the suspect the provider named", n)
	}
	if _, err := a.ContainerRecord(ctx, provider.ID(), 0); err == nil {
		t.Fatal("a record nobody stored was found")
	}
	if n := testutil.ToFloat64(cfg.Metrics.LookupStalls); n != 1 {
		t.Fatalf("%v stalled lookups after a record lookup, want still 1", n)
	}

	if err := a.Host().Network().ClosePeer(silent.ID()); err != nil {
		t.Fatal(err)
	}
	if err := a.Host().Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	if a.Suspected(silent.ID()) {
		t.Fatal("still suspected after a new connection")
	}
}

// TestLookupPatienceForwardsEvents: whoever registered for a read's query events (the simnet counts
// hops with them) still gets them through the patience's own registration.
func TestLookupPatienceForwardsEvents(t *testing.T) {
	nets := newEnsemble(t, ensembleSpec{full: 3})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ectx, events := routing.RegisterForQueryEvents(ctx)
	counted := make(chan int)
	go func() {
		responses := 0
		for ev := range events {
			if ev.Type == routing.PeerResponse {
				responses++
			}
		}
		counted <- responses
	}()
	if _, err := nets[2].FindProviders(ectx, "gpu:H100", 0); err != nil {
		t.Fatal(err)
	}
	cancel()
	responses := <-counted
	if responses == 0 {
		t.Fatal("no peer-response events reached the caller's registration")
	}
}

// TestSuspectsExpireAndSweep: a suspicion lasts until its time or a new connection, and a node that
// has suspected many peers that never come back (crashed, never asked about again) forgets the
// expired ones instead of keeping them all.
func TestSuspectsExpireAndSweep(t *testing.T) {
	var s suspects
	t0 := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	_, a := testKey(t, 41)
	_, b := testKey(t, 42)
	if s.has(a, t0) {
		t.Fatal("an empty set suspects a peer")
	}
	s.add(a, t0.Add(time.Minute), t0)
	s.add(b, t0.Add(time.Minute), t0)
	if !s.has(a, t0.Add(59*time.Second)) {
		t.Fatal("not suspected before its time")
	}
	s.clear(b)
	if s.has(b, t0) {
		t.Fatal("still suspected after clear")
	}
	if s.has(a, t0.Add(time.Minute)) || s.n.Load() != 0 {
		t.Fatalf("suspected at its time (%d left)", s.n.Load())
	}

	for i := range 10 * suspectsSweep {
		now := t0.Add(time.Duration(i) * time.Second)
		s.add(peer.ID(fmt.Sprint("crashed-", i)), now.Add(time.Minute), now)
	}
	if n := int(s.n.Load()); n > 2*suspectsSweep {
		t.Fatalf("%d suspects kept, want at most %d: expired ones are not forgotten", n, 2*suspectsSweep)
	}
	last := peer.ID(fmt.Sprint("crashed-", 10*suspectsSweep-1))
	if !s.has(last, t0.Add(time.Duration(10*suspectsSweep-1)*time.Second)) {
		t.Fatal("the newest suspicion was swept")
	}
}
