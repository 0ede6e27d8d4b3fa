package simnet

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/node"
	"github.com/rendermesh/rendermesh/roles/consumer"
	"github.com/rendermesh/rendermesh/roles/container"
)

type role int

const (
	roleBootstrap role = iota
	roleContainer
	rolePlain
	roleAttacker
)

func (r role) String() string {
	return [...]string{"bootstrap", "container", "plain", "attacker"}[r]
}

// peerSpec is one peer of the plan: who it is, where, and when it is online.
type peerSpec struct {
	index         int
	role          role
	region        int
	side          int // partition side: 0, or 1+ the index of the group its region is in
	mbps          int
	accessDelayMs float64
	key           crypto.PrivKey
	id            peer.ID
	join          time.Duration // since the run began
	leave         time.Duration // 0: stays to the end

	// containers
	profile string
	gpus    []string
	apps    []string
	fee     uint64

	checker bool       // runs the checker role, with a licence
	cheat   node.Cheat // a cheating container's cheat
}

// settled reports whether the peer has been online for at least settle at t and stays to t+hold.
func (p *peerSpec) settled(t, settle, hold time.Duration) bool {
	return p.join+settle <= t && (p.leave == 0 || p.leave > t+hold)
}

// Event is one entry of the trace: what the scenario makes happen, and when (simulated time since
// the run began). Outcomes are not events: the trace is a function of seed and scenario alone.
type Event struct {
	T      time.Duration `json:"t"`
	Kind   string        `json:"kind"` // join, leave, cut, heal, query, flood, match
	Peer   int           `json:"peer,omitempty"`
	Detail string        `json:"detail,omitempty"`

	query *consumer.Query
	want  []int      // containers that satisfy the query (ground truth)
	match *matchPlan // a consumer's match request
}

// plan is a run laid out in advance: peers, their lifetimes, and the trace.
type plan struct {
	sc        Scenario
	seed      int64
	peers     []*peerSpec
	events    []Event       // sorted by time
	start     time.Duration // measuring starts (warm-up and settle done)
	end       time.Duration // the run ends
	cutAt     time.Duration
	healAt    time.Duration
	floodAt   time.Duration
	matchFrom time.Duration // consumers may ask from then on
	nInitial  int
}

var simApps = [][]string{{"demo"}, {"demo", "blender"}, {"demo", "unreal-city"}, {"demo", "blender", "comfyui"}}

func keyFor(seed int64, i int) (crypto.PrivKey, peer.ID) {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(seed))
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	s := sha256.Sum256(append([]byte("rendermesh simnet key"), b[:]...))
	k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(s[:]))
	if err != nil {
		panic(err) // 64 bytes from NewKeyFromSeed always unmarshal
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		panic(err)
	}
	return k, id
}

func pickWeighted(r *rand.Rand, w []float64) int {
	total := 0.0
	for _, x := range w {
		total += x
	}
	v := r.Float64() * total
	for i, x := range w {
		if v < x {
			return i
		}
		v -= x
	}
	return len(w) - 1
}

