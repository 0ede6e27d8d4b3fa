package turn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"
)

// hangGuard bounds every network wait in these tests so that a bug fails a test instead of
// hanging it; no test asserts on how long anything takes.
const hangGuard = 20 * time.Second

var testSecret = []byte("test secret")

// startServer runs a relay on loopback with a fixed clock at t0, adjusted by mods.
func startServer(t *testing.T, mods ...func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		ListenUDP: "127.0.0.1:0",
		RelayIP:   net.IPv4(127, 0, 0, 1),
		Secret:    testSecret,
		Now:       func() time.Time { return t0 },
	}
	for _, mod := range mods {
		mod(&cfg)
	}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newClient is a pion TURN client of server (an address) over UDP, or over conn when given.
func newClient(t *testing.T, server, username, password string, conn net.PacketConn) *pionturn.Client {
	t.Helper()
	if conn == nil {
		var err error
		if conn, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = conn.Close() })
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Conn:           conn,
		Username:       username,
		Password:       password,
		// Far above any loopback round trip, so that no request is retransmitted and every
		// counter in Stats moves exactly once per request.
		RTO: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	return c
}

// allocate allocates with fresh credentials for user, valid at t0.
func allocate(t *testing.T, s *Server, user string) net.PacketConn {
	t.Helper()
	username, password := Credentials(testSecret, user, time.Hour, t0)
	relay, err := newClient(t, s.UDPAddr().String(), username, password, nil).Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return relay
}

// echoPeer is a plain UDP socket on loopback that sends every datagram back where it came from.
// The source of the first datagram it sees goes to the returned channel.
func echoPeer(t *testing.T) (net.PacketConn, <-chan net.Addr) {
	t.Helper()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	first := make(chan net.Addr, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := peer.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case first <- from:
			default:
			}
			if _, err := peer.WriteTo(buf[:n], from); err != nil {
				return
			}
		}
	}()
	return peer, first
}

// roundTrip sends msg through relay to an echo peer and checks that the peer saw it come from the
// relayed address and that the echo comes back through the relay.
func roundTrip(t *testing.T, relay net.PacketConn, msg string) {
	t.Helper()
	peer, first := echoPeer(t)
	if _, err := relay.WriteTo([]byte(msg), peer.LocalAddr()); err != nil {
		t.Fatalf("write through relay: %v", err)
	}
	_ = relay.SetReadDeadline(time.Now().Add(hangGuard))
	buf := make([]byte, 1500)
	n, from, err := relay.ReadFrom(buf)
	if err != nil {
		t.Fatalf("read echo through relay: %v", err)
	}
	if string(buf[:n]) != msg || from.String() != peer.LocalAddr().String() {
		t.Fatalf("got %q from %v, want %q from %v", buf[:n], from, msg, peer.LocalAddr())
	}
	if src := <-first; src.String() != relay.LocalAddr().String() {
		t.Fatalf("peer saw the datagram come from %v, want the relayed address %v", src, relay.LocalAddr())
	}
}

func waitStats(t *testing.T, s *Server, cond func(Stats) bool) Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	st, err := s.waitStats(ctx, cond)
	if err != nil {
		t.Fatalf("stats never got there: %+v: %v", st, err)
	}
	return st
}

func turnErrorCode(err error) stun.ErrorCode {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return te.ErrorCodeAttr.Code
	}
	return 0
}

