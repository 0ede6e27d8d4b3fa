package epoch

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// genesis is the tests' epoch 0 start; epochs last testLength.
var genesis = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const testLength = 10 * time.Second

// testCand is a candidate with its secret key.
type testCand struct {
	id string
	sk ed25519.PrivateKey
}

// testCandidates returns n candidates with deterministic keys and varied stake and quality; the last
// one has no stake (never drawn).
func testCandidates(n int) ([]testCand, Allocation) {
	cands := make([]testCand, n)
	alloc := make(Allocation, n)
	for i := range n {
		var seed [ed25519.SeedSize]byte
		seed[0], seed[1] = byte(i+1), 0xc7
		sk := ed25519.NewKeyFromSeed(seed[:])
		id := fmt.Sprintf("cand-%02d", i)
		stake := ethers(int64(1 + i%4))
		if i == n-1 {
			stake = new(big.Int)
		}
		cands[i] = testCand{id: id, sk: sk}
		alloc[i] = Candidate{ID: id, Key: sk.Public().(ed25519.PublicKey), Stake: stake, QualityPPM: uint32(400_000 + 50_000*i)}
	}
	return cands, alloc
}

// mixFunc is a Mixer from a function.
type mixFunc func(uint64) []byte

func (f mixFunc) Mix(e uint64) []byte { return f(e) }

func testConfig(alloc Allocation) Config {
	return Config{
		Schedule:    Schedule{Genesis: genesis, Length: testLength},
		GenesisSeed: sha256.Sum256([]byte("tracker test genesis")),
		Params:      Params{Expected: 4, RecencyWindow: 2},
		Stakes:      alloc,
		Mixer: mixFunc(func(e uint64) []byte {
			if e%3 == 0 {
				return nil // some epochs mix nothing
			}
			return []byte(fmt.Sprintf("block at %d", e))
		}),
	}
}

