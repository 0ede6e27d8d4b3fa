package epoch

import (
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// Floats appear below only as the test's reference; the code under test uses none.

// eth is 1e18 base units.
var eth = new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil)

func ethers(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), eth) }

func randOutput(rng *rand.Rand) Output {
	var o Output
	for i := 0; i < OutputSize; i += 8 {
		binary.BigEndian.PutUint64(o[i:], rng.Uint64())
	}
	return o
}

// outputWithU is an output whose first 256 bits are u.
func outputWithU(u *big.Int) Output {
	var o Output
	u.FillBytes(o[:uniformBits/8])
	return o
}

// lamQ256 is lambda (a float64, so a dyadic rational) exactly in Q.256.
func lamQ256(lambda float64) *big.Int {
	f := new(big.Float).SetPrec(0).SetFloat64(lambda)
	f.SetMantExp(f, uniformBits)
	i, acc := f.Int(nil)
	if acc != big.Exact {
		panic("lambda not exact in Q.256")
	}
	return i
}

// seatsAt draws with the given lambda: Expected is MaxExpected and total is MaxExpected * 2^256, so
// weight is lambda in Q.256.
func seatsAt(out Output, lam256 *big.Int, maxSeats uint32) uint32 {
	total := new(big.Int).Lsh(big.NewInt(MaxExpected), uniformBits)
	return Seats(out, lam256, total, Params{Expected: MaxExpected, MaxSeats: maxSeats})
}

// refCDF is P(X <= k) for X ~ Poisson(lambda), in float64 (the reference).
func refCDF(lambda float64, k int) float64 {
	sum := 0.0
	for j := 0; j <= k; j++ {
		sum += refPMF(lambda, j)
	}
	return sum
}

func refPMF(lambda float64, j int) float64 {
	lg, _ := math.Lgamma(float64(j) + 1)
	return math.Exp(-lambda + float64(j)*math.Log(lambda) - lg)
}

// refTail is P(X > k), summed from the tail so that it is accurate far below 2^-53.
func refTail(lambda float64, k int) float64 {
	sum := 0.0
	for j := k + 200; j > k; j-- {
		sum += refPMF(lambda, j)
	}
	return sum
}

func toFloat(x *big.Int, prec uint) float64 {
	f := new(big.Float).SetInt(x)
	f.SetMantExp(f, -int(prec))
	v, _ := f.Float64()
	return v
}

func TestExpNegMatchesFloat(t *testing.T) {
	for _, x := range []float64{0, 1.0 / (1 << 30), 0.001, 0.1, 0.5, 1, 2, 10, 100, 700} {
		lam := lamQ256(x)
		po := newPoisson(lam)
		got := toFloat(po.pmf, po.prec)
		want := math.Exp(-x)
		if d := math.Abs(got-want) / want; d > 1e-14 {
			t.Errorf("e^-%g = %.17g, want %.17g (relative error %.2g)", x, got, want, d)
		}
	}
}

// The fixed-point CDF against the float64 reference, within 1e-14 absolute for lambda <= 16 (the
// reference's own rounding) and 1e-12 beyond, where Lgamma and Log of larger numbers lose digits.
func TestPoissonCDFMatchesFloat(t *testing.T) {
	for _, lambda := range []float64{1.0 / (1 << 20), 0.01, 0.3, 1, 2.5, 7, 16, 64, 200, 1024} {
		tol := 1e-14
		if lambda > 16 {
			tol = 1e-12
		}
		po := newPoisson(lamQ256(lambda))
		kmax := int(lambda + 10*math.Sqrt(lambda) + 10)
		worst := 0.0
		for k := 0; k <= kmax; k++ {
			if k > 0 && !po.next() {
				t.Fatalf("lambda %g: walk ended at k=%d", lambda, k)
			}
			got := toFloat(po.cdf, po.prec)
			want := refCDF(lambda, k)
			d := math.Abs(got - want)
			worst = max(worst, d)
			if d > tol {
				t.Errorf("lambda %g: P(X <= %d) = %.17g, want %.17g (|diff| %.2g > %.0g)", lambda, k, got, want, d, tol)
			}
		}
		t.Logf("lambda %g: worst |diff| %.2g over k=0..%d (prec %d bits)", lambda, worst, kmax, po.prec)
	}
}

