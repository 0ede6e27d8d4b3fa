// Package node builds and runs one rendermesh node. It is the one place that wires the system: it
// owns the data directory (lock, identity, datastore), builds the p2p layer from the configuration,
// starts the roles the node runs on top of it, and serves the admin HTTP endpoints. Nothing below
// node imports it.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
	"github.com/rendermesh/rendermesh/roles/epoch"
	"github.com/rendermesh/rendermesh/roles/session"
)

// Version is the agent version; the build sets it with -ldflags.
var Version = "0.1.0-dev"

// Options inject what does not come from the configuration: shared state when many nodes run in one
// process (devnet, simnet, tests) and test seams.
type Options struct {
	Clock  clock.Clock
	Logger *slog.Logger
	// Registry collects metrics; nil: a new one per node. Nodes in one process share one.
	Registry *prometheus.Registry
	// Metrics of the p2p layer, shared with Registry when several nodes share it.
	Metrics *p2p.Metrics
	// NoHostMetrics leaves libp2p's own metrics out of Registry (simnet): they are process-wide,
	// so with many nodes in one process they would add every node's figures together.
	NoHostMetrics bool
	// Probe replaces the NVML probe (simulated hardware in devnet, mocks in tests).
	Probe container.Probe
	// SmallDatastore trims pebble's memory for many nodes in one process.
	SmallDatastore bool
	// ScoreWhitelist exempts loopback from gossipsub's colocation penalty (devnet, tests).
	LoopbackNet bool
	// RoutingRefresh overrides the DHT routing-table refresh period.
	RoutingRefresh time.Duration

	// Key and Datastore, given together, make an in-memory node (simnet): the identity and the
	// datastore come from the caller, and the data directory is neither locked nor touched.
	Key       crypto.PrivKey
	Datastore ds.Batching
	// Transports replace the default TCP and QUIC transports (simnet: QUIC over simulated links).
	Transports []libp2p.Option
	// ScoreInspect, when positive, snapshots gossipsub peer scores at this period (simnet's flood metrics).
	ScoreInspect time.Duration
	// Stakes replaces the network's allocation file as the sortition's stake source (devnet, simnet).
	Stakes epoch.StakeSource
	// ReceiptInterval replaces the minute between a session's usage receipts (tests).
	ReceiptInterval time.Duration
	// OnAttestation sees every attestation the node accepts, with its Merkle leaf and when it
	// arrived (simnet's delivery metrics).
	OnAttestation func(a *pb.Attestation, leaf [32]byte, at time.Time)
	// Cheat makes a container cheat its checks (devnet and simnet cheaters; see Cheat). Never set
	// from configuration.
	Cheat Cheat
	// Load reads this machine's load while the node checks a container (nil: RuntimeLoad; the
	// simnet's nodes, on simulated time, use SimulatedLoad).
	Load LoadProbe
	// LedgerEpochs is how many epochs the attestation ledger keeps (0: 8, what settlement needs).
	// Devnets keep every epoch of a run, so that their summaries compare whole runs.
	LedgerEpochs int
	// Withhold makes the node keep its indexer draws for the epochs it returns true for to itself:
	// the withholding winner of docs/EPOCHS.md, and how tests make an epoch that draws nobody.
	// Never set from configuration.
	Withhold func(epoch uint64) bool
}

// ledgerEpochs is how many epochs the node's attestation ledger keeps.
func (o Options) ledgerEpochs() uint64 {
	if o.LedgerEpochs > 0 {
		return uint64(o.LedgerEpochs)
	}
	return defaultLedgerEpochs
}

func (o Options) inMemory() bool { return o.Key != nil && o.Datastore != nil }

