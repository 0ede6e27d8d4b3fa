package node

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render/turn"
)

// RelayConfig makes the node relay-capable: it runs a TURN relay (embedded, or coturn beside it)
// that the render path falls back to when no direct path works, and hands the epoch's indexers the
// means to mint short-lived credentials for it.
type RelayConfig struct {
	Enabled bool `toml:"enabled"`
	// Listen is the embedded relay's UDP address (default 0.0.0.0:3478).
	Listen string `toml:"listen"`
	// PublicIP is the address clients reach the relay at and relayed candidates carry. Required.
	PublicIP string `toml:"public_ip"`
	// URLs name an external TURN server run instead of the embedded one (coturn with
	// use-auth-secret): e.g. ["turn:203.0.113.7:3478?transport=udp"]; Secret is then its
	// static-auth-secret.
	URLs []string `toml:"urls"`
	// Secret is the TURN REST secret. Empty with the embedded relay: generated at first start and
	// kept in the data directory (relay.secret).
	Secret string `toml:"secret"`
	// MaxTTL is the longest credential lifetime the relay accepts (default 2h).
	MaxTTL Duration `toml:"max_ttl"`
}

func (rc *RelayConfig) validate() error {
	if !rc.Enabled {
		return nil
	}
	if len(rc.URLs) > 0 {
		if rc.Secret == "" {
			return fmt.Errorf("%w: relay: urls name an external TURN server: set relay.secret to its static-auth-secret", ErrConfig)
		}
		for _, u := range rc.URLs {
			if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
				return fmt.Errorf("%w: relay: url %q: want turn:host:port?transport=udp", ErrConfig, u)
			}
		}
		return nil
	}
	if ip := net.ParseIP(rc.PublicIP); ip == nil || ip.To4() == nil {
		return fmt.Errorf("%w: relay: public_ip %q: set the IPv4 address clients reach this node at", ErrConfig, rc.PublicIP)
	}
	if _, err := net.ResolveUDPAddr("udp", rc.Listen); err != nil {
		return fmt.Errorf("%w: relay: listen %q: want host:port, e.g. 0.0.0.0:3478", ErrConfig, rc.Listen)
	}
	return nil
}

// relayGrantDomain separates the per-indexer secrets from any other use of the relay's secret.
const relayGrantDomain = "rendermesh-relay-grant/1"

// relayProvideInterval is how often a relay re-announces itself in the DHT.
const relayProvideInterval = 30 * time.Minute

// relaySvc is a relay node's side: the TURN server (or the external one's URLs), its DHT
// announcement and the grants it gives indexers.
type relaySvc struct {
	n      *Node
	secret []byte
	urls   []string
	srv    *turn.Server // nil with an external relay
	maxTTL time.Duration
}

func (n *Node) startRelay(ctx context.Context) (*relaySvc, error) {
	rc := n.cfg.Relay
	r := &relaySvc{n: n, maxTTL: time.Duration(rc.MaxTTL), secret: []byte(rc.Secret)}
	if r.maxTTL <= 0 {
		r.maxTTL = 2 * time.Hour
	}
	if len(rc.URLs) > 0 {
		r.urls = rc.URLs
	} else {
		if len(r.secret) == 0 {
			s, err := loadRelaySecret(n.cfg.DataDir)
			if err != nil {
				return nil, err
			}
			r.secret = s
		}
		srv, err := turn.Listen(turn.Config{
			ListenUDP: rc.Listen, RelayIP: net.ParseIP(rc.PublicIP), Secret: r.secret,
			SecretFor: r.secretFor, Now: n.opts.Clock.Now, Logger: n.log.With("subsystem", "relay"),
		})
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		r.srv = srv
		r.urls = srv.URLs(rc.PublicIP)
	}
	n.net.Handle(p2p.ProtoRelay, 5*time.Second, r.serveGrant)
	n.wg.Go(func() { r.announce(ctx) })
	n.log.Info("relay ready", "urls", r.urls)
	return r, nil
}

func (r *relaySvc) close() {
	if r != nil && r.srv != nil {
		_ = r.srv.Close()
	}
}

