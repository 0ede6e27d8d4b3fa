package simnet

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"html"
	"html/template"
	"image/color"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WriteHTML writes r as one self-contained HTML page: a summary table and SVG plots inline (latency
// and propagation CDFs, success and delivery per window, memory and goroutines over simulated
// time), with no scripts and nothing fetched from elsewhere. Everything taken from r, the
// scenario's description and mark labels included, is escaped. WriteHTML reads r's slices and
// never changes them; a CDF of millions of values is drawn from at most about 2,000 of them.
//
// A plot whose data are empty says "no data" instead; one that cannot be drawn says why, and the
// rest of the page is written regardless. The error is the writer's, or one for a nil r.
func WriteHTML(w io.Writer, r *Report) error {
	if r == nil {
		return errors.New("simnet: WriteHTML: nil report")
	}
	return reportTemplate.Execute(w, buildReportPage(r))
}

// Plot geometry and palette.
const (
	reportPlotWidth  = 16 * vg.Centimeter
	reportPlotHeight = 9 * vg.Centimeter
	reportPairHeight = 11 * vg.Centimeter // two stacked panels sharing the time axis

	reportCDFMaxPoints    = 2000 // points drawn per CDF, at most
	reportSeriesMaxPoints = 4000 // points drawn per time series, at most
	reportSeriesGlyphsMax = 150  // series longer than this are drawn without point markers
	reportMarkLabelRunes  = 32   // longer mark labels are cut
	reportMarkRowsMax     = 3    // rows of mark labels above a plot
	reportEventsMax       = 40   // events listed on the page
)

var (
	reportSans     = font.Font{Typeface: "Liberation", Variant: "Sans"}
	reportSansBold = font.Font{Typeface: "Liberation", Variant: "Sans", Weight: xfont.WeightBold}

	reportColBlue   = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	reportColOrange = color.RGBA{R: 0xe8, G: 0x6f, B: 0x0c, A: 0xff}
	reportColGreen  = color.RGBA{R: 0x2c, G: 0x9c, B: 0x3f, A: 0xff}
	reportColRed    = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	reportColPurple = color.RGBA{R: 0x80, G: 0x4c, B: 0xb0, A: 0xff}
	reportColGray   = color.RGBA{R: 0x6e, G: 0x76, B: 0x81, A: 0xff}
	reportColText   = color.RGBA{R: 0x24, G: 0x29, B: 0x2f, A: 0xff}
	reportColAxis   = color.RGBA{R: 0x57, G: 0x60, B: 0x6a, A: 0xff}
	reportColGrid   = color.RGBA{R: 0xe4, G: 0xe7, B: 0xeb, A: 0xff}
)

// reportPage is what the template draws.
type reportPage struct {
	Title       string
	Scenario    string
	Subtitle    string
	Description string
	Tiles       []reportTile
	Groups      []reportGroup
	Figures     []reportFigure
	Trace       string
}

// reportTile is one headline number.
type reportTile struct{ Label, Value, Sub, Class string }

// reportGroup is one small table of the summary.
type reportGroup struct {
	Title  string
	Fields []reportField
}

type reportField struct {
	Name, Value string
	Class       string // "good", "warn", "bad", "mono" or ""
	Hint        string // shown on hover
}

// reportFigure is one plot, or the note that stands in for it.
type reportFigure struct {
	ID, Title string
	SVG       template.HTML // inline <svg> made by vgsvg (text in it is escaped there)
	Note      string        // instead of SVG: "no data", or why it could not be drawn
	Caption   string
}

func buildReportPage(r *Report) reportPage {
	s := &r.Summary
	scenario := s.Scenario
	if scenario == "" {
		scenario = "unnamed scenario"
	}
	pg := reportPage{
		Title:       "rendermesh simnet — " + scenario,
		Scenario:    scenario,
		Subtitle:    reportSubtitle(s),
		Description: strings.TrimSpace(r.Description),
		Trace:       s.TraceSHA256,
	}
	if pg.Trace == "" {
		pg.Trace = "–"
	}

	pg.Tiles = []reportTile{
		{Label: "query success", Value: reportPct(s.QuerySuccessRatio), Class: reportRatioClass(s.QuerySuccessRatio),
			Sub: reportInt(s.Queries) + " queries"},
		{Label: "query p99", Value: reportMs(s.QueryMsP99), Sub: "p50 " + reportMs(s.QueryMsP50)},
		{Label: "gossip delivery", Value: reportPct(s.GossipDeliveryRatio), Class: reportRatioClass(s.GossipDeliveryRatio),
			Sub: reportInt(s.GossipDelivered) + " of " + reportInt(s.GossipExpected)},
		{Label: "gossip p99", Value: reportMs(s.GossipMsP99), Sub: "p50 " + reportMs(s.GossipMsP50)},
		{Label: "propagation p99", Value: reportMs(s.PropagationMsP99), Sub: "p50 " + reportMs(s.PropagationMsP50)},
		{Label: "peak RSS", Value: reportMiB(s.PeakRSSBytes), Sub: reportBytes(s.HeapBytesPerPeer) + " heap per peer"},
	}

	speed := ""
	if s.WallSeconds > 0 && s.SimSeconds > 0 {
		speed = " (" + reportNum(s.SimSeconds/s.WallSeconds) + "× real time)"
	}
	recovery := reportSeconds(s.QueryRecoverySeconds)
	recoveryClass := ""
	if s.QueryRecoverySeconds < 0 {
		recovery, recoveryClass = "never", "bad"
	}
	pg.Groups = []reportGroup{
		{Title: "Run", Fields: []reportField{
			{Name: "scenario", Value: scenario},
			{Name: "peers", Value: reportInt(s.Peers)},
			{Name: "seed", Value: strconv.FormatInt(s.Seed, 10)},
			{Name: "links", Value: reportOrDash(s.Links)},
			{Name: "simulated", Value: reportSeconds(s.SimSeconds)},
			{Name: "wall", Value: reportSeconds(s.WallSeconds) + speed},
			{Name: "containers", Value: reportInt(s.Containers)},
			{Name: "joins / leaves", Value: reportInt(s.Joins) + " / " + reportInt(s.Leaves)},
			{Name: "attackers", Value: reportInt(s.Attackers)},
		}},
		{Title: "Queries", Fields: []reportField{
			{Name: "queries", Value: reportInt(s.Queries)},
			{Name: "success", Value: reportPct(s.QuerySuccessRatio), Class: reportRatioClass(s.QuerySuccessRatio)},
			{Name: "latency p50 / p99", Value: reportNum(s.QueryMsP50) + " / " + reportMs(s.QueryMsP99)},
			{Name: "hops p50 / p99", Value: reportNum(s.QueryHopsP50) + " / " + reportNum(s.QueryHopsP99)},
			{Name: "worst window", Value: reportPct(s.QuerySuccessMinWindow), Class: reportRatioClass(s.QuerySuccessMinWindow),
				Hint: "success ratio of the worst window"},
			{Name: "recovery", Value: recovery, Class: recoveryClass,
				Hint: "after the last disruption, until queries succeeded every time again"},
		}},
		{Title: "Gossip (heartbeats)", Fields: []reportField{
			{Name: "published", Value: reportInt(s.GossipPublished)},
			{Name: "delivered / expected", Value: reportInt(s.GossipDelivered) + " / " + reportInt(s.GossipExpected)},
			{Name: "delivery", Value: reportPct(s.GossipDeliveryRatio), Class: reportRatioClass(s.GossipDeliveryRatio)},
			{Name: "latency p50 / p99", Value: reportNum(s.GossipMsP50) + " / " + reportMs(s.GossipMsP99)},
		}},
		{Title: "Record propagation", Fields: []reportField{
			{Name: "propagations", Value: reportInt(s.Propagations),
				Hint: "from a container's registration until a query from elsewhere finds it"},
			{Name: "p50 / p99", Value: reportNum(s.PropagationMsP50) + " / " + reportMs(s.PropagationMsP99)},
		}},
	}
	if s.Attackers > 0 {
		rejected := reportInt(s.FloodRejected)
		if s.FloodSent > 0 {
			rejected += " (" + reportPct(float64(s.FloodRejected)/float64(s.FloodSent)) + ")"
		}
		pg.Groups = append(pg.Groups, reportGroup{Title: "Flood", Fields: []reportField{
			{Name: "attackers", Value: reportInt(s.Attackers)},
			{Name: "sent", Value: reportInt(s.FloodSent)},
			{Name: "rejected", Value: rejected},
			{Name: "attacker score (mean)", Value: reportNum(s.AttackerScoreMean)},
			{Name: "honest score (mean)", Value: reportNum(s.HonestScoreMean)},
			{Name: "attackers graylisted", Value: reportPct(s.AttackersGraylisted), Class: reportRatioClass(s.AttackersGraylisted),
				Hint: "share of attackers scored below the graylist threshold"},
		}})
	}
	if s.Matches > 0 {
		pg.Groups = append(pg.Groups, reportMatchGroup(s))
	}
	if s.Checkers > 0 {
		pg.Groups = append(pg.Groups, reportCheckerGroup(s))
	}
	pg.Groups = append(pg.Groups, reportGroup{Title: "Resources", Fields: []reportField{
		{Name: "peak RSS", Value: reportMiB(s.PeakRSSBytes), Hint: "the whole process"},
		{Name: "wall before the measured span", Value: reportSeconds(s.WarmupWallSeconds), Hint: "peers joining, the warm-up and the settle"},
		{Name: "measured span", Value: reportSeconds(s.MeasuredWallSeconds) + " wall, " + reportSeconds(s.MeasuredCPUSeconds) + " CPU",
			Hint: "CPU time of every thread"},
		{Name: "CPU per peer", Value: reportNum(s.CPUMsPerPeerSecond) + " ms per simulated second", Hint: "in the measured span, per peer online at its end"},
		{Name: "heap per peer", Value: reportBytes(s.HeapBytesPerPeer), Hint: "at the end, per online peer"},
		{Name: "live heap per peer", Value: reportBytes(s.LiveHeapBytesPerPeer), Hint: "what the last collection kept, per online peer"},
		{Name: "goroutine stacks per peer", Value: reportBytes(s.StackBytesPerPeer), Hint: "at the end, per online peer"},
		{Name: "goroutines per peer", Value: reportNum(s.GoroutinesPerPeer), Hint: "at the end, per online peer"},
		{Name: "trace sha256", Value: pg.Trace, Class: "mono",
			Hint: "hash of the scenario's event trace: equal seeds and scenarios give equal traces"},
	}})

	marks := reportSortedMarks(r.Marks)
	if len(marks) > 0 {
		g := reportGroup{Title: "Scenario events"}
		for i, mk := range marks {
			if i == reportEventsMax && len(marks) > reportEventsMax+1 {
				g.Fields = append(g.Fields, reportField{Name: "…", Value: reportCount(len(marks)-i, "more event")})
				break
			}
			g.Fields = append(g.Fields, reportField{Name: reportSeconds(mk.T), Value: mk.Label})
		}
		pg.Groups = append(pg.Groups, g)
	}
	pg.Figures = []reportFigure{
		reportCDFFigure("query-latency", "Query latency", "query latency", r.QueryLatencies),
		reportCDFFigure("gossip-latency", "Gossip latency (heartbeats)", "heartbeat latency", r.GossipLatencies),
		reportCDFFigure("propagation", "Record propagation time", "propagation time", r.Propagations),
	}
	if s.Matches > 0 {
		pg.Figures = append(pg.Figures,
			reportCDFFigure("match-latency", "Match latency", "match latency", r.MatchLatencies))
	}
	pg.Figures = append(pg.Figures,
		reportWindowFigure(r, marks),
		reportQueryTimeFigure(r.Queries, marks),
		reportMemoryFigure(r.Samples, marks),
		reportPeersFigure(r.Samples, marks),
	)
	return pg
}

// reportCheckerGroup is the checkers' attestations and verdicts.
func reportCheckerGroup(s *Summary) reportGroup {
	roots, rootsClass := "–", ""
	if s.AttestationRootsAgree != nil {
		roots = "disagree"
		rootsClass = "bad"
		if *s.AttestationRootsAgree {
			roots, rootsClass = "agree", ""
		}
		roots += " (" + reportInt(s.AttestationRootEpochs) + " epochs)"
	}
	g := reportGroup{Title: "Checkers", Fields: []reportField{
		{Name: "checkers", Value: reportInt(s.Checkers)},
		{Name: "attestations", Value: reportInt(s.Attestations)},
		{Name: "delivered within 1 s", Value: reportPct(s.AttestationDeliveryRatio), Class: reportRatioClass(s.AttestationDeliveryRatio)},
		{Name: "latency p50 / p99", Value: reportNum(s.AttestationMsP50) + " / " + reportMs(s.AttestationMsP99)},
		{Name: "cheaters caught", Value: reportInt(s.CheatersCaught) + " of " + reportInt(s.Cheaters),
			Hint: "a failing attestation within " + reportSeconds(s.CaughtWithinS) + " of epoch 0"},
		{Name: "false positives", Value: reportInt(s.FalsePositives) + " (" + reportPct(s.FalsePositiveRatio) + ")",
			Hint: "honest containers with a failing attestation"},
		{Name: "ledger roots", Value: roots, Class: rootsClass},
	}}
	for _, check := range slices.Sorted(maps.Keys(s.FalsePositiveChecks)) {
		g.Fields = append(g.Fields, reportField{Name: "false positive: " + check, Value: reportInt(s.FalsePositiveChecks[check]),
			Hint: "failing attestations about honest containers, by the check that failed"})
	}
	return g
}

// reportMatchGroup is the consumers' matches and sessions.
func reportMatchGroup(s *Summary) reportGroup {
	g := reportGroup{Title: "Matches", Fields: []reportField{
		{Name: "requests", Value: reportInt(s.Matches)},
		{Name: "success", Value: reportPct(s.MatchSuccessRatio), Class: reportRatioClass(s.MatchSuccessRatio)},
		{Name: "latency p50 / p99", Value: reportNum(s.MatchMsP50) + " / " + reportMs(s.MatchMsP99)},
		{Name: "p50 / round trip", Value: reportNum(s.MatchRTTRatioP50) + "×",
			Hint: "median of match latency over the consumer-indexer round trip"},
		{Name: "sessions", Value: reportInt(s.Sessions) + " (" + reportInt(s.SessionReceipts) + " receipts)"},
		{Name: "session failures", Value: reportInt(s.SessionFailures)},
	}}
	dbl := reportField{Name: "double booked", Value: reportInt(s.DoubleBooked), Hint: "pairs of overlapping holds on one container"}
	if s.DoubleBooked > 0 {
		dbl.Class = "bad"
	}
	g.Fields = append(g.Fields, dbl)
	for _, reason := range slices.Sorted(maps.Keys(s.MatchRefused)) {
		g.Fields = append(g.Fields, reportField{Name: "refused: " + reason, Value: reportInt(s.MatchRefused[reason])})
	}
	for _, region := range slices.Sorted(maps.Keys(s.UtilizationByRegion)) {
		g.Fields = append(g.Fields, reportField{Name: "busy: " + region, Value: reportPct(s.UtilizationByRegion[region]),
			Hint: "mean share of the region's containers busy or reserved"})
	}
	return g
}

func reportSubtitle(s *Summary) string {
	parts := []string{reportInt(s.Peers) + " peers", "seed " + strconv.FormatInt(s.Seed, 10)}
	if s.Links != "" {
		parts = append(parts, s.Links)
	}
	run := reportSeconds(s.SimSeconds) + " simulated"
	if s.WallSeconds > 0 {
		run += " in " + reportSeconds(s.WallSeconds) + " wall"
		if s.SimSeconds > 0 {
			run += " (" + reportNum(s.SimSeconds/s.WallSeconds) + "× real time)"
		}
	}
	return strings.Join(append(parts, run), " · ")
}

// ---- CDFs ----

// reportPercentiles are written in captions; those at reportMarked are marked on the plots too.
var reportPercentiles = []struct {
	p    float64
	name string
}{{0.5, "p50"}, {0.9, "p90"}, {0.99, "p99"}, {0.999, "p99.9"}}

var reportMarked = []struct {
	i   int
	clr color.Color
}{{0, reportColOrange}, {2, reportColRed}}

// reportCDF is one sample's distribution, thinned for drawing.
type reportCDF struct {
	n        int // finite values
	dropped  int // NaN and ±Inf, left out
	min, max float64
	pct      []float64   // values at reportPercentiles (nearest rank)
	pts      plotter.XYs // (x, share of values ≤ x), ascending in both, for a post-step line
	thinned  bool        // pts leave out some distinct values
	logX     bool        // drawn on a log x axis
	nonPos   int         // with logX: values ≤ 0, which a log axis cannot show
}

// newReportCDF sorts a copy of xs and keeps at most about maxPoints points of its CDF: evenly
// spaced in rank and in x (in log x when logX), the first and the last, and the nearest-rank
// percentiles, each point exactly on the CDF (the last of a run of equal values), so that a
// post-step line through them crosses p at exactly the p-th percentile.
func newReportCDF(xs []float64, maxPoints int) reportCDF {
	s := make([]float64, 0, len(xs))
	for _, v := range xs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			s = append(s, v)
		}
	}
	c := reportCDF{n: len(s), dropped: len(xs) - len(s)}
	if c.n == 0 {
		return c
	}
	slices.Sort(s)
	n := len(s)
	c.min, c.max = s[0], s[n-1]
	for _, q := range reportPercentiles {
		c.pct = append(c.pct, s[reportRankIndex(q.p, n)])
	}

	lo := 0
	// A log x axis when the positive values span more than two decades, and those it cannot show
	// (≤ 0) are at most 1 %.
	if firstPos := sort.Search(n, func(i int) bool { return s[i] > 0 }); firstPos <= n/100 && s[n-1]/s[firstPos] > 100 {
		c.logX, c.nonPos, lo = true, firstPos, firstPos
	}
	// last returns the last index holding s[i].
	last := func(i int) int {
		v := s[i]
		return i + sort.Search(n-i, func(j int) bool { return s[i+j] > v }) - 1
	}
	var idx []int
	if n-lo <= maxPoints {
		for i := lo; i < n; i++ {
			if i == n-1 || s[i+1] != s[i] {
				idx = append(idx, i)
			}
		}
	} else {
		c.thinned = true
		ranks := maxPoints * 3 / 5
		steps := maxPoints - ranks - len(reportPercentiles) - 4
		idx = make([]int, 0, maxPoints)
		for k := 0; k <= ranks; k++ {
			idx = append(idx, last(lo+k*(n-1-lo)/ranks))
		}
		a, b := s[lo], s[n-1]
		if c.logX {
			a, b = math.Log(a), math.Log(b)
		}
		for k := 1; k < steps; k++ {
			t := a + (b-a)*float64(k)/float64(steps)
			if c.logX {
				t = math.Exp(t)
			}
			if i := sort.Search(n, func(j int) bool { return s[j] > t }) - 1; i >= lo {
				idx = append(idx, i) // already the last of its run
			}
		}
		for _, q := range reportPercentiles {
			if i := reportRankIndex(q.p, n); i >= lo {
				idx = append(idx, last(i))
			}
		}
		slices.Sort(idx)
		idx = slices.Compact(idx)
	}
	c.pts = make(plotter.XYs, 0, len(idx)+1)
	c.pts = append(c.pts, plotter.XY{X: s[lo], Y: float64(lo) / float64(n)}) // the CDF just below s[lo]
	for _, i := range idx {
		c.pts = append(c.pts, plotter.XY{X: s[i], Y: float64(i+1) / float64(n)})
	}
	return c
}

