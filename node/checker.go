package node

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render"
	"github.com/rendermesh/rendermesh/roles/checker"
	"github.com/rendermesh/rendermesh/roles/epoch"
	"github.com/rendermesh/rendermesh/roles/indexer"
)

// checkerSvc is every elections-following node's part in checking: it validates the attestations
// on rendermesh/attest/1, keeps them in a ledger (per-container summaries, standings, each epoch's
// Merkle root) and acts on them: a container follows its own standing, an indexer folds the
// scores into ranking and bars containers whose last check failed or that were excluded.
//
// A node with the checker role also checks containers. Which checkers check which container in
// epoch e comes from the epoch's seed (rendezvous hashing over the licensed checkers: the
// PerContainer checkers with the lowest SHA-256(seed(e) || container || checker)), so nobody knows
// it before the epoch starts; when the first of them spot-checks a container in standby comes from
// a secret of that checker (HMAC under a key derived from its identity), so the container cannot
// know it at all. All assigned checkers check a container that awaits its registration check or
// needs a recheck.
type checkerSvc struct {
	n      *Node
	log    *slog.Logger
	v      *p2p.AttestValidator
	ledger *checker.Ledger
	elig   *checkerEligibility
	role   bool // runs the checker role
	cfg    CheckerConfig
	prf    []byte // the key of this checker's secret timing
	sem    chan struct{}
	load   LoadProbe // this machine's load while it checks

	mu             sync.Mutex
	watched        map[string]watchedContainer
	last           map[string]time.Time // when this checker last started a check of a container
	running        map[string]bool
	refusals       map[string]int       // checks in a row a container refused as busy
	retryAt        map[string]time.Time // when a check a container refused as busy is due again
	randomDone     map[uint64]map[string]bool
	ranks          map[uint64]map[string]int
	excluded       map[string]checker.Decision // final: kept after the ledger forgets the epochs
	delays         []time.Duration             // issue to arrival of accepted attestations (bounded)
	overloadWarned time.Time
	stats          CheckerStats

	checkStreams chan struct{} // the container's side: challenge sessions served at once

	ctx          context.Context // the node's, set by start
	sessionStats sessionStatsState
}

// watchedContainer is what the checker knows of a container from its heartbeats.
type watchedContainer struct {
	state pb.ContainerState
	seen  time.Time
}

// CheckerStats count a checker's work.
type CheckerStats struct {
	Checks       int // checks published (one per method)
	Passed       int
	Failed       int
	Inconclusive int // not attested: the container was busy, the checker stopped, ...
	// Confirmations counts the checks run again because one failed on timing (timingConfirmations).
	Confirmations int
	// Overloaded counts the checks (one per method and attempt) measured while this machine
	// could not keep up (MachineLoad.Overloaded).
	Overloaded int
	// OwnLimit counts the checks deferred because this node's resource manager refused their
	// connection or stream at its own limit (errOwnLimit): not counted against the container.
	OwnLimit    int
	PublishErrs int
	// SessionSamples counts consumers' session samples taken (judged; failures attested),
	// SessionRefused those refused (docs/CHECKERS.md, "Checks during sessions").
	SessionSamples int
	SessionRefused int
}

// Checking parameters.
const (
	// MaxPerContainer bounds checker.per_container: a container admits challenges from the first
	// MaxPerContainer checkers the epoch's seed assigns to it, whatever the checkers' setting.
	MaxPerContainer = 16
	maxDelays       = 4096 // attestation delays kept per node
	// defaultLedgerEpochs is how many epochs the ledger keeps (settlement reads them before;
	// Options.LedgerEpochs overrides it).
	defaultLedgerEpochs = 8
	// maxCheckStreams bounds the challenge sessions a container serves at once.
	maxCheckStreams = 2
	// telemetrySamples and telemetrySpacing shape a telemetry check's window.
	telemetrySamples = 5
	telemetrySpacing = 100 * time.Millisecond
	// checkSetup bounds how long a challenge session may take to deliver its first frame.
	checkSetup = 10 * time.Second
	// refusedBusy is a container's answer when it serves as many checks as it can.
	refusedBusy = "busy"
)

func (n *Node) newChecker() (*checkerSvc, error) {
	ledger, err := checker.NewLedger(checker.LedgerConfig{})
	if err != nil {
		return nil, err
	}
	elig := &checkerEligibility{tr: n.ep.tr, cache: map[uint64][]string{}}
	v, err := p2p.NewAttestValidator(p2p.AttestConfig{
		Schedule: n.ep.tr.Schedule(), Eligibility: elig, Clock: n.opts.Clock,
		// The network's grace (network.grace), as the tracker's: an ended epoch's attestations
		// are accepted as long as its committee serves.
		Grace:   n.ep.tr.Grace(),
		Metrics: p2p.NewAttestMetrics(n.opts.Registry),
	})
	if err != nil {
		return nil, err
	}
	c := &checkerSvc{
		n: n, log: n.log.With("sub", "checks"), v: v, ledger: ledger, elig: elig,
		role: n.cfg.HasRole(RoleChecker), cfg: n.cfg.Checker,
		watched: map[string]watchedContainer{}, last: map[string]time.Time{}, running: map[string]bool{},
		refusals: map[string]int{}, retryAt: map[string]time.Time{},
		randomDone: map[uint64]map[string]bool{}, ranks: map[uint64]map[string]int{},
		excluded: map[string]checker.Decision{}, checkStreams: make(chan struct{}, maxCheckStreams),
	}
	c.sem = make(chan struct{}, max(1, c.cfg.Concurrent))
	if c.load = n.opts.Load; c.load == nil {
		c.load = NewRuntimeLoad()
	}
	if n.ep.sk != nil {
		k := sha256.Sum256(append([]byte("rendermesh check timing\x00"), n.ep.sk.Seed()...))
		c.prf = k[:]
	} else {
		c.prf = make([]byte, 32)
		_, _ = rand.Read(c.prf)
	}
	return c, nil
}

