package p2p

import (
	"crypto/sha512"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	stded25519 "crypto/ed25519"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"
	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// verifyStdLib verifies exactly as crypto/ed25519.Verify, which libp2p's Ed25519 keys (and so
// record.ConsumeEnvelope) use: cofactorless, non-canonical and small-order public keys allowed,
// canonical S and R required. Attestations verify with verifyAttest; the tests compare the two.
var verifyStdLib = &voi.Options{Verify: voi.VerifyOptionsStdLib}

// torsionSign signs msg with priv as Ed25519 does, except that its R carries the small-order point
// T: R = [r]B + T. The cofactored equation holds ([8] kills T); the cofactorless one does not. Only
// the signer can make such a signature: it needs the secret scalar.
func torsionSign(priv stded25519.PrivateKey, msg []byte, t *curve.EdwardsPoint) []byte {
	h := sha512.Sum512(priv.Seed())
	h[0] &= 248
	h[31] &= 127
	h[31] |= 64
	var a, r, k, s scalar.Scalar
	if _, err := a.SetBits(h[:32]); err != nil {
		panic(err)
	}
	a.Reduce(&a)
	nonce := sha512.Sum512(append(h[32:], msg...))
	if _, err := r.SetBytesModOrderWide(nonce[:]); err != nil {
		panic(err)
	}
	var R curve.EdwardsPoint
	R.MulBasepoint(curve.ED25519_BASEPOINT_TABLE, &r)
	R.Add(&R, t)
	var Rc curve.CompressedEdwardsY
	Rc.SetEdwardsPoint(&R)
	pub := priv.Public().(stded25519.PublicKey)
	kh := sha512.New()
	kh.Write(Rc[:])
	kh.Write(pub)
	kh.Write(msg)
	if _, err := k.SetBytesModOrderWide(kh.Sum(nil)); err != nil {
		panic(err)
	}
	s.Mul(&k, &a)
	s.Add(&s, &r)
	sig := slices.Clone(Rc[:])
	sig = append(sig, make([]byte, 32)...)
	if err := s.ToBytes(sig[32:]); err != nil {
		panic(err)
	}
	return sig
}

// TestAttestVerifyCofactored: attestations verify by the cofactored equation, alone and in a batch
// alike. Honest signatures verify under both equations; a signature whose R carries a small-order
// component (which only its signer can make) verifies under the cofactored one only, and the
// batch verifier agrees with the single one on it.
func TestAttestVerifyCofactored(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	_, priv, _ := stded25519.GenerateKey(r)
	pub := priv.Public().(stded25519.PublicKey)
	msg := []byte("rendermesh attestation")
	honest := stded25519.Sign(priv, msg)
	if !stded25519.Verify(pub, msg, honest) || !voi.VerifyWithOptions(voi.PublicKey(pub), msg, honest, verifyAttest) {
		t.Fatal("an honest signature does not verify")
	}
	if sig := torsionSign(priv, msg, curve.NewEdwardsPoint().Identity()); !slices.Equal(sig, honest) {
		t.Fatal("torsionSign with T = identity is not Ed25519")
	}
	for i, tp := range curve.EIGHT_TORSION[1:] {
		sig := torsionSign(priv, msg, tp)
		std := stded25519.Verify(pub, msg, sig)
		att := voi.VerifyWithOptions(voi.PublicKey(pub), msg, sig, verifyAttest)
		bv := voi.NewBatchVerifier()
		bv.AddWithOptions(voi.PublicKey(pub), msg, sig, verifyAttest)
		bv.AddWithOptions(voi.PublicKey(pub), msg, honest, verifyAttest)
		batch := bv.VerifyBatchOnly(nil)
		if std || !att || !batch {
			t.Errorf("torsion point %d: crypto/ed25519 %v (want false), attestation verifier %v, batch %v (want true)", i+1, std, att, batch)
		}
	}
}

// TestAttestBatcherMatchesAlone: whatever the batches, every signature's result is the one it gets
// alone: good ones, forged ones, ones whose key is no curve point, and cofactored-only ones.
func TestAttestBatcherMatchesAlone(t *testing.T) {
	r := rand.New(rand.NewSource(6))
	var reqs []*sigRequest
	var want []bool
	for i := range 48 {
		_, priv, _ := stded25519.GenerateKey(r)
		pub := voi.PublicKey(priv.Public().(stded25519.PublicKey))
		msg := []byte{byte(i), 'a', 't', 't'}
		sig := stded25519.Sign(priv, msg)
		x, _ := voi.NewExpandedPublicKey(pub)
		switch i % 6 {
		case 1: // forged
			sig[5] ^= 1
		case 2: // the key alone, not expanded
			x = nil
		case 3: // a key that is no point
			pub, x = voi.PublicKey(slices.Repeat([]byte{0xff}, 32)), nil
			pub[0] = 2
		case 4: // cofactored only
			sig = torsionSign(priv, msg, curve.EIGHT_TORSION[3])
		case 5: // a non-canonical S
			sig = slices.Clone(sig)
			sig[63] |= 0xf0
		}
		rq := &sigRequest{x: x, pub: pub, msg: msg, sig: sig}
		reqs = append(reqs, rq)
		want = append(want, verifyAlone(rq))
	}
	if !slices.Contains(want, true) || !slices.Contains(want, false) {
		t.Fatalf("want a mix of good and bad signatures: %v", want)
	}
	// One leader busy: every call queues. Once all have, the leader's turn ends, and the queue is
	// verified in batches of at most 16, each led by its first request.
	run := func(b *attestBatcher, reqs []*sigRequest) []bool {
		got := make([]bool, len(reqs))
		synctest.Test(t, func(t *testing.T) {
			var wg sync.WaitGroup
			for i, rq := range reqs {
				wg.Go(func() { got[i] = b.verify(rq.x, rq.pub, rq.msg, rq.sig) })
			}
			synctest.Wait() // every call is queued
			if len(b.queue) != len(reqs) {
				t.Fatalf("%d of %d calls queued", len(b.queue), len(reqs))
			}
			b.next()
			wg.Wait()
		})
		if b.leaders != 0 || len(b.queue) != 0 {
			t.Errorf("after the calls: %d leaders, %d queued", b.leaders, len(b.queue))
		}
		return got
	}
	b := &attestBatcher{maxLeaders: 1, maxBatch: 16, leaders: 1}
	if got := run(b, reqs); !slices.Equal(got, want) {
		t.Errorf("batched %v\nalone   %v", got, want)
	}
	if b.batches.Load() != 3 || b.alone.Load() <= 0 {
		t.Errorf("%d batches, %d signatures to verify alone: want 3 batches of 16, failed", b.batches.Load(), b.alone.Load())
	}
	// Only good signatures, expanded keys or not: the batches' equations hold.
	var good []*sigRequest
	for i, rq := range reqs {
		if i%6 == 0 || i%6 == 2 {
			good = append(good, rq)
		}
	}
	b = &attestBatcher{maxLeaders: 1, maxBatch: 16, leaders: 1}
	if got := run(b, good); slices.Contains(got, false) {
		t.Errorf("good signatures in batches: %v", got)
	}
	if b.batches.Load() != 1 || b.alone.Load() > 0 {
		t.Errorf("%d batches, %d signatures to verify alone: want one batch, no failure", b.batches.Load(), b.alone.Load())
	}
	// With room for a leader, a call verifies at once.
	if ok := b.verify(reqs[0].x, reqs[0].pub, reqs[0].msg, reqs[0].sig); ok != want[0] || b.leaders != 0 {
		t.Errorf("an idle batcher: %v (want %v), %d leaders after", ok, want[0], b.leaders)
	}
}

// Many concurrent validations through the batcher (the gossip validator's path) judge exactly as
// one at a time does.
func TestValidateBatchedMatchesValidate(t *testing.T) {
	const checkers = 24
	_, container := testKey(t, 999)
	var pool [][]byte
	for i := range checkers {
		key, id := testKey(t, int64(2000+i))
		for j := range 4 {
			data := sealAttest(t, testAttestation(id, container, attestNow, byte(j)), key)
			if (i+j)%5 == 0 {
				data = slices.Clone(data)
				data[len(data)-64] ^= 1 // the signature's R
			}
			pool = append(pool, data)
		}
	}
	alone := newTestAttestValidator(t, mockClockAt(attestNow), allEligible{}, nil)
	batched := newTestAttestValidator(t, mockClockAt(attestNow), allEligible{}, nil)
	batched.batch.maxLeaders = 1
	want := make([]AttestReason, len(pool))
	for i, data := range pool {
		_, want[i] = alone.Validate("", data)
	}
	got := make([]AttestReason, len(pool))
	var wg sync.WaitGroup
	for i, data := range pool {
		wg.Go(func() { _, got[i] = batched.validateBatched("", data) })
	}
	wg.Wait()
	if !slices.Equal(got, want) {
		t.Errorf("batched %v\nalone   %v", got, want)
	}
	// Every verification is observed, with the signatures it covered.
	var m dto.Metric
	if err := batched.Metrics().BatchSize.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	h := m.GetHistogram()
	if h.GetSampleCount() != batched.batch.batches.Load() || uint64(h.GetSampleSum()) != batched.batch.signatures.Load() {
		t.Errorf("histogram: %d verifications of %v signatures; the batcher counted %d of %d",
			h.GetSampleCount(), h.GetSampleSum(), batched.batch.batches.Load(), batched.batch.signatures.Load())
	}
}
