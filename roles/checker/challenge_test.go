package checker

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render/scene"
)

func TestNewChallenge(t *testing.T) {
	c, err := NewChallenge(bytes.NewReader(bytes.Repeat([]byte{7}, 64)), t0, 320, 180, 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Nonce) != NonceSize || !c.Issued.Equal(t0) || c.Width != 320 || c.Height != 180 || c.FPS != 30 {
		t.Fatalf("challenge %+v", c)
	}
	var o pb.RenderOffer
	c.Apply(&o)
	if !bytes.Equal(o.GetChallenge(), c.Nonce) || o.GetWidth() != 320 || o.GetHeight() != 180 || o.GetFps() != 30 {
		t.Fatalf("offer %v", &o)
	}
	o.Challenge[0] ^= 1
	if c.Nonce[0] != 7 {
		t.Fatal("the offer shares the challenge's nonce")
	}

	if _, err := NewChallenge(iotest.ErrReader(errors.New("no entropy")), t0, 320, 180, 30); !errors.Is(err, ErrChallenge) {
		t.Errorf("a failing random source: %v, want ErrChallenge", err)
	}
	for _, bad := range []Challenge{
		{Nonce: make([]byte, 8), Issued: t0, Width: 320, Height: 180, FPS: 30},  // guessable
		{Nonce: make([]byte, 65), Issued: t0, Width: 320, Height: 180, FPS: 30}, // the container refuses it
		{Nonce: make([]byte, 32), Width: 320, Height: 180, FPS: 30},
		{Nonce: make([]byte, 32), Issued: t0, Width: 160, Height: 90, FPS: 30}, // no room for a stamp
		{Nonce: make([]byte, 32), Issued: t0, Width: 321, Height: 180, FPS: 30},
		{Nonce: make([]byte, 32), Issued: t0, Width: 320, Height: 180},
		{Nonce: make([]byte, 32), Issued: t0, Width: 320, Height: 180, FPS: 240},
	} {
		if err := bad.Validate(); !errors.Is(err, ErrChallenge) {
			t.Errorf("%d-byte nonce, %v, %dx%d@%d: %v, want ErrChallenge", len(bad.Nonce), bad.Issued, bad.Width, bad.Height, bad.FPS, err)
		}
	}
	if _, err := NewVerifier(Challenge{Nonce: nonce("x"), Issued: t0, Width: 320, Height: 180, FPS: 30}, VerifierConfig{}); !errors.Is(err, ErrConfig) {
		t.Errorf("no sampling source: %v, want ErrConfig", err)
	}
}

