package simnet

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/roles/consumer"
)

func TestConsumersScenario(t *testing.T) {
	sc, err := LoadScenario("steady")
	if err != nil {
		t.Fatal(err)
	}
	c := sc.Consumers
	if c.Rate != 0 || time.Duration(c.Hold) != 30*time.Second || c.App != "demo" ||
		!slices.Equal(c.Rankings, Rankings) || time.Duration(c.Timeout) != 10*time.Second {
		t.Fatalf("defaults %+v", c)
	}
	if got := c.startAfter(Duration(2 * time.Minute)); got != 2*time.Minute+5*time.Second {
		t.Fatalf("start_after default %v: want one epoch plus 5s", got)
	}
	for name, src := range map[string]string{
		"negative rate":  "name = \"x\"\n[consumers]\nrate = -1\n",
		"bad ranking":    "name = \"x\"\n[consumers]\nrankings = [\"cheapest\"]\n",
		"bad budget":     "name = \"x\"\n[consumers]\nbudget = \"a lot\"\n",
		"zero timeout":   "name = \"x\"\n[consumers]\ntimeout = \"0s\"\n",
		"tiny receipts":  "name = \"x\"\n[consumers]\nreceipt_interval = \"10ms\"\n",
		"unknown key":    "name = \"x\"\n[consumers]\nhurry = true\n",
		"empty app":      "name = \"x\"\n[consumers]\napp = \"\"\n",
		"negative start": "name = \"x\"\n[consumers]\nstart_after = \"-1s\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseScenario([]byte(src)); !errors.Is(err, ErrScenario) {
				t.Fatalf("err %v: want ErrScenario", err)
			}
		})
	}
	m, err := ParseScenario([]byte("name = \"x\"\n[consumers]\nrate = 1\nhold = \"-1s\"\nbudget = \"0.25\"\nrankings = [\"fee\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := m.Consumers.budgetMicros(); b != 250_000 || m.Consumers.Hold >= 0 {
		t.Fatalf("budget %d micros, hold %v", b, time.Duration(m.Consumers.Hold))
	}
}

// TestPlanMatches: match requests are a function of the seed, come from every region in turn, from
// peers that are settled and not containers where the region has such peers, and leave room for
// the session before the run ends.
func TestPlanMatches(t *testing.T) {
	sc, err := LoadScenario("match")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := makePlan(sc, 100, 3)
	b, _ := makePlan(sc, 100, 3)
	if !bytes.Equal(a.traceJSON(), b.traceJSON()) {
		t.Fatal("same seed, different traces")
	}
	c := sc.Consumers
	first := time.Duration(sc.Warmup) + c.startAfter(sc.Epochs.Length)
	stay := time.Duration(c.Timeout) + time.Duration(c.Hold) + matchSlack
	var ms []Event
	for _, e := range a.events {
		if e.Kind == "match" {
			ms = append(ms, e)
		}
	}
	span := (a.end - stay - first).Seconds()
	if want := c.Rate * span; float64(len(ms)) < 0.7*want || float64(len(ms)) > 1.3*want {
		t.Fatalf("%d match requests: want about %.0f", len(ms), want)
	}
	ids := map[string]bool{}
	for k, e := range ms {
		mp, p := e.match, a.peers[e.Peer]
		if e.T < first || e.T+stay > a.end {
			t.Fatalf("request at %v outside [%v, %v]", e.T, first, a.end-stay)
		}
		if mp.region != k%len(sc.Topology.Regions) || p.region != mp.region {
			t.Fatalf("request %d from region %d (peer in %d): want regions in turn", k, mp.region, p.region)
		}
		if p.role == roleContainer || !p.settled(e.T, time.Duration(sc.Settle), stay) {
			t.Fatalf("request %d from peer %d (%s): want a settled peer that is not a container", k, p.index, p.role)
		}
		round := k / len(sc.Topology.Regions)
		if want := rankingOf[c.Rankings[(round+mp.region)%len(c.Rankings)]]; mp.ranking != want {
			t.Fatalf("request %d ranks by %v: want %v", k, mp.ranking, want)
		}
		if len(mp.id) != 16 || ids[string(mp.id)] {
			t.Fatalf("request %d: ID %x not 16 fresh bytes", k, mp.id)
		}
		ids[string(mp.id)] = true
	}
	// No consumers: the trace is what it was before consumers existed.
	steady, _ := LoadScenario("steady")
	p, _ := makePlan(steady, 50, 3)
	for _, e := range p.events {
		if e.Kind == "match" {
			t.Fatal("steady plans match requests")
		}
	}
}

