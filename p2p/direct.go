package p2p

import (
	"cmp"
	"context"
	"fmt"
	"time"

	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// dhtProtocol is the DHT's wire protocol, as the DHT built with DHTProtocolPrefix speaks it.
const dhtProtocol = protocol.ID(DHTProtocolPrefix + "/kad/1.0.0")

// maxDirectResponse bounds a GET_VALUE answer read from a container: a record (MaxRecordSize) and up
// to 20 closer peers with their addresses, with room to spare.
const maxDirectResponse = 64 << 10

// DefaultRecordHedge is how long FetchContainerRecord waits for a container's own answer before it
// asks the DHT as well: a new connection across continents, identify and one request take three
// round trips of up to about 275 ms each (docs/BENCHMARKS.md: 7 of 252 records in a 100-peer simnet
// took longer and came from the DHT).
const DefaultRecordHedge = time.Second

// ContainerRecordFrom asks the container id itself for its record: one GET_VALUE request of the
// DHT's own protocol (/rendermesh/kad/1.0.0), sent to id instead of to the peers closest to the key.
// A container holds its newest record, because a DHT put stores the record locally before sending it
// to the closest peers. The answer is verified like any record the DHT receives (signed by id, not
// expired, a lifetime within MaxRecordTTL), but it does not count as seen by the DHT's validator:
// the DHT's copies may still be a put behind the container's own, and the validator would then
// refuse them as replays, so a container that has just gone would vanish from queries before its
// record expires. A provider lookup leaves the container's
// addresses in the peerstore, so the request needs one connection, not a walk of the DHT.
func (n *Net) ContainerRecordFrom(ctx context.Context, id peer.ID) (*pb.ContainerRecord, error) {
	key := ContainerRecordKey(id)
	s, err := n.openStream(ctx, id, dhtProtocol)
	if err != nil {
		return nil, fmt.Errorf("p2p: ask %s for its record: %w", id, err)
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := pbio.NewDelimitedWriter(s).WriteMsg(dhtpb.NewMessage(dhtpb.Message_GET_VALUE, []byte(key), 0)); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("p2p: ask %s for its record: %w", id, err)
	}
	_ = s.CloseWrite()
	var resp dhtpb.Message
	if err := pbio.NewDelimitedReader(s, maxDirectResponse).ReadMsg(&resp); err != nil {
		_ = s.Reset()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("p2p: read record answer of %s: %w", id, err)
	}
	return openDirectRecord(n.records, id, &resp)
}

// openDirectRecord checks a container's GET_VALUE answer about its own record and opens the record.
func openDirectRecord(v *ContainerRecordValidator, id peer.ID, resp *dhtpb.Message) (*pb.ContainerRecord, error) {
	key := ContainerRecordKey(id)
	if resp.GetType() != dhtpb.Message_GET_VALUE {
		return nil, fmt.Errorf("p2p: record answer of %s: message type %s, want GET_VALUE", id, resp.GetType())
	}
	rec := resp.GetRecord()
	if rec == nil || len(rec.GetValue()) == 0 {
		return nil, fmt.Errorf("%w: %s holds no container record of its own", ErrNotFound, id)
	}
	if string(rec.GetKey()) != key {
		return nil, fmt.Errorf("p2p: record answer of %s: record for key %q, want %q", id, rec.GetKey(), key)
	}
	// check also makes sure that id, the peer the key names, signed it.
	out, _, err := v.check(key, rec.GetValue())
	if err != nil {
		return nil, fmt.Errorf("p2p: record answer of %s: %w", id, err)
	}
	return out, nil
}

// decodeDirectAnswer parses the payload of a GET_VALUE answer (without its length prefix), as read
// from a container; split out for the fuzz test.
func decodeDirectAnswer(v *ContainerRecordValidator, id peer.ID, payload []byte) (*pb.ContainerRecord, error) {
	if len(payload) > maxDirectResponse {
		return nil, fmt.Errorf("p2p: record answer of %s: %d bytes, limit %d", id, len(payload), maxDirectResponse)
	}
	var resp dhtpb.Message
	if err := proto.Unmarshal(payload, &resp); err != nil {
		return nil, fmt.Errorf("p2p: record answer of %s: %w", id, err)
	}
	return openDirectRecord(v, id, &resp)
}

// RecordSource says where FetchContainerRecord found a record.
type RecordSource string

const (
	FromContainer RecordSource = "container" // the container answered itself
	FromDHT       RecordSource = "dht"       // the peers closest to the record's key answered
)

// FetchContainerRecord returns id's newest valid record, asking id itself first (ContainerRecordFrom)
// and the DHT too (ContainerRecord with quorum) when id has failed or not answered within hedge
// (0: DefaultRecordHedge). The first valid record wins. The container's own answer is the newest
// record there is and costs one request where the DHT costs a lookup; the DHT is what answers for a
// container that is unreachable or gone, as before. When neither has a record, the DHT's error is
// returned (ErrNotFound when no peer holds one).
func (n *Net) FetchContainerRecord(ctx context.Context, id peer.ID, quorum int, hedge time.Duration) (*pb.ContainerRecord, RecordSource, error) {
	if hedge <= 0 {
		hedge = DefaultRecordHedge
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		rec *pb.ContainerRecord
		src RecordSource
		err error
	}
	answers := make(chan answer, 2)
	go func() {
		rec, err := n.ContainerRecordFrom(ctx, id)
		answers <- answer{rec, FromContainer, err}
	}()
	timer := n.cfg.Clock.Timer(hedge)
	defer timer.Stop()
	pending, askedDHT := 1, false
	askDHT := func() {
		if askedDHT {
			return
		}
		askedDHT = true
		pending++
		go func() {
			rec, err := n.ContainerRecord(ctx, id, quorum)
			answers <- answer{rec, FromDHT, err}
		}()
	}
	var direct, viaDHT error
	for pending > 0 {
		select {
		case a := <-answers:
			pending--
			if a.err == nil {
				n.cfg.Metrics.RecordFetches.WithLabelValues(string(a.src)).Inc()
				return a.rec, a.src, nil
			}
			if a.src == FromDHT {
				viaDHT = a.err
			} else {
				direct = a.err
			}
			askDHT()
		case <-timer.C:
			askDHT()
		case <-ctx.Done():
			return nil, "", fmt.Errorf("p2p: fetch container record of %s: %w", id, ctx.Err())
		}
	}
	n.cfg.Metrics.RecordFetches.WithLabelValues("none").Inc()
	return nil, "", cmp.Or(viaDHT, direct)
}
