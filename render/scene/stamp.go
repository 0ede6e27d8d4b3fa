package scene

import (
	"encoding/binary"
	"hash/crc32"
	"image"
	"time"
)

// The stamp's geometry and levels; see the package documentation for the format.
const (
	StampColumns   = 64  // blocks per row
	StampRows      = 2   // rows of blocks
	StampMinBlock  = 4   // smallest block side, pixels
	StampOne       = 235 // luma of a 1 bit
	StampZero      = 16  // luma of a 0 bit
	StampThreshold = 128 // a block centre at or above this luma reads as 1
	stampChroma    = 128
)

// StampBlock is the side in pixels of a stamp block in a frame width pixels wide:
// max(4, width/64).
func StampBlock(width int) int { return max(StampMinBlock, width/StampColumns) }

// stampBits is the stamp's 128 bits, row 0 then row 1, most significant bit first.
func stampBits(frame uint32, t time.Time) (row0 uint64, row1 uint64) {
	us := uint64(t.UnixMicro())
	var msg [12]byte
	binary.BigEndian.PutUint64(msg[:8], us)
	binary.BigEndian.PutUint32(msg[8:], frame)
	return us, uint64(frame)<<32 | uint64(crc32.ChecksumIEEE(msg[:]))
}

// stampFits is the block side for img, and whether img's luma plane holds the whole grid.
func stampFits(img *image.YCbCr) (b int, ok bool) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if w <= 0 || h <= 0 {
		return 0, false
	}
	b = StampBlock(w)
	gw, gh := StampColumns*b, StampRows*b
	if gw > w || gh > h || img.YStride < gw || len(img.Y) < gw {
		return 0, false
	}
	// The last pixel of the grid, (gh-1)*YStride + gw-1, must lie inside Y.
	if gh-1 > (len(img.Y)-gw)/img.YStride {
		return 0, false
	}
	return b, true
}

// Stamp writes the stamp for frame and t into the top-left corner of dst: 64x2 blocks of
// StampBlock(width) pixels, luma StampOne for a 1 bit and StampZero for a 0 bit, chroma neutral
// (128) under the whole grid. It does nothing when dst is too small to hold the grid.
func Stamp(dst *image.YCbCr, frame uint32, t time.Time) {
	b, ok := stampFits(dst)
	if !ok {
		return
	}
	row0, row1 := stampBits(frame, t)
	for r, bitsRow := range [StampRows]uint64{row0, row1} {
		for y := r * b; y < (r+1)*b; y++ {
			line := dst.Y[y*dst.YStride:]
			for c := range StampColumns {
				v := uint8(StampZero)
				if bitsRow>>(StampColumns-1-c)&1 == 1 {
					v = StampOne
				}
				fill(line[c*b:(c+1)*b], v)
			}
		}
	}
	// Neutral chroma under the grid, for any subsampling: every chroma sample that a grid
	// pixel maps to.
	gw, gh := StampColumns*b, StampRows*b
	if dst.CStride <= 0 {
		return
	}
	x0, x1 := dst.Rect.Min.X, dst.Rect.Min.X+gw-1
	for y := dst.Rect.Min.Y; y < dst.Rect.Min.Y+gh; y++ {
		lo, hi := dst.COffset(x0, y), dst.COffset(x1, y)+1
		if lo < 0 || hi < lo || hi > len(dst.Cb) || hi > len(dst.Cr) {
			return
		}
		fill(dst.Cb[lo:hi], stampChroma)
		fill(dst.Cr[lo:hi], stampChroma)
	}
}

// ReadStamp reads the stamp from img's top-left corner by sampling the luma at each block's
// centre. ok is false when img is too small to hold a stamp or the CRC does not match.
func ReadStamp(img *image.YCbCr) (frame uint32, t time.Time, ok bool) {
	b, fits := stampFits(img)
	if !fits {
		return 0, time.Time{}, false
	}
	var rows [StampRows]uint64
	for r := range rows {
		line := img.Y[(r*b+b/2)*img.YStride:]
		var v uint64
		for c := range StampColumns {
			v <<= 1
			if line[c*b+b/2] >= StampThreshold {
				v |= 1
			}
		}
		rows[r] = v
	}
	us := rows[0]
	frame = uint32(rows[1] >> 32)
	var msg [12]byte
	binary.BigEndian.PutUint64(msg[:8], us)
	binary.BigEndian.PutUint32(msg[8:], frame)
	if crc32.ChecksumIEEE(msg[:]) != uint32(rows[1]) {
		return 0, time.Time{}, false
	}
	return frame, time.UnixMicro(int64(us)), true
}
