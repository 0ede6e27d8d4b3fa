package node

import (
	"context"
	"fmt"
	"image"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/checker"
	"github.com/rendermesh/rendermesh/roles/consumer"
)

// Consumers that consent share their sessions' statistics with the containers' assigned checker,
// which catches, during ordinary sessions, a container streaming half the frame rate asked for and
// one that goes silent mid-session: cheats their registration checks (telemetry) could not tell
// from honest containers. One session per container, all at once; the checker refuses a sample
// sent twice and one that is not its own consumer's.
func TestSessionChecksCatchFrameRateCheat(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet of 6 nodes with render sessions")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cc := DefaultChecker()
	cc.Methods, cc.PerContainer, cc.Recheck = []string{MethodTelemetry}, 1, Duration(4*time.Second)
	fps := 30
	if raceEnabled {
		fps = 10 // what two cores under the race detector stream to four consumers for sure
	}
	d, err := StartDevnet(ctx, DevnetConfig{Nodes: 6, Epoch: 10 * time.Second, Committee: 6, Checkers: 1,
		Cheaters: 2, CheatKinds: []Cheat{CheatFrameRate, CheatStall}, Checker: &cc})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.WaitChecked(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitServing(ctx, false); err != nil {
		t.Fatal(err)
	}
	cheaters := d.Cheaters()
	if len(cheaters) != 2 {
		t.Fatalf("%d cheaters, want 2", len(cheaters))
	}
	var chk *Node
	for i, n := range d.Nodes {
		if d.isChecker(i) {
			chk = n
		}
	}
	// One consumer per container at once, in rounds, until every cheater and an honest container
	// have served one (a container may be between a reservation and a recheck when asked).
	conts := d.containerIDs()
	served := map[string]*ConnectResult{}
	allServed := func() bool {
		for id := range cheaters {
			if served[id] == nil {
				return false
			}
		}
		return len(served) > len(cheaters)
	}
	for round := 0; round < 6 && !allServed(); round++ {
		results := make([]*ConnectResult, len(conts)) // as many consumers as containers: each free one is matched
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				res, err := d.Light.Connect(ctx, &pb.MatchRequest{App: "demo"}, ConnectOptions{Network: d.Network(), Stakes: d.Stakes(),
					Hold: 12 * time.Second, ShareStats: true, StatsEvery: 6 * time.Second,
					Render: RenderOptions{Play: true, Width: 320, Height: 180, FPS: fps, Loopback: true}})
				if err != nil {
					t.Errorf("consumer %d: %v", i, err)
				}
				results[i] = res
			})
		}
		wg.Wait()
		for i, res := range results {
			if res == nil || res.Match == nil || !res.Match.Matched {
				if res != nil && res.Match != nil {
					t.Logf("round %d, consumer %d: not matched: %s (%s)", round, i, res.Match.Reason, res.Match.Detail)
				}
				continue
			}
			if served[res.Match.Container] == nil {
				served[res.Match.Container] = res
			}
			t.Logf("round %d, consumer %d: container %s (cheat %q), %d samples taken (err %v), render %.1f frames/s",
				round, i, peer.ID(res.Match.Container), cheaters[res.Match.Container], res.StatsShared, res.StatsErr, renderFPS(res))
		}
	}
	// Each cheater's failure reaches every node's ledger: a SESSION check by the consumer's
	// statistics. Half the frame rate fails frame_rate; a stream gone silent fails continuity
	// (or frame_rate, when its first window held too little silence to fail continuity).
	ref := d.Nodes[0]
	cheatersShared := 0
	for id, cheat := range cheaters {
		res, ok := served[id]
		if !ok {
			t.Fatalf("no consumer was matched with the %s cheater (%d of %d containers served)", cheat, len(served), len(conts))
		}
		if res.StatsShared == 0 {
			t.Fatalf("the %s cheater's consumer shared no sample: %v", cheat, res.StatsErr)
		}
		cheatersShared += res.StatsShared
		var failed *pb.Attestation
		for failed == nil {
			for _, e := range ref.Checks().Ledger.History(id) {
				if e.Msg.Kind == pb.CheckKind_CHECK_KIND_SESSION && e.Method == pb.CheckMethod_CHECK_METHOD_SESSION_STATS && e.Verdict == pb.Verdict_VERDICT_FAIL {
					failed = e.Msg
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("no session failure attested about the %s cheater", cheat)
			case <-time.After(200 * time.Millisecond):
			}
		}
		want := []checker.Check{checker.CheckFrameRate}
		if cheat == CheatStall {
			want = append(want, checker.CheckContinuity)
		}
		if !slices.ContainsFunc(want, func(c checker.Check) bool { return strings.HasPrefix(failed.Reason, string(c)) }) ||
			string(failed.Checker) != string(chk.Net().ID()) {
			t.Errorf("the %s cheater failed %q, attested by %s; want %v by the checker", cheat, failed.Reason, peer.ID(failed.Checker), want)
		}
		t.Logf("%s cheater: %s (%.1f frames/s measured)", cheat, failed.Reason, float64(failed.GetM().GetFpsMilli())/1000)
	}
	// Honest sessions were sampled too, and (only failures being attested) left no session
	// attestation, unless the machine could not stream what was asked.
	honestTaken := 0
	for id, res := range served {
		if _, cheat := cheaters[id]; cheat {
			continue
		}
		honestTaken += res.StatsShared
		for _, e := range ref.Checks().Ledger.History(id) {
			if e.Msg.Kind == pb.CheckKind_CHECK_KIND_SESSION {
				if raceEnabled {
					t.Logf("honest container %s failed a session check (a loaded machine): %s", peer.ID(id), e.Msg.Reason)
				} else {
					t.Errorf("honest container %s failed a session check: %s", peer.ID(id), e.Msg.Reason)
				}
			}
		}
	}
	if honestTaken == 0 {
		t.Error("no honest session's samples were taken")
	}
	if st := chk.Status().Checks; st.SessionSamples < honestTaken+cheatersShared {
		t.Errorf("the checker's status counts %d samples taken, the consumers %d", st.SessionSamples, honestTaken+cheatersShared)
	}

	// The checker refuses a sample sent again, and one its consumer did not send.
	var m *consumer.Match
	for id := range cheaters {
		m = served[id].Match
	}
	again := &pb.SessionStats{Ticket: m.TicketRaw, Seq: 1, WindowMs: 5000, FpsAsked: uint32(fps), Frames: 10, FpsMilli: 2000,
		Width: 320, Height: 180, SentUnixMs: time.Now().UnixMilli()}
	raw, err := d.Light.Net().SealSessionStats(again)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := d.Light.Net().SendSessionStats(ctx, chk.Net().ID(), raw)
	if err != nil || ack.Accepted || !strings.Contains(ack.Reason, "again") {
		t.Errorf("a sample number sent twice: %+v, %v", ack, err)
	}
	ack, err = ref.Net().SendSessionStats(ctx, chk.Net().ID(), raw) // forwarded by another peer
	if err != nil || ack.Accepted || !strings.Contains(ack.Reason, "did not send") {
		t.Errorf("a sample forwarded by another peer: %+v, %v", ack, err)
	}
	ack, err = chk.Net().SendSessionStats(ctx, chk.Net().ID(), raw) // the checker to itself: answered in process
	if err != nil || ack.Accepted || !strings.Contains(ack.Reason, "did not send") {
		t.Errorf("a sample the checker sent itself: %+v, %v", ack, err)
	}
	if _, err := ref.Net().SendSessionStats(ctx, d.Nodes[1].Net().ID(), raw); err == nil {
		t.Error("a node without the checker role took session statistics")
	}
}

