package p2p

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	lru "github.com/hashicorp/golang-lru/v2"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pspb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Gossip limits.
const (
	// MaxGossipMessageSize bounds any gossipsub message.
	MaxGossipMessageSize = 64 << 10
	// MaxHeartbeatSize bounds a heartbeat envelope.
	MaxHeartbeatSize = 2 << 10
	// heartbeatTopicPrefix is followed by the region code.
	heartbeatTopicPrefix = "rendermesh/heartbeat/1/"
)

// GossipMsgID identifies a gossip message by its content: the first 20 bytes of SHA-256 over its
// topic, a zero byte and its data. Messages carry no author or sequence number (StrictNoSign, see
// New), so the same envelope published twice, by anyone, is one message: gossipsub forwards it
// once and its seen cache drops the copies before any validator runs.
func GossipMsgID(m *pspb.Message) string {
	h := sha256.New()
	h.Write([]byte(m.GetTopic()))
	h.Write([]byte{0})
	h.Write(m.GetData())
	var sum [sha256.Size]byte
	return string(h.Sum(sum[:0])[:20])
}

// HeartbeatTopic is the gossipsub topic carrying the heartbeats of one region's containers.
func HeartbeatTopic(region string) string { return heartbeatTopicPrefix + region }

// ErrNoPubSub is returned by gossip operations of a light client.
var ErrNoPubSub = errors.New("p2p: gossip is not available on a light client")

// PublishHeartbeat signs hb and publishes it on its region's topic.
func (n *Net) PublishHeartbeat(ctx context.Context, hb *pb.Heartbeat) error {
	t, err := n.heartbeatTopic(hb.Region)
	if err != nil {
		return err
	}
	data, err := Seal(KindHeartbeat, hb, n.host.Peerstore().PrivKey(n.host.ID()))
	if err != nil {
		return err
	}
	if err := t.Publish(ctx, data); err != nil {
		return fmt.Errorf("p2p: publish heartbeat on %s: %w", HeartbeatTopic(hb.Region), err)
	}
	return nil
}

// SubscribeHeartbeats carries region's heartbeats: this node joins the topic's mesh, forwards them and
// calls fn with each valid one (its own included), from one goroutine, until Close.
func (n *Net) SubscribeHeartbeats(region string, fn func(*pb.Heartbeat)) error {
	return n.SubscribeHeartbeatsUntil(context.Background(), region, fn)
}

// CarryHeartbeats makes this node carry region's heartbeats without consuming them, until Close: it
// joins the topic's mesh, validates and forwards them (gossipsub's relay), and hands none to a
// subscriber. A node that serves a region but does not read its heartbeats (a plain full node, a
// container for its own region) needs no more; a subscription would queue every one for nobody.
func (n *Net) CarryHeartbeats(region string) error {
	t, err := n.heartbeatTopic(region)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return net.ErrClosed
	}
	if _, ok := n.carried[region]; ok {
		return nil
	}
	cancel, err := t.Relay()
	if err != nil {
		return fmt.Errorf("p2p: carry %s: %w", HeartbeatTopic(region), err)
	}
	n.carried[region] = cancel
	return nil
}

// GossipPeers lists the peers this node knows to be in region's heartbeat topic.
func (n *Net) GossipPeers(region string) []peer.ID {
	if n.ps == nil {
		return nil
	}
	return n.ps.ListPeers(HeartbeatTopic(region))
}

func (n *Net) heartbeatTopic(region string) (*pubsub.Topic, error) {
	if n.ps == nil {
		return nil, ErrNoPubSub
	}
	name := HeartbeatTopic(region)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, net.ErrClosed
	}
	if t, ok := n.topics[name]; ok {
		return t, nil
	}
	validate := func(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		return n.hbValidator.validate(region, msg)
	}
	if err := n.ps.RegisterTopicValidator(name, validate); err != nil {
		return nil, fmt.Errorf("p2p: validator for %s: %w", name, err)
	}
	t, err := n.ps.Join(name)
	if err != nil {
		return nil, fmt.Errorf("p2p: join %s: %w", name, err)
	}
	if err := t.SetScoreParams(heartbeatTopicScore(n.cfg.HeartbeatInterval)); err != nil {
		return nil, fmt.Errorf("p2p: score params for %s: %w", name, err)
	}
	n.topics[name] = t
	return t, nil
}

// Reasons a heartbeat is rejected (the sender is penalised) or ignored (dropped without penalty).
const (
	HBRejectOversize  = "oversize"
	HBRejectMalformed = "malformed"
	HBRejectSignature = "bad_signature"
	HBRejectAuthor    = "author_mismatch"
	HBRejectRegion    = "wrong_region"
	HBIgnoreStale     = "stale"
	HBIgnoreReplayed  = "replayed"
)

// heartbeatValidator checks heartbeats on every region topic.
type heartbeatValidator struct {
	clock   clock.Clock
	window  time.Duration // how far sent time may be from now
	metrics *Metrics

	mu   sync.Mutex
	last *lru.Cache[peer.ID, uint64]
}

func newHeartbeatValidator(clk clock.Clock, interval time.Duration, m *Metrics) *heartbeatValidator {
	last, _ := lru.New[peer.ID, uint64](1 << 16)
	return &heartbeatValidator{clock: clk, window: 3*interval + 30*time.Second, metrics: m, last: last}
}

