package checker

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render/scene"
)

var (
	// ErrChallenge is returned (wrapped) for a challenge that cannot be issued or verified.
	ErrChallenge = errors.New("checker: bad challenge")
	// ErrConfig is returned (wrapped) for a VerifierConfig that cannot work.
	ErrConfig = errors.New("checker: bad config")
)

const (
	// NonceSize is the length of the nonces NewChallenge draws.
	NonceSize = 32
	// MaxNonceSize is the longest nonce a container accepts (RenderOffer.challenge, and
	// render.MaxChallenge on the container's side).
	MaxNonceSize = 64
	// MinNonceSize is the shortest nonce a Verifier accepts: shorter ones could be guessed and
	// their streams rendered ahead of time.
	MinNonceSize = 16
)

// Challenge is what a checker asks of a container in a simulation test: stream the built-in scene
// seeded by Nonce, at Width x Height and FPS. Issued is when the checker made it, on the
// checker's clock: no honest frame is stamped before.
type Challenge struct {
	Nonce              []byte
	Issued             time.Time
	Width, Height, FPS int
}

// NewChallenge draws a NonceSize-byte nonce from entropy (crypto/rand.Reader in production) and
// returns a challenge issued at now for a stream of width x height at fps.
func NewChallenge(entropy io.Reader, now time.Time, width, height, fps int) (Challenge, error) {
	nonce := make([]byte, NonceSize)
	if _, err := io.ReadFull(entropy, nonce); err != nil {
		return Challenge{}, fmt.Errorf("%w: drawing the nonce: %v", ErrChallenge, err)
	}
	c := Challenge{Nonce: nonce, Issued: now, Width: width, Height: height, FPS: fps}
	return c, c.Validate()
}

// Validate reports whether c can be sent and verified: a nonce of MinNonceSize..MaxNonceSize
// bytes, an issue time, an even size of at most 4096x4096 whose frames hold a stamp (at least 256
// pixels wide: the stamp's 64 columns of 4-pixel blocks) and rows of content below it, and a
// frame rate of 1..120.
func (c Challenge) Validate() error {
	switch {
	case len(c.Nonce) < MinNonceSize || len(c.Nonce) > MaxNonceSize:
		return fmt.Errorf("%w: nonce of %d bytes, want %d..%d", ErrChallenge, len(c.Nonce), MinNonceSize, MaxNonceSize)
	case c.Issued.IsZero():
		return fmt.Errorf("%w: no issue time", ErrChallenge)
	case c.Width < scene.StampColumns*scene.StampMinBlock || c.Height < 2*scene.StampBlock(c.Width)+16 ||
		c.Width%2 != 0 || c.Height%2 != 0 || c.Width > 4096 || c.Height > 4096:
		return fmt.Errorf("%w: size %dx%d, want even, at least %d wide and at most 4096x4096", ErrChallenge,
			c.Width, c.Height, scene.StampColumns*scene.StampMinBlock)
	case c.FPS < 1 || c.FPS > 120:
		return fmt.Errorf("%w: %d fps, want 1..120", ErrChallenge, c.FPS)
	}
	return nil
}

// Apply writes the challenge into the offer a checker's consumer sends: the nonce, the size and
// the frame rate.
func (c Challenge) Apply(o *pb.RenderOffer) {
	o.Challenge = slices.Clone(c.Nonce)
	o.Width, o.Height, o.Fps = uint32(c.Width), uint32(c.Height), uint32(c.FPS)
}

// Frame is one decoded frame as the checker's consumer saw it.
type Frame struct {
	Image *image.YCbCr
	// Number and Stamped are the frame number and render time read from the stamp; StampOK is
	// false when the frame has no readable stamp (and then they mean nothing).
	Number  uint32
	Stamped time.Time
	StampOK bool
	// Arrived is when the frame was decoded, on the checker's clock.
	Arrived time.Time
}

// ReadFrame reads img's stamp into a Frame that arrived at arrived.
func ReadFrame(img *image.YCbCr, arrived time.Time) Frame {
	n, t, ok := scene.ReadStamp(img)
	return Frame{Image: img, Number: n, Stamped: t, StampOK: ok, Arrived: arrived}
}

// StreamStats are what the consumer's transport measured over the session (render.PlayReport's
// BitrateKbps and InputRTTP50).
type StreamStats struct {
	BitrateKbps float64
	// RTT is the median round trip of the input channel's pings; 0: not measured.
	RTT time.Duration
}

// frameSample is one compared frame.
type frameSample struct {
	number           uint32
	stamped, arrived time.Time
	psnr, prevPSNR   float64
	matched          bool
	hash             [32]byte // SHA-256 of the frame's size and planes
}

// sceneRenderer re-renders the scene at one size.
type sceneRenderer struct {
	scene     *scene.Scene
	cur, prev *image.YCbCr
}