// verify runs a synthetic check on decoded pictures, each arriving latency after its stamp; the
// session ends a frame interval after the last arrival.
func verify(t *testing.T, c Challenge, cfg VerifierConfig, imgs []*image.YCbCr, latency time.Duration, st StreamStats) Result {
	t.Helper()
	v, err := NewVerifier(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	last := feed(v, imgs, latency)
	return v.Finish(last.Add(time.Second/time.Duration(c.FPS)), st)
}

// The verifier's checks one at a time, on streams made by the real encoder and decoder with a
// clock the test controls.
func TestVerifierSynthetic(t *testing.T) {
	const fps = 30
	chal := Challenge{Nonce: nonce("this check"), Issued: t0, Width: 320, Height: 180, FPS: fps}
	start := t0.Add(300 * time.Millisecond) // ICE and DTLS take a while
	honest := honestFrames(chal.Nonce, start, fps, 60)
	good := StreamStats{BitrateKbps: 400, RTT: 20 * time.Millisecond}
	map3 := func(f func(i int, s shown) shown) []shown {
		out := make([]shown, len(honest))
		for i, s := range honest {
			out[i] = f(i, s)
		}
		return out
	}
	cases := []struct {
		name    string
		kbps    int
		frames  []shown // nil: honest
		latency time.Duration
		stats   StreamStats
		want    Check
		reason  string // a word the reason must hold
	}{
		{name: "honest at the sender's floor", kbps: 150, latency: 40 * time.Millisecond, stats: good},
		{name: "honest at 2500 kbit/s", kbps: 2500, latency: 40 * time.Millisecond, stats: good},
		{name: "another seed", kbps: 500, latency: 40 * time.Millisecond, stats: good, want: CheckContent, reason: "below the floor",
			frames: map3(func(_ int, s shown) shown { s.seed = []byte("fixed seed"); return s })},
		{name: "earlier frames under fresh stamps (a loop of the first 10)", kbps: 500, latency: 40 * time.Millisecond, stats: good, want: CheckContent,
			frames: map3(func(i int, s shown) shown { s.content = uint32(i%10 + 1); return s })},
		{name: "every frame shown twice (half the rate, fresh stamps)", kbps: 500, latency: 40 * time.Millisecond, stats: good, want: CheckContent, reason: "closer to the frame before",
			frames: map3(func(i int, s shown) shown { s.content = uint32(i/2*2 + 1); return s })},
		{name: "one frame behind", kbps: 500, latency: 40 * time.Millisecond, stats: good, want: CheckContent, reason: "closer to the frame before",
			frames: map3(func(i int, s shown) shown { s.content = uint32(i); return s })},
		{name: "a recording of an earlier session of this nonce", kbps: 500, latency: 40 * time.Millisecond, stats: good, want: CheckFreshness, reason: "before the challenge",
			frames: map3(func(_ int, s shown) shown { s.at = s.at.Add(-time.Hour); return s })},
		{name: "a stretch played twice", kbps: 500, latency: 40 * time.Millisecond, stats: good, want: CheckFreshness, reason: "went back",
			frames: append(append([]shown(nil), honest[:40]...), honest[10:30]...)},
		{name: "stamps from the future", kbps: 500, latency: -time.Second, stats: good, want: CheckFreshness, reason: "later than they arrived"},
		{name: "forwarded: 200 ms more than half the round trip", kbps: 500, latency: 250 * time.Millisecond, stats: good, want: CheckLatency},
		{name: "forwarded far, round trip unknown", kbps: 500, latency: 600 * time.Millisecond, stats: StreamStats{BitrateKbps: 400}, want: CheckLatency},
		{name: "a far checker allows its round trip", kbps: 500, latency: 170 * time.Millisecond, stats: StreamStats{BitrateKbps: 400, RTT: 300 * time.Millisecond}},
		{name: "half the frame rate", kbps: 500, latency: 40 * time.Millisecond, stats: good, want: CheckFrameRate,
			frames: map3(func(i int, s shown) shown { s.at = start.Add(time.Duration(i) * time.Second / (fps / 2)); return s })},
		{name: "a trickle of bits", kbps: 500, latency: 40 * time.Millisecond, stats: StreamStats{BitrateKbps: 40, RTT: 20 * time.Millisecond}, want: CheckBitrate},
		{name: "silent for 1.5 s", kbps: 500, latency: 40 * time.Millisecond, stats: good, want: CheckContinuity,
			frames: map3(func(i int, s shown) shown {
				if i >= 30 {
					s.at = s.at.Add(1500 * time.Millisecond)
				}
				return s
			})},
	}
	honestAt := map[int][]*image.YCbCr{} // the honest stream, encoded once per bitrate
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			imgs := honestAt[tc.kbps]
			if tc.frames != nil {
				imgs = vp8(t, chal.Width, chal.Height, tc.kbps, tc.frames)
			} else if imgs == nil {
				imgs = vp8(t, chal.Width, chal.Height, tc.kbps, honest)
				honestAt[tc.kbps] = imgs
			}
			r := verify(t, chal, testConfig(1), imgs, tc.latency, tc.stats)
			m := r.Measurements
			t.Logf("%v %s %s; %d frames, %.1f fps, %dx%d, latency %v (bound %v), gap %v, %d/%d matched, PSNR min %.1f median %.1f",
				r.Verdict, r.Check, r.Reason, m.Frames, m.FPS, m.Width, m.Height, m.LatencyP50, m.LatencyBound, m.MaxGap, m.FramesMatched, m.FramesChecked, m.PSNRMin, m.PSNRMedian)
			if tc.want == CheckNone {
				if r.Verdict != Pass {
					t.Fatalf("an honest stream failed: %s: %s", r.Check, r.Reason)
				}
				return
			}
			if r.Verdict != Fail || r.Check != tc.want {
				t.Fatalf("verdict %v %q, want fail on %q", r.Verdict, r.Check, tc.want)
			}
			if !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", r.Reason, tc.reason)
			}
		})
	}
}

