package node

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/checker"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// The assignment is a pure function of the seed: the same everywhere, k distinct checkers, never
// the container itself, and spread evenly over the checkers.
func TestAssignedCheckers(t *testing.T) {
	var licensed []string
	for i := range 20 {
		licensed = append(licensed, fmt.Sprintf("checker-%02d", i))
	}
	count := map[string]int{}
	const containers = 4000
	for c := range containers {
		id := fmt.Sprintf("container-%d", c)
		seed := epoch.Seed(sha256.Sum256([]byte("epoch 7")))
		a := AssignedCheckers(seed, id, licensed, 3)
		b := AssignedCheckers(seed, id, licensed, 3)
		if len(a) != 3 || fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("assignment %v then %v", a, b)
		}
		if a[0] == a[1] || a[1] == a[2] || a[0] == a[2] {
			t.Fatalf("a checker twice: %v", a)
		}
		for _, x := range a {
			count[x]++
		}
	}
	// Each checker expects 4000*3/20 = 600 containers; binomial sd ~ 23.
	for id, n := range count {
		if n < 500 || n > 700 {
			t.Errorf("%s checks %d containers, want about 600", id, n)
		}
	}
	if got := AssignedCheckers(epoch.Seed{}, "checker-03", licensed, 20); len(got) != 19 {
		t.Errorf("a checker's own container: %d checkers assigned, want 19 (not itself)", len(got))
	}
	other := AssignedCheckers(epoch.Seed{1}, "container-1", licensed, 3)
	same := AssignedCheckers(epoch.Seed{1}, "container-1", licensed, 3)
	if fmt.Sprint(other) != fmt.Sprint(same) {
		t.Fatal("not deterministic")
	}
}

// An attestation made by NewAttestation from any result, pass or fail, is one the network accepts
// as well formed: it seals, and opens to the same fields.
func TestNewAttestationIsWellFormed(t *testing.T) {
	ck, _, _ := crypto.GenerateEd25519Key(nil)
	_, cpub, _ := crypto.GenerateEd25519Key(nil)
	checkerID, _ := peer.IDFromPrivateKey(ck)
	containerID, _ := peer.IDFromPublicKey(cpub)
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'é' >> 1
	}
	for _, r := range []checker.Result{
		{Verdict: checker.Pass, Measurements: checker.Measurements{FPS: 29.97, Width: 320, Height: 180, BitrateKbps: 812.4, PSNRMin: 31.2}},
		{Verdict: checker.Fail, Check: checker.CheckFrameRate, Reason: "14.9 frames/s, asked for 30"},
		{Verdict: checker.Fail, Check: CheckUnanswered, Reason: "ünïcödé " + string(long)},
		{Verdict: checker.Fail},
	} {
		a := checker.NewAttestation(r, checker.CheckInfo{
			Checker: []byte(checkerID), Container: []byte(containerID), Epoch: 3,
			Kind: pb.CheckKind_CHECK_KIND_RANDOM, Method: pb.CheckMethod_CHECK_METHOD_SIMULATION,
			Nonce: []byte("0123456789abcdef0123456789abcdef"), Issued: time.UnixMilli(1_700_000_000_000),
			GPUModel: "H100 with a very long model name beyond thirty-two bytes",
		})
		raw, err := p2p.SealAttestation(a, ck)
		if err != nil {
			t.Fatalf("%+v: seal: %v", r, err)
		}
		got, signer, err := p2p.OpenAttestation(raw)
		if err != nil || signer != checkerID {
			t.Fatalf("open: %v (signer %s)", err, signer)
		}
		if got.Verdict != a.Verdict || got.Reason != a.Reason || got.GetM().GetFpsMilli() != a.GetM().GetFpsMilli() {
			t.Fatalf("opened %+v, sealed %+v", got, a)
		}
	}
}

