package epoch

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Candidate is a node that may be drawn, with what its weight depends on.
type Candidate struct {
	ID         string // peer ID, binary form
	Key        ed25519.PublicKey
	Stake      *big.Int // base units
	QualityPPM uint32
	// Checker says the node holds a checker licence: it may check containers and attest. It does
	// not change the node's weight in the indexer sortition.
	Checker bool
}

// StakeSource says who may be drawn for an epoch. Every node must get the same answer for the same
// epoch: a genesis allocation file now (devnet, simnet), stake read from the chain at a fixed block
// and checkers' quality scores later. A list names each candidate once (node.SortAllocation
// refuses one that does not). The tracker keeps the lists it is given: a source returns a new list
// when candidates change, and never modifies one it returned.
type StakeSource interface {
	Candidates(e uint64) []Candidate
}

// Allocation is a fixed StakeSource: the same candidates every epoch.
type Allocation []Candidate

// Candidates implements StakeSource.
func (a Allocation) Candidates(uint64) []Candidate { return a }

// Config configures a Tracker. Every node of a network must use the same values (the network's
// genesis configuration), except Mixer, which must agree where set.
type Config struct {
	Schedule    Schedule
	GenesisSeed Seed
	Params      Params
	Stakes      StakeSource
	Mixer       Mixer // nil: nothing mixed in
	// Grace is how long after an epoch ends its committee still counts as active, so that matches
	// in flight at the boundary finish (default: a tenth of the epoch, at most 30 s).
	Grace time.Duration
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if err := c.Schedule.Validate(); err != nil {
		return err
	}
	if err := c.Params.Validate(); err != nil {
		return err
	}
	if c.Stakes == nil {
		return errors.New("epoch: no stake source")
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace(c.Schedule.Length)
	}
	return nil
}

// DefaultGrace is how long after an epoch ends its committee still serves and its attestations
// are still accepted, unless configured: a tenth of the epoch, at most 30 s.
func DefaultGrace(length time.Duration) time.Duration { return min(length/10, 30*time.Second) }

// Reasons a ticket is not accepted. Reject reasons mean the sender is misbehaving (the gossip
// validator penalises it); Ignore reasons do not.
const (
	TicketMalformed      = "malformed"
	TicketSignerMismatch = "signer_mismatch"
	TicketWrongEpoch     = "wrong_epoch"
	TicketWrongSeed      = "wrong_seed"
	TicketNotCandidate   = "not_candidate"
	TicketWeightMismatch = "weight_mismatch"
	TicketBadProof       = "bad_proof"
	TicketLosing         = "losing"
	// Ignored.
	TicketDuplicate   = "duplicate"
	TicketUnknownSeed = "unknown_seed" // kept pending until this node learns the seed
	// TicketOtherSeed: a real draw (its proof verifies) on a seed other than this node's for the
	// epoch. Either the sender or this node sealed the epoch before differently; the ticket is kept as
	// evidence (Divergence) and this node resyncs when the other seed has the majority.
	TicketOtherSeed = "other_seed"
)

// ErrTicket is wrapped by every TicketError.
var ErrTicket = errors.New("epoch: ticket not accepted")

// TicketError says why a ticket was not accepted.
type TicketError struct {
	Reason string
	Detail string
}

func (e *TicketError) Error() string {
	return fmt.Sprintf("epoch: ticket not accepted (%s): %s", e.Reason, e.Detail)
}

func (e *TicketError) Unwrap() error { return ErrTicket }

// Ignorable reports whether a ticket error is no fault of its sender.
func (e *TicketError) Ignorable() bool {
	return e.Reason == TicketDuplicate || e.Reason == TicketUnknownSeed || e.Reason == TicketOtherSeed
}

// TicketReason returns the reason of a TicketError in err's chain, or "".
func TicketReason(err error) string {
	var te *TicketError
	if errors.As(err, &te) {
		return te.Reason
	}
	return ""
}

// Ticket is a verified indexer ticket.
type Ticket struct {
	ID     string // peer ID, binary form
	Epoch  uint64
	Seats  uint32
	Output Output
	Msg    *pb.IndexerTicket
	Raw    []byte // the signed envelope, as received or made

	// timely: it arrived before its epoch started, so it counts in the epoch's sealed set.
	timely bool
}

