package scene

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 7, 0, 0, 123456000, time.UTC)

func render(s *Scene, frame uint32) *image.YCbCr {
	w, h := s.Size()
	f := NewFrame(w, h)
	s.Render(f, frame, t0)
	return f
}

func planesEqual(a, b *image.YCbCr) bool {
	return bytes.Equal(a.Y, b.Y) && bytes.Equal(a.Cb, b.Cb) && bytes.Equal(a.Cr, b.Cr)
}

func TestSameSeedAndFrameGiveIdenticalPixels(t *testing.T) {
	for _, size := range [][2]int{{1280, 720}, {641, 361}, {320, 180}, {17, 9}} {
		a := New(size[0], size[1], []byte("nonce-1"))
		b := New(size[0], size[1], []byte("nonce-1"))
		for _, frame := range []uint32{0, 1, 299, 1 << 31, 1<<32 - 1} {
			fa := render(a, frame)
			render(b, frame+7) // b's history must not matter
			if fb := render(b, frame); !planesEqual(fa, fb) {
				t.Fatalf("%v frame %d: two scenes with the same seed differ", size, frame)
			}
		}
	}
}

func TestDifferentSeedOrFrameGiveDifferentPixels(t *testing.T) {
	a := render(New(640, 360, []byte("nonce-1")), 10)
	if b := render(New(640, 360, []byte("nonce-2")), 10); planesEqual(a, b) {
		t.Fatal("different seeds rendered the same frame")
	}
	if b := render(New(640, 360, []byte("nonce-1")), 11); bytes.Equal(a.Y, b.Y) {
		t.Fatal("consecutive frames are identical: the scene does not move")
	}
}

// TestContentGolden pins the verifiable content. A checker re-renders frames from a nonce, so
// any change here breaks verification between old and new nodes: change the renderer only with a
// new version of the seed domain ("rendermesh/scene/v1") and then update these hashes.
func TestContentGolden(t *testing.T) {
	golden := map[[2]int]string{
		{320, 180}:  "6e766578a0f9af77c1098facb6d87bef00fe7f29233ce920c236ad497b477cf6",
		{1280, 720}: "fb66a7cc783784ec722f815f37032dd5de65a8ac075a6502577bf6d2950c8c1b",
	}
	for size, want := range golden {
		s := New(size[0], size[1], []byte("golden"))
		f := NewFrame(size[0], size[1])
		s.RenderContent(f, 1234)
		h := sha256.New()
		h.Write(f.Y)
		h.Write(f.Cb)
		h.Write(f.Cr)
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			t.Errorf("%v: content hash %s, want %s", size, got, want)
		}
	}
}

func TestStampRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sizes := [][2]int{{320, 180}, {1920, 1080}, {1280, 720}, {640, 360}, {256, 8}, {257, 9}, {641, 361}, {3840, 2160}}
	for _, size := range sizes {
		f := NewFrame(size[0], size[1])
		for range 50 {
			frame := r.Uint32()
			tm := time.UnixMicro(r.Int64N(1 << 52))
			if r.IntN(10) == 0 {
				tm = time.UnixMicro(-r.Int64N(1 << 40)) // before 1970 works too
			}
			Stamp(f, frame, tm)
			gf, gt, ok := ReadStamp(f)
			if !ok || gf != frame || !gt.Equal(tm) {
				t.Fatalf("%v: wrote (%d, %v), read (%d, %v, %v)", size, frame, tm, gf, gt, ok)
			}
		}
	}
}

func TestStampLayout(t *testing.T) {
	f := NewFrame(640, 360)
	tm := time.UnixMicro(0x0123456789abcdef)
	Stamp(f, 0x80000001, tm)
	const b = 10 // 640/64
	if StampBlock(640) != b || StampBlock(100) != 4 || StampBlock(1920) != 30 {
		t.Fatal("block sizes")
	}
	bit := func(c, r int) bool { return f.Y[(r*b+b/2)*f.YStride+c*b+b/2] == StampOne }
	// Row 0 is the time MSB first: 0x01 starts 0000 0001.
	for c, want := range []bool{false, false, false, false, false, false, false, true} {
		if bit(c, 0) != want {
			t.Fatalf("row 0 column %d", c)
		}
	}
	// Row 1 starts with the frame number MSB first.
	if !bit(0, 1) || bit(1, 1) || !bit(31, 1) {
		t.Fatal("row 1 does not start with the frame number")
	}
	// Whole blocks, and chroma neutral under the grid.
	for y := range 2 * b {
		for x := range 64 * b {
			v := f.Y[y*f.YStride+x]
			if v != StampOne && v != StampZero {
				t.Fatalf("pixel (%d,%d) = %d", x, y, v)
			}
			if f.Cb[(y/2)*f.CStride+x/2] != 128 || f.Cr[(y/2)*f.CStride+x/2] != 128 {
				t.Fatalf("chroma at (%d,%d) not neutral", x, y)
			}
		}
	}
}

func TestReadStampRejectsEveryFlippedBlock(t *testing.T) {
	f := render(New(320, 180, []byte("crc")), 77)
	if _, _, ok := ReadStamp(f); !ok {
		t.Fatal("stamp not read")
	}
	b := StampBlock(320)
	for r := range StampRows {
		for c := range StampColumns {
			g := NewFrame(320, 180)
			copy(g.Y, f.Y)
			i := (r*b+b/2)*g.YStride + c*b + b/2
			g.Y[i] = StampOne + StampZero - g.Y[i]
			if _, _, ok := ReadStamp(g); ok {
				t.Fatalf("block (%d,%d) flipped and the stamp still reads", c, r)
			}
		}
	}
}