// reportRankIndex is the index of the nearest-rank p-th percentile in n sorted values.
func reportRankIndex(p float64, n int) int {
	i := int(math.Ceil(p*float64(n))) - 1
	return min(max(i, 0), n-1)
}

func reportCDFFigure(id, title, what string, xs []float64) reportFigure {
	fig := reportFigure{ID: id, Title: title}
	c := newReportCDF(xs, reportCDFMaxPoints)
	if c.n == 0 {
		fig.Note = "no data"
		if c.dropped > 0 {
			fig.Caption = reportCount(c.dropped, "non-finite value") + " left out"
		}
		return fig
	}

	caption := []string{"n = " + reportInt(c.n), "min " + reportMs(c.min)}
	for i, q := range reportPercentiles {
		caption = append(caption, q.name+" "+reportMs(c.pct[i]))
	}
	caption = append(caption, "max "+reportMs(c.max))
	scale := "linear x"
	if c.logX {
		scale = "log x"
	}
	if c.thinned {
		scale += ", thinned to " + reportInt(len(c.pts)) + " points for drawing"
	}
	caption = append(caption, scale)
	if c.logX && c.nonPos > 0 {
		caption = append(caption, reportCount(c.nonPos, "value")+" ≤ 0 ms not on the log axis")
	}
	if c.dropped > 0 {
		caption = append(caption, reportCount(c.dropped, "non-finite value")+" left out")
	}
	fig.Caption = strings.Join(caption, " · ")

	fig.SVG, fig.Note = renderSVG(title, reportPlotWidth, reportPlotHeight, func(dc draw.Canvas) {
		p := newReportPlot(title, what+" (ms)", "cumulative fraction")
		line, err := plotter.NewLine(c.pts)
		if err != nil {
			panic(err)
		}
		line.StepStyle = plotter.PostStep
		line.LineStyle = draw.LineStyle{Color: reportColBlue, Width: vg.Points(1.6)}
		p.Add(line)
		p.Legend.Add("CDF of "+reportCount(c.n, "value"), line)
		for _, m := range reportMarked {
			v, q := c.pct[m.i], reportPercentiles[m.i]
			if c.logX && v <= 0 {
				continue
			}
			sc, err := plotter.NewScatter(plotter.XYs{{X: v, Y: q.p}})
			if err != nil {
				panic(err)
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: m.clr, Radius: vg.Points(3.2), Shape: draw.CircleGlyph{}}
			p.Add(sc)
			p.Legend.Add(q.name+" = "+reportMs(v), sc)
		}
		p.Y.Min, p.Y.Max = 0, 1
		if c.logX {
			p.X.Scale = plot.LogScale{}
			p.X.Tick.Marker = reportLogTicks{}
			p.X.Min, p.X.Max = c.pts[0].X, c.max
		} else {
			p.X.Min, p.X.Max = c.min, c.max
			if c.min >= 0 && c.min <= c.max/2 {
				p.X.Min = 0
			}
		}
		p.Legend.Top, p.Legend.Left = false, false
		p.Draw(dc)
	})
	return fig
}

