package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render"
	"github.com/rendermesh/rendermesh/roles/consumer"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// ConnectOptions configure LightClient.Connect.
type ConnectOptions struct {
	Network NetworkConfig
	Stakes  epoch.StakeSource // nil: the network's allocation file
	// Hold is how long the session lasts before the consumer ends it; negative: match only, no
	// session.
	Hold time.Duration
	// Keep stores the consumer's co-signed receipts durably (a session.Log); nil: not kept.
	Keep    func(ack []byte) error
	Attempt consumer.ConnectOptions
	// Render plays the session's stream while it is held.
	Render RenderOptions
	// Resume gets a new match when the container dies mid-session and goes on with the rest of
	// the hold there (at most maxResumes times).
	Resume bool
	// ShareStats is the consumer's consent to checks during its played session: every StatsEvery
	// (DefaultStatsEvery; at least MinStatsEvery) and when the session ends, a sample of the
	// stream's statistics goes, signed, to a checker the epoch's seed assigns to the container.
	// It needs Render.Play and Render.FPS (the rate the samples are judged against).
	ShareStats bool
	StatsEvery time.Duration

	statsRoute func(container string) (peer.ID, error) // set by Connect: the assigned checker
	receipts   *latestReceipt                          // when set, keeps the session's latest receipt for its samples
}

// ConnectResult is what LightClient.Connect did.
type ConnectResult struct {
	Match       *consumer.Match
	IndexersDur time.Duration // finding and verifying the epoch's committee
	Session     *consumer.SessionReport
	SessionErr  error
	Render      *render.PlayReport
	RenderErr   error
	// Resumed lists the containers (raw peer IDs) of the sessions that took over after one died.
	Resumed []string
	// ResumeErr is why the last new match after a container died failed, if it did.
	ResumeErr error
	// StatsShared counts the session samples checkers took (ShareStats); StatsErr is why the
	// last one that was not taken was not.
	StatsShared int
	StatsErr    error
}

// maxResumes bounds the new matches one Connect takes after containers die; maxReconnects the
// render streams reopened to the same container within a session.
const (
	maxResumes    = 3
	maxReconnects = 3
	// resumeBackoff is the first wait before a failed new match is retried (doubling, at most 4x).
	resumeBackoff = 500 * time.Millisecond
)

// ErrNoRelay is the render error of a relay-only session whose match came without relays.
var ErrNoRelay = errors.New("relay-only session: the indexer handed out no relay (no relay node found this epoch)")

// NewRequestID returns a fresh random match request ID.
func NewRequestID() []byte {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return id
}

// Connect gets the consumer matched: it finds and verifies the epoch's indexers, asks them in turn
// (consumer.Connect), and, unless o.Hold is negative, opens the session with the reserved container
// and keeps its co-signed usage receipts until it ends.
func (l *LightClient) Connect(ctx context.Context, req *pb.MatchRequest, o ConnectOptions) (*ConnectResult, error) {
	if len(req.RequestId) == 0 {
		req.RequestId = NewRequestID()
	}
	if o.Attempt.Clock == nil {
		o.Attempt.Clock = l.clock
	}
	began := l.clock.Now()
	res := &ConnectResult{}
	mn := &lightMatchNet{l: l, nc: o.Network, stakes: o.Stakes}
	m, err := consumer.Connect(ctx, mn, req, o.Attempt)
	res.Match, res.IndexersDur = m, mn.took
	if err != nil || !m.Matched || o.Hold < 0 {
		return res, err
	}
	// first_frame_ms counts from the match request: finding and verifying the committee (cached
	// for the epoch after the first time) comes before it.
	o.statsRoute = l.assignedChecker
	runPlayedSession(ctx, l.net, l.clock, m, o, began.Add(mn.took), res)
	resume(ctx, l.net, l.clock, req, o, began, res, func(ctx context.Context, req *pb.MatchRequest) (*consumer.Match, error) {
		return consumer.Connect(ctx, mn, req, o.Attempt)
	})
	return res, nil
}

