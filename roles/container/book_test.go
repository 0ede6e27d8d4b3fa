package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// fakeNet records what the container publishes.
type fakeNet struct {
	mu      sync.Mutex
	records []*pb.ContainerRecord
	beats   chan *pb.Heartbeat
}

func newFakeNet() *fakeNet { return &fakeNet{beats: make(chan *pb.Heartbeat, 1<<14)} }

func (n *fakeNet) PutRecord(_ context.Context, rec *pb.ContainerRecord) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.records = append(n.records, rec)
	return nil
}

func (n *fakeNet) Provide(context.Context, string) error { return nil }

func (n *fakeNet) PublishHeartbeat(_ context.Context, hb *pb.Heartbeat) error {
	select {
	case n.beats <- hb:
	default:
	}
	return nil
}

func (n *fakeNet) lastRecord() *pb.ContainerRecord {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.records[len(n.records)-1]
}

// waitBeat waits for a heartbeat that satisfies ok. The container sends one after every change to
// its book; the timeout is only a failsafe.
func (n *fakeNet) waitBeat(t *testing.T, ok func(*pb.Heartbeat) bool) *pb.Heartbeat {
	t.Helper()
	failsafe := time.After(10 * time.Second)
	for {
		select {
		case hb := <-n.beats:
			if ok(hb) {
				return hb
			}
		case <-failsafe:
			t.Fatal("no matching heartbeat")
			return nil
		}
	}
}

// memStore is a Store in memory; failing makes every Put fail.
type memStore struct {
	mu      sync.Mutex
	m       map[string][]byte
	failing bool
}

func newMemStore() *memStore { return &memStore{m: map[string][]byte{}} }

func (s *memStore) Get(_ context.Context, k string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	return bytes.Clone(v), ok, nil
}

func (s *memStore) Put(_ context.Context, k string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing {
		return errors.New("disk full")
	}
	s.m[k] = bytes.Clone(v)
	return nil
}

func (s *memStore) fail(on bool) {
	s.mu.Lock()
	s.failing = on
	s.mu.Unlock()
}

var (
	t0         = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	selfID     = []byte("container-peer")
	consumerID = "consumer-peer"
	indexerA   = "indexer-a"
	indexerB   = "indexer-b"
)

const fee = 100_000

func testConfig(clk clock.Clock) Config {
	return Config{
		PeerID:    selfID,
		Probe:     NewSimulatedProbe(Profiles()[0], 1),
		Region:    "eu-west",
		Geohash:   "u33dc0",
		Apps:      []string{"demo", "blender"},
		Fee:       fee,
		AutoCheck: true,
		Clock:     clk,
	}
}

type rig struct {
	c     *Container
	clk   *clock.Mock
	net   *fakeNet
	store *memStore
}

// newRig starts a container in standby on a mock clock set to t0.
func newRig(t testing.TB) *rig {
	t.Helper()
	clk := clock.NewMock()
	clk.Set(t0)
	r := &rig{clk: clk, net: newFakeNet(), store: newMemStore()}
	r.start(t)
	return r
}

// start (re)starts the container on the rig's store, as a process restart does.
func (r *rig) start(t testing.TB) {
	t.Helper()
	c, err := New(testConfig(r.clk), r.net, r.store)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	r.c = c
}

func sid(b byte) []byte { return bytes.Repeat([]byte{b}, 16) }

func retail(id byte) *pb.ReserveRequest {
	return &pb.ReserveRequest{SessionId: sid(id), Consumer: []byte(consumerID), Epoch: 7, App: "demo",
		Mode: pb.ServiceMode_SERVICE_MODE_RETAIL, PriceMicros: fee, Units: 2, LeaseMs: 30_000}
}

func wholesale(id byte, start time.Time, units uint32) *pb.ReserveRequest {
	return &pb.ReserveRequest{SessionId: sid(id), Consumer: []byte(consumerID), Epoch: 7, App: "demo",
		Mode: pb.ServiceMode_SERVICE_MODE_WHOLESALE, PriceMicros: fee, Units: units,
		StartUnixMs: start.UnixMilli(), LeaseMs: 30_000}
}

// ticket is the ticket an honest indexer issues for req.
func ticket(req *pb.ReserveRequest, indexer string) *pb.SessionTicket {
	return &pb.SessionTicket{SessionId: req.SessionId, Consumer: req.Consumer, Container: selfID,
		Indexer: []byte(indexer), Epoch: req.Epoch, App: req.App, Mode: req.Mode, PriceMicros: req.PriceMicros,
		Units: req.Units, StartUnixMs: req.StartUnixMs}
}

func mustReserve(t *testing.T, c *Container, indexer string, req *pb.ReserveRequest) *pb.ReserveResponse {
	t.Helper()
	resp := c.Reserve(t.Context(), indexer, req)
	if !resp.Reserved || resp.Refused != "" {
		t.Fatalf("Reserve refused: %q", resp.Refused)
	}
	return resp
}

