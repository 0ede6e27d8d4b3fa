package checker_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/checker"
)

// csqHistory turns "a+ b- c-" (checker a passed, b failed, c failed, one second apart) into
// ledger entries of one container; each entry's leaf is its position, so evidence reads as indexes.
func csqHistory(spec string) []checker.LedgerEntry {
	var out []checker.LedgerEntry
	for i, f := range strings.Fields(spec) {
		v := pb.Verdict_VERDICT_PASS
		if f[1] == '-' {
			v = pb.Verdict_VERDICT_FAIL
		}
		out = append(out, checker.LedgerEntry{
			Leaf: [32]byte{byte(i + 1)}, Checker: "checker-" + f[:1], Container: "container",
			Kind: pb.CheckKind_CHECK_KIND_RANDOM, Verdict: v, IssuedUnixMs: int64(1000 * (i + 1)),
		})
	}
	return out
}

// csqIndexes maps evidence leaves back to their positions in the history (1-based).
func csqIndexes(ev [][32]byte) []int {
	var out []int
	for _, l := range ev {
		out = append(out, int(l[0]))
	}
	return out
}

func TestConsequence(t *testing.T) {
	pairs := checker.ConsequenceRule{Consecutive: 2, Failures: 3, Window: 4, MinCheckers: 1}
	windowOnly := checker.ConsequenceRule{Consecutive: 4, Failures: 3, Window: 4, MinCheckers: 1}
	tests := []struct {
		name     string
		rule     checker.ConsequenceRule
		history  string
		standing checker.Standing
		trigger  string
		evidence []int
	}{
		{"nothing yet", checker.ConsequenceRule{}, "", checker.StandingUnchecked, "", nil},
		{"a pass", checker.ConsequenceRule{}, "a+", checker.StandingStandby, "", nil},
		{"a failure", checker.ConsequenceRule{}, "a-", checker.StandingNeedsRecheck, "", nil},
		{"a failure, then a pass", checker.ConsequenceRule{}, "a- b+", checker.StandingStandby, "", nil},
		{"a pass, then a failure", checker.ConsequenceRule{}, "a+ b-", checker.StandingNeedsRecheck, "", nil},
		{"two failures in a row", checker.ConsequenceRule{}, "a- b-", checker.StandingNeedsRecheck, "", nil},
		{"three failures in a row", checker.ConsequenceRule{}, "a+ a- b- a-", checker.StandingExcluded, "consecutive", []int{2, 3, 4}},
		{"three failures in a row from one checker", checker.ConsequenceRule{}, "a- a- a-", checker.StandingNeedsRecheck, "", nil},
		{"five failures from one checker", checker.ConsequenceRule{}, "a- a- a- a- a-", checker.StandingNeedsRecheck, "", nil},
		{"one checker, then a second", checker.ConsequenceRule{}, "a- a- a- b-", checker.StandingExcluded, "consecutive", []int{2, 3, 4}},
		{"three of the last five", checker.ConsequenceRule{}, "a- b+ c- d+ e-", checker.StandingExcluded, "window", []int{1, 3, 5}},
		{"three of six, two of the last five", checker.ConsequenceRule{}, "a- b+ c- d+ e+ f-", checker.StandingNeedsRecheck, "", nil},
		{"three of six, passing at the end", checker.ConsequenceRule{}, "a+ b- c+ d- e+ f+", checker.StandingStandby, "", nil},
		{"failures spread out", checker.ConsequenceRule{}, "a- b+ b+ b+ c- b+ b+ b+ d- b+", checker.StandingStandby, "", nil},
		{"exclusion is final", checker.ConsequenceRule{}, "a- b- c- a+ b+ c+ d+ e+", checker.StandingExcluded, "consecutive", []int{1, 2, 3}},
		{"two in a row, one checker enough", pairs, "a+ a- a-", checker.StandingExcluded, "consecutive", []int{2, 3}},
		{"never two in a row", pairs, "a- a+ a- a+ a-", checker.StandingNeedsRecheck, "", nil},
		{"three of the last four", windowOnly, "a- a- a+ a-", checker.StandingExcluded, "window", []int{1, 2, 4}},
		{"three of five, two of the last four", windowOnly, "a- a+ a- a+ a-", checker.StandingNeedsRecheck, "", nil},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := csqHistory(tt.history)
			d := checker.Consequence(h, tt.rule)
			if d.Standing != tt.standing || d.Trigger != tt.trigger || !slices.Equal(csqIndexes(d.Evidence), tt.evidence) {
				t.Fatalf("Consequence = %s (%s) evidence %v; want %s (%s) %v",
					d.Standing, d.Trigger, csqIndexes(d.Evidence), tt.standing, tt.trigger, tt.evidence)
			}
			// The same checks delivered in any order: the same decision.
			r := rand.New(rand.NewPCG(uint64(len(h)), 9))
			for range 5 {
				shuffled := slices.Clone(h)
				r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				if got := checker.Consequence(shuffled, tt.rule); got.Standing != d.Standing || !slices.Equal(got.Evidence, d.Evidence) {
					t.Fatalf("shuffled: %s %v", got.Standing, csqIndexes(got.Evidence))
				}
			}
		})
	}
}

// The machine step by step: the standing after each check.
func TestConsequenceMachineSteps(t *testing.T) {
	var m checker.ConsequenceMachine
	if d := m.Decision(); d.Standing != checker.StandingUnchecked {
		t.Fatalf("zero machine: %s", d.Standing)
	}
	want := []checker.Standing{
		checker.StandingStandby,      // a+
		checker.StandingNeedsRecheck, // a-
		checker.StandingStandby,      // b+
		checker.StandingStandby,      // b+
		checker.StandingStandby,      // b+
		checker.StandingNeedsRecheck, // a-
		checker.StandingNeedsRecheck, // c-: two of the last five, two in a row
		checker.StandingExcluded,     // d-: three in a row, from three checkers
		checker.StandingExcluded,     // e+: final
	}
	for i, e := range csqHistory("a+ a- b+ b+ b+ a- c- d- e+") {
		if d := m.Step(e); d.Standing != want[i] {
			t.Fatalf("after check %d: %s, want %s", i+1, d.Standing, want[i])
		}
	}
	if d := m.Decision(); d.Trigger != "consecutive" || !slices.Equal(csqIndexes(d.Evidence), []int{6, 7, 8}) {
		t.Errorf("trigger %q, evidence %v", d.Trigger, csqIndexes(d.Evidence))
	}
}

func TestConsequenceRuleValidate(t *testing.T) {
	if err := (checker.ConsequenceRule{Failures: 6, Window: 5}).Validate(); err == nil {
		t.Error("6 failures of 5 accepted")
	}
	if err := (checker.ConsequenceRule{}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if err := checker.DefaultConsequenceRule.Validate(); err != nil {
		t.Errorf("DefaultConsequenceRule: %v", err)
	}
}