// A recording of another challenge's session fails on every count a replay can: its stamps are
// older than this challenge, and its pictures are another nonce's scene.
func TestVerifierRecordingOfAnotherChallenge(t *testing.T) {
	earlier := Challenge{Nonce: nonce("earlier check"), Issued: t0, Width: 320, Height: 180, FPS: 30}
	recorded := vp8(t, 320, 180, 500, honestFrames(earlier.Nonce, t0.Add(time.Second), 30, 60))
	later := earlier
	later.Nonce, later.Issued = nonce("this check"), t0.Add(10*time.Minute)
	v, err := NewVerifier(later, testConfig(2))
	if err != nil {
		t.Fatal(err)
	}
	// Played back now with their timing kept: the stamps say ten minutes ago.
	var end time.Time
	for _, img := range recorded {
		f := ReadFrame(img, time.Time{})
		end = f.Stamped.Add(later.Issued.Sub(t0) + 40*time.Millisecond)
		f.Arrived = end
		v.Observe(f)
	}
	r := v.Finish(end, StreamStats{BitrateKbps: 500})
	if r.Verdict != Fail || r.Check != CheckFreshness {
		t.Fatalf("%v %s: %s; want a freshness failure", r.Verdict, r.Check, r.Reason)
	}
	// Had it restamped them, the content would give it away.
	restamped := make([]shown, 60)
	for i := range restamped {
		restamped[i] = shown{seed: earlier.Nonce, content: uint32(i + 1), number: uint32(i + 1), at: later.Issued.Add(time.Second + time.Duration(i)*time.Second/30)}
	}
	r = verify(t, later, testConfig(2), vp8(t, 320, 180, 500, restamped), 40*time.Millisecond, StreamStats{BitrateKbps: 500})
	if r.Verdict != Fail || r.Check != CheckContent || r.Measurements.PSNRMedian > DefaultFloorPSNR {
		t.Fatalf("%v %s: %s (median PSNR %.1f dB); want a content failure far below the floor", r.Verdict, r.Check, r.Reason, r.Measurements.PSNRMedian)
	}
}

// The sampled frames are spread by a secret source and their number is bounded by
// SamplesPerSecond however fast the frames come; the outcome is a pure function of the inputs
// and that source.
func TestVerifierSamplingAndEvidence(t *testing.T) {
	chal := Challenge{Nonce: nonce("sampling"), Issued: t0, Width: 320, Height: 180, FPS: 60}
	imgs := vp8(t, 320, 180, 500, honestFrames(chal.Nonce, t0.Add(time.Second), 60, 240)) // 4 s at 60 fps
	run := func(seed uint64, tamper uint32) (Result, []uint32) {
		v, err := NewVerifier(chal, testConfig(seed))
		if err != nil {
			t.Fatal(err)
		}
		var last time.Time
		for i, img := range imgs {
			if uint32(i+1) == tamper {
				img = cloneYCbCr(img)
				img.Y[len(img.Y)-1] ^= 0xff
			}
			f := ReadFrame(img, time.Time{})
			last = f.Stamped.Add(30 * time.Millisecond)
			f.Arrived = last
			v.Observe(f)
		}
		r := v.Finish(last, StreamStats{BitrateKbps: 500, RTT: 10 * time.Millisecond})
		var picked []uint32
		for _, s := range v.samples {
			picked = append(picked, s.number)
		}
		return r, picked
	}
	a, pa := run(1, 0)
	b, pb := run(1, 0)
	c, pc := run(2, 0)
	if a.Verdict != Pass {
		t.Fatalf("%s: %s", a.Check, a.Reason)
	}
	if got, most := a.Measurements.FramesChecked, DefaultSamplesPerSecond*4+2; got > most || got < DefaultSamplesPerSecond*4/2 {
		t.Errorf("%d frames compared over 4 s at 60 fps, want at most %d and not much fewer", got, most)
	}
	if a.EvidenceHash != b.EvidenceHash || fmt.Sprint(pa) != fmt.Sprint(pb) {
		t.Error("the same frames and source gave different samples or evidence")
	}
	if fmt.Sprint(pa) == fmt.Sprint(pc) || a.EvidenceHash == c.EvidenceHash {
		t.Error("another sampling source picked the same frames")
	}
	t.Logf("picked with source 1: %v", pa)
	// A changed pixel in a frame that was compared changes the evidence.
	if d, pd := run(1, pa[len(pa)/2]); d.EvidenceHash == a.EvidenceHash || fmt.Sprint(pd) != fmt.Sprint(pa) {
		t.Error("a sampled frame changed and the evidence did not")
	}
}

func cloneYCbCr(img *image.YCbCr) *image.YCbCr {
	c := *img
	c.Y, c.Cb, c.Cr = bytes.Clone(img.Y), bytes.Clone(img.Cb), bytes.Clone(img.Cr)
	return &c
}