// Node is a running rendermesh node.
type Node struct {
	cfg     Config
	opts    Options
	log     *slog.Logger
	lock    *dirLock
	store   *dsHandle
	net     *p2p.Net
	cont    *container.Container
	renders renders
	web     webSessions
	relay   *relaySvc
	probe   container.Probe
	admin   *adminServer
	ep      *epochs
	idx     *indexerSvc
	chk     *checkerSvc

	receipts      receiptSink // co-signed usage receipts of the container's sessions
	closeReceipts func() error

	ctx    context.Context // ends at Close: background work of the node itself
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// dsHandle is the node's datastore as the DHT and the roles see it. Closing it waits for the
// operations in flight and fails later ones with errDatastoreClosed: a DHT stream handler still
// running when the host closes must get an error, not write into a closed pebble (which panics).
type dsHandle struct {
	ds.Batching
	closeFn func() error

	mu     sync.RWMutex
	closed bool
}

var errDatastoreClosed = errors.New("node: datastore closed")

func newDSHandle(d ds.Batching, closeFn func() error) *dsHandle {
	return &dsHandle{Batching: d, closeFn: closeFn}
}

// do runs op unless the datastore is closed.
func (h *dsHandle) do(op func() error) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return errDatastoreClosed
	}
	return op()
}

func (h *dsHandle) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	return h.closeFn()
}

func (h *dsHandle) Get(ctx context.Context, k ds.Key) (v []byte, err error) {
	err = h.do(func() error { v, err = h.Batching.Get(ctx, k); return err })
	return v, err
}

func (h *dsHandle) Has(ctx context.Context, k ds.Key) (ok bool, err error) {
	err = h.do(func() error { ok, err = h.Batching.Has(ctx, k); return err })
	return ok, err
}

func (h *dsHandle) GetSize(ctx context.Context, k ds.Key) (n int, err error) {
	err = h.do(func() error { n, err = h.Batching.GetSize(ctx, k); return err })
	return n, err
}

func (h *dsHandle) Query(ctx context.Context, q dsq.Query) (r dsq.Results, err error) {
	err = h.do(func() error { r, err = h.Batching.Query(ctx, q); return err })
	return r, err
}

func (h *dsHandle) Put(ctx context.Context, k ds.Key, v []byte) error {
	return h.do(func() error { return h.Batching.Put(ctx, k, v) })
}

func (h *dsHandle) Delete(ctx context.Context, k ds.Key) error {
	return h.do(func() error { return h.Batching.Delete(ctx, k) })
}

func (h *dsHandle) Sync(ctx context.Context, prefix ds.Key) error {
	return h.do(func() error { return h.Batching.Sync(ctx, prefix) })
}

func (h *dsHandle) Batch(ctx context.Context) (b ds.Batch, err error) {
	err = h.do(func() error { b, err = h.Batching.Batch(ctx); return err })
	if err != nil {
		return nil, err
	}
	return guardedBatch{b, h}, nil
}

// guardedBatch commits only while the datastore is open.
type guardedBatch struct {
	ds.Batch
	h *dsHandle
}

func (b guardedBatch) Commit(ctx context.Context) error {
	return b.h.do(func() error { return b.Batch.Commit(ctx) })
}

// Close is close: the node closes its datastore itself, after the network.
func (h *dsHandle) Close() error { return h.close() }

// New validates cfg, takes the data directory, loads (or creates) the identity, opens the datastore
// and builds the p2p layer and roles. Start joins the network.
func New(cfg Config, opts Options) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = clock.New()
	}
	if opts.Logger == nil {
		if opts.Logger, err = newLogger(cfg.Log, os.Stderr); err != nil {
			return nil, err
		}
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if opts.Metrics == nil {
		opts.Metrics = p2p.NewMetrics(opts.Registry)
	}
	n := &Node{cfg: cfg, opts: opts, log: opts.Logger}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	key := opts.Key
	if opts.inMemory() {
		n.store = newDSHandle(opts.Datastore, func() error { return nil })
	} else {
		if n.lock, err = lockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
		if key, err = LoadOrCreateIdentity(filepath.Join(cfg.DataDir, IdentityFile), nil); err != nil {
			return nil, err
		}
		cache := int64(64 << 20)
		if opts.SmallDatastore {
			cache = 1 << 20
		}
		pds, err := openDatastore(cfg.DataDir, cache, opts.SmallDatastore)
		if err != nil {
			return nil, err
		}
		n.store = newDSHandle(pds, pds.Close)
	}
	if n.net, err = n.newNet(key); err != nil {
		return nil, err
	}
	n.log = n.log.With("peer", n.net.ID().ShortString())
	if cfg.Network.Elections() {
		if n.ep, err = n.newEpochs(key); err != nil {
			return nil, err
		}
		if n.ep.sk != nil {
			n.idx = n.newIndexer(n.ep)
		}
		if n.chk, err = n.newChecker(); err != nil {
			return nil, err
		}
	}
	if cfg.HasRole(RoleContainer) {
		if err := n.newContainer(); err != nil {
			return nil, err
		}
		if opts.inMemory() {
			n.receipts = &memReceipts{}
		} else {
			l, err := session.Open(filepath.Join(cfg.DataDir, ReceiptsFile))
			if err != nil {
				return nil, fmt.Errorf("open usage receipts: %w", err)
			}
			n.receipts, n.closeReceipts = l, l.Close
		}
	}
	return n, nil
}

