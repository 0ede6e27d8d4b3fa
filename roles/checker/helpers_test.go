package checker

import (
	"image"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/render/scene"
	"github.com/rendermesh/rendermesh/render/vpx"
)

// t0 is the synthetic tests' clock origin.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// testConfig is the default VerifierConfig with a fixed sampling source.
func testConfig(seed uint64) VerifierConfig {
	return VerifierConfig{Rand: rand.NewPCG(seed, 0x636865636b)}
}

// nonce returns a fixed 32-byte nonce for a name.
func nonce(name string) []byte {
	b := make([]byte, NonceSize)
	copy(b, name)
	return b
}

// shown is one frame as a container produces it: the content of frame content of the scene for
// seed, stamped with number and at.
type shown struct {
	seed    []byte
	content uint32
	number  uint32
	at      time.Time
}

// vp8 sends frames through the sender's encoder (realtime VP8, CPUUsed 16, one thread, CBR at
// kbps) and a decoder, as a stream does, and returns the decoded pictures.
func vp8(t testing.TB, w, h, kbps int, frames []shown) []*image.YCbCr {
	t.Helper()
	enc, err := vpx.NewEncoder(vpx.EncoderConfig{Width: w, Height: h, FPS: 30, BitrateKbps: kbps, Threads: 1, CPUUsed: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	dec, err := vpx.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	scenes := map[string]*scene.Scene{}
	f := scene.NewFrame(w, h)
	out := make([]*image.YCbCr, 0, len(frames))
	for i, s := range frames {
		sc := scenes[string(s.seed)]
		if sc == nil {
			sc = scene.New(w, h, s.seed)
			scenes[string(s.seed)] = sc
		}
		sc.RenderContent(f, s.content)
		scene.Stamp(f, s.number, s.at)
		data, _, err := enc.Encode(f, i == 0)
		if err != nil {
			t.Fatal(err)
		}
		img, err := dec.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, img)
	}
	return out
}

// honestFrames is n frames of the scene for seed as an honest container streams them from
// start at fps: frame i+1 shows content i+1, stamped i+1 at start + i/fps.
func honestFrames(seed []byte, start time.Time, fps, n int) []shown {
	out := make([]shown, n)
	for i := range out {
		out[i] = shown{seed: seed, content: uint32(i + 1), number: uint32(i + 1), at: start.Add(time.Duration(i) * time.Second / time.Duration(fps))}
	}
	return out
}

// feed gives the verifier the decoded pictures, each arriving latency after its stamp, and
// returns the time of the last arrival.
func feed(v *Verifier, imgs []*image.YCbCr, latency time.Duration) time.Time {
	var last time.Time
	for _, img := range imgs {
		n, at, ok := scene.ReadStamp(img)
		last = at.Add(latency)
		v.Observe(Frame{Image: img, Number: n, Stamped: at, StampOK: ok, Arrived: last})
	}
	return last
}

// upscaleInto fills dst from src by nearest neighbour (a container rendering smaller than asked).
func upscaleInto(dst, src *image.YCbCr) {
	dw, dh := dst.Rect.Dx(), dst.Rect.Dy()
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	for y := range dh {
		for x := range dw {
			dst.Y[y*dst.YStride+x] = src.Y[(y*sh/dh)*src.YStride+x*sw/dw]
		}
	}
	for y := range (dh + 1) / 2 {
		for x := range (dw + 1) / 2 {
			sy, sx := y*((sh+1)/2)/((dh+1)/2), x*((sw+1)/2)/((dw+1)/2)
			dst.Cb[y*dst.CStride+x] = src.Cb[sy*src.CStride+sx]
			dst.Cr[y*dst.CStride+x] = src.Cr[sy*src.CStride+sx]
		}
	}
}
