package checker

import (
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
)

// window reads n samples, 500 ms apart from at, from a simulated container of profile (its
// Hardware is what the record advertises) and fills in what a telemetry report adds to the
// probe's readings: the power limit, clocks and encoder sessions.
func window(t *testing.T, profile container.Profile, seed int64, at time.Time, n int) (*pb.ContainerRecord, Telemetry) {
	t.Helper()
	p := container.NewSimulatedProbe(profile, seed)
	hw, err := p.Hardware()
	if err != nil {
		t.Fatal(err)
	}
	rec := &pb.ContainerRecord{PeerId: []byte("container-1"), Seq: 3, Hardware: hw}
	limits := map[string]uint32{"H100": 700_000, "A100": 400_000, "L40S": 350_000, "RTX4090": 450_000, "RTX3080": 320_000, "T4": 70_000}
	tel := Telemetry{Requested: at.Add(-50 * time.Millisecond), Received: at.Add(time.Duration(n)*500*time.Millisecond + 20*time.Millisecond),
		State: pb.ContainerState_CONTAINER_STATE_BUSY, GPUWork: true}
	for i := range n {
		readings, err := p.Telemetry()
		if err != nil {
			t.Fatal(err)
		}
		s := TelemetrySample{At: at.Add(time.Duration(i) * 500 * time.Millisecond)}
		for j, g := range hw.GetGpus() {
			r := readings[j]
			s.GPUs = append(s.GPUs, GPUReading{
				Name: g.GetName(), UUID: g.GetUuid(), MemoryBytes: g.GetMemoryBytes(),
				MemoryUsedBytes: r.GetMemoryUsedBytes(), UtilizationPct: r.GetUtilizationPct(), MemoryUtilizationPct: r.GetMemoryUtilizationPct(),
				PowerMw: r.GetPowerMw(), PowerLimitMw: limits[g.GetModel()], TemperatureC: r.GetTemperatureC(),
				GraphicsClockMHz: 1200 + 6*r.GetUtilizationPct(), MaxGraphicsClockMHz: 1980, MemoryClockMHz: 2619,
			})
		}
		tel.Samples = append(tel.Samples, s)
	}
	return rec, tel
}

func profile(t *testing.T, name string) container.Profile {
	t.Helper()
	p, ok := container.ProfileByName(name)
	if !ok {
		t.Fatalf("no profile %q", name)
	}
	return p
}

// idle makes every reading a standby GPU's: low load, no encoder, power near idle.
func idle(tel *Telemetry) {
	tel.State, tel.GPUWork = pb.ContainerState_CONTAINER_STATE_STANDBY, false
	for i := range tel.Samples {
		for j := range tel.Samples[i].GPUs {
			g := &tel.Samples[i].GPUs[j]
			g.UtilizationPct, g.MemoryUtilizationPct = uint32(i%3), 0
			g.PowerMw = 72_000 + uint32(i*137+j*911)
			g.TemperatureC = 34 + uint32(i%2)
			g.GraphicsClockMHz = 345
		}
	}
}

// each changes every reading of every sample.
func each(f func(i int, g *GPUReading)) func(*Telemetry) {
	return func(tel *Telemetry) {
		for i := range tel.Samples {
			for j := range tel.Samples[i].GPUs {
				f(i, &tel.Samples[i].GPUs[j])
			}
		}
	}
}

