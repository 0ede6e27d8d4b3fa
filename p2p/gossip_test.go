package p2p

import (
	"strings"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

const testRegion = "eu-west"

// testHeartbeat is a realistic heartbeat of id: a busy container with one GPU.
func testHeartbeat(id peer.ID, seq uint64, sent time.Time) *pb.Heartbeat {
	return &pb.Heartbeat{
		PeerId:       []byte(id),
		Seq:          seq,
		SentUnixMs:   sent.UnixMilli(),
		Region:       testRegion,
		State:        pb.ContainerState_CONTAINER_STATE_BUSY,
		LoadPermille: 730,
		Gpus: []*pb.GPUTelemetry{{
			UtilizationPct: 87, MemoryUtilizationPct: 41, MemoryUsedBytes: 33 << 30, TemperatureC: 71, PowerMw: 512_000,
		}},
		RecordSeq: 4,
	}
}

func sealHeartbeat(tb testing.TB, hb *pb.Heartbeat, key crypto.PrivKey) []byte {
	tb.Helper()
	data, err := Seal(KindHeartbeat, hb, key)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

var allHeartbeatReasons = []string{
	HBRejectOversize, HBRejectMalformed, HBRejectSignature, HBRejectAuthor, HBRejectRegion, HBIgnoreStale, HBIgnoreReplayed,
}

func TestHeartbeatValidatorCheck(t *testing.T) {
	keyA, idA := testKey(t, 1)
	keyB, idB := testKey(t, 2)
	const interval = 5 * time.Second
	window := 3*interval + 30*time.Second
	now := testEpoch
	with := func(f func(*pb.Heartbeat)) *pb.Heartbeat {
		hb := testHeartbeat(idA, 1, now)
		f(hb)
		return hb
	}
	hbPayload := func(hb *pb.Heartbeat) []byte {
		b, err := (&payload{kind: KindHeartbeat, msg: hb}).MarshalRecord()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	tests := []struct {
		name   string
		author peer.ID
		data   []byte
		reason string
		result pubsub.ValidationResult
	}{
		{"valid", idA, sealHeartbeat(t, testHeartbeat(idA, 1, now), keyA), "", pubsub.ValidationAccept},
		{"sent at the edge of the window", idA, sealHeartbeat(t, testHeartbeat(idA, 1, now.Add(-window)), keyA), "", pubsub.ValidationAccept},
		{"ahead at the edge of the window", idA, sealHeartbeat(t, testHeartbeat(idA, 1, now.Add(window)), keyA), "", pubsub.ValidationAccept},
		{"oversize bytes", idA, make([]byte, MaxHeartbeatSize+1), HBRejectOversize, pubsub.ValidationReject},
		{"oversize heartbeat", idA, sealHeartbeat(t, with(func(hb *pb.Heartbeat) {
			for range 200 {
				hb.Gpus = append(hb.Gpus, hb.Gpus[0])
			}
		}), keyA), HBRejectOversize, pubsub.ValidationReject},
		{"garbage", idA, []byte("not a heartbeat"), HBRejectMalformed, pubsub.ValidationReject},
		{"empty", idA, nil, HBRejectMalformed, pubsub.ValidationReject},
		{"payload names another peer", idA, sealHeartbeat(t, testHeartbeat(idB, 1, now), keyA), HBRejectMalformed, pubsub.ValidationReject},
		{"load above 1000", idA, sealHeartbeat(t, with(func(hb *pb.Heartbeat) { hb.LoadPermille = 1001 }), keyA), HBRejectMalformed, pubsub.ValidationReject},
		{"no region", idA, sealHeartbeat(t, with(func(hb *pb.Heartbeat) { hb.Region = "" }), keyA), HBRejectMalformed, pubsub.ValidationReject},
		{"payload altered after signing", idA,
			reseal(t, sealHeartbeat(t, testHeartbeat(idA, 1, now), keyA), hbPayload(with(func(hb *pb.Heartbeat) { hb.LoadPermille = 0 })), nil),
			HBRejectSignature, pubsub.ValidationReject},
		{"signed by B, envelope claims A's key", idA,
			reseal(t, sealHeartbeat(t, testHeartbeat(idA, 1, now), keyB), nil, keyA.GetPublic()),
			HBRejectSignature, pubsub.ValidationReject},
		{"container record on the heartbeat topic", idA, sealRecord(t, testRecord(idA, 1, now, time.Hour), keyA), HBRejectSignature, pubsub.ValidationReject},
		{"signed by A, published by B", idB, sealHeartbeat(t, testHeartbeat(idA, 1, now), keyA), HBRejectAuthor, pubsub.ValidationReject},
		{"no gossip author (the network's policy)", "", sealHeartbeat(t, testHeartbeat(idA, 1, now), keyA), "", pubsub.ValidationAccept},
		{"re-encoded: an unknown field", idA, append(sealHeartbeat(t, testHeartbeat(idA, 1, now), keyA), 0x78, 0x00), HBRejectMalformed, pubsub.ValidationReject},
		{"re-encoded: a field twice", idA, func() []byte {
			b := sealHeartbeat(t, testHeartbeat(idA, 1, now), keyA)
			return append(b, b[:2+int(b[1])]...) // the public key field again
		}(), HBRejectMalformed, pubsub.ValidationReject},
		{"wrong region", idA, sealHeartbeat(t, with(func(hb *pb.Heartbeat) { hb.Region = "us-east" }), keyA), HBRejectRegion, pubsub.ValidationReject},
		{"sent too long ago", idA, sealHeartbeat(t, testHeartbeat(idA, 1, now.Add(-window-time.Millisecond)), keyA), HBIgnoreStale, pubsub.ValidationIgnore},
		{"sent too far ahead", idA, sealHeartbeat(t, testHeartbeat(idA, 1, now.Add(window+time.Millisecond)), keyA), HBIgnoreStale, pubsub.ValidationIgnore},
	}
	covered := map[string]bool{HBIgnoreReplayed: true} // TestHeartbeatValidatorReplay
	for _, tt := range tests {
		covered[tt.reason] = true
	}
	for _, r := range allHeartbeatReasons {
		if !covered[r] {
			t.Errorf("no case has reason %q", r)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newHeartbeatValidator(newMockClock(), interval, NewMetrics(nil))
			hb, reason := v.check(testRegion, tt.author, tt.data)
			if reason != tt.reason {
				t.Fatalf("check: reason %q, want %q", reason, tt.reason)
			}
			if (hb != nil) != (reason == "") {
				t.Fatalf("check returned heartbeat %v with reason %q", hb, reason)
			}

			metrics := NewMetrics(nil)
			v = newHeartbeatValidator(newMockClock(), interval, metrics)
			msg := gossipMessage(tt.author, tt.data)
			if got := v.validate(testRegion, msg); got != tt.result {
				t.Fatalf("validate = %v, want %v", got, tt.result)
			}
			rejected := rejections(t, metrics.HeartbeatRejected, allHeartbeatReasons...)
			delivered := counterValue(t, metrics.HeartbeatDelivered)
			if tt.reason == "" {
				if len(rejected) != 0 || delivered != 1 {
					t.Errorf("rejections %v, %v delivered; want none, 1", rejected, delivered)
				}
				got, ok := msg.ValidatorData.(*pb.Heartbeat)
				if !ok || peer.ID(got.PeerId) != idA || got.LoadPermille != 730 {
					t.Errorf("ValidatorData %v, want the decoded heartbeat", msg.ValidatorData)
				}
				return
			}
			if len(rejected) != 1 || rejected[tt.reason] != 1 || delivered != 0 {
				t.Errorf("rejections %v, %v delivered; want one %q, 0", rejected, delivered, tt.reason)
			}
			if msg.ValidatorData != nil {
				t.Errorf("ValidatorData %v set on a failed message", msg.ValidatorData)
			}
		})
	}
}

func TestHeartbeatValidatorReplay(t *testing.T) {
	keyA, idA := testKey(t, 1)
	keyB, idB := testKey(t, 2)
	clk := newMockClock()
	metrics := NewMetrics(nil)
	v := newHeartbeatValidator(clk, 5*time.Second, metrics)
	steps := []struct {
		key    crypto.PrivKey
		id     peer.ID
		seq    uint64
		reason string
	}{
		{keyA, idA, 5, ""},
		{keyA, idA, 5, HBIgnoreReplayed}, // unlike records, the same heartbeat twice is a replay
		{keyA, idA, 4, HBIgnoreReplayed},
		{keyB, idB, 1, ""}, // sequences are per peer
		{keyA, idA, 6, ""},
		{keyA, idA, 0, HBIgnoreReplayed},
	}
	for i, s := range steps {
		clk.Add(time.Second)
		msg := gossipMessage(s.id, sealHeartbeat(t, testHeartbeat(s.id, s.seq, clk.Now()), s.key))
		want := pubsub.ValidationAccept
		if s.reason != "" {
			want = pubsub.ValidationIgnore
		}
		if got := v.validate(testRegion, msg); got != want {
			t.Fatalf("step %d (seq %d): %v, want %v", i, s.seq, got, want)
		}
	}
	if got := counterValue(t, metrics.HeartbeatRejected.WithLabelValues(HBIgnoreReplayed)); got != 3 {
		t.Errorf("%v replays counted, want 3", got)
	}
	if got := counterValue(t, metrics.HeartbeatDelivered); got != 3 {
		t.Errorf("%v delivered, want 3", got)
	}

	// A heartbeat that fails before the replay check does not advance the peer's sequence.
	stale := testHeartbeat(idA, 100, clk.Now().Add(-time.Hour))
	if _, reason := v.check(testRegion, idA, sealHeartbeat(t, stale, keyA)); reason != HBIgnoreStale {
		t.Fatalf("stale: %q", reason)
	}
	if _, reason := v.check(testRegion, idA, sealHeartbeat(t, testHeartbeat(idA, 7, clk.Now()), keyA)); reason != "" {
		t.Fatalf("seq 7 after a stale seq 100: %q", reason)
	}
}

func TestHeartbeatTopic(t *testing.T) {
	if got := HeartbeatTopic(testRegion); got != "rendermesh/heartbeat/1/eu-west" || !strings.HasPrefix(got, heartbeatTopicPrefix) {
		t.Errorf("HeartbeatTopic = %q", got)
	}
}

func TestOpenHeartbeat(t *testing.T) {
	key, id := testKey(t, 1)
	hb, signer, err := OpenHeartbeat(sealHeartbeat(t, testHeartbeat(id, 9, testEpoch), key))
	if err != nil {
		t.Fatal(err)
	}
	if signer != id || hb.Seq != 9 || hb.Region != testRegion || len(hb.Gpus) != 1 || hb.Gpus[0].PowerMw != 512_000 {
		t.Errorf("OpenHeartbeat = %v, %s", hb, signer)
	}
}

// gossipMessage is a gossipsub message as the topic validator sees it.
func gossipMessage(from peer.ID, data []byte) *pubsub.Message {
	return &pubsub.Message{Message: &pubsubpb.Message{From: []byte(from), Data: data}}
}

// Gossip messages are identified by topic and content: the same envelope published twice, by
// anyone, is one message.
func TestGossipMsgID(t *testing.T) {
	topic, other := "rendermesh/attest/1", "rendermesh/indexer/1"
	msg := func(topic string, data []byte, from []byte) *pubsubpb.Message {
		return &pubsubpb.Message{Topic: &topic, Data: data, From: from, Seqno: []byte{1}}
	}
	a := GossipMsgID(msg(topic, []byte("envelope"), nil))
	if len(a) != 20 {
		t.Fatalf("ID of %d bytes, want 20", len(a))
	}
	if b := GossipMsgID(msg(topic, []byte("envelope"), []byte("someone"))); b != a {
		t.Error("the ID depends on the author")
	}
	for name, m := range map[string]*pubsubpb.Message{
		"other data":             msg(topic, []byte("envelopf"), nil),
		"other topic":            msg(other, []byte("envelope"), nil),
		"topic and data shifted": msg(topic+"e", []byte("nvelope"), nil),
	} {
		if GossipMsgID(m) == a {
			t.Errorf("%s: same ID", name)
		}
	}
}

// BenchmarkGossipMsgID: what identifying a received message costs (an attestation-sized one).
func BenchmarkGossipMsgID(b *testing.B) {
	topic := AttestTopic
	m := &pubsubpb.Message{Topic: &topic, Data: make([]byte, 420)}
	b.SetBytes(int64(len(m.Data)))
	for b.Loop() {
		_ = GossipMsgID(m)
	}
}
