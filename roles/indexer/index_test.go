package indexer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
)

// t0 is the tests' clock: the logic never reads a real one.
var t0 = time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)

const (
	standby = pb.ContainerState_CONTAINER_STATE_STANDBY
	busy    = pb.ContainerState_CONTAINER_STATE_BUSY
	locked  = pb.ContainerState_CONTAINER_STATE_LOCKED
	offline = pb.ContainerState_CONTAINER_STATE_OFFLINE
	recheck = pb.ContainerState_CONTAINER_STATE_NEEDS_RECHECK
)

// Places used by the tests, degrees.
var (
	paris     = [2]float64{48.8566, 2.3522}
	frankfurt = [2]float64{50.1109, 8.6821}
	london    = [2]float64{51.5074, -0.1278}
	virginia  = [2]float64{38.9, -77.0}
	tokyo     = [2]float64{35.6762, 139.6503}
)

func loc(region string, p [2]float64) *pb.Location {
	return &pb.Location{Region: region, HasCoordinates: true,
		LatitudeE6: int32(p[0] * 1e6), LongitudeE6: int32(p[1] * 1e6),
		Geohash: container.EncodeGeohash(int32(p[0]*1e6), int32(p[1]*1e6), 6)}
}

func profile(name string) *pb.Hardware {
	p, ok := container.ProfileByName(name)
	if !ok {
		panic("no profile " + name)
	}
	hw, err := container.NewSimulatedProbe(p, 1).Hardware()
	if err != nil {
		panic(err)
	}
	return hw
}

// rec builds a capability record: profile "h100", "a100", "l40s", "rtx4090", "rtx3080", "t4" or
// "cpu"; gpus > 1 repeats the profile's GPU.
type recSpec struct {
	peer    string
	seq     uint64
	region  string
	at      [2]float64
	profile string
	gpus    int
	apps    []string
	fee     uint64
	state   pb.ContainerState
}

func (s recSpec) build() *pb.ContainerRecord {
	if s.seq == 0 {
		s.seq = 1
	}
	if s.region == "" {
		s.region = "eu-west"
		if s.at == [2]float64{} {
			s.at = paris
		}
	}
	if s.profile == "" {
		s.profile = "rtx4090"
	}
	if s.apps == nil {
		s.apps = []string{"demo"}
	}
	if s.state == 0 {
		s.state = standby
	}
	hw := profile(s.profile)
	for len(hw.Gpus) > 0 && len(hw.Gpus) < s.gpus {
		hw.Gpus = append(hw.Gpus, proto.Clone(hw.Gpus[0]).(*pb.GPU))
	}
	return &pb.ContainerRecord{
		PeerId:           []byte("id-" + s.peer),
		Seq:              s.seq,
		IssuedUnixMs:     t0.UnixMilli(),
		ExpiresUnixMs:    t0.Add(time.Hour).UnixMilli(),
		Hardware:         hw,
		Location:         loc(s.region, s.at),
		Apps:             s.apps,
		SessionFeeMicros: s.fee,
		State:            s.state,
	}
}

func hb(seq uint64, state pb.ContainerState) *pb.Heartbeat {
	return &pb.Heartbeat{Seq: seq, State: state, RecordSeq: 1, SentUnixMs: t0.UnixMilli()}
}

// put adds containers with a first heartbeat in their record's state.
func put(ix *Index, specs ...recSpec) {
	for _, s := range specs {
		r := s.build()
		ix.PutRecord(s.peer, r, t0)
		ix.Heartbeat(s.peer, &pb.Heartbeat{Seq: 1, State: r.State, RecordSeq: r.Seq}, t0)
	}
}

func req(app string) *pb.MatchRequest {
	return &pb.MatchRequest{RequestId: make([]byte, 16), App: app}
}

func peers(cs []Candidate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Peer)
	}
	return out
}

