package indexer

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
)

// excluded is n exclusions of size bytes each.
func excluded(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte{byte(i)}, size)
	}
	return out
}

func TestValidateRequest(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*pb.MatchRequest)
		want   string // "" valid, else a part of the error
	}{
		{"minimal", func(*pb.MatchRequest) {}, ""},
		{"nil", nil, "empty request"},
		{"short request id", func(r *pb.MatchRequest) { r.RequestId = r.RequestId[:15] }, "request_id"},
		{"no app", func(r *pb.MatchRequest) { r.App = "" }, "app"},
		{"app upper case", func(r *pb.MatchRequest) { r.App = "Demo" }, "app"},
		{"app 48 chars", func(r *pb.MatchRequest) { r.App = strings.Repeat("a", 48) }, ""},
		{"app 49 chars", func(r *pb.MatchRequest) { r.App = strings.Repeat("a", 49) }, "app"},
		{"app punctuation", func(r *pb.MatchRequest) { r.App = "my_app-1.2" }, ""},
		{"96 sessions", func(r *pb.MatchRequest) { r.Sessions = 96 }, ""},
		{"97 sessions", func(r *pb.MatchRequest) { r.Sessions = 97 }, "sessions"},
		{"unknown mode", func(r *pb.MatchRequest) { r.Mode = 7 }, "mode"},
		{"unknown ranking", func(r *pb.MatchRequest) { r.Ranking = -1 }, "ranking"},
		{"wholesale without start", func(r *pb.MatchRequest) { r.Mode = pb.ServiceMode_SERVICE_MODE_WHOLESALE }, "start_unix_ms"},
		{"wholesale", func(r *pb.MatchRequest) {
			r.Mode, r.StartUnixMs = pb.ServiceMode_SERVICE_MODE_WHOLESALE, t0.UnixMilli()
		}, ""},
		{"start beyond year 9999", func(r *pb.MatchRequest) { r.StartUnixMs = 1 << 62 }, "start_unix_ms"},
		{"latency without location", func(r *pb.MatchRequest) { r.MaxLatencyMs = 50 }, "location"},
		{"latency with geohash", func(r *pb.MatchRequest) {
			r.MaxLatencyMs, r.Location = 50, &pb.Location{Geohash: "u09"}
		}, ""},
		{"latency with coordinates", func(r *pb.MatchRequest) { r.MaxLatencyMs, r.Location = 50, loc("", paris) }, ""},
		{"latency with a region only", func(r *pb.MatchRequest) {
			r.MaxLatencyMs, r.Location = 50, &pb.Location{Region: "eu-west"}
		}, "location"},
		{"bad geohash", func(r *pb.MatchRequest) { r.Location = &pb.Location{Geohash: "u0a"} }, "geohash"},
		{"bad region", func(r *pb.MatchRequest) { r.Location = &pb.Location{Region: "EU"} }, "region"},
		{"coordinates out of range", func(r *pb.MatchRequest) {
			r.Location = &pb.Location{HasCoordinates: true, LatitudeE6: 91_000_000}
		}, "coordinates"},
		{"64 round trips", func(r *pb.MatchRequest) { r.Rtts = rtts(64) }, ""},
		{"65 round trips", func(r *pb.MatchRequest) { r.Rtts = rtts(65) }, "round trips"},
		{"round trip without peer", func(r *pb.MatchRequest) { r.Rtts = []*pb.MeasuredRTT{{RttMs: 3}} }, "peer_id"},
		{"16 excluded", func(r *pb.MatchRequest) { r.Exclude = excluded(16, 38) }, ""},
		{"17 excluded", func(r *pb.MatchRequest) { r.Exclude = excluded(17, 38) }, "exclude lists 17"},
		{"empty exclusion", func(r *pb.MatchRequest) { r.Exclude = excluded(1, 0) }, "exclude: peer ID of 0"},
		{"long exclusion", func(r *pb.MatchRequest) { r.Exclude = excluded(1, 129) }, "exclude: peer ID of 129"},
		{"a stated wait", func(r *pb.MatchRequest) { r.WaitMs = 2000 }, ""},
		{"long model", func(r *pb.MatchRequest) {
			r.Hardware = &pb.HardwareRequirement{GpuModel: strings.Repeat("X", 33)}
		}, "gpu_model"},
		{"too many gpus", func(r *pb.MatchRequest) { r.Hardware = &pb.HardwareRequirement{MinGpus: 65} }, "min_gpus"},
		{"none with gpus", func(r *pb.MatchRequest) {
			r.Hardware = &pb.HardwareRequirement{GpuModel: "None", MinGpus: 1}
		}, "asks for no GPU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r *pb.MatchRequest
			if tt.mutate != nil {
				r = req("demo")
				tt.mutate(r)
			}
			err := ValidateRequest(r)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("accepted, want an error about %s", tt.want)
			case tt.want != "" && (!errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %q: want ErrBadRequest about %q", err, tt.want)
			}
		})
	}
}