// start joins the attestation topic and, with the checker role, follows every region's
// heartbeats and runs the schedule.
func (c *checkerSvc) start(ctx context.Context, wg *sync.WaitGroup) error {
	c.ctx = ctx
	if err := c.n.net.JoinAttestations(c.v, c.onValid); err != nil {
		return err
	}
	if !c.role {
		return nil
	}
	c.n.net.Handle(p2p.ProtoSessionStats, statsTimeout, c.serveSessionStats)
	if !c.elig.Eligible(c.n.net.ID(), c.n.ep.tr.Schedule().Epoch(c.n.opts.Clock.Now())) {
		c.log.Warn("this node runs the checker role without a checker licence in the network's allocation: its attestations will be rejected until it has one")
	}
	for _, r := range c.n.cfg.Network.Regions {
		if err := c.n.net.SubscribeHeartbeatsUntil(ctx, r, c.onHeartbeat); err != nil {
			return fmt.Errorf("checker: follow region %s: %w", r, err)
		}
	}
	wg.Go(func() { c.loop(ctx, wg) })
	return nil
}

// checkerEligibility is the attestation validator's CheckerEligibility: the candidates of the
// epoch's stake source that hold a checker licence.
type checkerEligibility struct {
	tr *epoch.Tracker
	mu sync.Mutex
	// cache holds each epoch's licensed checkers, sorted (raw peer IDs).
	cache map[uint64][]string
}

func (e *checkerEligibility) checkers(ep uint64) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cs, ok := e.cache[ep]; ok {
		return cs
	}
	cs := licensedCheckers(e.tr.Candidates(ep))
	for k := range e.cache {
		if k+4 < ep || k > ep+4 {
			delete(e.cache, k)
		}
	}
	e.cache[ep] = cs
	return cs
}

// licensedCheckers are the candidates that hold a checker licence, sorted (raw peer IDs).
func licensedCheckers(cands []epoch.Candidate) []string {
	var cs []string
	for _, cand := range cands {
		if cand.Checker {
			cs = append(cs, cand.ID)
		}
	}
	sort.Strings(cs)
	return cs
}

// Eligible implements p2p.CheckerEligibility.
func (e *checkerEligibility) Eligible(p peer.ID, ep uint64) bool {
	cs := e.checkers(ep)
	i := sort.SearchStrings(cs, string(p))
	return i < len(cs) && cs[i] == string(p)
}

// mayChallenge says whether container admits a challenge session from checker at now: checker
// holds a licence in the current epoch and is one of the first MaxPerContainer checkers the epoch's
// seed assigns to container (or the previous epoch's, during the grace after it).
func (e *checkerEligibility) mayChallenge(container string, checker peer.ID, now time.Time) error {
	sched := e.tr.Schedule()
	cur := sched.Epoch(now)
	if !e.Eligible(checker, cur) {
		return fmt.Errorf("%s holds no checker licence in epoch %d", checker, cur)
	}
	assigned := func(ep uint64) bool {
		seed, ok := e.tr.Seed(ep)
		return ok && slices.Contains(AssignedCheckers(seed, container, e.checkers(ep), MaxPerContainer), string(checker))
	}
	if !assigned(cur) && !(e.tr.InGrace(now) && assigned(cur-1)) {
		return fmt.Errorf("%s is not among the checkers epoch %d's seed assigns to this container", checker, cur)
	}
	return nil
}