func TestReserveRefusals(t *testing.T) {
	in := func(d time.Duration) time.Time { return t0.Add(d) }
	cases := []struct {
		name  string
		setup func(t *testing.T, r *rig)
		req   func() *pb.ReserveRequest
		want  string
	}{
		{"short session ID", nil, func() *pb.ReserveRequest { q := retail(1); q.SessionId = q.SessionId[:15]; return q }, RefusedBadRequest},
		{"long session ID", nil, func() *pb.ReserveRequest { q := retail(1); q.SessionId = append(q.SessionId, 0); return q }, RefusedBadRequest},
		{"no consumer", nil, func() *pb.ReserveRequest { q := retail(1); q.Consumer = nil; return q }, RefusedBadRequest},
		{"zero units", nil, func() *pb.ReserveRequest { q := retail(1); q.Units = 0; return q }, RefusedBadRequest},
		{"97 units", nil, func() *pb.ReserveRequest { q := retail(1); q.Units = 97; return q }, RefusedBadRequest},
		{"zero lease", nil, func() *pb.ReserveRequest { q := retail(1); q.LeaseMs = 0; return q }, RefusedBadRequest},
		{"lease over a minute", nil, func() *pb.ReserveRequest { q := retail(1); q.LeaseMs = 60_001; return q }, RefusedBadRequest},
		{"unknown mode", nil, func() *pb.ReserveRequest { q := retail(1); q.Mode = 9; return q }, RefusedBadRequest},
		{"wholesale without start", nil, func() *pb.ReserveRequest { q := wholesale(1, t0, 1); q.StartUnixMs = 0; return q }, RefusedBadRequest},
		{"wholesale beyond the horizon", nil, func() *pb.ReserveRequest { return wholesale(1, in(BookingHorizon+time.Hour), 1) }, RefusedBadRequest},
		{"app not installed", nil, func() *pb.ReserveRequest { q := retail(1); q.App = "doom"; return q }, RefusedApp},
		{"price under the ask", nil, func() *pb.ReserveRequest { q := retail(1); q.PriceMicros = fee - 1; return q }, RefusedPrice},
		{"price under a raised ask", func(t *testing.T, r *rig) {
			if err := r.c.SetFee(t.Context(), fee+1); err != nil {
				t.Fatal(err)
			}
		}, func() *pb.ReserveRequest { return retail(1) }, RefusedPrice},
		{"retail while locked", func(t *testing.T, r *rig) {
			if _, err := r.c.Lock(t.Context()); err != nil {
				t.Fatal(err)
			}
		}, func() *pb.ReserveRequest { return retail(1) }, RefusedNotStandby},
		{"retail while busy", func(t *testing.T, r *rig) {
			q := retail(9)
			mustReserve(t, r.c, indexerA, q)
			if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA)); err != nil {
				t.Fatal(err)
			}
		}, func() *pb.ReserveRequest { return retail(1) }, RefusedNotStandby},
		{"wholesale while locked", func(t *testing.T, r *rig) {
			if _, err := r.c.Lock(t.Context()); err != nil {
				t.Fatal(err)
			}
		}, func() *pb.ReserveRequest { return wholesale(1, in(time.Hour), 1) }, RefusedNotStandby},
		{"retail under another lease", func(t *testing.T, r *rig) { mustReserve(t, r.c, indexerB, retail(9)) },
			func() *pb.ReserveRequest { return retail(1) }, RefusedReserved},
		{"same session from another indexer", func(t *testing.T, r *rig) { mustReserve(t, r.c, indexerB, retail(1)) },
			func() *pb.ReserveRequest { return retail(1) }, RefusedReserved},
		{"same session, same indexer, other terms", func(t *testing.T, r *rig) { mustReserve(t, r.c, indexerA, retail(1)) },
			func() *pb.ReserveRequest { q := retail(1); q.Units = 3; return q }, RefusedReserved},
		{"retail with the ID of a booking", func(t *testing.T, r *rig) { mustReserve(t, r.c, indexerA, wholesale(1, in(5*time.Hour), 1)) },
			func() *pb.ReserveRequest { return retail(1) }, RefusedReserved},
		{"wholesale with the ID of a lease", func(t *testing.T, r *rig) { mustReserve(t, r.c, indexerA, retail(1)) },
			func() *pb.ReserveRequest { return wholesale(1, in(5*time.Hour), 1) }, RefusedReserved},
		{"retail into a booked block", func(t *testing.T, r *rig) { mustReserve(t, r.c, indexerB, wholesale(9, in(20*time.Minute), 1)) },
			func() *pb.ReserveRequest { return retail(1) }, RefusedCalendar}, // 2 units from now run into it
		{"retail whose late arrival would run into a block", func(t *testing.T, r *rig) {
			mustReserve(t, r.c, indexerB, wholesale(9, in(30*time.Minute+10*time.Second), 1))
		}, func() *pb.ReserveRequest { return retail(1) }, RefusedCalendar},
		{"wholesale in the past", nil, func() *pb.ReserveRequest { return wholesale(1, in(-time.Millisecond), 1) }, RefusedCalendar},
		{"wholesale overlapping a block", func(t *testing.T, r *rig) { mustReserve(t, r.c, indexerB, wholesale(9, in(time.Hour), 4)) },
			func() *pb.ReserveRequest { return wholesale(1, in(time.Hour+59*time.Minute), 1) }, RefusedCalendar},
		{"wholesale covering a block", func(t *testing.T, r *rig) { mustReserve(t, r.c, indexerB, wholesale(9, in(time.Hour), 1)) },
			func() *pb.ReserveRequest { return wholesale(1, in(30*time.Minute), 8) }, RefusedCalendar},
		{"wholesale into a live lease's window", func(t *testing.T, r *rig) { mustReserve(t, r.c, indexerB, retail(9)) },
			func() *pb.ReserveRequest { return wholesale(1, in(30*time.Minute), 1) }, RefusedCalendar},
		{"wholesale into the live session", func(t *testing.T, r *rig) {
			q := retail(9)
			mustReserve(t, r.c, indexerA, q)
			if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA)); err != nil {
				t.Fatal(err)
			}
		}, func() *pb.ReserveRequest { return wholesale(1, in(29*time.Minute), 1) }, RefusedCalendar},
		{"wholesale not stored", func(t *testing.T, r *rig) { r.store.fail(true) },
			func() *pb.ReserveRequest { return wholesale(1, in(time.Hour), 1) }, RefusedCalendar},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			if tc.setup != nil {
				tc.setup(t, r)
			}
			before := r.c.Bookings()
			resp := r.c.Reserve(t.Context(), indexerA, tc.req())
			if resp.Reserved || resp.Refused != tc.want {
				t.Fatalf("Reserve = reserved %v, refused %q; want refused %q", resp.Reserved, resp.Refused, tc.want)
			}
			if resp.State != r.c.State() {
				t.Errorf("response state %v, container %v", resp.State, r.c.State())
			}
			if got := r.c.Bookings(); len(got) != len(before) {
				t.Errorf("a refusal changed the calendar: %d -> %d blocks", len(before), len(got))
			}
		})
	}
}