// loadRelaySecret reads the embedded relay's secret from the data directory, creating it (32
// random bytes, 0600) on first use.
func loadRelaySecret(dir string) ([]byte, error) {
	path := filepath.Join(dir, "relay.secret")
	b, err := os.ReadFile(path)
	if err == nil {
		s, derr := hex.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(s) < 16 {
			return nil, fmt.Errorf("relay: %s is damaged: delete it to make a new secret", path)
		}
		return s, nil
	}
	if !os.IsNotExist(err) {
		return nil, fmt.Errorf("relay: %w", err)
	}
	s := make([]byte, 32)
	_, _ = rand.Read(s)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(s)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("relay: keep the secret: %w", err)
	}
	return s, nil
}

func (r *relaySvc) announce(ctx context.Context) {
	clk := r.n.opts.Clock
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := r.n.net.Provide(pctx, p2p.RelayKey); err != nil && ctx.Err() == nil {
			r.n.log.Debug("relay announcement", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-clk.After(relayProvideInterval):
		}
	}
}

// indexerSecret is the secret indexer mints credentials with during epoch: only this relay (which
// holds the master secret) can derive it again.
func indexerSecret(master []byte, epoch uint64, indexer peer.ID) []byte {
	m := hmac.New(sha256.New, master)
	fmt.Fprintf(m, "%s|%d|%s", relayGrantDomain, epoch, indexer)
	return m.Sum(nil)
}

// userPrefix names the epoch and the indexer in a credential's username.
func userPrefix(epoch uint64, indexer peer.ID) string {
	return "e" + strconv.FormatUint(epoch, 10) + "." + indexer.String() + "."
}

// secretFor is the embedded relay's key lookup: it derives the secret of the indexer and epoch a
// username names ("<expiry>:e<epoch>.<indexer>.<session>").
func (r *relaySvc) secretFor(username string) ([]byte, error) {
	_, user, ok := strings.Cut(username, ":")
	if !ok || !strings.HasPrefix(user, "e") {
		return nil, fmt.Errorf("username %q names no indexer", username)
	}
	parts := strings.SplitN(user[1:], ".", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("username %q: want e<epoch>.<indexer>.<session>", username)
	}
	epoch, err := strconv.ParseUint(parts[0], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("username %q: epoch: %v", username, err)
	}
	id, err := peer.Decode(parts[1])
	if err != nil {
		return nil, fmt.Errorf("username %q: indexer: %v", username, err)
	}
	if exp, _, err := turn.ParseUsername(username); err != nil || exp.Sub(r.n.opts.Clock.Now()) > r.maxTTL {
		return nil, fmt.Errorf("username %q: expiry beyond the relay's %v limit", username, r.maxTTL)
	}
	return indexerSecret(r.secret, epoch, id), nil
}

// grant is what an indexer of the current or next epoch gets.
func (r *relaySvc) grant(remote peer.ID, epoch uint64) *pb.RelayGrant {
	es := r.n.ep
	if es == nil {
		return &pb.RelayGrant{Refused: "not_indexer"}
	}
	cur := es.tr.Schedule().Epoch(r.n.opts.Clock.Now())
	if epoch != cur && epoch != cur+1 {
		return &pb.RelayGrant{Refused: "bad_request"}
	}
	member := false
	serving, _ := es.tr.Serving(epoch) // an epoch that drew nobody: the last committee serves on
	for _, t := range serving {
		member = member || t.ID == string(remote)
	}
	if !member {
		return &pb.RelayGrant{Refused: "not_indexer"}
	}
	g := &pb.RelayGrant{Urls: r.urls, Epoch: epoch, MaxTtlMs: r.maxTTL.Milliseconds()}
	if r.srv != nil {
		g.Secret, g.UserPrefix = indexerSecret(r.secret, epoch, remote), userPrefix(epoch, remote)
	} else {
		g.Secret = r.secret // coturn knows one static secret
	}
	return g
}

func (r *relaySvc) serveGrant(_ context.Context, remote peer.ID, rw io.ReadWriter) error {
	req := &pb.RelayGrantRequest{}
	if err := p2p.ReadMsg(rw, req, p2p.MaxRelayGrantSize); err != nil {
		return err
	}
	return p2p.WriteMsg(rw, r.grant(remote, req.Epoch))
}