// Seats is exactly the inverse of the fixed-point CDF: u just below P(X <= k) gives k, u at or just
// above it gives k+1.
func TestSeatsInvertsCDF(t *testing.T) {
	for _, lambda := range []float64{0.01, 0.5, 1, 3, 16, 100} {
		lam := lamQ256(lambda)
		po := newPoisson(lam)
		shift := po.prec - uniformBits
		for k := uint32(0); ; k++ {
			if k > 0 {
				po.next()
			}
			if refPMF(lambda, int(k+1)) < 1e-60 && float64(k) > lambda {
				break
			}
			// ceil(cdf / 2^shift): the smallest u with u << shift >= cdf.
			u := new(big.Int).Add(po.cdf, new(big.Int).Lsh(big.NewInt(1), shift))
			u.Sub(u, big.NewInt(1)).Rsh(u, shift)
			if got := seatsAt(outputWithU(u), lam, 0); got != k+1 {
				t.Fatalf("lambda %g: u at P(X <= %d): Seats = %d, want %d", lambda, k, got, k+1)
			}
			u.Sub(u, big.NewInt(1))
			if got := seatsAt(outputWithU(u), lam, 0); got != k {
				t.Fatalf("lambda %g: u just below P(X <= %d): Seats = %d, want %d", lambda, k, got, k)
			}
		}
	}
}

func TestSeatsBoundaries(t *testing.T) {
	var zero Output
	var ff Output
	for i := range ff {
		ff[i] = 0xff
	}
	one := big.NewInt(1)
	huge := new(big.Int).Lsh(one, 300)

	// u = 0 is always below P(X = 0) > 0: no seat, whatever lambda.
	for _, lambda := range []float64{1e-9, 1, 1024} {
		if got := seatsAt(zero, lamQ256(lambda), 0); got != 0 {
			t.Errorf("all-zero output, lambda %g: Seats = %d, want 0", lambda, got)
		}
	}
	// u = 1 - 2^-256: the smallest k whose tail P(X > k) is below 2^-256.
	for _, lambda := range []float64{1, 16, 1024} {
		want := int(lambda) // P(X > floor(lambda)) is near 1/2
		for refTail(lambda, want) >= 0x1p-256 {
			want++
		}
		for _, k := range []int{want - 1, want} {
			if r := refTail(lambda, k) / 0x1p-256; math.Abs(r-1) < 1e-6 {
				t.Fatalf("lambda %g: tail at %d too close to 2^-256 (%g) for a float reference", lambda, k, r)
			}
		}
		if got := seatsAt(ff, lamQ256(lambda), 0); got != uint32(want) {
			t.Errorf("all-0xff output, lambda %g: Seats = %d, want %d", lambda, got, want)
		}
		if got := seatsAt(ff, lamQ256(lambda), 3); got != 3 {
			t.Errorf("all-0xff output, lambda %g, MaxSeats 3: Seats = %d, want 3", lambda, got)
		}
	}

	p := Params{Expected: 10}
	cases := []struct {
		name          string
		weight, total *big.Int
		p             Params
	}{
		{"zero weight", big.NewInt(0), one, p},
		{"negative weight", big.NewInt(-5), one, p},
		{"nil weight", nil, one, p},
		{"zero total", one, big.NewInt(0), p},
		{"negative total", one, big.NewInt(-1), p},
		{"nil total", one, nil, p},
		{"Expected 0", one, one, Params{}},
		{"lambda below 2^-256", one, huge, Params{Expected: 1}},
	}
	for _, c := range cases {
		if got := Seats(ff, c.weight, c.total, c.p); got != 0 {
			t.Errorf("%s, all-0xff output: Seats = %d, want 0", c.name, got)
		}
	}

	// A weight above the total counts as the total; Expected above MaxExpected as MaxExpected.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		out := randOutput(rng)
		if a, b := Seats(out, big.NewInt(9), big.NewInt(3), p), Seats(out, big.NewInt(3), big.NewInt(3), p); a != b {
			t.Fatalf("weight > total: Seats = %d, want %d as for weight == total", a, b)
		}
		if a, b := Seats(out, one, one, Params{Expected: math.MaxUint32}), Seats(out, one, one, Params{Expected: MaxExpected}); a != b {
			t.Fatalf("Expected > MaxExpected: Seats = %d, want %d", a, b)
		}
	}
}

