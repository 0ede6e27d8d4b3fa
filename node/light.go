package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/libp2p/go-libp2p/core/peer"
	"log/slog"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/roles/consumer"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// providerAddrTTL is how long a light client remembers providers' addresses.
const providerAddrTTL = 10 * time.Minute

// LightClient is a consumer's light node: a DHT client with an ephemeral identity and no datastore
// of its own, that finds containers without serving the network.
type LightClient struct {
	net    *p2p.Net
	quorum int
	clock  clock.Clock
	log    *slog.Logger

	mu       sync.Mutex
	cached   []*epoch.Ticket // the committee verified last, of epoch cachedAt of network cacheKey
	cachedAt uint64
	cacheKey string
	// seed and checkers are epoch cachedAt's verified beacon seed and licensed checkers (sorted raw
	// peer IDs): a consumer that shares its session statistics sends them to the container's
	// assigned checker.
	seed     epoch.Seed
	seeded   bool
	checkers []string
	// sealed holds the sealed committee records fetched so far, of network sealedKey.
	sealed    map[uint64][]epoch.ImportedTicket
	sealedKey string
	hist      historyBuf // records read from full nodes' history, not imported yet
	// ckpt is the checkpoint of the last walk verified (of network ckptKey): the next walk starts
	// from it. stateDir, if set, keeps it across runs (lightstate.go).
	ckpt     *epoch.Checkpoint
	ckptKey  string
	stateDir string
	// walkedFrom is where the last walk started: a checkpoint's epoch, or 0 from genesis.
	walkedFrom uint64
}

// LightOptions configure a light client.
type LightOptions struct {
	Bootstrap []string // full multiaddrs of peers to join through (required)
	Timeout   time.Duration
	Logger    *slog.Logger
	Clock     clock.Clock
	Metrics   *p2p.Metrics
	// Quorum is how many peers' answers a record fetch waits for (the newest wins); 0: 2.
	Quorum int
	// StateDir, if set, is where the client keeps a checkpoint of the epochs it verified, so that
	// a later run verifies only the epochs since (it must exist).
	StateDir string
}