// Connect gets matched as a consumer from this full node: like LightClient.Connect, but the
// committee comes from the node's own election tracker (simnet consumers, tests).
func (n *Node) Connect(ctx context.Context, req *pb.MatchRequest, o ConnectOptions) (*ConnectResult, error) {
	if n.ep == nil {
		return nil, fmt.Errorf("%w: this node holds no elections (network.genesis_time is empty)", ErrConfig)
	}
	if len(req.RequestId) == 0 {
		req.RequestId = NewRequestID()
	}
	if o.Attempt.Clock == nil {
		o.Attempt.Clock = n.opts.Clock
	}
	began := n.opts.Clock.Now()
	res := &ConnectResult{}
	mn := &nodeMatchNet{n: n}
	m, err := consumer.Connect(ctx, mn, req, o.Attempt)
	res.Match = m
	if err != nil || !m.Matched || o.Hold < 0 {
		return res, err
	}
	o.statsRoute = n.assignedChecker
	runPlayedSession(ctx, n.net, n.opts.Clock, m, o, began, res)
	resume(ctx, n.net, n.opts.Clock, req, o, began, res, func(ctx context.Context, req *pb.MatchRequest) (*consumer.Match, error) {
		return consumer.Connect(ctx, mn, req, o.Attempt)
	})
	return res, nil
}

// nodeMatchNet is consumer.MatchNet over a full node.
type nodeMatchNet struct{ n *Node }

func (m *nodeMatchNet) Self() string { return string(m.n.net.ID()) }

func (m *nodeMatchNet) Indexers(context.Context) ([]string, uint64, error) {
	now := m.n.opts.Clock.Now()
	e := m.n.ep.tr.Schedule().Epoch(now)
	var ids []string
	serving, _ := m.n.ep.tr.Serving(e) // an epoch that drew nobody: the last committee serves on
	for _, t := range serving {
		ids = append(ids, t.ID)
		m.n.net.AddAddrs(peer.ID(t.ID), t.Msg.GetAddrs(), time.Hour)
	}
	return ids, e, nil
}

func (m *nodeMatchNet) Match(ctx context.Context, indexer string, req *pb.MatchRequest) (*pb.MatchResponse, error) {
	return requestMatch(ctx, m.n.net, indexer, req)
}

func (m *nodeMatchNet) OpenTicket(raw []byte) (*pb.SessionTicket, string, error) {
	return openTicket(raw)
}

// Connected implements consumer.Connected: the node asks indexers it holds a connection to first.
func (m *nodeMatchNet) Connected(p string) bool { return m.n.net.Connected(peer.ID(p)) }

// runSession opens the session with the matched container and keeps its receipts until the hold
// ends. accepted, when set, runs once the container admits the consumer.
func runSession(ctx context.Context, net *p2p.Net, clk clock.Clock, m *consumer.Match, o ConnectOptions, accepted func()) (*consumer.SessionReport, error) {
	container := peer.ID(m.Container)
	net.AddAddrs(container, m.Ticket.ContainerAddrs, time.Hour)
	s, err := net.NewStream(ctx, container, p2p.ProtoSession)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	defer net.Hold(s)()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	keep := o.Keep
	if keep == nil {
		keep = func([]byte) error { return nil }
	}
	return consumer.RunSession(ctx, streamConn{s}, m.Ticket, m.TicketRaw, consumer.SessionOptions{
		Hold: o.Hold,
		Countersign: func(r []byte) ([]byte, error) {
			ack, err := net.Seal(p2p.KindReceiptAck, &pb.ReceiptAck{Receipt: r})
			if err == nil {
				o.receipts.set(r) // opened and checked by RunSession before it asks for the countersignature
			}
			return ack, err
		},
		OpenReceipt: p2p.OpenReceipt,
		Keep:        keep,
		Clock:       clk,
		Accepted:    accepted,
	})
}

