package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/consumer"
	"github.com/rendermesh/rendermesh/roles/container"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// DevnetConfig configures a devnet: a whole network of real nodes in one process on loopback.
type DevnetConfig struct {
	Nodes int    // total nodes, at least 2
	Dir   string // data directories go here ("": a temporary directory, removed on Close)
	// ContainerEvery makes every k-th node (after the first) a plain full node and the rest
	// containers; 0: 3 (two thirds containers).
	ContainerEvery int
	Admin          string // metrics listener, "" disables
	RecordTTL      time.Duration
	Heartbeat      time.Duration
	Logger         *slog.Logger // nodes' logs
	// Epoch is the epoch length (default 10 s, so that a 30-second run sees several); Committee the
	// expected indexer seats per epoch (default: a fifth of the nodes, at least 6).
	Epoch     time.Duration
	Committee uint32
	// Progress, if set, receives one line per phase.
	Progress func(string)
	// StreamWidth and StreamHeight are the size each devnet session streams (default 640x360);
	// StreamFPS the frame rate it asks for, which its checks during sessions are judged against
	// (default: the containers' render.fps, 30).
	StreamWidth, StreamHeight int
	StreamFPS                 int
	// Web is node 0's admin listener, which serves the web client (empty: off).
	Web string
	// Relay makes node 0 a relay (embedded TURN on loopback), so consumers get relay credentials
	// with their matches and every third devnet session is forced through it.
	Relay bool
	// Checkers is how many nodes run the checker role with a checker licence (plain full nodes
	// first, then containers); 0: none, and containers pass their registration check by dev
	// autocheck. With checkers, a container is scheduled only once a checker passed it.
	Checkers int
	// Cheaters is how many containers cheat their checks, dealt the kinds of CheatKinds (default
	// Cheats) in turn.
	Cheaters   int
	CheatKinds []Cheat
	// Checker overrides the checker role's configuration (nil: DefaultChecker with a 10 s
	// recheck and a spot check every 3 epochs, fitting devnet's short epochs).
	Checker *CheckerConfig
	// Withhold, when set, is every node's Options.Withhold (tests: epochs that draw nobody).
	Withhold func(epoch uint64) bool
}

// devLedgerEpochs: a devnet's nodes keep every epoch's attestations of a run (hours of 10-second
// epochs), so that its summary compares whole runs (CheckOutcome).
const devLedgerEpochs = 1 << 12

// devBootstrapNodes start first; the others join through them.
const devBootstrapNodes = 4

func addrStrings(n *Node) []string {
	var out []string
	for _, a := range n.Net().Addrs() {
		out = append(out, a.String())
	}
	return out
}

// Location of a simulated container: a region code and a geohash.
type devLocation struct{ region, geohash string }

var devLocations = []devLocation{
	{"eu-west", "u09tvw"},      // Paris
	{"eu-central", "u33dc0"},   // Berlin
	{"us-east", "dr5reg"},      // New York
	{"us-west", "9q8yyk"},      // San Francisco
	{"ap-northeast", "xn76cy"}, // Tokyo
	{"sa-east", "6gyf4b"},      // São Paulo
}

var devApps = [][]string{{"demo"}, {"demo", "blender"}, {"demo", "unreal-city"}, {"demo", "blender", "comfyui"}}

// Devnet is a running devnet.
type Devnet struct {
	cfg      DevnetConfig
	Nodes    []*Node
	Light    *LightClient
	Registry *prometheus.Registry
	metrics  *http.Server
	adminAt  string
	tmp      string
	started  time.Time
	startDur time.Duration

	network     NetworkConfig
	networkFile string
	stakes      epoch.Allocation

	mu    sync.Mutex
	beats map[string]*pb.Heartbeat // latest heartbeat per container, as the first node carries them
	seen  map[string]time.Time
}

