package container

import (
	"errors"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/checker"
)

// readWindow takes n readings from r, spacing apart on a made-up clock.
func readWindow(t *testing.T, r Reader, n int, spacing time.Duration) checker.Telemetry {
	t.Helper()
	start := time.Unix(1_800_000_000, 0)
	tel := checker.Telemetry{Requested: start, Received: start.Add(time.Duration(n) * spacing)}
	for i := range n {
		rs, err := r.Readings()
		if err != nil {
			t.Fatalf("Readings: %v", err)
		}
		s := checker.TelemetrySample{At: start.Add(time.Duration(i) * spacing)}
		for _, g := range rs {
			s.GPUs = append(s.GPUs, checker.GPUReading{
				Name: g.Name, UUID: g.Uuid, MemoryBytes: g.MemoryBytes, MemoryUsedBytes: g.MemoryUsedBytes,
				UtilizationPct: g.UtilizationPct, MemoryUtilizationPct: g.MemoryUtilizationPct,
				PowerMw: g.PowerMw, PowerLimitMw: g.PowerLimitMw, TemperatureC: g.TemperatureC,
				GraphicsClockMHz: g.GraphicsClockMhz, MaxGraphicsClockMHz: g.MaxGraphicsClockMhz,
				MemoryClockMHz: g.MemoryClockMhz, EncoderSessions: g.EncoderSessions,
			})
		}
		tel.Samples = append(tel.Samples, s)
	}
	return tel
}

// An honest simulated container in standby passes the telemetry check against its own record, for
// every profile, seed and spacing a checker may ask for.
func TestSimulatedTelemetryReadingsPassCheck(t *testing.T) {
	for _, prof := range Profiles() {
		for seed := range int64(20) {
			for _, spacing := range []time.Duration{100 * time.Millisecond, time.Second} {
				p := NewSimulatedProbe(prof, seed)
				hw, _ := p.Hardware()
				rec := &pb.ContainerRecord{Hardware: hw}
				tel := readWindow(t, p, 20, spacing)
				tel.State = pb.ContainerState_CONTAINER_STATE_STANDBY
				if res := checker.CheckTelemetry(rec, tel); res.Verdict != checker.Pass {
					t.Fatalf("%s seed %d spacing %v: %s: %s", prof.Name, seed, spacing, res.Check, res.Reason)
				}
			}
		}
	}
}

func TestSimulatedTelemetryReadingsDeterministic(t *testing.T) {
	prof, _ := ProfileByName("rtx4090")
	a, b := NewSimulatedProbe(prof, 5), NewSimulatedProbe(prof, 5)
	hw, _ := a.Hardware()
	for range 10 {
		ra, _ := a.Readings()
		rb, _ := b.Readings()
		if len(ra) != 1 || !proto.Equal(ra[0], rb[0]) {
			t.Fatalf("same seed, different readings: %v, %v", ra, rb)
		}
		if ra[0].Uuid != hw.Gpus[0].Uuid || ra[0].Name != hw.Gpus[0].Name || ra[0].MemoryBytes != hw.Gpus[0].MemoryBytes {
			t.Fatalf("reading %v does not describe GPU %v", ra[0], hw.Gpus[0])
		}
	}
	_ = a.Close()
	if _, err := a.Readings(); !errors.Is(err, ErrProbeClosed) {
		t.Errorf("Readings after Close: %v, want ErrProbeClosed", err)
	}
	cpu, _ := ProfileByName("cpu")
	if rs, err := NewSimulatedProbe(cpu, 1).Readings(); len(rs) != 0 || err != nil {
		t.Errorf("CPU-only Readings = %v, %v", rs, err)
	}
}

