package container

import (
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

var (
	_ Probe  = (*NVMLProbe)(nil)
	_ Reader = (*NVMLProbe)(nil)
)

// NVMLProbe reads the machine's NVIDIA GPUs through NVML. It initialises NVML lazily, on the first
// call that needs it. A machine without the NVML library, the driver or a GPU is reported honestly
// as a CPU-only machine, and Reason says why. NVMLProbe is safe for concurrent use.
type NVMLProbe struct {
	lib nvml.Interface

	mu      sync.Mutex
	tried   bool  // Init was called
	inited  bool  // Init succeeded and Shutdown has not been called: Close must call Shutdown
	listed  bool  // devices holds the handles of every device
	closed  bool  // Close was called
	reason  error // why no GPU is reported; nil when GPUs were found
	devices []nvml.Device
}

// NewNVMLProbe returns a probe reading through lib, or through the real NVML library (loaded when
// first needed; building needs cgo) when lib is nil. Tests pass a mock from go-nvml's pkg/nvml/mock.
func NewNVMLProbe(lib nvml.Interface) *NVMLProbe {
	if lib == nil {
		lib = nvml.New()
	}
	return &NVMLProbe{lib: lib}
}

// Hardware describes the GPUs NVML finds, the driver version and the host's CPU cores and memory.
// Without NVML or a GPU it returns hardware with no GPUs and a nil error (see Reason).
func (p *NVMLProbe) Hardware() (*pb.Hardware, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.start(); err != nil {
		return nil, err
	}
	hw := &pb.Hardware{CpuCores: hostCPUCores(), MemoryBytes: hostMemoryBytes()}
	if !p.inited {
		return hw, nil
	}
	driver, ret := supported(p.lib.SystemGetDriverVersion())
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("container: nvml SystemGetDriverVersion: %w", ret)
	}
	hw.DriverVersion = driver
	for i, d := range p.devices {
		gpu, err := readGPU(i, d)
		if err != nil {
			return nil, err
		}
		hw.Gpus = append(hw.Gpus, gpu)
	}
	return hw, nil
}

// Telemetry reads utilisation, memory in use, temperature and power of each GPU, in the order of
// Hardware().Gpus. Readings a GPU does not support are zero. Without GPUs it returns nothing.
func (p *NVMLProbe) Telemetry() ([]*pb.GPUTelemetry, error) {
	return eachGPU(p, readTelemetry)
}

// Readings reads each GPU's description and live readings for a telemetry report, in the order of
// Hardware().Gpus. Readings a GPU does not support are zero. Without GPUs it returns nothing.
func (p *NVMLProbe) Readings() ([]*pb.GPUReading, error) {
	return eachGPU(p, readReading)
}

// eachGPU reads every GPU with read, in the order of Hardware().Gpus; nothing without GPUs.
func eachGPU[T any](p *NVMLProbe, read func(int, nvml.Device) (T, error)) ([]T, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.start(); err != nil {
		return nil, err
	}
	if !p.inited || len(p.devices) == 0 {
		return nil, nil
	}
	out := make([]T, 0, len(p.devices))
	for i, d := range p.devices {
		r, err := read(i, d)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Reason says why the probe reports no GPU: an error wrapping ErrNoGPU (and the NVML return code,
// matchable with errors.Is) with a hint of what to check. It is nil when GPUs were found, and also
// when NVML works but listing the devices failed (Hardware returns that error). Reason initialises
// NVML if Hardware or Telemetry have not yet.
func (p *NVMLProbe) Reason() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.start() // a failure to list devices is Hardware's error to report, not a reason
	return p.reason
}

// Close shuts NVML down if the probe initialised it. Later calls to Hardware and Telemetry return
// ErrProbeClosed. Closing twice is harmless.
func (p *NVMLProbe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.devices = nil
	if !p.inited {
		return nil
	}
	p.inited = false
	if ret := p.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("container: nvml Shutdown: %w", ret)
	}
	return nil
}

// start initialises NVML once and lists the devices. A failed Init is not an error: it is recorded
// as the reason for reporting no GPU. A failed listing is returned and tried again on the next call.
// The caller holds p.mu.
func (p *NVMLProbe) start() error {
	if p.closed {
		return ErrProbeClosed
	}
	if !p.tried {
		p.tried = true
		if ret := p.lib.Init(); ret != nvml.SUCCESS {
			p.reason = noGPUReason(ret)
			return nil
		}
		p.inited = true
	}
	if !p.inited || p.listed {
		return nil
	}
	n, ret := p.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("container: nvml DeviceGetCount: %w", ret)
	}
	devices := make([]nvml.Device, 0, n)
	for i := range n {
		d, ret := p.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return gpuError(i, "DeviceGetHandleByIndex", ret)
		}
		devices = append(devices, d)
	}
	p.devices, p.listed = devices, true
	if n == 0 {
		p.reason = fmt.Errorf("%w: NVML works but lists no device (is a GPU visible to this container?)", ErrNoGPU)
	}
	return nil
}

