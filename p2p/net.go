package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/discovery/routing"
	"github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// DHTProtocolPrefix makes the DHT speak /rendermesh/kad/1.0.0, apart from the public IPFS DHT.
const DHTProtocolPrefix = "/rendermesh"

// ErrBootstrap is wrapped when no bootstrap peer could be reached.
var ErrBootstrap = errors.New("p2p: cannot reach any bootstrap peer")

// Net is one node's view of the rendermesh network: a libp2p host, the DHT and (for full nodes)
// gossipsub. It is safe for concurrent use.
type Net struct {
	cfg    Config
	log    *slog.Logger
	host   host.Host
	dht    *dht.IpfsDHT
	ps     *pubsub.PubSub  // nil for light clients
	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	hbValidator *heartbeatValidator
	committees  *CommitteeValidator
	records     *ContainerRecordValidator // the DHT's, for records asked of containers

	mu     sync.Mutex
	scores map[peer.ID]float64          // last snapshot, when Config.ScoreInspect is set
	local  map[protocol.ID]localHandler // what Handle registered, for requests this node makes of itself
	topics map[string]*pubsub.Topic
	subs   []*pubsub.Subscription
	// carried: the regions whose heartbeats this node relays (CarryHeartbeats), with the relays'
	// cancel functions.
	carried map[string]pubsub.RelayCancelFunc
	wg      sync.WaitGroup
	closed  bool

	warm     warmSet  // KeepWarm's
	suspects suspects // peers that left a lookup waiting (lookup.go)
}

// New starts a host listening on cfg.Listen, its DHT and, unless cfg.Client, gossipsub. It does not
// contact bootstrap peers: call Bootstrap.
func New(cfg Config) (*Net, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Net{cfg: cfg, log: cfg.Logger, topics: map[string]*pubsub.Topic{}, carried: map[string]pubsub.RelayCancelFunc{}, committees: &CommitteeValidator{},
		records: NewContainerRecordValidator(cfg.Clock, cfg.Metrics)}
	n.host, err = newHost(cfg)
	if err != nil {
		return nil, err
	}
	mode := dht.ModeServer
	if cfg.Client {
		mode = dht.ModeClient
	}
	dhtOpts := []dht.Option{
		dht.Mode(mode),
		dht.ProtocolPrefix(DHTProtocolPrefix),
		dht.Validator(record.NamespacedValidator{
			ContainerRecordNamespace: n.records,
			CommitteeNamespace:       n.committees,
		}),
		dht.Datastore(namespace.Wrap(cfg.Datastore, ds.NewKey("dht"))),
		dht.MaxRecordAge(MaxRecordTTL),
		dht.QueryFilter(n.queryFilter),
	}
	if len(cfg.Bootstrap) > 0 {
		dhtOpts = append(dhtOpts, dht.BootstrapPeers(cfg.Bootstrap...))
	}
	if cfg.RoutingRefresh > 0 {
		dhtOpts = append(dhtOpts, dht.RoutingTableRefreshPeriod(cfg.RoutingRefresh))
	}
	n.dht, err = dht.New(n.host, dhtOpts...)
	if err != nil {
		n.host.Close()
		return nil, fmt.Errorf("p2p: start DHT: %w", err)
	}
	n.host.Network().Notify(suspectNotifee{&n.suspects})
	ctx, cancel := context.WithCancel(context.Background())
	n.ctx, n.cancel = ctx, cancel
	if !cfg.Client {
		n.hbValidator = newHeartbeatValidator(cfg.Clock, cfg.HeartbeatInterval, cfg.Metrics)
		disc := newTopicDiscovery(routing.NewRoutingDiscovery(n.dht), cfg.Clock, n.host.ID())
		psOpts := []pubsub.Option{
			// Every rendermesh gossip message is an envelope its author signed (heartbeats, tickets,
			// attestations): a second signature by the publishing host would double the cost of
			// receiving a message for nothing. Messages carry no author, no sequence number and
			// no signature (gossipsub rejects, and scores down, one that does), and are identified
			// by their content (GossipMsgID), as Ethereum's consensus gossip does.
			pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
			pubsub.WithNoAuthor(),
			pubsub.WithMessageIdFn(GossipMsgID),
			pubsub.WithPeerScore(peerScoreParams(cfg), peerScoreThresholds()),
			pubsub.WithMaxMessageSize(MaxGossipMessageSize),
			// The default validation queue (32) overflows under one fast burst from a flooder, and
			// honest messages arriving in those milliseconds are dropped (seen with attestations).
			pubsub.WithValidateQueueSize(validateQueueSize),
			pubsub.WithDiscovery(disc),
			pubsub.WithPeerExchange(true),
			pubsub.WithLogger(cfg.Logger.With("sub", "gossipsub")),
		}
		if cfg.ScoreInspect > 0 {
			psOpts = append(psOpts, pubsub.WithPeerScoreInspect(n.inspectScores, cfg.ScoreInspect))
		}
		n.ps, err = pubsub.NewGossipSub(ctx, n.host, psOpts...)
		if err != nil {
			n.closeAll()
			return nil, fmt.Errorf("p2p: start gossipsub: %w", err)
		}
	}
	return n, nil
}

