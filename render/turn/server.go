package turn

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	pionturn "github.com/pion/turn/v4"
)

// Server is a running TURN relay. Its methods are safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	pion   *pionturn.Server
	udp    net.PacketConn // nil without ListenUDP
	tcp    *connListener  // nil without ListenTCP
	relays *relays

	allocationsTotal atomic.Uint64
	authFailures     atomic.Uint64
	quotaRejections  atomic.Uint64

	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever a counter other than bytes moves
}

// Stats is a snapshot of a server's counters.
type Stats struct {
	ActiveAllocations int    // live allocations (one relay socket each)
	AllocationsTotal  uint64 // allocations made since Listen
	AuthFailures      uint64 // requests refused for bad credentials: expired, malformed, wrong secret or realm
	QuotaRejections   uint64 // Allocate requests refused with 486 because MaxAllocations were live
	// BytesFromPeers and BytesToPeers count UDP payload on the relay sockets, peer side: what
	// peers sent to relayed addresses (including datagrams dropped for want of a permission) and
	// what the relay sent on to peers. pion/turn has no byte hook; these come from wrapping the
	// relay sockets. TURN framing on the client leg is not counted.
	BytesFromPeers uint64
	BytesToPeers   uint64
}

// Listen validates cfg, binds its listeners and starts relaying. Configuration errors wrap
// ErrConfig.
func Listen(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, changed: make(chan struct{})}

	bindIP := cfg.RelayBind
	if bindIP == "" {
		bindIP = deriveRelayBind(cfg.RelayIP)
	}
	s.relays = newRelays(bindIP, cfg.RelayIP, cfg.PortMin, cfg.PortMax, cfg.MaxAllocations, s.notify)

	pcfg := pionturn.ServerConfig{
		LoggerFactory: slogFactory{cfg.Logger},
		Realm:         cfg.Realm,
		AuthHandler:   s.authenticate,
		QuotaHandler:  s.quota,
		EventHandler: pionturn.EventHandler{
			OnAuth: func(src, _ net.Addr, _, username, _, method string, ok bool) {
				if !ok {
					s.authFailed(username, src, method+": message integrity fails (wrong secret or password)")
				}
			},
			OnAllocationCreated: func(src, _ net.Addr, _, username, _ string, relay net.Addr, _ int) {
				s.allocationsTotal.Add(1)
				s.log.Debug("allocation created", "client", src, "user", username, "relay", relay)
				s.notify()
			},
			OnAllocationDeleted: func(src, _ net.Addr, _, username, _ string) {
				s.log.Debug("allocation deleted", "client", src, "user", username)
			},
		},
	}
	if cfg.ListenUDP != "" {
		s.udp, err = net.ListenPacket(udpNetwork(cfg.ListenUDP), cfg.ListenUDP)
		if err != nil {
			return nil, fmt.Errorf("turn: listen udp %s: %w", cfg.ListenUDP, err)
		}
		pcfg.PacketConnConfigs = []pionturn.PacketConnConfig{{PacketConn: s.udp, RelayAddressGenerator: s.relays}}
	}
	if cfg.ListenTCP != "" {
		l, err := net.Listen("tcp", cfg.ListenTCP)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("turn: listen tcp %s: %w", cfg.ListenTCP, err)
		}
		s.tcp = newConnListener(l)
		pcfg.ListenerConfigs = []pionturn.ListenerConfig{{Listener: s.tcp, RelayAddressGenerator: s.relays}}
	}
	s.pion, err = pionturn.NewServer(pcfg)
	if err != nil {
		s.closeListeners()
		return nil, fmt.Errorf("turn: start: %w", err)
	}
	s.log.Info("turn relay listening", "udp", s.UDPAddr(), "tcp", s.TCPAddr(),
		"relay_ip", cfg.RelayIP, "relay_bind", bindIP, "realm", cfg.Realm, "max_allocations", cfg.MaxAllocations)
	return s, nil
}

// deriveRelayBind is relayIP when this host has that address, otherwise the unspecified address
// (relayIP is then a NAT's public address forwarding to this host).
func deriveRelayBind(relayIP net.IP) string {
	pc, err := net.ListenPacket("udp4", net.JoinHostPort(relayIP.String(), "0"))
	if err != nil {
		return "0.0.0.0"
	}
	_ = pc.Close()
	return relayIP.String()
}

// udpNetwork is "udp4" for an IPv4 host (0.0.0.0 included), so that the socket is not
// dual-stack, and "udp" otherwise.
func udpNetwork(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.To4() != nil {
		return "udp4"
	}
	return "udp"
}

