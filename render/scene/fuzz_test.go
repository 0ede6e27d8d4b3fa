package scene

import (
	"image"
	"testing"
	"time"
)

// FuzzReadStamp feeds ReadStamp (and Stamp) images of arbitrary geometry and plane contents: it
// must never panic, and whatever Stamp writes into an image that fits, ReadStamp must read back.
func FuzzReadStamp(f *testing.F) {
	// Small seeds: the fuzzer mutates big byte slices slowly.
	good := NewFrame(256, 8)
	Stamp(good, 42, t0)
	f.Add(good.Y, 256, 8, 0, 0, 256, 128, uint8(2), uint32(42), int64(t0.UnixMicro()))
	f.Add(make([]byte, 260*10), 260, 10, 0, 0, 260, 130, uint8(2), uint32(1), int64(0))
	f.Add([]byte{1, 2, 3}, 1<<40, 3, -5, 7, 1<<20, -1, uint8(5), uint32(0), int64(-1))
	f.Add(make([]byte, 300*10), 300, 10, 1, 1, 299, 150, uint8(0), uint32(9), int64(99))
	f.Fuzz(func(t *testing.T, y []byte, w, h, minX, minY, yStride, cStride int, ratio uint8, frame uint32, us int64) {
		img := &image.YCbCr{
			Y:              y,
			Cb:             make([]byte, min(len(y)/2, 1<<20)),
			Cr:             make([]byte, min(len(y)/2, 1<<20)),
			YStride:        yStride,
			CStride:        cStride,
			SubsampleRatio: image.YCbCrSubsampleRatio(ratio % 6),
			Rect:           image.Rectangle{Min: image.Pt(minX, minY), Max: image.Pt(minX+w, minY+h)},
		}
		ReadStamp(img) // arbitrary bytes: any answer, no panic
		tm := time.UnixMicro(us)
		Stamp(img, frame, tm)
		if _, fits := stampFits(img); !fits {
			return
		}
		gf, gt, ok := ReadStamp(img)
		if !ok || gf != frame || !gt.Equal(tm) {
			t.Fatalf("stamped (%d, %v), read (%d, %v, %v)", frame, tm, gf, gt, ok)
		}
	})
}
