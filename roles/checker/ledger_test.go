package checker_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/checker"
)

// ledgerAtt is an attestation of container by checker in epoch e, issued at second sec of the
// epoch, with nonce n. Its "envelope" is its deterministic encoding with a tag: the ledger hashes
// envelopes, it does not open them.
type ledgerAtt struct {
	a   *pb.Attestation
	raw []byte
}

func newLedgerAtt(checkerID, container string, e uint64, kind pb.CheckKind, pass bool, sec int64, n byte) ledgerAtt {
	a := &pb.Attestation{
		Checker: []byte(checkerID), Container: []byte(container), Epoch: e, Kind: kind,
		Method: pb.CheckMethod_CHECK_METHOD_SIMULATION, Verdict: pb.Verdict_VERDICT_PASS,
		EvidenceHash: make([]byte, 32), IssuedUnixMs: (int64(e)*900 + sec) * 1000, Nonce: []byte{n},
	}
	if !pass {
		a.Verdict, a.Reason = pb.Verdict_VERDICT_FAIL, "frame_rate"
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		panic(err)
	}
	return ledgerAtt{a: a, raw: append([]byte("envelope:"), raw...)}
}

// ledgerView is everything a ledger derives about the epochs and containers of a test.
type ledgerView struct {
	Epochs        []uint64
	Roots         map[uint64][32]byte
	Leaves        map[uint64][][32]byte
	Summaries     map[uint64][]checker.ContainerSummary
	Equivocations map[uint64][][][32]byte
	Standings     map[string]checker.Decision
}

func viewOf(l *checker.Ledger, containers []string) ledgerView {
	v := ledgerView{Epochs: l.Epochs(), Roots: map[uint64][32]byte{}, Leaves: map[uint64][][32]byte{},
		Summaries: map[uint64][]checker.ContainerSummary{}, Equivocations: map[uint64][][][32]byte{}, Standings: map[string]checker.Decision{}}
	for _, e := range v.Epochs {
		v.Roots[e], v.Leaves[e], v.Summaries[e], v.Equivocations[e] = l.Root(e), l.Leaves(e), l.Summaries(e), l.Equivocations(e)
	}
	for _, c := range containers {
		v.Standings[c] = l.Standing(c)
	}
	return v
}

func newTestLedger(t *testing.T) *checker.Ledger {
	t.Helper()
	l, err := checker.NewLedger(checker.LedgerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Property: whatever order the attestations arrive in, and however often each arrives, every
// ledger derives the same roots, leaves, summaries, equivocations and standings; every counted
// attestation's proof verifies against the root, and a tampered one does not.
func TestLedgerOrderIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	checkers := []string{"checker-a", "checker-b", "checker-c", "checker-d"}
	containers := []string{"container-1", "container-2", "container-3"}
	kinds := []pb.CheckKind{pb.CheckKind_CHECK_KIND_REGISTRATION, pb.CheckKind_CHECK_KIND_RANDOM, pb.CheckKind_CHECK_KIND_SESSION}
	var all []ledgerAtt
	for i := range 60 {
		all = append(all, newLedgerAtt(checkers[r.IntN(len(checkers))], containers[r.IntN(len(containers))],
			uint64(7+r.IntN(2)), kinds[r.IntN(len(kinds))], r.IntN(3) > 0, int64(r.IntN(900)), byte(i)))
	}
	// Two equivocations: the same checks signed again with the other verdict.
	for _, i := range []int{3, 17} {
		again := newLedgerAtt(string(all[i].a.Checker), string(all[i].a.Container), all[i].a.Epoch, all[i].a.Kind,
			all[i].a.Verdict != pb.Verdict_VERDICT_PASS, 5, all[i].a.Nonce[0])
		all = append(all, again)
	}

	first := newTestLedger(t)
	for _, x := range all {
		if !first.Add(x.a, x.raw) {
			t.Fatal("a new attestation was not added")
		}
	}
	if first.Add(all[0].a, all[0].raw) {
		t.Fatal("the same envelope added twice")
	}
	want := viewOf(first, containers)
	if len(want.Epochs) != 2 || len(want.Leaves[7])+len(want.Leaves[8]) != 60 {
		t.Fatalf("epochs %v, %d + %d leaves counted; want 60", want.Epochs, len(want.Leaves[7]), len(want.Leaves[8]))
	}
	if n := len(want.Equivocations[7]) + len(want.Equivocations[8]); n != 2 {
		t.Fatalf("%d equivocations, want 2", n)
	}

	for round := range 20 {
		order := slices.Clone(all)
		order = append(order, all[:r.IntN(len(all))]...) // some arrive twice
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		l := newTestLedger(t)
		for _, x := range order {
			l.Add(x.a, x.raw)
		}
		if got := viewOf(l, containers); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: another order derives another view", round)
		}
	}

	for _, e := range want.Epochs {
		for _, leaf := range want.Leaves[e] {
			p, err := first.Proof(e, leaf)
			if err != nil || !checker.VerifyProof(want.Roots[e], p) {
				t.Fatalf("epoch %d leaf %x: proof %v", e, leaf[:4], err)
			}
			p.Leaf[0] ^= 1
			if checker.VerifyProof(want.Roots[e], p) {
				t.Fatalf("epoch %d: a tampered leaf verifies", e)
			}
		}
	}
	// The losing version of an equivocation is kept as evidence but not counted.
	for _, e := range want.Epochs {
		for _, versions := range want.Equivocations[e] {
			if len(versions) != 2 || !slices.Contains(want.Leaves[e], versions[0]) || slices.Contains(want.Leaves[e], versions[1]) {
				t.Fatalf("epoch %d: equivocation %x: counted leaves do not hold exactly the lower one", e, versions)
			}
			if _, err := first.Proof(e, versions[1]); !errors.Is(err, checker.ErrLedger) {
				t.Fatalf("a proof for an uncounted version: %v", err)
			}
		}
	}
}

