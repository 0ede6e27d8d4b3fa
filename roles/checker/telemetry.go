package checker

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// GPUReading is one GPU's readings at one instant, as NVML gives them. Names follow pb.GPU (the
// static description) and pb.GPUTelemetry (the live readings) that roles/container's probe fills;
// the other fields are the NVML calls the probe would add for a telemetry report.
type GPUReading struct {
	Name        string // nvmlDeviceGetName, e.g. "NVIDIA H100 80GB HBM3"
	UUID        string // nvmlDeviceGetUUID
	MemoryBytes uint64 // total, nvmlDeviceGetMemoryInfo

	MemoryUsedBytes      uint64 // nvmlDeviceGetMemoryInfo
	UtilizationPct       uint32 // nvmlDeviceGetUtilizationRates .gpu
	MemoryUtilizationPct uint32 // nvmlDeviceGetUtilizationRates .memory
	PowerMw              uint32 // nvmlDeviceGetPowerUsage
	PowerLimitMw         uint32 // nvmlDeviceGetEnforcedPowerLimit
	TemperatureC         uint32 // nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU)
	GraphicsClockMHz     uint32 // nvmlDeviceGetClockInfo(NVML_CLOCK_GRAPHICS)
	MaxGraphicsClockMHz  uint32 // nvmlDeviceGetMaxClockInfo(NVML_CLOCK_GRAPHICS)
	MemoryClockMHz       uint32 // nvmlDeviceGetClockInfo(NVML_CLOCK_MEM)
	EncoderSessions      uint32 // nvmlDeviceGetEncoderStats .sessionCount
}

// TelemetrySample is every GPU's readings at one instant.
type TelemetrySample struct {
	At   time.Time // on the container's clock
	GPUs []GPUReading
}

// Telemetry is a window of readings a container reported, and what the checker knows about the
// window.
type Telemetry struct {
	Samples []TelemetrySample // in time order
	// Requested and Received bound the window on the checker's clock: the checker asked for the
	// report at Requested and had it at Received. Zero: not checked.
	Requested, Received time.Time
	// State is the container's state during the window as the checker knows it: STANDBY (no
	// session) or BUSY (a session, the checker's own for instance). Others are not judged.
	State pb.ContainerState
	// GPUWork says the busy session renders on the GPU (a real application). The built-in scene
	// and the VP8 encoder run on the CPU, so a simulation test alone does not load the GPU.
	GPUWork bool
}

// gpuModelLimits are what a working GPU of a model draws, in watts: the least it draws at idle
// (floors kept well below the idle draw measured on real boards) and the highest power limit any
// board of the model can be set to.
var gpuModelLimits = map[string]struct{ idleW, maxLimitW float64 }{
	"H100":    {30, 700},
	"H200":    {30, 700},
	"A100":    {25, 400},
	"L40S":    {15, 350},
	"L40":     {15, 300},
	"L4":      {8, 72},
	"A10":     {10, 150},
	"T4":      {5, 70},
	"RTX4090": {5, 600},
	"RTX4080": {5, 450},
	"RTX3090": {5, 450},
	"RTX3080": {5, 400},
}

// Defaults for TelemetryLimits; an unknown model may draw from 2 W to a 1000 W limit.
const (
	defaultIdleW         = 2
	defaultMaxLimitW     = 1000
	DefaultTelemetryMin  = 3                      // samples
	DefaultSampleSpacing = 100 * time.Millisecond // NVML's utilisation is an average over 1/6 s to 1 s
)

// TelemetryLimits tune CheckTelemetry; zero fields take the defaults in their comments.
type TelemetryLimits struct {
	MinSamples        int           // 3
	MinSpacing        time.Duration // between samples, 100 ms
	ClockSkew         time.Duration // container's clock against the checker's, 1 s
	MemoryTolerance   float64       // total memory against the record, 0.01 (ECC takes a little)
	PowerOvershoot    float64       // draw may exceed the limit by this factor briefly, 1.1
	MinTemperatureC   uint32        // 10
	MaxTemperatureC   uint32        // 100 (GPUs shut down around 95-105)
	TempSlewCPerS     float64       // temperature change per second, 15
	StandbyMaxUtilPct float64       // mean utilisation of a GPU in standby, 30
	BusyMinUtilPct    float64       // peak utilisation of a GPU rendering, 5
	MaxClockMHz       uint32        // any graphics clock, 4000
	MaxMemClockMHz    uint32        // any memory clock, 30000 (GDDR boards report their data clock: an RTX 4090 about 10500)
}

