package simnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/transport"
	ma "github.com/multiformats/go-multiaddr"
)

// The stream link model (--links streams): a libp2p transport whose connections are in-memory
// pairs of ends carrying whole writes, delayed by the same topology as the QUIC model. It keeps
// everything above the transport real (swarm, resource and connection managers, identify,
// multistream, kad-dht, gossipsub, the node) and replaces what QUIC and TLS do with their timing:
//
//   - a dial takes one round trip (QUIC with TLS 1.3 completes in one), and the listener learns of
//     the connection half a round trip later; a dial to a peer that is not listening, has crashed
//     or is cut off fails after QUIC's 5-second handshake timeout; the peer ID is checked as TLS
//     checks it, and both ends' resource managers are asked as QUIC's listener and dialer ask;
//   - every write arrives after the pair's one-way delay plus its serialisation on the sender's
//     access link (writes queue on it) and the receiver's, in order within a connection;
//   - a write that loses one of its packets (the topology's loss rate, per 1,200-byte packet) is
//     late by the time QUIC takes to notice and resend it (9/8 of a round trip, plus the way over);
//   - while a partition separates two peers or either has crashed, their connections carry
//     nothing (writes wait, as QUIC retransmits) and close after QUIC's 30-second idle timeout;
//     when the cut heals in time, what waited is delivered.
//
// Security is by fiat: the simulation knows each listener's key. What is lost is the CPU and
// memory of the cryptography and of QUIC's state machines, which is the point: docs/SIMNET.md has
// the measurements that chose between the two models.

const (
	// LinksStreams names this model in the summary.
	LinksStreams = "streams"

	memHandshakeTimeout = 5 * time.Second  // quic-go's HandshakeIdleTimeout
	memIdleTimeout      = 30 * time.Second // quic-go's MaxIdleTimeout
	memPacket           = 1200             // bytes of payload per packet, for loss and overhead
	memPacketOverhead   = 48               // IP, UDP and QUIC short header, per packet
)

var (
	errMemConnClosed  = errors.New("simnet: connection closed")
	errMemReadClosed  = errors.New("simnet: read on a stream closed for reading")
	errMemWriteClosed = errors.New("simnet: write on a stream closed for writing")
	errMemTimeout     = errors.New("simnet: timeout: no recent network activity (handshake)")
)

// memNet is every peer's transport in one run of the stream model.
type memNet struct {
	l *links

	mu     sync.Mutex
	listen map[int]*memTransport // listening peers by index
	upFree []time.Time           // when each peer's uplink is next free
	pairs  map[*memConn]struct{} // dialling ends of the open connections
	tick   time.Duration         // the delivery grid (Topology.TickMs); 0: exact times
}

func newMemNet(l *links) *memNet {
	return &memNet{l: l, listen: map[int]*memTransport{}, upFree: make([]time.Time, len(l.peers)),
		pairs: map[*memConn]struct{}{}, tick: time.Duration(l.topo.TickMs * float64(time.Millisecond))}
}

// onTick rounds t up to the delivery grid. Writes and dials that complete within one tick of each
// other then complete at the same simulated instant, and the bubble runs what they wake together,
// on every P, instead of one instant at a time (docs/SIMNET.md, "Links: two models").
func (n *memNet) onTick(t time.Time) time.Time {
	if n.tick <= 0 {
		return t
	}
	if r := time.Duration(t.UnixNano() % int64(n.tick)); r != 0 {
		return t.Add(n.tick - r)
	}
	return t
}

