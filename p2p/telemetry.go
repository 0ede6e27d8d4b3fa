package p2p

import (
	"errors"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Telemetry reports (docs/CHECKERS.md, "Telemetry report"): a checker sends a TelemetryRequest on
// ProtoTelemetry, the container takes the readings and answers with a TelemetryReport sealed as
// KindTelemetry.
const (
	// MaxTelemetryRequestSize bounds a TelemetryRequest (the largest valid one takes 71 bytes).
	MaxTelemetryRequestSize = 128
	// MaxTelemetryReportSize bounds a whole report envelope. A reading of a real GPU takes about
	// 120 bytes (NVML names and UUIDs stay under 96 bytes each), so 20 samples of 16 GPUs take
	// about 40 KiB; readings padded to the field limits do not fit and are refused.
	MaxTelemetryReportSize = 64 << 10

	// Bounds of a request, and so of a report.
	MinTelemetrySamples    = 3
	MaxTelemetrySamples    = 20
	MinTelemetrySpacingMs  = 100
	MaxTelemetrySpacingMs  = 1000
	MaxTelemetryNonce      = 64
	MaxTelemetryGPUs       = 16  // readings in one sample
	MaxTelemetryStringSize = 128 // GPUReading.name and .uuid, TelemetryReport.refused, in bytes
)

// KindTelemetry is a container's signed telemetry report.
var KindTelemetry = Kind{Domain: "rendermesh-telemetry", Codec: []byte("/rendermesh/telemetry/1")}

// ErrBadTelemetry is wrapped by every error of ValidateTelemetryRequest and OpenTelemetryReport.
var ErrBadTelemetry = errors.New("p2p: invalid telemetry")

// ValidateTelemetryRequest checks a request's nonce, sample count and spacing against their bounds.
func ValidateTelemetryRequest(r *pb.TelemetryRequest) error {
	switch {
	case r == nil:
		return fmt.Errorf("%w: no request", ErrBadTelemetry)
	case len(r.Nonce) == 0 || len(r.Nonce) > MaxTelemetryNonce:
		return fmt.Errorf("%w: nonce of %d bytes, want 1 to %d", ErrBadTelemetry, len(r.Nonce), MaxTelemetryNonce)
	case r.Samples < MinTelemetrySamples || r.Samples > MaxTelemetrySamples:
		return fmt.Errorf("%w: %d samples, want %d to %d", ErrBadTelemetry, r.Samples, MinTelemetrySamples, MaxTelemetrySamples)
	case r.SpacingMs < MinTelemetrySpacingMs || r.SpacingMs > MaxTelemetrySpacingMs:
		return fmt.Errorf("%w: spacing %d ms, want %d to %d", ErrBadTelemetry, r.SpacingMs, MinTelemetrySpacingMs, MaxTelemetrySpacingMs)
	}
	return nil
}

// SealTelemetryReport checks r's fields and signs it with key, which must be the key of r.Container.
func SealTelemetryReport(r *pb.TelemetryReport, key crypto.PrivKey) ([]byte, error) {
	if err := checkTelemetryReport(r); err != nil {
		return nil, err
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("p2p: seal telemetry report: %w", err)
	}
	if peer.ID(r.Container) != id {
		return nil, fmt.Errorf("%w: report of container %s signed by %s", ErrBadTelemetry, peer.ID(r.Container), id)
	}
	data, err := Seal(KindTelemetry, r, key)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxTelemetryReportSize {
		return nil, fmt.Errorf("%w: report of %d bytes, limit %d", ErrBadTelemetry, len(data), MaxTelemetryReportSize)
	}
	return data, nil
}

// OpenTelemetryReport verifies a report envelope and returns the report and its signer, which is
// the report's container. It checks the size, the payload type, the signature and the field limits;
// it does not check the nonce or the timestamps against a request (the requester does).
func OpenTelemetryReport(raw []byte) (*pb.TelemetryReport, peer.ID, error) {
	if len(raw) > MaxTelemetryReportSize {
		return nil, "", fmt.Errorf("%w: report of %d bytes, limit %d", ErrBadTelemetry, len(raw), MaxTelemetryReportSize)
	}
	r := new(pb.TelemetryReport)
	signer, err := Open(KindTelemetry, raw, r)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrBadTelemetry, err)
	}
	if peer.ID(r.Container) != signer {
		return nil, "", fmt.Errorf("%w: report of container %s signed by %s", ErrBadTelemetry, peer.ID(r.Container), signer)
	}
	if err := checkTelemetryReport(r); err != nil {
		return nil, "", err
	}
	return r, signer, nil
}

// checkTelemetryReport checks what a report says on its own.
func checkTelemetryReport(r *pb.TelemetryReport) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadTelemetry, fmt.Sprintf(format, args...))
	}
	switch {
	case len(r.Container) == 0:
		return bad("no container")
	case len(r.Nonce) == 0 || len(r.Nonce) > MaxTelemetryNonce:
		return bad("nonce of %d bytes, want 1 to %d", len(r.Nonce), MaxTelemetryNonce)
	case len(r.Refused) > MaxTelemetryStringSize:
		return bad("refusal of %d bytes, limit %d", len(r.Refused), MaxTelemetryStringSize)
	case r.Refused != "" && len(r.Samples) > 0:
		return bad("refused, yet %d samples", len(r.Samples))
	case len(r.Samples) > MaxTelemetrySamples:
		return bad("%d samples, limit %d", len(r.Samples), MaxTelemetrySamples)
	}
	for i, s := range r.Samples {
		if i > 0 && s.GetAtUnixMs() < r.Samples[i-1].GetAtUnixMs() {
			return bad("sample %d is dated before sample %d", i, i-1)
		}
		if len(s.GetGpus()) > MaxTelemetryGPUs {
			return bad("sample %d reads %d GPUs, limit %d", i, len(s.GetGpus()), MaxTelemetryGPUs)
		}
		for j, g := range s.GetGpus() {
			if g == nil {
				return bad("sample %d: GPU %d has no reading", i, j)
			}
			if len(g.Name) > MaxTelemetryStringSize || len(g.Uuid) > MaxTelemetryStringSize {
				return bad("sample %d: GPU %d's name or UUID exceeds %d bytes", i, j, MaxTelemetryStringSize)
			}
		}
	}
	return nil
}

// WriteTelemetryReport writes a sealed report to w as one length-prefixed message (a uvarint length,
// then the envelope), in one Write: the answer on ProtoTelemetry.
func WriteTelemetryReport(w io.Writer, raw []byte) error {
	return writeFrame(w, raw, "telemetry report")
}

// ReadTelemetryReport reads one report written by WriteTelemetryReport and opens it. A length above
// MaxTelemetryReportSize fails with an error wrapping ErrMsgTooLarge before the body is read.
func ReadTelemetryReport(r io.Reader) (*pb.TelemetryReport, peer.ID, error) {
	raw, err := readFrame(r, MaxTelemetryReportSize, "telemetry report")
	if err != nil {
		return nil, "", err
	}
	return OpenTelemetryReport(raw)
}