func rtts(n int) []*pb.MeasuredRTT {
	out := make([]*pb.MeasuredRTT, n)
	for i := range out {
		out[i] = &pb.MeasuredRTT{PeerId: fmt.Appendf(nil, "id-%d", i), RttMs: 10}
	}
	return out
}

// TestFilters builds one small index and asks requests that each stop at one filter.
func TestFilters(t *testing.T) {
	ix := NewIndex(Config{})
	put(ix,
		recSpec{peer: "h100", profile: "h100", fee: 500_000, apps: []string{"demo", "cad"}},
		recSpec{peer: "4090x2", profile: "rtx4090", gpus: 2, fee: 300_000},
		recSpec{peer: "cpu", profile: "cpu", fee: 50_000, apps: []string{"demo", "office"}},
		recSpec{peer: "busy", profile: "l40s", fee: 100_000, state: busy},
		recSpec{peer: "tokyo", region: "ap-northeast", at: tokyo, profile: "t4", fee: 80_000},
	)
	gib := uint64(1 << 30)
	tests := []struct {
		name   string
		req    func(*pb.MatchRequest)
		want   []string // matched peers in FEE order, or nil
		filter string
		detail string
	}{
		{"any", nil, []string{"cpu", "tokyo", "4090x2", "h100"}, "", ""},
		{"app nobody runs", func(r *pb.MatchRequest) { r.App = "game" }, nil, FilterApp,
			"4 containers available, none runs app game"},
		{"app one runs", func(r *pb.MatchRequest) { r.App = "cad" }, []string{"h100"}, "", ""},
		{"gpu model, case-insensitive", func(r *pb.MatchRequest) { r.Hardware = &pb.HardwareRequirement{GpuModel: "h100"} },
			[]string{"h100"}, "", ""},
		{"gpu model as NVML names it", func(r *pb.MatchRequest) {
			r.Hardware = &pb.HardwareRequirement{GpuModel: "NVIDIA GeForce RTX 4090"}
		}, []string{"4090x2"}, "", ""},
		{"two of a model", func(r *pb.MatchRequest) { r.Hardware = &pb.HardwareRequirement{GpuModel: "RTX4090", MinGpus: 2} },
			[]string{"4090x2"}, "", ""},
		{"three of a model", func(r *pb.MatchRequest) { r.Hardware = &pb.HardwareRequirement{GpuModel: "RTX4090", MinGpus: 3} },
			nil, FilterHardware, "4 containers available with app demo, none has 3x RTX4090"},
		{"any two GPUs", func(r *pb.MatchRequest) { r.Hardware = &pb.HardwareRequirement{MinGpus: 2} },
			[]string{"4090x2"}, "", ""},
		{"none is satisfied by anything", func(r *pb.MatchRequest) { r.Hardware = &pb.HardwareRequirement{GpuModel: "none"} },
			[]string{"cpu", "tokyo", "4090x2", "h100"}, "", ""},
		{"GPU memory, any model", func(r *pb.MatchRequest) { r.Hardware = &pb.HardwareRequirement{MinGpuMemoryBytes: 40 * gib} },
			[]string{"h100"}, "", ""},
		{"GPU memory of the model", func(r *pb.MatchRequest) {
			r.Hardware = &pb.HardwareRequirement{GpuModel: "RTX4090", MinGpuMemoryBytes: 40 * gib}
		}, nil, FilterHardware, "4 containers available with app demo, none has 1x RTX4090 with 40 GiB each"},
		{"encoder", func(r *pb.MatchRequest) { r.Hardware = &pb.HardwareRequirement{Encoder: true} },
			[]string{"tokyo", "4090x2"}, "", ""},
		{"cores and memory", func(r *pb.MatchRequest) {
			r.Hardware = &pb.HardwareRequirement{MinCpuCores: 16, MinMemoryBytes: 100 * gib}
		}, []string{"h100"}, "", ""},
		{"latency from Paris", func(r *pb.MatchRequest) { r.Location, r.MaxLatencyMs = loc("", paris), 20 },
			[]string{"cpu", "4090x2", "h100"}, "", ""},
		{"latency from Virginia", func(r *pb.MatchRequest) { r.Location, r.MaxLatencyMs = loc("", virginia), 50 },
			nil, FilterLatency, "4 containers with the hardware, none within 50 ms (nearest 97 ms)"},
		{"a measured round trip wins over geography", func(r *pb.MatchRequest) {
			r.Location, r.MaxLatencyMs = loc("", virginia), 50
			r.Rtts = []*pb.MeasuredRTT{{PeerId: []byte("id-tokyo"), RttMs: 40}, {PeerId: []byte("id-h100"), RttMs: 45}}
		}, []string{"tokyo", "h100"}, "", ""},
		{"a measured round trip can fail", func(r *pb.MatchRequest) {
			r.Location, r.MaxLatencyMs = loc("", paris), 20
			r.Rtts = []*pb.MeasuredRTT{{PeerId: []byte("id-cpu"), RttMs: 21}}
		}, []string{"4090x2", "h100"}, "", ""},
		{"budget", func(r *pb.MatchRequest) { r.BudgetMicros = 300_000 }, []string{"cpu", "tokyo", "4090x2"}, "", ""},
		{"budget too low", func(r *pb.MatchRequest) { r.BudgetMicros = 49_999 }, nil, FilterBudget,
			"4 containers within the latency limit, none asks at most 49999 micros per session (cheapest 50000)"},
		{"hardware, then budget", func(r *pb.MatchRequest) {
			r.Hardware, r.BudgetMicros = &pb.HardwareRequirement{GpuModel: "H100"}, 100_000
		}, nil, FilterBudget, "1 container within the latency limit, none asks at most 100000 micros per session (cheapest 500000)"},
		{"wholesale takes busy containers", func(r *pb.MatchRequest) {
			r.Mode, r.StartUnixMs = pb.ServiceMode_SERVICE_MODE_WHOLESALE, t0.Add(24*time.Hour).UnixMilli()
		}, []string{"cpu", "tokyo", "busy", "4090x2", "h100"}, "", ""},
		{"wholesale in the past", func(r *pb.MatchRequest) {
			r.Mode, r.StartUnixMs = pb.ServiceMode_SERVICE_MODE_WHOLESALE, t0.Add(-time.Minute).UnixMilli()
		}, nil, FilterBadRequest, "in the past"},
		{"wholesale within the clock skew", func(r *pb.MatchRequest) {
			r.Mode, r.StartUnixMs = pb.ServiceMode_SERVICE_MODE_WHOLESALE, t0.Add(-ClockSkew).UnixMilli()
		}, []string{"cpu", "tokyo", "busy", "4090x2", "h100"}, "", ""},
		{"bad request", func(r *pb.MatchRequest) { r.RequestId = nil }, nil, FilterBadRequest, "request_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req("demo")
			r.Ranking = pb.Ranking_RANKING_FEE
			if tt.req != nil {
				tt.req(r)
			}
			c, ref := ix.Match(r, t0, 10)
			if (len(c) == 0) == (ref == nil) {
				t.Fatalf("candidates %v and refusal %v: want exactly one", peers(c), ref)
			}
			if tt.filter != "" {
				if ref == nil || ref.Filter != tt.filter || !strings.Contains(ref.Detail, tt.detail) {
					t.Fatalf("refusal %v, want %s: %s", ref, tt.filter, tt.detail)
				}
				return
			}
			if ref != nil || !slices.Equal(peers(c), tt.want) {
				t.Fatalf("matched %v (refusal %v), want %v", peers(c), ref, tt.want)
			}
		})
	}
}