// A claiming probe advertises the claimed GPU and reads the real one, which the check catches.
func TestClaimingProbeTelemetryFailsCheck(t *testing.T) {
	h100Prof, _ := ProfileByName("h100")
	rtx, _ := ProfileByName("rtx3080")
	claimed, actual := NewSimulatedProbe(h100Prof, 1), NewSimulatedProbe(rtx, 1)
	p := NewClaimingProbe(claimed, actual)
	hw, _ := p.Hardware()
	real, _ := actual.Hardware()
	if hw.Gpus[0].Model != "H100" {
		t.Fatalf("claims %v", hw.Gpus)
	}
	tel := readWindow(t, p.(Reader), 5, 200*time.Millisecond)
	if got := tel.Samples[0].GPUs[0].Name; got != real.Gpus[0].Name {
		t.Fatalf("reads %q, want the actual %q", got, real.Gpus[0].Name)
	}
	res := checker.CheckTelemetry(&pb.ContainerRecord{Hardware: hw}, tel)
	if res.Verdict != checker.Fail || res.Check != checker.CheckTelemetryGPUs {
		t.Fatalf("claimed H100 on an RTX 3080: %v %s %s", res.Verdict, res.Check, res.Reason)
	}
	if _, err := p.Telemetry(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := claimed.Hardware(); !errors.Is(err, ErrProbeClosed) {
		t.Error("Close left the claimed probe open")
	}
}

func TestNVMLTelemetryReadings(t *testing.T) {
	d := h100.device()
	d.GetEnforcedPowerLimitFunc = func() (uint32, nvml.Return) { return 700_000, nvml.SUCCESS }
	d.GetClockInfoFunc = func(c nvml.ClockType) (uint32, nvml.Return) {
		switch c {
		case nvml.CLOCK_GRAPHICS:
			return 1755, nvml.SUCCESS
		case nvml.CLOCK_MEM:
			return 2619, nvml.SUCCESS
		}
		return 0, nvml.ERROR_INVALID_ARGUMENT
	}
	d.GetMaxClockInfoFunc = func(c nvml.ClockType) (uint32, nvml.Return) {
		if c != nvml.CLOCK_GRAPHICS {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		return 1980, nvml.SUCCESS
	}
	d.GetEncoderStatsFunc = func() (int, uint32, uint32, nvml.Return) { return 0, 0, 0, nvml.ERROR_NOT_SUPPORTED }
	lib := fakeNVML()
	lib.DeviceGetCountFunc = func() (int, nvml.Return) { return 1, nvml.SUCCESS }
	lib.DeviceGetHandleByIndexFunc = func(int) (nvml.Device, nvml.Return) { return d, nvml.SUCCESS }
	p := NewNVMLProbe(lib)
	defer p.Close()
	rs, err := p.Readings()
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.GPUReading{
		Name: h100.name, Uuid: h100.uuid, MemoryBytes: h100.mem.Total, MemoryUsedBytes: h100.mem.Used,
		UtilizationPct: 97, MemoryUtilizationPct: 61, PowerMw: 612_345, PowerLimitMw: 700_000, TemperatureC: 71,
		GraphicsClockMhz: 1755, MaxGraphicsClockMhz: 1980, MemoryClockMhz: 2619,
	}
	if len(rs) != 1 || !proto.Equal(rs[0], want) {
		t.Fatalf("Readings = %v, want %v", rs, want)
	}

	d.GetEncoderStatsFunc = func() (int, uint32, uint32, nvml.Return) { return 0, 0, 0, nvml.ERROR_GPU_IS_LOST }
	if _, err := p.Readings(); !errors.Is(err, nvml.ERROR_GPU_IS_LOST) {
		t.Errorf("a lost GPU: %v", err)
	}
}

func TestNVMLTelemetryReadingsWithoutGPU(t *testing.T) {
	for name, p := range map[string]*NVMLProbe{
		"no library": NewNVMLProbe(missingNVML(nvml.ERROR_LIBRARY_NOT_FOUND)),
		"no device":  NewNVMLProbe(fakeNVML()),
	} {
		if rs, err := p.Readings(); len(rs) != 0 || err != nil {
			t.Errorf("%s: Readings = %v, %v; want nothing and no error", name, rs, err)
		}
		_ = p.Close()
		if _, err := p.Readings(); !errors.Is(err, ErrProbeClosed) {
			t.Errorf("%s: Readings after Close: %v", name, err)
		}
	}
}
