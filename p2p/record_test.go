package p2p

import (
	"errors"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// testEpoch is where the tests' mock clocks start.
var testEpoch = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func newMockClock() *clock.Mock {
	clk := clock.NewMock()
	clk.Set(testEpoch)
	return clk
}

// testKey returns a deterministic Ed25519 key and its peer ID.
func testKey(tb testing.TB, seed int64) (crypto.PrivKey, peer.ID) {
	tb.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.New(rand.NewSource(seed)))
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return key, id
}

// testRecord is a realistic container record of id: one H100, a location, two apps, two addresses.
func testRecord(id peer.ID, seq uint64, issued time.Time, ttl time.Duration) *pb.ContainerRecord {
	return &pb.ContainerRecord{
		PeerId:        []byte(id),
		Seq:           seq,
		IssuedUnixMs:  issued.UnixMilli(),
		ExpiresUnixMs: issued.Add(ttl).UnixMilli(),
		Hardware: &pb.Hardware{
			Gpus: []*pb.GPU{{
				Model:       "H100",
				Name:        "NVIDIA H100 80GB HBM3",
				Uuid:        "GPU-5f2c1a9e-3b7d-4c1e-9a0f-6d8e2b4c7a11",
				MemoryBytes: 80 << 30,
			}},
			DriverVersion: "550.54.15",
			CpuCores:      16,
			MemoryBytes:   128 << 30,
		},
		Location: &pb.Location{
			Region:         "eu-west",
			Geohash:        "u33dc0",
			HasCoordinates: true,
			LatitudeE6:     52_520_008,
			LongitudeE6:    13_404_954,
		},
		Apps:             []string{"demo", "blender-cycles"},
		SessionFeeMicros: 1_500_000,
		Addrs: [][]byte{
			ma.StringCast("/ip4/203.0.113.7/tcp/4001").Bytes(),
			ma.StringCast("/ip4/203.0.113.7/udp/4001/quic-v1").Bytes(),
		},
		State:        pb.ContainerState_CONTAINER_STATE_STANDBY,
		AgentVersion: "rendermesh/0.1.0",
	}
}

