package simnet

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
	"gonum.org/v1/plot/plotter"
)

// syntheticReport is a run of 1,000 peers through a partition and its heal, with nQuery query
// latencies (log-normal, so their CDF needs a log axis) and a few NaN and ±Inf among the gossip
// latencies.
func syntheticReport(nQuery int) *Report {
	rng := rand.New(rand.NewPCG(1, 2))
	r := &Report{
		Summary: Summary{
			Peers: 1000, Seed: 42, Scenario: "partition-heal", Links: "quic-simnet",
			SimSeconds: 600, WallSeconds: 83.4, PeakRSSBytes: 3_400 << 20,
			Containers: 250, Attackers: 20, Joins: 40, Leaves: 35,
			Queries: nQuery, QuerySuccessRatio: 0.9731, QueryMsP50: 41.2, QueryMsP99: 512.7,
			QueryHopsP50: 3, QueryHopsP99: 6, QuerySuccessMinWindow: 0.412, QueryRecoverySeconds: 18.5,
			Propagations: 300, PropagationMsP50: 480, PropagationMsP99: 880,
			GossipPublished: 12_000, GossipExpected: 480_000, GossipDelivered: 471_230,
			GossipDeliveryRatio: 0.98173, GossipMsP50: 118, GossipMsP99: 171,
			FloodSent: 90_000, FloodRejected: 88_100, AttackerScoreMean: -212.5, HonestScoreMean: 3.4,
			AttackersGraylisted: 0.95, HeapBytesPerPeer: 1_650_000, LiveHeapBytesPerPeer: 700_000, StackBytesPerPeer: 330_000, GoroutinesPerPeer: 41.3,
			Matches: 400, MatchSuccessRatio: 0.995, MatchMsP50: 180.5, MatchMsP99: 720, MatchRTTRatioP50: 2.1,
			MatchRefused: map[string]int{"reservation": 2}, Sessions: 398, SessionReceipts: 1200,
			Checkers: 10, Attestations: 90, Cheaters: 3, CheatersCaught: 3, FalsePositives: 1,
			FalsePositiveChecks: map[string]int{"unanswered": 2},
			UtilizationByRegion: map[string]float64{"eu-west": 0.25, "us-east": 0.125},
			TraceSHA256:         "9f2c1e0d4b5a69788766554433221100ffeeddccbbaa99887766554433221100",
		},
		Description:   "Cut the network in two at 200 s, <script>alert(1)</script> & heal at 320 s.\nSecond line.",
		WindowSeconds: 10,
		Marks: []Mark{
			{T: 320, Label: "heal"},
			{T: 200, Label: "partition"},
			{T: 450, Label: "<b>flood</b> & more"},
			{T: math.NaN(), Label: "lost"},
		},
	}
	r.QueryLatencies = make([]float64, nQuery)
	for i := range r.QueryLatencies {
		r.QueryLatencies[i] = math.Exp(math.Log(40) + 0.8*rng.NormFloat64())
	}
	for i, ms := range r.QueryLatencies {
		t := 600 * float64(i) / float64(nQuery)
		ok := !(t >= 200 && t < 320 && i%2 == 0)
		if !ok {
			ms = 10_000
		}
		r.Queries = append(r.Queries, QueryPoint{T: t, Ms: ms, OK: ok})
	}
	if nQuery > 3 {
		r.Queries[3].T = math.NaN()
	}
	r.GossipLatencies = make([]float64, 5000)
	for i := range r.GossipLatencies {
		r.GossipLatencies[i] = math.Round(120 + 15*rng.NormFloat64())
	}
	r.GossipLatencies[7], r.GossipLatencies[8], r.GossipLatencies[9] = math.NaN(), math.Inf(1), math.Inf(-1)
	r.MatchLatencies = make([]float64, 398)
	for i := range r.MatchLatencies {
		r.MatchLatencies[i] = 100 + 300*rng.Float64()
	}
	r.Propagations = make([]float64, 300)
	for i := range r.Propagations {
		r.Propagations[i] = 200 + 700*rng.Float64()
	}
	for t := 0.0; t < 600; t += r.WindowSeconds {
		w := Window{Start: t, Queries: 100 + rng.IntN(20), GossipExpected: 8000}
		ok, deliv := 0.999, 0.995
		if t >= 200 && t < 320 {
			ok, deliv = 0.45+0.1*rng.Float64(), 0.55
		}
		w.QueriesOK = int(math.Round(ok * float64(w.Queries)))
		w.GossipDelivered = int(deliv * float64(w.GossipExpected))
		if t == 100 {
			w.Queries, w.QueriesOK, w.GossipExpected, w.GossipDelivered = 0, 0, 0, 0 // nothing to count
		}
		r.Windows = append(r.Windows, w)
	}
	for t := 0.0; t <= 600; t += 5 {
		online := 1000
		if t > 100 {
			online = 1000 - int(t-100)/20
		}
		r.Samples = append(r.Samples, Sample{
			T: t, Online: online, Goroutines: 41 * online,
			RSSBytes:      uint64(800+4*t) << 20,
			HeapBytes:     uint64(500+3*t) << 20,
			LiveHeapBytes: uint64(200+t) << 20,
			StackBytes:    uint64(100+t/2) << 20,
		})
	}
	return r
}

