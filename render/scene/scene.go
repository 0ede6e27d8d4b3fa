package scene

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"image"
	"math"
	"math/bits"
	"sync"
	"time"
)

// Scene renders the built-in animation. Its pixels are a pure function of (seed, frame number,
// size); the pointer cursor and the stamp are drawn on top.
//
// Render and Resize must not be called concurrently with each other; SetPointer may be called
// from any goroutine at any time.
type Scene struct {
	w, h int

	lumaWave1 [waveSteps]uint8 // background luma, first wave (carries the base level)
	lumaWave2 [waveSteps]int8  // background luma, second wave
	cbWave    [waveSteps]uint8
	crWave    [waveSteps]uint8
	tex       [texSize][texRow]uint8 // luma grain + texBias, tiled and scrolled; see fillTexture
	waves     [4]waveParams          // luma 1, luma 2, Cb, Cr
	texVX     int                    // texture scroll, pixels per 4 frames
	texVY     int
	shapes    []shape

	mu      sync.Mutex
	pointer pointer
}

const (
	texSize = 128
	texMask = texSize - 1
	texRow  = texSize + 8 // each row repeats its first 8 bytes, so 8 bytes can be read anywhere
	texBias = 12          // grain is stored +12: every byte is 0..24
)

// waveParams is a plane wave: cycles across the frame's width and height (in 1/16 of a cycle)
// and cycles per frame (in phase units).
type waveParams struct {
	cyclesX, cyclesY int32  // 1/16 cycle across the frame
	perFrame         uint32 // phase units per frame
}

type shapeKind uint8

const (
	disc shapeKind = iota
	ring
	polygon
	numKinds
)

// shape is one moving object. Sizes are in thousandths of the frame's smaller side, so the scene
// looks the same at every resolution.
type shape struct {
	kind       shapeKind
	sides      int    // polygon
	radius     int64  // thousandths of min(w, h)
	orbitX     int64  // orbit amplitude, thousandths of the free room
	orbitY     int64  //
	speedX     uint32 // orbit phase per frame, turns/65536
	speedY     uint32 //
	phaseX     uint32 //
	phaseY     uint32 //
	spin       uint32 // rotation per frame (wraps: negative spins are large values)
	rot0       uint32
	pulseSpeed uint32 // radius breathes by ±12%
	stripes    bool
	y, cb, cr  uint8
}

type pointer struct {
	x, y    float64
	visible bool
}

