package vpx

import (
	"image"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/render/scene"
)

var t0 = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// sequence plays frames of the built-in scene: moving, textured, realistic to encode.
type sequence struct {
	frames []*image.YCbCr
	n      int
}

func newSequence(w, h int) *sequence {
	return &sequence{frames: sceneFrames(w, h)}
}

// next is the next frame. Frames are shared: do not modify them.
func (q *sequence) next() *image.YCbCr {
	f := q.frames[q.n%len(q.frames)]
	q.n++
	return f
}

// ringFrames is how many distinct frames a sequence renders; it then plays them backwards and
// forwards again (motion reverses, it never cuts). Rendering is the slow part of these tests
// under the race detector, so the frames are rendered once per size.
const ringFrames = 24

var (
	framesMu    sync.Mutex
	framesCache = map[[2]int][]*image.YCbCr{}
)

func sceneFrames(w, h int) []*image.YCbCr {
	framesMu.Lock()
	defer framesMu.Unlock()
	if f, ok := framesCache[[2]int{w, h}]; ok {
		return f
	}
	s := scene.New(w, h, []byte("vpx-test"))
	frames := make([]*image.YCbCr, 0, 2*ringFrames-2)
	for i := range ringFrames {
		f := scene.NewFrame(w, h)
		s.Render(f, uint32(i), t0.Add(time.Duration(i)*33*time.Millisecond))
		frames = append(frames, f)
	}
	for i := ringFrames - 2; i >= 1; i-- {
		frames = append(frames, frames[i])
	}
	framesCache[[2]int{w, h}] = frames
	return frames
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