// AssignedCheckers returns, best first, the k licensed checkers of epoch e that the epoch's seed
// assigns to container (rendezvous hashing: the lowest SHA-256(seed || container || checker)).
// Every node computes the same list.
func AssignedCheckers(seed epoch.Seed, container string, licensed []string, k int) []string {
	type scored struct {
		id string
		h  [32]byte
	}
	var all []scored
	for _, id := range licensed {
		if id == container {
			continue // a node does not check itself
		}
		all = append(all, scored{id, rendezvous(seed, container, id)})
	}
	slices.SortFunc(all, func(a, b scored) int {
		if c := strings.Compare(string(a.h[:]), string(b.h[:])); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	out := make([]string, 0, k)
	for i := 0; i < len(all) && i < k; i++ {
		out = append(out, all[i].id)
	}
	return out
}

func rendezvous(seed epoch.Seed, container, checkerID string) [32]byte {
	h := sha256.New()
	h.Write([]byte("rendermesh check assignment\x00"))
	h.Write(seed[:])
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(container)))
	h.Write(l[:])
	h.Write([]byte(container))
	h.Write([]byte(checkerID))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// rank is this checker's place among container's assigned checkers in epoch e, -1 if it is not
// one of them.
func (c *checkerSvc) rank(e uint64, seed epoch.Seed, container string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.ranks[e]
	if m == nil {
		m = map[string]int{}
		c.ranks[e] = m
	}
	if r, ok := m[container]; ok {
		return r
	}
	r := slices.Index(AssignedCheckers(seed, container, c.elig.checkers(e), c.cfg.PerContainer), string(c.n.net.ID()))
	m[container] = r
	return r
}

// randomDue says whether this checker's spot check of container falls in epoch e and, if so,
// whether its secret time in the epoch (between 5% and 75% of it) has come.
func (c *checkerSvc) randomDue(e uint64, container string, now time.Time) (due, this bool) {
	mac := hmac.New(sha256.New, c.prf)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], e)
	mac.Write(b[:])
	mac.Write([]byte(container))
	h := mac.Sum(nil)
	if binary.BigEndian.Uint64(h[:8])%uint64(c.cfg.RandomEvery) != 0 {
		return false, false
	}
	sched := c.n.ep.tr.Schedule()
	span := sched.Length * 70 / 100
	at := sched.Start(e).Add(sched.Length*5/100 + time.Duration(binary.BigEndian.Uint64(h[8:16])%uint64(max(1, span))))
	return !now.Before(at), true
}

func (c *checkerSvc) onHeartbeat(hb *pb.Heartbeat) {
	id := string(hb.PeerId)
	if id == string(c.n.net.ID()) {
		return
	}
	c.mu.Lock()
	c.watched[id] = watchedContainer{state: hb.State, seen: c.n.opts.Clock.Now()}
	c.mu.Unlock()
}

// loop runs the schedule: twice a second it looks at the containers it follows and starts the
// checks that are due.
func (c *checkerSvc) loop(ctx context.Context, wg *sync.WaitGroup) {
	clk := c.n.opts.Clock
	tick := clk.Ticker(500 * time.Millisecond)
	defer tick.Stop()
	sched := c.n.ep.tr.Schedule()
	stale := staleAfter * time.Duration(c.n.cfg.Container.HeartbeatInterval)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := clk.Now()
		if now.Before(sched.Start(0)) {
			// Checks start with the network: attestations gossiped before genesis would miss
			// the nodes still joining, and every node must hold every epoch's attestations to
			// compute its root.
			continue
		}
		e := sched.Epoch(now)
		seed, ok := c.n.ep.tr.Seed(e)
		if !ok {
			continue // not caught up with the elections yet
		}
		c.prune(e)
		c.mu.Lock()
		ids := make([]string, 0, len(c.watched))
		for id, w := range c.watched {
			if now.Sub(w.seen) > stale {
				delete(c.watched, id)
				delete(c.refusals, id)
				delete(c.retryAt, id)
				continue
			}
			ids = append(ids, id)
		}
		c.mu.Unlock()
		sort.Strings(ids)
		for _, id := range ids {
			c.consider(ctx, wg, e, seed, id, now)
		}
	}
}

// consider starts the check of container id that is due now, if any.
func (c *checkerSvc) consider(ctx context.Context, wg *sync.WaitGroup, e uint64, seed epoch.Seed, id string, now time.Time) {
	// The rank first: a checker is assigned a few of the containers it follows, and the
	// standing costs a walk of the container's history.
	r := c.rank(e, seed, id)
	if r < 0 {
		return
	}
	d := c.standing(id)
	if d.Standing == checker.StandingExcluded {
		return // final: checking it again costs and changes nothing
	}
	c.mu.Lock()
	w := c.watched[id]
	running := c.running[id]
	in := dueInput{state: w.state, rank: r, retryAt: c.retryAt[id], spotDone: c.randomDone[e][id]}
	in.last, in.checked = c.last[id]
	c.mu.Unlock()
	if running {
		return
	}
	state := w.state
	if d.Standing == checker.StandingNeedsRecheck && state == pb.ContainerState_CONTAINER_STATE_STANDBY {
		state = pb.ContainerState_CONTAINER_STATE_NEEDS_RECHECK // its heartbeats ignore the verdict
	}
	in.state = state
	switch dueCheck(in, time.Duration(c.cfg.Recheck), now, func() (bool, bool) { return c.randomDue(e, id, now) }) {
	case dueRegistration:
		c.launch(ctx, wg, id, pb.CheckKind_CHECK_KIND_REGISTRATION, state, now)
	case dueRetry:
		c.launch(ctx, wg, id, pb.CheckKind_CHECK_KIND_RANDOM, state, now)
	case dueSpot:
		if c.launch(ctx, wg, id, pb.CheckKind_CHECK_KIND_RANDOM, state, now) {
			c.markRandom(e, id)
		}
	case dueNoSpot:
		c.markRandom(e, id)
	}
}

// dueInput is what the schedule knows of one container assigned to this checker.
type dueInput struct {
	state    pb.ContainerState // as the checker reads it (a standby container that needs a recheck reads NEEDS_RECHECK)
	rank     int               // this checker's place among its assigned checkers
	checked  bool              // this checker has started a check of it before ...
	last     time.Time         // ... last at this time
	retryAt  time.Time         // a deferred check is due again at this time; zero: none is
	spotDone bool              // this epoch's spot check is done, or is not this checker's
}