// relayGrants is an indexer's side: the grants of the relays it found, per epoch, from which it
// mints each match's TURN credentials.
type relayGrants struct {
	mu       sync.Mutex
	byEpoch  map[uint64][]*pb.RelayGrant
	fetching map[uint64]bool
	tried    map[uint64]time.Time // the last fetch for an epoch that found no relay
}

// relayRetry is how long an indexer waits before it looks for relays again after finding none.
const relayRetry = 10 * time.Second

// maxRelays is how many relays an indexer hands out with a match.
const maxRelays = 2

// ensure fetches epoch's grants in the background unless it has them or is fetching them.
func (g *relayGrants) ensure(ctx context.Context, n *Node, epoch uint64) {
	g.mu.Lock()
	if g.byEpoch == nil {
		g.byEpoch, g.fetching, g.tried = map[uint64][]*pb.RelayGrant{}, map[uint64]bool{}, map[uint64]time.Time{}
	}
	now := n.opts.Clock.Now()
	if len(g.byEpoch[epoch]) > 0 || g.fetching[epoch] || now.Sub(g.tried[epoch]) < relayRetry {
		g.mu.Unlock()
		return
	}
	g.fetching[epoch] = true
	for e := range g.byEpoch {
		if e+1 < epoch {
			delete(g.byEpoch, e)
		}
	}
	for e := range g.tried {
		if e+1 < epoch {
			delete(g.tried, e)
		}
	}
	g.mu.Unlock()
	n.wg.Go(func() {
		got := fetchGrants(ctx, n, epoch)
		g.mu.Lock()
		defer g.mu.Unlock()
		g.fetching[epoch] = false
		if len(got) > 0 {
			g.byEpoch[epoch] = got
		} else {
			g.tried[epoch] = n.opts.Clock.Now()
		}
	})
}

func fetchGrants(ctx context.Context, n *Node, epoch uint64) []*pb.RelayGrant {
	var out []*pb.RelayGrant
	if n.relay != nil { // this node is a relay itself
		if g := n.relay.grant(n.net.ID(), epoch); g.Refused == "" {
			out = append(out, g)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var provs []peer.AddrInfo
	for _, r := range n.cfg.Network.Relays { // validated with the configuration
		if pi, err := peer.AddrInfoFromString(r); err == nil {
			provs = append(provs, *pi)
		}
	}
	if len(provs) == 0 {
		found, err := n.net.FindProviders(fctx, p2p.RelayKey, 8)
		if err != nil {
			n.log.Debug("find relays", "err", err)
		}
		provs = found
	}
	for _, pi := range provs {
		if pi.ID == n.net.ID() || len(out) >= maxRelays {
			continue
		}
		n.net.Host().Peerstore().AddAddrs(pi.ID, pi.Addrs, time.Hour)
		rctx, rcancel := context.WithTimeout(fctx, 5*time.Second)
		g := &pb.RelayGrant{}
		err := n.net.Request(rctx, pi.ID, p2p.ProtoRelay, &pb.RelayGrantRequest{Epoch: epoch}, g, p2p.MaxRelayGrantSize)
		rcancel()
		if err != nil || g.Refused != "" || len(g.Urls) == 0 || len(g.Secret) == 0 {
			n.log.Debug("relay grant", "relay", pi.ID, "err", err, "refused", g.Refused)
			continue
		}
		out = append(out, g)
	}
	return out
}

// servers mints TURN credentials for one session from every grant of epoch, or, while those are
// still being fetched (the first matches of an epoch), of the epoch before, if this indexer held
// one: relays accept an earlier epoch's credentials until they expire.
func (g *relayGrants) servers(epoch uint64, session []byte, ttl time.Duration, now time.Time) []*pb.IceServer {
	g.mu.Lock()
	grants := g.byEpoch[epoch]
	if len(grants) == 0 && epoch > 0 {
		grants = g.byEpoch[epoch-1]
	}
	g.mu.Unlock()
	var out []*pb.IceServer
	for _, gr := range grants {
		t := ttl
		if m := time.Duration(gr.MaxTtlMs) * time.Millisecond; m > 0 && t > m {
			t = m
		}
		s := turn.ForSession(gr.Urls, gr.Secret, gr.UserPrefix+hex.EncodeToString(session), t, now)
		out = append(out, &pb.IceServer{Urls: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}
