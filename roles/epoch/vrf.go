package epoch

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"

	voied25519 "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519/extra/ecvrf"
)

// Sizes of ECVRF-EDWARDS25519-SHA512-ELL2 proofs (pi) and outputs (beta), RFC 9381.
const (
	ProofSize  = 80
	OutputSize = 64
)

// Proof is an ECVRF proof pi: Gamma (32 bytes) || c (16 bytes) || s (32 bytes).
type Proof [ProofSize]byte

// Output is an ECVRF output beta, a SHA-512 hash of the proof's Gamma point. Anyone holding the
// public key, the input and the proof can check it; nobody can predict it without the secret key.
type Output [OutputSize]byte

// Seed is an epoch's shared randomness, the same for every node (from the randomness beacon).
type Seed [32]byte

// Role names the role a sortition draws for. It is part of the VRF input, so the draws for different
// roles in the same epoch are independent.
type Role string

// RoleIndexer is the indexer role.
const RoleIndexer Role = "indexer"

// ErrBadProof is returned by Verify for a proof that does not verify under the key and input, or that
// is malformed (wrong length, not a curve point, non-canonical scalar), or a malformed public key.
var ErrBadProof = errors.New("epoch: invalid VRF proof")

// alphaTag is the domain-separation tag of Alpha. Bump its version if the encoding ever changes.
const alphaTag = "rendermesh/sortition/1"

// Alpha is the VRF input for a role's draw in an epoch. Its encoding is four fields, each written as
// its length (uint32, big-endian) followed by its bytes:
//
//	len||"rendermesh/sortition/1" || len||role || len||uint64be(epoch) || len||seed
//
// so the encoding is unambiguous for any role string, and no input of another protocol that signs
// with the same key (if it does not start with this tag) can collide with it.
func Alpha(seed Seed, epoch uint64, role Role) []byte {
	var ep [8]byte
	binary.BigEndian.PutUint64(ep[:], epoch)
	fields := [][]byte{[]byte(alphaTag), []byte(role), ep[:], seed[:]}
	n := 0
	for _, f := range fields {
		n += 4 + len(f)
	}
	out := make([]byte, 0, n)
	for _, f := range fields {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// Prove computes ECVRF-EDWARDS25519-SHA512-ELL2 (RFC 9381) on alpha with a standard crypto/ed25519
// key: the 64-byte seed||public form, which is also what libp2p's Ed25519 PrivKey.Raw returns. The
// proof is deterministic. Like ed25519.Sign, Prove panics if sk is not 64 bytes long, and it trusts
// that the second half of sk is the public key of the first half (as ed25519.NewKeyFromSeed makes it).
func Prove(sk ed25519.PrivateKey, alpha []byte) (Proof, Output) {
	if len(sk) != ed25519.PrivateKeySize {
		panic("epoch: bad ed25519 private key length")
	}
	pi := ecvrf.Prove(voied25519.PrivateKey(sk), alpha)
	beta, err := ecvrf.ProofToHash(pi)
	if err != nil {
		// A proof Prove just made always decodes.
		panic("epoch: ecvrf produced an undecodable proof: " + err.Error())
	}
	var p Proof
	var o Output
	copy(p[:], pi)
	copy(o[:], beta)
	return p, o
}

// Verify checks that proof is pk's VRF proof on alpha and returns its output. Any bytes may be passed
// (they usually come from the network): a malformed key or proof yields ErrBadProof, never a panic.
// The key is rejected if it is not canonical or has small order (RFC 9381 ECVRF_validate_key).
func Verify(pk ed25519.PublicKey, proof, alpha []byte) (Output, error) {
	if len(pk) != ed25519.PublicKeySize || len(proof) != ProofSize {
		return Output{}, ErrBadProof
	}
	ok, beta := ecvrf.Verify(voied25519.PublicKey(pk), proof, alpha)
	if !ok || len(beta) != OutputSize {
		return Output{}, ErrBadProof
	}
	var o Output
	copy(o[:], beta)
	return o, nil
}
