package simnet

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/rendermesh/rendermesh/node"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/consumer"
)

// Consumers in a simulation: from every region in turn, a peer of that region acts as a consumer and
// gets matched through the epoch's indexers with node.Connect (the code a full node runs as a
// consumer), then holds a session with the reserved container. The requests are part of the plan
// (time, consumer, ranking, request ID), so equal seeds ask the same things.

// Consumers is the match load of a scenario (the [consumers] section).
type Consumers struct {
	// Rate is match requests per simulated second over the whole network; 0: none.
	Rate float64 `toml:"rate"`
	// StartAfter is when requests begin, after epoch 0 starts (and not before measuring does).
	// 0: one epoch length plus 5 s, so that the committee is known and its indexes are warm.
	StartAfter Duration `toml:"start_after"`
	// Hold is how long each consumer keeps its session; negative: match only, no session.
	Hold         Duration `toml:"hold"`
	MaxLatencyMs uint32   `toml:"max_latency_ms"` // 0: any
	Budget       string   `toml:"budget"`         // most a consumer pays per session unit ("0.25"); "": no limit
	App          string   `toml:"app"`
	// Rankings are used in turn, one request after another: index, fee, experience.
	Rankings []string `toml:"rankings"`
	// Timeout: a match that takes longer counts as failed ("timeout").
	Timeout Duration `toml:"timeout"`
	// ReceiptInterval replaces the minute between a session's usage receipts (0: a minute).
	ReceiptInterval Duration `toml:"receipt_interval"`
}

// Rankings are the consumers' criteria, by their scenario names.
var Rankings = []string{"index", "fee", "experience"}

var rankingOf = map[string]pb.Ranking{
	"index":      pb.Ranking_RANKING_INDEX,
	"fee":        pb.Ranking_RANKING_FEE,
	"experience": pb.Ranking_RANKING_EXPERIENCE,
}

func (c *Consumers) validate() error {
	switch {
	case c.Rate < 0:
		return fmt.Errorf("rate %v: want at least 0", c.Rate)
	case c.StartAfter < 0:
		return fmt.Errorf("start_after %v: want at least 0", time.Duration(c.StartAfter))
	case c.Timeout <= 0:
		return fmt.Errorf("timeout %v: want it positive", time.Duration(c.Timeout))
	case c.ReceiptInterval < 0 || (c.ReceiptInterval > 0 && c.ReceiptInterval < Duration(time.Second)) || c.ReceiptInterval > Duration(time.Minute):
		return fmt.Errorf("receipt_interval %v: want 1s to 1m (0: a minute, the network's rule)", time.Duration(c.ReceiptInterval))
	case c.App == "":
		return fmt.Errorf("app: want an app name such as demo")
	}
	if _, err := c.budgetMicros(); err != nil {
		return err
	}
	for _, r := range c.Rankings {
		if _, ok := rankingOf[r]; !ok {
			return fmt.Errorf("ranking %q: want one of %s", r, strings.Join(Rankings, ", "))
		}
	}
	return nil
}

func (c *Consumers) budgetMicros() (uint64, error) {
	if c.Budget == "" {
		return 0, nil
	}
	v, err := node.ParseAmount(c.Budget)
	if err != nil {
		return 0, fmt.Errorf("budget %q: %v", c.Budget, err)
	}
	return v, nil
}

func (c *Consumers) startAfter(epochLength Duration) time.Duration {
	if c.StartAfter > 0 {
		return time.Duration(c.StartAfter)
	}
	return time.Duration(epochLength) + 5*time.Second
}

// matchSlack is the time a session's end takes beyond its hold (the final receipt and its
// countersignature); requests are planned only where match, hold and slack fit in the run.
const matchSlack = 10 * time.Second

// matchPlan is what the plan decides about one match request.
type matchPlan struct {
	region  int
	ranking pb.Ranking
	id      []byte // request ID
}