func newTracker(t testing.TB, cfg Config, liveSince time.Time) *Tracker {
	t.Helper()
	tr, err := NewTracker(cfg, liveSince)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// rawOf is what the tests pass as a ticket's envelope.
func rawOf(msg *pb.IndexerTicket) []byte {
	return []byte(fmt.Sprintf("envelope %x/%d", msg.PeerId, msg.Epoch))
}

// sim is a network of trackers that all see every ticket.
type sim struct {
	t        *testing.T
	cfg      Config
	cands    []testCand
	trackers []*Tracker
	late     *Tracker // joins later; gets tickets from when it joins

	seeds   map[uint64]Seed      // seed(e) as the network derived it
	digests map[uint64]string    // committee digest of e, at the start of e+1
	records map[uint64][]*Ticket // sealed sets, as committee records hold them
	seats   map[uint64]int       // seats of each sealed committee
}

func newSim(t *testing.T, nTrackers, nCands int) *sim {
	cands, alloc := testCandidates(nCands)
	s := &sim{
		t: t, cfg: testConfig(alloc), cands: cands,
		seeds: map[uint64]Seed{}, digests: map[uint64]string{}, records: map[uint64][]*Ticket{}, seats: map[uint64]int{},
	}
	for range nTrackers {
		s.trackers = append(s.trackers, newTracker(t, s.cfg, genesis.Add(-time.Minute)))
	}
	s.seeds[0] = s.cfg.GenesisSeed
	return s
}

// all is every tracker that follows the network now.
func (s *sim) all() []*Tracker {
	if s.late != nil {
		return append(slices.Clone(s.trackers), s.late)
	}
	return s.trackers
}

// draw has every candidate draw for e on its own tracker and delivers the winners' tickets to all.
func (s *sim) draw(e uint64, now time.Time) int {
	s.t.Helper()
	return s.drawIf(e, now, nil)
}

// drawIf is draw for the candidates that publish (nil: all).
func (s *sim) drawIf(e uint64, now time.Time, publishes func(testCand) bool) int {
	s.t.Helper()
	n := 0
	for i, c := range s.cands {
		if publishes != nil && !publishes(c) {
			continue
		}
		msg := s.trackers[i%len(s.trackers)].Draw(e, c.id, c.sk)
		if msg == nil {
			continue
		}
		n++
		for j, tr := range s.all() {
			if _, err := tr.Add(msg, c.id, rawOf(msg), now); err != nil {
				s.t.Fatalf("epoch %d: tracker %d refused %s's ticket: %v", e, j, c.id, err)
			}
		}
	}
	return n
}

// advance runs Advance on every tracker of the network at the start of e and checks they agree.
func (s *sim) advance(e uint64) {
	s.t.Helper()
	now := s.cfg.Schedule.Start(e)
	for i, tr := range s.trackers {
		seeded, accepted := tr.Advance(now)
		if !slices.Equal(seeded, []uint64{e + 1}) || len(accepted) != 0 {
			s.t.Fatalf("tracker %d at the start of %d: seeded %v, accepted %d; want [%d], 0", i, e, seeded, len(accepted), e+1)
		}
	}
	ref := s.trackers[0]
	seed, ok := ref.Seed(e + 1)
	if !ok {
		s.t.Fatalf("seed(%d) unknown after Advance", e+1)
	}
	set, ok := ref.Sealed(e)
	if !ok {
		s.t.Fatalf("epoch %d not sealed after Advance", e)
	}
	outs := make([]Output, len(set))
	seats := 0
	for i, tk := range set {
		outs[i] = tk.Output
		seats += int(tk.Seats)
	}
	if want := NextSeed(s.seeds[e], e+1, s.cfg.Mixer.Mix(e+1), outs); seed != want {
		s.t.Fatalf("seed(%d) is not NextSeed of seed(%d) and epoch %d's sealed outputs", e+1, e, e)
	}
	digest, _ := ref.Digest(e)
	s.seeds[e+1], s.digests[e], s.records[e], s.seats[e] = seed, digest, set, seats
	for i, tr := range s.trackers[1:] {
		if got, _ := tr.Seed(e + 1); got != seed {
			s.t.Fatalf("tracker %d: seed(%d) differs from tracker 0's", i+1, e+1)
		}
		if got, _ := tr.Digest(e); got != digest {
			s.t.Fatalf("tracker %d: committee of %d differs from tracker 0's", i+1, e)
		}
	}
}

func TestTrackerNetworkAgrees(t *testing.T) {
	s := newSim(t, 6, 10)
	sched := s.cfg.Schedule
	grace := s.trackers[0].cfg.Grace
	if grace != time.Second {
		t.Fatalf("default grace %s, want a tenth of the epoch", grace)
	}
	// Before genesis every tracker knows seed(0) and nothing seals; epoch 0's winners publish.
	for _, tr := range s.trackers {
		if seeded, _ := tr.Advance(genesis.Add(-time.Second)); seeded != nil {
			t.Fatalf("Advance before genesis seeded %v", seeded)
		}
	}
	s.draw(0, genesis.Add(-30*time.Second))
	const epochs = 10
	for e := uint64(0); e < epochs; e++ {
		s.advance(e)
		s.draw(e+1, sched.Start(e).Add(time.Millisecond))

		// The previous committee serves during the grace window only.
		for i, tr := range s.trackers {
			cur, prev := tr.Committee(e), []*Ticket(nil)
			if e > 0 {
				prev = tr.Committee(e - 1)
			}
			during := tr.Active(sched.Start(e).Add(grace - time.Nanosecond))
			after := tr.Active(sched.Start(e).Add(grace))
			if e > 0 && len(during) != len(cur)+len(prev) {
				t.Fatalf("tracker %d, epoch %d: %d active in the grace window, want %d + %d", i, e, len(during), len(cur), len(prev))
			}
			if serving, _ := tr.Serving(e); len(after) != len(serving) || (len(cur) > 0 && len(serving) != len(cur)) {
				t.Fatalf("tracker %d, epoch %d: %d active after the grace window, want %d (its committee: %d)", i, e, len(after), len(serving), len(cur))
			}
		}
	}
	// Every epoch's seed differs and the committees are Poisson(4) in size: not empty on average.
	seen := map[Seed]bool{}
	seats, empty := 0, 0
	for e := uint64(0); e <= epochs; e++ {
		if seen[s.seeds[e]] {
			t.Fatalf("seed(%d) repeats an earlier seed", e)
		}
		seen[s.seeds[e]] = true
		if e < epochs {
			seats += s.seats[e]
			if len(s.records[e]) == 0 {
				empty++
			}
		}
	}
	if seats < epochs || empty > epochs/2 {
		t.Errorf("%d seats over %d epochs, %d empty committees; want about 4 seats an epoch", seats, epochs, empty)
	}
}

// An epoch that draws nobody is served by the last committee that drew someone (at most MaxCarry
// epochs back), during its grace window and after it, without counting it twice; an epoch that
// draws someone again is served by its own.
func TestTrackerCarriesCommitteeOverEmptyEpochs(t *testing.T) {
	s := newSim(t, 3, 10)
	sched := s.cfg.Schedule
	grace := s.trackers[0].cfg.Grace
	s.draw(0, genesis.Add(-30*time.Second))
	s.advance(0)
	if s.draw(1, sched.Start(0).Add(time.Millisecond)) == 0 {
		t.Fatal("epoch 1 drew nobody: pick candidates that draw someone")
	}
	s.advance(1)
	// Nobody publishes for epochs 2 to 2+MaxCarry: they draw nobody.
	last := uint64(2 + MaxCarry)
	for e := uint64(2); e <= last; e++ {
		s.advance(e)
	}
	for i, tr := range s.trackers {
		c1 := tr.Committee(1)
		for e := uint64(2); e <= last; e++ {
			serving, from := tr.Serving(e)
			switch {
			case len(tr.Committee(e)) != 0:
				t.Fatalf("tracker %d: epoch %d drew %d", i, e, len(tr.Committee(e)))
			case e <= 1+MaxCarry && (from != 1 || len(serving) != len(c1)):
				t.Fatalf("tracker %d: epoch %d served by %d members of epoch %d, want the %d of epoch 1", i, e, len(serving), from, len(c1))
			case e > 1+MaxCarry && len(serving) != 0:
				t.Fatalf("tracker %d: epoch %d served by epoch %d's committee, %d epochs back (MaxCarry %d)", i, e, from, e-from, MaxCarry)
			}
		}
		for _, at := range []time.Time{sched.Start(2).Add(grace / 2), sched.Start(2).Add(grace), sched.Start(3).Add(grace / 2)} {
			if got := tr.Active(at); len(got) != len(c1) {
				t.Fatalf("tracker %d at %v: %d active, want epoch 1's %d once", i, at.Sub(genesis), len(got), len(c1))
			}
		}
	}
}

// A ticket of the committee that serves an epoch that drew nobody is still live: a node that missed
// it (a light client that starts after epoch 0's tickets went round at genesis) takes it from a
// peer's live view after the epoch's grace, and Serving counts it. Once a later epoch drew someone,
// or more than MaxCarry epochs on, the same ticket is over.
func TestTrackerTakesTheCarriedCommitteesTickets(t *testing.T) {
	type held struct {
		c   testCand
		msg *pb.IndexerTicket
	}
	// setup: epoch 0 drawn and delivered; epoch 1's winners draw but their tickets reach nobody, and
	// nobody publishes for the epochs after it up to last. It returns epoch 1's tickets.
	setup := func(t *testing.T, last uint64) (*sim, []held) {
		s := newSim(t, 1, 10)
		s.draw(0, genesis.Add(-time.Second))
		s.advance(0)
		var hs []held
		for _, c := range s.cands {
			if msg := s.trackers[0].Draw(1, c.id, c.sk); msg != nil {
				hs = append(hs, held{c, msg})
			}
		}
		if len(hs) < 2 {
			t.Fatalf("epoch 1 drew %d: pick candidates that draw at least two", len(hs))
		}
		for e := uint64(1); e <= last; e++ {
			s.advance(e)
		}
		return s, hs
	}
	after := func(s *sim, e uint64) time.Time { return s.cfg.Schedule.Start(e).Add(2 * s.trackers[0].cfg.Grace) }

	t.Run("carried", func(t *testing.T) {
		s, hs := setup(t, 2)
		tr := s.trackers[0]
		now := after(s, 2)
		if serving, _ := tr.Serving(2); len(serving) != len(tr.Committee(0)) {
			t.Fatalf("epoch 2 served by %d before epoch 1's tickets came, want epoch 0's %d", len(serving), len(tr.Committee(0)))
		}
		if _, err := tr.Add(hs[0].msg, hs[0].c.id, rawOf(hs[0].msg), now); err != nil {
			t.Fatalf("epoch 1's ticket in epoch 2, which drew nobody: %v", err)
		}
		if serving, from := tr.Serving(2); from != 1 || len(serving) != 1 || serving[0].ID != hs[0].c.id {
			t.Fatalf("epoch 2 served by %d of epoch %d's committee, want epoch 1's ticket", len(serving), from)
		}
		if _, ok := tr.Sealed(1); !ok || len(s.records[1]) != 0 {
			t.Fatal("epoch 1's sealed set changed")
		}
		if got, _ := tr.Seed(3); got != s.seeds[3] {
			t.Fatal("a carried ticket changed seed(3)")
		}
		// Epoch 2 draws someone after all (a ticket that reached this node late): epoch 1's
		// committee no longer serves, and its other ticket is over.
		seed2, _ := tr.Seed(2)
		var drew bool
		for _, c := range s.cands {
			if msg := tr.Draw(2, c.id, c.sk); msg != nil && bytes.Equal(msg.Seed, seed2[:]) {
				if _, err := tr.Add(msg, c.id, rawOf(msg), now); err != nil {
					t.Fatal(err)
				}
				drew = true
				break
			}
		}
		if !drew {
			t.Fatal("epoch 2 draws nobody: pick other keys")
		}
		_, err := tr.Add(hs[1].msg, hs[1].c.id, rawOf(hs[1].msg), now)
		if TicketReason(err) != TicketWrongEpoch {
			t.Fatalf("epoch 1's ticket once epoch 2 drew someone: %v, want %s", err, TicketWrongEpoch)
		}
	})
	t.Run("more than MaxCarry back", func(t *testing.T) {
		last := uint64(2 + MaxCarry)
		s, hs := setup(t, last)
		tr := s.trackers[0]
		if _, err := tr.Add(hs[0].msg, hs[0].c.id, rawOf(hs[0].msg), after(s, 1+MaxCarry)); err != nil {
			t.Fatalf("epoch 1's ticket %d epochs on, all empty: %v", MaxCarry, err)
		}
		_, err := tr.Add(hs[1].msg, hs[1].c.id, rawOf(hs[1].msg), after(s, last))
		if TicketReason(err) != TicketWrongEpoch {
			t.Fatalf("epoch 1's ticket %d epochs on: %v, want %s", last-1, err, TicketWrongEpoch)
		}
	})
}

// TestTrackerRecency: a sealed committee member's next tickets carry its recent selections.
func TestTrackerRecency(t *testing.T) {
	s := newSim(t, 1, 10)
	tr := s.trackers[0]
	s.draw(0, genesis.Add(-time.Second))
	for e := uint64(0); e < 6; e++ {
		s.advance(e)
		s.draw(e+1, s.cfg.Schedule.Start(e))
		for _, c := range s.cands {
			want := uint32(0)
			for k := uint64(1); k <= 2 && k <= e+1; k++ {
				if slices.ContainsFunc(s.records[e+1-k], func(tk *Ticket) bool { return tk.ID == c.id }) {
					want++
				}
			}
			if got := tr.recentOf(e+1, c.id); got != want {
				t.Fatalf("epoch %d, %s: recent %d, want %d", e+1, c.id, got, want)
			}
		}
	}
}

// catchUp does what a node does when it starts late: import what it must, advance, repeat. It imports
// the sealed sets of records, or the tickets of override where it has the epoch.
func catchUp(t *testing.T, tr *Tracker, now time.Time, records map[uint64][]*Ticket, override map[uint64][]ImportedTicket) (imported []uint64) {
	t.Helper()
	for {
		if e, ok := tr.NeedImport(now); ok {
			rec, ok := records[e]
			if !ok {
				t.Fatalf("no committee record of epoch %d to import", e)
			}
			tickets, ok := override[e]
			if !ok {
				tickets = importedOf(rec)
			}
			if _, err := tr.ImportSealed(e, tickets); err != nil {
				t.Fatal(err)
			}
			imported = append(imported, e)
			continue
		}
		if seeded, _ := tr.Advance(now); len(seeded) == 0 {
			return imported
		}
	}
}

func importedOf(set []*Ticket) []ImportedTicket {
	out := make([]ImportedTicket, len(set))
	for i, tk := range set {
		out[i] = ImportedTicket{Msg: tk.Msg, Signer: tk.ID, Raw: tk.Raw}
	}
	return out
}

func TestTrackerLateJoinerImports(t *testing.T) {
	// As node/epoch.go does today, nobody draws for epoch 0 before genesis: its sealed set is empty
	// (TestTrackerLateJoinerEpochZero covers the other case).
	s := newSim(t, 3, 10)
	sched := s.cfg.Schedule
	for e := uint64(0); e <= 5; e++ {
		s.advance(e)
		s.draw(e+1, sched.Start(e))
	}
	if len(s.records[1]) == 0 || len(s.records[2]) == 0 {
		t.Fatal("epochs 1 and 2 need a committee; pick other keys")
	}
	// Joins during epoch 5, after the tickets of 6 went round: it must import 1..6.
	joined := sched.Start(5).Add(3 * time.Second)
	lj := newTracker(t, s.cfg, joined)
	// The record of epoch 1 it finds comes with junk before the real tickets: only those are kept.
	real1 := importedOf(s.records[1])
	forged := proto.Clone(real1[0].Msg).(*pb.IndexerTicket)
	forged.VrfProof[5] ^= 1
	other := s.records[2][0]
	junk := []ImportedTicket{
		{Msg: forged, Signer: real1[0].Signer, Raw: []byte("forged")}, // bad proof
		{Msg: real1[0].Msg, Signer: "someone else"},                   // not its signer
		{Msg: other.Msg, Signer: other.ID, Raw: other.Raw},            // another epoch
		{},
	}
	imported := catchUp(t, lj, joined, s.records, map[uint64][]ImportedTicket{1: append(junk, real1...)})
	if len(imported) == 0 || imported[len(imported)-1] != 5 || !slices.Contains(imported, 1) {
		t.Fatalf("imported %v, want 1..5", imported)
	}
	if set, ok := lj.Sealed(1); !ok || len(set) != len(real1) {
		t.Fatalf("sealed set of 1 has %d tickets, want %d", len(set), len(real1))
	}
	if _, err := lj.ImportSealed(1, real1); err == nil {
		t.Error("epoch 1 imported twice")
	}
	if _, err := lj.ImportSealed(9, nil); err == nil {
		t.Error("epoch 9 imported without its seed")
	}
	if e, ok := lj.NeedImport(joined); ok {
		t.Fatalf("NeedImport = %d before epoch 6 starts", e)
	}
	s.late = lj
	for e := uint64(6); e < 10; e++ {
		s.advance(e)
		if e == 6 { // the tickets of 6 went round before it joined
			if imported := catchUp(t, lj, sched.Start(e), s.records, nil); !slices.Equal(imported, []uint64{6}) {
				t.Fatalf("imported %v at the start of 6, want [6]", imported)
			}
		} else { // it followed epoch 7 on: it seals by itself
			if seeded, _ := lj.Advance(sched.Start(e)); !slices.Equal(seeded, []uint64{e + 1}) {
				t.Fatalf("late joiner seeded %v at the start of %d", seeded, e)
			}
		}
		s.draw(e+1, sched.Start(e))
	}
	for e := uint64(5); e <= 10; e++ {
		if got, ok := lj.Seed(e); !ok || got != s.seeds[e] {
			t.Errorf("late joiner's seed(%d) differs from the network's", e)
		}
		if e < 10 {
			if got, _ := lj.Digest(e); got != s.digests[e] {
				t.Errorf("late joiner's committee of %d differs from the network's", e)
			}
		}
	}
}

// A node that starts long after genesis (more epochs than the tracker keeps) first advances, as
// node and light client do, then imports every epoch from 1: pruning must not drop the epochs it has
// yet to import, nor the recency behind them. (It did: from epoch 8 on, a fresh tracker pruned the
// seed of epoch 1 and found nothing to import, and light clients found no indexers.)
func TestTrackerLateJoinerFarFromGenesis(t *testing.T) {
	s := newSim(t, 3, 10)
	sched := s.cfg.Schedule
	last := uint64(3*(max(int(s.cfg.Params.RecencyWindow), MaxCarry)+2) + 1)
	for e := uint64(0); e <= last; e++ {
		s.advance(e)
		s.draw(e+1, sched.Start(e))
	}
	joined := sched.Start(last).Add(time.Second)
	lj := newTracker(t, s.cfg, joined)
	lj.Advance(joined)
	if e, ok := lj.NeedImport(joined); !ok || e != 1 {
		t.Fatalf("NeedImport = %d, %v after the first Advance in epoch %d: want epoch 1", e, ok, last)
	}
	imported := catchUp(t, lj, joined, s.records, nil)
	if len(imported) != int(last) || imported[0] != 1 || imported[len(imported)-1] != last {
		t.Fatalf("imported %v, want 1..%d", imported, last)
	}
	for _, e := range []uint64{last - 2, last - 1, last, last + 1} {
		if got, ok := lj.Seed(e); !ok || got != s.seeds[e] {
			t.Errorf("late joiner's seed(%d) differs from the network's", e)
		}
	}
	if got, _ := lj.Digest(last); got != s.digests[last] {
		t.Errorf("late joiner's committee of %d differs from the network's", last)
	}
	if n := len(lj.epochs); n > int(last)/2 {
		t.Errorf("the tracker still holds %d epochs after catching up to %d", n, last)
	}
}

// TestTrackerLateJoinerEpochZero: a node that starts after genesis derives the network's seeds even
// when epoch 0's winners published before genesis, which the Tracker allows (docs/EPOCHS.md: epoch 0
// is never sealed; seed(1) mixes nothing).
func TestTrackerLateJoinerEpochZero(t *testing.T) {
	s := newSim(t, 3, 10)
	s.draw(0, genesis.Add(-time.Second))
	if len(s.trackers[0].Committee(0)) == 0 {
		t.Fatal("epoch 0 has no committee; pick other keys")
	}
	for e := uint64(0); e < 3; e++ {
		s.advance(e)
		s.draw(e+1, s.cfg.Schedule.Start(e))
	}
	joined := s.cfg.Schedule.Start(2).Add(time.Second)
	lj := newTracker(t, s.cfg, joined)
	catchUp(t, lj, joined, s.records, nil)
	for e := uint64(1); e <= 3; e++ {
		if got, _ := lj.Seed(e); got != s.seeds[e] {
			t.Errorf("late joiner's seed(%d) differs from the network's", e)
		}
	}
}

// TestTrackerSealsOnlyTimelyTickets: a ticket of epoch e that arrives after e started (every candidate
// draws epoch 0 at genesis; a node that starts late draws for the running epoch) must not enter the
// sealed set of a node whose Advance runs a few milliseconds late, or its seed(e+1) differs from the
// network's and it rejects every later ticket as wrong_seed.
func TestTrackerSealsOnlyTimelyTickets(t *testing.T) {
	for _, e := range []uint64{0, 2} {
		t.Run(fmt.Sprint("epoch ", e), func(t *testing.T) {
			s := newSim(t, 2, 10)
			prompt, slow := s.trackers[0], s.trackers[1]
			start := s.cfg.Schedule.Start(e)
			late := s.cands // the winners of e that publish only once e has started
			for k := uint64(0); k < e; k++ {
				s.advance(k)
				if k+1 < e {
					s.draw(k+1, s.cfg.Schedule.Start(k))
					continue
				}
				i := slices.IndexFunc(s.cands, func(c testCand) bool { return prompt.Draw(e, c.id, c.sk) != nil })
				if i < 0 {
					t.Fatalf("nobody won epoch %d; pick other keys", e)
				}
				late = s.cands[i : i+1]
				s.drawIf(e, s.cfg.Schedule.Start(k), func(c testCand) bool { return c.id != late[0].id })
			}
			prompt.Advance(start)
			n := 0
			for _, c := range late {
				if msg := prompt.Draw(e, c.id, c.sk); msg != nil {
					n++
					if _, err := slow.Add(msg, c.id, rawOf(msg), start.Add(time.Millisecond)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n == 0 {
				t.Fatalf("nobody won epoch %d; pick other keys", e)
			}
			slow.Advance(start.Add(5 * time.Millisecond))
			a, _ := prompt.Seed(e + 1)
			b, _ := slow.Seed(e + 1)
			if a != b {
				t.Fatalf("seed(%d) depends on when each node's Advance ran", e+1)
			}
		})
	}
}

// ticketFixture is a tracker before genesis, a winner's valid ticket of epoch 0 and a loser.
type ticketFixture struct {
	cfg    Config
	cands  []testCand
	alloc  Allocation
	win    testCand
	ticket *pb.IndexerTicket
	lose   testCand
}

func newTicketFixture(t testing.TB) ticketFixture {
	t.Helper()
	cands, alloc := testCandidates(10)
	f := ticketFixture{cfg: testConfig(alloc), cands: cands, alloc: alloc}
	tr := newTracker(t, f.cfg, genesis.Add(-time.Minute))
	for i, c := range cands[:len(cands)-1] {
		if msg := tr.Draw(0, c.id, c.sk); msg != nil && f.ticket == nil {
			f.win, f.ticket = cands[i], msg
		} else if msg == nil {
			f.lose = cands[i]
		}
	}
	if f.ticket == nil || f.lose.id == "" {
		t.Fatal("need a winner and a loser in epoch 0; pick other keys")
	}
	return f
}

// losingTicket is the loser's genuine draw, claiming one seat.
func (f ticketFixture) losingTicket() *pb.IndexerTicket {
	seed := f.cfg.GenesisSeed
	proof, _ := Prove(f.lose.sk, Alpha(seed, 0, RoleIndexer))
	c := f.alloc[slices.IndexFunc(f.alloc, func(c Candidate) bool { return c.ID == f.lose.id })]
	return &pb.IndexerTicket{
		PeerId: []byte(f.lose.id), Epoch: 0, Role: string(RoleIndexer), VrfProof: proof[:], Seats: 1,
		Stake: c.Stake.Bytes(), QualityPpm: c.QualityPPM, Seed: seed[:],
	}
}

func TestTrackerAddRejects(t *testing.T) {
	f := newTicketFixture(t)
	outsider := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x99}, ed25519.SeedSize))
	zero := f.cands[len(f.cands)-1]
	before := genesis.Add(-time.Second)
	grace := min(testLength/10, 30*time.Second)
	edit := func(fn func(m *pb.IndexerTicket)) *pb.IndexerTicket {
		m := proto.Clone(f.ticket).(*pb.IndexerTicket)
		fn(m)
		return m
	}
	ownDraw := func(c testCand, e uint64) *pb.IndexerTicket {
		seed := f.cfg.GenesisSeed
		proof, _ := Prove(c.sk, Alpha(seed, e, RoleIndexer))
		return &pb.IndexerTicket{
			PeerId: []byte(c.id), Epoch: e, Role: string(RoleIndexer), VrfProof: proof[:], Seats: 1,
			Stake: ethers(1).Bytes(), Seed: seed[:],
		}
	}
	cases := []struct {
		name   string
		msg    *pb.IndexerTicket
		signer string // "": the ticket's peer
		now    time.Time
		reason string
	}{
		{"valid", f.ticket, "", before, ""},
		{"valid until the end of the next epoch's grace", f.ticket, "", genesis.Add(testLength + grace - time.Nanosecond), ""},
		{"forged proof", edit(func(m *pb.IndexerTicket) { m.VrfProof[40] ^= 0x80 }), "", before, TicketBadProof},
		{"another peer's ticket", f.ticket, f.lose.id, before, TicketSignerMismatch},
		{"replayed after the grace", f.ticket, "", genesis.Add(testLength + grace), TicketWrongEpoch},
		{"replayed epochs later", f.ticket, "", genesis.Add(5 * testLength), TicketWrongEpoch},
		{"three epochs ahead", edit(func(m *pb.IndexerTicket) { m.Epoch = 3 }), "", before, TicketWrongEpoch},
		{"two epochs ahead", edit(func(m *pb.IndexerTicket) { m.Epoch = 2 }), "", before, TicketUnknownSeed},
		{"more seats", edit(func(m *pb.IndexerTicket) { m.Seats++ }), "", before, TicketLosing},
		{"fewer seats", edit(func(m *pb.IndexerTicket) { m.Seats = 0 }), "", before, TicketLosing},
		{"a loser's draw", f.losingTicket(), "", before, TicketLosing},
		{"stake", edit(func(m *pb.IndexerTicket) {
			m.Stake = new(big.Int).Add(new(big.Int).SetBytes(m.Stake), big.NewInt(1)).Bytes()
		}), "", before, TicketWeightMismatch},
		{"quality", edit(func(m *pb.IndexerTicket) { m.QualityPpm++ }), "", before, TicketWeightMismatch},
		{"recent", edit(func(m *pb.IndexerTicket) { m.Recent = 1 }), "", before, TicketWeightMismatch},
		{"not a candidate", ownDraw(testCand{id: "outsider", sk: outsider}, 0), "", before, TicketNotCandidate},
		{"no stake", ownDraw(zero, 0), "", before, TicketNotCandidate},
		{"seed", edit(func(m *pb.IndexerTicket) { m.Seed[0] ^= 1 }), "", before, TicketWrongSeed},
		{"role", edit(func(m *pb.IndexerTicket) { m.Role = "checker" }), "", before, TicketMalformed},
		{"short proof", edit(func(m *pb.IndexerTicket) { m.VrfProof = m.VrfProof[:ProofSize-1] }), "", before, TicketMalformed},
		{"long seed", edit(func(m *pb.IndexerTicket) { m.Seed = append(m.Seed, 0) }), "", before, TicketMalformed},
		{"nil", nil, "x", before, TicketMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker(t, f.cfg, genesis.Add(-time.Minute))
			signer := tc.signer
			if signer == "" {
				signer = string(tc.msg.PeerId)
			}
			tk, err := tr.Add(tc.msg, signer, []byte("raw"), tc.now)
			if got := TicketReason(err); got != tc.reason {
				t.Fatalf("Add: %v (reason %q), want reason %q", err, got, tc.reason)
			}
			if tc.reason == "" {
				if tk == nil || tk.ID != signer || tk.Seats != tc.msg.Seats || len(tr.Committee(0)) != 1 {
					t.Fatalf("accepted ticket %+v, committee %d", tk, len(tr.Committee(0)))
				}
				return
			}
			if tk != nil || len(tr.Committee(tc.msg.GetEpoch())) != 0 {
				t.Fatal("a refused ticket was kept")
			}
			var te *TicketError
			if !errors.Is(err, ErrTicket) || !errors.As(err, &te) || te.Ignorable() != (tc.reason == TicketUnknownSeed) {
				t.Fatalf("%v: not an ErrTicket, or Ignorable wrong for %q", err, tc.reason)
			}
		})
	}
}

