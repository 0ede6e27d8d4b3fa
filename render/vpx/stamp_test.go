package vpx

import (
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/render/scene"
)

// TestStampSurvivesCompression is the browser client's contract end to end: every frame of the
// scene, stamped, encoded at a low-ish bitrate and decoded, still reads back exactly.
func TestStampSurvivesCompression(t *testing.T) {
	for _, c := range []struct {
		w, h, kbps, frames int
	}{
		{640, 360, 500, 150},
		{1280, 720, 1500, 90},
	} {
		e := newEncoder(t, EncoderConfig{Width: c.w, Height: c.h, BitrateKbps: c.kbps})
		d := newDecoder(t)
		q := newSequence(c.w, c.h)
		src := scene.NewFrame(c.w, c.h)
		for i := range c.frames {
			frame := uint32(1_000_000 + i*7)
			when := t0.Add(time.Duration(i)*33*time.Millisecond + time.Duration(i*i)*time.Microsecond)
			// The scene's frames with a new stamp each: the stamp changes every frame, as live.
			f := q.next()
			copy(src.Y, f.Y)
			copy(src.Cb, f.Cb)
			copy(src.Cr, f.Cr)
			scene.Stamp(src, frame, when)
			data, _, err := e.Encode(src, i == 45)
			if err != nil {
				t.Fatal(err)
			}
			img, err := d.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			gf, gt, ok := scene.ReadStamp(img)
			if !ok || gf != frame || !gt.Equal(when.Truncate(time.Microsecond)) {
				t.Fatalf("%dx%d at %d kbit/s, frame %d: read (%d, %v, %v), want (%d, %v)",
					c.w, c.h, c.kbps, i, gf, gt, ok, frame, when)
			}
		}
	}
}