// wait sleeps d of simulated time, to the next tick, or until ctx ends.
func (n *memNet) wait(ctx context.Context, d time.Duration) error {
	now := time.Now()
	tm := time.NewTimer(n.onTick(now.Add(d)).Sub(now))
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// txTime is how long n bytes take on peer i's access link.
func (n *memNet) txTime(i, bytes int) time.Duration {
	return time.Duration(int64(bytes) * 8 * int64(time.Second) / (int64(n.l.peers[i].mbps) * 1_000_000))
}

// arrival is when a write of size bytes sent now from peer a reaches peer b, loss aside.
func (n *memNet) arrival(a, b, size int, now time.Time) time.Time {
	wire := size + (size/memPacket+1)*memPacketOverhead
	n.mu.Lock()
	start := now
	if n.upFree[a].After(start) {
		start = n.upFree[a]
	}
	sent := start.Add(n.txTime(a, wire))
	n.upFree[a] = sent
	n.mu.Unlock()
	// The receiver's access link adds its serialisation time, without a queue: writes from many
	// senders arrive in an order only the future knows, so queueing them here would be wrong.
	return sent.Add(n.l.topo.oneWay(n.l.seed, n.l.peers[a], n.l.peers[b]) + n.txTime(b, wire))
}

func (n *memNet) rtt(a, b int) time.Duration { return n.l.rtt(a, b) }

// update applies a change of the partition or of a peer's life to every open connection.
func (n *memNet) update() {
	n.mu.Lock()
	pairs := make([]*memConn, 0, len(n.pairs))
	for c := range n.pairs {
		pairs = append(pairs, c)
	}
	n.mu.Unlock()
	for _, c := range pairs {
		c.stall(n.l.blocked(c.local, c.remote))
	}
}

func (n *memNet) forget(c *memConn) {
	n.mu.Lock()
	delete(n.pairs, c)
	delete(n.pairs, c.peer)
	n.mu.Unlock()
}

// transports is the libp2p option that gives peer idx its stream-model transport.
func (n *memNet) transports(idx int) []libp2p.Option {
	return []libp2p.Option{
		libp2p.Transport(func(key crypto.PrivKey, rm network.ResourceManager) (*memTransport, error) {
			id, err := peer.IDFromPrivateKey(key)
			if err != nil {
				return nil, err
			}
			addr, err := ma.NewMultiaddr(listenAddr(idx))
			if err != nil {
				return nil, err
			}
			return &memTransport{n: n, idx: idx, id: id, pub: key.GetPublic(), rcmgr: rm, addr: addr}, nil
		}),
		libp2p.DisableIdentifyAddressDiscovery(),
		noBlackHoles(),
	}
}

// addrIndex is the peer index of a simulated QUIC address, /ip4/1.x.y.z/udp/8000/quic-v1.
func addrIndex(a ma.Multiaddr) (int, bool) {
	ip, err := a.ValueForProtocol(ma.P_IP4)
	if err != nil {
		return 0, false
	}
	if _, err := a.ValueForProtocol(ma.P_UDP); err != nil {
		return 0, false
	}
	if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err != nil {
		return 0, false
	}
	return peerIndex(&net.UDPAddr{IP: net.ParseIP(ip)})
}

// memTransport is one peer's transport.
type memTransport struct {
	n     *memNet
	idx   int
	id    peer.ID
	pub   crypto.PubKey
	rcmgr network.ResourceManager
	addr  ma.Multiaddr

	mu sync.Mutex
	ln *memListener
}

var _ transport.Transport = (*memTransport)(nil)

func (t *memTransport) Protocols() []int { return []int{ma.P_QUIC_V1} }
func (t *memTransport) Proxy() bool      { return false }
func (t *memTransport) CanDial(a ma.Multiaddr) bool {
	_, ok := addrIndex(a)
	return ok
}

func (t *memTransport) Listen(laddr ma.Multiaddr) (transport.Listener, error) {
	if i, ok := addrIndex(laddr); !ok || i != t.idx {
		return nil, fmt.Errorf("simnet: peer %d cannot listen on %s", t.idx, laddr)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln != nil {
		return nil, fmt.Errorf("simnet: peer %d already listens", t.idx)
	}
	t.ln = &memListener{t: t, queue: newInbox[*memConn]()}
	t.n.mu.Lock()
	t.n.listen[t.idx] = t
	t.n.mu.Unlock()
	return t.ln, nil
}

func (t *memTransport) listener() *memListener {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ln
}

func (t *memTransport) Dial(ctx context.Context, raddr ma.Multiaddr, p peer.ID) (transport.CapableConn, error) {
	j, ok := addrIndex(raddr)
	if !ok {
		return nil, fmt.Errorf("simnet: cannot dial %s", raddr)
	}
	scope, err := t.rcmgr.OpenConnection(network.DirOutbound, false, raddr)
	if err != nil {
		return nil, err
	}
	if err := scope.SetPeer(p); err != nil {
		scope.Done()
		return nil, err
	}
	c, err := t.dial(ctx, j, p, raddr, scope)
	if err != nil {
		scope.Done()
		return nil, err
	}
	return c, nil
}

func (t *memTransport) dial(ctx context.Context, j int, p peer.ID, raddr ma.Multiaddr, scope network.ConnManagementScope) (*memConn, error) {
	n := t.n
	reachable := func() *memTransport {
		n.mu.Lock()
		r := n.listen[j]
		n.mu.Unlock()
		if r == nil || r.listener() == nil || n.l.blocked(t.idx, j) {
			return nil
		}
		return r
	}
	began := time.Now()
	timeout := func() error {
		if err := n.wait(ctx, memHandshakeTimeout-time.Since(began)); err != nil {
			return err
		}
		return errMemTimeout
	}
	if reachable() == nil {
		return nil, timeout()
	}
	if err := n.wait(ctx, n.rtt(t.idx, j)); err != nil {
		return nil, err
	}
	r := reachable()
	if r == nil {
		return nil, timeout()
	}
	if r.id != p {
		return nil, fmt.Errorf("simnet: peer id mismatch: expected %s, got %s", p, r.id)
	}
	// The remote's resource manager refusing: the dialler learns that it was refused, not the
	// remote's error value (over QUIC it sees the connection closed), so the cause is only text.
	// A node tells its own limits from the remote's by the error (node.ownLimit).
	rs, err := r.rcmgr.OpenConnection(network.DirInbound, false, t.addr)
	if err != nil {
		return nil, fmt.Errorf("simnet: %s refused the connection: %v", p, err)
	}
	if err := rs.SetPeer(t.id); err != nil {
		rs.Done()
		return nil, fmt.Errorf("simnet: %s refused the connection: %v", p, err)
	}
	a := newMemConn(t, j, p, r.pub, t.addr, raddr, scope)
	b := newMemConn(r, t.idx, t.id, t.pub, r.addr, t.addr, rs)
	a.peer, b.peer = b, a
	a.out, b.out = &pipe{n: n, from: t.idx, to: j, dst: b}, &pipe{n: n, from: j, to: t.idx, dst: a}
	n.mu.Lock()
	n.pairs[a] = struct{}{}
	n.mu.Unlock()
	if n.l.blocked(t.idx, j) {
		a.stall(true)
	}
	// The client's last handshake flight tells the listener.
	a.out.send(frame{kind: fAccept})
	return a, nil
}

// memListener hands inbound connections to the swarm.
type memListener struct {
	t     *memTransport
	queue *inbox[*memConn]
}

func (l *memListener) Accept() (transport.CapableConn, error) {
	c, ok := l.queue.pop()
	if !ok {
		return nil, transport.ErrListenerClosed
	}
	return c, nil
}

func (l *memListener) push(c *memConn) bool { return l.queue.push(c) }

func (l *memListener) Close() error {
	queue, first := l.queue.close()
	if !first {
		return nil
	}
	l.t.n.mu.Lock()
	if l.t.n.listen[l.t.idx] == l.t {
		delete(l.t.n.listen, l.t.idx)
	}
	l.t.n.mu.Unlock()
	for _, c := range queue {
		c.Close()
	}
	return nil
}

func (l *memListener) Addr() net.Addr          { return &net.UDPAddr{IP: peerIP(l.t.idx), Port: 8000} }
func (l *memListener) Multiaddr() ma.Multiaddr { return l.t.addr }

// inbox is a queue that deliveries fill and one waiting reader empties, until it is closed.
type inbox[T any] struct {
	mu     sync.Mutex
	items  []T
	closed bool
	notify chan struct{}
	done   chan struct{}
}

func newInbox[T any]() *inbox[T] {
	return &inbox[T]{notify: make(chan struct{}, 1), done: make(chan struct{})}
}

// push adds x; false if the inbox is closed.
func (q *inbox[T]) push(x T) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.items = append(q.items, x)
	ping(q.notify)
	return true
}

// pop waits for an item; false once the inbox is closed.
func (q *inbox[T]) pop() (T, bool) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			var zero T
			return zero, false
		}
		if len(q.items) > 0 {
			x := q.items[0]
			q.items = q.items[1:]
			q.mu.Unlock()
			return x, true
		}
		q.mu.Unlock()
		select {
		case <-q.notify:
		case <-q.done:
		}
	}
}

