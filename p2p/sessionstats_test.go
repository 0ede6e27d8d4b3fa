package p2p

import (
	"bytes"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// testSessionStats is a valid sample of a 30 frames/s session, with its ticket sealed by the
// indexer of seed 1 for the consumer of seed 2.
func testSessionStats(tb testing.TB) *pb.SessionStats {
	ixKey, ix := testKey(tb, 1)
	_, cons := testKey(tb, 2)
	_, cont := testKey(tb, 3)
	tk := mustSeal(tb, KindSessionTicket, testSessionTicket([]byte(ix), []byte(cons), []byte(cont)), ixKey)
	return &pb.SessionStats{Ticket: tk, Seq: 1, WindowMs: 10_000, FpsAsked: 30, Frames: 299, FpsMilli: 29_900,
		Width: 1280, Height: 720, LatencyUsP50: 12_000, LatencyUsP99: 30_000, LongestGapMs: 70, SentUnixMs: 1_700_000_000_000}
}

// testReceipt is a usage receipt of testSessionStats' session, sealed by key (the container's is
// seed 3's).
func testReceipt(tb testing.TB, key crypto.PrivKey, mutate func(*pb.UsageReceipt)) []byte {
	_, cons := testKey(tb, 2)
	_, cont := testKey(tb, 3)
	r := &pb.UsageReceipt{SessionId: make([]byte, 16), Container: []byte(cont), Consumer: []byte(cons), Seq: 3, Minutes: 3,
		PriceMicros: 250_000, AmountMicros: 50_000, IssuedUnixMs: 1_700_000_000_000}
	if mutate != nil {
		mutate(r)
	}
	return mustSeal(tb, KindUsageReceipt, r, key)
}

func TestSessionStatsRoundTrip(t *testing.T) {
	consKey, cons := testKey(t, 2)
	contKey, _ := testKey(t, 3)
	for _, withReceipt := range []bool{false, true} {
		s := testSessionStats(t)
		if withReceipt {
			s.Receipt = testReceipt(t, contKey, nil)
		}
		raw, err := SealSessionStats(s, consKey)
		if err != nil {
			t.Fatal(err)
		}
		o, err := OpenSessionStats(raw)
		if err != nil {
			t.Fatal(err)
		}
		if o.Consumer != cons || string(o.Ticket.Consumer) != string(cons) || !proto.Equal(o.Sample, s) {
			t.Fatalf("opened %v (ticket %v) signed by %s", o.Sample, o.Ticket, o.Consumer)
		}
		if (o.Receipt != nil) != withReceipt || (withReceipt && o.Receipt.Seq != 3) {
			t.Fatalf("receipt %v, want one: %v", o.Receipt, withReceipt)
		}
	}
}

// Samples that are forged, signed by another peer than the ticket's consumer, carry a forged
// ticket, are oversize or say impossible things are refused, by the sealer as by the opener.
func TestOpenSessionStatsRejects(t *testing.T) {
	consKey, _ := testKey(t, 2)
	contKey, _ := testKey(t, 3)
	otherKey, other := testKey(t, 4)
	valid, err := SealSessionStats(testSessionStats(t), consKey)
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Clone(valid)
	forged[len(forged)-5] ^= 1 // inside the signature
	cases := map[string][]byte{
		"forged signature":         forged,
		"signed by another peer":   mustSeal(t, KindSessionStats, testSessionStats(t), otherKey),
		"sealed in another domain": mustSeal(t, KindTelemetry, testSessionStats(t), consKey),
		"oversize":                 append(bytes.Clone(valid), make([]byte, MaxSessionStatsSize)...),
		"not an envelope":          []byte("stats"),
		"truncated":                valid[:len(valid)/2],
	}
	bad := map[string]func(*pb.SessionStats){
		"sample number 0":          func(s *pb.SessionStats) { s.Seq = 0 },
		"window under a second":    func(s *pb.SessionStats) { s.WindowMs = 999 },
		"window over 15 minutes":   func(s *pb.SessionStats) { s.WindowMs = MaxSessionStatsWindowMs + 1 },
		"no frame rate asked":      func(s *pb.SessionStats) { s.FpsAsked = 0 },
		"more frames than can be":  func(s *pb.SessionStats) { s.Frames = 2402 },
		"frame rate beyond bounds": func(s *pb.SessionStats) { s.FpsMilli = MaxSessionStatsFPS*1000 + 1 },
		"huge picture":             func(s *pb.SessionStats) { s.Width = MaxSessionStatsSide + 1 },
		"p99 under p50":            func(s *pb.SessionStats) { s.LatencyUsP99 = s.LatencyUsP50 - 1 },
		"gap longer than window":   func(s *pb.SessionStats) { s.LongestGapMs = s.WindowMs + 1 },
		"no time":                  func(s *pb.SessionStats) { s.SentUnixMs = 0 },
		"ticket not signed by its indexer": func(s *pb.SessionStats) {
			_, ix := testKey(t, 1)
			_, cons := testKey(t, 2)
			_, cont := testKey(t, 3)
			s.Ticket = mustSeal(t, KindSessionTicket, testSessionTicket([]byte(ix), []byte(cons), []byte(cont)), otherKey)
		},
		"ticket of another consumer": func(s *pb.SessionStats) {
			ixKey, ix := testKey(t, 1)
			_, cont := testKey(t, 3)
			_, other := testKey(t, 4)
			s.Ticket = mustSeal(t, KindSessionTicket, testSessionTicket([]byte(ix), []byte(other), []byte(cont)), ixKey)
		},
		"receipt not signed by its container": func(s *pb.SessionStats) { s.Receipt = testReceipt(t, otherKey, nil) },
		"receipt of another session": func(s *pb.SessionStats) {
			s.Receipt = testReceipt(t, contKey, func(r *pb.UsageReceipt) { r.SessionId[0] = 1 })
		},
		"receipt of another container": func(s *pb.SessionStats) {
			s.Receipt = testReceipt(t, otherKey, func(r *pb.UsageReceipt) { r.Container = []byte(other) })
		},
		"receipt of another consumer": func(s *pb.SessionStats) {
			s.Receipt = testReceipt(t, contKey, func(r *pb.UsageReceipt) { r.Consumer = []byte(other) })
		},
		"receipt without a time": func(s *pb.SessionStats) {
			s.Receipt = testReceipt(t, contKey, func(r *pb.UsageReceipt) { r.IssuedUnixMs = 0 })
		},
		"receipt that is no envelope": func(s *pb.SessionStats) { s.Receipt = []byte("receipt") },
	}
	for name, mutate := range bad {
		s := testSessionStats(t)
		mutate(s)
		if _, err := SealSessionStats(s, consKey); !errors.Is(err, ErrBadSessionStats) {
			t.Errorf("seal, %s: err %v, want ErrBadSessionStats", name, err)
		}
		cases[name] = mustSeal(t, KindSessionStats, s, consKey)
	}
	for name, raw := range cases {
		if o, err := OpenSessionStats(raw); !errors.Is(err, ErrBadSessionStats) || o != nil {
			t.Errorf("%s: err %v, want ErrBadSessionStats and no results", name, err)
		}
	}
}

func FuzzOpenSessionStats(f *testing.F) {
	consKey, _ := testKey(f, 2)
	contKey, _ := testKey(f, 3)
	valid, err := SealSessionStats(testSessionStats(f), consKey)
	if err != nil {
		f.Fatal(err)
	}
	withReceipt := testSessionStats(f)
	withReceipt.Receipt = testReceipt(f, contKey, nil)
	validReceipt, err := SealSessionStats(withReceipt, consKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(validReceipt)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := OpenSessionStats(data)
		if err != nil {
			if !errors.Is(err, ErrBadSessionStats) || o != nil {
				t.Fatalf("error %v with results", err)
			}
			return
		}
		s, tk, signer := o.Sample, o.Ticket, o.Consumer
		if r := o.Receipt; (r != nil) != (len(s.Receipt) > 0) || (r != nil && (!bytes.Equal(r.SessionId, tk.SessionId) ||
			!bytes.Equal(r.Container, tk.Container) || !bytes.Equal(r.Consumer, tk.Consumer))) {
			t.Fatalf("receipt %v accepted with ticket %v", r, tk)
		}
		if string(tk.Consumer) != string(signer) || s.Seq == 0 || s.WindowMs < MinSessionStatsWindowMs ||
			s.LongestGapMs > s.WindowMs || s.FpsAsked == 0 || len(data) > MaxSessionStatsSize {
			t.Fatalf("accepted sample %v of ticket %v signed by %s", s, tk, signer)
		}
	})
}
