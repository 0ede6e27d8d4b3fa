package p2p

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	lru "github.com/hashicorp/golang-lru/v2"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	cryptopb "github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	recordpb "github.com/libp2p/go-libp2p/core/record/pb"
	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// Checker attestations (docs/CHECKERS.md).
const (
	// AttestTopic carries attestations.
	AttestTopic = "rendermesh/attest/1"
	// MaxAttestationSize bounds a whole attestation envelope (a typical one takes about 350
	// bytes, the largest the field limits allow about 600).
	MaxAttestationSize = 1 << 10
	// MaxAttestReason bounds Attestation.reason, MaxAttestNonce Attestation.nonce and
	// MaxAttestGPUModel Measurements.gpu_model, in bytes.
	MaxAttestReason   = 128
	MaxAttestNonce    = 64
	MaxAttestGPUModel = 32
	// EvidenceHashSize is the size of Attestation.evidence_hash (SHA-256).
	EvidenceHashSize = 32
	// AttestSubscriptionBuffer is how many accepted attestations may wait for onValid (gossipsub's
	// default, 32, drops attestations when a burst arrives while onValid is busy).
	AttestSubscriptionBuffer = 4096
)

// KindAttestation is a checker's signed attestation.
var KindAttestation = Kind{Domain: "rendermesh-attestation", Codec: []byte("/rendermesh/attestation/1")}

// AttestReason says why an attestation was not accepted; it is the rejection metric's label and an
// error (errors.Is(r, ErrAttestation) holds for every reason). Ignorable reasons are no proof that
// the peer that sent the attestation misbehaves: the gossip validator ignores those attestations and
// rejects (and gossipsub's score punishes) the others.
type AttestReason string

// Reasons an attestation is not accepted, cheapest check first.
const (
	AttestOversize       AttestReason = "oversize"        // envelope above MaxAttestationSize
	AttestMalformed      AttestReason = "malformed"       // does not decode, a field out of range, not an Ed25519 signer
	AttestBadSignature   AttestReason = "bad_signature"   // signature does not verify, or another payload type
	AttestSignerMismatch AttestReason = "signer_mismatch" // the envelope's signer is not the attestation's checker
	AttestAuthorMismatch AttestReason = "author_mismatch" // names a gossip author other than its checker
	AttestWrongEpoch     AttestReason = "wrong_epoch"     // epoch not the issue time's, or not current (nor the previous one late)
	AttestIneligible     AttestReason = "ineligible"      // the checker may not check in that epoch
	AttestLate           AttestReason = "late"            // previous epoch, after its grace but within the late window (ignored)
	AttestFromFuture     AttestReason = "from_future"     // issued beyond the allowed clock skew (ignored)
	AttestDuplicate      AttestReason = "duplicate"       // same checker, container, epoch, kind and nonce seen (ignored)
	AttestOverQuota      AttestReason = "over_quota"      // the checker signed more than its quota this epoch (ignored)
)

// AttestReasons lists every reason.
var AttestReasons = []AttestReason{
	AttestOversize, AttestMalformed, AttestBadSignature, AttestSignerMismatch, AttestAuthorMismatch,
	AttestWrongEpoch, AttestIneligible, AttestLate, AttestFromFuture, AttestDuplicate, AttestOverQuota,
}

// ErrAttestation is matched by every AttestReason.
var ErrAttestation = errors.New("p2p: attestation not accepted")

func (r AttestReason) Error() string { return "p2p: attestation not accepted: " + string(r) }

// Is makes every reason match ErrAttestation.
func (r AttestReason) Is(target error) bool { return target == ErrAttestation }

// Ignorable reports whether r is no fault of the peer that forwarded the attestation: clocks
// disagree a little, or it was seen already.
func (r AttestReason) Ignorable() bool {
	switch r {
	case AttestLate, AttestFromFuture, AttestDuplicate, AttestOverQuota:
		return true
	}
	return false
}

// ed25519IDPrefix starts the binary peer ID of every Ed25519 key: an identity multihash (0x00,
// length 36) of the protobuf PublicKey {Type: Ed25519, Data: <32 bytes>}.
var ed25519IDPrefix = []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

