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
	// The process's profiler is free again.
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Fatalf("after the run: %v", err)
	}
	pprof.StopCPUProfile()
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
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Fatalf("after the run: %v", err)
	}
	pprof.StopCPUProfile()
}