func TestRefusalStandbyAndNone(t *testing.T) {
	ix := NewIndex(Config{})
	_, r := ix.Match(req("demo"), t0, 1)
	if r == nil || r.Filter != FilterNone {
		t.Fatalf("empty index: %v", r)
	}
	put(ix, recSpec{peer: "a", state: busy}, recSpec{peer: "b", state: locked})
	_, r = ix.Match(req("demo"), t0, 1)
	if r == nil || r.Filter != FilterStandby || r.Detail != "2 containers indexed, none in standby and free" {
		t.Fatalf("refusal %v", r)
	}
	if !strings.HasPrefix(r.Error(), "indexer: no match (standby): ") || errors.Is(r, ErrBadRequest) {
		t.Fatalf("Error() = %q", r.Error())
	}
	_, r = ix.Match(&pb.MatchRequest{}, t0, 1)
	if !errors.Is(r, ErrBadRequest) {
		t.Fatalf("a bad request's refusal %v must unwrap to ErrBadRequest", r)
	}
}

func TestCalendar(t *testing.T) {
	start := t0.Add(24 * time.Hour)
	tests := []struct {
		name      string
		booking   [2]time.Duration // from start
		sessions  uint32
		wholesale bool
		free      bool
	}{
		// Wholesale window [start, start + 2 units).
		{"ends at the window's start", [2]time.Duration{-time.Hour, 0}, 2, true, true},
		{"ends a ms into the window", [2]time.Duration{-time.Hour, time.Millisecond}, 2, true, false},
		{"starts at the window's end", [2]time.Duration{2 * UnitLength, 3 * UnitLength}, 2, true, true},
		{"starts a ms before the window's end", [2]time.Duration{2*UnitLength - time.Millisecond, 3 * UnitLength}, 2, true, false},
		{"inside", [2]time.Duration{5 * time.Minute, 10 * time.Minute}, 2, true, false},
		{"covers it", [2]time.Duration{-time.Hour, time.Hour}, 2, true, false},
		{"0 sessions is one unit", [2]time.Duration{UnitLength, 2 * UnitLength}, 0, true, true},
		{"0 sessions is one unit, overlap", [2]time.Duration{UnitLength - time.Millisecond, 2 * UnitLength}, 0, true, false},
		// Retail window [now, now + units): the booking is placed relative to now.
		{"retail, booked later today", [2]time.Duration{-24*time.Hour + 2*UnitLength, -24*time.Hour + 3*UnitLength}, 2, false, true},
		{"retail, booked within the sessions", [2]time.Duration{-24*time.Hour + UnitLength, -24*time.Hour + 3*UnitLength}, 2, false, false},
		{"retail, a booking that ended", [2]time.Duration{-25 * time.Hour, -24 * time.Hour}, 2, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := NewIndex(Config{})
			put(ix, recSpec{peer: "a"})
			h := hb(2, standby)
			h.Bookings = []*pb.Booking{{StartUnixMs: start.Add(tt.booking[0]).UnixMilli(), EndUnixMs: start.Add(tt.booking[1]).UnixMilli()}}
			ix.Heartbeat("a", h, t0)
			r := req("demo")
			r.Sessions = tt.sessions
			if tt.wholesale {
				r.Mode, r.StartUnixMs = pb.ServiceMode_SERVICE_MODE_WHOLESALE, start.UnixMilli()
			}
			_, ref := ix.Match(r, t0, 1)
			if tt.free != (ref == nil) || (ref != nil && ref.Filter != FilterCalendar) {
				t.Fatalf("refusal %v, want free=%v", ref, tt.free)
			}
		})
	}
}

