package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/epoch"
	"github.com/rendermesh/rendermesh/roles/indexer"
)

// Matchmaking parameters of the indexer shell.
const (
	// matchTimeout bounds one match request from its arrival to the answer.
	matchTimeout = 5 * time.Second
	// reserveTimeout bounds one reservation round trip to a container.
	reserveTimeout = time.Second
	// reserveAttempts is how many candidates an indexer tries to reserve before it refuses.
	reserveAttempts = 4
	// leaseLength is how long a reserved container waits for its consumer.
	leaseLength = 10 * time.Second
	// recordFetchers fetch container records from the DHT for the index, concurrently.
	recordFetchers = 4
	// staleAfter heartbeat intervals without a heartbeat drop a container from the index.
	staleAfter = 5
	// sessionUnit is a session's length; relay credentials last the booked units plus relayMargin.
	sessionUnit = 15 * time.Minute
	relayMargin = 5 * time.Minute
	// warmPerRanking is how many containers per region, app and ranking an indexer keeps warm
	// connections to (indexer.Index.Warm), refreshed every warmEvery.
	warmPerRanking = 2
	warmEvery      = 2 * time.Second
)

// indexerSvc is the indexer role's shell: while this node sits on the current or the next epoch's
// committee it follows every region's heartbeats and fetches the records they point to into an
// index (roles/indexer), and it answers /rendermesh/match/1.0.0 while its committee is active,
// reserving a container before it answers.
type indexerSvc struct {
	n   *Node
	es  *epochs
	ix  *indexer.Index
	log *slog.Logger
	m   *p2p.Metrics

	mu        sync.Mutex
	following context.CancelFunc // ends the heartbeat subscriptions; nil while idle
	queued    map[string]bool
	fetchq    chan string
	relays    relayGrants
}

func (n *Node) newIndexer(es *epochs) *indexerSvc {
	return &indexerSvc{
		n: n, es: es, log: n.log.With("role", "indexer"), m: n.opts.Metrics,
		ix:     indexer.NewIndex(indexer.Config{Stale: staleAfter * time.Duration(n.cfg.Container.HeartbeatInterval)}),
		queued: map[string]bool{},
		fetchq: make(chan string, 4096),
	}
}

func (s *indexerSvc) start(ctx context.Context, wg *sync.WaitGroup) {
	s.n.net.Handle(p2p.ProtoMatch, matchTimeout, s.serve)
	for range recordFetchers {
		wg.Go(func() { s.fetch(ctx) })
	}
	wg.Go(func() { s.loop(ctx) })
}

// member reports whether this node holds seats in epoch e's committee.
func (s *indexerSvc) member(e uint64) bool {
	for _, t := range s.es.tr.Committee(e) {
		if t.ID == s.es.self {
			return true
		}
	}
	return false
}

// serving reports whether this node's committee is active now (the current one, or the last one
// within its grace window).
func (s *indexerSvc) serving(now time.Time) bool {
	return slices.ContainsFunc(s.es.tr.Active(now), func(t *epoch.Ticket) bool { return t.ID == s.es.self })
}

func (s *indexerSvc) loop(ctx context.Context) {
	clk := s.n.opts.Clock
	tick := clk.Ticker(time.Second)
	defer tick.Stop()
	sched := s.es.tr.Schedule()
	last := sched.Epoch(clk.Now())
	samples := 0
	for {
		select {
		case <-ctx.Done():
			s.unfollow()
			return
		case <-tick.C:
		}
		now := clk.Now()
		cur := sched.Epoch(now)
		want := s.member(cur) || s.member(cur+1) || s.serving(now)
		switch {
		case want && !s.isFollowing():
			s.follow(ctx)
		case !want && s.isFollowing():
			s.unfollow()
		}
		ix := s.index()
		if cur != last {
			ix.RollEpoch(cur)
			last = cur
		}
		if s.isFollowing() {
			// With well-known relays (or being one), grants are fetched ahead; otherwise the
			// first match of the epoch starts a DHT lookup (match).
			if len(s.n.cfg.Network.Relays) > 0 || s.n.relay != nil {
				if s.member(cur) || s.serving(now) {
					s.relays.ensure(ctx, s.n, cur)
				}
				if s.member(cur + 1) {
					s.relays.ensure(ctx, s.n, cur+1)
				}
			}
			ix.Expire(now)
			if samples++; samples%2 == 0 {
				ix.SampleDemand()
			}
			if samples%int(warmEvery/time.Second) == 0 {
				s.keepWarm(ix, now)
			}
			s.m.IndexEntries.Set(float64(ix.Len()))
		}
	}
}

