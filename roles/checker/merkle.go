package checker

import (
	"bytes"
	"crypto/sha256"
	"slices"
)

// The Merkle tree of an epoch's attestations (docs/CHECKERS.md), built so that settlement can
// later prove that an attestation was counted:
//
//   - a leaf is the SHA-256 of an attestation's signed envelope, exactly as gossiped
//     (AttestationLeaf); the leaves are sorted in ascending byte order and each appears once, so
//     the root depends only on the set of attestations, not on the order they arrived in;
//   - the tree hashes a leaf as SHA-256(0x00 || leaf) and an inner node as
//     SHA-256(0x01 || left || right), so no inner node can pass for a leaf or the reverse;
//   - a level with an odd number of nodes promotes its last node unchanged to the next level (it
//     is not paired with a copy of itself, so no two leaf sets share a root that way);
//   - the root of no leaves is 32 zero bytes.
const (
	merkleLeafTag  = 0x00
	merkleInnerTag = 0x01
)

// AttestationLeaf is an attestation's leaf: the SHA-256 of its signed envelope.
func AttestationLeaf(raw []byte) [32]byte { return sha256.Sum256(raw) }

func merkleLeafNode(leaf [32]byte) [32]byte {
	var b [33]byte
	b[0] = merkleLeafTag
	copy(b[1:], leaf[:])
	return sha256.Sum256(b[:])
}

func merkleInner(left, right [32]byte) [32]byte {
	var b [65]byte
	b[0] = merkleInnerTag
	copy(b[1:], left[:])
	copy(b[33:], right[:])
	return sha256.Sum256(b[:])
}

// canonicalLeaves returns the leaves sorted and without repeats (a new slice).
func canonicalLeaves(leaves [][32]byte) [][32]byte {
	out := slices.Clone(leaves)
	slices.SortFunc(out, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(out)
}

// MerkleRoot is the root of the tree over a set of leaves (in any order, repeats ignored).
func MerkleRoot(leaves [][32]byte) [32]byte {
	level := canonicalLeaves(leaves)
	if len(level) == 0 {
		return [32]byte{}
	}
	for i, l := range level {
		level[i] = merkleLeafNode(l)
	}
	for len(level) > 1 {
		next := level[:0]
		for i := 0; i < len(level); i += 2 {
			if i+1 == len(level) {
				next = append(next, level[i]) // promoted
			} else {
				next = append(next, merkleInner(level[i], level[i+1]))
			}
		}
		level = next
	}
	return level[0]
}

// MerkleProof shows that Leaf is in the tree of a root: Index is its place among the Count sorted
// leaves, Path the sibling of each level, from the leaves up, skipping the levels where the
// leaf's node was promoted.
type MerkleProof struct {
	Leaf  [32]byte
	Index uint64
	Count uint64
	Path  [][32]byte
}

// BuildProof proves that leaf is one of leaves (in any order, repeats ignored); ok is false when it
// is not.
func BuildProof(leaves [][32]byte, leaf [32]byte) (p MerkleProof, ok bool) {
	level := canonicalLeaves(leaves)
	idx, found := slices.BinarySearchFunc(level, leaf, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	if !found {
		return MerkleProof{}, false
	}
	p = MerkleProof{Leaf: leaf, Index: uint64(idx), Count: uint64(len(level))}
	for i, l := range level {
		level[i] = merkleLeafNode(l)
	}
	for len(level) > 1 {
		switch {
		case idx%2 == 1:
			p.Path = append(p.Path, level[idx-1])
		case idx+1 < len(level):
			p.Path = append(p.Path, level[idx+1])
		}
		next := level[:0]
		for i := 0; i < len(level); i += 2 {
			if i+1 == len(level) {
				next = append(next, level[i])
			} else {
				next = append(next, merkleInner(level[i], level[i+1]))
			}
		}
		level, idx = next, idx/2
	}
	return p, true
}

// VerifyProof reports whether p proves its leaf is in the tree whose root is root.
func VerifyProof(root [32]byte, p MerkleProof) bool {
	if p.Count == 0 || p.Index >= p.Count {
		return false
	}
	h := merkleLeafNode(p.Leaf)
	idx, n, used := p.Index, p.Count, 0
	for n > 1 {
		switch {
		case idx%2 == 1:
			if used == len(p.Path) {
				return false
			}
			h = merkleInner(p.Path[used], h)
			used++
		case idx+1 < n:
			if used == len(p.Path) {
				return false
			}
			h = merkleInner(h, p.Path[used])
			used++
		}
		idx, n = idx/2, (n+1)/2
	}
	return used == len(p.Path) && h == root
}
