package node

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// expireCommitteeRecords deletes, from n's DHT store, the committee records of the epochs before
// `before`: what the DHT does a day after they were put (p2p.MaxRecordTTL).
func expireCommitteeRecords(t *testing.T, n *Node, before uint64) int {
	t.Helper()
	ctx := context.Background()
	prefix := "/dht/" + p2p.CommitteeNamespace
	res, err := n.store.Query(ctx, dsq.Query{Prefix: prefix, KeysOnly: true})
	if errors.Is(err, errDatastoreClosed) {
		return 0 // a node that was closed
	}
	if err != nil {
		t.Fatal(err)
	}
	entries, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for _, en := range entries {
		key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimPrefix(en.Key, prefix+"/"))
		if err != nil {
			t.Fatalf("DHT key %s: %v", en.Key, err)
		}
		e, err := strconv.ParseUint(strings.TrimPrefix(string(key), "/"+p2p.CommitteeNamespace+"/"), 10, 64)
		if err != nil {
			t.Fatalf("DHT key %s (%q): %v", en.Key, key, err)
		}
		if e < before {
			if err := n.store.Delete(ctx, ds.NewKey(en.Key)); err != nil {
				t.Fatal(err)
			}
			deleted++
		}
	}
	return deleted
}

func committeeIDs(c []*epoch.Ticket) []string {
	var out []string
	for _, tk := range c {
		out = append(out, tk.ID)
	}
	return out
}