// authenticate is the pion AuthHandler: it checks the username's form and expiry and returns
// the long-term key for the TURN REST password. A wrong secret shows as a message-integrity
// failure afterwards (OnAuth).
func (s *Server) authenticate(username, realm string, src net.Addr) ([]byte, bool) {
	if realm != s.cfg.Realm {
		s.authFailed(username, src, "realm "+strconv.Quote(realm))
		return nil, false
	}
	if err := CheckUsername(username, s.cfg.Now()); err != nil {
		s.authFailed(username, src, err.Error())
		return nil, false
	}
	secret := s.cfg.Secret
	if s.cfg.SecretFor != nil {
		sec, err := s.cfg.SecretFor(username)
		if err != nil {
			s.authFailed(username, src, err.Error())
			return nil, false
		}
		secret = sec
	}
	return pionturn.GenerateAuthKey(username, realm, restPassword(secret, username)), true
}

func (s *Server) authFailed(username string, src net.Addr, why string) {
	s.authFailures.Add(1)
	s.log.Debug("turn auth refused", "client", src, "user", username, "why", why)
	s.notify()
}

// quota is the pion QuotaHandler. The relay generator enforces the cap too (as 508), for requests
// racing each other over TCP; this check turns the common case into a clean 486.
func (s *Server) quota(username, _ string, src net.Addr) bool {
	if s.relays.active() < s.cfg.MaxAllocations {
		return true
	}
	s.quotaRejections.Add(1)
	s.log.Debug("turn allocation refused: cap reached", "client", src, "user", username, "max", s.cfg.MaxAllocations)
	s.notify()
	return false
}

// UDPAddr is the bound UDP listener address, or nil without ListenUDP.
func (s *Server) UDPAddr() net.Addr {
	if s.udp == nil {
		return nil
	}
	return s.udp.LocalAddr()
}

// TCPAddr is the bound TCP listener address, or nil without ListenTCP.
func (s *Server) TCPAddr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// URLs are the ICE server URLs clients reach this relay at through host (a name or IP; empty
// means RelayIP), e.g. "turn:203.0.113.7:3478?transport=udp", then the TCP one if enabled.
func (s *Server) URLs(host string) []string {
	if host == "" {
		host = s.cfg.RelayIP.String()
	}
	var urls []string
	if a, ok := s.UDPAddr().(*net.UDPAddr); ok {
		urls = append(urls, "turn:"+net.JoinHostPort(host, strconv.Itoa(a.Port))+"?transport=udp")
	}
	if a, ok := s.TCPAddr().(*net.TCPAddr); ok {
		urls = append(urls, "turn:"+net.JoinHostPort(host, strconv.Itoa(a.Port))+"?transport=tcp")
	}
	return urls
}

// Stats returns the counters now.
func (s *Server) Stats() Stats {
	return Stats{
		ActiveAllocations: s.relays.active(),
		AllocationsTotal:  s.allocationsTotal.Load(),
		AuthFailures:      s.authFailures.Load(),
		QuotaRejections:   s.quotaRejections.Load(),
		BytesFromPeers:    s.relays.fromPeers.Load(),
		BytesToPeers:      s.relays.toPeers.Load(),
	}
}

// notify wakes waitStats callers.
func (s *Server) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// waitStats blocks until cond holds for the stats or ctx ends. Byte counters alone do not wake
// it.
func (s *Server) waitStats(ctx context.Context, cond func(Stats) bool) (Stats, error) {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if st := s.Stats(); cond(st) {
			return st, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return s.Stats(), ctx.Err()
		}
	}
}

// Close stops the listeners, drops TURN-over-TCP clients and releases every relay socket (pion
// then deletes their allocations in the background). Further calls return the first call's
// result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.pion.Close()
		if s.tcp != nil {
			s.tcp.closeConns()
		}
		s.relays.closeAll()
		s.log.Info("turn relay closed")
	})
	return s.closeErr
}

func (s *Server) closeListeners() {
	if s.udp != nil {
		_ = s.udp.Close()
	}
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
}

// connListener is the TCP listener handed to pion. pion closes only the listener on Close; this
// remembers accepted connections so that Close can drop them too.
type connListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newConnListener(l net.Listener) *connListener {
	return &connListener{Listener: l, conns: make(map[*trackedConn]struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	return tc, nil
}

func (l *connListener) closeConns() {
	l.mu.Lock()
	l.closed = true
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l        *connListener
	once     sync.Once
	closeErr error
}

// Close closes the connection once; a second, concurrent caller waits for the first.
func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.closeErr = c.Conn.Close()
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.closeErr
}
