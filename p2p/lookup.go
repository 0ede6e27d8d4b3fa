package p2p

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"
)

// Lookups and peers that stop answering.
//
// A DHT lookup asks the peers nearest its key until the nearest it knows have all answered, then
// asks the rest of the nearest k as a follow-up and waits for them too. kad-dht waits 10 s for a
// peer's answer, and drops the peer from its routing table only if the caller's context is still
// alive by then. A peer that has crashed (its connections still look open) or sits behind a network
// cut thus holds every lookup that comes near it for 10 s, for as long as any peer names it: in a
// 20-peer simnet after one crash, every capability query waited out its 10 s timeout for a minute,
// and in a 100-peer run with a tenth of the peers crashing over an epoch, one query in ten took
// over 6 s.
//
// Reads here (StreamProviders, ContainerRecord, Committee, Reach's FindPeer) follow their lookup's events
// instead. A lookup that has gone Config.LookupPatience without a peer answering or being asked is
// waiting on silent peers only: it ends with what it found, and those peers are suspected. A
// suspect leaves the routing table (as kad-dht would drop it after its own 10 s) and this node's
// lookups skip it (the DHT's query filter) for suspectFor, or until a new connection with it opens.
// A slow peer taken for a dead one costs little: the DHT keeps each record and provider record on
// the 20 peers nearest its key.

// suspectFor is how long a peer that left a lookup waiting is skipped by this node's lookups, unless
// a new connection with it opens first. Long enough to outlast the other peers' routing tables
// naming a crashed peer (they drop it at their own next lookup near it, or their refresh).
const suspectFor = 5 * time.Minute

// suspects are the peers this node's lookups skip, each until a time.
type suspects struct {
	n       atomic.Int32 // len(until), read without the lock on every new connection
	mu      sync.Mutex
	until   map[peer.ID]time.Time
	sweepAt int // len(until) at which add forgets the expired (crashed peers are never asked about again)
}

// suspectsSweep is the least sweepAt.
const suspectsSweep = 256

func (s *suspects) add(p peer.ID, until, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = map[peer.ID]time.Time{}
	}
	s.until[p] = until
	if len(s.until) >= max(s.sweepAt, suspectsSweep) {
		for q, t := range s.until {
			if !now.Before(t) {
				delete(s.until, q)
			}
		}
		s.sweepAt = 2 * len(s.until)
	}
	s.n.Store(int32(len(s.until)))
}

// has says whether p is suspected at now, and forgets p if its time is up.
func (s *suspects) has(p peer.ID, now time.Time) bool {
	if s.n.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.until[p]
	if ok && !now.Before(t) {
		delete(s.until, p)
		s.n.Store(int32(len(s.until)))
		ok = false
	}
	return ok
}

func (s *suspects) clear(p peer.ID) {
	if s.n.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.until, p)
	s.n.Store(int32(len(s.until)))
}

// Suspected says whether this node's lookups skip p (it left one waiting; see lookup.go).
func (n *Net) Suspected(p peer.ID) bool { return n.suspects.has(p, n.cfg.Clock.Now()) }

// queryFilter is the DHT's query filter: lookups skip suspects that other peers name.
func (n *Net) queryFilter(_ any, ai peer.AddrInfo) bool { return !n.Suspected(ai.ID) }

// suspectNotifee clears a peer's suspicion when a new connection with it opens: it is alive.
type suspectNotifee struct{ s *suspects }

func (s suspectNotifee) Connected(_ network.Network, c network.Conn) { s.s.clear(c.RemotePeer()) }
func (suspectNotifee) Disconnected(network.Network, network.Conn)    {}
func (suspectNotifee) Listen(network.Network, ma.Multiaddr)          {}
func (suspectNotifee) ListenClose(network.Network, ma.Multiaddr)     {}

// patientLookup returns the context for one DHT read: it ends when ctx ends, at done, or when the
// read's lookups have gone the patience without a peer answering or being asked. In that last case
// the peers they were waiting on are suspected, and done reports true. Query events still reach
// whoever registered for them on ctx. done must be called once the read returns.
func (n *Net) patientLookup(ctx context.Context) (lctx context.Context, done func() (stalled bool)) {
	patience := n.cfg.LookupPatience
	if patience < 0 {
		return ctx, func() bool { return false }
	}
	cctx, cancel := context.WithCancel(ctx)
	lctx, events := routing.RegisterForQueryEvents(cctx)
	forward := routing.SubscribesToQueryEvents(ctx)
	var stalled atomic.Bool
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		waiting := map[peer.ID]bool{} // asked or being dialled, no answer yet
		timer := n.cfg.Clock.Timer(patience)
		defer timer.Stop()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					return // cctx ended: the read returned, or ctx ended
				}
				if forward {
					routing.PublishQueryEvent(ctx, ev)
				}
				switch ev.Type {
				case routing.SendingQuery, routing.DialingPeer:
					if ev.ID != "" {
						waiting[ev.ID] = true
					}
				case routing.PeerResponse, routing.QueryError:
					delete(waiting, ev.ID)
				}
				timer.Reset(patience)
			case <-timer.C:
				if stalled.Load() {
					continue // ended: events still in flight until the channel closes
				}
				if len(waiting) == 0 {
					// Nothing asked and nothing heard: the read is not in a lookup (a local answer, or
					// between two lookups). Keep watching.
					timer.Reset(patience)
					continue
				}
				stalled.Store(true)
				n.suspect(waiting)
				cancel()
			}
		}
	}()
	return lctx, func() bool {
		cancel()
		<-finished
		return stalled.Load()
	}
}

// suspect records peers that left a lookup waiting: this node's lookups skip them for suspectFor,
// and they leave its routing table.
func (n *Net) suspect(ps map[peer.ID]bool) {
	now := n.cfg.Clock.Now()
	for p := range ps {
		n.suspects.add(p, now.Add(suspectFor), now)
		n.dht.RoutingTable().RemovePeer(p)
	}
	n.cfg.Metrics.LookupStalls.Inc()
	n.log.Debug("DHT lookup ended waiting on silent peers", "peers", len(ps))
}
