package node

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/consumer"
	"github.com/rendermesh/rendermesh/roles/container"
)

// ensemble builds a network of real nodes on loopback for integration tests, all on one mock clock:
// the protocol's timers (heartbeats, republishing) and its validity checks (record expiry) move only
// when the test advances the clock, while libp2p runs in real time.
type ensemble struct {
	t          *testing.T
	clock      *clock.Mock
	dir        string
	ttl        time.Duration
	containers int
	plain      int
	metrics    *p2p.Metrics

	boot  []string
	nodes []*Node // nodes[0] is the bootstrap node
	cfgs  []Config
	light *LightClient
	// sources counts where the light client's found records came from.
	sources map[string]int
}

func newEnsemble(t *testing.T) *ensemble {
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	return &ensemble{t: t, clock: clk, dir: t.TempDir(), ttl: time.Minute, metrics: p2p.NewMetrics(nil)}
}

func (e *ensemble) Containers(n int) *ensemble { e.containers = n; return e }
func (e *ensemble) Plain(n int) *ensemble      { e.plain = n; return e }

func (e *ensemble) config(i int) Config {
	cfg := Default()
	cfg.DataDir = filepath.Join(e.dir, fmt.Sprintf("node-%02d", i))
	cfg.Admin.Listen = ""
	cfg.Log.Level = "error"
	cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.P2P.Bootstrap = e.boot
	cfg.P2P.BootstrapTimeout = Duration(2 * time.Minute) // generous: the race detector slows joins down
	cfg.P2P.ConnLow, cfg.P2P.ConnHigh = 32, 96
	cfg.P2P.ResourceMemory, cfg.P2P.ResourceFDs = 128, 256
	cfg.Container.RecordTTL = Duration(e.ttl)
	cfg.Container.HeartbeatInterval = Duration(5 * time.Second)
	if i >= 1 && i <= e.containers {
		k := i - 1
		loc := devLocations[k%len(devLocations)]
		cfg.Roles = []string{RoleContainer}
		cfg.Container.Region, cfg.Container.Geohash = loc.region, loc.geohash
		cfg.Container.Apps = devApps[k%len(devApps)]
		cfg.Container.DevAutoCheck = true
	}
	return cfg
}

func (e *ensemble) open(i int, cfg Config) *Node {
	e.t.Helper()
	opts := Options{Clock: e.clock, Metrics: e.metrics, SmallDatastore: true, LoopbackNet: true}
	if cfg.HasRole(RoleContainer) {
		profiles := container.Profiles()
		opts.Probe = container.NewSimulatedProbe(profiles[(i-1)%len(profiles)], int64(i))
	}
	n, err := New(cfg, opts)
	if err != nil {
		e.t.Fatalf("node %d: %v", i, err)
	}
	if err := n.Start(e.t.Context()); err != nil {
		n.Close()
		e.t.Fatalf("node %d: start: %v", i, err)
	}
	return n
}

// Start starts the bootstrap node, then the containers and plain nodes, then a light client.
func (e *ensemble) Start() *ensemble {
	total := 1 + e.containers + e.plain
	e.nodes, e.cfgs = make([]*Node, total), make([]Config, total)
	for i := range total {
		e.cfgs[i] = e.config(i)
		e.nodes[i] = e.open(i, e.cfgs[i])
		if i == 0 {
			for _, a := range e.nodes[0].Net().Addrs() {
				e.boot = append(e.boot, a.String())
			}
		}
	}
	e.t.Cleanup(func() {
		for _, n := range e.nodes {
			if n != nil {
				n.Close()
			}
		}
	})
	lc, err := NewLightClient(e.t.Context(), LightOptions{Bootstrap: e.boot, Clock: e.clock, Metrics: e.metrics})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { lc.Close() })
	e.light = lc
	return e
}

func (e *ensemble) find(q consumer.Query) map[string]*pb.ContainerRecord {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	found, _, err := e.light.Find(ctx, q)
	if err != nil {
		e.t.Fatalf("find %+v: %v", q, err)
	}
	out := map[string]*pb.ContainerRecord{}
	for _, f := range found {
		out[f.PeerID] = f.Record
		if f.Source != string(p2p.FromContainer) && f.Source != string(p2p.FromDHT) {
			e.t.Fatalf("%s: record source %q", f.PeerID, f.Source)
		}
		if e.sources == nil {
			e.sources = map[string]int{}
		}
		e.sources[f.Source]++
	}
	return out
}

