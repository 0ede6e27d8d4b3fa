package scene

import (
	"testing"
	"time"
)

func benchRender(b *testing.B, w, h int) {
	s := New(w, h, []byte("bench"))
	s.SetPointer(0.4, 0.6, true)
	dst := NewFrame(w, h)
	t0 := time.Unix(1_700_000_000, 0)
	b.SetBytes(int64(FrameBytes(w, h)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s.Render(dst, uint32(i), t0.Add(time.Duration(i)*33*time.Millisecond))
	}
}

// BenchmarkRender720p is the cost of one 1280x720 frame: scene, cursor and stamp.
func BenchmarkRender720p(b *testing.B) { benchRender(b, 1280, 720) }

// BenchmarkRender1080p is the cost of one 1920x1080 frame.
func BenchmarkRender1080p(b *testing.B) { benchRender(b, 1920, 1080) }

// BenchmarkReadStamp is the cost of reading a stamp back from a 720p frame.
func BenchmarkReadStamp(b *testing.B) {
	dst := NewFrame(1280, 720)
	New(1280, 720, []byte("bench")).Render(dst, 7, time.Unix(1_700_000_000, 0))
	for b.Loop() {
		if _, _, ok := ReadStamp(dst); !ok {
			b.Fatal("stamp not read")
		}
	}
}