// runPlayedSession is runSession that, with o.Render.Play, also plays the render stream from the
// moment the container admits the consumer until the session ends. began is when the consumer asked
// for the match: first_frame_ms counts from it.
func runPlayedSession(ctx context.Context, net *p2p.Net, clk clock.Clock, m *consumer.Match, o ConnectOptions, began time.Time, res *ConnectResult) {
	if !o.Render.Play {
		res.Session, res.SessionErr = runSession(ctx, net, clk, m, o, nil)
		return
	}
	if o.Render.RelayOnly && len(m.ICEServers) == 0 {
		res.RenderErr = ErrNoRelay
		res.Session, res.SessionErr = runSession(ctx, net, clk, m, o, nil)
		return
	}
	var wg sync.WaitGroup
	playCtx, stopPlay := context.WithCancel(ctx)
	ended := make(chan struct{})
	if o.ShareStats && o.statsRoute != nil && o.Render.FPS > 0 {
		smp := &statsSampler{}
		o.receipts = new(latestReceipt)
		o.Render.onFrame = smp.frame
		endAt := time.Now().Add(o.Hold) // the render stream runs on the wall clock
		wg.Go(func() {
			shared, err := shareStats(ctx, net, clk, m.TicketRaw, m.Container, o.statsRoute, o, smp, endAt, ended)
			res.StatsShared += shared
			if err != nil {
				res.StatsErr = err
			}
		})
	}
	accepted := func() {
		wg.Go(func() {
			// A stream that breaks while the session lives is reopened (the container replaces it).
			for attempt := 0; ; attempt++ {
				rep, err := playRender(playCtx, net, m.Ticket, m.TicketRaw, m.ICEServers, began, o.Render)
				if res.Render == nil {
					res.Render = rep
				} else if rep != nil {
					res.Render.Merge(rep)
					res.Render.Reconnects++
				}
				res.RenderErr = err
				if err == nil || playCtx.Err() != nil || attempt >= maxReconnects {
					if playCtx.Err() != nil {
						res.RenderErr = nil // the session ended: a stream cut short by it is no failure
					}
					return
				}
				select {
				case <-playCtx.Done():
					res.RenderErr = nil
					return
				case <-clk.After(500 * time.Millisecond):
				}
			}
		})
	}
	res.Session, res.SessionErr = runSession(ctx, net, clk, m, o, accepted)
	stopPlay()
	close(ended)
	wg.Wait()
}

// streamConn carries session messages over a libp2p stream.
type streamConn struct{ s network.Stream }

func (c streamConn) Open(m *pb.SessionOpen) error { return p2p.WriteMsg(c.s, m) }
func (c streamConn) Send(m *pb.SessionMsg) error  { return p2p.WriteMsg(c.s, m) }
func (c streamConn) Recv() (*pb.SessionMsg, error) {
	m := &pb.SessionMsg{}
	return m, p2p.ReadMsg(c.s, m, p2p.MaxSessionMsgSize)
}

// lightMatchNet is consumer.MatchNet over a light client.
type lightMatchNet struct {
	l      *LightClient
	nc     NetworkConfig
	stakes epoch.StakeSource
	took   time.Duration
}

func (m *lightMatchNet) Self() string { return string(m.l.net.ID()) }

func (m *lightMatchNet) Indexers(ctx context.Context) ([]string, uint64, error) {
	began := m.l.clock.Now()
	tickets, err := m.l.Indexers(ctx, m.nc, m.stakes)
	m.took = m.l.clock.Since(began)
	if err != nil {
		return nil, 0, err
	}
	ids := make([]string, 0, len(tickets))
	for _, t := range tickets {
		ids = append(ids, t.ID)
		m.l.net.AddAddrs(peer.ID(t.ID), t.Msg.GetAddrs(), time.Hour)
	}
	return ids, m.l.Epoch(m.nc), nil
}

func (m *lightMatchNet) Match(ctx context.Context, indexer string, req *pb.MatchRequest) (*pb.MatchResponse, error) {
	return requestMatch(ctx, m.l.net, indexer, req)
}

