package node

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/indexer"
)

// A node that is both a container and on the indexer committee reserves its own container and
// answers its own consumer, though libp2p does not dial itself (p2p.Net serves such requests in
// process), and never matches a consumer to the consumer's own container. CI once caught an
// indexer refusing a match with "dial to self attempted".
func TestIndexerThatIsAlsoTheContainer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet of 3 nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := StartDevnet(ctx, DevnetConfig{Nodes: 3, Epoch: 10 * time.Second, Committee: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WaitServing(ctx, false); err != nil {
		t.Fatal(err)
	}
	pick := func() *Node {
		for _, x := range d.Nodes {
			if x.cont != nil && x.idx != nil && x.idx.serving(x.opts.Clock.Now()) &&
				x.cont.State() == pb.ContainerState_CONTAINER_STATE_STANDBY {
				return x
			}
		}
		return nil
	}
	n := pick()
	for n == nil {
		select {
		case <-ctx.Done():
			t.Fatal("no node is both a standby container and a serving indexer")
		case <-time.After(200 * time.Millisecond):
		}
		n = pick()
	}
	self := n.Net().ID()
	// Every other container is barred in n's index, so n's own container is the only candidate.
	ix := n.idx.index()
	for _, id := range d.containerIDs() {
		if id != string(self) {
			ix.SetStanding(id, indexer.DefaultQualityPPM, true)
		}
	}
	req := func() *pb.MatchRequest { return &pb.MatchRequest{App: "demo", RequestId: NewRequestID()} }
	// n's index learns its own container's standby state from its heartbeat, which may come a moment
	// after the container's own state changed (a loaded machine): wait until it would offer it.
	for {
		cands, _ := ix.Match(req(), n.opts.Clock.Now(), 1)
		if len(cands) == 1 && cands[0].Peer == string(self) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("n's index never offered its own container")
		case <-time.After(100 * time.Millisecond):
		}
	}

	// n as a consumer asks itself: the request reaches its own indexer in process, and its own
	// container is not offered.
	resp, err := (&nodeMatchNet{n: n}).Match(ctx, string(self), req())
	if err != nil {
		t.Fatalf("asking its own indexer: %v", err)
	}
	if resp.Matched || resp.Refused != "reservation" || resp.Detail != "the only candidate is the consumer's own container" || resp.Candidates != 0 {
		t.Fatalf("own consumer: %+v, want a refusal naming its own container, and no candidate counted", resp)
	}

	// Another consumer asks n over the network and is matched to n's container, which n's indexer
	// reserves in process.
	consumer := d.Light.net.ID()
	d.Light.net.Host().Peerstore().AddAddrs(self, n.Net().Addrs(), time.Hour)
	resp, err = requestMatch(ctx, d.Light.net, string(self), req())
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Matched || resp.Candidates != 1 {
		t.Fatalf("matched %v with %d candidates, want its one: %s (%s)", resp.Matched, resp.Candidates, resp.Refused, resp.Detail)
	}
	tk, signer, err := openTicket(resp.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if peer.ID(tk.Container) != self || peer.ID(signer) != self || peer.ID(tk.Consumer) != consumer {
		t.Fatalf("ticket: container %s, signer %s, consumer %s; want container and signer %s",
			peer.ID(tk.Container), peer.ID(signer), peer.ID(tk.Consumer), self)
	}
	if lease := time.UnixMilli(tk.LeaseExpiresUnixMs); !lease.After(n.opts.Clock.Now()) {
		t.Errorf("lease ends %v, before now", lease)
	}
	// The container holds that reservation: a second one, asked of it as its indexer would, is refused.
	again := &pb.ReserveResponse{}
	err = n.Net().Request(ctx, self, p2p.ProtoReserve, &pb.ReserveRequest{SessionId: []byte("0123456789abcdef"),
		Consumer: []byte(consumer), Epoch: tk.Epoch, App: "demo", PriceMicros: tk.PriceMicros, Units: 1, LeaseMs: 10_000},
		again, p2p.MaxReserveSize)
	if err != nil {
		t.Fatal(err)
	}
	if again.Reserved || again.Refused == "" {
		t.Errorf("reserved twice: %+v", again)
	}
}
