package indexer

// Prices and regional demand. docs/MATCHING.md gives the formulas and why.

import (
	"math"
	"math/bits"
	"sync"
)

// PPM is one in parts per million: multipliers, utilizations and index terms are integers on this
// scale.
const PPM = 1_000_000

// Demand rule: m = 1 + SurgeSlope * max(0, u - SurgeKnee), in ppm.
const (
	SurgeKneePPM = 500_000 // utilization below which the retail price is the ask
	SurgeSlope   = 2       // 1.0x at half busy, 2.0x when full
	// MaxMultiplierPPM is the multiplier of a full region.
	MaxMultiplierPPM = PPM + SurgeSlope*(PPM-SurgeKneePPM)
)

// Multiplier is the retail multiplier, in ppm, for a region whose mean utilization over the last
// epoch was utilPPM (clamped to [0, PPM]).
func Multiplier(utilPPM uint32) uint32 {
	u := min(utilPPM, PPM)
	if u <= SurgeKneePPM {
		return PPM
	}
	return PPM + SurgeSlope*(u-SurgeKneePPM)
}

// RetailPrice is the price of one session unit: ask * multiplierPPM / 1e6, rounded down,
// saturating at the largest uint64.
func RetailPrice(ask uint64, multiplierPPM uint32) uint64 {
	if multiplierPPM == PPM {
		return ask
	}
	return mulDiv(ask, uint64(multiplierPPM), PPM)
}

// mulDiv is floor(a*b/c) without overflow in the product, saturating at the largest uint64; c > 0.
func mulDiv(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi == 0 {
		return lo / c
	}
	if hi >= c {
		return math.MaxUint64
	}
	q, _ := bits.Div64(hi, lo, c)
	return q
}

// demand holds the utilization samples of the current epoch and the multipliers in force.
type demand struct {
	mu      sync.RWMutex
	sum     map[string]uint64 // region -> sum of utilization samples (ppm)
	count   map[string]uint64 // region -> number of samples
	mult    map[string]uint32 // region -> multiplier in force (ppm); absent: PPM
	epoch   uint64            // the epoch the multipliers are for
	started bool              // RollEpoch was called at least once
}

func newDemand() *demand {
	return &demand{sum: map[string]uint64{}, count: map[string]uint64{}, mult: map[string]uint32{}}
}

func (d *demand) sample(region string, utilPPM uint32) {
	d.mu.Lock()
	d.sum[region] += uint64(utilPPM)
	d.count[region]++
	d.mu.Unlock()
}

// roll turns the samples into the multipliers of epoch and clears them. A region without samples
// gets 1.0x. Rolling to an epoch not after the current one changes nothing.
func (d *demand) roll(epoch uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started && epoch <= d.epoch {
		return
	}
	d.started, d.epoch = true, epoch
	clear(d.mult)
	for region, n := range d.count {
		if n == 0 {
			continue
		}
		if m := Multiplier(uint32(d.sum[region] / n)); m != PPM {
			d.mult[region] = m
		}
	}
	clear(d.sum)
	clear(d.count)
}

// multiplier is the multiplier in force for region, in ppm.
func (d *demand) multiplier(region string) uint32 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if m, ok := d.mult[region]; ok {
		return m
	}
	return PPM
}
