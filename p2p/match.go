package p2p

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Stream protocols of matchmaking, sessions and checks.
var (
	// ProtoMatch carries a consumer's MatchRequest to an indexer and its MatchResponse back.
	ProtoMatch = ProtocolID("match", "1.0.0")
	// ProtoReserve carries an indexer's ReserveRequest to a container and its ReserveResponse back.
	ProtoReserve = ProtocolID("reserve", "1.0.0")
	// ProtoSession is the consumer's session with the container: SessionOpen, then SessionMsg both
	// ways (acceptance, usage receipts each minute and their countersignatures, renewal, end).
	ProtoSession = ProtocolID("session", "1.0.0")
	// ProtoRender is a render session's WebRTC signalling (RenderSignal both ways: offer, answer,
	// trickled candidates, ICE restarts, end), authorised by the session ticket.
	ProtoRender = ProtocolID("render", "1.0.0")
	// ProtoRelay is an indexer's request for a relay node's grant (RelayGrantRequest, RelayGrant):
	// the secret it mints TURN credentials with for the consumers it matches this epoch.
	ProtoRelay = ProtocolID("relay", "1.0.0")
	// ProtoTelemetry is a checker's request for a container's NVML readings (TelemetryRequest, then
	// the container's signed TelemetryReport; p2p/telemetry.go).
	ProtoTelemetry = ProtocolID("telemetry", "1.0.0")
)

// Signed objects of matchmaking and sessions.
var (
	KindSessionTicket = Kind{Domain: "rendermesh-session-ticket", Codec: []byte("/rendermesh/session-ticket/1")}
	KindUsageReceipt  = Kind{Domain: "rendermesh-usage-receipt", Codec: []byte("/rendermesh/usage-receipt/1")}
	KindReceiptAck    = Kind{Domain: "rendermesh-receipt-ack", Codec: []byte("/rendermesh/receipt-ack/1")}
)

// Size limits of the match and session protocols' messages, in bytes.
const (
	MaxMatchRequestSize  = 4 << 10
	MaxMatchResponseSize = 8 << 10
	MaxReserveSize       = 1 << 10
	MaxSessionMsgSize    = 8 << 10
	// MaxRenderSignalSize bounds one signalling message: an SDP offer with every candidate inlined
	// stays under 16 KiB.
	MaxRenderSignalSize = 64 << 10
	MaxRelayGrantSize   = 2 << 10
)

// Seal signs msg as an object of kind with this node's key.
func (n *Net) Seal(kind Kind, msg proto.Message) ([]byte, error) {
	return Seal(kind, msg, n.host.Peerstore().PrivKey(n.host.ID()))
}

// ErrTicket is wrapped by OpenSessionTicket's errors.
var ErrTicket = errors.New("p2p: invalid session ticket")

// OpenSessionTicket verifies a SessionTicket envelope and returns the ticket and its signer (the
// indexer), which must be the ticket's indexer.
func OpenSessionTicket(data []byte) (*pb.SessionTicket, peer.ID, error) {
	tk := &pb.SessionTicket{}
	signer, err := Open(KindSessionTicket, data, tk)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrTicket, err)
	}
	if string(tk.Indexer) != string(signer) {
		return nil, "", fmt.Errorf("%w: signed by %s, names indexer %s", ErrTicket, signer, peerString(tk.Indexer))
	}
	if len(tk.SessionId) != 16 || len(tk.Consumer) == 0 || len(tk.Container) == 0 {
		return nil, "", fmt.Errorf("%w: missing session ID, consumer or container", ErrTicket)
	}
	return tk, signer, nil
}

// ErrReceipt is wrapped by the receipt openers' errors.
var ErrReceipt = errors.New("p2p: invalid usage receipt")

// OpenReceipt verifies a UsageReceipt envelope: signed by the receipt's container.
func OpenReceipt(data []byte) (*pb.UsageReceipt, error) {
	r := &pb.UsageReceipt{}
	signer, err := Open(KindUsageReceipt, data, r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReceipt, err)
	}
	if string(r.Container) != string(signer) {
		return nil, fmt.Errorf("%w: signed by %s, names container %s", ErrReceipt, signer, peerString(r.Container))
	}
	return r, nil
}