// Seats must give the same answer on every machine and in every version. These values were computed
// by this implementation (and agree with the float64 reference inverse CDF); a change here means
// nodes running different versions disagree on elections.
func TestSeatsGolden(t *testing.T) {
	golden := []struct {
		lambda float64
		seats  []uint32
	}{
		{0.25, []uint32{0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}},
		{1, []uint32{1, 0, 3, 0, 0, 1, 1, 1, 2, 2, 0, 1, 1, 1, 1, 1, 1, 0, 0, 2, 1, 0, 0, 1}},
		{7.5, []uint32{9, 6, 12, 4, 5, 8, 7, 9, 9, 10, 5, 7, 9, 8, 8, 7, 8, 5, 5, 11, 8, 6, 5, 7}},
		{300, []uint32{309, 293, 327, 277, 281, 302, 295, 309, 311, 314, 286, 298, 308, 301, 301, 296, 306, 282, 286, 320, 301, 291, 287, 298}},
	}
	for _, g := range golden {
		for i, want := range g.seats {
			out := Output(sha512.Sum512(fmt.Appendf(nil, "golden %d", i)))
			if got := seatsAt(out, lamQ256(g.lambda), 0); got != want {
				t.Errorf("lambda %g, output %d: Seats = %d, want %d", g.lambda, i, got, want)
			}
			// The float64 reference: the smallest k with u < P(X <= k).
			u := float64(binary.BigEndian.Uint64(out[:8])) / 0x1p64
			k := 0
			for u >= refCDF(g.lambda, k) {
				k++
			}
			if uint32(k) != want {
				t.Errorf("lambda %g, output %d: float64 reference inverse CDF %d, golden %d", g.lambda, i, k, want)
			}
		}
	}
}

// chiSquare999 are the critical values of the chi-square distribution at p = 0.001 (the statistic
// exceeds them with probability 0.1% when the model holds), by degrees of freedom.
var chiSquare999 = map[int]float64{8: 26.124, 20: 45.315}

// candidateWeights are 20 candidates of varied stake and quality (and so weight, over a 65:1 range).
func candidateWeights() []*big.Int {
	var ws []*big.Int
	for i := range 20 {
		ws = append(ws, Weight(WeightInputs{
			Stake:      ethers(int64(1 + i*i/4)),
			QualityPPM: uint32(200_000 + 40_000*i),
		}))
	}
	return ws
}

func sum(ws []*big.Int) *big.Int {
	t := new(big.Int)
	for _, w := range ws {
		t.Add(t, w)
	}
	return t
}

func lambdaOf(w, total *big.Int, expected uint32) float64 {
	l, _ := new(big.Rat).SetFrac(new(big.Int).Mul(w, big.NewInt(int64(expected))), total).Float64()
	return l
}