// A devnet with checkers and cheaters: honest containers pass their registration checks and are
// scheduled; every cheater is caught by a failing attestation and barred; every node accepts every
// attestation and computes the same Merkle root for each epoch. Without the race detector every
// kind of cheater and both methods; with it (ten nodes on two cores cannot render a challenge
// stream for every check at the rate asked: honest streams reached 4-17 frames/s of 30 and
// failed), telemetry only, against the cheaters telemetry catches.
func TestCheckersCatchCheaters(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet of 8 or 10 nodes with real checks")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cc := DefaultChecker()
	cc.CheckFor = Duration(2 * time.Second)
	cc.Recheck = Duration(4 * time.Second)
	kinds, nodes, checkers := Cheats, 10, 3
	if raceEnabled {
		// Eight nodes: their five containers all have GPUs (the sixth profile is CPU-only, which
		// only a challenge can check).
		cc.Methods = []string{MethodTelemetry}
		kinds, nodes, checkers = []Cheat{CheatGPU, CheatReplay, CheatSilent}, 8, 2
	}
	d, err := StartDevnet(ctx, DevnetConfig{Nodes: nodes, Epoch: 10 * time.Second, Committee: 6, Checkers: checkers,
		Cheaters: len(kinds), CheatKinds: kinds, Checker: &cc})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cheaters := d.Cheaters()
	if len(cheaters) != len(kinds) {
		t.Fatalf("%d cheaters, want %d", len(cheaters), len(kinds))
	}
	var honest []string
	for _, id := range d.containerIDs() {
		if _, ok := cheaters[id]; !ok {
			honest = append(honest, id)
		}
	}
	ref := d.Nodes[0]
	caught := func() (int, int) {
		c, h := 0, 0
		for id := range cheaters {
			if s := ref.Standing(peer.ID(id)).Standing; s == checker.StandingNeedsRecheck || s == checker.StandingExcluded {
				c++
			}
		}
		for _, id := range honest {
			if ref.Standing(peer.ID(id)).Standing == checker.StandingStandby {
				h++
			}
		}
		return c, h
	}
	for {
		c, h := caught()
		if c == len(cheaters) && h == len(honest) {
			break
		}
		select {
		case <-ctx.Done():
			for _, id := range honest {
				for _, e := range ref.Checks().Ledger.History(id) {
					if e.Verdict != pb.Verdict_VERDICT_PASS {
						t.Logf("honest %s failed: %s %s", peer.ID(id), e.Method, e.Msg.Reason)
					}
				}
			}
			t.Fatalf("%d of %d cheaters caught, %d of %d honest containers in standby: %+v", c, len(cheaters), h, len(honest), d.CheckOutcome())
		case <-time.After(500 * time.Millisecond):
		}
	}
	time.Sleep(time.Second) // let the last attestations reach every node
	if err := d.WaitServing(ctx, false); err != nil {
		t.Fatal(err)
	}
	rep := d.CheckOutcome()
	t.Logf("%+v", rep)
	if rep.CheatersCaught != len(cheaters) {
		t.Errorf("cheaters caught %d of %d", rep.CheatersCaught, len(cheaters))
	}
	if rep.FalsePositives > 0 {
		t.Logf("false positives: %d honest containers failed a check at least once (a loaded machine)", rep.FalsePositives)
	}
	if rep.DeliveryRatio < 0.99 {
		t.Errorf("attestation delivery %.3f, want every node to accept every attestation", rep.DeliveryRatio)
	}
	if !rep.RootsAgree {
		t.Error("nodes computed different Merkle roots for an epoch")
	}
	// The honest containers' own state follows the verdicts: they are in standby, and matches
	// reach only them.
	for _, n := range d.Nodes {
		if n.cont == nil {
			continue
		}
		id := string(n.Net().ID())
		if _, cheat := cheaters[id]; !cheat && n.cont.State() != pb.ContainerState_CONTAINER_STATE_STANDBY && n.cont.State() != pb.ContainerState_CONTAINER_STATE_BUSY {
			t.Errorf("honest container %s in %v", n.Net().ID(), n.cont.State())
		}
	}
	// /v1/status says what each node did and knows.
	for i, n := range d.Nodes {
		st := n.Status().Checks
		if st == nil {
			t.Fatalf("node %d: no checks in its status", i)
		}
		if d.isChecker(i) && (!st.Checker || !st.Licensed || st.Checks == 0) {
			t.Errorf("checker %d: status %+v, want a licensed checker that published checks", i, st)
		}
		if c, cheat := cheaters[string(n.Net().ID())]; cheat && st.Standing == string(checker.StandingStandby) {
			t.Errorf("cheater %d (%s) reads its own standing as %s", i, c, st.Standing)
		}
	}
	// Matches go to honest containers only; once both are reserved, the standby filter empties.
	for range 3 {
		res, err := d.Light.Connect(ctx, &pb.MatchRequest{App: "demo"}, ConnectOptions{Network: d.Network(), Stakes: d.Stakes(), Hold: -1})
		if err != nil {
			t.Fatalf("match: %v", err)
		}
		if !res.Match.Matched {
			if res.Match.Reason != "standby" {
				t.Fatalf("refused: %s (%s)", res.Match.Reason, res.Match.Detail)
			}
			continue
		}
		if c, cheat := cheaters[res.Match.Container]; cheat {
			t.Fatalf("matched a cheater (%s)", c)
		}
	}
}