func (l *TelemetryLimits) defaults() {
	orDefault(&l.MinSamples, DefaultTelemetryMin)
	orDefault(&l.MinSpacing, DefaultSampleSpacing)
	orDefault(&l.ClockSkew, time.Second)
	orDefault(&l.MemoryTolerance, 0.01)
	orDefault(&l.PowerOvershoot, 1.1)
	orDefault(&l.MinTemperatureC, 10)
	orDefault(&l.MaxTemperatureC, 100)
	orDefault(&l.TempSlewCPerS, 15)
	orDefault(&l.StandbyMaxUtilPct, 30)
	orDefault(&l.BusyMinUtilPct, 5)
	orDefault(&l.MaxClockMHz, 4000)
	orDefault(&l.MaxMemClockMHz, 30000)
}

// CheckTelemetry judges a window of readings against the GPUs record advertises, with the
// default limits.
func CheckTelemetry(record *pb.ContainerRecord, t Telemetry) Result {
	return TelemetryLimits{}.Check(record, t)
}

// Check judges a window of readings against the GPUs record advertises: the same GPUs in every
// sample (count, UUIDs, names, memory), physically plausible values, a load that fits the
// container's state, and readings that vary as live ones do.
func (l TelemetryLimits) Check(record *pb.ContainerRecord, t Telemetry) Result {
	l.defaults()
	res := Result{Verdict: Pass, Telemetry: summariseTelemetry(t)}
	fail := func(c Check, format string, args ...any) {
		if res.Verdict == Pass {
			res.Verdict, res.Check, res.Reason = Fail, c, fmt.Sprintf(format, args...)
		}
	}
	adv := record.GetHardware().GetGpus()
	switch {
	case len(adv) == 0 && res.Telemetry.GPUs == 0 && len(t.Samples) > 0:
		// A CPU-only container: nothing to read, nothing to judge.
	case len(t.Samples) < l.MinSamples:
		fail(CheckTelemetryReplay, "%d samples, want at least %d", len(t.Samples), l.MinSamples)
	default:
		l.checkGPUs(adv, t, fail)
		l.checkTimes(t, fail)
		l.checkPhysics(adv, t, fail)
		l.checkState(t, fail)
		l.checkVariation(t, fail)
	}
	res.EvidenceHash = telemetryEvidence(record, t, &res)
	return res
}

type failFunc func(c Check, format string, args ...any)

// checkGPUs: every sample reads exactly the advertised GPUs.
func (l *TelemetryLimits) checkGPUs(adv []*pb.GPU, t Telemetry, fail failFunc) {
	for i, s := range t.Samples {
		if len(s.GPUs) != len(adv) {
			fail(CheckTelemetryGPUs, "sample %d reads %d GPUs, the record advertises %d", i, len(s.GPUs), len(adv))
			return
		}
		seen := map[string]bool{}
		for _, r := range s.GPUs {
			if seen[r.UUID] {
				fail(CheckTelemetryGPUs, "sample %d reads GPU %s twice", i, r.UUID)
				return
			}
			seen[r.UUID] = true
		}
		for _, g := range adv {
			r, ok := findGPU(s.GPUs, g.GetUuid())
			switch {
			case !ok:
				fail(CheckTelemetryGPUs, "sample %d has no reading of advertised GPU %q", i, g.GetUuid())
				return
			case g.GetName() != "" && r.Name != g.GetName():
				fail(CheckTelemetryGPUs, "GPU %s reads as %q, advertised as %q", r.UUID, r.Name, g.GetName())
				return
			case math.Abs(float64(r.MemoryBytes)-float64(g.GetMemoryBytes())) > l.MemoryTolerance*float64(g.GetMemoryBytes()):
				fail(CheckTelemetryGPUs, "GPU %s has %d MiB, advertised %d MiB", r.UUID, r.MemoryBytes>>20, g.GetMemoryBytes()>>20)
				return
			}
		}
	}
}

func findGPU(rs []GPUReading, uuid string) (GPUReading, bool) {
	for _, r := range rs {
		if r.UUID == uuid {
			return r, true
		}
	}
	return GPUReading{}, false
}

// checkTimes: samples advance, are spaced as NVML can average, and lie in the asked-for window.
func (l *TelemetryLimits) checkTimes(t Telemetry, fail failFunc) {
	for i := 1; i < len(t.Samples); i++ {
		if d := t.Samples[i].At.Sub(t.Samples[i-1].At); d < l.MinSpacing {
			fail(CheckTelemetryReplay, "samples %d and %d are %v apart, want at least %v", i-1, i, d, l.MinSpacing)
			return
		}
	}
	first, last := t.Samples[0].At, t.Samples[len(t.Samples)-1].At
	if !t.Requested.IsZero() && first.Before(t.Requested.Add(-l.ClockSkew)) {
		fail(CheckTelemetryReplay, "the first sample was taken %v before the checker asked (an old reading)", t.Requested.Sub(first))
	}
	if !t.Received.IsZero() && last.After(t.Received.Add(l.ClockSkew)) {
		fail(CheckTelemetryReplay, "the last sample is dated %v after the report arrived", last.Sub(t.Received))
	}
}