func (v *heartbeatValidator) validate(region string, msg *pubsub.Message) pubsub.ValidationResult {
	hb, reason := v.check(region, msg.GetFrom(), msg.GetData())
	switch reason {
	case "":
		msg.ValidatorData = hb
		v.metrics.HeartbeatDelivered.Inc()
		return pubsub.ValidationAccept
	case HBIgnoreStale, HBIgnoreReplayed:
		v.metrics.HeartbeatRejected.WithLabelValues(reason).Inc()
		return pubsub.ValidationIgnore
	default:
		v.metrics.HeartbeatRejected.WithLabelValues(reason).Inc()
		return pubsub.ValidationReject
	}
}

// check returns the heartbeat, or the reason it fails. author is the gossip message's author: ""
// on rendermesh's gossip (StrictNoSign), where the envelope's signer is the author; a message that
// names one must be the signer's.
func (v *heartbeatValidator) check(region string, author peer.ID, data []byte) (*pb.Heartbeat, string) {
	hb, signer, err := OpenHeartbeat(data)
	switch {
	case errors.Is(err, errOversize):
		return nil, HBRejectOversize
	case errors.Is(err, ErrSignature):
		return nil, HBRejectSignature
	case err != nil:
		return nil, HBRejectMalformed
	case author != "" && signer != author:
		return nil, HBRejectAuthor
	case hb.Region != region:
		return nil, HBRejectRegion
	}
	sent := time.UnixMilli(hb.SentUnixMs)
	if d := v.clock.Now().Sub(sent); d > v.window || d < -v.window {
		return nil, HBIgnoreStale
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if last, ok := v.last.Get(signer); ok && hb.Seq <= last {
		return nil, HBIgnoreReplayed
	}
	v.last.Add(signer, hb.Seq)
	return hb, ""
}

var errOversize = errors.New("p2p: message too large")

// OpenHeartbeat verifies a heartbeat envelope and checks that its payload names its signer.
func OpenHeartbeat(data []byte) (*pb.Heartbeat, peer.ID, error) {
	if len(data) > MaxHeartbeatSize {
		return nil, "", fmt.Errorf("%w: heartbeat of %d bytes, limit %d", errOversize, len(data), MaxHeartbeatSize)
	}
	hb := new(pb.Heartbeat)
	signer, err := Open(KindHeartbeat, data, hb)
	if err != nil {
		return nil, "", err
	}
	claimed, err := peer.IDFromBytes(hb.PeerId)
	if err != nil || claimed != signer {
		return nil, "", fmt.Errorf("%w: heartbeat payload does not name its signer", ErrMalformed)
	}
	if hb.LoadPermille > 1000 || hb.Region == "" || len(hb.Region) > 32 || strings.ContainsAny(hb.Region, "/ \t\n") {
		return nil, "", fmt.Errorf("%w: heartbeat fields out of range", ErrMalformed)
	}
	return hb, signer, nil
}

// peerScoreParams: invalid messages cost a peer far more than good ones earn it, so a peer that sends
// forged or malformed messages is soon graylisted; colocation is penalised except on whitelisted nets.
func peerScoreParams(cfg Config) *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		Topics:                      map[string]*pubsub.TopicScoreParams{},
		TopicScoreCap:               100,
		AppSpecificScore:            func(peer.ID) float64 { return 0 },
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -10,
		IPColocationFactorThreshold: 8,
		IPColocationFactorWhitelist: cfg.ScoreWhitelist,
		BehaviourPenaltyWeight:      -10,
		BehaviourPenaltyThreshold:   6,
		BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 10 * time.Minute,
	}
}

// ScoreGraylistThreshold: gossipsub ignores every message of a peer scored below it.
const ScoreGraylistThreshold = -1000

func peerScoreThresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold:             -100,
		PublishThreshold:            -500,
		GraylistThreshold:           ScoreGraylistThreshold,
		AcceptPXThreshold:           5,
		OpportunisticGraftThreshold: 2,
	}
}

// heartbeatTopicScore rewards first deliveries a little and punishes invalid ones hard. Mesh delivery
// rates are not scored: a region's heartbeat rate depends on how many containers it has.
func heartbeatTopicScore(interval time.Duration) *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                     1,
		TimeInMeshWeight:                0.01,
		TimeInMeshQuantum:               time.Second,
		TimeInMeshCap:                   3600,
		FirstMessageDeliveriesWeight:    0.5,
		FirstMessageDeliveriesDecay:     pubsub.ScoreParameterDecay(10 * interval),
		FirstMessageDeliveriesCap:       20,
		MeshFailurePenaltyDecay:         pubsub.ScoreParameterDecay(time.Minute),
		MeshMessageDeliveriesDecay:      pubsub.ScoreParameterDecay(time.Minute),
		MeshMessageDeliveriesWindow:     10 * time.Millisecond,
		MeshMessageDeliveriesActivation: time.Minute,
		InvalidMessageDeliveriesWeight:  -math.Sqrt(1000) * 10, // squared in the score: one invalid message costs 1000
		InvalidMessageDeliveriesDecay:   pubsub.ScoreParameterDecay(time.Hour),
	}
}

func (n *Net) inspectScores(scores map[peer.ID]float64) {
	n.mu.Lock()
	n.scores = scores
	n.mu.Unlock()
}

// PeerScore is p's gossipsub score in the last snapshot (Config.ScoreInspect must be set); ok is
// false for a peer gossipsub does not score (never connected, or long gone).
func (n *Net) PeerScore(p peer.ID) (score float64, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	score, ok = n.scores[p]
	return score, ok
}
