package indexer

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
)

// Filters, in the order they are applied; a refusal names the first one that left no container.
const (
	FilterNone     = "no_containers" // the index holds no container at all
	FilterStandby  = "standby"       // retail: in standby, not held by a lease, a session or a local hold; wholesale: in standby or busy, not held locally
	FilterApp      = "app"           // the app is pre-installed
	FilterHardware = "hardware"      // the hardware meets the requirement
	FilterLatency  = "latency"       // the round trip is within max_latency_ms
	FilterBudget   = "budget"        // the price is within budget_micros
	FilterCalendar = "calendar"      // the session window overlaps no booking (wholesale: nor the current lease)
	// FilterBadRequest refuses a request that ValidateRequest rejects, or a wholesale block that
	// starts in the past. Its Refusal unwraps to ErrBadRequest.
	FilterBadRequest = "bad_request"
)

// Request limits.
const (
	UnitLength     = 15 * time.Minute // one session unit
	MaxRequestSize = 4 << 10          // bytes of an encoded MatchRequest the protocol accepts
	MaxSessions    = 96               // units in one request: 24 hours
	MaxRTTs        = 64               // measured round trips in one request
	MaxModelLength = 32               // characters of hardware.gpu_model
	MaxGPUs        = 64               // hardware.min_gpus
	MaxPeerIDBytes = 128              // a measured round trip's or an excluded container's peer ID
	MaxExclude     = 16               // containers in a request's exclude list
	// ClockSkew is how far in the past a wholesale block may start and still be accepted, for the
	// difference between the consumer's clock and the indexer's.
	ClockSkew = 30 * time.Second
	// maxStartMs bounds start_unix_ms (year 9999) so that the window's end cannot overflow.
	maxStartMs = 253_402_300_799_999
)

// ErrBadRequest is wrapped by every error of ValidateRequest.
var ErrBadRequest = errors.New("indexer: bad match request")

// ValidateRequest checks a match request as it arrived from the network. Its errors wrap
// ErrBadRequest and say what to fix.
func ValidateRequest(req *pb.MatchRequest) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, args...)...)
	}
	if req == nil {
		return bad("empty request")
	}
	if n := len(req.GetRequestId()); n != 16 {
		return bad("request_id has %d bytes, want 16 random bytes", n)
	}
	if !validApp(req.GetApp()) {
		return bad("app %q: want 1-48 characters of a-z, 0-9, '-', '_' and '.'", clip(req.GetApp()))
	}
	if n := len(req.GetExclude()); n > MaxExclude {
		return bad("exclude lists %d containers: at most %d", n, MaxExclude)
	}
	for _, id := range req.GetExclude() {
		if n := len(id); n == 0 || n > MaxPeerIDBytes {
			return bad("exclude: peer ID of %d bytes", n)
		}
	}
	if n := req.GetSessions(); n > MaxSessions {
		return bad("sessions %d: at most %d units of 15 minutes (24 hours)", n, MaxSessions)
	}
	switch m := req.GetMode(); m {
	case pb.ServiceMode_SERVICE_MODE_UNSPECIFIED, pb.ServiceMode_SERVICE_MODE_RETAIL:
	case pb.ServiceMode_SERVICE_MODE_WHOLESALE:
		if req.GetStartUnixMs() <= 0 {
			return bad("wholesale needs start_unix_ms, when the block starts")
		}
	default:
		return bad("unknown mode %d: want retail or wholesale", int32(m))
	}
	if s := req.GetStartUnixMs(); s < 0 || s > maxStartMs {
		return bad("start_unix_ms %d out of range", s)
	}
	switch r := req.GetRanking(); r {
	case pb.Ranking_RANKING_UNSPECIFIED, pb.Ranking_RANKING_INDEX, pb.Ranking_RANKING_FEE, pb.Ranking_RANKING_EXPERIENCE:
	default:
		return bad("unknown ranking %d: want index, fee or experience", int32(r))
	}
	hw := req.GetHardware()
	if n := len(hw.GetGpuModel()); n > MaxModelLength {
		return bad("gpu_model of %d characters: at most %d (e.g. H100)", n, MaxModelLength)
	}
	if n := hw.GetMinGpus(); n > MaxGPUs {
		return bad("min_gpus %d: at most %d", n, MaxGPUs)
	}
	if strings.EqualFold(hw.GetGpuModel(), container.CPUModel) && (hw.GetMinGpus() > 0 || hw.GetMinGpuMemoryBytes() > 0) {
		return bad("gpu_model %q asks for no GPU: leave min_gpus and min_gpu_memory_bytes at 0, or name a model", container.CPUModel)
	}
	if loc := req.GetLocation(); loc != nil {
		if loc.GetHasCoordinates() && !validCoordinates(loc.GetLatitudeE6(), loc.GetLongitudeE6()) {
			return bad("location coordinates out of range: latitude_e6 within ±90e6, longitude_e6 within ±180e6")
		}
		if g := loc.GetGeohash(); g != "" && !container.ValidGeohash(g) {
			return bad("location geohash %q: want 1-12 base32 geohash characters (e.g. u33dc0)", clip(g))
		}
		if r := loc.GetRegion(); r != "" && !container.ValidRegion(r) {
			return bad("location region %q: want 2-32 characters of a-z, 0-9 and '-' (e.g. eu-west)", clip(r))
		}
	}
	if req.GetMaxLatencyMs() > 0 && !pointOf(req.GetLocation()).ok {
		return bad("max_latency_ms needs the consumer's location: coordinates or a geohash")
	}
	if n := len(req.GetRtts()); n > MaxRTTs {
		return bad("%d measured round trips: at most %d", n, MaxRTTs)
	}
	for i, r := range req.GetRtts() {
		if n := len(r.GetPeerId()); n == 0 || n > MaxPeerIDBytes {
			return bad("rtts[%d]: peer_id of %d bytes", i, n)
		}
	}
	return nil
}

