package input

import (
	"slices"
	"time"
)

// rttWindow is how many recent round trips P50 looks at.
const rttWindow = 64

// RTT follows the input round trip: a smoothed mean (an EWMA with weight 1/8, as TCP's SRTT) and
// the median of the last 64 samples. The median is the better horizon for the Predictor: one
// retransmitted ping does not move it. The zero RTT is empty and ready to use; it is not safe for
// concurrent use.
type RTT struct {
	smoothed time.Duration
	n        int
	window   [rttWindow]time.Duration
}

// Observe adds one measured round trip; negative ones are ignored.
func (r *RTT) Observe(d time.Duration) {
	if d < 0 {
		return
	}
	if r.n == 0 {
		r.smoothed = d
	} else {
		r.smoothed += (d - r.smoothed) / 8
	}
	r.window[r.n%rttWindow] = d
	r.n++
}

// Count is how many round trips were observed.
func (r *RTT) Count() int { return r.n }

// Smoothed is the EWMA of the round trips, 0 before any.
func (r *RTT) Smoothed() time.Duration { return r.smoothed }

// P50 is the median of the last 64 round trips (the lower middle of an even count), 0 before any.
func (r *RTT) P50() time.Duration {
	n := min(r.n, rttWindow)
	if n == 0 {
		return 0
	}
	s := make([]time.Duration, n)
	copy(s, r.window[:n])
	slices.Sort(s)
	return s[(n-1)/2]
}

// Since is the round trip a pong reports: now minus the ts it carries back, both in ms on the
// pinger's clock. ok is false for any other event or a pong from the future.
func Since(pong Event, nowMS float64) (rtt time.Duration, ok bool) {
	if pong.Type != TypePong || nowMS < pong.TS {
		return 0, false
	}
	return time.Duration((nowMS - pong.TS) * float64(time.Millisecond)), true
}
