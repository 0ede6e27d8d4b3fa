package p2p

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Indexer tickets and committee records.
const (
	// IndexerTopic carries indexer tickets.
	IndexerTopic = "rendermesh/indexer/1"
	// MaxTicketSize bounds an indexer ticket envelope.
	MaxTicketSize = 2 << 10
	// MaxCommitteeTickets bounds the tickets of one committee record.
	MaxCommitteeTickets = 256
	// MaxCommitteeRecordSize bounds a committee record.
	MaxCommitteeRecordSize = MaxCommitteeTickets*(MaxTicketSize+4) + 64
	// CommitteeNamespace is the DHT namespace of committee records: /rm-committee/<epoch>.
	CommitteeNamespace = "rm-committee"
)

// CommitteeKey is the DHT key of epoch e's committee record.
func CommitteeKey(e uint64) string {
	return "/" + CommitteeNamespace + "/" + strconv.FormatUint(e, 10)
}

// OpenIndexerTicket verifies an indexer ticket envelope and checks that its payload names its signer.
// What the ticket claims (the VRF proof, the seats) is checked by roles/epoch's Tracker.
func OpenIndexerTicket(data []byte) (*pb.IndexerTicket, peer.ID, error) {
	if len(data) > MaxTicketSize {
		return nil, "", fmt.Errorf("%w: ticket of %d bytes, limit %d", errOversize, len(data), MaxTicketSize)
	}
	tk := new(pb.IndexerTicket)
	signer, err := Open(KindIndexerTicket, data, tk)
	if err != nil {
		return nil, "", err
	}
	claimed, err := peer.IDFromBytes(tk.PeerId)
	if err != nil || claimed != signer {
		return nil, "", fmt.Errorf("%w: ticket payload does not name its signer", ErrMalformed)
	}
	return tk, signer, nil
}

// SealTicket signs a ticket with the node's key.
func (n *Net) SealTicket(tk *pb.IndexerTicket) ([]byte, error) {
	if peer.ID(tk.PeerId) != n.host.ID() {
		return nil, fmt.Errorf("p2p: ticket names %s, not this node", peer.ID(tk.PeerId))
	}
	return Seal(KindIndexerTicket, tk, n.host.Peerstore().PrivKey(n.host.ID()))
}

// TicketVerdict is what a TicketHandler decides about a ticket from gossip.
type TicketVerdict int

// Verdicts: accept (forward it), ignore (drop it, no fault of the sender), reject (drop it and
// penalise the peer that sent it).
const (
	TicketAccept TicketVerdict = iota
	TicketIgnore
	TicketReject
)

// TicketHandler judges a ticket whose envelope verified (signer is its author) and keeps it if it
// accepts it. reason labels the rejection metric ("" when accepted).
type TicketHandler func(tk *pb.IndexerTicket, signer peer.ID, raw []byte) (v TicketVerdict, reason string)

// SubscribeTickets joins the indexer topic; every ticket that arrives goes through fn inside the
// topic validator, so only tickets fn accepts are forwarded.
func (n *Net) SubscribeTickets(fn TicketHandler) error {
	if n.ps == nil {
		return ErrNoPubSub
	}
	validate := func(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		tk, signer, err := OpenIndexerTicket(msg.GetData())
		reason := ""
		switch {
		case errors.Is(err, errOversize):
			reason = HBRejectOversize
		case errors.Is(err, ErrSignature):
			reason = HBRejectSignature
		case err != nil:
			reason = HBRejectMalformed
		case msg.GetFrom() != "" && signer != msg.GetFrom():
			reason = HBRejectAuthor // gossip that carries an author (not ours: StrictNoSign) must be the signer's
		}
		if reason != "" {
			n.cfg.Metrics.TicketRejected.WithLabelValues(reason).Inc()
			return pubsub.ValidationReject
		}
		v, reason := fn(tk, signer, msg.GetData())
		switch v {
		case TicketAccept:
			n.cfg.Metrics.TicketAccepted.Inc()
			return pubsub.ValidationAccept
		case TicketIgnore:
			n.cfg.Metrics.TicketRejected.WithLabelValues(reason).Inc()
			return pubsub.ValidationIgnore
		default:
			n.cfg.Metrics.TicketRejected.WithLabelValues(reason).Inc()
			return pubsub.ValidationReject
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return net.ErrClosed
	}
	if _, ok := n.topics[IndexerTopic]; ok {
		return fmt.Errorf("p2p: already subscribed to %s", IndexerTopic)
	}
	if err := n.ps.RegisterTopicValidator(IndexerTopic, validate); err != nil {
		return fmt.Errorf("p2p: validator for %s: %w", IndexerTopic, err)
	}
	t, err := n.ps.Join(IndexerTopic)
	if err != nil {
		return fmt.Errorf("p2p: join %s: %w", IndexerTopic, err)
	}
	if err := t.SetScoreParams(heartbeatTopicScore(n.cfg.HeartbeatInterval)); err != nil {
		return fmt.Errorf("p2p: score params for %s: %w", IndexerTopic, err)
	}
	sub, err := t.Subscribe()
	if err != nil {
		return fmt.Errorf("p2p: subscribe %s: %w", IndexerTopic, err)
	}
	n.topics[IndexerTopic] = t
	n.subs = append(n.subs, sub)
	n.wg.Add(1)
	go func() { // the validator did the work; drain the subscription
		defer n.wg.Done()
		for {
			if _, err := sub.Next(context.Background()); err != nil {
				return
			}
		}
	}()
	return nil
}

// PublishTicket publishes a sealed ticket on the indexer topic (SubscribeTickets first).
func (n *Net) PublishTicket(ctx context.Context, raw []byte) error {
	n.mu.Lock()
	t, ok := n.topics[IndexerTopic]
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("p2p: publish ticket: not subscribed to %s", IndexerTopic)
	}
	if err := t.Publish(ctx, raw); err != nil {
		return fmt.Errorf("p2p: publish ticket: %w", err)
	}
	return nil
}

