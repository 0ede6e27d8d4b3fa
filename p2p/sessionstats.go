package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Session statistics (docs/CHECKERS.md, "Checks during sessions"): with its consent, a consumer
// sends samples of its render session's stream, sealed as KindSessionStats, to a checker assigned
// to the container, on ProtoSessionStats; the checker answers with a SessionStatsAck.
const (
	// MaxSessionStatsSize bounds a whole SessionStats envelope: the session ticket inside it takes
	// about 400 bytes with a few container addresses, the sample's own fields under 60.
	MaxSessionStatsSize = 4 << 10
	// MaxSessionStatsAckSize bounds the checker's answer.
	MaxSessionStatsAckSize = 256

	// Bounds of a sample.
	MinSessionStatsWindowMs = 1000
	MaxSessionStatsWindowMs = 15 * 60 * 1000
	MaxSessionStatsFPS      = 240
	MaxSessionStatsSide     = 8192
	MaxSessionStatsReason   = 128
)

// ProtoSessionStats carries a consumer's session statistics to a checker.
var ProtoSessionStats = ProtocolID("session-stats", "1.0.0")

// KindSessionStats is a consumer's signed sample of its session's stream.
var KindSessionStats = Kind{Domain: "rendermesh-session-stats", Codec: []byte("/rendermesh/session-stats/1")}

// ErrBadSessionStats is wrapped by every error of SealSessionStats and OpenSessionStats.
var ErrBadSessionStats = errors.New("p2p: invalid session statistics")

// SealSessionStats checks s's fields (its usage receipt too, if any) and signs it with key, which
// must be the key of the consumer its ticket names.
func SealSessionStats(s *pb.SessionStats, key crypto.PrivKey) ([]byte, error) {
	tk, err := checkSessionStats(s)
	if err != nil {
		return nil, err
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("p2p: seal session statistics: %w", err)
	}
	if peer.ID(tk.Consumer) != id {
		return nil, fmt.Errorf("%w: the ticket's consumer is %s, the signer %s", ErrBadSessionStats, peer.ID(tk.Consumer), id)
	}
	if len(s.Receipt) > 0 {
		if _, err := sessionStatsReceipt(s.Receipt, tk); err != nil {
			return nil, err
		}
	}
	data, err := Seal(KindSessionStats, s, key)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSessionStatsSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadSessionStats, len(data), MaxSessionStatsSize)
	}
	return data, nil
}

// OpenedSessionStats is a session statistics envelope that OpenSessionStats verified.
type OpenedSessionStats struct {
	Sample   *pb.SessionStats
	Ticket   *pb.SessionTicket
	Consumer peer.ID
	// Receipt is the sample's usage receipt, signed by the ticket's container for the ticket's
	// session and consumer; nil when the sample carries none.
	Receipt *pb.UsageReceipt
}

