package simnet

import (
	"encoding/json"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"
)

func smallScenario(t *testing.T, name string) Scenario {
	t.Helper()
	sc, err := LoadScenario(name)
	if err != nil {
		t.Fatal(err)
	}
	sc.Warmup = Duration(30 * time.Second)
	sc.Settle = Duration(20 * time.Second)
	sc.Duration = Duration(2 * time.Minute)
	sc.Queries.Rate = 0.5
	return sc
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func TestSteadySmall(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	sc := smallScenario(t, "steady")
	res, err := RunT(t, Config{Scenario: sc, Peers: envInt("SIMNET_PEERS", 16), Seed: 1, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res.Summary, "", "  ")
	t.Logf("%s", b)
	s := res.Summary
	if s.StartFailures != 0 {
		t.Errorf("%d peers failed to start", s.StartFailures)
	}
	if s.Queries == 0 || s.QuerySuccessRatio != 1 {
		t.Errorf("queries %d, success %v: want all to succeed", s.Queries, s.QuerySuccessRatio)
	}
	if s.GossipExpected == 0 || s.GossipDeliveryRatio != 1 {
		t.Errorf("gossip delivered %d of %d: want all", s.GossipDelivered, s.GossipExpected)
	}
}