// OpenedTicket is one ticket of a committee record, its envelope verified.
type OpenedTicket struct {
	Msg    *pb.IndexerTicket
	Signer peer.ID
	Raw    []byte
}

// CommitteeCheck verifies the tickets of a committee record beyond their envelopes (VRF proofs, seats)
// when the node can: it returns an error for a record it knows to be bad, nil when it is good or when
// the node cannot tell (it does not know the epoch's seed).
type CommitteeCheck func(epoch uint64, tickets []OpenedTicket) error

// CommitteeValidator is the DHT validator of the /rm-committee namespace. A record is valid when it
// fits MaxCommitteeRecordSize, its epoch is the key's, and its tickets (at most MaxCommitteeTickets,
// strictly sorted by peer ID) are signed ticket envelopes for that epoch; then the node's
// CommitteeCheck, if set, verifies the tickets themselves. Select prefers a sealed record, then the
// one with more tickets.
type CommitteeValidator struct {
	mu     sync.Mutex
	check  CommitteeCheck
	opened *lru.Cache[[sha256.Size]byte, openedCommittee]
}

// openedCommittee is what OpenCommitteeRecord made of one record's bytes.
type openedCommittee struct {
	epoch   uint64
	rec     *pb.CommitteeRecord
	tickets []OpenedTicket
	err     error
}

// committeeCacheSize bounds the records a validator remembers having opened. A node is sent the
// same record by many peers (every publisher puts it, and a put is validated, then selected
// against the record held, which is validated again), and opening one verifies the signature of
// each of its tickets: remembering the outcome, which depends on the bytes alone, makes the repeats
// free. The records of a few epochs, in their versions, fit.
const committeeCacheSize = 128

// open is OpenCommitteeRecord, remembered. What it returns is shared: callers must not change it.
func (v *CommitteeValidator) open(key string, value []byte) (uint64, *pb.CommitteeRecord, []OpenedTicket, error) {
	h := sha256.New()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write(value)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	v.mu.Lock()
	if v.opened == nil {
		v.opened, _ = lru.New[[sha256.Size]byte, openedCommittee](committeeCacheSize)
	}
	c, ok := v.opened.Get(sum)
	v.mu.Unlock()
	if !ok {
		c.epoch, c.rec, c.tickets, c.err = OpenCommitteeRecord(key, value)
		v.mu.Lock()
		v.opened.Add(sum, c)
		v.mu.Unlock()
	}
	return c.epoch, c.rec, c.tickets, c.err
}

// SetCheck installs the deep check (the node does once its tracker exists).
func (v *CommitteeValidator) SetCheck(c CommitteeCheck) {
	v.mu.Lock()
	v.check = c
	v.mu.Unlock()
}

// Validate implements record.Validator.
func (v *CommitteeValidator) Validate(key string, value []byte) error {
	e, _, tickets, err := v.open(key, value)
	if err != nil {
		return err
	}
	v.mu.Lock()
	check := v.check
	v.mu.Unlock()
	if check != nil {
		if err := check(e, tickets); err != nil {
			return fmt.Errorf("p2p: committee record of epoch %d: %w", e, err)
		}
	}
	return nil
}