// reportLogTicks labels the decades of a log axis (0.1, 1, 10, 100, 1,000 …) and marks 2…9
// between them.
type reportLogTicks struct{}

func (reportLogTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0) || !(hi > lo) {
		return nil
	}
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo) + 1e-9); e <= math.Log10(hi)+1e-9; e++ {
		d := math.Pow(10, e)
		for k := 1.0; k < 10; k++ {
			if v := k * d; v >= lo*(1-1e-9) && v <= hi*(1+1e-9) {
				t := plot.Tick{Value: v}
				if k == 1 {
					t.Label = reportTickLabel(v)
				}
				ts = append(ts, t)
			}
		}
	}
	return ts
}

// reportTicks puts about n labelled ticks at round steps (1, 2 or 5 times a power of ten) on a
// linear axis, with an unlabelled one halfway between each two; without labels, it only marks.
type reportTicks struct {
	n          int
	unlabelled bool
}

func (t reportTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || math.IsInf(hi-lo, 0) {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	raw := (hi - lo) / float64(max(t.n, 2))
	step := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*step >= raw {
			step *= m
			break
		}
	}
	var ts []plot.Tick
	for i := math.Ceil(lo/step*2 - 1e-9); i/2*step <= hi+step*1e-9; i++ {
		v := i / 2 * step
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		tk := plot.Tick{Value: v}
		if math.Mod(i, 2) == 0 && !t.unlabelled {
			tk.Label = reportTickLabel(v)
		}
		ts = append(ts, tk)
	}
	return ts
}

