package turn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

var (
	errRelayFull   = errors.New("turn: allocation cap reached")
	errRelayClosed = errors.New("turn: server closed")
	errNoPort      = errors.New("turn: no free relay port in range")
	errTCPRelay    = errors.New("turn: TCP relay allocations (RFC 6062) are not supported")
)

// relays is the server's pion RelayAddressGenerator. It binds relay sockets (round robin over
// the port range, so a just-freed port is not handed out again at once), holds the allocation
// cap, knows every live relay socket (so Close can release them all and Stats can count them)
// and counts the bytes the sockets move to and from peers.
type relays struct {
	bindIP    string
	advertise net.IP
	min, max  uint16 // 0, 0: any free port
	limit     int
	changed   func() // called after the set of live sockets changes

	mu     sync.Mutex
	next   int // offset into [min, max] the next search starts at
	live   map[*relayConn]struct{}
	closed bool

	fromPeers, toPeers atomic.Uint64
}

func newRelays(bindIP string, advertise net.IP, minPort, maxPort uint16, limit int, changed func()) *relays {
	r := &relays{
		bindIP:    bindIP,
		advertise: advertise,
		min:       minPort,
		max:       maxPort,
		limit:     limit,
		changed:   changed,
		live:      make(map[*relayConn]struct{}),
	}
	if maxPort != 0 {
		r.next = rand.IntN(int(maxPort-minPort) + 1) // where to start is not worth a seeded source
	}
	return r
}

// Validate implements pionturn.RelayAddressGenerator.
func (r *relays) Validate() error { return nil }

// AllocatePacketConn implements pionturn.RelayAddressGenerator: it binds a relay socket on
// bindIP and returns it with the advertised relay address.
func (r *relays) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	conn, err := r.allocate(network, requestedPort)
	if err != nil {
		return nil, nil, err
	}
	r.changed()
	return conn, &net.UDPAddr{IP: r.advertise, Port: conn.LocalAddr().(*net.UDPAddr).Port}, nil
}

func (r *relays) allocate(network string, requestedPort int) (*relayConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.closed:
		return nil, errRelayClosed
	case len(r.live) >= r.limit:
		return nil, fmt.Errorf("%w (%d)", errRelayFull, r.limit)
	}
	pc, err := r.bind(network, requestedPort)
	if err != nil {
		return nil, err
	}
	conn := &relayConn{PacketConn: pc, r: r}
	r.live[conn] = struct{}{}
	return conn, nil
}

// bind binds the requested port, or else the next free port of the range, or else any port.
func (r *relays) bind(network string, port int) (net.PacketConn, error) {
	listen := func(port int) (net.PacketConn, error) {
		return net.ListenPacket(network, net.JoinHostPort(r.bindIP, strconv.Itoa(port)))
	}
	if port != 0 || r.max == 0 {
		return listen(port)
	}
	size := int(r.max-r.min) + 1
	for i := range size {
		off := (r.next + i) % size
		pc, err := listen(int(r.min) + off)
		if err == nil {
			r.next = (off + 1) % size
			return pc, nil
		}
	}
	return nil, fmt.Errorf("%w %d-%d", errNoPort, r.min, r.max)
}

// AllocateConn implements pionturn.RelayAddressGenerator; pion/turn has no TCP relaying.
func (r *relays) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errTCPRelay
}

func (r *relays) remove(c *relayConn) {
	r.mu.Lock()
	_, ok := r.live[c]
	delete(r.live, c)
	r.mu.Unlock()
	if ok {
		r.changed()
	}
}

// active is the number of live relay sockets: one per allocation.
func (r *relays) active() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// closeAll refuses further allocations and closes every live relay socket; pion then deletes
// the allocations they belong to.
func (r *relays) closeAll() {
	r.mu.Lock()
	r.closed = true
	conns := make([]*relayConn, 0, len(r.live))
	for c := range r.live {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	for _, c := range conns {
		_ = c.Close() // pion may have closed it first; nothing to report either way
	}
}

// relayConn is one allocation's relay socket: it counts payload bytes and leaves the live set
// when closed.
type relayConn struct {
	net.PacketConn
	r        *relays
	once     sync.Once
	closeErr error
}

// ReadFrom counts what peers send to the relay address, including datagrams pion then drops for
// want of a permission.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if n > 0 {
		c.r.fromPeers.Add(uint64(n))
	}
	return n, addr, err
}

// WriteTo counts what the relay sends on to peers. It counts before sending (and takes back what
// was not sent), so that the count is in place before the peer can answer.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.r.toPeers.Add(uint64(len(p)))
	n, err := c.PacketConn.WriteTo(p, addr)
	if n < len(p) {
		c.r.toPeers.Add(-uint64(len(p) - n))
	}
	return n, err
}

// Close closes the socket once. pion and Server.Close may both close it; whichever comes second
// waits for the first, so that the port is free when either returns.
func (c *relayConn) Close() error {
	c.once.Do(func() {
		c.closeErr = c.PacketConn.Close()
		c.r.remove(c)
	})
	return c.closeErr
}