func TestRelaysUDPToPeer(t *testing.T) {
	s := startServer(t)
	relay := allocate(t, s, "alice")
	if ip := relay.LocalAddr().(*net.UDPAddr).IP; !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("relayed address %v, want RelayIP", relay.LocalAddr())
	}
	roundTrip(t, relay, "hello through the relay")
	st := s.Stats()
	want := uint64(len("hello through the relay"))
	if st.ActiveAllocations != 1 || st.AllocationsTotal != 1 || st.AuthFailures != 0 ||
		st.BytesToPeers != want || st.BytesFromPeers != want {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestRelaysOverTCP(t *testing.T) {
	s := startServer(t, func(c *Config) { c.ListenUDP, c.ListenTCP = "", "127.0.0.1:0" })
	conn, err := net.DialTimeout("tcp", s.TCPAddr().String(), hangGuard)
	if err != nil {
		t.Fatal(err)
	}
	username, password := Credentials(testSecret, "alice", time.Hour, t0)
	relay, err := newClient(t, s.TCPAddr().String(), username, password, pionturn.NewSTUNConn(conn)).Allocate()
	if err != nil {
		t.Fatalf("Allocate over TCP: %v", err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	roundTrip(t, relay, "over tcp")
}

func TestRefusesBadCredentials(t *testing.T) {
	good, _ := Credentials(testSecret, "alice", time.Hour, t0)
	tests := []struct {
		name               string
		username, password string
	}{
		{"expired", "1699999999:alice", restPassword(testSecret, "1699999999:alice")},
		{"wrong secret", good, restPassword([]byte("not the secret"), good)},
		{"wrong password", good, "cGFzc3dvcmQ="},
		{"malformed: no expiry", "alice", restPassword(testSecret, "alice")},
		{"malformed: bad expiry", "tomorrow:alice", restPassword(testSecret, "tomorrow:alice")},
	}
	s := startServer(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newClient(t, s.UDPAddr().String(), tt.username, tt.password, nil).Allocate()
			if err == nil {
				t.Fatal("Allocate succeeded")
			}
			if code := turnErrorCode(err); code != stun.CodeBadRequest {
				t.Fatalf("Allocate: %v (code %d), want 400", err, code)
			}
			if st := s.Stats(); st.AuthFailures != uint64(i+1) || st.ActiveAllocations != 0 || st.AllocationsTotal != 0 {
				t.Fatalf("Stats = %+v", st)
			}
		})
	}
}

// The server judges expiry by its clock, not by the client's.
func TestExpiryFollowsServerClock(t *testing.T) {
	later := t0.Add(2 * time.Hour)
	s := startServer(t, func(c *Config) { c.Now = func() time.Time { return later } })
	username, password := Credentials(testSecret, "alice", time.Hour, t0)
	if _, err := newClient(t, s.UDPAddr().String(), username, password, nil).Allocate(); err == nil {
		t.Fatal("credentials that expired at t0+1h worked at t0+2h")
	}
}

func TestMaxAllocations(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxAllocations = 2 })
	first := allocate(t, s, "a")
	allocate(t, s, "b")

	username, password := Credentials(testSecret, "c", time.Hour, t0)
	_, err := newClient(t, s.UDPAddr().String(), username, password, nil).Allocate()
	if code := turnErrorCode(err); code != stun.CodeAllocQuotaReached {
		t.Fatalf("third Allocate: %v (code %d), want 486", err, code)
	}
	if st := s.Stats(); st.ActiveAllocations != 2 || st.QuotaRejections != 1 {
		t.Fatalf("Stats = %+v", st)
	}

	// Freeing one (the client's close does not wait for the server) makes room again.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	waitStats(t, s, func(st Stats) bool { return st.ActiveAllocations == 1 })
	roundTrip(t, allocate(t, s, "d"), "fits again")
}

func TestPortRange(t *testing.T) {
	port := freeUDPPort(t)
	s := startServer(t, func(c *Config) { c.PortMin, c.PortMax = port, port })
	relay := allocate(t, s, "a")
	if got := relay.LocalAddr().(*net.UDPAddr).Port; got != int(port) {
		t.Fatalf("relay port %d, want %d", got, port)
	}
	// The range holds one port, so a second allocation finds none.
	username, password := Credentials(testSecret, "b", time.Hour, t0)
	_, err := newClient(t, s.UDPAddr().String(), username, password, nil).Allocate()
	if code := turnErrorCode(err); code != stun.CodeInsufficientCapacity {
		t.Fatalf("second Allocate: %v (code %d), want 508", err, code)
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	s := startServer(t, func(c *Config) { c.ListenTCP = "127.0.0.1:0" })
	relay := allocate(t, s, "alice")
	udp, tcp, relayAddr := s.UDPAddr().String(), s.TCPAddr().String(), relay.LocalAddr().String()

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if st := s.Stats(); st.ActiveAllocations != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	// Every port is free again as soon as Close returns.
	for _, a := range []struct{ network, addr string }{{"udp4", udp}, {"udp4", relayAddr}} {
		pc, err := net.ListenPacket(a.network, a.addr)
		if err != nil {
			t.Fatalf("%s %s still bound after Close (udp %s relay %s): %v", a.network, a.addr, udp, relayAddr, err)
		}
		_ = pc.Close()
	}
	l, err := net.Listen("tcp4", tcp)
	if err != nil {
		t.Fatalf("tcp %s still bound after Close: %v", tcp, err)
	}
	_ = l.Close()
}

func TestURLs(t *testing.T) {
	s := startServer(t, func(c *Config) { c.ListenTCP = "127.0.0.1:0" })
	udpPort := strconv.Itoa(s.UDPAddr().(*net.UDPAddr).Port)
	tcpPort := strconv.Itoa(s.TCPAddr().(*net.TCPAddr).Port)
	want := []string{"turn:127.0.0.1:" + udpPort + "?transport=udp", "turn:127.0.0.1:" + tcpPort + "?transport=tcp"}
	if got := s.URLs(""); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("URLs(\"\") = %q, want %q", got, want)
	}
	if got := s.URLs("::1"); got[0] != "turn:[::1]:"+udpPort+"?transport=udp" {
		t.Fatalf("URLs(\"::1\") = %q", got)
	}
}

