package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/filecoin-project/go-clock"
	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Net. Node fills it from the operator's configuration; Validate checks it.
type Config struct {
	// Key is the node's Ed25519 identity.
	Key crypto.PrivKey
	// Listen and Announce are multiaddrs: where to listen, and what to tell others (empty: the
	// listen addresses as resolved).
	Listen   []string
	Announce []string
	// Bootstrap peers to join through.
	Bootstrap []peer.AddrInfo
	// Client runs the DHT in client mode: a light client that queries but stores nothing for others.
	Client bool
	// Datastore holds the DHT's records and provider records.
	Datastore ds.Batching

	// Connection manager watermarks and resource-manager budget (explicit, never auto-scaled: many
	// hosts share one process in devnet and simnet).
	ConnLow, ConnHigh int
	ConnGrace         time.Duration
	ResourceMemory    int64
	ResourceFDs       int

	// RoutingRefresh is the DHT routing-table refresh period (0: the DHT's default).
	RoutingRefresh time.Duration
	// LookupPatience ends a DHT read (a provider or record lookup) that has gone this long without
	// a peer answering or being asked, and suspects the peers it was waiting on (lookup.go; 0:
	// DefaultLookupPatience, negative: wait as long as the DHT does, 10 s per peer).
	LookupPatience time.Duration
	// ScoreWhitelist lists networks exempt from gossipsub's IP-colocation penalty (devnet and simnet
	// peers all share 127.0.0.1).
	ScoreWhitelist []*net.IPNet
	// HeartbeatInterval is how often containers send heartbeats; it sets the heartbeat validator's
	// freshness window and the topics' scoring.
	HeartbeatInterval time.Duration

	// Transports, when set, replace the default transports (TCP and QUIC on the operating system's
	// sockets): the simnet passes QUIC over simulated links here. Listen addresses must suit them.
	Transports []libp2p.Option
	// ScoreInspect, when positive, snapshots gossipsub peer scores at this period (PeerScore).
	ScoreInspect time.Duration

	UserAgent  string
	Clock      clock.Clock
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// NoHostMetrics leaves libp2p's own metrics (resource manager, swarm, identify, event bus) out
	// of Registerer and stops the resource manager's accounting for them. They live in
	// process-wide collectors, so in a process of many nodes (simnet) they would add up every
	// node's connections into one meaningless figure, at a cost on every stream opened and closed.
	// rendermesh's own metrics (Metrics) are kept.
	NoHostMetrics bool
	Metrics       *Metrics
}

// Defaults used for zero fields.
const (
	DefaultConnLow  = 64
	DefaultConnHigh = 192
	// DefaultConnGrace is how long a new connection is safe from the connection manager's trims.
	// The resource manager admits 1.5 x ConnHigh inbound and 3 x in all, and a node holds about
	// its new connections per second times the grace: at 30 s, a node whose DHT opened more than
	// 3 connections a second (a 300-peer simnet at conn_high 32) sat at its resource manager's
	// limit, refusing checkers and consumers (docs/BENCHMARKS.md, "Checkers in the simnet").
	DefaultConnGrace         = 10 * time.Second
	DefaultResourceMemory    = 512 << 20
	DefaultResourceFDs       = 1024
	DefaultHeartbeatInterval = 5 * time.Second
	// DefaultLookupPatience is a few times the longest round trip between continents (250 ms) and
	// a new connection's handshakes: a peer silent for that long has crashed or is cut off.
	DefaultLookupPatience = 3 * time.Second
)

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("p2p: bad configuration")

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Key == nil {
		return cfg, fmt.Errorf("%w: no identity key", ErrConfig)
	}
	if cfg.Key.Type() != crypto.Ed25519 {
		return cfg, fmt.Errorf("%w: identity key must be Ed25519, got %s", ErrConfig, cfg.Key.Type())
	}
	if cfg.Datastore == nil {
		return cfg, fmt.Errorf("%w: no datastore", ErrConfig)
	}
	if cfg.ConnLow == 0 {
		cfg.ConnLow = DefaultConnLow
	}
	if cfg.ConnHigh == 0 {
		cfg.ConnHigh = DefaultConnHigh
	}
	if cfg.ConnLow > cfg.ConnHigh {
		return cfg, fmt.Errorf("%w: connection low watermark %d above high %d", ErrConfig, cfg.ConnLow, cfg.ConnHigh)
	}
	if cfg.ConnGrace == 0 {
		cfg.ConnGrace = DefaultConnGrace
	}
	if cfg.ResourceMemory == 0 {
		cfg.ResourceMemory = DefaultResourceMemory
	}
	if cfg.ResourceFDs == 0 {
		cfg.ResourceFDs = DefaultResourceFDs
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.LookupPatience == 0 {
		cfg.LookupPatience = DefaultLookupPatience
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(cfg.Registerer)
	}
	return cfg, nil
}