func newHost(cfg Config) (host.Host, error) {
	listen := make([]ma.Multiaddr, 0, len(cfg.Listen))
	for _, s := range cfg.Listen {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: listen address %q: %v", ErrConfig, s, err)
		}
		listen = append(listen, a)
	}
	announce := make([]ma.Multiaddr, 0, len(cfg.Announce))
	for _, s := range cfg.Announce {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: announce address %q: %v", ErrConfig, s, err)
		}
		announce = append(announce, a)
	}
	hostMetrics := cfg.Registerer != nil && !cfg.NoHostMetrics
	var rmOpts []rcmgr.Option
	if !hostMetrics {
		// The resource manager reports to libp2p's process-wide collectors unless told not to,
		// formatting a trace event for every stream and connection.
		rmOpts = append(rmOpts, rcmgr.WithMetricsDisabled())
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(resourceLimits(cfg)), rmOpts...)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(cfg.ConnLow, cfg.ConnHigh, connmgr.WithGracePeriod(cfg.ConnGrace))
	if err != nil {
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}
	transports := cfg.Transports
	if transports == nil {
		transports = []libp2p.Option{libp2p.Transport(tcp.NewTCPTransport), libp2p.Transport(quic.NewTransport)}
	}
	opts := append([]libp2p.Option{
		libp2p.Identity(cfg.Key),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.Ping(true),
		libp2p.UserAgent(cfg.UserAgent),
	}, transports...)
	if len(listen) > 0 {
		opts = append(opts, libp2p.ListenAddrs(listen...))
	} else {
		opts = append(opts, libp2p.NoListenAddrs) // a light client only dials out
	}
	if len(announce) > 0 {
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return announce }))
	}
	if hostMetrics {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.Registerer))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("p2p: start host (listen %v): %w", cfg.Listen, err)
	}
	return h, nil
}

// ID is this node's peer ID.
func (n *Net) ID() peer.ID { return n.host.ID() }

// Host is the libp2p host, for the node's wiring and for tests.
func (n *Net) Host() host.Host { return n.host }

// DHT is the Kademlia DHT.
func (n *Net) DHT() *dht.IpfsDHT { return n.dht }

// Addrs returns the node's full multiaddrs, /p2p/<id> included, for others to bootstrap from.
func (n *Net) Addrs() []ma.Multiaddr {
	addrs, _ := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()})
	return addrs
}

// bootstrapWait is how long Bootstrap waits, after connecting, for a bootstrap peer to enter the
// DHT's routing table (identify must show that it speaks the DHT) before it tries again.
var bootstrapWait = 5 * time.Second

// Bootstrap connects to the configured bootstrap peers, retrying until ctx ends, and fills the DHT's
// routing table. It fails with ErrBootstrap when peers were configured and none could be reached.
// A node with no bootstrap peers founds a network and returns at once.
//
// A connection is not enough: a busy bootstrap peer may close it (its connection manager trims
// above the high watermark), refuse identify's stream (its resource manager) or fail the DHT's
// lookup check, and then the routing table stays empty. Bootstrap notices within bootstrapWait,
// drops connections on which identify learnt nothing, has the DHT check the connected peers
// again, and dials again, until a bootstrap peer is in the routing table.
func (n *Net) Bootstrap(ctx context.Context) error {
	if len(n.cfg.Bootstrap) == 0 {
		return n.dht.Bootstrap(ctx)
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		connected := 0
		for _, pi := range n.cfg.Bootstrap {
			if pi.ID == n.host.ID() {
				connected++
				continue
			}
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := n.host.Connect(dctx, pi)
			cancel()
			if err != nil {
				// libp2p lists each dialled address on its own line; keep the message on one.
				lastErr = fmt.Errorf("%s: %s", pi.ID, strings.Join(strings.Fields(err.Error()), " "))
				continue
			}
			connected++
		}
		if connected > 0 {
			// The DHT adds a peer to its routing table once identify shows it speaks the DHT
			// protocol and the peer answers one lookup (kad-dht's lookup check). A busy peer may
			// fail that one lookup, and then the DHT does not ask again while the connection stays
			// up, until its own check of a low routing table 2 minutes later: ask it to check the
			// connected peers again now, every round.
			if attempt > 0 {
				_ = n.dht.Bootstrap(ctx) // does not block: it signals the DHT's loop
			}
			if n.waitRoutingTable(ctx, bootstrapWait) {
				break
			}
			lastErr = n.unusableBootstrap()
		}
		wait := min(time.Second<<attempt, 5*time.Second)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%d tried; last: %v): check the addresses and that those peers run, or start without bootstrap peers to found a new network",
				ErrBootstrap, len(n.cfg.Bootstrap), lastErr)
		case <-time.After(wait): // real time: this waits on the network, not on protocol logic
		}
	}
	// A lookup of our own ID fills the routing table with our neighbourhood (the full refresh of
	// every bucket goes on in the background), so that puts and provides right after start-up
	// reach the right peers.
	if _, err := n.dht.GetClosestPeers(ctx, string(n.host.ID())); err != nil && ctx.Err() != nil {
		return fmt.Errorf("p2p: bootstrap DHT: %w", ctx.Err())
	}
	return nil
}