// due is what the schedule does with a container now.
type due int

const (
	dueNothing      due = iota
	dueRegistration     // a registration check (or a recheck)
	dueRetry            // a deferred check, again
	dueSpot             // this epoch's spot check
	dueNoSpot           // no spot check of it this epoch from this checker: remember that
)

// dueCheck decides which check of a container is due at now. A container that awaits its
// registration check, or needs a recheck, is checked each recheck interval; one in standby is
// spot-checked once an epoch, at a time spot says (this: the epoch has a spot check of it from
// this checker; due: its time has come), by its first assigned checker. A deferred check (the
// container refused it as busy, or could not be reached) comes back at its retry time and not
// before, whatever the state: a spot check that falls while a retry waits would otherwise count
// as another refusal at once (a 1,000-peer run saw a second refusal 5 s after the first).
func dueCheck(in dueInput, recheck time.Duration, now time.Time, spot func() (due, this bool)) due {
	if !in.retryAt.IsZero() {
		if now.Before(in.retryAt) {
			return dueNothing
		}
		if in.state == pb.ContainerState_CONTAINER_STATE_STANDBY {
			return dueRetry
		}
	}
	switch in.state {
	case pb.ContainerState_CONTAINER_STATE_AWAITING_CHECK, pb.ContainerState_CONTAINER_STATE_NEEDS_RECHECK:
		if in.retryAt.IsZero() && in.checked && now.Sub(in.last) < recheck {
			return dueNothing
		}
		return dueRegistration
	case pb.ContainerState_CONTAINER_STATE_STANDBY:
		if in.rank != 0 || in.spotDone {
			return dueNothing
		}
		switch due, this := spot(); {
		case !this:
			return dueNoSpot
		case due:
			return dueSpot
		}
	}
	return dueNothing
}

func (c *checkerSvc) markRandom(e uint64, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.randomDone[e] == nil {
		c.randomDone[e] = map[string]bool{}
	}
	c.randomDone[e][id] = true
}

// prune forgets the schedules of past epochs and the ledger's epochs beyond Options.LedgerEpochs.
func (c *checkerSvc) prune(e uint64) {
	c.mu.Lock()
	for k := range c.randomDone {
		if k < e {
			delete(c.randomDone, k)
		}
	}
	for k := range c.ranks {
		if k < e {
			delete(c.ranks, k)
		}
	}
	c.mu.Unlock()
	c.forget(e)
}

// forget drops the ledger's epochs older than Options.LedgerEpochs before e (every node: its memory
// stays bounded, and all nodes keep the same epochs).
func (c *checkerSvc) forget(e uint64) {
	if keep := c.n.opts.ledgerEpochs(); e > keep {
		c.ledger.Forget(e - keep)
	}
}

// launch starts a check in the background if a slot is free.
func (c *checkerSvc) launch(ctx context.Context, wg *sync.WaitGroup, id string, kind pb.CheckKind, state pb.ContainerState, now time.Time) bool {
	select {
	case c.sem <- struct{}{}:
	default:
		return false
	}
	c.mu.Lock()
	c.running[id] = true
	c.last[id] = now
	c.mu.Unlock()
	wg.Go(func() {
		defer func() {
			c.mu.Lock()
			delete(c.running, id)
			c.mu.Unlock()
			<-c.sem
		}()
		c.check(ctx, peer.ID(id), kind, state)
	})
	return true
}

// errInconclusive marks a check that says nothing about the container (it was busy with other
// checks, this node is stopping): nothing is attested.
var errInconclusive = errors.New("checker: inconclusive")

// errRefusedBusy marks a check the container refused because it serves as many checks as it can.
// That says nothing about it once; a container that keeps refusing is counted (noteRefused).
var errRefusedBusy = fmt.Errorf("%w: the container is busy with other checks", errInconclusive)

// errUnreachable marks a check that never reached the container: no address for it was found, or
// no connection to it could be made. That is as likely the network's doing (a dial backoff after a
// failed dial, a route being cut, a limit on the container's side) as the container's, so it
// is counted like a busy refusal: the check is due again later (retryAfter), and only
// maxBusyRefusals in a row are attested as a failure (unanswered). A container that accepts the
// stream and then stays silent is not unreachable: that fails at once, as before.
var errUnreachable = fmt.Errorf("%w: the container could not be reached", errInconclusive)

// errOwnLimit marks a check whose connection or stream this checker's own resource manager
// refused: its whole node was at a limit (system or transient scope), which says nothing about
// the container. Such a check is due again later like an unreachable one, but is not counted
// towards maxBusyRefusals. At 1,000 simulated peers, 494 of the first 739 deferred checks after
// genesis were the checker's own system connection limit. A container cannot cause it alone: the
// resource manager bounds each peer's share of the node's connections and streams by a per-peer
// limit, and a refusal at that (or at the container's own end) still counts.
var errOwnLimit = fmt.Errorf("%w: this checker is at its own resource limit", errInconclusive)

// notReached wraps the error of a stream to the container that could not be opened: errOwnLimit
// when this node's resource manager refused it at its system or transient scope, errUnreachable
// otherwise.
func notReached(what string, err error) error {
	if ownLimit(err) {
		return fmt.Errorf("%w: %s%v", errOwnLimit, what, err)
	}
	return fmt.Errorf("%w: %s%v", errUnreachable, what, err)
}