// verifyAttest is how attestation signatures verify, on every node alike: RFC 8032's cofactored
// equation ([8][S]B = [8]R + [8][k]A) with canonical encodings of S, R and A required and
// small-order points allowed (curve25519-voi's FIPS 186-5 preset). Unlike crypto/ed25519's
// cofactorless check (which libp2p's keys and record.ConsumeEnvelope use), it agrees with batch
// verification, which checks the cofactored equation for many signatures at once (attestBatcher).
// The two differ only on signatures whose R carries a small-order component, which only the signer
// can make (TestAttestVerifyCofactored), and canonical encodings leave nobody else a way to give one
// signature new bytes.
var verifyAttest = &ed25519.Options{Verify: ed25519.VerifyOptionsFIPS_186_5}

// openedAttestation is an attestation envelope decoded once and checked up to its signature.
type openedAttestation struct {
	msg     *pb.Attestation
	pub     []byte // the signer's Ed25519 key, 32 bytes
	payload []byte
	sig     []byte
}

// decodeAttestation decodes an envelope and its payload (once each) and checks everything but the
// signature. Only Ed25519 signers are accepted: every rendermesh identity is one.
func decodeAttestation(data []byte) (openedAttestation, AttestReason) {
	if len(data) > MaxAttestationSize {
		return openedAttestation{}, AttestOversize
	}
	var env recordpb.Envelope
	if err := proto.Unmarshal(data, &env); err != nil || !canonicalEnvelope(&env, data) {
		return openedAttestation{}, AttestMalformed
	}
	key := env.GetPublicKey()
	if key.GetType() != cryptopb.KeyType_Ed25519 || len(key.GetData()) != ed25519.PublicKeySize {
		return openedAttestation{}, AttestMalformed
	}
	if !bytes.Equal(env.GetPayloadType(), KindAttestation.Codec) {
		return openedAttestation{}, AttestBadSignature
	}
	a := new(pb.Attestation)
	if err := proto.Unmarshal(env.GetPayload(), a); err != nil {
		return openedAttestation{}, AttestMalformed
	}
	if r := checkAttestationFields(a); r != "" {
		return openedAttestation{}, r
	}
	pub := key.GetData()
	if len(a.Checker) != len(ed25519IDPrefix)+len(pub) || !bytes.HasPrefix(a.Checker, ed25519IDPrefix) ||
		!bytes.Equal(a.Checker[len(ed25519IDPrefix):], pub) {
		return openedAttestation{}, AttestSignerMismatch
	}
	return openedAttestation{msg: a, pub: pub, payload: env.GetPayload(), sig: env.GetSignature()}, ""
}

// checkAttestationFields checks what an attestation says on its own.
func checkAttestationFields(a *pb.Attestation) AttestReason {
	switch {
	case a.Kind <= pb.CheckKind_CHECK_KIND_UNSPECIFIED || a.Kind > pb.CheckKind_CHECK_KIND_SESSION,
		a.Method <= pb.CheckMethod_CHECK_METHOD_UNSPECIFIED || a.Method > pb.CheckMethod_CHECK_METHOD_SESSION_STATS,
		// A consumer's session statistics are judged during its session only.
		a.Method == pb.CheckMethod_CHECK_METHOD_SESSION_STATS && a.Kind != pb.CheckKind_CHECK_KIND_SESSION,
		a.Verdict != pb.Verdict_VERDICT_PASS && a.Verdict != pb.Verdict_VERDICT_FAIL,
		len(a.EvidenceHash) != EvidenceHashSize,
		len(a.Nonce) == 0 || len(a.Nonce) > MaxAttestNonce,
		len(a.Reason) > MaxAttestReason,
		(a.Verdict == pb.Verdict_VERDICT_FAIL) != (a.Reason != ""),
		a.IssuedUnixMs <= 0,
		len(a.GetM().GetGpuModel()) > MaxAttestGPUModel,
		len(a.Container) == 0 || bytes.Equal(a.Container, a.Checker):
		return AttestMalformed
	}
	if _, err := peer.IDFromBytes(a.Container); err != nil {
		return AttestMalformed
	}
	return ""
}