// History names exactly a container's counted checks in every epoch the ledger holds (the
// per-container index agrees with the epoch's counted set), in canonical order.
func TestLedgerHistoryIsTheContainersCountedChecks(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	containers := []string{"container-1", "container-2", "container-3", "container-4"}
	var all []ledgerAtt
	for i := range 200 {
		all = append(all, newLedgerAtt("checker-"+string(rune('a'+r.IntN(5))), containers[r.IntN(len(containers))],
			uint64(7+r.IntN(3)), pb.CheckKind_CHECK_KIND_RANDOM, r.IntN(4) > 0, int64(r.IntN(900)), byte(i)))
	}
	for _, i := range []int{4, 40, 90} { // equivocations: only the lower leaf counts
		all = append(all, newLedgerAtt(string(all[i].a.Checker), string(all[i].a.Container), all[i].a.Epoch, all[i].a.Kind,
			all[i].a.Verdict != pb.Verdict_VERDICT_PASS, 1, all[i].a.Nonce[0]))
	}
	l := newTestLedger(t)
	for _, x := range all {
		l.Add(x.a, x.raw)
	}
	counted := map[[32]byte]bool{}
	for _, e := range l.Epochs() {
		for _, leaf := range l.Leaves(e) {
			counted[leaf] = true
		}
	}
	total := 0
	for _, c := range containers {
		want := map[[32]byte]bool{}
		for _, x := range all {
			if leaf := checker.AttestationLeaf(x.raw); string(x.a.Container) == c && counted[leaf] {
				want[leaf] = true
			}
		}
		h := l.History(c)
		got := map[[32]byte]bool{}
		for i, en := range h {
			got[en.Leaf] = true
			if en.Container != c {
				t.Fatalf("%s's history holds a check of %s", c, en.Container)
			}
			if i > 0 && (h[i-1].IssuedUnixMs > en.IssuedUnixMs || h[i-1].IssuedUnixMs == en.IssuedUnixMs && string(h[i-1].Leaf[:]) > string(en.Leaf[:])) {
				t.Fatalf("%s's history is out of order at %d", c, i)
			}
		}
		if len(h) != len(want) || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: history of %d checks, %d distinct; want the %d counted ones", c, len(h), len(got), len(want))
		}
		total += len(h)
	}
	if total != len(counted) {
		t.Fatalf("histories hold %d checks, the epochs count %d", total, len(counted))
	}
}