// republish advances the clock by d and waits until every running container has published a
// record newer than it had.
func (e *ensemble) advanceAndRepublish(d time.Duration) {
	e.t.Helper()
	before := map[int]uint64{}
	for i, n := range e.nodes {
		if n != nil && n.Container() != nil {
			before[i] = n.Container().Status().Published
		}
	}
	e.clock.Add(d)
	deadline := time.Now().Add(30 * time.Second)
	for i, seq := range before {
		for e.nodes[i].Container().Status().Published <= seq {
			if time.Now().After(deadline) {
				e.t.Fatalf("container %d did not republish after the clock moved %s", i, d)
			}
			time.Sleep(10 * time.Millisecond) // waits on real network I/O, asserts nothing about time
		}
	}
}

func TestIntegrationContainersAdvertiseExpireAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: 20 nodes")
	}
	e := newEnsemble(t).Containers(13).Plain(6).Start()

	// Every container is found by a query for its GPU model, for its region and for each app.
	for i := 1; i <= e.containers; i++ {
		n := e.nodes[i]
		id := n.Net().ID().String()
		gh, _ := e.cfgs[i].Container.Location()
		queries := []consumer.Query{{Region: gh[:3]}, {Region: gh[:2]}}
		for _, m := range container.GPUModels(n.Container().Hardware()) {
			queries = append(queries, consumer.Query{GPU: m})
		}
		for _, a := range e.cfgs[i].Container.Apps {
			queries = append(queries, consumer.Query{App: a})
		}
		for _, q := range queries {
			rec, ok := e.find(q)[id]
			if !ok {
				t.Fatalf("container %d (%s) not found by %+v", i, id, q)
			}
			if !rec.GetHardware().GetSimulated() || rec.GetState() != pb.ContainerState_CONTAINER_STATE_STANDBY {
				t.Errorf("container %d: record simulated=%v state=%v", i, rec.GetHardware().GetSimulated(), rec.GetState())
			}
		}
	}
	// Every container is up: each answers for its own record, unless it is slower than the hedge.
	t.Logf("records found, by source: %v", e.sources)
	if e.sources[string(p2p.FromContainer)] == 0 {
		t.Errorf("no record came from its container: %v", e.sources)
	}

	// Lock one container, then stop it: its record outlives it until it expires.
	const victim = 3
	vid := e.nodes[victim].Net().ID().String()
	if _, err := e.nodes[victim].Container().Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	oldSeq := e.nodes[victim].Container().RecordSeq()
	app := consumer.Query{App: "demo"}
	if _, ok := e.find(app)[vid]; !ok {
		t.Fatal("victim not found before it stopped")
	}
	e.nodes[victim].Close()
	e.nodes[victim] = nil
	if _, ok := e.find(app)[vid]; !ok {
		t.Fatal("a stopped container's record vanished before it expired")
	}

	// Half a TTL: the others republish; the victim cannot. Then past the victim's expiry.
	e.advanceAndRepublish(e.ttl / 2)
	e.advanceAndRepublish(e.ttl/2 + time.Second)
	found := e.find(app)
	if _, ok := found[vid]; ok {
		t.Fatal("a stopped container is still found after its record expired")
	}
	if len(found) != e.containers-1 {
		t.Fatalf("after expiry, found %d containers, want %d", len(found), e.containers-1)
	}

	// Restart it on the same data directory: same peer ID, same state, a newer record.
	e.nodes[victim] = e.open(victim, e.cfgs[victim])
	n := e.nodes[victim]
	if got := n.Net().ID().String(); got != vid {
		t.Fatalf("restarted container has peer ID %s, want %s", got, vid)
	}
	if s := n.Container().State(); s != pb.ContainerState_CONTAINER_STATE_LOCKED {
		t.Fatalf("restarted container is %s, want locked", container.StateName(s))
	}
	rec, ok := e.find(app)[vid]
	if !ok {
		t.Fatal("restarted container not found")
	}
	if rec.GetSeq() <= oldSeq || rec.GetState() != pb.ContainerState_CONTAINER_STATE_LOCKED {
		t.Fatalf("restarted container's record: seq %d (was %d), state %s", rec.GetSeq(), oldSeq, container.StateName(rec.GetState()))
	}
	locked := e.find(consumer.Query{App: "demo", States: []pb.ContainerState{pb.ContainerState_CONTAINER_STATE_STANDBY}})
	if _, ok := locked[vid]; ok {
		t.Fatal("a locked container matched a query for standby containers")
	}
	if !slices.Contains(e.nodes[victim].Container().CapabilityKeys(), "app:demo") {
		t.Fatal("capability keys lost across restart")
	}
}
