//go:debug randseednop=0

package simnet

import (
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// The simulations below run real nodes: each costs tens of seconds of CPU. Under the race detector
// (make test) only the smallest runs, to check the harness itself for races; the rest run without
// it (make test runs them in a second pass, see the Makefile).

func smallScenario(t *testing.T, name string) Scenario {
	t.Helper()
	sc, err := LoadScenario(name)
	if err != nil {
		t.Fatal(err)
	}
	sc.Warmup = Duration(30 * time.Second)
	sc.Settle = Duration(20 * time.Second)
	sc.Duration = Duration(2 * time.Minute)
	return sc
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func simulate(t *testing.T, sc Scenario, peers int, seed int64) Summary {
	t.Helper()
	s, _ := simulateReport(t, sc, peers, seed)
	return s
}

func simulateReport(t *testing.T, sc Scenario, peers int, seed int64) (Summary, *Report) {
	t.Helper()
	res, err := RunT(t, Config{Scenario: sc, Peers: peers, Seed: seed, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res.Summary, "", "  ")
	t.Logf("%s", b)
	if res.Summary.StartFailures != 0 {
		t.Errorf("%d peers failed to start", res.Summary.StartFailures)
	}
	return res.Summary, res.Report
}

func needSim(t *testing.T, underRace bool) {
	t.Helper()
	if testing.Short() {
		t.Skip("simulation (skipped with -short)")
	}
	if raceEnabled && !underRace {
		t.Skip("simulation: too slow under the race detector; make test runs it without")
	}
}

func wantAllDelivered(t *testing.T, s Summary) {
	t.Helper()
	if s.Queries == 0 || s.QuerySuccessRatio != 1 {
		t.Errorf("queries %d, success %v: want all to succeed", s.Queries, s.QuerySuccessRatio)
	}
	if s.GossipExpected == 0 || s.GossipDeliveryRatio != 1 {
		t.Errorf("gossip delivered %d of %d: want all", s.GossipDelivered, s.GossipExpected)
	}
}

// TestSteadyTiny runs under the race detector too.
func TestSteadyTiny(t *testing.T) {
	needSim(t, true)
	sc := smallScenario(t, "steady")
	sc.Warmup, sc.Settle, sc.Duration = Duration(10*time.Second), Duration(20*time.Second), Duration(time.Minute)
	s := simulate(t, sc, envInt("SIMNET_PEERS", 8), 1)
	wantAllDelivered(t, s)
	if s.Propagations == 0 {
		t.Error("no record propagation measured")
	}
	// The memory breakdown: what the last collection kept is part of the heap in use.
	if s.LiveHeapBytesPerPeer == 0 || s.LiveHeapBytesPerPeer > s.HeapBytesPerPeer || s.StackBytesPerPeer == 0 {
		t.Errorf("per peer: heap in use %d, live %d, stacks %d bytes", s.HeapBytesPerPeer, s.LiveHeapBytesPerPeer, s.StackBytesPerPeer)
	}
}

func TestSteadySmall(t *testing.T) {
	needSim(t, false)
	s := simulate(t, smallScenario(t, "steady"), envInt("SIMNET_PEERS", 20), 1)
	wantAllDelivered(t, s)
}

// TestSameSeedSameSummary: the promise researchers rely on. Everything the scenario decides and
// everything counted must be equal. With one P and gossipsub's source seeded (Config.Procs), most
// latencies come out identical, but kad-dht and quic-go still draw from unseeded sources and the
// runtime's map and select order is random (docs/SIMNET.md), so now and then a query takes one more
// round trip. Percentiles of a few dozen samples are a poor measure of that: in this run the
// queries' latencies have a gap around the median (about 384 and 469 ms), and two queries crossing
// it moved query_ms_p50 by 22% (a CI failure). The test compares the samples instead: at least half
// of one run's query latencies, and half of its heartbeat latencies, must reappear (within 1%) in
// the other run. Measured: 80% or more for the same seed (the worst of 45 pairs), 19% or less for
// different seeds (7, 8, 9). Percentiles that differ are logged.
func TestSameSeedSameSummary(t *testing.T) {
	needSim(t, false)
	sc := smallScenario(t, "steady")
	sc.Duration = Duration(time.Minute)
	a, ra := simulateReport(t, sc, 12, 7)
	b, rb := simulateReport(t, sc, 12, 7)
	type exact struct {
		Peers, Containers, Attackers, Joins, Leaves, StartFailures, Queries int
		Scenario, Trace                                                     string
		Sim, QueryOK, GossipOK                                              float64
		Published, Expected, Delivered, Propagations                        int
	}
	pick := func(s Summary) exact {
		return exact{s.Peers, s.Containers, s.Attackers, s.Joins, s.Leaves, s.StartFailures, s.Queries,
			s.Scenario, s.TraceSHA256, s.SimSeconds, s.QuerySuccessRatio, s.GossipDeliveryRatio,
			s.GossipPublished, s.GossipExpected, s.GossipDelivered, s.Propagations}
	}
	if pick(a) != pick(b) {
		t.Errorf("same seed, different outcomes:\n%+v\n%+v", pick(a), pick(b))
	}
	for _, c := range []struct {
		name string
		x, y []float64
	}{{"query", ra.QueryLatencies, rb.QueryLatencies}, {"heartbeat", ra.GossipLatencies, rb.GossipLatencies}} {
		o := sampleOverlap(c.x, c.y, 0.01)
		t.Logf("%s latencies: %.0f%% of %d reappear", c.name, 100*o, max(len(c.x), len(c.y)))
		if len(c.x) == 0 || o < 0.5 {
			t.Errorf("%s latencies: %.0f%% of %d reappear within 1%% in the second run, want at least half",
				c.name, 100*o, max(len(c.x), len(c.y)))
		}
	}
	for _, c := range []struct {
		name string
		x, y float64
	}{{"query_ms_p50", a.QueryMsP50, b.QueryMsP50}, {"query_ms_p99", a.QueryMsP99, b.QueryMsP99},
		{"gossip_ms_p50", a.GossipMsP50, b.GossipMsP50}, {"gossip_ms_p99", a.GossipMsP99, b.GossipMsP99},
		{"propagation_ms_p50", a.PropagationMsP50, b.PropagationMsP50}} {
		if c.x != c.y {
			t.Logf("%s: %v and %v are not identical", c.name, c.x, c.y)
		}
	}
}

// sampleOverlap is the share of the larger sample whose values the other sample also holds, each
// value matched once, within a relative tolerance.
func sampleOverlap(a, b []float64, tol float64) float64 {
	if len(a) == 0 && len(b) == 0 {
		return 1
	}
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	n := 0
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch d := a[i] - b[j]; {
		case math.Abs(d) <= tol*math.Max(math.Abs(a[i]), math.Abs(b[j])):
			n++
			i++
			j++
		case d < 0:
			i++
		default:
			j++
		}
	}
	return float64(n) / float64(max(len(a), len(b)))
}

func TestSampleOverlap(t *testing.T) {
	for _, c := range []struct {
		a, b []float64
		want float64
	}{
		{nil, nil, 1},
		{[]float64{1}, nil, 0},
		{[]float64{3, 1, 2}, []float64{1, 2, 3}, 1},
		{[]float64{100, 200, 300, 400}, []float64{100.5, 250, 300, 400}, 0.75},
		{[]float64{5, 5, 5}, []float64{5}, 1.0 / 3},
		{[]float64{1, 2}, []float64{3, 4}, 0},
	} {
		if got := sampleOverlap(c.a, c.b, 0.01); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("sampleOverlap(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestFloodSmall(t *testing.T) {
	needSim(t, false)
	sc := smallScenario(t, "flood")
	sc.Flood.Share = 0.1
	sc.Flood.Start = Duration(10 * time.Second)
	sc.Flood.Rate = 4
	s := simulate(t, sc, 20, 3)
	wantAllDelivered(t, s)
	if s.Attackers != 2 || s.FloodSent == 0 || s.FloodRejected == 0 {
		t.Errorf("attackers %d sent %d, rejected %d: want a flood that is rejected", s.Attackers, s.FloodSent, s.FloodRejected)
	}
	if s.IndexerAgreement != 1 {
		t.Errorf("indexer agreement %v under a flood of forged tickets: want 1", s.IndexerAgreement)
	}
	if s.AttackerScoreMean >= 0 || s.HonestScoreMean < 0 {
		t.Errorf("attackers scored %v, honest peers %v: want attackers negative, honest not", s.AttackerScoreMean, s.HonestScoreMean)
	}
}

func TestPartitionSmall(t *testing.T) {
	needSim(t, false)
	partitionSmall(t, LinksQUIC)
}

// TestPartitionSmallStreams is TestPartitionSmall on the stream link model: the cut holds what
// crosses it, closes connections it outlasts, and the network recovers the same way.
func TestPartitionSmallStreams(t *testing.T) {
	needSim(t, false)
	s := partitionSmall(t, LinksStreams)
	if s.Links != LinksStreams || s.TickMs != DefaultTopology().TickMs {
		t.Errorf("summary says links %q, tick %v ms", s.Links, s.TickMs)
	}
}

func partitionSmall(t *testing.T, links string) Summary {
	sc := smallScenario(t, "partition")
	sc.Duration = Duration(4 * time.Minute)
	sc.Partition.At, sc.Partition.For = Duration(30*time.Second), Duration(time.Minute)
	res, err := RunT(t, Config{Scenario: sc, Peers: 24, Seed: 5, Logger: testLogger(), Links: links})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	b, _ := json.MarshalIndent(s, "", "  ")
	t.Logf("%s", b)
	if s.StartFailures != 0 {
		t.Errorf("%d peers failed to start", s.StartFailures)
	}
	if s.GossipDeliveryRatio != 1 {
		t.Errorf("gossip on each side of the cut: delivered %d of %d", s.GossipDelivered, s.GossipExpected)
	}
	if s.QueryRecoverySeconds > time.Duration(sc.ProvideInterval).Seconds() {
		t.Errorf("queries failed %v s after the heal: want recovery within the republish interval (%v)", s.QueryRecoverySeconds, time.Duration(sc.ProvideInterval))
	}
	return s
}

func TestChurnSmall(t *testing.T) {
	needSim(t, false)
	sc := smallScenario(t, "churn")
	sc.Churn.Epoch = Duration(2 * time.Minute)
	sc.Churn.Share = 0.2
	s := simulate(t, sc, 20, 9)
	if s.Leaves == 0 || s.Joins == 0 {
		t.Fatalf("leaves %d joins %d: want churn", s.Leaves, s.Joins)
	}
	if s.QueryRecoverySeconds > time.Duration(sc.ProvideInterval).Seconds() {
		t.Errorf("queries failed %v s after a peer left: want recovery within the republish interval", s.QueryRecoverySeconds)
	}
	if s.GossipDeliveryRatio < 0.99 {
		t.Errorf("gossip delivered %v under churn", s.GossipDeliveryRatio)
	}
	// A lookup that waits on a crashed peer ends after the lookup patience (p2p.LookupPatience);
	// before, every query after a crash waited out its timeout (simulated time, not wall time).
	if timeout := time.Duration(sc.Queries.Timeout); s.QueryMsP99 >= float64(timeout.Milliseconds()) {
		t.Errorf("query p99 %v ms: queries waited out their %v timeout on crashed peers", s.QueryMsP99, timeout)
	}
}

// TestEpochsSmall: every settled peer holds the same committee in every epoch, and joiners that
// missed epochs catch up by importing committee records.
func TestEpochsSmall(t *testing.T) {
	needSim(t, false)
	sc := smallScenario(t, "epochs")
	sc.Epochs.Length = Duration(30 * time.Second)
	sc.Epochs.CommitteeSize = 4
	sc.Churn.Share, sc.Churn.Epoch = 0.1, Duration(time.Minute)
	s := simulate(t, sc, 16, 11)
	if s.IndexerEpochs < 3 {
		t.Fatalf("%d epochs observed: want at least 3", s.IndexerEpochs)
	}
	if s.IndexerAgreement != 1 {
		t.Errorf("indexer agreement %v: want every settled peer to hold each epoch's committee %v s after it starts",
			s.IndexerAgreement, s.IndexerAgreementAfterS)
	}
	if s.IndexerCommitteeMean == 0 {
		t.Error("no indexers drawn")
	}
	if s.Joins == 0 {
		t.Error("no joiners: the catch-up path was not exercised")
	}
}

// TestStopBeforeMeasuring: a run stopped early (Ctrl-C on the command) still summarises what it
// measured, even when it is stopped in the warm-up, before the measured span begins (it panicked
// making the report's windows).
func TestStopBeforeMeasuring(t *testing.T) {
	needSim(t, true)
	sc := smallScenario(t, "steady")
	prog := new(Progress)
	prog.Stop.Store(true)
	res, err := RunT(t, Config{Scenario: sc, Peers: 6, Seed: 1, Logger: testLogger(), Links: LinksStreams, Progress: prog})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	if s.SimSeconds >= time.Duration(sc.Warmup).Seconds() {
		t.Errorf("stopped at once, the summary says %v simulated seconds", s.SimSeconds)
	}
	if len(res.Report.Windows) != 0 || s.Queries != 0 {
		t.Errorf("stopped before measuring: %d windows, %d queries", len(res.Report.Windows), s.Queries)
	}
}
