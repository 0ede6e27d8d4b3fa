package input

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// A trajectory is the true pointer position at t seconds; moving reports whether the pointer moves
// at t (a browser sends no samples while it rests).
type trajectory struct {
	name   string
	pos    func(t float64) (x, y float64)
	moving func(t float64) bool
	length float64 // seconds
	rests  bool    // moving is false at times
}

func allTheTime(float64) bool { return true }

var (
	constantVelocity = trajectory{
		name:   "constant velocity",
		pos:    func(t float64) (float64, float64) { return 0.1 + 0.4*t, 0.2 + 0.25*t },
		moving: allTheTime,
		length: 1.8,
	}
	circle = trajectory{
		name: "circle r=0.3 in 2 s",
		pos: func(t float64) (float64, float64) {
			a := 2 * math.Pi * t / 2
			return 0.5 + 0.3*math.Cos(a), 0.5 + 0.3*math.Sin(a)
		},
		moving: allTheTime,
		length: 4,
	}
	fastCircle = trajectory{
		name: "circle r=0.2 in 1 s",
		pos: func(t float64) (float64, float64) {
			a := 2 * math.Pi * t
			return 0.5 + 0.2*math.Cos(a), 0.5 + 0.2*math.Sin(a)
		},
		moving: allTheTime,
		length: 3,
	}
	// reach is how a hand aims: minimum-jerk moves of 0.35 s between targets (speed peaks at
	// about 1.9 video widths a second), each followed by a 0.25 s rest.
	reach = trajectory{
		name:   "aimed reaches",
		pos:    reachPos,
		moving: func(t float64) bool { return math.Mod(t, 0.6) < 0.35 },
		rests:  true,
		length: 4.8,
	}
	// stopAndGo moves right at 0.8/s, stops dead, moves down-left, stops, moves right again: the
	// velocity changes in an instant, the worst case for a constant-velocity model.
	stopAndGo = trajectory{
		name:   "stop and go",
		pos:    stopAndGoPos,
		moving: func(t float64) bool { p := math.Mod(t, 1.5); return p < 0.5 || (p >= 0.8 && p < 1.2) },
		rests:  true,
		length: 4.5,
	}
)

func stopAndGoPos(t float64) (float64, float64) {
	// One 1.5 s period: 0–0.5 right, 0.5–0.8 rest, 0.8–1.2 down-left, 1.2–1.5 rest. Periods
	// repeat from where the last one ended, drifting right and down.
	period := math.Floor(t / 1.5)
	p := t - 1.5*period
	x, y := 0.15+0.12*period, 0.2+0.12*period
	seg := func(from, to, at float64) float64 { return math.Max(0, math.Min(at, to)-from) }
	x += 0.8*seg(0, 0.5, p) - 0.7*seg(0.8, 1.2, p)
	y += 0.3 * seg(0.8, 1.2, p)
	return x, y
}

var reachTargets = [][2]float64{{0.2, 0.2}, {0.6, 0.3}, {0.3, 0.7}, {0.8, 0.8}, {0.7, 0.2}, {0.2, 0.5}, {0.5, 0.5}, {0.9, 0.4}, {0.4, 0.1}}

func reachPos(t float64) (float64, float64) {
	i := int(t / 0.6)
	from, to := reachTargets[i%len(reachTargets)], reachTargets[(i+1)%len(reachTargets)]
	u := math.Min(1, (t-0.6*float64(i))/0.35)
	s := u * u * u * (10 - 15*u + 6*u*u)
	return from[0] + s*(to[0]-from[0]), from[1] + s*(to[1]-from[1])
}

// errors are the prediction errors (distance in units) of one method over a run.
type errs []float64

func (e errs) mean() float64 {
	s := 0.0
	for _, v := range e {
		s += v
	}
	return s / float64(len(e))
}