func TestLedgerSummary(t *testing.T) {
	l := newTestLedger(t)
	const c = "container-1"
	reg, random, session := pb.CheckKind_CHECK_KIND_REGISTRATION, pb.CheckKind_CHECK_KIND_RANDOM, pb.CheckKind_CHECK_KIND_SESSION
	atts := []ledgerAtt{
		newLedgerAtt("checker-a", c, 7, reg, true, 10, 1),
		newLedgerAtt("checker-a", c, 7, random, false, 300, 2),
		newLedgerAtt("checker-b", c, 7, random, true, 200, 3), // earlier than a's failure
		newLedgerAtt("checker-b", c, 7, session, true, 400, 4),
		newLedgerAtt("checker-c", "container-2", 7, random, false, 50, 5),
		newLedgerAtt("checker-a", c, 8, random, true, 10, 6), // another epoch
	}
	// Checker b passes the container ten more times in random checks: one vote for the score.
	for i := range 10 {
		atts = append(atts, newLedgerAtt("checker-b", c, 7, random, true, int64(100+i), byte(10+i)))
	}
	for i := len(atts) - 1; i >= 0; i-- { // backwards: Last must follow issue time, not arrival
		l.Add(atts[i].a, atts[i].raw)
	}
	s, ok := l.Summary(7, c)
	if !ok {
		t.Fatal("no summary")
	}
	if s.Container != c || s.Epoch != 7 || s.Passes != 13 || s.Fails != 1 || s.Checkers != 2 {
		t.Errorf("summary %+v", s)
	}
	wantLast := map[pb.CheckKind]pb.Verdict{reg: pb.Verdict_VERDICT_PASS, random: pb.Verdict_VERDICT_FAIL, session: pb.Verdict_VERDICT_PASS}
	for k, v := range wantLast {
		if s.Last[k].Verdict != v {
			t.Errorf("last %s: %v, want %v", k, s.Last[k].Verdict, v)
		}
	}
	if got := s.Last[random]; got.Checker != "checker-a" || got.IssuedUnixMs != (7*900+300)*1000 {
		t.Errorf("last random check %+v", got)
	}
	// Votes: a's registration pass, a's random fail, b's random pass (its latest of eleven), b's
	// session pass: 3 passes, 1 failure under Beta(1, 1).
	if want := (3.0 + 1) / (4 + 2); math.Abs(s.Score-want) > 1e-12 {
		t.Errorf("score %v, want %v", s.Score, want)
	}
	all := l.Summaries(7)
	if len(all) != 2 || all[0].Container != c || all[1].Container != "container-2" || all[1].Score != 1.0/3 {
		t.Errorf("summaries %+v", all)
	}
	if _, ok := l.Summary(7, "nobody"); ok {
		t.Error("a summary of a container nobody checked")
	}
	if _, ok := l.Summary(99, c); ok {
		t.Error("a summary of an epoch the ledger does not hold")
	}
	if got := l.History(c); len(got) != 15 || got[0].Epoch != 7 || got[len(got)-1].Epoch != 8 ||
		!slices.IsSortedFunc(got, func(a, b checker.LedgerEntry) int { return int(a.IssuedUnixMs - b.IssuedUnixMs) }) {
		t.Errorf("history of %d entries", len(got))
	}
	if d := l.Standing(c); d.Standing != checker.StandingStandby {
		t.Errorf("standing %s", d.Standing)
	}
	if d := l.Standing("container-2"); d.Standing != checker.StandingNeedsRecheck {
		t.Errorf("container-2 standing %s", d.Standing)
	}
}

func TestPriorScore(t *testing.T) {
	for _, tc := range []struct {
		prior         checker.Prior
		passes, fails int
		want          float64
	}{
		{checker.DefaultPrior, 0, 0, 0.5},
		{checker.DefaultPrior, 1, 0, 2.0 / 3},
		{checker.DefaultPrior, 0, 1, 1.0 / 3},
		{checker.DefaultPrior, 98, 0, 99.0 / 100},
		{checker.Prior{Alpha: 4, Beta: 1}, 0, 0, 0.8},
		{checker.Prior{Alpha: 4, Beta: 1}, 0, 5, 0.4},
	} {
		got := tc.prior.Score(tc.passes, tc.fails)
		if math.Abs(got-tc.want) > 1e-12 || got < 0 || got > 1 {
			t.Errorf("%+v.Score(%d, %d) = %v, want %v", tc.prior, tc.passes, tc.fails, got, tc.want)
		}
	}
}

