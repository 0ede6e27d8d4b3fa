package checker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// LedgerEntry is one valid attestation as the ledger keeps it.
type LedgerEntry struct {
	Leaf         [32]byte // AttestationLeaf of the signed envelope
	Checker      string   // peer IDs, binary form
	Container    string
	Epoch        uint64
	Kind         pb.CheckKind
	Method       pb.CheckMethod
	Verdict      pb.Verdict
	IssuedUnixMs int64
	Msg          *pb.Attestation
}

// NewLedgerEntry makes the entry of an attestation and its signed envelope.
func NewLedgerEntry(a *pb.Attestation, raw []byte) LedgerEntry {
	return LedgerEntry{
		Leaf:         AttestationLeaf(raw),
		Checker:      string(a.GetChecker()),
		Container:    string(a.GetContainer()),
		Epoch:        a.GetEpoch(),
		Kind:         a.GetKind(),
		Method:       a.GetMethod(),
		Verdict:      a.GetVerdict(),
		IssuedUnixMs: a.GetIssuedUnixMs(),
		Msg:          a,
	}
}

// ledgerCheckKey is what makes two attestations the same check: checker, container, epoch, kind and
// nonce (the gossip validator's duplicate key).
func ledgerCheckKey(a *pb.Attestation) string {
	b := make([]byte, 0, 2+len(a.GetChecker())+len(a.GetContainer())+9+len(a.GetNonce()))
	b = append(b, byte(len(a.GetChecker())))
	b = append(b, a.GetChecker()...)
	b = append(b, byte(len(a.GetContainer())))
	b = append(b, a.GetContainer()...)
	b = binary.BigEndian.AppendUint64(b, a.GetEpoch())
	b = append(b, byte(a.GetKind()))
	return string(append(b, a.GetNonce()...))
}

// Prior is the Beta prior of a container's score: Alpha passes and Beta failures assumed before
// any check.
type Prior struct{ Alpha, Beta float64 }

// DefaultPrior is the uniform prior, Beta(1, 1): a container nobody checked scores 1/2, one pass
// lifts it to 2/3, one failure drops it to 1/3 (Laplace's rule of succession).
var DefaultPrior = Prior{Alpha: 1, Beta: 1}

// Score is the mean of the Beta posterior after passes and fails: (passes + Alpha) / (passes +
// fails + Alpha + Beta), in [0, 1].
func (p Prior) Score(passes, fails int) float64 {
	return (float64(passes) + p.Alpha) / (float64(passes+fails) + p.Alpha + p.Beta)
}

// LedgerConfig configures a Ledger; zero fields take the defaults.
type LedgerConfig struct {
	Prior Prior
	Rule  ConsequenceRule
}

// Ledger keeps each epoch's valid attestations (as the gossip validator delivers them) and
// derives from them each container's summary and standing and the epoch's Merkle root. Everything
// it derives depends only on the set of attestations added, never on their order: a node that saw
// them in another order, or twice, derives the same. It is safe for concurrent use.
//
// Two different attestations for the same check (same checker, container, epoch, kind and nonce:
// the checker signed twice, which the gossip validator lets only the first of through) are both
// kept, but only the one with the lower leaf counts; Equivocations lists them.
type Ledger struct {
	cfg LedgerConfig

	mu     sync.Mutex
	epochs map[uint64]*ledgerEpoch
}

type ledgerEpoch struct {
	entries map[[32]byte]*LedgerEntry // every attestation added, by leaf
	winner  map[string][32]byte       // check key -> the lowest leaf
	checks  map[string]int            // check key -> attestations for it
	// byContainer lists each container's check keys, so that what concerns one container
	// (History, Standing, Summary: every node asks them for each attestation it accepts, and a
	// checker for each container it follows, twice a second) costs what its own checks cost, not
	// the epoch's thousands.
	byContainer map[string][]string
	root        *[32]byte // cached until the next Add
}

// ErrLedger is wrapped by the Ledger's errors.
var ErrLedger = errors.New("checker: ledger")