// Tracker follows the epochs: it verifies tickets, keeps each epoch's committee, seals the set that
// feeds the beacon when an epoch starts, and derives the next seed. It is safe for concurrent use.
//
// Timeline (docs/EPOCHS.md): seed(e) is known from the start of epoch e-1; epoch e's winners publish
// their tickets during e-1; at the start of e each node seals the tickets of e it holds and computes
// seed(e+1). A node seals epoch e itself only if it was live (following gossip) since the start of
// e-1; otherwise it imports the sealed set (ImportSealed) from a committee record.
type Tracker struct {
	cfg       Config
	liveSince time.Time

	mu      sync.Mutex
	epochs  map[uint64]*epochState
	pending []pendingTicket
	// index is the last candidate list's positions by ID, shared by the epochs whose stake source
	// returned that same list (an Allocation returns one list for every epoch).
	index candidateIndex
}

// candidateIndex maps candidate IDs to their position in one list of candidates.
type candidateIndex struct {
	of  []Candidate
	pos map[string]int
}

// indexOf returns the positions of cands by ID (the last of equal IDs wins, as it did in the
// weights maps before), reusing the tracker's index when cands is the list it was built for.
// Caller holds mu (or owns t).
func (t *Tracker) indexOf(cands []Candidate) map[string]int {
	if len(cands) == len(t.index.of) && (len(cands) == 0 || &cands[0] == &t.index.of[0]) {
		return t.index.pos
	}
	pos := make(map[string]int, len(cands))
	for i, c := range cands {
		pos[c.ID] = i
	}
	t.index = candidateIndex{of: cands, pos: pos}
	return pos
}

type epochState struct {
	seed     Seed
	haveSeed bool
	// The candidates, as the stake source gave them when the seed was learnt, and what their
	// weights depend on. A node keeps a few epochs' states and a simnet a thousand nodes' trackers,
	// so a candidate costs 4 bytes here (its Recent count) and its weight is computed when asked
	// (candidate): per-candidate maps of inputs, keys and weights took 1.5 GB at 1,000 peers.
	cands    []Candidate
	pos      map[string]int // shared with other epochs of the same candidate list: never modified
	recent   []uint32       // by position in cands, computed with the seed
	total    *big.Int
	tickets  map[string]*Ticket // add with put
	byID     []*Ticket          // tickets sorted by peer ID (Committee); nil when put has changed them
	sealed   bool
	sealedAt []string // IDs of the sealed set, sorted
	// others holds real draws made on other seeds for this epoch, by seed then signer.
	others map[Seed]map[string]pendingTicket
}

type pendingTicket struct {
	msg    *pb.IndexerTicket
	signer string
	raw    []byte
	at     time.Time // when it arrived
}

// maxOtherSeeds bounds the evidence kept per epoch (seeds, and signers per seed).
const maxOtherSeeds = 8

const maxPending = 4096

// NewTracker starts a tracker that has followed the network since now (it seals, by itself, only the
// epochs whose tickets it could have seen).
func NewTracker(cfg Config, now time.Time) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Tracker{cfg: cfg, liveSince: now, epochs: map[uint64]*epochState{}}
	t.setSeed(0, cfg.GenesisSeed)
	return t, nil
}

// Checkpoint is what a tracker needs to go on from epoch Epoch without walking from genesis: the
// epoch's seed, and the sealed sets of the CheckpointDepth epochs before it (those weigh on the
// draws from Epoch through the recency rule, and may serve an epoch that draws nobody).
type Checkpoint struct {
	Epoch  uint64
	Seed   Seed
	Sealed map[uint64][]ImportedTicket // by epoch, every one of max(0, Epoch-depth) .. Epoch-1
}

// CheckpointDepth is how many epochs before a checkpoint's own its sealed sets cover.
func (t *Tracker) CheckpointDepth() uint64 {
	return uint64(max(int(t.cfg.Params.RecencyWindow), MaxCarry))
}

// Checkpoint exports the state to go on from epoch e: e's seed must be known here and the epochs
// before it (CheckpointDepth of them) sealed and still held; ok is false otherwise.
func (t *Tracker) Checkpoint(e uint64) (cp Checkpoint, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.epochs[e]
	if st == nil || !st.haveSeed {
		return Checkpoint{}, false
	}
	cp = Checkpoint{Epoch: e, Seed: st.seed, Sealed: map[uint64][]ImportedTicket{}}
	for k := uint64(1); k <= t.CheckpointDepth() && k <= e; k++ {
		prev := t.epochs[e-k]
		if prev == nil || !prev.sealed {
			return Checkpoint{}, false
		}
		set := make([]ImportedTicket, 0, len(prev.sealedAt))
		for _, id := range prev.sealedAt {
			tk := prev.tickets[id]
			set = append(set, ImportedTicket{Msg: tk.Msg, Signer: tk.ID, Raw: tk.Raw})
		}
		cp.Sealed[e-k] = set
	}
	return cp, true
}

