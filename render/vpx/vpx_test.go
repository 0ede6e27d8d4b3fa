package vpx

import (
	"bytes"
	"errors"
	"image"
	"testing"

	"github.com/rendermesh/rendermesh/render/scene"
)

func TestEncodeDecodeQuality(t *testing.T) {
	const w, h, frames = 640, 360, 60
	e := newEncoder(t, EncoderConfig{Width: w, Height: h, BitrateKbps: 2000})
	d := newDecoder(t)
	q := newSequence(w, h)
	var sum float64
	worst := 99.0
	for i := range frames {
		src := q.next()
		data, key, err := e.Encode(src, false)
		if err != nil {
			t.Fatal(err)
		}
		if data == nil {
			t.Fatalf("frame %d dropped without a drop threshold", i)
		}
		if (i == 0) != key {
			t.Fatalf("frame %d keyframe=%v", i, key)
		}
		got, err := d.Decode(data)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got.Rect != src.Rect {
			t.Fatalf("decoded %v, want %v", got.Rect, src.Rect)
		}
		p := psnr(src, got, src.Rect)
		sum += p
		worst = min(worst, p)
	}
	t.Logf("640x360 at 2 Mbit/s: mean Y PSNR %.1f dB, worst %.1f dB", sum/frames, worst)
	if mean := sum / frames; mean < 30 || worst < 25 {
		t.Fatalf("mean Y PSNR %.1f dB (worst %.1f), want at least 30 (25)", mean, worst)
	}
}

func TestForcedKeyframe(t *testing.T) {
	e := newEncoder(t, EncoderConfig{Width: 320, Height: 180})
	q := newSequence(320, 180)
	for i := range 20 {
		force := i == 10 || i == 11
		_, key, err := e.Encode(q.next(), force)
		if err != nil {
			t.Fatal(err)
		}
		if want := i == 0 || force; key != want {
			t.Fatalf("frame %d: keyframe=%v, want %v", i, key, want)
		}
	}
}

// encodedBytes encodes n frames of q and returns the total size.
func encodedBytes(t *testing.T, e *Encoder, q *sequence, n int) int {
	t.Helper()
	total := 0
	for range n {
		data, _, err := e.Encode(q.next(), false)
		if err != nil {
			t.Fatal(err)
		}
		total += len(data)
	}
	return total
}

func TestBitrateChangeChangesSize(t *testing.T) {
	e := newEncoder(t, EncoderConfig{Width: 640, Height: 360, BitrateKbps: 1500})
	q := newSequence(640, 360)
	encodedBytes(t, e, q, 30) // settle
	mid := encodedBytes(t, e, q, 60)
	if err := e.SetBitrate(300); err != nil {
		t.Fatal(err)
	}
	if e.Bitrate() != 300 {
		t.Fatalf("Bitrate() = %d", e.Bitrate())
	}
	encodedBytes(t, e, q, 30)
	low := encodedBytes(t, e, q, 60)
	if err := e.SetBitrate(3000); err != nil {
		t.Fatal(err)
	}
	encodedBytes(t, e, q, 30)
	high := encodedBytes(t, e, q, 60)
	t.Logf("60 frames: %d bytes at 1500, %d at 300, %d at 3000 kbit/s", mid, low, high)
	if !(low < mid && mid < high) {
		t.Fatalf("sizes do not follow the bitrate: 300→%d, 1500→%d, 3000→%d", low, mid, high)
	}
	// Roughly on target: 60 frames at 30 fps are 2 s.
	if want := 300 * 1000 / 8 * 2; low > want*2 {
		t.Fatalf("300 kbit/s made %d bytes in 2 s, want about %d", low, want)
	}
	if err := e.SetBitrate(0); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("SetBitrate(0): %v", err)
	}
}

