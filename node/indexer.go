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

	"github.com/filecoin-project/go-clock"
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
	// answerShare is the percentage of the consumer's stated wait (a match request's wait_ms) that
	// an indexer spends before it answers: the rest is for the answer's way back.
	answerShare = 75
	// minReserveWait is the least time left of the consumer's wait in which an indexer still
	// starts a reservation; with less it refuses (reservation), so the consumer asks another.
	minReserveWait = 200 * time.Millisecond
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
	if w := req.GetWaitMs(); w > 0 {
		// The consumer waits w from when it sent the request; the answer, matched or refused, must
		// be on its way back well before then (answerShare of it, from arrival), or the consumer is
		// gone to the next indexer and a container reserved for it now waits out its lease in vain.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, began.Add(time.Duration(w)*time.Millisecond*answerShare/100))
		defer cancel()
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
	cands, st, ref := ix.MatchWithStats(req, now, reserveAttempts+1+len(req.Exclude))
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
	ep := s.es.tr.Schedule().Epoch(now)
	try := func(ctx context.Context, c indexer.Candidate, sid []byte) (*pb.ReserveResponse, error) {
		rr := &pb.ReserveRequest{
			SessionId: sid, Consumer: []byte(consumer), Epoch: ep, App: req.App,
			Mode: req.Mode, PriceMicros: c.PriceMicros, Units: units, LeaseMs: uint32(leaseLength / time.Millisecond),
		}
		if req.Mode == pb.ServiceMode_SERVICE_MODE_WHOLESALE {
			rr.StartUnixMs = req.StartUnixMs
		}
		// The record's addresses, in case the fetch's have expired and no connection is open.
		s.n.net.AddAddrs(peer.ID(c.Peer), c.Record.GetAddrs(), leaseLength)
		ans := &pb.ReserveResponse{}
		err := s.n.net.Request(ctx, peer.ID(c.Peer), p2p.ProtoReserve, rr, ans, p2p.MaxReserveSize)
		return ans, err
	}
	r := reserveBest(ctx, clk, ix, string(consumer), req, cands, try, resp)
	if r == nil {
		return resp
	}
	c := r.c
	tk := &pb.SessionTicket{
		SessionId: r.sid, Consumer: []byte(consumer), Container: []byte(c.Peer), Indexer: []byte(s.n.net.ID()),
		Epoch: ep, App: req.App, Mode: req.Mode, PriceMicros: c.PriceMicros, Units: units,
		StartUnixMs: start.UnixMilli(), LeaseExpiresUnixMs: r.ans.LeaseExpiresUnixMs,
		ContainerAddrs: c.Record.GetAddrs(), EstimatedRttMs: c.RTTms, IssuedUnixMs: clk.Now().UnixMilli(),
	}
	raw, err := s.n.net.Seal(p2p.KindSessionTicket, tk)
	if err != nil {
		return refuse("overloaded", err.Error())
	}
	resp.Matched, resp.Ticket = true, raw
	resp.IceServers = s.relays.servers(grantEpoch, r.sid, time.Duration(units)*sessionUnit+relayMargin, clk.Now())
	return resp
}

// holder is what reserveBest needs of the index: holding a container out of matches for a while.
type holder interface {
	Hold(peer string, now, until time.Time)
}

// reserved is the container reserveBest reserved, under session ID sid.
type reserved struct {
	c   indexer.Candidate
	sid []byte
	ans *pb.ReserveResponse
}

// reserveBest reserves the best of cands that will have the consumer: in rank order, skipping the
// consumer's own container and those the request excludes, it asks each with try (a fresh session
// ID, at most reserveTimeout) until one reserves itself, reserveAttempts have been tried, or the
// consumer's wait (ctx's deadline) leaves less than minReserveWait. A container that refused, or did
// not answer in time, is held out of this index's matches for a lease; one that did not answer is
// also listed in resp.Unreachable, for the consumer's next indexer. resp gets the attempts and, when
// none was reserved, the refusal (reservation, which the consumer retries with another indexer).
func reserveBest(ctx context.Context, clk clock.Clock, ix holder, consumer string, req *pb.MatchRequest, cands []indexer.Candidate,
	try func(ctx context.Context, c indexer.Candidate, sid []byte) (*pb.ReserveResponse, error), resp *pb.MatchResponse) *reserved {
	var last string
	excluded := 0
	for _, c := range cands {
		if c.Peer == consumer {
			continue // a node that consumes is never matched to its own container
		}
		if slices.ContainsFunc(req.Exclude, func(x []byte) bool { return string(x) == c.Peer }) {
			excluded++ // an indexer asked before could not reach it for this consumer
			continue
		}
		if resp.Attempts == reserveAttempts {
			break
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < minReserveWait {
			resp.Refused = "reservation"
			resp.Detail = fmt.Sprintf("out of the consumer's time after %d reservations; last: %s", resp.Attempts, last)
			return nil
		}
		resp.Attempts++
		sid := make([]byte, 16)
		_, _ = rand.Read(sid)
		now := clk.Now()
		ix.Hold(c.Peer, now, now.Add(reserveTimeout)) // no concurrent match here races us for it
		rctx, cancel := context.WithTimeout(ctx, reserveTimeout)
		ans, err := try(rctx, c, sid)
		cancel()
		switch {
		case err != nil:
			last = fmt.Sprintf("container %s: %v", peer.ID(c.Peer).ShortString(), err)
			if ctx.Err() != nil {
				continue // the consumer's time ran out under it: not the container's doing
			}
			// No answer in time, or none at all: this index leaves it alone for a lease (it may well
			// have reserved itself, its answer late), and the consumer's next indexer is told.
			ix.Hold(c.Peer, clk.Now(), clk.Now().Add(leaseLength))
			resp.Unreachable = append(resp.Unreachable, []byte(c.Peer))
		case !ans.Reserved:
			last = fmt.Sprintf("container %s refused: %s", peer.ID(c.Peer).ShortString(), ans.Refused)
			ix.Hold(c.Peer, clk.Now(), clk.Now().Add(leaseLength))
		default:
			ix.Hold(c.Peer, clk.Now(), time.UnixMilli(ans.LeaseExpiresUnixMs))
			return &reserved{c: c, sid: sid, ans: ans}
		}
	}
	resp.Refused = "reservation"
	switch {
	case resp.Attempts > 0:
		resp.Detail = fmt.Sprintf("%d candidates, none could be reserved; last: %s", resp.Attempts, last)
	case excluded > 0:
		resp.Detail = fmt.Sprintf("every candidate (%d) is one an earlier indexer could not reach", excluded)
	default:
		resp.Detail = "the only candidate is the consumer's own container"
	}
	return nil
}
