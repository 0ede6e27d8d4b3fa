package container

import (
	"bufio"
	"errors"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Probe reads what a container can render with. NVMLProbe reads the real machine; SimulatedProbe
// serves a fixed profile for devnets and simulations.
type Probe interface {
	// Hardware describes the machine. A machine without GPU or driver is not an error: it returns
	// hardware with no GPUs (CPU-only container, software rendering) and a nil error.
	Hardware() (*pb.Hardware, error)
	// Telemetry reads live per-GPU readings, in the order of Hardware().Gpus (empty when no GPU).
	Telemetry() ([]*pb.GPUTelemetry, error)
	Close() error
}

// Reader is a Probe that can also give the full readings a telemetry report carries
// (p2p/pb.TelemetryReport): the static description of each GPU (name, UUID, total memory) with its
// live readings, power limit and clocks. A container answers telemetry requests only when its probe
// is a Reader.
type Reader interface {
	// Readings reads every GPU once, in the order of Hardware().Gpus (empty when no GPU).
	Readings() ([]*pb.GPUReading, error)
}

var (
	// ErrNoGPU is wrapped in NVMLProbe's Reason (not returned by Hardware) when no GPU or driver
	// was found.
	ErrNoGPU = errors.New("container: no NVIDIA GPU or driver found")
	// ErrProbeClosed is returned by a probe's Hardware and Telemetry after Close.
	ErrProbeClosed = errors.New("container: probe closed")
)

// NormalizeModel turns the name NVML reports into the short model used in capability keys:
// "NVIDIA H100 80GB HBM3" -> "H100", "NVIDIA GeForce RTX 4090" -> "RTX4090",
// "NVIDIA A100-SXM4-80GB" -> "A100". Brand words (NVIDIA, GeForce, Tesla, Quadro) are dropped, and so
// is everything from the first memory size, memory type or form factor on, because those do not
// change what a GPU can render. The result holds only uppercase letters and digits; a name with
// nothing left is "UNKNOWN".
func NormalizeModel(nvmlName string) string {
	fields := strings.FieldsFunc(strings.ToUpper(nvmlName), func(r rune) bool {
		return r == ' ' || r == '-' || r == '_' || r == '/' || r == '\t'
	})
	var b strings.Builder
	for _, f := range fields {
		if modelSuffix(f) {
			break
		}
		switch f {
		case "NVIDIA", "GEFORCE", "TESLA", "QUADRO", "GPU", "GENERATION":
			continue
		}
		for _, r := range f {
			if ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
				b.WriteRune(r)
			}
		}
	}
	if b.Len() == 0 {
		return "UNKNOWN"
	}
	return b.String()
}

// modelSuffix reports whether an uppercased word of a GPU name starts the part that describes a
// variant rather than the model: memory size ("80GB"), memory type ("HBM3", "GDDR6X") or form
// factor ("PCIE", "SXM4", "NVL").
func modelSuffix(word string) bool {
	if size, ok := strings.CutSuffix(word, "GB"); ok && size != "" && strings.Trim(size, "0123456789") == "" {
		return true
	}
	switch {
	case strings.HasPrefix(word, "HBM"), strings.HasPrefix(word, "GDDR"), strings.HasPrefix(word, "SXM"):
		return true
	}
	switch word {
	case "PCIE", "NVL", "OAM", "MIG":
		return true
	}
	return false
}

// hostCPUCores is the number of CPUs this process can use.
func hostCPUCores() uint32 {
	return uint32(runtime.NumCPU())
}

// hostMemoryBytes is MemTotal from /proc/meminfo, or 0 when it cannot be read (not Linux).
func hostMemoryBytes() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	total, _ := parseMemTotal(f)
	return total
}

// parseMemTotal reads the MemTotal line of a /proc/meminfo listing ("MemTotal:  16318480 kB") and
// returns it in bytes.
func parseMemTotal(r io.Reader) (uint64, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, false
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, false
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		return n, true
	}
	return 0, false
}