// close closes the inbox and returns what it held; first is false if it was closed already.
func (q *inbox[T]) close() (left []T, first bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, false
	}
	q.closed = true
	left, q.items = q.items, nil
	close(q.done)
	return left, true
}

func ping(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// frame kinds: what travels through a pipe.
const (
	fAccept = iota // the connection, to the listener
	fOpen          // a new stream
	fData
	fFin   // the sender closed its write side
	fReset // the sender reset the stream
	fClose // the sender closed the connection
)

type frame struct {
	kind uint8
	code uint32
	s    *memStream // the receiving end
	data []byte
	at   time.Time
}

// pipe is one direction of a connection: frames in flight, delivered in order by one timer.
type pipe struct {
	n        *memNet
	from, to int
	dst      *memConn

	applyMu sync.Mutex // held while delivering, so that deliveries keep their order
	mu      sync.Mutex
	q       []frame // frames in flight: q[head:]
	head    int
	last    time.Time // arrival of the newest frame
	timer   *time.Timer
	stalled bool
	held    []frame
	sent    uint64 // packets, the loss draw's counter
}

func (p *pipe) send(f frame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.held = append(p.held, f)
		return
	}
	p.enqueue(f, time.Now())
}

func (p *pipe) enqueue(f frame, now time.Time) {
	at := p.n.arrival(p.from, p.to, len(f.data), now)
	if loss := p.n.l.topo.Loss; loss > 0 {
		pair := uint64(p.from)<<32 | uint64(p.to)
		for range len(f.data)/memPacket + 1 {
			p.sent++
			if unit(splitmix64(p.n.l.seed^pair*0x9e3779b97f4a7c15^p.sent)) < loss {
				p.n.l.lost.Add(1)
				rtt := p.n.rtt(p.from, p.to)
				at = at.Add(rtt*9/8 + rtt/2)
				break
			}
		}
	}
	at = p.n.onTick(at)
	if at.Before(p.last) {
		at = p.last
	}
	p.last = at
	f.at = at
	if len(p.q) == cap(p.q) && p.head > 0 { // full, with delivered frames in front: move up
		n := copy(p.q, p.q[p.head:])
		clear(p.q[n:])
		p.q, p.head = p.q[:n], 0
	}
	p.q = append(p.q, f)
	if len(p.q)-p.head == 1 {
		if p.timer == nil {
			p.timer = time.AfterFunc(at.Sub(now), p.deliver)
		} else {
			p.timer.Reset(at.Sub(now))
		}
	}
}

