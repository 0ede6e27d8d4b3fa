package input

import (
	"fmt"
	"math"
	"time"
)

// PredictorConfig tunes a Predictor. Positions are in the wire's normalized units (0..1 across the
// video), times in seconds. A zero field takes its default; a negative or NaN one is an error.
type PredictorConfig struct {
	// ProcessNoise is the spectral density q of the white-noise acceleration the model allows, in
	// units²/s³: how hard a hand may change the pointer's velocity. Larger follows turns and stops
	// sooner; smaller smooths more. Default 4 (over one 60 Hz sample the velocity may change by
	// about sqrt(4/60) ≈ 0.26 video widths per second): the best of 0.5..64 on aimed,
	// minimum-jerk reaches, see TestPredictorReport.
	ProcessNoise float64
	// MeasurementNoise is the standard deviation of a sample around the true position, in units.
	// Default 0.002: about 2 pixels on a 1000-pixel video (pixel rounding and hand tremor).
	MeasurementNoise float64
	// MaxGap is the longest pause between samples that still counts as one motion. A browser sends
	// no pointer events while the pointer rests, so after a longer gap the filter starts again at
	// the new sample with no velocity instead of carrying the old one. Default 100 ms.
	MaxGap time.Duration
	// ReversalSigma is the guard against abrupt stops and reversals: when a sample lands on the far
	// side, against the estimated velocity on an axis, by more than this many standard deviations
	// of the expected innovation, that axis's velocity is forgotten (set to zero, its uncertainty
	// reset) so the cursor does not coast past the stop. Default 3; set a huge value to disable.
	ReversalSigma float64
	// MaxAhead is how far ahead Predict extrapolates in full. Predict is asked for
	// ahead = round trip + time since the last sample arrived; when the pointer rests no samples
	// arrive and ahead grows, so from MaxAhead to 2×MaxAhead the extrapolation eases back to
	// nothing and the cursor settles on the last position. Default 200 ms.
	MaxAhead time.Duration
}

// Default predictor settings; see PredictorConfig.
const (
	DefaultProcessNoise     = 4.0
	DefaultMeasurementNoise = 0.002
	DefaultMaxGap           = 100 * time.Millisecond
	DefaultReversalSigma    = 3.0
	DefaultMaxAhead         = 200 * time.Millisecond
)

// initialSpeedVar is the variance of the velocity (units²/s²) when a motion starts: a pointer can
// cross the video in about a second.
const initialSpeedVar = 1.0

func (c PredictorConfig) withDefaults() (PredictorConfig, error) {
	bad := func(v float64) bool { return v < 0 || math.IsNaN(v) || math.IsInf(v, 0) }
	if bad(c.ProcessNoise) || bad(c.MeasurementNoise) || bad(c.ReversalSigma) || c.MaxGap < 0 || c.MaxAhead < 0 {
		return c, fmt.Errorf("input: predictor config %+v: no field may be negative, NaN or infinite", c)
	}
	if c.ProcessNoise == 0 {
		c.ProcessNoise = DefaultProcessNoise
	}
	if c.MeasurementNoise == 0 {
		c.MeasurementNoise = DefaultMeasurementNoise
	}
	if c.MaxGap == 0 {
		c.MaxGap = DefaultMaxGap
	}
	if c.ReversalSigma == 0 {
		c.ReversalSigma = DefaultReversalSigma
	}
	if c.MaxAhead == 0 {
		c.MaxAhead = DefaultMaxAhead
	}
	return c, nil
}

// Predictor estimates where the pointer is going: a constant-velocity Kalman filter over the state
// (x, y, vx, vy). Motion along x and along y is modelled as independent with the same noise, so
// the 4×4 filter splits exactly into two 2×2 ones, one per axis, which is what it runs.
//
// Model, per axis, between samples dt apart: p' = p + v·dt, v' = v + w, with w white acceleration
// noise of density ProcessNoise (Q = q·[dt³/3 dt²/2; dt²/2 dt]); a sample is p plus Gaussian
// noise of deviation MeasurementNoise.
//
// Where it hurts is a dead stop: the filter coasts past it for about a round trip. A browser sends
// nothing while the pointer rests, so a sender should mark the rest by sending the last position
// once more, with the current time, soon after the pointer stops (app.js does, after 30 ms): the
// repeat pulls the velocity to zero. With that mark the predictor beats drawing the last sample on
// stop-and-go paths too; without it the stop shows only through the guards (MaxGap,
// ReversalSigma, MaxAhead), which halve the overshoot but leave the mean error worse than the
// last sample's. TestPredictorReport logs the numbers.
//
// The zero Predictor is not usable; make one with NewPredictor. A Predictor is not safe for
// concurrent use.
type Predictor struct {
	cfg    PredictorConfig
	r      float64 // measurement variance
	axes   [2]axis
	last   time.Duration
	primed bool
}

