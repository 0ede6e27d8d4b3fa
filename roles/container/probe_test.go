package container

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// fakeGPU is what a mocked NVML device answers. Returns left at zero are nvml.SUCCESS.
type fakeGPU struct {
	name     string
	nameRet  nvml.Return
	uuid     string
	mem      nvml.Memory
	encCap   int
	encRet   nvml.Return
	util     nvml.Utilization
	temp     uint32
	tempRet  nvml.Return
	power    uint32
	powerRet nvml.Return
}

func (g fakeGPU) device() *mock.Device {
	return &mock.Device{
		GetNameFunc:       func() (string, nvml.Return) { return g.name, g.nameRet },
		GetUUIDFunc:       func() (string, nvml.Return) { return g.uuid, nvml.SUCCESS },
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) { return g.mem, nvml.SUCCESS },
		GetEncoderCapacityFunc: func(typ nvml.EncoderType) (int, nvml.Return) {
			if typ != nvml.ENCODER_QUERY_H264 {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return g.encCap, g.encRet
		},
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) { return g.util, nvml.SUCCESS },
		GetTemperatureFunc: func(s nvml.TemperatureSensors) (uint32, nvml.Return) {
			if s != nvml.TEMPERATURE_GPU {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return g.temp, g.tempRet
		},
		GetPowerUsageFunc: func() (uint32, nvml.Return) { return g.power, g.powerRet },
	}
}

// fakeNVML is a working NVML library with the given GPUs. Methods it leaves nil panic when called.
func fakeNVML(gpus ...fakeGPU) *mock.Interface {
	devices := make([]nvml.Device, len(gpus))
	for i, g := range gpus {
		devices[i] = g.device()
	}
	return &mock.Interface{
		InitFunc:                   func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:               func() nvml.Return { return nvml.SUCCESS },
		SystemGetDriverVersionFunc: func() (string, nvml.Return) { return "550.54.15", nvml.SUCCESS },
		DeviceGetCountFunc:         func() (int, nvml.Return) { return len(devices), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i < 0 || i >= len(devices) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return devices[i], nvml.SUCCESS
		},
	}
}

// missingNVML is a machine without the NVML library: Init fails with ret, and every other method
// panics if called (the mock's nil funcs), which proves the probe does not touch them.
func missingNVML(ret nvml.Return) *mock.Interface {
	return &mock.Interface{InitFunc: func() nvml.Return { return ret }}
}

var (
	h100 = fakeGPU{
		name: "NVIDIA H100 80GB HBM3", uuid: "GPU-2f6b6a4e-0000-0000-0000-000000000001",
		mem:    nvml.Memory{Total: 81559 * mib, Used: 40 * gib},
		encRet: nvml.ERROR_NOT_SUPPORTED,
		util:   nvml.Utilization{Gpu: 97, Memory: 61}, temp: 71, power: 612_345,
	}
	rtx4090 = fakeGPU{
		name: "NVIDIA GeForce RTX 4090", uuid: "GPU-2f6b6a4e-0000-0000-0000-000000000002",
		mem:    nvml.Memory{Total: 24564 * mib, Used: 3 * gib},
		encCap: 100,
		util:   nvml.Utilization{Gpu: 12, Memory: 4}, temp: 44, power: 48_000,
	}
)