func TestReserveGrants(t *testing.T) {
	r := newRig(t)
	resp := mustReserve(t, r.c, indexerA, retail(1))
	if want := t0.Add(30 * time.Second).UnixMilli(); resp.LeaseExpiresUnixMs != want {
		t.Errorf("lease until %d, want %d", resp.LeaseExpiresUnixMs, want)
	}
	if resp.State != stateStandby {
		t.Errorf("state %v", resp.State)
	}
	// A wholesale block after the lease's window is fine, also while a lease is live.
	start := t0.Add(31 * time.Minute)
	wr := mustReserve(t, r.c, indexerB, wholesale(2, start, 4))
	if want := start.Add(time.Hour).UnixMilli(); wr.LeaseExpiresUnixMs != want {
		t.Errorf("booking lease until %d, want its end %d", wr.LeaseExpiresUnixMs, want)
	}
	// Blocks that touch but do not overlap.
	mustReserve(t, r.c, indexerB, wholesale(3, start.Add(time.Hour), 1))
	mustReserve(t, r.c, indexerB, wholesale(4, t0.Add(10*time.Hour), 96))
	got := r.c.Bookings()
	if len(got) != 3 || !got[0].Start.Equal(start) || got[1].Start.Before(got[0].End) {
		t.Fatalf("calendar %+v", got)
	}
	if got[0].Indexer != indexerB || got[0].Consumer != consumerID || got[0].Price != fee || got[0].Units != 4 {
		t.Errorf("booking %+v", got[0])
	}
}

func TestReserveIdempotent(t *testing.T) {
	r := newRig(t)
	q := retail(1)
	first := mustReserve(t, r.c, indexerA, q)
	r.clk.Add(10 * time.Second)
	again := mustReserve(t, r.c, indexerA, proto.Clone(q).(*pb.ReserveRequest))
	if again.LeaseExpiresUnixMs != first.LeaseExpiresUnixMs {
		t.Errorf("retried reservation moved the lease: %d -> %d", first.LeaseExpiresUnixMs, again.LeaseExpiresUnixMs)
	}
	w := wholesale(2, t0.Add(2*time.Hour), 2)
	wf := mustReserve(t, r.c, indexerA, w)
	wa := mustReserve(t, r.c, indexerA, w)
	if wa.LeaseExpiresUnixMs != wf.LeaseExpiresUnixMs || len(r.c.Bookings()) != 1 {
		t.Errorf("retried booking: %d vs %d, %d blocks", wa.LeaseExpiresUnixMs, wf.LeaseExpiresUnixMs, len(r.c.Bookings()))
	}
	if resp := r.c.Reserve(t.Context(), indexerB, w); resp.Refused != RefusedReserved {
		t.Errorf("the same booking from another indexer: %q", resp.Refused)
	}
}

