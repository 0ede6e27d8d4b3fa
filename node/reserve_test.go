package node

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/filecoin-project/go-clock"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/indexer"
)

// holds records what reserveBest held, and until when.
type holds map[string]time.Time

func (h holds) Hold(peer string, _, until time.Time) { h[peer] = until }

// script answers reservations by container, and records which were asked.
type script struct {
	answer map[string]func(ctx context.Context) (*pb.ReserveResponse, error)
	asked  []string
}

func (s *script) try(ctx context.Context, c indexer.Candidate, sid []byte) (*pb.ReserveResponse, error) {
	s.asked = append(s.asked, c.Peer)
	if len(sid) != 16 {
		return nil, errors.New("session ID of the wrong size")
	}
	return s.answer[c.Peer](ctx)
}

func reserves(until time.Time) func(context.Context) (*pb.ReserveResponse, error) {
	return func(context.Context) (*pb.ReserveResponse, error) {
		return &pb.ReserveResponse{Reserved: true, LeaseExpiresUnixMs: until.UnixMilli()}, nil
	}
}

func refusesRes(context.Context) (*pb.ReserveResponse, error) {
	return &pb.ReserveResponse{Refused: "busy"}, nil
}

func unreachableRes(context.Context) (*pb.ReserveResponse, error) {
	return nil, errors.New("failed to dial: no good addresses")
}

func silentRes(ctx context.Context) (*pb.ReserveResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func cands(ids ...string) []indexer.Candidate {
	out := make([]indexer.Candidate, len(ids))
	for i, id := range ids {
		out[i] = indexer.Candidate{Peer: id, Record: &pb.ContainerRecord{}}
	}
	return out
}

// The indexer reserves the best candidate that will have the consumer, tells the consumer's next
// indexer about those that did not answer, and skips those an earlier indexer could not reach.
func TestReserveBest(t *testing.T) {
	clk := clock.NewMock()
	lease := clk.Now().Add(leaseLength)
	cases := []struct {
		name        string
		answer      map[string]func(context.Context) (*pb.ReserveResponse, error)
		exclude     []string
		want        string // the container reserved; "" for a refusal
		asked       []string
		unreachable []string
		held        []string // held for a lease after failing
		detail      string   // a refusal's detail starts so
	}{
		{name: "the best reserves itself", answer: map[string]func(context.Context) (*pb.ReserveResponse, error){"a": reserves(lease)},
			want: "a", asked: []string{"a"}},
		{name: "a refusal moves on, and is not unreachable",
			answer: map[string]func(context.Context) (*pb.ReserveResponse, error){"a": refusesRes, "b": reserves(lease)},
			want:   "b", asked: []string{"a", "b"}, held: []string{"a"}},
		{name: "no answer moves on, and tells the next indexer",
			answer: map[string]func(context.Context) (*pb.ReserveResponse, error){"a": unreachableRes, "b": silentRes, "c": reserves(lease)},
			want:   "c", asked: []string{"a", "b", "c"}, unreachable: []string{"a", "b"}, held: []string{"a", "b"}},
		{name: "what an earlier indexer could not reach is not asked again",
			answer:  map[string]func(context.Context) (*pb.ReserveResponse, error){"b": reserves(lease)},
			exclude: []string{"a"}, want: "b", asked: []string{"b"}},
		{name: "the consumer's own container is never offered",
			answer: map[string]func(context.Context) (*pb.ReserveResponse, error){"b": reserves(lease)},
			want:   "b", asked: []string{"b"}},
		{name: "every candidate excluded", exclude: []string{"a", "b", "c", "d", "e"},
			detail: "every candidate (5) is one an earlier indexer could not reach"},
		{name: "at most reserveAttempts tried",
			answer: map[string]func(context.Context) (*pb.ReserveResponse, error){"a": refusesRes, "b": refusesRes, "c": refusesRes, "d": refusesRes, "e": reserves(lease)},
			asked:  []string{"a", "b", "c", "d"}, held: []string{"a", "b", "c", "d"}, detail: "4 candidates, none could be reserved; last: container "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := holds{}
			sc := &script{answer: tc.answer}
			req := &pb.MatchRequest{}
			for _, id := range tc.exclude {
				req.Exclude = append(req.Exclude, []byte(id))
			}
			list := cands("a", "b", "c", "d", "e")
			consumer := "nobody"
			if strings.Contains(tc.name, "own container") {
				consumer = "a"
			}
			resp := &pb.MatchResponse{}
			r := reserveBest(context.Background(), clk, h, consumer, req, list, sc.try, resp)
			switch {
			case tc.want == "" && r != nil:
				t.Fatalf("reserved %s, want a refusal", r.c.Peer)
			case tc.want != "" && (r == nil || r.c.Peer != tc.want):
				t.Fatalf("reserved %v (%s: %s), want %s", r, resp.Refused, resp.Detail, tc.want)
			case tc.want != "" && !h[tc.want].Equal(lease):
				t.Errorf("the reserved container is held until %v, want its lease %v", h[tc.want], lease)
			case tc.want == "" && (resp.Refused != "reservation" || !strings.HasPrefix(resp.Detail, tc.detail)):
				t.Errorf("refused %q (%s), want reservation (%s...)", resp.Refused, resp.Detail, tc.detail)
			}
			if !slices.Equal(sc.asked, tc.asked) {
				t.Errorf("asked %v, want %v", sc.asked, tc.asked)
			}
			if int(resp.Attempts) != len(tc.asked) {
				t.Errorf("%d attempts counted, want %d", resp.Attempts, len(tc.asked))
			}
			var unreachable []string
			for _, u := range resp.Unreachable {
				unreachable = append(unreachable, string(u))
			}
			if !slices.Equal(unreachable, tc.unreachable) {
				t.Errorf("unreachable %v, want %v", unreachable, tc.unreachable)
			}
			for _, id := range tc.held {
				if !h[id].Equal(clk.Now().Add(leaseLength)) {
					t.Errorf("%s held until %v, want a lease from now", id, h[id])
				}
			}
		})
	}
}