// appendSigned appends the bytes a libp2p signed envelope's signature covers (go-libp2p
// core/record makeUnsigned): each of domain, payload type and payload as an unsigned varint length
// followed by its bytes.
func appendSigned(b []byte, domain string, payloadType, payload []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(domain)))
	b = append(b, domain...)
	b = binary.AppendUvarint(b, uint64(len(payloadType)))
	b = append(b, payloadType...)
	b = binary.AppendUvarint(b, uint64(len(payload)))
	return append(b, payload...)
}

// verify checks o's signature, with x (the signer's expanded key) when the caller has one.
func (o *openedAttestation) verify(x *ed25519.ExpandedPublicKey) bool {
	var buf [MaxAttestationSize + 64]byte // signed bytes are shorter than the envelope
	msg := o.signed(buf[:0])
	if x != nil {
		return ed25519.VerifyExpandedWithOptions(x, msg, o.sig, verifyAttest)
	}
	return ed25519.VerifyWithOptions(o.pub, msg, o.sig, verifyAttest)
}

// signed appends the bytes o's signature covers.
func (o *openedAttestation) signed(b []byte) []byte {
	return appendSigned(b, KindAttestation.Domain, KindAttestation.Codec, o.payload)
}

// OpenAttestation verifies an attestation envelope: at most MaxAttestationSize, an Ed25519
// signature under the attestation domain by the attestation's checker, fields in range. Errors
// wrap the AttestReason and, as Open's do, ErrMalformed or ErrSignature (errOversize for size).
// When and by whom the attestation may be made is AttestValidator's business.
func OpenAttestation(data []byte) (*pb.Attestation, peer.ID, error) {
	o, r := decodeAttestation(data)
	if r == "" && !o.verify(nil) {
		r = AttestBadSignature
	}
	switch r {
	case "":
		return o.msg, peer.ID(o.msg.Checker), nil
	case AttestOversize:
		return nil, "", fmt.Errorf("%w: %w: %d bytes, limit %d", r, errOversize, len(data), MaxAttestationSize)
	case AttestBadSignature:
		return nil, "", fmt.Errorf("%w: %w", r, ErrSignature)
	default:
		return nil, "", fmt.Errorf("%w: %w", r, ErrMalformed)
	}
}

// SealAttestation signs a with key; it fails rather than make an envelope others would reject as
// oversize, malformed or not signed by its checker.
func SealAttestation(a *pb.Attestation, key crypto.PrivKey) ([]byte, error) {
	data, err := Seal(KindAttestation, a, key)
	if err != nil {
		return nil, err
	}
	if _, r := decodeAttestation(data); r != "" {
		return nil, fmt.Errorf("p2p: seal attestation: %w", r)
	}
	return data, nil
}

// CheckerEligibility says whether a checker may attest in an epoch: it holds a checker licence or
// enough stake (a genesis list now, the chain later). Every node must answer alike for an epoch.
type CheckerEligibility interface {
	Eligible(checker peer.ID, epoch uint64) bool
}

// AttestConfig configures an AttestValidator.
type AttestConfig struct {
	Schedule    epoch.Schedule
	Eligibility CheckerEligibility
	Clock       clock.Clock // nil: the system clock
	// Grace is how long after an epoch ends its attestations are still accepted (default: a
	// tenth of the epoch, at most 30 s, as the tracker's grace). Late is how long after the grace
	// they are ignored rather than rejected (default 30 s): a relay accepted them in time, on a
	// clock a little ahead, a moment ago.
	Grace, Late time.Duration
	// MaxSkew is how far in the future an attestation may be issued (default 10 s).
	MaxSkew time.Duration
	// MaxPerChecker bounds the attestations one checker may have accepted per epoch (default 4096):
	// it bounds the duplicate memory.
	MaxPerChecker int
	// KeyCache is how many checkers' expanded public keys are kept (default 1024; each ~1.5 KiB).
	KeyCache int
	Metrics  *AttestMetrics // nil: unregistered counters
}

