package simnet

import (
	"slices"
	"strings"
	"time"

	"github.com/rendermesh/rendermesh/node"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// Checkers in a simulation (scenario [checkers]): node's own checker role on the peers the plan
// licenses, node's cheats on the containers it deals them to. Every node's OnAttestation hook
// reports what it accepts; the summary is computed from those reports and, at the end, from the
// ledgers of the nodes still online.

// attestDeadline: an attestation counts as delivered to a node that accepts it this soon after
// its checker signed it.
const attestDeadline = time.Second

// attestation is what the simulation saw of one attestation (one leaf).
type attestation struct {
	epoch     uint64
	issued    time.Duration // since the run began, from the attestation's issued_unix_ms
	checker   int           // peer index; -1 if unknown
	container int           // peer index; -1 if unknown
	fail      bool
	reason    string // a failing attestation's reason ("check: detail")
	within    int    // acceptances within attestDeadline by the nodes expected to accept it
}

// checkerStats is what the hooks and the end of the run collected.
type checkerStats struct {
	ids    map[string]int // raw peer ID to peer index
	atts   map[[32]byte]*attestation
	delays []time.Duration // issue to acceptance, by the nodes expected to accept (expectsAttestation)
	// roots: epochs compared, and whether every node compared held the same root for each.
	rootEpochs int
	rootsAgree bool
}

// index is the peer index of a raw peer ID, -1 if it is no peer of the plan. ids is written once
// before any node starts.
func (c *checkerStats) index(id []byte) int {
	if i, ok := c.ids[string(id)]; ok {
		return i
	}
	return -1
}

// checkerConfig is the checker role's configuration in a simulation: telemetry checks only.
func (s *sim) checkerConfig() node.CheckerConfig {
	c := node.DefaultChecker()
	c.Methods = []string{node.MethodTelemetry}
	c.PerContainer = s.sc.Checkers.PerContainer
	c.RandomEvery = s.sc.Checkers.RandomEvery
	c.Recheck = s.sc.Checkers.Recheck
	return c
}

// checking reports whether the scenario has checkers.
func (s *sim) checking() bool { return s.sc.Checkers.Share > 0 }

// expectsAttestation reports whether peer q should accept an attestation issued at iss by peer
// from within the deadline: settled then, online until the deadline, not the checker itself, and
// on the checker's side of any cut in force meanwhile.
func (s *sim) expectsAttestation(q *peerSpec, from int, iss time.Duration) bool {
	pl := s.plan
	if q.role == roleAttacker || q.index == from || !q.settled(iss, time.Duration(s.sc.Settle), attestDeadline) || s.failed[q.index] {
		return false
	}
	if from >= 0 && pl.cutAt > 0 && iss < pl.healAt && iss+attestDeadline > pl.cutAt && q.side != pl.peers[from].side {
		return false
	}
	return true
}

// attested is node i's OnAttestation hook.
func (s *sim) attested(i int, a *pb.Attestation, leaf [32]byte, at time.Time) {
	iss := time.UnixMilli(a.IssuedUnixMs).Sub(s.t0)
	delay := at.Sub(time.UnixMilli(a.IssuedUnixMs))
	from := s.chk.index(a.Checker)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.chk.atts[leaf]
	if rec == nil {
		rec = &attestation{epoch: a.Epoch, issued: iss, checker: from, container: s.chk.index(a.Container),
			fail: a.Verdict == pb.Verdict_VERDICT_FAIL, reason: a.Reason}
		s.chk.atts[leaf] = rec
		if rec.fail && rec.container >= 0 && s.plan.peers[rec.container].cheat == node.CheatNone {
			// A false positive: why, for the summary's false_positive_checks and for whoever reads
			// the log (at the first node that accepts it; the others count it silently).
			s.log.Warn("honest container failed a check", "container", rec.container, "checker", from,
				"kind", a.Kind, "epoch", a.Epoch, "issued", iss, "reason", a.Reason)
		}
	}
	if i == from {
		return
	}
	if !s.expectsAttestation(s.plan.peers[i], from, iss) {
		return // a peer still joining: gossip does not replay what it missed
	}
	s.chk.delays = append(s.chk.delays, delay)
	if delay <= attestDeadline {
		rec.within++
	}
}

// compareRoots compares the attestation ledgers' Merkle roots of the nodes online at the end
// (nodes: by peer index, nil when offline), for each epoch that ended at least a grace before the
// end and that every checker still keeps (checkers forget epochs older than eight). A node counts
// for an epoch if it was settled when the epoch began and when its first attestation was issued:
// checkers start checking before genesis (epoch 0's seed is known from the start, and attestations
// issued then belong to epoch 0), and gossip does not replay what a node joined too late for.
func (s *sim) compareRoots(nodes []*node.Node) {
	sched := epoch.Schedule{Genesis: s.genesis(), Length: time.Duration(s.sc.Epochs.Length)}
	grace := epoch.DefaultGrace(sched.Length) // the validator's and the tracker's (the simnet configures none)
	end := s.t0.Add(s.plan.end)
	cur := sched.Epoch(end)
	from := map[uint64]time.Duration{} // per epoch, the earliest issue time seen
	s.mu.Lock()
	for _, a := range s.chk.atts {
		if t, ok := from[a.epoch]; !ok || a.issued < t {
			from[a.epoch] = a.issued
		}
	}
	s.mu.Unlock()
	s.chk.rootsAgree = true
	for e := uint64(0); !sched.Start(e + 1).Add(grace).After(end); e++ {
		if e+8 < cur {
			continue
		}
		s.chk.rootEpochs++
		since := sched.Start(e).Sub(s.t0)
		if t, ok := from[e]; ok {
			since = min(since, t)
		}
		var first [32]byte
		seen, firstI := false, 0
		for i, n := range nodes {
			p := s.plan.peers[i]
			if n == nil || n.Checks() == nil || p.join+time.Duration(s.sc.Settle) > since {
				continue
			}
			r := n.Checks().Ledger.Root(e)
			switch {
			case !seen:
				first, seen, firstI = r, true, i
			case r != first:
				s.chk.rootsAgree = false
				s.log.Warn("attestation roots differ", "epoch", e, "peer", i, "leaves", len(n.Checks().Ledger.Leaves(e)),
					"first_peer", firstI, "first_leaves", len(nodes[firstI].Checks().Ledger.Leaves(e)))
			}
		}
	}
}

// checkerSummary fills the summary's checker fields.
func (s *sim) checkerSummary(sum *Summary) {
	if !s.checking() {
		return
	}
	pl := s.plan
	caughtBy := time.Duration(s.sc.Warmup) + s.sc.Checkers.caughtWithin(&s.sc)
	for _, p := range pl.peers {
		if p.checker {
			sum.Checkers++
		}
		if p.cheat != node.CheatNone {
			sum.Cheaters++
		}
	}
	caught := map[int]bool{}
	falsePos := map[int]bool{}
	expected, within := 0, 0
	for _, a := range s.chk.atts {
		if a.fail && a.container >= 0 {
			switch {
			case pl.peers[a.container].cheat == node.CheatNone:
				falsePos[a.container] = true
				if sum.FalsePositiveChecks == nil {
					sum.FalsePositiveChecks = map[string]int{}
				}
				sum.FalsePositiveChecks[failedCheck(a.reason)]++
			case a.issued <= caughtBy:
				caught[a.container] = true
			}
		}
		if a.issued+attestDeadline > pl.end {
			continue // not every node could have had it
		}
		for _, q := range pl.peers {
			if s.expectsAttestation(q, a.checker, a.issued) {
				expected++
			}
		}
		within += a.within
	}
	sum.Attestations = len(s.chk.atts)
	sum.AttestationDeliveryRatio = ratio(within, expected)
	sum.AttestationMsP50, sum.AttestationMsP99 = ms(percentile(s.chk.delays, 50)), ms(percentile(s.chk.delays, 99))
	sum.CheatersCaught = len(caught)
	sum.CheatersCaughtRatio = ratio(sum.CheatersCaught, sum.Cheaters)
	sum.FalsePositives = len(falsePos)
	sum.FalsePositiveRatio = ratio(sum.FalsePositives, sum.Containers-sum.Cheaters)
	sum.AttestationRootEpochs = s.chk.rootEpochs
	agree := s.chk.rootsAgree
	sum.AttestationRootsAgree = &agree
	sum.CaughtWithinS = s.sc.Checkers.caughtWithin(&s.sc).Seconds()
	// Which cheaters went uncaught, for the report (sorted: map order is random).
	for _, p := range pl.peers {
		if p.cheat != node.CheatNone && !caught[p.index] {
			sum.CheatersMissed = append(sum.CheatersMissed, p.index)
		}
	}
	slices.Sort(sum.CheatersMissed)
}

// failedCheck is the check a failing attestation's reason names: the part before ": " (the
// checker's Check word, e.g. "unanswered" or "gpu_model"); "failed" when there is none.
func failedCheck(reason string) string {
	check, _, _ := strings.Cut(reason, ": ")
	if check == "" {
		return "failed"
	}
	return check
}