// New returns a scene of width x height pixels whose content the seed decides. It panics when
// width or height is not positive.
func New(width, height int, seed []byte) *Scene {
	if width <= 0 || height <= 0 {
		panic(fmt.Sprintf("scene: New: bad size %dx%d", width, height))
	}
	sum := sha256.Sum256(append([]byte("rendermesh/scene/v1\x00"), seed...))
	r := &rng{s: binary.BigEndian.Uint64(sum[:8]) ^ binary.BigEndian.Uint64(sum[8:16])}
	s := &Scene{w: width, h: height}

	// Background: two luma waves over a grain texture, a wave in each chroma plane.
	// Levels keep the luma anchors within 46..184 and so every byte of the background sum within
	// 34..196, which the 8-lanes-at-once sums in background rely on.
	amp1, amp2 := int64(r.intn(28, 40)), int64(r.intn(14, 24))
	base := int64(r.intn(110, 120))
	cbBase, crBase := int64(r.intn(104, 152)), int64(r.intn(104, 152))
	cbAmp, crAmp := int64(r.intn(20, 40)), int64(r.intn(20, 40))
	for i := range waveSteps {
		a := uint32(i) * (angleTurn / waveSteps)
		sn := isin(a)
		s.lumaWave1[i] = uint8(base + amp1*sn>>14)
		s.lumaWave2[i] = int8(amp2 * sn >> 14)
		s.cbWave[i] = uint8(cbBase + cbAmp*sn>>14)
		s.crWave[i] = uint8(crBase + crAmp*icos(a)>>14)
	}
	for i := range s.waves {
		s.waves[i] = waveParams{
			cyclesX:  int32(r.sign() * r.intn(12, 40)),
			cyclesY:  int32(r.sign() * r.intn(8, 32)),
			perFrame: uint32(r.sign() * r.intn(200, 700)),
		}
	}
	s.texVX, s.texVY = r.sign()*r.intn(1, 6), r.sign()*r.intn(1, 6)
	s.fillTexture(r)

	n := r.intn(5, 7)
	s.shapes = make([]shape, n)
	for i := range s.shapes {
		sh := &s.shapes[i]
		sh.kind = shapeKind(r.intn(0, int(numKinds)-1))
		if i < int(numKinds) {
			sh.kind = shapeKind(i) // every kind at least once
		}
		sh.sides = r.intn(3, 6)
		sh.radius = int64(r.intn(45, 120))
		sh.orbitX, sh.orbitY = int64(r.intn(500, 950)), int64(r.intn(500, 950))
		sh.speedX = uint32(r.sign() * r.intn(80, 420))
		sh.speedY = uint32(r.sign() * r.intn(80, 420))
		sh.phaseX, sh.phaseY = uint32(r.next()), uint32(r.next())
		sh.spin = uint32(r.sign() * r.intn(150, 900))
		sh.rot0 = uint32(r.next())
		sh.pulseSpeed = uint32(r.intn(100, 500))
		sh.stripes = r.next()&1 == 0
		// Vivid colours, away from the background's mid grey.
		sh.y = uint8(r.intn(40, 225))
		if sh.y > 90 && sh.y < 170 {
			sh.y = uint8(r.intn(180, 225))
		}
		sh.cb, sh.cr = uint8(r.intn(40, 216)), uint8(r.intn(40, 216))
	}
	return s
}

// fillTexture makes a smooth grain: random values on an 8-pixel lattice, bilinearly
// interpolated, plus a little per-pixel noise. Values stay within ±texBias.
func (s *Scene) fillTexture(r *rng) {
	const cell = 8
	const lat = texSize / cell
	var grid [lat * lat]int
	for i := range grid {
		grid[i] = r.intn(-9, 9)
	}
	for y := range texSize {
		gy, fy := y/cell, y%cell
		for x := range texSize {
			gx, fx := x/cell, x%cell
			a := grid[gy*lat+gx]
			b := grid[gy*lat+(gx+1)%lat]
			c := grid[((gy+1)%lat)*lat+gx]
			d := grid[((gy+1)%lat)*lat+(gx+1)%lat]
			top := a*(cell-fx) + b*fx
			bot := c*(cell-fx) + d*fx
			v := (top*(cell-fy) + bot*fy) / (cell * cell)
			s.tex[y][x] = uint8(v + r.intn(-3, 3) + texBias)
		}
		copy(s.tex[y][texSize:], s.tex[y][:texRow-texSize])
	}
}

// NewFrame returns a 4:2:0 frame of w x h pixels with tightly packed planes.
func NewFrame(w, h int) *image.YCbCr {
	return image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
}

// Size is the scene's size in pixels.
func (s *Scene) Size() (w, h int) { return s.w, s.h }

// Resize changes the size frames are rendered at. The content keeps its look: positions and
// sizes are fractions of the frame. It panics when w or h is not positive.
func (s *Scene) Resize(w, h int) {
	if w <= 0 || h <= 0 {
		panic(fmt.Sprintf("scene: Resize: bad size %dx%d", w, h))
	}
	s.w, s.h = w, h
}

