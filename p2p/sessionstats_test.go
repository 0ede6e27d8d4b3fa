package p2p

import (
	"bytes"
	"errors"
	"testing"

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

func TestSessionStatsRoundTrip(t *testing.T) {
	consKey, cons := testKey(t, 2)
	s := testSessionStats(t)
	raw, err := SealSessionStats(s, consKey)
	if err != nil {
		t.Fatal(err)
	}
	got, tk, signer, err := OpenSessionStats(raw)
	if err != nil {
		t.Fatal(err)
	}
	if signer != cons || string(tk.Consumer) != string(cons) || !proto.Equal(got, s) {
		t.Fatalf("opened %v (ticket %v) signed by %s", got, tk, signer)
	}
}

// Samples that are forged, signed by another peer than the ticket's consumer, carry a forged
// ticket, are oversize or say impossible things are refused, by the sealer as by the opener.
func TestOpenSessionStatsRejects(t *testing.T) {
	consKey, _ := testKey(t, 2)
	otherKey, _ := testKey(t, 4)
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
		if s, tk, signer, err := OpenSessionStats(raw); !errors.Is(err, ErrBadSessionStats) || s != nil || tk != nil || signer != "" {
			t.Errorf("%s: err %v, want ErrBadSessionStats and no results", name, err)
		}
	}
}

func FuzzOpenSessionStats(f *testing.F) {
	consKey, _ := testKey(f, 2)
	valid, err := SealSessionStats(testSessionStats(f), consKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, tk, signer, err := OpenSessionStats(data)
		if err != nil {
			if !errors.Is(err, ErrBadSessionStats) || s != nil || tk != nil || signer != "" {
				t.Fatalf("error %v with results", err)
			}
			return
		}
		if string(tk.Consumer) != string(signer) || s.Seq == 0 || s.WindowMs < MinSessionStatsWindowMs ||
			s.LongestGapMs > s.WindowMs || s.FpsAsked == 0 || len(data) > MaxSessionStatsSize {
			t.Fatalf("accepted sample %v of ticket %v signed by %s", s, tk, signer)
		}
	})
}