// NewTrackerFrom starts a tracker at a checkpoint instead of genesis: it has followed the network
// since now and goes on from cp.Epoch, importing or sealing. The checkpoint is trusted: its sealed
// sets' tickets are checked for form, not verified again (their proofs were, when the checkpoint
// was made). Take one only from a tracker you trust: this process's, or this client's own earlier
// run. A checkpoint that misses an epoch it must cover, or holds one it must not, is refused.
func NewTrackerFrom(cfg Config, now time.Time, cp Checkpoint) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Tracker{cfg: cfg, liveSince: now, epochs: map[uint64]*epochState{}}
	depth := t.CheckpointDepth()
	for e := range cp.Sealed {
		if e >= cp.Epoch || e+depth < cp.Epoch {
			return nil, fmt.Errorf("epoch: checkpoint of epoch %d holds epoch %d, outside the %d epochs before it", cp.Epoch, e, depth)
		}
	}
	for k := uint64(1); k <= depth && k <= cp.Epoch; k++ {
		e := cp.Epoch - k
		set, ok := cp.Sealed[e]
		if !ok {
			return nil, fmt.Errorf("epoch: checkpoint of epoch %d lacks the sealed set of epoch %d", cp.Epoch, e)
		}
		st := t.state(e)
		ids := make([]string, 0, len(set))
		for _, it := range set {
			m := it.Msg
			if m == nil || m.Epoch != e || string(m.PeerId) != it.Signer || m.Seats == 0 || st.tickets[it.Signer] != nil {
				return nil, fmt.Errorf("epoch: checkpoint of epoch %d: a malformed or repeated ticket in epoch %d's sealed set", cp.Epoch, e)
			}
			st.put(&Ticket{ID: it.Signer, Epoch: e, Seats: m.Seats, Msg: m, Raw: it.Raw})
			ids = append(ids, it.Signer)
		}
		slices.Sort(ids)
		st.sealed, st.sealedAt = true, ids
	}
	t.setSeed(cp.Epoch, cp.Seed)
	return t, nil
}

// Schedule is the tracker's epoch schedule.
func (t *Tracker) Schedule() Schedule { return t.cfg.Schedule }

// Grace is how long after an epoch ends its committee still serves (Config.Grace, defaulted).
func (t *Tracker) Grace() time.Duration { return t.cfg.Grace }

// InGrace reports whether now falls in the grace window at the start of its epoch, while the
// previous epoch's committee still serves (Config.Grace).
func (t *Tracker) InGrace(now time.Time) bool {
	cur := t.cfg.Schedule.Epoch(now)
	return cur > 0 && now.Before(t.cfg.Schedule.Start(cur).Add(t.cfg.Grace))
}

func (t *Tracker) state(e uint64) *epochState {
	st := t.epochs[e]
	if st == nil {
		st = &epochState{tickets: map[string]*Ticket{}}
		t.epochs[e] = st
	}
	return st
}

// put adds (or replaces) a ticket of the epoch.
func (st *epochState) put(tk *Ticket) {
	st.tickets[tk.ID] = tk
	st.byID = nil
}

// setSeed records seed(e) and computes every candidate's weight inputs for e, and the total weight.
// Caller holds mu (or owns t).
func (t *Tracker) setSeed(e uint64, s Seed) {
	st := t.state(e)
	st.seed, st.haveSeed = s, true
	st.cands = t.cfg.Stakes.Candidates(e)
	st.pos = t.indexOf(st.cands)
	st.recent = make([]uint32, len(st.cands))
	st.total = new(big.Int)
	for i, c := range st.cands {
		st.recent[i] = t.recent(c.ID, e)
		st.total.Add(st.total, Weight(st.inputs(i)))
	}
}

// inputs are the weight inputs of the candidate at position i.
func (st *epochState) inputs(i int) WeightInputs {
	c := st.cands[i]
	return WeightInputs{Stake: c.Stake, QualityPPM: c.QualityPPM, Recent: st.recent[i]}
}

// candidate returns id's weight inputs, key and weight in this epoch; ok is false when id is not
// a candidate. The state must have its seed.
func (st *epochState) candidate(id string) (in WeightInputs, key ed25519.PublicKey, w *big.Int, ok bool) {
	i, ok := st.pos[id]
	if !ok {
		return WeightInputs{}, nil, nil, false
	}
	in = st.inputs(i)
	return in, st.cands[i].Key, Weight(in), true
}