func makePlan(sc Scenario, peers int, seed int64) (*plan, error) {
	if peers <= sc.Bootstrap {
		return nil, fmt.Errorf("%w: %d peers: want more than the %d bootstrap peers", ErrScenario, peers, sc.Bootstrap)
	}
	r := rand.New(rand.NewPCG(uint64(seed), 0x726d73696d))
	topo := sc.Topology
	warm, settle := time.Duration(sc.Warmup), time.Duration(sc.Settle)
	p := &plan{sc: sc, seed: seed, nInitial: peers}
	p.start = warm + settle
	p.end = p.start + time.Duration(sc.Duration)
	sides := map[string]int{}
	for g, names := range sc.Partition.Groups {
		for _, n := range names {
			sides[n] = g + 1
		}
	}
	regionW := make([]float64, len(topo.Regions))
	for i, reg := range topo.Regions {
		regionW[i] = reg.Weight
	}
	profiles := container.Profiles()
	nContainers := 0
	newPeer := func(rl role, join time.Duration) *peerSpec {
		i := len(p.peers)
		s := &peerSpec{index: i, role: rl, join: join}
		s.key, s.id = keyFor(seed, i)
		if rl == roleBootstrap {
			s.region = i % len(topo.Regions)
			s.mbps = 1000
		} else {
			s.region = pickWeighted(r, regionW)
			s.mbps = topo.AccessMbps[pickWeighted(r, topo.AccessWeights)]
		}
		s.side = sides[topo.Regions[s.region].Name]
		s.accessDelayMs = topo.AccessDelayMs[0] + r.Float64()*(topo.AccessDelayMs[1]-topo.AccessDelayMs[0])
		if rl == roleContainer {
			prof := profiles[nContainers%len(profiles)]
			hw, err := container.NewSimulatedProbe(prof, int64(i)).Hardware()
			if err != nil {
				panic(err) // simulated probes do not fail
			}
			s.profile, s.gpus = prof.Name, container.GPUModels(hw)
			s.apps = simApps[r.IntN(len(simApps))]
			s.fee = uint64(100_000 + 25_000*r.IntN(9))
			nContainers++
		}
		p.peers = append(p.peers, s)
		p.events = append(p.events, Event{T: join, Kind: "join", Peer: i, Detail: rl.String() + " " + topo.Regions[s.region].Name})
		return s
	}
	drawRole := func() role {
		if r.Float64() < sc.ContainerShare {
			return roleContainer
		}
		return rolePlain
	}
	// Bootstrap peers found the network at once; the rest join spread over the warm-up.
	for range sc.Bootstrap {
		newPeer(roleBootstrap, 0)
	}
	rest := peers - sc.Bootstrap
	for k := range rest {
		newPeer(drawRole(), time.Duration(float64(warm)*float64(k+1)/float64(rest+1)))
	}
	// Churn: in each epoch of the measured span, a share of the online peers crash and as many
	// fresh peers join, at times drawn uniformly over the epoch.
	if sc.Churn.Share > 0 {
		epoch := time.Duration(sc.Churn.Epoch)
		for es := p.start; es < p.end; es += epoch {
			ee := min(es+epoch, p.end)
			var online []*peerSpec
			for _, s := range p.peers {
				if s.role != roleBootstrap && s.join <= es && s.leave == 0 {
					online = append(online, s)
				}
			}
			n := int(math.Round(sc.Churn.Share * float64(len(online)) * float64(ee-es) / float64(epoch)))
			r.Shuffle(len(online), func(i, j int) { online[i], online[j] = online[j], online[i] })
			for _, s := range online[:min(n, len(online))] {
				s.leave = es + time.Duration(r.Int64N(int64(ee-es)))
				p.events = append(p.events, Event{T: s.leave, Kind: "leave", Peer: s.index})
			}
			for range n {
				newPeer(drawRole(), es+time.Duration(r.Int64N(int64(ee-es))))
			}
		}
	}
	if len(sc.Partition.Groups) > 0 {
		p.cutAt = p.start + time.Duration(sc.Partition.At)
		p.healAt = p.cutAt + time.Duration(sc.Partition.For)
		var groups []string
		for _, g := range sc.Partition.Groups {
			groups = append(groups, strings.Join(g, "+"))
		}
		p.events = append(p.events, Event{T: p.cutAt, Kind: "cut", Detail: strings.Join(groups, " | ") + " | rest"},
			Event{T: p.healAt, Kind: "heal"})
	}
	if sc.Flood.Share > 0 {
		p.floodAt = p.start + time.Duration(sc.Flood.Start)
		n := max(1, int(math.Round(sc.Flood.Share*float64(peers))))
		for range n {
			a := newPeer(roleAttacker, warm)
			a.join = warm // attackers join when the warm-up ends and attack from floodAt
		}
		p.events = append(p.events, Event{T: p.floodAt, Kind: "flood", Detail: fmt.Sprintf("%d attackers, %s", n, strings.Join(sc.Flood.Kinds, ","))})
	}
	if err := p.dealCheckers(); err != nil {
		return nil, err
	}
	p.planQueries(r)
	p.planMatches(r)
	slices.SortStableFunc(p.events, func(a, b Event) int { return int(a.T - b.T) })
	return p, nil
}

// simCheats are the cheats simnet deals, in turn: those a telemetry check can catch (the frame-rate
// cheat needs a simulation test, which cannot run on simulated links).
var simCheats = []node.Cheat{node.CheatGPU, node.CheatReplay, node.CheatSilent}

