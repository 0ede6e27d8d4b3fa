package checker

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Standing is what the checks so far mean for a container.
type Standing string

// Standings.
const (
	// StandingUnchecked: no attestation about the container yet.
	StandingUnchecked Standing = "unchecked"
	// StandingStandby: its last check passed; it may be scheduled.
	StandingStandby Standing = "standby"
	// StandingNeedsRecheck: its last check failed; it is not scheduled until a check passes.
	StandingNeedsRecheck Standing = "needs_recheck"
	// StandingExcluded: it failed too often (ConsequenceRule); it is not scheduled again, and the
	// failing attestations are the slashing evidence. Only a new registration (out of this rule)
	// brings it back.
	StandingExcluded Standing = "excluded"
)

// ConsequenceRule says when failures exclude a container. Every check counts alike, whatever its
// kind or method; the last verdict sets standby or needs_recheck; exclusion is final.
//
// A container is excluded as soon as, after a check,
//   - its last Consecutive checks all failed, or
//   - at least Failures of its last Window checks failed,
//
// and those failures were signed by at least MinCheckers distinct checkers, so that one checker
// alone cannot exclude a container.
type ConsequenceRule struct {
	Consecutive int // N (default 3)
	Failures    int // K (default 3)
	Window      int // M (default 5)
	MinCheckers int // default 2
}

// DefaultConsequenceRule: 3 failures in a row, or 3 of the last 5, from at least 2 checkers.
var DefaultConsequenceRule = ConsequenceRule{Consecutive: 3, Failures: 3, Window: 5, MinCheckers: 2}

func (r ConsequenceRule) withDefaults() ConsequenceRule {
	d := DefaultConsequenceRule
	if r.Consecutive <= 0 {
		r.Consecutive = d.Consecutive
	}
	if r.Window <= 0 {
		r.Window = d.Window
	}
	if r.Failures <= 0 {
		r.Failures = min(d.Failures, r.Window)
	}
	if r.MinCheckers <= 0 {
		r.MinCheckers = d.MinCheckers
	}
	return r
}

// Validate checks the rule (zero fields take the defaults).
func (r ConsequenceRule) Validate() error {
	r = r.withDefaults()
	if r.Failures > r.Window {
		return fmt.Errorf("checker: consequence rule: %d failures of the last %d can never happen", r.Failures, r.Window)
	}
	return nil
}

// Decision is a container's standing after its checks. Evidence, set when it is excluded, holds
// the leaves (AttestationLeaf) of the failing attestations that excluded it, in the order they were
// issued: what a slashing claim proves with MerkleProofs.
type Decision struct {
	Standing Standing
	Evidence [][32]byte
	// Trigger says which part of the rule excluded it: "consecutive" or "window".
	Trigger string
}

// ConsequenceMachine folds a container's checks, in the order they were issued, into its
// standing. The zero value is ready, with DefaultConsequenceRule.
type ConsequenceMachine struct {
	Rule   ConsequenceRule
	recent []LedgerEntry // the last max(Consecutive, Window) checks
	dec    Decision
}

// Decision is the standing so far.
func (m *ConsequenceMachine) Decision() Decision {
	if m.dec.Standing == "" {
		return Decision{Standing: StandingUnchecked}
	}
	return m.dec
}

// Step counts one more check (the next in issue order) and returns the standing after it.
func (m *ConsequenceMachine) Step(e LedgerEntry) Decision {
	if m.dec.Standing == StandingExcluded {
		return m.dec // final
	}
	rule := m.Rule.withDefaults()
	keep := max(rule.Consecutive, rule.Window)
	m.recent = append(m.recent, e)
	if len(m.recent) > keep {
		m.recent = slices.Delete(m.recent, 0, len(m.recent)-keep)
	}
	m.dec = Decision{Standing: StandingStandby}
	if e.Verdict != pb.Verdict_VERDICT_PASS {
		m.dec.Standing = StandingNeedsRecheck
	}
	if fails := csqTail(m.recent, rule.Consecutive); len(fails) == rule.Consecutive && csqAllFailed(fails) && csqCheckers(fails) >= rule.MinCheckers {
		m.dec = Decision{Standing: StandingExcluded, Evidence: csqLeaves(fails), Trigger: "consecutive"}
		return m.dec
	}
	var fails []LedgerEntry
	for _, x := range csqTail(m.recent, rule.Window) {
		if x.Verdict != pb.Verdict_VERDICT_PASS {
			fails = append(fails, x)
		}
	}
	if len(fails) >= rule.Failures && csqCheckers(fails) >= rule.MinCheckers {
		m.dec = Decision{Standing: StandingExcluded, Evidence: csqLeaves(fails), Trigger: "window"}
	}
	return m.dec
}

// Consequence is the standing a container's checks lead to: history (any order; it is sorted by
// issue time, then leaf) folded through a ConsequenceMachine with rule.
func Consequence(history []LedgerEntry, rule ConsequenceRule) Decision {
	h := slices.Clone(history)
	slices.SortFunc(h, compareLedgerEntries)
	m := ConsequenceMachine{Rule: rule}
	for _, e := range h {
		m.Step(e)
	}
	return m.Decision()
}

// compareLedgerEntries is the canonical order of checks: by issue time, then leaf.
func compareLedgerEntries(a, b LedgerEntry) int {
	if c := cmp.Compare(a.IssuedUnixMs, b.IssuedUnixMs); c != 0 {
		return c
	}
	return bytes.Compare(a.Leaf[:], b.Leaf[:])
}

func csqTail(es []LedgerEntry, n int) []LedgerEntry { return es[max(0, len(es)-n):] }

func csqAllFailed(es []LedgerEntry) bool {
	for _, e := range es {
		if e.Verdict == pb.Verdict_VERDICT_PASS {
			return false
		}
	}
	return true
}

func csqCheckers(es []LedgerEntry) int {
	seen := map[string]bool{}
	for _, e := range es {
		seen[e.Checker] = true
	}
	return len(seen)
}

func csqLeaves(es []LedgerEntry) [][32]byte {
	out := make([][32]byte, len(es))
	for i, e := range es {
		out[i] = e.Leaf
	}
	return out
}
