package indexer

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
)

// Defaults and bounds of the index.
const (
	// DefaultStale is how long an entry lives without a heartbeat: three heartbeat intervals.
	DefaultStale = 3 * container.DefaultHeartbeatInterval
	// DefaultQualityPPM is a container's quality until a checker scores it: neutral.
	DefaultQualityPPM = PPM / 2
	// MaxBookings bounds the calendar kept per container; a heartbeat's later bookings are dropped.
	MaxBookings = 256
)

// Config configures an Index. The zero value is valid.
type Config struct {
	// Stale: entries with no heartbeat for this long are dropped by Expire (default DefaultStale).
	Stale time.Duration
}

// Index holds the containers an indexer can match: their verified capability records and the live
// state of their heartbeats, sharded by region. It is safe for concurrent use.
//
// Locking: mu guards the set of entries and shards. Changes of structure (a new record, a new peer,
// a removal) take it exclusively; everything else (heartbeats, holds, matches, samples) takes it
// shared plus the lock of the one shard it touches, so heartbeats and matches of different regions
// never wait for each other, and matches of one region run in parallel. Entries that have no
// record yet live outside the shards under pmu. The order is mu, then a shard's mu, then pmu.
type Index struct {
	stale time.Duration

	mu     sync.RWMutex
	peers  map[string]*entry // every entry, by the peer string the caller uses
	shards map[string]*shard // by region code
	order  []*shard          // shards sorted by region: scans are deterministic

	pmu sync.Mutex // fields of entries without a record (shard == nil)

	models map[string]uint32 // interned GPU models, for one-word comparisons

	demand  *demand
	lastNow atomic.Int64 // latest now seen (unix ms), for SampleDemand and Regions
}

// NewIndex returns an empty index.
func NewIndex(cfg Config) *Index {
	if cfg.Stale <= 0 {
		cfg.Stale = DefaultStale
	}
	return &Index{
		stale:  cfg.Stale,
		peers:  map[string]*entry{},
		shards: map[string]*shard{},
		models: map[string]uint32{},
		demand: newDemand(),
	}
}

// shard holds the containers of one region, kept for fast scans.
type shard struct {
	region string

	// mu guards the live fields of the shard's entries and hot. The structure (entries, byApp,
	// byID, box, positions) changes only under Index.mu held exclusively.
	mu      sync.RWMutex
	entries []*entry           // dense, for full scans
	hot     []hot              // hot[i] caches what the filters read of entries[i]
	byApp   map[string][]int32 // per-app lists of positions, the fast path of Match
	byID    map[string]*entry  // by the record's peer ID bytes, for measured round trips
	box     box                // bounding box of the entries' places
	dirty   bool               // an entry left: box may be larger than needed
}

func newShard(region string) *shard {
	return &shard{region: region, byApp: map[string][]int32{}, byID: map[string]*entry{}}
}

// hot is what the filters and the scores read of an entry, two cache lines in a dense array per
// shard: a scan reads these lines in order instead of chasing pointers. The entry is the source
// of truth; sync copies it here after every change.
type hot struct {
	// Line 1: the standby, latency and budget filters and the scores.
	holdUntil     int64  // unix ms
	reservedUntil int64  // unix ms
	ask           uint64 // the ask in force
	v             vec
	hwClass       int32
	quality       uint32
	load          uint16
	state         uint8
	placed        bool
	idBit         uint8
	bookings      uint8 // how many, saturating; the first two are in book
	encoder       bool
	uniform       bool // every GPU has model and gpuMem (or there is none)
	// Line 2: hardware and the first bookings.
	cores    uint32
	gpuCount uint32
	memBytes uint64
	gpuMem   uint64
	model    uint32 // interned (Index.models); 0: none or not interned
	book     [2]interval
}

// sync copies e's filter fields into its hot lines. Shard locked for writing (or Index.mu held
// exclusively).
func (sh *shard) sync(e *entry) { sh.hot[e.pos] = hotOf(e) }

func hotOf(e *entry) hot {
	h := hot{
		holdUntil: e.holdUntil, reservedUntil: e.reservedUntil, ask: e.ask, v: e.v,
		hwClass: int32(e.hwClass), quality: e.quality, load: uint16(e.load),
		state: uint8(e.state), placed: e.placed, idBit: e.idBit,
		bookings: uint8(min(len(e.bookings), 255)), encoder: e.encoder,
		uniform: e.uniform && (e.gpuCount == 0 || e.modelID != 0),
		cores:   e.cores, gpuCount: e.gpuCount, memBytes: e.memBytes, gpuMem: e.gpuMem, model: e.modelID,
	}
	copy(h.book[:], e.bookings)
	if e.barred { // the checkers' verdict rules over the heartbeat's: out of every filter's standby
		h.state = uint8(pb.ContainerState_CONTAINER_STATE_NEEDS_RECHECK)
	}
	return h
}