// SetPointer places the pointer cursor at (x, y), in fractions of the frame's width and height
// (0..1; values outside are clamped), or hides it. It is safe to call concurrently with Render.
func (s *Scene) SetPointer(x, y float64, visible bool) {
	clamp := func(v float64) float64 {
		if math.IsNaN(v) {
			return 0
		}
		return min(max(v, 0), 1)
	}
	s.mu.Lock()
	s.pointer = pointer{x: clamp(x), y: clamp(y), visible: visible}
	s.mu.Unlock()
}

// Render draws frame number frame into dst: the scene, then the pointer cursor if it is visible,
// then the stamp carrying frame and renderTime (see Stamp). dst must be a 4:2:0 image of the
// scene's size (NewFrame makes one); Render panics otherwise, as that is a programming error.
func (s *Scene) Render(dst *image.YCbCr, frame uint32, renderTime time.Time) {
	s.RenderContent(dst, frame)
	s.mu.Lock()
	p := s.pointer
	s.mu.Unlock()
	if p.visible {
		drawCursor(dst, p.x, p.y)
	}
	Stamp(dst, frame, renderTime)
}

// RenderContent draws only the scene, without cursor or stamp: the part of a frame that is a
// pure function of (seed, frame, size), which a checker can re-render and compare.
func (s *Scene) RenderContent(dst *image.YCbCr, frame uint32) {
	s.check(dst)
	s.background(dst, frame)
	for i := range s.shapes {
		s.drawShape(dst, &s.shapes[i], frame)
	}
}

func (s *Scene) check(dst *image.YCbCr) {
	w, h := dst.Rect.Dx(), dst.Rect.Dy()
	if dst.SubsampleRatio != image.YCbCrSubsampleRatio420 || w != s.w || h != s.h ||
		dst.YStride < w || dst.CStride < (w+1)/2 ||
		len(dst.Y) < (h-1)*dst.YStride+w ||
		len(dst.Cb) < ((h+1)/2-1)*dst.CStride+(w+1)/2 || len(dst.Cr) < len(dst.Cb) ||
		dst.Rect.Min.X&1 != 0 || dst.Rect.Min.Y&1 != 0 {
		panic(fmt.Sprintf("scene: Render: dst is %v %v (strides %d/%d), want a %dx%d 4:2:0 frame",
			dst.Rect, dst.SubsampleRatio, dst.YStride, dst.CStride, s.w, s.h))
	}
}

// phaseStep is how much a wave's phase moves per pixel for cycles16/16 cycles across n pixels.
func phaseStep(cycles16 int32, n int) uint32 {
	return uint32(int64(cycles16) * phaseTurn / (16 * int64(n)))
}

// The background is smooth, so it is evaluated every 8 pixels (chunk) and interpolated in
// between by adding a precomputed ramp; all 8 bytes of a chunk are summed in one uint64. That
// works because every lane's terms are non-negative and their sum stays below 256, so no carry
// crosses into the next lane: (anchor - rampBias - texBias) + (ramp + rampBias) + (grain + texBias).
const (
	chunk     = 8
	rampMax   = 32 // the largest change between anchors that the ramp follows
	rampBias  = rampMax * (chunk - 1) / chunk
	lanes     = 0x0101010101010101
	lumaFloor = rampBias + texBias // anchors are always above this (46 or more)
	cFloor    = rampBias           // chroma anchors too (64 or more)
)

// rampTable[d+rampMax] holds, in byte i, floor(d*i/8) + rampBias.
var rampTable = func() (t [2*rampMax + 1]uint64) {
	for d := -rampMax; d <= rampMax; d++ {
		var v uint64
		for i := range chunk {
			v |= uint64(floorDiv(int64(d*i), chunk)+rampBias) << (8 * i)
		}
		t[d+rampMax] = v
	}
	return t
}()

func ramp(prev, next int) uint64 {
	return rampTable[min(max(next-prev, -rampMax), rampMax)+rampMax]
}