// race runs n reservations concurrently, one per indexer, and counts the outcomes.
func race(t *testing.T, c *Container, n int, req func(i int) *pb.ReserveRequest) map[string]int {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		count = map[string]int{}
		ready = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			q := req(i)
			<-ready
			resp := c.Reserve(t.Context(), fmt.Sprintf("indexer-%02d", i), q)
			mu.Lock()
			defer mu.Unlock()
			if resp.Reserved {
				count["ok"]++
			} else {
				count[resp.Refused]++
			}
		})
	}
	close(ready)
	wg.Wait()
	return count
}

func TestReserveRaceRetail(t *testing.T) {
	r := newRig(t)
	got := race(t, r.c, 16, func(i int) *pb.ReserveRequest { return retail(byte(i + 1)) })
	if got["ok"] != 1 || got[RefusedReserved] != 15 {
		t.Fatalf("outcomes %v: want 1 reserved and 15 %q", got, RefusedReserved)
	}
}

func TestReserveRaceWholesale(t *testing.T) {
	r := newRig(t)
	// Sixteen blocks of an hour, each starting a minute after the last: all overlap one another.
	got := race(t, r.c, 16, func(i int) *pb.ReserveRequest {
		return wholesale(byte(i+1), t0.Add(time.Hour+time.Duration(i)*time.Minute), 4)
	})
	if got["ok"] != 1 || got[RefusedCalendar] != 15 {
		t.Fatalf("outcomes %v: want 1 reserved and 15 %q", got, RefusedCalendar)
	}
	if n := len(r.c.Bookings()); n != 1 {
		t.Fatalf("%d blocks booked", n)
	}
}

func TestLeaseLapses(t *testing.T) {
	r := newRig(t)
	q := retail(1)
	mustReserve(t, r.c, indexerA, q)
	r.clk.Add(29 * time.Second)
	if resp := r.c.Reserve(t.Context(), indexerB, retail(2)); resp.Refused != RefusedReserved {
		t.Fatalf("before the lease lapses: %q", resp.Refused)
	}
	r.clk.Add(time.Second)
	mustReserve(t, r.c, indexerB, retail(2))
	// The first consumer comes too late.
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA)); !errors.Is(err, ErrLeaseLapsed) {
		t.Fatalf("late arrival: %v, want ErrLeaseLapsed", err)
	}
}

func TestLeaseLapseInLoop(t *testing.T) {
	r := newRig(t)
	mustReserve(t, r.c, indexerA, retail(1))
	until := t0.Add(30 * time.Second).UnixMilli()
	r.net.waitBeat(t, func(hb *pb.Heartbeat) bool { return hb.ReservedUntilUnixMs == until })
	r.clk.Add(30 * time.Second)
	r.net.waitBeat(t, func(hb *pb.Heartbeat) bool { return hb.ReservedUntilUnixMs == 0 })
}

func TestLockDropsLease(t *testing.T) {
	r := newRig(t)
	q := retail(1)
	mustReserve(t, r.c, indexerA, q)
	if _, err := r.c.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA)); !errors.Is(err, ErrNoReservation) {
		t.Fatalf("arrival after lock: %v", err)
	}
}

func TestArriveMismatches(t *testing.T) {
	q := retail(1)
	cases := []struct {
		name              string
		consumer, indexer string
		edit              func(*pb.SessionTicket)
		wait              time.Duration
		want              error
	}{
		{"unknown session", consumerID, indexerA, func(tk *pb.SessionTicket) { tk.SessionId = sid(7) }, 0, ErrNoReservation},
		{"no session ID", consumerID, indexerA, func(tk *pb.SessionTicket) { tk.SessionId = nil }, 0, ErrNoReservation},
		{"another consumer presents it", "someone-else", indexerA, nil, 0, ErrTicketMismatch},
		{"ticket for another consumer", consumerID, indexerA, func(tk *pb.SessionTicket) { tk.Consumer = []byte("x") }, 0, ErrTicketMismatch},
		{"signed by another indexer", consumerID, indexerB, func(tk *pb.SessionTicket) { tk.Indexer = []byte(indexerB) }, 0, ErrTicketMismatch},
		{"indexer field differs from signer", consumerID, indexerA, func(tk *pb.SessionTicket) { tk.Indexer = []byte(indexerB) }, 0, ErrTicketMismatch},
		{"another container", consumerID, indexerA, func(tk *pb.SessionTicket) { tk.Container = []byte("other") }, 0, ErrTicketMismatch},
		{"lower price", consumerID, indexerA, func(tk *pb.SessionTicket) { tk.PriceMicros-- }, 0, ErrTicketMismatch},
		{"more units", consumerID, indexerA, func(tk *pb.SessionTicket) { tk.Units++ }, 0, ErrTicketMismatch},
		{"other app", consumerID, indexerA, func(tk *pb.SessionTicket) { tk.App = "blender" }, 0, ErrTicketMismatch},
		{"other epoch", consumerID, indexerA, func(tk *pb.SessionTicket) { tk.Epoch++ }, 0, ErrTicketMismatch},
		{"other mode", consumerID, indexerA, func(tk *pb.SessionTicket) { tk.Mode = pb.ServiceMode_SERVICE_MODE_WHOLESALE }, 0, ErrTicketMismatch},
		{"lapsed lease", consumerID, indexerA, nil, 30 * time.Second, ErrLeaseLapsed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			mustReserve(t, r.c, indexerA, q)
			r.clk.Add(tc.wait)
			tk := ticket(q, indexerA)
			if tc.edit != nil {
				tc.edit(tk)
			}
			s, err := r.c.Arrive(t.Context(), tc.consumer, tc.indexer, tk)
			if !errors.Is(err, tc.want) || s != nil {
				t.Fatalf("Arrive = %v, %v; want %v", s, err, tc.want)
			}
			if r.c.State() != stateStandby || len(r.c.Sessions()) != 0 {
				t.Fatalf("a refused arrival changed the container: %v, %d sessions", r.c.State(), len(r.c.Sessions()))
			}
		})
	}
}

