package epoch

import (
	"errors"
	"fmt"
	"math/big"
)

// Limits and constants of the sortition. docs/EPOCHS.md (## Sortition) explains the choices.
const (
	// MaxExpected bounds Params.Expected. It keeps the fixed-point working precision (which grows with
	// lambda) and the inverse-CDF walk short.
	MaxExpected = 1024
	// MaxRecencyWindow bounds Params.RecencyWindow: 30 days of 15-minute epochs.
	MaxRecencyWindow = 30 * 24 * 4
	// QualityFloorPPM is added to a candidate's quality before it scales the stake, so a node of
	// unknown or poor quality keeps a fifth of the weight of a perfect one instead of none.
	QualityFloorPPM = 250_000
	// MaxQualityPPM is a perfect service quality; higher inputs are clamped to it.
	MaxQualityPPM = 1_000_000

	// weightScaleBits scales weights up before the division by 1+Recent, so that Weight stays
	// strictly monotone in every input even for a stake of one base unit.
	weightScaleBits = 64
	// uniformBits is how many leading bits of the VRF output make the uniform fraction u.
	uniformBits = 256
	// guardBits are carried beyond uniformBits through the exp and CDF computation.
	guardBits = 64
	// reduceBits: exp(-x) is summed as a series for x < 2^-reduceBits, then squared back up.
	reduceBits = 20
)

// ErrInvalidParams is wrapped by the errors of Params.Validate.
var ErrInvalidParams = errors.New("epoch: invalid sortition params")

// Params are the sortition parameters. Every node of the network must use the same values.
type Params struct {
	Expected      uint32 // expected number of seats drawn per epoch over all candidates (committee size)
	RecencyWindow uint32 // how many past epochs count as "recent" selections (0: no recency rule)
	MaxSeats      uint32 // cap on seats per candidate per epoch; 0 means no cap
}

// Validate reports whether p can be used: 1 <= Expected <= MaxExpected and
// RecencyWindow <= MaxRecencyWindow. MaxSeats may be anything (0 means no cap).
func (p Params) Validate() error {
	if p.Expected == 0 {
		return fmt.Errorf("%w: Expected is 0; set it to the committee size (1..%d)", ErrInvalidParams, MaxExpected)
	}
	if p.Expected > MaxExpected {
		return fmt.Errorf("%w: Expected is %d, above the maximum %d; use a smaller committee", ErrInvalidParams, p.Expected, MaxExpected)
	}
	if p.RecencyWindow > MaxRecencyWindow {
		return fmt.Errorf("%w: RecencyWindow is %d epochs, above the maximum %d (30 days)", ErrInvalidParams, p.RecencyWindow, MaxRecencyWindow)
	}
	return nil
}

// WeightInputs are what a candidate's sortition weight depends on. All nodes must agree on them for
// every candidate (stake read from the chain at a fixed block, quality and history from shared state).
type WeightInputs struct {
	Stake      *big.Int // base units (wei); nil or <= 0 means no stake
	QualityPPM uint32   // service quality in parts per million, 0..1_000_000 (values above are clamped)
	Recent     uint32   // times selected in the last RecencyWindow epochs
}

// Weight is a candidate's sortition weight:
//
//	Weight = floor( Stake * (QualityFloorPPM + min(QualityPPM, 1e6)) * 2^64 / (1 + Recent) )
//
// Zero or negative stake gives zero weight (never drawn). The weight is strictly increasing in Stake
// and in QualityPPM (up to 1e6) and strictly decreasing in Recent: the 2^64 scale makes every such
// step change the exact quotient by more than 1, so flooring never merges two neighbours.
func Weight(in WeightInputs) *big.Int {
	if in.Stake == nil || in.Stake.Sign() <= 0 {
		return new(big.Int)
	}
	q := min(in.QualityPPM, MaxQualityPPM)
	w := new(big.Int).Mul(in.Stake, big.NewInt(int64(QualityFloorPPM)+int64(q)))
	w.Lsh(w, weightScaleBits)
	return w.Quo(w, new(big.Int).SetUint64(uint64(in.Recent)+1))
}

