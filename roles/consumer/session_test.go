package consumer

import (
	"context"
	"errors"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/session"
)

// pipeStream is a SessionStream whose other end is a scripted container in the same test.
type pipeStream struct {
	opened chan *pb.SessionOpen
	up     chan *pb.SessionMsg // consumer -> container
	down   chan *pb.SessionMsg // container -> consumer
}

func newPipe() *pipeStream {
	return &pipeStream{opened: make(chan *pb.SessionOpen, 1), up: make(chan *pb.SessionMsg, 16), down: make(chan *pb.SessionMsg, 16)}
}

func (p *pipeStream) Open(m *pb.SessionOpen) error { p.opened <- m; return nil }
func (p *pipeStream) Send(m *pb.SessionMsg) error  { p.up <- m; return nil }
func (p *pipeStream) Recv() (*pb.SessionMsg, error) {
	m, ok := <-p.down
	if !ok {
		return nil, io.EOF
	}
	return m, nil
}

// In these tests a "sealed" receipt is its plain encoding and a countersignature is "ack:" + it.
func plainReceipt(r *pb.UsageReceipt) []byte { b, _ := proto.Marshal(r); return b }
func openPlain(raw []byte) (*pb.UsageReceipt, error) {
	r := &pb.UsageReceipt{}
	return r, proto.Unmarshal(raw, r)
}

// fakeContainer meters a session the way node/session.go does: a receipt each minute, renewals
// while its calendar allows (renewable units), a final receipt at the end.
func fakeContainer(p *pipeStream, info session.SessionInfo, end time.Time, renewable int, acks *int) {
	defer close(p.down)
	<-p.opened
	p.down <- &pb.SessionMsg{Accepted: true, EndsUnixMs: end.UnixMilli()}
	var prev *pb.UsageReceipt
	sent := 0
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	send := func(final bool) {
		prev = session.NextReceipt(prev, info, time.Now(), final)
		sent++
		p.down <- &pb.SessionMsg{Receipt: plainReceipt(prev), End: final}
	}
	finish := func() { // send the final receipt and wait for every countersignature
		send(true)
		for *acks < sent {
			if m := <-p.up; len(m.Ack) > 0 {
				*acks++
			}
		}
	}
	for {
		select {
		case <-tick.C:
			send(false)
		case <-time.After(time.Until(end)):
			finish()
			return
		case m := <-p.up:
			switch {
			case len(m.Ack) > 0:
				*acks++
			case m.Renew > 0 && renewable > 0:
				renewable--
				end = end.Add(time.Duration(m.Renew) * 15 * time.Minute)
				p.down <- &pb.SessionMsg{EndsUnixMs: end.UnixMilli()}
			case m.Renew > 0:
				p.down <- &pb.SessionMsg{Refused: "calendar", EndsUnixMs: end.UnixMilli()}
			case m.End:
				finish()
				return
			}
		}
	}
}

func TestRunSession(t *testing.T) {
	cases := []struct {
		name         string
		hold         time.Duration
		renewable    int
		wantMinutes  uint32
		wantRenewals int
		wantRefused  string
	}{
		{"ended at once: one receipt for the minute started", 0, 0, 1, 0, ""},
		{"five minutes: a receipt a minute, then the final one", 5*time.Minute + 30*time.Second, 0, 6, 0, ""},
		{"held past the unit: renewed once", 20 * time.Minute, 1, 20, 1, ""},
		{"renewal refused: the session ends with its unit", 20 * time.Minute, 0, 15, 0, "calendar"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				tk := &pb.SessionTicket{SessionId: make([]byte, 16), Container: []byte("c"), Consumer: []byte("me"), Indexer: []byte("ix"), PriceMicros: 150_000}
				info := session.SessionInfo{ID: tk.SessionId, Container: tk.Container, Consumer: tk.Consumer, Indexer: tk.Indexer, Price: tk.PriceMicros, Start: start}
				p := newPipe()
				acks := 0
				go fakeContainer(p, info, start.Add(15*time.Minute), tc.renewable, &acks)
				var kept [][]byte
				rep, err := RunSession(context.Background(), p, tk, []byte("ticket"), SessionOptions{
					Hold:        tc.hold,
					Countersign: func(r []byte) ([]byte, error) { return append([]byte("ack:"), r...), nil },
					OpenReceipt: openPlain,
					Keep:        func(a []byte) error { kept = append(kept, a); return nil },
				})
				if err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				if !rep.Accepted || rep.Minutes != tc.wantMinutes || rep.Renewals != tc.wantRenewals || rep.RenewRefused != tc.wantRefused {
					t.Fatalf("report %+v; want %d minutes, %d renewals, renewal refused %q", rep, tc.wantMinutes, tc.wantRenewals, tc.wantRefused)
				}
				if rep.Receipts != len(kept) || acks != len(kept) {
					t.Fatalf("%d receipts reported, %d kept, %d acks reached the container", rep.Receipts, len(kept), acks)
				}
				if want := session.Amount(tk.PriceMicros, tc.wantMinutes); rep.Amount != want {
					t.Fatalf("amount %d, want %d", rep.Amount, want)
				}
			})
		})
	}
}

func TestRunSessionRefusesABadReceipt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tk := &pb.SessionTicket{SessionId: make([]byte, 16), Container: []byte("c"), Consumer: []byte("me"), PriceMicros: 150_000}
		p := newPipe()
		go func() {
			<-p.opened
			p.down <- &pb.SessionMsg{Accepted: true, EndsUnixMs: time.Now().Add(15 * time.Minute).UnixMilli()}
			// A minute in, the container claims ten.
			time.Sleep(time.Minute)
			r := &pb.UsageReceipt{SessionId: tk.SessionId, Container: tk.Container, Consumer: tk.Consumer, Seq: 1, Minutes: 10, PriceMicros: tk.PriceMicros, AmountMicros: session.Amount(tk.PriceMicros, 10)}
			p.down <- &pb.SessionMsg{Receipt: plainReceipt(r)}
		}()
		kept := 0
		_, err := RunSession(context.Background(), p, tk, nil, SessionOptions{
			Hold:        time.Hour,
			Countersign: func(r []byte) ([]byte, error) { return r, nil },
			OpenReceipt: openPlain,
			Keep:        func([]byte) error { kept++; return nil },
		})
		close(p.down) // the caller closes the stream
		if !errors.Is(err, session.ErrReceipt) || kept != 0 {
			t.Fatalf("err %v after keeping %d; want the receipt refused, nothing countersigned", err, kept)
		}
	})
}

func TestRunSessionRefused(t *testing.T) {
	p := newPipe()
	p.down <- &pb.SessionMsg{Refused: "lease lapsed"}
	rep, err := RunSession(context.Background(), p, &pb.SessionTicket{}, nil, SessionOptions{})
	if !errors.Is(err, ErrSessionRefused) || rep.Refused != "lease lapsed" {
		t.Fatalf("err %v, report %+v", err, rep)
	}
}
