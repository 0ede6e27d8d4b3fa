package vpx

import (
	"image"
	"math"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/render/scene"
)

var t0 = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// sequence renders frames of the built-in scene: moving, textured, realistic to encode.
type sequence struct {
	s    *scene.Scene
	w, h int
	n    uint32
}

func newSequence(w, h int) *sequence {
	return &sequence{s: scene.New(w, h, []byte("vpx-test")), w: w, h: h}
}

// next renders the next frame, stamped.
func (q *sequence) next() *image.YCbCr {
	f := scene.NewFrame(q.w, q.h)
	q.s.Render(f, q.n, t0.Add(time.Duration(q.n)*33*time.Millisecond))
	q.n++
	return f
}

func newEncoder(t testing.TB, cfg EncoderConfig) *Encoder {
	t.Helper()
	e, err := NewEncoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func newDecoder(t testing.TB, opts ...DecoderOption) *Decoder {
	t.Helper()
	d, err := NewDecoder(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// psnr is the luma PSNR of b against a within r, in dB.
func psnr(a, b *image.YCbCr, r image.Rectangle) float64 {
	var se float64
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			d := float64(a.Y[y*a.YStride+x]) - float64(b.Y[y*b.YStride+x])
			se += d * d
			n++
		}
	}
	if se == 0 {
		return 99
	}
	return 10 * math.Log10(255*255*float64(n)/se)
}
