package checker_test

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/rendermesh/rendermesh/roles/checker"
)

// The construction written out by hand, to pin it: sorted leaves, 0x00-tagged leaf hashes,
// 0x01-tagged inner hashes, an odd last node promoted.
func TestMerkleRootGolden(t *testing.T) {
	h := func(parts ...[]byte) [32]byte { return sha256.Sum256(bytes.Join(parts, nil)) }
	leaf := func(l [32]byte) [32]byte { return h([]byte{0}, l[:]) }
	inner := func(a, b [32]byte) [32]byte { return h([]byte{1}, a[:], b[:]) }
	a, b, c := [32]byte{1}, [32]byte{2}, [32]byte{3}

	if got := checker.MerkleRoot(nil); got != ([32]byte{}) {
		t.Errorf("empty root %x", got)
	}
	if got, want := checker.MerkleRoot([][32]byte{a}), leaf(a); got != want {
		t.Errorf("one leaf: %x, want %x", got, want)
	}
	if got, want := checker.MerkleRoot([][32]byte{b, a}), inner(leaf(a), leaf(b)); got != want {
		t.Errorf("two leaves: %x, want %x", got, want)
	}
	want3 := inner(inner(leaf(a), leaf(b)), leaf(c))
	if got := checker.MerkleRoot([][32]byte{c, a, b}); got != want3 {
		t.Errorf("three leaves: %x, want %x", got, want3)
	}
	// The odd leaf is promoted, not paired with itself (Bitcoin's construction, whose root for
	// [a b c] equals that of [a b c c]).
	if dup := inner(inner(leaf(a), leaf(b)), inner(leaf(c), leaf(c))); dup == want3 {
		t.Error("the odd leaf is paired with itself")
	}
	// Repeats are one leaf.
	if got := checker.MerkleRoot([][32]byte{a, b, c, c, a}); got != want3 {
		t.Errorf("with repeats: %x, want %x", got, want3)
	}
	d, e := [32]byte{4}, [32]byte{5}
	want5 := inner(inner(inner(leaf(a), leaf(b)), inner(leaf(c), leaf(d))), leaf(e))
	if got := checker.MerkleRoot([][32]byte{e, d, c, b, a}); got != want5 {
		t.Errorf("five leaves: %x, want %x", got, want5)
	}
	if got := checker.AttestationLeaf([]byte("envelope")); got != sha256.Sum256([]byte("envelope")) {
		t.Errorf("AttestationLeaf = %x", got)
	}
}

func randomLeaves(r *rand.Rand, n int) [][32]byte {
	out := make([][32]byte, n)
	for i := range out {
		for j := range out[i] {
			out[i][j] = byte(r.Uint32())
		}
	}
	return out
}

// Property: for sets of every size up to 70, in any order and with repeats, the root is the same,
// every leaf's proof verifies, and a proof with anything tampered does not.
func TestMerkleProofs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 70; n++ {
		leaves := randomLeaves(r, n)
		root := checker.MerkleRoot(leaves)
		shuffled := append(slices.Clone(leaves), leaves[:n/3]...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := checker.MerkleRoot(shuffled); got != root {
			t.Fatalf("%d leaves: the root depends on order or repeats", n)
		}
		if other := checker.MerkleRoot(append(slices.Clone(leaves), randomLeaves(r, 1)...)); other == root {
			t.Fatalf("%d leaves: one more leaf, the same root", n)
		}
		for i, l := range leaves {
			p, ok := checker.BuildProof(shuffled, l)
			if !ok || p.Leaf != l || p.Count != uint64(n) {
				t.Fatalf("%d leaves, leaf %d: proof %+v, %v", n, i, p, ok)
			}
			if !checker.VerifyProof(root, p) {
				t.Fatalf("%d leaves, leaf %d: proof does not verify", n, i)
			}
			tampered := p
			tampered.Leaf[r.IntN(32)] ^= 1 << r.IntN(8)
			if checker.VerifyProof(root, tampered) {
				t.Fatalf("%d leaves, leaf %d: a tampered leaf verifies", n, i)
			}
			if len(p.Path) > 0 {
				tampered = p
				tampered.Path = slices.Clone(p.Path)
				k := r.IntN(len(p.Path))
				tampered.Path[k][r.IntN(32)] ^= 1
				if checker.VerifyProof(root, tampered) {
					t.Fatalf("%d leaves, leaf %d: a tampered path verifies", n, i)
				}
				tampered.Path = p.Path[:len(p.Path)-1]
				if checker.VerifyProof(root, tampered) {
					t.Fatalf("%d leaves, leaf %d: a truncated path verifies", n, i)
				}
			}
			tampered = p
			tampered.Path = append(slices.Clone(p.Path), [32]byte{})
			if checker.VerifyProof(root, tampered) {
				t.Fatalf("%d leaves, leaf %d: a path with an extra node verifies", n, i)
			}
			wrongRoot := root
			wrongRoot[0] ^= 1
			if checker.VerifyProof(wrongRoot, p) {
				t.Fatalf("%d leaves, leaf %d: verifies against another root", n, i)
			}
		}
		if _, ok := checker.BuildProof(leaves, randomLeaves(r, 1)[0]); ok {
			t.Fatalf("%d leaves: a proof for a leaf not in the set", n)
		}
	}
	for _, p := range []checker.MerkleProof{{Count: 0}, {Index: 3, Count: 3}} {
		if checker.VerifyProof([32]byte{}, p) {
			t.Errorf("proof %+v verifies", p)
		}
	}
}

func BenchmarkMerkleRoot(b *testing.B) {
	leaves := randomLeaves(rand.New(rand.NewPCG(1, 2)), 100_000)
	b.ReportAllocs()
	for b.Loop() {
		checker.MerkleRoot(leaves)
	}
}