// maxModels bounds the interned GPU models; the models of records beyond it are compared as
// strings (a slower path, still exact).
const maxModels = 1024

// internModel returns the model's number, assigning one if there is room; 0 when there is none.
// Index.mu held exclusively.
func (ix *Index) internModel(model string) uint32 {
	if id, ok := ix.models[model]; ok {
		return id
	}
	if len(ix.models) >= maxModels {
		return 0
	}
	id := uint32(len(ix.models) + 1)
	ix.models[model] = id
	return id
}

// interval is [start, end) in unix ms.
type interval struct{ start, end int64 }

// entry is one container. Record-derived fields change only under Index.mu held exclusively; live
// fields under the shard's mu (or pmu without a shard).
type entry struct {
	// What the shard's hot line caches (hotOf).
	state         pb.ContainerState
	load          uint32 // permille
	holdUntil     int64  // unix ms
	holdSet       int64  // unix ms: when the hold was placed
	reservedUntil int64  // unix ms
	ask           uint64 // the ask in force: the heartbeat's if it sets one, else the record's
	v             vec    // where it is, if placed
	placed        bool
	idBit         uint8 // the entry's bit in a request's filter of measured peers
	encoder       bool  // some GPU has a hardware encoder
	uniform       bool  // every GPU has the same model and memory (or there is none)
	gpuCount      uint32
	cores         uint32
	memBytes      uint64
	gpuModel      string // when uniform: the model
	modelID       uint32 // when uniform: the model's number (Index.models), 0 if none
	gpuMem        uint64 // when uniform: the memory of each
	bookings      []interval
	hwClass       int64 // hardware part of the experience score (match.go)
	quality       uint32
	barred        bool // needs_recheck or excluded in the checkers' ledger: never matched

	peer  string
	shard *shard // nil: no record yet, not matchable
	pos   int    // position in shard.entries

	// From the record.
	rec    *pb.ContainerRecord
	id     string   // string(rec.PeerId)
	apps   []string // distinct
	appPos []int    // index of the entry's position in shard.byApp[apps[i]]
	gpus   []gpuInfo
	pt     point

	// Live.
	hasHB    bool
	hbSeq    uint64
	hbRecSeq uint64
	hbFee    uint64
	lastSeen int64 // unix ms
}

type gpuInfo struct {
	model   string // normalised, upper case
	memory  uint64
	encoder bool
}

// observe records now as the latest time seen.
func (ix *Index) observe(now time.Time) {
	ms := now.UnixMilli()
	for {
		old := ix.lastNow.Load()
		if ms <= old || ix.lastNow.CompareAndSwap(old, ms) {
			return
		}
	}
}

// PutRecord stores a container's capability record, already verified by the caller (signature,
// peer, expiry). A record whose seq is not above the held one's is ignored. The record must not be
// changed afterwards: candidates hand it out as it is.
func (ix *Index) PutRecord(peer string, rec *pb.ContainerRecord, now time.Time) {
	if rec == nil {
		return
	}
	ix.observe(now)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e := ix.peers[peer]
	switch {
	case e == nil:
		e = &entry{peer: peer, quality: DefaultQualityPPM, lastSeen: now.UnixMilli()}
		ix.peers[peer] = e
	case e.rec != nil && rec.GetSeq() <= e.rec.GetSeq():
		return
	}
	if e.shard != nil {
		ix.detach(e)
	}
	e.setRecord(rec)
	e.modelID = 0
	if e.uniform && e.gpuCount > 0 {
		e.modelID = ix.internModel(e.gpuModel)
	}
	if !e.hasHB || rec.GetSeq() > e.hbRecSeq {
		e.state = rec.GetState() // the record is newer than the last heartbeat
	}
	region := rec.GetLocation().GetRegion()
	sh := ix.shards[region]
	if sh == nil {
		sh = newShard(region)
		ix.shards[region] = sh
		ix.order = append(ix.order, sh)
		slices.SortFunc(ix.order, func(a, b *shard) int { return strings.Compare(a.region, b.region) })
	}
	sh.add(e)
}