func (p *pipe) deliver() {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	now := time.Now()
	for {
		// One frame at a time, without copying out what is due: frames sent meanwhile queue
		// behind, and those due by now go out in this call.
		p.mu.Lock()
		if p.head == len(p.q) || p.q[p.head].at.After(now) {
			if p.head < len(p.q) {
				p.timer.Reset(p.q[p.head].at.Sub(now))
			}
			p.mu.Unlock()
			return
		}
		f := p.q[p.head]
		p.q[p.head] = frame{}
		p.head++
		if p.head == len(p.q) { // drained: the next frames reuse the array, unless a burst grew it
			p.q, p.head = p.q[:0], 0
			if cap(p.q) > keepPipeQueue {
				p.q = nil
			}
		}
		p.mu.Unlock()
		p.dst.apply(f)
	}
}

// stall holds (true) or releases (false) what the pipe sends.
func (p *pipe) stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == on {
		return
	}
	p.stalled = on
	if on {
		return
	}
	now := time.Now()
	for _, f := range p.held {
		p.enqueue(f, now)
	}
	p.held = nil
}

// memConn is one end of a connection.
type memConn struct {
	t          *memTransport // the local peer's transport
	remote     int           // the remote peer's index
	local      int
	remotePeer peer.ID
	remoteKey  crypto.PubKey
	laddr      ma.Multiaddr
	raddr      ma.Multiaddr
	scope      network.ConnManagementScope
	peer       *memConn
	out        *pipe

	mu sync.Mutex
	// closed is set under mu, with streams cleared; read without it (IsClosed: the swarm asks
	// for every connection of a peer each time the DHT names that peer in a response).
	closed  atomic.Bool
	streams map[*memStream]struct{}
	accept  *inbox[*memStream]
	idle    *time.Timer // set on the dialling end while the pair is stalled
}

var _ transport.CapableConn = (*memConn)(nil)

func newMemConn(t *memTransport, remote int, rp peer.ID, rk crypto.PubKey, laddr, raddr ma.Multiaddr, scope network.ConnManagementScope) *memConn {
	return &memConn{t: t, local: t.idx, remote: remote, remotePeer: rp, remoteKey: rk, laddr: laddr, raddr: raddr,
		scope: scope, streams: map[*memStream]struct{}{}, accept: newInbox[*memStream]()}
}