// ownLimit says whether err holds this node's resource manager refusing at its system or
// transient scope. The manager's errors wrap network.ErrResourceLimitExceeded, each scope adding
// its name ("conn-458: system: cannot reserve connection: ..."); a per-peer scope
// ("peer:12D3...: ...") is not the node's own limit, and another node's refusal reaches a dialler
// as text only (a closed connection). TestOwnLimit checks this against the real resource manager.
func ownLimit(err error) bool {
	if err == nil {
		return false
	}
	if msg := err.Error(); (strings.HasPrefix(msg, "system: ") || strings.HasPrefix(msg, "transient: ")) &&
		errors.Is(err, network.ErrResourceLimitExceeded) {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return ownLimit(u.Unwrap())
	case interface{ Unwrap() []error }:
		return slices.ContainsFunc(u.Unwrap(), ownLimit)
	}
	return false
}

// deferred says whether err is a check that is due again later: the container refused it as
// busy, could not be reached, or this checker was at its own limit.
func deferred(err error) bool {
	return errors.Is(err, errRefusedBusy) || errors.Is(err, errUnreachable) || errors.Is(err, errOwnLimit)
}

// reach makes sure pid can be dialled (connected, an address known, or one found in the DHT).
func (c *checkerSvc) reach(ctx context.Context, pid peer.ID) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.n.net.Reach(rctx, pid); err != nil {
		return fmt.Errorf("%w: %v", errUnreachable, err)
	}
	return nil
}

// maxBusyRefusals is how many checks in a row a container may refuse as busy before the checker
// attests a failure (unanswered). An honest container serves two challenges and two telemetry
// reports at once, and is assigned two checkers: it is busy for a third only by rare overlap, and
// not three times in a row, recheck apart. Without the bound, a container that passed its
// registration could dodge every random check by answering busy.
const maxBusyRefusals = 3

// noteRefused counts a check of container id that the container refused as busy (or that could
// not reach it), and says whether that makes maxBusyRefusals in a row (then the count starts
// again). Otherwise the check is due again after retryAfter, whatever the container's state.
func (c *checkerSvc) noteRefused(id string, now time.Time) (n int, fail bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refusals[id]++
	n = c.refusals[id]
	if n >= maxBusyRefusals {
		delete(c.refusals, id)
		delete(c.retryAt, id)
		return n, true
	}
	c.retryAt[id] = now.Add(c.retryAfter(id, n, now))
	return n, false
}

// retryAfter is how long after its n-th deferral in a row a check is due again: the recheck
// interval, doubled for each deferral before, times a factor in [1, 2) drawn from this checker's
// secret. Deferrals come in crowds: at genesis every checker starts its registration checks at
// once while every node's DHT fills its routing table, and checks that meet a connection limit
// then would all come back at the same moment, a recheck later, and meet it again (1,000 peers:
// 17.9% of honest containers failed unanswered; docs/CHECKERS.md). Spread and backed off, the
// retries land in a calmer network. A container that really does not answer is failed after
// 3 to 6 recheck intervals instead of 2.
func (c *checkerSvc) retryAfter(id string, n int, now time.Time) time.Duration {
	mac := hmac.New(sha256.New, c.prf)
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(n))
	binary.BigEndian.PutUint64(b[8:], uint64(now.UnixNano()))
	mac.Write([]byte("retry"))
	mac.Write(b[:])
	mac.Write([]byte(id))
	h := mac.Sum(nil)
	base := time.Duration(c.cfg.Recheck) << min(n-1, 8)
	return base + time.Duration(binary.BigEndian.Uint64(h[:8])%uint64(max(1, base)))
}

// noteOwnLimit schedules again a check of container id that this checker could not make for its
// own resource limit (errOwnLimit): like a refusal's retry, but the refusals in a row stay as
// they were (it returns their count).
func (c *checkerSvc) noteOwnLimit(id string, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.refusals[id]
	c.retryAt[id] = now.Add(c.retryAfter(id, n+1, now))
	return n
}

// noteAnswered forgets the refusals of a container that was checked.
func (c *checkerSvc) noteAnswered(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.refusals, id)
	delete(c.retryAt, id)
}

