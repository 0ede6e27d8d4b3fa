package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/indexer"
)

// fakeIndexers is a MatchNet whose indexers answer from a script.
type fakeIndexers struct {
	self    string
	members []string
	answer  map[string]func(ctx context.Context) (*pb.MatchResponse, error)
	asked   []string
	exclude [][]string // each request's exclude list, as sent
}

func (f *fakeIndexers) Self() string { return f.self }
func (f *fakeIndexers) Indexers(context.Context) ([]string, uint64, error) {
	return f.members, 7, nil
}
func (f *fakeIndexers) Match(ctx context.Context, ix string, req *pb.MatchRequest) (*pb.MatchResponse, error) {
	f.asked = append(f.asked, ix)
	var ex []string
	for _, x := range req.Exclude {
		ex = append(ex, string(x))
	}
	f.exclude = append(f.exclude, ex)
	return f.answer[ix](ctx)
}

// Tickets are "signed" by the indexer whose name is their Indexer field.
func (f *fakeIndexers) OpenTicket(raw []byte) (*pb.SessionTicket, string, error) {
	if string(raw) == "forged" {
		return nil, "", errors.New("bad signature")
	}
	return &pb.SessionTicket{Indexer: raw, Consumer: []byte(f.self), Container: []byte("c1"), App: "demo", PriceMicros: 100}, string(raw), nil
}

func matched(ix string) func(context.Context) (*pb.MatchResponse, error) {
	return func(context.Context) (*pb.MatchResponse, error) {
		return &pb.MatchResponse{Matched: true, Ticket: []byte(ix)}, nil
	}
}

func refused(filter string) func(context.Context) (*pb.MatchResponse, error) {
	return func(context.Context) (*pb.MatchResponse, error) {
		return &pb.MatchResponse{Refused: filter, Detail: "because"}, nil
	}
}

func failing(context.Context) (*pb.MatchResponse, error) { return nil, errors.New("stream reset") }

