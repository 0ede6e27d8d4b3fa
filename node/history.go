package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// Committee history (docs/EPOCHS.md, "Late joiners and light clients"). The DHT holds a committee
// record for a day after it was put (p2p.MaxRecordTTL), and records are put when their epoch
// starts: a node or light client that joins a network older than that could not derive the beacon
// from genesis. So a full node keeps the sealed set of every epoch it sealed or imported, for
// MaxCatchUp epochs, and serves them on p2p.ProtoCommitteeHistory; a joiner reads the epochs that
// ended a while ago from there, in batches, and the last ones from the DHT.

// historyGiveUp is defaultHistoryGiveUp; tests shorten it.
var historyGiveUp = defaultHistoryGiveUp

const (
	// historyLag: an epoch at least this far behind the current one is read from full nodes'
	// history first. Younger ones come from the DHT, where their records appear as they start.
	historyLag = 2
	// historyPeers is how many full nodes a batch is asked of; their answers are merged per epoch.
	historyPeers = 3
	// defaultHistoryGiveUp is how long a node asks for an epoch's committee that no full node it asks
	// holds (other nodes each time) before it seals the epoch empty, as every node in its place
	// does: after the whole network was down through the epoch, nobody sealed it.
	defaultHistoryGiveUp = 2 * time.Minute
	// historyPrefix is where a node keeps the sealed sets, under its datastore.
	historyPrefix = "/node/committees"
)

func historyKey(e uint64) ds.Key { return ds.NewKey(fmt.Sprintf("%s/%020d", historyPrefix, e)) }

// keepSealed stores epoch e's sealed set as this node holds it (a sealed CommitteeRecord, as
// served), and forgets the one MaxCatchUp epochs older: nobody can catch up from further back.
// The history can always be read again from other nodes, so it is written without a sync.
func (es *epochs) keepSealed(ctx context.Context, e uint64) {
	set, ok := es.tr.Sealed(e)
	if !ok {
		return
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(committeeRecord(e, set, true))
	if err != nil {
		es.log.Warn("encode committee history", "epoch", e, "err", err)
		return
	}
	if err := es.n.store.Put(ctx, historyKey(e), raw); err != nil {
		if ctx.Err() == nil && !errors.Is(err, errDatastoreClosed) {
			es.log.Warn("keep committee history", "epoch", e, "err", err)
		}
		return
	}
	if e > MaxCatchUp {
		_ = es.n.store.Delete(ctx, historyKey(e-MaxCatchUp-1))
	}
}

// historyRecord is the history this node serves: epoch e's sealed set, if it keeps it.
func (es *epochs) historyRecord(e uint64) ([]byte, bool) {
	raw, err := es.n.store.Get(context.Background(), historyKey(e))
	if err != nil {
		return nil, false
	}
	return raw, true
}

// importOwnHistory imports epoch e's sealed set from this node's own history, when it keeps one (it
// sealed or imported e before a restart). The record is opened and its tickets verified again, as
// any other's.
func (es *epochs) importOwnHistory(e uint64) (int, bool) {
	raw, ok := es.historyRecord(e)
	if !ok {
		return 0, false
	}
	_, rec, tickets, err := p2p.OpenCommitteeRecord(p2p.CommitteeKey(e), raw)
	if err != nil || !rec.Sealed {
		es.log.Warn("this node's committee history is damaged: importing from the network", "epoch", e, "err", err)
		return 0, false
	}
	kept, err := es.tr.ImportSealed(e, imported(tickets))
	if err != nil {
		return 0, false
	}
	return kept, true
}

// historyBuf holds committee records read from full nodes, ahead of their import: one batch
// answers up to p2p.MaxHistoryBatch epochs.
type historyBuf struct {
	recs map[uint64][]historyCandidate
	asks int // batches asked so far: each starts at another place in the peer list
}

// historyCandidate is one record of an epoch as some of the asked nodes sent it.
type historyCandidate struct {
	tickets []epoch.ImportedTicket
	votes   int
}

// take returns the sealed set to import for epoch e (whose seed tr knows), reading the batch from e
// on from up to historyPeers full nodes when the buffer does not hold e. Of the records the nodes
// sent for e, it takes the one most of them sent, and on a tie the one with more tickets that
// verify: a node can withhold a winner's ticket, but cannot make a forged one count. ok is false
// when no node sent a record of e.
func (h *historyBuf) take(ctx context.Context, net *p2p.Net, tr *epoch.Tracker, e uint64) (tickets []epoch.ImportedTicket, ok bool, err error) {
	answered := 0
	if _, have := h.recs[e]; !have {
		h.recs, answered, err = fetchHistory(ctx, net, e, h.asks)
		h.asks++
	}
	cands, have := h.recs[e]
	if !have {
		if answered > 0 {
			err = fmt.Errorf("%w: epoch %d (%d full nodes answered)", errHistoryNotHeld, e, answered)
		} else if err == nil {
			err = fmt.Errorf("no full node answered for the committee of epoch %d", e)
		}
		return nil, false, err
	}
	delete(h.recs, e)
	best, bestValid := -1, -1
	for i, c := range cands {
		valid := tr.ValidTickets(e, c.tickets)
		if best < 0 || c.votes > cands[best].votes || (c.votes == cands[best].votes && valid > bestValid) {
			best, bestValid = i, valid
		}
	}
	return cands[best].tickets, true, nil
}

// errHistoryNotHeld: full nodes answered a history request, and none holds the epoch's committee.
var errHistoryNotHeld = errors.New("no full node asked holds the committee")

// fetchHistory asks up to historyPeers connected full nodes for the batch of records from epoch
// `from` and groups their answers per epoch by content; answered is how many nodes answered.
func fetchHistory(ctx context.Context, net *p2p.Net, from uint64, offset int) (out map[uint64][]historyCandidate, answered int, err error) {
	peers := net.HistoryPeers(historyPeers, offset)
	if len(peers) == 0 {
		return nil, 0, errors.New("no connected peer serves committee history")
	}
	answers := make([][]p2p.HistoryRecord, len(peers))
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() { answers[i], errs[i] = net.CommitteeHistory(ctx, p, from, p2p.MaxHistoryBatch) })
	}
	wg.Wait()
	out = map[uint64][]historyCandidate{}
	index := map[string]int{} // epoch and record bytes -> its candidate's place in out[epoch]
	for i, a := range answers {
		if errs[i] == nil {
			answered++
		}
		for _, r := range a {
			k := fmt.Sprint(r.Epoch, "|", string(r.Raw))
			if i, seen := index[k]; seen {
				out[r.Epoch][i].votes++
				continue
			}
			index[k] = len(out[r.Epoch])
			out[r.Epoch] = append(out[r.Epoch], historyCandidate{tickets: imported(r.Tickets), votes: 1})
		}
	}
	return out, answered, errors.Join(errs...)
}
