package web

import (
	"encoding/binary"
	"hash/crc32"
)

// The frame stamp, as app.js reads it (the contract is written there): 64×2 blocks at the top-left
// corner, row 0 the render time in unix microseconds, row 1 the frame number then the CRC-32 of
// both, all most significant bit first; a block is 1 when it is bright.

// stampBits returns the stamp's blocks, row by row.
func stampBits(us uint64, n uint32) [2][64]bool {
	var msg [12]byte
	binary.BigEndian.PutUint64(msg[:8], us)
	binary.BigEndian.PutUint32(msg[8:], n)
	crc := crc32.ChecksumIEEE(msg[:])
	var bits [2][64]bool
	for i := range 64 {
		bits[0][i] = us>>(63-i)&1 != 0
	}
	for i := range 32 {
		bits[1][i] = n>>(31-i)&1 != 0
		bits[1][32+i] = crc>>(31-i)&1 != 0
	}
	return bits
}

// readStamp is stampBits' inverse on a luma plane with blocks of side b: ok is false when the CRC
// does not match.
func readStamp(y []byte, stride, b int) (us uint64, n uint32, ok bool) {
	bit := func(row, col int) uint64 {
		if y[(row*b+b/2)*stride+col*b+b/2] >= 128 {
			return 1
		}
		return 0
	}
	var crc uint32
	for i := range 64 {
		us = us<<1 | bit(0, i)
	}
	for i := range 32 {
		n = n<<1 | uint32(bit(1, i))
		crc = crc<<1 | uint32(bit(1, 32+i))
	}
	var msg [12]byte
	binary.BigEndian.PutUint64(msg[:8], us)
	binary.BigEndian.PutUint32(msg[8:], n)
	return us, n, crc32.ChecksumIEEE(msg[:]) == crc
}

// Luma values of the fixture's frames: stamp bits are video-range black and white.
const (
	lumaZero = 16
	lumaOne  = 235
)

// stampMacroblocks writes the stamp into a macroblock luma grid mbW (64) macroblocks wide: at a
// width of 1024 the stamp's blocks are 16 pixels, one macroblock each.
func stampMacroblocks(luma []uint8, mbW int, us uint64, n uint32) {
	bits := stampBits(us, n)
	for row := range 2 {
		for col := range 64 {
			v := uint8(lumaZero)
			if bits[row][col] {
				v = lumaOne
			}
			luma[row*mbW+col] = v
		}
	}
}
