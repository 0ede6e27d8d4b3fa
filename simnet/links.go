package simnet

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"github.com/marcopolo/simnet"
	"github.com/quic-go/quic-go"
	"go.uber.org/fx"
)

// links is the simulated Internet between peers: marcopolo/simnet carries the packets (bandwidth,
// queueing, per-packet delay); links decides each packet's delay from the topology and drops it
// when it is lost, when either end has crashed, or when a partition separates the ends.
type links struct {
	topo  *Topology
	seed  uint64
	peers []*peerSpec    // every peer of the plan, by index; fixed before the run starts
	net   *simnet.Simnet // the QUIC model's packets; nil in the stream model
	mem   *memNet        // the stream model (LinksStreams); nil in the QUIC model

	dead    []atomic.Bool // crashed peers
	sent    sync.Map      // pair (from<<32|to) -> *atomic.Uint64: packets sent, the loss draw's counter
	cut     atomic.Bool   // the partition is in force
	dropped atomic.Uint64
	lost    atomic.Uint64
}

func newLinks(model string, topo *Topology, seed uint64, peers []*peerSpec) *links {
	l := &links{topo: topo, seed: seed, peers: peers,
		dead: make([]atomic.Bool, len(peers))}
	if model == LinksStreams {
		l.mem = newMemNet(l)
	} else {
		l.net = &simnet.Simnet{LatencyFunc: l.latency, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	return l
}

func (l *links) start() {
	if l.net != nil {
		l.net.Start()
	}
}

func (l *links) close() {
	if l.net != nil {
		l.net.Close()
	}
}

// blocked says whether nothing gets from peer a to peer b: either has crashed, or the partition
// separates them.
func (l *links) blocked(a, b int) bool {
	return l.dead[a].Load() || l.dead[b].Load() || (l.cut.Load() && l.peers[a].side != l.peers[b].side)
}

// setCut starts (true) or heals (false) the partition.
func (l *links) setCut(on bool) {
	l.cut.Store(on)
	if l.mem != nil {
		l.mem.update()
	}
}

// kill makes peer i's links dead: a crash.
func (l *links) kill(i int) {
	l.dead[i].Store(true)
	if l.mem != nil {
		l.mem.update()
	}
}

func (l *links) latency(p *simnet.Packet) time.Duration {
	a, ok1 := peerIndex(p.From)
	b, ok2 := peerIndex(p.To)
	if !ok1 || !ok2 {
		return time.Millisecond
	}
	return l.topo.oneWay(l.seed, l.peers[a], l.peers[b])
}

// rtt is the topology's round trip between peers a and b (both directions' one-way delays).
func (l *links) rtt(a, b int) time.Duration {
	return l.topo.oneWay(l.seed, l.peers[a], l.peers[b]) + l.topo.oneWay(l.seed, l.peers[b], l.peers[a])
}

// drop decides whether a packet from peer a to peer b is lost.
func (l *links) drop(a, b int) bool {
	if l.blocked(a, b) {
		l.dropped.Add(1)
		return true
	}
	if l.topo.Loss > 0 {
		// Counted per pair, not per sender: a pair's packets come in an order the simulation
		// reproduces, a sender's packets to all its peers interleave as goroutines happen to run.
		pair := uint64(a)<<32 | uint64(b)
		c, ok := l.sent.Load(pair)
		if !ok {
			c, _ = l.sent.LoadOrStore(pair, new(atomic.Uint64))
		}
		n := c.(*atomic.Uint64).Add(1)
		if unit(splitmix64(l.seed^pair*0x9e3779b97f4a7c15^n)) < l.topo.Loss {
			l.lost.Add(1)
			return true
		}
	}
	return false
}

// transports is what a peer's libp2p host uses instead of the operating system's sockets: QUIC
// over a simnet endpoint at the peer's address, behind a conn that applies loss, crashes and cuts.
func (l *links) transports(idx int) []libp2p.Option {
	if l.mem != nil {
		return l.mem.transports(idx)
	}
	spec := l.peers[idx]
	bps := spec.mbps * 1_000_000
	settings := simnet.NodeBiDiLinkSettings{
		Downlink: simnet.LinkSettings{BitsPerSecond: bps},
		Uplink:   simnet.LinkSettings{BitsPerSecond: bps},
	}
	sel := &fixedSourceIP{ip: peerIP(idx)}
	reuse := []quicreuse.Option{
		quicreuse.OverrideSourceIPSelector(func() (quicreuse.SourceIPSelector, error) { return sel, nil }),
		quicreuse.OverrideListenUDP(func(_ string, addr *net.UDPAddr) (net.PacketConn, error) {
			return &linkConn{SimConn: l.net.NewEndpoint(addr, settings), l: l, idx: idx}, nil
		}),
	}
	return []libp2p.Option{
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.QUICReuse(func(lc fx.Lifecycle, reset quic.StatelessResetKey, token quic.TokenGeneratorKey, opts ...quicreuse.Option) (*quicreuse.ConnManager, error) {
			cm, err := quicreuse.NewConnManager(reset, token, opts...)
			if err != nil {
				return nil, err
			}
			lc.Append(fx.StopHook(cm.Close)) // a connection manager passed in is not closed by the host
			return cm, nil
		}, reuse...),
		// Identify's address discovery keeps timers that stall synctest (x/simlibp2p does the same).
		libp2p.DisableIdentifyAddressDiscovery(),
		noBlackHoles(),
	}
}

// noBlackHoles turns off the swarm's UDP black-hole detection, which stops dialling UDP
// addresses after 95% of a peer's last 100 UDP dials failed, for whatever reason. The simulated
// Internet blocks no UDP, and in a run of 1,000 peers the detector fired anyway: dials refused by
// a busy peer's own resource manager (its outbound connections at their limit while it joined)
// count as failures, and the peer then refused to dial the container it had been matched with
// ("dial refused because of black hole": 5 of the 6 failed sessions in the 1,000-peer match run).
func noBlackHoles() libp2p.Option {
	return libp2p.ChainOptions(libp2p.UDPBlackHoleSuccessCounter(nil), libp2p.IPv6BlackHoleSuccessCounter(nil))
}

// listenAddr is peer i's one listen address.
func listenAddr(i int) string { return "/ip4/" + peerIP(i).String() + "/udp/8000/quic-v1" }

type fixedSourceIP struct{ ip net.IP }

func (s *fixedSourceIP) PreferredSourceIPForDestination(*net.UDPAddr) (net.IP, error) {
	return s.ip, nil
}

// linkConn is a peer's UDP socket on the simulated Internet.
type linkConn struct {
	*simnet.SimConn
	l   *links
	idx int
}

func (c *linkConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if dst, ok := peerIndex(addr); ok && c.l.drop(c.idx, dst) {
		return len(b), nil // lost on the way, as UDP does
	}
	return c.SimConn.WriteTo(b, addr)
}