// Verifier judges one simulation test from the frames the checker's consumer decodes. Observe is
// called for each frame, in decoding order, and Finish once at the end. It reads no clock: times
// come with the frames and with Finish. A Verifier is safe for concurrent use (a player's
// callback may still run while the session is being finished); frames observed after Finish are
// ignored.
//
// Every frame's stamp is checked; a random share of frames (at most SamplesPerSecond a second)
// is re-rendered from the nonce and compared, which costs about two frames of rendering
// and two passes over the luma plane each (BenchmarkCompare).
type Verifier struct {
	c   Challenge
	cfg VerifierConfig

	mu       sync.Mutex
	rng      *rand.Rand
	renderer *sceneRenderer // at the size of the last compared frame
	finished bool

	frames, stamped int
	first, last     time.Time // arrivals of the first and last decoded frames
	maxGap          time.Duration
	sizes           map[[2]int]int // stamped frames by size
	lastNumber      uint32
	lastStamp       time.Time
	haveLast        bool
	beforeIssue     int       // stamps older than the challenge
	backwards       int       // frame numbers or stamp times that did not increase
	future          int       // stamps newer than their arrival
	firstBad        [3]string // the first of each of the above, in words
	latencies       []time.Duration
	tokens          float64 // sampling budget
	tokensAt        time.Time
	samples         []frameSample
}

// NewVerifier returns a Verifier for challenge c.
func NewVerifier(c Challenge, cfg VerifierConfig) (*Verifier, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c.Nonce = slices.Clone(c.Nonce)
	return &Verifier{
		c: c, cfg: cfg,
		rng:    rand.New(cfg.Rand),
		sizes:  map[[2]int]int{},
		tokens: 1,
	}, nil
}

// Observe takes in one decoded frame.
func (v *Verifier) Observe(f Frame) {
	if f.Image == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.finished {
		return
	}
	v.frames++
	if v.frames == 1 {
		v.first = f.Arrived
	} else if gap := f.Arrived.Sub(v.last); gap > v.maxGap {
		v.maxGap = gap
	}
	v.last = f.Arrived
	if !f.StampOK {
		return
	}
	v.stamped++
	w, h := f.Image.Rect.Dx(), f.Image.Rect.Dy()
	v.sizes[[2]int{w, h}]++

	// Freshness: every stamp.
	bad := func(kind int, what string) {
		if v.firstBad[kind] == "" {
			v.firstBad[kind] = what
		}
	}
	if f.Stamped.Before(v.c.Issued.Add(-v.cfg.ClockSkew)) {
		v.beforeIssue++
		bad(0, fmt.Sprintf("frame %d stamped %v, %v before the challenge", f.Number, f.Stamped.UTC().Format(time.RFC3339Nano), v.c.Issued.Sub(f.Stamped)))
	}
	if v.haveLast && (f.Number <= v.lastNumber || !f.Stamped.After(v.lastStamp)) {
		v.backwards++
		bad(1, fmt.Sprintf("frame %d (stamped %v) after frame %d (stamped %v)", f.Number, f.Stamped.UTC().Format(time.RFC3339Nano),
			v.lastNumber, v.lastStamp.UTC().Format(time.RFC3339Nano)))
	}
	lat := f.Arrived.Sub(f.Stamped)
	if lat < -v.cfg.ClockSkew {
		v.future++
		bad(2, fmt.Sprintf("frame %d stamped %v after it arrived", f.Number, -lat))
	}
	v.lastNumber, v.lastStamp, v.haveLast = f.Number, f.Stamped, true
	if len(v.latencies) < 1<<16 {
		v.latencies = append(v.latencies, lat)
	}

	if v.pick(f.Arrived) && comparable420(f.Image) {
		v.samples = append(v.samples, v.compare(f))
	}
}

// pick decides whether to compare the frame that arrived at t: a token bucket refilled at
// SamplesPerSecond (holding at most two) bounds the cost, and a coin with the chance of
// 2·SamplesPerSecond / FPS spreads the picks so that the container cannot tell which frames will
// be looked at.
func (v *Verifier) pick(t time.Time) bool {
	if v.cfg.SamplesPerSecond <= 0 {
		return false
	}
	if !v.tokensAt.IsZero() {
		if dt := t.Sub(v.tokensAt); dt > 0 {
			v.tokens = min(v.tokens+dt.Seconds()*v.cfg.SamplesPerSecond, 2)
		}
	}
	v.tokensAt = t
	if v.tokens < 1 {
		return false
	}
	if v.rng.Float64() >= 2*v.cfg.SamplesPerSecond/float64(v.c.FPS) {
		return false
	}
	v.tokens--
	return true
}