func sealRecord(tb testing.TB, rec *pb.ContainerRecord, key crypto.PrivKey) []byte {
	tb.Helper()
	data, err := Seal(KindContainerRecord, rec, key)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// counterValue reads a counter's value, as prometheus/testutil.ToFloat64 does (testutil itself pulls
// in a module this repository does not require).
func counterValue(tb testing.TB, c prometheus.Counter) float64 {
	tb.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		tb.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// rejections returns the non-zero counts of a rejection counter vector by reason.
func rejections(tb testing.TB, vec *prometheus.CounterVec, reasons ...string) map[string]float64 {
	tb.Helper()
	out := map[string]float64{}
	for _, r := range reasons {
		if v := counterValue(tb, vec.WithLabelValues(r)); v != 0 {
			out[r] = v
		}
	}
	return out
}

var allRecordReasons = []string{
	ReasonOversize, ReasonBadKey, ReasonBadSignature, ReasonMalformed, ReasonPeerMismatch,
	ReasonReplayed, ReasonExpired, ReasonFromFuture, ReasonTTLTooLong,
}

// reseal replaces an envelope's payload (and optionally its public key) but keeps its signature: a
// forgery.
func reseal(tb testing.TB, data []byte, payload []byte, pub crypto.PubKey) []byte {
	tb.Helper()
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		tb.Fatal(err)
	}
	if payload != nil {
		env.RawPayload = payload
	}
	if pub != nil {
		env.PublicKey = pub
	}
	out, err := env.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestContainerRecordValidatorRejects(t *testing.T) {
	keyA, idA := testKey(t, 1)
	keyB, idB := testKey(t, 2)
	now := testEpoch
	valid := func(id peer.ID) *pb.ContainerRecord { return testRecord(id, 7, now, time.Hour) }
	with := func(f func(*pb.ContainerRecord)) *pb.ContainerRecord {
		rec := valid(idA)
		f(rec)
		return rec
	}
	marshal := func(rec *pb.ContainerRecord) []byte {
		b, err := (&payload{kind: KindContainerRecord, msg: rec}).MarshalRecord()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hb, err := Seal(KindHeartbeat, &pb.Heartbeat{PeerId: []byte(idA), Seq: 1, SentUnixMs: now.UnixMilli(), Region: "eu-west"}, keyA)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		key    string
		value  []byte
		reason string
	}{
		{"payload altered after sealing", ContainerRecordKey(idA),
			reseal(t, sealRecord(t, valid(idA), keyA), marshal(with(func(r *pb.ContainerRecord) { r.SessionFeeMicros = 1 })), nil),
			ReasonBadSignature},
		{"signed by B, envelope claims A's key", ContainerRecordKey(idA),
			reseal(t, sealRecord(t, valid(idA), keyB), nil, keyA.GetPublic()),
			ReasonBadSignature},
		{"envelope of another kind", ContainerRecordKey(idA), hb, ReasonBadSignature},
		{"key names A, signed by B", ContainerRecordKey(idA), sealRecord(t, valid(idB), keyB), ReasonPeerMismatch},
		{"payload names A, signed by B", ContainerRecordKey(idA), sealRecord(t, valid(idA), keyB), ReasonPeerMismatch},
		{"expired", ContainerRecordKey(idA), sealRecord(t, testRecord(idA, 7, now.Add(-2*time.Hour), time.Hour), keyA), ReasonExpired},
		{"expires now", ContainerRecordKey(idA), sealRecord(t, testRecord(idA, 7, now.Add(-time.Hour), time.Hour), keyA), ReasonExpired},
		{"issued in the future", ContainerRecordKey(idA), sealRecord(t, testRecord(idA, 7, now.Add(10*time.Minute), time.Hour), keyA), ReasonFromFuture},
		{"issued just past the allowed skew", ContainerRecordKey(idA), sealRecord(t, testRecord(idA, 7, now.Add(recordClockSkew+time.Millisecond), time.Hour), keyA), ReasonFromFuture},
		{"lifetime too long", ContainerRecordKey(idA), sealRecord(t, testRecord(idA, 7, now, MaxRecordTTL+time.Millisecond), keyA), ReasonTTLTooLong},
		{"oversize bytes", ContainerRecordKey(idA), make([]byte, MaxRecordSize+1), ReasonOversize},
		{"oversize record", ContainerRecordKey(idA),
			sealRecord(t, with(func(r *pb.ContainerRecord) { r.Apps = []string{strings.Repeat("a", MaxRecordSize)} }), keyA),
			ReasonOversize},
		{"key outside namespace", "/other/" + string(idA), sealRecord(t, valid(idA), keyA), ReasonBadKey},
		{"key without peer ID", "/" + ContainerRecordNamespace + "/not-a-peer", sealRecord(t, valid(idA), keyA), ReasonBadKey},
		{"empty key", "", sealRecord(t, valid(idA), keyA), ReasonBadKey},
		{"garbage", ContainerRecordKey(idA), []byte("definitely not an envelope"), ReasonMalformed},
		{"empty value", ContainerRecordKey(idA), nil, ReasonMalformed},
		{"truncated", ContainerRecordKey(idA), sealRecord(t, valid(idA), keyA)[:100], ReasonMalformed},
		{"payload peer ID not a peer ID", ContainerRecordKey(idA),
			sealRecord(t, with(func(r *pb.ContainerRecord) { r.PeerId = []byte("nope") }), keyA), ReasonMalformed},
		{"expiry before issue", ContainerRecordKey(idA),
			sealRecord(t, with(func(r *pb.ContainerRecord) { r.ExpiresUnixMs = r.IssuedUnixMs }), keyA), ReasonMalformed},
	}
	covered := map[string]bool{ReasonReplayed: true} // TestContainerRecordValidatorReplay
	for _, tt := range tests {
		covered[tt.reason] = true
	}
	for _, r := range allRecordReasons {
		if !covered[r] {
			t.Errorf("no case rejects a record as %q", r)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			metrics := NewMetrics(nil)
			v := NewContainerRecordValidator(newMockClock(), metrics)
			err := v.Validate(tt.key, tt.value)
			if err == nil {
				t.Fatal("Validate accepted the record")
			}
			if !errors.Is(err, ErrRecord) {
				t.Errorf("error %v does not wrap ErrRecord", err)
			}
			if got := RecordReason(err); got != tt.reason {
				t.Errorf("reason %q, want %q (error: %v)", got, tt.reason, err)
			}
			got := rejections(t, metrics.RecordRejected, allRecordReasons...)
			if len(got) != 1 || got[tt.reason] != 1 {
				t.Errorf("rejections %v, want one %q", got, tt.reason)
			}
			if n := counterValue(t, metrics.RecordAccepted); n != 0 {
				t.Errorf("%v records accepted", n)
			}
		})
	}
}

func TestContainerRecordValidatorAccepts(t *testing.T) {
	key, id := testKey(t, 1)
	now := testEpoch
	tests := []struct {
		name string
		rec  *pb.ContainerRecord
	}{
		{"fresh", testRecord(id, 1, now, time.Hour)},
		{"about to expire", testRecord(id, 1, now.Add(-time.Hour), time.Hour+time.Millisecond)},
		{"issued at the skew limit", testRecord(id, 1, now.Add(recordClockSkew), time.Hour)},
		{"maximal lifetime", testRecord(id, 1, now, MaxRecordTTL)},
		{"maximal lifetime from a clock ahead by the allowed skew", testRecord(id, 1, now.Add(recordClockSkew), MaxRecordTTL)},
		{"minimal record", &pb.ContainerRecord{PeerId: []byte(id), IssuedUnixMs: now.UnixMilli(), ExpiresUnixMs: now.Add(time.Minute).UnixMilli()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			metrics := NewMetrics(nil)
			v := NewContainerRecordValidator(newMockClock(), metrics)
			if err := v.Validate(ContainerRecordKey(id), sealRecord(t, tt.rec, key)); err != nil {
				t.Fatal(err)
			}
			if n := counterValue(t, metrics.RecordAccepted); n != 1 {
				t.Errorf("%v records accepted, want 1", n)
			}
			if got := rejections(t, metrics.RecordRejected, allRecordReasons...); len(got) != 0 {
				t.Errorf("rejections %v", got)
			}
		})
	}
}

// The reasons are distinct metric labels.
func TestRecordReasonsDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range allRecordReasons {
		if r == "" || seen[r] {
			t.Errorf("reason %q empty or repeated", r)
		}
		seen[r] = true
	}
	if RecordReason(errors.New("other")) != "" {
		t.Error("RecordReason of a foreign error is not empty")
	}
}

