package container

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Profile is the hardware of a simulated container: what a devnet or simnet node claims to render
// with instead of reading NVML.
type Profile struct {
	Name          string // short name to pick it by, e.g. "h100", "cpu"
	GPUs          []*pb.GPU
	DriverVersion string
	CPUCores      uint32
	MemoryBytes   uint64
}

const (
	mib = 1 << 20
	gib = 1 << 30
)

// Profiles returns the built-in profiles, one machine each, with the names and memory sizes NVML
// reports for those GPUs: "h100", "a100", "l40s", "rtx4090", "rtx3080", "t4", and "cpu" (no GPU).
// GPU UUIDs are left empty: NewSimulatedProbe derives them from its seed so that simulated machines
// differ. Every call returns fresh values that the caller may change.
func Profiles() []Profile {
	return []Profile{
		{Name: "h100", GPUs: []*pb.GPU{simGPU("NVIDIA H100 80GB HBM3", 81559*mib, false)},
			DriverVersion: "550.54.15", CPUCores: 26, MemoryBytes: 225 * gib},
		{Name: "a100", GPUs: []*pb.GPU{simGPU("NVIDIA A100-SXM4-80GB", 81920*mib, false)},
			DriverVersion: "550.54.15", CPUCores: 30, MemoryBytes: 200 * gib},
		{Name: "l40s", GPUs: []*pb.GPU{simGPU("NVIDIA L40S", 46068*mib, true)},
			DriverVersion: "550.54.15", CPUCores: 16, MemoryBytes: 128 * gib},
		{Name: "rtx4090", GPUs: []*pb.GPU{simGPU("NVIDIA GeForce RTX 4090", 24564*mib, true)},
			DriverVersion: "560.35.03", CPUCores: 16, MemoryBytes: 64 * gib},
		{Name: "rtx3080", GPUs: []*pb.GPU{simGPU("NVIDIA GeForce RTX 3080", 10240*mib, true)},
			DriverVersion: "560.35.03", CPUCores: 8, MemoryBytes: 32 * gib},
		{Name: "t4", GPUs: []*pb.GPU{simGPU("Tesla T4", 15360*mib, true)},
			DriverVersion: "535.183.01", CPUCores: 4, MemoryBytes: 16 * gib},
		{Name: "cpu", CPUCores: 8, MemoryBytes: 16 * gib},
	}
}

// ProfileByName finds a built-in profile by name, ignoring case.
func ProfileByName(name string) (Profile, bool) {
	for _, p := range Profiles() {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return Profile{}, false
}

func simGPU(name string, memoryBytes uint64, encoder bool) *pb.GPU {
	return &pb.GPU{Model: NormalizeModel(name), Name: name, MemoryBytes: memoryBytes, Encoder: encoder}
}

// simPower is the idle and full-load board power of a model, in milliwatts.
var simPower = map[string][2]uint32{
	"H100":    {70_000, 700_000},
	"A100":    {60_000, 400_000},
	"L40S":    {35_000, 350_000},
	"RTX4090": {25_000, 450_000},
	"RTX3080": {20_000, 320_000},
	"T4":      {10_000, 70_000},
}

// simClocks are a model's highest graphics clock and its memory clock, in MHz, as NVML reports
// them: GDDR boards report the memory's effective data rate (RTX 4090: 10501 MHz).
var simClocks = map[string][2]uint32{
	"H100":    {1980, 2619},
	"A100":    {1410, 1593},
	"L40S":    {2520, 9001},
	"RTX4090": {2790, 10501},
	"RTX3080": {2100, 9501},
	"T4":      {1590, 5001},
}

// simMaxLoad bounds a simulated GPU's utilisation, in percent: below what checker.CheckTelemetry
// takes for another workload on a GPU in standby (30).
const simMaxLoad = 25

var (
	_ Probe  = (*SimulatedProbe)(nil)
	_ Reader = (*SimulatedProbe)(nil)
)

// SimulatedProbe serves a fixed Profile, marked Simulated, with telemetry drawn from a source seeded
// at construction: the same profile and seed give the same Hardware and the same sequence of
// Telemetry readings. Each GPU's load takes a random walk between 0 and simMaxLoad percent (an idle
// GPU's background work: the simulated renderer runs on the CPU, so sessions do not load it, and a
// checker reading a GPU in standby sees it nearly idle), and memory, temperature and power follow
// it. SimulatedProbe is safe for concurrent use.
type SimulatedProbe struct {
	mu     sync.Mutex
	hw     *pb.Hardware
	rng    *rand.Rand
	load   []int // utilisation of each GPU in percent, the walk's position
	temp   []int // temperature of each GPU in Readings, which follows the walk's slowly; 0: none yet
	closed bool
}

// NewSimulatedProbe returns a probe serving profile. GPUs without a UUID get one derived from seed.
func NewSimulatedProbe(profile Profile, seed int64) *SimulatedProbe {
	hw := &pb.Hardware{
		DriverVersion: profile.DriverVersion,
		CpuCores:      profile.CPUCores,
		MemoryBytes:   profile.MemoryBytes,
		Simulated:     true,
	}
	for i, g := range profile.GPUs {
		g = proto.Clone(g).(*pb.GPU)
		if g.Uuid == "" {
			g.Uuid = simUUID(seed, i)
		}
		if g.Model == "" {
			g.Model = NormalizeModel(g.Name)
		}
		hw.Gpus = append(hw.Gpus, g)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x7e1e_3e7e))
	load := make([]int, len(hw.Gpus))
	for i := range load {
		load[i] = rng.IntN(simMaxLoad + 1)
	}
	return &SimulatedProbe{hw: hw, rng: rng, load: load, temp: make([]int, len(hw.Gpus))}
}

