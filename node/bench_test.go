package node

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/roles/container"
)

// BenchmarkNodeStart measures a container node's start-up: open the data directory (new identity
// and datastore), start the host, join through one running peer, publish the record and provider
// records and send the first heartbeat. Nodes stay up until the end, so each joins a live network
// (closing them would leave dead peers in the routing table, and QUIC dials to a dead peer wait for
// their handshake timeout).
func BenchmarkNodeStart(b *testing.B) {
	dir := b.TempDir()
	metrics := p2p.NewMetrics(nil)
	bootCfg := Default()
	bootCfg.DataDir = filepath.Join(dir, "boot")
	bootCfg.Admin.Listen = ""
	bootCfg.Log.Level = "error"
	bootCfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	boot, err := New(bootCfg, Options{Metrics: metrics, SmallDatastore: true, LoopbackNet: true})
	if err != nil {
		b.Fatal(err)
	}
	defer boot.Close()
	if err := boot.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	var addrs []string
	for _, a := range boot.Net().Addrs() {
		addrs = append(addrs, a.String())
	}
	prof, _ := container.ProfileByName("rtx4090")
	b.ResetTimer()
	for i := range b.N {
		cfg := Default()
		cfg.DataDir = filepath.Join(dir, fmt.Sprintf("n%d", i))
		cfg.Admin.Listen = ""
		cfg.Log.Level = "error"
		cfg.Roles = []string{RoleContainer}
		cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
		cfg.P2P.Bootstrap = addrs
		cfg.Container.Region, cfg.Container.Geohash = "eu-west", "u09tvw"
		cfg.Container.DevAutoCheck = true
		cfg.Container.HeartbeatInterval = Duration(time.Hour)
		n, err := New(cfg, Options{Metrics: metrics, SmallDatastore: true, LoopbackNet: true,
			Probe: container.NewSimulatedProbe(prof, int64(i))})
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Start(b.Context()); err != nil {
			b.Fatal(err)
		}
		defer n.Close()
	}
}