// validApp is the rule of container apps: 1-48 characters of a-z, 0-9, '-', '_' and '.'.
func validApp(s string) bool {
	if len(s) == 0 || len(s) > 48 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 48 {
		return s[:48] + "..."
	}
	return s
}

// Candidate is a container that passed every filter, as ranked.
type Candidate struct {
	Peer        string              // the peer string the record was put under
	Record      *pb.ContainerRecord // shared: do not modify
	PriceMicros uint64              // per session unit: retail with the region's multiplier, wholesale the ask
	RTTms       uint32              // estimated or measured round trip; UnknownRTTms when it cannot be estimated
	// Score is the ranking's key, higher is better: the evaluation index in ppm (INDEX), the
	// experience score (EXPERIENCE), or minus the price (FEE, saturating).
	Score int64
}

// Refusal says why no container matched: the first filter after which none was left.
type Refusal struct {
	Filter string // one of the Filter constants
	Detail string // for people, with the counts
}

func (r *Refusal) Error() string {
	return "indexer: no match (" + r.Filter + "): " + r.Detail
}

// Unwrap makes a bad_request refusal match ErrBadRequest.
func (r *Refusal) Unwrap() error {
	if r.Filter == FilterBadRequest {
		return ErrBadRequest
	}
	return nil
}

// Stats says how a match went.
type Stats struct {
	Passed       int  // containers that passed every filter (the candidates are the best of them)
	Scanned      int  // entries evaluated
	ShardsPruned int  // regions skipped whole because they are beyond the latency limit
	FullScan     bool // the refusal path ran: every entry was evaluated and counted
	// Survivors[i] counts the containers left after the i-th filter (standby, app, hardware,
	// latency, budget, calendar); filled on the refusal path only.
	Survivors     [6]int
	FilterReached int // for a refusal, the index of its filter in Survivors; -1 otherwise
}

// Match finds the best containers for a request, at most limit of them (limit < 1 counts as 1),
// best first; or, when none passes, a refusal. Exactly one of the results is non-empty.
func (ix *Index) Match(req *pb.MatchRequest, now time.Time, limit int) ([]Candidate, *Refusal) {
	c, _, r := ix.MatchWithStats(req, now, limit)
	return c, r
}

