package p2p

import (
	"context"
	"errors"
	"math/rand"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Integration tests: real Nets on loopback, TCP and QUIC. They use the real clock (sockets do), and
// wait on events with generous timeouts rather than sleeping.

const testTimeout = 30 * time.Second

var loopback = &net.IPNet{IP: net.IPv4(127, 0, 0, 0), Mask: net.CIDRMask(8, 32)}

// testConfig is a loopback node's configuration with a deterministic key.
func testConfig(t testing.TB, seed int64) Config {
	key, _ := testKey(t, seed)
	return Config{
		Key:            key,
		Listen:         []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Datastore:      dssync.MutexWrap(ds.NewMapDatastore()),
		ScoreWhitelist: []*net.IPNet{loopback},
		ConnLow:        16,
		ConnHigh:       64,
		ResourceMemory: 128 << 20,
		ResourceFDs:    256,
		UserAgent:      "rendermesh-test",
	}
}

// startNet starts a Net and closes it when the test ends.
func startNet(t testing.TB, cfg Config) *Net {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close %s: %v", n.ID(), err)
		}
	})
	return n
}

func addrInfo(n *Net) peer.AddrInfo { return peer.AddrInfo{ID: n.ID(), Addrs: n.Host().Addrs()} }

// ensembleSpec describes a small network: full nodes, then light clients.
type ensembleSpec struct {
	full, clients int
}

// newEnsemble starts spec's nodes; the first founds the network and all others bootstrap from it, one
// after another, so that each finds those before it.
func newEnsemble(t testing.TB, spec ensembleSpec) []*Net {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var nets []*Net
	for i := range spec.full + spec.clients {
		cfg := testConfig(t, int64(100+i))
		cfg.Client = i >= spec.full
		if i > 0 {
			cfg.Bootstrap = []peer.AddrInfo{addrInfo(nets[0])}
		}
		n := startNet(t, cfg)
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		nets = append(nets, n)
	}
	return nets
}

