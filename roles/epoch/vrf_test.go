package epoch

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 9381 Appendix B.4, ECVRF-EDWARDS25519-SHA512-ELL2, examples 19 to 21.
var rfc9381Vectors = []struct {
	name                    string
	sk, pk, alpha, pi, beta string
}{
	{
		name:  "example 19",
		sk:    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
		pk:    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
		alpha: "",
		pi:    "7d9c633ffeee27349264cf5c667579fc583b4bda63ab71d001f89c10003ab46f14adf9a3cd8b8412d9038531e865c341cafa73589b023d14311c331a9ad15ff2fb37831e00f0acaa6d73bc9997b06501",
		beta:  "9d574bf9b8302ec0fc1e21c3ec5368269527b87b462ce36dab2d14ccf80c53cccf6758f058c5b1c856b116388152bbe509ee3b9ecfe63d93c3b4346c1fbc6c54",
	},
	{
		name:  "example 20",
		sk:    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
		pk:    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
		alpha: "72",
		pi:    "47b327393ff2dd81336f8a2ef10339112401253b3c714eeda879f12c509072ef055b48372bb82efbdce8e10c8cb9a2f9d60e93908f93df1623ad78a86a028d6bc064dbfc75a6a57379ef855dc6733801",
		beta:  "38561d6b77b71d30eb97a062168ae12b667ce5c28caccdf76bc88e093e4635987cd96814ce55b4689b3dd2947f80e59aac7b7675f8083865b46c89b2ce9cc735",
	},
	{
		name:  "example 21",
		sk:    "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
		pk:    "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
		alpha: "af82",
		pi:    "926e895d308f5e328e7aa159c06eddbe56d06846abf5d98c2512235eaa57fdce35b46edfc655bc828d44ad09d1150f31374e7ef73027e14760d42e77341fe05467bb286cc2c9d7fde29120a0b2320d04",
		beta:  "121b7f9b9aaaa29099fc04a94ba52784d44eac976dd1a3cca458733be5cd090a7b5fbd148444f17f8daf1fb55cb04b1ae85a626e30a54b4b0f8abf4a43314a58",
	},
}

func TestVRFMatchesRFC9381(t *testing.T) {
	for _, v := range rfc9381Vectors {
		t.Run(v.name, func(t *testing.T) {
			sk := ed25519.NewKeyFromSeed(unhex(t, v.sk))
			pk := sk.Public().(ed25519.PublicKey)
			if got := hex.EncodeToString(pk); got != v.pk {
				t.Fatalf("public key = %s, want %s", got, v.pk)
			}
			alpha := unhex(t, v.alpha)
			pi, beta := Prove(sk, alpha)
			if got := hex.EncodeToString(pi[:]); got != v.pi {
				t.Errorf("pi = %s, want %s", got, v.pi)
			}
			if got := hex.EncodeToString(beta[:]); got != v.beta {
				t.Errorf("beta = %s, want %s", got, v.beta)
			}
			out, err := Verify(pk, unhex(t, v.pi), alpha)
			if err != nil {
				t.Fatalf("Verify(RFC proof) = %v", err)
			}
			if got := hex.EncodeToString(out[:]); got != v.beta {
				t.Errorf("Verify output = %s, want %s", got, v.beta)
			}
		})
	}
}

func testKey(t testing.TB, b byte) ed25519.PrivateKey {
	t.Helper()
	seed := sha512.Sum512([]byte{'k', b})
	return ed25519.NewKeyFromSeed(seed[:ed25519.SeedSize])
}

func TestVerifyRejects(t *testing.T) {
	sk := testKey(t, 1)
	pk := sk.Public().(ed25519.PublicKey)
	other := testKey(t, 2).Public().(ed25519.PublicKey)
	alpha := Alpha(Seed{1, 2, 3}, 7, RoleIndexer)
	pi, _ := Prove(sk, alpha)

	if _, err := Verify(pk, pi[:], alpha); err != nil {
		t.Fatalf("valid proof rejected: %v", err)
	}
	cases := []struct {
		name  string
		pk    ed25519.PublicKey
		proof []byte
		alpha []byte
	}{
		{"wrong key", other, pi[:], alpha},
		{"wrong alpha (next epoch)", pk, pi[:], Alpha(Seed{1, 2, 3}, 8, RoleIndexer)},
		{"wrong alpha (other role)", pk, pi[:], Alpha(Seed{1, 2, 3}, 7, "checker")},
		{"wrong alpha (other seed)", pk, pi[:], Alpha(Seed{1, 2, 4}, 7, RoleIndexer)},
		{"short proof", pk, pi[:ProofSize-1], alpha},
		{"long proof", pk, append(pi[:], 0), alpha},
		{"empty proof", pk, nil, alpha},
		{"short key", pk[:31], pi[:], alpha},
		{"nil key", nil, pi[:], alpha},
		{"identity key (small order)", ed25519.PublicKey(unhex(t, "0100000000000000000000000000000000000000000000000000000000000000")), pi[:], alpha},
	}
	for i := range ProofSize * 8 {
		flipped := pi
		flipped[i/8] ^= 1 << (i % 8)
		cases = append(cases, struct {
			name  string
			pk    ed25519.PublicKey
			proof []byte
			alpha []byte
		}{"flipped bit", pk, flipped[:], alpha})
	}
	for i, c := range cases {
		out, err := Verify(c.pk, c.proof, c.alpha)
		if !errors.Is(err, ErrBadProof) {
			t.Errorf("case %d (%s): Verify = %v, want ErrBadProof", i, c.name, err)
		}
		if out != (Output{}) {
			t.Errorf("case %d (%s): rejected proof returned a non-zero output", i, c.name)
		}
	}
}