func TestStampNeedsRoom(t *testing.T) {
	for _, size := range [][2]int{{255, 100}, {256, 7}, {1, 1}} {
		f := NewFrame(size[0], size[1])
		Stamp(f, 1, t0) // does nothing
		for _, v := range f.Y {
			if v != 0 {
				t.Fatalf("%v: Stamp wrote into a frame too small for it", size)
			}
		}
		if _, _, ok := ReadStamp(f); ok {
			t.Fatalf("%v: read a stamp from a frame too small for one", size)
		}
	}
}

func TestRenderCarriesStamp(t *testing.T) {
	s := New(1280, 720, nil)
	f := NewFrame(1280, 720)
	s.Render(f, 4242, t0)
	frame, tm, ok := ReadStamp(f)
	if !ok || frame != 4242 || !tm.Equal(t0.Truncate(time.Microsecond)) {
		t.Fatalf("read (%d, %v, %v)", frame, tm, ok)
	}
}

func TestCursor(t *testing.T) {
	s := New(640, 360, []byte("cursor"))
	plain := render(s, 5)
	s.SetPointer(0.5, 0.5, true)
	with := render(s, 5)
	tx, ty := 320, 180
	if v := with.Y[ty*with.YStride+tx]; v != cursorDark {
		t.Fatalf("tip luma %d, want the dark outline", v)
	}
	if v := with.Y[(ty+5)*with.YStride+tx+2]; v != cursorLight {
		t.Fatalf("fill luma %d, want light", v)
	}
	if v := with.Cb[(ty/2)*with.CStride+tx/2]; v != 128 {
		t.Fatalf("chroma under the cursor %d, want neutral", v)
	}
	// Only the cursor's box changed.
	for y := range 360 {
		for x := range 640 {
			in := x >= tx && x < tx+12 && y >= ty && y < ty+19
			if !in && with.Y[y*with.YStride+x] != plain.Y[y*plain.YStride+x] {
				t.Fatalf("pixel (%d,%d) changed outside the cursor", x, y)
			}
		}
	}
	s.SetPointer(0.5, 0.5, false)
	if hidden := render(s, 5); !planesEqual(hidden, plain) {
		t.Fatal("a hidden cursor changed the frame")
	}
	// Corners and out-of-range values clip instead of panicking.
	for _, p := range [][2]float64{{0, 0}, {1, 1}, {-3, 7}, {0.999, 0.999}} {
		s.SetPointer(p[0], p[1], true)
		render(s, 6)
	}
}

func TestCursorScalesWithSize(t *testing.T) {
	s := New(1920, 1080, nil)
	s.SetPointer(0.5, 0.5, true)
	f := render(s, 1)
	// Scale 2: the 2x2 pixels of the tip are all dark.
	for _, d := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
		if v := f.Y[(540+d[1])*f.YStride+960+d[0]]; v != cursorDark {
			t.Fatalf("tip pixel %v luma %d", d, v)
		}
	}
}

func TestResize(t *testing.T) {
	s := New(1280, 720, []byte("r"))
	s.Resize(640, 360)
	f := render(s, 3)
	if fresh := render(New(640, 360, []byte("r")), 3); !planesEqual(f, fresh) {
		t.Fatal("a resized scene differs from a new scene of that size")
	}
}

func TestRenderPanicsOnWrongFrame(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	New(640, 360, nil).Render(NewFrame(320, 180), 0, t0)
}

func TestSetPointerWhileRendering(t *testing.T) {
	s := New(320, 180, nil)
	f := NewFrame(320, 180)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			s.SetPointer(float64(i%10)/10, 0.5, i%3 != 0)
		}
	})
	for i := range 50 {
		s.Render(f, uint32(i), t0)
	}
	wg.Wait()
}

func TestRenderSmallAndOddSizes(t *testing.T) {
	for _, size := range [][2]int{{1, 1}, {2, 2}, {3, 5}, {15, 7}, {33, 17}, {100, 1}} {
		s := New(size[0], size[1], []byte("tiny"))
		s.SetPointer(0.9, 0.9, true)
		for frame := range uint32(20) {
			render(s, frame*97)
		}
	}
}

func TestIntegerHelpers(t *testing.T) {
	for _, c := range []struct{ a, b, floor, ceil int64 }{
		{7, 2, 3, 4}, {-7, 2, -4, -3}, {7, -2, -4, -3}, {-7, -2, 3, 4}, {6, 3, 2, 2}, {-6, 3, -2, -2}, {0, 5, 0, 0},
	} {
		if floorDiv(c.a, c.b) != c.floor || ceilDiv(c.a, c.b) != c.ceil {
			t.Errorf("%d/%d: floor %d ceil %d", c.a, c.b, floorDiv(c.a, c.b), ceilDiv(c.a, c.b))
		}
	}
	for v := range int64(100000) {
		q := isqrt(v)
		if q*q > v || (q+1)*(q+1) <= v {
			t.Fatalf("isqrt(%d) = %d", v, q)
		}
	}
	if isin(0) != 0 || isin(angleTurn/4) != one14 || isin(angleTurn/2) != 0 || isin(3*angleTurn/4) != -one14 {
		t.Fatal("sine table endpoints")
	}
}