// An indexer answers within the consumer's wait: when a silent container has used it up, the
// consumer gets a refusal it can take to another indexer, and the silent container, cut off by the
// consumer's time rather than its own, is not reported unreachable.
func TestReserveBestWithinTheConsumersWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := clock.NewMock()
		lease := clk.Now().Add(leaseLength)
		sc := &script{answer: map[string]func(context.Context) (*pb.ReserveResponse, error){"a": silentRes, "b": reserves(lease)}}
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
		defer cancel()
		resp := &pb.MatchResponse{}
		r := reserveBest(ctx, clk, holds{}, "nobody", &pb.MatchRequest{}, cands("a", "b"), sc.try, resp)
		if r != nil {
			t.Fatalf("reserved %s after the consumer's wait", r.c.Peer)
		}
		if took := time.Since(began); took != 900*time.Millisecond {
			t.Errorf("answered after %v, want when the wait ran out (900ms)", took)
		}
		if resp.Refused != "reservation" || !strings.HasPrefix(resp.Detail, "out of the consumer's time after 1 reservations") {
			t.Errorf("refused %q (%s), want reservation, out of time", resp.Refused, resp.Detail)
		}
		if len(resp.Unreachable) != 0 || !slices.Equal(sc.asked, []string{"a"}) {
			t.Errorf("asked %v, unreachable %q; want a asked and none unreachable", sc.asked, resp.Unreachable)
		}

		// With a second to spare, a silent container costs its reservation timeout and the next
		// is reserved.
		sc.asked = nil
		began = time.Now()
		ctx2, cancel2 := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel2()
		resp = &pb.MatchResponse{}
		r = reserveBest(ctx2, clk, holds{}, "nobody", &pb.MatchRequest{}, cands("a", "b"), sc.try, resp)
		if r == nil || r.c.Peer != "b" || time.Since(began) != reserveTimeout {
			t.Fatalf("reserved %v after %v (%s), want b after %v", r, time.Since(began), resp.Detail, reserveTimeout)
		}
		if len(resp.Unreachable) != 1 || string(resp.Unreachable[0]) != "a" {
			t.Errorf("unreachable %q, want a", resp.Unreachable)
		}
	})
}

// A match request says how long its consumer still waits once its stream is open.
func TestWaitMs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		if got := waitMs(context.Background()); got != 0 {
			t.Errorf("no deadline: %d, want 0", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if got := waitMs(ctx); got != 2000 {
			t.Errorf("2 s left: %d, want 2000", got)
		}
		time.Sleep(1500 * time.Millisecond)
		if got := waitMs(ctx); got != 500 {
			t.Errorf("0.5 s left: %d, want 500", got)
		}
		time.Sleep(time.Second)
		if got := waitMs(ctx); got != 1 {
			t.Errorf("past the deadline: %d, want 1", got)
		}
	})
}
