package scene

import "image"

// cursorArrow is the classic arrow pointer: 'B' outline (dark), 'W' fill (light), '.' clear.
// Its tip is the top-left pixel.
var cursorArrow = [...]string{
	"B...........",
	"BB..........",
	"BWB.........",
	"BWWB........",
	"BWWWB.......",
	"BWWWWB......",
	"BWWWWWB.....",
	"BWWWWWWB....",
	"BWWWWWWWB...",
	"BWWWWWWWWB..",
	"BWWWWWWWWWB.",
	"BWWWWWWBBBBB",
	"BWWWBWWB....",
	"BWWBBWWB....",
	"BWB..BWWB...",
	"BB...BWWB...",
	"B.....BWWB..",
	"......BWWB..",
	".......BB...",
}

const (
	cursorDark  = 16
	cursorLight = 235
)

// cursorScale is how many pixels one bitmap pixel covers: 1 up to 1079 rows, then more.
func cursorScale(h int) int { return max(1, h/540) }

// drawCursor draws the arrow with its tip at (fx*w, fy*h) into a frame Render has checked, with
// neutral chroma under it so it reads black and white on any background.
func drawCursor(dst *image.YCbCr, fx, fy float64) {
	w, h := dst.Rect.Dx(), dst.Rect.Dy()
	tx := min(int(fx*float64(w)), w-1)
	ty := min(int(fy*float64(h)), h-1)
	s := cursorScale(h)
	for by, line := range cursorArrow {
		for bx := 0; bx < len(line); bx++ {
			var v uint8
			switch line[bx] {
			case 'B':
				v = cursorDark
			case 'W':
				v = cursorLight
			default:
				continue
			}
			for sy := range s {
				y := ty + by*s + sy
				if y >= h {
					break
				}
				for sx := range s {
					x := tx + bx*s + sx
					if x >= w {
						break
					}
					dst.Y[y*dst.YStride+x] = v
					c := (y/2)*dst.CStride + x/2
					dst.Cb[c] = 128
					dst.Cr[c] = 128
				}
			}
		}
	}
}
