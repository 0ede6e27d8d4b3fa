package web

import (
	"time"
)

// The fixture's video: 1024×576, so the stamp's blocks are 16 pixels, one macroblock each.
const (
	fixtureMBW = 64
	fixtureMBH = 36
)

// fixtureFrame draws frame n rendered at: the stamp, a bar sweeping across a dark background
// and, when visible, a cursor at (cx, cy), and encodes it.
func fixtureFrame(n uint32, at time.Time, cx, cy float64, visible bool) []byte {
	luma := make([]uint8, fixtureMBW*fixtureMBH)
	for i := range luma {
		luma[i] = 48
	}
	bar := int(n/2) % fixtureMBW
	for y := 2; y < fixtureMBH; y++ {
		luma[y*fixtureMBW+bar] = 112
		luma[y*fixtureMBW+(bar+1)%fixtureMBW] = 112
	}
	if visible {
		x := min(fixtureMBW-2, int(cx*fixtureMBW))
		y := max(2, min(fixtureMBH-2, int(cy*fixtureMBH)))
		for dy := range 2 {
			for dx := range 2 {
				luma[(y+dy)*fixtureMBW+x+dx] = 235
			}
		}
	}
	stampMacroblocks(luma, fixtureMBW, uint64(at.UnixMicro()), n)
	return vp8Flat(fixtureMBW, fixtureMBH, luma)
}