// stall marks the pair (c is its dialling end) as cut off or reachable again. A pair cut off for
// the idle timeout closes at both ends, with nothing sent.
func (c *memConn) stall(blocked bool) {
	c.out.stall(blocked)
	c.peer.out.stall(blocked)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case blocked && c.idle == nil:
		c.idle = time.AfterFunc(memIdleTimeout, func() {
			c.close(errMemConnClosed, false)
			c.peer.close(errMemConnClosed, false)
		})
	case !blocked && c.idle != nil:
		c.idle.Stop()
		c.idle = nil
	}
}

func (c *memConn) apply(f frame) {
	switch f.kind {
	case fAccept:
		if ln := c.t.listener(); ln == nil || !ln.push(c) {
			c.close(errMemConnClosed, true)
		}
	case fOpen:
		c.mu.Lock()
		if c.closed.Load() {
			c.mu.Unlock()
			return
		}
		c.streams[f.s] = struct{}{}
		c.mu.Unlock()
		c.accept.push(f.s)
	case fData:
		f.s.push(f.data)
	case fFin:
		f.s.fin()
	case fReset:
		f.s.remoteReset(network.StreamErrorCode(f.code))
	case fClose:
		c.close(errMemConnClosed, false)
	}
}

func (c *memConn) send(f frame) bool {
	if c.closed.Load() {
		return false
	}
	c.out.send(f)
	return true
}

// close closes this end; tell sends the remote end a close frame.
func (c *memConn) close(cause error, tell bool) {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return
	}
	c.closed.Store(true)
	streams := c.streams
	c.streams = nil
	if c.idle != nil {
		c.idle.Stop()
		c.idle = nil
	}
	c.mu.Unlock()
	c.accept.close()
	err := &network.StreamError{TransportError: cause}
	for s := range streams {
		s.abort(err)
	}
	if tell {
		c.out.send(frame{kind: fClose})
	}
	c.scope.Done()
	c.t.n.forget(c)
}

func (c *memConn) forget(s *memStream) {
	c.mu.Lock()
	if c.streams != nil {
		delete(c.streams, s)
	}
	c.mu.Unlock()
}

func (c *memConn) Close() error { c.close(errMemConnClosed, true); return nil }
func (c *memConn) CloseWithError(network.ConnErrorCode) error {
	return c.Close()
}

func (c *memConn) IsClosed() bool { return c.closed.Load() }

func (c *memConn) OpenStream(ctx context.Context) (network.MuxedStream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil, errMemConnClosed
	}
	s, r := newMemStream(c), newMemStream(c.peer)
	s.other, r.other = r, s
	c.streams[s] = struct{}{}
	c.mu.Unlock()
	c.out.send(frame{kind: fOpen, s: r})
	return s, nil
}

func (c *memConn) AcceptStream() (network.MuxedStream, error) {
	s, ok := c.accept.pop()
	if !ok {
		return nil, errMemConnClosed
	}
	return s, nil
}

func (c *memConn) As(any) bool                    { return false }
func (c *memConn) LocalPeer() peer.ID             { return c.t.id }
func (c *memConn) RemotePeer() peer.ID            { return c.remotePeer }
func (c *memConn) RemotePublicKey() crypto.PubKey { return c.remoteKey }
func (c *memConn) LocalMultiaddr() ma.Multiaddr   { return c.laddr }
func (c *memConn) RemoteMultiaddr() ma.Multiaddr  { return c.raddr }
func (c *memConn) Scope() network.ConnScope       { return c.scope }
func (c *memConn) Transport() transport.Transport {
	return c.t
}
func (c *memConn) ConnState() network.ConnectionState {
	return network.ConnectionState{Transport: LinksStreams}
}

// keepPipeQueue is the most frames a drained pipe keeps room for.
const keepPipeQueue = 16

// keepReadBuffer is the largest read buffer a drained memStream keeps.
const keepReadBuffer = 4 << 10

// memStream is one end of a stream.
type memStream struct {
	c     *memConn // the local end of the connection
	other *memStream

	mu          sync.Mutex
	buf         bytes.Buffer
	eof         bool  // the remote end closed its write side
	rerr, werr  error // set by a reset or the connection's close
	readClosed  bool
	writeClosed bool
	rdl, wdl    time.Time
	notify      chan struct{}
}

var _ network.MuxedStream = (*memStream)(nil)