// Over many epochs, each candidate's seat count is Poisson(epochs * lambda_i) with lambda_i =
// Expected * w_i / total, exactly proportional to weight; and the number of epochs it is selected in
// (seats >= 1) is Binomial(epochs, 1 - e^-lambda_i). Both are checked by a chi-square statistic with
// one degree of freedom per candidate: the counts are independent and their sum is not fixed (the
// committee size varies), so no degree of freedom is lost; df = 20, critical value 45.315 at
// p = 0.001.
func TestSeatsProportionalToWeight(t *testing.T) {
	epochs := 4000
	if testing.Short() {
		epochs = 1000
	}
	ws := candidateWeights()
	total := sum(ws)
	p := Params{Expected: 10}
	rng := rand.New(rand.NewPCG(3, 4))
	seats := make([]float64, len(ws))
	selected := make([]float64, len(ws))
	for range epochs {
		for i, w := range ws {
			s := Seats(randOutput(rng), w, total, p)
			seats[i] += float64(s)
			if s > 0 {
				selected[i]++
			}
		}
	}
	var chiSeats, chiSelected float64
	for i, w := range ws {
		lambda := lambdaOf(w, total, p.Expected)
		e := float64(epochs) * lambda
		chiSeats += (seats[i] - e) * (seats[i] - e) / e
		q := 1 - math.Exp(-lambda)
		e = float64(epochs) * q
		chiSelected += (selected[i] - e) * (selected[i] - e) / (e * (1 - q))
	}
	crit := chiSquare999[len(ws)]
	t.Logf("%d epochs: chi-square seats %.2f, selections %.2f (df %d, critical %.3f)", epochs, chiSeats, chiSelected, len(ws), crit)
	if chiSeats > crit {
		t.Errorf("seat counts not proportional to weight: chi-square %.2f > %.3f", chiSeats, crit)
	}
	if chiSelected > crit {
		t.Errorf("selection counts off: chi-square %.2f > %.3f", chiSelected, crit)
	}
}

// The same with real VRF outputs: 8 candidates (df = 8, critical value 26.124 at p = 0.001), each
// proving on Alpha(seed, epoch, RoleIndexer) with its own key.
func TestSeatsProportionalToWeightWithVRF(t *testing.T) {
	epochs := 150
	if testing.Short() {
		epochs = 50
	}
	const n = 8
	keys := make([]ed25519.PrivateKey, n)
	ws := make([]*big.Int, n)
	for i := range n {
		keys[i] = testKey(t, byte(i))
		ws[i] = Weight(WeightInputs{Stake: ethers(int64(i + 1)), QualityPPM: MaxQualityPPM})
	}
	total := sum(ws)
	p := Params{Expected: 4}
	seats := make([]float64, n)
	for e := range uint64(epochs) {
		var seed Seed
		binary.BigEndian.PutUint64(seed[:], e*7919+1)
		alpha := Alpha(seed, e, RoleIndexer)
		for i, sk := range keys {
			_, out := Prove(sk, alpha)
			seats[i] += float64(Seats(out, ws[i], total, p))
		}
	}
	chi := 0.0
	for i, w := range ws {
		e := float64(epochs) * lambdaOf(w, total, p.Expected)
		chi += (seats[i] - e) * (seats[i] - e) / e
	}
	crit := chiSquare999[n]
	t.Logf("%d epochs with VRF outputs: chi-square %.2f (df %d, critical %.3f)", epochs, chi, n, crit)
	if chi > crit {
		t.Errorf("seat counts not proportional to weight: chi-square %.2f > %.3f", chi, crit)
	}
}

