// Package consumer is the consumer role: a light client that finds containers and, in later
// releases, gets matched to one and plays its stream.
//
// Find resolves a capability query the way any node can: capability keys -> provider peers (DHT
// provider records) -> their signed capability records, verified by the network layer, then
// filtered against the query here, because a provider record only says that a peer once claimed
// the capability.
package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
)

// Lookup is what finding containers needs from the network.
type Lookup interface {
	// FindProviders calls found for each of up to limit peers (peer IDs in text form) that provide a
	// capability key, as soon as it is found, from the calling goroutine, and returns when the lookup
	// ends. It fails when the key is malformed or ctx ended before any provider was found.
	FindProviders(ctx context.Context, key string, limit int, found func(peerID string)) error
	// ContainerRecord fetches and verifies the newest capability record of a peer, and says where
	// it came from (e.g. "container" when the peer answered itself, "dht").
	ContainerRecord(ctx context.Context, peerID string) (*pb.ContainerRecord, string, error)
}

// Query describes the containers wanted. At least one of GPU, Region and App must be set.
type Query struct {
	GPU    string // model as advertised, e.g. "H100" (case-insensitive); "none" for CPU-only
	Region string // geohash prefix, at least 2 characters, e.g. "u33"
	App    string // pre-installed application
	// States, if not empty, keeps only containers whose record shows one of these states.
	States []pb.ContainerState
	// MaxFee, if not zero, keeps only containers asking at most this per session (micro-units).
	MaxFee uint64
	// Limit bounds providers fetched per key (0: 256).
	Limit int
	// Parallel bounds concurrent record fetches (0: 16).
	Parallel int
}

// ErrQuery is wrapped by errors about a malformed query.
var ErrQuery = errors.New("consumer: bad query")

// Found is one container that matches a query.
type Found struct {
	PeerID string
	Record *pb.ContainerRecord
	// Source is where the record came from (Lookup.ContainerRecord): the container's own answer is
	// its claim to whoever asks; the DHT's copy is the one indexers and checkers read.
	Source string
}

// Stats says how a query went.
type Stats struct {
	Keys      []string // capability keys asked
	Providers int      // peers providing all of them
	Fetched   int      // records fetched and verified
	Missing   int      // providers without a valid record (gone, or expired)
	Filtered  int      // records that did not match the query
}

// Keys returns the capability keys a query asks the DHT for. A region longer than the longest
// advertised prefix is asked at that prefix and filtered exactly afterwards.
func (q Query) Keys() ([]string, error) {
	var keys []string
	if q.GPU != "" {
		keys = append(keys, "gpu:"+normalizeGPU(q.GPU))
	}
	if q.Region != "" {
		r := strings.ToLower(q.Region)
		if !container.ValidGeohash(r) || len(r) < container.PrefixPrecisions[0] {
			return nil, fmt.Errorf("%w: region %q: want a geohash prefix of at least %d characters, e.g. u33",
				ErrQuery, q.Region, container.PrefixPrecisions[0])
		}
		keys = append(keys, "region:"+r[:min(len(r), slices.Max(container.PrefixPrecisions))])
	}
	if q.App != "" {
		keys = append(keys, "app:"+q.App)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: give at least one of gpu, region and app", ErrQuery)
	}
	return keys, nil
}

func normalizeGPU(s string) string {
	if strings.EqualFold(s, container.CPUModel) {
		return container.CPUModel
	}
	return container.NormalizeModel(s)
}

// Matches reports whether a verified record satisfies the query.
func (q Query) Matches(rec *pb.ContainerRecord) bool {
	if q.GPU != "" && !slices.Contains(container.GPUModels(rec.GetHardware()), normalizeGPU(q.GPU)) {
		return false
	}
	if q.Region != "" && !strings.HasPrefix(rec.GetLocation().GetGeohash(), strings.ToLower(q.Region)) {
		return false
	}
	if q.App != "" && !slices.Contains(rec.GetApps(), q.App) {
		return false
	}
	if len(q.States) > 0 && !slices.Contains(q.States, rec.GetState()) {
		return false
	}
	if q.MaxFee > 0 && rec.GetSessionFeeMicros() > q.MaxFee {
		return false
	}
	return true
}

// Find returns the containers that match q, cheapest first (then by peer ID).
func Find(ctx context.Context, lk Lookup, q Query) ([]Found, Stats, error) {
	keys, err := q.Keys()
	if err != nil {
		return nil, Stats{}, err
	}
	st := Stats{Keys: keys}
	limit := cmp.Or(q.Limit, 256)

	// Providers of every key, asked concurrently; a container must provide all of them. Its record is
	// fetched as soon as the last key names it, while the lookups go on: a lookup finds most providers
	// well before it has asked the last peers near its key.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu         sync.Mutex
		named      = map[string]int{} // how many keys named a peer
		candidates []string
		recs       = map[string]*pb.ContainerRecord{}
		sources    = map[string]string{}
		fetches    sync.WaitGroup
		lookups    sync.WaitGroup
	)
	sem := make(chan struct{}, cmp.Or(q.Parallel, 16))
	errs := make([]error, len(keys))
	for i, key := range keys {
		lookups.Go(func() {
			seen := map[string]bool{}
			errs[i] = lk.FindProviders(fctx, key, limit, func(id string) {
				if seen[id] {
					return
				}
				seen[id] = true
				mu.Lock()
				named[id]++
				ready := named[id] == len(keys)
				if ready {
					candidates = append(candidates, id)
				}
				mu.Unlock()
				if !ready {
					return
				}
				fetches.Go(func() {
					select {
					case sem <- struct{}{}:
					case <-fctx.Done():
						return
					}
					defer func() { <-sem }()
					rec, src, _ := lk.ContainerRecord(fctx, id)
					mu.Lock()
					recs[id], sources[id] = rec, src
					mu.Unlock()
				})
			})
		})
	}
	lookups.Wait()
	if err := errors.Join(errs...); err != nil {
		cancel()
		fetches.Wait()
		return nil, st, fmt.Errorf("consumer: find providers: %w", err)
	}
	fetches.Wait()
	slices.Sort(candidates)
	st.Providers = len(candidates)

	var out []Found
	for _, id := range candidates {
		switch rec := recs[id]; {
		case rec == nil:
			st.Missing++
		case !q.Matches(rec):
			st.Fetched++
			st.Filtered++
		default:
			st.Fetched++
			out = append(out, Found{PeerID: id, Record: rec, Source: sources[id]})
		}
	}
	if len(out) == 0 && ctx.Err() != nil {
		return nil, st, fmt.Errorf("consumer: find: %w", ctx.Err())
	}
	slices.SortFunc(out, func(a, b Found) int {
		return cmp.Or(cmp.Compare(a.Record.GetSessionFeeMicros(), b.Record.GetSessionFeeMicros()), strings.Compare(a.PeerID, b.PeerID))
	})
	return out, st, nil
}
