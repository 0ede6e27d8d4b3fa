package node

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/checker"
)

// CheckReport is what a network's nodes concluded from the checkers' attestations.
type CheckReport struct {
	// Attestations is how many distinct attestations (checks) some node accepted.
	Attestations int
	// DeliveryRatio is the share of (attestation, node) pairs delivered: each node that follows
	// the elections should have accepted every attestation issued attestInFlight or more before
	// the outcome was computed (checks go on while it is: a newer one may still be on its way).
	DeliveryRatio float64
	// InFlight counts the attestations left out of DeliveryRatio for being newer than that.
	InFlight int
	// DelayP50 and DelayP99 are issue-to-acceptance times over every node.
	DelayP50, DelayP99 time.Duration
	// Cheaters and Honest count the containers; CheatersCaught the cheaters with at least one
	// failing attestation, FalsePositives the honest containers with one; Excluded the containers
	// the reference node (the one that accepted most) saw excluded.
	Cheaters, Honest, CheatersCaught, FalsePositives, Excluded int
	// FalsePositiveChecks counts the honest containers' failing attestations by the check that
	// failed ("frame_rate", "unanswered", ...).
	FalsePositiveChecks map[string]int
	// SessionFalsePositives counts the honest containers with a failing session check (kind
	// SESSION: a consumer's sample judged a failure), among FalsePositives.
	SessionFalsePositives int
	// SessionSamples and SessionRefused add up the consumers' session samples the checkers took
	// and refused (CheckerStats; docs/CHECKERS.md, "Checks during sessions").
	SessionSamples, SessionRefused int
	// Confirmations and Overloaded add up the checkers' checks run again after a timing failure,
	// and checks measured while the machine could not keep up (CheckerStats).
	Confirmations, Overloaded int
	// RootsAgree says every node computes the same Merkle root for every epoch that is over
	// (RootEpochs of them).
	RootsAgree bool
	RootEpochs int
}

// attestInFlight: an attestation issued less than this before a CheckOutcome may still be on its
// way to some nodes (delivery p99 is under 100 ms on a loaded devnet), so DeliveryRatio leaves it
// out. Before, a recheck issued as the outcome was computed counted as lost at every node but its
// checker, and TestCheckersCatchCheaters failed now and then (delivery 0.92, 81 of 88).
const attestInFlight = time.Second