func renderFPS(res *ConnectResult) float64 {
	if res.Render == nil {
		return 0
	}
	return res.Render.FPS
}

// The sampler counts frames, skipped frame numbers and the longest gap per window, and a new
// stream (numbers from 1 again) loses nothing.
func TestStatsSampler(t *testing.T) {
	img := image.NewYCbCr(image.Rect(0, 0, 320, 180), image.YCbCrSubsampleRatio420)
	s := &statsSampler{}
	if got := s.flush(time.Now(), 30, false); got != nil {
		t.Fatalf("a sample before the first frame: %v", got)
	}
	for _, n := range []uint32{1, 2, 3, 6, 7, 1, 2} { // 4 and 5 skipped, then a new stream
		s.frame(img, n, 5*time.Millisecond, true)
	}
	s.mu.Lock()
	s.start = s.start.Add(-2 * time.Second) // the window began two seconds ago
	s.mu.Unlock()
	got := s.flush(time.Now(), 30, true)
	if got == nil || got.Seq != 1 || got.Frames != 7 || got.FramesLost != 2 || got.Width != 320 || got.Height != 180 ||
		got.FpsAsked != 30 || !got.Relay || got.WindowMs < 2000 || got.LatencyUsP50 != 5000 {
		t.Fatalf("sample %v", got)
	}
	if got := s.flush(time.Now(), 30, false); got != nil {
		t.Fatalf("a window under a second was sampled: %v", got)
	}
	got.Ticket, got.SentUnixMs = []byte("not checked here"), 1
	if _, err := p2p.SealSessionStats(got, nil); err == nil {
		t.Error("sealed a sample without a valid ticket")
	}
}