func TestNetworkEnsemble(t *testing.T) {
	nets := newEnsemble(t, ensembleSpec{full: 4, clients: 1})
	client := nets[4]
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	t.Run("container record", func(t *testing.T) {
		owner, reader := nets[1], nets[3]
		rec := testRecord(owner.ID(), 1, time.Now(), time.Hour)
		if err := owner.PutContainerRecord(ctx, rec); err != nil {
			t.Fatal(err)
		}
		got, err := reader.ContainerRecord(ctx, owner.ID(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if peer.ID(got.PeerId) != owner.ID() || got.Seq != 1 || got.Hardware.GetGpus()[0].GetModel() != "H100" {
			t.Fatalf("got %v", got)
		}

		// A newer record replaces it.
		rec.Seq = 2
		rec.Apps = append(rec.Apps, "unreal")
		if err := owner.PutContainerRecord(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if got, err = client.ContainerRecord(ctx, owner.ID(), 0); err != nil || got.Seq != 2 || len(got.Apps) != 3 {
			t.Fatalf("after update: %v, %v", got, err)
		}
	})

	t.Run("container record from its container", func(t *testing.T) {
		owner, reader := nets[1], nets[3]
		// The owner's newest record (seq 2, put above), in one request to the owner.
		got, err := reader.ContainerRecordFrom(ctx, owner.ID())
		if err != nil || peer.ID(got.PeerId) != owner.ID() || got.Seq != 2 {
			t.Fatalf("got %v, %v", got, err)
		}
		rec, src, err := client.FetchContainerRecord(ctx, owner.ID(), 2, 0)
		if err != nil || rec.Seq != 2 || src != FromContainer {
			t.Fatalf("fetch: %v from %q, %v", rec, src, err)
		}
		// A node that published no record of its own has none to give, and neither has the DHT.
		if _, err := reader.ContainerRecordFrom(ctx, nets[2].ID()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("from a node without a record: %v, want ErrNotFound", err)
		}
		if _, _, err := reader.FetchContainerRecord(ctx, nets[2].ID(), 0, 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("fetch without a record: %v, want ErrNotFound", err)
		}
		// A peer nobody can reach: the DHT answers for it.
		_, id := testKey(t, 998)
		if _, _, err := reader.FetchContainerRecord(ctx, id, 0, 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("fetch of an unknown peer: %v, want ErrNotFound", err)
		}
	})

	t.Run("container record of another node", func(t *testing.T) {
		if err := nets[1].PutContainerRecord(ctx, testRecord(nets[2].ID(), 1, time.Now(), time.Hour)); err == nil {
			t.Fatal("a node stored a record naming another")
		}
	})

	t.Run("no container record", func(t *testing.T) {
		_, id := testKey(t, 999)
		if _, err := nets[2].ContainerRecord(ctx, id, 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%v, want ErrNotFound", err)
		}
	})

	t.Run("providers", func(t *testing.T) {
		provider := nets[2]
		if err := provider.Provide(ctx, "gpu:H100"); err != nil {
			t.Fatal(err)
		}
		// A lookup in a network this young can still miss (routing tables fill in the background):
		// ask again until the client finds the provider or the deadline passes.
		retry := time.NewTicker(100 * time.Millisecond)
		defer retry.Stop()
		for {
			found, err := client.FindProviders(ctx, "gpu:H100", 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(found) == 1 && found[0].ID == provider.ID() {
				break
			}
			if len(found) > 0 {
				t.Fatalf("found %v, want %s", found, provider.ID())
			}
			select {
			case <-ctx.Done():
				t.Fatal("provider not found in time")
			case <-retry.C:
			}
		}
	})

	t.Run("bad capability key", func(t *testing.T) {
		if _, err := client.FindProviders(ctx, "gpu:", 1); !errors.Is(err, ErrCapability) {
			t.Errorf("FindProviders: %v, want ErrCapability", err)
		}
		if err := nets[1].Provide(ctx, "colour:blue"); !errors.Is(err, ErrCapability) {
			t.Errorf("Provide: %v, want ErrCapability", err)
		}
	})

	t.Run("heartbeats", func(t *testing.T) {
		subscribers, publisher := nets[1:3], nets[3]
		received := make([]chan *pb.Heartbeat, len(subscribers))
		for i, n := range subscribers {
			ch := make(chan *pb.Heartbeat, 1)
			received[i] = ch
			err := n.SubscribeHeartbeats(testRegion, func(hb *pb.Heartbeat) {
				if peer.ID(hb.PeerId) != publisher.ID() {
					return
				}
				select {
				case ch <- hb:
				default:
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		// Until gossipsub has formed its mesh a heartbeat may reach no one: send one every 200 ms,
		// each with a new sequence number, until both subscribers have had one.
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		got := make([]*pb.Heartbeat, len(subscribers))
		for seq := uint64(1); ; seq++ {
			hb := testHeartbeat(publisher.ID(), seq, time.Now())
			if err := publisher.PublishHeartbeat(ctx, hb); err != nil {
				t.Fatal(err)
			}
			done := true
			for i, ch := range received {
				if got[i] == nil {
					select {
					case got[i] = <-ch:
					default:
					}
				}
				done = done && got[i] != nil
			}
			if done {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("heartbeats not delivered in time: %v", got)
			case <-tick.C:
			}
		}
		for i, hb := range got {
			if hb.Region != testRegion || hb.LoadPermille != 730 || hb.Seq == 0 {
				t.Errorf("subscriber %d got %v", i, hb)
			}
		}
		if peers := publisher.GossipPeers(testRegion); len(peers) < 2 {
			t.Errorf("publisher knows %d peers in the topic, want at least 2", len(peers))
		}
	})

	t.Run("light client has no gossip", func(t *testing.T) {
		if err := client.PublishHeartbeat(ctx, testHeartbeat(client.ID(), 1, time.Now())); !errors.Is(err, ErrNoPubSub) {
			t.Errorf("PublishHeartbeat: %v, want ErrNoPubSub", err)
		}
		if err := client.SubscribeHeartbeats(testRegion, func(*pb.Heartbeat) {}); !errors.Is(err, ErrNoPubSub) {
			t.Errorf("SubscribeHeartbeats: %v, want ErrNoPubSub", err)
		}
	})

	// Last, because it takes the owner's DHT handler away.
	t.Run("container that does not answer itself", func(t *testing.T) {
		owner, reader := nets[1], nets[3]
		stall := make(chan struct{})
		defer close(stall)
		owner.Host().SetStreamHandler(dhtProtocol, func(s network.Stream) {
			<-stall
			_ = s.Reset()
		})
		rec, src, err := reader.FetchContainerRecord(ctx, owner.ID(), 2, 50*time.Millisecond)
		if err != nil || rec.Seq != 2 || src != FromDHT {
			t.Fatalf("fetch: %v from %q, %v; want seq 2 from the DHT", rec, src, err)
		}
	})
}

func TestBootstrapUnreachable(t *testing.T) {
	_, nobody := testKey(t, 998)
	cfg := testConfig(t, 1)
	cfg.Bootstrap = []peer.AddrInfo{{ID: nobody, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}}}
	n := startNet(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := n.Bootstrap(ctx); !errors.Is(err, ErrBootstrap) {
		t.Fatalf("Bootstrap: %v, want ErrBootstrap", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	secp, _, err := crypto.GenerateSecp256k1Key(rand.New(rand.NewSource(1)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"bad listen address", func(c *Config) { c.Listen = []string{"/ip4/127.0.0.1/tcp/0", "127.0.0.1:4001"} }},
		{"bad announce address", func(c *Config) { c.Announce = []string{"/dns9/x"} }},
		{"secp256k1 key", func(c *Config) { c.Key = secp }},
		{"no key", func(c *Config) { c.Key = nil }},
		{"no datastore", func(c *Config) { c.Datastore = nil }},
		{"watermarks crossed", func(c *Config) { c.ConnLow, c.ConnHigh = 10, 5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, 1)
			tt.edit(&cfg)
			n, err := New(cfg)
			if err == nil {
				n.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("%v, want ErrConfig", err)
			}
		})
	}
}

func TestParseAddrInfos(t *testing.T) {
	_, a := testKey(t, 1)
	_, b := testKey(t, 2)
	infos, err := ParseAddrInfos([]string{
		"/ip4/127.0.0.1/tcp/4001/p2p/" + b.String(),
		"/ip4/127.0.0.1/tcp/4001/p2p/" + a.String(),
		"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/" + a.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		t.Fatalf("%d infos, want 2", len(infos))
	}
	for _, pi := range infos {
		if want := map[peer.ID]int{a: 2, b: 1}[pi.ID]; len(pi.Addrs) != want {
			t.Errorf("%s: %d addresses, want %d", pi.ID, len(pi.Addrs), want)
		}
	}
	if infos[0].ID > infos[1].ID {
		t.Error("not sorted by peer ID")
	}
	for _, bad := range [][]string{{"not an address"}, {"/ip4/127.0.0.1/tcp/4001"}} {
		if _, err := ParseAddrInfos(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseAddrInfos(%q): %v, want ErrConfig", bad, err)
		}
	}
}

func TestCloseIdempotent(t *testing.T) {
	n, err := New(testConfig(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.SubscribeHeartbeats(testRegion, func(*pb.Heartbeat) {}); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := n.SubscribeHeartbeats("us-east", func(*pb.Heartbeat) {}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("SubscribeHeartbeats after Close: %v, want net.ErrClosed", err)
	}
}

// A peer with only TCP, noise and yamux (what js-libp2p and rust-libp2p offer by default) connects
// and pings.
func TestInteropStack(t *testing.T) {
	n := startNet(t, testConfig(t, 1))
	var tcpAddrs []ma.Multiaddr
	for _, a := range n.Host().Addrs() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			tcpAddrs = append(tcpAddrs, a)
		}
	}
	if len(tcpAddrs) == 0 {
		t.Fatalf("no TCP listen address in %v", n.Host().Addrs())
	}

	key, _ := testKey(t, 2)
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: n.ID(), Addrs: tcpAddrs}); err != nil {
		t.Fatal(err)
	}
	conns := h.Network().ConnsToPeer(n.ID())
	if len(conns) == 0 {
		t.Fatal("no connection")
	}
	st := conns[0].ConnState()
	if st.Security != "/noise" || st.StreamMultiplexer != "/yamux/1.0.0" || st.Transport != "tcp" {
		t.Errorf("connection state %+v, want tcp, /noise, /yamux/1.0.0", st)
	}
	select {
	case res := <-ping.Ping(ctx, h, n.ID()):
		if res.Error != nil {
			t.Fatalf("ping: %v", res.Error)
		}
	case <-ctx.Done():
		t.Fatal("ping timed out")
	}
}

// A node's own heartbeats reach its own subscription, with no peers at all.
func TestOwnHeartbeatDelivered(t *testing.T) {
	n := startNet(t, testConfig(t, 1))
	got := make(chan *pb.Heartbeat, 1)
	if err := n.SubscribeHeartbeats(testRegion, func(hb *pb.Heartbeat) { got <- hb }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := n.PublishHeartbeat(ctx, testHeartbeat(n.ID(), 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	select {
	case hb := <-got:
		if peer.ID(hb.PeerId) != n.ID() || hb.Seq != 1 {
			t.Errorf("got %v", hb)
		}
	case <-ctx.Done():
		t.Fatal("own heartbeat not delivered")
	}
	// A heartbeat for another region is not this topic's.
	if err := n.PublishHeartbeat(ctx, &pb.Heartbeat{PeerId: []byte(n.ID()), Seq: 2, SentUnixMs: time.Now().UnixMilli(), Region: "us-east"}); err != nil {
		t.Fatal(err)
	}
}

// TestResourceLimitsAdmitConnHigh: the resource manager must admit the connections the connection
// manager is set to keep (libp2p's defaults admit 96 inbound at 512 MiB).
func TestResourceLimitsAdmitConnHigh(t *testing.T) {
	for _, c := range []struct {
		mem      int64
		connHigh int
	}{{512 << 20, 192}, {64 << 20, 64}, {1024 << 20, 1024}} {
		l := resourceLimits(Config{ResourceMemory: c.mem, ResourceFDs: 1024, ConnHigh: c.connHigh}).ToPartialLimitConfig()
		if in := int(l.System.ConnsInbound); in < c.connHigh {
			t.Errorf("%d MiB, conn_high %d: %d inbound connections admitted", c.mem>>20, c.connHigh, in)
		}
		if in := int(l.System.StreamsInbound); in < 4*c.connHigh {
			t.Errorf("%d MiB, conn_high %d: %d inbound streams admitted", c.mem>>20, c.connHigh, in)
		}
	}
}

// TestBootstrapAgainAfterDroppedConnection: a busy bootstrap peer may accept a newcomer's
// connection and then close it (its connection manager trims) or let identify fail; Bootstrap
// dials again instead of waiting out its context with an empty routing table (four peers of a
// 1,000-peer simnet failed to start that way).
func TestBootstrapAgainAfterDroppedConnection(t *testing.T) {
	defer func(d time.Duration) { bootstrapWait = d }(bootstrapWait)
	bootstrapWait = 300 * time.Millisecond
	boot := startNet(t, testConfig(t, 1))
	var dropped atomic.Int32
	boot.Host().Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if dropped.Add(1) == 1 { // the first connection only
			go func() { _ = c.Close() }()
		}
	}})
	cfg := testConfig(t, 2)
	cfg.Bootstrap = []peer.AddrInfo{addrInfo(boot)}
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	joiner := startNet(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := joiner.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if dropped.Load() < 2 {
		t.Fatalf("the bootstrap peer saw %d connections: want the dropped one and a second", dropped.Load())
	}
	if joiner.RoutingTableSize() == 0 {
		t.Fatal("routing table empty after Bootstrap")
	}
}

// TestBootstrapAgainAfterFailedLookupCheck: the DHT takes a connected peer into its routing table
// only after the peer answers one lookup (kad-dht's lookup check), and does not ask again while the
// connection stays up. A bootstrap peer too busy for that first lookup left newcomers with an empty
// routing table until their start-up gave up (31 peers of a 1,000-peer simnet joining as the
// genesis checks began); Bootstrap now has the DHT check the connected peers again each round.
func TestBootstrapAgainAfterFailedLookupCheck(t *testing.T) {
	defer func(d time.Duration) { bootstrapWait = d }(bootstrapWait)
	bootstrapWait = 300 * time.Millisecond
	// The bootstrap peer speaks the DHT's protocol but resets every stream of its first second
	// (identify's events start a lookup check or two, all in that second).
	boot, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New), libp2p.Muxer(yamux.ID, yamux.DefaultTransport))
	if err != nil {
		t.Fatal(err)
	}
	defer boot.Close()
	var streams, reset atomic.Int32
	var busyUntil atomic.Int64
	boot.SetStreamHandler(protocol.ID(DHTProtocolPrefix+"/kad/1.0.0"), func(s network.Stream) {
		streams.Add(1)
		busyUntil.CompareAndSwap(0, time.Now().Add(time.Second).UnixNano())
		if time.Now().UnixNano() < busyUntil.Load() {
			reset.Add(1)
			_ = s.Reset()
			return
		}
		defer s.Close()
		for {
			req := &dhtpb.Message{}
			if err := ReadMsg(s, req, 4<<10); err != nil {
				return
			}
			if err := WriteMsg(s, &dhtpb.Message{Type: req.Type, Key: req.Key}); err != nil { // no closer peers
				return
			}
		}
	})
	cfg := testConfig(t, 4)
	cfg.Bootstrap = []peer.AddrInfo{{ID: boot.ID(), Addrs: boot.Addrs()}}
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	joiner := startNet(t, cfg)
	// Well under the DHT's own recheck of a low routing table (2 minutes).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := joiner.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if reset.Load() == 0 || streams.Load() <= reset.Load() {
		t.Fatalf("the bootstrap peer reset %d of %d DHT streams: want failed lookup checks, then one answered", reset.Load(), streams.Load())
	}
	if !slices.Contains(joiner.dht.RoutingTable().ListPeers(), boot.ID()) {
		t.Fatal("the bootstrap peer is not in the routing table after Bootstrap")
	}
}

// TestBootstrapPeerWithoutDHT: a bootstrap peer that is not a rendermesh node (no DHT protocol)
// fails Bootstrap once its context ends, saying so.
func TestBootstrapPeerWithoutDHT(t *testing.T) {
	defer func(d time.Duration) { bootstrapWait = d }(bootstrapWait)
	bootstrapWait = 200 * time.Millisecond
	other, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New), libp2p.Muxer(yamux.ID, yamux.DefaultTransport))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cfg := testConfig(t, 3)
	cfg.Bootstrap = []peer.AddrInfo{{ID: other.ID(), Addrs: other.Addrs()}}
	n := startNet(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = n.Bootstrap(ctx)
	if !errors.Is(err, ErrBootstrap) || !strings.Contains(err.Error(), "do not speak /rendermesh/kad/1.0.0") {
		t.Fatalf("Bootstrap: %v, want ErrBootstrap saying the peer does not speak the DHT", err)
	}
}

// TestReachClearsDialBackoff: a checker's check must really dial its container. libp2p's dial
// backoff, which other subsystems' failed dials to a busy container extend, failed most deferred
// checks of a 300-peer simnet without a dial ("dial backoff"), until three in a row failed honest
// containers as unanswered.
func TestReachClearsDialBackoff(t *testing.T) {
	a := startNet(t, testConfig(t, 5))
	b := startNet(t, testConfig(t, 6))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	sw, ok := a.Host().Network().(*swarm.Swarm)
	if !ok {
		t.Fatalf("the host's network is a %T, not a swarm", a.Host().Network())
	}
	a.Host().Peerstore().AddAddrs(b.ID(), b.Host().Addrs(), time.Hour)
	for _, addr := range b.Host().Addrs() {
		sw.Backoff().AddBackoff(b.ID(), addr) // as a failed dial would
	}
	if err := a.Host().Connect(ctx, addrInfo(b)); !errors.Is(err, swarm.ErrDialBackoff) {
		t.Fatalf("dial during the backoff: %v, want swarm.ErrDialBackoff", err)
	}
	if err := a.Reach(ctx, b.ID()); err != nil {
		t.Fatalf("Reach: %v", err)
	}
	if err := a.Host().Connect(ctx, addrInfo(b)); err != nil {
		t.Fatalf("dial after Reach: %v", err)
	}
}

// TestNoHostMetrics: libp2p's own collectors are process-wide, so a node told to leave them out
// (the simnet's thousand nodes in one process) registers none of them, while a node with a
// registry and no such instruction (an operator's) exports them next to rendermesh's.
func TestNoHostMetrics(t *testing.T) {
	withHost, without := prometheus.NewRegistry(), prometheus.NewRegistry()
	ca, cb := testConfig(t, 1), testConfig(t, 2)
	ca.Registerer = withHost
	cb.Registerer, cb.NoHostMetrics = without, true
	a, b := startNet(t, ca), startNet(t, cb)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := b.Host().Connect(ctx, addrInfo(a)); err != nil {
		t.Fatal(err)
	}
	libp2pFamilies := func(reg *prometheus.Registry) []string {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "libp2p_") {
				names = append(names, mf.GetName())
			}
		}
		return names
	}
	if got := libp2pFamilies(without); len(got) > 0 {
		t.Errorf("NoHostMetrics: libp2p's collectors registered anyway: %v", got)
	}
	if got := libp2pFamilies(withHost); len(got) == 0 {
		t.Error("an operator's node exports none of libp2p's metrics")
	}
}

// TestCarriedHeartbeats: a node that carries a region (CarryHeartbeats) is a member of its topic for
// its neighbours, and validates the heartbeats that reach it (which gossipsub then passes on); it
// closes cleanly with the relay on.
func TestCarriedHeartbeats(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := startNet(t, testConfig(t, 1))
	cfgB := testConfig(t, 2)
	cfgB.Metrics = NewMetrics(nil)
	b := startNet(t, cfgB)
	if err := a.Host().Connect(ctx, addrInfo(b)); err != nil {
		t.Fatal(err)
	}
	if err := b.CarryHeartbeats(testRegion); err != nil {
		t.Fatal(err)
	}
	if err := b.CarryHeartbeats(testRegion); err != nil { // again: nothing more
		t.Fatal(err)
	}
	if _, err := a.heartbeatTopic(testRegion); err != nil { // a publishes without subscribing
		t.Fatal(err)
	}
	for !slices.Contains(a.GossipPeers(testRegion), b.ID()) {
		select {
		case <-ctx.Done():
			t.Fatalf("the carrier is not in the topic for its neighbour: %v", a.GossipPeers(testRegion))
		case <-time.After(20 * time.Millisecond):
		}
	}
	for seq := uint64(1); counterValue(t, cfgB.Metrics.HeartbeatDelivered) == 0; seq++ {
		if err := a.PublishHeartbeat(ctx, testHeartbeat(a.ID(), seq, time.Now())); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("no heartbeat reached the carrier")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := b.Close(); err != nil {
		t.Fatalf("close the carrier: %v", err)
	}
	if err := b.CarryHeartbeats("us-east"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("carry after close: %v, want net.ErrClosed", err)
	}
}