// checkPhysics: every reading is one a working GPU of its model can give.
func (l *TelemetryLimits) checkPhysics(adv []*pb.GPU, t Telemetry, fail failFunc) {
	model := map[string]string{}
	for _, g := range adv {
		model[g.GetUuid()] = g.GetModel()
	}
	prev := map[string]TelemetrySample{}
	for i, s := range t.Samples {
		for _, r := range s.GPUs {
			lim, ok := gpuModelLimits[model[r.UUID]]
			if !ok {
				lim.idleW, lim.maxLimitW = defaultIdleW, defaultMaxLimitW
			}
			powerW, limitW := float64(r.PowerMw)/1000, float64(r.PowerLimitMw)/1000
			switch {
			case r.UtilizationPct > 100 || r.MemoryUtilizationPct > 100:
				fail(CheckTelemetryPhysics, "GPU %s sample %d: utilisation %d%%, memory utilisation %d%%", r.UUID, i, r.UtilizationPct, r.MemoryUtilizationPct)
			case r.MemoryUsedBytes > r.MemoryBytes:
				fail(CheckTelemetryPhysics, "GPU %s sample %d: %d MiB used of %d MiB", r.UUID, i, r.MemoryUsedBytes>>20, r.MemoryBytes>>20)
			case r.PowerLimitMw == 0 || limitW > lim.maxLimitW*1.05:
				fail(CheckTelemetryPhysics, "GPU %s sample %d: power limit %.0f W (%s boards go to %.0f W at most)", r.UUID, i, limitW, model[r.UUID], lim.maxLimitW)
			case powerW < lim.idleW || powerW > limitW*l.PowerOvershoot:
				fail(CheckTelemetryPhysics, "GPU %s sample %d: draws %.1f W, outside [%.0f W idle, %.0f W limit]", r.UUID, i, powerW, lim.idleW, limitW)
			case r.TemperatureC < l.MinTemperatureC || r.TemperatureC > l.MaxTemperatureC:
				fail(CheckTelemetryPhysics, "GPU %s sample %d: %d °C, outside [%d, %d]", r.UUID, i, r.TemperatureC, l.MinTemperatureC, l.MaxTemperatureC)
			case r.GraphicsClockMHz > l.MaxClockMHz || r.MemoryClockMHz > l.MaxMemClockMHz ||
				(r.MaxGraphicsClockMHz > 0 && r.GraphicsClockMHz > r.MaxGraphicsClockMHz):
				fail(CheckTelemetryPhysics, "GPU %s sample %d: graphics clock %d MHz (maximum %d), memory clock %d MHz", r.UUID, i, r.GraphicsClockMHz, r.MaxGraphicsClockMHz, r.MemoryClockMHz)
			}
			if p, ok := prev[r.UUID]; ok {
				q, _ := findGPU(p.GPUs, r.UUID)
				dt := s.At.Sub(p.At).Seconds()
				if d := math.Abs(float64(r.TemperatureC) - float64(q.TemperatureC)); d > 3+l.TempSlewCPerS*dt {
					fail(CheckTelemetryPhysics, "GPU %s: temperature moved %.0f °C in %.1f s", r.UUID, d, dt)
				}
			}
			prev[r.UUID] = s
		}
	}
}

// checkState: the load fits what the container was doing.
func (l *TelemetryLimits) checkState(t Telemetry, fail failFunc) {
	util := map[string][]float64{}
	enc := map[string]uint32{}
	var order []string
	for _, s := range t.Samples {
		for _, r := range s.GPUs {
			if _, ok := util[r.UUID]; !ok {
				order = append(order, r.UUID)
			}
			util[r.UUID] = append(util[r.UUID], float64(r.UtilizationPct))
			enc[r.UUID] = max(enc[r.UUID], r.EncoderSessions)
		}
	}
	for _, id := range order {
		mean, peak := 0.0, 0.0
		for _, u := range util[id] {
			mean += u / float64(len(util[id]))
			peak = max(peak, u)
		}
		switch t.State {
		case pb.ContainerState_CONTAINER_STATE_STANDBY:
			if mean > l.StandbyMaxUtilPct {
				fail(CheckTelemetryState, "GPU %s is %.0f%% busy on average while the container is in standby (another workload)", id, mean)
			} else if enc[id] > 0 {
				fail(CheckTelemetryState, "GPU %s runs %d encoder sessions while the container is in standby", id, enc[id])
			}
		case pb.ContainerState_CONTAINER_STATE_BUSY:
			if t.GPUWork && peak < l.BusyMinUtilPct {
				fail(CheckTelemetryState, "GPU %s peaks at %.0f%% while rendering a session on it (rendered elsewhere?)", id, peak)
			}
		}
	}
}