// A checker takes each sample number of a session once and in order, across epochs too (a sample
// replayed in the next epoch must not count again), and bounds what it remembers.
func TestAdmitSample(t *testing.T) {
	c := &checkerSvc{}
	now := time.Unix(1_700_000_000, 0)
	if r := c.admitSample(4, "s1", 1, now); r != "" {
		t.Fatalf("first sample refused: %s", r)
	}
	if r := c.admitSample(5, "s1", 1, now.Add(time.Second)); !strings.Contains(r, "again") {
		t.Errorf("sample 1 replayed in the next epoch: %q", r)
	}
	if r := c.admitSample(5, "s1", 2, now.Add(2*time.Second)); r != "" {
		t.Errorf("sample 2 refused: %s", r)
	}
	for i := range maxStatsSessions - 1 {
		if r := c.admitSample(5, fmt.Sprint("other", i), 1, now); r != "" {
			t.Fatalf("session %d refused: %s", i, r)
		}
	}
	if r := c.admitSample(5, "one too many", 1, now.Add(time.Second)); !strings.Contains(r, "too many sessions") {
		t.Errorf("session %d: %q", maxStatsSessions+1, r)
	}
	// Once their samples are stale (a replay would be refused for its time), sessions are forgotten.
	if r := c.admitSample(5, "one too many", 1, now.Add(3*statsSkew)); r != "" {
		t.Errorf("after the old sessions went stale: %q", r)
	}
	for i := range maxSessionSamples {
		if r := c.admitSample(6, "long", uint32(i+1), now); r != "" {
			t.Fatalf("sample %d of a session refused: %s", i+1, r)
		}
	}
	if r := c.admitSample(6, "long", maxSessionSamples+1, now); !strings.Contains(r, "too many samples") {
		t.Errorf("sample %d of a session in one epoch: %q", maxSessionSamples+1, r)
	}
}

// A ticket vouches for its session only over the span it booked; after it, a sample must carry a
// usage receipt the container sealed lately (the session was renewed), so that an old ticket
// cannot be used to report a container for ever.
func TestSessionLive(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	retail := &pb.SessionTicket{StartUnixMs: t0.UnixMilli(), LeaseExpiresUnixMs: t0.Add(20 * time.Second).UnixMilli(), Units: 1}
	wholesale := &pb.SessionTicket{Mode: pb.ServiceMode_SERVICE_MODE_WHOLESALE, StartUnixMs: t0.Add(time.Hour).UnixMilli(),
		LeaseExpiresUnixMs: t0.Add(2 * time.Hour).UnixMilli(), Units: 4}
	receipt := func(at time.Time) *pb.UsageReceipt { return &pb.UsageReceipt{IssuedUnixMs: at.UnixMilli()} }
	for _, c := range []struct {
		name    string
		tk      *pb.SessionTicket
		receipt *pb.UsageReceipt
		now     time.Time
		want    string // a fragment of the refusal; "" when taken
	}{
		{"retail, mid-span", retail, nil, t0.Add(10 * time.Minute), ""},
		{"retail, the lease and the unit, within the skew", retail, nil, t0.Add(20*time.Second + 15*time.Minute + statsSkew), ""},
		{"retail, after the span, no receipt", retail, nil, t0.Add(16 * time.Minute), "no usage receipt"},
		{"retail, after the span, a recent receipt", retail, receipt(t0.Add(59 * time.Minute)), t0.Add(time.Hour), ""},
		{"retail, after the span, the oldest receipt taken", retail, receipt(t0.Add(time.Hour - maxReceiptAge)), t0.Add(time.Hour), ""},
		{"retail, after the span, an old receipt", retail, receipt(t0.Add(57 * time.Minute)), t0.Add(time.Hour), "issued 3m0s ago"},
		{"retail, a day later, the span's receipt", retail, receipt(t0.Add(14 * time.Minute)), t0.Add(24 * time.Hour), "issued"},
		{"retail, a receipt from the future", retail, receipt(t0.Add(time.Hour + time.Minute)), t0.Add(time.Hour), "issued"},
		{"wholesale, before its start", wholesale, nil, t0, "not yet"},
		{"wholesale, just before its start", wholesale, nil, t0.Add(time.Hour - statsSkew), ""},
		{"wholesale, last unit", wholesale, nil, t0.Add(time.Hour + 59*time.Minute), ""},
		{"wholesale, after its units", wholesale, nil, t0.Add(2*time.Hour + time.Minute), "no usage receipt"},
	} {
		got := sessionLive(c.tk, c.receipt, c.now)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