// simUUID formats a UUID the way NVML does ("GPU-" and 32 hex digits in five groups), drawn from a
// source of its own so that UUIDs do not shift the telemetry sequence.
func simUUID(seed int64, gpu int) string {
	r := rand.New(rand.NewPCG(uint64(seed), uint64(gpu)))
	a, b := r.Uint64(), r.Uint64()
	return fmt.Sprintf("GPU-%08x-%04x-%04x-%04x-%012x",
		a>>32, (a>>16)&0xffff, a&0xffff, b>>48, b&0xffff_ffff_ffff)
}

// Hardware returns a copy of the profile, marked Simulated.
func (p *SimulatedProbe) Hardware() (*pb.Hardware, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrProbeClosed
	}
	return proto.Clone(p.hw).(*pb.Hardware), nil
}

// Telemetry advances each GPU's load one step and returns the readings that go with it.
func (p *SimulatedProbe) Telemetry() ([]*pb.GPUTelemetry, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.step()
}

// Readings advances each GPU's load one step, as Telemetry does, and adds what a telemetry report
// needs: the static description, the model's power limit (its full-load draw) and clocks that follow
// the load. The temperature moves at most 2 °C a reading, as a heatsink's does.
func (p *SimulatedProbe) Readings() ([]*pb.GPUReading, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tel, err := p.step()
	if err != nil || len(tel) == 0 {
		return nil, err
	}
	out := make([]*pb.GPUReading, 0, len(tel))
	for i, t := range tel {
		g := p.hw.Gpus[i]
		if p.temp[i] == 0 {
			p.temp[i] = int(t.TemperatureC)
		} else {
			p.temp[i] += min(max(int(t.TemperatureC)-p.temp[i], -2), 2)
		}
		power, ok := simPower[g.Model]
		if !ok {
			power = [2]uint32{30_000, 300_000}
		}
		clocks, ok := simClocks[g.Model]
		if !ok {
			clocks = [2]uint32{1500, 1500}
		}
		out = append(out, &pb.GPUReading{
			Name:                 g.Name,
			Uuid:                 g.Uuid,
			MemoryBytes:          g.MemoryBytes,
			MemoryUsedBytes:      t.MemoryUsedBytes,
			UtilizationPct:       t.UtilizationPct,
			MemoryUtilizationPct: t.MemoryUtilizationPct,
			PowerMw:              t.PowerMw,
			PowerLimitMw:         power[1],
			TemperatureC:         uint32(p.temp[i]),
			// Idle GPUs clock down to about a third of their maximum.
			GraphicsClockMhz:    clocks[0] * (35 + 65*t.UtilizationPct/100) / 100,
			MaxGraphicsClockMhz: clocks[0],
			MemoryClockMhz:      clocks[1],
		})
	}
	return out, nil
}

// step advances the walk; the caller holds p.mu.
func (p *SimulatedProbe) step() ([]*pb.GPUTelemetry, error) {
	if p.closed {
		return nil, ErrProbeClosed
	}
	if len(p.hw.Gpus) == 0 {
		return nil, nil
	}
	out := make([]*pb.GPUTelemetry, 0, len(p.hw.Gpus))
	for i, g := range p.hw.Gpus {
		load := min(max(p.load[i]+p.rng.IntN(11)-5, 0), simMaxLoad)
		p.load[i] = load
		power, ok := simPower[g.Model]
		if !ok {
			power = [2]uint32{30_000, 300_000}
		}
		idle, peak := power[0], power[1]
		out = append(out, &pb.GPUTelemetry{
			UtilizationPct:       uint32(load),
			MemoryUtilizationPct: uint32(min(load*6/10+p.rng.IntN(10), 100)),
			MemoryUsedBytes:      g.MemoryBytes / 1000 * uint64(50+8*load),
			TemperatureC:         uint32(30 + load/2 + p.rng.IntN(4)),
			PowerMw:              min(idle+(peak-idle)/100*uint32(load)+uint32(p.rng.IntN(2000)), peak),
		})
	}
	return out, nil
}

// Close makes later calls to Hardware and Telemetry return ErrProbeClosed.
func (p *SimulatedProbe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}