// Seats is how many seats a candidate of weight `weight`, out of the total weight `total` of all
// candidates, wins in a draw whose VRF output is out. It is a Poisson draw with
//
//	lambda = Expected * weight / total
//
// by inverse CDF: u is the first 256 bits of out read as a fraction in [0, 1), and Seats is the
// smallest k with u < P(X <= k), computed in big.Int fixed point (no floats), so every machine gets
// the same answer. Summed over candidates, the seats are Poisson(Expected) in distribution and each
// candidate's mean is exactly proportional to its weight.
//
// weight <= 0, total <= 0 or Expected == 0 give 0 seats. The result never exceeds p.MaxSeats when it
// is non-zero. Seats does not need p to be valid, but keeps itself bounded: Expected above
// MaxExpected counts as MaxExpected, and a weight above total counts as total.
func Seats(out Output, weight, total *big.Int, p Params) uint32 {
	if weight == nil || total == nil || weight.Sign() <= 0 || total.Sign() <= 0 || p.Expected == 0 {
		return 0
	}
	if weight.Cmp(total) > 0 {
		weight = total
	}
	lam := new(big.Int).Mul(weight, big.NewInt(int64(min(p.Expected, MaxExpected))))
	lam.Lsh(lam, uniformBits)
	lam.Quo(lam, total) // lambda in Q.256, at most Expected
	if lam.Sign() == 0 {
		// lambda < 2^-256: P(X = 0) = e^-lambda > 1 - 2^-256 >= u.
		return 0
	}
	po := newPoisson(lam)
	u := new(big.Int).SetBytes(out[:uniformBits/8])
	u.Lsh(u, po.prec-uniformBits)
	for u.Cmp(po.cdf) >= 0 {
		if p.MaxSeats != 0 && po.k >= p.MaxSeats {
			return p.MaxSeats
		}
		if !po.next() {
			// The pmf has fallen below the working precision past the mode: the CDF cannot grow
			// any more, and u lies in the last 2^-320 or so of the distribution.
			break
		}
	}
	return po.k
}

// poisson walks the CDF of a Poisson distribution in fixed point with prec fractional bits.
type poisson struct {
	prec     uint
	lamInt   uint64   // floor(lambda)
	lam      *big.Int // lambda, Q.prec
	k        uint32
	pmf, cdf *big.Int // P(X = k), P(X <= k), Q.prec
	prod     *big.Int // scratch
	rem      *big.Int // scratch
	kBig     *big.Int // scratch
}

// newPoisson starts the walk at k = 0 for lambda given in Q.256 (lambda >= 0).
//
// The working precision is 256 + 64 guard bits + 1.5*(floor(lambda)+1) bits, so that e^-lambda
// (about 2^(-1.4427*lambda)) still carries more than 320 significant bits.
func newPoisson(lam256 *big.Int) *poisson {
	lamInt := new(big.Int).Rsh(lam256, uniformBits).Uint64()
	prec := uint(uniformBits + guardBits + (lamInt+1)*3/2)
	lam := new(big.Int).Lsh(lam256, prec-uniformBits)
	e := expNeg(lam, prec)
	return &poisson{
		prec:   prec,
		lamInt: lamInt,
		lam:    lam,
		pmf:    e,
		cdf:    new(big.Int).Set(e),
		prod:   new(big.Int),
		rem:    new(big.Int),
		kBig:   new(big.Int),
	}
}

// next advances to k+1: pmf *= lambda/(k+1), cdf += pmf. It reports false, without advancing, once
// the pmf is zero past the mode (all later terms are zero too, and the walk is over).
func (p *poisson) next() bool {
	if p.pmf.Sign() == 0 && uint64(p.k) > p.lamInt {
		return false
	}
	p.k++
	p.prod.Mul(p.pmf, p.lam)
	p.prod.Rsh(p.prod, p.prec)
	p.pmf.QuoRem(p.prod, p.kBig.SetUint64(uint64(p.k)), p.rem)
	p.cdf.Add(p.cdf, p.pmf)
	return true
}

// expNeg returns e^-x for x >= 0, both in Q.prec, rounded down at every step.
//
// Range reduction: x = y * 2^s with y < 2^-reduceBits; e^-y is the alternating Taylor series (its
// terms fall by more than 2^reduceBits each, so about prec/reduceBits of them), and
// e^-x = (e^-y)^(2^s) by s squarings. The s extra working bits absorb the error that doubles with
// each squaring.
func expNeg(x *big.Int, prec uint) *big.Int {
	s := 0
	if n := x.BitLen() - (int(prec) - reduceBits); n > 0 {
		s = n
	}
	wp := prec + uint(s)
	// y = x / 2^s in Q.wp is the same integer as x in Q.prec, since wp = prec + s.
	y := x
	sum := new(big.Int).Lsh(big.NewInt(1), wp)
	term := new(big.Int).Set(sum)
	// Separate product and remainder buffers: a big.Int op whose result aliases an operand allocates.
	prod, rem, kBig := new(big.Int), new(big.Int), new(big.Int)
	for k := int64(1); ; k++ {
		prod.Mul(term, y)
		prod.Rsh(prod, wp)
		term.QuoRem(prod, kBig.SetInt64(k), rem)
		if term.Sign() == 0 {
			break
		}
		if k%2 == 1 {
			sum.Sub(sum, term)
		} else {
			sum.Add(sum, term)
		}
	}
	for range s {
		prod.Mul(sum, sum)
		sum.Rsh(prod, wp)
	}
	return sum.Rsh(sum, uint(s))
}