// reportTickLabel writes v as short as it goes, with thousands separators.
func reportTickLabel(v float64) string {
	v, _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', 10, 64), 64) // 0.30000000000000004 → 0.3
	if a := math.Abs(v); a >= 1000 && a < 1e15 && v == math.Trunc(v) {
		return reportInt(int(v))
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// reportFitLegend raises the top of p's y axis (starting a linear one at zero) so that a legend of n
// entries in the top left corner of p's data area, as p draws on c, clears the data.
func reportFitLegend(p *plot.Plot, c draw.Canvas, n int) {
	_, logY := p.Y.Scale.(plot.LogScale)
	if !logY {
		p.Y.Min = 0
		if !(p.Y.Max > 0) {
			p.Y.Max = 1
		}
	}
	need := vg.Length(n)*p.Legend.TextStyle.FontExtents().Height + vg.Points(10)
	h := p.DataCanvas(c).Size().Y
	if f := float64(need / h); h > 0 && f < 0.6 {
		if logY { // the same share of the axis, in decades
			p.Y.Max *= math.Pow(p.Y.Max/p.Y.Min, f/(1-f))
		} else {
			p.Y.Max /= 1 - f
		}
	}
}

// ---- over simulated time ----

func reportWindowFigure(r *Report, marks []Mark) reportFigure {
	const title = "Query success and gossip delivery per window"
	fig := reportFigure{ID: "windows", Title: title}
	ws := r.WindowSeconds
	wins := slices.Clone(r.Windows)
	wins = slices.DeleteFunc(wins, func(w Window) bool { return !reportFinite(w.Start) })
	slices.SortStableFunc(wins, func(a, b Window) int { return cmp.Compare(a.Start, b.Start) })
	if !(ws > 0) || math.IsInf(ws, 0) {
		ws = 0
		if len(wins) >= 2 {
			ws = wins[1].Start - wins[0].Start
		}
	}
	var qs, gs plotter.XYs
	worst, worstAt := math.Inf(1), 0.0
	for _, w := range wins {
		x := w.Start + ws/2
		if w.Queries > 0 {
			v := float64(w.QueriesOK) / float64(w.Queries)
			qs = append(qs, plotter.XY{X: x, Y: v})
			if v < worst {
				worst, worstAt = v, w.Start
			}
		}
		if w.GossipExpected > 0 {
			gs = append(gs, plotter.XY{X: x, Y: float64(w.GossipDelivered) / float64(w.GossipExpected)})
		}
	}
	if len(qs) == 0 && len(gs) == 0 {
		fig.Note = "no data"
		return fig
	}
	caption := []string{reportCount(len(wins), "window") + " of " + reportSeconds(ws)}
	if len(qs) > 0 {
		caption = append(caption, "worst query success "+reportPct(worst)+" (window at "+reportSeconds(worstAt)+")")
	}
	if rs := r.Summary.QueryRecoverySeconds; rs < 0 {
		caption = append(caption, "queries never went back to succeeding every time")
	} else if len(marks) > 0 {
		caption = append(caption, "recovered "+reportSeconds(rs)+" after the last disruption")
	}
	if n := len(wins) - len(qs); n > 0 && len(qs) > 0 {
		caption = append(caption, reportCount(n, "window")+" without queries left out")
	}
	if n := len(wins) - len(gs); n > 0 && len(gs) > 0 {
		caption = append(caption, reportCount(n, "window")+" without heartbeats due left out")
	}
	fig.Caption = strings.Join(caption, " · ")

	fig.SVG, fig.Note = renderSVG(title, reportPlotWidth, reportPlotHeight, func(dc draw.Canvas) {
		p := newReportPlot(title, "simulated time (s)", "ratio")
		ml := newReportMarkLines(marks, true)
		p.Add(ml)
		if len(qs) > 0 {
			reportAddSeries(p, qs, "query success", reportColBlue, draw.CircleGlyph{})
		}
		if len(gs) > 0 {
			reportAddSeries(p, gs, "gossip delivery", reportColGreen, draw.SquareGlyph{})
		}
		if len(marks) > 0 {
			p.Legend.Add("scenario event", ml)
		}
		p.X.Min = math.Min(p.X.Min, wins[0].Start)
		p.X.Max = math.Max(p.X.Max, wins[len(wins)-1].Start+ws)
		p.Y.Min, p.Y.Max = 0, 1.02
		p.Legend.Top, p.Legend.Left = false, false
		p.Draw(dc)
	})
	return fig
}

// reportQueryTimeFigure draws every query's latency at the time it was issued, so that what a
// disruption does to latency shows beside the scenario's events (success alone can hide it: a
// query that waited out a dead peer still succeeds).
func reportQueryTimeFigure(qs []QueryPoint, marks []Mark) reportFigure {
	const title = "Query latency over time"
	fig := reportFigure{ID: "query-time", Title: title}
	qs = slices.Clone(qs)
	slices.SortStableFunc(qs, func(a, b QueryPoint) int { return cmp.Compare(a.T, b.T) })
	var ok, failed plotter.XYs
	dropped := 0
	for _, q := range qs {
		if !reportFinite(q.T) || !reportFinite(q.Ms) {
			dropped++
			continue
		}
		pt := plotter.XY{X: q.T, Y: math.Max(q.Ms, 1)} // a log axis has no 0
		if q.OK {
			ok = append(ok, pt)
		} else {
			failed = append(failed, pt)
		}
	}
	if len(ok)+len(failed) == 0 {
		fig.Note = "no data"
		return fig
	}
	slow := 0
	for _, q := range ok {
		if q.Y >= 2000 {
			slow++
		}
	}
	caption := []string{reportInt(len(ok)+len(failed)) + " queries", reportInt(len(failed)) + " failed",
		reportInt(slow) + " succeeded in 2 s or more", "log y"}
	if dropped > 0 {
		caption = append(caption, reportCount(dropped, "non-finite value")+" left out")
	}
	if n := len(ok) + len(failed); n > reportCDFMaxPoints {
		// In time order, the fastest and slowest of each run survive.
		ok, failed = reportThin(ok, reportCDFMaxPoints), reportThin(failed, reportCDFMaxPoints)
		caption = append(caption, "thinned to "+reportInt(len(ok)+len(failed))+" points for drawing")
	}
	fig.Caption = strings.Join(caption, " · ")
	fig.SVG, fig.Note = renderSVG(title, reportPlotWidth, reportPlotHeight, func(dc draw.Canvas) {
		p := newReportPlot(title, "simulated time issued (s)", "latency (ms)")
		ml := newReportMarkLines(marks, true)
		p.Add(ml)
		entries := 0
		for _, set := range []struct {
			pts   plotter.XYs
			name  string
			clr   color.Color
			shape draw.GlyphDrawer
		}{{ok, "succeeded", reportColBlue, draw.CircleGlyph{}}, {failed, "failed", reportColRed, draw.CrossGlyph{}}} {
			if len(set.pts) == 0 {
				continue
			}
			sc, err := plotter.NewScatter(set.pts)
			if err != nil {
				panic(err)
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: set.clr, Radius: vg.Points(1.8), Shape: set.shape}
			p.Add(sc)
			p.Legend.Add(set.name, sc)
			entries++
		}
		if len(marks) > 0 {
			p.Legend.Add("scenario event", ml)
			entries++
		}
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = reportLogTicks{}
		lo, hi := math.Inf(1), 0.0
		for _, pts := range []plotter.XYs{ok, failed} {
			for _, pt := range pts {
				lo, hi = math.Min(lo, pt.Y), math.Max(hi, pt.Y)
			}
		}
		p.Y.Min, p.Y.Max = math.Min(lo, 100), math.Max(hi*1.5, 1000)
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.XOffs, p.Legend.YOffs = vg.Points(6), -ml.band(p)-vg.Points(3)
		reportFitLegend(p, dc, entries)
		p.Draw(dc)
	})
	return fig
}

// reportSampleSeries is one quantity of the samples over simulated time, and its peak.
func reportSampleSeries(ss []Sample, y func(Sample) float64) (plotter.XYs, float64) {
	xy := make(plotter.XYs, len(ss))
	peak := 0.0
	for i, s := range ss {
		xy[i] = plotter.XY{X: s.T, Y: y(s)}
		peak = max(peak, xy[i].Y)
	}
	return xy, peak
}

func reportMemoryFigure(samples []Sample, marks []Mark) reportFigure {
	const title = "Memory"
	fig := reportFigure{ID: "memory", Title: title}
	ss := reportSortedSamples(samples)
	if len(ss) == 0 {
		fig.Note = "no data"
		return fig
	}
	const mib = 1 << 20
	rss, peakRSS := reportSampleSeries(ss, func(s Sample) float64 { return float64(s.RSSBytes) / mib })
	heap, peakHeap := reportSampleSeries(ss, func(s Sample) float64 { return float64(s.HeapBytes) / mib })
	live, _ := reportSampleSeries(ss, func(s Sample) float64 { return float64(s.LiveHeapBytes) / mib })
	stacks, _ := reportSampleSeries(ss, func(s Sample) float64 { return float64(s.StackBytes) / mib })
	fig.Caption = reportCount(len(ss), "sample") + " · peak RSS " + reportNum(peakRSS) + " MiB · peak heap " +
		reportNum(peakHeap) + " MiB · RSS is the whole process"
	fig.SVG, fig.Note = renderSVG(title, reportPlotWidth, reportPlotHeight, func(dc draw.Canvas) {
		p := newReportPlot(title, "simulated time (s)", "memory (MiB)")
		ml := newReportMarkLines(marks, true)
		p.Add(ml)
		reportAddSeries(p, rss, "RSS", reportColBlue, draw.CircleGlyph{})
		reportAddSeries(p, heap, "Go heap in use", reportColOrange, draw.SquareGlyph{})
		reportAddSeries(p, live, "live heap", reportColGreen, draw.TriangleGlyph{})
		reportAddSeries(p, stacks, "goroutine stacks", reportColPurple, draw.CrossGlyph{})
		entries := 4
		if len(marks) > 0 {
			p.Legend.Add("scenario event", ml)
			entries++
		}
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.XOffs, p.Legend.YOffs = vg.Points(6), -ml.band(p)-vg.Points(3)
		reportFitLegend(p, dc, entries)
		p.Draw(dc)
	})
	return fig
}

func reportPeersFigure(samples []Sample, marks []Mark) reportFigure {
	const title = "Goroutines and online peers"
	fig := reportFigure{ID: "peers", Title: title}
	ss := reportSortedSamples(samples)
	if len(ss) == 0 {
		fig.Note = "no data"
		return fig
	}
	gor, peakG := reportSampleSeries(ss, func(s Sample) float64 { return float64(s.Goroutines) })
	onl, peakO := reportSampleSeries(ss, func(s Sample) float64 { return float64(s.Online) })
	last := ss[len(ss)-1]
	fig.Caption = "peak " + reportCount(int(peakG), "goroutine") + " · peak " + reportCount(int(peakO), "peer") + " online"
	if last.Online > 0 {
		fig.Caption += " · at the end " + reportNum(float64(last.Goroutines)/float64(last.Online)) + " goroutines per online peer"
	}
	fig.SVG, fig.Note = renderSVG(title, reportPlotWidth, reportPairHeight, func(dc draw.Canvas) {
		top := newReportPlot(title, "", "goroutines")
		tml := newReportMarkLines(marks, true)
		top.Add(tml)
		reportAddSeries(top, gor, "goroutines (process)", reportColPurple, draw.CircleGlyph{})
		top.X.Tick.Marker = reportTicks{n: 8, unlabelled: true}

		bot := newReportPlot("", "simulated time (s)", "online peers")
		bml := newReportMarkLines(marks, false)
		bot.Add(bml)
		reportAddSeries(bot, onl, "online peers", reportColGreen, draw.SquareGlyph{})

		xmin, xmax := math.Min(top.X.Min, bot.X.Min), math.Max(top.X.Max, bot.X.Max)
		for _, p := range []*plot.Plot{top, bot} {
			p.X.Min, p.X.Max = xmin, xmax
			p.Y.Tick.Marker = reportTicks{n: 3}
			p.Legend.Top, p.Legend.Left = true, true
			p.Legend.XOffs = vg.Points(6)
		}
		top.Legend.YOffs = -tml.band(top) - vg.Points(3)
		bot.Legend.YOffs = -vg.Points(3)

		dc.SetColor(color.White)
		dc.Fill(dc.Rectangle.Path())
		tiles := draw.Tiles{Rows: 2, Cols: 1, PadY: vg.Points(4)}
		plots := [][]*plot.Plot{{top}, {bot}}
		cs := plot.Align(plots, tiles, dc)
		reportFitLegend(top, cs[0][0], 1)
		reportFitLegend(bot, cs[1][0], 1)
		cs = plot.Align(plots, tiles, dc) // the y tick labels may have changed width
		top.Draw(cs[0][0])
		bot.Draw(cs[1][0])
	})
	return fig
}

// reportAddSeries draws pts as a line, with point markers when there are few of them.
func reportAddSeries(p *plot.Plot, pts plotter.XYs, name string, clr color.Color, shape draw.GlyphDrawer) {
	pts = reportThin(pts, reportSeriesMaxPoints)
	line, err := plotter.NewLine(pts)
	if err != nil {
		panic(err)
	}
	line.LineStyle = draw.LineStyle{Color: clr, Width: vg.Points(1.5)}
	thumbs := []plot.Thumbnailer{line}
	p.Add(line)
	if len(pts) <= reportSeriesGlyphsMax {
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			panic(err)
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: clr, Radius: vg.Points(1.8), Shape: shape}
		p.Add(sc)
		thumbs = append(thumbs, sc)
	}
	p.Legend.Add(name, thumbs...)
}

// reportThin keeps at most about maxPoints of pts (in x order): the lowest and the highest of
// each of maxPoints/2 runs, so that spikes and dips survive, and the first and the last.
func reportThin(pts plotter.XYs, maxPoints int) plotter.XYs {
	if len(pts) <= maxPoints {
		return pts
	}
	buckets := maxPoints/2 - 1
	out := make(plotter.XYs, 0, maxPoints)
	out = append(out, pts[0])
	for b := range buckets {
		lo, hi := b*len(pts)/buckets, (b+1)*len(pts)/buckets
		mn, mx := lo, lo
		for i := lo; i < hi; i++ {
			if pts[i].Y < pts[mn].Y {
				mn = i
			}
			if pts[i].Y > pts[mx].Y {
				mx = i
			}
		}
		for _, i := range []int{min(mn, mx), max(mn, mx)} {
			if i != 0 && i != len(pts)-1 && (len(out) == 0 || out[len(out)-1] != pts[i]) {
				out = append(out, pts[i])
			}
		}
	}
	return append(out, pts[len(pts)-1])
}

func reportSortedSamples(samples []Sample) []Sample {
	ss := slices.Clone(samples)
	ss = slices.DeleteFunc(ss, func(s Sample) bool { return !reportFinite(s.T) })
	slices.SortStableFunc(ss, func(a, b Sample) int { return cmp.Compare(a.T, b.T) })
	return ss
}

func reportSortedMarks(marks []Mark) []Mark {
	ms := slices.Clone(marks)
	ms = slices.DeleteFunc(ms, func(m Mark) bool { return !reportFinite(m.T) })
	slices.SortStableFunc(ms, func(a, b Mark) int { return cmp.Compare(a.T, b.T) })
	return ms
}

// ---- event marks ----

// reportMarkLines draws a dashed vertical line at each mark and, with labels, the mark's label in a
// band above the plot (GlyphBoxes makes the plot leave room for it).
type reportMarkLines struct {
	marks  []Mark
	labels bool
	text   text.Style
}

func newReportMarkLines(marks []Mark, labels bool) *reportMarkLines {
	return &reportMarkLines{marks: marks, labels: labels, text: text.Style{
		Color:   reportColText,
		Font:    font.From(reportSans, 8),
		XAlign:  draw.XLeft,
		YAlign:  draw.YBottom,
		Handler: plot.DefaultTextHandler,
	}}
}

// reportMarkColor tells cuts from heals from the rest at a glance, by the first word of the label
// that names one: green for heal, recover, end or stop, red for partition, cut, split or isolate,
// purple for flood or attack, gray for the rest.
func reportMarkColor(label string) color.Color {
	words := strings.FieldsFunc(strings.ToLower(label), func(r rune) bool { return !unicode.IsLetter(r) })
	for _, w := range words {
		for _, c := range []struct {
			stems []string
			clr   color.Color
		}{
			{[]string{"heal", "recover", "end", "stop"}, reportColGreen},
			{[]string{"partition", "cut", "split", "isolat"}, reportColRed},
			{[]string{"flood", "attack"}, reportColPurple},
		} {
			for _, stem := range c.stems {
				if strings.HasPrefix(w, stem) {
					return c.clr
				}
			}
		}
	}
	return reportColGray
}

func reportMarkLabel(label string) string {
	label = strings.Join(strings.Fields(label), " ")
	if utf8.RuneCountInString(label) > reportMarkLabelRunes {
		label = string([]rune(label)[:reportMarkLabelRunes-1]) + "…"
	}
	return label
}

func (m *reportMarkLines) lineStyle(clr color.Color) draw.LineStyle {
	return draw.LineStyle{Color: clr, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(4), vg.Points(2.5)}}
}