func TestNVMLProbeFindsGPUs(t *testing.T) {
	lib := fakeNVML(h100, rtx4090)
	p := NewNVMLProbe(lib)

	hw, err := p.Hardware()
	if err != nil {
		t.Fatalf("Hardware: %v", err)
	}
	want := &pb.Hardware{
		Gpus: []*pb.GPU{
			{Model: "H100", Name: h100.name, Uuid: h100.uuid, MemoryBytes: 81559 * mib, Encoder: false},
			{Model: "RTX4090", Name: rtx4090.name, Uuid: rtx4090.uuid, MemoryBytes: 24564 * mib, Encoder: true},
		},
		DriverVersion: "550.54.15",
		CpuCores:      uint32(runtime.NumCPU()),
		MemoryBytes:   hostMemoryBytes(),
	}
	if !proto.Equal(hw, want) {
		t.Errorf("Hardware:\n got %v\nwant %v", hw, want)
	}
	if err := p.Reason(); err != nil {
		t.Errorf("Reason with GPUs = %v, want nil", err)
	}

	if _, err := p.Hardware(); err != nil {
		t.Fatalf("second Hardware: %v", err)
	}
	if _, err := p.Telemetry(); err != nil {
		t.Fatalf("Telemetry: %v", err)
	}
	if n := len(lib.InitCalls()); n != 1 {
		t.Errorf("Init called %d times, want 1", n)
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := len(lib.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
	if _, err := p.Hardware(); !errors.Is(err, ErrProbeClosed) {
		t.Errorf("Hardware after Close: err = %v, want ErrProbeClosed", err)
	}
}

func TestNVMLProbeWithoutLibrary(t *testing.T) {
	tests := []struct {
		ret      nvml.Return
		wantText string
	}{
		{nvml.ERROR_LIBRARY_NOT_FOUND, "container: no NVIDIA GPU or driver found: ERROR_LIBRARY_NOT_FOUND (is the NVIDIA driver installed?)"},
		{nvml.ERROR_DRIVER_NOT_LOADED, "container: no NVIDIA GPU or driver found: ERROR_DRIVER_NOT_LOADED (is the NVIDIA kernel module loaded?)"},
		{nvml.ERROR_UNKNOWN, "container: no NVIDIA GPU or driver found: ERROR_UNKNOWN"},
	}
	for _, tt := range tests {
		t.Run(tt.ret.String(), func(t *testing.T) {
			lib := missingNVML(tt.ret)
			p := NewNVMLProbe(lib)

			hw, err := p.Hardware()
			if err != nil {
				t.Fatalf("Hardware: %v, want no error", err)
			}
			want := &pb.Hardware{CpuCores: uint32(runtime.NumCPU()), MemoryBytes: hostMemoryBytes()}
			if !proto.Equal(hw, want) {
				t.Errorf("Hardware:\n got %v\nwant %v", hw, want)
			}
			tel, err := p.Telemetry()
			if err != nil || len(tel) != 0 {
				t.Errorf("Telemetry = %v, %v; want empty, nil", tel, err)
			}

			reason := p.Reason()
			if !errors.Is(reason, ErrNoGPU) || !errors.Is(reason, tt.ret) {
				t.Errorf("Reason = %v, want it to wrap ErrNoGPU and %v", reason, tt.ret)
			}
			if reason == nil || reason.Error() != tt.wantText {
				t.Errorf("Reason text = %q, want %q", reason, tt.wantText)
			}
			if err := p.Close(); err != nil { // Shutdown is nil in the mock: calling it would panic
				t.Errorf("Close: %v", err)
			}
			if n := len(lib.InitCalls()); n != 1 {
				t.Errorf("Init called %d times, want 1", n)
			}
		})
	}
}

func TestNVMLProbeReasonBeforeHardware(t *testing.T) {
	p := NewNVMLProbe(missingNVML(nvml.ERROR_LIBRARY_NOT_FOUND))
	if err := p.Reason(); !errors.Is(err, ErrNoGPU) {
		t.Errorf("Reason as first call = %v, want ErrNoGPU", err)
	}
}

func TestNVMLProbeNoDevices(t *testing.T) {
	p := NewNVMLProbe(fakeNVML())
	hw, err := p.Hardware()
	if err != nil {
		t.Fatalf("Hardware: %v", err)
	}
	if len(hw.Gpus) != 0 || hw.DriverVersion != "550.54.15" {
		t.Errorf("Hardware = %v, want no GPUs and the driver version", hw)
	}
	if err := p.Reason(); !errors.Is(err, ErrNoGPU) {
		t.Errorf("Reason = %v, want ErrNoGPU", err)
	}
	if tel, err := p.Telemetry(); err != nil || len(tel) != 0 {
		t.Errorf("Telemetry = %v, %v; want empty, nil", tel, err)
	}
}

func TestNVMLProbeEncoder(t *testing.T) {
	tests := []struct {
		name string
		cap  int
		ret  nvml.Return
		want bool
	}{
		{"has NVENC", 100, nvml.SUCCESS, true},
		{"NVENC fully used", 1, nvml.SUCCESS, true},
		{"capacity zero", 0, nvml.SUCCESS, false},
		{"not supported", 0, nvml.ERROR_NOT_SUPPORTED, false},
		{"not supported with junk capacity", 7, nvml.ERROR_NOT_SUPPORTED, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := rtx4090
			g.encCap, g.encRet = tt.cap, tt.ret
			hw, err := NewNVMLProbe(fakeNVML(g)).Hardware()
			if err != nil {
				t.Fatalf("Hardware: %v", err)
			}
			if got := hw.Gpus[0].Encoder; got != tt.want {
				t.Errorf("Encoder = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNVMLProbeTelemetry(t *testing.T) {
	noSensors := rtx4090
	noSensors.tempRet, noSensors.powerRet = nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_NOT_SUPPORTED

	p := NewNVMLProbe(fakeNVML(h100, noSensors))
	got, err := p.Telemetry()
	if err != nil {
		t.Fatalf("Telemetry: %v", err)
	}
	want := []*pb.GPUTelemetry{
		{UtilizationPct: 97, MemoryUtilizationPct: 61, MemoryUsedBytes: 40 * gib, TemperatureC: 71, PowerMw: 612_345},
		{UtilizationPct: 12, MemoryUtilizationPct: 4, MemoryUsedBytes: 3 * gib}, // temperature, power unsupported
	}
	if len(got) != len(want) {
		t.Fatalf("Telemetry has %d readings, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("GPU %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

func TestNVMLProbeErrors(t *testing.T) {
	lost := rtx4090
	lost.nameRet = nvml.ERROR_GPU_IS_LOST
	_, err := NewNVMLProbe(fakeNVML(h100, lost)).Hardware()
	if !errors.Is(err, nvml.ERROR_GPU_IS_LOST) {
		t.Fatalf("Hardware err = %v, want ERROR_GPU_IS_LOST", err)
	}
	if want := "container: nvml GetName of GPU 1: ERROR_GPU_IS_LOST"; err.Error() != want {
		t.Errorf("Hardware err = %q, want %q", err, want)
	}

	hot := h100
	hot.tempRet = nvml.ERROR_UNKNOWN
	_, err = NewNVMLProbe(fakeNVML(hot)).Telemetry()
	if want := "container: nvml GetTemperature of GPU 0: ERROR_UNKNOWN"; err == nil || err.Error() != want {
		t.Errorf("Telemetry err = %v, want %q", err, want)
	}
}

func TestNVMLProbeRetriesDeviceListing(t *testing.T) {
	lib := fakeNVML(h100)
	working := lib.DeviceGetCountFunc
	lib.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_TIMEOUT }
	p := NewNVMLProbe(lib)

	if _, err := p.Hardware(); !errors.Is(err, nvml.ERROR_TIMEOUT) {
		t.Fatalf("Hardware err = %v, want ERROR_TIMEOUT", err)
	}
	if err := p.Reason(); err != nil {
		t.Errorf("Reason after a failed listing = %v, want nil (NVML works)", err)
	}
	lib.DeviceGetCountFunc = working
	hw, err := p.Hardware()
	if err != nil || len(hw.Gpus) != 1 {
		t.Fatalf("Hardware after retry = %v, %v; want 1 GPU", hw, err)
	}
	if n := len(lib.InitCalls()); n != 1 {
		t.Errorf("Init called %d times, want 1", n)
	}
}

func TestNVMLProbeConcurrentUse(t *testing.T) {
	lib := fakeNVML(h100, rtx4090)
	p := NewNVMLProbe(lib)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := p.Hardware(); err != nil {
					t.Error(err)
				}
				if _, err := p.Telemetry(); err != nil {
					t.Error(err)
				}
				_ = p.Reason()
			}
		})
	}
	wg.Wait()
	if n := len(lib.InitCalls()); n != 1 {
		t.Errorf("Init called %d times, want 1", n)
	}
}

// TestNVMLProbeRealLibrary loads the machine's real NVML, if any. go-nvml does not compile without
// cgo, so neither does this package: there is no cgo-less build in which to skip this test.
func TestNVMLProbeRealLibrary(t *testing.T) {
	p := NewNVMLProbe(nil)
	defer p.Close()
	hw, err := p.Hardware()
	if err != nil {
		t.Fatalf("Hardware: %v, want no error with or without a GPU", err)
	}
	tel, err := p.Telemetry()
	if err != nil {
		t.Fatalf("Telemetry: %v", err)
	}
	if len(tel) != len(hw.Gpus) {
		t.Errorf("%d telemetry readings for %d GPUs", len(tel), len(hw.Gpus))
	}
	reason := p.Reason()
	if len(hw.Gpus) == 0 && !errors.Is(reason, ErrNoGPU) {
		t.Errorf("no GPUs, Reason = %v, want ErrNoGPU", reason)
	}
	if len(hw.Gpus) > 0 && reason != nil {
		t.Errorf("%d GPUs, Reason = %v, want nil", len(hw.Gpus), reason)
	}
	t.Logf("hardware: %v; reason: %v", hw, reason)
}

func TestNormalizeModel(t *testing.T) {
	tests := []struct{ name, want string }{
		{"NVIDIA H100 80GB HBM3", "H100"},
		{"NVIDIA H100 PCIe", "H100"},
		{"NVIDIA H100 NVL", "H100"},
		{"NVIDIA H200", "H200"},
		{"NVIDIA GH200 480GB", "GH200"},
		{"NVIDIA A100-SXM4-80GB", "A100"},
		{"NVIDIA A100-PCIE-40GB", "A100"},
		{"NVIDIA A100 80GB PCIe", "A100"},
		{"NVIDIA A10G", "A10G"},
		{"NVIDIA L40S", "L40S"},
		{"NVIDIA L4", "L4"},
		{"Tesla T4", "T4"},
		{"Tesla V100-SXM2-16GB", "V100"},
		{"NVIDIA GeForce RTX 4090", "RTX4090"},
		{"NVIDIA GeForce RTX 3080 Ti", "RTX3080TI"},
		{"NVIDIA GeForce GTX 1080 Ti", "GTX1080TI"},
		{"NVIDIA RTX A6000", "RTXA6000"},
		{"NVIDIA RTX 6000 Ada Generation", "RTX6000ADA"},
		{"Quadro RTX 8000", "RTX8000"},
		{"NVIDIA TITAN RTX", "TITANRTX"},
		{"nvidia geforce rtx 4090", "RTX4090"},
		{"  NVIDIA   L40S  ", "L40S"},
		{"NVIDIA", "UNKNOWN"},
		{"", "UNKNOWN"},
		{"Ωmega-9 (rev.2)", "MEGA9REV2"},
	}
	for _, tt := range tests {
		got := NormalizeModel(tt.name)
		if got != tt.want {
			t.Errorf("NormalizeModel(%q) = %q, want %q", tt.name, got, tt.want)
		}
		if strings.Trim(got, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
			t.Errorf("NormalizeModel(%q) = %q, has characters other than A-Z and 0-9", tt.name, got)
		}
	}
}

func TestParseMemTotal(t *testing.T) {
	tests := []struct {
		in     string
		want   uint64
		wantOK bool
	}{
		{"MemTotal:       16318480 kB\nMemFree:  1 kB\n", 16318480 * 1024, true},
		{"MemFree:  1 kB\nMemTotal: 2048 kB\n", 2048 * 1024, true},
		{"MemTotal: 4096\n", 4096, true},
		{"MemTotal: lots kB\n", 0, false},
		{"MemTotal:\n", 0, false},
		{"MemFree:  1 kB\n", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseMemTotal(strings.NewReader(tt.in))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseMemTotal(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestSimulatedProbeDeterministic(t *testing.T) {
	profile, ok := ProfileByName("h100")
	if !ok {
		t.Fatal("no h100 profile")
	}
	readings := func(seed int64) []string {
		p := NewSimulatedProbe(profile, seed)
		var out []string
		for range 50 {
			tel, err := p.Telemetry()
			if err != nil {
				t.Fatalf("Telemetry: %v", err)
			}
			out = append(out, fmt.Sprint(tel))
		}
		return out
	}
	a, b, other := readings(7), readings(7), readings(8)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Error("same seed gave different telemetry sequences")
	}
	if strings.Join(a, "\n") == strings.Join(other, "\n") {
		t.Error("seeds 7 and 8 gave the same telemetry sequence")
	}
	varied := false
	for _, r := range a[1:] {
		varied = varied || r != a[0]
	}
	if !varied {
		t.Error("telemetry never changed over 50 readings")
	}

	hw7, _ := NewSimulatedProbe(profile, 7).Hardware()
	hw7again, _ := NewSimulatedProbe(profile, 7).Hardware()
	hw8, _ := NewSimulatedProbe(profile, 8).Hardware()
	if !proto.Equal(hw7, hw7again) {
		t.Error("same seed gave different hardware")
	}
	if hw7.Gpus[0].Uuid == hw8.Gpus[0].Uuid {
		t.Errorf("seeds 7 and 8 share GPU UUID %s", hw7.Gpus[0].Uuid)
	}
}

func TestProfiles(t *testing.T) {
	wantModels := map[string]string{
		"h100": "H100", "a100": "A100", "l40s": "L40S", "rtx4090": "RTX4090", "rtx3080": "RTX3080", "t4": "T4", "cpu": "",
	}
	profiles := Profiles()
	if len(profiles) != len(wantModels) {
		t.Errorf("%d profiles, want %d", len(profiles), len(wantModels))
	}
	for _, prof := range profiles {
		t.Run(prof.Name, func(t *testing.T) {
			want, ok := wantModels[prof.Name]
			if !ok {
				t.Fatalf("unexpected profile %q", prof.Name)
			}
			if byName, ok := ProfileByName(strings.ToUpper(prof.Name)); !ok || byName.Name != prof.Name {
				t.Errorf("ProfileByName(%q) = %q, %v", strings.ToUpper(prof.Name), byName.Name, ok)
			}
			hw, err := NewSimulatedProbe(prof, 1).Hardware()
			if err != nil {
				t.Fatalf("Hardware: %v", err)
			}
			if !hw.Simulated {
				t.Error("Hardware not marked Simulated")
			}
			if hw.CpuCores == 0 || hw.MemoryBytes == 0 {
				t.Errorf("Hardware = %v, want CPU cores and memory", hw)
			}
			var got string
			for _, g := range hw.Gpus {
				got += g.Model
				if g.Model != NormalizeModel(g.Name) || g.MemoryBytes == 0 || !strings.HasPrefix(g.Uuid, "GPU-") {
					t.Errorf("GPU = %v, want a normalised model, memory and an NVML-style UUID", g)
				}
			}
			if got != want {
				t.Errorf("models %q, want %q", got, want)
			}
		})
	}
	if _, ok := ProfileByName("nope"); ok {
		t.Error(`ProfileByName("nope") found a profile`)
	}
}

func TestProfilesAreFreshCopies(t *testing.T) {
	a := Profiles()
	a[0].GPUs[0].Name = "changed"
	if b := Profiles(); b[0].GPUs[0].Name == "changed" {
		t.Error("changing a returned profile changed the built-in profiles")
	}

	prof, _ := ProfileByName("t4")
	p := NewSimulatedProbe(prof, 1)
	prof.GPUs[0].Name = "changed"
	hw, _ := p.Hardware()
	hw.Gpus[0].Model = "changed"
	if again, _ := p.Hardware(); again.Gpus[0].Name == "changed" || again.Gpus[0].Model == "changed" {
		t.Errorf("Hardware = %v, changed through a shared pointer", again)
	}
}

func TestSimulatedTelemetryRanges(t *testing.T) {
	for _, prof := range Profiles() {
		p := NewSimulatedProbe(prof, 42)
		hw, _ := p.Hardware()
		for range 200 {
			tel, err := p.Telemetry()
			if err != nil {
				t.Fatalf("%s: Telemetry: %v", prof.Name, err)
			}
			for i, r := range tel {
				peak := simPower[hw.Gpus[i].Model][1]
				if r.UtilizationPct > 100 || r.MemoryUtilizationPct > 100 || r.MemoryUsedBytes > hw.Gpus[i].MemoryBytes ||
					r.TemperatureC < 20 || r.TemperatureC > 95 || r.PowerMw == 0 || r.PowerMw > peak {
					t.Fatalf("%s GPU %d: implausible reading %v", prof.Name, i, r)
				}
			}
		}
	}
}

// TestProbeContract holds every Probe to the promises of the interface.
func TestProbeContract(t *testing.T) {
	probes := map[string]func() Probe{
		"nvml two GPUs":  func() Probe { return NewNVMLProbe(fakeNVML(h100, rtx4090)) },
		"nvml no device": func() Probe { return NewNVMLProbe(fakeNVML()) },
		"nvml no library": func() Probe {
			return NewNVMLProbe(missingNVML(nvml.ERROR_LIBRARY_NOT_FOUND))
		},
	}
	for _, prof := range Profiles() {
		probes["simulated "+prof.Name] = func() Probe { return NewSimulatedProbe(prof, 3) }
	}
	for name, newProbe := range probes {
		t.Run(name, func(t *testing.T) {
			p := newProbe()
			hw, err := p.Hardware()
			if err != nil {
				t.Fatalf("Hardware: %v", err)
			}
			tel, err := p.Telemetry()
			if err != nil {
				t.Fatalf("Telemetry: %v", err)
			}
			if len(tel) != len(hw.Gpus) {
				t.Errorf("%d telemetry readings for %d GPUs", len(tel), len(hw.Gpus))
			}
			if hw.CpuCores == 0 {
				t.Error("no CPU cores reported")
			}
			if err := p.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := p.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if _, err := p.Hardware(); !errors.Is(err, ErrProbeClosed) {
				t.Errorf("Hardware after Close: %v, want ErrProbeClosed", err)
			}
			if _, err := p.Telemetry(); !errors.Is(err, ErrProbeClosed) {
				t.Errorf("Telemetry after Close: %v, want ErrProbeClosed", err)
			}
		})
	}
}
