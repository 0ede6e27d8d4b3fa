package simnet

import (
	"math"
	"testing"
	"time"
)

// checkersScenario is the checkers scenario cut down to a test: 1-minute epochs, 20 s of
// warm-up, two epochs measured, a cheater of each kind.
func checkersScenario(t *testing.T) Scenario {
	t.Helper()
	sc := smallScenario(t, "checkers")
	sc.Warmup, sc.Settle, sc.Duration = Duration(20*time.Second), Duration(10*time.Second), Duration(2*time.Minute)
	sc.Epochs.Length = Duration(time.Minute)
	sc.Epochs.CommitteeSize = 4
	sc.HeartbeatEvery = Duration(10 * time.Second)
	sc.Queries.Rate = 0.05
	sc.Checkers.Share = 0.125
	sc.Checkers.Cheaters = 0.15
	sc.Checkers.Recheck = Duration(10 * time.Second)
	return sc
}

// checkerPeers is the size of the checker test: under the race detector, a smaller network with a
// larger share of cheaters, so that it still has one of each kind.
func checkerPeers(sc *Scenario) int {
	if raceEnabled {
		sc.Checkers.Cheaters = 0.5
		sc.Duration = Duration(90 * time.Second) // epoch 0's root only
		return envInt("SIMNET_PEERS", 12)
	}
	return envInt("SIMNET_PEERS", 40)
}

// TestCheckersSmall: every cheater is caught within an epoch of the first checks, no honest
// container is failed, attestations reach every node within a second, and every node's ledger
// has the same root for each epoch that is over. It runs under the race detector too, smaller.
func TestCheckersSmall(t *testing.T) {
	needSim(t, true)
	sc := checkersScenario(t)
	s := simulate(t, sc, checkerPeers(&sc), 13)
	if s.Checkers == 0 || s.Cheaters < 3 || s.Attestations == 0 {
		t.Fatalf("checkers %d, cheaters %d, attestations %d: want checkers at work and a cheater of each kind", s.Checkers, s.Cheaters, s.Attestations)
	}
	if s.CheatersCaught != s.Cheaters {
		t.Errorf("caught %d of %d cheaters within %v s (missed: peers %v)", s.CheatersCaught, s.Cheaters, s.CaughtWithinS, s.CheatersMissed)
	}
	if s.FalsePositives != 0 {
		t.Errorf("%d honest containers failed a check (checks that failed: %v)", s.FalsePositives, s.FalsePositiveChecks)
	}
	if s.AttestationDeliveryRatio < 0.99 {
		t.Errorf("attestations delivered within 1 s: %v, want at least 0.99", s.AttestationDeliveryRatio)
	}
	if s.AttestationRootsAgree == nil || !*s.AttestationRootsAgree || s.AttestationRootEpochs == 0 {
		t.Errorf("roots agree %v over %d epochs: want every node to hold the same root for each ended epoch", s.AttestationRootsAgree, s.AttestationRootEpochs)
	}
}

// A false positive's failing check is its reason's first word, as roles/checker writes it.
func TestFailedCheck(t *testing.T) {
	for reason, want := range map[string]string{
		"unanswered: 3 checks in a row refused as busy or unreachable": "unanswered",
		"gpu_model: claims H100, reads A10":                            "gpu_model",
		"stale":                                                        "stale",
		"":                                                             "failed",
		": odd":                                                        "failed",
	} {
		if got := failedCheck(reason); got != want {
			t.Errorf("failedCheck(%q) = %q, want %q", reason, got, want)
		}
	}
}

