package simnet

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendermesh/rendermesh/node"
	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/consumer"
	"github.com/rendermesh/rendermesh/roles/container"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// LinksQUIC names the link model of this package: QUIC (quic-go, the transport operators run) over
// marcopolo/simnet's simulated packet links. docs/SIMNET.md says why not mocknet.
const LinksQUIC = "quic-simnet"

// Config is one run.
type Config struct {
	Scenario Scenario
	Peers    int           // 0: the scenario's
	Seed     int64         //
	Duration time.Duration // measured simulated time; 0: the scenario's
	// Logger receives the nodes' logs (nil: discarded).
	Logger *slog.Logger
	// Progress, if set, is updated as the run goes (read it from outside the bubble).
	Progress *Progress
	// Procs is GOMAXPROCS during the run. 0 means 1: with one P, goroutines woken at the same
	// simulated instant run in a repeatable order, which makes latencies reproducible, and on two
	// cores it costs no wall time (docs/SIMNET.md). More trades reproducibility for parallelism.
	Procs int
	// HeapProfile, if set, receives a heap profile (pprof format) taken when the measured span
	// ends, after a garbage collection and before any peer stops.
	HeapProfile io.Writer
	// GoroutineProfile, if set, receives a goroutine profile taken at the same moment.
	GoroutineProfile io.Writer
	// CPUProfile, if set, receives a CPU profile (pprof format) of the measured span alone: from
	// the end of the warm-up and settle to the end of the measured span, without the peers
	// joining or stopping. It uses the process's profiler, so no other CPU profile may run.
	CPUProfile io.Writer
	// Links is the link model: LinksQUIC (the default: QUIC over simulated packets) or
	// LinksStreams (in-memory connections with the same delays, without QUIC and TLS; lighter,
	// for large runs). docs/SIMNET.md compares them.
	Links string

	cpu *spanProfiler // CPUProfile's, set by Run and RunT
}

func (c Config) links() string {
	if c.Links == "" {
		return LinksQUIC
	}
	return c.Links
}

// Progress is the state of a run, for a progress bar outside the simulation.
type Progress struct {
	SimNanos   atomic.Int64 // simulated time since the run began
	TotalNanos atomic.Int64 // simulated time the run lasts
	Online     atomic.Int64 // peers online
	Phase      atomic.Value // string: "starting", "running", "stopping", "done"
	// Stop, set from outside, ends the run early (within a simulated second); what was measured
	// until then is summarised.
	Stop atomic.Bool
}

// Result is a finished run.
type Result struct {
	Summary Summary
	Report  *Report
	Trace   []byte // JSON lines
	// CPUProfileSpan is the simulated span (from the run's start) that Config.CPUProfile covers:
	// the measured span, or less if the run stopped early; zero when there is no profile.
	CPUProfileSpan [2]time.Duration
}

// Run runs a simulation in a synctest bubble (see Bubble) and returns what it measured.
func Run(cfg Config) (*Result, error) {
	var res *Result
	var err error
	began := time.Now()
	defer deterministic(cfg)()
	defer shareChecks()()
	defer cfg.profiler()()
	if berr := Bubble(func() { res, err = run(cfg) }); berr != nil {
		return nil, berr
	}
	if res != nil {
		res.setWall(time.Since(began))
	}
	return res, err
}

// sharedEnvelopes is how many verified envelopes the peers of a run share (p2p.ShareVerifiedEnvelopes):
// a few minutes of heartbeats and every record and ticket of a 1,000-peer run, in about 10 MB.
const sharedEnvelopes = 1 << 16

// shareChecks lets the run's peers share their signature checks of identical envelopes (each peer
// still checks everything else, and the answer is the one its own check would give), and returns
// the function that stops it. Without it, every heartbeat's signature is checked by each of the
// ~170 peers of its region: 10% of a 1,000-peer run's CPU at rest, and growing with the square of
// the peers.
func shareChecks() func() {
	p2p.ShareVerifiedEnvelopes(sharedEnvelopes)
	return func() { p2p.ShareVerifiedEnvelopes(0) }
}