func (m *reportMarkLines) lineHeight() vg.Length { return m.text.FontExtents().Height * 1.1 }

// reportMarkPlacement is where one label goes: its row above the plot and its left edge.
type reportMarkPlacement struct {
	row   int
	x     vg.Length // the line
	left  vg.Length // the label's left edge
	label string
	color color.Color
}

// layout places the labels of the marks within [p.X.Min, p.X.Max] on a data area from x0 to x1,
// each to the right of its line (to the left near the right edge) in the first row where it fits;
// a label that fits in no row is left out.
func (m *reportMarkLines) layout(p *plot.Plot, x0, x1 vg.Length, rows int) []reportMarkPlacement {
	gap := vg.Points(3)
	ends := make([]vg.Length, rows)
	for i := range ends {
		ends[i] = vg.Length(math.Inf(-1))
	}
	var out []reportMarkPlacement
	for _, mk := range m.marks {
		if mk.T < p.X.Min || mk.T > p.X.Max {
			continue
		}
		x := x0 + vg.Length(p.X.Norm(mk.T))*(x1-x0)
		label := reportMarkLabel(mk.Label)
		w := m.text.Width(label)
		left := x + gap
		if left+w > x1 {
			left = x - gap - w
		}
		left = max(left, x0)
		row := -1
		for r := range ends {
			if ends[r]+gap <= left {
				row = r
				break
			}
		}
		pl := reportMarkPlacement{row: row, x: x, left: left, label: label, color: reportMarkColor(mk.Label)}
		if row < 0 {
			pl.row, pl.label = rows-1, "" // no room: the line alone (the page lists every event)
		} else {
			ends[row] = left + w
		}
		out = append(out, pl)
	}
	return out
}