// keepWarm holds connections to the containers the next matches are most likely to reserve, so that
// a reservation costs one round trip rather than a dial and a round trip (docs/MATCHING.md, "Warm
// connections").
func (s *indexerSvc) keepWarm(ix *indexer.Index, now time.Time) {
	cands := ix.Warm(now, warmPerRanking)
	ids := make([]peer.ID, 0, len(cands))
	for _, c := range cands {
		id := peer.ID(c.Peer)
		s.n.net.AddAddrs(id, c.Record.GetAddrs(), 2*warmEvery+leaseLength)
		ids = append(ids, id)
	}
	s.n.net.KeepWarm(ids)
}

func (s *indexerSvc) isFollowing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.following != nil
}

// follow subscribes to every region's heartbeats; the index fills within one heartbeat interval
// plus the record fetches.
func (s *indexerSvc) follow(ctx context.Context) {
	fctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.following = cancel
	s.mu.Unlock()
	for _, r := range s.n.cfg.Network.Regions {
		if err := s.n.net.SubscribeHeartbeatsUntil(fctx, r, s.onHeartbeat); err != nil {
			s.log.Warn("follow region", "region", r, "err", err)
		}
	}
	s.log.Info("indexing: following every region's containers", "regions", len(s.n.cfg.Network.Regions))
}

// unfollow drops the subscriptions and the index: a node off the committee keeps nothing.
func (s *indexerSvc) unfollow() {
	s.mu.Lock()
	cancel := s.following
	s.following = nil
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	s.n.net.KeepWarm(nil)
	s.mu.Lock()
	s.ix = indexer.NewIndex(indexer.Config{Stale: staleAfter * time.Duration(s.n.cfg.Container.HeartbeatInterval)})
	s.mu.Unlock()
	s.log.Info("indexing stopped: off the committee")
}

func (s *indexerSvc) index() *indexer.Index {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ix
}

