package indexer

import (
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

var (
	fuzzIndexOnce sync.Once
	fuzzIndex     *Index
)

// fuzzIdx is a small fixed index: one container of each profile in three regions, some busy,
// held, leased or booked.
func fuzzIdx() *Index {
	fuzzIndexOnce.Do(func() {
		ix := NewIndex(Config{})
		i := 0
		for _, reg := range worldRegions[2:5] {
			for _, p := range worldProfiles {
				peer := reg.name + "-" + p
				put(ix, recSpec{peer: peer, region: reg.name, at: reg.at, profile: p, gpus: 1 + i%3,
					apps: []string{"demo", worldApps(4)[i%4]}, fee: uint64(50_000 * (1 + i%5))})
				switch i % 5 {
				case 1:
					ix.Heartbeat(peer, hb(2, busy), t0)
				case 2:
					ix.Hold(peer, t0, t0.Add(time.Minute))
				case 3:
					h := hb(2, standby)
					h.Bookings = []*pb.Booking{{StartUnixMs: t0.Add(time.Hour).UnixMilli(), EndUnixMs: t0.Add(3 * time.Hour).UnixMilli()}}
					ix.Heartbeat(peer, h, t0)
				}
				i++
			}
		}
		fuzzIndex = ix
	})
	return fuzzIndex
}

// FuzzMatchRequest: whatever bytes arrive, a request that decodes, fits and validates is matched
// without panicking, and the answer is candidates or a refusal, never both or neither.
func FuzzMatchRequest(f *testing.F) {
	seeds := []*pb.MatchRequest{
		req("demo"),
		{RequestId: make([]byte, 16), App: "app-01", Ranking: pb.Ranking_RANKING_FEE, BudgetMicros: 120_000},
		{RequestId: make([]byte, 16), App: "demo", Location: loc("", paris), MaxLatencyMs: 30,
			Hardware: &pb.HardwareRequirement{GpuModel: "rtx4090", MinGpus: 2, Encoder: true}, Ranking: pb.Ranking_RANKING_EXPERIENCE},
		{RequestId: make([]byte, 16), App: "demo", Mode: pb.ServiceMode_SERVICE_MODE_WHOLESALE,
			StartUnixMs: t0.Add(2 * time.Hour).UnixMilli(), Sessions: 8},
		{RequestId: make([]byte, 16), App: "demo", Location: &pb.Location{Geohash: "xn7"}, MaxLatencyMs: 200,
			Rtts: []*pb.MeasuredRTT{{PeerId: []byte("id-us-east-h100"), RttMs: 12}}, Hardware: &pb.HardwareRequirement{GpuModel: "none"}},
		{RequestId: make([]byte, 16), App: "demo", Hardware: &pb.HardwareRequirement{MinGpuMemoryBytes: 40 << 30, MinCpuCores: 16}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, limit uint8) {
		if len(data) > MaxRequestSize {
			return
		}
		r := new(pb.MatchRequest)
		if proto.Unmarshal(data, r) != nil || ValidateRequest(r) != nil {
			return
		}
		c, ref := fuzzIdx().Match(r, t0, int(limit))
		if (len(c) == 0) == (ref == nil) {
			t.Fatalf("candidates %v, refusal %v: want exactly one", peers(c), ref)
		}
		if len(c) > max(int(limit), 1) {
			t.Fatalf("%d candidates over the limit %d", len(c), limit)
		}
		for _, x := range c {
			if !slices.Contains(x.Record.Apps, r.App) {
				t.Fatalf("%s does not run %s", x.Peer, r.App)
			}
		}
	})
}