func TestContainerRecordValidatorExpiresOnClock(t *testing.T) {
	key, id := testKey(t, 1)
	clk := newMockClock()
	v := NewContainerRecordValidator(clk, nil)
	data := sealRecord(t, testRecord(id, 1, clk.Now(), time.Hour), key)
	clk.Add(time.Hour - time.Millisecond)
	if err := v.Validate(ContainerRecordKey(id), data); err != nil {
		t.Fatalf("1 ms before expiry: %v", err)
	}
	clk.Add(time.Millisecond)
	if err := v.Validate(ContainerRecordKey(id), data); RecordReason(err) != ReasonExpired {
		t.Fatalf("at expiry: %v, want %s", err, ReasonExpired)
	}
}

func TestContainerRecordValidatorReplay(t *testing.T) {
	keyA, idA := testKey(t, 1)
	keyB, idB := testKey(t, 2)
	metrics := NewMetrics(nil)
	v := NewContainerRecordValidator(newMockClock(), metrics)
	steps := []struct {
		key    crypto.PrivKey
		id     peer.ID
		seq    uint64
		reason string
	}{
		{keyA, idA, 5, ""},
		{keyA, idA, 3, ReasonReplayed},
		{keyA, idA, 5, ""}, // the same record again: a DHT peer re-validating or re-putting it
		{keyB, idB, 1, ""}, // sequences are per peer
		{keyA, idA, 6, ""},
		{keyA, idA, 5, ReasonReplayed},
		{keyA, idA, 0, ReasonReplayed},
	}
	for i, s := range steps {
		err := v.Validate(ContainerRecordKey(s.id), sealRecord(t, testRecord(s.id, s.seq, testEpoch, time.Hour), s.key))
		if got := RecordReason(err); got != s.reason {
			t.Fatalf("step %d (seq %d): reason %q, want %q (error: %v)", i, s.seq, got, s.reason, err)
		}
	}
	if got := counterValue(t, metrics.RecordRejected.WithLabelValues(ReasonReplayed)); got != 3 {
		t.Errorf("%v replays counted, want 3", got)
	}
	if got := counterValue(t, metrics.RecordAccepted); got != 4 {
		t.Errorf("%v records accepted, want 4", got)
	}
}