// rows is how many rows of labels the band above a plot reportPlotWidth wide needs.
func (m *reportMarkLines) rows(p *plot.Plot) int {
	if !m.labels || len(m.marks) == 0 || !(p.X.Max > p.X.Min) {
		return 0
	}
	n := 0
	for _, pl := range m.layout(p, 0, reportPlotWidth-vg.Centimeter*1.8, reportMarkRowsMax) {
		if pl.label != "" {
			n = max(n, pl.row+1)
		}
	}
	return n
}

// band is the height of the label band above the plot.
func (m *reportMarkLines) band(p *plot.Plot) vg.Length {
	n := m.rows(p)
	if n == 0 {
		return 0
	}
	return vg.Length(n)*m.lineHeight() + vg.Points(3)
}

// DataRange implements plot.DataRanger: the marks widen the x axis, not the y axis.
func (m *reportMarkLines) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax, ymin, ymax = math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, mk := range m.marks {
		xmin, xmax = math.Min(xmin, mk.T), math.Max(xmax, mk.T)
	}
	return xmin, xmax, ymin, ymax
}

// GlyphBoxes implements plot.GlyphBoxer: a box as high as the label band, at the top.
func (m *reportMarkLines) GlyphBoxes(p *plot.Plot) []plot.GlyphBox {
	b := m.band(p)
	if b == 0 {
		return nil
	}
	return []plot.GlyphBox{{X: 0, Y: 1, Rectangle: vg.Rectangle{Max: vg.Point{Y: b}}}}
}