// Select implements record.Validator.
func (v *CommitteeValidator) Select(key string, values [][]byte) (int, error) {
	best, bestSealed, bestN := -1, false, -1
	for i, value := range values {
		if v.Validate(key, value) != nil {
			continue
		}
		_, rec, tickets, _ := v.open(key, value)
		better := best < 0 || (rec.Sealed && !bestSealed) || (rec.Sealed == bestSealed && len(tickets) > bestN)
		if better {
			best, bestSealed, bestN = i, rec.Sealed, len(tickets)
		}
	}
	if best < 0 {
		return 0, errors.New("p2p: no valid committee record to select")
	}
	return best, nil
}

// OpenCommitteeRecord decodes a committee record stored under key and verifies its form and every
// ticket envelope.
func OpenCommitteeRecord(key string, value []byte) (uint64, *pb.CommitteeRecord, []OpenedTicket, error) {
	bad := func(format string, a ...any) (uint64, *pb.CommitteeRecord, []OpenedTicket, error) {
		return 0, nil, nil, fmt.Errorf("%w: committee record: %s", ErrMalformed, fmt.Sprintf(format, a...))
	}
	if len(value) > MaxCommitteeRecordSize {
		return bad("%d bytes, limit %d", len(value), MaxCommitteeRecordSize)
	}
	rest, ok := strings.CutPrefix(key, "/"+CommitteeNamespace+"/")
	if !ok {
		return bad("key not in /%s", CommitteeNamespace)
	}
	e, err := strconv.ParseUint(rest, 10, 64)
	if err != nil || CommitteeKey(e) != key {
		return bad("key %q does not name an epoch", key)
	}
	rec := new(pb.CommitteeRecord)
	if err := proto.Unmarshal(value, rec); err != nil {
		return bad("%v", err)
	}
	if rec.Epoch != e {
		return bad("record of epoch %d under the key of epoch %d", rec.Epoch, e)
	}
	if len(rec.Tickets) > MaxCommitteeTickets {
		return bad("%d tickets, limit %d", len(rec.Tickets), MaxCommitteeTickets)
	}
	out := make([]OpenedTicket, 0, len(rec.Tickets))
	for i, raw := range rec.Tickets {
		tk, signer, err := OpenIndexerTicket(raw)
		if err != nil {
			return bad("ticket %d: %v", i, err)
		}
		if tk.Epoch != e {
			return bad("ticket %d is for epoch %d", i, tk.Epoch)
		}
		if i > 0 && bytes.Compare(tk.PeerId, out[i-1].Msg.PeerId) <= 0 {
			return bad("tickets not strictly sorted by peer ID")
		}
		out = append(out, OpenedTicket{Msg: tk, Signer: signer, Raw: raw})
	}
	return e, rec, out, nil
}

// SetCommitteeCheck installs the deep check of committee records.
func (n *Net) SetCommitteeCheck(c CommitteeCheck) { n.committees.SetCheck(c) }

// PutCommittee stores a committee record (tickets sorted by peer ID). A better record already held
// (sealed, or with more tickets) is not an error.
func (n *Net) PutCommittee(ctx context.Context, rec *pb.CommitteeRecord) error {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		return err
	}
	if err := n.dht.PutValue(ctx, CommitteeKey(rec.Epoch), data); err != nil {
		if strings.Contains(err.Error(), "can't replace a newer value with an older value") {
			return nil
		}
		return fmt.Errorf("p2p: put committee record of epoch %d: %w", rec.Epoch, err)
	}
	return nil
}

// Committee fetches epoch e's best committee record. quorum as for ContainerRecord.
func (n *Net) Committee(ctx context.Context, e uint64, quorum int) (*pb.CommitteeRecord, []OpenedTicket, error) {
	data, err := n.getValue(ctx, CommitteeKey(e), quorum)
	if errors.Is(err, routing.ErrNotFound) || (err != nil && data == nil && ctx.Err() == nil) {
		return nil, nil, fmt.Errorf("%w: committee record of epoch %d", ErrNotFound, e)
	}
	if err != nil && data == nil {
		return nil, nil, fmt.Errorf("p2p: get committee record of epoch %d: %w", e, err)
	}
	_, rec, tickets, err := OpenCommitteeRecord(CommitteeKey(e), data)
	if err != nil {
		return nil, nil, err
	}
	return rec, tickets, nil
}