// Committee size (all seats in an epoch) is the sum of independent Poissons, so Poisson(Expected):
// its mean must be within 5 standard errors (5*sqrt(Expected/epochs)) of Expected and its variance
// within 5 standard errors (about 5*sqrt(2/epochs), relative) of its mean. Zero-stake candidates,
// mixed in, never get a seat, not even with an all-0xff output.
func TestCommitteeSizeAndZeroStake(t *testing.T) {
	epochs := 3000
	if testing.Short() {
		epochs = 800
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var ws []*big.Int
	for i := range 40 {
		stake := ethers(rng.Int64N(1000) + 1)
		if i%4 == 0 {
			stake = new(big.Int) // 10 zero-stake candidates
		}
		ws = append(ws, Weight(WeightInputs{Stake: stake, QualityPPM: rng.Uint32N(MaxQualityPPM + 1), Recent: rng.Uint32N(3)}))
	}
	total := sum(ws)
	p := Params{Expected: 16}
	var ff Output
	for i := range ff {
		ff[i] = 0xff
	}
	var s1, s2 float64
	for range epochs {
		size := 0.0
		for i, w := range ws {
			s := Seats(randOutput(rng), w, total, p)
			if i%4 == 0 && (s != 0 || Seats(ff, w, total, p) != 0) {
				t.Fatalf("zero-stake candidate %d drawn", i)
			}
			size += float64(s)
		}
		s1 += size
		s2 += size * size
	}
	n := float64(epochs)
	mean := s1 / n
	variance := (s2 - s1*s1/n) / (n - 1)
	e := float64(p.Expected)
	meanTol := 5 * math.Sqrt(e/n)
	varTol := 5 * math.Sqrt((2+1/e)/n)
	t.Logf("%d epochs: committee size mean %.3f (want %g ± %.3f), variance/mean %.3f (want 1 ± %.3f)", epochs, mean, e, meanTol, variance/mean, varTol)
	if math.Abs(mean-e) > meanTol {
		t.Errorf("committee size mean %.3f, want %g ± %.3f", mean, e, meanTol)
	}
	if math.Abs(variance/mean-1) > varTol {
		t.Errorf("committee size variance/mean %.3f, want 1 ± %.3f", variance/mean, varTol)
	}
}

// recencyStats are measured over a simulated run of epochs. Index 0 is the 19 small candidates
// together, index 1 the whale.
type recencyStats struct {
	windowShare float64    // share of selections of a candidate already selected in the last window epochs
	selectRate  [2]float64 // P(selected in an epoch)
	repeatRate  [2]float64 // P(selected at e | selected at e-1)
}

// lift is repeatRate/selectRate: 1 if being selected does not change the odds of the next epoch.
func (s recencyStats) lift(who int) float64 { return s.repeatRate[who] / s.selectRate[who] }

// simulateRecency runs epochs of 20 candidates, one whale with 10 times the stake of each of the 19
// others, feeding Recent (epochs selected in the last RecencyWindow) from the simulated history when
// useRecency is set, and 0 otherwise.
func simulateRecency(epochs int, useRecency bool) recencyStats {
	const n = 20
	p := Params{Expected: 3, RecencyWindow: 8}
	rng := rand.New(rand.NewPCG(7, 8))
	history := make([][]bool, p.RecencyWindow) // ring: history[e % window][i]
	for i := range history {
		history[i] = make([]bool, n)
	}
	recent := make([]uint32, n)
	prev := make([]bool, n)
	var selections, inWindow int
	var chances, selected, pairs, repeats [2]int
	ws := make([]*big.Int, n)
	for e := range epochs {
		for i := range n {
			in := WeightInputs{Stake: eth, QualityPPM: MaxQualityPPM}
			if i == 0 {
				in.Stake = ethers(10)
			}
			if useRecency {
				in.Recent = recent[i]
			}
			ws[i] = Weight(in)
		}
		total := sum(ws)
		slot := history[e%len(history)]
		for i := range n {
			if slot[i] {
				recent[i]-- // leaves the window
			}
			slot[i] = Seats(randOutput(rng), ws[i], total, p) > 0
		}
		for i := range n {
			who := 0
			if i == 0 {
				who = 1 // the whale
			}
			if prev[i] {
				pairs[who]++
				if slot[i] {
					repeats[who]++
				}
			}
			prev[i] = slot[i]
			chances[who]++
			if slot[i] {
				selections++
				selected[who]++
				if recent[i] > 0 {
					inWindow++
				}
				recent[i]++
			}
		}
	}
	st := recencyStats{windowShare: float64(inWindow) / float64(selections)}
	for who := range 2 {
		st.selectRate[who] = float64(selected[who]) / float64(chances[who])
		st.repeatRate[who] = float64(repeats[who]) / float64(pairs[who])
	}
	return st
}

// With Recent fed from the history, a small candidate selected in the last epoch is drawn again less
// often than small candidates in general (lift below 0.8; without the rule draws are independent,
// lift within 0.1 of 1), and the whale, whose Recent is rarely 0, is drawn again in the next epoch
// at most 0.75 times as often as without the rule.
func TestRecencyLowersRepeatSelection(t *testing.T) {
	epochs := 3000
	if testing.Short() {
		epochs = 1000
	}
	without := simulateRecency(epochs, false)
	with := simulateRecency(epochs, true)
	for who, name := range []string{"small candidates", "whale"} {
		t.Logf("%s: P(selected) %.3f without the rule, %.3f with it; P(again next epoch) %.3f without, %.3f with; lift %.2f without, %.2f with",
			name, without.selectRate[who], with.selectRate[who], without.repeatRate[who], with.repeatRate[who], without.lift(who), with.lift(who))
		if l := without.lift(who); math.Abs(l-1) > 0.1 {
			t.Errorf("%s: lift %.2f without the recency rule, want 1 ± 0.1", name, l)
		}
	}
	if l := with.lift(0); l > 0.8 {
		t.Errorf("small candidates: lift %.2f with the recency rule, want below 0.8", l)
	}
	if with.repeatRate[1] > 0.75*without.repeatRate[1] {
		t.Errorf("whale: P(selected again next epoch) %.3f with the rule, want below 0.75 * %.3f", with.repeatRate[1], without.repeatRate[1])
	}
	t.Logf("share of selections repeating within the window: %.3f without, %.3f with", without.windowShare, with.windowShare)
	if with.windowShare >= without.windowShare {
		t.Errorf("share of selections repeating within the window %.3f with the rule, want below %.3f", with.windowShare, without.windowShare)
	}
}

func TestWeight(t *testing.T) {
	// The formula on an example: 2 * (250000 + 500000) * 2^64 / 3.
	want := new(big.Int).Lsh(big.NewInt(2*750_000), 64)
	want.Quo(want, big.NewInt(3))
	if got := Weight(WeightInputs{Stake: big.NewInt(2), QualityPPM: 500_000, Recent: 2}); got.Cmp(want) != 0 {
		t.Errorf("Weight = %v, want %v", got, want)
	}
	for _, stake := range []*big.Int{nil, big.NewInt(0), big.NewInt(-1), ethers(-3)} {
		if w := Weight(WeightInputs{Stake: stake, QualityPPM: MaxQualityPPM}); w.Sign() != 0 {
			t.Errorf("stake %v: Weight = %v, want 0", stake, w)
		}
	}
	// Quality above a million is a million.
	a := Weight(WeightInputs{Stake: eth, QualityPPM: math.MaxUint32})
	if b := Weight(WeightInputs{Stake: eth, QualityPPM: MaxQualityPPM}); a.Cmp(b) != 0 {
		t.Errorf("quality not clamped: %v != %v", a, b)
	}
	// Quality 0 keeps a fifth of a perfect node's weight.
	a = Weight(WeightInputs{Stake: eth, QualityPPM: 0})
	b := Weight(WeightInputs{Stake: eth, QualityPPM: MaxQualityPPM})
	if new(big.Int).Mul(a, big.NewInt(5)).Cmp(b) != 0 {
		t.Errorf("quality 0: weight %v, want a fifth of %v", a, b)
	}
}

// Weight is strictly increasing in stake and quality and strictly decreasing in Recent, down to one
// base unit of stake and up to the largest Recent.
func TestWeightMonotone(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	check := func(in WeightInputs) {
		t.Helper()
		w := Weight(in)
		if w.Sign() <= 0 {
			t.Fatalf("%+v: weight %v, want > 0", in, w)
		}
		up := in
		up.Stake = new(big.Int).Add(in.Stake, big.NewInt(1))
		if Weight(up).Cmp(w) <= 0 {
			t.Fatalf("%+v: one more unit of stake does not raise the weight", in)
		}
		if in.QualityPPM < MaxQualityPPM {
			up = in
			up.QualityPPM++
			if Weight(up).Cmp(w) <= 0 {
				t.Fatalf("%+v: more quality does not raise the weight", in)
			}
		}
		if in.Recent < math.MaxUint32 {
			down := in
			down.Recent++
			if Weight(down).Cmp(w) >= 0 {
				t.Fatalf("%+v: one more recent selection does not lower the weight", in)
			}
		}
	}
	for _, in := range []WeightInputs{
		{Stake: big.NewInt(1), QualityPPM: 0, Recent: math.MaxUint32 - 1},
		{Stake: big.NewInt(1), QualityPPM: MaxQualityPPM - 1, Recent: math.MaxUint32 - 1},
		{Stake: big.NewInt(1), QualityPPM: 0, Recent: 0},
		{Stake: ethers(1 << 40), QualityPPM: MaxQualityPPM, Recent: math.MaxUint32},
	} {
		check(in)
	}
	for range 2000 {
		// Stakes from 1 base unit to about 2^90 (a billion ether), spread over all magnitudes.
		stake := new(big.Int).Lsh(big.NewInt(rng.Int64N(1<<30)+1), uint(rng.IntN(61)))
		recent := rng.Uint32N(100)
		if rng.IntN(4) == 0 {
			recent = rng.Uint32()
		}
		check(WeightInputs{Stake: stake, QualityPPM: rng.Uint32N(MaxQualityPPM + 1), Recent: recent})
	}
}

func TestParamsValidate(t *testing.T) {
	for _, c := range []struct {
		p    Params
		good bool
	}{
		{Params{Expected: 1}, true},
		{Params{Expected: 16, RecencyWindow: 96, MaxSeats: 2}, true},
		{Params{Expected: MaxExpected, RecencyWindow: MaxRecencyWindow}, true},
		{Params{}, false},
		{Params{Expected: MaxExpected + 1}, false},
		{Params{Expected: 8, RecencyWindow: MaxRecencyWindow + 1}, false},
	} {
		err := c.p.Validate()
		if c.good && err != nil {
			t.Errorf("%+v: Validate = %v, want nil", c.p, err)
		}
		if !c.good && !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%+v: Validate = %v, want ErrInvalidParams", c.p, err)
		}
	}
}

