package p2p

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/peer"
)

// scriptedDiscovery answers each FindPeers with the next peer set of its script (the last one
// again when the script runs out), counting the lookups.
type scriptedDiscovery struct {
	mu      sync.Mutex
	script  [][]peer.ID
	lookups int
	fail    bool
}

func (s *scriptedDiscovery) Advertise(context.Context, string, ...discovery.Option) (time.Duration, error) {
	return time.Hour, nil
}

func (s *scriptedDiscovery) FindPeers(context.Context, string, ...discovery.Option) (<-chan peer.AddrInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return nil, errors.New("no route")
	}
	ids := s.script[min(s.lookups, len(s.script)-1)]
	s.lookups++
	out := make(chan peer.AddrInfo, len(ids))
	for _, id := range ids {
		out <- peer.AddrInfo{ID: id}
	}
	close(out)
	return out, nil
}

func (s *scriptedDiscovery) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups
}

func collect(t *testing.T, d *topicDiscovery, opts ...discovery.Option) []peer.ID {
	t.Helper()
	ch, err := d.FindPeers(context.Background(), "topic", opts...)
	if err != nil {
		t.Fatal(err)
	}
	var ids []peer.ID
	for ai := range ch {
		ids = append(ids, ai.ID)
	}
	for { // the lookup's end is recorded just after the channel closes: wait for it
		d.mu.Lock()
		ongoing := d.topics["topic"].ongoing
		d.mu.Unlock()
		if !ongoing {
			break
		}
		time.Sleep(time.Millisecond)
	}
	slices.Sort(ids)
	return ids
}

// A topic whose lookups keep finding the same peers is looked up again after pauses that double
// up to two minutes; in between, FindPeers answers with the peers found last. A lookup that finds
// other peers starts the pauses again from a second.
func TestTopicDiscoveryBacksOff(t *testing.T) {
	a, b, c := peer.ID("a"), peer.ID("b"), peer.ID("c")
	src := &scriptedDiscovery{script: [][]peer.ID{{a, b}, {a, b}, {a, b}, {b, a}, {a, b, c}}}
	clk := clock.NewMock()
	d := newTopicDiscovery(src, clk, "self")

	if got := collect(t, d); !slices.Equal(got, []peer.ID{a, b}) || src.count() != 1 {
		t.Fatalf("first lookup: %v, %d lookups", got, src.count())
	}
	// The first pause: a second at most (jitter over its upper half), then a lookup again.
	if got := collect(t, d); !slices.Equal(got, []peer.ID{a, b}) || src.count() != 1 {
		t.Fatalf("within the pause: %v, %d lookups; want the cached peers and no lookup", got, src.count())
	}
	if got := collect(t, d, discovery.Limit(1)); len(got) != 1 || src.count() != 1 {
		t.Fatalf("cached, limit 1: %v", got)
	}
	var pauses []time.Duration
	for range 3 { // the same peers three more times: the pause doubles each time
		wait := pauseOf(d)
		pauses = append(pauses, wait)
		clk.Add(wait - time.Nanosecond)
		collect(t, d)
		before := src.count()
		clk.Add(time.Nanosecond)
		collect(t, d)
		if src.count() != before+1 {
			t.Fatalf("no lookup when the pause of %v ended", wait)
		}
	}
	for i, p := range pauses {
		hi := topicDiscoveryMinBackoff << i
		if p < hi/2 || p > hi {
			t.Errorf("pause %d: %v, want %v to %v", i, p, hi/2, hi)
		}
	}
	// The fifth lookup finds c as well: back to a second.
	clk.Add(pauseOf(d))
	collect(t, d)
	if p := pauseOf(d); p > topicDiscoveryMinBackoff {
		t.Errorf("after new peers: pause %v, want a second at most", p)
	}
	if got := collect(t, d); !slices.Equal(got, []peer.ID{a, b, c}) {
		t.Errorf("cached after the change: %v", got)
	}
	// The pause stops growing at two minutes.
	for range 12 {
		clk.Add(pauseOf(d))
		collect(t, d)
	}
	if p := pauseOf(d); p > topicDiscoveryMaxBackoff || p < topicDiscoveryMaxBackoff/2 {
		t.Errorf("pause %v after many equal lookups, want at most %v", p, topicDiscoveryMaxBackoff)
	}
	// A failed lookup is an error, and the next one is due after a second.
	src.mu.Lock()
	src.fail = true
	src.mu.Unlock()
	clk.Add(pauseOf(d))
	if _, err := d.FindPeers(context.Background(), "topic"); err == nil {
		t.Error("a failed lookup gave no error")
	}
	if p := pauseOf(d); p > topicDiscoveryMinBackoff {
		t.Errorf("after a failure: pause %v", p)
	}
}

// A caller that stops reading does not stop the lookup: it is read to its end, and recorded.
func TestTopicDiscoveryCallerGone(t *testing.T) {
	ids := make([]peer.ID, 40) // more than the forwarding channel holds
	for i := range ids {
		ids[i] = peer.ID(rune('A' + i))
	}
	src := &scriptedDiscovery{script: [][]peer.ID{ids}}
	d := newTopicDiscovery(src, clock.NewMock(), "self")
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := d.FindPeers(ctx, "topic"); err != nil {
		t.Fatal(err)
	}
	cancel()
	for {
		d.mu.Lock()
		tp := d.topics["topic"]
		ongoing := tp.ongoing
		d.mu.Unlock()
		if !ongoing {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if got := collect(t, d); len(got) != 0 && len(got) != len(ids) {
		t.Errorf("after an abandoned lookup the cache holds %d peers", len(got))
	}
}

// pauseOf is how long from now the topic's next lookup is due.
func pauseOf(d *topicDiscovery) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.topics["topic"].next.Sub(d.clock.Now())
}