// comparable420 reports whether img is a frame compare can read: 4:2:0, an even size of at most
// 4096x4096 whose luma rows all lie in its plane.
func comparable420(img *image.YCbCr) bool {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if img.SubsampleRatio != image.YCbCrSubsampleRatio420 || w <= 0 || h <= 0 || w%2 != 0 || h%2 != 0 ||
		w > 4096 || h > 4096 || img.YStride < w || img.CStride < w/2 {
		return false
	}
	last := img.YOffset(img.Rect.Max.X-1, img.Rect.Max.Y-1)
	lastC := img.COffset(img.Rect.Max.X-1, img.Rect.Max.Y-1)
	return img.YOffset(img.Rect.Min.X, img.Rect.Min.Y) >= 0 && last < len(img.Y) &&
		img.COffset(img.Rect.Min.X, img.Rect.Min.Y) >= 0 && lastC < len(img.Cb) && lastC < len(img.Cr)
}

// compare re-renders the frame f's stamp names, and the one before, and measures f against both.
func (v *Verifier) compare(f Frame) frameSample {
	w, h := f.Image.Rect.Dx(), f.Image.Rect.Dy()
	r := v.renderer
	if r == nil || r.cur.Rect.Dx() != w || r.cur.Rect.Dy() != h {
		r = &sceneRenderer{scene: scene.New(w, h, v.c.Nonce), cur: scene.NewFrame(w, h), prev: scene.NewFrame(w, h)}
		v.renderer = r
	}
	rect := contentRect(w, h)
	r.scene.RenderContent(r.cur, f.Number)
	r.scene.RenderContent(r.prev, f.Number-1)
	s := frameSample{number: f.Number, stamped: f.Stamped, arrived: f.Arrived, hash: frameHash(f.Image)}
	s.psnr = lumaPSNR(r.cur, f.Image, rect)
	s.prevPSNR = lumaPSNR(r.prev, f.Image, rect)
	s.matched = s.psnr >= v.cfg.FloorPSNR && s.psnr-s.prevPSNR > v.cfg.AlignPSNR
	return s
}