func TestContainerRecordValidatorSelect(t *testing.T) {
	keyA, idA := testKey(t, 1)
	keyB, _ := testKey(t, 2)
	key := ContainerRecordKey(idA)
	rec := func(seq uint64) []byte { return sealRecord(t, testRecord(idA, seq, testEpoch, time.Hour), keyA) }
	forged := sealRecord(t, testRecord(idA, 99, testEpoch, time.Hour), keyB)
	expired := sealRecord(t, testRecord(idA, 98, testEpoch.Add(-2*time.Hour), time.Hour), keyA)

	tests := []struct {
		name   string
		values [][]byte
		want   int // -1: an error
	}{
		{"one", [][]byte{rec(1)}, 0},
		{"highest seq wins", [][]byte{rec(3), rec(7), rec(5)}, 1},
		{"first of equals", [][]byte{rec(2), rec(4), rec(4)}, 1},
		{"invalid ones skipped", [][]byte{forged, rec(3), []byte("junk"), expired, rec(5), nil}, 4},
		{"seq zero", [][]byte{[]byte("junk"), rec(0)}, 1},
		{"none valid", [][]byte{forged, expired, []byte("junk")}, -1},
		{"empty", nil, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			metrics := NewMetrics(nil)
			v := NewContainerRecordValidator(newMockClock(), metrics)
			got, err := v.Select(key, tt.values)
			if tt.want < 0 {
				if err == nil || !errors.Is(err, ErrRecord) {
					t.Fatalf("Select = %d, %v; want an ErrRecord", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Select = %d, %v; want %d", got, err, tt.want)
			}
		})
	}

	// Select neither counts nor remembers: a later Validate of an older record still passes.
	metrics := NewMetrics(nil)
	v := NewContainerRecordValidator(newMockClock(), metrics)
	if _, err := v.Select(key, [][]byte{rec(9), []byte("junk")}); err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(key, rec(1)); err != nil {
		t.Errorf("Validate after Select: %v", err)
	}
	if got := rejections(t, metrics.RecordRejected, allRecordReasons...); len(got) != 0 {
		t.Errorf("Select counted rejections %v", got)
	}
}

func TestOpenContainerRecord(t *testing.T) {
	key, id := testKey(t, 1)
	want := testRecord(id, 3, testEpoch, time.Hour)
	got, signer, err := OpenContainerRecord(sealRecord(t, want, key))
	if err != nil {
		t.Fatal(err)
	}
	if signer != id {
		t.Errorf("signer %s, want %s", signer, id)
	}
	if got.Seq != 3 || got.Hardware.GetGpus()[0].GetModel() != "H100" || got.Location.GetGeohash() != "u33dc0" {
		t.Errorf("decoded %v", got)
	}
}

func BenchmarkValidateContainerRecord(b *testing.B) {
	key, id := testKey(b, 1)
	v := NewContainerRecordValidator(newMockClock(), NewMetrics(nil))
	k := ContainerRecordKey(id)
	data := sealRecord(b, testRecord(id, 1, testEpoch, time.Hour), key)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Validate(k, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealContainerRecord(b *testing.B) {
	key, id := testKey(b, 1)
	rec := testRecord(id, 1, testEpoch, time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Seal(KindContainerRecord, rec, key); err != nil {
			b.Fatal(err)
		}
	}
}
