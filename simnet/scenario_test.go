package simnet

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBuiltinScenarios(t *testing.T) {
	all, err := Scenarios()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "checkers,churn,epochs,flood,match,partition,steady" {
		t.Fatalf("built-ins %s", got)
	}
}

func TestParseScenarioErrors(t *testing.T) {
	for name, src := range map[string]string{
		"unknown key":    "name = \"x\"\nbogus = 1\n",
		"no name":        "peers = 10\n",
		"bad duration":   "name = \"x\"\nduration = \"soon\"\n",
		"peers":          "name = \"x\"\npeers = 1\n",
		"churn no epoch": "name = \"x\"\n[churn]\nshare = 0.1\nepoch = \"0s\"\n",
		"bad region":     "name = \"x\"\n[partition]\nat = \"1m\"\nfor = \"1m\"\ngroups = [[\"mars\"]]\n",
		"bad flood kind": "name = \"x\"\n[flood]\nshare = 0.1\nkinds = [\"polite\"]\n",
		"bad epochs":     "name = \"x\"\n[epochs]\ncommittee_size = 0\n",
		"asymmetric rtt": "name = \"x\"\n[topology]\nregions = [{name=\"a\",geohash=\"u0\",weight=1},{name=\"b\",geohash=\"u1\",weight=1}]\nrtt_ms = [[1,2],[3,1]]\naccess_mbps=[10]\naccess_weights=[1]\n",
		"tick":           "name = \"x\"\n[topology]\nregions = [{name=\"a\",geohash=\"u0\",weight=1}]\nrtt_ms = [[1]]\naccess_mbps=[10]\naccess_weights=[1]\ntick_ms = -1\n",
		"loss":           "name = \"x\"\n[topology]\nregions = [{name=\"a\",geohash=\"u0\",weight=1}]\nrtt_ms = [[1]]\naccess_mbps=[10]\naccess_weights=[1]\nloss = 0.9\n",
		"heartbeat":      "name = \"x\"\nheartbeat_interval = \"1ms\"\n",
		"checker share":  "name = \"x\"\n[checkers]\nshare = 1.5\n",
		"cheaters alone": "name = \"x\"\n[checkers]\ncheaters = 0.1\n",
		"too many cheat": "name = \"x\"\n[checkers]\nshare = 0.1\ncheaters = 0.9\n",
		"per_container":  "name = \"x\"\n[checkers]\nshare = 0.1\nper_container = 0\n",
		"recheck":        "name = \"x\"\n[checkers]\nshare = 0.1\nrecheck = \"10ms\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseScenario([]byte(src))
			if !errors.Is(err, ErrScenario) {
				t.Fatalf("err %v: want ErrScenario", err)
			}
		})
	}
}