func TestArriveAndEnd(t *testing.T) {
	r := newRig(t)
	q := retail(1)
	mustReserve(t, r.c, indexerA, q)
	r.clk.Add(10 * time.Second)
	s, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA))
	if err != nil {
		t.Fatal(err)
	}
	arrived := t0.Add(10 * time.Second)
	want := Session{ID: q.SessionId, Consumer: consumerID, Indexer: indexerA, Price: fee, Start: arrived,
		End: arrived.Add(30 * time.Minute), Mode: pb.ServiceMode_SERVICE_MODE_RETAIL, Epoch: 7}
	if !sessionEqual(*s, want) {
		t.Fatalf("session %+v, want %+v", *s, want)
	}
	if r.c.State() != stateBusy {
		t.Fatalf("state %v", r.c.State())
	}
	if v, _, _ := r.store.Get(t.Context(), keyState); string(v) != "busy" {
		t.Errorf("stored state %q", v)
	}
	hb := r.net.waitBeat(t, func(hb *pb.Heartbeat) bool { return hb.State == stateBusy })
	if hb.ReservedUntilUnixMs != want.End.UnixMilli() || hb.SessionFeeMicros != fee {
		t.Errorf("heartbeat reserved until %d, fee %d", hb.ReservedUntilUnixMs, hb.SessionFeeMicros)
	}
	// The same ticket again is no second session.
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA)); !errors.Is(err, ErrNoReservation) {
		t.Errorf("second arrival: %v", err)
	}
	if err := r.c.EndSession(t.Context(), q.SessionId); err != nil {
		t.Fatal(err)
	}
	if r.c.State() != stateStandby || len(r.c.Sessions()) != 0 {
		t.Fatalf("after end: %v, %d sessions", r.c.State(), len(r.c.Sessions()))
	}
	if v, _, _ := r.store.Get(t.Context(), keyState); string(v) != "standby" {
		t.Errorf("stored state %q", v)
	}
	if err := r.c.EndSession(t.Context(), q.SessionId); err != nil {
		t.Errorf("ending twice: %v", err)
	}
	r.net.waitBeat(t, func(hb *pb.Heartbeat) bool { return hb.State == stateStandby && hb.ReservedUntilUnixMs == 0 })
	mustReserve(t, r.c, indexerB, retail(2))
}

func sessionEqual(a, b Session) bool {
	return bytes.Equal(a.ID, b.ID) && a.Consumer == b.Consumer && a.Indexer == b.Indexer && a.Price == b.Price &&
		a.Start.Equal(b.Start) && a.End.Equal(b.End) && a.Mode == b.Mode && a.Epoch == b.Epoch
}

func TestArriveNotStored(t *testing.T) {
	r := newRig(t)
	q := retail(1)
	mustReserve(t, r.c, indexerA, q)
	r.store.fail(true)
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA)); err == nil {
		t.Fatal("admitted a session it could not store")
	}
	if r.c.State() != stateStandby {
		t.Fatalf("state %v", r.c.State())
	}
	r.store.fail(false)
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA)); err != nil {
		t.Fatalf("arrival once the store works: %v", err)
	}
}

func TestSessionEndsAtEnd(t *testing.T) {
	r := newRig(t)
	q := retail(1)
	q.Units = 1
	mustReserve(t, r.c, indexerA, q)
	s, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA))
	if err != nil {
		t.Fatal(err)
	}
	r.net.waitBeat(t, func(hb *pb.Heartbeat) bool { return hb.State == stateBusy })
	r.clk.Add(UnitLength - time.Millisecond)
	r.c.settle(t.Context())
	if r.c.State() != stateBusy {
		t.Fatalf("ended early: %v", r.c.State())
	}
	r.clk.Add(time.Millisecond)
	hb := r.net.waitBeat(t, func(hb *pb.Heartbeat) bool { return hb.State == stateStandby })
	if hb.ReservedUntilUnixMs != 0 || hb.SentUnixMs < s.End.UnixMilli() {
		t.Errorf("heartbeat %v", hb)
	}
	if len(r.c.Sessions()) != 0 {
		t.Error("session still live")
	}
}