func (s *Scene) background(dst *image.YCbCr, frame uint32) {
	w, h := s.w, s.h
	w1, w2 := &s.waves[0], &s.waves[1]
	ax1, ay1 := phaseStep(w1.cyclesX, w), phaseStep(w1.cyclesY, h)
	ax2, ay2 := phaseStep(w2.cyclesX, w), phaseStep(w2.cyclesY, h)
	t1, t2 := frame*w1.perFrame, frame*w2.perFrame
	tx := int(int64(frame) * int64(s.texVX) / 4 & texMask)
	ty := int(int64(frame) * int64(s.texVY) / 4 & texMask)
	lw1, lw2 := &s.lumaWave1, &s.lumaWave2
	luma := func(p1, p2 uint32) int {
		return int(lw1[(p1>>waveShift)&waveMask]) + int(lw2[(p2>>waveShift)&waveMask])
	}
	for y := range h {
		row := dst.Y[y*dst.YStride : y*dst.YStride+w]
		tex := &s.tex[(y+ty)&texMask]
		p1 := uint32(y)*ay1 + t1
		p2 := uint32(y)*ay2 + t2
		prev := luma(p1, p2)
		x := 0
		for ; x+chunk <= w; x += chunk {
			p1 += chunk * ax1
			p2 += chunk * ax2
			next := luma(p1, p2)
			o := (x + tx) & texMask
			v := uint64(prev-lumaFloor)*lanes + ramp(prev, next) + binary.LittleEndian.Uint64(tex[o:o+8])
			binary.LittleEndian.PutUint64(row[x:x+chunk], v)
			prev = next
		}
		for ; x < w; x++ {
			row[x] = uint8(prev + int(tex[(x+tx)&texMask]) - texBias)
		}
	}

	cw, ch := (w+1)/2, (h+1)/2
	wb, wr := &s.waves[2], &s.waves[3]
	bx, by := phaseStep(wb.cyclesX, cw), phaseStep(wb.cyclesY, ch)
	rx, ry := phaseStep(wr.cyclesX, cw), phaseStep(wr.cyclesY, ch)
	tb, tr := frame*wb.perFrame, frame*wr.perFrame
	cbw, crw := &s.cbWave, &s.crWave
	for y := range ch {
		cb := dst.Cb[y*dst.CStride : y*dst.CStride+cw]
		cr := dst.Cr[y*dst.CStride : y*dst.CStride+cw]
		pb := uint32(y)*by + tb
		pr := uint32(y)*ry + tr
		prevB, prevR := int(cbw[(pb>>waveShift)&waveMask]), int(crw[(pr>>waveShift)&waveMask])
		x := 0
		for ; x+chunk <= cw; x += chunk {
			pb += chunk * bx
			pr += chunk * rx
			nextB, nextR := int(cbw[(pb>>waveShift)&waveMask]), int(crw[(pr>>waveShift)&waveMask])
			binary.LittleEndian.PutUint64(cb[x:x+chunk], uint64(prevB-cFloor)*lanes+ramp(prevB, nextB))
			binary.LittleEndian.PutUint64(cr[x:x+chunk], uint64(prevR-cFloor)*lanes+ramp(prevR, nextR))
			prevB, prevR = nextB, nextR
		}
		for ; x < cw; x++ {
			cb[x], cr[x] = uint8(prevB), uint8(prevR)
		}
	}
}

// Geometry is in Q4 fixed point (1/16 pixel) in luma space: luma pixel x has its centre at
// 16x+8, chroma sample x (covering luma 2x and 2x+1) at 32x+16. Products with Q14 sines are Q18.

// placed is a shape's geometry in one frame.
type placed struct {
	cx, cy int64 // centre, Q4
	r      int64 // circumradius, Q4
	rot    uint32
}