// Defaults of AttestConfig.
const (
	DefaultAttestLate          = 30 * time.Second
	DefaultAttestMaxSkew       = 10 * time.Second
	DefaultAttestMaxPerChecker = 4096
	DefaultAttestKeyCache      = 1024
)

func (c AttestConfig) withDefaults() (AttestConfig, error) {
	if err := c.Schedule.Validate(); err != nil {
		return c, fmt.Errorf("%w: attestations: %w", ErrConfig, err)
	}
	if c.Eligibility == nil {
		return c, fmt.Errorf("%w: attestations: no checker eligibility", ErrConfig)
	}
	if c.Clock == nil {
		c.Clock = clock.New()
	}
	if c.Grace <= 0 {
		c.Grace = epoch.DefaultGrace(c.Schedule.Length)
	}
	if c.Late <= 0 {
		c.Late = DefaultAttestLate
	}
	if c.MaxSkew <= 0 {
		c.MaxSkew = DefaultAttestMaxSkew
	}
	if c.MaxPerChecker <= 0 {
		c.MaxPerChecker = DefaultAttestMaxPerChecker
	}
	if c.KeyCache <= 0 {
		c.KeyCache = DefaultAttestKeyCache
	}
	if c.Metrics == nil {
		c.Metrics = NewAttestMetrics(nil)
	}
	return c, nil
}

// AttestValidator decides whether an attestation is accepted: the envelope (OpenAttestation's
// checks, with expanded public keys cached per checker), the gossip author, the epoch and issue
// time on its clock, the checker's eligibility, and duplicates. It is safe for concurrent use; the
// gossip validator and the tests share it.
//
// Checks run cheapest first, so a flood costs little: size, decoding, fields, signer, author,
// time, eligibility and exact replays all come before the signature.
type AttestValidator struct {
	cfg   AttestConfig
	keys  *lru.Cache[[ed25519.PublicKeySize]byte, *ed25519.ExpandedPublicKey]
	seed  maphash.Seed
	batch attestBatcher // the gossip validator's signatures, verified in batches under load

	mu     sync.Mutex
	epochs map[uint64]*attestEpoch
	floor  uint64 // epochs below it are forgotten
}

// attestEpoch remembers one epoch's accepted attestations.
type attestEpoch struct {
	seen       map[string]uint64 // dedup key -> hash of the accepted envelope
	perChecker map[string]int
}

// NewAttestValidator checks cfg and makes a validator.
func NewAttestValidator(cfg AttestConfig) (*AttestValidator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	keys, err := lru.New[[ed25519.PublicKeySize]byte, *ed25519.ExpandedPublicKey](cfg.KeyCache)
	if err != nil {
		return nil, fmt.Errorf("%w: attestations: %w", ErrConfig, err)
	}
	return &AttestValidator{cfg: cfg, keys: keys, seed: maphash.MakeSeed(), epochs: map[uint64]*attestEpoch{},
		batch: attestBatcher{maxLeaders: runtime.GOMAXPROCS(0), maxBatch: maxAttestBatch, sizes: cfg.Metrics.BatchSize}}, nil
}

// Metrics are the validator's counters.
func (v *AttestValidator) Metrics() *AttestMetrics { return v.cfg.Metrics }

// Validate judges an attestation envelope published on gossip by from: "" when the message names
// no author, which is always so on rendermesh's gossip (StrictNoSign: the envelope's signature is
// the author's), and when it did not come from gossip. A message that names an author must be the
// checker's. It returns the attestation and "" when it is
// accepted (and remembers it, so the same attestation again is a duplicate), or the reason it is
// not. It counts nothing: the gossip validator does.
func (v *AttestValidator) Validate(from peer.ID, data []byte) (*pb.Attestation, AttestReason) {
	var kb [256]byte
	c, r := v.prepare(from, data, kb[:0])
	if r != "" {
		return nil, r
	}
	if !c.o.verify(c.x) {
		return nil, AttestBadSignature
	}
	return v.commit(c)
}

