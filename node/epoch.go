package node

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// epochs runs a full node's part in the indexer elections: it follows the epochs (epoch.Tracker),
// verifies tickets from gossip and committee records, draws its own tickets when it is a candidate,
// publishes them, and publishes the sealed committee records that late joiners and light clients
// import.
type epochs struct {
	n    *Node
	tr   *epoch.Tracker
	log  *slog.Logger
	self string
	sk   ed25519.PrivateKey // nil: not an Ed25519 identity, never a candidate
	// publishers is how many nodes, on top of the committee, publish each sealed committee record
	// (a deterministic sample by peer ID and epoch).
	publishers int
	// hist holds committee records read from full nodes' history, ahead of their import (the
	// loop's only).
	hist historyBuf
	// ownImports counts the epochs imported from this node's own history (the loop's only).
	ownImports int
	// from is where the node began following the elections: 0 (genesis) or its checkpoint's epoch.
	from uint64
	// missing holds when this node first found no record of an epoch anywhere (the loop's only).
	missing map[uint64]time.Time
	giveUp  time.Duration // historyGiveUp when the node was made

	// ready is closed once the node has caught up with the elections (no committee record left to
	// import): from then on it can tell the active indexers, so its container may be reserved.
	ready     chan struct{}
	readyOnce sync.Once

	// nextLive is when the node next asks peers for their live committee views (the loop's only);
	// livePulls counts the pulls (the loop's only), liveAdded the tickets they added.
	nextLive  time.Time
	livePulls int
	liveAdded atomic.Int64

	mu        sync.Mutex
	drawn     map[uint64]bool
	resyncing map[uint64]bool
	ctx       context.Context // the loop's
}

// livePeers is how many peers a node asks for their live committee views at a time.
const livePeers = 2

// importRetry is how often a node that must import a committee record tries again; importPatience
// how long after the epoch's start it waits for a sealed one at most.
const (
	importRetry    = 2 * time.Second
	importPatience = time.Minute
)

func (n *Node) loadStakes() (epoch.StakeSource, error) {
	if n.opts.Stakes != nil {
		return n.opts.Stakes, nil
	}
	if n.cfg.Network.Allocation == "" {
		return epoch.Allocation(nil), nil
	}
	return LoadAllocation(n.cfg.Network.Allocation)
}