// recent counts id's seats in the sealed committees of the RecencyWindow epochs before e.
func (t *Tracker) recent(id string, e uint64) uint32 {
	var n uint32
	for k := uint64(1); k <= uint64(t.cfg.Params.RecencyWindow) && k <= e; k++ {
		if st := t.epochs[e-k]; st != nil && st.sealed {
			if _, ok := slices.BinarySearch(st.sealedAt, id); ok {
				n++
			}
		}
	}
	return n
}

// Candidates lists epoch e's candidates (from the stake source).
func (t *Tracker) Candidates(e uint64) []Candidate { return t.cfg.Stakes.Candidates(e) }

// Seed returns seed(e) if this tracker knows it.
func (t *Tracker) Seed(e uint64) (Seed, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.epochs[e]; st != nil && st.haveSeed {
		return st.seed, true
	}
	return Seed{}, false
}

// Draw runs the sortition for the candidate id with key sk in epoch e: the ticket (unsigned) if it
// wins seats, nil if it does not or if seed(e) is not known yet.
func (t *Tracker) Draw(e uint64, id string, sk ed25519.PrivateKey) *pb.IndexerTicket {
	t.mu.Lock()
	st := t.epochs[e]
	if st == nil || !st.haveSeed {
		t.mu.Unlock()
		return nil
	}
	in, _, w, ok := st.candidate(id)
	total, seed := st.total, st.seed
	t.mu.Unlock()
	if !ok || w.Sign() <= 0 {
		return nil
	}
	proof, out := Prove(sk, Alpha(seed, e, RoleIndexer))
	seats := Seats(out, w, total, t.cfg.Params)
	if seats == 0 {
		return nil
	}
	return &pb.IndexerTicket{
		PeerId: []byte(id), Epoch: e, Role: string(RoleIndexer), VrfProof: proof[:], Seats: seats,
		Stake: in.Stake.Bytes(), QualityPpm: in.QualityPPM, Recent: in.Recent, Seed: seed[:],
	}
}

// Add verifies a ticket whose envelope signer is signer, received at now, and adds it to its
// epoch's committee. A ticket for an epoch whose seed this node does not know yet is kept pending
// (TicketUnknownSeed) and added when the seed is learnt.
func (t *Tracker) Add(msg *pb.IndexerTicket, signer string, raw []byte, now time.Time) (*Ticket, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tk, err := t.verify(msg, signer, raw, now, true)
	if err != nil {
		switch TicketReason(err) {
		case TicketUnknownSeed:
			if len(t.pending) < maxPending {
				t.pending = append(t.pending, pendingTicket{msg, signer, raw, now})
			}
		case TicketWrongSeed:
			if t.otherSeed(msg, signer, raw, now) {
				return nil, &TicketError{TicketOtherSeed, "a real draw on another seed than this node's for the epoch"}
			}
		}
		return nil, err
	}
	tk.timely = now.Before(t.cfg.Schedule.Start(tk.Epoch))
	t.epochs[tk.Epoch].put(tk)
	return tk, nil
}