// checkVariation: live power readings change from sample to sample (NVML reports milliwatts), and
// two GPUs do not give the same readings throughout.
func (l *TelemetryLimits) checkVariation(t Telemetry, fail failFunc) {
	series := map[string][]liveReading{}
	var order []string
	for _, s := range t.Samples {
		for _, r := range s.GPUs {
			if _, ok := series[r.UUID]; !ok {
				order = append(order, r.UUID)
			}
			series[r.UUID] = append(series[r.UUID], liveOf(r))
		}
	}
	for _, id := range order {
		v := series[id]
		if len(v) < 2 {
			continue
		}
		constant, stuck := true, true
		for _, x := range v[1:] {
			constant = constant && x == v[0]
			stuck = stuck && x.power == v[0].power
		}
		switch {
		case constant:
			fail(CheckTelemetryReplay, "GPU %s gives the same readings in all %d samples (made up or replayed)", id, len(v))
			return
		case stuck:
			fail(CheckTelemetryReplay, "GPU %s draws exactly %d mW in all %d samples (made up)", id, v[0].power, len(v))
			return
		}
	}
	for i, a := range order {
		for _, b := range order[i+1:] {
			if slices.Equal(series[a], series[b]) {
				fail(CheckTelemetryReplay, "GPUs %s and %s give the same readings in every sample (one GPU reported twice)", a, b)
				return
			}
		}
	}
}

// liveReading is the part of a reading that changes with the GPU's load.
type liveReading struct {
	memUsed                           uint64
	util, memUtil, power, temp, clock uint32
}

func liveOf(r GPUReading) liveReading {
	return liveReading{r.MemoryUsedBytes, r.UtilizationPct, r.MemoryUtilizationPct, r.PowerMw, r.TemperatureC, r.GraphicsClockMHz}
}

func summariseTelemetry(t Telemetry) TelemetryMeasurements {
	var m TelemetryMeasurements
	m.Samples = len(t.Samples)
	if m.Samples == 0 {
		return m
	}
	m.Window = t.Samples[m.Samples-1].At.Sub(t.Samples[0].At)
	m.GPUs = len(t.Samples[0].GPUs)
	n := 0
	m.PowerMinW, m.TemperatureMinC = math.Inf(1), math.MaxUint32
	for _, s := range t.Samples {
		for _, r := range s.GPUs {
			n++
			m.UtilizationMean += float64(r.UtilizationPct)
			p := float64(r.PowerMw) / 1000
			m.PowerMinW, m.PowerMaxW = min(m.PowerMinW, p), max(m.PowerMaxW, p)
			m.TemperatureMinC, m.TemperatureMaxC = min(m.TemperatureMinC, r.TemperatureC), max(m.TemperatureMaxC, r.TemperatureC)
			if r.MemoryBytes > 0 {
				m.MemoryUsedMaxFrac = max(m.MemoryUsedMaxFrac, float64(r.MemoryUsedBytes)/float64(r.MemoryBytes))
			}
		}
	}
	if n == 0 {
		m.PowerMinW, m.TemperatureMinC = 0, 0
		return m
	}
	m.UtilizationMean /= float64(n)
	return m
}

// telemetryEvidence hashes the record's identity, the verdict and every reading.
func telemetryEvidence(record *pb.ContainerRecord, t Telemetry, r *Result) [32]byte {
	e := newEvidence("rendermesh/checker/telemetry/v1")
	e.bytes(record.GetPeerId())
	e.u64(record.GetSeq())
	e.result(r)
	e.u64(uint64(t.State))
	if t.GPUWork {
		e.u64(1)
	} else {
		e.u64(0)
	}
	e.time(t.Requested)
	e.time(t.Received)
	e.u64(uint64(len(t.Samples)))
	for _, s := range t.Samples {
		e.time(s.At)
		e.u64(uint64(len(s.GPUs)))
		for _, g := range s.GPUs {
			e.str(g.Name)
			e.str(g.UUID)
			for _, v := range []uint64{g.MemoryBytes, g.MemoryUsedBytes} {
				e.u64(v)
			}
			for _, v := range []uint32{g.UtilizationPct, g.MemoryUtilizationPct, g.PowerMw, g.PowerLimitMw, g.TemperatureC,
				g.GraphicsClockMHz, g.MaxGraphicsClockMHz, g.MemoryClockMHz, g.EncoderSessions} {
				e.u64(uint64(v))
			}
		}
	}
	return e.sum()
}