// StartDevnet starts the nodes: the first is the bootstrap peer and carries every region's
// heartbeats; the others join through it.
func StartDevnet(ctx context.Context, cfg DevnetConfig) (_ *Devnet, err error) {
	if cfg.Nodes < 2 {
		return nil, fmt.Errorf("%w: devnet needs at least 2 nodes", ErrConfig)
	}
	if cfg.ContainerEvery == 0 {
		cfg.ContainerEvery = 3
	}
	if cfg.RecordTTL == 0 {
		cfg.RecordTTL = 2 * time.Minute
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Epoch == 0 {
		cfg.Epoch = 10 * time.Second
	}
	if cfg.Committee == 0 {
		// Seats are drawn as a Poisson process: an epoch draws nobody with probability e^-k, and
		// then nobody matches for a whole epoch. Six seats make that one epoch in 400.
		cfg.Committee = uint32(max(6, cfg.Nodes/5))
	}
	if cfg.StreamFPS == 0 {
		cfg.StreamFPS = Default().Render.FPS // the devnet's containers keep the default
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string) {}
	}
	d := &Devnet{cfg: cfg, Registry: prometheus.NewRegistry(), beats: map[string]*pb.Heartbeat{}, seen: map[string]time.Time{}}
	d.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if cfg.Dir == "" {
		if d.tmp, err = os.MkdirTemp("", "rendermesh-devnet-*"); err != nil {
			return nil, err
		}
		cfg.Dir = d.tmp
		d.cfg.Dir = d.tmp
	}
	if cfg.Admin != "" {
		if err := d.serveMetrics(cfg.Admin); err != nil {
			return nil, err
		}
	}
	metrics := p2p.NewMetrics(d.Registry)
	d.started = time.Now()
	if err := d.allocate(); err != nil {
		return nil, err
	}

	// The bootstrap node first, then the rest in parallel, a few at a time.
	first, err := d.newNode(0, nil, metrics)
	if err != nil {
		return nil, err
	}
	if err := first.Start(ctx); err != nil {
		return nil, err
	}
	if cfg.Relay { // node 0 is the devnet's well-known relay
		d.network.Relays = addrStrings(first)[:1]
		if d.networkFile, err = WriteNetworkFiles(d.cfg.Dir, d.network, d.stakes); err != nil {
			return nil, err
		}
	}
	for _, r := range devLocations {
		if err := first.Net().SubscribeHeartbeats(r.region, d.observe); err != nil {
			return nil, err
		}
	}
	// A few bootstrap nodes, one after the other, then the rest in parallel through them.
	d.Nodes = make([]*Node, cfg.Nodes)
	d.Nodes[0] = first
	boot := addrStrings(first)
	for i := 1; i < min(devBootstrapNodes, cfg.Nodes); i++ {
		n, err := d.newNode(i, boot, metrics)
		if err == nil {
			d.Nodes[i] = n
			err = n.Start(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("devnet: start node %d: %w", i, err)
		}
		boot = append(boot, addrStrings(n)...)
	}
	errs := make([]error, cfg.Nodes)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := devBootstrapNodes; i < cfg.Nodes; i++ {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			n, err := d.newNode(i, boot, metrics)
			if err == nil {
				d.Nodes[i] = n
				err = n.Start(ctx)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("devnet: start nodes: %w", err)
	}
	d.startDur = time.Since(d.started)
	cfg.Progress(fmt.Sprintf("%d nodes started in %s", cfg.Nodes, d.startDur.Round(time.Millisecond)))

	d.Light, err = NewLightClient(ctx, LightOptions{Bootstrap: boot, Metrics: metrics, Logger: cfg.Logger.With("light", true)})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// allocate creates every node's identity ahead, gives each node stake (varied, so that weights
// differ) and fixes the devnet's genesis a little after the first nodes are up: nodes that start
// later catch up by importing committee records, as a late joiner does.
func (d *Devnet) allocate() error {
	var alloc epoch.Allocation
	for i := range d.cfg.Nodes {
		dir := filepath.Join(d.cfg.Dir, fmt.Sprintf("node-%03d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		key, err := LoadOrCreateIdentity(filepath.Join(dir, IdentityFile), nil)
		if err != nil {
			return err
		}
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			return err
		}
		stake := new(big.Int).Mul(big.NewInt(int64(1000+500*(i%4))), big.NewInt(1e18))
		c, err := NewCandidate(id, stake, 1_000_000)
		if err != nil {
			return err
		}
		c.Checker = d.isChecker(i)
		alloc = append(alloc, c)
	}
	var err error
	if d.stakes, err = SortAllocation(alloc); err != nil {
		return err
	}
	seed := sha256.Sum256(fmt.Appendf(nil, "rendermesh devnet %d", d.started.UnixNano()))
	d.network = DefaultNetwork()
	delay := devGenesisDelay + time.Duration(d.cfg.Nodes)*devGenesisPerNode
	d.network.GenesisTime = d.started.Add(delay).UTC().Format(time.RFC3339Nano)
	d.network.GenesisSeed = hex.EncodeToString(seed[:])
	d.network.EpochLength = Duration(d.cfg.Epoch)
	d.network.CommitteeSize = d.cfg.Committee
	d.network.Grace = Duration(d.cfg.Epoch / 5)
	d.networkFile, err = WriteNetworkFiles(d.cfg.Dir, d.network, d.stakes)
	return err
}

// NetworkFile is the devnet's genesis as a configuration file (with allocation.toml beside it), for
// `rendermesh indexers --config`.
func (d *Devnet) NetworkFile() string { return d.networkFile }

// Network is the devnet's network configuration (its genesis).
func (d *Devnet) Network() NetworkConfig { return d.network }

// Stakes is the devnet's allocation.
func (d *Devnet) Stakes() epoch.Allocation { return d.stakes }

// The devnet's epoch 0 starts devGenesisDelay plus devGenesisPerNode per node after StartDevnet
// begins, so that the nodes usually follow from genesis.
const (
	devGenesisDelay   = 2 * time.Second
	devGenesisPerNode = 250 * time.Millisecond
)

// EpochStats is what the devnet's nodes agree on about the committee that serves the current
// epoch: the epoch's own or, when it drew nobody, the last one that drew someone (Tracker.Serving).
type EpochStats struct {
	Epoch     uint64
	Indexers  int     // committee members in the most common view
	Agreement float64 // share of nodes whose view is the most common one
	DrawnIn   uint64  // the epoch the most common view's committee was drawn for
}

// Epochs compares the nodes' views of the committee that serves the current epoch.
func (d *Devnet) Epochs() EpochStats {
	var st EpochStats
	views := map[string]int{}
	sizes := map[string]int{}
	drawn := map[string]uint64{}
	total := 0
	for _, n := range d.Nodes {
		tr := n.Epochs()
		if tr == nil {
			continue
		}
		st.Epoch = tr.Schedule().Epoch(time.Now())
		_, from := tr.Serving(st.Epoch)
		dg, size := tr.Digest(from)
		dg = fmt.Sprintf("%d/%s", from, dg)
		views[dg]++
		sizes[dg] = size
		drawn[dg] = from
		total++
	}
	best := ""
	for dg, c := range views {
		if best == "" || c > views[best] || (c == views[best] && dg < best) {
			best = dg
		}
	}
	if total > 0 {
		st.Indexers, st.Agreement, st.DrawnIn = sizes[best], float64(views[best])/float64(total), drawn[best]
	}
	return st
}

func (d *Devnet) isContainer(i int) bool { return i > 0 && i%d.cfg.ContainerEvery != 0 }

// isChecker: the first Checkers nodes after node 0, plain full nodes first, then containers.
func (d *Devnet) isChecker(i int) bool {
	if i == 0 || d.cfg.Checkers <= 0 {
		return false
	}
	var plain, conts []int
	for j := 1; j < d.cfg.Nodes; j++ {
		if d.isContainer(j) {
			conts = append(conts, j)
		} else {
			plain = append(plain, j)
		}
	}
	order := append(plain, conts...)
	return slices.Contains(order[:min(d.cfg.Checkers, len(order))], i)
}

// cheat is node i's cheat: the last Cheaters containers cheat, in the order of Cheats.
func (d *Devnet) cheat(i int) Cheat {
	if !d.isContainer(i) || d.cfg.Cheaters <= 0 {
		return CheatNone
	}
	var conts []int
	for j := 1; j < d.cfg.Nodes; j++ {
		if d.isContainer(j) {
			conts = append(conts, j)
		}
	}
	k := slices.Index(conts, i) - (len(conts) - d.cfg.Cheaters)
	if k < 0 {
		return CheatNone
	}
	kinds := d.cfg.CheatKinds
	if len(kinds) == 0 {
		kinds = Cheats
	}
	return kinds[k%len(kinds)]
}

func (d *Devnet) newNode(i int, boot []string, metrics *p2p.Metrics) (*Node, error) {
	cfg := Default()
	cfg.DataDir = filepath.Join(d.cfg.Dir, fmt.Sprintf("node-%03d", i))
	cfg.Admin.Listen = ""
	if i == 0 {
		cfg.Admin.Listen = d.cfg.Web
	}
	cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.P2P.Bootstrap = boot
	cfg.P2P.ConnLow, cfg.P2P.ConnHigh = 32, 96
	cfg.P2P.ResourceMemory, cfg.P2P.ResourceFDs = 128, 256
	if i < devBootstrapNodes { // every other node joins through these: give them room
		cfg.P2P.ConnLow, cfg.P2P.ConnHigh = 128, 512
		cfg.P2P.ResourceMemory, cfg.P2P.ResourceFDs = 1024, 4096
	}
	cfg.Container.RecordTTL = Duration(d.cfg.RecordTTL)
	cfg.Container.HeartbeatInterval = Duration(d.cfg.Heartbeat)
	cfg.Render.Loopback = true // every node is on this machine
	if i == 0 && d.cfg.Relay {
		cfg.Relay = RelayConfig{Enabled: true, Listen: "127.0.0.1:0", PublicIP: "127.0.0.1", MaxTTL: Duration(2 * time.Hour)}
	}
	cfg.Network = d.network
	opts := Options{
		Stakes:         d.stakes,
		Logger:         d.cfg.Logger.With("node", i),
		Registry:       d.Registry,
		Metrics:        metrics,
		SmallDatastore: true,
		LoopbackNet:    true,
		LedgerEpochs:   devLedgerEpochs,
		Withhold:       d.cfg.Withhold,
	}
	if d.isContainer(i) {
		k := i - i/d.cfg.ContainerEvery // index among containers
		profiles := container.Profiles()
		prof := profiles[k%len(profiles)]
		loc := devLocations[(k/len(profiles)+k)%len(devLocations)]
		cfg.Roles = []string{RoleContainer}
		cfg.Container.Region, cfg.Container.Geohash = loc.region, loc.geohash
		cfg.Container.Apps = devApps[k%len(devApps)]
		cfg.Container.SessionFee = FormatAmount(uint64(100_000 + 25_000*(k%9)))
		cfg.Container.DevAutoCheck = d.cfg.Checkers <= 0
		opts.Probe = container.NewSimulatedProbe(prof, int64(i))
		opts.Cheat = d.cheat(i)
	}
	if d.isChecker(i) {
		cfg.Roles = append(cfg.Roles, RoleChecker)
		if d.cfg.Checker != nil {
			cfg.Checker = *d.cfg.Checker
		} else {
			cfg.Checker.Recheck = Duration(10 * time.Second)
			cfg.Checker.RandomEvery = 3
		}
	}
	return New(cfg, opts)
}

func (d *Devnet) observe(hb *pb.Heartbeat) {
	id := peerIDString(hb.PeerId)
	d.mu.Lock()
	d.beats[id] = hb
	d.seen[id] = time.Now()
	d.mu.Unlock()
}

func (d *Devnet) serveMetrics(addr string) error {
	ln, err := listenTCP(addr)
	if err != nil {
		return fmt.Errorf("devnet: metrics listener %s: %w: choose another --admin address, or --admin '' to disable it", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	d.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	d.adminAt = ln.Addr().String()
	go d.metrics.Serve(ln)
	return nil
}

// MetricsAddr is where /metrics is served, "" when disabled.
func (d *Devnet) MetricsAddr() string { return d.adminAt }

// Containers returns the peer IDs of the container nodes.
func (d *Devnet) Containers() []string {
	var out []string
	for i, n := range d.Nodes {
		if d.isContainer(i) && n != nil {
			out = append(out, n.Net().ID().String())
		}
	}
	return out
}

// Queries returns the capability queries a light client runs against the devnet: every GPU model
// of the simulated profiles, every region at a three-character geohash prefix, and every app.
func (d *Devnet) Queries() []consumer.Query {
	var qs []consumer.Query
	seen := map[string]bool{}
	add := func(q consumer.Query) {
		k := q.GPU + "|" + q.Region + "|" + q.App
		if !seen[k] {
			seen[k] = true
			qs = append(qs, q)
		}
	}
	for i, n := range d.Nodes {
		if !d.isContainer(i) {
			continue
		}
		c := n.Container()
		for _, m := range container.GPUModels(c.Hardware()) {
			add(consumer.Query{GPU: m})
		}
		gh, _ := n.cfg.Container.Location()
		add(consumer.Query{Region: gh[:3]})
		for _, a := range n.cfg.Container.Apps {
			add(consumer.Query{App: a})
		}
	}
	return qs
}

// QueryStats accumulates light-client query results.
type QueryStats struct {
	Latencies []time.Duration
	Found     map[string]bool
	Failed    int
}

// RunQueries runs each query once from the light client and adds to st.
func (d *Devnet) RunQueries(ctx context.Context, qs []consumer.Query, st *QueryStats) {
	if st.Found == nil {
		st.Found = map[string]bool{}
	}
	for _, q := range qs {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		found, _, err := d.Light.Find(qctx, q)
		el := time.Since(start)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			st.Failed++
			continue
		}
		st.Latencies = append(st.Latencies, el)
		for _, f := range found {
			st.Found[f.PeerID] = true
		}
	}
}

// WaitConverged runs query rounds until the light client finds every container, and returns how long
// after the devnet's start that happened.
func (d *Devnet) WaitConverged(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	want := d.Containers()
	qs := d.Queries()
	for {
		var st QueryStats
		d.RunQueries(ctx, qs, &st)
		missing := 0
		for _, id := range want {
			if !st.Found[id] {
				missing++
			}
		}
		if missing == 0 {
			return time.Since(d.started), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(d.started), fmt.Errorf("devnet: not converged after %s: %d of %d containers not found", timeout, missing, len(want))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// devOfflineAfter is how many heartbeat intervals without one make the devnet count a container
// offline: five, so that a machine overloaded by a whole network (and a race detector) does not
// show containers offline that merely gossip late.
const devOfflineAfter = 5

// States counts containers per dashboard group, from the heartbeats the first node carries: a
// container not heard from for devOfflineAfter heartbeat intervals is offline.
func (d *Devnet) States() map[container.Group]int {
	out := map[container.Group]int{container.GroupReady: 0, container.GroupBusy: 0, container.GroupOffline: 0, container.GroupSettingUp: 0}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range d.Containers() {
		hb, ok := d.beats[id]
		if !ok || time.Since(d.seen[id]) > devOfflineAfter*d.cfg.Heartbeat {
			out[container.GroupOffline]++
			continue
		}
		out[container.GroupOf(hb.State)]++
	}
	return out
}

// StartDuration is how long starting every node took.
func (d *Devnet) StartDuration() time.Duration { return d.startDur }

// Close stops every node and removes a temporary directory.
func (d *Devnet) Close() error {
	var errs []error
	if d.Light != nil {
		errs = append(errs, d.Light.Close())
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, n := range d.Nodes {
		if n != nil {
			wg.Go(func() {
				err := n.Close()
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if d.metrics != nil {
		d.metrics.Close()
	}
	if d.tmp != "" {
		errs = append(errs, os.RemoveAll(d.tmp))
	}
	return errors.Join(errs...)
}

// Percentile returns the p-th percentile (0..100) of ds by nearest rank.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}

// RSSBytes is the process's resident set size (Linux), 0 when unknown.
func RSSBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, rss uint64
	if _, err := fmt.Sscan(string(b), &size, &rss); err != nil {
		return 0
	}
	return rss * uint64(os.Getpagesize())
}

// Goroutines is the number of goroutines.
func Goroutines() int { return runtime.NumGoroutine() }
