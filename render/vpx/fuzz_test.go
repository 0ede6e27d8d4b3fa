package vpx

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// fuzzFrames encodes a few small frames of the moving scene: a keyframe and inter frames.
func fuzzFrames(t testing.TB) [][]byte {
	e := newEncoder(t, EncoderConfig{Width: 96, Height: 64, BitrateKbps: 300})
	q := newSequence(96, 64)
	var out [][]byte
	for range 4 {
		f, _, err := e.Encode(q.next(), false)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(f))
	}
	return out
}

// FuzzDecode feeds the decoder untrusted bytes: random data, and real frames cut short or with
// flipped bits. It must return errors, never crash, and any picture it returns must be whole.
// Each input is decoded twice: by a fresh decoder, and by one that has just decoded a real
// keyframe (so the input is also tried as an inter frame).
func FuzzDecode(f *testing.F) {
	frames := fuzzFrames(f)
	key := frames[0]
	r := rand.New(rand.NewPCG(7, 7))
	for _, fr := range frames {
		f.Add(fr)
		f.Add(fr[:len(fr)/2])
		f.Add(fr[:min(len(fr), 11)])
		flipped := bytes.Clone(fr)
		for range 3 {
			i := r.IntN(len(flipped))
			flipped[i] ^= 1 << r.IntN(8)
		}
		f.Add(flipped)
	}
	noise := make([]byte, 200)
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	f.Add(noise)
	f.Add([]byte{0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x04, 0x00, 0x04, 0, 0, 0, 0}) // 1024x1024, no data
	f.Add([]byte{0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x01, 0x00, 0x01, 0x00, 0xff})       // 1x1
	f.Add([]byte{0x00})

	f.Fuzz(func(t *testing.T, data []byte) {
		// A small size limit keeps each run fast; the limit itself is part of what is tested.
		const limit = 512
		check := func(d *Decoder) {
			img, err := d.Decode(data)
			if err != nil {
				if img != nil {
					t.Fatal("an image with an error")
				}
				var ce *CodecError
				if !errors.As(err, &ce) && !errors.Is(err, ErrNoFrame) && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, errEmpty) {
					t.Fatalf("unexpected error type: %v", err)
				}
				return
			}
			w, h := img.Rect.Dx(), img.Rect.Dy()
			if w < 1 || h < 1 || w > limit || h > limit || len(img.Y) < w*h || len(img.Cb) < ((w+1)/2)*((h+1)/2) {
				t.Fatalf("bad image %v with planes %d/%d", img.Rect, len(img.Y), len(img.Cb))
			}
		}
		fresh, err := NewDecoder(WithMaxFrameSize(limit, limit))
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		check(fresh)

		primed, err := NewDecoder(WithMaxFrameSize(limit, limit))
		if err != nil {
			t.Fatal(err)
		}
		defer primed.Close()
		if _, err := primed.Decode(key); err != nil {
			t.Fatal(err)
		}
		check(primed)
		check(primed) // and again, on whatever state the first attempt left
	})
}
