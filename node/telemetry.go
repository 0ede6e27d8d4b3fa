package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/checker"
	"github.com/rendermesh/rendermesh/roles/container"
)

// Telemetry reports (docs/CHECKERS.md, "Telemetry report"): a checker asks a container for a
// window of NVML readings on p2p.ProtoTelemetry; the container takes them on its clock and answers
// with the report signed by its key.

// ErrTelemetryRefused is wrapped by RequestTelemetry's error when the container answered with a
// refusal; the error's text ends with the container's reason ("busy", "no gpu", ...).
var ErrTelemetryRefused = errors.New("node: telemetry refused")

// errStreamNotOpened marks a telemetry request whose stream to the container could not be opened
// (no connection could be made): the container was never asked.
var errStreamNotOpened = errors.New("node: no stream to the container")

// Reasons a container refuses a telemetry request (TelemetryReport.refused).
const (
	telemetryRefusedBusy         = "busy"            // serving maxTelemetryReports already
	telemetryRefusedNoGPU        = "no gpu"          // the probe reads no GPU
	telemetryRefusedNotContainer = "not a container" // or its probe cannot give full readings
	telemetryRefusedProbe        = "probe failed"    // reading the GPUs failed
)

const (
	// maxTelemetryReports bounds the reports a container takes at once.
	maxTelemetryReports = 2
	// telemetryRequestTimeout bounds how long a checker may take to send its request.
	telemetryRequestTimeout = 5 * time.Second
	// telemetryAnswerMargin is added to a window's length to bound a whole exchange: opening the
	// stream, the first reading and the answer's way back.
	telemetryAnswerMargin = 10 * time.Second
)

// telemetrySlots is a node's semaphore of telemetry reports in progress.
type telemetrySlots chan struct{}

// startTelemetryProtocol serves telemetry requests from checkers. Only a container serves them
// (others answer every request with a refusal, as they do when their probe is no container.Reader).
func (n *Node) startTelemetryProtocol() {
	slots := make(telemetrySlots, maxTelemetryReports)
	n.net.HandleStream(p2p.ProtoTelemetry, func(ctx context.Context, s network.Stream) error {
		return n.serveTelemetry(ctx, s, slots)
	})
}

// serveTelemetry answers one request: it takes the readings, signs the report and sends it.
func (n *Node) serveTelemetry(ctx context.Context, s network.Stream, slots telemetrySlots) error {
	_ = s.SetReadDeadline(time.Now().Add(telemetryRequestTimeout))
	req := &pb.TelemetryRequest{}
	if err := p2p.ReadMsg(s, req, p2p.MaxTelemetryRequestSize); err != nil {
		return err
	}
	if err := p2p.ValidateTelemetryRequest(req); err != nil {
		return err // a bad request gets a reset stream, as on other protocols
	}
	window := time.Duration(req.Samples-1) * time.Duration(req.SpacingMs) * time.Millisecond
	_ = s.SetDeadline(time.Now().Add(window + telemetryAnswerMargin))
	report := &pb.TelemetryReport{
		Container:       []byte(n.net.ID()),
		Nonce:           req.Nonce,
		RequestedUnixMs: n.opts.Clock.Now().UnixMilli(),
	}
	if n.opts.Cheat == CheatSilent {
		return nil // closes the stream unanswered
	}
	reader, ok := n.probe.(container.Reader)
	switch {
	case n.cont == nil || !ok:
		report.Refused = telemetryRefusedNotContainer
	case n.cheatsBusy():
		report.Refused = telemetryRefusedBusy
	default:
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			report.Samples, report.Refused = n.readTelemetry(ctx, reader, req)
		default:
			report.Refused = telemetryRefusedBusy
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	raw, err := p2p.SealTelemetryReport(report, n.net.Host().Peerstore().PrivKey(n.net.ID()))
	if err != nil {
		n.log.Warn("telemetry report not sealed; refusing", "checker", s.Conn().RemotePeer(), "err", err)
		report.Samples, report.Refused = nil, telemetryRefusedProbe
		if raw, err = p2p.SealTelemetryReport(report, n.net.Host().Peerstore().PrivKey(n.net.ID())); err != nil {
			return err
		}
	}
	return p2p.WriteTelemetryReport(s, raw)
}

// readTelemetry takes req.Samples readings req.SpacingMs apart on the node's clock, or says why
// it refuses.
func (n *Node) readTelemetry(ctx context.Context, r container.Reader, req *pb.TelemetryRequest) ([]*pb.TelemetrySample, string) {
	clk := n.opts.Clock
	spacing := time.Duration(req.SpacingMs) * time.Millisecond
	var samples []*pb.TelemetrySample
	for i := range req.Samples {
		if i > 0 {
			t := clk.Timer(spacing)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ""
			case <-t.C:
			}
		}
		gpus, err := r.Readings()
		switch {
		case err != nil:
			n.log.Warn("telemetry reading failed", "err", err)
			return nil, telemetryRefusedProbe
		case len(gpus) == 0:
			return nil, telemetryRefusedNoGPU
		case n.opts.Cheat == CheatReplay && i > 0:
			gpus = samples[0].Gpus // one reading, replayed under fresh stamps
		}
		samples = append(samples, &pb.TelemetrySample{AtUnixMs: clk.Now().UnixMilli(), Gpus: gpus})
	}
	return samples, ""
}