func TestRenew(t *testing.T) {
	r := newRig(t)
	q := retail(1)
	q.Units = 1
	mustReserve(t, r.c, indexerA, q)
	s, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA))
	if err != nil {
		t.Fatal(err)
	}
	// A block sold for two units after the session's first end.
	block := s.End.Add(30 * time.Minute)
	mustReserve(t, r.c, indexerB, wholesale(2, block, 1))
	end, err := r.c.Renew(t.Context(), s.ID, 2)
	if err != nil || !end.Equal(s.End.Add(30*time.Minute)) {
		t.Fatalf("Renew = %v, %v", end, err)
	}
	if got := r.c.Sessions(); len(got) != 1 || !got[0].End.Equal(end) {
		t.Fatalf("sessions %+v", got)
	}
	if _, err := r.c.Renew(t.Context(), s.ID, 1); !errors.Is(err, ErrCalendar) {
		t.Errorf("renewal into a block: %v", err)
	}
	if _, err := r.c.Renew(t.Context(), s.ID, 0); !errors.Is(err, ErrBadRequest) {
		t.Errorf("renewal by 0: %v", err)
	}
	if _, err := r.c.Renew(t.Context(), sid(9), 1); !errors.Is(err, ErrNoSession) {
		t.Errorf("renewal of an unknown session: %v", err)
	}
	// The renewed session runs past its first end.
	r.clk.Add(UnitLength)
	r.c.settle(t.Context())
	if r.c.State() != stateBusy {
		t.Fatalf("renewed session ended at its first end")
	}
	r.net.waitBeat(t, func(hb *pb.Heartbeat) bool { return hb.ReservedUntilUnixMs == end.UnixMilli() })
}

func TestWholesaleArrival(t *testing.T) {
	r := newRig(t)
	start := t0.Add(time.Hour)
	q := wholesale(1, start, 2)
	mustReserve(t, r.c, indexerA, q)
	tk := ticket(q, indexerA)
	r.clk.Set(start.Add(-ArriveEarly - time.Millisecond))
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, tk); !errors.Is(err, ErrTooEarly) {
		t.Fatalf("early arrival: %v", err)
	}
	bad := proto.Clone(tk).(*pb.SessionTicket)
	bad.StartUnixMs++
	r.clk.Add(time.Millisecond)
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, bad); !errors.Is(err, ErrTicketMismatch) {
		t.Fatalf("other start: %v", err)
	}
	s, err := r.c.Arrive(t.Context(), consumerID, indexerA, tk)
	if err != nil {
		t.Fatal(err)
	}
	if !s.End.Equal(start.Add(30*time.Minute)) || s.Mode != pb.ServiceMode_SERVICE_MODE_WHOLESALE || r.c.State() != stateBusy {
		t.Fatalf("session %+v in %v", s, r.c.State())
	}
	if err := r.c.EndSession(t.Context(), s.ID); err != nil {
		t.Fatal(err)
	}
	// The block stays sold until it ends, and admits no second arrival.
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, tk); !errors.Is(err, ErrNoReservation) {
		t.Fatalf("second arrival: %v", err)
	}
	if resp := r.c.Reserve(t.Context(), indexerB, retail(2)); resp.Refused != RefusedCalendar {
		t.Fatalf("retail inside the sold block: %q", resp.Refused)
	}
	r.clk.Set(start.Add(30 * time.Minute))
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, tk); !errors.Is(err, ErrLeaseLapsed) {
		t.Fatalf("arrival after the block: %v", err)
	}
	if n := len(r.c.Bookings()); n != 0 {
		t.Fatalf("%d blocks left after the block ended", n)
	}
}

func TestWholesaleWhileBusy(t *testing.T) {
	r := newRig(t)
	q := retail(1)
	mustReserve(t, r.c, indexerA, q)
	s, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA))
	if err != nil {
		t.Fatal(err)
	}
	w := wholesale(2, s.End, 1)
	mustReserve(t, r.c, indexerB, w)
	// Its consumer comes early, while the retail session still runs: not admitted, nothing changes.
	r.clk.Set(s.End.Add(-30 * time.Second))
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerB, ticket(w, indexerB)); !errors.Is(err, ErrBusy) {
		t.Fatalf("arrival during another session: %v", err)
	}
	if got := r.c.Sessions(); len(got) != 1 || !bytes.Equal(got[0].ID, s.ID) || r.c.State() != stateBusy {
		t.Fatalf("sessions %+v in %v", got, r.c.State())
	}
	r.clk.Set(s.End)
	ws, err := r.c.Arrive(t.Context(), consumerID, indexerB, ticket(w, indexerB))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ws.ID, w.SessionId) || r.c.State() != stateBusy {
		t.Fatalf("session %+v in %v", ws, r.c.State())
	}
}

func TestArriveWhileLocked(t *testing.T) {
	r := newRig(t)
	w := wholesale(1, t0.Add(time.Hour), 1)
	mustReserve(t, r.c, indexerA, w)
	if _, err := r.c.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.clk.Set(t0.Add(time.Hour))
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(w, indexerA)); !errors.Is(err, ErrTransition) {
		t.Fatalf("arrival while locked: %v", err)
	}
	if r.c.State() != stateLocked || len(r.c.Sessions()) != 0 {
		t.Fatalf("%v, %d sessions", r.c.State(), len(r.c.Sessions()))
	}
}