func newMemStream(c *memConn) *memStream {
	return &memStream{c: c, notify: make(chan struct{}, 1)}
}

func (s *memStream) push(b []byte) {
	s.mu.Lock()
	if s.rerr == nil && !s.readClosed && !s.eof {
		s.buf.Write(b)
	}
	s.mu.Unlock()
	ping(s.notify)
}

func (s *memStream) fin() {
	s.mu.Lock()
	s.eof = true
	s.mu.Unlock()
	ping(s.notify)
}

func (s *memStream) remoteReset(code network.StreamErrorCode) {
	s.mu.Lock()
	err := &network.StreamError{ErrorCode: code, Remote: true}
	if s.werr == nil {
		s.werr = err
	}
	// Like QUIC, a reset that comes after all the data (the FIN) does not take it back.
	if s.rerr == nil && !s.eof {
		s.rerr = err
		s.buf.Reset()
	}
	s.mu.Unlock()
	ping(s.notify)
}

func (s *memStream) abort(err error) {
	s.mu.Lock()
	if s.rerr == nil {
		s.rerr = err
	}
	if s.werr == nil {
		s.werr = err
	}
	s.mu.Unlock()
	ping(s.notify)
}

func (s *memStream) Read(b []byte) (int, error) {
	for {
		s.mu.Lock()
		switch {
		case s.buf.Len() > 0 && s.rerr == nil && !s.readClosed:
			n, _ := s.buf.Read(b)
			if s.buf.Len() == 0 && s.buf.Cap() > keepReadBuffer {
				// Drained: a long-lived stream (gossipsub's, the DHT's) would otherwise keep
				// its largest burst's buffer for good, hundreds of megabytes over a
				// 1,000-peer run.
				s.buf = bytes.Buffer{}
			}
			s.mu.Unlock()
			return n, nil
		case s.rerr != nil:
			err := s.rerr
			s.mu.Unlock()
			return 0, err
		case s.readClosed:
			s.mu.Unlock()
			return 0, errMemReadClosed
		case s.eof:
			s.mu.Unlock()
			return 0, io.EOF
		}
		dl := s.rdl
		s.mu.Unlock()
		if dl.IsZero() {
			<-s.notify
			continue
		}
		d := time.Until(dl)
		if d <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		tm := time.NewTimer(d)
		select {
		case <-s.notify:
		case <-tm.C:
		}
		tm.Stop()
	}
}

func (s *memStream) Write(b []byte) (int, error) {
	s.mu.Lock()
	var err error
	switch {
	case s.werr != nil:
		err = s.werr
	case s.writeClosed:
		err = errMemWriteClosed
	case !s.wdl.IsZero() && !time.Now().Before(s.wdl):
		err = os.ErrDeadlineExceeded
	}
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, nil
	}
	if !s.c.send(frame{kind: fData, s: s.other, data: bytes.Clone(b)}) {
		return 0, &network.StreamError{TransportError: errMemConnClosed}
	}
	return len(b), nil
}

func (s *memStream) CloseWrite() error {
	s.mu.Lock()
	if s.writeClosed || s.werr != nil {
		s.mu.Unlock()
		return nil
	}
	s.writeClosed = true
	s.mu.Unlock()
	s.c.send(frame{kind: fFin, s: s.other})
	return nil
}

func (s *memStream) CloseRead() error {
	s.mu.Lock()
	s.readClosed = true
	s.buf.Reset()
	s.mu.Unlock()
	ping(s.notify)
	return nil
}

func (s *memStream) Close() error {
	err := s.CloseWrite()
	s.CloseRead()
	s.c.forget(s)
	return err
}

func (s *memStream) Reset() error { return s.ResetWithError(0) }

func (s *memStream) ResetWithError(code network.StreamErrorCode) error {
	s.mu.Lock()
	already := s.rerr != nil && s.werr != nil
	err := &network.StreamError{ErrorCode: code}
	if s.rerr == nil {
		s.rerr = err
	}
	if s.werr == nil {
		s.werr = err
	}
	s.buf.Reset()
	s.mu.Unlock()
	ping(s.notify)
	if !already {
		s.c.send(frame{kind: fReset, code: uint32(code), s: s.other})
	}
	s.c.forget(s)
	return nil
}

func (s *memStream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

func (s *memStream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.rdl = t
	s.mu.Unlock()
	ping(s.notify)
	return nil
}

func (s *memStream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.wdl = t
	s.mu.Unlock()
	return nil
}
