package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/checker"
	"github.com/rendermesh/rendermesh/roles/container"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// Checks during sessions (docs/CHECKERS.md, "Checks during sessions"). A consumer that consents
// (ConnectOptions.ShareStats) samples its render session's stream and, every StatsEvery and when
// the session ends, sends the sample, signed, to the first checker the epoch's seed assigns to the
// container. The checker verifies the sample, its session ticket and its own assignment, judges it
// (checker.JudgeSession) and attests a failure as a SESSION check (method SESSION_STATS).
//
// Passing samples are counted, not attested: a consumer's measurements cannot be verified, and a
// pass would set the container's standing back to standby, so a container colluding with a consumer
// could wash out a failure. A failure sends the container to needs_recheck, where its assigned
// checkers' own checks decide; a checker attests at most one session failure per container per
// epoch, so a consumer that lies costs an honest container one recheck an epoch at most.

// Session statistics parameters.
const (
	// DefaultStatsEvery is how often a consenting consumer samples its session.
	DefaultStatsEvery = time.Minute
	// MinStatsEvery is the shortest sampling interval (checker.DefaultSessionRule judges windows of
	// 3 s or more: the first window starts at the first frame, the last ends with the session).
	MinStatsEvery = 5 * time.Second
	// statsSkew bounds how far a sample's time may be from the checker's clock.
	statsSkew = 30 * time.Second
	// statsTimeout bounds sending one sample and serving one.
	statsTimeout = 10 * time.Second
	// maxStatsSessions bounds the sessions a checker follows per epoch; maxSessionSamples the
	// samples it takes from one session per epoch.
	maxStatsSessions  = 4096
	maxSessionSamples = 256
)

// sessionStatsState is a checker's memory of the samples it took.
type sessionStatsState struct {
	// seq holds each session's last sample number taken and when, across epochs: a replayed
	// sample must not count again in the next epoch. A session is forgotten once its last sample
	// is older than twice statsSkew, when a replay of it is refused as stale anyway.
	seq    map[string]seenSample
	failed map[uint64]map[string]bool // epoch -> container -> a session failure attested
	taken  map[uint64]map[string]int  // epoch -> session ID -> samples taken
}

type seenSample struct {
	seq uint32
	at  time.Time
}

// serveSessionStats takes one sample from a consumer and answers whether it was taken.
func (c *checkerSvc) serveSessionStats(ctx context.Context, remote peer.ID, rw io.ReadWriter) error {
	raw, err := p2p.ReadSessionStats(rw)
	if err != nil {
		return err
	}
	ack := &pb.SessionStatsAck{Accepted: true}
	if reason := c.takeSessionStats(remote, raw); reason != "" {
		if len(reason) > p2p.MaxSessionStatsReason {
			reason = strings.ToValidUTF8(reason[:p2p.MaxSessionStatsReason], "")
		}
		ack.Accepted, ack.Reason = false, reason
		c.count(func(s *CheckerStats) { s.SessionRefused++ })
		c.log.Debug("session statistics refused", "consumer", remote, "reason", reason)
	}
	return p2p.WriteMsg(rw, ack)
}

