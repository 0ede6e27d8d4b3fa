package checker

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/rendermesh/rendermesh/render/scene"
)

// TestCalibratePSNR measures the distributions the content thresholds are chosen from: the
// built-in scene through the sender's VP8 encoder and a decoder at the sizes and bitrates the
// sender uses (8 seeds, 90 frames each), compared with the re-rendered frame the stamp names and
// with what cheaters would show. It takes minutes and prints tables, so it runs only with
// CHECKER_CALIBRATE=1:
//
//	CHECKER_CALIBRATE=1 go test -run TestCalibratePSNR -v -timeout 30m ./roles/checker
func TestCalibratePSNR(t *testing.T) {
	if os.Getenv("CHECKER_CALIBRATE") == "" {
		t.Skip("set CHECKER_CALIBRATE=1 to measure the PSNR distributions")
	}
	const frames = 90
	sizes := [][2]int{{320, 180}, {640, 360}, {1280, 720}}
	rates := []int{150, 500, 2500}
	var seeds [][]byte
	for i := range 8 {
		seeds = append(seeds, fmt.Appendf(nil, "calibrate-%d", i))
	}
	const (
		honest  = "honest: frame n"
		align   = "honest: n minus n-1"
		repeat  = "repeat: n minus n-1"
		wrong   = "wrong seed"
		upscale = "half size, upscaled"
	)
	order := []string{honest, align, "stale: frame n-1", "stale: frame n-2", "stale: frame n-5", "stale: frame n-30", repeat, wrong, upscale}
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %5s  %-22s %6s %6s %6s %6s %6s\n", "size", "kbps", "compared with", "min", "p10", "median", "p90", "max")
	all := map[string][]float64{}
	for _, sz := range sizes {
		w, h := sz[0], sz[1]
		for _, kbps := range rates {
			dist := map[string][]float64{}
			unstamped := 0
			for si, seed := range seeds {
				got := vp8(t, w, h, kbps, honestFrames(seed, t0, 30, frames))
				ref := scene.New(w, h, seed)
				other := scene.New(w, h, seeds[(si+1)%len(seeds)])
				half := scene.New(w/2, h/2, seed)
				want, tmp, small := scene.NewFrame(w, h), scene.NewFrame(w, h), scene.NewFrame(w/2, h/2)
				r := contentRect(w, h)
				for i, img := range got {
					n := uint32(i + 1)
					if _, _, ok := scene.ReadStamp(img); !ok {
						unstamped++
					}
					ref.RenderContent(want, n)
					pn := lumaPSNR(want, img, r)
					dist[honest] = append(dist[honest], pn)
					ref.RenderContent(tmp, n-1)
					dist[align] = append(dist[align], pn-lumaPSNR(tmp, img, r))
					// The same picture under the next stamp (a frame shown twice): its PSNR
					// against frame n+1 minus against frame n.
					ref.RenderContent(tmp, n+1)
					dist[repeat] = append(dist[repeat], lumaPSNR(tmp, img, r)-pn)
					for _, k := range []uint32{1, 2, 5, 30} {
						if n > k {
							ref.RenderContent(tmp, n-k)
							key := fmt.Sprintf("stale: frame n-%d", k)
							dist[key] = append(dist[key], lumaPSNR(tmp, img, r))
						}
					}
					other.RenderContent(tmp, n)
					dist[wrong] = append(dist[wrong], lumaPSNR(tmp, img, r))
					half.RenderContent(small, n)
					upscaleInto(tmp, small)
					dist[upscale] = append(dist[upscale], lumaPSNR(want, tmp, r))
				}
			}
			for _, k := range order {
				all[k] = append(all[k], dist[k]...)
				fmt.Fprintf(&b, "%4dx%-4d %5d  %-22s %s\n", w, h, kbps, k, quantiles(dist[k]))
			}
			fmt.Fprintf(&b, "%4dx%-4d %5d  unstamped frames: %d of %d\n", w, h, kbps, unstamped, frames*len(seeds))
		}
	}
	fmt.Fprintf(&b, "\nall sizes and bitrates:\n")
	for _, k := range order {
		fmt.Fprintf(&b, "%-22s %s\n", k, quantiles(all[k]))
	}
	t.Log("\n" + b.String())
}

func quantiles(v []float64) string {
	s := slices.Clone(v)
	slices.Sort(s)
	q := func(p float64) float64 { return s[min(int(p*float64(len(s))), len(s)-1)] }
	return fmt.Sprintf("%6.2f %6.2f %6.2f %6.2f %6.2f", s[0], q(0.1), q(0.5), q(0.9), s[len(s)-1])
}