func (s *Scene) place(sh *shape, frame uint32) placed {
	w, h := int64(s.w), int64(s.h)
	m := min(w, h)
	r := sh.radius * m * 16 / 1000
	r += r * 12 * isin(sh.pulseSpeed*frame) / (100 * one14)
	r = max(r, 16)
	roomX := max(w*8-r, 0) // half the free room, Q4
	roomY := max(h*8-r, 0)
	return placed{
		cx:  w*8 + roomX*sh.orbitX/1000*isin(sh.phaseX+sh.speedX*frame)/one14,
		cy:  h*8 + roomY*sh.orbitY/1000*isin(sh.phaseY+sh.speedY*frame)/one14,
		r:   r,
		rot: sh.rot0 + sh.spin*frame,
	}
}

func (s *Scene) drawShape(dst *image.YCbCr, sh *shape, frame uint32) {
	p := s.place(sh, frame)
	w, h := s.w, s.h
	cw, ch := (w+1)/2, (h+1)/2

	var edgeBuf [maxSides]edge
	var edges []edge
	var stripe stripeFn
	switch sh.kind {
	case polygon:
		edges = polygonEdges(edgeBuf[:sh.sides], p)
		if sh.stripes {
			stripe = stripeFn{c: icos(p.rot), s: isin(p.rot), shift: stripeShift(p.r/16/3) + 18}
		}
	case disc:
		if sh.stripes {
			stripe = stripeFn{radial: true, shift: uint(max(bits.Len64(uint64(p.r*p.r))-2, 0))}
		}
	}
	inner := int64(0)
	if sh.kind == ring {
		inner = p.r * 6 / 10
	}

	// Luma, then both chroma planes with the same spans at half resolution.
	y0, y1 := spanRows(p, 16, 8, h)
	for y := y0; y < y1; y++ {
		dy := int64(y)*16 + 8 - p.cy
		row := dst.Y[y*dst.YStride : y*dst.YStride+w]
		var sp [2]span
		n := shapeSpans(sh.kind, p, edges, inner, dy, 16, 8, w, &sp)
		for _, a := range sp[:n] {
			fillLuma(row, a, sh.y, &stripe, p, dy)
		}
	}
	y0, y1 = spanRows(p, 32, 16, ch)
	for y := y0; y < y1; y++ {
		dy := int64(y)*32 + 16 - p.cy
		cb := dst.Cb[y*dst.CStride : y*dst.CStride+cw]
		cr := dst.Cr[y*dst.CStride : y*dst.CStride+cw]
		var sp [2]span
		n := shapeSpans(sh.kind, p, edges, inner, dy, 32, 16, cw, &sp)
		for _, a := range sp[:n] {
			fill(cb[a.lo:a.hi], sh.cb)
			fill(cr[a.lo:a.hi], sh.cr)
		}
	}
}

// stripeShift is log2 of a stripe width close to px pixels.
func stripeShift(px int64) uint {
	return uint(max(bits.Len64(uint64(max(px, 2)))-1, 1))
}

// stripeFn shades a shape's luma in two tones: parallel stripes across a polygon (rotating with
// it), concentric bands across a disc.
type stripeFn struct {
	c, s   int64 // polygon: stripe direction, Q14
	radial bool
	shift  uint
}

func (f *stripeFn) on() bool { return f.shift != 0 }

func fillLuma(row []byte, a span, v uint8, f *stripeFn, p placed, dy int64) {
	seg := row[a.lo:a.hi]
	if !f.on() {
		fill(seg, v)
		return
	}
	alt := v - 40
	if v < 100 {
		alt = v + 40
	}
	dx := int64(a.lo)*16 + 8 - p.cx
	if f.radial {
		d2 := dx*dx + dy*dy
		for i := range seg {
			if (d2>>f.shift)&1 == 0 {
				seg[i] = v
			} else {
				seg[i] = alt
			}
			d2 += 32*dx + 256 // (dx+16)^2 - dx^2
			dx += 16
		}
		return
	}
	u := dx*f.c + dy*f.s
	du := 16 * f.c
	for i := range seg {
		if (u>>f.shift)&1 == 0 {
			seg[i] = v
		} else {
			seg[i] = alt
		}
		u += du
	}
}