// takeSessionStats checks a sample and acts on it; it returns why it was not taken ("" when it was).
func (c *checkerSvc) takeSessionStats(remote peer.ID, raw []byte) string {
	o, err := p2p.OpenSessionStats(raw)
	if err != nil {
		return err.Error()
	}
	s, tk := o.Sample, o.Ticket
	if o.Consumer != remote {
		return "the sample's consumer did not send it"
	}
	now := c.n.opts.Clock.Now()
	if d := now.Sub(time.UnixMilli(s.SentUnixMs)); d > statsSkew || d < -statsSkew {
		return fmt.Sprintf("sent %v away from this checker's clock", d.Round(time.Millisecond))
	}
	if reason := sessionLive(tk, o.Receipt, now); reason != "" {
		return reason
	}
	sched := c.n.ep.tr.Schedule()
	e := sched.Epoch(now)
	if tk.Epoch > e {
		return fmt.Sprintf("a ticket of epoch %d, after the current epoch %d", tk.Epoch, e)
	}
	// The indexer served the ticket's epoch: its committee (or the one carried into an epoch that
	// drew nobody), or the previous epoch's during the grace after it.
	isIndexer := func(e uint64) bool {
		serving, _ := c.n.ep.tr.Serving(e)
		return slices.ContainsFunc(serving, func(t *epoch.Ticket) bool { return t.ID == string(tk.Indexer) })
	}
	if !isIndexer(tk.Epoch) && (tk.Epoch == 0 || !isIndexer(tk.Epoch-1)) {
		return fmt.Sprintf("the ticket's indexer %s did not serve epoch %d", peer.ID(tk.Indexer), tk.Epoch)
	}
	// The checker is assigned to the container now, or was in the ticket's epoch: a consumer routes
	// its samples by the seed of the epoch whose committee it verified when it was matched, and its
	// session goes on into the next epochs (one checker follows it), or in the previous epoch
	// during the grace after it (the consumer's clock may still read the last epoch).
	container := string(tk.Container)
	assigned := c.assigned(e, container) || (tk.Epoch < e && c.assigned(tk.Epoch, container))
	if !assigned && c.n.ep.tr.InGrace(now) {
		assigned = c.assigned(e-1, container)
	}
	if !assigned {
		return fmt.Sprintf("this checker is not assigned to container %s in epoch %d", peer.ID(container), e)
	}
	if reason := c.admitSample(e, string(tk.SessionId), s.Seq, now); reason != "" {
		return reason
	}
	c.count(func(st *CheckerStats) { st.SessionSamples++ })
	res, ok := checker.JudgeSession(sessionSampleOf(s), checker.SessionRule{}, raw)
	if !ok || res.Verdict == checker.Pass {
		return "" // taken; only failures are attested
	}
	if !c.firstSessionFailure(e, container) {
		return ""
	}
	nonce := binary.BigEndian.AppendUint32(slices.Clone(tk.SessionId), s.Seq)
	c.publish(c.ctx, peer.ID(container), nil, pb.CheckKind_CHECK_KIND_SESSION, pb.CheckMethod_CHECK_METHOD_SESSION_STATS, nonce, res)
	return ""
}

// maxReceiptAge is how old the usage receipt of a sample sent after its ticket's booked span may
// be: a container seals one every receipt interval (the network's rule: a minute at most) once the
// last was countersigned; the slack covers a countersignature in flight and the clocks' skew.
const maxReceiptAge = 2*ReceiptInterval + statsSkew

// sessionLive says why a sample of the session that ticket tk opened cannot be of a session that
// runs at now ("" when it can be). A ticket books a span: from its start (a wholesale booking's, or
// the match) for its units, a retail consumer arriving before the lease lapses. Within that span,
// the ticket is enough; after it, the session must have been renewed, and only a usage receipt
// the container sealed within maxReceiptAge says so. Without this bound, a consumer would keep an
// old ticket and report a container it once used as failing, every epoch, for ever.
func sessionLive(tk *pb.SessionTicket, receipt *pb.UsageReceipt, now time.Time) string {
	start := time.UnixMilli(tk.StartUnixMs)
	if now.Before(start.Add(-statsSkew)) {
		return fmt.Sprintf("a session that starts at %s, not yet", start.UTC().Format(time.RFC3339))
	}
	from := start
	if tk.Mode != pb.ServiceMode_SERVICE_MODE_WHOLESALE {
		from = time.UnixMilli(max(tk.StartUnixMs, tk.LeaseExpiresUnixMs))
	}
	end := from.Add(time.Duration(max(tk.Units, 1)) * container.UnitLength)
	if !now.After(end.Add(statsSkew)) {
		return ""
	}
	if receipt == nil {
		return fmt.Sprintf("the ticket's span ended at %s, and the sample carries no usage receipt", end.UTC().Format(time.RFC3339))
	}
	if age := now.Sub(time.UnixMilli(receipt.IssuedUnixMs)); age > maxReceiptAge || age < -statsSkew {
		return fmt.Sprintf("the ticket's span ended at %s, and its latest usage receipt was issued %v ago", end.UTC().Format(time.RFC3339), age.Round(time.Second))
	}
	return ""
}

