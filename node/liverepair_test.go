package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// A node that joins while an epoch runs has missed, on gossip, the tickets of the next epoch (drawn
// when the running one began). It asks peers for their live views once it has caught up, so it holds
// the next committee before that epoch starts, as the nodes that followed do, rather than only once
// the next epoch's sealed record appears.
func TestJoinerRepairsLiveCommittee(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet of 5 nodes through several 10-second epochs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := StartDevnet(ctx, DevnetConfig{Nodes: 5, Epoch: 10 * time.Second, Committee: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ref := d.Nodes[0].Epochs()
	sched := ref.Schedule()
	sleepUntil := func(at time.Time) {
		t.Helper()
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Until(at)):
		}
	}
	// The joiner starts a second into an epoch (from epoch 2: its seed mixes earlier winners) whose
	// next committee has members.
	var e uint64
	for e = max(2, sched.Epoch(time.Now())+1); ; e++ {
		sleepUntil(sched.Start(e).Add(time.Second))
		if len(ref.Committee(e+1)) > 0 {
			break
		}
		if e > 8 {
			t.Fatal("no epoch from 2 to 9 drew a committee for the next")
		}
	}
	var boot []string
	for _, n := range d.Nodes {
		boot = append(boot, addrStrings(n)...)
	}
	late, err := d.newNode(len(d.Nodes), boot[:2], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	started := time.Now()
	if err := late.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-late.ep.ready:
	case <-ctx.Done():
		t.Fatal("the late node never caught up with the elections")
	}
	want := committeeIDs(ref.Committee(e + 1))
	for {
		got := committeeIDs(late.Epochs().Committee(e + 1))
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(sched.Start(e + 1)) {
			t.Fatalf("epoch %d started and the node that joined in epoch %d still held %d of its %d committee members (it added %d tickets from peers' live views)",
				e+1, e, len(got), len(want), late.ep.liveAdded.Load())
		}
		sleepUntil(time.Now().Add(50 * time.Millisecond))
	}
	t.Logf("joined %v into epoch %d; held its next committee (%d members) %v later",
		started.Sub(sched.Start(e)).Round(time.Millisecond), e, len(want), time.Since(started).Round(time.Millisecond))
	if late.ep.liveAdded.Load() == 0 {
		t.Error("the late node holds the next committee, but added no ticket from peers' live views")
	}
	// The running epoch's committee is the sealed record's, which it imported.
	if got, want := committeeIDs(late.Epochs().Committee(e)), committeeIDs(ref.Committee(e)); !slices.Equal(got, want) {
		t.Errorf("epoch %d: the late node holds a committee of %d members, the network %d", e, len(got), len(want))
	}
}

// Epoch 0's tickets are drawn at genesis and never sealed, so its committee record is empty: a light
// client holds the genesis committee only from full nodes' live views. Before it asked for them, a
// consumer found no indexer for the whole first epoch of a network.
func TestLightClientFindsTheGenesisCommittee(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet of 4 nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A long epoch, so that the test runs inside epoch 0; a committee of 8 expected seats among 4
	// candidates, so that it draws somebody (but for e^-8 of seeds).
	d, err := StartDevnet(ctx, DevnetConfig{Nodes: 4, Epoch: 5 * time.Minute, Committee: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ref := d.Nodes[0].Epochs()
	sched := ref.Schedule()
	for len(ref.Committee(0)) == 0 || time.Now().Before(sched.Start(0).Add(2*time.Second)) {
		select {
		case <-ctx.Done():
			t.Fatal("node 0 never held a genesis committee")
		case <-time.After(100 * time.Millisecond):
		}
	}
	got, err := d.Light.Indexers(ctx, d.Network(), d.Stakes())
	if err != nil {
		t.Fatal(err)
	}
	if e := sched.Epoch(time.Now()); e != 0 {
		t.Fatalf("the test ran into epoch %d", e)
	}
	if want := committeeIDs(ref.Committee(0)); !slices.Equal(committeeIDs(got), want) {
		t.Errorf("the light client found %d indexers in epoch 0, the network's committee has %d", len(got), len(want))
	}
}

// An epoch that draws nobody is served by the last committee that drew someone. When that is the
// genesis committee (epoch 1 drew nobody), a light client that starts in epoch 1 holds it from no
// sealed record (epoch 0's holds no ticket drawn at genesis, and it does not import it anyway:
// seed(1) mixes nothing) and, before it asked full nodes for their live views of the epochs before
// the running one, it found no indexer, and its consumers no match, for the whole epoch: a
// devnet run once failed so (its summary: epoch 1, 0 indexers, the light client verified none).
func TestLightClientFindsTheCarriedGenesisCommittee(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet of 4 nodes into its second epoch")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Every winner of epoch 1 and later withholds its ticket, so that epoch 0's committee serves
	// up to epoch MaxCarry (a slow run may reach epoch 2 before the light client is done); a
	// committee of 8 expected seats among 4 candidates draws somebody for epoch 0 (but for e^-8 of
	// seeds).
	d, err := StartDevnet(ctx, DevnetConfig{Nodes: 4, Epoch: 10 * time.Second, Committee: 8,
		Withhold: func(e uint64) bool { return e >= 1 }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ref := d.Nodes[0].Epochs()
	sched := ref.Schedule()
	select {
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	case <-time.After(time.Until(sched.Start(1).Add(ref.Grace() + time.Second))):
	}
	genesis := committeeIDs(ref.Committee(0))
	if len(genesis) == 0 {
		t.Fatal("epoch 0 drew nobody (a seed in e^-8)")
	}
	for i, n := range d.Nodes {
		if serving, from := n.Epochs().Serving(1); from != 0 || !slices.Equal(committeeIDs(serving), genesis) || len(n.Epochs().Committee(1)) != 0 {
			t.Fatalf("node %d: epoch 1 drew %d and is served by %d of epoch %d's committee; want epoch 0's %d", i, len(n.Epochs().Committee(1)), len(serving), from, len(genesis))
		}
	}
	var boot []string
	for _, n := range d.Nodes {
		boot = append(boot, addrStrings(n)...)
	}
	l, err := NewLightClient(ctx, LightOptions{Bootstrap: boot})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := l.Indexers(ctx, d.Network(), d.Stakes())
	if err != nil {
		t.Fatalf("light client in epoch 1: %v", err)
	}
	if e := sched.Epoch(time.Now()); e > epoch.MaxCarry {
		t.Fatalf("the test ran into epoch %d", e)
	}
	if !slices.Equal(committeeIDs(got), genesis) {
		t.Fatalf("the light client found %d indexers in epoch %d, which drew nobody; want epoch 0's %d", len(got), l.cachedAt, len(genesis))
	}
	// And its consumer is matched by them.
	res, err := l.Connect(ctx, &pb.MatchRequest{App: "demo"}, ConnectOptions{Network: d.Network(), Stakes: d.Stakes(), Hold: -1})
	if err != nil {
		t.Fatalf("match after epoch 0: %v", err)
	}
	if m := res.Match; m == nil || !m.Matched || m.Epoch == 0 || m.Epoch > epoch.MaxCarry {
		t.Fatalf("match after epoch 0: %+v; want one in epoch 1 to %d from epoch 0's committee", m, epoch.MaxCarry)
	}
}