// verify checks a ticket against this node's view. Caller holds mu. window: enforce the epoch window
// around now (live gossip); imports of sealed sets do not.
func (t *Tracker) verify(msg *pb.IndexerTicket, signer string, raw []byte, now time.Time, window bool) (*Ticket, error) {
	rej := func(reason, format string, a ...any) (*Ticket, error) {
		return nil, &TicketError{reason, fmt.Sprintf(format, a...)}
	}
	if msg == nil || msg.Role != string(RoleIndexer) || len(msg.VrfProof) != ProofSize || len(msg.Seed) != len(Seed{}) {
		return rej(TicketMalformed, "role, proof or seed has the wrong form")
	}
	id := string(msg.PeerId)
	if id != signer {
		return rej(TicketSignerMismatch, "ticket names another peer than its signer")
	}
	e := msg.Epoch
	if window {
		cur := t.cfg.Schedule.Epoch(now)
		switch {
		case e > cur+2:
			return rej(TicketWrongEpoch, "epoch %d is too far ahead of the current %d", e, cur)
		case (e+1 < cur || (e+1 == cur && !now.Before(t.cfg.Schedule.Start(cur).Add(t.cfg.Grace)))) && !t.carries(e, cur):
			return rej(TicketWrongEpoch, "epoch %d is over (current %d)", e, cur)
		}
	}
	st := t.epochs[e]
	if st == nil || !st.haveSeed {
		return rej(TicketUnknownSeed, "seed of epoch %d not known yet", e)
	}
	if _, dup := st.tickets[id]; dup {
		return rej(TicketDuplicate, "already have this peer's ticket for epoch %d", e)
	}
	if !bytes.Equal(msg.Seed, st.seed[:]) {
		return rej(TicketWrongSeed, "made on another seed than epoch %d's", e)
	}
	in, key, w, ok := st.candidate(id)
	if !ok || w.Sign() <= 0 {
		return rej(TicketNotCandidate, "not a candidate with stake in epoch %d", e)
	}
	if new(big.Int).SetBytes(msg.Stake).Cmp(in.Stake) != 0 || msg.QualityPpm != in.QualityPPM || msg.Recent != in.Recent {
		return rej(TicketWeightMismatch, "weight inputs (stake %s, quality %d, recent %d) differ from this node's (%s, %d, %d)",
			new(big.Int).SetBytes(msg.Stake), msg.QualityPpm, msg.Recent, in.Stake, in.QualityPPM, in.Recent)
	}
	out, err := Verify(key, msg.VrfProof, Alpha(st.seed, e, RoleIndexer))
	if err != nil {
		return rej(TicketBadProof, "%v", err)
	}
	seats := Seats(out, w, st.total, t.cfg.Params)
	if seats == 0 || seats != msg.Seats {
		return rej(TicketLosing, "claims %d seats, the draw gives %d", msg.Seats, seats)
	}
	return &Ticket{ID: id, Epoch: e, Seats: seats, Output: out, Msg: msg, Raw: raw}, nil
}

// otherSeed keeps a ticket made on another seed as evidence if its proof verifies on that seed under
// the signer's key and wins the seats it claims there (a real winning draw, not a forgery), and
// reports whether it did. Caller holds mu.
func (t *Tracker) otherSeed(msg *pb.IndexerTicket, signer string, raw []byte, now time.Time) bool {
	st := t.epochs[msg.Epoch]
	_, key, w, ok := st.candidate(signer)
	if !ok {
		return false
	}
	var claimed Seed
	copy(claimed[:], msg.Seed)
	out, err := Verify(key, msg.VrfProof, Alpha(claimed, msg.Epoch, RoleIndexer))
	if err != nil {
		return false
	}
	// Only a winning draw counts: otherwise any staked identity could vote for a seed of its choice.
	if seats := Seats(out, w, st.total, t.cfg.Params); seats == 0 || seats != msg.Seats {
		return false
	}
	if st.others == nil {
		st.others = map[Seed]map[string]pendingTicket{}
	}
	votes := st.others[claimed]
	if votes == nil {
		if len(st.others) >= maxOtherSeeds {
			return true
		}
		votes = map[string]pendingTicket{}
		st.others[claimed] = votes
	}
	if len(votes) < 4*maxOtherSeeds*maxOtherSeeds {
		votes[signer] = pendingTicket{msg, signer, raw, now}
	}
	return true
}

// Divergence reports whether, for epoch e, more winners drew on another seed than on this node's
// (at least two of them): then this node, not they, most likely sealed epoch e-1 differently from the
// network. It returns that seed.
func (t *Tracker) Divergence(e uint64) (Seed, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.epochs[e]
	if st == nil || e == 0 {
		return Seed{}, false
	}
	best, n := Seed{}, 0
	for s, votes := range st.others {
		if len(votes) > n || (len(votes) == n && bytes.Compare(s[:], best[:]) < 0) {
			best, n = s, len(votes)
		}
	}
	return best, n >= 2 && n > len(st.tickets)
}