// profiler sets up the measured span's CPU profile, if one is asked for, from outside the
// bubble, and returns the function that ends it once the bubble has ended.
func (c *Config) profiler() func() {
	if c.CPUProfile == nil {
		return func() {}
	}
	c.cpu = newSpanProfiler(c.CPUProfile)
	return c.cpu.close
}

// deterministic pins what the simulation's code takes from the process: GOMAXPROCS, and the global
// math/rand source that gossipsub draws its mesh choices from (seeded from the run's seed; this
// needs GODEBUG randseednop=0, set by the //go:debug line of the rendermesh binary and the tests).
// It returns a function that restores GOMAXPROCS.
func deterministic(cfg Config) func() {
	procs := cfg.Procs
	if procs <= 0 {
		procs = 1
	}
	prev := runtime.GOMAXPROCS(procs)
	rand.Seed(cfg.Seed) //nolint:staticcheck // the global source is what gossipsub uses
	return func() { runtime.GOMAXPROCS(prev) }
}

// WriteResult writes summary.json, report.html and trace.jsonl into dir.
func WriteResult(dir string, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("simnet: output directory: %w", err)
	}
	sum, err := jsonIndent(res.Summary)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), sum, 0o644); err != nil {
		return fmt.Errorf("simnet: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "trace.jsonl"), res.Trace, 0o644); err != nil {
		return fmt.Errorf("simnet: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "report.html"))
	if err != nil {
		return fmt.Errorf("simnet: %w", err)
	}
	if err := WriteHTML(f, res.Report); err != nil {
		f.Close()
		return fmt.Errorf("simnet: report: %w", err)
	}
	return f.Close()
}

// gossipDeadline: a heartbeat counts as delivered when it arrives within this long.
const gossipDeadline = 10 * time.Second

// sim is one run in progress. Everything in it happens inside the bubble.
type sim struct {
	cfg   Config
	sc    Scenario
	plan  *plan
	links *links
	reg   *prometheus.Registry
	mets  *p2p.Metrics
	log   *slog.Logger
	t0    time.Time
	ctx   context.Context

	mu       sync.Mutex
	nodes    []*node.Node // by peer index; nil when offline
	failures int
	failed   map[int]bool
	queries  []queryResult
	props    []time.Duration
	pubs     map[pubKey]*publication
	samples  []Sample
	wg       sync.WaitGroup
	flood    floodStats
	stopped  chan struct{} // closed when Progress.Stop is seen
	stakes   epoch.Allocation
	epochObs map[uint64]*epochObs
	cons     consumerStats
	chk      checkerStats
}

type pubKey struct {
	from int
	seq  uint64
}

type publication struct {
	at    time.Duration // when its publisher saw it (publish time); -1 until known
	sent  time.Duration // from the heartbeat's own timestamp, when the publisher's copy is missing
	recvs []receipt
}

type receipt struct {
	peer int32
	at   time.Duration
}

type queryResult struct {
	at      time.Duration
	ok      bool
	latency time.Duration
	hops    int
}

func (s *sim) now() time.Duration { return time.Since(s.t0) }

func run(cfg Config) (*Result, error) {
	began := readProcessTime()
	sc := cfg.Scenario
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if cfg.Peers == 0 {
		cfg.Peers = sc.Peers
	}
	if cfg.Duration > 0 {
		sc.Duration = Duration(cfg.Duration)
	}
	pl, err := makePlan(sc, cfg.Peers, cfg.Seed)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	prog := cfg.Progress
	if prog == nil {
		prog = new(Progress)
	}
	prog.TotalNanos.Store(int64(pl.end))
	prog.Phase.Store("starting")

	s := &sim{cfg: cfg, sc: sc, plan: pl, log: cfg.Logger, t0: time.Now(),
		nodes: make([]*node.Node, len(pl.peers)), pubs: map[pubKey]*publication{}, failed: map[int]bool{},
		epochObs: map[uint64]*epochObs{}}
	if s.stakes, err = s.allocation(); err != nil {
		return nil, err
	}
	if s.checking() {
		s.chk.ids = make(map[string]int, len(pl.peers))
		for _, p := range pl.peers {
			s.chk.ids[string(p.id)] = p.index
		}
		s.chk.atts = map[[32]byte]*attestation{}
	}
	s.reg = prometheus.NewRegistry()
	s.mets = p2p.NewMetrics(s.reg)
	s.links = newLinks(cfg.links(), sc.Topology, uint64(cfg.Seed), pl.peers)
	s.links.start()
	ctx, cancel := context.WithCancel(context.Background())
	s.ctx = ctx

	// Everything the scenario does is scheduled now, on simulated time.
	for _, p := range pl.peers {
		if p.role == roleAttacker {
			continue
		}
		s.goAt(p.join, func() { s.peerLife(p) })
	}
	for _, e := range pl.events {
		switch e.Kind {
		case "query":
			s.goAt(e.T, func() { s.query(e) })
		case "match":
			s.goAt(e.T, func() { s.match(e) })
		case "cut":
			s.goAt(e.T, func() { s.links.setCut(true) })
		case "heal":
			s.goAt(e.T, func() { s.links.setCut(false) })
		}
	}
	if pl.floodAt > 0 {
		s.goAt(pl.peers[len(pl.peers)-1].join, func() { s.runFlood() })
	}
	s.stopped = make(chan struct{})
	s.goAt(0, func() { s.sampler(prog) })
	var spanBegan processTime // read when the measured span begins; read back after s.wg.Wait
	s.goAt(pl.start, func() {
		spanBegan = readProcessTime()
		if cfg.cpu != nil {
			if err := cfg.cpu.start(); err != nil {
				s.log.Warn("profile", "err", err)
			}
		}
	})

	// The run: wait for its end (or a stop), then stop everything.
	select {
	case <-time.After(pl.end):
	case <-s.stopped:
		pl.end = s.now()
	}
	spanEnded, spanSim := readProcessTime(), s.now()-pl.start
	s.mu.Lock()
	online := s.onlineLocked()
	s.mu.Unlock()
	var profiled [2]time.Duration
	if cfg.cpu != nil {
		if cfg.cpu.stop() {
			profiled = [2]time.Duration{cfg.cpu.began.Sub(s.t0), s.now()}
		} else {
			s.log.Warn("the measured span's CPU profile is empty: the run stopped before the span began")
		}
	}
	if cfg.HeapProfile != nil {
		runtime.GC() // the profile then shows the live heap
	}
	for name, w := range map[string]io.Writer{"heap": cfg.HeapProfile, "goroutine": cfg.GoroutineProfile} {
		if w != nil {
			if err := pprof.Lookup(name).WriteTo(w, 0); err != nil {
				s.log.Warn("profile", "profile", name, "err", err)
			}
		}
	}
	prog.Phase.Store("stopping")
	cancel()
	s.wg.Wait()
	s.snapshotScores()
	s.mu.Lock()
	nodes := slices.Clone(s.nodes)
	s.nodes = make([]*node.Node, len(s.nodes))
	s.mu.Unlock()
	if s.checking() {
		s.compareRoots(nodes)
	}
	var closers sync.WaitGroup
	for _, n := range nodes {
		if n != nil {
			closers.Go(func() { n.Close() })
		}
	}
	closers.Wait()
	s.closeFlood()
	s.links.close()
	prog.Online.Store(0)

	res := s.result()
	res.CPUProfileSpan = profiled
	res.Summary.costs(began, spanBegan, spanEnded, online, spanSim)
	res.Report.Summary = res.Summary
	prog.Phase.Store("done")
	return res, nil
}

// onlineLocked counts the peers online; s.mu is held.
func (s *sim) onlineLocked() int {
	online := 0
	for _, n := range s.nodes {
		if n != nil {
			online++
		}
	}
	return online
}

// goAt runs f at simulated time t (since the run began) unless the run has ended by then.
func (s *sim) goAt(t time.Duration, f func()) {
	s.wg.Go(func() {
		if d := t - s.now(); d > 0 {
			select {
			case <-time.After(d):
			case <-s.ctx.Done():
				return
			}
		}
		if s.ctx.Err() == nil {
			f()
		}
	})
}

func (s *sim) nodeConfig(p *peerSpec) (node.Config, node.Options) {
	cfg := node.Default()
	cfg.DataDir = fmt.Sprintf("(in memory: simnet peer %d)", p.index) // never touched: Options.Key and Datastore
	cfg.Admin.Listen = ""
	cfg.P2P.Listen = []string{listenAddr(p.index)}
	cfg.P2P.BootstrapTimeout = node.Duration(2 * time.Minute)
	cfg.P2P.ConnLow, cfg.P2P.ConnHigh = s.sc.ConnHigh/2, s.sc.ConnHigh
	cfg.P2P.ResourceMemory, cfg.P2P.ResourceFDs = 64, 256
	if p.role == roleBootstrap {
		cfg.P2P.ConnLow, cfg.P2P.ConnHigh = 256, 1024
		cfg.P2P.ResourceMemory, cfg.P2P.ResourceFDs = 1024, 8192
	}
	for _, b := range s.plan.peers[:s.sc.Bootstrap] {
		if b.index != p.index {
			cfg.P2P.Bootstrap = append(cfg.P2P.Bootstrap, listenAddr(b.index)+"/p2p/"+b.id.String())
		}
	}
	region := s.sc.Topology.Regions[p.region]
	cfg.P2P.ServeRegions = []string{region.Name}
	cfg.Container.HeartbeatInterval = node.Duration(s.sc.HeartbeatEvery)
	cfg.Container.RecordTTL = node.Duration(s.sc.RecordTTL)
	cfg.Container.ProvideInterval = node.Duration(s.sc.ProvideInterval)
	cfg.Network = s.networkConfig()
	opts := node.Options{
		Stakes:   s.stakes,
		Logger:   s.log.With("peer", p.index),
		Registry: s.reg,
		Metrics:  s.mets,
		// libp2p's collectors are process-wide: they would sum every peer's connections.
		NoHostMetrics: true,
		Key:           p.key,
		Datastore:     dssync.MutexWrap(ds.NewMapDatastore()),
		Transports:    s.links.transports(p.index),
		Load:          node.SimulatedLoad{},

		ReceiptInterval: time.Duration(s.sc.Consumers.ReceiptInterval),
	}
	if s.sc.Flood.Share > 0 {
		// Only the flood's metrics read gossipsub scores (snapshotScores); a snapshot scores every
		// peer of every node.
		opts.ScoreInspect = 5 * time.Second
	}
	if p.role == roleContainer {
		cfg.Roles = []string{node.RoleContainer}
		cfg.Container.Region, cfg.Container.Geohash = region.Name, region.Geohash
		cfg.Container.Apps = p.apps
		cfg.Container.SessionFee = node.FormatAmount(p.fee)
		// Without checkers, registration checks pass at once; with them, they gate scheduling.
		cfg.Container.DevAutoCheck = !s.checking()
		opts.Probe = simulatedProbe(p)
		opts.Cheat = p.cheat
	}
	if p.checker {
		cfg.Roles = append(cfg.Roles, node.RoleChecker)
		cfg.Checker = s.checkerConfig()
	}
	if s.checking() {
		opts.OnAttestation = func(a *pb.Attestation, leaf [32]byte, at time.Time) { s.attested(p.index, a, leaf, at) }
	}
	return cfg, opts
}

// peerLife starts a peer, keeps it until it leaves (crashes) or the run ends.
func (s *sim) peerLife(p *peerSpec) {
	cfg, opts := s.nodeConfig(p)
	n, err := node.New(cfg, opts)
	if err == nil {
		err = n.Start(s.ctx)
	}
	if err != nil {
		if n != nil {
			n.Close()
		}
		if s.ctx.Err() == nil {
			s.log.Warn("peer failed to start", "peer", p.index, "err", err)
			s.mu.Lock()
			s.failures++
			s.failed[p.index] = true
			s.mu.Unlock()
		}
		return
	}
	registered := s.now()
	region := s.sc.Topology.Regions[p.region].Name
	if err := n.Net().SubscribeHeartbeats(region, func(hb *pb.Heartbeat) { s.observe(p.index, hb) }); err != nil {
		s.log.Warn("observer", "peer", p.index, "err", err)
	}
	s.mu.Lock()
	s.nodes[p.index] = n
	s.mu.Unlock()
	if p.role == roleContainer && p.join > 0 {
		s.wg.Go(func() { s.probe(p, registered) })
	}
	if p.leave == 0 {
		return // closed when the run ends
	}
	select {
	case <-time.After(p.leave - s.now()):
	case <-s.ctx.Done():
		return
	}
	// A crash: the peer's links go dead first, so nothing it says on the way down gets out.
	s.links.kill(p.index)
	s.mu.Lock()
	s.nodes[p.index] = nil
	s.mu.Unlock()
	n.Close()
}

// observe records a heartbeat as peer i's subscription delivered it.
func (s *sim) observe(i int, hb *pb.Heartbeat) {
	at := s.now()
	from, ok := s.indexOf(hb.PeerId)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heartbeatSeen(from, hb, at)
	k := pubKey{from, hb.Seq}
	pub := s.pubs[k]
	if pub == nil {
		pub = &publication{at: -1, sent: time.UnixMilli(hb.SentUnixMs).Sub(s.t0)}
		s.pubs[k] = pub
	}
	if i == from {
		pub.at = at
		return
	}
	pub.recvs = append(pub.recvs, receipt{int32(i), at})
}

func (s *sim) indexOf(id []byte) (int, bool) {
	pid, err := peer.IDFromBytes(id)
	if err != nil {
		return 0, false
	}
	// Plans are at most a few thousand peers: a linear scan beats keeping a map in step.
	for _, p := range s.plan.peers {
		if p.id == pid {
			return p.index, true
		}
	}
	return 0, false
}

// probe measures record propagation: from the container's registration until a lookup from a
// random other peer finds its record; lookups are retried with backoff for up to a minute.
func (s *sim) probe(p *peerSpec, registered time.Duration) {
	wait := 250 * time.Millisecond
	for attempt := uint64(0); s.now()-registered < time.Minute; attempt++ {
		n := s.randomNode(uint64(p.index)<<20 | attempt)
		if n != nil {
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			// From the DHT only: a consumer's Lookup asks the container itself first, which says
			// nothing about how far the record has spread.
			_, err := n.Net().ContainerRecord(ctx, p.id, s.sc.Queries.Quorum)
			cancel()
			if err == nil {
				s.mu.Lock()
				s.props = append(s.props, s.now()-registered)
				s.mu.Unlock()
				return
			}
		}
		select {
		case <-time.After(wait):
		case <-s.ctx.Done():
			return
		}
		wait = min(2*wait, 8*time.Second)
	}
}

// randomNode picks an online peer by a hash of h (deterministic given who is online).
func (s *sim) randomNode(h uint64) *node.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	var online []*node.Node
	for _, n := range s.nodes {
		if n != nil {
			online = append(online, n)
		}
	}
	if len(online) == 0 {
		return nil
	}
	return online[splitmix64(h^uint64(s.cfg.Seed))%uint64(len(online))]
}

// query runs one consumer query of the trace from its origin peer.
func (s *sim) query(e Event) {
	s.mu.Lock()
	n := s.nodes[e.Peer]
	s.mu.Unlock()
	res := queryResult{at: e.T}
	defer func() {
		s.mu.Lock()
		s.queries = append(s.queries, res)
		s.mu.Unlock()
	}()
	if n == nil {
		return // its origin failed to start: a failed query
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(s.sc.Queries.Timeout))
	defer cancel()
	ctx, hops := countHops(ctx)
	began := s.now()
	found, _, err := consumer.Find(ctx, n.Lookup(s.sc.Queries.Quorum), *e.query)
	res.latency = s.now() - began
	cancel()
	res.hops = hops()
	if err != nil || s.ctx.Err() != nil {
		return
	}
	for _, f := range found {
		if id, err := peer.Decode(f.PeerID); err == nil {
			if i, ok := s.indexOf([]byte(id)); ok && slices.Contains(e.want, i) && !s.links.dead[i].Load() {
				res.ok = true
				return
			}
		}
	}
}

// countHops follows a query's DHT lookups: a peer learnt from a peer at depth d is at depth d+1;
// the first peers asked (from the routing table) are at depth 1. It returns the deepest depth at
// which a peer answered, once ctx is done.
func countHops(ctx context.Context) (context.Context, func() int) {
	ctx, events := routing.RegisterForQueryEvents(ctx)
	done := make(chan int, 1)
	go func() {
		depth := map[peer.ID]int{}
		deepest := 0
		for ev := range events {
			d, ok := depth[ev.ID]
			if !ok {
				d = 1
				depth[ev.ID] = 1
			}
			if ev.Type != routing.PeerResponse {
				continue
			}
			deepest = max(deepest, d)
			for _, r := range ev.Responses {
				if old, ok := depth[r.ID]; !ok || d+1 < old {
					depth[r.ID] = d + 1
				}
			}
		}
		done <- deepest
	}()
	return ctx, func() int { return <-done }
}

// sampler records memory and goroutines every 15 simulated seconds and keeps Progress current.
func (s *sim) sampler(prog *Progress) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		s.mu.Lock()
		online := s.onlineLocked()
		nodes := slices.Clone(s.nodes)
		s.mu.Unlock()
		s.observeEpochs(nodes)
		s.sampleUtilization()
		prog.SimNanos.Store(int64(s.now()))
		prog.Online.Store(int64(online))
		if i == 0 {
			prog.Phase.Store("running")
		}
		if prog.Stop.Load() {
			close(s.stopped)
			return
		}
		if i%15 == 0 {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			s.mu.Lock()
			s.samples = append(s.samples, Sample{T: s.now().Seconds(), Online: online, RSSBytes: rssBytes(),
				HeapBytes: ms.HeapInuse, LiveHeapBytes: liveHeapBytes(), StackBytes: ms.StackInuse,
				Goroutines: runtime.NumGoroutine()})
			s.mu.Unlock()
		}
		select {
		case <-tick.C:
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *sim) result() *Result {
	pl, sc := s.plan, s.sc
	sum := Summary{Peers: pl.nInitial, Seed: s.cfg.Seed, Scenario: sc.Name, Links: s.cfg.links(),
		SimSeconds: pl.end.Seconds(), PeakRSSBytes: peakRSS(), StartFailures: s.failures}
	if sum.Links == LinksStreams {
		sum.TickMs = sc.Topology.TickMs
	}
	for _, p := range pl.peers {
		switch {
		case p.role == roleContainer:
			sum.Containers++
		case p.role == roleAttacker:
			sum.Attackers++
		}
		if p.join > pl.start && p.role != roleAttacker {
			sum.Joins++
		}
		if p.leave > 0 {
			sum.Leaves++
		}
	}
	trace := pl.traceJSON()
	h := sha256.Sum256(trace)
	sum.TraceSHA256 = hex.EncodeToString(h[:])
	s.epochSummary(&sum)
	s.checkerSummary(&sum)
	rep := &Report{Description: sc.Description, WindowSeconds: time.Duration(sc.Window).Seconds()}
	// A run stopped before measuring began has no window (and pl.end < pl.start).
	nWin := max(0, int(math.Ceil(float64(pl.end-pl.start)/float64(sc.Window))))
	rep.Windows = make([]Window, nWin)
	for i := range rep.Windows {
		rep.Windows[i].Start = (pl.start + time.Duration(i)*time.Duration(sc.Window)).Seconds()
	}
	win := func(t time.Duration) *Window {
		i := int((t - pl.start) / time.Duration(sc.Window))
		if i < 0 || i >= nWin {
			return nil
		}
		return &rep.Windows[i]
	}

	// Queries.
	slices.SortFunc(s.queries, func(a, b queryResult) int { return cmp.Compare(a.at, b.at) })
	var qlat []time.Duration
	var hops []float64
	ok := 0
	for _, q := range s.queries {
		rep.Queries = append(rep.Queries, QueryPoint{T: q.at.Seconds(), Ms: ms(q.latency), OK: q.ok})
		w := win(q.at)
		if w != nil {
			w.Queries++
		}
		if q.ok {
			ok++
			qlat = append(qlat, q.latency)
			hops = append(hops, float64(q.hops))
			if w != nil {
				w.QueriesOK++
			}
		}
	}
	sum.Queries = len(s.queries)
	sum.QuerySuccessRatio = ratio(ok, len(s.queries))
	sum.QueryMsP50, sum.QueryMsP99 = ms(percentile(qlat, 50)), ms(percentile(qlat, 99))
	slices.Sort(hops)
	sum.QueryHopsP50, sum.QueryHopsP99 = pct(hops, 50), pct(hops, 99)
	sum.QueryRecordsFromContainer = int(s.labelled("rendermesh_dht_record_fetches_total", "source", string(p2p.FromContainer)))
	sum.QueryRecordsFromDHT = int(s.labelled("rendermesh_dht_record_fetches_total", "source", string(p2p.FromDHT)))
	sum.DHTLookupStalls = int(s.counter("rendermesh_dht_lookup_stalls_total"))
	rep.QueryLatencies = msList(qlat)
	sum.QuerySuccessMinWindow = 1
	for _, w := range rep.Windows {
		if w.Queries > 0 {
			sum.QuerySuccessMinWindow = min(sum.QuerySuccessMinWindow, ratio(w.QueriesOK, w.Queries))
		}
	}
	// Recovery: for each failed query outside a cut, the time since the disruption (a peer
	// leaving, the cut healing) that may explain it; the longest such gap. A failure with no
	// disruption before it counts from the start of measuring.
	var disruptions []time.Duration
	for _, p := range pl.peers {
		if p.leave > 0 {
			disruptions = append(disruptions, p.leave)
		}
	}
	if pl.healAt > 0 {
		disruptions = append(disruptions, pl.healAt)
	}
	slices.Sort(disruptions)
	for _, q := range s.queries {
		if q.ok || (pl.cutAt > 0 && q.at >= pl.cutAt && q.at < pl.healAt) {
			continue
		}
		since := pl.start
		if i, _ := slices.BinarySearch(disruptions, q.at+1); i > 0 {
			since = disruptions[i-1]
		}
		sum.QueryRecoverySeconds = max(sum.QueryRecoverySeconds, math.Round((q.at-since).Seconds()*10)/10)
	}

	// Propagation.
	sum.Propagations = len(s.props)
	sum.PropagationMsP50, sum.PropagationMsP99 = ms(percentile(s.props, 50)), ms(percentile(s.props, 99))
	rep.Propagations = msList(s.props)

	// Gossip: each heartbeat published in the measured span by a settled, honest container,
	// against every honest peer of its region settled then and online until the deadline, on the
	// publisher's side of any cut in force meanwhile.
	var glat []time.Duration
	settle := time.Duration(sc.Settle)
	regionPeers := map[int][]*peerSpec{}
	for _, p := range pl.peers {
		if p.role != roleAttacker {
			regionPeers[p.region] = append(regionPeers[p.region], p)
		}
	}
	for k, pub := range s.pubs {
		at := pub.at
		if at < 0 {
			at = pub.sent
		}
		if at < pl.start || at+gossipDeadline > pl.end {
			continue
		}
		from := pl.peers[k.from]
		if !from.settled(at, settle, gossipDeadline) {
			continue
		}
		sum.GossipPublished++
		cutSpan := pl.cutAt > 0 && at < pl.healAt && at+gossipDeadline > pl.cutAt
		got := map[int32]time.Duration{}
		for _, r := range pub.recvs {
			if old, ok := got[r.peer]; !ok || r.at < old {
				got[r.peer] = r.at
			}
		}
		w := win(at)
		for _, q := range regionPeers[from.region] {
			if q.index == from.index || !q.settled(at, settle, gossipDeadline) || s.failedToStart(q) {
				continue
			}
			if cutSpan && q.side != from.side {
				continue
			}
			sum.GossipExpected++
			if w != nil {
				w.GossipExpected++
			}
			if r, ok := got[int32(q.index)]; ok && r-at <= gossipDeadline {
				sum.GossipDelivered++
				if w != nil {
					w.GossipDelivered++
				}
				glat = append(glat, r-at)
			}
		}
	}
	sum.GossipDeliveryRatio = ratio(sum.GossipDelivered, sum.GossipExpected)
	sum.GossipMsP50, sum.GossipMsP99 = ms(percentile(glat, 50)), ms(percentile(glat, 99))
	rep.GossipLatencies = msList(glat)

	// Flood.
	s.floodSummary(&sum)

	// Matches.
	s.matchSummary(&sum, rep)

	// Memory.
	rep.Samples = s.samples
	if n := len(s.samples); n > 0 {
		last := s.samples[n-1]
		if last.Online > 0 {
			sum.HeapBytesPerPeer = last.HeapBytes / uint64(last.Online)
			sum.LiveHeapBytesPerPeer = last.LiveHeapBytes / uint64(last.Online)
			sum.StackBytesPerPeer = last.StackBytes / uint64(last.Online)
			sum.GoroutinesPerPeer = math.Round(float64(last.Goroutines)/float64(last.Online)*10) / 10
		}
	}
	for _, e := range pl.events {
		switch e.Kind {
		case "cut", "heal", "flood":
			rep.Marks = append(rep.Marks, Mark{T: e.T.Seconds(), Label: e.Kind})
		}
	}
	rep.Summary = sum
	return &Result{Summary: sum, Report: rep, Trace: trace}
}

func (s *sim) failedToStart(p *peerSpec) bool { return s.failed[p.index] }

// setWall records the run's wall time, measured outside the bubble (inside, time is simulated).
func (r *Result) setWall(d time.Duration) {
	r.Summary.WallSeconds = math.Round(d.Seconds()*10) / 10
	r.Summary.PeakRSSBytes = peakRSS()
	r.Report.Summary = r.Summary
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// percentile of durations (nearest rank), sorting ds in place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// ms rounds to a tenth of a millisecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e5) / 10 }

func msList(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / 1e6
	}
	return out
}

func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, rss uint64
	fmt.Sscan(string(b), &size, &rss)
	return rss * uint64(os.Getpagesize())
}

// liveHeapBytes is the heap the last garbage collection marked live (0 before the first).
func liveHeapBytes() uint64 {
	m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return m[0].Value.Uint64()
}

func peakRSS() uint64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return uint64(ru.Maxrss) << 10
}

func simulatedProbe(p *peerSpec) *container.SimulatedProbe {
	prof, _ := container.ProfileByName(p.profile)
	return container.NewSimulatedProbe(prof, int64(p.index))
}

func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
