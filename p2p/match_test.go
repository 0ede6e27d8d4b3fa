package p2p

import (
	"bytes"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

func mustSeal(tb testing.TB, kind Kind, msg proto.Message, key crypto.PrivKey) []byte {
	tb.Helper()
	b, err := Seal(kind, msg, key)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func testSessionTicket(indexer, consumer, container []byte) *pb.SessionTicket {
	return &pb.SessionTicket{SessionId: make([]byte, 16), Indexer: indexer, Consumer: consumer, Container: container,
		App: "demo", PriceMicros: 250_000, Units: 1}
}

func TestOpenSessionTicket(t *testing.T) {
	ixKey, ix := testKey(t, 1)
	otherKey, other := testKey(t, 2)
	_, cons := testKey(t, 3)
	_, cont := testKey(t, 4)
	good := testSessionTicket([]byte(ix), []byte(cons), []byte(cont))
	if tk, signer, err := OpenSessionTicket(mustSeal(t, KindSessionTicket, good, ixKey)); err != nil || signer != ix || tk.App != "demo" {
		t.Fatalf("valid ticket: %v, %s, %v", tk, signer, err)
	}
	noID := testSessionTicket([]byte(ix), []byte(cons), []byte(cont))
	noID.SessionId = nil
	cases := map[string][]byte{
		"signed by another peer than its indexer": mustSeal(t, KindSessionTicket, good, otherKey),
		"sealed as a receipt (another domain)":    mustSeal(t, KindUsageReceipt, good, ixKey),
		"no session ID":                           mustSeal(t, KindSessionTicket, noID, ixKey),
		"not an envelope":                         []byte("ticket"),
	}
	_ = other
	for name, raw := range cases {
		if _, _, err := OpenSessionTicket(raw); !errors.Is(err, ErrTicket) {
			t.Errorf("%s: err %v, want ErrTicket", name, err)
		}
	}
}

func TestOpenCosignedReceipt(t *testing.T) {
	contKey, cont := testKey(t, 1)
	consKey, cons := testKey(t, 2)
	otherKey, _ := testKey(t, 3)
	r := &pb.UsageReceipt{SessionId: make([]byte, 16), Container: []byte(cont), Consumer: []byte(cons), Seq: 1, Minutes: 1, PriceMicros: 15, AmountMicros: 1}
	receipt := mustSeal(t, KindUsageReceipt, r, contKey)
	ack := mustSeal(t, KindReceiptAck, &pb.ReceiptAck{Receipt: receipt}, consKey)
	got, err := OpenCosignedReceipt(ack)
	if err != nil || got.Seq != 1 {
		t.Fatalf("valid co-signed receipt: %v, %v", got, err)
	}
	cases := map[string][]byte{
		"countersigned by another peer":      mustSeal(t, KindReceiptAck, &pb.ReceiptAck{Receipt: receipt}, otherKey),
		"receipt signed by another peer":     mustSeal(t, KindReceiptAck, &pb.ReceiptAck{Receipt: mustSeal(t, KindUsageReceipt, r, otherKey)}, consKey),
		"receipt not countersigned":          receipt,
		"countersignature over nothing":      mustSeal(t, KindReceiptAck, &pb.ReceiptAck{}, consKey),
		"receipt sealed in the wrong domain": mustSeal(t, KindReceiptAck, &pb.ReceiptAck{Receipt: mustSeal(t, KindHeartbeat, r, contKey)}, consKey),
	}
	for name, raw := range cases {
		if _, err := OpenCosignedReceipt(raw); !errors.Is(err, ErrReceipt) {
			t.Errorf("%s: err %v, want ErrReceipt", name, err)
		}
	}
}

func FuzzOpenSessionTicket(f *testing.F) {
	key, id := testKey(f, 1)
	_, cons := testKey(f, 2)
	valid := mustSeal(f, KindSessionTicket, testSessionTicket([]byte(id), []byte(cons), []byte(cons)), key)
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, signer, err := OpenSessionTicket(data)
		if err != nil {
			if !errors.Is(err, ErrTicket) || tk != nil || signer != "" {
				t.Fatalf("error %v with results %v %q", err, tk, signer)
			}
			return
		}
		if string(tk.Indexer) != string(signer) || len(tk.SessionId) != 16 {
			t.Fatalf("accepted ticket %v signed by %s", tk, signer)
		}
	})
}

func FuzzOpenCosignedReceipt(f *testing.F) {
	contKey, cont := testKey(f, 1)
	consKey, cons := testKey(f, 2)
	receipt := mustSeal(f, KindUsageReceipt, &pb.UsageReceipt{Container: []byte(cont), Consumer: []byte(cons), Seq: 1}, contKey)
	f.Add(mustSeal(f, KindReceiptAck, &pb.ReceiptAck{Receipt: receipt}, consKey))
	f.Add(receipt)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := OpenCosignedReceipt(data)
		if err != nil {
			if !errors.Is(err, ErrReceipt) || r != nil {
				t.Fatalf("error %v with a receipt %v", err, r)
			}
			return
		}
		if len(r.Container) == 0 || len(r.Consumer) == 0 {
			t.Fatalf("accepted receipt without parties: %v", r)
		}
	})
}

func FuzzSessionMsg(f *testing.F) {
	f.Add([]byte{0x02, 0x18, 0x01})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &pb.SessionMsg{}
		err := ReadMsg(bytes.NewReader(data), m, MaxSessionMsgSize)
		if err == nil && proto.Size(m) > MaxSessionMsgSize {
			t.Fatalf("decoded a %d-byte message over the limit", proto.Size(m))
		}
	})
}

func FuzzRenderSignal(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteMsg(&buf, &pb.RenderSignal{Offer: &pb.RenderOffer{Sdp: "v=0\r\n", Trickle: true, Width: 1280, Height: 720}})
	f.Add(buf.Bytes())
	buf.Reset()
	_ = WriteMsg(&buf, &pb.RenderSignal{Candidate: &pb.IceCandidate{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", SdpMid: "0"}})
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &pb.RenderSignal{}
		err := ReadMsg(bytes.NewReader(data), m, MaxRenderSignalSize)
		if err == nil && proto.Size(m) > MaxRenderSignalSize {
			t.Fatalf("decoded a %d-byte message over the limit", proto.Size(m))
		}
	})
}