// assignedChecker is the first checker the current epoch's seed assigns to container, as this
// full node's election tracker knows it.
func (n *Node) assignedChecker(container string) (peer.ID, error) {
	e := n.ep.tr.Schedule().Epoch(n.opts.Clock.Now())
	seed, ok := n.ep.tr.Seed(e)
	if !ok {
		return "", fmt.Errorf("no seed of epoch %d yet", e)
	}
	a := AssignedCheckers(seed, container, licensedCheckers(n.ep.tr.Candidates(e)), 1)
	if len(a) == 0 {
		return "", fmt.Errorf("no licensed checker in epoch %d", e)
	}
	return peer.ID(a[0]), nil
}

// assigned says whether this checker is one of container's assigned checkers in epoch e.
func (c *checkerSvc) assigned(e uint64, container string) bool {
	seed, ok := c.n.ep.tr.Seed(e)
	return ok && c.rank(e, seed, container) >= 0
}

// admitSample takes sample seq of a session once and in order (whatever the epoch), up to
// maxSessionSamples per session per epoch, following at most maxStatsSessions sessions.
func (c *checkerSvc) admitSample(e uint64, session string, seq uint32, now time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &c.sessionStats
	if st.seq == nil {
		st.seq, st.failed, st.taken = map[string]seenSample{}, map[uint64]map[string]bool{}, map[uint64]map[string]int{}
	}
	for k := range st.failed {
		if k+1 < e {
			delete(st.failed, k)
			delete(st.taken, k)
		}
	}
	if st.failed[e] == nil {
		st.failed[e], st.taken[e] = map[string]bool{}, map[string]int{}
	}
	last, known := st.seq[session]
	if !known && len(st.seq) >= maxStatsSessions {
		for id, x := range st.seq {
			if now.Sub(x.at) > 2*statsSkew {
				delete(st.seq, id)
			}
		}
	}
	switch {
	case known && seq <= last.seq:
		return fmt.Sprintf("sample %d of this session again (the last taken was %d)", seq, last.seq)
	case !known && len(st.seq) >= maxStatsSessions:
		return "following too many sessions"
	case st.taken[e][session] >= maxSessionSamples:
		return "too many samples of this session this epoch"
	}
	st.seq[session] = seenSample{seq: seq, at: now}
	st.taken[e][session]++
	return ""
}

// firstSessionFailure records a session failure of container in epoch e and says whether it is
// the first: the only one attested.
func (c *checkerSvc) firstSessionFailure(e uint64, container string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessionStats.failed[e][container] {
		return false
	}
	c.sessionStats.failed[e][container] = true
	return true
}

// sessionSampleOf turns a wire sample into what checker.JudgeSession judges.
func sessionSampleOf(s *pb.SessionStats) checker.SessionSample {
	return checker.SessionSample{
		Window: time.Duration(s.WindowMs) * time.Millisecond, FPSAsked: int(s.FpsAsked),
		Frames: int(s.Frames), FramesLost: int(s.FramesLost), FPS: float64(s.FpsMilli) / 1000,
		Width: int(s.Width), Height: int(s.Height),
		LatencyP50: time.Duration(s.LatencyUsP50) * time.Microsecond,
		LongestGap: time.Duration(s.LongestGapMs) * time.Millisecond,
	}
}

// statsSampler measures a session's stream for the consumer's samples: the frames the player
// decodes (from every render stream of the session, reconnects included), per window.
type statsSampler struct {
	mu        sync.Mutex
	start     time.Time // the window's start: the first frame, then the last flush
	last      time.Time // the last frame's arrival
	lastNum   uint32
	frames    int
	lost      int
	gap       time.Duration
	latencies []time.Duration
	sizes     map[[2]int]int
	seq       uint32
}

// frame counts one decoded frame (render.PlayOptions.OnFrame).
func (s *statsSampler) frame(img *image.YCbCr, num uint32, latency time.Duration, ok bool) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start.IsZero() {
		s.start, s.last = now, now
	}
	s.gap = max(s.gap, now.Sub(s.last))
	s.last = now
	s.frames++
	if ok {
		if s.lastNum != 0 && num > s.lastNum+1 {
			s.lost += int(num - s.lastNum - 1)
		}
		s.lastNum = num // a new stream numbers from 1 again: nothing counted lost
		s.latencies = append(s.latencies, latency)
	}
	if s.sizes == nil {
		s.sizes = map[[2]int]int{}
	}
	s.sizes[[2]int{img.Rect.Dx(), img.Rect.Dy()}]++
}