func (n *Node) newEpochs(key crypto.PrivKey) (*epochs, error) {
	stakes, err := n.loadStakes()
	if err != nil {
		return nil, err
	}
	cfg, err := n.cfg.Network.EpochConfig(stakes)
	if err != nil {
		return nil, err
	}
	now := n.opts.Clock.Now()
	cur := cfg.Schedule.Epoch(now)
	var tr *epoch.Tracker
	var start uint64
	if path := n.cfg.Network.Checkpoint; path != "" {
		cp, err := readCheckpointFile(path, n.cfg.Network.id())
		switch {
		case err != nil:
			return nil, fmt.Errorf("%w: network.checkpoint %s: %v", ErrConfig, path, err)
		case cp.Epoch > cur:
			return nil, fmt.Errorf("%w: network.checkpoint %s is of epoch %d, ahead of this clock's epoch %d: check the clock", ErrConfig, path, cp.Epoch, cur)
		case cur-cp.Epoch > MaxCatchUp:
			return nil, fmt.Errorf("%w: network.checkpoint %s is of epoch %d, %d epochs ago: catching up beyond %d epochs needs a newer one (GET /v1/epochs/checkpoint of a node you trust)", ErrConfig, path, cp.Epoch, cur-cp.Epoch, MaxCatchUp)
		}
		if tr, err = epoch.NewTrackerFrom(cfg, now, cp); err != nil {
			return nil, fmt.Errorf("%w: network.checkpoint %s: %v", ErrConfig, path, err)
		}
		start = cp.Epoch
	} else {
		if cur > MaxCatchUp {
			return nil, fmt.Errorf("%w: network genesis is %d epochs ago: catching up beyond %d epochs needs a checkpoint: set network.checkpoint to a file from GET /v1/epochs/checkpoint of a node you trust", ErrConfig, cur, MaxCatchUp)
		}
		if tr, err = epoch.NewTracker(cfg, now); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	es := &epochs{n: n, tr: tr, log: n.log.With("sub", "epoch"), self: string(n.net.ID()), drawn: map[uint64]bool{}, resyncing: map[uint64]bool{},
		ready: make(chan struct{}), from: start, giveUp: historyGiveUp}
	if key.Type() == crypto.Ed25519 {
		raw, err := key.Raw()
		if err != nil {
			return nil, err
		}
		es.sk = ed25519.PrivateKey(raw)
	}
	es.publishers = 16
	return es, nil
}

// start subscribes to the indexer topic and runs the epoch loop until ctx ends.
func (es *epochs) start(ctx context.Context, wg *sync.WaitGroup) error {
	es.n.net.SetCommitteeCheck(func(e uint64, tickets []p2p.OpenedTicket) error {
		return es.tr.CheckRecord(e, imported(tickets))
	})
	es.ctx = ctx
	es.n.net.ServeCommitteeHistory(es.historyRecord, es.liveRecord)
	if err := es.n.net.SubscribeTickets(es.onTicket); err != nil {
		return err
	}
	wg.Go(func() { es.loop(ctx) })
	return nil
}

func imported(tickets []p2p.OpenedTicket) []epoch.ImportedTicket {
	out := make([]epoch.ImportedTicket, len(tickets))
	for i, t := range tickets {
		out[i] = epoch.ImportedTicket{Msg: t.Msg, Signer: string(t.Signer), Raw: t.Raw}
	}
	return out
}

func (es *epochs) onTicket(tk *pb.IndexerTicket, signer peer.ID, raw []byte) (p2p.TicketVerdict, string) {
	_, err := es.tr.Add(tk, string(signer), raw, es.n.opts.Clock.Now())
	if err == nil || (string(signer) == es.self && epoch.TicketReason(err) == epoch.TicketDuplicate) {
		return p2p.TicketAccept, "" // our own ticket, added when drawn, goes out
	}
	var te *epoch.TicketError
	reason := epoch.TicketReason(err)
	if reason == epoch.TicketOtherSeed {
		es.maybeResync(tk.Epoch)
	}
	if errors.As(err, &te) && te.Ignorable() {
		return p2p.TicketIgnore, reason
	}
	es.log.Debug("ticket rejected", "from", signer, "err", err)
	return p2p.TicketReject, reason
}

func (es *epochs) loop(ctx context.Context) {
	clk := es.n.opts.Clock
	sched := es.tr.Schedule()
	for {
		now := clk.Now()
		pendingImport := es.catchUp(ctx, now)
		seeded := es.advance(ctx, now)
		cur := sched.Epoch(now)
		if !pendingImport && seeded {
			// Sealing may have revealed an epoch to import (a late joiner's first pass seals
			// epoch 0 only): import now rather than at the next boundary.
			pendingImport = es.catchUp(ctx, now)
			es.advance(ctx, now)
		}
		if !now.Before(sched.Genesis) {
			es.draw(ctx, cur) // a node that starts at genesis, or late, draws for the epoch running
		}
		wait := sched.Until(now, cur+1)
		if now.Before(sched.Genesis) {
			wait = sched.Until(now, 0)
		}
		if pendingImport {
			wait = min(wait, importRetry)
		} else if _, known := es.tr.Seed(cur); known || now.Before(sched.Genesis) {
			es.readyOnce.Do(func() { close(es.ready) }) // caught up: the current committee is known
			if !now.Before(es.nextLive) {
				es.nextLive = es.pullLive(ctx, now)
			}
			wait = min(wait, es.nextLive.Sub(now))
		} else {
			wait = min(wait, importRetry) // the next pass derives the seeds the imports revealed
		}
		t := clk.Timer(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Live repair (docs/EPOCHS.md, "Repairing missed tickets"). Gossip reaches the peers in the
// indexer topic's mesh when a ticket goes round; a node that joined after it, or was not yet in the
// mesh (a peer that joins just before genesis, when epoch 0's and 1's tickets are drawn), misses it
// for good: gossip does not replay. So once a node has caught up, and then shortly after each epoch
// starts (when the next epoch's winners have just published), it asks a couple of peers for their
// live views of the running and next epochs' committees, and adds each ticket it lacks after
// verifying it as one from gossip. A ticket for the next epoch that arrives so before it starts
// counts in its seal like any other: the node seals what the network sealed.

// liveDelay is how long after an epoch's start a node asks for the live views: long enough for the
// winners' tickets to have gone round the mesh, well before the epoch is over, and spread per node
// (by its peer ID) so that the network's asks do not all land at once.
func (es *epochs) liveDelay() time.Duration {
	base := min(es.tr.Schedule().Length/20, 5*time.Second)
	h := sha256.Sum256([]byte("live-repair/" + es.self))
	return base + time.Duration(binary.BigEndian.Uint64(h[:8])%1000)*base/1000
}

// pullLive asks up to livePeers connected full nodes, in the background, for their live views of
// the committees of the epoch running at now and the next, and returns when to ask next: after the
// next epoch's start, or soon when no peer serves them yet.
func (es *epochs) pullLive(ctx context.Context, now time.Time) time.Time {
	sched := es.tr.Schedule()
	cur := sched.Epoch(now)
	if now.Before(sched.Genesis) {
		return sched.Start(0).Add(es.liveDelay()) // nothing is drawn before genesis
	}
	next := sched.Start(cur + 1).Add(es.liveDelay())
	if at := sched.Start(cur).Add(es.liveDelay()); now.Before(at) {
		next = at
	}
	peers := es.n.net.HistoryPeers(livePeers, es.livePulls*livePeers)
	if len(peers) == 0 {
		return now.Add(importRetry)
	}
	es.livePulls++
	es.n.wg.Go(func() {
		added := addLive(ctx, es.n.net, es.tr, peers, cur, es.n.opts.Clock, es.log, es.maybeResync)
		if added > 0 {
			es.liveAdded.Add(int64(added))
			es.log.Info("added tickets this node had missed on gossip, from peers' live committees", "epoch", cur, "tickets", added)
		}
	})
	return next
}

// addLive asks each of peers for its live views of the committees of epoch `from` and the next,
// and adds to tr every ticket it lacks that verifies as one from gossip would (at the clock's now).
// When `from` drew nobody even so, the last committee that drew someone serves it (Tracker.Serving):
// addLive asks for the epochs before it, back to the first whose committee tr holds, at most
// epoch.MaxCarry; a node that joined after that committee's tickets went round (a light client
// that starts in epoch 1, after epoch 0's were drawn at genesis) has no other way to learn it.
// It returns how many it added; otherSeed, when not nil, is told of each epoch for which a peer
// sent a real draw on another seed than tr's.
func addLive(ctx context.Context, net *p2p.Net, tr *epoch.Tracker, peers []peer.ID, from uint64, clk clock.Clock, log *slog.Logger, otherSeed func(uint64)) int {
	added := addLiveFrom(ctx, net, tr, peers, from, clk, log, otherSeed)
	if len(tr.Committee(from)) > 0 {
		return added
	}
	for back := uint64(1); back <= epoch.MaxCarry && back <= from && ctx.Err() == nil; back++ {
		e := from - back
		if len(tr.Committee(e)) > 0 {
			break
		}
		added += addLiveFrom(ctx, net, tr, peers, e, clk, log, otherSeed)
		if len(tr.Committee(e)) > 0 {
			break
		}
	}
	return added
}

// addLiveFrom is one round of addLive: the live views of `from` and the next.
func addLiveFrom(ctx context.Context, net *p2p.Net, tr *epoch.Tracker, peers []peer.ID, from uint64, clk clock.Clock, log *slog.Logger, otherSeed func(uint64)) int {
	added := 0
	for _, p := range peers {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		recs, err := net.LiveCommittees(rctx, p, from, p2p.MaxLiveEpochs)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				log.Debug("live committees", "peer", p, "err", err)
			}
			continue
		}
		for _, r := range recs {
			for _, t := range r.Tickets {
				_, err := tr.Add(t.Msg, string(t.Signer), t.Raw, clk.Now())
				switch {
				case err == nil:
					added++
				case otherSeed != nil && epoch.TicketReason(err) == epoch.TicketOtherSeed:
					otherSeed(t.Msg.Epoch)
				}
			}
		}
	}
	return added
}

// liveRecord is this node's live view of epoch e's committee, for the running epoch, the next and
// the MaxCarry before it (one of which serves the running epoch when it drew nobody): every ticket
// of e it has verified, in an unsealed record.
func (es *epochs) liveRecord(e uint64) ([]byte, bool) {
	cur := es.tr.Schedule().Epoch(es.n.opts.Clock.Now())
	if e > cur+1 || e+epoch.MaxCarry < cur {
		return nil, false
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(committeeRecord(e, es.tr.Committee(e), false))
	return raw, err == nil
}

// advance seals what has started, publishes the sealed sets this node should, and draws for the
// epochs whose seeds it learnt (those not over yet). It reports whether it learnt any seed.
func (es *epochs) advance(ctx context.Context, now time.Time) bool {
	seeded, _ := es.tr.Advance(now)
	cur := es.tr.Schedule().Epoch(now)
	for _, e := range seeded {
		es.publishSealed(ctx, e-1)
		if e >= cur { // a draw for an epoch that is over is of no use
			es.draw(ctx, e)
		}
	}
	return len(seeded) > 0
}

// maybeResync starts, once per epoch, a resync when most of epoch e's winners drew on another seed
// than this node's: this node sealed epoch e-1 differently from the network (a ticket reached it just
// before the seal and the others just after, or the reverse). Tracker.Resync finds the sealed set
// that explains the majority's seed among the tickets this node holds or in the DHT's committee
// record, and the node draws again on it.
func (es *epochs) maybeResync(e uint64) {
	want, ok := es.tr.Divergence(e)
	if !ok || es.ctx == nil {
		return
	}
	es.mu.Lock()
	if es.resyncing[e] {
		es.mu.Unlock()
		return
	}
	es.resyncing[e] = true
	es.mu.Unlock()
	ctx := es.ctx
	es.n.wg.Go(func() {
		defer func() {
			es.mu.Lock()
			delete(es.resyncing, e)
			es.mu.Unlock()
		}()
		accepted, err := es.tr.Resync(e, want)
		if err != nil {
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, tickets, ferr := es.n.net.Committee(fctx, e-1, 0)
			cancel()
			if ferr != nil {
				es.log.Warn("seeds differ from the network's and no committee record explains it", "epoch", e, "err", err, "fetch", ferr)
				return
			}
			if accepted, err = es.tr.Resync(e, want, imported(tickets)); err != nil {
				es.log.Warn("seeds differ from the network's and no committee record explains it", "epoch", e, "err", err)
				return
			}
		}
		es.log.Warn("resynced: this node had sealed the epoch before differently from the network", "epoch", e, "tickets", len(accepted))
		es.keepSealed(ctx, e-1)
		es.mu.Lock()
		for k := range es.drawn {
			if k >= e {
				delete(es.drawn, k)
			}
		}
		es.mu.Unlock()
		now := es.n.opts.Clock.Now()
		if e >= es.tr.Schedule().Epoch(now) {
			es.draw(ctx, e)
		}
		es.advance(ctx, now)
	})
}

// catchUp imports the sealed committee records this node needs (it was not following when their
// tickets went round): those of epochs that ended a while ago from full nodes' history, the last
// ones from the DHT. It reports whether one is still missing.
func (es *epochs) catchUp(ctx context.Context, now time.Time) bool {
	sched := es.tr.Schedule()
	for {
		e, ok := es.tr.NeedImport(now)
		if !ok {
			return false
		}
		if kept, ok := es.importOwnHistory(e); ok { // a node that restarts: what it sealed before
			es.ownImports++
			es.log.Debug("imported committee from this node's history", "epoch", e, "tickets", kept)
			continue
		}
		notHeld := false // full nodes answered, and none holds e
		if e+historyLag <= sched.Epoch(now) {
			hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			tickets, found, err := es.hist.take(hctx, es.n.net, es.tr, e)
			cancel()
			if ctx.Err() != nil {
				return true
			}
			if found {
				kept, err := es.tr.ImportSealed(e, tickets)
				if err != nil {
					es.log.Warn("import committee", "epoch", e, "err", err)
					return true
				}
				es.keepSealed(ctx, e)
				es.log.Debug("imported committee from history", "epoch", e, "tickets", kept)
				continue
			}
			notHeld = errors.Is(err, errHistoryNotHeld)
			es.log.Debug("committee history not found; trying the DHT", "epoch", e, "err", err)
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rec, tickets, err := es.n.net.Committee(fctx, e, 0)
		cancel()
		if ctx.Err() != nil {
			return true
		}
		sealed := err == nil && rec.Sealed
		// Sealed records appear as soon as e starts. If none has after half the epoch (at most
		// importPatience), no node that followed e-1 published one (all joined late, say): take the
		// fullest unsealed record, whose tickets were published during e-1. With no record at all,
		// wait while full nodes may still have one: sealing e with nothing would derive seeds that
		// differ from theirs. When the full nodes asked hold none either (the whole network was
		// down through e, say), every node is in the same place: seal it empty, as they all will.
		late := now.After(sched.Start(e).Add(min(sched.Length/2, importPatience)))
		if !sealed && !late {
			es.log.Debug("sealed committee record not found yet", "epoch", e, "err", err)
			return true
		}
		if err != nil && notHeld {
			if es.missing == nil {
				es.missing = map[uint64]time.Time{}
			}
			if _, ok := es.missing[e]; !ok {
				es.missing[e] = now
			}
			notHeld = now.Sub(es.missing[e]) >= es.giveUp // each pass asks other nodes
		}
		if err != nil && !notHeld {
			es.log.Warn("no committee record of this epoch, in the DHT or in full nodes' history: waiting for one", "epoch", e, "err", err)
			return true
		}
		delete(es.missing, e)
		if err != nil {
			es.log.Warn("no node holds a committee record of this epoch: sealing it empty, as every node that imports it does", "epoch", e)
		} else if !sealed {
			es.log.Warn("no sealed committee record: importing the fullest unsealed one; this node's seeds may differ from the network's", "epoch", e)
		}
		kept, err := es.tr.ImportSealed(e, imported(tickets))
		if err != nil {
			es.log.Warn("import committee", "epoch", e, "err", err)
			return true
		}
		es.keepSealed(ctx, e)
		es.log.Info("imported committee", "epoch", e, "tickets", kept, "sealed", sealed)
	}
}

// draw runs this node's sortition for epoch e once its seed is known and, if it wins, publishes the
// ticket on gossip and in the epoch's committee record.
func (es *epochs) draw(ctx context.Context, e uint64) {
	if es.sk == nil || (es.n.opts.Withhold != nil && es.n.opts.Withhold(e)) {
		return
	}
	if _, ok := es.tr.Seed(e); !ok {
		return
	}
	es.mu.Lock()
	done := es.drawn[e]
	es.drawn[e] = true
	for k := range es.drawn {
		if k+8 < e {
			delete(es.drawn, k)
		}
	}
	es.mu.Unlock()
	if done {
		return
	}
	tk := es.tr.Draw(e, es.self, es.sk)
	if tk == nil {
		return
	}
	now := es.n.opts.Clock.Now()
	tk.IssuedUnixMs = now.UnixMilli()
	tk.Addrs = es.n.addrBytes()
	raw, err := es.n.net.SealTicket(tk)
	if err != nil {
		es.log.Warn("seal ticket", "err", err)
		return
	}
	if _, err := es.tr.Add(tk, es.self, raw, now); err != nil {
		es.log.Warn("own ticket does not verify", "epoch", e, "err", err)
		return
	}
	es.log.Info("drawn as indexer", "epoch", e, "seats", tk.Seats)
	if err := es.n.net.PublishTicket(ctx, raw); err != nil {
		es.log.Debug("publish ticket", "err", err)
	}
	es.putCommittee(ctx, e, false)
}

// publishSealed publishes epoch e's sealed set when this node is in it or in the epoch's sample of
// publishers.
func (es *epochs) publishSealed(ctx context.Context, e uint64) {
	set, ok := es.tr.Sealed(e)
	if !ok {
		return
	}
	es.keepSealed(ctx, e)
	member := false
	for _, tk := range set {
		member = member || tk.ID == es.self
	}
	if !member && !es.sampled(e) {
		return
	}
	es.putCommittee(ctx, e, true)
}

// sampled: about `publishers` candidates per epoch, chosen by hash of (peer ID, epoch).
func (es *epochs) sampled(e uint64) bool {
	n := len(es.tr.Candidates(e))
	if n <= es.publishers {
		return true
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], e)
	h := sha256.Sum256(append([]byte(es.self), b[:]...))
	return binary.BigEndian.Uint64(h[:8])%uint64(n) < uint64(es.publishers)
}

// committeeRecord is epoch e's committee record holding set's tickets (at most
// p2p.MaxCommitteeTickets of them).
func committeeRecord(e uint64, set []*epoch.Ticket, sealed bool) *pb.CommitteeRecord {
	rec := &pb.CommitteeRecord{Epoch: e, Sealed: sealed}
	for _, tk := range set[:min(len(set), p2p.MaxCommitteeTickets)] {
		rec.Tickets = append(rec.Tickets, tk.Raw)
	}
	return rec
}

// putCommittee stores this node's view of epoch e's committee (its sealed set when sealed) in the
// DHT, in the background.
func (es *epochs) putCommittee(ctx context.Context, e uint64, sealed bool) {
	var set []*epoch.Ticket
	if sealed {
		set, _ = es.tr.Sealed(e)
	} else {
		set = es.tr.Committee(e)
	}
	rec := committeeRecord(e, set, sealed)
	es.n.wg.Go(func() {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := es.n.net.PutCommittee(pctx, rec); err != nil && ctx.Err() == nil {
			es.log.Debug("put committee record", "epoch", e, "sealed", sealed, "err", err)
		}
	})
}

// Epochs is the node's view of the epochs and their committees (nil for a node that has not started).
func (n *Node) Epochs() *epoch.Tracker {
	if n.ep == nil {
		return nil
	}
	return n.ep.tr
}