func TestCheckTelemetry(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	twoH100 := profile(t, "h100")
	twoH100.Name = "2xh100"
	twoH100.GPUs = append(twoH100.GPUs, &pb.GPU{Model: "H100", Name: twoH100.GPUs[0].GetName(), MemoryBytes: twoH100.GPUs[0].GetMemoryBytes()})
	cases := []struct {
		name    string
		profile container.Profile
		change  func(*Telemetry)
		want    Check
	}{
		// Honest readings.
		{name: "H100 rendering", profile: profile(t, "h100")},
		{name: "RTX 4090 rendering", profile: profile(t, "rtx4090")},
		{name: "T4 rendering", profile: profile(t, "t4")},
		{name: "two H100s rendering", profile: twoH100},
		{name: "H100 in standby", profile: profile(t, "h100"), change: idle},
		{name: "CPU-only container", profile: profile(t, "cpu")},
		{name: "the checker's own scene session leaves the GPU idle", profile: profile(t, "h100"),
			change: func(tel *Telemetry) { idle(tel); tel.State = pb.ContainerState_CONTAINER_STATE_BUSY }},

		// Not the advertised GPUs.
		{name: "one GPU of two advertised", profile: twoH100, want: CheckTelemetryGPUs,
			change: func(tel *Telemetry) {
				for i := range tel.Samples {
					tel.Samples[i].GPUs = tel.Samples[i].GPUs[:1]
				}
			}},
		{name: "another board's UUID", profile: profile(t, "h100"), want: CheckTelemetryGPUs,
			change: each(func(_ int, g *GPUReading) { g.UUID = "GPU-00000000-0000-0000-0000-000000000000" })},
		{name: "an RTX 4090 advertised as an H100", profile: profile(t, "h100"), want: CheckTelemetryGPUs,
			change: each(func(_ int, g *GPUReading) { g.Name, g.MemoryBytes = "NVIDIA GeForce RTX 4090", 24564<<20 })},
		{name: "less memory than advertised", profile: profile(t, "a100"), want: CheckTelemetryGPUs,
			change: each(func(_ int, g *GPUReading) { g.MemoryBytes = 40960 << 20 })},
		{name: "a GPU read twice", profile: twoH100, want: CheckTelemetryGPUs,
			change: func(tel *Telemetry) {
				for i := range tel.Samples {
					tel.Samples[i].GPUs[1].UUID = tel.Samples[i].GPUs[0].UUID
				}
			}},

		// Readings no working GPU gives.
		{name: "draws more than its limit", profile: profile(t, "h100"), want: CheckTelemetryPhysics,
			change: each(func(i int, g *GPUReading) { g.PowerMw = 900_000 + uint32(i) })},
		{name: "an H100 drawing 3 W", profile: profile(t, "h100"), want: CheckTelemetryPhysics,
			change: each(func(i int, g *GPUReading) { g.PowerMw = 3000 + uint32(i) })},
		{name: "a 1500 W limit", profile: profile(t, "h100"), want: CheckTelemetryPhysics,
			change: each(func(_ int, g *GPUReading) { g.PowerLimitMw = 1_500_000 })},
		{name: "no power reading", profile: profile(t, "rtx4090"), want: CheckTelemetryPhysics,
			change: each(func(_ int, g *GPUReading) { g.PowerMw, g.PowerLimitMw = 0, 0 })},
		{name: "150 °C", profile: profile(t, "h100"), want: CheckTelemetryPhysics,
			change: each(func(_ int, g *GPUReading) { g.TemperatureC = 150 })},
		{name: "colder than any room", profile: profile(t, "h100"), want: CheckTelemetryPhysics,
			change: each(func(_ int, g *GPUReading) { g.TemperatureC = 2 })},
		{name: "more memory used than there is", profile: profile(t, "h100"), want: CheckTelemetryPhysics,
			change: each(func(_ int, g *GPUReading) { g.MemoryUsedBytes = g.MemoryBytes + 1 })},
		{name: "120% busy", profile: profile(t, "h100"), want: CheckTelemetryPhysics,
			change: each(func(_ int, g *GPUReading) { g.UtilizationPct = 120 })},
		{name: "a clock above its maximum", profile: profile(t, "h100"), want: CheckTelemetryPhysics,
			change: each(func(_ int, g *GPUReading) { g.GraphicsClockMHz = 2500 })},
		{name: "50 °C warmer in half a second", profile: profile(t, "h100"), want: CheckTelemetryPhysics,
			change: each(func(i int, g *GPUReading) { g.TemperatureC = 35 + 50*uint32(i%2) })},

		// A load that does not fit the state.
		{name: "standby but 95% busy (another workload)", profile: profile(t, "h100"), want: CheckTelemetryState,
			change: func(tel *Telemetry) {
				idle(tel)
				each(func(i int, g *GPUReading) { g.UtilizationPct, g.PowerMw = 95, 600_000+uint32(i*71) })(tel)
			}},
		{name: "standby with an encoder session", profile: profile(t, "l40s"), want: CheckTelemetryState,
			change: func(tel *Telemetry) {
				idle(tel)
				each(func(_ int, g *GPUReading) { g.PowerMw += 20_000; g.EncoderSessions = 1 })(tel)
			}},
		{name: "rendering an application on an idle GPU", profile: profile(t, "h100"), want: CheckTelemetryState,
			change: func(tel *Telemetry) { idle(tel); tel.State, tel.GPUWork = pb.ContainerState_CONTAINER_STATE_BUSY, true }},

		// Made up or replayed.
		{name: "the same reading five times", profile: profile(t, "h100"), want: CheckTelemetryReplay,
			change: func(tel *Telemetry) {
				for i := range tel.Samples {
					tel.Samples[i].GPUs = append([]GPUReading(nil), tel.Samples[0].GPUs...)
				}
			}},
		{name: "power stuck at a round number", profile: profile(t, "h100"), want: CheckTelemetryReplay,
			change: each(func(_ int, g *GPUReading) { g.PowerMw = 350_000 })},
		{name: "one GPU's readings copied to the other", profile: twoH100, want: CheckTelemetryReplay,
			change: func(tel *Telemetry) {
				for i := range tel.Samples {
					uuid := tel.Samples[i].GPUs[1].UUID
					tel.Samples[i].GPUs[1] = tel.Samples[i].GPUs[0]
					tel.Samples[i].GPUs[1].UUID = uuid
				}
			}},
		{name: "samples 10 ms apart", profile: profile(t, "h100"), want: CheckTelemetryReplay,
			change: func(tel *Telemetry) {
				for i := range tel.Samples {
					tel.Samples[i].At = at.Add(time.Duration(i) * 10 * time.Millisecond)
				}
			}},
		{name: "two samples", profile: profile(t, "h100"), want: CheckTelemetryReplay,
			change: func(tel *Telemetry) { tel.Samples = tel.Samples[:2] }},
		{name: "taken an hour before the checker asked", profile: profile(t, "h100"), want: CheckTelemetryReplay,
			change: func(tel *Telemetry) {
				for i := range tel.Samples {
					tel.Samples[i].At = tel.Samples[i].At.Add(-time.Hour)
				}
			}},
		{name: "dated after the report arrived", profile: profile(t, "h100"), want: CheckTelemetryReplay,
			change: func(tel *Telemetry) { tel.Received = tel.Samples[1].At }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, tel := window(t, tc.profile, 7, at, 5)
			if tc.change != nil {
				tc.change(&tel)
			}
			r := CheckTelemetry(rec, tel)
			m := r.Telemetry
			t.Logf("%v %s %s (%d GPUs, %d samples over %v, utilisation %.0f%%, %.0f-%.0f W, %d-%d °C)",
				r.Verdict, r.Check, r.Reason, m.GPUs, m.Samples, m.Window, m.UtilizationMean, m.PowerMinW, m.PowerMaxW, m.TemperatureMinC, m.TemperatureMaxC)
			if tc.want == CheckNone {
				if r.Verdict != Pass {
					t.Fatalf("honest readings failed: %s: %s", r.Check, r.Reason)
				}
				return
			}
			if r.Verdict != Fail || r.Check != tc.want {
				t.Fatalf("verdict %v on %q (%s), want fail on %q", r.Verdict, r.Check, r.Reason, tc.want)
			}
		})
	}
}

// Every simulated profile's readings pass, whatever the seed: the simulator and the checker agree
// on what a working GPU reports.
func TestCheckTelemetryAcceptsSimulatedProfiles(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	for _, p := range container.Profiles() {
		for seed := range int64(20) {
			rec, tel := window(t, p, seed, at, 6)
			tel.GPUWork = false // a random walk may idle through the window
			if r := CheckTelemetry(rec, tel); r.Verdict != Pass {
				t.Errorf("%s seed %d: %s: %s", p.Name, seed, r.Check, r.Reason)
			}
		}
	}
}

// The evidence hash is a function of the readings and the verdict: the same window hashes the
// same, any changed reading differently.
func TestTelemetryEvidence(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	rec, tel := window(t, profile(t, "h100"), 7, at, 5)
	a, b := CheckTelemetry(rec, tel), CheckTelemetry(rec, tel)
	if a.EvidenceHash != b.EvidenceHash || a.EvidenceHash == [32]byte{} {
		t.Fatal("the same window hashed differently (or not at all)")
	}
	tel.Samples[3].GPUs[0].PowerMw++
	if c := CheckTelemetry(rec, tel); c.EvidenceHash == a.EvidenceHash {
		t.Error("a changed reading kept the evidence hash")
	}
}