func fill(b []byte, v uint8) {
	for i := range b {
		b[i] = v
	}
}

// span is the pixel range [lo, hi) of one row that a shape covers.
type span struct{ lo, hi int }

// edge is a polygon side: a point d is inside when d·(c, s) < ap (all Q18).
type edge struct{ c, s, ap int64 }

const maxSides = 6

// polygonEdges fills e with the sides of a regular len(e)-gon and returns it.
func polygonEdges(e []edge, p placed) []edge {
	sides := len(e)
	ap := p.r * icos(angleTurn/uint32(2*sides)) // apothem, Q18
	for k := range e {
		a := p.rot + uint32(k)*angleTurn/uint32(sides)
		e[k] = edge{c: icos(a), s: isin(a), ap: ap}
	}
	return e
}

// spanRows is the plane rows [y0, y1) a shape's bounding circle touches, for a plane whose
// sample y has its centre at step*y+off (Q4).
func spanRows(p placed, step, off int64, n int) (int, int) {
	y0 := ceilDiv(p.cy-p.r-off, step)
	y1 := floorDiv(p.cy+p.r-off, step) + 1
	return int(min(max(y0, 0), int64(n))), int(min(max(y1, 0), int64(n)))
}

// shapeSpans fills sp with the spans of the row at vertical offset dy (Q4, from the centre) and
// returns how many there are.
func shapeSpans(kind shapeKind, p placed, edges []edge, inner, dy, step, off int64, n int, sp *[2]span) int {
	switch kind {
	case polygon:
		lo, hi := int64(math.MinInt32), int64(math.MaxInt32)
		// Inside when (x*step + off - cx)*c + dy*s < ap, i.e. A*x + B < 0.
		for _, e := range edges {
			a := step * e.c
			b := (off-p.cx)*e.c + dy*e.s - e.ap
			switch {
			case a > 0:
				hi = min(hi, ceilDiv(-b, a))
			case a < 0:
				lo = max(lo, floorDiv(b, -a)+1)
			case b >= 0:
				return 0
			}
		}
		return clipSpan(lo, hi, n, sp, 0)
	case ring:
		lo, hi, ok := discSpan(p, p.r, dy, step, off)
		if !ok {
			return 0
		}
		ilo, ihi, iok := discSpan(p, inner, dy, step, off)
		if !iok || ilo >= ihi {
			return clipSpan(lo, hi, n, sp, 0)
		}
		k := clipSpan(lo, ilo, n, sp, 0)
		return k + clipSpan(ihi, hi, n, sp, k)
	default:
		lo, hi, ok := discSpan(p, p.r, dy, step, off)
		if !ok {
			return 0
		}
		return clipSpan(lo, hi, n, sp, 0)
	}
}

// discSpan is the range of x with (x*step+off-cx)^2 + dy^2 < r^2.
func discSpan(p placed, r, dy, step, off int64) (lo, hi int64, ok bool) {
	d := r*r - dy*dy
	if d <= 0 {
		return 0, 0, false
	}
	q := isqrt(d)
	if q*q == d {
		q-- // strict inequality
	}
	// -q <= x*step + off - cx <= q
	lo = ceilDiv(p.cx-off-q, step)
	hi = floorDiv(p.cx-off+q, step) + 1
	return lo, hi, true
}

func clipSpan(lo, hi int64, n int, sp *[2]span, i int) int {
	lo, hi = max(lo, 0), min(hi, int64(n))
	if lo >= hi {
		return 0
	}
	sp[i] = span{int(lo), int(hi)}
	return 1
}

// isqrt is floor(sqrt(v)) for v >= 0, exactly.
func isqrt(v int64) int64 {
	q := int64(math.Sqrt(float64(v)))
	for q*q > v {
		q--
	}
	for (q+1)*(q+1) <= v {
		q++
	}
	return q
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }
