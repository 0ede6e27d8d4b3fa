package node

import (
	"errors"
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

// ownLimit tells this node's resource manager refusing at its system or transient scope (the
// checker's own limit, not counted against the container) from a per-peer refusal and from
// another node's refusal, on the errors the real resource manager gives, wrapped as a stream to
// the container that could not be opened.
func TestOwnLimit(t *testing.T) {
	addr := ma.StringCast("/ip4/1.0.0.7/udp/8000/quic-v1")
	const p = peer.ID("container")
	// refuse opens connections to p on a resource manager with limits until one is refused;
	// unless setPeer, they stay in the transient scope (a connection not yet upgraded).
	refuse := func(t *testing.T, limits rcmgr.PartialLimitConfig, setPeer bool) error {
		t.Helper()
		rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.Build(rcmgr.InfiniteLimits)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rm.Close() })
		for range 4 {
			scope, err := rm.OpenConnection(network.DirOutbound, false, addr)
			if err != nil {
				return err
			}
			if !setPeer {
				continue
			}
			if err := scope.SetPeer(p); err != nil {
				scope.Done()
				return err
			}
		}
		t.Fatal("no connection refused")
		return nil
	}
	// asDialed wraps err as a failed stream to the container: swarm's dial error, p2p's and the
	// telemetry request's wrapping.
	asDialed := func(err error) error {
		de := &swarm.DialError{Peer: p, DialErrors: []swarm.TransportError{{Address: addr, Cause: err}}}
		return fmt.Errorf("node: telemetry from %s: %w", p, fmt.Errorf("%w: %w", errStreamNotOpened,
			fmt.Errorf("p2p: open /rendermesh/telemetry/1.0.0 stream to %s: %w", p, de)))
	}
	system := refuse(t, rcmgr.PartialLimitConfig{System: rcmgr.ResourceLimits{Conns: 2}}, true)
	transient := refuse(t, rcmgr.PartialLimitConfig{Transient: rcmgr.ResourceLimits{ConnsOutbound: 1}}, false)
	perPeer := refuse(t, rcmgr.PartialLimitConfig{PeerDefault: rcmgr.ResourceLimits{Conns: 2}}, true)
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"system", asDialed(system), true},
		{"transient", asDialed(transient), true},
		{"per peer", asDialed(perPeer), false},
		{"the container's own limit, as text", asDialed(fmt.Errorf("simnet: %s refused the connection: %v", p, system)), false},
		{"a timeout", asDialed(errors.New("context deadline exceeded")), false},
		{"no error", nil, false},
	} {
		t.Logf("%s: %v", c.name, c.err)
		if got := ownLimit(c.err); got != c.want {
			t.Errorf("%s: ownLimit = %v, want %v", c.name, got, c.want)
		}
		if c.err == nil {
			continue
		}
		wantErr := errUnreachable
		if c.want {
			wantErr = errOwnLimit
		}
		if err := notReached("", c.err); !errors.Is(err, wantErr) || !deferred(err) {
			t.Errorf("%s: notReached gives %v, want %v and deferred", c.name, err, wantErr)
		}
	}
}