// setRecord derives the entry's record fields.
func (e *entry) setRecord(rec *pb.ContainerRecord) {
	e.rec = rec
	e.id = string(rec.GetPeerId())
	e.apps = e.apps[:0]
	for _, a := range rec.GetApps() {
		if !slices.Contains(e.apps, a) {
			e.apps = append(e.apps, a)
		}
	}
	e.pt = pointOf(rec.GetLocation())
	e.v, e.placed = e.pt.v, e.pt.ok
	hw := rec.GetHardware()
	e.gpus = e.gpus[:0]
	e.encoder = false
	for _, g := range hw.GetGpus() {
		model := g.GetModel()
		if model == "" {
			model = g.GetName()
		}
		e.gpus = append(e.gpus, gpuInfo{model: container.NormalizeModel(model), memory: g.GetMemoryBytes(), encoder: g.GetEncoder()})
		e.encoder = e.encoder || g.GetEncoder()
	}
	e.cores, e.memBytes = hw.GetCpuCores(), hw.GetMemoryBytes()
	e.gpuCount = uint32(len(e.gpus))
	e.uniform, e.gpuModel, e.gpuMem = true, "", 0
	for i, g := range e.gpus {
		if i == 0 {
			e.gpuModel, e.gpuMem = g.model, g.memory
		} else if g.model != e.gpuModel || g.memory != e.gpuMem {
			e.uniform = false
		}
	}
	e.hwClass = hardwareClass(e.gpus, e.encoder)
	e.idBit = idBit(e.id)
	e.setAsk()
}

// setAsk sets the ask in force: the heartbeat's if it sets one, else the record's.
func (e *entry) setAsk() {
	e.ask = e.rec.GetSessionFeeMicros()
	if e.hbFee > 0 {
		e.ask = e.hbFee
	}
}

// idBit hashes a peer ID to one of 256 bits (FNV-1a, folded).
func idBit(id string) uint8 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return uint8(h ^ h>>8 ^ h>>16 ^ h>>24)
}

func (sh *shard) add(e *entry) {
	e.shard = sh
	e.pos = len(sh.entries)
	sh.entries = append(sh.entries, e)
	sh.hot = append(sh.hot, hot{})
	sh.sync(e)
	e.appPos = e.appPos[:0]
	for _, a := range e.apps {
		e.appPos = append(e.appPos, len(sh.byApp[a]))
		sh.byApp[a] = append(sh.byApp[a], int32(e.pos))
	}
	if e.id != "" {
		sh.byID[e.id] = e
	}
	sh.box.add(e.pt)
}

// remove takes e out of the shard: out of each of its app lists (the list's last element takes
// its place), then out of entries and hot (the last entry takes its place, and its positions in
// its app lists are rewritten). O(apps).
func (sh *shard) remove(e *entry) {
	for i, a := range e.apps {
		list := sh.byApp[a]
		slot := e.appPos[i]
		if moved := sh.entries[list[len(list)-1]]; moved != e {
			list[slot] = list[len(list)-1]
			moved.appPos[slices.Index(moved.apps, a)] = slot
		}
		if list = list[:len(list)-1]; len(list) == 0 {
			delete(sh.byApp, a)
		} else {
			sh.byApp[a] = list
		}
	}
	last := len(sh.entries) - 1
	if moved := sh.entries[last]; moved != e {
		moved.pos = e.pos
		sh.entries[e.pos], sh.hot[e.pos] = moved, sh.hot[last]
		for i, a := range moved.apps {
			sh.byApp[a][moved.appPos[i]] = int32(e.pos)
		}
	}
	sh.entries[last] = nil
	sh.entries, sh.hot = sh.entries[:last], sh.hot[:last]
	if sh.byID[e.id] == e {
		delete(sh.byID, e.id)
	}
	sh.dirty = true
	e.shard = nil
}

// detach removes e from its shard and drops the shard when it empties. Index.mu held exclusively.
func (ix *Index) detach(e *entry) {
	sh := e.shard
	sh.remove(e)
	if len(sh.entries) == 0 {
		delete(ix.shards, sh.region)
		ix.order = slices.DeleteFunc(ix.order, func(s *shard) bool { return s == sh })
	}
}

// recomputeBoxes shrinks the boxes of shards that lost entries. Index.mu held exclusively.
func (ix *Index) recomputeBoxes() {
	for _, sh := range ix.order {
		if !sh.dirty {
			continue
		}
		sh.box = box{}
		for _, e := range sh.entries {
			sh.box.add(e.pt)
		}
		sh.dirty = false
	}
}

