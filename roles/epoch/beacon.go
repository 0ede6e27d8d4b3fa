package epoch

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// beaconTag separates the beacon's hash from every other use of SHA-256 in the network.
const beaconTag = "rendermesh/beacon/1"

// Mixer supplies outside randomness for an epoch's seed, such as the hash of the chain block at the
// epoch boundary. It must return the same bytes on every node for the same epoch; nil (or an empty
// result) mixes nothing.
type Mixer interface {
	Mix(epoch uint64) []byte
}

// NextSeed is the randomness beacon: seed(e) from seed(e-1), the outside mix for e and the VRF
// outputs of epoch e-1's sealed committee (in any order: they are sorted first).
//
//	seed(e) = SHA-256(tag || seed(e-1) || u64(e) || u32(len mix) || mix || u32(n) || sorted outputs)
//
// It is RANDAO-like: every contributor's output is unpredictable until it reveals it, so one honest,
// timely contributor makes the seed unpredictable; its limits (a contributor can withhold its output
// and choose between two seeds) are in docs/EPOCHS.md.
func NextSeed(prev Seed, e uint64, mix []byte, outputs []Output) Seed {
	outs := slices.Clone(outputs)
	slices.SortFunc(outs, func(a, b Output) int { return bytes.Compare(a[:], b[:]) })
	h := sha256.New()
	h.Write([]byte(beaconTag))
	h.Write(prev[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], e)
	h.Write(b[:])
	binary.BigEndian.PutUint32(b[:4], uint32(len(mix)))
	h.Write(b[:4])
	h.Write(mix)
	binary.BigEndian.PutUint32(b[:4], uint32(len(outs)))
	h.Write(b[:4])
	for _, o := range outs {
		h.Write(o[:])
	}
	var s Seed
	h.Sum(s[:0])
	return s
}
