package p2p

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// refOpen is Open as libp2p's own envelope code does it: record.ConsumeTypedEnvelope (which decodes
// the envelope and verifies its signature by itself), the payload type, and the canonical encoding.
func refOpen(kind Kind, data []byte, msg proto.Message) (peer.ID, bool) {
	env, err := record.ConsumeTypedEnvelope(data, &payload{kind: kind, msg: msg})
	if err != nil || !bytes.Equal(env.PayloadType, kind.Codec) {
		return "", false
	}
	if again, err := env.Marshal(); err != nil || !bytes.Equal(again, data) {
		return "", false
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	return signer, err == nil
}

// TestOpenMatchesConsumeTypedEnvelope: Open decodes an envelope once and checks its signature over
// bytes it builds itself (appendSigned). On valid heartbeats and container records, signed with
// Ed25519, secp256k1 and ECDSA keys, and on thousands of mutations of them, it accepts exactly what
// libp2p's record.ConsumeTypedEnvelope accepts, with the same payload and signer, and says why it
// refuses the rest (ErrMalformed or ErrSignature).
func TestOpenMatchesConsumeTypedEnvelope(t *testing.T) {
	for _, shared := range []bool{false, true} {
		if shared {
			ShareVerifiedEnvelopes(1 << 10)
		}
		r := rand.New(rand.NewSource(11))
		var seeds [][]byte
		var kinds []Kind
		for i, kt := range []int{crypto.Ed25519, crypto.Secp256k1, crypto.ECDSA} {
			key, _, err := crypto.GenerateKeyPairWithReader(kt, 256, rand.New(rand.NewSource(int64(40+i))))
			if err != nil {
				t.Fatal(err)
			}
			id, err := peer.IDFromPrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			seeds = append(seeds, sealHeartbeat(t, testHeartbeat(id, uint64(i+1), testEpoch), key),
				sealRecord(t, testRecord(id, uint64(i+1), testEpoch, time.Hour), key))
			kinds = append(kinds, KindHeartbeat, KindContainerRecord)
		}
		n := 3000
		if testing.Short() {
			n = 500
		}
		accepted := 0
		for i := range n {
			j := i % len(seeds)
			data, kind := seeds[j], kinds[j]
			if i%7 == 3 {
				kind = kinds[(j+1)%len(kinds)] // the other kind: another domain and payload type
			}
			if i%10 != 0 { // every tenth input stays as sealed
				for range 1 + r.Intn(3) {
					data = mutate(r, data)
				}
			}
			got, want := newPayload(kind), newPayload(kind)
			signer, err := Open(kind, data, got)
			wantSigner, ok := refOpen(kind, data, want)
			if (err == nil) != ok {
				t.Fatalf("shared %v, input %d %x: Open error %v, reference accepts: %v", shared, i, data, err, ok)
			}
			if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignature) {
				t.Fatalf("input %d: error %v is neither ErrMalformed nor ErrSignature", i, err)
			}
			if ok {
				accepted++
				if !proto.Equal(got, want) || signer != wantSigner {
					t.Fatalf("input %d: opened %v by %s, reference %v by %s", i, got, signer, want, wantSigner)
				}
			}
		}
		t.Logf("shared %v: %d of %d inputs accepted by both", shared, accepted, n)
		if accepted < n/15 {
			t.Errorf("only %d of %d inputs accepted: the mutations left too few valid ones", accepted, n)
		}
	}
	ShareVerifiedEnvelopes(0)
}

func newPayload(kind Kind) proto.Message {
	if kind.Domain == KindHeartbeat.Domain {
		return new(pb.Heartbeat)
	}
	return new(pb.ContainerRecord)
}

// TestOpenSignatureErrors: a signature that does not verify is ErrSignature, whatever else is right.
func TestOpenSignatureErrors(t *testing.T) {
	key, id := testKey(t, 5)
	data := sealHeartbeat(t, testHeartbeat(id, 1, testEpoch), key)
	var hb pb.Heartbeat
	if _, err := Open(KindHeartbeat, data, &hb); err != nil {
		t.Fatalf("sealed heartbeat: %v", err)
	}
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 1 // the signature is the envelope's last field
	if _, err := Open(KindHeartbeat, bad, &hb); !errors.Is(err, ErrSignature) {
		t.Fatalf("corrupted signature: %v, want ErrSignature", err)
	}
	if _, err := Open(Kind{Domain: "another-domain", Codec: KindHeartbeat.Codec}, data, &hb); !errors.Is(err, ErrSignature) {
		t.Fatalf("another domain: %v, want ErrSignature", err)
	}
}

// FuzzOpenMatchesReference holds Open to refOpen on any bytes, as a heartbeat and as a record.
func FuzzOpenMatchesReference(f *testing.F) {
	key, id := testKey(f, 1)
	f.Add(sealHeartbeat(f, testHeartbeat(id, 1, testEpoch), key))
	f.Add(sealRecord(f, testRecord(id, 1, testEpoch, time.Hour), key))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, kind := range []Kind{KindHeartbeat, KindContainerRecord} {
			got, want := newPayload(kind), newPayload(kind)
			signer, err := Open(kind, data, got)
			wantSigner, ok := refOpen(kind, data, want)
			if (err == nil) != ok {
				t.Fatalf("%s: Open error %v, reference accepts: %v", kind.Domain, err, ok)
			}
			if ok && (!proto.Equal(got, want) || signer != wantSigner) {
				t.Fatalf("%s: opened %v by %s, reference %v by %s", kind.Domain, got, signer, want, wantSigner)
			}
		}
	})
}