// TestDoubleBooked checks the checker: the fast count against a naive one over random holds, and
// a few cases by hand.
func TestDoubleBooked(t *testing.T) {
	h := func(c int, start, end int64) ticketHold {
		return ticketHold{container: c, start: start, end: end, checked: true, accepted: true}
	}
	for _, tc := range []struct {
		name  string
		holds []ticketHold
		want  int
	}{
		{"none", nil, 0},
		{"back to back", []ticketHold{h(1, 0, 100), h(1, 100, 200), h(1, 200, 300)}, 0},
		{"overlap", []ticketHold{h(1, 0, 100), h(1, 99, 200)}, 1},
		{"other containers", []ticketHold{h(1, 0, 100), h(2, 50, 200), h(3, 0, 100)}, 0},
		{"long hold spans two", []ticketHold{h(1, 0, 1000), h(1, 100, 200), h(1, 300, 400)}, 2},
		{"unknown hold left out", []ticketHold{h(1, 0, 100), {container: 1, start: 50, end: 150}}, 0},
	} {
		if got := doubleBooked(tc.holds); got != tc.want {
			t.Errorf("%s: %d: want %d", tc.name, got, tc.want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var holds []ticketHold
		for range r.IntN(30) {
			s := r.Int64N(1000)
			holds = append(holds, ticketHold{container: r.IntN(4), start: s, end: s + 1 + r.Int64N(100), checked: r.IntN(5) > 0})
		}
		naive := 0
		for i, a := range holds {
			for _, b := range holds[i+1:] {
				if a.checked && b.checked && a.container == b.container && a.start < b.end && b.start < a.end {
					naive++
				}
			}
		}
		if got := doubleBooked(holds); got != naive {
			t.Fatalf("%d overlapping pairs: the naive count is %d", got, naive)
		}
	}
}

// TestMatchSmall: consumers in every region get matched, at a load that leaves capacity free, so
// every request succeeds; no container is booked twice; the latency is measured against the
// consumer-indexer round trip; utilization is reported for every region.
func TestMatchSmall(t *testing.T) {
	needSim(t, false)
	sc := smallScenario(t, "match")
	sc.Queries.Rate = 0
	sc.Epochs.Length = Duration(30 * time.Second)
	sc.Epochs.CommitteeSize = 4
	sc.Consumers.Rate = 0.3
	// The hold is a whole number of receipt intervals: the consumer's end crosses a receipt in
	// flight, and the session must still end with a co-signed final receipt.
	sc.Consumers.Hold = Duration(12 * time.Second)
	sc.Consumers.ReceiptInterval = Duration(4 * time.Second)
	s := simulate(t, sc, envInt("SIMNET_PEERS", 40), 2)
	if s.Matches == 0 {
		t.Fatal("no match requests")
	}
	if s.MatchSuccessRatio != 1 {
		t.Errorf("match success %v (refused %v): want every request matched while capacity remains", s.MatchSuccessRatio, s.MatchRefused)
	}
	if s.Sessions == 0 || s.SessionFailures != 0 || s.SessionReceipts < s.Sessions {
		t.Errorf("sessions %d, failures %d, receipts %d: want every matched session accepted, with receipts", s.Sessions, s.SessionFailures, s.SessionReceipts)
	}
	if s.DoubleBooked != 0 {
		t.Errorf("%d double bookings", s.DoubleBooked)
	}
	if s.MatchRTTRatioP50 <= 0 {
		t.Errorf("match_rtt_ratio_p50 %v: want it measured", s.MatchRTTRatioP50)
	}
	busy := 0.0
	for _, r := range sc.Topology.Regions {
		u, ok := s.UtilizationByRegion[r.Name]
		if !ok {
			t.Errorf("utilization_by_region lacks %s", r.Name)
		}
		busy += u
	}
	if busy == 0 {
		t.Error("no container was ever seen busy or reserved")
	}
}

// TestMatchTiny runs under the race detector too: the consumers' side of the harness.
func TestMatchTiny(t *testing.T) {
	needSim(t, true)
	sc := smallScenario(t, "match")
	sc.Queries.Rate = 0
	sc.Warmup, sc.Settle, sc.Duration = Duration(10*time.Second), Duration(10*time.Second), Duration(time.Minute)
	sc.Epochs.Length, sc.Epochs.CommitteeSize = Duration(30*time.Second), 3
	sc.Consumers.Rate, sc.Consumers.Hold, sc.Consumers.Timeout = 0.4, Duration(5*time.Second), Duration(5*time.Second)
	sc.Consumers.ReceiptInterval = Duration(2 * time.Second)
	s := simulate(t, sc, envInt("SIMNET_PEERS", 8), 4)
	if s.Matches == 0 || s.Sessions == 0 || s.SessionFailures != 0 || s.DoubleBooked != 0 {
		t.Errorf("matches %d (refused %v), sessions %d (%d failed), double booked %d", s.Matches, s.MatchRefused, s.Sessions,
			s.SessionFailures, s.DoubleBooked)
	}
}

// TestAttemptsLog: a failed match's log line names each indexer asked (by peer index) and what it
// said or how it failed.
func TestAttemptsLog(t *testing.T) {
	sc := smallScenario(t, "match")
	pl, err := makePlan(sc, 12, 3)
	if err != nil {
		t.Fatal(err)
	}
	s := &sim{plan: pl}
	a, b := pl.peers[4], pl.peers[7]
	got := s.attemptsLog([]consumer.Attempt{
		{Indexer: string(a.id), Ms: 2000, Err: "context deadline exceeded"},
		{Indexer: string(b.id), Ms: 12.5, Refused: "reservation"},
		{Indexer: "not a peer ID", Ms: 3},
	})
	want := "peer 4 2000.0ms error: context deadline exceeded; peer 7 12.5ms refused: reservation; peer -1 3.0ms matched"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}