func TestTrackerAddDuplicate(t *testing.T) {
	f := newTicketFixture(t)
	tr := newTracker(t, f.cfg, genesis.Add(-time.Minute))
	id := f.win.id
	if _, err := tr.Add(f.ticket, id, []byte("first"), genesis); err != nil {
		t.Fatal(err)
	}
	_, err := tr.Add(proto.Clone(f.ticket).(*pb.IndexerTicket), id, []byte("again"), genesis)
	var te *TicketError
	if TicketReason(err) != TicketDuplicate || !errors.As(err, &te) || !te.Ignorable() {
		t.Fatalf("second Add: %v, want an ignorable duplicate", err)
	}
	if c := tr.Committee(0); len(c) != 1 || string(c[0].Raw) != "first" {
		t.Fatal("the duplicate replaced the first ticket")
	}
}

func TestTrackerPendingUntilSeedKnown(t *testing.T) {
	s := newSim(t, 2, 10)
	ahead, behind := s.trackers[0], s.trackers[1]
	ahead.Advance(genesis)
	var tickets []*pb.IndexerTicket
	for _, c := range s.cands {
		if msg := ahead.Draw(1, c.id, c.sk); msg != nil {
			tickets = append(tickets, msg)
			if _, err := ahead.Add(msg, c.id, rawOf(msg), genesis); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(tickets) == 0 {
		t.Fatal("nobody won epoch 1; pick other keys")
	}
	for _, msg := range tickets {
		_, err := behind.Add(msg, string(msg.PeerId), rawOf(msg), genesis.Add(-time.Millisecond))
		var te *TicketError
		if TicketReason(err) != TicketUnknownSeed || !errors.As(err, &te) || !te.Ignorable() {
			t.Fatalf("Add before seed(1) is known: %v, want an ignorable unknown_seed", err)
		}
	}
	if len(behind.Committee(1)) != 0 {
		t.Fatal("pending tickets are in the committee")
	}
	seeded, accepted := behind.Advance(genesis)
	if !slices.Equal(seeded, []uint64{1}) || len(accepted) != len(tickets) {
		t.Fatalf("Advance: seeded %v, accepted %d; want [1], %d", seeded, len(accepted), len(tickets))
	}
	for _, tk := range accepted {
		if tk.Epoch != 1 || !slices.ContainsFunc(tickets, func(m *pb.IndexerTicket) bool { return string(m.PeerId) == tk.ID }) {
			t.Fatalf("accepted %s of epoch %d", tk.ID, tk.Epoch)
		}
	}
	a, _ := ahead.Digest(1)
	if b, n := behind.Digest(1); a != b || n != len(tickets) {
		t.Fatal("committee of 1 differs after the pending tickets were accepted")
	}
	if _, accepted := behind.Advance(genesis.Add(time.Second)); len(accepted) != 0 {
		t.Fatalf("accepted %d pending tickets a second time", len(accepted))
	}
}

func TestTrackerCheckRecord(t *testing.T) {
	f := newTicketFixture(t)
	tr := newTracker(t, f.cfg, genesis.Add(-time.Minute))
	good := []ImportedTicket{{Msg: f.ticket, Signer: f.win.id}}
	if err := tr.CheckRecord(0, good); err != nil {
		t.Fatalf("good record: %v", err)
	}
	if _, err := tr.Add(f.ticket, f.win.id, nil, genesis); err != nil {
		t.Fatal(err)
	}
	if err := tr.CheckRecord(0, good); err != nil {
		t.Fatalf("record of a ticket the node holds: %v", err)
	}
	if len(tr.Committee(0)) != 1 {
		t.Fatal("CheckRecord changed the committee")
	}
	if err := tr.CheckRecord(0, []ImportedTicket{{Msg: f.losingTicket(), Signer: f.lose.id}}); TicketReason(err) != TicketLosing {
		t.Fatalf("record with a losing ticket: %v", err)
	}
	if err := tr.CheckRecord(0, []ImportedTicket{good[0], {Msg: f.ticket, Signer: f.lose.id}}); TicketReason(err) != TicketSignerMismatch {
		t.Fatalf("record with another peer's ticket: %v", err)
	}
	if err := tr.CheckRecord(7, []ImportedTicket{{Msg: f.losingTicket(), Signer: f.lose.id}}); err != nil {
		t.Fatalf("epoch of unknown seed: %v, want nil (cannot tell)", err)
	}
}

func TestTrackerConfigValidate(t *testing.T) {
	_, alloc := testCandidates(3)
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		ok   bool
	}{
		{"valid", func(*Config) {}, true},
		{"no genesis", func(c *Config) { c.Schedule.Genesis = time.Time{} }, false},
		{"short epochs", func(c *Config) { c.Schedule.Length = time.Second - 1 }, false},
		{"no committee", func(c *Config) { c.Params.Expected = 0 }, false},
		{"no stakes", func(c *Config) { c.Stakes = nil }, false},
	} {
		cfg := testConfig(alloc)
		tc.edit(&cfg)
		if _, err := NewTracker(cfg, genesis); (err == nil) != tc.ok {
			t.Errorf("%s: NewTracker error %v", tc.name, err)
		}
	}
	for _, tc := range []struct{ length, grace, want time.Duration }{
		{10 * time.Second, 0, time.Second},
		{15 * time.Minute, 0, 30 * time.Second},
		{15 * time.Minute, 5 * time.Second, 5 * time.Second},
	} {
		cfg := Config{Schedule: Schedule{Genesis: genesis, Length: tc.length}, Params: Params{Expected: 1}, Stakes: alloc, Grace: tc.grace}
		if err := cfg.Validate(); err != nil || cfg.Grace != tc.want {
			t.Errorf("epoch %s, grace %s: Validate = %v, grace %s; want %s", tc.length, tc.grace, err, cfg.Grace, tc.want)
		}
	}
}

func TestNextSeed(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	outs := make([]Output, 7)
	for i := range outs {
		outs[i] = randOutput(rng)
	}
	prev := Seed{1, 2, 3}
	orig := slices.Clone(outs)
	base := NextSeed(prev, 5, []byte("mix"), outs)
	for range 10 {
		shuffled := slices.Clone(outs)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if NextSeed(prev, 5, []byte("mix"), shuffled) != base {
			t.Fatal("NextSeed depends on the order of the outputs")
		}
	}
	if !slices.Equal(outs, orig) {
		t.Fatal("NextSeed reordered its argument")
	}
	variants := map[string]Seed{
		"prev":       NextSeed(Seed{1, 2, 4}, 5, []byte("mix"), outs),
		"epoch":      NextSeed(prev, 6, []byte("mix"), outs),
		"mix":        NextSeed(prev, 5, []byte("miy"), outs),
		"no mix":     NextSeed(prev, 5, nil, outs),
		"one fewer":  NextSeed(prev, 5, []byte("mix"), outs[1:]),
		"no outputs": NextSeed(prev, 5, []byte("mix"), nil),
		"duplicated": NextSeed(prev, 5, []byte("mix"), append(slices.Clone(outs), outs[0])),
	}
	seen := map[Seed]string{base: "base"}
	for name, s := range variants {
		if other, dup := seen[s]; dup {
			t.Errorf("NextSeed with a different %s equals the one with %s", name, other)
		}
		seen[s] = name
	}
	if NextSeed(prev, 5, nil, nil) != NextSeed(prev, 5, []byte{}, []Output{}) {
		t.Error("nil and empty mix or outputs differ")
	}
}

func TestSchedule(t *testing.T) {
	s := Schedule{Genesis: genesis, Length: testLength}
	for _, tc := range []struct {
		at   time.Time
		want uint64
	}{
		{genesis.Add(-365 * 24 * time.Hour), 0},
		{genesis.Add(-time.Nanosecond), 0},
		{genesis, 0},
		{genesis.Add(testLength - time.Nanosecond), 0},
		{genesis.Add(testLength), 1},
		{genesis.Add(7*testLength + testLength/2), 7},
		{genesis.Add(1000 * testLength), 1000},
	} {
		if got := s.Epoch(tc.at); got != tc.want {
			t.Errorf("Epoch(genesis%+v) = %d, want %d", tc.at.Sub(genesis), got, tc.want)
		}
	}
	for e := uint64(0); e < 5; e++ {
		if got := s.Start(e); !got.Equal(genesis.Add(time.Duration(e)*testLength)) || s.Epoch(got) != e || s.Epoch(got.Add(-time.Nanosecond)) != max(e, 1)-1 {
			t.Errorf("Start(%d) = %v is not where epoch %d begins", e, got, e)
		}
	}
	for _, tc := range []struct {
		at   time.Time
		e    uint64
		want time.Duration
	}{
		{genesis.Add(-time.Minute), 0, time.Minute},
		{genesis.Add(-time.Minute), 2, time.Minute + 2*testLength},
		{genesis, 0, 0},
		{genesis.Add(time.Nanosecond), 0, 0},
		{genesis.Add(3 * testLength), 3, 0},
		{genesis.Add(3*testLength - time.Nanosecond), 3, time.Nanosecond},
		{genesis.Add(5 * testLength), 3, 0},
	} {
		if got := s.Until(tc.at, tc.e); got != tc.want {
			t.Errorf("Until(genesis%+v, %d) = %s, want %s", tc.at.Sub(genesis), tc.e, got, tc.want)
		}
	}
	for _, bad := range []Schedule{{Length: testLength}, {Genesis: genesis, Length: time.Second - 1}, {Genesis: genesis}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v validates", bad)
		}
	}
	if err := (Schedule{Genesis: genesis, Length: time.Second}).Validate(); err != nil {
		t.Errorf("1 s epochs: %v", err)
	}
}

