package indexer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// The benchmarks' network: containers over six regions, 20 apps of skewed popularity, five GPU
// models and CPU-only machines, realistic live state (about 15% busy, 10% leased, some booked).
var benchProfiles = []string{"h100", "l40s", "rtx4090", "rtx3080", "t4", "cpu"}

type benchWorld struct {
	ix    *Index
	names []string
	apps  []string
}

var (
	worldsMu sync.Mutex
	worlds   = map[int]*benchWorld{}
)

func world(b *testing.B, n int) *benchWorld {
	b.Helper()
	worldsMu.Lock()
	defer worldsMu.Unlock()
	if w := worlds[n]; w != nil {
		return w
	}
	r := rand.New(rand.NewPCG(uint64(n), 7))
	w := &benchWorld{ix: NewIndex(Config{}), apps: worldApps(20)}
	for i := range n {
		p := fmt.Sprintf("peer-%06d", i)
		w.names = append(w.names, p)
		w.ix.PutRecord(p, randomRecord(r, p, 1, worldRegions, w.apps, benchProfiles), t0)
		w.ix.Heartbeat(p, randomHeartbeat(r, 1, 1, t0), t0)
	}
	worlds[n] = w
	return w
}

// benchRequests draws realistic requests: mostly satisfiable, near a region, often with a latency
// limit, sometimes a GPU model, a budget or measured round trips.
func benchRequests(w *benchWorld, n int) []*pb.MatchRequest {
	r := rand.New(rand.NewPCG(99, 1))
	out := make([]*pb.MatchRequest, n)
	models := []string{"H100", "L40S", "RTX4090", "RTX3080", "T4"}
	for i := range out {
		q := &pb.MatchRequest{RequestId: make([]byte, 16), App: w.apps[min(int(r.ExpFloat64()*4), len(w.apps)-1)]}
		reg := worldRegions[r.IntN(len(worldRegions))]
		q.Location = loc("", [2]float64{reg.at[0] + r.NormFloat64()*3, reg.at[1] + r.NormFloat64()*4})
		if r.IntN(10) < 6 {
			q.MaxLatencyMs = uint32(30 + r.IntN(120))
		}
		if r.IntN(10) < 4 {
			q.Hardware = &pb.HardwareRequirement{GpuModel: models[r.IntN(len(models))]}
		}
		if r.IntN(10) < 3 {
			q.BudgetMicros = uint64(300_000 + r.IntN(600_000))
		}
		q.Ranking = pb.Ranking(r.IntN(4))
		q.Sessions = uint32(1 + r.IntN(8))
		if r.IntN(100) < 15 {
			q.Mode, q.StartUnixMs = pb.ServiceMode_SERVICE_MODE_WHOLESALE, t0.Add(time.Duration(1+r.IntN(48))*time.Hour).UnixMilli()
		}
		for range r.IntN(4) {
			q.Rtts = append(q.Rtts, &pb.MeasuredRTT{PeerId: []byte("id-" + w.names[r.IntN(len(w.names))]), RttMs: uint32(5 + r.IntN(100))})
		}
		out[i] = q
	}
	return out
}

// benchMatch times every Match and reports the 99th percentile and the rate besides ns/op.
func benchMatch(b *testing.B, n int, reqs []*pb.MatchRequest) {
	w := world(b, n)
	if reqs == nil {
		reqs = benchRequests(w, 4096)
	}
	var refused int
	durs := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		_, ref := w.ix.Match(reqs[i%len(reqs)], t0, 5)
		durs[i] = time.Since(start)
		if ref != nil {
			refused++
		}
	}
	b.StopTimer()
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "matches/s")
	b.ReportMetric(float64(refused)/float64(b.N), "refused/op")
}

func BenchmarkMatch10k(b *testing.B)  { benchMatch(b, 10_000, nil) }
func BenchmarkMatch100k(b *testing.B) { benchMatch(b, 100_000, nil) }

// BenchmarkMatchRefusal10k: requests nothing satisfies (an H100 within 10 ms of the mid-Atlantic),
// the worst case: the refusal path evaluates and counts every container.
func BenchmarkMatchRefusal10k(b *testing.B) {
	q := &pb.MatchRequest{RequestId: make([]byte, 16), App: "app-00", Location: loc("", [2]float64{40, -40}),
		MaxLatencyMs: 10, Hardware: &pb.HardwareRequirement{GpuModel: "H100"}}
	benchMatch(b, 10_000, []*pb.MatchRequest{q})
}

// BenchmarkMatchParallel: matches from every core at once on the 10k index.
func BenchmarkMatchParallel(b *testing.B) {
	w := world(b, 10_000)
	reqs := benchRequests(w, 4096)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1000))
		for pb.Next() {
			w.ix.Match(reqs[i%len(reqs)], t0, 5)
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "matches/s")
}

// BenchmarkHeartbeat: the index's cost of one heartbeat on the 100k index.
func BenchmarkHeartbeat(b *testing.B) {
	w := world(b, 100_000)
	r := rand.New(rand.NewPCG(5, 5))
	hbs := make([]*pb.Heartbeat, 4096)
	for i := range hbs {
		hbs[i] = randomHeartbeat(r, 0, 1, t0)
	}
	seq := uint64(1 << 40) // above every earlier heartbeat's
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h := hbs[i%len(hbs)]
		seq++
		h.Seq = seq
		w.ix.Heartbeat(w.names[i%len(w.names)], h, t0)
	}
}