// Full nodes keep the sealed set of every epoch and serve it: once the DHT's committee records of
// the first epochs have expired, a light client and a full node that join read those epochs from
// the history, derive the same seeds and hold the same committee as the network.
func TestCommitteeHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet of 6 nodes through several 3-second epochs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := StartDevnet(ctx, DevnetConfig{Nodes: 6, Epoch: 3 * time.Second, Committee: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sched := d.Nodes[0].Epochs().Schedule()
	const upTo = 7
	for time.Now().Before(sched.Start(upTo).Add(time.Second)) {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Every node keeps the epochs that are over as sealed records, as it sealed them.
	for i, n := range d.Nodes {
		for e := uint64(1); e < upTo-1; e++ {
			raw, ok := n.ep.historyRecord(e)
			rec := &pb.CommitteeRecord{}
			if !ok || proto.Unmarshal(raw, rec) != nil || !rec.Sealed || rec.Epoch != e {
				t.Fatalf("node %d keeps no sealed record of epoch %d (%v)", i, e, rec)
			}
		}
	}
	cur := sched.Epoch(time.Now())
	expired := 0
	for _, n := range d.Nodes {
		expired += expireCommitteeRecords(t, n, cur-historyLag+1)
	}
	if expired == 0 {
		t.Fatal("no committee record in the DHT to expire")
	}
	var boot []string
	for _, n := range d.Nodes {
		boot = append(boot, addrStrings(n)...)
	}

	// A light client, that keeps what it verified.
	stateDir := t.TempDir()
	l, err := NewLightClient(ctx, LightOptions{Bootstrap: boot, StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := l.Indexers(ctx, d.Network(), d.Stakes())
	if err != nil {
		t.Fatalf("light client: %v", err)
	}
	e := l.cachedAt
	want, _ := d.Nodes[0].Epochs().Serving(e)
	if !slices.Equal(committeeIDs(got), committeeIDs(want)) || len(want) == 0 {
		t.Errorf("light client, epoch %d: committee %d members, the network's %d", e, len(got), len(want))
	}
	if l.hist.asks == 0 || l.walkedFrom != 0 {
		t.Errorf("the light client read the history %d times, walking from epoch %d: want it read, from genesis", l.hist.asks, l.walkedFrom)
	}
	// Its next run starts from the checkpoint it kept, and finds the same committee.
	l2, err := NewLightClient(ctx, LightOptions{Bootstrap: boot, StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	got, err = l2.Indexers(ctx, d.Network(), d.Stakes())
	if err != nil {
		t.Fatalf("light client from its checkpoint: %v", err)
	}
	want, _ = d.Nodes[0].Epochs().Serving(l2.cachedAt)
	if !slices.Equal(committeeIDs(got), committeeIDs(want)) || l2.walkedFrom < e {
		t.Errorf("light client from its checkpoint: walked from epoch %d (the checkpoint's is %d), committee %d members, the network's %d",
			l2.walkedFrom, e, len(got), len(want))
	}

	// join starts full node i (its data directory is the devnet's node-i) and waits until it has
	// caught up with the elections; agrees checks it holds the network's committees of the last
	// epochs.
	var joined []*Node // closed before the devnet, which removes their directories
	defer func() {
		for _, n := range joined {
			n.Close()
		}
	}()
	join := func(what string, i int) *Node {
		t.Helper()
		n, err := d.newNode(i, boot[:2], nil)
		if err != nil {
			t.Fatal(err)
		}
		joined = append(joined, n)
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-n.ep.ready:
		case <-ctx.Done():
			t.Fatalf("the %s never caught up with the elections", what)
		}
		return n
	}
	agrees := func(what string, n *Node) {
		t.Helper()
		e := sched.Epoch(time.Now())
		for _, k := range []uint64{e - 2, e - 1} {
			if a, b := n.Epochs().Committee(k), d.Nodes[0].Epochs().Committee(k); !slices.Equal(committeeIDs(a), committeeIDs(b)) {
				t.Errorf("%s, epoch %d: committee %v, the network's %v", what, k, committeeIDs(a), committeeIDs(b))
			}
		}
	}

	// A light client whose first walk was in epoch 0 goes on from the checkpoint it left there (its
	// clock is a mock: the first call reads epoch 0, the second now).
	clk := clock.NewMock()
	clk.Set(sched.Start(0).Add(time.Second))
	l3, err := NewLightClient(ctx, LightOptions{Bootstrap: boot, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if _, err := l3.Indexers(ctx, d.Network(), d.Stakes()); err != nil {
		t.Fatalf("light client in epoch 0: %v", err)
	}
	clk.Set(time.Now())
	if got, err = l3.Indexers(ctx, d.Network(), d.Stakes()); err != nil {
		t.Fatalf("light client, after a walk in epoch 0: %v", err)
	}
	want, _ = d.Nodes[0].Epochs().Serving(l3.cachedAt)
	if !slices.Equal(committeeIDs(got), committeeIDs(want)) || len(want) == 0 || l3.walkedFrom != 0 {
		t.Errorf("light client after a walk in epoch 0: walked from %d, committee %d members, the network's %d", l3.walkedFrom, len(got), len(want))
	}

	// A full node that joins now.
	late := join("late node", len(d.Nodes))
	e = sched.Epoch(time.Now())
	if late.ep.hist.asks == 0 {
		t.Error("the late node did not read the history")
	}
	agrees("late node", late)
	if _, ok := late.ep.historyRecord(1); !ok {
		t.Error("the late node does not keep the history it imported")
	}

	// Restarted, it imports what it kept, not the network's history.
	kept := 0
	for k := uint64(1); k < e; k++ {
		if _, ok := late.ep.historyRecord(k); ok {
			kept++
		}
	}
	if err := late.Close(); err != nil {
		t.Fatal(err)
	}
	again := join("restarted node", len(d.Nodes))
	if again.ep.ownImports < kept || kept < 3 {
		t.Errorf("the restarted node imported %d epochs from its own history, of %d it kept", again.ep.ownImports, kept)
	}
	agrees("restarted node", again)

	// A node given a checkpoint of a node it trusts (network.checkpoint) starts there.
	data, err := d.Nodes[0].EpochCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	var cpFile struct {
		Epoch uint64 `json:"epoch"`
	}
	if err := json.Unmarshal(data, &cpFile); err != nil || cpFile.Epoch == 0 {
		t.Fatalf("checkpoint %s: %v", data, err)
	}
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	d.network.Checkpoint = path
	fromCP := join("node started from a checkpoint", len(d.Nodes)+1)
	d.network.Checkpoint = ""
	if fromCP.ep.from != cpFile.Epoch {
		t.Errorf("the node followed the elections from epoch %d, want the checkpoint's %d", fromCP.ep.from, cpFile.Epoch)
	}
	agrees("node started from a checkpoint", fromCP)

	// After the whole network was down through epochs 1 and 2 (no node holds their committees, in
	// its history or in the DHT), a node that joins asks for them for historyGiveUp, then seals
	// them empty, as every node in its place does, instead of waiting for ever.
	defer func(g time.Duration) { historyGiveUp = g }(historyGiveUp)
	historyGiveUp = 2 * time.Second
	for _, n := range append(slices.Clone(d.Nodes), joined...) {
		if n.ep == nil || n.store == nil {
			continue
		}
		expireCommitteeRecords(t, n, 3)
		for k := uint64(1); k <= 2; k++ {
			_ = n.store.Delete(context.Background(), historyKey(k))
		}
	}
	began := time.Now()
	after := join("node after an outage", len(d.Nodes)+2)
	if waited := time.Since(began); waited < 2*historyGiveUp {
		t.Errorf("the node caught up in %v without asking for the missing epochs for %v each", waited, historyGiveUp)
	}
	if _, ok := after.ep.historyRecord(1); !ok {
		t.Error("the node keeps no record of the epoch it sealed empty")
	}
}
