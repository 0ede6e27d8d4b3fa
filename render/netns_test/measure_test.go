package rendernetns

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// logSession logs both ends' reports.
func logSession(t *testing.T, label string, pr *playReport, sr *serveReport) {
	t.Helper()
	if r := pr.Report; r != nil {
		t.Logf("%s: consumer: first frame %v, latency p50 %v p99 %v, frames %d stamped %d lost %d, decode errors %d, PLIs %d, %.1f fps, %.0f kbit/s, %dx%d, relay %v, restarts %d",
			label, pr.FirstFrame, pr.LatencyP50, pr.LatencyP99, r.Frames, r.FramesStamped, r.FramesLost, r.DecodeErrors, r.PLIs, r.FPS, r.BitrateKbps, r.Width, r.Height, r.Relay, r.Restarts)
	}
	if r := sr.Report; r != nil {
		t.Logf("%s: container: frames %d keyframes %d dropped %d, PLIs %d, %d bytes, resizes %d, now %dx%d, encode p50 %v, relay %v, restarts %d",
			label, r.Frames, r.Keyframes, r.Dropped, r.PLIs, r.Bytes, r.Resizes, r.Width, r.Height, r.EncodeP50, r.Relay, r.Restarts)
	}
}

// window is a span of wall time (unix nanoseconds), [from, to).
type window struct{ from, to int64 }

func (w window) has(at int64) bool { return at >= w.from && at < w.to }

// phase summarises the frames the consumer decoded in a window.
type phase struct {
	decoded, stamped int
	missing          int           // frame numbers never decoded (lost, dropped by the encoder, or waiting for a keyframe)
	maxGap           time.Duration // longest time between two decoded frames (a freeze)
	p50, p99, max    time.Duration // frame latency of stamped frames
	sizes            []string      // sizes in the order they appeared
}

func summarise(frames []frameRecord, w window) phase {
	var ph phase
	var lats []time.Duration
	var last frameRecord
	have := false
	lastFromPrev, haveFromPrev := uint32(0), false
	for _, f := range frames {
		if f.At < w.from {
			if f.OK {
				lastFromPrev, haveFromPrev = f.N, true
			}
			continue
		}
		if !w.has(f.At) {
			continue
		}
		ph.decoded++
		size := fmt.Sprintf("%dx%d", f.W, f.H)
		if len(ph.sizes) == 0 || ph.sizes[len(ph.sizes)-1] != size {
			ph.sizes = append(ph.sizes, size)
		}
		if have {
			ph.maxGap = max(ph.maxGap, time.Duration(f.At-last.At))
		} else {
			// the gap from the window's start to its first frame counts too
			ph.maxGap = time.Duration(f.At - w.from)
		}
		last, have = f, true
		if !f.OK {
			continue
		}
		ph.stamped++
		lats = append(lats, time.Duration(f.Latency))
		if haveFromPrev && f.N > lastFromPrev+1 {
			ph.missing += int(f.N - lastFromPrev - 1)
		}
		lastFromPrev, haveFromPrev = f.N, true
	}
	if have {
		ph.maxGap = max(ph.maxGap, time.Duration(w.to-last.At))
	} else {
		ph.maxGap = time.Duration(w.to - w.from)
	}
	ph.p50, ph.p99, ph.max = percentile(lats, 50), percentile(lats, 99), percentile(lats, 100)
	return ph
}

func (ph phase) String() string {
	return fmt.Sprintf("decoded %d (stamped %d), missing frame numbers %d, longest freeze %v, latency p50 %v p99 %v max %v, sizes %s",
		ph.decoded, ph.stamped, ph.missing, ph.maxGap.Round(time.Millisecond), ph.p50.Round(100*time.Microsecond),
		ph.p99.Round(100*time.Microsecond), ph.max.Round(100*time.Microsecond), strings.Join(ph.sizes, " → "))
}

// percentile is the p-th percentile (nearest rank) of d; 0 for none.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// recovery is how long after since the consumer's frame latency was back near normal: the first
// stamped frame decoded after since that starts a run of n stamped frames all at or under limit.
// ok is false when no such run happened.
func recovery(frames []frameRecord, since int64, limit time.Duration, n int) (took time.Duration, ok bool) {
	run, start := 0, int64(0)
	for _, f := range frames {
		if f.At < since || !f.OK {
			continue
		}
		if time.Duration(f.Latency) > limit {
			run = 0
			continue
		}
		if run == 0 {
			start = f.At
		}
		run++
		if run == n {
			return time.Duration(start - since), true
		}
	}
	return 0, false
}

// firstSize is when the consumer first decoded a frame of size w x h at or after since.
func firstSize(frames []frameRecord, since int64, w, h int) (time.Duration, bool) {
	for _, f := range frames {
		if f.At >= since && f.W == w && f.H == h {
			return time.Duration(f.At - since), true
		}
	}
	return 0, false
}

// rate is the traffic rate (kbit/s) in a window from a child's counter samples: received
// (rx) or sent (tx), between the first sample at or after w.from and the last before w.to.
func rate(samples []counters, w window, tx bool) float64 {
	var a, b *counters
	for i := range samples {
		s := &samples[i]
		if s.At >= w.from && a == nil {
			a = s
		}
		if s.At < w.to {
			b = s
		}
	}
	if a == nil || b == nil || b.At <= a.At {
		return 0
	}
	bytes := b.RxBytes - a.RxBytes
	if tx {
		bytes = b.TxBytes - a.TxBytes
	}
	return float64(bytes) * 8 / 1000 / time.Duration(b.At-a.At).Seconds()
}