// planMatches draws the consumers' match requests: a Poisson process from StartAfter into epoch 0
// (and not before measuring starts), regions in turn, each from a random settled peer of the region
// that is not a container (any settled peer of it if there is none); each region's requests take
// the rankings in turn.
func (p *plan) planMatches(r *rand.Rand) {
	c := p.sc.Consumers
	if c.Rate <= 0 {
		return
	}
	timeout, settle := time.Duration(c.Timeout), time.Duration(p.sc.Settle)
	stay := timeout + max(time.Duration(c.Hold), 0) + matchSlack
	nRegions := len(p.sc.Topology.Regions)
	t := max(p.start, time.Duration(p.sc.Warmup)+c.startAfter(p.sc.Epochs.Length))
	p.matchFrom = t
	for k := 0; ; {
		t += time.Duration(r.ExpFloat64() / c.Rate * float64(time.Second))
		if t+stay > p.end {
			return
		}
		// The region in turn, or the next one that has a settled peer.
		var origin *peerSpec
		region := 0
		for j := range nRegions {
			region = (k + j) % nRegions
			var plain, any []*peerSpec
			for _, s := range p.peers {
				if s.role == roleAttacker || s.region != region || !s.settled(t, settle, stay) {
					continue
				}
				any = append(any, s)
				if s.role != roleContainer {
					plain = append(plain, s)
				}
			}
			if len(plain) == 0 {
				plain = any
			}
			if len(plain) > 0 {
				origin = plain[r.IntN(len(plain))]
				break
			}
		}
		if origin == nil {
			continue
		}
		// Rankings in turn within each region's own requests, shifted from one region to the next
		// (a plain turn would give each region one ranking whenever the counts share a factor).
		rk := c.Rankings[(k/nRegions+region)%len(c.Rankings)]
		mp := &matchPlan{region: region, ranking: rankingOf[rk], id: requestID(p.seed, k)}
		k++
		detail := fmt.Sprintf("%s app:%s ranking:%s", p.sc.Topology.Regions[region].Name, c.App, rk)
		p.events = append(p.events, Event{T: t, Kind: "match", Peer: origin.index, Detail: detail, match: mp})
	}
}

// requestID is the k-th match request's ID: fixed by the seed, so that the order in which a consumer
// asks the committee (consumer.Order) is too.
func requestID(seed int64, k int) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(seed))
	binary.BigEndian.PutUint64(b[8:], uint64(k))
	h := sha256.Sum256(append([]byte("rendermesh simnet match"), b[:]...))
	return h[:16]
}

// matchResult is one match request's outcome.
type matchResult struct {
	at       time.Duration
	consumer int
	ok       bool
	reason   string        // why not: the refusal, "timeout", "no_indexers", "error", "consumer_offline"
	took     time.Duration // consumer.Match.Took
	indexer  int           // peer index of the indexer that answered; -1: none known
	ticket   *ticketHold   // nil unless matched
	session  string        // "accepted", "broken" (accepted, ended with an error), "refused", "failed" or "" (none attempted)
	receipts int
}

// ticketHold is how long a ticket held its container, as the consumer saw it: from issue to the end
// of its session if the container accepted it, to its lease's expiry if no session was attempted
// (match only). A ticket whose session was attempted but refused or failed has no known end; it is
// left out of the double-booking check. Times are Unix milliseconds, as tickets carry them: flooring
// every bound to the same grid keeps the order of distinct instants, so the check stays exact.
type ticketHold struct {
	container  int
	start, end int64
	accepted   bool
	checked    bool // its hold is known: accepted, or match only
}

// hbSeen is the newest heartbeat seen from a container.
type hbSeen struct {
	seq           uint64
	at            time.Duration
	busy          bool          // state busy
	reservedUntil time.Duration // since the run began; 0: free
}

// consumerStats is what the simulation records for the match metrics. Guarded by sim.mu.
type consumerStats struct {
	matches []matchResult
	seen    map[int]*hbSeen
	utilSum []float64 // by region: sum over samples of the share of containers busy or reserved
	utilN   []int     // by region: samples with at least one live container
}