// flush ends the window at now and returns its sample (without ticket and time), or nil when the
// stream has not started or the window is shorter than the wire allows.
func (s *statsSampler) flush(now time.Time, fpsAsked int, relay bool) *pb.SessionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start.IsZero() || now.Sub(s.start) < p2p.MinSessionStatsWindowMs*time.Millisecond {
		return nil
	}
	window := min(now.Sub(s.start), p2p.MaxSessionStatsWindowMs*time.Millisecond)
	s.gap = max(s.gap, now.Sub(s.last))
	s.seq++
	out := &pb.SessionStats{
		Seq: s.seq, WindowMs: uint32(window.Milliseconds()), FpsAsked: uint32(fpsAsked),
		Frames: uint32(s.frames), FramesLost: uint32(s.lost),
		FpsMilli:     uint32(float64(s.frames) / window.Seconds() * 1000),
		LongestGapMs: uint32(min(s.gap, window).Milliseconds()), Relay: relay,
	}
	best := 0
	for wh, n := range s.sizes {
		if n > best || (n == best && wh[0]*wh[1] > int(out.Width*out.Height)) {
			best, out.Width, out.Height = n, uint32(wh[0]), uint32(wh[1])
		}
	}
	if len(s.latencies) > 0 {
		out.LatencyUsP50 = uint32(Percentile(s.latencies, 50).Microseconds())
		out.LatencyUsP99 = uint32(Percentile(s.latencies, 99).Microseconds())
	}
	s.start, s.last = now, now
	s.frames, s.lost, s.gap, s.latencies, s.sizes = 0, 0, 0, s.latencies[:0], nil
	return out
}

// shareStats samples a played session every o.StatsEvery and sends each sample to the container's
// assigned checker, until done closes; then it sends the last window, which ends when the consumer
// asks to end the session (endAt, the end of its hold: the container streams until then) or when
// done closes, whichever is first. It returns how many samples the checkers took and the last error.
func shareStats(ctx context.Context, net *p2p.Net, clk clock.Clock, ticketRaw []byte, container string,
	route func(container string) (peer.ID, error), o ConnectOptions, smp *statsSampler, endAt time.Time, done <-chan struct{}) (int, error) {
	every := o.StatsEvery
	if every <= 0 {
		every = DefaultStatsEvery
	}
	every = max(every, MinStatsEvery)
	shared := 0
	var lastErr error
	send := func(end time.Time) {
		s := smp.flush(end, o.Render.FPS, o.Render.RelayOnly)
		if s == nil {
			return
		}
		s.Ticket, s.Receipt = ticketRaw, o.receipts.get()
		if _, err := sendSample(ctx, net, clk, route, container, s); err != nil {
			lastErr = err
			return
		}
		shared++
	}
	t := clk.Ticker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			send(time.Now())
		case <-done:
			end := time.Now()
			if endAt.Before(end) {
				end = endAt
			}
			send(end)
			return shared, lastErr
		case <-ctx.Done():
			return shared, lastErr
		}
	}
}

// latestReceipt is the latest usage receipt of a session, as its container sealed it: a consumer's
// samples carry it, so that a checker takes them after the span the ticket booked (sessionLive).
// A nil *latestReceipt keeps nothing.
type latestReceipt struct {
	mu  sync.Mutex
	raw []byte
}

func (l *latestReceipt) set(raw []byte) {
	if l != nil {
		l.mu.Lock()
		l.raw = raw
		l.mu.Unlock()
	}
}

func (l *latestReceipt) get() []byte {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw
}

// sendSample signs sample s (its ticket set) as this consumer, with the time now, and sends it to
// container's assigned checker (route). It returns the checker; an error when the sample could not
// be sent or the checker did not take it.
func sendSample(ctx context.Context, net *p2p.Net, clk clock.Clock, route func(container string) (peer.ID, error),
	container string, s *pb.SessionStats) (peer.ID, error) {
	s.SentUnixMs = clk.Now().UnixMilli()
	chk, err := route(container)
	if err != nil {
		return "", err
	}
	raw, err := net.SealSessionStats(s)
	if err != nil {
		return chk, err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statsTimeout)
	defer cancel()
	ack, err := net.SendSessionStats(sctx, chk, raw)
	if err != nil {
		return chk, err
	}
	if !ack.Accepted {
		return chk, fmt.Errorf("checker %s did not take sample %d: %s", chk, s.Seq, ack.Reason)
	}
	return chk, nil
}
