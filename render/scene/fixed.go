package scene

// Everything that decides a pixel is integer arithmetic: float rounding, fused multiply-adds and
// math library differences between architectures would otherwise let two honest machines render
// the same (seed, frame) differently, and a checker compares bytes.

// Angles are in turns/65536 (angleTurn units per full turn). sinTable holds sin in Q14
// (16384 = 1.0) at sinSteps points per turn.
const (
	angleTurn  = 1 << 16
	sinSteps   = 4096
	sinShift   = 4 // angleTurn / sinSteps == 1<<sinShift
	one14      = 1 << 14
	waveSteps  = 1024
	waveMask   = waveSteps - 1
	waveShift  = 6 // phase units per wave step: 1<<waveShift
	phaseTurn  = waveSteps << waveShift
	quarterArc = angleTurn / 4
)

var sinTable = func() (t [sinSteps]int32) {
	// Bhaskara I's approximation, sin(x) ~ 16u(1-u) / (5 - 4u(1-u)) with u = x/pi, evaluated in
	// exact integers: within 0.2% of the real sine, and the same everywhere.
	const half = sinSteps / 2
	for i := 0; i < half; i++ {
		q := int64(i) * int64(half-i)
		v := int32(one14 * 16 * q / (5*half*half - 4*q))
		t[i] = v
		t[i+half] = -v
	}
	return t
}()

// isin is sin(a) in Q14, a in turns/65536.
func isin(a uint32) int64 { return int64(sinTable[(a>>sinShift)&(sinSteps-1)]) }

// icos is cos(a) in Q14.
func icos(a uint32) int64 { return isin(a + quarterArc) }

// rng is splitmix64: a small, fast generator whose sequence is fixed by its definition, so the
// scene a seed describes never changes with the Go version.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn is a number in [lo, hi].
func (r *rng) intn(lo, hi int) int {
	return lo + int(r.next()%uint64(hi-lo+1))
}

// sign is -1 or 1.
func (r *rng) sign() int {
	if r.next()&1 == 0 {
		return -1
	}
	return 1
}