// OpenSessionStats verifies a session statistics envelope: its size, its signature, its fields,
// the session ticket inside it (signed by the indexer it names, for the consumer that signed the
// sample) and the usage receipt, if any (signed by the ticket's container, of the same session and
// consumer). Whether the ticket's indexer sat on its epoch's committee, whether the session still
// runs, and whether the checker is assigned to the container, are the receiver's to check: they
// need the epoch's state and the receiver's clock.
func OpenSessionStats(raw []byte) (*OpenedSessionStats, error) {
	if len(raw) > MaxSessionStatsSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadSessionStats, len(raw), MaxSessionStatsSize)
	}
	s := new(pb.SessionStats)
	signer, err := Open(KindSessionStats, raw, s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSessionStats, err)
	}
	tk, err := checkSessionStats(s)
	if err != nil {
		return nil, err
	}
	if peer.ID(tk.Consumer) != signer {
		return nil, fmt.Errorf("%w: the ticket's consumer is %s, the signer %s", ErrBadSessionStats, peerString(tk.Consumer), signer)
	}
	o := &OpenedSessionStats{Sample: s, Ticket: tk, Consumer: signer}
	if len(s.Receipt) > 0 {
		if o.Receipt, err = sessionStatsReceipt(s.Receipt, tk); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// sessionStatsReceipt opens a sample's usage receipt and checks that it is of the ticket's session.
func sessionStatsReceipt(raw []byte, tk *pb.SessionTicket) (*pb.UsageReceipt, error) {
	r, err := OpenReceipt(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: usage receipt: %w", ErrBadSessionStats, err)
	}
	switch {
	case !bytes.Equal(r.SessionId, tk.SessionId):
		return nil, fmt.Errorf("%w: the usage receipt is of another session", ErrBadSessionStats)
	case !bytes.Equal(r.Container, tk.Container):
		return nil, fmt.Errorf("%w: the usage receipt is of container %s, the ticket's %s", ErrBadSessionStats, peerString(r.Container), peerString(tk.Container))
	case !bytes.Equal(r.Consumer, tk.Consumer):
		return nil, fmt.Errorf("%w: the usage receipt is of consumer %s, the ticket's %s", ErrBadSessionStats, peerString(r.Consumer), peerString(tk.Consumer))
	case r.IssuedUnixMs <= 0:
		return nil, fmt.Errorf("%w: the usage receipt has no time", ErrBadSessionStats)
	}
	return r, nil
}

// checkSessionStats checks what a sample says on its own, and opens its ticket.
func checkSessionStats(s *pb.SessionStats) (*pb.SessionTicket, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSessionStats, fmt.Sprintf(format, args...))
	}
	switch {
	case s == nil:
		return nil, bad("no sample")
	case s.Seq == 0:
		return nil, bad("sample number 0 (they count from 1)")
	case s.WindowMs < MinSessionStatsWindowMs || s.WindowMs > MaxSessionStatsWindowMs:
		return nil, bad("window of %d ms, want %d to %d", s.WindowMs, MinSessionStatsWindowMs, MaxSessionStatsWindowMs)
	case s.FpsAsked == 0 || s.FpsAsked > MaxSessionStatsFPS:
		return nil, bad("%d frames/s asked, want 1 to %d", s.FpsAsked, MaxSessionStatsFPS)
	case s.FpsMilli > MaxSessionStatsFPS*1000:
		return nil, bad("%d.%03d frames/s, limit %d", s.FpsMilli/1000, s.FpsMilli%1000, MaxSessionStatsFPS)
	case uint64(s.Frames) > uint64(s.WindowMs)*MaxSessionStatsFPS/1000+1:
		return nil, bad("%d frames in %d ms", s.Frames, s.WindowMs)
	case s.Width > MaxSessionStatsSide || s.Height > MaxSessionStatsSide:
		return nil, bad("size %dx%d, limit %d", s.Width, s.Height, MaxSessionStatsSide)
	case s.LatencyUsP99 < s.LatencyUsP50:
		return nil, bad("latency p99 %d us below p50 %d us", s.LatencyUsP99, s.LatencyUsP50)
	case s.LongestGapMs > s.WindowMs:
		return nil, bad("a gap of %d ms in a window of %d ms", s.LongestGapMs, s.WindowMs)
	case s.SentUnixMs <= 0:
		return nil, bad("no time")
	}
	tk, _, err := OpenSessionTicket(s.Ticket)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSessionStats, err)
	}
	return tk, nil
}

// SealSessionStats signs a sample of this node's session (the node must be the ticket's consumer).
func (n *Net) SealSessionStats(s *pb.SessionStats) ([]byte, error) {
	return SealSessionStats(s, n.host.Peerstore().PrivKey(n.host.ID()))
}

// ReadSessionStats reads one sealed sample, written as one length-prefixed message (a uvarint
// length, then the envelope), and returns its bytes unopened: the checker keeps them as evidence.
// A length above MaxSessionStatsSize fails with an error wrapping ErrMsgTooLarge before the body is
// read.
func ReadSessionStats(r io.Reader) ([]byte, error) {
	return readFrame(r, MaxSessionStatsSize, "session statistics")
}

// SendSessionStats sends a sealed sample to a checker and returns its answer. The checker is
// found through the DHT when this node knows no address of it.
func (n *Net) SendSessionStats(ctx context.Context, checker peer.ID, raw []byte) (*pb.SessionStatsAck, error) {
	if checker != n.host.ID() {
		if err := n.Reach(ctx, checker); err != nil {
			return nil, err
		}
	}
	s, err := n.requestStream(ctx, checker, ProtoSessionStats)
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if err := writeFrame(s, raw, "session statistics"); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("%w (to %s)", err, checker)
	}
	_ = s.CloseWrite()
	ack := &pb.SessionStatsAck{}
	if err := ReadMsg(s, ack, MaxSessionStatsAckSize); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("p2p: session statistics answer from %s: %w", checker, err)
	}
	_ = s.Close()
	return ack, nil
}

// Reach makes sure this node can open streams to p: connected already, an address known, or one
// found in the DHT. It is for deliberate, occasional requests (a checker's check, a consumer's
// session sample) that must really dial: it clears libp2p's dial backoff for p, which other
// subsystems' failed dials to a busy peer (the DHT's, gossipsub's) extend for up to 5 minutes and
// which would otherwise fail the request without a dial (BackoffBase + BackoffCoef × tries²).
func (n *Net) Reach(ctx context.Context, p peer.ID) error {
	if n.Connected(p) {
		return nil
	}
	if sw, ok := n.host.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(p)
	}
	if len(n.host.Peerstore().Addrs(p)) > 0 {
		return nil
	}
	lctx, done := n.patientLookup(ctx)
	ai, err := n.dht.FindPeer(lctx, p)
	if stalled := done(); err != nil && stalled && ctx.Err() == nil {
		return fmt.Errorf("%w: addresses of %s (the lookup stalled on peers that do not answer)", ErrNotFound, p)
	}
	if err != nil {
		return fmt.Errorf("p2p: find %s: %w", p, err)
	}
	n.host.Peerstore().AddAddrs(p, ai.Addrs, peerstore.TempAddrTTL)
	return nil
}