// floatsIdentical compares bit for bit, so NaN equals NaN.
func floatsIdentical(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) })
}

func TestReportHTML(t *testing.T) {
	r := syntheticReport(1_000_000)
	query, gossip, props := slices.Clone(r.QueryLatencies), slices.Clone(r.GossipLatencies), slices.Clone(r.Propagations)
	windows, samples, marks := slices.Clone(r.Windows), slices.Clone(r.Samples), slices.Clone(r.Marks)

	var buf bytes.Buffer
	if err := WriteHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if p := os.Getenv("RENDERMESH_REPORT_EXAMPLE"); p != "" {
		path := filepath.Join(os.TempDir(), "report-example.html")
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", path, buf.Len())
	}

	if !floatsIdentical(query, r.QueryLatencies) || !floatsIdentical(gossip, r.GossipLatencies) ||
		!floatsIdentical(props, r.Propagations) {
		t.Error("WriteHTML changed the caller's latency slices")
	}
	if !slices.Equal(windows, r.Windows) || !slices.Equal(samples, r.Samples) ||
		!slices.EqualFunc(marks, r.Marks, func(a, b Mark) bool {
			return a.Label == b.Label && math.Float64bits(a.T) == math.Float64bits(b.T)
		}) {
		t.Error("WriteHTML changed the caller's windows, samples or marks")
	}

	for _, want := range []string{
		"<title>rendermesh simnet — partition-heal</title>",
		"&lt;script&gt;alert(1)&lt;/script&gt; &amp; heal",
		"&lt;b&gt;flood&lt;/b&gt; &amp; more", // a mark label, escaped by vgsvg
		"97.31 %", "513 ms", "3,400 MiB", "attackers graylisted", "9f2c1e0d4b5a6978",
		"n = 1,000,000", "log x", "linear x", "3 non-finite values left out",
		"Match latency", "refused: reservation", "busy: eu-west", "12.50 %",
		"false positive: unanswered", "live heap per peer", "goroutine stacks per peer",
		"Query latency over time", "999,999 queries · 100,000 failed", "1 non-finite value left out", "thinned to",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out, "<script") || strings.Contains(out, "<b>flood") {
		t.Error("report carries unescaped markup from the scenario")
	}
	if strings.Contains(out, "no data") {
		t.Error("a plot with data says no data")
	}
	if len(out) > 2<<20 {
		t.Errorf("report is %d bytes; the CDFs are not thinned", len(out))
	}

	// The page parses as HTML with eight inline SVGs (seven, and the match latency CDF) and no script,
	// and each SVG is well-formed XML.
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode {
			count[n.Data]++
		}
	}
	if count["svg"] != 8 || count["script"] != 0 || count["figure"] != 8 || count["table"] == 0 {
		t.Errorf("elements: %d svg, %d script, %d figure, %d table", count["svg"], count["script"], count["figure"], count["table"])
	}
	for rest := out; ; {
		i := strings.Index(rest, "<svg")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], "</svg>")
		if j < 0 {
			t.Fatal("unterminated <svg>")
		}
		d := xml.NewDecoder(strings.NewReader(rest[i : i+j+len("</svg>")]))
		for {
			if _, err := d.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("SVG is not well-formed XML: %v", err)
			}
		}
		rest = rest[i+j:]
	}
}