func (n *Node) newNet(key crypto.PrivKey) (*p2p.Net, error) {
	boot, err := p2p.ParseAddrInfos(n.cfg.P2P.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("%w: bootstrap: %v", ErrConfig, err)
	}
	pc := p2p.Config{
		Key:               key,
		Listen:            n.cfg.P2P.Listen,
		Announce:          n.cfg.P2P.Announce,
		Bootstrap:         boot,
		Datastore:         n.store,
		ConnLow:           n.cfg.P2P.ConnLow,
		ConnHigh:          n.cfg.P2P.ConnHigh,
		ResourceMemory:    int64(n.cfg.P2P.ResourceMemory) << 20,
		ResourceFDs:       n.cfg.P2P.ResourceFDs,
		RoutingRefresh:    n.opts.RoutingRefresh,
		HeartbeatInterval: time.Duration(n.cfg.Container.HeartbeatInterval),
		Transports:        n.opts.Transports,
		ScoreInspect:      n.opts.ScoreInspect,
		UserAgent:         "rendermesh/" + Version,
		Clock:             n.opts.Clock,
		Logger:            n.log.With("sub", "p2p"),
		Registerer:        n.opts.Registry,
		NoHostMetrics:     n.opts.NoHostMetrics,
		Metrics:           n.opts.Metrics,
	}
	if n.opts.LoopbackNet {
		_, loop, _ := net.ParseCIDR("127.0.0.0/8")
		pc.ScoreWhitelist = append(pc.ScoreWhitelist, loop)
	}
	return p2p.New(pc)
}

func (n *Node) newContainer() error {
	cc := n.cfg.Container
	n.probe = n.opts.Probe
	if n.probe == nil {
		nv := container.NewNVMLProbe(nil)
		if _, err := nv.Hardware(); err != nil {
			return err
		}
		if reason := nv.Reason(); reason != nil {
			n.log.Warn("no GPU: this container advertises CPU-only software rendering", "reason", reason)
		}
		n.probe = nv
	}
	if n.opts.Cheat != CheatNone {
		n.probe = cheatProbe(n.opts.Cheat, n.probe)
	}
	fee, _ := ParseAmount(cc.SessionFee)
	gh, ll := cc.Location()
	id := n.net.ID()
	c, err := container.New(container.Config{
		PeerID:  []byte(id),
		Addrs:   n.addrBytes,
		Probe:   n.probe,
		Region:  cc.Region,
		Geohash: gh,
		LatLon:  ll,
		Apps:    cc.Apps,
		Fee:     fee,
		Version: "rendermesh/" + Version,

		RecordTTL:         time.Duration(cc.RecordTTL),
		ProvideInterval:   time.Duration(cc.ProvideInterval),
		HeartbeatInterval: time.Duration(cc.HeartbeatInterval),
		AutoCheck:         cc.DevAutoCheck,
		Clock:             n.opts.Clock,
		Logger:            n.log.With("role", "container"),
	}, containerNet{n.net}, kvStore{d: n.store, prefix: "/node"})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	n.cont = c
	return nil
}

func (n *Node) addrBytes() [][]byte {
	var out [][]byte
	for _, a := range n.net.Host().Addrs() {
		out = append(out, a.Bytes())
	}
	return out
}