// match runs one planned match request from its consumer peer.
func (s *sim) match(e Event) {
	c := s.sc.Consumers
	mp := e.match
	res := matchResult{at: e.T, consumer: e.Peer, indexer: -1}
	defer func() {
		if s.ctx.Err() != nil {
			return // the run ended (or was stopped) under it: not an outcome of the network
		}
		s.mu.Lock()
		s.cons.matches = append(s.cons.matches, res)
		s.mu.Unlock()
	}()
	s.mu.Lock()
	n := s.nodes[e.Peer]
	s.mu.Unlock()
	if n == nil {
		res.reason = "consumer_offline"
		return
	}
	budget, _ := c.budgetMicros() // validated
	region := s.sc.Topology.Regions[mp.region]
	req := &pb.MatchRequest{
		RequestId: mp.id, App: c.App, Location: &pb.Location{Region: region.Name, Geohash: region.Geohash},
		MaxLatencyMs: c.MaxLatencyMs, BudgetMicros: budget, Ranking: mp.ranking,
	}
	hold := time.Duration(c.Hold)
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(c.Timeout)+max(hold, 0)+matchSlack)
	defer cancel()
	cr, err := n.Connect(ctx, req, node.ConnectOptions{Hold: hold})
	end := s.now()
	var m *consumer.Match
	if cr != nil {
		m = cr.Match
	}
	if m == nil {
		switch {
		case errors.Is(err, consumer.ErrNoIndexers):
			res.reason = "no_indexers"
		case errors.Is(err, context.DeadlineExceeded):
			res.reason = "timeout"
		default:
			res.reason = "error"
			s.log.Warn("match", "consumer", e.Peer, "err", err)
		}
		return
	}
	res.took = m.Took
	if i, ok := s.indexOf([]byte(m.Indexer)); ok {
		res.indexer = i
	}
	if !m.Matched {
		res.reason = m.Reason
		if res.reason == "" {
			res.reason = "error"
		}
		// Each indexer asked and what it said or how it failed: the summary counts only the reason.
		s.log.Warn("match failed", "consumer", e.Peer, "reason", res.reason, "detail", m.Detail, "attempts", s.attemptsLog(m.Attempts))
		return
	}
	switch {
	case m.Took > time.Duration(c.Timeout):
		res.reason = "timeout"
	default:
		res.ok = true
	}
	// The ticket and the session, for the double-booking check.
	tk := m.Ticket
	ci, ok := s.indexOf(tk.Container)
	if !ok {
		return
	}
	h := &ticketHold{container: ci, start: tk.IssuedUnixMs}
	switch {
	case hold < 0:
		h.end, h.checked = tk.LeaseExpiresUnixMs, true
	case cr.Session != nil && cr.Session.Accepted:
		h.end, h.accepted, h.checked = s.t0.Add(end).UnixMilli(), true, true
		res.session, res.receipts = "accepted", cr.Session.Receipts
		if cr.SessionErr != nil {
			res.session = "broken"
			s.log.Warn("session ended badly", "consumer", e.Peer, "container", ci, "err", cr.SessionErr)
		}
	case cr.Session != nil && cr.Session.Refused != "":
		res.session = "refused"
		s.log.Warn("session refused", "consumer", e.Peer, "container", ci, "refused", cr.Session.Refused)
	default:
		res.session = "failed"
		s.log.Warn("session failed", "consumer", e.Peer, "container", ci, "err", cr.SessionErr)
	}
	res.ticket = h
}

// attemptsLog writes a match's attempts on one line: the indexer (peer index), time and outcome.
func (s *sim) attemptsLog(as []consumer.Attempt) string {
	parts := make([]string, 0, len(as))
	for _, a := range as {
		out := "matched"
		switch {
		case a.Err != "":
			out = "error: " + a.Err
		case a.Refused != "":
			out = "refused: " + a.Refused
		}
		ix := -1
		if i, ok := s.indexOf([]byte(a.Indexer)); ok {
			ix = i
		}
		parts = append(parts, fmt.Sprintf("peer %d %.1fms %s", ix, a.Ms, out))
	}
	return strings.Join(parts, "; ")
}

// heartbeatSeen keeps the newest heartbeat of container from (called with s.mu held).
func (s *sim) heartbeatSeen(from int, hb *pb.Heartbeat, at time.Duration) {
	if s.sc.Consumers.Rate <= 0 || s.plan.peers[from].role != roleContainer {
		return
	}
	if s.cons.seen == nil {
		s.cons.seen = map[int]*hbSeen{}
	}
	old := s.cons.seen[from]
	if old != nil && hb.Seq <= old.seq {
		return
	}
	h := &hbSeen{seq: hb.Seq, at: at, busy: hb.State == pb.ContainerState_CONTAINER_STATE_BUSY}
	if hb.ReservedUntilUnixMs != 0 {
		h.reservedUntil = time.UnixMilli(hb.ReservedUntilUnixMs).Sub(s.t0)
	}
	s.cons.seen[from] = h
}