// Resync re-seals epoch e-1 so that it gives want, the seed the majority of epoch e's winners drew
// on. It searches the sets this node can explain want with: every ticket of e-1 it holds, and its own
// sealed set with any one ticket it holds added or removed (a ticket that arrived just before the
// seal here and just after it elsewhere, or the reverse), then the sets given (committee records of
// the network's, which may hold tickets this node never saw). When one matches, it forgets what it
// derived from its own seal (epochs e and later) and re-verifies the draws it kept as evidence
// against the new seed; it returns the tickets accepted that way.
func (t *Tracker) Resync(e uint64, want Seed, records ...[]ImportedTicket) ([]*Ticket, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e == 0 {
		return nil, errors.New("epoch: epoch 0 has no predecessor to resync")
	}
	prev, cur := t.epochs[e-1], t.epochs[e]
	if prev == nil || !prev.haveSeed || !prev.sealed || cur == nil {
		return nil, fmt.Errorf("epoch: cannot resync epoch %d: epoch %d is not sealed here", e, e-1)
	}
	var mix []byte
	if t.cfg.Mixer != nil {
		mix = t.cfg.Mixer.Mix(e)
	}
	seedOf := func(set map[string]*Ticket) Seed {
		outs := make([]Output, 0, len(set))
		for _, tk := range set {
			outs = append(outs, tk.Output)
		}
		return NextSeed(prev.seed, e, mix, outs)
	}
	own := map[string]*Ticket{}
	for _, id := range prev.sealedAt {
		own[id] = prev.tickets[id]
	}
	var candidates []map[string]*Ticket
	candidates = append(candidates, maps.Clone(prev.tickets))
	for id, tk := range prev.tickets {
		c := maps.Clone(own)
		if _, in := c[id]; in {
			delete(c, id)
		} else {
			c[id] = tk
		}
		candidates = append(candidates, c)
	}
	for _, rec := range records {
		c := map[string]*Ticket{}
		for _, it := range rec {
			if it.Msg == nil || it.Msg.Epoch != e-1 {
				continue
			}
			tk := prev.tickets[string(it.Msg.PeerId)]
			if tk == nil {
				var err error
				if tk, err = t.verify(it.Msg, it.Signer, it.Raw, time.Time{}, false); err != nil {
					continue
				}
			}
			c[tk.ID] = tk
		}
		candidates = append(candidates, c)
	}
	var match map[string]*Ticket
	for _, c := range candidates {
		if seedOf(c) == want {
			match = c
			break
		}
	}
	if match == nil {
		return nil, fmt.Errorf("epoch: no sealed set of epoch %d known here gives the seed epoch %d's winners drew on", e-1, e)
	}
	ids := make([]string, 0, len(match))
	for id, tk := range match {
		prev.put(tk)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	prev.sealedAt = ids
	evidence := cur.others[want]
	for k := range t.epochs {
		if k >= e {
			delete(t.epochs, k)
		}
	}
	t.setSeed(e, want)
	var accepted []*Ticket
	for _, p := range evidence {
		tk, err := t.verify(p.msg, p.signer, p.raw, time.Time{}, false)
		if err != nil {
			continue
		}
		tk.timely = p.at.Before(t.cfg.Schedule.Start(e))
		t.epochs[e].put(tk)
		accepted = append(accepted, tk)
	}
	return accepted, nil
}

// Advance seals every epoch that has started and that this node followed since the start of the
// epoch before, and derives the seeds that follow. It returns the epochs whose seeds it learnt, in
// order (the caller draws its own tickets for them), and the tickets that were pending and are now
// accepted.
func (t *Tracker) Advance(now time.Time) (seeded []uint64, accepted []*Ticket) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Before(t.cfg.Schedule.Genesis) {
		return nil, nil
	}
	cur := t.cfg.Schedule.Epoch(now)
	for e := t.firstUnsealed(); e <= cur; e++ {
		st := t.epochs[e]
		if st == nil || !st.haveSeed || !t.followed(e) {
			break
		}
		// The sealed set is the tickets that arrived before e started, whenever this Advance runs;
		// epoch 0 is never sealed with tickets (they are drawn at genesis), so late joiners agree.
		ids := make([]string, 0, len(st.tickets))
		for id, tk := range st.tickets {
			if e > 0 && tk.timely {
				ids = append(ids, id)
			}
		}
		t.seal(e, ids)
		seeded = append(seeded, e+1)
	}
	accepted = t.retryPending(now)
	t.prune(cur)
	return seeded, accepted
}

// followed: this node saw every ticket of e it could, i.e. it was live since the start of e-1.
func (t *Tracker) followed(e uint64) bool {
	return e == 0 || !t.liveSince.After(t.cfg.Schedule.Start(e-1))
}

func (t *Tracker) firstUnsealed() uint64 {
	first, _ := t.frontier()
	return first
}

// frontier is the first epoch whose seed this tracker knows but which it has not sealed: where
// sealing (or, for a node that was not following, importing) goes on. ok is false when there is none.
func (t *Tracker) frontier() (first uint64, ok bool) {
	for e, st := range t.epochs {
		if !st.sealed && st.haveSeed && (!ok || e < first) {
			first, ok = e, true
		}
	}
	return first, ok
}