func TestResizeDecoderFollows(t *testing.T) {
	for _, threads := range []int{1, 2} {
		e := newEncoder(t, EncoderConfig{Width: 640, Height: 360, Threads: threads})
		d := newDecoder(t)
		steps := []struct {
			w, h   int
			reinit bool
		}{
			{640, 360, false},
			{320, 180, false}, // smaller: in place
			{480, 270, false}, // up again, still within the first size: in place
			{640, 360, false},
			{960, 540, true}, // beyond the first size: a new libvpx encoder
			{320, 180, false},
		}
		for _, s := range steps {
			before := e.reinits
			if err := e.Resize(s.w, s.h); err != nil {
				t.Fatal(err)
			}
			if got := e.reinits > before; got != s.reinit {
				t.Fatalf("resize to %dx%d: re-initialised=%v, want %v", s.w, s.h, got, s.reinit)
			}
			q := newSequence(s.w, s.h)
			for i := range 6 {
				src := q.next()
				data, key, err := e.Encode(src, false)
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 && !key {
					t.Fatalf("first frame at %dx%d is not a keyframe", s.w, s.h)
				}
				got, err := d.Decode(data)
				if err != nil {
					t.Fatalf("%dx%d frame %d: %v", s.w, s.h, i, err)
				}
				if got.Rect.Dx() != s.w || got.Rect.Dy() != s.h {
					t.Fatalf("decoded %v, want %dx%d", got.Rect, s.w, s.h)
				}
				if p := psnr(src, got, src.Rect); p < 25 {
					t.Fatalf("%dx%d frame %d: PSNR %.1f dB", s.w, s.h, i, p)
				}
			}
		}
		if w, h := e.Size(); w != 320 || h != 180 {
			t.Fatalf("Size() = %dx%d", w, h)
		}
	}
}

func TestResizeRejectsBadSizes(t *testing.T) {
	e := newEncoder(t, EncoderConfig{Width: 320, Height: 180})
	for _, s := range [][2]int{{321, 180}, {320, 181}, {14, 180}, {320, 0}, {MaxDimension + 2, 180}} {
		if err := e.Resize(s[0], s[1]); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("Resize(%d, %d): %v", s[0], s[1], err)
		}
	}
	// The encoder still works at its size.
	if _, _, err := e.Encode(newSequence(320, 180).next(), false); err != nil {
		t.Fatal(err)
	}
}

func TestEncodeRejectsWrongImage(t *testing.T) {
	e := newEncoder(t, EncoderConfig{Width: 320, Height: 180})
	bad := []*image.YCbCr{
		nil,
		scene.NewFrame(640, 360),
		image.NewYCbCr(image.Rect(0, 0, 320, 180), image.YCbCrSubsampleRatio444),
		func() *image.YCbCr { f := scene.NewFrame(320, 180); f.Y = f.Y[:100]; return f }(),
		func() *image.YCbCr { f := scene.NewFrame(320, 180); f.Cr = f.Cr[:len(f.Cr)-1]; return f }(),
		func() *image.YCbCr { f := scene.NewFrame(320, 180); f.YStride = 100; return f }(),
	}
	for i, img := range bad {
		if _, _, err := e.Encode(img, false); !errors.Is(err, ErrImage) {
			t.Fatalf("image %d: %v, want ErrImage", i, err)
		}
	}
}

func TestEncodeSubImage(t *testing.T) {
	// A 320x180 window of a bigger frame encodes like the same pixels in a frame of their own.
	big := newSequence(640, 360).next()
	sub := big.SubImage(image.Rect(100, 50, 420, 230)).(*image.YCbCr)
	own := scene.NewFrame(320, 180)
	for y := range 180 {
		copy(own.Y[y*own.YStride:][:320], big.Y[(y+50)*big.YStride+100:])
	}
	for y := range 90 {
		copy(own.Cb[y*own.CStride:][:160], big.Cb[(y+25)*big.CStride+50:])
		copy(own.Cr[y*own.CStride:][:160], big.Cr[(y+25)*big.CStride+50:])
	}
	a := newEncoder(t, EncoderConfig{Width: 320, Height: 180})
	b := newEncoder(t, EncoderConfig{Width: 320, Height: 180})
	fa, _, err := a.Encode(sub, false)
	if err != nil {
		t.Fatal(err)
	}
	fb, _, err := b.Encode(own, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fa, fb) {
		t.Fatal("a sub-image encodes differently from the same pixels")
	}
}