// OpenCosignedReceipt verifies a ReceiptAck envelope: the consumer's countersignature over the
// container's receipt envelope. Both signatures must verify and name the receipt's parties.
func OpenCosignedReceipt(data []byte) (*pb.UsageReceipt, error) {
	ack := &pb.ReceiptAck{}
	signer, err := Open(KindReceiptAck, data, ack)
	if err != nil {
		return nil, fmt.Errorf("%w: countersignature: %w", ErrReceipt, err)
	}
	r, err := OpenReceipt(ack.Receipt)
	if err != nil {
		return nil, err
	}
	if string(r.Consumer) != string(signer) {
		return nil, fmt.Errorf("%w: countersigned by %s, names consumer %s", ErrReceipt, signer, peerString(r.Consumer))
	}
	return r, nil
}

func peerString(b []byte) string {
	id, err := peer.IDFromBytes(b)
	if err != nil {
		return fmt.Sprintf("<invalid peer ID %x>", b)
	}
	return id.String()
}

// AddAddrs remembers binary multiaddrs of p for ttl (addresses that do not parse are skipped), so a
// stream to a peer named in a ticket can be opened without a DHT lookup.
func (n *Net) AddAddrs(p peer.ID, addrs [][]byte, ttl time.Duration) {
	var out []ma.Multiaddr
	for _, b := range addrs {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			out = append(out, a)
		}
	}
	if ttl <= 0 {
		ttl = peerstore.TempAddrTTL
	}
	n.host.Peerstore().AddAddrs(p, out, ttl)
}

// NewStream opens a stream of protocol id to p. The caller owns the stream.
func (n *Net) NewStream(ctx context.Context, p peer.ID, id protocol.ID) (network.Stream, error) {
	return n.openStream(ctx, p, id)
}

// HandleStream serves protocol id with a long-lived handler that owns the stream: fn's context ends
// when the Net closes. The stream is closed when fn returns nil and reset when it returns an error.
func (n *Net) HandleStream(id protocol.ID, fn func(ctx context.Context, s network.Stream) error) {
	n.host.SetStreamHandler(id, func(s network.Stream) {
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			_ = s.Reset()
			return
		}
		n.wg.Add(1)
		n.mu.Unlock()
		defer n.wg.Done()
		ctx, cancel := context.WithCancel(n.ctx)
		defer cancel()
		stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
		defer stop()
		if err := fn(ctx, s); err != nil {
			n.log.Debug("stream handler failed", "protocol", id, "peer", s.Conn().RemotePeer(), "err", err)
			_ = s.Reset()
			return
		}
		_ = s.Close()
	})
}

// SubscribeHeartbeatsUntil is SubscribeHeartbeats that also ends when ctx ends: an indexer follows
// every region only while it serves.
func (n *Net) SubscribeHeartbeatsUntil(ctx context.Context, region string, fn func(*pb.Heartbeat)) error {
	t, err := n.heartbeatTopic(region)
	if err != nil {
		return err
	}
	sub, err := t.Subscribe()
	if err != nil {
		return fmt.Errorf("p2p: subscribe %s: %w", HeartbeatTopic(region), err)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		sub.Cancel()
		return net.ErrClosed
	}
	n.subs = append(n.subs, sub) // Close cancels it before it closes the topics
	n.wg.Add(1)
	n.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(n.ctx, cancel)
	go func() {
		defer n.wg.Done()
		defer func() {
			sub.Cancel()
			n.mu.Lock()
			n.subs = slices.DeleteFunc(n.subs, func(s *pubsub.Subscription) bool { return s == sub })
			n.mu.Unlock()
		}()
		defer stop()
		defer cancel()
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if hb, ok := msg.ValidatorData.(*pb.Heartbeat); ok {
				fn(hb)
			}
		}
	}()
	return nil
}