type axis struct {
	p, v          float64 // position, velocity (units/s)
	p00, p01, p11 float64 // covariance of (p, v)
}

// NewPredictor returns a Predictor with cfg's settings, zero fields taking their defaults.
func NewPredictor(cfg PredictorConfig) (*Predictor, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Predictor{cfg: c, r: c.MeasurementNoise * c.MeasurementNoise}, nil
}

// Config returns the settings in use, defaults filled in.
func (p *Predictor) Config() PredictorConfig { return p.cfg }

// Reset forgets every sample.
func (p *Predictor) Reset() { p.primed = false }

// Observe adds a pointer sample at (x, y), taken at t on the sender's clock (the event's ts).
// Samples older than the last one are ignored; NaN positions too.
func (p *Predictor) Observe(x, y float64, t time.Duration) {
	if math.IsNaN(x) || math.IsNaN(y) {
		return
	}
	if !p.primed || t-p.last > p.cfg.MaxGap {
		p.start(x, y, t)
		return
	}
	if t < p.last {
		return
	}
	dt := (t - p.last).Seconds()
	p.last = t
	for i, z := range [2]float64{x, y} {
		a := &p.axes[i]
		a.predict(dt, p.cfg.ProcessNoise)
		s := a.p00 + p.r // innovation variance
		innov := z - a.p
		if innov*a.v < 0 && math.Abs(innov) > p.cfg.ReversalSigma*math.Sqrt(s) {
			// The pointer stopped or turned back: the velocity is wrong, not noisy.
			a.p -= a.v * dt // undo the coast
			a.v, a.p01, a.p11 = 0, 0, initialSpeedVar
			s = a.p00 + p.r
			innov = z - a.p
		}
		k0, k1 := a.p00/s, a.p01/s
		a.p += k0 * innov
		a.v += k1 * innov
		a.p00, a.p01, a.p11 = (1-k0)*a.p00, (1-k0)*a.p01, a.p11-k1*a.p01
	}
}

func (p *Predictor) start(x, y float64, t time.Duration) {
	p.primed, p.last = true, t
	for i, z := range [2]float64{x, y} {
		p.axes[i] = axis{p: z, p00: p.r, p11: initialSpeedVar}
	}
}

// predict advances the axis by dt seconds.
func (a *axis) predict(dt, q float64) {
	a.p += a.v * dt
	dt2 := dt * dt
	a.p00 += 2*dt*a.p01 + dt2*a.p11 + q*dt2*dt/3
	a.p01 += dt*a.p11 + q*dt2/2
	a.p11 += q * dt
}

// Predict returns where the pointer will be ahead after the last sample's time, clamped to [0, 1].
// Pass ahead = the input round trip (see RTT) + the time since the last sample arrived: the frame
// being drawn is seen that much after the person moved. Beyond MaxAhead the extrapolation eases
// off, and from 2×MaxAhead on Predict returns the filtered last position (see
// PredictorConfig.MaxAhead). Before any sample it returns the centre.
func (p *Predictor) Predict(ahead time.Duration) (x, y float64) {
	if !p.primed {
		return 0.5, 0.5
	}
	h := ahead
	switch m := p.cfg.MaxAhead; {
	case h < 0:
		h = 0
	case h > 2*m:
		h = 0
	case h > m:
		h = 2*m - h
	}
	s := h.Seconds()
	return clamp01(p.axes[0].p + p.axes[0].v*s), clamp01(p.axes[1].p + p.axes[1].v*s)
}

// Velocity returns the estimated pointer velocity in units per second.
func (p *Predictor) Velocity() (vx, vy float64) { return p.axes[0].v, p.axes[1].v }

func clamp01(v float64) float64 { return math.Max(0, math.Min(1, v)) }