func TestLedgerExcludes(t *testing.T) {
	l := newTestLedger(t)
	const c = "container-1"
	var fails [][32]byte
	for i, who := range []string{"checker-a", "checker-b", "checker-c"} {
		x := newLedgerAtt(who, c, 7, pb.CheckKind_CHECK_KIND_RANDOM, false, int64(100*(i+1)), byte(i))
		l.Add(x.a, x.raw)
		fails = append(fails, checker.AttestationLeaf(x.raw))
	}
	d := l.Standing(c)
	if d.Standing != checker.StandingExcluded || !slices.Equal(d.Evidence, fails) {
		t.Fatalf("standing %s, evidence %x", d.Standing, d.Evidence)
	}
	// The evidence is provable against the epoch's root.
	for _, leaf := range d.Evidence {
		p, err := l.Proof(7, leaf)
		if err != nil || !checker.VerifyProof(l.Root(7), p) {
			t.Fatalf("evidence %x: %v", leaf[:4], err)
		}
	}
}

func TestLedgerForget(t *testing.T) {
	l := newTestLedger(t)
	for e := uint64(5); e < 9; e++ {
		x := newLedgerAtt("checker-a", "container-1", e, pb.CheckKind_CHECK_KIND_RANDOM, true, 1, 1)
		l.Add(x.a, x.raw)
	}
	l.Forget(7)
	if got := l.Epochs(); !slices.Equal(got, []uint64{7, 8}) {
		t.Errorf("epochs after Forget(7): %v", got)
	}
	if l.Root(5) != ([32]byte{}) || l.Leaves(5) != nil || l.Summaries(5) != nil || l.Equivocations(5) != nil {
		t.Error("a forgotten epoch still answers")
	}
}

func TestNewLedgerConfig(t *testing.T) {
	for _, cfg := range []checker.LedgerConfig{
		{Prior: checker.Prior{Alpha: 0, Beta: 1}},
		{Prior: checker.Prior{Alpha: 1, Beta: -1}},
		{Rule: checker.ConsequenceRule{Failures: 9, Window: 3}},
	} {
		if _, err := checker.NewLedger(cfg); err == nil {
			t.Errorf("NewLedger(%+v) accepted", cfg)
		}
	}
}

func BenchmarkLedgerAdd(b *testing.B) {
	var atts []ledgerAtt
	for i := range 4096 {
		atts = append(atts, newLedgerAtt("checker-"+string(rune('a'+i%16)), "container-"+string(rune('a'+i%64)), 7,
			pb.CheckKind_CHECK_KIND_RANDOM, i%7 != 0, int64(i%900), byte(i)))
	}
	b.ReportAllocs()
	l, _ := checker.NewLedger(checker.LedgerConfig{})
	i := 0
	for b.Loop() {
		if i%len(atts) == 0 {
			l, _ = checker.NewLedger(checker.LedgerConfig{})
		}
		x := atts[i%len(atts)]
		l.Add(x.a, x.raw)
		i++
	}
}

// BenchmarkLedgerStanding is what a checker pays for each container it follows, twice a second,
// and every node for each attestation it accepts: a container's standing in a ledger holding a
// 1,000-peer network's epochs (660 containers, about 3 checks each per epoch, 3 epochs).
func BenchmarkLedgerStanding(b *testing.B) {
	l, _ := checker.NewLedger(checker.LedgerConfig{})
	const containers = 660
	i := 0
	for e := range uint64(3) {
		for c := range containers {
			for k := range 3 {
				x := newLedgerAtt("checker-"+string(rune('a'+(c+k)%100)), "container-"+strconv.Itoa(c), 7+e,
					pb.CheckKind_CHECK_KIND_RANDOM, (c+k)%9 != 0, int64(k*60), byte(i))
				l.Add(x.a, x.raw)
				i++
			}
		}
	}
	b.ReportAllocs()
	c := 0
	for b.Loop() {
		l.Standing("container-" + strconv.Itoa(c%containers))
		c++
	}
}
