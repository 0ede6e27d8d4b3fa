package p2p

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	recordpb "github.com/libp2p/go-libp2p/core/record/pb"
	"google.golang.org/protobuf/proto"
)

// Kind names one kind of signed network object: the envelope's domain (signatures made for one kind
// never verify as another) and its payload type.
type Kind struct {
	Domain string
	Codec  []byte
}

// The kinds of signed objects rendermesh sends. Later objects (indexer tickets, attestations, usage
// receipts) each add their own.
var (
	KindContainerRecord = Kind{Domain: "rendermesh-container-record", Codec: []byte("/rendermesh/container-record/1")}
	KindHeartbeat       = Kind{Domain: "rendermesh-heartbeat", Codec: []byte("/rendermesh/heartbeat/1")}
	KindIndexerTicket   = Kind{Domain: "rendermesh-indexer-ticket", Codec: []byte("/rendermesh/indexer-ticket/1")}
)

// Errors from Open: ErrEnvelope wraps both; ErrMalformed for bytes that do not decode, ErrSignature for
// a signature that does not verify under the kind's domain or a payload of another type.
var (
	ErrEnvelope  = errors.New("p2p: invalid signed envelope")
	ErrMalformed = fmt.Errorf("%w: malformed", ErrEnvelope)
	ErrSignature = fmt.Errorf("%w: bad signature", ErrEnvelope)
)

// payload adapts a protobuf message to libp2p's record.Record.
type payload struct {
	kind Kind
	msg  proto.Message
}

func (p *payload) Domain() string { return p.kind.Domain }
func (p *payload) Codec() []byte  { return p.kind.Codec }
func (p *payload) MarshalRecord() ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(p.msg)
}
func (p *payload) UnmarshalRecord(b []byte) error { return proto.Unmarshal(b, p.msg) }

// Seal signs msg as an object of the given kind and returns the marshalled envelope.
func Seal(kind Kind, msg proto.Message, key crypto.PrivKey) ([]byte, error) {
	env, err := record.Seal(&payload{kind: kind, msg: msg}, key)
	if err != nil {
		return nil, fmt.Errorf("p2p: seal %s: %w", kind.Domain, err)
	}
	return env.Marshal()
}

// Open verifies a marshalled envelope of the given kind, decodes its payload into msg and returns the
// signer's peer ID. It checks that the envelope is canonically encoded (canonicalEnvelope), the
// signature under the kind's domain and the payload type.
func Open(kind Kind, data []byte, msg proto.Message) (peer.ID, error) {
	// One decoding serves every check: libp2p's record.ConsumeTypedEnvelope would decode the
	// envelope again, twice, for what the fields below already hold.
	var raw recordpb.Envelope
	if err := proto.Unmarshal(data, &raw); err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !canonicalEnvelope(&raw, data) {
		return "", fmt.Errorf("%w: not canonically encoded", ErrMalformed)
	}
	pub, err := crypto.PublicKeyFromProto(raw.PublicKey)
	if err != nil {
		return "", fmt.Errorf("%w: signer key: %v", ErrMalformed, err)
	}
	if !bytes.Equal(raw.PayloadType, kind.Codec) {
		return "", fmt.Errorf("%w: payload type %q, want %q", ErrSignature, raw.PayloadType, kind.Codec)
	}
	if err := verifyEnvelope(kind, data, pub, &raw); err != nil {
		return "", err
	}
	if err := proto.Unmarshal(raw.Payload, msg); err != nil {
		return "", fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	signer, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: signer key: %v", ErrEnvelope, err)
	}
	return signer, nil
}

// verifyEnvelope checks the signature of the envelope data, decoded as raw with its key pub: over
// the bytes libp2p's signed envelopes sign (appendSigned), under kind's domain. With
// ShareVerifiedEnvelopes on, an envelope already verified in this process is not checked again.
func verifyEnvelope(kind Kind, data []byte, pub crypto.PubKey, raw *recordpb.Envelope) error {
	shared := verified.Load()
	var key verifiedKey
	if shared != nil {
		key = keyOf(kind, data)
		if _, ok := shared.Get(key); ok {
			verifiedHits.Add(1)
			return nil
		}
	}
	bp := signedBufs.Get().(*[]byte)
	signed := appendSigned((*bp)[:0], kind.Domain, raw.PayloadType, raw.Payload)
	ok, err := pub.Verify(signed, raw.Signature)
	if cap(signed) <= maxPooledEncode {
		*bp = signed
		signedBufs.Put(bp)
	}
	switch {
	case err != nil:
		return fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	case !ok:
		return fmt.Errorf("%w: %v", ErrSignature, record.ErrInvalidSignature)
	}
	if shared != nil {
		shared.Add(key, struct{}{})
	}
	return nil
}

// signedBufs holds buffers for the bytes an envelope's signature covers.
var signedBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// canonicalEnvelope reports whether data, which decoded as env, is env's canonical encoding: every
// field once, in order, minimal, nothing unknown, as Seal writes it. Anyone can re-encode a signed
// envelope without touching what its signature covers (add an unknown field, repeat one, pad a
// length), and gossip identifies messages by their bytes (GossipMsgID): without this check a third
// party could replay any envelope as new bytes, and nodes that keep envelopes (the attestation
// ledger, whose Merkle leaves hash them) could end up holding different bytes for the same one.
func canonicalEnvelope(env *recordpb.Envelope, data []byte) bool {
	if len(env.ProtoReflect().GetUnknown()) > 0 || len(env.GetPublicKey().ProtoReflect().GetUnknown()) > 0 {
		return false
	}
	if proto.Size(env) != len(data) { // a field repeated or padded: cheaper than encoding it
		return false
	}
	bp := encodeBufs.Get().(*[]byte)
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend((*bp)[:0], env)
	ok := err == nil && bytes.Equal(b, data)
	if cap(b) <= maxPooledEncode {
		*bp = b
		encodeBufs.Put(bp)
	}
	return ok
}

// encodeBufs holds buffers for canonicalEnvelope's encodings (every gossip message and record).
var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooledEncode = 64 << 10
