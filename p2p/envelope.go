package p2p

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
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
// signer's peer ID. It checks the signature under the kind's domain and the payload type.
func Open(kind Kind, data []byte, msg proto.Message) (peer.ID, error) {
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(env.PayloadType, kind.Codec) {
		return "", fmt.Errorf("%w: payload type %q, want %q", ErrSignature, env.PayloadType, kind.Codec)
	}
	if _, err := record.ConsumeTypedEnvelope(data, &payload{kind: kind, msg: msg}); err != nil {
		if errors.Is(err, record.ErrInvalidSignature) {
			return "", fmt.Errorf("%w: %v", ErrSignature, err)
		}
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return "", fmt.Errorf("%w: signer key: %v", ErrEnvelope, err)
	}
	return signer, nil
}