func (s *indexerSvc) onHeartbeat(hb *pb.Heartbeat) {
	id := string(hb.PeerId)
	if !s.index().Heartbeat(id, hb, s.n.opts.Clock.Now()) {
		return
	}
	if s.n.chk != nil { // a container new to the index gets its standing from the ledger
		s.n.chk.applyTo(s.index(), id, s.es.tr.Schedule().Epoch(s.n.opts.Clock.Now()))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queued[id] {
		return
	}
	select {
	case s.fetchq <- id:
		s.queued[id] = true
	default: // full: the next heartbeat asks again
	}
}

func (s *indexerSvc) fetch(ctx context.Context) {
	for {
		var id string
		select {
		case <-ctx.Done():
			return
		case id = <-s.fetchq:
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rec, err := s.n.net.ContainerRecord(fctx, peer.ID(id), 1)
		cancel()
		s.mu.Lock()
		delete(s.queued, id)
		s.mu.Unlock()
		if err != nil {
			s.log.Debug("fetch container record", "peer", peer.ID(id), "err", err)
			continue
		}
		s.n.net.AddAddrs(peer.ID(id), rec.Addrs, leaseLength*6)
		s.index().PutRecord(id, rec, s.n.opts.Clock.Now())
	}
}

// serve answers one match request.
func (s *indexerSvc) serve(ctx context.Context, remote peer.ID, rw io.ReadWriter) error {
	began := time.Now()
	req := &pb.MatchRequest{}
	if err := p2p.ReadMsg(rw, req, p2p.MaxMatchRequestSize); err != nil {
		s.m.Matches.WithLabelValues("bad_request").Inc()
		if errors.Is(err, p2p.ErrMsgTooLarge) {
			_ = p2p.WriteMsg(rw, &pb.MatchResponse{Refused: "bad_request", Detail: err.Error()})
		}
		return err
	}
	resp := s.match(ctx, remote, req)
	result := "matched"
	if !resp.Matched {
		result = resp.Refused
	}
	s.m.Matches.WithLabelValues(result).Inc()
	s.m.MatchSeconds.Observe(time.Since(began).Seconds())
	return p2p.WriteMsg(rw, resp)
}

func refuse(filter, detail string) *pb.MatchResponse {
	return &pb.MatchResponse{Refused: filter, Detail: detail}
}

func (s *indexerSvc) match(ctx context.Context, consumer peer.ID, req *pb.MatchRequest) *pb.MatchResponse {
	clk := s.n.opts.Clock
	now := clk.Now()
	if err := indexer.ValidateRequest(req); err != nil {
		return refuse("bad_request", err.Error())
	}
	if !s.serving(now) {
		return refuse("not_indexer", fmt.Sprintf("this node is not on epoch %d's indexer committee", s.es.tr.Schedule().Epoch(now)))
	}
	// Relay grants are per indexer and epoch: during the grace after its epoch, an indexer of the
	// last committee mints from its grant of that epoch (a relay accepts the credentials of any
	// epoch's grant until they expire).
	grantEpoch := s.es.tr.Schedule().Epoch(now)
	if !s.member(grantEpoch) && grantEpoch > 0 {
		grantEpoch--
	}
	s.relays.ensure(s.n.ctx, s.n, grantEpoch) // in the background, once per epoch
	ix := s.index()
	// One more than the attempts: the consumer's own container, if it has one, is skipped below.
	cands, st, ref := ix.MatchWithStats(req, now, reserveAttempts+1)
	if ref != nil {
		return refuse(ref.Filter, ref.Detail)
	}
	units := max(req.Sessions, 1)
	start := now
	if req.Mode == pb.ServiceMode_SERVICE_MODE_WHOLESALE {
		start = time.UnixMilli(req.StartUnixMs)
	}
	resp := &pb.MatchResponse{Candidates: uint32(st.Passed)}
	if st.Passed > 0 && ix.Passes(req, now, string(consumer)) {
		resp.Candidates-- // the consumer's own container, never offered to it
	}
	var last string
	for _, c := range cands {
		if peer.ID(c.Peer) == consumer {
			continue // a node that consumes is never matched to its own container
		}
		if resp.Attempts == reserveAttempts {
			break
		}
		resp.Attempts++
		sid := make([]byte, 16)
		_, _ = rand.Read(sid)
		ix.Hold(c.Peer, now, now.Add(reserveTimeout)) // no concurrent match here races us for it
		rr := &pb.ReserveRequest{
			SessionId: sid, Consumer: []byte(consumer), Epoch: s.es.tr.Schedule().Epoch(now), App: req.App,
			Mode: req.Mode, PriceMicros: c.PriceMicros, Units: units, LeaseMs: uint32(leaseLength / time.Millisecond),
		}
		if req.Mode == pb.ServiceMode_SERVICE_MODE_WHOLESALE {
			rr.StartUnixMs = req.StartUnixMs
		}
		// The record's addresses, in case the fetch's have expired and no connection is open.
		s.n.net.AddAddrs(peer.ID(c.Peer), c.Record.GetAddrs(), leaseLength)
		rctx, cancel := context.WithTimeout(ctx, reserveTimeout)
		ans := &pb.ReserveResponse{}
		err := s.n.net.Request(rctx, peer.ID(c.Peer), p2p.ProtoReserve, rr, ans, p2p.MaxReserveSize)
		cancel()
		if err != nil {
			last = fmt.Sprintf("container %s: %v", peer.ID(c.Peer).ShortString(), err)
			continue
		}
		if !ans.Reserved {
			last = fmt.Sprintf("container %s refused: %s", peer.ID(c.Peer).ShortString(), ans.Refused)
			ix.Hold(c.Peer, clk.Now(), clk.Now().Add(leaseLength))
			continue
		}
		lease := time.UnixMilli(ans.LeaseExpiresUnixMs)
		ix.Hold(c.Peer, clk.Now(), lease)
		tk := &pb.SessionTicket{
			SessionId: sid, Consumer: []byte(consumer), Container: []byte(c.Peer), Indexer: []byte(s.n.net.ID()),
			Epoch: rr.Epoch, App: req.App, Mode: req.Mode, PriceMicros: c.PriceMicros, Units: units,
			StartUnixMs: start.UnixMilli(), LeaseExpiresUnixMs: ans.LeaseExpiresUnixMs,
			ContainerAddrs: c.Record.GetAddrs(), EstimatedRttMs: c.RTTms, IssuedUnixMs: clk.Now().UnixMilli(),
		}
		raw, err := s.n.net.Seal(p2p.KindSessionTicket, tk)
		if err != nil {
			return refuse("overloaded", err.Error())
		}
		resp.Matched, resp.Ticket = true, raw
		resp.IceServers = s.relays.servers(grantEpoch, sid, time.Duration(units)*sessionUnit+relayMargin, clk.Now())
		return resp
	}
	if resp.Attempts == 0 {
		resp.Refused, resp.Detail = "reservation", "the only candidate is the consumer's own container"
		return resp
	}
	resp.Refused, resp.Detail = "reservation", fmt.Sprintf("%d candidates, none could be reserved; last: %s", resp.Attempts, last)
	return resp
}