// waitRoutingTable waits up to d for the DHT's routing table to hold a peer; false if it did not.
func (n *Net) waitRoutingTable(ctx context.Context, d time.Duration) bool {
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for n.dht.RoutingTable().Size() == 0 {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-poll.C:
		}
	}
	return true
}

// unusableBootstrap says why the bootstrap peers are not in the routing table, and closes the
// connections to those of them of which identify learnt no protocol (it failed, or has not
// answered in bootstrapWait), so that the next round dials them again.
func (n *Net) unusableBootstrap() error {
	kad := protocol.ID(DHTProtocolPrefix + "/kad/1.0.0")
	var dropped, foreign, gone []string
	for _, pi := range n.cfg.Bootstrap {
		if pi.ID == n.host.ID() {
			continue
		}
		protos, _ := n.host.Peerstore().GetProtocols(pi.ID)
		switch {
		case !n.Connected(pi.ID):
			gone = append(gone, pi.ID.ShortString())
		case len(protos) == 0:
			_ = n.host.Network().ClosePeer(pi.ID)
			dropped = append(dropped, pi.ID.ShortString())
		case !slices.Contains(protos, kad):
			foreign = append(foreign, pi.ID.ShortString())
		}
	}
	var why []string
	if len(foreign) > 0 {
		why = append(why, fmt.Sprintf("%s do not speak %s: are they rendermesh nodes?", strings.Join(foreign, ", "), kad))
	}
	if len(dropped) > 0 {
		why = append(why, fmt.Sprintf("identify learnt nothing from %s (dropped, to dial again)", strings.Join(dropped, ", ")))
	}
	if len(gone) > 0 {
		why = append(why, fmt.Sprintf("%s closed the connection (busy?)", strings.Join(gone, ", ")))
	}
	if len(why) == 0 {
		why = append(why, "they speak the DHT, but its routing table did not take them")
	}
	return fmt.Errorf("connected, but no bootstrap peer entered the routing table: %s", strings.Join(why, "; "))
}

// Connected says whether the node holds a connection to p now.
func (n *Net) Connected(p peer.ID) bool {
	return n.host.Network().Connectedness(p) == network.Connected
}

// RoutingTableSize is the number of peers in the DHT routing table.
func (n *Net) RoutingTableSize() int { return n.dht.RoutingTable().Size() }

// Close stops gossipsub, the DHT and the host. It is idempotent.
func (n *Net) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	for _, s := range n.subs {
		s.Cancel()
	}
	for _, cancel := range n.carried {
		cancel()
	}
	for _, t := range n.topics {
		t.Close()
	}
	n.mu.Unlock()
	err := n.closeAll()
	n.wg.Wait()
	return err
}

func (n *Net) closeAll() error {
	if n.cancel != nil {
		n.cancel()
	}
	return errors.Join(n.dht.Close(), n.host.Close())
}

// ParseAddrInfos parses full multiaddrs (with /p2p/<id>) into peer infos, merging addresses of one peer.
func ParseAddrInfos(addrs []string) ([]peer.AddrInfo, error) {
	mas := make([]ma.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: peer address %q: %v", ErrConfig, s, err)
		}
		mas = append(mas, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("%w: peer addresses %v: %v (each needs a /p2p/<peer ID> part)", ErrConfig, addrs, err)
	}
	slices.SortFunc(infos, func(a, b peer.AddrInfo) int { return compareStrings(string(a.ID), string(b.ID)) })
	return infos, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// resourceLimits scales libp2p's default limits to the configured memory and file descriptors, then
// makes room for the connections the connection manager keeps: the defaults alone admit 96 inbound
// connections at 512 MiB (128 at 1 GiB), fewer than conn_high, so a popular node (a bootstrap peer)
// refused newcomers long before its connection manager would have trimmed anyone.
func resourceLimits(cfg Config) rcmgr.ConcreteLimitConfig {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	base := limits.Scale(cfg.ResourceMemory, cfg.ResourceFDs)
	p := base.ToPartialLimitConfig()
	conns := rcmgr.LimitVal(cfg.ConnHigh + cfg.ConnHigh/2) // room above the high watermark until a trim
	raise := func(v *rcmgr.LimitVal, min rcmgr.LimitVal) {
		if *v >= 0 && *v < min { // leave Unlimited and BlockAll alone
			*v = min
		}
	}
	raise(&p.System.ConnsInbound, conns)
	raise(&p.System.ConnsOutbound, conns)
	raise(&p.System.Conns, 2*conns)
	raise(&p.System.StreamsInbound, 16*conns)
	raise(&p.System.StreamsOutbound, 16*conns)
	raise(&p.System.Streams, 32*conns)
	raise(&p.Transient.ConnsInbound, conns/4)
	raise(&p.Transient.Conns, conns/2)
	return p.Build(base)
}

// validateQueueSize is gossipsub's validation queue (every topic): room for a flood's burst.
const validateQueueSize = 4096