// Frames without a stamp (a real application's, or a stream too small for one) cannot be judged.
func TestVerifierUnstamped(t *testing.T) {
	chal := Challenge{Nonce: nonce("unstamped"), Issued: t0, Width: 320, Height: 180, FPS: 30}
	v, err := NewVerifier(chal, testConfig(3))
	if err != nil {
		t.Fatal(err)
	}
	img := scene.NewFrame(320, 180)
	scene.New(320, 180, chal.Nonce).RenderContent(img, 1)
	for i := range 60 {
		v.Observe(ReadFrame(img, t0.Add(time.Second+time.Duration(i)*time.Second/30)))
	}
	r := v.Finish(t0.Add(3*time.Second), StreamStats{BitrateKbps: 500})
	if r.Verdict != Fail || r.Check != CheckStream {
		t.Fatalf("%v %s: %s; want a stream failure", r.Verdict, r.Check, r.Reason)
	}
	// Nothing at all arrived: a stream failure too, not a panic.
	v, _ = NewVerifier(chal, testConfig(3))
	if r := v.Finish(t0.Add(3*time.Second), StreamStats{}); r.Verdict != Fail || r.Check != CheckStream {
		t.Fatalf("no frames: %v %s", r.Verdict, r.Check)
	}
}

// The content comparison skips the stamp's rows, rounded up to a macroblock, and nothing else.
func TestContentRect(t *testing.T) {
	for _, c := range []struct{ w, h, top int }{{320, 180, 16}, {640, 360, 32}, {1280, 720, 48}, {1920, 1080, 64}, {256, 144, 16}} {
		if got := contentRect(c.w, c.h); got != image.Rect(0, c.top, c.w, c.h) {
			t.Errorf("%dx%d: %v, want rows %d..%d", c.w, c.h, got, c.top, c.h)
		}
		if c.top < 2*scene.StampBlock(c.w) {
			t.Errorf("%dx%d: row %d is inside the stamp", c.w, c.h, c.top)
		}
	}
	a, b := scene.NewFrame(320, 180), scene.NewFrame(320, 180)
	s := scene.New(320, 180, nonce("rect"))
	s.RenderContent(a, 5)
	s.Render(b, 5, t0) // adds only the stamp: no pointer, no cursor
	if p := lumaPSNR(a, b, contentRect(320, 180)); p != MaxPSNR {
		t.Errorf("the stamped frame differs from the content below the stamp: %.1f dB", p)
	}
}

// BenchmarkCompare is a checker's cost per compared frame: re-rendering the frame the stamp names
// and the one before, two luma PSNRs and the frame's hash (cpu-ns/frame is the process's CPU
// time). Run:
//
//	go test -run '^$' -bench Compare -benchtime 200x ./roles/checker
func BenchmarkCompare(b *testing.B) {
	for _, sz := range [][2]int{{320, 180}, {640, 360}, {1280, 720}, {1920, 1080}} {
		w, h := sz[0], sz[1]
		b.Run(fmt.Sprintf("%dx%d", w, h), func(b *testing.B) {
			chal := Challenge{Nonce: nonce("bench"), Issued: t0, Width: w, Height: h, FPS: 30}
			imgs := vp8(b, w, h, 2500, honestFrames(chal.Nonce, t0, 30, 30))
			v, err := NewVerifier(chal, testConfig(1))
			if err != nil {
				b.Fatal(err)
			}
			frames := make([]Frame, len(imgs))
			for i, img := range imgs {
				frames[i] = ReadFrame(img, t0)
			}
			cpu := cpuTime()
			i := 0
			for b.Loop() {
				s := v.compare(frames[i%len(frames)])
				if !s.matched {
					b.Fatalf("frame %d did not match: %.1f dB", s.number, s.psnr)
				}
				i++
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(i), "cpu-ns/frame")
		})
	}
}

// BenchmarkObserve is the cost of a frame that is not compared: reading its stamp and the
// freshness bookkeeping.
func BenchmarkObserve(b *testing.B) {
	chal := Challenge{Nonce: nonce("bench"), Issued: t0, Width: 1280, Height: 720, FPS: 30}
	img := vp8(b, 1280, 720, 2500, honestFrames(chal.Nonce, t0, 30, 1))[0]
	cfg := testConfig(1)
	cfg.SamplesPerSecond = -1 // never compare
	v := &Verifier{c: chal, cfg: cfg, sizes: map[[2]int]int{}}
	at := t0
	n := uint32(0)
	for b.Loop() {
		n++
		at = at.Add(time.Millisecond)
		f := ReadFrame(img, at)
		f.Number, f.Stamped = n, at
		v.Observe(f)
	}
}