// validateBatched is Validate with the signature verified by the batcher: under load, in a batch
// with the signatures of concurrent calls (the gossip validator's path).
func (v *AttestValidator) validateBatched(from peer.ID, data []byte) (*pb.Attestation, AttestReason) {
	var kb [256]byte
	c, r := v.prepare(from, data, kb[:0])
	if r != "" {
		return nil, r
	}
	var buf [MaxAttestationSize + 64]byte
	if !v.batch.verify(c.x, c.o.pub, c.o.signed(buf[:0]), c.o.sig) {
		return nil, AttestBadSignature
	}
	return v.commit(c)
}

// attestCandidate is an attestation that passed every check before its signature.
type attestCandidate struct {
	o   openedAttestation
	x   *ed25519.ExpandedPublicKey // nil: the key is no curve point (the signature fails)
	key []byte                     // the check's dedup key
	sum uint64                     // the envelope's keyed hash
}

// prepare runs every check that comes before the signature, cheapest first; key is a buffer for
// the dedup key.
func (v *AttestValidator) prepare(from peer.ID, data, key []byte) (attestCandidate, AttestReason) {
	o, r := decodeAttestation(data)
	if r != "" {
		return attestCandidate{}, r
	}
	a := o.msg
	if from != "" && string(from) != string(a.Checker) {
		return attestCandidate{}, AttestAuthorMismatch
	}
	now := v.cfg.Clock.Now()
	if r := v.checkTime(a, now); r != "" {
		return attestCandidate{}, r
	}
	checker := peer.ID(a.Checker)
	if !v.cfg.Eligibility.Eligible(checker, a.Epoch) {
		return attestCandidate{}, AttestIneligible
	}
	key = appendDedupKey(key, a)
	sum := maphash.Bytes(v.seed, data)
	if v.seen(v.cfg.Schedule.Epoch(now), a.Epoch, key, sum) {
		return attestCandidate{}, AttestDuplicate // this very envelope: no need to verify it again
	}
	return attestCandidate{o: o, x: v.expanded(o.pub), key: key, sum: sum}, ""
}

// commit accepts a candidate whose signature verified, unless its check was accepted meanwhile
// (in another envelope) or its checker is over quota.
func (v *AttestValidator) commit(c attestCandidate) (*pb.Attestation, AttestReason) {
	a := c.o.msg
	v.mu.Lock()
	defer v.mu.Unlock()
	ep := v.epoch(a.Epoch)
	if _, ok := ep.seen[string(c.key)]; ok {
		return nil, AttestDuplicate // another envelope for the same check, signed by the same checker
	}
	if ep.perChecker[string(a.Checker)] >= v.cfg.MaxPerChecker {
		return nil, AttestOverQuota
	}
	ep.seen[string(c.key)] = c.sum
	ep.perChecker[string(a.Checker)]++
	return a, ""
}

// checkTime accepts an attestation of the current epoch (or of the next, issued within the skew
// of its start), or of the previous one during the grace after it ended.
func (v *AttestValidator) checkTime(a *pb.Attestation, now time.Time) AttestReason {
	s := v.cfg.Schedule
	issued := time.UnixMilli(a.IssuedUnixMs)
	if s.Epoch(issued) != a.Epoch {
		return AttestWrongEpoch
	}
	if issued.After(now.Add(v.cfg.MaxSkew)) {
		return AttestFromFuture
	}
	cur := s.Epoch(now)
	switch {
	case a.Epoch >= cur: // the current epoch, or the next within the skew
		return ""
	case a.Epoch+1 == cur:
		switch since := now.Sub(s.Start(cur)); {
		case since <= v.cfg.Grace:
			return ""
		case since <= v.cfg.Grace+v.cfg.Late:
			return AttestLate
		}
	}
	return AttestWrongEpoch
}