func TestFrameDrops(t *testing.T) {
	// Far too little bitrate for the content, with drops allowed: some frames are skipped and
	// reported as nil, and the rest still decode.
	e := newEncoder(t, EncoderConfig{Width: 640, Height: 360, BitrateKbps: 40, FrameDropThreshold: 30})
	d := newDecoder(t)
	q := newSequence(640, 360)
	dropped := 0
	owed := false // a keyframe was asked for at frame 30 and has not come yet
	for i := range 60 {
		data, key, err := e.Encode(q.next(), i == 30)
		if err != nil {
			t.Fatal(err)
		}
		owed = owed || i == 30
		if data == nil {
			dropped++
			continue
		}
		if owed && !key {
			t.Fatalf("frame %d: the keyframe asked for at frame 30 was lost", i)
		}
		owed = false
		if _, err := d.Decode(data); err != nil {
			t.Fatal(err)
		}
	}
	if owed {
		t.Fatal("the keyframe asked for never came")
	}
	t.Logf("dropped %d of 60 frames at 40 kbit/s", dropped)
	if dropped == 0 {
		t.Fatal("no frame dropped at 40 kbit/s with a drop threshold")
	}
}

func TestROI(t *testing.T) {
	const w, h, frames = 640, 360, 60
	roi := image.Rect(256, 128, 384, 256)
	run := func(withROI bool) (in, out float64) {
		e := newEncoder(t, EncoderConfig{Width: w, Height: h, BitrateKbps: 250})
		d := newDecoder(t)
		q := newSequence(w, h)
		if withROI {
			if err := e.SetROI(roi, -30); err != nil {
				t.Fatal(err)
			}
		}
		for i := range frames {
			src := q.next()
			if withROI && i%7 == 0 {
				if err := e.SetROI(roi, -30); err != nil { // the same region again is free
					t.Fatal(err)
				}
			}
			data, _, err := e.Encode(src, false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if i >= 10 {
				in += psnr(src, got, roi)
				out += psnr(src, got, image.Rect(0, 40, w, 120)) // a band away from the ROI
			}
		}
		return in / (frames - 10), out / (frames - 10)
	}
	in0, out0 := run(false)
	in1, out1 := run(true)
	t.Logf("250 kbit/s, Y PSNR inside/outside the ROI: without %.2f/%.2f dB, with %.2f/%.2f dB", in0, out0, in1, out1)
	if in1-in0 < 1 {
		t.Fatalf("the ROI gained %.2f dB inside, want at least 1", in1-in0)
	}
	if in1-in0 <= out1-out0 {
		t.Fatalf("the ROI helped outside (%.2f dB) as much as inside (%.2f dB)", out1-out0, in1-in0)
	}
}

func TestROIEdges(t *testing.T) {
	e := newEncoder(t, EncoderConfig{Width: 320, Height: 180})
	q := newSequence(320, 180)
	for _, r := range []image.Rectangle{
		image.Rect(-50, -50, 20, 20), // clipped
		image.Rect(300, 170, 400, 400),
		image.Rect(1000, 1000, 1100, 1100), // outside: clears
		image.Rect(0, 0, 320, 180),
		{}, // empty: clears
	} {
		if err := e.SetROI(r, -20); err != nil {
			t.Fatalf("SetROI(%v): %v", r, err)
		}
		if _, _, err := e.Encode(q.next(), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.SetROI(image.Rect(0, 0, 16, 16), -64); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("delta q -64: %v", err)
	}
	if err := e.SetROI(image.Rect(0, 0, 64, 64), -20); err != nil {
		t.Fatal(err)
	}
	if err := e.ClearROI(); err != nil {
		t.Fatal(err)
	}
	// A resize drops the region; setting one at the new size works.
	if err := e.SetROI(image.Rect(0, 0, 64, 64), -20); err != nil {
		t.Fatal(err)
	}
	if err := e.Resize(160, 90); err != nil {
		t.Fatal(err)
	}
	if err := e.SetROI(image.Rect(0, 0, 64, 64), -20); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Encode(newSequence(160, 90).next(), false); err != nil {
		t.Fatal(err)
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	e, err := NewEncoder(EncoderConfig{Width: 320, Height: 180})
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := e.Encode(newSequence(320, 180).next(), false)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Clone(data)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Encode(scene.NewFrame(320, 180), false); !errors.Is(err, ErrClosed) {
		t.Fatalf("Encode after Close: %v", err)
	}
	for name, err := range map[string]error{
		"SetBitrate": e.SetBitrate(100),
		"Resize":     e.Resize(160, 90),
		"SetROI":     e.SetROI(image.Rect(0, 0, 16, 16), -10),
		"ClearROI":   e.ClearROI(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("%s after Close: %v", name, err)
		}
	}

	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decode(data); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decode(data); !errors.Is(err, ErrClosed) {
		t.Fatalf("Decode after Close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := EncoderConfig{Width: 1280, Height: 720}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := EncoderConfig{Width: 1280, Height: 720, FPS: 30, BitrateKbps: 2000, Threads: 1, CPUUsed: 8, KeyframeInterval: 3000}
	if c != want {
		t.Fatalf("defaults: %+v", c)
	}
	for _, bad := range []EncoderConfig{
		{Width: 0, Height: 720},
		{Width: 1281, Height: 720},
		{Width: 1280, Height: 720, FPS: -1},
		{Width: 1280, Height: 720, Threads: 17},
		{Width: 1280, Height: 720, CPUUsed: 17},
		{Width: 1280, Height: 720, BitrateKbps: -5},
		{Width: 1280, Height: 720, FrameDropThreshold: 101},
	} {
		if err := bad.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("%+v: %v", bad, err)
		}
		if _, err := NewEncoder(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("NewEncoder(%+v): %v", bad, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	d := newDecoder(t)
	if _, err := d.Decode(nil); err == nil {
		t.Fatal("empty input decoded")
	}
	_, err := d.Decode([]byte("this is not a vp8 frame at all"))
	var ce *CodecError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCodec) || ce.Msg == "" {
		t.Fatalf("garbage: %v", err)
	}
	t.Logf("garbage gives: %v", err)

	// A keyframe header claiming 16000x16000 is refused before libvpx allocates for it.
	hdr := []byte{0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x3e, 0x80, 0x3e, 0, 0, 0, 0}
	if _, err := d.Decode(hdr); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("huge keyframe: %v", err)
	}
	small := newDecoder(t, WithMaxFrameSize(320, 180))
	e := newEncoder(t, EncoderConfig{Width: 640, Height: 360})
	data, _, err := e.Encode(newSequence(640, 360).next(), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Decode(data); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("640x360 with a 320x180 limit: %v", err)
	}
	if _, err := NewDecoder(WithMaxFrameSize(0, 10)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad option: %v", err)
	}
}

func TestDecodeInterFrameFirst(t *testing.T) {
	e := newEncoder(t, EncoderConfig{Width: 320, Height: 180})
	q := newSequence(320, 180)
	if _, _, err := e.Encode(q.next(), false); err != nil {
		t.Fatal(err)
	}
	inter, key, err := e.Encode(q.next(), false)
	if err != nil || key {
		t.Fatal(err, key)
	}
	d := newDecoder(t)
	if _, err := d.Decode(inter); err == nil {
		t.Fatal("an inter frame decoded without a keyframe before it")
	}
}

func TestOutputBufferReuse(t *testing.T) {
	// Documented: the frame is valid until the next call. Check that copies stay intact and
	// that the encoder is deterministic, so the copies can be compared.
	a := newEncoder(t, EncoderConfig{Width: 320, Height: 180})
	b := newEncoder(t, EncoderConfig{Width: 320, Height: 180})
	qa, qb := newSequence(320, 180), newSequence(320, 180)
	var kept [][]byte
	for range 10 {
		f, _, err := a.Encode(qa.next(), false)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, bytes.Clone(f))
	}
	for i := range 10 {
		f, _, err := b.Encode(qb.next(), false)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f, kept[i]) {
			t.Fatalf("frame %d differs between two identical encoders", i)
		}
	}
}
