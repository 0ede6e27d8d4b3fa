package checker

import (
	"math"
	"time"
	"unicode/utf8"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Attestation limits of the wire format (p2p.AttestValidator rejects longer fields).
const (
	maxReasonBytes   = 128
	maxGPUModelBytes = 32
)

// CheckInfo is what an attestation says about a check besides its result.
type CheckInfo struct {
	Checker, Container []byte // peer IDs, binary
	Epoch              uint64
	Kind               pb.CheckKind
	Method             pb.CheckMethod
	Nonce              []byte // the check's fresh challenge, 1 to 64 bytes
	Issued             time.Time
	// GPUModel and GPUCount are the hardware the check saw (telemetry) or the record claims.
	GPUModel string
	GPUCount int
	Encoder  bool
}

// NewAttestation turns a check's result into the attestation a checker signs: the measurements in
// the wire's integer units, the verdict, the evidence hash and, on failure, the failed part and
// its reason cut to the wire's limit.
func NewAttestation(r Result, c CheckInfo) *pb.Attestation {
	a := &pb.Attestation{
		Checker: c.Checker, Container: c.Container, Epoch: c.Epoch,
		Kind: c.Kind, Method: c.Method, Verdict: pb.Verdict_VERDICT_PASS,
		EvidenceHash: append([]byte(nil), r.EvidenceHash[:]...), IssuedUnixMs: c.Issued.UnixMilli(),
		Nonce: c.Nonce,
	}
	if r.Verdict != Pass {
		a.Verdict = pb.Verdict_VERDICT_FAIL
		reason := string(r.Check)
		if r.Reason != "" {
			reason += ": " + r.Reason
		}
		if reason == "" {
			reason = "failed"
		}
		a.Reason = truncateUTF8(reason, maxReasonBytes)
	}
	m := r.Measurements
	t := r.Telemetry
	a.M = &pb.Measurements{
		FpsMilli:      clampU32(m.FPS * 1000),
		Width:         uint32(max(0, m.Width)),
		Height:        uint32(max(0, m.Height)),
		LatencyUsP50:  clampU32(float64(m.LatencyP50.Microseconds())),
		BitrateKbps:   clampU32(m.BitrateKbps),
		FramesChecked: uint32(max(0, m.FramesChecked)),
		FramesMatched: uint32(max(0, m.FramesMatched)),
		PsnrMinMilli:  clampU32(m.PSNRMin * 1000),

		GpuModel: truncateUTF8(c.GPUModel, maxGPUModelBytes),
		GpuCount: uint32(max(0, c.GPUCount)),
		Encoder:  c.Encoder,

		Samples:               uint32(max(0, t.Samples)),
		UtilizationPct:        clampU32(t.UtilizationMean),
		PowerMaxMw:            clampU32(t.PowerMaxW * 1000),
		TemperatureMaxC:       t.TemperatureMaxC,
		MemoryUsedMaxPermille: clampU32(t.MemoryUsedMaxFrac * 1000),
	}
	return a
}

// clampU32 rounds v into a uint32 (NaN and negatives to 0).
func clampU32(v float64) uint32 {
	switch {
	case math.IsNaN(v) || v <= 0:
		return 0
	case v >= math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(math.Round(v))
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