// appendDedupKey appends what makes an attestation the same check: checker, container, epoch,
// kind and nonce (each variable field length-prefixed).
func appendDedupKey(b []byte, a *pb.Attestation) []byte {
	b = append(b, byte(len(a.Checker)))
	b = append(b, a.Checker...)
	b = append(b, byte(len(a.Container)))
	b = append(b, a.Container...)
	b = binary.BigEndian.AppendUint64(b, a.Epoch)
	b = append(b, byte(a.Kind))
	return append(b, a.Nonce...)
}

// seen reports whether this exact envelope was accepted already, and forgets epochs that can no
// longer be accepted.
func (v *AttestValidator) seen(cur, e uint64, key []byte, sum uint64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if cur > 0 && cur-1 > v.floor {
		v.floor = cur - 1
		for old := range v.epochs {
			if old < v.floor {
				delete(v.epochs, old)
			}
		}
	}
	ep := v.epochs[e]
	if ep == nil {
		return false
	}
	prev, ok := ep.seen[string(key)]
	return ok && prev == sum
}

// epoch returns e's memory. Caller holds mu.
func (v *AttestValidator) epoch(e uint64) *attestEpoch {
	ep := v.epochs[e]
	if ep == nil {
		ep = &attestEpoch{seen: map[string]uint64{}, perChecker: map[string]int{}}
		v.epochs[e] = ep
	}
	return ep
}

// expanded returns the checker key's expanded form (cached), or nil when it is no curve point
// (verification then fails as crypto/ed25519's does).
func (v *AttestValidator) expanded(pub []byte) *ed25519.ExpandedPublicKey {
	k := [ed25519.PublicKeySize]byte(pub)
	if x, ok := v.keys.Get(k); ok {
		return x
	}
	x, err := ed25519.NewExpandedPublicKey(pub)
	if err != nil {
		return nil
	}
	v.keys.Add(k, x)
	return x
}

// AttestMetrics count the attestation validator's decisions on gossip.
type AttestMetrics struct {
	Rejected *prometheus.CounterVec // by reason, ignored ones included
	Accepted prometheus.Counter
	// BatchSize observes how many signatures each verification of the gossip validator covered
	// (1: verified alone; see attestBatcher).
	BatchSize prometheus.Histogram
}

// NewAttestMetrics creates the counters and registers them with reg (nil: not registered); a
// registry that holds them already lends its own, as NewMetrics does.
func NewAttestMetrics(reg prometheus.Registerer) *AttestMetrics {
	m := &AttestMetrics{
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "gossip", Name: "attestation_rejected_total",
			Help: "Attestations rejected or ignored by the topic validator, by reason.",
		}, []string{"reason"}),
		Accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "gossip", Name: "attestation_accepted_total",
			Help: "Attestations that passed the topic validator.",
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "rendermesh", Subsystem: "gossip", Name: "attestation_batch_signatures",
			Help:    "Attestation signatures the topic validator verified together, per verification (1: alone).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
	}
	if reg != nil {
		m.Rejected = register(reg, m.Rejected)
		m.Accepted = register(reg, m.Accepted)
		m.BatchSize = register(reg, m.BatchSize)
	}
	return m
}

// validateGossip is the topic validator: accepted attestations ride on as ValidatorData.
func (v *AttestValidator) validateGossip(msg *pubsub.Message) pubsub.ValidationResult {
	a, r := v.validateBatched(msg.GetFrom(), msg.GetData())
	switch {
	case r == "":
		msg.ValidatorData = a
		v.cfg.Metrics.Accepted.Inc()
		return pubsub.ValidationAccept
	case r.Ignorable():
		v.cfg.Metrics.Rejected.WithLabelValues(string(r)).Inc()
		return pubsub.ValidationIgnore
	default:
		v.cfg.Metrics.Rejected.WithLabelValues(string(r)).Inc()
		return pubsub.ValidationReject
	}
}