func (e errs) quantile(q float64) float64 {
	s := slices.Clone(e)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

type runResult struct{ kalman, last errs }

// sampling is when the sender sends a sample.
type sampling int

const (
	// always: every 60 Hz tick, resting or not (a gamepad-driven cursor, a jittery hand).
	always sampling = iota
	// moving: only while the pointer moves, as a browser fires pointermove.
	moving
	// movingRest: while it moves and, on the second tick it rests (app.js waits 30 ms), the last
	// position again with the new time: the repeat tells the predictor the pointer stopped.
	movingRest
)

func (s sampling) String() string { return [...]string{"always", "moving", "+rest"}[s] }

// run feeds tr's samples at 60 Hz with seeded noise of deviation sigma to a predictor made with
// cfg and, at each 60 Hz frame (half a sample after the samples), predicts horizon ahead and
// compares with the truth. "last" is what a container does without prediction: draw the last
// sample.
func run(t testing.TB, tr trajectory, cfg PredictorConfig, horizon time.Duration, sigma float64, mode sampling, seed uint64) runResult {
	p, err := NewPredictor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	const hz = 60
	var res runResult
	var lastT time.Duration
	var lastX, lastY float64
	seen, still := false, 0 // still: ticks since the pointer last moved
	h := horizon.Seconds()
	for k := 0; float64(k)/hz < tr.length; k++ {
		ts := float64(k) / hz
		mv := tr.moving(ts)
		if mv {
			still = 0
		} else {
			still++
		}
		rest := mode == movingRest && still == 2
		send := mode == always || mv || !seen || rest
		if send {
			x, y := lastX, lastY // the rest sample repeats the last position
			if !rest {
				x, y = tr.pos(ts)
				x += sigma * rng.NormFloat64()
				y += sigma * rng.NormFloat64()
			}
			lastT = time.Duration(ts * float64(time.Second))
			lastX, lastY = x, y
			p.Observe(x, y, lastT)
			seen = true
		}
		frame := ts + 0.5/hz
		if frame < 0.25 { // warm-up
			continue
		}
		tx, ty := tr.pos(frame + h)
		ahead := time.Duration(frame*float64(time.Second)) - lastT + horizon
		px, py := p.Predict(ahead)
		res.kalman = append(res.kalman, math.Hypot(px-tx, py-ty))
		res.last = append(res.last, math.Hypot(clamp01(lastX)-tx, clamp01(lastY)-ty))
	}
	return res
}

// unguarded turns the stop guards off, to show what they buy.
var unguarded = PredictorConfig{MaxGap: time.Hour, ReversalSigma: 1e9, MaxAhead: time.Hour}

// For smooth motion, predicting one round trip ahead beats drawing the last sample.
func TestPredictorBeatsLastSampleOnSmoothMotion(t *testing.T) {
	for _, tr := range []trajectory{constantVelocity, circle, fastCircle} {
		for _, h := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond} {
			for _, mode := range []sampling{always, movingRest} {
				for seed := uint64(1); seed <= 3; seed++ {
					r := run(t, tr, PredictorConfig{}, h, DefaultMeasurementNoise, mode, seed)
					k, l := r.kalman.mean(), r.last.mean()
					if k >= 0.5*l {
						t.Errorf("%s, %v ahead, seed %d: mean error %.4f predicted vs %.4f last sample; want under half", tr.name, h, seed, k, l)
					}
				}
			}
		}
	}
}

// TestPredictorReport logs, for each trajectory and horizon, the mean, p99 and max error of the
// predictor with its guards, without them, and of the last sample (units: video widths). It is the
// evidence behind the defaults; run with -v to read it.
func TestPredictorReport(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-22s %-8s %-7s | %-23s | %-23s | %-23s\n", "trajectory", "samples", "ahead", "kalman mean/p99/max", "unguarded mean/p99/max", "last sample mean/p99/max")
	for _, tr := range []trajectory{constantVelocity, circle, fastCircle, reach, stopAndGo} {
		for _, mode := range []sampling{always, moving, movingRest} {
			if mode != always && !tr.rests {
				continue // never rests: the same as always
			}
			for _, h := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond} {
				g := run(t, tr, PredictorConfig{}, h, DefaultMeasurementNoise, mode, 1)
				u := run(t, tr, unguarded, h, DefaultMeasurementNoise, mode, 1)
				src := mode.String()
				fmt.Fprintf(&b, "%-22s %-8s %-7v | %.4f %.4f %.4f    | %.4f %.4f %.4f    | %.4f %.4f %.4f\n", tr.name, src, h,
					g.kalman.mean(), g.kalman.quantile(0.99), g.kalman.quantile(1),
					u.kalman.mean(), u.kalman.quantile(0.99), u.kalman.quantile(1),
					g.last.mean(), g.last.quantile(0.99), g.last.quantile(1))
			}
		}
	}
	t.Log(b.String())
}