// FuzzTrackerAdd: whatever a peer sends, Add never panics and accepts only tickets that a naive
// check of the election rules accepts.
func FuzzTrackerAdd(f *testing.F) {
	fx := newTicketFixture(f)
	valid, err := proto.Marshal(fx.ticket)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, false)
	f.Add(valid, true)
	losing, _ := proto.Marshal(fx.losingTicket())
	f.Add(losing, false)
	f.Add(valid[:len(valid)-1], false)
	f.Add([]byte{}, false)
	// The naive rule: a candidate with stake, its proof on seed(0) verifies, and its seats are the
	// draw's.
	total := new(big.Int)
	for _, c := range fx.alloc {
		total.Add(total, Weight(WeightInputs{Stake: c.Stake, QualityPPM: c.QualityPPM}))
	}
	seed := fx.cfg.GenesisSeed
	naive := func(m *pb.IndexerTicket) bool {
		i := slices.IndexFunc(fx.alloc, func(c Candidate) bool { return c.ID == string(m.PeerId) })
		if i < 0 || m.Role != "indexer" || m.Epoch != 0 || !bytes.Equal(m.Seed, seed[:]) || m.Recent != 0 {
			return false
		}
		c := fx.alloc[i]
		if new(big.Int).SetBytes(m.Stake).Cmp(c.Stake) != 0 || m.QualityPpm != c.QualityPPM {
			return false
		}
		out, err := Verify(c.Key, m.VrfProof, Alpha(seed, 0, RoleIndexer))
		if err != nil {
			return false
		}
		w := Weight(WeightInputs{Stake: c.Stake, QualityPPM: c.QualityPPM})
		seats := Seats(out, w, total, fx.cfg.Params)
		return seats > 0 && seats == m.Seats
	}
	f.Fuzz(func(t *testing.T, data []byte, otherSigner bool) {
		msg := new(pb.IndexerTicket)
		if proto.Unmarshal(data, msg) != nil {
			return
		}
		signer := string(msg.PeerId)
		if otherSigner {
			signer = fx.lose.id
		}
		tr := newTracker(t, fx.cfg, genesis.Add(-time.Minute))
		tk, err := tr.Add(msg, signer, data, genesis)
		if err != nil {
			if tk != nil || TicketReason(err) == "" {
				t.Fatalf("Add returned %v with error %v", tk, err)
			}
			return
		}
		if signer != string(msg.PeerId) || !naive(msg) {
			t.Fatalf("accepted an invalid ticket %v signed by %q", msg, signer)
		}
		if tk.ID != signer || tk.Seats != msg.Seats || tk.Epoch != 0 {
			t.Fatalf("accepted ticket %+v does not match its message", tk)
		}
	})
}