// A challenge render session catches a container that streams half the frame rate it is asked
// for, through the whole node path: the checker's offer without a ticket, the container admitting
// a licensed checker, the verdict gossiped. One checker, challenges only, one check at a time.
func TestChallengeCatchesFrameRateCheat(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet of 6 nodes with challenge render sessions")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cc := DefaultChecker()
	cc.Methods, cc.PerContainer, cc.Concurrent = []string{MethodSimulation}, 1, 1
	cc.CheckFor, cc.Recheck = Duration(2*time.Second), Duration(time.Hour)
	if raceEnabled {
		cc.FPS = 10 // what two cores under the race detector render for sure
	}
	d, err := StartDevnet(ctx, DevnetConfig{Nodes: 6, Epoch: 10 * time.Second, Committee: 6, Checkers: 1,
		Cheaters: 1, CheatKinds: []Cheat{CheatFrameRate}, Checker: &cc})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var cheater string
	for id := range d.Cheaters() {
		cheater = id
	}
	ref := d.Nodes[0]
	for {
		var failed *pb.Attestation
		passes := 0
		for _, id := range d.containerIDs() {
			for _, e := range ref.Checks().Ledger.History(id) {
				switch {
				case e.Method != pb.CheckMethod_CHECK_METHOD_SIMULATION:
					t.Fatalf("a %s attestation; want challenges only", e.Method)
				case id == cheater && e.Verdict == pb.Verdict_VERDICT_FAIL:
					failed = e.Msg
				case id != cheater && e.Verdict == pb.Verdict_VERDICT_PASS:
					passes++
				case id != cheater:
					t.Logf("an honest container failed (a loaded machine): %s", e.Msg.Reason)
				}
			}
		}
		if failed != nil && passes > 0 {
			if !strings.HasPrefix(failed.Reason, string(checker.CheckFrameRate)) {
				t.Errorf("the cheater failed on %q, want %s", failed.Reason, checker.CheckFrameRate)
			}
			t.Logf("cheater: %s; %d honest passes", failed.Reason, passes)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("cheater failed: %v; honest passes: %d", failed != nil, passes)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// A container that passed its registration check and then answers every check "busy" in standby
// is failed (unanswered) once it has refused maxBusyRefusals checks in a row: it cannot dodge its
// random checks. One checker, telemetry only (cheap under the race detector), a random check every
// epoch, refused checks retried after 2 s.
func TestBusyDodgerFails(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet of 5 nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cc := DefaultChecker()
	cc.Methods, cc.PerContainer, cc.Concurrent = []string{MethodTelemetry}, 1, 2
	cc.RandomEvery, cc.Recheck = 1, Duration(2*time.Second)
	d, err := StartDevnet(ctx, DevnetConfig{Nodes: 5, Epoch: 10 * time.Second, Committee: 5, Checkers: 1,
		Cheaters: 1, CheatKinds: []Cheat{CheatBusy}, Checker: &cc})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var cheater string
	for id := range d.Cheaters() {
		cheater = id
	}
	ref := d.Nodes[0]
	for {
		passed, failed := false, ""
		for _, e := range ref.Checks().Ledger.History(cheater) {
			switch {
			case e.Verdict == pb.Verdict_VERDICT_PASS:
				passed = true
			case passed:
				failed = e.Msg.Reason
			}
		}
		if failed != "" {
			if !strings.HasPrefix(failed, string(CheckUnanswered)) || !strings.Contains(failed, "busy") {
				t.Fatalf("the dodger failed on %q, want unanswered: refused as busy", failed)
			}
			t.Logf("after its registration pass: %s", failed)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the dodger was never failed (registration passed: %v)", passed)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// A container admits a challenge only from a licensed checker among the first MaxPerContainer the
// epoch's seed assigns to it: of 20 licensed checkers, 16; an unlicensed peer never.
func TestMayChallenge(t *testing.T) {
	genesis := time.Unix(1_700_000_000, 0)
	var alloc epoch.Allocation
	for i := range 20 {
		alloc = append(alloc, epoch.Candidate{ID: fmt.Sprintf("checker-%02d", i), Checker: true})
	}
	alloc = append(alloc, epoch.Candidate{ID: "staked, unlicensed", Stake: big.NewInt(1000)})
	tr, err := epoch.NewTracker(epoch.Config{Schedule: epoch.Schedule{Genesis: genesis, Length: time.Minute},
		GenesisSeed: epoch.Seed{7}, Params: epoch.Params{Expected: 4}, Stakes: alloc}, genesis)
	if err != nil {
		t.Fatal(err)
	}
	el := &checkerEligibility{tr: tr, cache: map[uint64][]string{}}
	now := genesis.Add(10 * time.Second)
	seed, ok := tr.Seed(0)
	if !ok {
		t.Fatal("no seed of epoch 0")
	}
	order := AssignedCheckers(seed, "container", el.checkers(0), 20)
	for i, id := range order {
		err := el.mayChallenge("container", peer.ID(id), now)
		if (i < MaxPerContainer) != (err == nil) {
			t.Errorf("checker ranked %d: %v", i, err)
		}
	}
	if err := el.mayChallenge("container", "staked, unlicensed", now); err == nil || !strings.Contains(err.Error(), "licence") {
		t.Errorf("an unlicensed peer: %v", err)
	}
}