func TestReportHTMLEmptyAndNil(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHTML(&buf, &Report{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if n := strings.Count(out, `<p class="nodata">no data</p>`); n != 7 {
		t.Errorf("%d plots say no data, want 7", n)
	}
	if strings.Contains(out, "<svg") || !strings.Contains(out, "unnamed scenario") {
		t.Error("an empty report draws plots, or names no scenario")
	}

	// Only non-finite values, and windows with nothing to count, are no data too.
	r := &Report{
		QueryLatencies: []float64{math.NaN()},
		Queries:        []QueryPoint{{T: math.NaN(), Ms: 5}, {T: 3, Ms: math.Inf(1)}},
		Windows:        []Window{{Start: 0}, {Start: 10}},
		Marks:          []Mark{{T: 5, Label: "cut"}},
	}
	buf.Reset()
	if err := WriteHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "no data"); n != 7 {
		t.Errorf("%d plots say no data, want 7", n)
	}

	if err := WriteHTML(&buf, nil); err == nil {
		t.Error("WriteHTML(nil) did not fail")
	}
	if err := WriteHTML(failingWriter{}, syntheticReport(10)); err == nil {
		t.Error("WriteHTML hid the writer's error")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// Equal reports give equal pages, also when written at the same time.
func TestReportHTMLDeterministic(t *testing.T) {
	var bufs [3]bytes.Buffer
	errs := make(chan error, len(bufs))
	for i := range bufs {
		go func() { errs <- WriteHTML(&bufs[i], syntheticReport(3000)) }()
	}
	for range bufs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < len(bufs); i++ {
		if !bytes.Equal(bufs[0].Bytes(), bufs[i].Bytes()) {
			t.Error("equal reports give different pages")
		}
	}
}

func TestReportCDFThinning(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	xs := make([]float64, 300_000)
	for i := range xs {
		xs[i] = math.Round(math.Exp(3 + 1.2*rng.NormFloat64())) // many ties, some zeros
	}
	sorted := slices.Sorted(slices.Values(xs))
	c := newReportCDF(xs, reportCDFMaxPoints)
	if !c.logX || c.nonPos == 0 {
		t.Fatalf("logX %v, nonPos %d; want a log axis and some zeros", c.logX, c.nonPos)
	}
	if len(c.pts) > reportCDFMaxPoints+1 || len(c.pts) < 100 || !c.thinned {
		t.Fatalf("%d points drawn", len(c.pts))
	}
	last := c.pts[len(c.pts)-1]
	if c.pts[0].X != sorted[c.nonPos] || last.X != sorted[len(sorted)-1] || last.Y != 1 {
		t.Errorf("first %v, last %v; want the smallest positive value and (max, 1)", c.pts[0], last)
	}
	for i := 1; i < len(c.pts); i++ {
		if c.pts[i].X < c.pts[i-1].X || c.pts[i].Y < c.pts[i-1].Y {
			t.Fatalf("points %d and %d are out of order: %v %v", i-1, i, c.pts[i-1], c.pts[i])
		}
	}
	// Each drawn point lies on the CDF: its y is the share of values ≤ its x.
	for _, pt := range c.pts[1:] {
		le := float64(len(sorted)-len(sorted[sortUpper(sorted, pt.X):])) / float64(len(sorted))
		if le != pt.Y {
			t.Fatalf("point %v is off the CDF (%v)", pt, le)
		}
	}
	// The step crosses each percentile's level at the exact nearest-rank value.
	for k, q := range reportPercentiles {
		want := sorted[int(math.Ceil(q.p*float64(len(sorted))))-1]
		if c.pct[k] != want {
			t.Errorf("%s = %v, want %v", q.name, c.pct[k], want)
		}
		i := slices.IndexFunc(c.pts, func(pt plotter.XY) bool { return pt.X == want })
		if i < 1 || c.pts[i].Y < q.p || c.pts[i-1].Y >= q.p {
			t.Errorf("%s: the drawn step does not cross %v at %v", q.name, q.p, want)
		}
	}

	// Few values are drawn exactly, one point per distinct value, on a linear axis.
	c = newReportCDF([]float64{5, 1, 3, 3, math.NaN()}, reportCDFMaxPoints)
	want := plotter.XYs{{X: 1, Y: 0}, {X: 1, Y: 0.25}, {X: 3, Y: 0.75}, {X: 5, Y: 1}}
	if c.logX || c.dropped != 1 || !slices.Equal(c.pts, want) {
		t.Errorf("small CDF: logX %v, dropped %d, points %v; want %v", c.logX, c.dropped, c.pts, want)
	}
}

func sortUpper(s []float64, v float64) int {
	i, _ := slices.BinarySearchFunc(s, v, func(e, t float64) int {
		if e <= t {
			return -1
		}
		return 1
	})
	return i
}

func TestReportThinSeries(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var s Report
	for i := range 100_000 {
		s.Samples = append(s.Samples, Sample{T: float64(i), RSSBytes: uint64(rng.IntN(1 << 30))})
	}
	s.Samples[777].RSSBytes = 1 << 40 // a spike thinning must keep
	pts := make(plotter.XYs, len(s.Samples))
	for i, x := range s.Samples {
		pts[i].X, pts[i].Y = x.T, float64(x.RSSBytes)
	}
	thin := reportThin(pts, reportSeriesMaxPoints)
	if len(thin) > reportSeriesMaxPoints {
		t.Errorf("%d points kept", len(thin))
	}
	if thin[0] != pts[0] || thin[len(thin)-1] != pts[len(pts)-1] || !slices.Contains(thin, pts[777]) {
		t.Error("thinning lost the first point, the last or the spike")
	}
}

// Odd but possible data draw without a "could not draw" note.
func TestReportHTMLOddData(t *testing.T) {
	many := make([]Mark, 40)
	for i := range many {
		many[i] = Mark{T: float64(i), Label: strings.Repeat("very long label ", 5)}
	}
	for name, r := range map[string]*Report{
		"one value": {QueryLatencies: []float64{7}, GossipLatencies: []float64{0}, Propagations: []float64{-3},
			Queries: []QueryPoint{{T: 5, Ms: 7, OK: true}}},
		"failures only, zero latency": {Queries: []QueryPoint{{T: 1, Ms: 0}, {T: 1, Ms: 0}, {T: 2, Ms: -4}}},
		"equal values":                {QueryLatencies: []float64{5, 5, 5}, Propagations: []float64{0, 0}},
		"zeros on log":                {QueryLatencies: []float64{0, 0, 0.5, 1, 1e4, 1e6}},
		"negative":                    {QueryLatencies: []float64{-50, -1, 0, 2, 3000}},
		"one window": {Windows: []Window{{Start: 30, Queries: 3, QueriesOK: 3}},
			Samples: []Sample{{T: 30, Online: 1, Goroutines: 9}}, Marks: []Mark{{T: 30, Label: "cut"}}},
		"unsorted, marks out of range": {WindowSeconds: 5,
			Windows: []Window{{Start: 10, Queries: 2, QueriesOK: 1}, {Start: 0, GossipExpected: 4, GossipDelivered: 4}},
			Samples: []Sample{{T: 9, RSSBytes: 1 << 30}, {T: 1, RSSBytes: 1 << 29}, {T: math.Inf(1)}},
			Marks:   []Mark{{T: -100, Label: "early"}, {T: 1e4, Label: "late"}}},
		"crowded marks": {WindowSeconds: 1, Marks: many,
			Windows: []Window{{Start: 0, Queries: 1, QueriesOK: 1}, {Start: 39, Queries: 1}},
			Samples: []Sample{{T: 0}, {T: 39}}},
	} {
		var buf bytes.Buffer
		if err := WriteHTML(&buf, r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if i := strings.Index(buf.String(), "could not draw"); i >= 0 {
			t.Errorf("%s: %s", name, buf.String()[i:i+min(200, buf.Len()-i)])
		}
	}
}
