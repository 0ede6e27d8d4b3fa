package web

// A VP8 encoder small enough to read, for the test fixture: key frames only, where every 16×16
// luma macroblock is one flat value and the chroma is neutral grey. That is enough to draw the
// frame stamp (its blocks are macroblocks when the width is 1024) and a few moving shapes, and it
// needs no cgo and no libvpx. The bitstream follows RFC 6386; vp8_test checks it against
// golang.org/x/image/vp8, and the e2e test against Chromium's decoder.
//
// How a flat macroblock is coded: 16×16 DC prediction from the reconstructed neighbours
// (their average, or one of them on the frame's edges, or 128 in the corner), then one
// coefficient, the Y2 (Walsh–Hadamard) DC, carries the difference. With quantizer index 0 the Y2
// DC step is 8, and a level of 8·d comes back as exactly d on every pixel:
// ((8·8d+3)>>3 + 4)>>3 = d. A macroblock its prediction already gets right is skipped. The loop
// filter is off, so reconstruction is exact and the encoder's idea of the neighbours is the
// decoder's.

// boolEncoder is the boolean entropy encoder of RFC 6386 section 7.3.
type boolEncoder struct {
	out      []byte
	rng      uint32
	bottom   uint32
	bitCount int
}

func newBoolEncoder() *boolEncoder { return &boolEncoder{rng: 255, bitCount: 24} }

func (e *boolEncoder) addOne() {
	i := len(e.out) - 1
	for i >= 0 && e.out[i] == 255 {
		e.out[i] = 0
		i--
	}
	e.out[i]++
}

// put writes bit b, which is false with probability prob/256.
func (e *boolEncoder) put(prob uint8, b bool) {
	split := 1 + (((e.rng - 1) * uint32(prob)) >> 8)
	if b {
		e.bottom += split
		e.rng -= split
	} else {
		e.rng = split
	}
	for e.rng < 128 {
		e.rng <<= 1
		if e.bottom&(1<<31) != 0 {
			e.addOne()
		}
		e.bottom <<= 1
		e.bitCount--
		if e.bitCount == 0 {
			e.out = append(e.out, byte(e.bottom>>24))
			e.bottom &= (1 << 24) - 1
			e.bitCount = 8
		}
	}
}

// lit writes v as an n-bit literal, most significant bit first.
func (e *boolEncoder) lit(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		e.put(128, v>>i&1 != 0)
	}
}

func (e *boolEncoder) flush() []byte {
	c := e.bitCount
	v := e.bottom
	if v&(1<<(32-c)) != 0 {
		e.addOne()
	}
	v <<= c & 7
	c >>= 3
	for c--; c >= 0; c-- {
		v <<= 8
	}
	for c = 0; c < 4; c++ {
		e.out = append(e.out, byte(v>>24))
		v <<= 8
	}
	return e.out
}

// bands maps a coefficient's position to its probability band (RFC 6386 section 13.3).
var bands = [17]uint8{0, 1, 2, 3, 6, 4, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 0}

// Extra-bit probabilities of the DCT_CAT3..6 tokens (section 13.2).
var catProbs = [4][]uint8{
	{173, 148, 140},
	{176, 155, 140, 135},
	{180, 157, 141, 134, 130},
	{254, 254, 243, 230, 196, 177, 153, 140, 133, 130, 129},
}

// putDC writes a block whose only coefficient is the first one, level q ≠ 0, in plane with
// context ctx: the token, its sign and the end of block (section 13).
func (e *boolEncoder) putDC(plane, ctx int, q int) {
	p := &defaultTokenProb[plane][bands[0]][ctx]
	v := q
	if v < 0 {
		v = -v
	}
	e.put(p[0], true) // not end of block
	e.put(p[1], true) // not zero
	switch {
	case v == 1:
		e.put(p[2], false)
	case v <= 4:
		e.put(p[2], true)
		e.put(p[3], false)
		if v == 2 {
			e.put(p[4], false)
		} else {
			e.put(p[4], true)
			e.put(p[5], v == 4)
		}
	case v <= 10:
		e.put(p[2], true)
		e.put(p[3], true)
		e.put(p[6], false)
		if v <= 6 {
			e.put(p[7], false)
			e.put(159, v == 6)
		} else {
			e.put(p[7], true)
			x := v - 7
			e.put(165, x&2 != 0)
			e.put(145, x&1 != 0)
		}
	default:
		if v > 2114 {
			panic("vp8: coefficient out of range")
		}
		e.put(p[2], true)
		e.put(p[3], true)
		e.put(p[6], true)
		cat := 3
		for c, base := range []int{11, 19, 35, 67} {
			if v >= base {
				cat = c
			}
		}
		b1, b0 := cat>>1, cat&1
		e.put(p[8], b1 == 1)
		e.put(p[9+b1], b0 == 1)
		extra := v - (3 + 8<<cat)
		probs := catProbs[cat]
		for i, pr := range probs {
			e.put(pr, extra>>(len(probs)-1-i)&1 != 0)
		}
	}
	e.put(128, q < 0)
	next := 2
	if v == 1 {
		next = 1
	}
	e.put(defaultTokenProb[plane][bands[1]][next][0], false) // end of block
}