// Plot implements plot.Plotter.
func (m *reportMarkLines) Plot(c draw.Canvas, p *plot.Plot) {
	if len(m.marks) == 0 {
		return
	}
	rows := m.rows(p)
	if rows == 0 {
		trX, _ := p.Transforms(&c)
		for _, mk := range m.marks {
			if mk.T >= p.X.Min && mk.T <= p.X.Max {
				x := trX(mk.T)
				c.StrokeLine2(m.lineStyle(reportMarkColor(mk.Label)), x, c.Min.Y, x, c.Max.Y)
			}
		}
		return
	}
	lh := m.lineHeight()
	base := c.Max.Y + vg.Points(2)
	for _, pl := range m.layout(p, c.Min.X, c.Max.X, rows) {
		y := base + vg.Length(pl.row)*lh
		c.StrokeLine2(m.lineStyle(pl.color), pl.x, c.Min.Y, pl.x, y+lh*0.8)
		sty := m.text
		if pl.color != reportColGray {
			sty.Color = pl.color
		}
		if pl.label != "" {
			c.FillText(sty, vg.Point{X: pl.left, Y: y}, pl.label)
		}
	}
}

// Thumbnail implements plot.Thumbnailer: a short vertical dashed line.
func (m *reportMarkLines) Thumbnail(c *draw.Canvas) {
	x := (c.Min.X + c.Max.X) / 2
	c.StrokeLine2(m.lineStyle(reportColGray), x, c.Min.Y, x, c.Max.Y)
}

// ---- plot scaffolding ----

func newReportPlot(title, xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = font.From(reportSansBold, 11)
	p.Title.TextStyle.Color = reportColText
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text, p.Y.Label.Text = xlabel, ylabel
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = font.From(reportSans, 9.5)
		a.Label.TextStyle.Color = reportColText
		a.Tick.Label.Font = font.From(reportSans, 8.5)
		a.Tick.Label.Color = reportColAxis
		a.LineStyle.Color, a.Tick.Color = reportColAxis, reportColAxis
		a.Tick.Length = vg.Points(5)
		a.Padding = vg.Points(3)
	}
	p.X.Tick.Marker, p.Y.Tick.Marker = reportTicks{n: 8}, reportTicks{n: 5}
	p.Legend.TextStyle.Font = font.From(reportSans, 8.5)
	p.Legend.TextStyle.Color = reportColText
	p.Legend.ThumbnailWidth = vg.Points(20)
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(6), vg.Points(6)
	grid := plotter.NewGrid()
	grid.Vertical = draw.LineStyle{Color: reportColGrid, Width: vg.Points(0.6)}
	grid.Horizontal = grid.Vertical
	p.Add(grid)
	return p
}

// renderSVG draws one figure on a vgsvg canvas and returns the <svg> element, or a note on why it
// could not be drawn (gonum/plot panics on data it cannot place).
func renderSVG(title string, w, h vg.Length, drawFn func(draw.Canvas)) (svg template.HTML, note string) {
	defer func() {
		if e := recover(); e != nil {
			svg, note = "", fmt.Sprintf("could not draw this plot: %v", e)
		}
	}()
	c := vgsvg.New(w, h)
	drawFn(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return "", "could not draw this plot: " + err.Error()
	}
	out := b.String()
	start := strings.Index(out, "<svg")
	if start < 0 {
		return "", "could not draw this plot: no <svg> element"
	}
	out = out[start:] // drop the XML declaration and comment, which do not belong inside HTML
	end := strings.IndexByte(out, '>')
	// vgsvg escapes every text it draws; the title we add is escaped here.
	out = out[:4] + ` role="img" class="plot"` + out[4:end+1] +
		"\n<title>" + html.EscapeString(title) + "</title>" + out[end+1:]
	return template.HTML(out), ""
}