// NewLedger makes an empty ledger.
func NewLedger(cfg LedgerConfig) (*Ledger, error) {
	if cfg.Prior == (Prior{}) {
		cfg.Prior = DefaultPrior
	}
	if cfg.Prior.Alpha <= 0 || cfg.Prior.Beta <= 0 {
		return nil, fmt.Errorf("%w: prior Beta(%v, %v) needs positive parameters", ErrLedger, cfg.Prior.Alpha, cfg.Prior.Beta)
	}
	if err := cfg.Rule.Validate(); err != nil {
		return nil, err
	}
	cfg.Rule = cfg.Rule.withDefaults()
	return &Ledger{cfg: cfg, epochs: map[uint64]*ledgerEpoch{}}, nil
}

// Add records a valid attestation and its signed envelope (the gossip validator's output; the
// ledger does not verify it). It reports whether the envelope was new.
func (l *Ledger) Add(a *pb.Attestation, raw []byte) bool {
	e := NewLedgerEntry(a, raw)
	l.mu.Lock()
	defer l.mu.Unlock()
	ep := l.epochs[e.Epoch]
	if ep == nil {
		ep = &ledgerEpoch{entries: map[[32]byte]*LedgerEntry{}, winner: map[string][32]byte{}, checks: map[string]int{}, byContainer: map[string][]string{}}
		l.epochs[e.Epoch] = ep
	}
	if _, ok := ep.entries[e.Leaf]; ok {
		return false
	}
	ep.entries[e.Leaf] = &e
	k := ledgerCheckKey(a)
	if ep.checks[k]++; ep.checks[k] == 1 {
		ep.byContainer[e.Container] = append(ep.byContainer[e.Container], k)
	}
	if w, ok := ep.winner[k]; !ok || bytes.Compare(e.Leaf[:], w[:]) < 0 {
		ep.winner[k] = e.Leaf
	}
	ep.root = nil
	return true
}

// counted returns the epoch's counted entries (one per check), in canonical order. Caller holds mu.
func (ep *ledgerEpoch) counted() []LedgerEntry {
	out := make([]LedgerEntry, 0, len(ep.winner))
	for _, leaf := range ep.winner {
		out = append(out, *ep.entries[leaf])
	}
	slices.SortFunc(out, compareLedgerEntries)
	return out
}

// countedFor appends the epoch's counted entries that name container to out, unsorted. Caller
// holds mu.
func (ep *ledgerEpoch) countedFor(container string, out []LedgerEntry) []LedgerEntry {
	for _, k := range ep.byContainer[container] {
		out = append(out, *ep.entries[ep.winner[k]])
	}
	return out
}

// Epochs lists the epochs the ledger holds attestations of, in order.
func (l *Ledger) Epochs() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.epochs))
}

// Leaves are the leaves of epoch e's counted attestations, sorted: the Merkle tree's leaves.
func (l *Ledger) Leaves(e uint64) [][32]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	ep := l.epochs[e]
	if ep == nil {
		return nil
	}
	return canonicalLeaves(slices.Collect(maps.Values(ep.winner)))
}

// Root is the Merkle root of epoch e's counted attestations (32 zero bytes when there are none).
func (l *Ledger) Root(e uint64) [32]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	ep := l.epochs[e]
	if ep == nil {
		return [32]byte{}
	}
	if ep.root == nil {
		r := MerkleRoot(slices.Collect(maps.Values(ep.winner)))
		ep.root = &r
	}
	return *ep.root
}

// Proof proves that leaf is counted in epoch e's root.
func (l *Ledger) Proof(e uint64, leaf [32]byte) (MerkleProof, error) {
	l.mu.Lock()
	var leaves [][32]byte
	if ep := l.epochs[e]; ep != nil {
		leaves = slices.Collect(maps.Values(ep.winner))
	}
	l.mu.Unlock()
	p, ok := BuildProof(leaves, leaf)
	if !ok {
		return MerkleProof{}, fmt.Errorf("%w: attestation %x is not counted in epoch %d", ErrLedger, leaf[:8], e)
	}
	return p, nil
}

// Equivocations lists, for each check that its checker signed more than once in epoch e, the
// leaves of every version (sorted; the first is the one counted). A checker that signs two
// verdicts for one check can be shown to have done so.
func (l *Ledger) Equivocations(e uint64) [][][32]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	ep := l.epochs[e]
	if ep == nil {
		return nil
	}
	byKey := map[string][][32]byte{}
	for leaf, en := range ep.entries {
		if k := ledgerCheckKey(en.Msg); ep.checks[k] > 1 {
			byKey[k] = append(byKey[k], leaf)
		}
	}
	var out [][][32]byte
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		out = append(out, canonicalLeaves(byKey[k]))
	}
	return out
}