// MatchWithStats is Match with figures about the search.
func (ix *Index) MatchWithStats(req *pb.MatchRequest, now time.Time, limit int) ([]Candidate, Stats, *Refusal) {
	st := Stats{FilterReached: -1}
	if err := ValidateRequest(req); err != nil {
		return nil, st, &Refusal{Filter: FilterBadRequest, Detail: err.Error()}
	}
	q, err := newQuery(req, now)
	if err != nil {
		return nil, st, &Refusal{Filter: FilterBadRequest, Detail: err.Error()}
	}
	ix.observe(now)
	limit = max(limit, 1)
	buf := candPool.Get().(*[]cand)
	cands := (*buf)[:0]
	defer func() {
		clear(cands) // drop the records
		*buf = cands[:0]
		candPool.Put(buf)
	}()

	ix.mu.RLock()
	defer ix.mu.RUnlock() // held while ranking: candidates point at entries
	q.hw.modelID = ix.models[q.hw.model]
	for _, sh := range ix.order {
		list := sh.byApp[q.app]
		if len(list) == 0 {
			continue
		}
		mult := q.multiplier(ix.demand, sh.region)
		pruned := q.maxLat > 0 && AccessRTTms+sh.box.minKm(q.at)/KmPerRTTms > float64(q.maxLat)+1
		sh.mu.RLock()
		if pruned {
			// Nothing here is near enough by geography; only a measured round trip can pass.
			st.ShardsPruned++
			for _, id := range q.measured {
				if e := sh.byID[id]; e != nil && slices.Contains(e.apps, q.app) {
					st.Scanned++
					h := &sh.hot[e.pos]
					if price, rtt, ok := q.pass(h, e, mult); ok {
						cands = append(cands, candidate(h, e, price, rtt))
					}
				}
			}
		} else {
			st.Scanned += len(list)
			for _, p := range list {
				h := &sh.hot[p]
				if !q.standby(h) {
					continue
				}
				if price, rtt, ok := q.pass(h, sh.entries[p], mult); ok {
					cands = append(cands, candidate(h, sh.entries[p], price, rtt))
				}
			}
		}
		sh.mu.RUnlock()
	}
	if len(cands) == 0 {
		// The refusal path: evaluate everything in filter order to say which filter emptied the
		// list. Heartbeats may have changed states since the fast path; whatever passes now is
		// ranked as usual.
		st.FullScan = true
		var ref *Refusal
		if cands, ref = ix.refuse(q, cands, &st); ref != nil {
			return nil, st, ref
		}
	}
	st.Passed = len(cands)
	return q.rank(cands, limit), st, nil
}

