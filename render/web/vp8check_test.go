package web

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/image/vp8"
)

func decodeVP8(t *testing.T, frame []byte) (y []byte, stride, w, h int) {
	t.Helper()
	d := vp8.NewDecoder()
	d.Init(bytes.NewReader(frame), len(frame))
	fh, err := d.DecodeFrameHeader()
	if err != nil {
		t.Fatalf("frame header: %v", err)
	}
	img, err := d.DecodeFrame()
	if err != nil {
		t.Fatalf("frame: %v", err)
	}
	return img.Y, img.YStride, fh.Width, fh.Height
}

// The test encoder's frames decode, pixel for pixel, to the macroblocks asked for: every luma
// value next to every other, so every token and context is used.
func TestVP8FlatDecodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range [][2]int{{1, 1}, {3, 2}, {64, 36}} {
		mbW, mbH := size[0], size[1]
		for range 5 {
			luma := make([]uint8, mbW*mbH)
			for i := range luma {
				luma[i] = uint8(rng.IntN(256))
			}
			if mbW*mbH > 2 {
				luma[0], luma[1] = 0, 255 // the largest jumps
			}
			y, stride, w, h := decodeVP8(t, vp8Flat(mbW, mbH, luma))
			if w != mbW*16 || h != mbH*16 {
				t.Fatalf("decoded %dx%d, want %dx%d", w, h, mbW*16, mbH*16)
			}
			for py := range h {
				for px := range w {
					if got, want := y[py*stride+px], luma[(py/16)*mbW+px/16]; got != want {
						t.Fatalf("%dx%d MBs: pixel (%d,%d) = %d, want %d", mbW, mbH, px, py, got, want)
					}
				}
			}
		}
	}
}

// The fixture's frames carry a stamp a decoder reads back.
func TestFixtureFrameStamp(t *testing.T) {
	at := time.UnixMicro(1_760_000_000_123_456)
	frame := fixtureFrame(12345, at, 0.25, 0.5, true)
	y, stride, w, _ := decodeVP8(t, frame)
	b := max(4, w/64)
	us, n, ok := readStamp(y, stride, b)
	if !ok || us != uint64(at.UnixMicro()) || n != 12345 {
		t.Fatalf("stamp = %d, %d, %v; want %d, 12345, true", us, n, ok, at.UnixMicro())
	}
	t.Logf("a fixture frame is %d bytes", len(frame))
}
