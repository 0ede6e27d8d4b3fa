package simnet

import (
	"bytes"
	"compress/gzip"
	"io"
	"runtime/pprof"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// profileFields reads what the tests need of a pprof profile (gzipped profile.proto): its
// duration_nanos (field 10) and string table (field 6).
func profileFields(t *testing.T, b []byte) (duration time.Duration, strs []string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("profile: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("profile: %v", err)
	}
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			t.Fatalf("profile: %v", protowire.ParseError(n))
		}
		raw = raw[n:]
		switch {
		case num == 10 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(raw)
			if m < 0 {
				t.Fatalf("profile: %v", protowire.ParseError(m))
			}
			duration, n = time.Duration(v), m
		case num == 6 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(raw)
			if m < 0 {
				t.Fatalf("profile: %v", protowire.ParseError(m))
			}
			strs, n = append(strs, string(v)), m
		default:
			n = protowire.ConsumeFieldValue(num, typ, raw)
			if n < 0 {
				t.Fatalf("profile: %v", protowire.ParseError(n))
			}
		}
		raw = raw[n:]
	}
	return duration, strs
}

// TestMeasuredSpanCPUProfile: Config.CPUProfile covers the measured span, not the whole run: the
// profile is a CPU profile, and it lasted less wall time than the run, whose peers' start-up and
// shut-down it leaves out.
func TestMeasuredSpanCPUProfile(t *testing.T) {
	needSim(t, true)
	sc := smallScenario(t, "steady")
	sc.Warmup, sc.Settle, sc.Duration = Duration(10*time.Second), Duration(10*time.Second), Duration(20*time.Second)
	var prof bytes.Buffer
	res, err := RunT(t, Config{Scenario: sc, Peers: 6, Seed: 1, Logger: testLogger(), CPUProfile: &prof})
	if err != nil {
		t.Fatal(err)
	}
	d, strs := profileFields(t, prof.Bytes())
	if !slices.Contains(strs, "cpu") {
		t.Errorf("not a CPU profile: sample types among %q", strs[:min(len(strs), 8)])
	}
	wall := time.Duration(res.Summary.WallSeconds * float64(time.Second))
	if d <= 0 || d >= wall {
		t.Errorf("profile lasted %v of the run's %v: want some of it, not all", d, wall)
	}
	// The summary's costs cover the same span, and add up.
	sum := res.Summary
	if sum.MeasuredWallSeconds <= 0 || sum.WarmupWallSeconds <= 0 || sum.MeasuredCPUSeconds <= 0 {
		t.Errorf("costs: %v s before the span, %v s wall and %v s CPU in it", sum.WarmupWallSeconds,
			sum.MeasuredWallSeconds, sum.MeasuredCPUSeconds)
	}
	if sum.WarmupWallSeconds+sum.MeasuredWallSeconds > sum.WallSeconds+0.2 {
		t.Errorf("%v s before the span and %v s in it, of a %v s run", sum.WarmupWallSeconds, sum.MeasuredWallSeconds, sum.WallSeconds)
	}
	span := res.CPUProfileSpan[1] - res.CPUProfileSpan[0]
	perPeer := sum.MeasuredCPUSeconds * 1000 / 6 / span.Seconds()
	if diff := sum.CPUMsPerPeerSecond - perPeer; diff > perPeer/10 || diff < -perPeer/10 {
		t.Errorf("cpu_ms_per_peer_second %v, but %v s of CPU over 6 peers and %v is %v", sum.CPUMsPerPeerSecond,
			sum.MeasuredCPUSeconds, span, perPeer)
	}
	// The process's profiler is free again.
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Fatalf("after the run: %v", err)
	}
	pprof.StopCPUProfile()
}

// TestSummaryCosts: the phases' costs from the process's clocks, and a span that never began.
func TestSummaryCosts(t *testing.T) {
	at := func(wall, cpu time.Duration) processTime { return processTime{wall: wall, cpu: cpu} }
	var s Summary
	s.costs(at(100*time.Second, 5*time.Second), at(110*time.Second, 20*time.Second), at(140*time.Second, 80*time.Second),
		10, time.Minute)
	if s.WarmupWallSeconds != 10 || s.MeasuredWallSeconds != 30 || s.MeasuredCPUSeconds != 60 || s.CPUMsPerPeerSecond != 100 {
		t.Errorf("costs %+v: want 10 s before, 30 s wall and 60 s CPU in the span, 100 ms per peer-second", s)
	}
	var early Summary
	early.costs(at(100*time.Second, 5*time.Second), processTime{}, at(103*time.Second, 9*time.Second), 10, 0)
	if early.WarmupWallSeconds != 3 || early.MeasuredWallSeconds != 0 || early.MeasuredCPUSeconds != 0 || early.CPUMsPerPeerSecond != 0 {
		t.Errorf("a span that never began: %+v", early)
	}
	if p := readProcessTime(); p.wall <= 0 || p.cpu <= 0 {
		t.Errorf("the process's clocks: %+v", p)
	}
}

// TestCPUProfileOfARunStoppedEarly: a run stopped before its measured span began writes no
// profile, and leaves the process's profiler free.
func TestCPUProfileOfARunStoppedEarly(t *testing.T) {
	needSim(t, true)
	sc := smallScenario(t, "steady")
	prog := new(Progress)
	prog.Stop.Store(true)
	var prof bytes.Buffer
	res, err := RunT(t, Config{Scenario: sc, Peers: 6, Seed: 1, Logger: testLogger(), Progress: prog, CPUProfile: &prof})
	if err != nil {
		t.Fatal(err)
	}
	if prof.Len() != 0 || res.CPUProfileSpan != [2]time.Duration{} {
		t.Errorf("%d bytes of profile, span %v, from a run that stopped in its warm-up", prof.Len(), res.CPUProfileSpan)
	}
	if s := res.Summary; s.MeasuredWallSeconds != 0 || s.MeasuredCPUSeconds != 0 || s.CPUMsPerPeerSecond != 0 {
		t.Errorf("costs of a span that never began: %v s wall, %v s CPU, %v ms per peer-second", s.MeasuredWallSeconds,
			s.MeasuredCPUSeconds, s.CPUMsPerPeerSecond)
	}
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Fatalf("after the run: %v", err)
	}
	pprof.StopCPUProfile()
}