// NewLightClient joins the network through the bootstrap peers in client mode.
func NewLightClient(ctx context.Context, o LightOptions) (*LightClient, error) {
	if len(o.Bootstrap) == 0 {
		return nil, fmt.Errorf("%w: a light client needs bootstrap peers: set --bootstrap /ip4/.../tcp/.../p2p/<peer ID>", ErrConfig)
	}
	boot, err := p2p.ParseAddrInfos(o.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("%w: bootstrap: %v", ErrConfig, err)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	n, err := p2p.New(p2p.Config{
		Key:       key,
		Bootstrap: boot,
		Client:    true,
		Datastore: dssync.MutexWrap(ds.NewMapDatastore()),
		ConnLow:   16, ConnHigh: 64,
		ResourceMemory: 128 << 20, ResourceFDs: 256,
		UserAgent: "rendermesh-light/" + Version,
		Clock:     o.Clock,
		Logger:    o.Logger,
		Metrics:   o.Metrics,
	})
	if err != nil {
		return nil, err
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	bctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := n.Bootstrap(bctx); err != nil {
		n.Close()
		return nil, err
	}
	q := o.Quorum
	if q == 0 {
		q = 2
	}
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	return &LightClient{net: n, quorum: q, clock: o.Clock, log: o.Logger, stateDir: o.StateDir}, nil
}

// Find resolves a capability query.
func (l *LightClient) Find(ctx context.Context, q consumer.Query) ([]consumer.Found, consumer.Stats, error) {
	return consumer.Find(ctx, lookupNet{n: l.net, quorum: l.quorum}, q)
}

// Indexers finds the current epoch's indexers and verifies their tickets before trusting them. A
// light client does not follow gossip, so it verifies the beacon itself: from the genesis seed it
// imports every epoch's sealed committee record, checking each ticket's VRF proof, weight and seats,
// and derives each next seed, up to the current epoch (the current epoch's record may still be
// unsealed). stakes nil: the network's allocation file. The records of epochs that ended a while
// ago come from full nodes' history, 64 epochs a request; the last ones from the DHT. A walk starts
// from the checkpoint the last one left (in memory, or in LightOptions.StateDir), else from genesis.
func (l *LightClient) Indexers(ctx context.Context, nc NetworkConfig, stakes epoch.StakeSource) ([]*epoch.Ticket, error) {
	if !nc.Elections() {
		return nil, fmt.Errorf("%w: network.genesis_time is not set: this network holds no elections", ErrConfig)
	}
	if stakes == nil && nc.Allocation != "" {
		a, err := LoadAllocation(nc.Allocation)
		if err != nil {
			return nil, err
		}
		stakes = a
	}
	cfg, err := nc.EpochConfig(stakes)
	if err != nil {
		return nil, err
	}
	now := l.clock.Now()
	cur := cfg.Schedule.Epoch(now)
	// Within one epoch the committee verified first is reused: a sealed set does not change. (The
	// current epoch's record may have been unsealed; a consumer that misses a late indexer loses
	// nothing but the choice.)
	l.mu.Lock()
	defer l.mu.Unlock()
	key := nc.id()
	if l.cacheKey == key && l.cachedAt == cur && len(l.cached) > 0 {
		return l.cached, nil
	}
	// The walk starts from the checkpoint of the last one (this process's or, with a state
	// directory, an earlier run's), else from genesis.
	cp, fromCheckpoint := l.loadCheckpoint(key, cur)
	var tr *epoch.Tracker
	if fromCheckpoint {
		if cur-cp.Epoch > MaxCatchUp {
			return nil, fmt.Errorf("epoch %d: verifying more than %d epochs from the checkpoint of epoch %d needs a newer checkpoint", cur, MaxCatchUp, cp.Epoch)
		}
		if tr, err = epoch.NewTrackerFrom(cfg, now, cp); err != nil {
			l.log.Warn("epoch checkpoint refused: verifying from genesis", "err", err)
			fromCheckpoint = false
		}
	}
	l.walkedFrom = cp.Epoch
	if !fromCheckpoint {
		l.walkedFrom = 0
		if cur > MaxCatchUp {
			return nil, fmt.Errorf("epoch %d: verifying more than %d epochs from genesis needs a checkpoint", cur, MaxCatchUp)
		}
		if tr, err = epoch.NewTracker(cfg, now); err != nil {
			return nil, err
		}
	}
	tr.Advance(now) // epoch 0 needs no import (a checkpoint of epoch 0 included)
	// Sealed records fetched are kept until a checkpoint passes them, so that a walk that failed
	// half-way does not fetch them again. The current epoch's record may be unsealed: it is used,
	// never kept.
	if l.sealedKey != key {
		l.sealed, l.sealedKey, l.hist = map[uint64][]epoch.ImportedTicket{}, key, historyBuf{}
	}
	for {
		e, ok := tr.NeedImport(now)
		if !ok {
			break
		}
		tickets, ok := l.sealed[e]
		if !ok && e+historyLag <= cur { // ended a while ago: full nodes' history, in batches
			var err error
			if tickets, ok, err = l.hist.take(ctx, l.net, tr, e); ok {
				l.sealed[e] = tickets
			} else if ctx.Err() != nil {
				return nil, fmt.Errorf("indexers: committee of epoch %d: %w", e, ctx.Err())
			} else {
				l.log.Debug("committee history not found; trying the DHT", "epoch", e, "err", err)
			}
		}
		if !ok {
			rec, opened, err := l.net.Committee(ctx, e, l.quorum)
			if err != nil {
				return nil, fmt.Errorf("indexers: committee of epoch %d: %w", e, err)
			}
			if !rec.Sealed && e != cur {
				return nil, fmt.Errorf("indexers: no sealed committee record for epoch %d", e)
			}
			tickets = imported(opened)
			if rec.Sealed {
				l.sealed[e] = tickets
			}
		}
		if _, err := tr.ImportSealed(e, tickets); err != nil {
			delete(l.sealed, e)
			return nil, err
		}
	}
	l.saveCheckpoint(key, tr, cur)
	for e := range l.sealed {
		if e < cur {
			delete(l.sealed, e) // behind the checkpoint now
		}
	}
	// The running epoch's committee as the full nodes hold it: the sealed record leaves out the
	// tickets that came after the epoch began, and epoch 0's is empty (its tickets are drawn at
	// genesis), so a client would find no indexer for the whole first epoch. Every ticket is
	// verified against the seed the walk derived, as a full node verifies one from gossip.
	if peers := l.net.HistoryPeers(livePeers, int(cur)); len(peers) > 0 {
		if added := addLive(ctx, l.net, tr, peers, cur, l.clock, l.log, nil); added > 0 {
			l.log.Debug("tickets from full nodes' live committees", "epoch", cur, "added", added)
		}
	}
	serving, _ := tr.Serving(cur) // an epoch that drew nobody: the last committee serves on
	l.cached, l.cachedAt, l.cacheKey = serving, cur, key
	l.seed, l.seeded = tr.Seed(cur)
	l.checkers = licensedCheckers(tr.Candidates(cur))
	return l.cached, nil
}

// assignedChecker is the first checker the epoch's seed assigns to container, for the epoch whose
// committee the client verified last (Indexers must have run).
func (l *LightClient) assignedChecker(container string) (peer.ID, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.seeded {
		return "", errors.New("no verified epoch seed: find the indexers first")
	}
	a := AssignedCheckers(l.seed, container, l.checkers, 1)
	if len(a) == 0 {
		return "", fmt.Errorf("no licensed checker in epoch %d", l.cachedAt)
	}
	return peer.ID(a[0]), nil
}

// WalkedFrom is the epoch the last Indexers walk started from: 0 (genesis), or the checkpoint's
// (the client's own, from an earlier call or, with LightOptions.StateDir, an earlier run).
func (l *LightClient) WalkedFrom() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.walkedFrom
}

// Epoch is the network's current epoch on the client's clock (0 without a valid genesis).
func (l *LightClient) Epoch(nc NetworkConfig) uint64 {
	cfg, err := nc.EpochConfig(epoch.Allocation(nil))
	if err != nil || !nc.Elections() {
		return 0
	}
	return cfg.Schedule.Epoch(l.clock.Now())
}

// Net is the client's p2p layer.
func (l *LightClient) Net() *p2p.Net { return l.net }

// Close leaves the network.
func (l *LightClient) Close() error { return l.net.Close() }
