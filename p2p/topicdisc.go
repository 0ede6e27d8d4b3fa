package p2p

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Bounds of the pause between two DHT lookups for a topic's peers (topicDiscovery).
const (
	topicDiscoveryMinBackoff = time.Second
	topicDiscoveryMaxBackoff = 2 * time.Minute
)

// topicDiscovery is how gossipsub finds the peers of a topic: the providers of the topic's key in
// the DHT (the wrapped discovery), looked up again only after a pause that doubles, from 1 s to 2
// min, each time a lookup finds the same peers as the one before, and starts again from 1 s when
// it finds others. In between, a lookup answers with the peers found last.
//
// gossipsub asks every second for each topic whose mesh is short of its low watermark (5), and a
// topic with fewer peers than that in the whole network (a region with four containers) never
// stops being short: without the pause, each of its peers walked the whole DHT for it again and
// again, for ever (about 2,000 lookups a minute in a 30-node devnet, most of its DHT traffic).
// go-libp2p's backoff discovery does the same but starts again whenever a peer's addresses differ,
// which they do from one lookup to the next: it did not lower the count. Peers that join a topic
// later find this one at once, through their own first lookup.
type topicDiscovery struct {
	disc  discovery.Discovery
	clock clock.Clock

	mu     sync.Mutex
	rng    *mrand.Rand // the pauses' jitter
	topics map[string]*topicPeers
}

// topicPeers is what topicDiscovery knows of one topic.
type topicPeers struct {
	found   map[peer.ID]peer.AddrInfo // by the last lookup
	pause   time.Duration             // before the next lookup, once this one ends
	next    time.Time                 // when a lookup may walk the DHT again
	ongoing bool
}

// newTopicDiscovery wraps disc for the node self, whose peer ID seeds the pauses' jitter (so that
// simnet runs repeat).
func newTopicDiscovery(disc discovery.Discovery, clk clock.Clock, self peer.ID) *topicDiscovery {
	if clk == nil {
		clk = clock.New()
	}
	h := sha256.Sum256([]byte(self))
	return &topicDiscovery{disc: disc, clock: clk, topics: map[string]*topicPeers{},
		rng: mrand.New(mrand.NewPCG(binary.BigEndian.Uint64(h[:8]), binary.BigEndian.Uint64(h[8:16])))}
}

// Advertise implements discovery.Advertiser.
func (t *topicDiscovery) Advertise(ctx context.Context, ns string, opts ...discovery.Option) (time.Duration, error) {
	return t.disc.Advertise(ctx, ns, opts...)
}

// FindPeers implements discovery.Discoverer.
func (t *topicDiscovery) FindPeers(ctx context.Context, ns string, opts ...discovery.Option) (<-chan peer.AddrInfo, error) {
	var o discovery.Options
	if err := o.Apply(opts...); err != nil {
		return nil, err
	}
	t.mu.Lock()
	tp := t.topics[ns]
	if tp == nil {
		tp = &topicPeers{pause: topicDiscoveryMinBackoff}
		t.topics[ns] = tp
	}
	if tp.ongoing || t.clock.Now().Before(tp.next) {
		out := cachedPeers(tp.found, o.Limit)
		t.mu.Unlock()
		return out, nil
	}
	tp.ongoing = true
	t.mu.Unlock()

	in, err := t.disc.FindPeers(ctx, ns, opts...)
	if err != nil {
		t.done(tp, nil, false)
		return nil, err
	}
	out := make(chan peer.AddrInfo, 16)
	go func() {
		defer close(out)
		found := map[peer.ID]peer.AddrInfo{}
		for ai := range in { // read to the end, so that the lookup finishes
			found[ai.ID] = ai
			select {
			case out <- ai:
			case <-ctx.Done():
			}
		}
		t.done(tp, found, ctx.Err() == nil)
	}()
	return out, nil
}

// done ends a lookup: the next one is due after the topic's pause, which doubles when the lookup
// found the peers of the one before and starts again when it found others (or failed).
func (t *topicDiscovery) done(tp *topicPeers, found map[peer.ID]peer.AddrInfo, complete bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tp.ongoing = false
	switch {
	case !complete:
		tp.pause = topicDiscoveryMinBackoff
	case samePeers(found, tp.found):
		tp.pause = min(2*tp.pause, topicDiscoveryMaxBackoff)
	default:
		tp.pause = topicDiscoveryMinBackoff
	}
	if complete {
		tp.found = found
	}
	// Full jitter over the upper half: nodes that joined together do not ask together.
	half := tp.pause / 2
	tp.next = t.clock.Now().Add(half + time.Duration(t.rng.Int64N(int64(half)+1)))
}

func samePeers(a, b map[peer.ID]peer.AddrInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for id := range a {
		if _, ok := b[id]; !ok {
			return false
		}
	}
	return true
}

// cachedPeers sends the peers found last, in peer ID order, at most limit of them (0: all).
func cachedPeers(found map[peer.ID]peer.AddrInfo, limit int) <-chan peer.AddrInfo {
	ids := make([]peer.ID, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	out := make(chan peer.AddrInfo, len(ids))
	for _, id := range ids {
		out <- found[id]
	}
	close(out)
	return out
}
