package node

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/consumer"
)

// containerNet adapts p2p.Net to container.Network.
type containerNet struct{ n *p2p.Net }

func (c containerNet) PutRecord(ctx context.Context, rec *pb.ContainerRecord) error {
	return c.n.PutContainerRecord(ctx, rec)
}
func (c containerNet) Provide(ctx context.Context, key string) error { return c.n.Provide(ctx, key) }
func (c containerNet) PublishHeartbeat(ctx context.Context, hb *pb.Heartbeat) error {
	return c.n.PublishHeartbeat(ctx, hb)
}

// lookupNet adapts p2p.Net to consumer.Lookup.
type lookupNet struct {
	n      *p2p.Net
	quorum int
}

func (l lookupNet) FindProviders(ctx context.Context, key string, limit int, found func(string)) error {
	return l.n.StreamProviders(ctx, key, limit, func(pi peer.AddrInfo) {
		// Remember how to reach the provider: its record is asked of it first (ContainerRecord), and a
		// later session dials it directly.
		l.n.Host().Peerstore().AddAddrs(pi.ID, pi.Addrs, providerAddrTTL)
		found(pi.ID.String())
	})
}

// ContainerRecord asks the container for its own record, and the DHT too when it does not answer
// within p2p.DefaultRecordHedge (p2p.Net.FetchContainerRecord).
func (l lookupNet) ContainerRecord(ctx context.Context, id string) (*pb.ContainerRecord, string, error) {
	pid, err := peer.Decode(id)
	if err != nil {
		return nil, "", err
	}
	rec, src, err := l.n.FetchContainerRecord(ctx, pid, l.quorum, 0)
	return rec, string(src), err
}

func peerIDString(b []byte) string {
	id, err := peer.IDFromBytes(b)
	if err != nil {
		return ""
	}
	return id.String()
}

// Lookup is the node's view of the DHT for consumer queries (consumer.Find). quorum is how many
// peers' answers a record fetch from the DHT waits for (0: the DHT's default, a complete lookup); a
// record is asked of its container first.
func (n *Node) Lookup(quorum int) consumer.Lookup { return lookupNet{n: n.net, quorum: quorum} }