func slow(ctx context.Context) (*pb.MatchResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestConnectRetriesAnotherIndexer(t *testing.T) {
	req := &pb.MatchRequest{RequestId: []byte("0123456789abcdef"), App: "demo"}
	members := []string{"ix-a", "ix-b", "ix-c"}
	order := Order(req.RequestId, members)
	cases := []struct {
		name      string
		first     func(context.Context) (*pb.MatchResponse, error)
		wantAsked int
		wantMatch bool
		reason    string
	}{
		{"first matches", matched(order[0]), 1, true, ""},
		{"first dies mid-match: one retry", failing, 2, true, ""},
		{"first is slow: one retry", slow, 2, true, ""},
		{"first is off the committee", refused("not_indexer"), 2, true, ""},
		{"first lost every reservation race", refused("reservation"), 2, true, ""},
		{"first forges a ticket", func(context.Context) (*pb.MatchResponse, error) {
			return &pb.MatchResponse{Matched: true, Ticket: []byte("forged")}, nil
		}, 2, true, ""},
		{"first has not indexed a container yet", refused("no_containers"), 2, true, ""},
		{"a filter refusal is final", refused("hardware"), 1, false, "hardware"},
		{"standby is final", refused("standby"), 1, false, "standby"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeIndexers{self: "me", members: members, answer: map[string]func(context.Context) (*pb.MatchResponse, error){}}
			for _, m := range members {
				f.answer[m] = matched(m)
			}
			f.answer[order[0]] = tc.first
			m, err := Connect(context.Background(), f, req, ConnectOptions{AttemptTimeout: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if len(f.asked) != tc.wantAsked || m.Matched != tc.wantMatch || m.Reason != tc.reason {
				t.Fatalf("asked %v, matched %v, reason %q; want %d asked, matched %v, reason %q",
					f.asked, m.Matched, m.Reason, tc.wantAsked, tc.wantMatch, tc.reason)
			}
			if !slices.Equal(f.asked, order[:tc.wantAsked]) {
				t.Fatalf("asked %v, want the request's order %v", f.asked, order)
			}
			if len(m.Attempts) != tc.wantAsked {
				t.Fatalf("%d attempts reported, want %d", len(m.Attempts), tc.wantAsked)
			}
			if m.Matched && m.Indexer != order[tc.wantAsked-1] {
				t.Fatalf("matched by %q, want %q", m.Indexer, order[tc.wantAsked-1])
			}
		})
	}
}

// The containers an indexer could not reach are excluded from the requests to the next indexers,
// at most indexer.MaxExclude of them, each once.
func TestConnectExcludesWhatAnIndexerCouldNotReach(t *testing.T) {
	req := &pb.MatchRequest{RequestId: []byte("0123456789abcdef"), App: "demo"}
	members := []string{"ix-a", "ix-b", "ix-c", "ix-d"}
	order := Order(req.RequestId, members)
	unreachable := func(ids ...string) func(context.Context) (*pb.MatchResponse, error) {
		return func(context.Context) (*pb.MatchResponse, error) {
			r := &pb.MatchResponse{Refused: "reservation", Detail: "out of the consumer's time"}
			for _, id := range ids {
				r.Unreachable = append(r.Unreachable, []byte(id))
			}
			return r, nil
		}
	}
	many := make([]string, 0, 20)
	for i := range 20 {
		many = append(many, fmt.Sprintf("many-%02d", i))
	}
	f := &fakeIndexers{self: "me", members: members, answer: map[string]func(context.Context) (*pb.MatchResponse, error){
		order[0]: unreachable("c1", "c2"),
		order[1]: unreachable(append([]string{"c2", "c3", strings.Repeat("x", indexer.MaxPeerIDBytes+1)}, many...)...),
		order[2]: matched(order[2]),
	}}
	m, err := Connect(context.Background(), f, req, ConnectOptions{AttemptTimeout: time.Second})
	if err != nil || !m.Matched {
		t.Fatalf("matched %v, err %v; want a match by the third", m.Matched, err)
	}
	want := append([]string{"c1", "c2", "c3"}, many[:indexer.MaxExclude-3]...)
	if len(f.exclude) != 3 || len(f.exclude[0]) != 0 || !slices.Equal(f.exclude[1], []string{"c1", "c2"}) || !slices.Equal(f.exclude[2], want) {
		t.Fatalf("requests excluded %q, want none, then [c1 c2], then %q", f.exclude, want)
	}
	if err := indexer.ValidateRequest(req); err != nil {
		t.Fatalf("the request with its exclude list is not valid: %v", err)
	}
}

func TestConnectGivesUpAfterMaxAttempts(t *testing.T) {
	members := []string{"a", "b", "c", "d", "e"}
	f := &fakeIndexers{self: "me", members: members, answer: map[string]func(context.Context) (*pb.MatchResponse, error){}}
	for _, m := range members {
		f.answer[m] = failing
	}
	m, err := Connect(context.Background(), f, &pb.MatchRequest{RequestId: []byte("x"), App: "demo"}, ConnectOptions{MaxAttempts: 3, Clock: clock.NewMock()})
	if err != nil {
		t.Fatal(err)
	}
	if m.Matched || len(f.asked) != 3 || m.Reason != "indexer_failed" {
		t.Fatalf("matched %v after asking %v (reason %q); want a failure after 3", m.Matched, f.asked, m.Reason)
	}
}

// A network with no container at all: every indexer asked says so, the consumer stops after
// MaxAttempts and reports the refusal.
func TestConnectWhenNoIndexerHasAContainer(t *testing.T) {
	members := []string{"a", "b", "c", "d", "e"}
	f := &fakeIndexers{self: "me", members: members, answer: map[string]func(context.Context) (*pb.MatchResponse, error){}}
	for _, m := range members {
		f.answer[m] = refused("no_containers")
	}
	m, err := Connect(context.Background(), f, &pb.MatchRequest{RequestId: []byte("x"), App: "demo"}, ConnectOptions{MaxAttempts: 3, Clock: clock.NewMock()})
	if err != nil {
		t.Fatal(err)
	}
	if m.Matched || len(f.asked) != 3 || m.Reason != "no_containers" || m.Detail != "because" {
		t.Fatalf("matched %v after asking %v (reason %q, %q); want the refusal after 3", m.Matched, f.asked, m.Reason, m.Detail)
	}
}

func TestConnectWithoutIndexers(t *testing.T) {
	f := &fakeIndexers{self: "me"}
	if _, err := Connect(context.Background(), f, &pb.MatchRequest{App: "demo"}, ConnectOptions{}); !errors.Is(err, ErrNoIndexers) {
		t.Fatalf("err %v, want ErrNoIndexers", err)
	}
}

func TestOrderSpreadsRequests(t *testing.T) {
	members := []string{"a", "b", "c", "d"}
	first := map[string]int{}
	for i := range 4000 {
		o := Order([]byte{byte(i), byte(i >> 8)}, members)
		if len(o) != len(members) {
			t.Fatalf("order %v lost members", o)
		}
		first[o[0]]++
	}
	for _, m := range members {
		if first[m] < 800 || first[m] > 1200 {
			t.Fatalf("first choices %v: not spread evenly", first)
		}
	}
	if o := Order([]byte("r"), []string{"a", "a", "b"}); len(o) != 2 {
		t.Fatalf("duplicates kept: %v", o)
	}
}

// connectedIndexers is fakeIndexers with connections to some of the committee.
type connectedIndexers struct {
	*fakeIndexers
	conns map[string]bool
}

func (c connectedIndexers) Connected(p string) bool { return c.conns[p] }

// TestConnectAsksConnectedIndexersFirst: a consumer already connected to some indexers asks them
// first (a request on a new connection pays for the connection first), in the request's order;
// the others follow, in the same order.
func TestConnectAsksConnectedIndexersFirst(t *testing.T) {
	req := &pb.MatchRequest{RequestId: []byte("0123456789abcdef"), App: "demo"}
	members := []string{"ix-a", "ix-b", "ix-c", "ix-d", "ix-e"}
	order := Order(req.RequestId, members)
	warm := map[string]bool{order[3]: true, order[1]: true}
	want := []string{order[1], order[3], order[0], order[2], order[4]}
	if got := ConnectedFirst(order, connectedIndexers{nil, warm}); !slices.Equal(got, want) {
		t.Fatalf("ConnectedFirst: %v, want %v", got, want)
	}
	f := &fakeIndexers{self: "me", members: members, answer: map[string]func(context.Context) (*pb.MatchResponse, error){}}
	for _, ix := range members {
		f.answer[ix] = failing
	}
	f.answer[order[0]] = matched(order[0])
	m, err := Connect(context.Background(), connectedIndexers{f, warm}, req, ConnectOptions{MaxAttempts: 5, Clock: clock.NewMock()})
	if err != nil || !m.Matched {
		t.Fatalf("Connect: %+v, %v", m, err)
	}
	if !slices.Equal(f.asked, want[:3]) {
		t.Fatalf("asked %v, want the connected indexers first: %v", f.asked, want[:3])
	}
	// Without connections: the request's order.
	f.asked = nil
	if _, err := Connect(context.Background(), f, req, ConnectOptions{Clock: clock.NewMock()}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.asked, order[:1]) {
		t.Fatalf("asked %v, want %v", f.asked, order[:1])
	}
}