// TestPlanDealsCheckers: checkers are non-container peers, cheaters are containers that joined in
// the warm-up with a GPU to lie about, dealt the telemetry cheats in turn, and the same seed deals
// the same roles.
func TestPlanDealsCheckers(t *testing.T) {
	sc, err := LoadScenario("checkers")
	if err != nil {
		t.Fatal(err)
	}
	deal := func() (checkers, cheats []string) {
		p, err := makePlan(sc, 100, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range p.peers {
			if s.checker {
				if s.role == roleContainer {
					t.Errorf("peer %d: a container dealt the checker role", s.index)
				}
				checkers = append(checkers, s.id.String())
			}
			if s.cheat != "" {
				if s.role != roleContainer || s.profile == "cpu" || s.profile == "h100" || s.join > time.Duration(sc.Warmup) {
					t.Errorf("peer %d (%s, %s, joins %v) dealt cheat %s", s.index, s.role, s.profile, s.join, s.cheat)
				}
				cheats = append(cheats, s.id.String()+"="+string(s.cheat))
			}
		}
		return checkers, cheats
	}
	c1, x1 := deal()
	c2, x2 := deal()
	if len(c1) != 10 || len(x1) < 3 {
		t.Fatalf("%d checkers, %d cheaters at 100 peers: want 10 and at least 3", len(c1), len(x1))
	}
	if !slices.Equal(c1, c2) || !slices.Equal(x1, x2) {
		t.Error("the same seed dealt different roles")
	}
	for _, want := range []string{"gpu", "replay", "silent"} {
		if !slices.ContainsFunc(x1, func(x string) bool { return strings.HasSuffix(x, "="+want) }) {
			t.Errorf("no %s cheater in %v", want, x1)
		}
	}
	// A scenario without checkers draws nothing more: its plan is what it was.
	steady, _ := LoadScenario("steady")
	p, _ := makePlan(steady, 30, 1)
	for _, s := range p.peers {
		if s.checker || s.cheat != "" {
			t.Fatalf("steady dealt peer %d a checker role or a cheat", s.index)
		}
	}
}

func TestLoadScenarioFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mine.toml")
	os.WriteFile(p, []byte("name = \"mine\"\npeers = 7\nduration = \"1m\"\n"), 0o644)
	s, err := LoadScenario(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "mine" || s.Peers != 7 || time.Duration(s.Duration) != time.Minute || s.Topology == nil {
		t.Fatalf("%+v", s)
	}
	if _, err := LoadScenario(filepath.Join(t.TempDir(), "none.toml")); !errors.Is(err, ErrScenario) {
		t.Fatalf("missing file: %v", err)
	}
}

// A [topology] table replaces the keys it names and keeps the defaults of the others, so that a
// file can change one figure (here the stream model's grid, and the loss) alone.
func TestScenarioTopologyOverridesOnlyItsKeys(t *testing.T) {
	s, err := ParseScenario([]byte("name = \"x\"\n[topology]\ntick_ms = 0\nloss = 0.01\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultTopology()
	want.TickMs, want.Loss = 0, 0.01
	if !reflect.DeepEqual(*s.Topology, want) {
		t.Fatalf("topology %+v, want %+v", *s.Topology, want)
	}
	// A list replaces the default's whole list: two regions need their own 2x2 round trips.
	_, err = ParseScenario([]byte("name = \"x\"\n[topology]\nregions = [{name=\"a\",geohash=\"u0\",weight=1},{name=\"b\",geohash=\"u1\",weight=1}]\n"))
	if !errors.Is(err, ErrScenario) || !strings.Contains(err.Error(), "rtt_ms") {
		t.Fatalf("two regions with the default 6x6 round trips: %v", err)
	}
}

func TestPlanIsAFunctionOfSeed(t *testing.T) {
	sc, err := LoadScenario("churn")
	if err != nil {
		t.Fatal(err)
	}
	sc.Partition = Partition{At: Duration(time.Minute), For: Duration(time.Minute), Groups: [][]string{{"us-east"}}}
	sc.Flood = Flood{Share: 0.05, Start: Duration(time.Minute), Rate: 1, Kinds: FloodKinds}
	a, _ := makePlan(sc, 200, 42)
	b, _ := makePlan(sc, 200, 42)
	c, _ := makePlan(sc, 200, 43)
	if !bytes.Equal(a.traceJSON(), b.traceJSON()) {
		t.Fatal("same seed, different traces")
	}
	if bytes.Equal(a.traceJSON(), c.traceJSON()) {
		t.Fatal("different seeds, same trace")
	}
	kinds := map[string]int{}
	for _, e := range a.events {
		kinds[e.Kind]++
	}
	// 10% churn of ~196 online peers over one 15-minute epoch, and queries at 0.5/s.
	if kinds["leave"] < 15 || kinds["leave"] > 25 || kinds["join"] < 200+15 || kinds["cut"] != 1 || kinds["heal"] != 1 || kinds["flood"] != 1 {
		t.Fatalf("event counts %v", kinds)
	}
	if q := kinds["query"]; q < 350 || q > 550 {
		t.Fatalf("%d queries: want about 450", q)
	}
	for _, e := range a.events {
		if e.Kind == "query" && len(e.want) == 0 {
			t.Fatalf("query %s at %v has no container that satisfies it", e.Detail, e.T)
		}
	}
	for i, p := range a.peers {
		if b.peers[i].id != p.id {
			t.Fatal("peer identities differ between equal seeds")
		}
	}
}

func TestTopologyDelays(t *testing.T) {
	topo := DefaultTopology()
	if err := topo.Validate(); err != nil {
		t.Fatal(err)
	}
	sc, _ := LoadScenario("steady")
	p, _ := makePlan(sc, 300, 1)
	for i := 0; i < 50; i++ {
		for j := 0; j < 50; j++ {
			a, b := p.peers[i], p.peers[j]
			d := topo.oneWay(1, a, b)
			if d != topo.oneWay(1, b, a) {
				t.Fatalf("delay %d->%d differs from %d->%d", i, j, j, i)
			}
			base := topo.RTTms[a.region][b.region] / 2
			lo := time.Duration(base * (1 - topo.PairJitter) * float64(time.Millisecond))
			hi := time.Duration((base*(1+topo.PairJitter) + 2*topo.AccessDelayMs[1]) * float64(time.Millisecond))
			if d < lo || d > hi {
				t.Fatalf("delay %v between %s and %s outside [%v, %v]", d, topo.Regions[a.region].Name, topo.Regions[b.region].Name, lo, hi)
			}
		}
	}
}

func TestLinksDrop(t *testing.T) {
	sc, _ := LoadScenario("steady")
	sc.Topology.Loss = 0.01
	sc.Partition.Groups = nil
	p, _ := makePlan(sc, 50, 1)
	p.peers[10].side = 1
	l := newLinks(LinksQUIC, sc.Topology, 1, p.peers)
	lost := 0
	for range 100_000 {
		if l.drop(1, 2) {
			lost++
		}
	}
	if lost < 800 || lost > 1200 {
		t.Fatalf("lost %d of 100000 at 1%%", lost)
	}
	l.topo.Loss = 0
	if l.drop(1, 10) {
		t.Fatal("dropped across a partition that is not in force")
	}
	l.cut.Store(true)
	if !l.drop(1, 10) || !l.drop(10, 1) || l.drop(1, 2) {
		t.Fatal("the cut must drop exactly the packets that cross it")
	}
	l.cut.Store(false)
	l.dead[2].Store(true)
	if !l.drop(1, 2) || !l.drop(2, 1) || l.drop(1, 3) {
		t.Fatal("a crashed peer must neither send nor receive")
	}
}