// putEmpty writes a block with no coefficients whose first coefficient is at position first.
func (e *boolEncoder) putEmpty(plane, first, ctx int) {
	e.put(defaultTokenProb[plane][bands[first]][ctx][0], false)
}

// vp8Flat encodes a key frame of mbW×mbH macroblocks (16 pixels each way) whose macroblock i, in
// raster order, has luma luma[i].
func vp8Flat(mbW, mbH int, luma []uint8) []byte {
	if len(luma) != mbW*mbH {
		panic("vp8: wrong number of macroblocks")
	}
	// Levels first: the skip probability goes in the header.
	levels := make([]int, len(luma))
	coded := 0
	for y := range mbH {
		for x := range mbW {
			pred := 128
			switch {
			case x > 0 && y > 0:
				pred = (int(luma[y*mbW+x-1]) + int(luma[(y-1)*mbW+x]) + 1) >> 1
			case x > 0:
				pred = int(luma[y*mbW+x-1])
			case y > 0:
				pred = int(luma[(y-1)*mbW+x])
			}
			if d := int(luma[y*mbW+x]) - pred; d != 0 {
				levels[y*mbW+x] = 8 * d
				coded++
			}
		}
	}
	skipProb := uint8(max(1, min(254, 255*coded/len(luma)))) // probability of "not skipped"

	hdr := newBoolEncoder()
	hdr.lit(0, 1) // colour space
	hdr.lit(0, 1) // clamping type
	hdr.lit(0, 1) // no segmentation
	hdr.lit(0, 1) // filter type
	hdr.lit(0, 6) // loop filter level 0: off
	hdr.lit(0, 3) // sharpness
	hdr.lit(0, 1) // no loop filter deltas
	hdr.lit(0, 2) // one token partition
	hdr.lit(0, 7) // quantizer index 0
	hdr.lit(0, 5) // no quantizer deltas
	hdr.lit(1, 1) // refresh entropy probabilities
	for i := range tokenProbUpdateProb {
		for j := range tokenProbUpdateProb[i] {
			for k := range tokenProbUpdateProb[i][j] {
				for _, p := range tokenProbUpdateProb[i][j][k] {
					hdr.put(p, false) // keep the default
				}
			}
		}
	}
	hdr.lit(1, 1) // macroblocks may be skipped
	hdr.lit(uint32(skipProb), 8)

	tok := newBoolEncoder()
	aboveY2 := make([]int, mbW)
	for y := range mbH {
		leftY2 := 0
		for x := range mbW {
			q := levels[y*mbW+x]
			hdr.put(skipProb, q == 0) // skipped
			hdr.put(145, true)        // 16×16 mode, not B_PRED
			hdr.put(156, false)
			hdr.put(163, false) // DC_PRED
			hdr.put(142, false) // chroma DC_PRED
			if q == 0 {
				leftY2, aboveY2[x] = 0, 0
				continue
			}
			tok.putDC(1, leftY2+aboveY2[x], q) // Y2
			for range 16 {
				tok.putEmpty(0, 1, 0) // Y, after Y2: from position 1
			}
			for range 8 {
				tok.putEmpty(2, 0, 0) // U, V
			}
			leftY2, aboveY2[x] = 1, 1
		}
	}
	first, tokens := hdr.flush(), tok.flush()

	w, h := mbW*16, mbH*16
	tag := uint32(len(first))<<5 | 1<<4 // key frame (bit 0 clear), version 0, shown
	out := []byte{byte(tag), byte(tag >> 8), byte(tag >> 16), 0x9d, 0x01, 0x2a, byte(w), byte(w >> 8), byte(h), byte(h >> 8)}
	out = append(out, first...)
	return append(out, tokens...)
}