func TestRanking(t *testing.T) {
	ix := NewIndex(Config{})
	put(ix,
		recSpec{peer: "cheap-far", profile: "t4", fee: 100_000, at: [2]float64{40.4, -3.7}}, // Madrid
		recSpec{peer: "cheap-near", profile: "t4", fee: 100_000, at: paris},
		recSpec{peer: "fast", profile: "rtx4090", fee: 400_000, at: frankfurt},
		recSpec{peer: "fast-twin", profile: "rtx4090", fee: 400_000, at: frankfurt},
		recSpec{peer: "cpu", profile: "cpu", fee: 20_000, at: paris},
		recSpec{peer: "h100", profile: "h100", fee: 900_000, at: paris},
	)
	ix.Heartbeat("fast-twin", &pb.Heartbeat{Seq: 2, RecordSeq: 1, State: standby, LoadPermille: 500}, t0)
	from := loc("", paris)
	tests := []struct {
		ranking pb.Ranking
		limit   int
		want    []string
	}{
		{pb.Ranking_RANKING_FEE, 10, []string{"cpu", "cheap-near", "cheap-far", "fast", "fast-twin", "h100"}},
		{pb.Ranking_RANKING_FEE, 2, []string{"cpu", "cheap-near"}},
		// 4090 (1.1e6 - 2000*rtt), loaded twin (-100k), H100 (0.6e6), T4s (0.5e6), CPU (0.1e6).
		{pb.Ranking_RANKING_EXPERIENCE, 10, []string{"fast", "fast-twin", "h100", "cheap-near", "cheap-far", "cpu"}},
		{pb.Ranking_RANKING_EXPERIENCE, 1, []string{"fast"}},
		// I = .35 F + .35 X + .20 L + .10 Q with max price 900000 and L's scale 100 ms:
		// fast       .35*(1-4/9) + .35*1.1/1.25       + .2*(1-12/100) + .05 = .728444
		// fast-twin  .35*(1-4/9) + .35*(1.1-.1)/1.25  + .2*(1-12/100) + .05 = .700444
		// cheap-near .35*(1-1/9) + .35*.5/1.25        + .2*(1-5/100)  + .05 = .691111
		// cheap-far  .35*(1-1/9) + .35*.5/1.25        + .2*(1-21/100) + .05 = .659111
		// cpu        .35*(1-.2/9) + .35*.1/1.25       + .2*(1-5/100)  + .05 = .610222
		// h100       0            + .35*.6/1.25       + .2*(1-5/100)  + .05 = .408
		{pb.Ranking_RANKING_INDEX, 10, []string{"fast", "fast-twin", "cheap-near", "cheap-far", "cpu", "h100"}},
		{pb.Ranking_RANKING_UNSPECIFIED, 3, []string{"fast", "fast-twin", "cheap-near"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.ranking, tt.limit), func(t *testing.T) {
			r := req("demo")
			r.Ranking, r.Location, r.MaxLatencyMs = tt.ranking, from, 100
			c, ref := ix.Match(r, t0, tt.limit)
			if ref != nil || !slices.Equal(peers(c), tt.want) {
				for _, x := range c {
					t.Logf("%s price %d rtt %d score %d", x.Peer, x.PriceMicros, x.RTTms, x.Score)
				}
				t.Fatalf("order %v (refusal %v), want %v", peers(c), ref, tt.want)
			}
			for i := 1; i < len(c); i++ {
				if tt.ranking != pb.Ranking_RANKING_FEE && c[i-1].Score < c[i].Score {
					t.Fatalf("scores not descending: %v", c)
				}
			}
		})
	}
}

func TestEvaluationIndexFormula(t *testing.T) {
	// F = 1 - 50/100 = 0.5; X = (1.1e6 - 200*250)/1.25e6 = 0.84; L = 1 - 50/200 = 0.75; Q = 0.5.
	// I = 0.35*0.5 + 0.35*0.84 + 0.2*0.75 + 0.1*0.5 = 0.669.
	c := cand{price: 50, hw: 1_100_000, load: 250, rtt: 50, quality: 500_000}
	if got := evaluationIndex(&c, 100, 200); got != 669_000 {
		t.Fatalf("I = %d, want 669000", got)
	}
	// Free everywhere: F = 1; beyond the scale: L = 0; a negative hardware term clamps to 0.
	c = cand{price: 0, hw: 100_000, load: 1000, rtt: 999, quality: PPM}
	if got := evaluationIndex(&c, 0, 250); got != 350_000+100_000 {
		t.Fatalf("I = %d, want 450000", got)
	}
	if got := experienceScore(1_000_000, 10, 100); got != 1_000_000-20_000-20_000 {
		t.Fatalf("experience = %d", got)
	}
}

func TestHardwareClass(t *testing.T) {
	gpu := func(m string, enc bool) gpuInfo { return gpuInfo{model: m, encoder: enc} }
	tests := []struct {
		gpus []gpuInfo
		want int64
	}{
		{nil, CPUClass},
		{[]gpuInfo{gpu("H100", false)}, 600_000},
		{[]gpuInfo{gpu("RTX4090", true)}, 1_100_000},
		{[]gpuInfo{gpu("H100", false), gpu("H100", false)}, 630_000},
		{slices.Repeat([]gpuInfo{gpu("T4", true)}, 8), 400_000*115/100 + EncoderBonus},
		{[]gpuInfo{gpu("T4", true), gpu("L40S", false)}, 950_000 + EncoderBonus},
		{[]gpuInfo{gpu("B200", false)}, UnknownGPUClass},
	}
	for _, tt := range tests {
		enc := slices.ContainsFunc(tt.gpus, func(g gpuInfo) bool { return g.encoder })
		if got := hardwareClass(tt.gpus, enc); got != tt.want {
			t.Errorf("hardwareClass(%v) = %d, want %d", tt.gpus, got, tt.want)
		}
	}
	// Every simulated profile has a row in the table.
	for _, p := range container.Profiles() {
		for _, g := range p.GPUs {
			if _, ok := experienceClass[g.Model]; !ok {
				t.Errorf("profile %s: GPU model %s has no experience class", p.Name, g.Model)
			}
		}
	}
}

func TestRetailPriceFollowsRegion(t *testing.T) {
	ix := NewIndex(Config{})
	put(ix, recSpec{peer: "a", fee: 100_000}, recSpec{peer: "b", fee: 100_000}, recSpec{peer: "c", fee: 100_000},
		recSpec{peer: "d", fee: 100_000, region: "us-east", at: virginia})
	ix.Heartbeat("a", hb(2, busy), t0)
	ix.Hold("b", t0, t0.Add(time.Hour))
	ix.SampleDemandAt(t0) // eu-west 2/3 used, us-east 0
	ix.RollEpoch(7)
	// m = 1 + 2 * (0.666666 - 0.5) = 1.333332x
	c, r := ix.Match(req("demo"), t0, 5)
	if r != nil || len(c) != 2 {
		t.Fatalf("%v %v", peers(c), r)
	}
	for _, x := range c {
		want := map[string]uint64{"c": 133_333, "d": 100_000}[x.Peer]
		if x.PriceMicros != want {
			t.Errorf("%s: price %d, want %d", x.Peer, x.PriceMicros, want)
		}
	}
	// Wholesale is the ask, without surge; the heartbeat's ask overrides the record's.
	h := hb(2, standby)
	h.SessionFeeMicros = 90_000
	ix.Heartbeat("c", h, t0)
	r2 := req("demo")
	r2.Mode, r2.StartUnixMs, r2.Hardware = pb.ServiceMode_SERVICE_MODE_WHOLESALE, t0.Add(time.Hour).UnixMilli(), nil
	c, _ = ix.Match(r2, t0, 5)
	if got := map[string]uint64{c[0].Peer: c[0].PriceMicros, c[1].Peer: c[1].PriceMicros}; got["c"] != 90_000 {
		t.Errorf("wholesale prices %v, want c at its heartbeat's ask 90000", got)
	}
	if st := ix.RegionsAt(t0)["eu-west"]; st.MultiplierPPM != 1_333_332 {
		t.Errorf("eu-west multiplier %d", st.MultiplierPPM)
	}
}

// --- The property test: Match against a naive reference. ---

// shadow is what the reference knows: every event the index was given, applied by the spec.
type shadow struct {
	recs  map[string]*pb.ContainerRecord
	hbs   map[string]*pb.Heartbeat
	state map[string]pb.ContainerState
	seen  map[string]time.Time
	hold  map[string]time.Time
	held  map[string]time.Time // when the hold was placed
	qual  map[string]uint32
}

func newShadow() *shadow {
	return &shadow{recs: map[string]*pb.ContainerRecord{}, hbs: map[string]*pb.Heartbeat{},
		state: map[string]pb.ContainerState{}, seen: map[string]time.Time{}, hold: map[string]time.Time{}, held: map[string]time.Time{}, qual: map[string]uint32{}}
}

func (s *shadow) known(p string) bool { _, r := s.recs[p]; _, h := s.hbs[p]; return r || h }

func (s *shadow) putRecord(p string, r *pb.ContainerRecord, now time.Time) {
	old := s.recs[p]
	if old != nil && r.Seq <= old.Seq {
		return
	}
	if !s.known(p) {
		s.seen[p] = now
		s.qual[p] = DefaultQualityPPM
	}
	s.recs[p] = r
	if h := s.hbs[p]; h == nil || r.Seq > h.RecordSeq {
		s.state[p] = r.State
	}
}

func (s *shadow) heartbeat(p string, h *pb.Heartbeat, now time.Time) {
	if !s.known(p) {
		s.qual[p] = DefaultQualityPPM
	}
	if old := s.hbs[p]; old != nil && h.Seq <= old.Seq {
		return
	}
	s.hbs[p] = h
	s.state[p] = h.State
	if u, ok := s.hold[p]; ok && !u.IsZero() && h.SentUnixMs > s.held[p].UnixMilli() {
		delete(s.hold, p) // a heartbeat newer than the hold releases it
	}
	if now.After(s.seen[p]) {
		s.seen[p] = now
	}
}

func (s *shadow) remove(p string) {
	delete(s.recs, p)
	delete(s.hbs, p)
	delete(s.state, p)
	delete(s.seen, p)
	delete(s.hold, p)
	delete(s.held, p)
	delete(s.qual, p)
}

// refMatch is the reference: every filter on every container, a full sort, the first limit.
func refMatch(s *shadow, mult map[string]uint32, r *pb.MatchRequest, now time.Time, limit int) ([]Candidate, [6]int, string) {
	var surv [6]int
	if ValidateRequest(r) != nil {
		return nil, surv, FilterBadRequest
	}
	nowMs := now.UnixMilli()
	wholesale := r.Mode == pb.ServiceMode_SERVICE_MODE_WHOLESALE
	ws := nowMs
	if wholesale {
		ws = r.StartUnixMs
		if ws < nowMs-ClockSkew.Milliseconds() {
			return nil, surv, FilterBadRequest
		}
	}
	we := ws + int64(max(r.Sessions, 1))*UnitLength.Milliseconds()
	measured := map[string]uint32{}
	for _, m := range r.Rtts {
		if old, ok := measured[string(m.PeerId)]; !ok || m.RttMs < old {
			measured[string(m.PeerId)] = m.RttMs
		}
	}
	type refCand struct {
		cand
		peer string
		rec  *pb.ContainerRecord
	}
	var cands []refCand
	total := 0
	for p, rec := range s.recs {
		total++
		h := s.hbs[p]
		st := s.state[p]
		reserved := h.GetReservedUntilUnixMs()
		// Standby.
		ok := s.hold[p].UnixMilli() <= nowMs
		if wholesale {
			ok = ok && (st == standby || st == busy)
		} else {
			ok = ok && st == standby && reserved <= nowMs
		}
		if !ok {
			continue
		}
		surv[0]++
		if !slices.Contains(rec.Apps, r.App) {
			continue
		}
		surv[1]++
		if !refHardware(rec.Hardware, r.Hardware) {
			continue
		}
		surv[2]++
		rtt, known := measured[string(rec.PeerId)]
		if !known {
			rtt, known = EstimateRTT(r.Location, rec.Location)
		}
		if !known {
			rtt = UnknownRTTms
		}
		if r.MaxLatencyMs > 0 && (!known || rtt > r.MaxLatencyMs) {
			continue
		}
		surv[3]++
		ask := rec.SessionFeeMicros
		if h.GetSessionFeeMicros() > 0 {
			ask = h.GetSessionFeeMicros()
		}
		price := ask
		if !wholesale {
			m, ok := mult[rec.Location.GetRegion()]
			if !ok {
				m = PPM
			}
			price = RetailPrice(ask, m)
		}
		if r.BudgetMicros > 0 && price > r.BudgetMicros {
			continue
		}
		surv[4]++
		free := !(wholesale && reserved > ws)
		for _, b := range h.GetBookings() {
			if b.EndUnixMs > b.StartUnixMs && b.StartUnixMs < we && b.EndUnixMs > ws {
				free = false
			}
		}
		if !free {
			continue
		}
		surv[5]++
		var gpus []gpuInfo
		for _, g := range rec.Hardware.GetGpus() {
			gpus = append(gpus, gpuInfo{model: g.Model, memory: g.MemoryBytes, encoder: g.Encoder})
		}
		enc := slices.ContainsFunc(gpus, func(g gpuInfo) bool { return g.encoder })
		cands = append(cands, refCand{cand{price: price, rtt: rtt, hw: hardwareClass(gpus, enc),
			load: min(h.GetLoadPermille(), 1000), quality: s.qual[p]}, p, rec})
	}
	if len(cands) == 0 {
		if total == 0 {
			return nil, surv, FilterNone
		}
		for i, n := range surv {
			if n == 0 {
				return nil, surv, stageFilters[i]
			}
		}
	}
	var maxPrice uint64
	for _, c := range cands {
		maxPrice = max(maxPrice, c.price)
	}
	scale := r.MaxLatencyMs
	if scale == 0 {
		scale = UnknownRTTms
	}
	for i := range cands {
		c := &cands[i]
		switch r.Ranking {
		case pb.Ranking_RANKING_FEE:
			c.score = -int64(c.price)
		case pb.Ranking_RANKING_EXPERIENCE:
			c.score = experienceScore(c.hw, c.rtt, c.load)
		default:
			c.score = evaluationIndex(&c.cand, maxPrice, scale)
		}
	}
	slices.SortFunc(cands, func(a, b refCand) int {
		if r.Ranking == pb.Ranking_RANKING_FEE {
			return cmp.Or(cmp.Compare(a.price, b.price), cmp.Compare(a.rtt, b.rtt), strings.Compare(a.peer, b.peer))
		}
		return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(a.price, b.price), cmp.Compare(a.rtt, b.rtt), strings.Compare(a.peer, b.peer))
	})
	out := []Candidate{}
	for _, c := range cands[:min(len(cands), max(limit, 1))] {
		out = append(out, Candidate{Peer: c.peer, Record: c.rec, PriceMicros: c.price, RTTms: c.rtt, Score: c.score})
	}
	return out, surv, ""
}