// seal fixes epoch e's beacon contributions to the given tickets and derives seed(e+1).
func (t *Tracker) seal(e uint64, ids []string) {
	st := t.epochs[e]
	slices.Sort(ids)
	outs := make([]Output, 0, len(ids))
	for _, id := range ids {
		outs = append(outs, st.tickets[id].Output)
	}
	st.sealed, st.sealedAt = true, ids
	var mix []byte
	if t.cfg.Mixer != nil {
		mix = t.cfg.Mixer.Mix(e + 1)
	}
	t.setSeed(e+1, NextSeed(st.seed, e+1, mix, outs))
}

func (t *Tracker) retryPending(now time.Time) []*Ticket {
	var accepted []*Ticket
	keep := t.pending[:0]
	for _, p := range t.pending {
		tk, err := t.verify(p.msg, p.signer, p.raw, now, true)
		switch {
		case err == nil:
			tk.timely = p.at.Before(t.cfg.Schedule.Start(tk.Epoch))
			t.epochs[tk.Epoch].put(tk)
			accepted = append(accepted, tk)
		case TicketReason(err) == TicketUnknownSeed:
			keep = append(keep, p)
		}
	}
	clear(t.pending[len(keep):])
	t.pending = keep
	return accepted
}

// prune forgets epochs no longer needed: older than the recency window and the grace epoch, counted
// back from the current epoch or, for a node still importing its way up from genesis, from where
// it is (the frontier): the epochs behind it are the recency of the next seeds it derives, and the
// frontier's own state holds the seed it needs to go on.
func (t *Tracker) prune(cur uint64) {
	keep := uint64(max(int(t.cfg.Params.RecencyWindow), MaxCarry)) + 2
	if f, ok := t.frontier(); ok && f < cur {
		cur = f
	}
	if cur < keep {
		return
	}
	for e := range t.epochs {
		if e < cur-keep {
			delete(t.epochs, e)
		}
	}
}

// NeedImport returns the first epoch this node must import the sealed set of (it knows the epoch's
// seed but was not following when its tickets went round), if that epoch has started.
func (t *Tracker) NeedImport(now time.Time) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.firstUnsealed()
	st := t.epochs[e]
	if st == nil || !st.haveSeed || st.sealed || t.followed(e) || now.Before(t.cfg.Schedule.Start(e)) {
		return 0, false
	}
	return e, true
}

// ImportedTicket is a ticket of a committee record to import: its decoded payload, signer and
// envelope.
type ImportedTicket struct {
	Msg    *pb.IndexerTicket
	Signer string
	Raw    []byte
}

// ImportSealed seals epoch e with the tickets of a committee record someone else sealed, keeping those
// that verify, and derives seed(e+1). It returns how many tickets it kept. seed(e) must be known and
// e not sealed yet.
func (t *Tracker) ImportSealed(e uint64, tickets []ImportedTicket) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.epochs[e]
	if st == nil || !st.haveSeed {
		return 0, fmt.Errorf("epoch: cannot import epoch %d: its seed is not known", e)
	}
	if st.sealed {
		return 0, fmt.Errorf("epoch: epoch %d is already sealed", e)
	}
	var ids []string
	for _, it := range tickets {
		if it.Msg == nil || it.Msg.Epoch != e {
			continue
		}
		tk, err := t.verify(it.Msg, it.Signer, it.Raw, time.Time{}, false)
		if err != nil {
			continue
		}
		st.put(tk)
		ids = append(ids, tk.ID)
	}
	t.seal(e, ids)
	return len(ids), nil
}

// Committee is epoch e's committee as this node knows it, sorted by peer ID.
func (t *Tracker) Committee(e uint64) []*Ticket {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.epochs[e]
	if st == nil {
		return nil
	}
	if st.byID == nil && len(st.tickets) > 0 {
		// Every node asks several times a second (is it a member, which committee serves): sorted
		// once per change, not per question (the sorts were 2.5% of a 300-peer simnet's CPU at rest).
		st.byID = make([]*Ticket, 0, len(st.tickets))
		for _, tk := range st.tickets {
			st.byID = append(st.byID, tk)
		}
		slices.SortFunc(st.byID, func(a, b *Ticket) int { return bytes.Compare([]byte(a.ID), []byte(b.ID)) })
	}
	return slices.Clone(st.byID) // callers may reorder theirs
}