func TestEndSessionNotStored(t *testing.T) {
	r := newRig(t)
	q := retail(1)
	mustReserve(t, r.c, indexerA, q)
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA)); err != nil {
		t.Fatal(err)
	}
	r.store.fail(true)
	if err := r.c.EndSession(t.Context(), q.SessionId); err == nil {
		t.Fatal("no error when the end could not be stored")
	}
	// The session is over all the same; a restart would move busy to standby anyway.
	if r.c.State() != stateStandby || len(r.c.Sessions()) != 0 {
		t.Fatalf("%v, %d sessions", r.c.State(), len(r.c.Sessions()))
	}
}

func TestHeartbeatCarriesBook(t *testing.T) {
	r := newRig(t)
	for i := range MaxHeartbeatBookings + 3 {
		mustReserve(t, r.c, indexerA, wholesale(byte(i+1), t0.Add(time.Hour+time.Duration(i)*UnitLength), 1))
	}
	if err := r.c.SetFee(t.Context(), 123_456); err != nil {
		t.Fatal(err)
	}
	hb := r.net.waitBeat(t, func(hb *pb.Heartbeat) bool { return hb.SessionFeeMicros == 123_456 })
	if len(hb.Bookings) != MaxHeartbeatBookings {
		t.Fatalf("%d bookings in a heartbeat, want %d", len(hb.Bookings), MaxHeartbeatBookings)
	}
	for i, b := range hb.Bookings {
		start := t0.Add(time.Hour + time.Duration(i)*UnitLength)
		if b.StartUnixMs != start.UnixMilli() || b.EndUnixMs != start.Add(UnitLength).UnixMilli() {
			t.Fatalf("booking %d: %v", i, b)
		}
	}
	if hb.ReservedUntilUnixMs != 0 {
		t.Errorf("reserved until %d with no lease", hb.ReservedUntilUnixMs)
	}
	if rec := r.net.lastRecord(); rec.SessionFeeMicros != 123_456 {
		// SetFee kicks a record republication; wait for the heartbeat that follows it.
		r.net.waitBeat(t, func(*pb.Heartbeat) bool { return r.net.lastRecord().SessionFeeMicros == 123_456 })
	}
	if err := r.c.SetFee(t.Context(), MaxFee+1); !errors.Is(err, ErrBadRequest) {
		t.Errorf("fee over the limit: %v", err)
	}
}

func TestBookingsSurviveRestart(t *testing.T) {
	r := newRig(t)
	mustReserve(t, r.c, indexerA, wholesale(1, t0.Add(time.Hour), 2))
	mustReserve(t, r.c, indexerB, wholesale(2, t0.Add(3*time.Hour), 1))
	q := retail(3)
	mustReserve(t, r.c, indexerA, q)
	if _, err := r.c.Arrive(t.Context(), consumerID, indexerA, ticket(q, indexerA)); err != nil {
		t.Fatal(err)
	}
	before := r.c.Bookings()
	r.c.Stop()
	r.start(t)
	if r.c.State() != stateStandby {
		t.Fatalf("after restart: %v", r.c.State())
	}
	if len(r.c.Sessions()) != 0 {
		t.Fatal("a session survived the restart")
	}
	if in := r.c.Interrupted(); len(in) != 1 || !bytes.Equal(in[0].ID, q.SessionId) {
		t.Fatalf("interrupted %+v", in)
	}
	after := r.c.Bookings()
	if len(after) != len(before) {
		t.Fatalf("%d blocks before, %d after", len(before), len(after))
	}
	for i := range after {
		a, b := after[i], before[i]
		if !bytes.Equal(a.ID, b.ID) || a.Consumer != b.Consumer || a.Indexer != b.Indexer || !a.Start.Equal(b.Start) ||
			!a.End.Equal(b.End) || a.Price != b.Price || a.Units != b.Units || a.App != b.App || a.Epoch != b.Epoch {
			t.Fatalf("block %d: %+v, was %+v", i, a, b)
		}
	}
	if resp := r.c.Reserve(t.Context(), indexerB, wholesale(9, t0.Add(80*time.Minute), 1)); resp.Refused != RefusedCalendar {
		t.Fatalf("restored calendar let an overlap in: %q", resp.Refused)
	}
	// A third start sees no interrupted session any more.
	r.c.Stop()
	r.start(t)
	if in := r.c.Interrupted(); len(in) != 0 {
		t.Fatalf("interrupted again: %+v", in)
	}
}

func TestNewRefusesCorruptCalendar(t *testing.T) {
	clk := clock.NewMock()
	st := newMemStore()
	st.m[keyBookings] = []byte("{not json")
	if _, err := New(testConfig(clk), newFakeNet(), st); err == nil {
		t.Fatal("New accepted a corrupt calendar")
	}
}