// readGPU reads the static description of GPU i.
func readGPU(i int, d nvml.Device) (*pb.GPU, error) {
	name, ret := supported(d.GetName())
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetName", ret)
	}
	uuid, ret := supported(d.GetUUID())
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetUUID", ret)
	}
	mem, ret := supported(d.GetMemoryInfo())
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetMemoryInfo", ret)
	}
	// GPUs without NVENC (A100, H100) answer NOT_SUPPORTED; a capacity of 0 also means no encoder.
	capacity, ret := supported(d.GetEncoderCapacity(nvml.ENCODER_QUERY_H264))
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetEncoderCapacity", ret)
	}
	return &pb.GPU{
		Model:       NormalizeModel(name),
		Name:        name,
		Uuid:        uuid,
		MemoryBytes: mem.Total,
		Encoder:     capacity > 0,
	}, nil
}

// readTelemetry reads the live readings of GPU i.
func readTelemetry(i int, d nvml.Device) (*pb.GPUTelemetry, error) {
	util, ret := supported(d.GetUtilizationRates())
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetUtilizationRates", ret)
	}
	mem, ret := supported(d.GetMemoryInfo())
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetMemoryInfo", ret)
	}
	temp, ret := supported(d.GetTemperature(nvml.TEMPERATURE_GPU))
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetTemperature", ret)
	}
	power, ret := supported(d.GetPowerUsage())
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetPowerUsage", ret)
	}
	return &pb.GPUTelemetry{
		UtilizationPct:       util.Gpu,
		MemoryUtilizationPct: util.Memory,
		MemoryUsedBytes:      mem.Used,
		TemperatureC:         temp,
		PowerMw:              power,
	}, nil
}

// readReading reads everything a telemetry report gives of GPU i: the NVML calls named in
// checker.GPUReading's fields.
func readReading(i int, d nvml.Device) (*pb.GPUReading, error) {
	g, err := readGPU(i, d)
	if err != nil {
		return nil, err
	}
	t, err := readTelemetry(i, d)
	if err != nil {
		return nil, err
	}
	limit, ret := supported(d.GetEnforcedPowerLimit())
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetEnforcedPowerLimit", ret)
	}
	graphics, ret := supported(d.GetClockInfo(nvml.CLOCK_GRAPHICS))
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetClockInfo(GRAPHICS)", ret)
	}
	maxGraphics, ret := supported(d.GetMaxClockInfo(nvml.CLOCK_GRAPHICS))
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetMaxClockInfo(GRAPHICS)", ret)
	}
	memClock, ret := supported(d.GetClockInfo(nvml.CLOCK_MEM))
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetClockInfo(MEM)", ret)
	}
	sessions, _, _, ret := d.GetEncoderStats()
	if ret == nvml.ERROR_NOT_SUPPORTED {
		sessions, ret = 0, nvml.SUCCESS // no NVENC (A100, H100)
	}
	if ret != nvml.SUCCESS {
		return nil, gpuError(i, "GetEncoderStats", ret)
	}
	return &pb.GPUReading{
		Name:                 g.Name,
		Uuid:                 g.Uuid,
		MemoryBytes:          g.MemoryBytes,
		MemoryUsedBytes:      t.MemoryUsedBytes,
		UtilizationPct:       t.UtilizationPct,
		MemoryUtilizationPct: t.MemoryUtilizationPct,
		PowerMw:              t.PowerMw,
		PowerLimitMw:         limit,
		TemperatureC:         t.TemperatureC,
		GraphicsClockMhz:     graphics,
		MaxGraphicsClockMhz:  maxGraphics,
		MemoryClockMhz:       memClock,
		EncoderSessions:      uint32(max(sessions, 0)),
	}, nil
}

// supported turns NVML's "not supported on this GPU" into success with the zero value, so that a
// reading a GPU lacks stays empty instead of failing the whole probe.
func supported[T any](v T, ret nvml.Return) (T, nvml.Return) {
	if ret == nvml.ERROR_NOT_SUPPORTED {
		var zero T
		return zero, nvml.SUCCESS
	}
	return v, ret
}

// gpuError wraps a failed NVML call on GPU i; the nvml.Return stays matchable with errors.Is.
func gpuError(i int, call string, ret nvml.Return) error {
	return fmt.Errorf("container: nvml %s of GPU %d: %w", call, i, ret)
}

// noGPUReason explains a failed nvml.Init, with what to check next.
func noGPUReason(ret nvml.Return) error {
	var hint string
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		hint = " (is the NVIDIA driver installed?)"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		hint = " (is the NVIDIA kernel module loaded?)"
	case nvml.ERROR_NO_PERMISSION:
		hint = " (may this user open /dev/nvidia*?)"
	case nvml.ERROR_LIB_RM_VERSION_MISMATCH:
		hint = " (the driver library and kernel module versions differ: reboot or reinstall the driver)"
	}
	return fmt.Errorf("%w: %w%s", ErrNoGPU, ret, hint)
}
