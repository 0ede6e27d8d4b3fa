package p2p

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Warm connections: what an indexer holds open to the containers it is likely to reserve next.
const (
	// warmTag protects warm connections from the connection manager's trimming.
	warmTag = "rendermesh-warm"
	// warmDials bounds the dials of warm connections under way at once.
	warmDials = 8
	// warmDialTimeout bounds one such dial.
	warmDialTimeout = 10 * time.Second
)

// warmSet is the state of KeepWarm. Guarded by its mu.
type warmSet struct {
	mu      sync.Mutex
	peers   map[peer.ID]bool // protected
	dialing map[peer.ID]bool
	sem     chan struct{}
}

// KeepWarm makes peers the set of peers this node holds connections to on purpose: each is
// protected from the connection manager's trimming and, when not connected, dialled in the
// background (at most warmDials at once; a failed dial is tried again at the next call). Peers of
// the previous set that are not in peers lose the protection, and the connection manager may trim
// them as any other. The peers' addresses must be in the peerstore (AddAddrs). An empty set
// releases every warm connection.
//
// An indexer calls it every few seconds with the containers it is most likely to reserve next
// (indexer.Index.Warm): a reservation over a warm connection is one round trip, over a cold one a
// dial more (docs/MATCHING.md, "Warm connections").
func (n *Net) KeepWarm(peers []peer.ID) {
	w := &n.warm
	cm := n.host.ConnManager()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.peers == nil {
		w.peers, w.dialing = map[peer.ID]bool{}, map[peer.ID]bool{}
		w.sem = make(chan struct{}, warmDials)
	}
	next := make(map[peer.ID]bool, len(peers))
	for _, p := range peers {
		if p == n.host.ID() || p == "" {
			continue
		}
		next[p] = true
		if !w.peers[p] {
			cm.Protect(p, warmTag)
		}
		if !n.Connected(p) && !w.dialing[p] {
			n.dialWarm(p)
		}
	}
	for p := range w.peers {
		if !next[p] {
			cm.Unprotect(p, warmTag)
		}
	}
	w.peers = next
}

// Warm reports how many peers KeepWarm holds, and how many of them are connected now.
func (n *Net) Warm() (held, connected int) {
	n.warm.mu.Lock()
	defer n.warm.mu.Unlock()
	for p := range n.warm.peers {
		held++
		if n.Connected(p) {
			connected++
		}
	}
	return held, connected
}

// dialWarm dials p in the background, without waiting for identify (the connection's first use
// opens its stream at once; p2p/stream.go). n.warm.mu held.
func (n *Net) dialWarm(p peer.ID) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	n.warm.dialing[p] = true
	go func() {
		defer n.wg.Done()
		defer func() {
			n.warm.mu.Lock()
			delete(n.warm.dialing, p)
			n.warm.mu.Unlock()
		}()
		select {
		case n.warm.sem <- struct{}{}:
		case <-n.ctx.Done():
			return
		}
		defer func() { <-n.warm.sem }()
		ctx, cancel := context.WithTimeout(n.ctx, warmDialTimeout)
		defer cancel()
		if _, err := n.host.Network().DialPeer(ctx, p); err != nil {
			n.log.Debug("warm connection", "peer", p, "err", err)
		}
	}()
}

// Hold protects the connection s runs on from the connection manager's trimming until the
// returned release is called: a session's or a render stream's connection must not be cut for
// being one of many (at its high watermark the manager closes the least valued connections,
// streams or not). Each stream holds its own tag, so one stream's end does not release another's.
func (n *Net) Hold(s network.Stream) (release func()) {
	p := s.Conn().RemotePeer()
	tag := "rendermesh-stream-" + s.ID()
	cm := n.host.ConnManager()
	cm.Protect(p, tag)
	return func() { cm.Unprotect(p, tag) }
}