// frameHash is the SHA-256 of a frame's size and its three planes, row by row.
func frameHash(img *image.YCbCr) [32]byte {
	h := sha256.New()
	w, ht := img.Rect.Dx(), img.Rect.Dy()
	var size [8]byte
	binary.BigEndian.PutUint32(size[:4], uint32(w))
	binary.BigEndian.PutUint32(size[4:], uint32(ht))
	h.Write(size[:])
	for y := range ht {
		off := img.YOffset(img.Rect.Min.X, img.Rect.Min.Y+y)
		h.Write(img.Y[off : off+w])
	}
	cw, ch := (w+1)/2, (ht+1)/2
	for _, plane := range [][]byte{img.Cb, img.Cr} {
		for y := range ch {
			off := img.COffset(img.Rect.Min.X, img.Rect.Min.Y+2*y)
			h.Write(plane[off : off+cw])
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// Finish ends the test at end (on the checker's clock, when the session ended) with what the
// transport measured, and returns the verdict. Later calls return the same result computed anew
// from the same observations; frames observed after the first call are ignored.
func (v *Verifier) Finish(end time.Time, st StreamStats) Result {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.finished = true
	m := v.measure(end, st)
	res := Result{Verdict: Pass, Measurements: m}
	fail := func(c Check, format string, args ...any) {
		if res.Verdict == Pass {
			res.Verdict, res.Check, res.Reason = Fail, c, fmt.Sprintf(format, args...)
		}
	}
	cfg := v.cfg
	c := v.c
	switch {
	case v.stamped == 0:
		fail(CheckStream, "no frame with a readable stamp among %d decoded", v.frames)
	case float64(v.frames-v.stamped) > cfg.UnstampedShare*float64(v.frames):
		fail(CheckStream, "%d of %d frames carry no readable stamp", v.frames-v.stamped, v.frames)
	}
	switch {
	case v.beforeIssue > 0:
		fail(CheckFreshness, "%d frames stamped before the challenge was issued (a recording): %s", v.beforeIssue, v.firstBad[0])
	case v.backwards > 0:
		fail(CheckFreshness, "%d frames whose number or stamp time went back (replayed or reordered): %s", v.backwards, v.firstBad[1])
	case v.future > 0:
		fail(CheckFreshness, "%d frames stamped later than they arrived (a clock set ahead): %s", v.future, v.firstBad[2])
	}
	if m.MaxGap > cfg.MaxGap {
		fail(CheckContinuity, "the stream stopped for %v (limit %v)", m.MaxGap.Round(time.Millisecond), cfg.MaxGap)
	}
	if m.FramesChecked < cfg.MinSamples {
		fail(CheckContent, "only %d frames compared with the scene, want %d (a stream too short or too sparse)", m.FramesChecked, cfg.MinSamples)
	} else if bad := m.FramesChecked - m.FramesMatched; float64(bad) > cfg.MaxMismatch*float64(m.FramesChecked) {
		fail(CheckContent, "%d of %d compared frames do not show the scene of this challenge at their stamped frame (PSNR min %.1f dB, median %.1f dB; floor %.1f dB, %s)",
			bad, m.FramesChecked, m.PSNRMin, m.PSNRMedian, cfg.FloorPSNR, v.mismatchHint())
	}
	if m.Width != c.Width || m.Height != c.Height {
		fail(CheckResolution, "frames are %dx%d, asked for %dx%d", m.Width, m.Height, c.Width, c.Height)
	}
	if want := cfg.FPSTolerance * float64(c.FPS); m.FPS < want {
		fail(CheckFrameRate, "%.1f frames/s, asked for %d (at least %.1f)", m.FPS, c.FPS, want)
	}
	if m.LatencyP50 > m.LatencyBound {
		fail(CheckLatency, "median stamp-to-arrival latency %v, bound %v (a forwarded stream, or a clock behind)",
			m.LatencyP50.Round(time.Millisecond), m.LatencyBound.Round(time.Millisecond))
	}
	if m.BitrateKbps < cfg.MinBitrateKbps {
		fail(CheckBitrate, "%.0f kbit/s received, at least %.0f expected", m.BitrateKbps, cfg.MinBitrateKbps)
	}
	res.EvidenceHash = v.evidence(&res, end, st)
	return res
}

// mismatchHint says how the failed frames fail: mostly below the floor (another scene) or closer
// to the previous frame (frames shown again).
func (v *Verifier) mismatchHint() string {
	low, behind := 0, 0
	for _, s := range v.samples {
		switch {
		case s.matched:
		case s.psnr < v.cfg.FloorPSNR:
			low++
		default:
			behind++
		}
	}
	if low >= behind {
		return fmt.Sprintf("%d below the floor: another scene or another frame", low)
	}
	return fmt.Sprintf("%d closer to the frame before: frames shown again under new stamps", behind)
}

func (v *Verifier) measure(end time.Time, st StreamStats) Measurements {
	m := Measurements{Frames: v.frames, FramesStamped: v.stamped, BitrateKbps: st.BitrateKbps, MaxGap: v.maxGap}
	if v.frames > 1 {
		if span := v.last.Sub(v.first); span > 0 {
			m.FPS = float64(v.frames-1) / span.Seconds()
		}
	}
	if v.frames > 0 {
		m.MaxGap = max(m.MaxGap, end.Sub(v.last))
	} else {
		m.MaxGap = max(end.Sub(v.c.Issued), 0)
	}
	best := 0
	for sz, n := range v.sizes {
		// The most frequent size; ties go to the larger, so the outcome does not depend on map order.
		if n > best || (n == best && sz[0]*sz[1] > m.Width*m.Height) {
			best, m.Width, m.Height = n, sz[0], sz[1]
		}
	}
	m.LatencyP50 = durationPercentile(v.latencies, 50)
	m.LatencyBound = v.cfg.MaxLatency
	if st.RTT > 0 {
		m.LatencyBound = min(st.RTT/2+v.cfg.LatencySlack, v.cfg.MaxLatency)
	}
	m.FramesChecked = len(v.samples)
	psnrs := make([]float64, 0, len(v.samples))
	for _, s := range v.samples {
		psnrs = append(psnrs, s.psnr)
		if s.matched {
			m.FramesMatched++
		}
	}
	if len(psnrs) > 0 {
		slices.Sort(psnrs)
		m.PSNRMin, m.PSNRMedian = psnrs[0], psnrs[len(psnrs)/2]
	}
	return m
}

// evidence hashes the challenge, the verdict, the measurements and every compared frame.
func (v *Verifier) evidence(r *Result, end time.Time, st StreamStats) [32]byte {
	e := newEvidence("rendermesh/checker/simulation/v1")
	e.bytes(v.c.Nonce)
	e.time(v.c.Issued)
	e.time(end)
	for _, n := range []int{v.c.Width, v.c.Height, v.c.FPS} {
		e.i64(int64(n))
	}
	e.result(r)
	e.measurements(&r.Measurements)
	e.dur(st.RTT)
	e.u64(uint64(len(v.samples)))
	for _, s := range v.samples {
		e.u64(uint64(s.number))
		e.time(s.stamped)
		e.time(s.arrived)
		e.milli(s.psnr)
		e.milli(s.prevPSNR)
		e.b = append(e.b, s.hash[:]...)
	}
	return e.sum()
}

// durationPercentile is the p-th percentile of d (nearest rank), 0 for none.
func durationPercentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}