func (m *lightMatchNet) OpenTicket(raw []byte) (*pb.SessionTicket, string, error) {
	return openTicket(raw)
}

// Connected implements consumer.Connected: a light client asks indexers it holds a connection to
// first (one it asked before, or a full node it asked for the committee).
func (m *lightMatchNet) Connected(p string) bool { return m.l.net.Connected(peer.ID(p)) }

// requestMatch asks indexer on /rendermesh/match/1.0.0. Once the stream is open the request says how
// long the consumer still waits (wait_ms, from ctx's deadline), so that the indexer answers, matched
// or refused, while the consumer still listens, instead of reserving a container for a consumer
// that has gone to the next indexer.
func requestMatch(ctx context.Context, net *p2p.Net, indexer string, req *pb.MatchRequest) (*pb.MatchResponse, error) {
	resp := &pb.MatchResponse{}
	stamp := func() { req.WaitMs = waitMs(ctx) }
	if err := net.RequestStamped(ctx, peer.ID(indexer), p2p.ProtoMatch, req, stamp, resp, p2p.MaxMatchResponseSize); err != nil {
		return nil, err
	}
	return resp, nil
}

// waitMs is how long ctx lets its holder wait from now, in whole milliseconds (at least 1); 0 when
// ctx has no deadline. Deadlines follow the runtime's clock, as the stream's do.
func waitMs(ctx context.Context) uint32 {
	dl, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	left := time.Until(dl)
	return uint32(min(max(left, time.Millisecond), time.Hour) / time.Millisecond)
}

func openTicket(raw []byte) (*pb.SessionTicket, string, error) {
	tk, signer, err := p2p.OpenSessionTicket(raw)
	if err != nil {
		return nil, "", err
	}
	return tk, string(signer), nil
}

// resume goes on after a container died mid-session: while the hold lasts, it gets a new match
// (a fresh request) and runs the rest of the session there, merging what the streams measured.
// A failed match is retried with backoff while the hold lasts: right after a container dies the
// indexers may still be learning it is gone, or their best candidates may be reserved.
func resume(ctx context.Context, net *p2p.Net, clk clock.Clock, req *pb.MatchRequest, o ConnectOptions, began time.Time, res *ConnectResult,
	match func(context.Context, *pb.MatchRequest) (*consumer.Match, error)) {
	if !o.Resume || o.Hold <= 0 {
		return
	}
	backoff := resumeBackoff
	for len(res.Resumed) < maxResumes && res.SessionErr != nil && !errors.Is(res.SessionErr, consumer.ErrSessionRefused) && ctx.Err() == nil {
		left := o.Hold - clk.Since(began)
		if left <= time.Second {
			return
		}
		next := proto.Clone(req).(*pb.MatchRequest)
		next.RequestId = NewRequestID()
		m, err := match(ctx, next)
		if err != nil || !m.Matched {
			if err == nil {
				err = fmt.Errorf("refused (%s): %s", m.Reason, m.Detail)
			}
			res.ResumeErr = fmt.Errorf("new match after the container died: %w", err)
			if left-backoff <= time.Second {
				return
			}
			t := clk.Timer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, 4*resumeBackoff)
			continue
		}
		res.ResumeErr = nil
		backoff = resumeBackoff
		sub := &ConnectResult{Match: m}
		o2 := o
		o2.Hold = left
		runPlayedSession(ctx, net, clk, m, o2, clk.Now(), sub)
		res.Resumed = append(res.Resumed, m.Container)
		res.Session, res.SessionErr = sub.Session, sub.SessionErr
		if res.Render == nil {
			res.Render = sub.Render
		} else {
			res.Render.Merge(sub.Render)
		}
		res.RenderErr = sub.RenderErr
		res.StatsShared += sub.StatsShared
		if sub.StatsErr != nil {
			res.StatsErr = sub.StatsErr
		}
	}
}

var (
	_ consumer.Connected = (*nodeMatchNet)(nil)
	_ consumer.Connected = (*lightMatchNet)(nil)
)