// check runs the configured methods on a container in order (telemetry, the cheap one, first),
// stopping at the first failure, and then publishes: the failure alone, or one pass per method.
// The container's standing follows its last verdict, so a check must not attest a pass and a
// failure.
func (c *checkerSvc) check(ctx context.Context, pid peer.ID, kind pb.CheckKind, state pb.ContainerState) {
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	rec, err := c.n.net.ContainerRecord(fctx, pid, 1)
	cancel()
	if err != nil {
		c.count(func(s *CheckerStats) { s.Inconclusive++ })
		c.log.Debug("check: no record", "container", pid, "err", err)
		return
	}
	type done struct {
		method pb.CheckMethod
		nonce  []byte
		res    checker.Result
	}
	var passed []done
	var later error // why the last deferred method was deferred (busy, unreachable)
	for _, m := range c.cfg.Methods {
		method := pb.CheckMethod_CHECK_METHOD_TELEMETRY
		if m == MethodSimulation {
			method = pb.CheckMethod_CHECK_METHOD_SIMULATION
		}
		nonce, res, err := c.confirmed(ctx, pid, m, func(nonce []byte) (checker.Result, error) {
			return c.runMethod(ctx, m, pid, rec, nonce, state)
		})
		if err != nil || ctx.Err() != nil {
			c.count(func(s *CheckerStats) { s.Inconclusive++ })
			c.log.Debug("check inconclusive", "container", pid, "method", m, "err", err)
			if deferred(err) {
				later = err
			}
			continue
		}
		if res.Verdict != checker.Pass {
			// The check failed: only the failure is attested. Publishing the methods that passed
			// before it would let the container's standing read standby for a moment, and
			// indexers could match it in that moment.
			c.noteAnswered(string(pid))
			c.publish(ctx, pid, rec, kind, method, nonce, res)
			return
		}
		passed = append(passed, done{method, nonce, res})
	}
	switch {
	case len(passed) > 0:
		c.noteAnswered(string(pid))
	case later != nil && ctx.Err() == nil && errors.Is(later, errOwnLimit):
		n := c.noteOwnLimit(string(pid), c.n.opts.Clock.Now())
		c.count(func(s *CheckerStats) { s.OwnLimit++ })
		c.log.Info("check deferred: this checker is at its own limit", "container", pid, "in_a_row", n, "of", maxBusyRefusals, "err", later)
	case later != nil && ctx.Err() == nil:
		n, fail := c.noteRefused(string(pid), c.n.opts.Clock.Now())
		c.log.Info("check deferred", "container", pid, "in_a_row", n, "of", maxBusyRefusals, "err", later)
		if fail {
			nonce := make([]byte, checker.NonceSize)
			_, _ = rand.Read(nonce)
			method := pb.CheckMethod_CHECK_METHOD_SIMULATION
			if !slices.Contains(c.cfg.Methods, MethodSimulation) {
				method = pb.CheckMethod_CHECK_METHOD_TELEMETRY
			}
			c.publish(ctx, pid, rec, kind, method, nonce, failed(CheckUnanswered, nonce,
				fmt.Sprintf("%d checks in a row refused as busy or unreachable", n)))
		}
	}
	for _, d := range passed {
		c.publish(ctx, pid, rec, kind, d.method, d.nonce, d.res)
	}
}

// timingConfirmations is how many more times a check that failed on timing is run before the
// failure is attested: a container must fail it on three challenges in a row.
const timingConfirmations = 2

// timingCheck says whether a failed check measured timing (rates, gaps, delays, an answer that
// did not come), which a moment of loss or of load can spoil, rather than content or claims.
func timingCheck(c checker.Check) bool {
	switch c {
	case checker.CheckStream, checker.CheckContinuity, checker.CheckFrameRate, checker.CheckLatency, checker.CheckBitrate, CheckUnanswered:
		return true
	}
	return false
}

// confirmed runs one method of a check on a fresh nonce, and again while it fails on timing, up
// to timingConfirmations more times: a timing failure may be the moment's (a burst of loss, a busy
// core on either side), so it is attested only if it repeats on every challenge. A container that
// does not let a failure be confirmed (it refuses the challenge as busy, ...) keeps the failure.
// It returns the nonce and result to attest, or the error of an inconclusive check.
func (c *checkerSvc) confirmed(ctx context.Context, pid peer.ID, m string, run func(nonce []byte) (checker.Result, error)) ([]byte, checker.Result, error) {
	var nonce []byte
	var res checker.Result
	for attempt := 0; ; attempt++ {
		n := make([]byte, checker.NonceSize)
		_, _ = rand.Read(n)
		r, err := c.measured(pid, m, func() (checker.Result, error) { return run(n) })
		switch {
		case ctx.Err() != nil:
			return nil, checker.Result{}, errInconclusive
		case err != nil && attempt == 0:
			return nil, checker.Result{}, err
		case err != nil:
			c.log.Info("check: confirmation refused, the failure stands", "container", pid, "method", m, "err", err)
			return nonce, res, nil
		}
		nonce, res = n, r
		if res.Verdict == checker.Pass || !timingCheck(res.Check) || attempt == timingConfirmations {
			return nonce, res, nil
		}
		c.count(func(s *CheckerStats) { s.Confirmations++ })
		c.log.Info("check: confirming a timing failure", "container", pid, "method", m, "check", res.Check, "reason", res.Reason, "attempt", attempt+1)
	}
}

// runMethod runs one method of a check.
func (c *checkerSvc) runMethod(ctx context.Context, m string, pid peer.ID, rec *pb.ContainerRecord, nonce []byte, state pb.ContainerState) (checker.Result, error) {
	switch m {
	case MethodTelemetry:
		return c.telemetryCheck(ctx, pid, rec, nonce, state)
	case MethodSimulation:
		return c.simulationCheck(ctx, pid, nonce)
	}
	return checker.Result{}, fmt.Errorf("%w: unknown method %q", errInconclusive, m)
}