// dealCheckers picks the checkers among the peers that are not containers (plain peers first,
// bootstrap peers only if too few) and the cheaters among the containers that join during the
// warm-up, so that the checks that begin with epoch 0 can catch them. A cheater has a GPU other
// than an H100 (a CPU-only container has no telemetry to check; an H100 claiming an H100 tells no
// lie). It draws from its own source, so scenarios without checkers keep their plans.
func (p *plan) dealCheckers() error {
	c := p.sc.Checkers
	if c.Share <= 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(uint64(p.seed), 0x636865636b))
	var plain, boot, conts []*peerSpec
	for _, s := range p.peers {
		switch s.role {
		case rolePlain:
			plain = append(plain, s)
		case roleBootstrap:
			boot = append(boot, s)
		case roleContainer:
			if s.join <= time.Duration(p.sc.Warmup) && s.profile != "cpu" && s.profile != "h100" {
				conts = append(conts, s)
			}
		}
	}
	r.Shuffle(len(plain), func(i, j int) { plain[i], plain[j] = plain[j], plain[i] })
	pool := append(plain, boot...)
	n := max(1, int(math.Round(c.Share*float64(p.nInitial))))
	if n > len(pool) {
		return fmt.Errorf("%w: checkers: share %v of %d peers is %d checkers, but only %d peers are not containers: lower checkers.share or container_share",
			ErrScenario, c.Share, p.nInitial, n, len(pool))
	}
	for _, s := range pool[:n] {
		s.checker = true
		p.tagJoin(s.index, "checker")
	}
	if c.Cheaters > 0 {
		total := 0
		for _, s := range p.peers {
			if s.role == roleContainer {
				total++
			}
		}
		k := max(1, int(math.Round(c.Cheaters*float64(total))))
		if k > len(conts) {
			return fmt.Errorf("%w: checkers: %d cheaters wanted, but only %d containers joining in the warm-up have a GPU to cheat with: lower checkers.cheaters",
				ErrScenario, k, len(conts))
		}
		r.Shuffle(len(conts), func(i, j int) { conts[i], conts[j] = conts[j], conts[i] })
		for i, s := range conts[:k] {
			s.cheat = simCheats[i%len(simCheats)]
			p.tagJoin(s.index, "cheat="+string(s.cheat))
		}
	}
	return nil
}

// tagJoin appends a word to peer i's join event.
func (p *plan) tagJoin(i int, word string) {
	for k := range p.events {
		if e := &p.events[k]; e.Kind == "join" && e.Peer == i {
			e.Detail += " " + word
			return
		}
	}
}

// planQueries draws the consumers' queries: a Poisson process over the measured span, each from a
// random settled peer, asking for one capability that at least one settled container offers.
func (p *plan) planQueries(r *rand.Rand) {
	sc := p.sc
	if sc.Queries.Rate <= 0 {
		return
	}
	timeout, settle := time.Duration(sc.Queries.Timeout), time.Duration(sc.Settle)
	for t := p.start; ; {
		t += time.Duration(r.ExpFloat64() / sc.Queries.Rate * float64(time.Second))
		if t+timeout > p.end {
			return
		}
		var origins, containers []*peerSpec
		for _, s := range p.peers {
			if s.role == roleAttacker || !s.settled(t, settle, timeout) {
				continue
			}
			origins = append(origins, s)
			if s.role == roleContainer {
				containers = append(containers, s)
			}
		}
		if len(origins) == 0 || len(containers) == 0 {
			continue
		}
		origin := origins[r.IntN(len(origins))]
		target := containers[r.IntN(len(containers))] // the query asks for something this one has
		q := consumer.Query{Limit: sc.Queries.Limit}
		var detail string
		switch r.IntN(3) {
		case 0:
			q.GPU = target.gpus[r.IntN(len(target.gpus))]
			detail = "gpu:" + q.GPU
		case 1:
			q.Region = sc.Topology.Regions[target.region].Geohash[:3]
			detail = "region:" + q.Region
		default:
			q.App = target.apps[r.IntN(len(target.apps))]
			detail = "app:" + q.App
		}
		var want []int
		for _, c := range containers {
			if p.matches(q, c) {
				want = append(want, c.index)
			}
		}
		p.events = append(p.events, Event{T: t, Kind: "query", Peer: origin.index, Detail: detail, query: &q, want: want})
	}
}

func (p *plan) matches(q consumer.Query, c *peerSpec) bool {
	switch {
	case q.GPU != "":
		return slices.Contains(c.gpus, q.GPU)
	case q.Region != "":
		return strings.HasPrefix(p.sc.Topology.Regions[c.region].Geohash, q.Region)
	default:
		return slices.Contains(c.apps, q.App)
	}
}

// traceJSON is the trace as JSON lines, the input of the trace hash.
func (p *plan) traceJSON() []byte {
	var b []byte
	for _, e := range p.events {
		line, _ := json.Marshal(e)
		b = append(b, line...)
		b = append(b, '\n')
	}
	return b
}
