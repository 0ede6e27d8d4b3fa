package p2p

import (
	"crypto/sha256"
	"encoding/binary"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Signature checks shared by the nodes of one process. A node checks the signature of every
// envelope it opens (Open), and a node alone sees each envelope about once. A process that runs many
// nodes sees each one once per node: in a simnet of 1,000 peers every heartbeat reaches the ~170
// peers of its region and the indexers, and checking those signatures took 10% of the run's CPU,
// the share growing with the square of the peers (docs/BENCHMARKS.md, "The cost of a peer at
// rest"). ShareVerifiedEnvelopes makes Open remember, for the whole process, the envelopes whose
// signature verified, by a hash of their bytes and domain; Open then decodes a remembered envelope
// without checking its signature again. The check is a pure function of those bytes and that
// domain, so the answer is the one the check would give: what is remembered is only a success, and
// an envelope that differs in a single byte (another signature, signer, payload or encoding) is
// another key. Everything else Open checks (the canonical encoding, the payload type) runs each
// time.

// verifiedKey identifies one envelope under one domain.
type verifiedKey [sha256.Size]byte

var verified atomic.Pointer[lru.Cache[verifiedKey, struct{}]]

// verifiedHits counts the signature checks that a remembered envelope spared (for tests).
var verifiedHits atomic.Int64

// ShareVerifiedEnvelopes turns on (size > 0: remember up to size envelopes, least recently opened
// forgotten first) or off (size 0) the process-wide memory of verified envelopes. It is for processes
// that run many nodes (the simnet); a node alone gains nothing from it.
func ShareVerifiedEnvelopes(size int) {
	if size <= 0 {
		verified.Store(nil)
		return
	}
	c, err := lru.New[verifiedKey, struct{}](size)
	if err != nil {
		panic(err) // only for size <= 0
	}
	verified.Store(c)
}

func keyOf(kind Kind, data []byte) verifiedKey {
	h := sha256.New()
	h.Write(binary.AppendUvarint(nil, uint64(len(kind.Domain)))) // domain and envelope cannot run into each other
	h.Write([]byte(kind.Domain))
	h.Write(data)
	var k verifiedKey
	h.Sum(k[:0])
	return k
}
