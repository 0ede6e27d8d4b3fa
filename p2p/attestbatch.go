package p2p

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"github.com/prometheus/client_golang/prometheus"
)

// maxAttestBatch bounds the signatures verified in one batch: past a few dozen, a batch saves
// little more per signature, and a batch that fails is verified again one signature at a time.
const maxAttestBatch = 64

// attestBatcher verifies the signatures of concurrent validations together. gossipsub runs each
// message's topic validator in a goroutine of its own; every call hands its signature to the
// batcher. While fewer than maxLeaders batches are being verified, a call leads: it yields the
// processor once (the validations ready to run reach the queue meanwhile) and verifies its own
// signature with whatever queued; otherwise it queues, and the next leader to finish hands the
// queue over as a batch to the first request in it. So an idle node verifies each attestation as
// it comes, with no added latency, and a busy one verifies what arrived together in one batch,
// where a signature costs less (docs/CHECKERS.md, "Performance"). Results are exactly those
// of verifying each signature alone with verifyAttest: a batch that fails is verified again one
// signature at a time, and the next few batches' worth are verified alone (a flood of forgeries
// gains nothing from batches).
type attestBatcher struct {
	maxLeaders, maxBatch int

	mu      sync.Mutex
	leaders int
	queue   []*sigRequest

	alone               atomic.Int64        // signatures still to verify alone, after a batch failed
	batches, signatures atomic.Uint64       // verified so far (the benchmark reports their ratio)
	sizes               prometheus.Observer // each verification's signatures (nil: none kept)
}

// sigRequest is one signature to verify, and its result.
type sigRequest struct {
	x        *ed25519.ExpandedPublicKey // nil: the key is no curve point
	pub, msg []byte
	sig      []byte
	ok       bool
	lead     []*sigRequest // set when the request is handed the lead: the batch to verify, itself first
	done     chan struct{} // closed when ok is set or the lead handed over
}

// verify verifies one signature, alone or in a batch with concurrent calls.
func (b *attestBatcher) verify(x *ed25519.ExpandedPublicKey, pub, msg, sig []byte) bool {
	r := &sigRequest{x: x, pub: pub, msg: msg, sig: sig}
	b.mu.Lock()
	if b.leaders >= max(b.maxLeaders, 1) {
		r.done = make(chan struct{})
		b.queue = append(b.queue, r)
		b.mu.Unlock()
		<-r.done
		if r.lead == nil {
			return r.ok // a leader verified it
		}
		b.verifyBatch(r.lead) // handed the lead, with a batch that holds r
	} else {
		// A new leader lets the goroutines that are ready to run go first: on a busy node they
		// are other messages' validations, which reach the queue and join this batch. On an idle
		// one there are none, and the leader goes on at once.
		b.leaders++
		b.mu.Unlock()
		runtime.Gosched()
		b.mu.Lock()
		batch := append([]*sigRequest{r}, b.takeN(max(b.maxBatch, 1)-1)...)
		b.mu.Unlock()
		b.verifyBatch(batch)
	}
	b.next()
	return r.ok
}

// take removes up to maxBatch requests from the queue. Caller holds mu.
func (b *attestBatcher) take() []*sigRequest { return b.takeN(max(b.maxBatch, 1)) }

// takeN removes up to n requests from the queue. Caller holds mu.
func (b *attestBatcher) takeN(n int) []*sigRequest {
	n = min(len(b.queue), n)
	if n == 0 {
		return nil
	}
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let the backing array go
	}
	return batch
}

// next ends a leader's turn: when requests queued meanwhile, the first of them becomes a leader in
// its place, with the queue (up to maxBatch) as its batch.
func (b *attestBatcher) next() {
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.leaders--
		b.mu.Unlock()
		return
	}
	batch := b.take()
	b.mu.Unlock()
	batch[0].lead = batch
	close(batch[0].done)
}

// verifyAlone verifies one signature.
func verifyAlone(r *sigRequest) bool {
	if r.x != nil {
		return ed25519.VerifyExpandedWithOptions(r.x, r.msg, r.sig, verifyAttest)
	}
	return ed25519.VerifyWithOptions(r.pub, r.msg, r.sig, verifyAttest)
}

// verifyBatch verifies the requests' signatures, sets each result and wakes every request but the
// first, the leader's own.
func (b *attestBatcher) verifyBatch(batch []*sigRequest) {
	b.batches.Add(1)
	b.signatures.Add(uint64(len(batch)))
	if b.sizes != nil {
		b.sizes.Observe(float64(len(batch)))
	}
	if alone := b.alone.Load() > 0; alone || len(batch) < minBatch {
		for _, r := range batch {
			r.ok = verifyAlone(r)
		}
		if alone {
			b.alone.Add(-int64(len(batch)))
		}
	} else if !verifyAll(batch) {
		// A bad signature among them: each alone, and the next signatures too, for a while. A
		// forgery costs a batch more than verifying alone would have; a stream of them (a flood
		// from many identities) would cost that each time.
		for _, r := range batch {
			r.ok = verifyAlone(r)
		}
		b.alone.Store(int64(aloneAfterFailure * max(b.maxBatch, 1)))
	}
	for _, r := range batch[1:] {
		close(r.done) // batch[0] leads: it is awake
	}
}

// minBatch is the smallest batch worth a batch equation; aloneAfterFailure how many batches' worth
// of signatures are verified alone after a batch failed.
const (
	minBatch          = 4
	aloneAfterFailure = 4
)

// verifyAll reports whether every signature of rs verifies, by one batch equation (setting every
// result to true if so).
func verifyAll(rs []*sigRequest) bool {
	bv := ed25519.NewBatchVerifierWithCapacity(len(rs))
	for _, r := range rs {
		if r.x != nil {
			bv.AddExpandedWithOptions(r.x, r.msg, r.sig, verifyAttest)
		} else {
			bv.AddWithOptions(r.pub, r.msg, r.sig, verifyAttest)
		}
	}
	if !bv.VerifyBatchOnly(nil) {
		return false
	}
	for _, r := range rs {
		r.ok = true
	}
	return true
}