// Heartbeat applies a container's heartbeat: live state, load, reservation, bookings and fee. A
// heartbeat whose seq is not above the last one applied is ignored (gossip may reorder). It
// reports whether the caller should fetch the container's record: there is none yet, the heartbeat
// names a newer one, or the held one has expired. A heartbeat without a record is kept, but the
// entry is not matchable until its record arrives.
func (ix *Index) Heartbeat(peer string, hb *pb.Heartbeat, now time.Time) (needRecord bool) {
	if hb == nil {
		return false
	}
	ix.observe(now)
	ix.mu.RLock()
	if e := ix.peers[peer]; e != nil {
		var need bool
		if sh := e.shard; sh != nil {
			sh.mu.Lock()
			need = e.heartbeat(hb, now)
			sh.sync(e)
			sh.mu.Unlock()
		} else {
			ix.pmu.Lock()
			need = e.heartbeat(hb, now)
			ix.pmu.Unlock()
		}
		ix.mu.RUnlock()
		return need
	}
	ix.mu.RUnlock()

	ix.mu.Lock()
	defer ix.mu.Unlock()
	e := ix.peers[peer]
	if e == nil {
		e = &entry{peer: peer, quality: DefaultQualityPPM}
		ix.peers[peer] = e
	}
	need := e.heartbeat(hb, now)
	if e.shard != nil {
		e.shard.sync(e)
	}
	return need
}

func (e *entry) heartbeat(hb *pb.Heartbeat, now time.Time) (needRecord bool) {
	if !e.hasHB || hb.GetSeq() > e.hbSeq {
		e.hasHB = true
		e.hbSeq, e.hbRecSeq = hb.GetSeq(), hb.GetRecordSeq()
		e.state = hb.GetState()
		e.load = min(hb.GetLoadPermille(), 1000)
		e.reservedUntil = hb.GetReservedUntilUnixMs()
		if e.holdUntil != 0 && hb.GetSentUnixMs() > e.holdSet {
			e.holdUntil = 0 // the container's word is newer than our hold
		}
		e.hbFee = hb.GetSessionFeeMicros()
		e.setAsk()
		e.bookings = e.bookings[:0]
		for _, b := range hb.GetBookings() {
			if len(e.bookings) == MaxBookings {
				break
			}
			if b.GetEndUnixMs() > b.GetStartUnixMs() {
				e.bookings = append(e.bookings, interval{b.GetStartUnixMs(), b.GetEndUnixMs()})
			}
		}
		e.lastSeen = max(e.lastSeen, now.UnixMilli())
	}
	return e.rec == nil || hb.GetRecordSeq() > e.rec.GetSeq() ||
		(e.rec.GetExpiresUnixMs() > 0 && e.rec.GetExpiresUnixMs() <= now.UnixMilli())
}

// Remove drops a container.
func (ix *Index) Remove(peer string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(peer)
	ix.recomputeBoxes()
}

func (ix *Index) removeLocked(peer string) {
	e := ix.peers[peer]
	if e == nil {
		return
	}
	if e.shard != nil {
		ix.detach(e)
	}
	delete(ix.peers, peer)
}