// Where prediction hurts is abrupt stops: the filter coasts past them. When samples stop with
// the pointer and no rest is marked, the guards (MaxGap, ReversalSigma, MaxAhead) must cut that
// overshoot; when samples keep coming, or a rest is marked, they must cost next to nothing.
func TestPredictorGuardsLimitOvershoot(t *testing.T) {
	for _, h := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond} {
		g := run(t, stopAndGo, PredictorConfig{}, h, DefaultMeasurementNoise, moving, 1)
		u := run(t, stopAndGo, unguarded, h, DefaultMeasurementNoise, moving, 1)
		if g.kalman.quantile(1) >= 0.8*u.kalman.quantile(1) || g.kalman.mean() >= 0.8*u.kalman.mean() {
			t.Errorf("moving, %v: guarded mean/max %.4f/%.4f, unguarded %.4f/%.4f; want the guards to cut both by a fifth",
				h, g.kalman.mean(), g.kalman.quantile(1), u.kalman.mean(), u.kalman.quantile(1))
		}
		for _, mode := range []sampling{always, movingRest} {
			g := run(t, stopAndGo, PredictorConfig{}, h, DefaultMeasurementNoise, mode, 1)
			u := run(t, stopAndGo, unguarded, h, DefaultMeasurementNoise, mode, 1)
			if g.kalman.mean() > 1.05*u.kalman.mean() {
				t.Errorf("%v, %v: guarded mean %.4f, unguarded %.4f; the guards should cost under 5%%", mode, h, g.kalman.mean(), u.kalman.mean())
			}
		}
	}
}

// When the sender marks a rest by repeating the last position (app.js does), the predictor beats
// the last sample even on dead stops and on aimed reaches.
func TestPredictorBeatsLastSampleWhenRestsAreMarked(t *testing.T) {
	for _, tr := range []trajectory{reach, stopAndGo} {
		for _, h := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond} {
			for seed := uint64(1); seed <= 3; seed++ {
				r := run(t, tr, PredictorConfig{}, h, DefaultMeasurementNoise, movingRest, seed)
				if k, l := r.kalman.mean(), r.last.mean(); k >= 0.9*l {
					t.Errorf("%s, %v ahead, seed %d: mean error %.4f predicted vs %.4f last sample", tr.name, h, seed, k, l)
				}
			}
		}
	}
}