// attestTopicScore: as the heartbeat topics, invalid attestations cost a peer far more than good
// ones earn it (one invalid message sinks a peer below zero, two below the graylist threshold);
// first deliveries are rewarded a little, mesh delivery rates are not scored (the attestation rate
// depends on how many checkers there are).
func attestTopicScore() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                     1,
		TimeInMeshWeight:                0.01,
		TimeInMeshQuantum:               time.Second,
		TimeInMeshCap:                   3600,
		FirstMessageDeliveriesWeight:    1,
		FirstMessageDeliveriesDecay:     pubsub.ScoreParameterDecay(10 * time.Minute),
		FirstMessageDeliveriesCap:       20,
		MeshFailurePenaltyDecay:         pubsub.ScoreParameterDecay(time.Minute),
		MeshMessageDeliveriesDecay:      pubsub.ScoreParameterDecay(time.Minute),
		MeshMessageDeliveriesWindow:     10 * time.Millisecond,
		MeshMessageDeliveriesActivation: time.Minute,
		InvalidMessageDeliveriesWeight:  -math.Sqrt(1000) * 10, // squared count: -316 for one, -1265 for two
		InvalidMessageDeliveriesDecay:   pubsub.ScoreParameterDecay(time.Hour),
	}
}

// JoinAttestations joins the attestation topic with v as its validator: only attestations v
// accepts are forwarded, and onValid is called with each of them (this node's own included), from
// one goroutine, until Close.
func (n *Net) JoinAttestations(v *AttestValidator, onValid func(a *pb.Attestation, raw []byte)) error {
	if n.ps == nil {
		return ErrNoPubSub
	}
	if v == nil {
		return fmt.Errorf("p2p: join %s: no validator", AttestTopic)
	}
	validate := func(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		return v.validateGossip(msg)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return net.ErrClosed
	}
	if _, ok := n.topics[AttestTopic]; ok {
		return fmt.Errorf("p2p: already joined %s", AttestTopic)
	}
	if err := n.ps.RegisterTopicValidator(AttestTopic, validate); err != nil {
		return fmt.Errorf("p2p: validator for %s: %w", AttestTopic, err)
	}
	t, err := n.ps.Join(AttestTopic)
	if err != nil {
		return fmt.Errorf("p2p: join %s: %w", AttestTopic, err)
	}
	if err := t.SetScoreParams(attestTopicScore()); err != nil {
		return fmt.Errorf("p2p: score params for %s: %w", AttestTopic, err)
	}
	// gossipsub drops what a subscriber is too slow to take, and a ledger must not miss
	// attestations: a buffer for bursts (a few hundred bytes each).
	sub, err := t.Subscribe(pubsub.WithBufferSize(AttestSubscriptionBuffer))
	if err != nil {
		return fmt.Errorf("p2p: subscribe %s: %w", AttestTopic, err)
	}
	n.topics[AttestTopic] = t
	n.subs = append(n.subs, sub)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			msg, err := sub.Next(context.Background())
			if err != nil {
				return
			}
			if a, ok := msg.ValidatorData.(*pb.Attestation); ok && onValid != nil {
				onValid(a, msg.GetData())
			}
		}
	}()
	return nil
}

// PublishAttestation signs a with this node's key (a must name this node as its checker) and
// publishes it on the attestation topic (JoinAttestations first). It fails when this node's own
// validator does not accept it.
func (n *Net) PublishAttestation(ctx context.Context, a *pb.Attestation) error {
	if peer.ID(a.GetChecker()) != n.host.ID() {
		return fmt.Errorf("p2p: publish attestation: it names checker %s, not this node", peerString(a.GetChecker()))
	}
	n.mu.Lock()
	t, ok := n.topics[AttestTopic]
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("p2p: publish attestation: not joined to %s", AttestTopic)
	}
	data, err := SealAttestation(a, n.host.Peerstore().PrivKey(n.host.ID()))
	if err != nil {
		return err
	}
	if err := t.Publish(ctx, data); err != nil {
		var verr pubsub.ValidationError
		if errors.As(err, &verr) {
			return fmt.Errorf("p2p: publish attestation: this node's validator refused it (%w): is this node an eligible checker, and the attestation of this epoch and new?", err)
		}
		return fmt.Errorf("p2p: publish attestation: %w", err)
	}
	return nil
}