func TestAlphaEncoding(t *testing.T) {
	seed := Seed{0xaa}
	got := Alpha(seed, 0x0102030405060708, RoleIndexer)
	var want []byte
	want = append(want, 0, 0, 0, 22)
	want = append(want, "rendermesh/sortition/1"...)
	want = append(want, 0, 0, 0, 7)
	want = append(want, "indexer"...)
	want = append(want, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8)
	want = append(want, 0, 0, 0, 32)
	want = append(want, seed[:]...)
	if !bytes.Equal(got, want) {
		t.Fatalf("Alpha =\n%x\nwant\n%x", got, want)
	}
	// Length prefixes keep role boundaries unambiguous.
	if bytes.Equal(Alpha(seed, 1, "ab"), Alpha(seed, 1, "a")) {
		t.Fatal("distinct roles encode equally")
	}
}

// A libp2p Ed25519 key's Raw forms are the crypto/ed25519 forms Prove and Verify take.
func TestLibp2pKeys(t *testing.T) {
	priv, pub, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	skRaw, err := priv.Raw()
	if err != nil {
		t.Fatal(err)
	}
	pkRaw, err := pub.Raw()
	if err != nil {
		t.Fatal(err)
	}
	alpha := Alpha(Seed{9}, 42, RoleIndexer)
	pi, beta := Prove(ed25519.PrivateKey(skRaw), alpha)
	out, err := Verify(ed25519.PublicKey(pkRaw), pi[:], alpha)
	if err != nil || out != beta {
		t.Fatalf("Verify = %x, %v; want %x, nil", out, err, beta)
	}
}

func FuzzVerify(f *testing.F) {
	for _, v := range rfc9381Vectors {
		f.Add(unhex(f, v.pk), unhex(f, v.pi), unhex(f, v.alpha), unhex(f, v.sk))
	}
	f.Add([]byte{}, []byte{}, []byte{}, []byte{})
	f.Add(make([]byte, 32), make([]byte, ProofSize), []byte("x"), []byte{1})
	ff := bytes.Repeat([]byte{0xff}, ProofSize)
	f.Add(ff[:32], ff, ff, ff)
	f.Fuzz(func(t *testing.T, pk, proof, alpha, keySeed []byte) {
		// Arbitrary bytes: must not panic; an error is always ErrBadProof.
		if _, err := Verify(ed25519.PublicKey(pk), proof, alpha); err != nil && !errors.Is(err, ErrBadProof) {
			t.Fatalf("Verify error %v is not ErrBadProof", err)
		}
		// A fresh proof with a key derived from the input always verifies, to the same output.
		seed := sha512.Sum512(keySeed)
		sk := ed25519.NewKeyFromSeed(seed[:ed25519.SeedSize])
		pi, beta := Prove(sk, alpha)
		out, err := Verify(sk.Public().(ed25519.PublicKey), pi[:], alpha)
		if err != nil {
			t.Fatalf("fresh proof rejected: %v", err)
		}
		if out != beta {
			t.Fatalf("Verify output %x != Prove output %x", out, beta)
		}
	})
}

func BenchmarkProve(b *testing.B) {
	sk := testKey(b, 1)
	alpha := Alpha(Seed{1}, 1, RoleIndexer)
	b.ReportAllocs()
	for b.Loop() {
		Prove(sk, alpha)
	}
}

func BenchmarkVerify(b *testing.B) {
	sk := testKey(b, 1)
	pk := sk.Public().(ed25519.PublicKey)
	alpha := Alpha(Seed{1}, 1, RoleIndexer)
	pi, _ := Prove(sk, alpha)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(pk, pi[:], alpha); err != nil {
			b.Fatal(err)
		}
	}
}