func refHardware(hw *pb.Hardware, want *pb.HardwareRequirement) bool {
	if hw.GetCpuCores() < want.GetMinCpuCores() || hw.GetMemoryBytes() < want.GetMinMemoryBytes() {
		return false
	}
	if want.GetEncoder() && !slices.ContainsFunc(hw.GetGpus(), (*pb.GPU).GetEncoder) {
		return false
	}
	model, n := want.GetGpuModel(), want.GetMinGpus()
	switch {
	case strings.EqualFold(model, "none"):
		return true
	case model == "" && n == 0 && want.GetMinGpuMemoryBytes() == 0:
		return true
	}
	var have uint32
	for _, g := range hw.GetGpus() {
		if (model == "" || g.Model == container.NormalizeModel(model)) && g.MemoryBytes >= want.GetMinGpuMemoryBytes() {
			have++
		}
	}
	return have >= max(n, 1)
}

// randomRequest draws a realistic request, sometimes an impossible one.
func randomRequest(r *rand.Rand, apps []string, peers []string, now time.Time) *pb.MatchRequest {
	q := &pb.MatchRequest{RequestId: make([]byte, 16), App: apps[min(int(r.ExpFloat64()*3), len(apps)-1)]}
	if r.IntN(30) == 0 {
		q.App = "nobody-runs-this"
	}
	if r.IntN(2) == 0 {
		reg := worldRegions[r.IntN(len(worldRegions))]
		at := [2]float64{reg.at[0] + r.NormFloat64()*4, reg.at[1] + r.NormFloat64()*5}
		q.Location = loc("", [2]float64{min(max(at[0], -89), 89), at[1]})
		if r.IntN(4) == 0 {
			q.Location = &pb.Location{Geohash: q.Location.Geohash[:1+r.IntN(6)]}
		}
		if r.IntN(3) > 0 {
			q.MaxLatencyMs = uint32(5 + r.IntN(150))
		}
	}
	if r.IntN(2) == 0 {
		hw := &pb.HardwareRequirement{}
		switch r.IntN(4) {
		case 0:
			hw.GpuModel = []string{"H100", "a100", "L40S", "rtx 4090", "RTX3080", "t4", "none", "B200"}[r.IntN(8)]
		case 1:
			hw.MinGpus = uint32(r.IntN(4))
		}
		if hw.GpuModel != "none" && r.IntN(4) == 0 {
			hw.MinGpuMemoryBytes = uint64(r.IntN(80)) << 30
		}
		hw.Encoder = r.IntN(5) == 0
		if r.IntN(5) == 0 {
			hw.MinCpuCores = uint32(r.IntN(32))
		}
		if r.IntN(5) == 0 {
			hw.MinMemoryBytes = uint64(r.IntN(256)) << 30
		}
		q.Hardware = hw
	}
	if r.IntN(3) == 0 {
		q.BudgetMicros = uint64(50_000 + r.IntN(600_000))
	}
	q.Ranking = pb.Ranking(r.IntN(4))
	q.Sessions = uint32(r.IntN(9))
	if r.IntN(4) == 0 {
		q.Mode = pb.ServiceMode_SERVICE_MODE_WHOLESALE
		q.StartUnixMs = now.Add(time.Duration(r.IntN(10*60)-1) * time.Minute).UnixMilli()
	} else if r.IntN(2) == 0 {
		q.Mode = pb.ServiceMode_SERVICE_MODE_RETAIL
	}
	for range r.IntN(5) {
		if len(peers) > 0 {
			q.Rtts = append(q.Rtts, &pb.MeasuredRTT{PeerId: []byte("id-" + peers[r.IntN(len(peers))]), RttMs: uint32(r.IntN(200))})
		}
	}
	return q
}