// Sealed returns epoch e's sealed set (sorted by peer ID) and whether e is sealed.
func (t *Tracker) Sealed(e uint64) ([]*Ticket, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.epochs[e]
	if st == nil || !st.sealed {
		return nil, false
	}
	out := make([]*Ticket, 0, len(st.sealedAt))
	for _, id := range st.sealedAt {
		out = append(out, st.tickets[id])
	}
	return out, true
}

// MaxCarry is how many epochs back a committee may serve an epoch that drew nobody.
const MaxCarry = 4

// carries reports whether epoch e's committee serves epoch cur in this node's view (Serving): e is
// over, at most MaxCarry epochs back, and every epoch after it up to cur drew nobody (its seed is
// known, and it holds no ticket). A ticket of such an epoch is still live, and verify's window
// takes it: a node that joined after e's tickets went round (every ticket of epoch 0, drawn at
// genesis, for a light client that starts in epoch 1) learns the committee that serves it from its
// peers' live views. Caller holds mu.
func (t *Tracker) carries(e, cur uint64) bool {
	if e >= cur || cur-e > MaxCarry {
		return false
	}
	for k := e + 1; k <= cur; k++ {
		if st := t.epochs[k]; st == nil || !st.haveSeed || len(st.tickets) > 0 {
			return false
		}
	}
	return true
}

// Serving is the committee that serves epoch e, and the epoch it was drawn for: e's own or, when e
// drew nobody, the committee of the nearest earlier epoch that drew someone, at most MaxCarry
// epochs back. Seats are drawn as a Poisson process, so an epoch draws nobody with probability
// e^-k for an expected committee of k (e^-16 in production, but 0.25% an epoch for a devnet's 6);
// without a carried committee such an epoch would match nobody for its whole length. Every node
// that holds the same committees computes the same answer. (Until epoch e's tickets reach a node,
// e looks empty to it and the last committee serves; its grace window covers that moment anyway.)
func (t *Tracker) Serving(e uint64) ([]*Ticket, uint64) {
	for back := uint64(0); back <= MaxCarry && back <= e; back++ {
		if c := t.Committee(e - back); len(c) > 0 {
			return c, e - back
		}
	}
	return nil, e
}

// Active is the committee that serves matches at now: the current epoch's (Serving: an earlier
// one when the current epoch drew nobody), and the previous epoch's during the grace window after
// it ended.
func (t *Tracker) Active(now time.Time) []*Ticket {
	cur := t.cfg.Schedule.Epoch(now)
	out, from := t.Serving(cur)
	if t.InGrace(now) {
		if prev, pfrom := t.Serving(cur - 1); pfrom != from {
			out = append(out, prev...)
		}
	}
	return out
}

// Digest summarises epoch e's committee (peer IDs and seats) so that nodes can compare views; members
// is the committee's size.
func (t *Tracker) Digest(e uint64) (digest string, members int) {
	h := sha256.New()
	c := t.Committee(e)
	for _, tk := range c {
		h.Write([]byte(tk.ID))
		h.Write([]byte{byte(tk.Seats >> 24), byte(tk.Seats >> 16), byte(tk.Seats >> 8), byte(tk.Seats)})
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), len(c)
}

// ValidTickets counts the tickets of a committee record for epoch e that verify against this
// node's view (distinct signers, each a winning draw on seed(e)), without keeping them; 0 when the
// node does not know seed(e). Of two records of one epoch, the one with more valid tickets misses
// fewer winners.
func (t *Tracker) ValidTickets(e uint64, tickets []ImportedTicket) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.epochs[e]; st == nil || !st.haveSeed {
		return 0
	}
	seen := map[string]bool{}
	n := 0
	for _, it := range tickets {
		if it.Msg == nil || it.Msg.Epoch != e || seen[it.Signer] {
			continue
		}
		if _, err := t.verify(it.Msg, it.Signer, it.Raw, time.Time{}, false); err == nil || TicketReason(err) == TicketDuplicate {
			seen[it.Signer] = true
			n++
		}
	}
	return n
}

// CheckRecord verifies the tickets of a committee record for epoch e against this node's view,
// without keeping them: nil when they all verify (or are ones this node holds already) or when the
// node does not know seed(e) and cannot tell.
func (t *Tracker) CheckRecord(e uint64, tickets []ImportedTicket) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.epochs[e]; st == nil || !st.haveSeed {
		return nil
	}
	for _, it := range tickets {
		if _, err := t.verify(it.Msg, it.Signer, it.Raw, time.Time{}, false); err != nil && TicketReason(err) != TicketDuplicate {
			return err
		}
	}
	return nil
}