// LastCheck is the latest counted check of one kind.
type LastCheck struct {
	Verdict      pb.Verdict
	Checker      string
	IssuedUnixMs int64
	Leaf         [32]byte
}

// ContainerSummary is what an epoch's attestations say about one container.
type ContainerSummary struct {
	Container string
	Epoch     uint64
	// Passes and Fails count the epoch's counted attestations; Checkers the distinct checkers.
	Passes, Fails, Checkers int
	// Last holds the latest check of each kind that had one.
	Last map[pb.CheckKind]LastCheck
	// Score is the Beta-posterior mean (Prior.Score) over votes: each checker's latest verdict of
	// each kind counts once, so a checker that attests a container a hundred times in an epoch
	// weighs no more than one that attests it once. Indexers fold it into their ranking.
	Score float64
}

// Summary is container's summary for epoch e (ok is false when no attestation names it).
func (l *Ledger) Summary(e uint64, container string) (ContainerSummary, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ep := l.epochs[e]
	if ep == nil {
		return ContainerSummary{}, false
	}
	mine := ep.countedFor(container, nil)
	if len(mine) == 0 {
		return ContainerSummary{}, false
	}
	slices.SortFunc(mine, compareLedgerEntries)
	return l.summarise(e, container, mine), true
}

// Summaries are the summaries of every container epoch e's attestations name, by container.
func (l *Ledger) Summaries(e uint64) []ContainerSummary {
	l.mu.Lock()
	defer l.mu.Unlock()
	ep := l.epochs[e]
	if ep == nil {
		return nil
	}
	byContainer := map[string][]LedgerEntry{}
	for _, en := range ep.counted() {
		byContainer[en.Container] = append(byContainer[en.Container], en)
	}
	out := make([]ContainerSummary, 0, len(byContainer))
	for _, c := range slices.Sorted(maps.Keys(byContainer)) {
		out = append(out, l.summarise(e, c, byContainer[c]))
	}
	return out
}

// summarise builds a summary from a container's counted entries in canonical order.
func (l *Ledger) summarise(e uint64, container string, entries []LedgerEntry) ContainerSummary {
	s := ContainerSummary{Container: container, Epoch: e, Last: map[pb.CheckKind]LastCheck{}}
	type vote struct {
		checker string
		kind    pb.CheckKind
	}
	votes := map[vote]pb.Verdict{}
	checkerSet := map[string]bool{}
	for _, en := range entries { // in issue order: later ones overwrite
		if en.Verdict == pb.Verdict_VERDICT_PASS {
			s.Passes++
		} else {
			s.Fails++
		}
		checkerSet[en.Checker] = true
		s.Last[en.Kind] = LastCheck{Verdict: en.Verdict, Checker: en.Checker, IssuedUnixMs: en.IssuedUnixMs, Leaf: en.Leaf}
		votes[vote{en.Checker, en.Kind}] = en.Verdict
	}
	passes, fails := 0, 0
	for _, v := range votes {
		if v == pb.Verdict_VERDICT_PASS {
			passes++
		} else {
			fails++
		}
	}
	s.Checkers = len(checkerSet)
	s.Score = l.cfg.Prior.Score(passes, fails)
	return s
}

// History is every counted check of container in the epochs the ledger holds, in canonical order
// (issue time, then leaf).
func (l *Ledger) History(container string) []LedgerEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []LedgerEntry
	for _, ep := range l.epochs {
		out = ep.countedFor(container, out)
	}
	slices.SortFunc(out, compareLedgerEntries)
	return out
}

// Standing is container's standing after every check the ledger holds (Consequence with the
// ledger's rule).
func (l *Ledger) Standing(container string) Decision {
	return Consequence(l.History(container), l.cfg.Rule)
}

// Forget drops the epochs before e (after their settlement).
func (l *Ledger) Forget(before uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for e := range l.epochs {
		if e < before {
			delete(l.epochs, e)
		}
	}
}