// measured runs a check, measuring this machine's load while it runs: a check measured on a
// machine that could not keep up is counted, and the operator warned (once a minute).
func (c *checkerSvc) measured(pid peer.ID, m string, run func() (checker.Result, error)) (checker.Result, error) {
	mark := c.load.Mark()
	res, err := run()
	load := c.load.Since(mark)
	if over, why := load.Overloaded(); over && err == nil {
		now := time.Now()
		c.mu.Lock()
		c.stats.Overloaded++
		warn := now.Sub(c.overloadWarned) >= overloadWarnEvery
		if warn {
			c.overloadWarned = now
		}
		c.mu.Unlock()
		if warn {
			c.log.Warn("this checker's machine is overloaded while it checks: its timing verdicts are less sure (lower checker.concurrent or give it more CPU)", "why", why, "verdict", res.Verdict, "check", res.Check)
		}
	}
	c.log.Debug("check measured", "container", pid, "method", m, "verdict", res.Verdict, "check", res.Check, "sched_p99", load.SchedP99, "cpu_pressure", load.CPUPressure)
	return res, err
}

// overloadWarnEvery spaces the warnings of an overloaded checker.
const overloadWarnEvery = time.Minute

func (c *checkerSvc) count(f func(*CheckerStats)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.stats)
}

// failed is the result of a check the container did not answer as it must.
func failed(check checker.Check, nonce []byte, reason string) checker.Result {
	return checker.Result{Verdict: checker.Fail, Check: check, Reason: reason,
		EvidenceHash: sha256.Sum256(append(append([]byte("rendermesh unanswered check\x00"), nonce...), reason...))}
}

// Checks of a container that did not answer.
const (
	CheckUnanswered checker.Check = "unanswered"
)