// Start joins the network through the bootstrap peers (within the bootstrap timeout), starts the
// roles and the admin listener.
func (n *Node) Start(ctx context.Context) error {
	if n.cfg.Admin.Listen != "" {
		a, err := startAdmin(n.cfg.Admin.Listen, n)
		if err != nil {
			return err
		}
		n.admin = a
	}
	began := time.Now()
	bctx, cancel := context.WithTimeout(ctx, time.Duration(n.cfg.P2P.BootstrapTimeout))
	err := n.net.Bootstrap(bctx)
	cancel()
	if err != nil {
		return err
	}
	regions := append([]string(nil), n.cfg.P2P.ServeRegions...)
	if n.cont != nil {
		regions = append(regions, n.cfg.Container.Region)
	}
	for _, r := range dedupe(regions) {
		if err := n.net.CarryHeartbeats(r); err != nil {
			return err
		}
	}
	if n.cfg.Relay.Enabled {
		r, err := n.startRelay(n.ctx)
		if err != nil {
			return err
		}
		n.relay = r
	}
	if n.ep != nil {
		if err := n.ep.start(n.ctx, &n.wg); err != nil {
			return err
		}
		if n.idx != nil {
			n.idx.start(n.ctx, &n.wg)
		}
		if err := n.chk.start(n.ctx, &n.wg); err != nil {
			return err
		}
	}
	if n.cont != nil {
		n.startContainerProtocols()
	}
	if n.cont != nil && n.ep != nil {
		// A container is reserved only by the active indexers: it starts advertising once it can
		// tell them, i.e. once it has imported the committees it missed (a few DHT lookups).
		t := time.NewTimer(catchUpWait)
		select {
		case <-n.ep.ready:
		case <-t.C:
			n.log.Warn("still catching up with the indexer elections; advertising the container anyway: reservations are refused until it has", "waited", catchUpWait)
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
	joined := time.Now()
	if n.cont != nil {
		if err := n.cont.Start(ctx); err != nil {
			return err
		}
	}
	n.log.Info("node started", "join", joined.Sub(began).Round(time.Millisecond),
		"roles_start", time.Since(joined).Round(time.Millisecond), "id", n.net.ID().String(), "addrs", n.net.Addrs(), "roles", n.cfg.Roles,
		"admin", n.AdminAddr())
	return nil
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// Run starts the node and runs it until ctx ends, then closes it.
func (n *Node) Run(ctx context.Context) error {
	if err := n.Start(ctx); err != nil {
		n.Close()
		return err
	}
	<-ctx.Done()
	n.log.Info("stopping")
	return n.Close()
}

// Close stops the roles, the admin listener and the network, closes the datastore and releases the
// data directory. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		n.cancel()
		n.wg.Wait()
		n.relay.close()
		if n.cont != nil {
			n.cont.Stop()
		}
		if n.admin != nil {
			errs = append(errs, n.admin.close())
		}
		if n.net != nil {
			errs = append(errs, n.net.Close())
		}
		if n.closeReceipts != nil {
			errs = append(errs, n.closeReceipts())
		}
		if n.probe != nil && n.opts.Probe == nil {
			errs = append(errs, n.probe.Close())
		}
		if n.store != nil {
			errs = append(errs, n.store.close())
		}
		errs = append(errs, n.lock.release())
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

func (n *Node) receiptInterval() time.Duration {
	if n.opts.ReceiptInterval > 0 {
		return n.opts.ReceiptInterval
	}
	if d := time.Duration(n.cfg.Container.ReceiptInterval); d > 0 {
		return d
	}
	return ReceiptInterval
}

// catchUpWait bounds how long a container waits at start for the elections to catch up: a few
// committee imports. Beyond it the container advertises anyway; indexers it cannot verify yet get
// not_indexer, which they and their consumers treat as a retry.
const catchUpWait = 5 * time.Second

// Net is the node's p2p layer.
func (n *Node) Net() *p2p.Net { return n.net }

// Container is the container role, nil when the node does not run it.
func (n *Node) Container() *container.Container { return n.cont }

// AdminAddr is the admin listener's address, "" when disabled.
func (n *Node) AdminAddr() string {
	if n.admin == nil {
		return ""
	}
	return n.admin.addr()
}
