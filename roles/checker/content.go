package checker

import (
	"image"
	"math"

	"github.com/rendermesh/rendermesh/render/scene"
)

// MaxPSNR is the PSNR reported for two identical regions (no error at all).
const MaxPSNR = 99.0

// contentTop is the first row the content comparison looks at in a frame width pixels wide:
// below the stamp's two rows of blocks, rounded up to VP8's 16-pixel macroblocks, because the
// encoder smears the stamp's hard edges across the macroblocks that hold it and the reference
// (RenderContent) has no stamp.
func contentTop(width int) int {
	return (2*scene.StampBlock(width) + 15) &^ 15
}

// contentRect is the part of a w x h frame that is compared with the re-rendered scene: all of
// it but the stamp's rows. The built-in scene draws no cursor unless the consumer moved a
// pointer, and a checker sends none, so no cursor area is masked.
func contentRect(w, h int) image.Rectangle {
	return image.Rect(0, min(contentTop(w), h), w, h)
}

// lumaPSNR is the PSNR in dB of got's luma against want's within r (in both images' own
// coordinates from their origin), or MaxPSNR when they are identical. Both images must hold r.
func lumaPSNR(want, got *image.YCbCr, r image.Rectangle) float64 {
	if r.Empty() {
		return 0
	}
	var sse uint64
	w := r.Dx()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		a := want.Y[want.YOffset(want.Rect.Min.X+r.Min.X, want.Rect.Min.Y+y):][:w]
		b := got.Y[got.YOffset(got.Rect.Min.X+r.Min.X, got.Rect.Min.Y+y):][:w]
		sse += rowSSE(a, b)
	}
	return psnrOf(sse, uint64(w)*uint64(r.Dy()))
}

// rowSSE is the sum of squared differences of two rows of the same length.
func rowSSE(a, b []byte) uint64 {
	b = b[:len(a)]
	var sse uint64
	for i := range a {
		d := int32(a[i]) - int32(b[i])
		sse += uint64(d * d)
	}
	return sse
}

// psnrOf turns a sum of squared 8-bit errors over n samples into dB, capped at MaxPSNR.
func psnrOf(sse, n uint64) float64 {
	if sse == 0 {
		return MaxPSNR
	}
	return min(10*math.Log10(255*255*float64(n)/float64(sse)), MaxPSNR)
}
