package p2p

import (
	"bytes"
	"context"
	stded25519 "crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"
	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// The attestation tests run on a 15-minute schedule from testEpoch; attestNow is five minutes into
// epoch 10.
var (
	attestSchedule = epoch.Schedule{Genesis: testEpoch, Length: 15 * time.Minute}
	attestNow      = attestSchedule.Start(10).Add(5 * time.Minute)
)

const attestCur = 10

// testAttestation is a passing simulation test of container by checker, issued at issued, whose
// nonce starts with n.
func testAttestation(checker, container peer.ID, issued time.Time, n byte) *pb.Attestation {
	nonce := bytes.Repeat([]byte{n}, 16)
	evidence := sha256.Sum256(nonce)
	return &pb.Attestation{
		Checker:   []byte(checker),
		Container: []byte(container),
		Epoch:     attestSchedule.Epoch(issued),
		Kind:      pb.CheckKind_CHECK_KIND_RANDOM,
		Method:    pb.CheckMethod_CHECK_METHOD_SIMULATION,
		Verdict:   pb.Verdict_VERDICT_PASS,
		M: &pb.Measurements{
			FpsMilli: 59_940, Width: 1920, Height: 1080, LatencyUsP50: 18_500, BitrateKbps: 12_000,
			FramesChecked: 12, FramesMatched: 12, PsnrMinMilli: 38_250,
			GpuModel: "H100", GpuCount: 1, Encoder: true,
		},
		EvidenceHash: evidence[:],
		IssuedUnixMs: issued.UnixMilli(),
		Nonce:        nonce,
	}
}

// failing makes a a failed check.
func failing(a *pb.Attestation) *pb.Attestation {
	a.Verdict = pb.Verdict_VERDICT_FAIL
	a.Reason = "frame_rate: 41.2 fps, asked 60"
	return a
}

// sealAttest seals a as it is (Seal, not SealAttestation: invalid attestations too).
func sealAttest(tb testing.TB, a *pb.Attestation, key crypto.PrivKey) []byte {
	tb.Helper()
	data, err := Seal(KindAttestation, a, key)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// eligibleSet is a CheckerEligibility: the peers in it may check in every epoch.
type eligibleSet map[peer.ID]bool

func (s eligibleSet) Eligible(p peer.ID, _ uint64) bool { return s[p] }

func newTestAttestValidator(tb testing.TB, clk clock.Clock, eligible CheckerEligibility, edit func(*AttestConfig)) *AttestValidator {
	tb.Helper()
	cfg := AttestConfig{Schedule: attestSchedule, Eligibility: eligible, Clock: clk, Metrics: NewAttestMetrics(nil)}
	if edit != nil {
		edit(&cfg)
	}
	v, err := NewAttestValidator(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func mockClockAt(t time.Time) *clock.Mock {
	clk := clock.NewMock()
	clk.Set(t)
	return clk
}

// attestRecord lets record.ConsumeEnvelope open attestations: the reference the fast path is held to.
type attestRecord struct{ msg *pb.Attestation }

func (r *attestRecord) Domain() string                 { return KindAttestation.Domain }
func (r *attestRecord) Codec() []byte                  { return KindAttestation.Codec }
func (r *attestRecord) MarshalRecord() ([]byte, error) { return proto.Marshal(r.msg) }
func (r *attestRecord) UnmarshalRecord(b []byte) error {
	r.msg = new(pb.Attestation)
	return proto.Unmarshal(b, r.msg)
}

func init() { record.RegisterType(&attestRecord{}) }

// refOpenAttestation opens an attestation the slow, obvious way: go-libp2p's record.ConsumeEnvelope
// (two decodings of the envelope, crypto/ed25519), libp2p's own encoding of the envelope compared
// with the input (canonical), then the same checks of the payload.
func refOpenAttestation(data []byte) (*pb.Attestation, peer.ID, bool) {
	if len(data) > MaxAttestationSize {
		return nil, "", false
	}
	env, rec, err := record.ConsumeEnvelope(data, KindAttestation.Domain)
	if err != nil || !bytes.Equal(env.PayloadType, KindAttestation.Codec) {
		return nil, "", false
	}
	if again, err := env.Marshal(); err != nil || !bytes.Equal(again, data) {
		return nil, "", false // not the envelope's canonical encoding (canonicalEnvelope)
	}
	if env.PublicKey.Type() != crypto.Ed25519 { // rendermesh identities are Ed25519 (see TestOpenAttestationOnlyEd25519)
		return nil, "", false
	}
	r, ok := rec.(*attestRecord)
	if !ok || checkAttestationFields(r.msg) != "" {
		return nil, "", false
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil || peer.ID(r.msg.Checker) != signer {
		return nil, "", false
	}
	return r.msg, signer, true
}

func TestEd25519IDPrefix(t *testing.T) {
	for seed := range int64(8) {
		key, id := testKey(t, seed)
		raw, err := key.GetPublic().Raw()
		if err != nil {
			t.Fatal(err)
		}
		if got := append(slices.Clone(ed25519IDPrefix), raw...); string(got) != string(id) {
			t.Fatalf("prefix + key = %x, peer ID %x", got, []byte(id))
		}
	}
}

func TestOpenAttestation(t *testing.T) {
	keyA, idA := testKey(t, 1)
	keyB, idB := testKey(t, 2)
	_, idC := testKey(t, 3)
	valid := testAttestation(idA, idC, attestNow, 1)
	validRaw := sealAttest(t, valid, keyA)
	a, signer, err := OpenAttestation(validRaw)
	if err != nil {
		t.Fatal(err)
	}
	if signer != idA || !proto.Equal(a, valid) {
		t.Fatalf("OpenAttestation = %v, %s", a, signer)
	}
	if len(validRaw) > MaxAttestationSize/2 {
		t.Errorf("a typical attestation takes %d bytes", len(validRaw))
	}

	with := func(f func(*pb.Attestation)) *pb.Attestation {
		a := testAttestation(idA, idC, attestNow, 1)
		f(a)
		return a
	}
	// The largest attestation the fields allow still fits.
	largest := with(func(a *pb.Attestation) {
		failing(a)
		a.Reason = string(bytes.Repeat([]byte("r"), MaxAttestReason))
		a.Nonce = bytes.Repeat([]byte{7}, MaxAttestNonce)
		a.M.GpuModel = string(bytes.Repeat([]byte("g"), MaxAttestGPUModel))
		a.M.Samples, a.M.UtilizationPct, a.M.PowerMaxMw, a.M.TemperatureMaxC, a.M.MemoryUsedMaxPermille = 1<<31, 1<<31, 1<<31, 1<<31, 1<<31
		a.M.FpsMilli, a.M.Width, a.M.Height, a.M.LatencyUsP50, a.M.BitrateKbps = 1<<31, 1<<31, 1<<31, 1<<31, 1<<31
		a.M.FramesChecked, a.M.FramesMatched, a.M.PsnrMinMilli, a.M.GpuCount = 1<<31, 1<<31, 1<<31, 1<<31
		a.Epoch, a.IssuedUnixMs = 1<<62, 1<<62
	})
	if raw := sealAttest(t, largest, keyA); len(raw) > MaxAttestationSize*3/4 {
		t.Errorf("the largest valid attestation takes %d bytes, limit %d", len(raw), MaxAttestationSize)
	} else if _, _, err := OpenAttestation(raw); err != nil {
		t.Errorf("largest: %v", err)
	}

	payload := func(a *pb.Attestation) []byte {
		b, err := proto.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	otherDomain, err := Seal(Kind{Domain: KindHeartbeat.Domain, Codec: KindAttestation.Codec}, valid, keyA)
	if err != nil {
		t.Fatal(err)
	}
	secpKey, _, err := crypto.GenerateSecp256k1Key(rand.New(rand.NewSource(1)))
	if err != nil {
		t.Fatal(err)
	}
	secpID, _ := peer.IDFromPrivateKey(secpKey)
	cases := []struct {
		name   string
		data   []byte
		reason AttestReason
		err    error
	}{
		{"oversize junk", make([]byte, MaxAttestationSize+1), AttestOversize, errOversize},
		{"oversize attestation", sealAttest(t, with(func(a *pb.Attestation) { a.M.GpuModel = string(make([]byte, MaxAttestationSize)) }), keyA), AttestOversize, errOversize},
		{"empty", nil, AttestMalformed, ErrMalformed},
		{"garbage", []byte("not an attestation"), AttestMalformed, ErrMalformed},
		{"truncated", validRaw[:len(validRaw)-1], AttestMalformed, ErrMalformed},
		{"a heartbeat", sealHeartbeat(t, testHeartbeat(idA, 1, attestNow), keyA), AttestBadSignature, ErrSignature},
		{"signed in the heartbeat domain", otherDomain, AttestBadSignature, ErrSignature},
		{"payload changed after signing", reseal(t, validRaw, payload(failing(testAttestation(idA, idC, attestNow, 1))), nil), AttestBadSignature, ErrSignature},
		{"signed by B, envelope claims A's key", reseal(t, sealAttest(t, valid, keyB), nil, keyA.GetPublic()), AttestBadSignature, ErrSignature},
		{"checker names another peer", sealAttest(t, testAttestation(idB, idC, attestNow, 1), keyA), AttestSignerMismatch, ErrMalformed},
		{"checker is no peer ID", sealAttest(t, with(func(a *pb.Attestation) { a.Checker = []byte("me") }), keyA), AttestSignerMismatch, ErrMalformed},
		{"secp256k1 signer", sealAttest(t, testAttestation(secpID, idC, attestNow, 1), secpKey), AttestMalformed, ErrMalformed},
		{"no kind", sealAttest(t, with(func(a *pb.Attestation) { a.Kind = 0 }), keyA), AttestMalformed, ErrMalformed},
		{"unknown kind", sealAttest(t, with(func(a *pb.Attestation) { a.Kind = 4 }), keyA), AttestMalformed, ErrMalformed},
		{"no method", sealAttest(t, with(func(a *pb.Attestation) { a.Method = 0 }), keyA), AttestMalformed, ErrMalformed},
		{"unknown method", sealAttest(t, with(func(a *pb.Attestation) { a.Method = 3 }), keyA), AttestMalformed, ErrMalformed},
		{"no verdict", sealAttest(t, with(func(a *pb.Attestation) { a.Verdict = 0 }), keyA), AttestMalformed, ErrMalformed},
		{"unknown verdict", sealAttest(t, with(func(a *pb.Attestation) { a.Verdict = 3 }), keyA), AttestMalformed, ErrMalformed},
		{"short evidence hash", sealAttest(t, with(func(a *pb.Attestation) { a.EvidenceHash = a.EvidenceHash[:31] }), keyA), AttestMalformed, ErrMalformed},
		{"no nonce", sealAttest(t, with(func(a *pb.Attestation) { a.Nonce = nil }), keyA), AttestMalformed, ErrMalformed},
		{"long nonce", sealAttest(t, with(func(a *pb.Attestation) { a.Nonce = make([]byte, MaxAttestNonce+1) }), keyA), AttestMalformed, ErrMalformed},
		{"reason on a pass", sealAttest(t, with(func(a *pb.Attestation) { a.Reason = "fine" }), keyA), AttestMalformed, ErrMalformed},
		{"fail without a reason", sealAttest(t, with(func(a *pb.Attestation) { a.Verdict = pb.Verdict_VERDICT_FAIL }), keyA), AttestMalformed, ErrMalformed},
		{"long reason", sealAttest(t, with(func(a *pb.Attestation) { failing(a).Reason = string(make([]byte, MaxAttestReason+1)) }), keyA), AttestMalformed, ErrMalformed},
		{"not issued", sealAttest(t, with(func(a *pb.Attestation) { a.IssuedUnixMs = 0 }), keyA), AttestMalformed, ErrMalformed},
		{"long GPU model", sealAttest(t, with(func(a *pb.Attestation) { a.M.GpuModel = string(make([]byte, MaxAttestGPUModel+1)) }), keyA), AttestMalformed, ErrMalformed},
		{"no container", sealAttest(t, with(func(a *pb.Attestation) { a.Container = nil }), keyA), AttestMalformed, ErrMalformed},
		{"container is no peer ID", sealAttest(t, with(func(a *pb.Attestation) { a.Container = []byte("c") }), keyA), AttestMalformed, ErrMalformed},
		{"checker attests itself", sealAttest(t, testAttestation(idA, idA, attestNow, 1), keyA), AttestMalformed, ErrMalformed},
	}
	for _, tc := range cases {
		a, signer, err := OpenAttestation(tc.data)
		if !errors.Is(err, tc.reason) || !errors.Is(err, tc.err) || !errors.Is(err, ErrAttestation) || a != nil || signer != "" {
			t.Errorf("%s: OpenAttestation = %v, %q, %v; want %q (%v)", tc.name, a, signer, err, tc.reason, tc.err)
		}
		if _, _, ok := refOpenAttestation(tc.data); ok && tc.name != "secp256k1 signer" {
			t.Errorf("%s: the reference accepts it", tc.name)
		}
	}
	if _, err := SealAttestation(with(func(a *pb.Attestation) { a.Nonce = nil }), keyA); !errors.Is(err, AttestMalformed) {
		t.Errorf("SealAttestation of a malformed attestation: %v", err)
	}
	if raw, err := SealAttestation(valid, keyA); err != nil || !bytes.Equal(raw, validRaw) {
		t.Errorf("SealAttestation = %x, %v; want %x", raw, err, validRaw)
	}
}

// The fast path's one deliberate difference from record.ConsumeEnvelope: signers with keys other
// than Ed25519 (which no rendermesh identity has) are malformed.
func TestOpenAttestationOnlyEd25519(t *testing.T) {
	_, idC := testKey(t, 3)
	for _, gen := range []func() (crypto.PrivKey, error){
		func() (crypto.PrivKey, error) {
			k, _, err := crypto.GenerateSecp256k1Key(rand.New(rand.NewSource(1)))
			return k, err
		},
		func() (crypto.PrivKey, error) {
			k, _, err := crypto.GenerateECDSAKeyPair(rand.New(rand.NewSource(1)))
			return k, err
		},
	} {
		key, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(key)
		data := sealAttest(t, testAttestation(id, idC, attestNow, 1), key)
		if _, _, err := record.ConsumeEnvelope(data, KindAttestation.Domain); err != nil {
			t.Fatalf("%s: ConsumeEnvelope: %v", key.Type(), err)
		}
		if _, _, err := OpenAttestation(data); !errors.Is(err, AttestMalformed) {
			t.Errorf("%s signer: %v, want malformed", key.Type(), err)
		}
	}
}

// mutate returns a copy of data with one random edit of the kind an attacker or a broken link makes.
func mutate(r *rand.Rand, data []byte) []byte {
	out := slices.Clone(data)
	if len(out) == 0 {
		return []byte{byte(r.Intn(256))}
	}
	i := r.Intn(len(out))
	switch r.Intn(7) {
	case 0: // flip a bit
		out[i] ^= 1 << r.Intn(8)
	case 1: // overwrite a byte
		out[i] = byte(r.Intn(256))
	case 2: // truncate
		out = out[:i]
	case 3: // insert a byte
		out = slices.Insert(out, i, byte(r.Intn(256)))
	case 4: // delete a byte
		out = slices.Delete(out, i, i+1)
	case 5: // append a field the schemas do not know (field 9, bytes)
		out = append(out, 0x4a, 0x01, byte(r.Intn(256)))
	case 6: // repeat a span (a field twice)
		j := i + r.Intn(len(out)-i)
		out = append(out, out[i:j]...)
	}
	return out
}

// TestOpenAttestationMatchesConsumeEnvelope: on valid envelopes and thousands of mutations of them
// (bits flipped in keys, signatures, payloads, lengths; truncations; repeated and unknown fields),
// the fast path accepts exactly what record.ConsumeEnvelope accepts, and opens the same attestation.
func TestOpenAttestationMatchesConsumeEnvelope(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	var seeds [][]byte
	for i := range 8 {
		key, id := testKey(t, int64(10+i))
		_, c := testKey(t, int64(100+i))
		a := testAttestation(id, c, attestNow, byte(i))
		if i%2 == 1 {
			failing(a)
		}
		seeds = append(seeds, sealAttest(t, a, key))
	}
	n := 4000
	if testing.Short() {
		n = 500
	}
	accepted := 0
	for i := range n {
		data := seeds[i%len(seeds)]
		for range 1 + r.Intn(3) {
			if i%10 != 0 { // every tenth input stays valid
				data = mutate(r, data)
			}
		}
		got, gotSigner, err := OpenAttestation(data)
		want, wantSigner, ok := refOpenAttestation(data)
		if (err == nil) != ok {
			t.Fatalf("input %d %x: OpenAttestation error %v, reference accepts: %v", i, data, err, ok)
		}
		if ok {
			accepted++
			if !proto.Equal(got, want) || gotSigner != wantSigner {
				t.Fatalf("input %d: opened %v by %s, reference %v by %s", i, got, gotSigner, want, wantSigner)
			}
		}
	}
	t.Logf("%d of %d inputs accepted by both", accepted, n)
	if accepted < n/10 {
		t.Errorf("only %d of %d inputs accepted: the mutations left too few valid ones", accepted, n)
	}
}

// TestEd25519MatchesStdLib holds the verifier to crypto/ed25519 (which libp2p's keys use) on the
// inputs where Ed25519 implementations are known to disagree: small-order and non-canonical public
// keys, non-canonical R and S, and random corruptions of honest signatures.
func TestEd25519MatchesStdLib(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	msg := []byte("rendermesh attestation")
	identity := make([]byte, 32)
	identity[0] = 1
	nonCanonicalIdentity := bytes.Repeat([]byte{0xff}, 32) // y = 1 + p
	nonCanonicalIdentity[0], nonCanonicalIdentity[31] = 0xee, 0x7f
	negZero := slices.Clone(identity) // y = 1, sign of x = 0 set
	negZero[31] |= 0x80
	orderTwo := bytes.Repeat([]byte{0xff}, 32) // y = -1
	orderTwo[0], orderTwo[31] = 0xec, 0x7f
	notOnCurve := make([]byte, 32)
	notOnCurve[0] = 2
	keys := [][]byte{identity, nonCanonicalIdentity, negZero, orderTwo, notOnCurve}
	var honest []stded25519.PrivateKey
	for range 4 {
		_, priv, _ := stded25519.GenerateKey(r)
		honest = append(honest, priv)
		keys = append(keys, priv.Public().(stded25519.PublicKey))
	}

	// For the identity key, (R, S) with R = [S]B verifies for any message.
	var sigs [][]byte
	for range 4 {
		var wide [64]byte
		r.Read(wide[:])
		s, _ := scalar.NewFromBytesModOrderWide(wide[:])
		var R curve.EdwardsPoint
		R.MulBasepoint(curve.ED25519_BASEPOINT_TABLE, s)
		var Rc curve.CompressedEdwardsY
		Rc.SetEdwardsPoint(&R)
		sig := append(slices.Clone(Rc[:]), make([]byte, 32)...)
		s.ToBytes(sig[32:])
		sigs = append(sigs, sig)
		// The same S + L: non-canonical S.
		big := slices.Clone(sig)
		addL(big[32:])
		sigs = append(sigs, big)
	}
	for _, priv := range honest {
		sigs = append(sigs, stded25519.Sign(priv, msg))
	}
	for i := range 8 * len(honest) {
		sig := slices.Clone(sigs[len(sigs)-1-i%len(honest)])
		sig[r.Intn(64)] ^= 1 << r.Intn(8)
		sigs = append(sigs, sig)
	}
	// S = 0 and R the identity: valid for the identity key with R canonical, not with R = 1 + p.
	sigs = append(sigs, append(slices.Clone(identity), make([]byte, 32)...), append(slices.Clone(nonCanonicalIdentity), make([]byte, 32)...))

	agreeAccept := 0
	for _, pub := range keys {
		x, xerr := voi.NewExpandedPublicKey(pub)
		for _, sig := range sigs {
			want := stded25519.Verify(pub, msg, sig)
			got := voi.VerifyWithOptions(pub, msg, sig, verifyStdLib)
			gotX := xerr == nil && voi.VerifyExpandedWithOptions(x, msg, sig, verifyStdLib)
			if got != want || gotX != want {
				t.Errorf("key %x sig %x: crypto/ed25519 %v, voi %v, voi expanded %v", pub, sig, want, got, gotX)
			}
			if want {
				agreeAccept++
			}
		}
	}
	if agreeAccept < 4+len(honest) {
		t.Errorf("only %d accepted signatures compared", agreeAccept)
	}
}

// addL adds the group order L to a little-endian 32-byte scalar (ignoring the carry out).
func addL(s []byte) {
	l := [32]byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 31: 0x10}
	carry := 0
	for i := range s {
		v := int(s[i]) + int(l[i]) + carry
		s[i], carry = byte(v), v>>8
	}
}

func TestAttestReasons(t *testing.T) {
	seen := map[AttestReason]bool{}
	for _, r := range AttestReasons {
		if seen[r] || r == "" {
			t.Errorf("reason %q repeated or empty", r)
		}
		seen[r] = true
		if !errors.Is(r, ErrAttestation) || !errors.Is(fmt.Errorf("x: %w", r), r) {
			t.Errorf("%q does not match as an error", r)
		}
	}
	ignorable := map[AttestReason]bool{AttestLate: true, AttestFromFuture: true, AttestDuplicate: true, AttestOverQuota: true}
	for _, r := range AttestReasons {
		if r.Ignorable() != ignorable[r] {
			t.Errorf("%q: Ignorable = %v", r, r.Ignorable())
		}
	}
}

func TestAttestValidatorCheck(t *testing.T) {
	keyA, idA := testKey(t, 1)
	keyB, idB := testKey(t, 2)
	_, idC := testKey(t, 3)
	eligible := eligibleSet{idA: true}
	start := attestSchedule.Start(attestCur)
	grace := min(attestSchedule.Length/10, 30*time.Second)
	at := func(issued time.Time) []byte { return sealAttest(t, testAttestation(idA, idC, issued, 1), keyA) }
	tests := []struct {
		name   string
		now    time.Time
		from   peer.ID
		data   []byte
		reason AttestReason
	}{
		{"valid", attestNow, idA, at(attestNow), ""},
		{"valid off gossip", attestNow, "", at(attestNow), ""},
		{"a failed check", attestNow, idA, sealAttest(t, failing(testAttestation(idA, idC, attestNow, 1)), keyA), ""},
		{"issued at the start of the epoch", attestNow, idA, at(start), ""},
		{"previous epoch, at the end of the grace", start.Add(grace), idA, at(start.Add(-time.Second)), ""},
		{"previous epoch, after the grace", start.Add(grace + time.Millisecond), idA, at(start.Add(-time.Second)), AttestLate},
		{"previous epoch, at the end of the late window", start.Add(grace + DefaultAttestLate), idA, at(start.Add(-time.Second)), AttestLate},
		{"previous epoch, after the late window", start.Add(grace + DefaultAttestLate + time.Millisecond), idA, at(start.Add(-time.Second)), AttestWrongEpoch},
		{"two epochs ago", attestNow, idA, at(attestSchedule.Start(attestCur - 1).Add(-time.Second)), AttestWrongEpoch},
		{"epoch not the issue time's", attestNow, idA, sealAttest(t, func() *pb.Attestation {
			a := testAttestation(idA, idC, attestNow, 1)
			a.Epoch--
			return a
		}(), keyA), AttestWrongEpoch},
		{"next epoch, within the skew", start.Add(15*time.Minute - DefaultAttestMaxSkew), idA, at(start.Add(15 * time.Minute)), ""},
		{"issued at the edge of the skew", attestNow, idA, at(attestNow.Add(DefaultAttestMaxSkew)), ""},
		{"issued beyond the skew", attestNow, idA, at(attestNow.Add(DefaultAttestMaxSkew + time.Millisecond)), AttestFromFuture},
		{"next epoch, beyond the skew", start.Add(14 * time.Minute), idA, at(start.Add(15 * time.Minute)), AttestFromFuture},
		{"ineligible checker", attestNow, idB, sealAttest(t, testAttestation(idB, idC, attestNow, 1), keyB), AttestIneligible},
		{"published by another peer", attestNow, idB, at(attestNow), AttestAuthorMismatch},
		{"forged signature", attestNow, idA, reseal(t, at(attestNow), mustMarshal(t, failing(testAttestation(idA, idC, attestNow, 1))), nil), AttestBadSignature},
		{"signed by B, in A's name", attestNow, idA, sealAttest(t, testAttestation(idA, idC, attestNow, 1), keyB), AttestSignerMismatch},
		{"malformed", attestNow, idA, []byte{0x0a, 0x02, 0x08}, AttestMalformed},
		{"oversize", attestNow, idA, make([]byte, MaxAttestationSize+1), AttestOversize},
	}
	covered := map[AttestReason]bool{AttestDuplicate: true, AttestOverQuota: true} // TestAttestValidatorDuplicates
	for _, tt := range tests {
		covered[tt.reason] = true
	}
	for _, r := range AttestReasons {
		if !covered[r] {
			t.Errorf("no case has reason %q", r)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestAttestValidator(t, mockClockAt(tt.now), eligible, nil)
			a, reason := v.Validate(tt.from, tt.data)
			if reason != tt.reason || (a != nil) != (reason == "") {
				t.Fatalf("Validate = %v, %q; want reason %q", a, reason, tt.reason)
			}
			if tt.from == "" {
				return
			}
			// The gossip validator: a fresh validator, so that the envelope is not a duplicate.
			v = newTestAttestValidator(t, mockClockAt(tt.now), eligible, nil)
			msg := gossipMessage(tt.from, tt.data)
			want := pubsub.ValidationAccept
			switch {
			case tt.reason.Ignorable():
				want = pubsub.ValidationIgnore
			case tt.reason != "":
				want = pubsub.ValidationReject
			}
			if got := v.validateGossip(msg); got != want {
				t.Fatalf("gossip validator: %v, want %v", got, want)
			}
			labels := make([]string, len(AttestReasons))
			for i, r := range AttestReasons {
				labels[i] = string(r)
			}
			rejected := rejections(t, v.Metrics().Rejected, labels...)
			accepted := counterValue(t, v.Metrics().Accepted)
			if tt.reason == "" {
				got, ok := msg.ValidatorData.(*pb.Attestation)
				if len(rejected) != 0 || accepted != 1 || !ok || peer.ID(got.Checker) != idA {
					t.Errorf("rejections %v, %v accepted, ValidatorData %v", rejected, accepted, msg.ValidatorData)
				}
				return
			}
			if len(rejected) != 1 || rejected[string(tt.reason)] != 1 || accepted != 0 || msg.ValidatorData != nil {
				t.Errorf("rejections %v, %v accepted, ValidatorData %v; want one %q", rejected, accepted, msg.ValidatorData, tt.reason)
			}
		})
	}
}

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestAttestValidatorDuplicates(t *testing.T) {
	keyA, idA := testKey(t, 1)
	keyB, idB := testKey(t, 2)
	_, idC := testKey(t, 3)
	_, idD := testKey(t, 4)
	clk := mockClockAt(attestNow)
	v := newTestAttestValidator(t, clk, eligibleSet{idA: true, idB: true}, func(c *AttestConfig) { c.MaxPerChecker = 4 })
	first := testAttestation(idA, idC, attestNow, 1)
	firstRaw := sealAttest(t, first, keyA)
	// The same check, re-signed with other measurements: another envelope, the same check.
	again := testAttestation(idA, idC, attestNow.Add(time.Second), 1)
	again.M.FpsMilli = 1
	otherKind := testAttestation(idA, idC, attestNow, 1)
	otherKind.Kind = pb.CheckKind_CHECK_KIND_SESSION
	steps := []struct {
		name   string
		data   []byte
		reason AttestReason
	}{
		{"first", firstRaw, ""},
		{"the same envelope again", firstRaw, AttestDuplicate},
		{"a forgery of an accepted check is still a forgery", reseal(t, firstRaw, mustMarshal(t, failing(testAttestation(idA, idC, attestNow, 1))), nil), AttestBadSignature},
		{"the same check, signed again", sealAttest(t, again, keyA), AttestDuplicate},
		{"another nonce", sealAttest(t, testAttestation(idA, idC, attestNow, 2), keyA), ""},
		{"another kind", sealAttest(t, otherKind, keyA), ""},
		{"another container", sealAttest(t, testAttestation(idA, idD, attestNow, 1), keyA), ""},
		{"another checker", sealAttest(t, testAttestation(idB, idC, attestNow, 1), keyB), ""},
		{"over the checker's quota", sealAttest(t, testAttestation(idA, idC, attestNow, 3), keyA), AttestOverQuota},
		{"the quota is per checker", sealAttest(t, testAttestation(idB, idC, attestNow, 3), keyB), ""},
	}
	for _, s := range steps {
		if _, r := v.Validate("", s.data); r != s.reason {
			t.Fatalf("%s: reason %q, want %q", s.name, r, s.reason)
		}
	}

	// Memory: an epoch is forgotten once its attestations can no longer be accepted.
	if n := len(v.epochs); n != 1 {
		t.Fatalf("%d epochs remembered", n)
	}
	clk.Set(attestSchedule.Start(attestCur + 1).Add(time.Second)) // epoch 10 is the previous one now
	if _, r := v.Validate("", firstRaw); r != AttestDuplicate {
		t.Fatalf("previous epoch, in its grace: %q, want duplicate", r)
	}
	clk.Set(attestSchedule.Start(attestCur + 2))
	if _, r := v.Validate("", firstRaw); r != AttestWrongEpoch {
		t.Fatalf("two epochs later: %q, want wrong_epoch", r)
	}
	if _, r := v.Validate("", sealAttest(t, testAttestation(idA, idC, clk.Now(), 1), keyA)); r != "" {
		t.Fatalf("a new epoch's check: %q", r)
	}
	if _, ok := v.epochs[attestCur]; ok || len(v.epochs) != 1 {
		t.Errorf("epochs remembered: %v", slices.Collect(maps.Keys(v.epochs)))
	}
}

// Concurrent validations of one attestation accept it exactly once.
func TestAttestValidatorConcurrent(t *testing.T) {
	key, id := testKey(t, 1)
	_, idC := testKey(t, 3)
	v := newTestAttestValidator(t, mockClockAt(attestNow), eligibleSet{id: true}, nil)
	raws := make([][]byte, 4)
	for i := range raws {
		raws[i] = sealAttest(t, testAttestation(id, idC, attestNow, byte(i)), key)
	}
	var mu sync.Mutex
	accepted := map[int]int{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range raws {
				j := (i + g) % len(raws)
				if _, r := v.Validate(id, raws[j]); r == "" {
					mu.Lock()
					accepted[j]++
					mu.Unlock()
				} else if r != AttestDuplicate {
					t.Errorf("attestation %d: %q", j, r)
				}
			}
		})
	}
	wg.Wait()
	for i := range raws {
		if accepted[i] != 1 {
			t.Errorf("attestation %d accepted %d times", i, accepted[i])
		}
	}
}

// The key cache stays within its bound and never changes a verdict.
func TestAttestValidatorKeyCache(t *testing.T) {
	const checkers = 40
	v := newTestAttestValidator(t, mockClockAt(attestNow), allEligible{}, func(c *AttestConfig) { c.KeyCache = 8 })
	_, idC := testKey(t, 999)
	for round := range 3 {
		for i := range checkers {
			key, id := testKey(t, int64(1000+i))
			good := sealAttest(t, testAttestation(id, idC, attestNow, byte(round)), key)
			if _, r := v.Validate(id, good); r != "" {
				t.Fatalf("round %d checker %d: %q", round, i, r)
			}
			forged := reseal(t, good, mustMarshal(t, failing(testAttestation(id, idC, attestNow, byte(round+100)))), nil)
			if _, r := v.Validate(id, forged); r != AttestBadSignature {
				t.Fatalf("round %d checker %d, forged: %q", round, i, r)
			}
		}
	}
	if n := v.keys.Len(); n > 8 {
		t.Errorf("%d keys cached, limit 8", n)
	}
}

type allEligible struct{}

func (allEligible) Eligible(peer.ID, uint64) bool { return true }

func TestNewAttestValidatorConfig(t *testing.T) {
	for name, cfg := range map[string]AttestConfig{
		"no schedule":    {Eligibility: allEligible{}},
		"no eligibility": {Schedule: attestSchedule},
	} {
		if _, err := NewAttestValidator(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	v, err := NewAttestValidator(AttestConfig{Schedule: attestSchedule, Eligibility: allEligible{}})
	if err != nil {
		t.Fatal(err)
	}
	if c := v.cfg; c.Grace != 30*time.Second || c.Late != DefaultAttestLate || c.MaxSkew != DefaultAttestMaxSkew ||
		c.MaxPerChecker != DefaultAttestMaxPerChecker || c.KeyCache != DefaultAttestKeyCache || c.Clock == nil || c.Metrics == nil {
		t.Errorf("defaults: %+v", c)
	}
}

// attestInbox collects what a node's onValid receives.
type attestInbox struct {
	mu   sync.Mutex
	got  map[[32]byte]int // sha256 of the envelope -> deliveries
	note chan struct{}
}

func newAttestInbox() *attestInbox {
	return &attestInbox{got: map[[32]byte]int{}, note: make(chan struct{}, 1)}
}

func (b *attestInbox) deliver(_ *pb.Attestation, raw []byte) {
	b.mu.Lock()
	b.got[sha256.Sum256(raw)]++
	b.mu.Unlock()
	select {
	case b.note <- struct{}{}:
	default:
	}
}

func (b *attestInbox) snapshot() map[[32]byte]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.got)
}

// waitFor polls cond until it holds or ctx ends (real time: the network runs on sockets).
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// attestAttacker runs modified software: its own gossipsub with no validator, so it publishes
// whatever it likes on the attestation topic.
type attestAttacker struct {
	key   crypto.PrivKey
	id    peer.ID
	h     host.Host
	topic *pubsub.Topic
}

func newAttestAttacker(ctx context.Context, t *testing.T, seed int64, honest []*Net, psOpts ...pubsub.Option) *attestAttacker {
	t.Helper()
	key, id := testKey(t, seed)
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.ResourceManager(&network.NullResourceManager{}), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	psCtx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The network's gossip policy (unsigned messages, content IDs): anything else honest nodes drop
	// before their validators see it. It floods what it publishes to every peer in the topic: an
	// attacker that is not subscribed otherwise publishes to its fanout, which holds only the peers
	// whose gossipsub stream was up at its first publication (go-libp2p-pubsub v0.17 no longer
	// floods by default), and a node connected a moment later would never see its messages.
	opts := []pubsub.Option{pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(GossipMsgID), pubsub.WithMaxMessageSize(1 << 20), pubsub.WithFloodPublish(true)}
	ps, err := pubsub.NewGossipSub(psCtx, h, append(opts, psOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(AttestTopic)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range honest {
		if err := h.Connect(ctx, addrInfo(n)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(ctx, t, "the attacker to see the honest nodes in the topic", func() bool { return len(topic.ListPeers()) >= len(honest) })
	return &attestAttacker{key: key, id: id, h: h, topic: topic}
}

func (a *attestAttacker) publish(ctx context.Context, t *testing.T, data []byte) {
	t.Helper()
	if err := a.topic.Publish(ctx, data); err != nil {
		t.Fatal(err)
	}
}

// TestAttestGossip runs three honest nodes and attackers over loopback: valid attestations reach
// every node; forged, replayed, wrong-epoch, ineligible, oversize and malformed ones reach none and
// cost their senders score; a flood of invalid attestations leaves every honest one delivered and
// its sender scored below zero.
func TestAttestGossip(t *testing.T) {
	if testing.Short() {
		t.Skip("network test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	defer cancel()

	// Attackers' identities first: some of them are eligible checkers.
	const (
		seedForger, seedReplayer, seedWrongEpoch, seedIneligible, seedOversize, seedMalformed, seedFlooder, seedSigned = 301, 302, 303, 304, 305, 306, 307, 308
	)
	eligible := eligibleSet{}
	for _, s := range []int64{100, 101, seedForger, seedReplayer, seedWrongEpoch, seedOversize, seedMalformed, seedFlooder, seedSigned} {
		_, id := testKey(t, s)
		eligible[id] = true
	}
	// Node 2 listens but may not check.

	clk := mockClockAt(attestNow)
	var nets []*Net
	var inboxes []*attestInbox
	var validators []*AttestValidator
	for i := range 3 {
		cfg := testConfig(t, int64(100+i))
		cfg.ScoreInspect = 50 * time.Millisecond
		if i > 0 {
			cfg.Bootstrap = []peer.AddrInfo{addrInfo(nets[0])}
		}
		n := startNet(t, cfg)
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		for _, m := range nets {
			if err := n.Host().Connect(ctx, addrInfo(m)); err != nil {
				t.Fatal(err)
			}
		}
		v := newTestAttestValidator(t, clk, eligible, nil)
		box := newAttestInbox()
		if err := n.JoinAttestations(v, box.deliver); err != nil {
			t.Fatal(err)
		}
		nets, inboxes, validators = append(nets, n), append(inboxes, box), append(validators, v)
	}
	if err := nets[0].JoinAttestations(validators[0], nil); err == nil {
		t.Error("joined the attestation topic twice")
	}
	// Every node has the others in its mesh before anyone publishes: gossipsub (v0.17 floods
	// nothing by default) sends a node's own message to its mesh peers only, and when the mesh is
	// still empty the heartbeat that then grafts every topic peer gossips the message to none of
	// them, so in a network this small it would be lost. Being in the mesh a full second is all
	// that scores a silent peer above zero.
	for i, n := range nets {
		waitFor(ctx, t, fmt.Sprintf("node %d to see the others in the topic", i), func() bool { return len(n.ps.ListPeers(AttestTopic)) >= 2 })
		for j, m := range nets {
			if i != j {
				waitFor(ctx, t, fmt.Sprintf("node %d to have node %d in its mesh", i, j), func() bool {
					s, ok := n.PeerScore(m.ID())
					return ok && s > 0
				})
			}
		}
	}

	_, container := testKey(t, 500)
	expected := map[[32]byte]bool{}
	var published [][]byte // honest nodes' envelopes
	var expectedMu sync.Mutex
	nonce := byte(0)
	publishHonest := func(n *Net) {
		t.Helper()
		nonce++
		a := testAttestation(n.ID(), container, attestNow, nonce)
		raw, err := SealAttestation(a, n.Host().Peerstore().PrivKey(n.ID()))
		if err != nil {
			t.Fatal(err)
		}
		expectedMu.Lock()
		expected[sha256.Sum256(raw)] = true
		published = append(published, raw)
		expectedMu.Unlock()
		if err := n.PublishAttestation(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	allDelivered := func() bool {
		expectedMu.Lock()
		defer expectedMu.Unlock()
		for _, box := range inboxes {
			got := box.snapshot()
			for h := range expected {
				if got[h] == 0 {
					return false
				}
			}
		}
		return true
	}
	rejectedAt := func(i int, r AttestReason) float64 {
		return counterValue(t, validators[i].Metrics().Rejected.WithLabelValues(string(r)))
	}
	waitRejected := func(r AttestReason, n float64) {
		t.Helper()
		waitFor(ctx, t, fmt.Sprintf("every node to count %v %q", n, r), func() bool {
			for i := range nets {
				if rejectedAt(i, r) < n {
					return false
				}
			}
			return true
		})
	}

	// Honest attestations reach every node, the publisher's own included.
	publishHonest(nets[0])
	publishHonest(nets[1])
	waitFor(ctx, t, "honest attestations", allDelivered)

	// A node that may not check cannot publish: its own validator refuses.
	var verr pubsub.ValidationError
	if err := nets[2].PublishAttestation(ctx, testAttestation(nets[2].ID(), container, attestNow, 1)); !errors.As(err, &verr) {
		t.Errorf("an ineligible node's publication: %v, want a validation error", err)
	}
	if err := nets[0].PublishAttestation(ctx, testAttestation(nets[1].ID(), container, attestNow, 1)); err == nil {
		t.Error("a node published an attestation in another's name")
	}

	// One attacker per kind of bad attestation, each sending one.
	forger := newAttestAttacker(ctx, t, seedForger, nets)
	good := sealAttest(t, testAttestation(forger.id, container, attestNow, 1), forger.key)
	forger.publish(ctx, t, reseal(t, good, mustMarshal(t, failing(testAttestation(forger.id, container, attestNow, 1))), nil))
	waitRejected(AttestBadSignature, 1)

	replayer := newAttestAttacker(ctx, t, seedReplayer, nets)
	valid := sealAttest(t, testAttestation(replayer.id, container, attestNow, 1), replayer.key)
	expectedMu.Lock()
	expected[sha256.Sum256(valid)] = true
	expectedMu.Unlock()
	replayer.publish(ctx, t, valid)
	waitFor(ctx, t, "the replayer's valid attestation", allDelivered)
	replayer.publish(ctx, t, valid) // the same message again: gossip's seen cache drops it
	// A second attestation for the same check (the replayer equivocates): the validator remembers
	// the check and ignores it.
	twice := testAttestation(replayer.id, container, attestNow, 1)
	twice.M.FpsMilli++
	replayer.publish(ctx, t, sealAttest(t, twice, replayer.key))
	waitRejected(AttestDuplicate, 1)

	wrongEpoch := newAttestAttacker(ctx, t, seedWrongEpoch, nets)
	wrongEpoch.publish(ctx, t, sealAttest(t, testAttestation(wrongEpoch.id, container, attestSchedule.Start(attestCur-3), 1), wrongEpoch.key))
	waitRejected(AttestWrongEpoch, 1)

	ineligible := newAttestAttacker(ctx, t, seedIneligible, nets)
	ineligible.publish(ctx, t, sealAttest(t, testAttestation(ineligible.id, container, attestNow, 1), ineligible.key))
	waitRejected(AttestIneligible, 1)

	oversize := newAttestAttacker(ctx, t, seedOversize, nets)
	big := testAttestation(oversize.id, container, attestNow, 1)
	big.M.GpuModel = string(make([]byte, 4*MaxAttestationSize))
	oversize.publish(ctx, t, sealAttest(t, big, oversize.key))
	waitRejected(AttestOversize, 1)

	malformed := newAttestAttacker(ctx, t, seedMalformed, nets)
	malformed.publish(ctx, t, []byte("\x0a\x05not an attestation"))
	malformed.publish(ctx, t, rewrap(valid)) // the replayer's valid envelope in new bytes: not canonical
	waitRejected(AttestMalformed, 2)

	// Gossip signed by its publisher (libp2p's default policy) breaks the network's: gossipsub
	// drops it before any validator, valid attestation or not, and scores its sender down.
	signed := newAttestAttacker(ctx, t, seedSigned, nets, pubsub.WithMessageSignaturePolicy(pubsub.StrictSign), pubsub.WithMessageAuthor(""))
	signed.publish(ctx, t, sealAttest(t, testAttestation(signed.id, container, attestNow, 1), signed.key))

	// The flood: a stream of invalid attestations (forgeries, other epochs, honest ones replayed in
	// new bytes, junk) while the honest nodes keep publishing. The flood starts with a replay so
	// that every node judges one before it graylists the flooder.
	flooder := newAttestAttacker(ctx, t, seedFlooder, nets)
	floodGood := sealAttest(t, testAttestation(flooder.id, container, attestNow, 1), flooder.key)
	expectedMu.Lock()
	honestRaw := slices.Clone(published)
	expectedMu.Unlock()
	r := rand.New(rand.NewSource(11))
	flood := make([][]byte, 400)
	for i := range flood {
		switch (i + 2) % 4 { // a replay first: every node sees it before it graylists the flooder
		case 0:
			flood[i] = reseal(t, floodGood, mustMarshal(t, failing(testAttestation(flooder.id, container, attestNow, byte(i)))), nil)
		case 1:
			flood[i] = sealAttest(t, testAttestation(flooder.id, container, attestSchedule.Start(attestCur-2), byte(i)), flooder.key)
		case 2:
			flood[i] = rewrap(honestRaw[r.Intn(len(honestRaw))])
		case 3:
			flood[i] = make([]byte, 16+r.Intn(200))
			r.Read(flood[i])
		}
	}
	// One message a millisecond: faster than that, a burst fills gossipsub's validation queue (32
	// messages, p2p.New keeps the default) before the first rejections graylist the flooder, and
	// gossipsub drops whatever arrives meanwhile, honest messages too (docs/CHECKERS.md).
	var wg sync.WaitGroup
	wg.Go(func() {
		pace := time.NewTicker(time.Millisecond)
		defer pace.Stop()
		for _, data := range flood {
			if err := flooder.topic.Publish(ctx, data); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-pace.C:
			case <-ctx.Done():
				return
			}
		}
	})
	for range 20 {
		publishHonest(nets[0])
		publishHonest(nets[1])
	}
	wg.Wait()
	waitFor(ctx, t, "every honest attestation at every node, after the flood", allDelivered)

	// Nothing but the honest attestations (and the replayer's one valid one) was delivered, each once.
	for i, box := range inboxes {
		for h, n := range box.snapshot() {
			if !expected[h] || n != 1 {
				t.Errorf("node %d: attestation %x delivered %d times (expected: %v)", i, h[:4], n, expected[h])
			}
		}
	}
	// Every sender of invalid attestations is scored below zero by every honest node; honest nodes
	// and the replayer (whose replay was only ignored) are not.
	for _, a := range []*attestAttacker{forger, wrongEpoch, ineligible, oversize, malformed, flooder, signed} {
		for i, n := range nets {
			waitFor(ctx, t, fmt.Sprintf("node %d to score attacker %s below zero", i, a.id), func() bool {
				s, ok := n.PeerScore(a.id)
				return ok && s < 0
			})
		}
	}
	for i, n := range nets {
		if rejectedAt(i, AttestMalformed) < 3 { // the replayer's, the malformed attacker's, the flood's
			t.Errorf("node %d rejected none of the flood's replays in new bytes", i)
		}
		waitFor(ctx, t, fmt.Sprintf("node %d to graylist the flooder", i), func() bool {
			s, ok := n.PeerScore(flooder.id)
			return ok && s < ScoreGraylistThreshold
		})
	}
	for i, n := range nets {
		fs, _ := n.PeerScore(flooder.id)
		fg, _ := n.PeerScore(forger.id)
		t.Logf("node %d scores the flooder %.0f, the forger %.0f; rejected %v; accepted %v", i, fs, fg,
			rejections(t, validators[i].Metrics().Rejected, "bad_signature", "author_mismatch", "wrong_epoch", "malformed", "duplicate", "ineligible", "oversize"),
			counterValue(t, validators[i].Metrics().Accepted))
	}
	for i, n := range nets {
		for j, m := range nets {
			if i != j {
				if s, ok := n.PeerScore(m.ID()); ok && s < 0 {
					t.Errorf("node %d scores honest node %d at %v", i, j, s)
				}
			}
		}
		if s, ok := n.PeerScore(replayer.id); ok && s < 0 {
			t.Errorf("node %d scores the replayer at %v for an ignored replay", i, s)
		}
	}
}

// Fuzz tests of the attestation decoder and validator; run one with
// `go test -run XXX -fuzz FuzzOpenAttestation ./p2p`.

func attestSeeds(tb testing.TB) [][]byte {
	keyA, idA := testKey(tb, 1)
	keyB, idB := testKey(tb, 2)
	_, idC := testKey(tb, 3)
	valid := sealAttest(tb, testAttestation(idA, idC, attestNow, 1), keyA)
	return [][]byte{
		valid,
		sealAttest(tb, failing(testAttestation(idB, idC, attestNow, 2)), keyB),
		sealAttest(tb, testAttestation(idA, idC, attestSchedule.Start(attestCur-2), 3), keyA), // wrong epoch
		sealAttest(tb, testAttestation(idB, idC, attestNow, 1), keyA),                         // signer mismatch
		sealAttest(tb, &pb.Attestation{Checker: []byte(idA)}, keyA),                           // malformed
		reseal(tb, valid, mustMarshal(tb, failing(testAttestation(idA, idC, attestNow, 1))), nil),
		sealHeartbeat(tb, testHeartbeat(idA, 1, attestNow), keyA),
		valid[:len(valid)/2],
		{},
	}
}

func FuzzOpenAttestation(f *testing.F) {
	for _, s := range attestSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, signer, err := OpenAttestation(data)
		want, wantSigner, ok := refOpenAttestation(data)
		if (err == nil) != ok {
			t.Fatalf("OpenAttestation error %v; record.ConsumeEnvelope and the same checks accept: %v", err, ok)
		}
		if err != nil {
			var r AttestReason
			if !errors.As(err, &r) || !errors.Is(err, ErrAttestation) || a != nil || signer != "" {
				t.Fatalf("error %v without a reason, or results with it", err)
			}
			return
		}
		if len(data) > MaxAttestationSize || signer != wantSigner || !proto.Equal(a, want) || peer.ID(a.Checker) != signer {
			t.Fatalf("accepted %d bytes: %v by %s; reference %v by %s", len(data), a, signer, want, wantSigner)
		}
	})
}

func FuzzValidateAttestation(f *testing.F) {
	_, idA := testKey(f, 1)
	for _, s := range attestSeeds(f) {
		f.Add(uint8(0), s)
		f.Add(uint8(1), s)
	}
	// One validator for the whole run: its duplicate memory carries over between inputs, as a
	// node's does. Checker A is eligible, B is not.
	v := newTestAttestValidator(f, mockClockAt(attestNow), eligibleSet{idA: true}, nil)
	known := map[AttestReason]bool{}
	for _, r := range AttestReasons {
		known[r] = true
	}
	f.Fuzz(func(t *testing.T, fromGossip uint8, data []byte) {
		from := peer.ID("")
		if fromGossip%2 == 1 {
			from = idA
		}
		a, r := v.Validate(from, data)
		if r != "" {
			if !known[r] || a != nil {
				t.Fatalf("reason %q, attestation %v", r, a)
			}
			return
		}
		ref, signer, ok := refOpenAttestation(data)
		if !ok || !proto.Equal(a, ref) || signer != idA {
			t.Fatalf("accepted %v; the reference: %v by %s, %v", a, ref, signer, ok)
		}
		if a.Epoch != attestCur && a.Epoch != attestCur+1 {
			t.Fatalf("accepted an attestation of epoch %d at epoch %d", a.Epoch, attestCur)
		}
		if _, r := v.Validate(from, data); r != AttestDuplicate {
			t.Fatalf("accepted twice (%q)", r)
		}
	})
}

// BenchmarkValidateAttestation measures AttestValidator.Validate on valid attestations from 64
// checkers (the figure of docs/CHECKERS.md; run with -cpu 1), and the cost of the paths a flood
// takes.
func BenchmarkValidateAttestation(b *testing.B) {
	const checkers, perChecker = 64, 32
	_, container := testKey(b, 999)
	keys := make([]crypto.PrivKey, checkers)
	var valid [][]byte
	for i := range checkers {
		key, _ := testKey(b, int64(2000+i))
		keys[i] = key
	}
	for j := range perChecker {
		for i, key := range keys {
			id, _ := peer.IDFromPrivateKey(key)
			a := testAttestation(id, container, attestNow, byte(j))
			if (i+j)%5 == 0 {
				failing(a)
			}
			valid = append(valid, sealAttest(b, a, key))
		}
	}
	run := func(b *testing.B, pool [][]byte, want AttestReason, fresh bool, eligible CheckerEligibility) {
		v := newTestAttestValidator(b, mockClockAt(attestNow), eligible, nil)
		for _, data := range pool { // warm the key cache (and, for duplicates, the memory)
			v.Validate("", data)
		}
		if fresh {
			v.forget()
		}
		b.SetBytes(int64(len(pool[0])))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i == len(pool) {
				i = 0
				if fresh {
					b.StopTimer()
					v.forget()
					b.StartTimer()
				}
			}
			if _, r := v.Validate("", pool[i]); r != want {
				b.Fatalf("reason %q, want %q", r, want)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "validations/s")
	}
	b.Run("valid", func(b *testing.B) { run(b, valid, "", true, allEligible{}) })
	// The gossip validator's path: 64 validations at once per P (gossipsub validates each message
	// in a goroutine of its own), their signatures verified in batches by attestBatcher; then the
	// same with one attestation in 16 forged (its batch fails and is bisected).
	batched := func(b *testing.B, pool [][]byte) {
		v := newTestAttestValidator(b, mockClockAt(attestNow), allEligible{}, nil)
		for _, data := range pool {
			v.Validate("", data) // warm the key cache
		}
		var mu sync.Mutex
		next := 0
		take := func() []byte { // each attestation once per round; the memory is forgotten between
			mu.Lock()
			defer mu.Unlock()
			if next == len(pool) {
				next = 0
				v.forget()
			}
			next++
			return pool[next-1]
		}
		v.forget()
		b.ReportAllocs()
		b.SetParallelism(64)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, r := v.validateBatched("", take()); r != "" && r != AttestDuplicate && r != AttestBadSignature {
					b.Errorf("reason %q", r)
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "validations/s")
		b.ReportMetric(float64(v.batch.signatures.Load())/float64(max(v.batch.batches.Load(), 1)), "sigs/batch")
	}
	b.Run("valid-batched", func(b *testing.B) { batched(b, valid) })
	b.Run("mixed-batched", func(b *testing.B) {
		mixed := slices.Clone(valid)
		for i := 0; i < len(mixed); i += 16 {
			mixed[i] = slices.Clone(mixed[i])
			mixed[i][len(mixed[i])-64] ^= 1
		}
		batched(b, mixed)
	})
	b.Run("forged", func(b *testing.B) {
		forged := make([][]byte, len(valid))
		for i, data := range valid {
			forged[i] = slices.Clone(data)
			forged[i][len(data)-64] ^= 1 // the signature's R
		}
		run(b, forged, AttestBadSignature, true, allEligible{})
	})
	b.Run("duplicate", func(b *testing.B) { run(b, valid, AttestDuplicate, false, allEligible{}) })
	b.Run("ineligible", func(b *testing.B) {
		key, id := testKey(b, 1)
		run(b, [][]byte{sealAttest(b, testAttestation(id, container, attestNow, 1), key)}, AttestIneligible, false, eligibleSet{})
	})
	// The obvious implementation, for comparison: record.ConsumeEnvelope (crypto/ed25519, the
	// envelope decoded twice) and the same payload checks.
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, _, ok := refOpenAttestation(valid[i%len(valid)]); !ok {
				b.Fatal("rejected")
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "validations/s")
	})
}

// rewrap returns an envelope in new bytes with the same signed content: an unknown field (15,
// varint 0) after the envelope's own. Its gossip message ID differs; its attestation does not; the
// validators refuse it as not canonical.
func rewrap(data []byte) []byte {
	return append(slices.Clone(data), 0x78, 0x00)
}

// forget drops the validator's duplicate memory (benchmarks reuse their attestations).
func (v *AttestValidator) forget() {
	v.mu.Lock()
	v.epochs = map[uint64]*attestEpoch{}
	v.mu.Unlock()
}

// BenchmarkEd25519Verify compares the Ed25519 verifiers on one attestation-sized message: the
// standard library's, libp2p's (the same, behind an interface), curve25519-voi's, and voi's with
// an expanded (precomputed) public key, which the validator uses.
func BenchmarkEd25519Verify(b *testing.B) {
	key, _ := testKey(b, 1)
	msg := make([]byte, 420)
	sig, err := key.Sign(msg)
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := key.GetPublic().Raw()
	x, _ := voi.NewExpandedPublicKey(raw)
	for _, v := range []struct {
		name   string
		verify func() bool
	}{
		{"stdlib", func() bool { return stded25519.Verify(raw, msg, sig) }},
		{"libp2p", func() bool { ok, _ := key.GetPublic().Verify(msg, sig); return ok }},
		{"voi", func() bool { return voi.VerifyWithOptions(raw, msg, sig, verifyStdLib) }},
		{"voi-expanded", func() bool { return voi.VerifyExpandedWithOptions(x, msg, sig, verifyStdLib) }},
	} {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				if !v.verify() {
					b.Fatal("rejected")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
		})
	}
}
