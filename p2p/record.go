package p2p

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Limits of container records.
const (
	// MaxRecordSize bounds a marshalled container record envelope.
	MaxRecordSize = 4 << 10
	// MaxRecordTTL bounds a record's lifetime from its issue time (which may lie at most
	// recordClockSkew ahead), so that a leaked key cannot plant a record that outlives its owner for
	// long.
	MaxRecordTTL = 24 * time.Hour
	// recordClockSkew is how far in the future a record's issue time may lie.
	recordClockSkew = 2 * time.Minute
)

// Reasons a record is rejected. Each is a distinct label of rendermesh_dht_record_rejected_total.
const (
	ReasonOversize     = "oversize"
	ReasonBadKey       = "bad_key"
	ReasonBadSignature = "bad_signature"
	ReasonMalformed    = "malformed"
	ReasonPeerMismatch = "peer_mismatch"
	ReasonReplayed     = "replayed"
	ReasonExpired      = "expired"
	ReasonFromFuture   = "from_future"
	ReasonTTLTooLong   = "ttl_too_long"
)

// ErrRecord is wrapped by every RecordError.
var ErrRecord = errors.New("p2p: invalid container record")

// RecordError says why a container record was rejected.
type RecordError struct {
	Reason string
	Detail string
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("p2p: invalid container record (%s): %s", e.Reason, e.Detail)
}

func (e *RecordError) Unwrap() error { return ErrRecord }

// RecordReason returns the reason of a RecordError in err's chain, or "".
func RecordReason(err error) string {
	var re *RecordError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

// ContainerRecordValidator is the DHT validator of the /rm-container namespace. A record is valid when
// it fits MaxRecordSize, is a signed envelope of KindContainerRecord, its signer is the peer the key
// names and the payload claims, it has not expired, expires within MaxRecordTTL, and its sequence
// number is not older than the newest this validator has seen from that peer. Select picks the valid
// record with the highest sequence number.
type ContainerRecordValidator struct {
	clock   clock.Clock
	metrics *Metrics

	mu   sync.Mutex
	seen *lru.Cache[peer.ID, uint64] // newest sequence number seen per peer
}

// NewContainerRecordValidator returns a validator on the given clock; metrics may be nil.
func NewContainerRecordValidator(clk clock.Clock, metrics *Metrics) *ContainerRecordValidator {
	if clk == nil {
		clk = clock.New()
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	seen, _ := lru.New[peer.ID, uint64](1 << 16)
	return &ContainerRecordValidator{clock: clk, metrics: metrics, seen: seen}
}

// Validate implements record.Validator.
func (v *ContainerRecordValidator) Validate(key string, value []byte) error {
	rec, signer, err := v.check(key, value)
	if err != nil {
		v.metrics.RecordRejected.WithLabelValues(RecordReason(err)).Inc()
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if newest, ok := v.seen.Get(signer); ok && rec.Seq < newest {
		v.metrics.RecordRejected.WithLabelValues(ReasonReplayed).Inc()
		return &RecordError{ReasonReplayed, fmt.Sprintf("sequence %d is older than %d already seen", rec.Seq, newest)}
	}
	v.seen.Add(signer, rec.Seq)
	v.metrics.RecordAccepted.Inc()
	return nil
}

// Select implements record.Validator: the index of the record with the highest sequence number
// (the first of equals). Records that do not verify are skipped.
func (v *ContainerRecordValidator) Select(key string, values [][]byte) (int, error) {
	best, bestSeq := -1, uint64(0)
	for i, value := range values {
		rec, _, err := v.check(key, value)
		if err != nil {
			continue
		}
		if best < 0 || rec.Seq > bestSeq {
			best, bestSeq = i, rec.Seq
		}
	}
	if best < 0 {
		return 0, &RecordError{ReasonMalformed, "no valid record to select"}
	}
	return best, nil
}

// check verifies everything but sequence freshness.
func (v *ContainerRecordValidator) check(key string, value []byte) (*pb.ContainerRecord, peer.ID, error) {
	if len(value) > MaxRecordSize {
		return nil, "", &RecordError{ReasonOversize, fmt.Sprintf("%d bytes, limit %d", len(value), MaxRecordSize)}
	}
	owner, err := parseRecordKey(key)
	if err != nil {
		return nil, "", err
	}
	rec, signer, err := OpenContainerRecord(value)
	if err != nil {
		return nil, "", err
	}
	if signer != owner {
		return nil, "", &RecordError{ReasonPeerMismatch, fmt.Sprintf("signed by %s, key names %s", signer, owner)}
	}
	now := v.clock.Now()
	expires := time.UnixMilli(rec.ExpiresUnixMs)
	issued := time.UnixMilli(rec.IssuedUnixMs)
	switch {
	case !now.Before(expires):
		return nil, "", &RecordError{ReasonExpired, fmt.Sprintf("expired at %s", expires.UTC().Format(time.RFC3339))}
	case issued.After(now.Add(recordClockSkew)):
		return nil, "", &RecordError{ReasonFromFuture, fmt.Sprintf("issued at %s, in the future", issued.UTC().Format(time.RFC3339))}
	case expires.Sub(issued) > MaxRecordTTL:
		return nil, "", &RecordError{ReasonTTLTooLong, fmt.Sprintf("lifetime %s exceeds %s", expires.Sub(issued), MaxRecordTTL)}
	}
	return rec, signer, nil
}

func parseRecordKey(key string) (peer.ID, error) {
	rest, ok := strings.CutPrefix(key, "/"+ContainerRecordNamespace+"/")
	if !ok {
		return "", &RecordError{ReasonBadKey, fmt.Sprintf("key not in /%s namespace", ContainerRecordNamespace)}
	}
	id, err := peer.IDFromBytes([]byte(rest))
	if err != nil {
		return "", &RecordError{ReasonBadKey, "key does not hold a peer ID: " + err.Error()}
	}
	return id, nil
}

// OpenContainerRecord verifies a marshalled container record envelope and checks that the payload's
// peer ID is the signer. It does not check expiry: that is the validator's job, on its clock.
func OpenContainerRecord(data []byte) (*pb.ContainerRecord, peer.ID, error) {
	if len(data) > MaxRecordSize {
		return nil, "", &RecordError{ReasonOversize, fmt.Sprintf("%d bytes, limit %d", len(data), MaxRecordSize)}
	}
	rec := new(pb.ContainerRecord)
	signer, err := Open(KindContainerRecord, data, rec)
	if errors.Is(err, ErrSignature) {
		return nil, "", &RecordError{ReasonBadSignature, err.Error()}
	} else if err != nil {
		return nil, "", &RecordError{ReasonMalformed, err.Error()}
	}
	claimed, err := peer.IDFromBytes(rec.PeerId)
	if err != nil {
		return nil, "", &RecordError{ReasonMalformed, "payload peer ID: " + err.Error()}
	}
	if claimed != signer {
		return nil, "", &RecordError{ReasonPeerMismatch, fmt.Sprintf("payload claims %s, signed by %s", claimed, signer)}
	}
	if rec.ExpiresUnixMs <= rec.IssuedUnixMs {
		return nil, "", &RecordError{ReasonMalformed, "expiry not after issue time"}
	}
	return rec, signer, nil
}
