package p2p

import (
	"context"
	"errors"
	"fmt"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// ErrNotFound is returned when the DHT holds no valid record.
var ErrNotFound = errors.New("p2p: not found")

// PutContainerRecord signs rec with the node's key and stores it under /rm-container/<own ID>. The
// record must name this node.
func (n *Net) PutContainerRecord(ctx context.Context, rec *pb.ContainerRecord) error {
	if peer.ID(rec.PeerId) != n.host.ID() {
		return fmt.Errorf("p2p: container record names %s, not this node", peer.ID(rec.PeerId))
	}
	data, err := Seal(KindContainerRecord, rec, n.host.Peerstore().PrivKey(n.host.ID()))
	if err != nil {
		return err
	}
	if err := n.dht.PutValue(ctx, ContainerRecordKey(n.host.ID()), data); err != nil {
		return fmt.Errorf("p2p: put container record: %w", err)
	}
	return nil
}

// ContainerRecord fetches, verifies and returns the newest valid container record of id. quorum is
// how many peers' answers to wait for (the newest of them wins); 0 means the DHT's default.
func (n *Net) ContainerRecord(ctx context.Context, id peer.ID, quorum int) (*pb.ContainerRecord, error) {
	data, err := n.getValue(ctx, ContainerRecordKey(id), quorum)
	if errors.Is(err, routing.ErrNotFound) || (err != nil && data == nil && ctx.Err() == nil) {
		return nil, fmt.Errorf("%w: container record of %s", ErrNotFound, id)
	}
	if err != nil && data == nil {
		return nil, fmt.Errorf("p2p: get container record of %s: %w", id, err)
	}
	// The DHT validated the value with our validator already; decode it again to return it.
	rec, _, err := OpenContainerRecord(data)
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// Provide announces this node as a provider of a capability key ("gpu:H100", "region:u33", ...).
func (n *Net) Provide(ctx context.Context, key string) error {
	c, err := CapabilityCID(key)
	if err != nil {
		return err
	}
	if err := n.dht.Provide(ctx, c, true); err != nil {
		return fmt.Errorf("p2p: provide %s: %w", key, err)
	}
	return nil
}

// FindProviders returns up to limit peers that provide a capability key (limit 0: no limit), as the
// DHT finds them, stopping when ctx ends.
func (n *Net) FindProviders(ctx context.Context, key string, limit int) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	err := n.StreamProviders(ctx, key, limit, func(pi peer.AddrInfo) { out = append(out, pi) })
	return out, err
}

// StreamProviders calls found, from the calling goroutine, for each of up to limit peers that provide a
// capability key (limit 0: no limit) as soon as the DHT finds it, and returns when the lookup ends (or
// stalls on peers that do not answer: see lookup.go). It fails only when the key is malformed or ctx
// ended before any provider was found.
func (n *Net) StreamProviders(ctx context.Context, key string, limit int, found func(peer.AddrInfo)) error {
	c, err := CapabilityCID(key)
	if err != nil {
		return err
	}
	foundAny := false
	lctx, done := n.patientLookup(ctx)
	for pi := range n.dht.FindProvidersAsync(lctx, c, limit) {
		foundAny = true
		found(pi)
	}
	done()
	if !foundAny && ctx.Err() != nil {
		return fmt.Errorf("p2p: find providers of %s: %w", key, ctx.Err())
	}
	return nil
}

// getValue is the DHT's GetValue (quorum 0: the DHT's default) that ends with the best value found
// so far if its lookup stalls on peers that do not answer (lookup.go): then err is not nil and ctx
// has not ended.
func (n *Net) getValue(ctx context.Context, key string, quorum int) ([]byte, error) {
	var opts []routing.Option
	if quorum > 0 {
		opts = append(opts, dht.Quorum(quorum))
	}
	lctx, done := n.patientLookup(ctx)
	defer done()
	return n.dht.GetValue(lctx, key, opts...)
}
