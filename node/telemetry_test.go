package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/checker"
	"github.com/rendermesh/rendermesh/roles/container"
)

// startTelemetryContainer starts a container node reading probe (cheating with cheat) that serves
// telemetry.
func startTelemetryContainer(t *testing.T, probe container.Probe, cheat ...Cheat) *Node {
	t.Helper()
	opts := testNodeOptions()
	opts.Probe = probe
	if len(cheat) > 0 {
		opts.Cheat = cheat[0]
	}
	n := startNode(t, testNodeConfig(t.TempDir()), opts)
	n.startTelemetryProtocol()
	return n
}

func linkNodes(t *testing.T, from, to *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := from.Net().Host().Connect(ctx, peer.AddrInfo{ID: to.Net().ID(), Addrs: to.Net().Addrs()}); err != nil {
		t.Fatal(err)
	}
}

func profileProbe(t *testing.T, profile string, seed int64) *container.SimulatedProbe {
	t.Helper()
	prof, ok := container.ProfileByName(profile)
	if !ok {
		t.Fatalf("no profile %q", profile)
	}
	return container.NewSimulatedProbe(prof, seed)
}

// notReader hides a probe's Readings.
type notReader struct{ container.Probe }

func TestTelemetryReport(t *testing.T) {
	honest := startTelemetryContainer(t, profileProbe(t, "h100", 11))
	// Claims an H100, really an RTX 3080.
	cheater := startTelemetryContainer(t, container.NewClaimingProbe(profileProbe(t, "h100", 12), profileProbe(t, "rtx3080", 12)))
	chk := startNode(t, testNodeConfig(t.TempDir()), testNodeOptions())
	linkNodes(t, chk, honest)
	linkNodes(t, chk, cheater)
	standby := pb.ContainerState_CONTAINER_STATE_STANDBY

	request := func(t *testing.T, c *Node, nonce string) (checker.Telemetry, *pb.TelemetryReport, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		return chk.RequestTelemetry(ctx, c.Net().ID(), []byte(nonce), 5, 100*time.Millisecond)
	}

	t.Run("honest container passes", func(t *testing.T) {
		tel, report, err := request(t, honest, "nonce-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(tel.Samples) != 5 || string(report.Nonce) != "nonce-1" || peer.ID(report.Container) != honest.Net().ID() {
			t.Fatalf("%d samples, report %v", len(tel.Samples), report)
		}
		if tel.Requested.IsZero() || tel.Received.Before(tel.Requested) {
			t.Errorf("window %v to %v", tel.Requested, tel.Received)
		}
		tel.State = standby
		if res := checker.CheckTelemetry(honest.Container().Record(1), tel); res.Verdict != checker.Pass {
			t.Fatalf("honest container: %v %s: %s", res.Verdict, res.Check, res.Reason)
		}
	})

	t.Run("claimed GPU fails", func(t *testing.T) {
		tel, _, err := request(t, cheater, "nonce-2")
		if err != nil {
			t.Fatal(err)
		}
		tel.State = standby
		rec := cheater.Container().Record(1)
		if m := rec.GetHardware().GetGpus()[0].GetModel(); m != "H100" {
			t.Fatalf("the cheater advertises %s", m)
		}
		res := checker.CheckTelemetry(rec, tel)
		if res.Verdict != checker.Fail || res.Check != checker.CheckTelemetryGPUs {
			t.Fatalf("H100 claimed on an RTX 3080: %v %s: %s", res.Verdict, res.Check, res.Reason)
		}
	})

	t.Run("busy", func(t *testing.T) {
		full := make(telemetrySlots, maxTelemetryReports)
		for range maxTelemetryReports {
			full <- struct{}{}
		}
		honest.net.HandleStream(p2p.ProtoTelemetry, func(ctx context.Context, s network.Stream) error {
			return honest.serveTelemetry(ctx, s, full)
		})
		t.Cleanup(honest.startTelemetryProtocol)
		_, _, err := request(t, honest, "nonce-3")
		if !errors.Is(err, ErrTelemetryRefused) || !strings.HasSuffix(err.Error(), telemetryRefusedBusy) {
			t.Fatalf("a busy container: %v", err)
		}
	})

	t.Run("probe without readings refuses", func(t *testing.T) {
		c := startTelemetryContainer(t, notReader{profileProbe(t, "t4", 13)})
		linkNodes(t, chk, c)
		_, _, err := request(t, c, "nonce-4")
		if !errors.Is(err, ErrTelemetryRefused) || !strings.HasSuffix(err.Error(), telemetryRefusedNotContainer) {
			t.Fatalf("a probe without readings: %v", err)
		}
	})

	t.Run("cpu-only container refuses", func(t *testing.T) {
		c := startTelemetryContainer(t, profileProbe(t, "cpu", 14))
		linkNodes(t, chk, c)
		_, _, err := request(t, c, "nonce-5")
		if !errors.Is(err, ErrTelemetryRefused) || !strings.HasSuffix(err.Error(), telemetryRefusedNoGPU) {
			t.Fatalf("a CPU-only container: %v", err)
		}
	})

	t.Run("replayed reading fails", func(t *testing.T) {
		c := startTelemetryContainer(t, profileProbe(t, "l40s", 15), CheatReplay)
		linkNodes(t, chk, c)
		tel, _, err := request(t, c, "nonce-6")
		if err != nil {
			t.Fatal(err)
		}
		tel.State = standby
		if res := checker.CheckTelemetry(c.Container().Record(1), tel); res.Verdict != checker.Fail || res.Check != checker.CheckTelemetryReplay {
			t.Fatalf("one reading replayed: %v %s: %s", res.Verdict, res.Check, res.Reason)
		}
	})

	t.Run("silent container", func(t *testing.T) {
		c := startTelemetryContainer(t, profileProbe(t, "l40s", 16), CheatSilent)
		linkNodes(t, chk, c)
		_, _, err := request(t, c, "nonce-7")
		if err == nil || errors.Is(err, ErrTelemetryRefused) || errors.Is(err, errStreamNotOpened) {
			t.Fatalf("a silent container: %v", err)
		}
		// Reached and silent: the container's failure, attested at once (after confirmations).
		ck := &checkerSvc{n: chk, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		res, err := ck.telemetryCheck(t.Context(), c.Net().ID(), c.Container().Record(1), []byte("nonce-7b"), standby)
		if err != nil || res.Verdict != checker.Fail || res.Check != CheckUnanswered {
			t.Fatalf("a silent container's check: %v %s, %v", res.Verdict, res.Check, err)
		}
	})

	t.Run("unreachable container", func(t *testing.T) {
		// Running, but the checker knows no address for it and the DHT has none: the check never
		// reaches it, which says nothing about the container (docs/CHECKERS.md, "The checker role in a node").
		c := startTelemetryContainer(t, profileProbe(t, "l40s", 17))
		_, _, err := request(t, c, "nonce-8")
		if !errors.Is(err, errStreamNotOpened) {
			t.Fatalf("no stream to an unreachable container: %v", err)
		}
		ck := &checkerSvc{n: chk, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		res, err := ck.telemetryCheck(t.Context(), c.Net().ID(), c.Container().Record(1), []byte("nonce-8b"), standby)
		if !errors.Is(err, errUnreachable) || !errors.Is(err, errInconclusive) || !deferred(err) {
			t.Fatalf("an unreachable container's check: %v %s, %v; want deferred, unreachable", res.Verdict, res.Check, err)
		}
	})

	t.Run("invalid request is not sent", func(t *testing.T) {
		ctx := t.Context()
		for name, call := range map[string]func() error{
			"two samples": func() error {
				_, _, err := chk.RequestTelemetry(ctx, honest.Net().ID(), []byte("n"), 2, 100*time.Millisecond)
				return err
			},
			"no nonce": func() error {
				_, _, err := chk.RequestTelemetry(ctx, honest.Net().ID(), nil, 3, 100*time.Millisecond)
				return err
			},
			"fast": func() error {
				_, _, err := chk.RequestTelemetry(ctx, honest.Net().ID(), []byte("n"), 3, 10*time.Millisecond)
				return err
			},
		} {
			if err := call(); !errors.Is(err, p2p.ErrBadTelemetry) {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

func TestTelemetryFromReport(t *testing.T) {
	r := &pb.TelemetryReport{Samples: []*pb.TelemetrySample{
		{AtUnixMs: 1_800_000_000_123, Gpus: []*pb.GPUReading{{
			Name: "NVIDIA L40S", Uuid: "GPU-1", MemoryBytes: 1, MemoryUsedBytes: 2, UtilizationPct: 3,
			MemoryUtilizationPct: 4, PowerMw: 5, PowerLimitMw: 6, TemperatureC: 7, GraphicsClockMhz: 8,
			MaxGraphicsClockMhz: 9, MemoryClockMhz: 10, EncoderSessions: 11,
		}}},
	}}
	got := TelemetryFromReport(r)
	want := checker.GPUReading{
		Name: "NVIDIA L40S", UUID: "GPU-1", MemoryBytes: 1, MemoryUsedBytes: 2, UtilizationPct: 3,
		MemoryUtilizationPct: 4, PowerMw: 5, PowerLimitMw: 6, TemperatureC: 7, GraphicsClockMHz: 8,
		MaxGraphicsClockMHz: 9, MemoryClockMHz: 10, EncoderSessions: 11,
	}
	if len(got.Samples) != 1 || !got.Samples[0].At.Equal(time.UnixMilli(1_800_000_000_123)) ||
		len(got.Samples[0].GPUs) != 1 || got.Samples[0].GPUs[0] != want {
		t.Fatalf("converted %+v", got)
	}
}