// ---- formatting ----

func reportFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func reportOrDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// reportInt writes n with thousands separators.
func reportInt(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// reportNum writes v with about three significant digits (no trailing zeros), and whole numbers
// with thousands separators.
func reportNum(v float64) string {
	if !reportFinite(v) {
		return "–"
	}
	a := math.Abs(v)
	var s string
	switch {
	case a >= 1e15:
		return strconv.FormatFloat(v, 'g', 3, 64)
	case a >= 1000 || v == math.Trunc(v):
		return reportInt(int(math.Round(v)))
	case a >= 100:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	default:
		s = strconv.FormatFloat(v, 'g', 3, 64)
	}
	if strings.Contains(s, ".") && !strings.Contains(s, "e") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func reportMs(v float64) string {
	if !reportFinite(v) {
		return "–"
	}
	return reportNum(v) + " ms"
}

func reportSeconds(v float64) string {
	if !reportFinite(v) {
		return "–"
	}
	return reportNum(v) + " s"
}

// reportPct writes a ratio as a percentage, with as many decimals as it takes not to round a ratio
// below one up to 100 %.
func reportPct(r float64) string {
	if !reportFinite(r) {
		return "–"
	}
	if r == 1 || r == 0 {
		return strconv.Itoa(int(r*100)) + " %"
	}
	s := strconv.FormatFloat(r*100, 'f', 2, 64)
	for d := 3; d <= 6 && r < 1 && strings.HasPrefix(s, "100."); d++ {
		s = strconv.FormatFloat(r*100, 'f', d, 64)
	}
	return s + " %"
}

// reportCount writes n things: "1 sample", "2,500 samples".
func reportCount(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return reportInt(n) + " " + thing + "s"
}

func reportMiB(b uint64) string { return reportNum(float64(b)/(1<<20)) + " MiB" }

func reportBytes(b uint64) string {
	switch {
	case b >= 1<<30:
		return reportNum(float64(b)/(1<<30)) + " GiB"
	case b >= 1<<20:
		return reportNum(float64(b)/(1<<20)) + " MiB"
	case b >= 1<<10:
		return reportNum(float64(b)/(1<<10)) + " KiB"
	}
	return strconv.FormatUint(b, 10) + " B"
}

// reportRatioClass colours a success or delivery ratio.
func reportRatioClass(r float64) string {
	switch {
	case !reportFinite(r):
		return ""
	case r >= 0.99:
		return "good"
	case r >= 0.9:
		return "warn"
	}
	return "bad"
}

// ---- the page ----

var reportTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="rendermesh simnet">
<title>{{.Title}}</title>
<style>
:root { --fg: #1f2328; --muted: #59636e; --line: #d8dee4; --bg: #f6f8fa; --card: #fff;
  --good: #1a7f37; --warn: #9a6700; --bad: #cf222e; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1360px; margin: 0 auto; padding: 28px 24px 40px; }
h1 { font-size: 24px; font-weight: 650; margin: 0 0 4px; }
h1 .scenario { color: #0550ae; }
.sub { color: var(--muted); margin: 0; }
.desc { white-space: pre-line; margin: 12px 0 0; max-width: 90ch; }
section { margin-top: 20px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 12px; }
.tile, .group, figure { background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
.tile { padding: 10px 14px; }
.tile .l, .group h2 { color: var(--muted); font-size: 11.5px; font-weight: 600; text-transform: uppercase;
  letter-spacing: .05em; margin: 0; }
.tile .v { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; margin: 2px 0; }
.tile .s { color: var(--muted); font-size: 12.5px; font-variant-numeric: tabular-nums; }
.good .v, td.good { color: var(--good); }
.warn .v, td.warn { color: var(--warn); }
.bad .v, td.bad { color: var(--bad); }
.groups { display: grid; grid-template-columns: repeat(auto-fill, minmax(270px, 1fr)); gap: 12px; }
.group { padding: 10px 14px 8px; }
.group h2 { margin-bottom: 6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
tr + tr { border-top: 1px solid #eef1f4; }
th { text-align: left; font-weight: normal; color: var(--muted); padding: 3px 10px 3px 0; white-space: nowrap; }
td { text-align: right; padding: 3px 0; font-weight: 500; }
tr[title] th { text-decoration: underline dotted #aab2bb; cursor: help; }
td.mono { font: 11.5px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all;
  text-align: left; padding-left: 8px; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 560px), 1fr)); gap: 16px; }
figure { margin: 0; padding: 12px 12px 10px; }
figure svg.plot { display: block; width: 100%; height: auto; }
figure svg.plot text { font-family: "Liberation Sans", Arimo, "Helvetica Neue", Helvetica, Arial, sans-serif !important; }
figure h3 { font-size: 15px; margin: 0; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 6px; font-variant-numeric: tabular-nums; }
.nodata { color: var(--muted); font-style: italic; margin: 10px 0 4px; }
footer { color: var(--muted); font-size: 12px; margin-top: 28px; }
footer code { font-size: 11.5px; }
@media print {
  body { background: #fff; }
  main { max-width: none; padding: 0; }
  .tile, .group, figure { break-inside: avoid; }
}
</style>
</head>
<body>
<main>
<header>
<h1>rendermesh simnet — <span class="scenario">{{.Scenario}}</span></h1>
<p class="sub">{{.Subtitle}}</p>
{{- with .Description}}
<p class="desc">{{.}}</p>
{{- end}}
</header>
<section class="tiles">
{{- range .Tiles}}
<div class="tile {{.Class}}"><div class="l">{{.Label}}</div><div class="v">{{.Value}}</div><div class="s">{{.Sub}}</div></div>
{{- end}}
</section>
<section class="groups">
{{- range .Groups}}
<div class="group"><h2>{{.Title}}</h2>
<table>
{{- range .Fields}}
<tr{{with .Hint}} title="{{.}}"{{end}}><th>{{.Name}}</th><td{{with .Class}} class="{{.}}"{{end}}>{{.Value}}</td></tr>
{{- end}}
</table></div>
{{- end}}
</section>
<section class="figures">
{{- range .Figures}}
<figure id="{{.ID}}">
{{- if .SVG}}
{{.SVG}}
{{- else}}
<h3>{{.Title}}</h3>
<p class="nodata">{{.Note}}</p>
{{- end}}
{{- with .Caption}}
<figcaption>{{.}}</figcaption>
{{- end}}
</figure>
{{- end}}
</section>
<footer>trace sha256 <code>{{.Trace}}</code> · written by rendermesh simnet</footer>
</main>
</body>
</html>
`))