func FuzzSeats(f *testing.F) {
	f.Add([]byte{}, []byte{1}, []byte{2}, false, uint32(10), uint32(0))
	f.Add(make([]byte, OutputSize), []byte{1}, []byte{1}, false, uint32(1), uint32(1))
	ff := make([]byte, OutputSize)
	for i := range ff {
		ff[i] = 0xff
	}
	f.Add(ff, []byte{1}, []byte{1}, false, uint32(MaxExpected), uint32(0))
	f.Add(ff, []byte{9}, []byte{1}, true, uint32(math.MaxUint32), uint32(3))
	f.Add(ff, []byte{0}, []byte{1}, false, uint32(4), uint32(0))
	f.Fuzz(func(t *testing.T, outBytes, weightBytes, totalBytes []byte, negWeight bool, expected, maxSeats uint32) {
		var out Output
		copy(out[:], outBytes)
		weight := new(big.Int).SetBytes(weightBytes)
		if negWeight {
			weight.Neg(weight)
		}
		total := new(big.Int).SetBytes(totalBytes)
		s := Seats(out, weight, total, Params{Expected: expected, MaxSeats: maxSeats})
		if maxSeats != 0 && s > maxSeats {
			t.Fatalf("Seats = %d above MaxSeats %d", s, maxSeats)
		}
		if weight.Sign() <= 0 && s != 0 {
			t.Fatalf("weight %v: Seats = %d, want 0", weight, s)
		}
	})
}

func BenchmarkSeats(b *testing.B) {
	rng := rand.New(rand.NewPCG(11, 12))
	outs := make([]Output, 1024)
	for i := range outs {
		outs[i] = randOutput(rng)
	}
	// lambda 0.01 is a candidate among hundreds; 1 a large one; 64 and 1024 the whole committee.
	for _, lambda := range []float64{0.01, 1, 64, 1024} {
		lam := lamQ256(lambda)
		b.Run(fmt.Sprintf("lambda=%g", lambda), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				seatsAt(outs[i%len(outs)], lam, 0)
				i++
			}
		})
	}
}