// checkBook asserts the book's invariants: blocks sorted, well-formed and apart; a lease only in
// standby, never with a session, its window clear of every block; the session's time clear too.
func checkBook(t *testing.T, c *Container) {
	t.Helper()
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	b := &c.book
	for i, bk := range b.bookings {
		if !bk.Start.Before(bk.End) || bk.End.Sub(bk.Start) != time.Duration(bk.Units)*UnitLength {
			t.Fatalf("block %d malformed: %+v", i, bk)
		}
		if i > 0 && bk.Start.Before(b.bookings[i-1].End) {
			t.Fatalf("blocks %d and %d overlap", i-1, i)
		}
	}
	if len(b.bookings) > MaxBookings {
		t.Fatalf("%d blocks", len(b.bookings))
	}
	if l := b.lease; l != nil {
		if b.session != nil || c.life.State() != stateStandby {
			t.Fatalf("lease beside a session or outside standby (%v)", c.life.State())
		}
		if s, e := l.window(); b.overlaps(s, e, nil) {
			t.Fatal("lease window overlaps a block")
		}
	}
	if s := b.session; s != nil && b.overlaps(s.Start, s.End, b.findBooking(s.ID)) {
		t.Fatal("session overlaps a block")
	}
}

func TestBookInvariantsUnderLoad(t *testing.T) {
	r := newRig(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				q := wholesale(byte(i*50+j), t0.Add(time.Duration((i*37+j*11)%200)*UnitLength/2), uint32(1+(i+j)%5))
				r.c.Reserve(context.Background(), fmt.Sprint("ix", i), q)
				r.c.Reserve(context.Background(), fmt.Sprint("ix", i), retail(byte(i*50+j)))
			}
		})
	}
	wg.Wait()
	checkBook(t, r.c)
	if len(r.c.Bookings()) == 0 {
		t.Fatal("nothing booked")
	}
}

var validRefusals = []string{RefusedBadRequest, RefusedApp, RefusedPrice, RefusedNotStandby, RefusedReserved, RefusedCalendar}

func FuzzReserve(f *testing.F) {
	for _, q := range []*pb.ReserveRequest{retail(1), wholesale(2, t0.Add(time.Hour), 4), wholesale(3, t0, 96),
		{SessionId: sid(4), Consumer: []byte("c"), App: "blender", Units: 96, LeaseMs: 60_000, PriceMicros: 1 << 63}} {
		b, err := proto.Marshal(q)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(0))
	}
	clk := clock.NewMock()
	clk.Set(t0)
	f.Fuzz(func(t *testing.T, data []byte, advance uint16) {
		q := &pb.ReserveRequest{}
		if err := proto.Unmarshal(data, q); err != nil {
			return
		}
		c, err := New(testConfig(clk), newFakeNet(), newMemStore())
		if err != nil {
			t.Fatal(err)
		}
		c.life = NewLifecycle(stateStandby)
		ctx := context.Background()
		check := func(resp *pb.ReserveResponse) {
			t.Helper()
			switch {
			case resp == nil:
				t.Fatal("nil response")
			case resp.Reserved != (resp.Refused == ""):
				t.Fatalf("reserved %v with refusal %q", resp.Reserved, resp.Refused)
			case !resp.Reserved && !slices.Contains(validRefusals, resp.Refused):
				t.Fatalf("unknown refusal %q", resp.Refused)
			}
			checkBook(t, c)
		}
		first := c.Reserve(ctx, indexerA, q)
		check(first)
		again := c.Reserve(ctx, indexerA, q)
		check(again)
		if first.Reserved && (!again.Reserved || again.LeaseExpiresUnixMs != first.LeaseExpiresUnixMs) {
			t.Fatalf("retry not idempotent: %v then %v", first, again)
		}
		other := c.Reserve(ctx, indexerB, q)
		check(other)
		if first.Reserved && other.Reserved {
			t.Fatal("the same session reserved for two indexers")
		}
		q2 := proto.Clone(q).(*pb.ReserveRequest)
		q2.SessionId = sid(0xee)
		rival := c.Reserve(ctx, indexerB, q2)
		check(rival)
		if first.Reserved && rival.Reserved {
			t.Fatal("the same time reserved twice")
		}
		// Let time pass and try again: lapsed leases go, invariants hold.
		c.cfg.Clock = clockAt(clk.Now().Add(time.Duration(advance) * time.Second))
		check(c.Reserve(ctx, indexerB, q2))
		if first.Reserved {
			tk := &pb.SessionTicket{SessionId: q.SessionId, Consumer: q.Consumer, Container: selfID, Indexer: []byte(indexerA),
				Epoch: q.Epoch, App: q.App, Mode: q.Mode, PriceMicros: q.PriceMicros, Units: q.Units, StartUnixMs: q.StartUnixMs}
			if s, err := c.Arrive(ctx, string(q.Consumer), indexerA, tk); err == nil && !s.Start.Before(s.End) {
				t.Fatalf("session %+v", s)
			}
			checkBook(t, c)
		}
	})
}

// clockAt is a mock clock stopped at t.
func clockAt(t time.Time) *clock.Mock {
	m := clock.NewMock()
	m.Set(t)
	return m
}