func (c *checkerSvc) telemetryCheck(ctx context.Context, pid peer.ID, rec *pb.ContainerRecord, nonce []byte, state pb.ContainerState) (checker.Result, error) {
	if len(rec.GetHardware().GetGpus()) == 0 {
		return checker.Result{}, fmt.Errorf("%w: a CPU-only container has no GPU readings to check", errInconclusive)
	}
	if err := c.reach(ctx, pid); err != nil {
		return checker.Result{}, err
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t, _, err := c.n.RequestTelemetry(tctx, pid, nonce, telemetrySamples, telemetrySpacing)
	switch {
	case ctx.Err() != nil:
		return checker.Result{}, errInconclusive
	case errors.Is(err, ErrTelemetryRefused) && strings.Contains(err.Error(), refusedBusy):
		return checker.Result{}, fmt.Errorf("%w: %v", errRefusedBusy, err)
	case errors.Is(err, errStreamNotOpened):
		return checker.Result{}, notReached("", err)
	case err != nil:
		return failed(CheckUnanswered, nonce, "no telemetry report: "+err.Error()), nil
	}
	t.State = state
	return checker.CheckTelemetry(rec, t), nil
}

func (c *checkerSvc) simulationCheck(ctx context.Context, pid peer.ID, nonce []byte) (checker.Result, error) {
	cfg := c.cfg
	ch := checker.Challenge{Nonce: nonce, Issued: time.Now(), Width: cfg.Width, Height: cfg.Height, FPS: cfg.FPS}
	if err := ch.Validate(); err != nil {
		return checker.Result{}, err
	}
	var key [32]byte
	_, _ = rand.Read(key[:])
	v, err := checker.NewVerifier(ch, checker.VerifierConfig{Rand: mrand.NewChaCha8(key)})
	if err != nil {
		return checker.Result{}, err
	}
	if err := c.reach(ctx, pid); err != nil {
		return checker.Result{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	s, err := c.n.net.NewStream(sctx, pid, p2p.ProtoRender)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return checker.Result{}, errInconclusive
		}
		return checker.Result{}, notReached("render stream: ", err)
	}
	defer s.Close()
	defer c.n.net.Hold(s)()
	// The stream is watched for CheckFor from its first frame; setting it up (ICE, DTLS, the
	// first keyframe) may take checkSetup.
	pctx, pcancel := context.WithTimeout(ctx, checkSetup+time.Duration(cfg.CheckFor))
	defer pcancel()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	var first sync.Once
	o := render.PlayOptions{
		PeerOptions: render.PeerOptions{Loopback: c.n.cfg.Render.Loopback},
		Challenge:   nonce, Width: cfg.Width, Height: cfg.Height, FPS: cfg.FPS,
		OnFrame: func(img *image.YCbCr, _ uint32, _ time.Duration, _ bool) {
			first.Do(func() { time.AfterFunc(time.Duration(cfg.CheckFor), pcancel) })
			v.Observe(checker.ReadFrame(img, time.Now()))
		},
	}
	rep, err := render.Play(pctx, streamSignaller{s}, o)
	end := time.Now()
	switch {
	case ctx.Err() != nil:
		return checker.Result{}, errInconclusive
	case errors.Is(err, render.ErrRefused) && strings.Contains(err.Error(), refusedBusy):
		return checker.Result{}, fmt.Errorf("%w: %v", errRefusedBusy, err)
	case err != nil && rep == nil:
		return failed(CheckUnanswered, nonce, "render session: "+err.Error()), nil
	}
	st := checker.StreamStats{}
	if rep != nil {
		st.BitrateKbps, st.RTT = rep.BitrateKbps, rep.InputRTTP50
	}
	return v.Finish(end, st), nil
}

// publish signs and gossips a check's attestation.
func (c *checkerSvc) publish(ctx context.Context, pid peer.ID, rec *pb.ContainerRecord, kind pb.CheckKind, method pb.CheckMethod, nonce []byte, res checker.Result) {
	now := c.n.opts.Clock.Now()
	info := checker.CheckInfo{
		Checker: []byte(c.n.net.ID()), Container: []byte(pid), Epoch: c.n.ep.tr.Schedule().Epoch(now),
		Kind: kind, Method: method, Nonce: nonce, Issued: now,
	}
	if gpus := rec.GetHardware().GetGpus(); len(gpus) > 0 {
		info.GPUModel, info.GPUCount, info.Encoder = gpus[0].GetModel(), len(gpus), gpus[0].GetEncoder()
	}
	a := checker.NewAttestation(res, info)
	if err := c.n.net.PublishAttestation(ctx, a); err != nil {
		c.count(func(s *CheckerStats) { s.PublishErrs++ })
		c.log.Warn("attestation not published", "container", pid, "err", err)
		return
	}
	c.count(func(s *CheckerStats) {
		s.Checks++
		if res.Verdict == checker.Pass {
			s.Passed++
		} else {
			s.Failed++
		}
	})
	c.log.Info("checked", "container", pid, "kind", kind, "method", method, "verdict", res.Verdict, "check", res.Check, "reason", res.Reason)
}

// onValid takes every accepted attestation (this node's own included) into the ledger and acts
// on the standing of the container it names.
func (c *checkerSvc) onValid(a *pb.Attestation, raw []byte) {
	now := c.n.opts.Clock.Now()
	c.forget(c.n.ep.tr.Schedule().Epoch(now))
	c.ledger.Add(a, raw)
	c.mu.Lock()
	if len(c.delays) < maxDelays {
		c.delays = append(c.delays, now.Sub(time.UnixMilli(a.IssuedUnixMs)))
	}
	c.mu.Unlock()
	if hook := c.n.opts.OnAttestation; hook != nil {
		hook(a, checker.AttestationLeaf(raw), now)
	}
	c.act(string(a.Container), a.Epoch)
}

// standing is a container's standing: final exclusions first, then the ledger's.
func (c *checkerSvc) standing(id string) checker.Decision {
	c.mu.Lock()
	d, ok := c.excluded[id]
	c.mu.Unlock()
	if ok {
		return d
	}
	return c.ledger.Standing(id)
}

// act applies a container's standing: to this node's container, and to this node's index.
func (c *checkerSvc) act(id string, e uint64) {
	d := c.standing(id)
	if d.Standing == checker.StandingExcluded {
		c.mu.Lock()
		_, known := c.excluded[id]
		c.excluded[id] = d
		c.mu.Unlock()
		if !known {
			leaves := make([]string, len(d.Evidence))
			for i, l := range d.Evidence {
				leaves[i] = fmt.Sprintf("%x", l[:8])
			}
			c.log.Warn("container excluded: slashing evidence recorded", "container", peer.ID(id), "trigger", d.Trigger, "evidence", leaves)
		}
	}
	if c.n.cont != nil && id == string(c.n.net.ID()) {
		switch d.Standing {
		case checker.StandingStandby:
			_, _ = c.n.cont.Checked(c.n.ctx, true)
		case checker.StandingNeedsRecheck, checker.StandingExcluded:
			_, _ = c.n.cont.Checked(c.n.ctx, false)
		}
	}
	if c.n.idx != nil {
		c.applyTo(c.n.idx.index(), id, e)
	}
}

// applyTo sets a container's quality and bar in an index from its standing and its latest score.
func (c *checkerSvc) applyTo(ix *indexer.Index, id string, e uint64) {
	d := c.standing(id)
	if d.Standing == checker.StandingUnchecked {
		return
	}
	score := 0.5
	for ep := e; ; ep-- {
		if s, ok := c.ledger.Summary(ep, id); ok {
			score = s.Score
			break
		}
		if ep == 0 || e-ep >= c.n.opts.ledgerEpochs() {
			break
		}
	}
	barred := d.Standing == checker.StandingNeedsRecheck || d.Standing == checker.StandingExcluded
	ix.SetStanding(id, uint32(score*float64(indexer.PPM)), barred)
}

// CheckerStatus is what a node knows about checks: its own work as a checker and the ledger it
// keeps from the gossip.
type CheckerStatus struct {
	Role   bool
	Stats  CheckerStats
	Ledger *checker.Ledger
	// Delays are the issue-to-arrival times of the attestations this node accepted (at most
	// maxDelays, the first ones).
	Delays []time.Duration
	// Excluded lists the containers this node saw excluded (raw peer IDs), with their evidence.
	Excluded map[string]checker.Decision
}

// Checks is the node's checking status; nil when it follows no elections.
func (n *Node) Checks() *CheckerStatus {
	if n.chk == nil {
		return nil
	}
	c := n.chk
	c.mu.Lock()
	defer c.mu.Unlock()
	ex := make(map[string]checker.Decision, len(c.excluded))
	for k, v := range c.excluded {
		ex[k] = v
	}
	return &CheckerStatus{Role: c.role, Stats: c.stats, Ledger: c.ledger, Delays: slices.Clone(c.delays), Excluded: ex}
}

// Standing is a container's standing in this node's ledger.
func (n *Node) Standing(container peer.ID) checker.Decision {
	if n.chk == nil {
		return checker.Decision{Standing: checker.StandingUnchecked}
	}
	return n.chk.standing(string(container))
}