// RequestTelemetry asks container for samples readings spacing apart, under nonce (1 to 64 fresh
// bytes), and returns them for checker.CheckTelemetry, with the signed report they came in. The
// window's Requested and Received are this node's clock around the exchange; State and GPUWork are
// the caller's to fill. A refusal is an error wrapping ErrTelemetryRefused. Without a deadline on
// ctx, the exchange is bounded by the window's length and a margin.
func (n *Node) RequestTelemetry(ctx context.Context, container peer.ID, nonce []byte, samples int, spacing time.Duration) (checker.Telemetry, *pb.TelemetryReport, error) {
	req := &pb.TelemetryRequest{Nonce: nonce, Samples: uint32(max(samples, 0)), SpacingMs: uint32(max(spacing.Milliseconds(), 0))}
	if err := p2p.ValidateTelemetryRequest(req); err != nil {
		return checker.Telemetry{}, nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(samples)*spacing+telemetryAnswerMargin)
		defer cancel()
	}
	fail := func(err error) (checker.Telemetry, *pb.TelemetryReport, error) {
		return checker.Telemetry{}, nil, fmt.Errorf("node: telemetry from %s: %w", container, err)
	}
	requested := n.opts.Clock.Now()
	s, err := n.net.NewStream(ctx, container, p2p.ProtoTelemetry)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", errStreamNotOpened, err))
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if deadline, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(deadline)
	}
	if err := p2p.WriteMsg(s, req); err != nil {
		_ = s.Reset()
		return fail(err)
	}
	_ = s.CloseWrite()
	report, signer, err := p2p.ReadTelemetryReport(s)
	if err != nil {
		_ = s.Reset()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return fail(err)
	}
	_ = s.Close()
	received := n.opts.Clock.Now()
	switch {
	case signer != container:
		return fail(fmt.Errorf("%w: report signed by %s", p2p.ErrBadTelemetry, signer))
	case !bytes.Equal(report.Nonce, nonce):
		return fail(fmt.Errorf("%w: the report answers another request (nonce %x)", p2p.ErrBadTelemetry, report.Nonce))
	case report.Refused != "":
		return fail(fmt.Errorf("%w: %s", ErrTelemetryRefused, report.Refused))
	}
	t := TelemetryFromReport(report)
	t.Requested, t.Received = requested, received
	return t, report, nil
}

// TelemetryFromReport converts a report's samples for checker.CheckTelemetry; the window's
// Requested, Received, State and GPUWork are left to the caller.
func TelemetryFromReport(r *pb.TelemetryReport) checker.Telemetry {
	var t checker.Telemetry
	for _, s := range r.GetSamples() {
		cs := checker.TelemetrySample{At: time.UnixMilli(s.GetAtUnixMs()), GPUs: make([]checker.GPUReading, 0, len(s.GetGpus()))}
		for _, g := range s.GetGpus() {
			cs.GPUs = append(cs.GPUs, checker.GPUReading{
				Name:                 g.GetName(),
				UUID:                 g.GetUuid(),
				MemoryBytes:          g.GetMemoryBytes(),
				MemoryUsedBytes:      g.GetMemoryUsedBytes(),
				UtilizationPct:       g.GetUtilizationPct(),
				MemoryUtilizationPct: g.GetMemoryUtilizationPct(),
				PowerMw:              g.GetPowerMw(),
				PowerLimitMw:         g.GetPowerLimitMw(),
				TemperatureC:         g.GetTemperatureC(),
				GraphicsClockMHz:     g.GetGraphicsClockMhz(),
				MaxGraphicsClockMHz:  g.GetMaxGraphicsClockMhz(),
				MemoryClockMHz:       g.GetMemoryClockMhz(),
				EncoderSessions:      g.GetEncoderSessions(),
			})
		}
		t.Samples = append(t.Samples, cs)
	}
	return t
}