// Passes reports whether the container indexed under peer passes every filter of req at now, i.e.
// whether Match would count it among the candidates. An indexer asks it of a consumer's own
// container, which it never offers that consumer.
func (ix *Index) Passes(req *pb.MatchRequest, now time.Time, peer string) bool {
	if ValidateRequest(req) != nil {
		return false
	}
	q, err := newQuery(req, now)
	if err != nil {
		return false
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	e := ix.peers[peer]
	if e == nil || e.shard == nil || !slices.Contains(e.apps, q.app) {
		return false
	}
	q.hw.modelID = ix.models[q.hw.model]
	sh := e.shard
	mult := q.multiplier(ix.demand, sh.region)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	_, _, ok := q.pass(&sh.hot[e.pos], e, mult)
	return ok
}

var candPool = sync.Pool{New: func() any { s := make([]cand, 0, 256); return &s }}

// Stages: the index of the filter an entry failed, or stagePass.
const (
	stageStandby = iota
	stageApp
	stageHardware
	stageLatency
	stageBudget
	stageCalendar
	stagePass
)

var stageFilters = [...]string{FilterStandby, FilterApp, FilterHardware, FilterLatency, FilterBudget, FilterCalendar}

// query is a validated request prepared for evaluation.
type query struct {
	nowMs     int64
	wholesale bool
	app       string
	hw        hwReq
	maxLat    uint32
	budget    uint64
	ws, we    int64 // the session window [ws, we), unix ms
	at        point // the consumer
	rtts      map[string]uint32
	idMask    [4]uint64 // the idBit of every measured peer: most entries need no map lookup
	measured  []string  // peer IDs with a measured round trip within maxLat, distinct
	chordMax2 float64   // a placed entry is within maxLat exactly when its chord² is below; above 4 without a limit
	ranking   pb.Ranking
	latScale  uint32 // L's scale: maxLat, or UnknownRTTms without a limit
}

type hwReq struct {
	any     bool   // nothing asked
	model   string // "" any GPU, container.CPUModel none needed, else a normalised model
	modelID uint32 // model's number in the index; 0 when no record has it
	minGPUs uint32 // GPUs of model (any model when "") needed; 0 when none are
	minMem  uint64 // per counted GPU
	encoder bool
	cores   uint32
	memory  uint64
}

func newQuery(req *pb.MatchRequest, now time.Time) (*query, error) {
	q := &query{
		nowMs:     now.UnixMilli(),
		wholesale: req.GetMode() == pb.ServiceMode_SERVICE_MODE_WHOLESALE,
		app:       req.GetApp(),
		maxLat:    req.GetMaxLatencyMs(),
		budget:    req.GetBudgetMicros(),
		at:        pointOf(req.GetLocation()),
		ranking:   req.GetRanking(),
		chordMax2: 5,
		latScale:  UnknownRTTms,
	}
	units := int64(max(req.GetSessions(), 1))
	q.ws = q.nowMs
	if q.wholesale {
		q.ws = req.GetStartUnixMs()
		if q.ws < q.nowMs-ClockSkew.Milliseconds() {
			return nil, fmt.Errorf("%w: wholesale block starts at %s, in the past (now %s): book a block that starts from now on",
				ErrBadRequest, time.UnixMilli(q.ws).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
	}
	q.we = q.ws + units*UnitLength.Milliseconds()
	if q.maxLat > 0 {
		q.chordMax2 = chordLimit2(q.maxLat)
		q.latScale = q.maxLat
	}
	if rtts := req.GetRtts(); len(rtts) > 0 {
		q.rtts = make(map[string]uint32, len(rtts))
		for _, r := range rtts {
			id := string(r.GetPeerId())
			if old, ok := q.rtts[id]; !ok || r.GetRttMs() < old { // the least of repeated measurements
				q.rtts[id] = r.GetRttMs()
			}
			b := idBit(id)
			q.idMask[b>>6] |= 1 << (b & 63)
		}
		for _, r := range rtts {
			id := string(r.GetPeerId())
			if m := q.rtts[id]; (q.maxLat == 0 || m <= q.maxLat) && !slices.Contains(q.measured, id) {
				q.measured = append(q.measured, id)
			}
		}
	}
	hw := req.GetHardware()
	q.hw = hwReq{
		minGPUs: hw.GetMinGpus(),
		minMem:  hw.GetMinGpuMemoryBytes(),
		encoder: hw.GetEncoder(),
		cores:   hw.GetMinCpuCores(),
		memory:  hw.GetMinMemoryBytes(),
	}
	switch m := hw.GetGpuModel(); {
	case strings.EqualFold(m, container.CPUModel):
		q.hw.model, q.hw.minGPUs, q.hw.minMem = container.CPUModel, 0, 0
	case m == "":
		if q.hw.minMem > 0 {
			q.hw.minGPUs = max(q.hw.minGPUs, 1)
		}
	default:
		q.hw.model = container.NormalizeModel(m)
		q.hw.minGPUs = max(q.hw.minGPUs, 1)
	}
	q.hw.any = q.hw.minGPUs == 0 && !q.hw.encoder && q.hw.cores == 0 && q.hw.memory == 0
	return q, nil
}

func (q *query) multiplier(d *demand, region string) uint32 {
	if q.wholesale {
		return PPM
	}
	return d.multiplier(region)
}

// cand is a container that passed, with what ranking needs, copied while its shard was locked.
// e's peer and record do not change while Index.mu is read-locked.
type cand struct {
	e       *entry
	price   uint64
	rtt     uint32
	hw      int64 // hardwareClass
	load    uint32
	quality uint32
	score   int64
}

// The filters, one predicate each. pass runs them cheapest first for the fast path; stage runs
// them in their documented order for the refusal path, which counts survivors. Both hold the
// entry's shard read-locked.

// standby is the standby filter.
func (q *query) standby(h *hot) bool {
	if h.holdUntil > q.nowMs {
		return false
	}
	switch pb.ContainerState(h.state) {
	case pb.ContainerState_CONTAINER_STATE_STANDBY:
		return q.wholesale || h.reservedUntil <= q.nowMs
	case pb.ContainerState_CONTAINER_STATE_BUSY:
		return q.wholesale
	}
	return false
}

// measuredRTT is the consumer's measurement of e, if any.
func (q *query) measuredRTT(h *hot, e *entry) (uint32, bool) {
	if q.rtts == nil || q.idMask[h.idBit>>6]&(1<<(h.idBit&63)) == 0 {
		return 0, false
	}
	m, ok := q.rtts[e.id]
	return m, ok
}

// price is the price per unit.
func (q *query) price(h *hot, mult uint32) uint64 {
	if q.wholesale {
		return h.ask
	}
	return RetailPrice(h.ask, mult)
}

// free is the calendar filter.
func (q *query) free(h *hot, e *entry) bool {
	if q.wholesale && h.reservedUntil > q.ws {
		return false
	}
	n := int(h.bookings)
	for i := range min(n, len(h.book)) {
		if b := h.book[i]; b.start < q.we && b.end > q.ws {
			return false
		}
	}
	if n > len(h.book) {
		for _, b := range e.bookings[len(h.book):] {
			if b.start < q.we && b.end > q.ws {
				return false
			}
		}
	}
	return true
}

func candidate(h *hot, e *entry, price uint64, rtt uint32) cand {
	return cand{e: e, price: price, rtt: rtt, hw: int64(h.hwClass), load: uint32(h.load), quality: h.quality}
}

// pass reports whether an entry passes every filter, and its price and round trip. It reads the
// hot line first and the entry itself only for the rarer tests: hardware of mixed GPUs, measured
// round trips, more than two bookings. The exact round trip, the dearest figure, comes last.
func (q *query) pass(h *hot, e *entry, mult uint32) (price uint64, rtt uint32, ok bool) {
	if !q.standby(h) || !q.hw.any && !q.hw.okHot(h, e) {
		return 0, 0, false
	}
	rtt, measured := q.measuredRTT(h, e)
	placed := !measured && q.at.ok && h.placed
	var c2 float64
	switch {
	case measured:
		if q.maxLat > 0 && rtt > q.maxLat {
			return 0, 0, false
		}
	case placed:
		if c2 = chord2(q.at.v, h.v); c2 >= q.chordMax2 {
			return 0, 0, false
		}
	case q.maxLat > 0:
		return 0, 0, false
	default:
		rtt = UnknownRTTms
	}
	price = q.price(h, mult)
	if q.budget > 0 && price > q.budget || !q.free(h, e) {
		return 0, 0, false
	}
	if placed {
		rtt = rttOfChord2(c2) // within the limit: chordMax2 is exact
	}
	return price, rtt, true
}

// stage runs the filters in their order on an entry that runs the app and returns the first it
// fails (stagePass if none) with what the refusal's detail needs: for a latency failure the
// measured round trip (x) or the squared chord (c2; +Inf if neither), for a budget failure the
// price (x).
func (q *query) stage(h *hot, e *entry, mult uint32) (s int, x uint64, c2 float64) {
	c2 = math.Inf(1)
	switch {
	case !q.standby(h):
		return stageStandby, 0, c2
	case !q.hw.any && !q.hw.okHot(h, e):
		return stageHardware, 0, c2
	}
	rtt, measured := q.measuredRTT(h, e)
	switch {
	case measured:
		if q.maxLat > 0 && rtt > q.maxLat {
			return stageLatency, uint64(rtt), c2
		}
	case q.at.ok && h.placed:
		if c2 = chord2(q.at.v, h.v); c2 >= q.chordMax2 {
			return stageLatency, 0, c2
		}
	case q.maxLat > 0:
		return stageLatency, 0, c2
	}
	price := q.price(h, mult)
	if q.budget > 0 && price > q.budget {
		return stageBudget, price, c2
	}
	if !q.free(h, e) {
		return stageCalendar, 0, c2
	}
	return stagePass, 0, c2
}

// okHot is ok, from the hot line when the entry's GPUs are all alike.
func (r *hwReq) okHot(h *hot, e *entry) bool {
	if h.cores < r.cores || h.memBytes < r.memory || (r.encoder && !h.encoder) {
		return false
	}
	switch {
	case r.minGPUs == 0:
		return true
	case h.uniform:
		return h.gpuCount >= r.minGPUs && (r.model == "" || h.model == r.modelID) && h.gpuMem >= r.minMem
	default:
		return r.ok(e)
	}
}

func (r *hwReq) ok(e *entry) bool {
	if r.any {
		return true
	}
	if e.cores < r.cores || e.memBytes < r.memory || (r.encoder && !e.encoder) {
		return false
	}
	if r.minGPUs == 0 {
		return true
	}
	if e.uniform {
		return e.gpuCount >= r.minGPUs && (r.model == "" || e.gpuModel == r.model) && e.gpuMem >= r.minMem
	}
	var n uint32
	for _, g := range e.gpus {
		if (r.model == "" || g.model == r.model) && g.memory >= r.minMem {
			n++
		}
	}
	return n >= r.minGPUs
}

// refuse evaluates every entry in filter order, counting the survivors of each filter, and
// returns the entries that passed (a heartbeat may have freed one since the fast path) or the
// refusal. Index.mu read-locked.
func (ix *Index) refuse(q *query, cands []cand, st *Stats) ([]cand, *Refusal) {
	total := 0
	nearest, nearestC2, cheapest := uint32(math.MaxUint32), math.Inf(1), uint64(math.MaxUint64)
	for _, sh := range ix.order {
		mult := q.multiplier(ix.demand, sh.region)
		sh.mu.RLock()
		total += len(sh.entries)
		for p := range sh.hot {
			if q.standby(&sh.hot[p]) {
				st.Survivors[stageStandby]++
			}
		}
		// The app filter is the app's list; the later filters run on it.
		for _, p := range sh.byApp[q.app] {
			h, e := &sh.hot[p], sh.entries[p]
			if !q.standby(h) {
				continue
			}
			s, x, c2 := q.stage(h, e, mult)
			for i := stageApp; i < s; i++ {
				st.Survivors[i]++
			}
			switch s {
			case stagePass: // freed since the fast path
				if price, rtt, ok := q.pass(h, e, mult); ok {
					cands = append(cands, candidate(h, e, price, rtt))
				}
			case stageLatency:
				if x > 0 {
					nearest = min(nearest, uint32(x))
				}
				nearestC2 = min(nearestC2, c2)
			case stageBudget:
				cheapest = min(cheapest, x)
			}
		}
		sh.mu.RUnlock()
	}
	if !math.IsInf(nearestC2, 1) {
		nearest = min(nearest, rttOfChord2(nearestC2))
	}
	st.Scanned += total
	if len(cands) > 0 {
		return cands, nil
	}
	if total == 0 {
		return nil, &Refusal{Filter: FilterNone, Detail: "the index holds no container yet (it learns them from heartbeats and records): retry in a few seconds"}
	}
	s := 0
	for s < stagePass-1 && st.Survivors[s] > 0 {
		s++
	}
	st.FilterReached = s
	before := total
	if s > 0 {
		before = st.Survivors[s-1]
	}
	var d string
	switch s {
	case stageStandby:
		if q.wholesale {
			d = fmt.Sprintf("%s indexed, none in standby or busy and free of holds", count(before))
		} else {
			d = fmt.Sprintf("%s indexed, none in standby and free", count(before))
		}
	case stageApp:
		d = fmt.Sprintf("%s available, none runs app %s", count(before), q.app)
	case stageHardware:
		d = fmt.Sprintf("%s available with app %s, none has %s", count(before), q.app, q.hw.describe())
	case stageLatency:
		d = fmt.Sprintf("%s with the hardware, none within %d ms", count(before), q.maxLat)
		if nearest != math.MaxUint32 {
			d += fmt.Sprintf(" (nearest %d ms)", nearest)
		}
	case stageBudget:
		d = fmt.Sprintf("%s within the latency limit, none asks at most %d micros per session (cheapest %d)", count(before), q.budget, cheapest)
	case stageCalendar:
		d = fmt.Sprintf("%s within budget, all booked during %s to %s", count(before),
			time.UnixMilli(q.ws).UTC().Format(time.RFC3339), time.UnixMilli(q.we).UTC().Format(time.RFC3339))
	}
	return nil, &Refusal{Filter: stageFilters[s], Detail: d}
}

func count(n int) string {
	if n == 1 {
		return "1 container"
	}
	return fmt.Sprintf("%d containers", n)
}

// describe says what the requirement asks, for refusals: "2x H100 with 80 GiB each, an encoder".
func (r *hwReq) describe() string {
	var parts []string
	switch {
	case r.minGPUs > 0:
		model := r.model
		if model == "" {
			model = "GPU"
		}
		s := fmt.Sprintf("%dx %s", r.minGPUs, model)
		if r.minMem > 0 {
			s += " with " + gib(r.minMem) + " each"
		}
		parts = append(parts, s)
	}
	if r.encoder {
		parts = append(parts, "a hardware encoder")
	}
	if r.cores > 0 {
		parts = append(parts, fmt.Sprintf("%d CPU cores", r.cores))
	}
	if r.memory > 0 {
		parts = append(parts, gib(r.memory)+" of memory")
	}
	if len(parts) == 0 {
		return "any hardware"
	}
	return strings.Join(parts, ", ")
}

func gib(b uint64) string {
	if b%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", b>>30)
	}
	return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
}

// Experience: what a GPU model renders, in ppm of the best. docs/MATCHING.md has the table's
// reasoning.
var experienceClass = map[string]int64{
	"RTX4090": 1_000_000, // 4K at 60+ fps with ray tracing, NVENC
	"L40S":    950_000,   // the data-centre Ada: 4K at 60 fps, RT cores, NVENC
	"RTX3080": 700_000,   // 1440p at 60 fps
	"H100":    600_000,   // fast but compute-class: no RT cores, no NVENC; 1440p at 60 fps
	"A100":    550_000,   // as H100, slower
	"T4":      400_000,   // 1080p at 60 fps for light scenes
}

// Experience constants.
const (
	CPUClass          = 100_000 // software rendering: 720p at 30 fps
	UnknownGPUClass   = 300_000 // a model not in the table
	ExtraGPUBonusPct  = 5       // per extra GPU of the best model, up to MaxExtraGPUs
	MaxExtraGPUs      = 3
	EncoderBonus      = 100_000 // a hardware encoder: the stream is not encoded on the CPU
	HardwareClassMax  = 1_000_000*(100+ExtraGPUBonusPct*MaxExtraGPUs)/100 + EncoderBonus
	LatencyPenaltyPPM = 2_000 // per ms of round trip
	LoadPenaltyPPM    = 200   // per permille of GPU load
)

// hardwareClass is the hardware part of the experience score: the class of the best GPU model,
// ExtraGPUBonusPct more for each further GPU of that model (up to MaxExtraGPUs), plus EncoderBonus
// for a hardware encoder.
func hardwareClass(gpus []gpuInfo, encoder bool) int64 {
	if len(gpus) == 0 {
		return CPUClass
	}
	best, bestClass := "", int64(-1)
	for _, g := range gpus {
		c, ok := experienceClass[g.model]
		if !ok {
			c = UnknownGPUClass
		}
		if c > bestClass || (c == bestClass && g.model < best) {
			best, bestClass = g.model, c
		}
	}
	n := 0
	for _, g := range gpus {
		if g.model == best {
			n++
		}
	}
	h := bestClass * int64(100+ExtraGPUBonusPct*min(n-1, MaxExtraGPUs)) / 100
	if encoder {
		h += EncoderBonus
	}
	return h
}

// experienceScore is the EXPERIENCE ranking's key: hardware class less the latency and load
// penalties.
func experienceScore(hw int64, rtt, load uint32) int64 {
	return hw - LatencyPenaltyPPM*int64(rtt) - LoadPenaltyPPM*int64(load)
}

// Weights of the evaluation index, in percent.
const (
	WeightFee        = 35
	WeightExperience = 35
	WeightLatency    = 20
	WeightQuality    = 10
)

// evaluationIndex is I = 0.35 F + 0.35 X + 0.20 L + 0.10 Q in ppm, each term in ppm:
// F = 1 - price/maxPrice, X = (hardware class - load penalty)/HardwareClassMax clamped to [0, 1],
// L = 1 - min(rtt, scale)/scale, Q = quality.
func evaluationIndex(c *cand, maxPrice uint64, scale uint32) int64 {
	f := int64(PPM)
	if maxPrice > 0 {
		f -= int64(mulDiv(c.price, PPM, maxPrice))
	}
	x := min(max(c.hw-LoadPenaltyPPM*int64(c.load), 0), HardwareClassMax) * PPM / HardwareClassMax
	l := int64(PPM) - int64(min(c.rtt, scale))*PPM/int64(scale)
	qu := int64(min(c.quality, PPM))
	return (WeightFee*f + WeightExperience*x + WeightLatency*l + WeightQuality*qu) / 100
}

// rank scores the candidates and returns the best limit of them, best first, by partial
// selection: a heap of the limit best so far, whose root is the worst of them.
func (q *query) rank(cands []cand, limit int) []Candidate {
	switch q.ranking {
	case pb.Ranking_RANKING_FEE:
		for i := range cands {
			cands[i].score = -int64(min(cands[i].price, math.MaxInt64))
		}
	case pb.Ranking_RANKING_EXPERIENCE:
		for i := range cands {
			c := &cands[i]
			c.score = experienceScore(c.hw, c.rtt, c.load)
		}
	default:
		var maxPrice uint64
		for i := range cands {
			maxPrice = max(maxPrice, cands[i].price)
		}
		for i := range cands {
			cands[i].score = evaluationIndex(&cands[i], maxPrice, q.latScale)
		}
	}
	before := q.before()
	top := cands
	if len(cands) > limit {
		top = selectTop(cands, limit, before)
	}
	slices.SortFunc(top, func(a, b cand) int {
		if before(&a, &b) {
			return -1
		}
		return 1
	})
	out := make([]Candidate, len(top))
	for i, c := range top {
		out[i] = Candidate{Peer: c.e.peer, Record: c.e.rec, PriceMicros: c.price, RTTms: c.rtt, Score: c.score}
	}
	return out
}

// before is the ranking order: whether a ranks ahead of b. Peer IDs break every tie.
func (q *query) before() func(a, b *cand) bool {
	if q.ranking == pb.Ranking_RANKING_FEE {
		return func(a, b *cand) bool {
			if a.price != b.price {
				return a.price < b.price
			}
			if a.rtt != b.rtt {
				return a.rtt < b.rtt
			}
			return a.e.peer < b.e.peer
		}
	}
	return func(a, b *cand) bool {
		if a.score != b.score {
			return a.score > b.score
		}
		if a.price != b.price {
			return a.price < b.price
		}
		if a.rtt != b.rtt {
			return a.rtt < b.rtt
		}
		return a.e.peer < b.e.peer
	}
}

// selectTop moves the best k of cands (k < len(cands)) to cands[:k], in no order, and returns
// that prefix: O(n log k).
func selectTop(cands []cand, k int, before func(a, b *cand) bool) []cand {
	h := cands[:k]
	// The heap's root is its worst element: parent ranks after (or equal to) its children.
	worse := func(i, j int) bool { return before(&h[j], &h[i]) }
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= k {
				return
			}
			w := l
			if r := l + 1; r < k && worse(r, l) {
				w = r
			}
			if !worse(w, i) {
				return
			}
			h[i], h[w] = h[w], h[i]
			i = w
		}
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(i)
	}
	for i := k; i < len(cands); i++ {
		if before(&cands[i], &h[0]) {
			h[0], cands[i] = cands[i], h[0]
			down(0)
		}
	}
	return h
}