func TestConfigErrors(t *testing.T) {
	valid := Config{ListenUDP: "127.0.0.1:0", RelayIP: net.IPv4(127, 0, 0, 1), Secret: testSecret}
	tests := []struct {
		name string
		mod  func(*Config)
		says string // the error names what to fix
	}{
		{"empty secret", func(c *Config) { c.Secret = nil }, "Secret"},
		{"no listener", func(c *Config) { c.ListenUDP = "" }, "ListenUDP"},
		{"bad udp address", func(c *Config) { c.ListenUDP = "3478" }, "ListenUDP"},
		{"bad tcp address", func(c *Config) { c.ListenTCP = "localhost" }, "ListenTCP"},
		{"relay ip missing", func(c *Config) { c.RelayIP = nil }, "RelayIP"},
		{"relay ip v6", func(c *Config) { c.RelayIP = net.IPv6loopback }, "RelayIP"},
		{"relay ip unspecified", func(c *Config) { c.RelayIP = net.IPv4zero }, "RelayIP"},
		{"relay bind with port", func(c *Config) { c.RelayBind = "127.0.0.1:5000" }, "RelayBind"},
		{"half a port range", func(c *Config) { c.PortMin = 50000 }, "PortMax"},
		{"inverted port range", func(c *Config) { c.PortMin, c.PortMax = 50010, 50000 }, "PortMin"},
		{"negative cap", func(c *Config) { c.MaxAllocations = -1 }, "MaxAllocations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.mod(&cfg)
			s, err := Listen(cfg)
			if err == nil {
				_ = s.Close()
				t.Fatal("Listen accepted the config")
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Listen: %v; want ErrConfig naming %s", err, tt.says)
			}
		})
	}
}

// freeUDPPort is a loopback UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Close() }()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

// With SecretFor, each username's secret is derived: credentials minted with the derived secret
// allocate; ones minted with the master secret, or naming an issuer SecretFor refuses, do not.
func TestSecretForDerivesPerIssuer(t *testing.T) {
	derive := func(user string) []byte { return []byte("derived-for-" + user) }
	s := startServer(t, func(c *Config) {
		c.SecretFor = func(username string) ([]byte, error) {
			_, user, err := ParseUsername(username)
			if err != nil || !strings.HasPrefix(user, "ix1.") {
				return nil, fmt.Errorf("unknown issuer in %q", username)
			}
			return derive("ix1"), nil
		}
	})
	u, p := Credentials(derive("ix1"), "ix1.session", time.Hour, t0)
	if _, err := newClient(t, s.UDPAddr().String(), u, p, nil).Allocate(); err != nil {
		t.Fatalf("derived credentials: %v", err)
	}
	u, p = Credentials(testSecret, "ix1.session", time.Hour, t0)
	if _, err := newClient(t, s.UDPAddr().String(), u, p, nil).Allocate(); err == nil {
		t.Fatal("credentials from the master secret allocated")
	}
	u, p = Credentials(derive("ix2"), "ix2.session", time.Hour, t0)
	if _, err := newClient(t, s.UDPAddr().String(), u, p, nil).Allocate(); err == nil {
		t.Fatal("an unknown issuer allocated")
	}
}