// sampleUtilization adds one sample, while consumers run (from the first request the plan allows
// until the end), of each region's share of live containers (a heartbeat within three heartbeat
// intervals) that are busy or reserved.
func (s *sim) sampleUtilization() {
	now := s.now()
	if s.sc.Consumers.Rate <= 0 || now < s.plan.matchFrom || now > s.plan.end {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	nr := len(s.sc.Topology.Regions)
	if s.cons.utilSum == nil {
		s.cons.utilSum, s.cons.utilN = make([]float64, nr), make([]int, nr)
	}
	live, busy := make([]int, nr), make([]int, nr)
	stale := 3 * time.Duration(s.sc.HeartbeatEvery)
	for i, h := range s.cons.seen {
		if now-h.at > stale {
			continue
		}
		r := s.plan.peers[i].region
		live[r]++
		if h.busy || h.reservedUntil > now {
			busy[r]++
		}
	}
	for r := range nr {
		if live[r] > 0 {
			s.cons.utilSum[r] += float64(busy[r]) / float64(live[r])
			s.cons.utilN[r]++
		}
	}
}

// rtt is the topology's round trip between two peers (both directions' one-way delays).
func (s *sim) rtt(a, b int) time.Duration { return s.links.rtt(a, b) }

// matchSummary fills the match metrics.
func (s *sim) matchSummary(sum *Summary, rep *Report) {
	if s.sc.Consumers.Rate <= 0 {
		return
	}
	results := slices.Clone(s.cons.matches)
	slices.SortFunc(results, func(a, b matchResult) int { return cmp.Compare(a.at, b.at) })
	var lat []time.Duration
	var ratios []float64
	var holds []ticketHold
	sum.MatchRefused = map[string]int{}
	ok := 0
	for _, m := range results {
		if m.ok {
			ok++
			lat = append(lat, m.took)
			if m.indexer >= 0 {
				if d := s.rtt(m.consumer, m.indexer); d > 0 {
					ratios = append(ratios, float64(m.took)/float64(d))
				}
			}
		} else {
			sum.MatchRefused[m.reason]++
		}
		switch m.session {
		case "accepted", "broken":
			sum.Sessions++
			sum.SessionReceipts += m.receipts
		}
		if m.session == "refused" || m.session == "failed" || m.session == "broken" {
			sum.SessionFailures++
		}
		if m.ticket != nil {
			holds = append(holds, *m.ticket)
		}
	}
	sum.Matches = len(results)
	sum.MatchSuccessRatio = ratio(ok, len(results))
	sum.MatchMsP50, sum.MatchMsP99 = ms(percentile(lat, 50)), ms(percentile(lat, 99))
	rep.MatchLatencies = msList(lat)
	slices.Sort(ratios)
	sum.MatchRTTRatioP50 = roundTo(pct(ratios, 50), 100)
	sum.DoubleBooked = doubleBooked(holds)
	sum.UtilizationByRegion = map[string]float64{}
	for r, reg := range s.sc.Topology.Regions {
		u := 0.0
		if r < len(s.cons.utilN) && s.cons.utilN[r] > 0 {
			u = s.cons.utilSum[r] / float64(s.cons.utilN[r])
		}
		sum.UtilizationByRegion[reg.Name] = roundTo(u, 10000)
	}
}

// doubleBooked counts pairs of tickets for one container whose holds overlap, among the tickets
// whose holds are known (accepted sessions, and leases of match-only requests). A container holds at
// most one lease or session at a time, so every such pair is a double booking. Bounds are whole
// milliseconds; holds that only touch do not overlap.
func doubleBooked(holds []ticketHold) int {
	by := map[int][]ticketHold{}
	for _, h := range holds {
		if h.checked {
			by[h.container] = append(by[h.container], h)
		}
	}
	n := 0
	for _, hs := range by {
		slices.SortFunc(hs, func(a, b ticketHold) int { return cmp.Compare(a.start, b.start) })
		for i, a := range hs {
			for _, b := range hs[i+1:] {
				if b.start >= a.end {
					break // sorted by start: no later hold starts before a ends
				}
				n++
			}
		}
	}
	return n
}

func roundTo(v, scale float64) float64 { return float64(int64(v*scale+0.5)) / scale }