// Expire drops the entries that have had no heartbeat (nor, for an entry never heard from, no
// record) for Config.Stale, and returns how many. It finds them under shared locks and takes the
// index exclusively only when there is something to drop.
func (ix *Index) Expire(now time.Time) (removed int) {
	ix.observe(now)
	cutoff := now.Add(-ix.stale).UnixMilli()
	var stale []string
	ix.mu.RLock()
	for _, sh := range ix.order {
		sh.mu.RLock()
		for _, e := range sh.entries {
			if e.lastSeen < cutoff {
				stale = append(stale, e.peer)
			}
		}
		sh.mu.RUnlock()
	}
	ix.pmu.Lock()
	for p, e := range ix.peers {
		if e.shard == nil && e.lastSeen < cutoff {
			stale = append(stale, p)
		}
	}
	ix.pmu.Unlock()
	ix.mu.RUnlock()
	if len(stale) == 0 {
		return 0
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, p := range stale {
		if e := ix.peers[p]; e != nil && e.lastSeen < cutoff { // a heartbeat may have come since
			ix.removeLocked(p)
			removed++
		}
	}
	ix.recomputeBoxes()
	return removed
}

// Hold keeps a container out of matches at this indexer until the given time: the caller holds it
// after a successful reservation, or when the container refused as reserved or not in standby, so
// that concurrent matches skip it until its heartbeat says so. A heartbeat the container sent after
// now releases the hold: from then on the container's own word (its state and reserved_until) rules,
// so a session that ended early frees it at once. Hold(peer, now, time.Time{}) releases it.
func (ix *Index) Hold(peer string, now, until time.Time) {
	ix.withEntry(peer, func(e *entry) { e.holdUntil, e.holdSet = until.UnixMilli(), now.UnixMilli() })
}

// SetQuality sets a container's quality score from the checkers, in ppm (capped at PPM). A
// container starts at DefaultQualityPPM. Unknown peers are ignored.
func (ix *Index) SetQuality(peer string, ppm uint32) {
	ix.withEntry(peer, func(e *entry) { e.quality = min(ppm, PPM) })
}

// SetStanding applies the checkers' verdict on a container: its quality score in ppm (capped at
// PPM) and whether it is barred from matches (its last check failed, or it was excluded) whatever
// its heartbeats say. A container nobody checked has DefaultQualityPPM and is not barred. Unknown
// peers are ignored: the caller applies the standing again when the container is first indexed.
func (ix *Index) SetStanding(peer string, ppm uint32, barred bool) {
	ix.withEntry(peer, func(e *entry) { e.quality, e.barred = min(ppm, PPM), barred })
}

// withEntry runs f on peer's entry with its live fields locked.
func (ix *Index) withEntry(peer string, f func(*entry)) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	e := ix.peers[peer]
	if e == nil {
		return
	}
	if sh := e.shard; sh != nil {
		sh.mu.Lock()
		f(e)
		sh.sync(e)
		sh.mu.Unlock()
		return
	}
	ix.pmu.Lock()
	f(e)
	ix.pmu.Unlock()
}

// Len is the number of entries, those still waiting for their record included.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.peers)
}

// RegionStats describes one region's matchable containers.
type RegionStats struct {
	Containers    int     // with a record, in any state
	Standby       int     // in standby and free
	Busy          int     // busy, or in standby but held by a lease, a session or a local hold
	Utilization   float64 // Busy / (Standby + Busy), now; 0 when both are 0
	MultiplierPPM uint32  // retail multiplier in force
}

// usage counts a shard's free and used containers at nowMs. Shard read-locked.
func (sh *shard) usage(nowMs int64) (free, used int) {
	for _, e := range sh.entries {
		switch {
		case e.state == pb.ContainerState_CONTAINER_STATE_BUSY:
			used++
		case e.state != pb.ContainerState_CONTAINER_STATE_STANDBY:
		case e.reservedUntil > nowMs || e.holdUntil > nowMs:
			used++
		default:
			free++
		}
	}
	return free, used
}

// SampleDemand takes one utilization sample per region, (busy + held) / (standby + busy + held)
// over the matchable entries, at the latest time the index has seen (the newest now passed to any
// method). The caller calls it every few seconds.
func (ix *Index) SampleDemand() { ix.SampleDemandAt(time.UnixMilli(ix.lastNow.Load())) }

// SampleDemandAt is SampleDemand at a given time.
func (ix *Index) SampleDemandAt(now time.Time) {
	nowMs := now.UnixMilli()
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for _, sh := range ix.order {
		sh.mu.RLock()
		free, used := sh.usage(nowMs)
		sh.mu.RUnlock()
		if free+used > 0 {
			ix.demand.sample(sh.region, uint32(uint64(used)*PPM/uint64(free+used)))
		}
	}
}

// RollEpoch turns the samples taken since the last roll (the epoch that ended) into each region's
// retail multiplier for epoch, and clears them. A region without samples gets 1.0x. Rolling to an
// epoch not after the current one does nothing.
func (ix *Index) RollEpoch(epoch uint64) { ix.demand.roll(epoch) }

// Regions describes every region with a matchable container, at the latest time the index has
// seen.
func (ix *Index) Regions() map[string]RegionStats {
	return ix.RegionsAt(time.UnixMilli(ix.lastNow.Load()))
}

// RegionsAt is Regions at a given time.
func (ix *Index) RegionsAt(now time.Time) map[string]RegionStats {
	nowMs := now.UnixMilli()
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make(map[string]RegionStats, len(ix.order))
	for _, sh := range ix.order {
		sh.mu.RLock()
		free, used := sh.usage(nowMs)
		n := len(sh.entries)
		sh.mu.RUnlock()
		st := RegionStats{Containers: n, Standby: free, Busy: used, MultiplierPPM: ix.demand.multiplier(sh.region)}
		if free+used > 0 {
			st.Utilization = float64(used) / float64(free+used)
		}
		out[sh.region] = st
	}
	return out
}