// TestTrackerResyncsAfterASplitSeal: one tracker receives a ticket of epoch e-1 just after e-1
// started while the others had it before, so it seals e-1 without it and derives another seed for e.
// The winners of e (drawn on the majority's seed) are evidence (other_seed, not a fault of theirs);
// once they outnumber its own view, Resync finds the set that explains their seed and the tracker
// agrees again.
func TestTrackerResyncsAfterASplitSeal(t *testing.T) {
	cands, alloc := testCandidates(10)
	cfg := testConfig(alloc)
	cfg.Params.Expected = 6
	const e = 3 // epoch whose seed splits: e-1's set is sealed differently
	for attempt := range 50 {
		cfg.GenesisSeed = sha256.Sum256(fmt.Appendf(nil, "resync %d", attempt))
		a := newTracker(t, cfg, genesis.Add(-time.Minute))
		b := newTracker(t, cfg, genesis.Add(-time.Minute))
		both := []*Tracker{a, b}
		// Epochs before e-1 and e-1's draws: b gets one of e-1's tickets late.
		var late *pb.IndexerTicket
		for k := uint64(0); k < e-1; k++ {
			at := cfg.Schedule.Start(k)
			for _, tr := range both {
				tr.Advance(at)
			}
			next := k + 1
			var winners []*pb.IndexerTicket
			for _, c := range cands {
				if tk := a.Draw(next, c.id, c.sk); tk != nil {
					winners = append(winners, tk)
				}
			}
			for i, tk := range winners {
				if _, err := a.Add(tk, string(tk.PeerId), rawOf(tk), at.Add(time.Second)); err != nil {
					t.Fatal(err)
				}
				when := at.Add(time.Second)
				if next == e-1 && i == 0 {
					late, when = tk, cfg.Schedule.Start(next).Add(time.Second) // after e-1 started
				}
				if _, err := b.Add(tk, string(tk.PeerId), rawOf(tk), when); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, tr := range both {
			tr.Advance(cfg.Schedule.Start(e - 1))
		}
		if late == nil {
			continue // nobody won e-1 with this genesis: try another
		}
		sa, _ := a.Seed(e)
		sb, _ := b.Seed(e)
		if sa == sb {
			t.Fatal("a ticket that arrived after its epoch started was sealed")
		}
		// e's winners draw on a's (the majority's) seed; b holds them as evidence.
		var winners []*pb.IndexerTicket
		for _, c := range cands {
			if tk := a.Draw(e, c.id, c.sk); tk != nil {
				winners = append(winners, tk)
			}
		}
		if len(winners) < 2 {
			continue
		}
		at := cfg.Schedule.Start(e - 1).Add(2 * time.Second)
		for _, tk := range winners {
			if _, err := a.Add(tk, string(tk.PeerId), rawOf(tk), at); err != nil {
				t.Fatal(err)
			}
			_, err := b.Add(tk, string(tk.PeerId), rawOf(tk), at)
			if r := TicketReason(err); r != TicketOtherSeed {
				t.Fatalf("b: %v (%s), want %s", err, r, TicketOtherSeed)
			}
		}
		want, ok := b.Divergence(e)
		if !ok || want != sa {
			t.Fatalf("Divergence(%d) = %x, %v: want a's seed", e, want[:4], ok)
		}
		accepted, err := b.Resync(e, want)
		if err != nil {
			t.Fatal(err)
		}
		if len(accepted) != len(winners) {
			t.Errorf("resync accepted %d of %d winners", len(accepted), len(winners))
		}
		if s, _ := b.Seed(e); s != sa {
			t.Error("b's seed still differs after the resync")
		}
		da, _ := a.Digest(e)
		db, _ := b.Digest(e)
		if da != db {
			t.Error("committees differ after the resync")
		}
		// Both seal e the same way now.
		a.Advance(cfg.Schedule.Start(e))
		b.Advance(cfg.Schedule.Start(e))
		s1, _ := a.Seed(e + 1)
		s2, _ := b.Seed(e + 1)
		if s1 != s2 {
			t.Error("seeds of the next epoch differ after the resync")
		}
		return
	}
	t.Fatal("no genesis among 50 gave a split with two winners")
}

// TestTrackerCheckpoint: a tracker started from a checkpoint another made goes on as the network
// does: it imports only the epochs after the checkpoint, derives the same seeds and holds the same
// committees; its own checkpoint later is the network's. Checkpoints that miss an epoch they must
// cover, hold one they must not, or carry a malformed ticket are refused.
func TestTrackerCheckpoint(t *testing.T) {
	s := newSim(t, 3, 10)
	sched := s.cfg.Schedule
	depth := s.trackers[0].CheckpointDepth()
	last := 3*depth + 5
	mid := depth + 3
	var cp Checkpoint
	for e := uint64(0); e <= last; e++ {
		s.advance(e)
		s.draw(e+1, sched.Start(e))
		if e == mid {
			var ok bool
			if cp, ok = s.trackers[0].Checkpoint(mid + 1); !ok {
				t.Fatalf("no checkpoint of epoch %d", mid+1)
			}
		}
	}
	if len(cp.Sealed) != int(depth) || cp.Seed != s.seeds[mid+1] {
		t.Fatalf("checkpoint of %d: %d sealed sets, seed %x; want %d and the network's", cp.Epoch, len(cp.Sealed), cp.Seed[:4], depth)
	}
	joined := sched.Start(last).Add(time.Second)
	lj, err := NewTrackerFrom(s.cfg, joined, cp)
	if err != nil {
		t.Fatal(err)
	}
	imported := catchUp(t, lj, joined, s.records, nil)
	if len(imported) != int(last-mid) || imported[0] != mid+1 || imported[len(imported)-1] != last {
		t.Fatalf("imported %v, want %d..%d", imported, mid+1, last)
	}
	for _, e := range []uint64{last - 2, last - 1, last, last + 1} {
		if got, ok := lj.Seed(e); !ok || got != s.seeds[e] {
			t.Errorf("seed(%d) from the checkpoint differs from the network's", e)
		}
	}
	if got, _ := lj.Digest(last); got != s.digests[last] {
		t.Errorf("committee of %d from the checkpoint differs from the network's", last)
	}
	mine, ok1 := lj.Checkpoint(last + 1)
	theirs, ok2 := s.trackers[0].Checkpoint(last + 1)
	if !ok1 || !ok2 || mine.Seed != theirs.Seed || len(mine.Sealed) != len(theirs.Sealed) {
		t.Fatalf("checkpoints of %d differ: %v %v", last+1, ok1, ok2)
	}
	for e, set := range theirs.Sealed {
		if len(mine.Sealed[e]) != len(set) {
			t.Errorf("checkpoint of %d: epoch %d has %d tickets, the network's %d", last+1, e, len(mine.Sealed[e]), len(set))
		}
	}

	bad := map[string]func(*Checkpoint){
		"an epoch missing": func(c *Checkpoint) { delete(c.Sealed, c.Epoch-1) },
		"an epoch too old": func(c *Checkpoint) { c.Sealed[c.Epoch-depth-1] = nil },
		"the epoch itself": func(c *Checkpoint) { c.Sealed[c.Epoch] = nil },
		"a ticket of another epoch": func(c *Checkpoint) {
			for e, set := range c.Sealed {
				if len(set) > 0 {
					m := proto.Clone(set[0].Msg).(*pb.IndexerTicket)
					m.Epoch++
					c.Sealed[e] = append(slices.Clone(set[1:]), ImportedTicket{Msg: m, Signer: set[0].Signer, Raw: set[0].Raw})
					return
				}
			}
			t.Fatal("no ticket in the checkpoint")
		},
		"a ticket twice": func(c *Checkpoint) {
			for e, set := range c.Sealed {
				if len(set) > 0 {
					c.Sealed[e] = append(slices.Clone(set), set[0])
					return
				}
			}
		},
	}
	for name, mutate := range bad {
		c := cp
		c.Sealed = maps.Clone(cp.Sealed)
		mutate(&c)
		if _, err := NewTrackerFrom(s.cfg, joined, c); err == nil {
			t.Errorf("%s: checkpoint taken", name)
		}
	}
}

// BenchmarkCatchUpEpoch: what a joiner pays per epoch of its walk from genesis (ImportSealed: every
// ticket's weight, VRF proof and seats verified, then the next seed and every candidate's weight),
// with 64 candidates and an expected committee of 16, the production size. The tickets' envelope
// signatures are the p2p layer's, on top.
func BenchmarkCatchUpEpoch(b *testing.B) {
	const epochs = 16
	cands, alloc := testCandidates(64)
	cfg := testConfig(alloc)
	cfg.Params.Expected, cfg.Params.RecencyWindow = 16, 4
	net, err := NewTracker(cfg, genesis.Add(-time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	records := map[uint64][]ImportedTicket{}
	tickets := 0
	for e := uint64(0); e <= epochs; e++ {
		net.Advance(cfg.Schedule.Start(e))
		if e > 0 {
			set, _ := net.Sealed(e - 1)
			records[e-1] = importedOf(set)
			tickets += len(set)
		}
		for _, c := range cands {
			if msg := net.Draw(e+1, c.id, c.sk); msg != nil {
				if _, err := net.Add(msg, c.id, rawOf(msg), cfg.Schedule.Start(e)); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	joined := cfg.Schedule.Start(epochs - 1).Add(time.Second) // imports 1 .. epochs-1
	imports := 0
	b.ResetTimer()
	for b.Loop() {
		lj, _ := NewTracker(cfg, joined)
		lj.Advance(joined)
		for {
			e, ok := lj.NeedImport(joined)
			if !ok {
				break
			}
			if _, err := lj.ImportSealed(e, records[e]); err != nil {
				b.Fatal(err)
			}
			imports++
		}
	}
	if imports != b.N*(epochs-1) {
		b.Fatalf("%d imports in %d walks, want %d each", imports, b.N, epochs-1)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(imports)/1e6, "ms/epoch")
	b.ReportMetric(float64(tickets)/float64(epochs), "tickets/epoch")
}

// recentOf is id's Recent weight input in epoch e (the test reads the tracker's state).
func (t *Tracker) recentOf(e uint64, id string) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	in, _, _, _ := t.epochs[e].candidate(id)
	return in.Recent
}

// TestTrackerMemoryPerEpoch: an epoch's state costs a few bytes per candidate, and the epochs of
// one candidate list share its index (a thousand-peer simnet holds a thousand trackers of a
// thousand candidates, each with several epochs).
func TestTrackerMemoryPerEpoch(t *testing.T) {
	_, alloc := testCandidates(1000)
	tr := newTracker(t, testConfig(alloc), genesis)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for e := uint64(1); e <= 20; e++ {
		tr.setSeed(e, Seed{byte(e)})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perCand := float64(after.HeapAlloc-before.HeapAlloc) / 20 / 1000
	t.Logf("%.1f heap bytes per candidate and epoch", perCand)
	if perCand > 16 {
		t.Errorf("%.1f heap bytes per candidate and epoch: want a few (the per-candidate maps took about 250)", perCand)
	}
	if p0, p1 := tr.epochs[1].pos, tr.epochs[20].pos; reflect.ValueOf(p0).Pointer() != reflect.ValueOf(p1).Pointer() {
		t.Error("epochs of the same candidate list do not share its index")
	}
}

// drawEpochOne starts a tracker at genesis and adds, one at a time, every epoch-1 ticket that 64
// candidates draw, calling added (if set) after each.
func drawEpochOne(tb testing.TB, added func(tr *Tracker, id string)) *Tracker {
	tb.Helper()
	cands, alloc := testCandidates(64)
	cfg := testConfig(alloc)
	cfg.Params.Expected = 16
	tr := newTracker(tb, cfg, genesis.Add(-time.Minute))
	now := cfg.Schedule.Start(0)
	tr.Advance(now)
	for _, c := range cands {
		msg := tr.Draw(1, c.id, c.sk)
		if msg == nil {
			continue
		}
		if _, err := tr.Add(msg, c.id, rawOf(msg), now); err != nil {
			tb.Fatal(err)
		}
		if added != nil {
			added(tr, c.id)
		}
	}
	return tr
}

// Committee is kept sorted between calls: each added ticket shows up in the next answer, in peer ID
// order, and a caller reordering its answer changes nobody else's.
func TestCommitteeFollowsAddedTickets(t *testing.T) {
	var want []string
	drawEpochOne(t, func(tr *Tracker, id string) {
		want = append(want, id)
		slices.Sort(want)
		got := tr.Committee(1)
		ids := make([]string, len(got))
		for i, tk := range got {
			ids[i] = tk.ID
		}
		if !slices.Equal(ids, want) {
			t.Fatalf("after %d tickets: committee %q, want %q", len(want), ids, want)
		}
		slices.Reverse(got)
		if again := tr.Committee(1); again[0].ID != want[0] {
			t.Fatalf("a caller's reordering showed in the next answer: first %q, want %q", again[0].ID, want[0])
		}
	})
	if len(want) < 2 {
		t.Fatalf("%d tickets drawn: want a committee to sort", len(want))
	}
}

func BenchmarkCommittee(b *testing.B) {
	tr := drawEpochOne(b, nil)
	for b.Loop() {
		if len(tr.Committee(1)) == 0 {
			b.Fatal("no committee")
		}
	}
}