func TestPredictorBasics(t *testing.T) {
	ms := time.Millisecond
	newP := func(t *testing.T) *Predictor {
		p, err := NewPredictor(PredictorConfig{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	near := func(t *testing.T, what string, gotX, gotY, wantX, wantY, tol float64) {
		t.Helper()
		if math.Abs(gotX-wantX) > tol || math.Abs(gotY-wantY) > tol {
			t.Fatalf("%s = (%.4f, %.4f), want (%.4f, %.4f) ± %v", what, gotX, gotY, wantX, wantY, tol)
		}
	}
	// feed samples a line at (vx, vy)/s from (x0, y0), at 60 Hz for n samples from t0.
	feed := func(p *Predictor, x0, y0, vx, vy float64, t0 time.Duration, n int) time.Duration {
		var ts time.Duration
		for i := range n {
			ts = t0 + time.Duration(i)*time.Second/60
			s := (ts - t0).Seconds()
			p.Observe(x0+vx*s, y0+vy*s, ts)
		}
		return ts
	}

	t.Run("before any sample: the centre", func(t *testing.T) {
		x, y := newP(t).Predict(50 * ms)
		near(t, "Predict", x, y, 0.5, 0.5, 0)
	})
	t.Run("one sample: no velocity", func(t *testing.T) {
		p := newP(t)
		p.Observe(0.3, 0.7, 10*ms)
		x, y := p.Predict(100 * ms)
		near(t, "Predict", x, y, 0.3, 0.7, 1e-12)
	})
	t.Run("a noiseless line is followed", func(t *testing.T) {
		p := newP(t)
		last := feed(p, 0.1, 0.8, 0.5, -0.3, 0, 30)
		s := last.Seconds()
		vx, vy := p.Velocity()
		near(t, "Velocity", vx, vy, 0.5, -0.3, 0.01)
		x, y := p.Predict(100 * ms)
		near(t, "Predict", x, y, 0.1+0.5*(s+0.1), 0.8-0.3*(s+0.1), 0.002)
	})
	t.Run("clamped to the video", func(t *testing.T) {
		p := newP(t)
		feed(p, 0.9, 0.1, 1, -1, 0, 6)
		x, y := p.Predict(150 * ms)
		near(t, "Predict", x, y, 1, 0, 0)
	})
	t.Run("a long gap forgets the velocity", func(t *testing.T) {
		p := newP(t)
		last := feed(p, 0.1, 0.5, 0.5, 0, 0, 30)
		p.Observe(0.4, 0.5, last+DefaultMaxGap+ms)
		vx, vy := p.Velocity()
		near(t, "Velocity", vx, vy, 0, 0, 0)
	})
	t.Run("a reversal forgets the velocity", func(t *testing.T) {
		p := newP(t)
		last := feed(p, 0.1, 0.5, 0.5, 0, 0, 30)
		x, _ := p.Predict(0)
		p.Observe(x-0.01, 0.5, last+ms*16)
		if vx, _ := p.Velocity(); vx > 0 {
			t.Fatalf("velocity after reversing = %v, want ≤ 0", vx)
		}
	})
	t.Run("old samples are ignored", func(t *testing.T) {
		p := newP(t)
		p.Observe(0.5, 0.5, 100*ms)
		p.Observe(0.9, 0.9, 50*ms)
		x, y := p.Predict(0)
		near(t, "Predict", x, y, 0.5, 0.5, 0)
	})
	t.Run("far ahead eases back to the last position", func(t *testing.T) {
		p := newP(t)
		feed(p, 0.1, 0.5, 0.5, 0, 0, 30)
		x0, _ := p.Predict(0)
		m := DefaultMaxAhead
		xm, _ := p.Predict(m)
		if xm <= x0 {
			t.Fatalf("Predict(MaxAhead) = %v, not ahead of %v", xm, x0)
		}
		// Continuous through MaxAhead, halfway back at 1.5×MaxAhead, home at 2×MaxAhead and beyond.
		xa, _ := p.Predict(m + ms)
		near(t, "Predict(MaxAhead+1ms)", xa, 0, xm, 0, 0.001)
		xh, _ := p.Predict(m * 3 / 2)
		near(t, "Predict(1.5×MaxAhead)", xh, 0, (x0+xm)/2, 0, 1e-9)
		for _, a := range []time.Duration{2 * m, 10 * m} {
			xf, _ := p.Predict(a)
			near(t, fmt.Sprintf("Predict(%v)", a), xf, 0, x0, 0, 1e-9)
		}
	})
}

func TestPredictorConfig(t *testing.T) {
	p, err := NewPredictor(PredictorConfig{})
	if err != nil {
		t.Fatal(err)
	}
	want := PredictorConfig{DefaultProcessNoise, DefaultMeasurementNoise, DefaultMaxGap, DefaultReversalSigma, DefaultMaxAhead}
	if p.Config() != want {
		t.Fatalf("defaults = %+v, want %+v", p.Config(), want)
	}
	for _, bad := range []PredictorConfig{
		{ProcessNoise: -1}, {MeasurementNoise: math.NaN()}, {MaxGap: -1}, {ReversalSigma: math.Inf(1)}, {MaxAhead: -time.Millisecond},
	} {
		if _, err := NewPredictor(bad); err == nil {
			t.Errorf("NewPredictor(%+v) accepted", bad)
		}
	}
}

func BenchmarkPredictor(b *testing.B) {
	p, _ := NewPredictor(PredictorConfig{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ts := time.Duration(i) * time.Second / 60
		s := ts.Seconds()
		p.Observe(0.5+0.3*math.Cos(s), 0.5+0.3*math.Sin(s), ts)
		p.Predict(100 * time.Millisecond)
	}
}
