package node

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"
)

// A checker measures a container's stream with its own machine: when that machine cannot keep
// up (its cores saturated by other work, or by other nodes of a devnet), frames arrive and decode
// late, and an honest stream reads as slow or stalled. A checker therefore watches its own load
// while it checks, and does not blame a container for timing it could not measure (see
// docs/CHECKERS.md, "The checker's own load").

// LoadProbe reads how well this machine kept up over a span (Options.Load; the default reads the
// Go runtime and the kernel: RuntimeLoad).
type LoadProbe interface {
	// Mark starts a span.
	Mark() LoadMark
	// Since measures the span from m to now.
	Since(m LoadMark) MachineLoad
}

// LoadMark is where a span of a LoadProbe starts.
type LoadMark struct {
	At      time.Time
	sched   []uint64      // the Go scheduler's latency histogram's counts
	psi     time.Duration // the kernel's CPU pressure stall time ("some"), when known
	psiRead bool
}

// MachineLoad is what a LoadProbe measured over a span.
type MachineLoad struct {
	Span time.Duration
	// SchedP99 is the 99th percentile of the time this process's goroutines waited, runnable,
	// for a thread to run on: how late a woken goroutine (a frame's arrival, a decoder) ran.
	SchedP99 time.Duration
	// CPUPressure is the share of the span in which some task of the machine waited for a CPU
	// (Linux pressure stall information); -1 when the kernel does not say.
	CPUPressure float64
}

// Thresholds of an overloaded checker. An idle machine schedules goroutines within a few
// hundred microseconds and has no CPU pressure; a frame of a 30 frames/s stream is due every
// 33 ms.
const (
	overloadSchedP99    = 20 * time.Millisecond
	overloadCPUPressure = 0.5
)

// Overloaded says whether the machine was too busy over the span for the checker's timing to
// be trusted, and why.
func (l MachineLoad) Overloaded() (bool, string) {
	switch {
	case l.SchedP99 >= overloadSchedP99:
		return true, fmt.Sprintf("this checker's goroutines waited up to %v to run (p99; limit %v)", l.SchedP99.Round(time.Millisecond), overloadSchedP99)
	case l.CPUPressure >= overloadCPUPressure:
		return true, fmt.Sprintf("tasks of this checker's machine waited for a CPU %.0f%% of the time (limit %.0f%%)", 100*l.CPUPressure, 100*overloadCPUPressure)
	}
	return false, ""
}

// RuntimeLoad is the LoadProbe of a real machine: the Go runtime's scheduler latencies and, on
// Linux, /proc/pressure/cpu.
type RuntimeLoad struct {
	mu      sync.Mutex
	samples []metrics.Sample
	psiPath string
}

const schedLatencies = "/sched/latencies:seconds"

// NewRuntimeLoad returns the probe of this process and machine.
func NewRuntimeLoad() *RuntimeLoad {
	return &RuntimeLoad{samples: []metrics.Sample{{Name: schedLatencies}}, psiPath: "/proc/pressure/cpu"}
}

func (r *RuntimeLoad) read() *metrics.Float64Histogram {
	r.mu.Lock()
	defer r.mu.Unlock()
	metrics.Read(r.samples)
	if r.samples[0].Value.Kind() != metrics.KindFloat64Histogram {
		return nil
	}
	h := r.samples[0].Value.Float64Histogram()
	return &metrics.Float64Histogram{Counts: append([]uint64(nil), h.Counts...), Buckets: h.Buckets}
}

func (r *RuntimeLoad) Mark() LoadMark {
	m := LoadMark{At: time.Now()}
	if h := r.read(); h != nil {
		m.sched = h.Counts
	}
	m.psi, m.psiRead = readCPUPressure(r.psiPath)
	return m
}

func (r *RuntimeLoad) Since(m LoadMark) MachineLoad {
	l := MachineLoad{Span: time.Since(m.At), CPUPressure: -1}
	if h := r.read(); h != nil && len(m.sched) == len(h.Counts) {
		diff := make([]uint64, len(h.Counts))
		for i := range diff {
			diff[i] = h.Counts[i] - m.sched[i]
		}
		l.SchedP99 = histQuantile(diff, h.Buckets, 0.99)
	}
	if psi, ok := readCPUPressure(r.psiPath); ok && m.psiRead && l.Span > 0 {
		l.CPUPressure = min(1, float64(psi-m.psi)/float64(l.Span))
	}
	return l
}

// histQuantile is the upper bound of the bucket holding quantile q of a runtime/metrics
// histogram's counts (buckets[i] to buckets[i+1] hold counts[i]); 0 when it counted nothing.
func histQuantile(counts []uint64, buckets []float64, q float64) time.Duration {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(q*float64(total) + 0.5)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= want && c > 0 {
			hi := buckets[i+1]
			if math.IsInf(hi, 1) { // the last bucket is open
				hi = buckets[i]
			}
			return time.Duration(hi * float64(time.Second))
		}
	}
	return 0
}

// readCPUPressure reads the "some" stall total of a Linux pressure file (PSI): how long, since
// boot, at least one task waited for a CPU.
func readCPUPressure(path string) (time.Duration, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	return parseCPUPressure(data)
}

func parseCPUPressure(data []byte) (time.Duration, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) == 0 || string(fields[0]) != "some" {
			continue
		}
		for _, f := range fields[1:] {
			if v, ok := bytes.CutPrefix(f, []byte("total=")); ok {
				us, err := strconv.ParseUint(string(v), 10, 63)
				if err != nil {
					return 0, false
				}
				return time.Duration(us) * time.Microsecond, true
			}
		}
	}
	return 0, false
}

// SimulatedLoad is the LoadProbe of nodes on simulated time (simnet): every event happens at its
// simulated instant however busy the process is, so the machine always keeps up.
type SimulatedLoad struct{}

func (SimulatedLoad) Mark() LoadMark { return LoadMark{} }

func (SimulatedLoad) Since(LoadMark) MachineLoad { return MachineLoad{CPUPressure: -1} }