// TestCheckersSameSeed: the checker fields of the summary are a function of the seed and the
// scenario, like the rest (latencies within a tolerance, as in TestSameSeedSameSummary).
func TestCheckersSameSeed(t *testing.T) {
	needSim(t, false)
	sc := checkersScenario(t)
	sc.Duration = Duration(90 * time.Second)
	sc.Checkers.Cheaters = 0.3
	a := simulate(t, sc, 20, 17)
	b := simulate(t, sc, 20, 17)
	// Counts that follow from the plan, and outcomes, are equal. How many attestations were issued
	// is not: check times follow heartbeats and DHT lookups, whose timing varies a little from
	// run to run (kad-dht and quic-go draw from unseeded sources), and a recheck more or less can
	// fit before the end.
	type exact struct {
		Checkers, Cheaters, Caught, FalsePositives, RootEpochs int
		Delivery                                               float64
		RootsAgree                                             bool
		Trace                                                  string
	}
	pick := func(s Summary) exact {
		return exact{s.Checkers, s.Cheaters, s.CheatersCaught, s.FalsePositives, s.AttestationRootEpochs,
			s.AttestationDeliveryRatio, s.AttestationRootsAgree != nil && *s.AttestationRootsAgree, s.TraceSHA256}
	}
	if pick(a) != pick(b) {
		t.Errorf("same seed, different checker outcomes:\n%+v\n%+v", pick(a), pick(b))
	}
	if a.Cheaters == 0 || a.Attestations == 0 {
		t.Errorf("cheaters %d, attestations %d: want checks", a.Cheaters, a.Attestations)
	}
	// Each checker's schedule can shift by a recheck at either end of the measured span: at most
	// two attestations per checker apart (29 and 26 with 3 checkers were seen in CI, 10.3%).
	if d := a.Attestations - b.Attestations; d > 2*a.Checkers || -d > 2*a.Checkers {
		t.Errorf("attestations: %d and %d differ by more than two per checker (%d checkers)", a.Attestations, b.Attestations, a.Checkers)
	} else if d != 0 {
		t.Logf("attestations: %d and %d are not identical", a.Attestations, b.Attestations)
	}
	// The delays are taken over some 30 attestations, so an attestation more or less moves the
	// median by a rank: CI saw 112.5 and 100.9 ms (10.3%) with 29 and 28 attestations. The 99th
	// percentile of 30 is the slowest one, a single sample: 136.3 and 239.2 ms were seen for the
	// same seed (43%), so it is only logged.
	if x, y := a.AttestationMsP50, b.AttestationMsP50; math.Abs(x-y) > 0.25*math.Max(x, y) {
		t.Errorf("attestation_ms_p50: %v and %v differ by more than 25%%", x, y)
	} else if x != y {
		t.Logf("attestation_ms_p50: %v and %v are not identical", x, y)
	}
	if x, y := a.AttestationMsP99, b.AttestationMsP99; x != y {
		t.Logf("attestation_ms_p99: %v and %v are not identical", x, y)
	}
}

// TestFloodAttestationsSmall: attackers gossip attestations that fail honest containers in their
// own name (no licence), date them in another epoch, replay honest ones and break their
// signatures, while checkers work. Honest validators reject them, the attackers' scores fall, no
// honest container reads as failed, every cheater is still caught and honest attestations still
// reach every node within a second.
func TestFloodAttestationsSmall(t *testing.T) {
	needSim(t, false)
	sc := checkersScenario(t)
	sc.Flood.Share, sc.Flood.Rate, sc.Flood.Kinds = 0.1, 4, []string{"attestation"}
	sc.Flood.Start = Duration(20 * time.Second)
	s := simulate(t, sc, 30, 19)
	if s.Attackers == 0 || s.FloodSent == 0 || s.FloodRejected == 0 {
		t.Fatalf("attackers %d sent %d, rejected %d: want a flood of attestations that is rejected", s.Attackers, s.FloodSent, s.FloodRejected)
	}
	if s.FalsePositives != 0 {
		t.Errorf("%d honest containers read as failed under a flood of forged failures", s.FalsePositives)
	}
	if s.CheatersCaught != s.Cheaters || s.Cheaters == 0 {
		t.Errorf("caught %d of %d cheaters under the flood", s.CheatersCaught, s.Cheaters)
	}
	if s.AttestationDeliveryRatio < 0.99 {
		t.Errorf("honest attestations delivered within 1 s: %v under the flood, want at least 0.99", s.AttestationDeliveryRatio)
	}
	if s.AttackerScoreMean >= 0 || s.HonestScoreMean < 0 {
		t.Errorf("attackers scored %v, honest peers %v: want attackers negative, honest not", s.AttackerScoreMean, s.HonestScoreMean)
	}
	t.Logf("%d attestations sent by %d attackers, %d rejections; attackers scored %.1f; %d honest attestations, delivery %v",
		s.FloodSent, s.Attackers, s.FloodRejected, s.AttackerScoreMean, s.Attestations, s.AttestationDeliveryRatio)
}
