package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Committee history (docs/EPOCHS.md, "Late joiners and light clients"): the DHT keeps a committee
// record for MaxRecordTTL after it was put, and records are put when their epoch starts. A node or
// light client that joins later than that derives the beacon from genesis with records that full
// nodes keep and serve on ProtoCommitteeHistory.

// ProtoCommitteeHistory serves sealed committee records of past epochs and, asked for it, a node's
// live view of the running and next epochs' committees.
var ProtoCommitteeHistory = ProtocolID("committee-history", "1.0.0")

const (
	// MaxHistoryBatch bounds the records of one history answer.
	MaxHistoryBatch = 64
	// MaxLiveEpochs bounds the records of one live answer: the running epoch and the next (or an
	// earlier epoch whose committee serves the running one, and the epoch after it).
	MaxLiveEpochs = 2
	// maxHistoryRequestSize bounds a CommitteeHistoryRequest (two varints and a flag).
	maxHistoryRequestSize = 32
	// historyTimeout bounds serving and reading one history answer.
	historyTimeout = 30 * time.Second
)

// HistorySource returns epoch e's sealed committee record as the node keeps it (an encoded
// CommitteeRecord), and false when it keeps none.
type HistorySource func(e uint64) ([]byte, bool)

// HistoryRecord is one committee record of a history answer, opened.
type HistoryRecord struct {
	Epoch   uint64
	Raw     []byte // the encoded CommitteeRecord
	Tickets []OpenedTicket
}

// ServeCommitteeHistory answers history requests from sealed: the records of consecutive epochs
// from the request's first, up to MaxHistoryBatch, stopping at the first sealed does not hold. It
// answers live requests from live, up to MaxLiveEpochs epochs, the same way.
func (n *Net) ServeCommitteeHistory(sealed, live HistorySource) {
	n.Handle(ProtoCommitteeHistory, historyTimeout, func(ctx context.Context, remote peer.ID, s io.ReadWriter) error {
		req := &pb.CommitteeHistoryRequest{}
		if err := ReadMsg(s, req, maxHistoryRequestSize); err != nil {
			return err
		}
		src, count := sealed, uint64(min(req.Count, MaxHistoryBatch))
		if req.Live {
			if live == nil {
				return errors.New("p2p: this node serves no live committees")
			}
			src, count = live, uint64(min(req.Count, MaxLiveEpochs))
		}
		for e := req.From; e-req.From < count && e >= req.From; e++ {
			raw, ok := src(e)
			if !ok {
				break
			}
			if err := writeFrame(s, raw, "committee record"); err != nil {
				return err
			}
		}
		return nil
	})
}

// CommitteeHistory asks peer p for the sealed committee records of up to count epochs (at most
// MaxHistoryBatch) from `from`. The answer may be shorter (p keeps no more); every record in it is
// well formed, sealed, of the epoch its place says, and its ticket envelopes verify. Whether the
// tickets are real draws is the caller's to check, against the seeds it derives.
func (n *Net) CommitteeHistory(ctx context.Context, p peer.ID, from uint64, count int) ([]HistoryRecord, error) {
	count = min(max(count, 1), MaxHistoryBatch)
	return n.askHistory(ctx, p, &pb.CommitteeHistoryRequest{From: from, Count: uint32(count)}, func(r io.Reader) ([]HistoryRecord, error) {
		return ReadCommitteeHistory(r, from, count)
	})
}

// LiveCommittees asks peer p for its live view of the committees of up to count epochs (at most
// MaxLiveEpochs) from `from`: the tickets it has verified for each, sealed or not. Every record in
// the answer is well formed and of the epoch its place says, and its ticket envelopes verify; the
// caller verifies each ticket as it would one from gossip.
func (n *Net) LiveCommittees(ctx context.Context, p peer.ID, from uint64, count int) ([]HistoryRecord, error) {
	count = min(max(count, 1), MaxLiveEpochs)
	return n.askHistory(ctx, p, &pb.CommitteeHistoryRequest{From: from, Count: uint32(count), Live: true}, func(r io.Reader) ([]HistoryRecord, error) {
		return ReadLiveCommittees(r, from, count)
	})
}

func (n *Net) askHistory(ctx context.Context, p peer.ID, req *pb.CommitteeHistoryRequest, read func(io.Reader) ([]HistoryRecord, error)) ([]HistoryRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	s, err := n.openStream(ctx, p, ProtoCommitteeHistory)
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if err := WriteMsg(s, req); err != nil {
		_ = s.Reset()
		return nil, err
	}
	_ = s.CloseWrite()
	recs, err := read(s)
	if err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("p2p: committee history from %s: %w", p, err)
	}
	_ = s.Close()
	return recs, nil
}

// ReadCommitteeHistory reads the answer to a request for count epochs from `from`: records of
// consecutive epochs from `from`, each sealed and well formed (OpenCommitteeRecord), up to the end
// of r. More than count records, a record of another epoch, an unsealed one or a malformed one
// fail the whole answer.
func ReadCommitteeHistory(r io.Reader, from uint64, count int) ([]HistoryRecord, error) {
	return readHistory(r, from, count, true)
}

// ReadLiveCommittees reads the answer to a live request for count epochs from `from`: as
// ReadCommitteeHistory, but records may be sealed or not.
func ReadLiveCommittees(r io.Reader, from uint64, count int) ([]HistoryRecord, error) {
	return readHistory(r, from, count, false)
}

func readHistory(r io.Reader, from uint64, count int, sealed bool) ([]HistoryRecord, error) {
	var out []HistoryRecord
	for {
		raw, err := readFrame(r, MaxCommitteeRecordSize, "committee record")
		if errors.Is(err, io.EOF) { // the end of the answer (a cut inside a record is io.ErrUnexpectedEOF)
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		e := from + uint64(len(out))
		if len(out) >= count || e < from {
			return nil, fmt.Errorf("%w: committee history: more than the %d records asked for", ErrMalformed, count)
		}
		_, rec, tickets, err := OpenCommitteeRecord(CommitteeKey(e), raw)
		if err != nil {
			return nil, fmt.Errorf("committee history, epoch %d: %w", e, err)
		}
		if sealed && !rec.Sealed {
			return nil, fmt.Errorf("%w: committee history: the record of epoch %d is not sealed", ErrMalformed, e)
		}
		out = append(out, HistoryRecord{Epoch: e, Raw: raw, Tickets: tickets})
	}
}

// HistoryPeers lists up to limit connected peers that serve committee history (as identify told),
// starting at a rotation of the list given by offset, so that callers can spread their asks.
func (n *Net) HistoryPeers(limit, offset int) []peer.ID {
	var out []peer.ID
	peers := n.host.Network().Peers()
	slices.Sort(peers) // the same connections give the same choice (the simnet's reproducibility)
	for i := range peers {
		p := peers[(i+offset)%len(peers)]
		if ok, _ := n.host.Peerstore().SupportsProtocols(p, ProtoCommitteeHistory); len(ok) > 0 {
			out = append(out, p)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}