func TestMatchAgainstReference(t *testing.T) {
	rounds := 300
	if testing.Short() {
		rounds = 40
	}
	apps := worldApps(8)
	outcomes := map[string]int{} // how the requests ended: the test must exercise every path
	for round := range rounds {
		r := rand.New(rand.NewPCG(uint64(round), 42))
		ix := NewIndex(Config{Stale: 15 * time.Second})
		s := newShadow()
		now := t0
		regions := worldRegions[:1+r.IntN(len(worldRegions))]
		n := r.IntN(250)
		var names []string
		for i := range n {
			names = append(names, fmt.Sprintf("peer-%03d", i))
		}
		// A stream of events, the way gossip delivers them: records and heartbeats in any order,
		// repeats, holds, quality scores, removals, expiry and demand samples.
		for range 4 * n {
			if len(names) == 0 {
				break
			}
			p := names[r.IntN(len(names))]
			switch x := r.IntN(100); {
			case x < 35:
				rec := randomRecord(r, p, uint64(1+r.IntN(4)), regions, apps, worldProfiles)
				ix.PutRecord(p, rec, now)
				s.putRecord(p, rec, now)
			case x < 80:
				h := randomHeartbeat(r, uint64(1+r.IntN(6)), uint64(r.IntN(4)), now)
				ix.Heartbeat(p, h, now)
				s.heartbeat(p, h, now)
			case x < 85:
				until := now.Add(time.Duration(r.IntN(60)-20) * time.Second)
				ix.Hold(p, now, until)
				if s.known(p) {
					s.hold[p], s.held[p] = until, now
				}
			case x < 88:
				q := uint32(r.IntN(PPM + 1))
				ix.SetQuality(p, q)
				if s.known(p) {
					s.qual[p] = q
				}
			case x < 90:
				ix.Remove(p)
				s.remove(p)
			case x < 93:
				ix.SampleDemandAt(now)
			case x < 94:
				ix.RollEpoch(uint64(round*100 + x))
			default:
				now = now.Add(time.Duration(r.IntN(3000)) * time.Millisecond)
			}
		}
		if round%7 == 0 { // a full network: everything busy but a few
			for _, p := range names {
				h := &pb.Heartbeat{Seq: 100, RecordSeq: 1, State: busy}
				if r.IntN(50) == 0 {
					h.State = standby
				}
				ix.Heartbeat(p, h, now)
				s.heartbeat(p, h, now)
			}
		}
		if r.IntN(3) == 0 {
			ix.Expire(now)
			for p, seen := range s.seen {
				if seen.Before(now.Add(-15 * time.Second)) {
					s.remove(p)
				}
			}
		}
		checkInvariants(t, ix)
		mult := map[string]uint32{}
		for region, st := range ix.RegionsAt(now) {
			mult[region] = st.MultiplierPPM
		}
		for range 60 {
			q := randomRequest(r, apps, names, now)
			limit := 1 + r.IntN(8)
			got, st, ref := ix.MatchWithStats(q, now, limit)
			want, surv, filter := refMatch(s, mult, q, now, limit)
			// Passes agrees with the reference about single containers, whatever their rank.
			if len(names) > 0 {
				all, _, _ := refMatch(s, mult, q, now, len(names)+1)
				for range 3 {
					p := names[r.IntN(len(names))]
					if got, want := ix.Passes(q, now, p), slices.Contains(peers(all), p); got != want {
						t.Fatalf("round %d: Passes(%s) = %v, the reference says %v", round, p, got, want)
					}
				}
			}
			outcomes[cmp.Or(filter, "matched")]++
			if st.ShardsPruned > 0 {
				outcomes["pruned"]++
			}
			if filter == "" && st.ShardsPruned > 0 && len(q.Rtts) > 0 {
				outcomes["pruned, measured"]++
			}
			if filter != "" {
				if ref == nil || ref.Filter != filter || (filter != FilterBadRequest && st.Survivors != surv) {
					t.Fatalf("round %d: request %v\nrefusal %v %v, want %s %v", round, q, ref, st.Survivors, filter, surv)
				}
				continue
			}
			if ref != nil {
				t.Fatalf("round %d: request %v\nrefused %v, want %v", round, q, ref, want)
			}
			if len(got) != len(want) {
				t.Fatalf("round %d: request %v\n%d candidates, want %d", round, q, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("round %d: request %v\ncandidate %d: %+v, want %+v", round, q, i, got[i], want[i])
				}
			}
		}
	}
	t.Logf("outcomes: %v", outcomes)
	for _, o := range append(stageFilters[:], FilterNone, FilterBadRequest, "matched", "pruned", "pruned, measured") {
		if outcomes[o] == 0 {
			t.Errorf("no request ended %q: the generator misses a path", o)
		}
	}
}