// checkInvariants verifies the shards' bookkeeping: positions, per-app lists, IDs and boxes.
func checkInvariants(t *testing.T, ix *Index) {
	t.Helper()
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	inShards := 0
	for i, sh := range ix.order {
		if i > 0 && ix.order[i-1].region >= sh.region {
			t.Fatalf("shards out of order: %q before %q", ix.order[i-1].region, sh.region)
		}
		if ix.shards[sh.region] != sh || len(sh.entries) == 0 {
			t.Fatalf("shard %q: not indexed or empty", sh.region)
		}
		for p, e := range sh.entries {
			inShards++
			if e.pos != p || e.shard != sh || ix.peers[e.peer] != e {
				t.Fatalf("shard %q: entry %s at %d says pos %d", sh.region, e.peer, p, e.pos)
			}
			for k, a := range e.apps {
				if l := sh.byApp[a]; e.appPos[k] >= len(l) || int(l[e.appPos[k]]) != p {
					t.Fatalf("entry %s: app %s list position wrong", e.peer, a)
				}
			}
			if e.pt.ok && (e.pt.lat < sh.box.minLat || e.pt.lat > sh.box.maxLat || e.pt.lon < sh.box.minLon || e.pt.lon > sh.box.maxLon) {
				t.Fatalf("entry %s outside its shard's box", e.peer)
			}
		}
		n := 0
		if len(sh.hot) != len(sh.entries) {
			t.Fatalf("shard %q: %d hot lines for %d entries", sh.region, len(sh.hot), len(sh.entries))
		}
		for p, e := range sh.entries {
			if sh.hot[p] != hotOf(e) {
				t.Fatalf("entry %s: hot line out of date", e.peer)
			}
		}
		for a, l := range sh.byApp {
			for _, p := range l {
				e := sh.entries[p]
				if !slices.Contains(e.apps, a) || e.shard != sh {
					t.Fatalf("shard %q app %s lists %s", sh.region, a, e.peer)
				}
			}
			n += len(l)
		}
		for id, e := range sh.byID {
			if e.id != id || e.shard != sh {
				t.Fatalf("shard %q: byID %q wrong", sh.region, id)
			}
		}
	}
	if len(ix.shards) != len(ix.order) {
		t.Fatalf("%d shards, %d in order", len(ix.shards), len(ix.order))
	}
	pending := 0
	for _, e := range ix.peers {
		if e.shard == nil {
			pending++
			if e.rec != nil {
				t.Fatalf("entry %s has a record but no shard", e.peer)
			}
		}
	}
	if inShards+pending != len(ix.peers) {
		t.Fatalf("%d in shards + %d pending != %d peers", inShards, pending, len(ix.peers))
	}
}

func TestPutRecordSeq(t *testing.T) {
	ix := NewIndex(Config{})
	put(ix, recSpec{peer: "a", seq: 5, apps: []string{"demo"}})
	// An older or equal record changes nothing.
	ix.PutRecord("a", recSpec{peer: "a", seq: 4, apps: []string{"other"}}.build(), t0)
	ix.PutRecord("a", recSpec{peer: "a", seq: 5, apps: []string{"other"}}.build(), t0)
	if _, r := ix.Match(req("demo"), t0, 5); r != nil {
		t.Fatalf("older records replaced the held one: %v", r)
	}
	// A newer one replaces it: new apps, new region.
	ix.PutRecord("a", recSpec{peer: "a", seq: 6, region: "us-east", at: virginia, apps: []string{"other", "other"}}.build(), t0)
	if _, r := ix.Match(req("demo"), t0, 5); r == nil || r.Filter != FilterApp {
		t.Fatalf("demo after the app changed: refusal %v, want app", r)
	}
	c, r := ix.Match(req("other"), t0, 5)
	if r != nil || len(c) != 1 || c[0].Record.Location.Region != "us-east" {
		t.Fatalf("other: %v %v", c, r)
	}
	if got := len(ix.Regions()); got != 1 {
		t.Fatalf("%d regions after the move, want 1 (the emptied one dropped)", got)
	}
	checkInvariants(t, ix)
}