// CheckOutcome computes a CheckReport over nodes at now: cheat says which containers cheat (raw
// peer ID to its cheat), containers lists every container; current is the current epoch (its
// root is not compared: attestations may still be on their way).
func CheckOutcome(nodes []*Node, containers []string, cheat map[string]Cheat, current uint64, now time.Time) CheckReport {
	var rep CheckReport
	type view struct {
		st     *CheckerStatus
		leaves map[[32]byte]bool
	}
	var views []view
	all := map[[32]byte]bool{}
	issued := map[[32]byte]int64{} // leaf to its issue time (Unix ms), from the nodes' ledgers
	// Each node's ledger forgets epochs Options.LedgerEpochs behind the latest it saw, when it sees
	// it: near the end of a run longer than that, some have forgotten an old epoch and others not
	// yet. Only the epochs every node still keeps are compared (a devnet's keep all).
	keep := uint64(math.MaxUint64)
	for _, n := range nodes {
		if n != nil {
			keep = min(keep, n.opts.ledgerEpochs())
		}
	}
	kept := func(e uint64) bool { return keep >= current || e >= current-keep }
	var delays []time.Duration
	for _, n := range nodes {
		st := n.Checks()
		if st == nil {
			continue
		}
		v := view{st: st, leaves: map[[32]byte]bool{}}
		for _, e := range st.Ledger.Epochs() {
			if !kept(e) {
				continue
			}
			for _, l := range st.Ledger.Leaves(e) {
				v.leaves[l] = true
				all[l] = true
			}
		}
		for _, id := range containers {
			for _, le := range st.Ledger.History(id) {
				issued[le.Leaf] = le.IssuedUnixMs
			}
		}
		delays = append(delays, st.Delays...)
		rep.SessionSamples += st.Stats.SessionSamples
		rep.SessionRefused += st.Stats.SessionRefused
		rep.Confirmations += st.Stats.Confirmations
		rep.Overloaded += st.Stats.Overloaded
		views = append(views, v)
	}
	rep.Attestations = len(all)
	cutoff := now.Add(-attestInFlight).UnixMilli()
	settled := func(l [32]byte) bool {
		ms, ok := issued[l]
		return !ok || ms <= cutoff
	}
	total := 0
	for l := range all {
		if settled(l) {
			total++
		}
	}
	rep.InFlight = len(all) - total
	if total > 0 && len(views) > 0 {
		got := 0
		for _, v := range views {
			for l := range v.leaves {
				if settled(l) {
					got++
				}
			}
		}
		rep.DeliveryRatio = float64(got) / float64(total*len(views))
	}
	rep.DelayP50, rep.DelayP99 = Percentile(delays, 50), Percentile(delays, 99)

	var ref *CheckerStatus
	refLeaves := -1
	for _, v := range views {
		if len(v.leaves) > refLeaves {
			ref, refLeaves = v.st, len(v.leaves)
		}
	}
	for _, id := range containers {
		c, cheats := cheat[id]
		cheats = cheats && c != CheatNone
		if cheats {
			rep.Cheaters++
		} else {
			rep.Honest++
		}
		if ref == nil {
			continue
		}
		fails := 0
		for _, e := range ref.Ledger.Epochs() {
			if s, ok := ref.Ledger.Summary(e, id); ok {
				fails += s.Fails
			}
		}
		if fails > 0 && !cheats {
			session := false
			for _, le := range ref.Ledger.History(id) {
				if le.Verdict == pb.Verdict_VERDICT_FAIL {
					session = session || le.Kind == pb.CheckKind_CHECK_KIND_SESSION
					if rep.FalsePositiveChecks == nil {
						rep.FalsePositiveChecks = map[string]int{}
					}
					check, _, _ := strings.Cut(le.Msg.GetReason(), ":")
					rep.FalsePositiveChecks[check]++
				}
			}
			if session {
				rep.SessionFalsePositives++
			}
		}
		if d, ok := ref.Excluded[id]; ok && d.Standing == checker.StandingExcluded {
			rep.Excluded++
		}
		switch {
		case fails > 0 && cheats:
			rep.CheatersCaught++
		case fails > 0:
			rep.FalsePositives++
		}
	}

	rep.RootsAgree = true
	epochs := map[uint64]bool{}
	for _, v := range views {
		for _, e := range v.st.Ledger.Epochs() {
			if e+1 < current && kept(e) {
				epochs[e] = true
			}
		}
	}
	rep.RootEpochs = len(epochs)
	for e := range epochs {
		var first [32]byte
		for i, v := range views {
			r := v.st.Ledger.Root(e)
			if i == 0 {
				first = r
			} else if r != first {
				rep.RootsAgree = false
			}
		}
	}
	return rep
}

// Cheaters lists the devnet's cheating containers (raw peer ID to cheat).
func (d *Devnet) Cheaters() map[string]Cheat {
	out := map[string]Cheat{}
	for i, n := range d.Nodes {
		if c := d.cheat(i); c != CheatNone && n != nil {
			out[string(n.Net().ID())] = c
		}
	}
	return out
}

// CheckOutcome is CheckOutcome over the devnet's nodes and containers.
func (d *Devnet) CheckOutcome() CheckReport {
	containers := d.containerIDs()
	now := time.Now()
	cur := uint64(0)
	if len(d.Nodes) > 0 && d.Nodes[0] != nil && d.Nodes[0].ep != nil {
		cur = d.Nodes[0].ep.tr.Schedule().Epoch(now)
	}
	return CheckOutcome(d.Nodes, containers, d.Cheaters(), cur, now)
}

// CheckerCount is how many of the devnet's nodes run the checker role.
func (d *Devnet) CheckerCount() int {
	k := 0
	for i := range d.Nodes {
		if d.isChecker(i) {
			k++
		}
	}
	return k
}

// WaitChecked waits until every container's registration check is done: no container's latest
// heartbeat says awaiting_check. It returns the time since the devnet began.
func (d *Devnet) WaitChecked(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	want := len(d.Containers())
	for {
		d.mu.Lock()
		waiting, seen := 0, 0
		for _, hb := range d.beats {
			seen++
			if hb.State == pb.ContainerState_CONTAINER_STATE_AWAITING_CHECK {
				waiting++
			}
		}
		d.mu.Unlock()
		if seen >= want && waiting == 0 {
			return time.Since(d.started), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("devnet: %d of %d containers still await their registration check: %w", waiting, want, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// containerIDs lists the devnet's containers (raw peer IDs).
func (d *Devnet) containerIDs() []string {
	var out []string
	for i, n := range d.Nodes {
		if d.isContainer(i) && n != nil {
			out = append(out, string(n.Net().ID()))
		}
	}
	return out
}