func TestHeartbeatNeedRecord(t *testing.T) {
	tests := []struct {
		name   string
		record uint64 // held record's seq; 0: none
		hbRec  uint64
		now    time.Time
		want   bool
	}{
		{"no record yet", 0, 1, t0, true},
		{"heartbeat names the held record", 3, 3, t0, false},
		{"heartbeat names an older record", 3, 2, t0, false},
		{"heartbeat names a newer record", 3, 4, t0, true},
		{"held record expired", 3, 3, t0.Add(time.Hour), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := NewIndex(Config{})
			if tt.record > 0 {
				ix.PutRecord("a", recSpec{peer: "a", seq: tt.record}.build(), t0)
			}
			if got := ix.Heartbeat("a", &pb.Heartbeat{Seq: 1, RecordSeq: tt.hbRec, State: standby}, tt.now); got != tt.want {
				t.Fatalf("needRecord = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHeartbeatBeforeRecord(t *testing.T) {
	ix := NewIndex(Config{})
	if !ix.Heartbeat("a", &pb.Heartbeat{Seq: 1, RecordSeq: 1, State: standby}, t0) {
		t.Fatal("a heartbeat without a record must ask for it")
	}
	if ix.Len() != 1 {
		t.Fatalf("Len = %d, want 1: the heartbeat is kept", ix.Len())
	}
	if _, r := ix.Match(req("demo"), t0, 1); r == nil || r.Filter != FilterNone {
		t.Fatalf("refusal %v, want %s: an entry without a record is not matchable", r, FilterNone)
	}
	// The record arrives in a stale state; the heartbeat that named it is at least as new.
	ix.PutRecord("a", recSpec{peer: "a", seq: 1, state: locked}.build(), t0)
	if c, r := ix.Match(req("demo"), t0, 1); r != nil || len(c) != 1 {
		t.Fatalf("after the record: %v %v, want a match in the heartbeat's standby state", c, r)
	}
	checkInvariants(t, ix)
}

func TestHeartbeatState(t *testing.T) {
	ix := NewIndex(Config{})
	put(ix, recSpec{peer: "a"})
	ix.Heartbeat("a", hb(5, busy), t0)
	ix.Heartbeat("a", hb(4, standby), t0) // reordered by gossip: older, ignored
	if _, r := ix.Match(req("demo"), t0, 1); r == nil || r.Filter != FilterStandby {
		t.Fatalf("refusal %v, want standby: an older heartbeat must not override a newer one", r)
	}
	ix.Heartbeat("a", hb(6, standby), t0)
	if _, r := ix.Match(req("demo"), t0, 1); r != nil {
		t.Fatalf("refusal %v after a newer standby heartbeat", r)
	}
	// A newer record than the last heartbeat brings its own state until the next heartbeat.
	ix.PutRecord("a", recSpec{peer: "a", seq: 2, state: locked}.build(), t0)
	if _, r := ix.Match(req("demo"), t0, 1); r == nil || r.Filter != FilterStandby {
		t.Fatalf("refusal %v, want standby after a locked record newer than the heartbeat", r)
	}
}

func TestHoldAndReservation(t *testing.T) {
	tests := []struct {
		name      string
		hold      time.Time
		reserved  time.Time
		wholesale bool
		want      string // "" matched, else the refusal's filter
	}{
		{"free", time.Time{}, time.Time{}, false, ""},
		{"held here", t0.Add(10 * time.Second), time.Time{}, false, FilterStandby},
		{"hold lapsed", t0, time.Time{}, false, ""},
		{"leased by the container", time.Time{}, t0.Add(time.Second), false, FilterStandby},
		{"lease ended", time.Time{}, t0, false, ""},
		{"held here, wholesale", t0.Add(10 * time.Second), time.Time{}, true, FilterStandby},
		{"leased into the block, wholesale", time.Time{}, t0.Add(2 * time.Hour), true, FilterCalendar},
		{"leased before the block, wholesale", time.Time{}, t0.Add(time.Hour), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := NewIndex(Config{})
			put(ix, recSpec{peer: "a"})
			if !tt.reserved.IsZero() {
				h := hb(2, standby)
				h.ReservedUntilUnixMs = tt.reserved.UnixMilli()
				ix.Heartbeat("a", h, t0)
			}
			if !tt.hold.IsZero() {
				ix.Hold("a", t0, tt.hold)
			}
			rq := req("demo")
			if tt.wholesale {
				rq.Mode, rq.StartUnixMs = pb.ServiceMode_SERVICE_MODE_WHOLESALE, t0.Add(time.Hour).UnixMilli()
			}
			_, r := ix.Match(rq, t0, 1)
			switch {
			case tt.want == "" && r != nil:
				t.Fatalf("refused: %v", r)
			case tt.want != "" && (r == nil || r.Filter != tt.want):
				t.Fatalf("refusal %v, want %s", r, tt.want)
			}
		})
	}
	t.Run("release", func(t *testing.T) {
		ix := NewIndex(Config{})
		put(ix, recSpec{peer: "a"})
		ix.Hold("a", t0, t0.Add(time.Minute))
		ix.Hold("a", t0, time.Time{})
		if _, r := ix.Match(req("demo"), t0, 1); r != nil {
			t.Fatalf("refused after the hold was released: %v", r)
		}
		ix.Hold("nobody", t0, t0.Add(time.Minute)) // unknown: ignored
	})
	t.Run("a newer heartbeat releases it", func(t *testing.T) {
		ix := NewIndex(Config{})
		put(ix, recSpec{peer: "a"})
		ix.Hold("a", t0, t0.Add(time.Minute))
		old := hb(2, pb.ContainerState_CONTAINER_STATE_STANDBY)
		old.SentUnixMs = t0.UnixMilli() // sent before (or as) the hold was placed: it changes nothing
		ix.Heartbeat("a", old, t0)
		if _, r := ix.Match(req("demo"), t0.Add(time.Second), 1); r == nil || r.Filter != FilterStandby {
			t.Fatalf("a heartbeat no newer than the hold released it: %v", r)
		}
		fresh := hb(3, pb.ContainerState_CONTAINER_STATE_STANDBY)
		fresh.SentUnixMs = t0.Add(2 * time.Second).UnixMilli() // the session ended early: free again
		ix.Heartbeat("a", fresh, t0.Add(2*time.Second))
		if _, r := ix.Match(req("demo"), t0.Add(2*time.Second), 1); r != nil {
			t.Fatalf("still held after the container's newer heartbeat: %v", r)
		}
	})
}

func TestExpire(t *testing.T) {
	ix := NewIndex(Config{Stale: 15 * time.Second})
	put(ix, recSpec{peer: "a"}, recSpec{peer: "b", region: "us-east", at: virginia})
	ix.Heartbeat("p", &pb.Heartbeat{Seq: 1, RecordSeq: 1}, t0) // pending: no record
	ix.Heartbeat("b", hb(2, standby), t0.Add(10*time.Second))
	if n := ix.Expire(t0.Add(15 * time.Second)); n != 0 {
		t.Fatalf("expired %d at exactly Stale, want 0", n)
	}
	if n := ix.Expire(t0.Add(16 * time.Second)); n != 2 {
		t.Fatalf("expired %d, want 2 (a and the pending p)", n)
	}
	if ix.Len() != 1 {
		t.Fatalf("Len = %d, want 1", ix.Len())
	}
	c, r := ix.Match(req("demo"), t0.Add(16*time.Second), 5)
	if r != nil || !slices.Equal(peers(c), []string{"b"}) {
		t.Fatalf("after expiry: %v %v", peers(c), r)
	}
	// A record alone keeps a new entry for Stale, no longer.
	ix.PutRecord("c", recSpec{peer: "c"}.build(), t0.Add(20*time.Second))
	if n := ix.Expire(t0.Add(30 * time.Second)); n != 1 { // b goes, c stays
		t.Fatalf("expired %d, want 1", n)
	}
	if n := ix.Expire(t0.Add(36 * time.Second)); n != 1 {
		t.Fatalf("expired %d, want 1 (c, never heard from)", n)
	}
	checkInvariants(t, ix)
}

func TestRemoveShrinksBox(t *testing.T) {
	ix := NewIndex(Config{})
	put(ix, recSpec{peer: "near", at: paris}, recSpec{peer: "far", at: tokyo}) // one region, far apart
	ix.Remove("far")
	ix.Remove("far") // twice: nothing
	rq := req("demo")
	rq.Location, rq.MaxLatencyMs = loc("", london), 20
	if _, st, r := ix.MatchWithStats(rq, t0, 1); r != nil || st.ShardsPruned != 0 {
		t.Fatalf("%v %+v", r, st)
	}
	rq.Location = loc("", virginia)
	_, st, r := ix.MatchWithStats(rq, t0, 1)
	if r == nil || r.Filter != FilterLatency || st.ShardsPruned != 1 {
		t.Fatalf("from Virginia: %v %+v, want the Paris-only shard pruned", r, st)
	}
	checkInvariants(t, ix)
}

func TestSetQuality(t *testing.T) {
	ix := NewIndex(Config{})
	put(ix, recSpec{peer: "a", fee: 100}, recSpec{peer: "b", fee: 100})
	ix.SetQuality("b", 900_000)
	ix.SetQuality("nobody", 1)
	c, _ := ix.Match(req("demo"), t0, 2)
	if !slices.Equal(peers(c), []string{"b", "a"}) {
		t.Fatalf("order %v: the better checker score wins between equals", peers(c))
	}
}

// A container the checkers barred is not matched, whatever its heartbeats say; lifting the bar
// brings it back, and its score ranks it.
func TestSetStanding(t *testing.T) {
	ix := NewIndex(Config{})
	put(ix, recSpec{peer: "a", fee: 100}, recSpec{peer: "b", fee: 100})
	ix.SetStanding("b", PPM, true)
	c, _ := ix.Match(req("demo"), t0, 2)
	if !slices.Equal(peers(c), []string{"a"}) {
		t.Fatalf("matched %v: a barred container was matched", peers(c))
	}
	ix.SetStanding("a", PPM, true)
	if c, r := ix.Match(req("demo"), t0, 2); len(c) != 0 || r == nil || r.Filter != FilterStandby {
		t.Fatalf("matched %v (refusal %v), want the standby filter to refuse", peers(c), r)
	}
	ix.SetStanding("a", 100_000, false)
	ix.SetStanding("b", 900_000, false)
	c, _ = ix.Match(req("demo"), t0, 2)
	if !slices.Equal(peers(c), []string{"b", "a"}) {
		t.Fatalf("order %v after the bars were lifted", peers(c))
	}
	checkInvariants(t, ix)
}

func TestRegions(t *testing.T) {
	ix := NewIndex(Config{})
	put(ix,
		recSpec{peer: "a"}, recSpec{peer: "b"}, recSpec{peer: "c", state: busy}, recSpec{peer: "d", state: locked},
		recSpec{peer: "e", region: "us-east", at: virginia})
	ix.Hold("b", t0, t0.Add(time.Minute))
	got := ix.RegionsAt(t0)
	want := map[string]RegionStats{
		"eu-west": {Containers: 4, Standby: 1, Busy: 2, Utilization: 2.0 / 3, MultiplierPPM: PPM},
		"us-east": {Containers: 1, Standby: 1, Busy: 0, Utilization: 0, MultiplierPPM: PPM},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Regions = %v, want %v", got, want)
	}
}

// randomWorld fills an index with n containers spread over regions, apps and profiles, the way
// the benchmarks and the property test see the network.
type worldRegion struct {
	name string
	at   [2]float64
}

var worldRegions = []worldRegion{
	{"ap-northeast", tokyo}, {"ap-southeast", [2]float64{1.35, 103.82}}, {"eu-central", frankfurt},
	{"eu-west", paris}, {"us-east", virginia}, {"us-west", [2]float64{37.77, -122.42}},
}

var worldProfiles = []string{"h100", "a100", "l40s", "rtx4090", "rtx3080", "t4", "cpu"}

func worldApps(n int) []string {
	apps := make([]string, n)
	for i := range apps {
		apps[i] = fmt.Sprintf("app-%02d", i)
	}
	return apps
}

// randomRecord draws a container's record. Apps follow a skewed popularity: app-00 is everywhere.
func randomRecord(r *rand.Rand, peer string, seq uint64, regions []worldRegion, apps, profiles []string) *pb.ContainerRecord {
	reg := regions[r.IntN(len(regions))]
	at := [2]float64{reg.at[0] + r.NormFloat64()*3, reg.at[1] + r.NormFloat64()*4}
	at[0] = min(max(at[0], -89), 89)
	l := loc(reg.name, at)
	if r.IntN(3) == 0 { // geohash only, of varying precision
		l.HasCoordinates, l.LatitudeE6, l.LongitudeE6 = false, 0, 0
		l.Geohash = l.Geohash[:2+r.IntN(4)]
	}
	hw := profile(profiles[r.IntN(len(profiles))])
	if len(hw.Gpus) > 0 && r.IntN(4) == 0 {
		for range 1 + r.IntN(7) {
			hw.Gpus = append(hw.Gpus, proto.Clone(hw.Gpus[0]).(*pb.GPU))
		}
	}
	var as []string
	for len(as) == 0 {
		for i, a := range apps {
			if r.IntN(len(apps)) < max(len(apps)/(i+1), 1) {
				as = append(as, a)
			}
		}
	}
	return &pb.ContainerRecord{
		PeerId: []byte("id-" + peer), Seq: seq,
		IssuedUnixMs: t0.UnixMilli(), ExpiresUnixMs: t0.Add(time.Hour).UnixMilli(),
		Hardware: hw, Location: l, Apps: as,
		SessionFeeMicros: uint64(100_000 + r.IntN(50)*10_000),
		State:            standby,
	}
}

// randomHeartbeat draws live state: mostly standby, some busy, leased or booked.
func randomHeartbeat(r *rand.Rand, seq, recSeq uint64, now time.Time) *pb.Heartbeat {
	h := &pb.Heartbeat{Seq: seq, RecordSeq: recSeq, SentUnixMs: now.UnixMilli(), State: standby,
		LoadPermille: uint32(r.IntN(1001))}
	switch x := r.IntN(20); {
	case x < 3:
		h.State = busy
	case x < 4:
		h.State = []pb.ContainerState{locked, offline, recheck, pb.ContainerState_CONTAINER_STATE_AWAITING_CHECK}[r.IntN(4)]
	case x < 6:
		h.ReservedUntilUnixMs = now.Add(time.Duration(r.IntN(120)-30) * time.Second).UnixMilli()
	}
	if r.IntN(4) == 0 {
		h.SessionFeeMicros = uint64(80_000 + r.IntN(60)*10_000)
	}
	for range r.IntN(3) {
		start := now.Add(time.Duration(r.IntN(8*60)-60) * time.Minute)
		h.Bookings = append(h.Bookings, &pb.Booking{StartUnixMs: start.UnixMilli(),
			EndUnixMs: start.Add(time.Duration(r.IntN(4)) * UnitLength).UnixMilli()}) // some empty: dropped
	}
	return h
}

// TestConcurrentUse runs every operation from several goroutines at once; under -race it checks
// the locking. It asserts only what holds whatever the interleaving.
func TestConcurrentUse(t *testing.T) {
	ix := NewIndex(Config{})
	apps := worldApps(4)
	names := make([]string, 200)
	for i := range names {
		names[i] = fmt.Sprintf("peer-%03d", i)
	}
	n := 400
	if testing.Short() {
		n = 100
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for i := range n {
				p := names[r.IntN(len(names))]
				now := t0.Add(time.Duration(i) * 10 * time.Millisecond)
				switch g {
				case 0:
					ix.PutRecord(p, randomRecord(r, p, uint64(1+i/50), worldRegions, apps, worldProfiles), now)
				case 1:
					ix.Heartbeat(p, randomHeartbeat(r, uint64(i+1), uint64(1+i/50), now), now)
				case 2:
					ix.Hold(p, now, now.Add(time.Second))
					ix.SetQuality(p, uint32(r.IntN(PPM)))
				case 3:
					if i%50 == 0 {
						ix.Remove(p)
						ix.Expire(now)
					}
					ix.SampleDemand()
					if i%100 == 0 {
						ix.RollEpoch(uint64(i))
					}
					_ = ix.Regions()
				default:
					c, ref := ix.Match(randomRequest(r, apps, names, now), now, 3)
					if (len(c) == 0) == (ref == nil) {
						t.Errorf("candidates %v and refusal %v", peers(c), ref)
					}
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, ix)
}

// TestHotLineSize guards the layout the scans are tuned for: two 64-byte cache lines.
func TestHotLineSize(t *testing.T) {
	if n := unsafe.Sizeof(hot{}); n != 128 {
		t.Fatalf("hot is %d bytes, want 128", n)
	}
}
