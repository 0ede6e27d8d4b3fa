// Package indexer is the pure core of the indexer role: it keeps the containers an indexer knows
// and matches consumers' requests against them. It owns no socket, timer or clock: every method
// that depends on time takes now, and the network shell (node/indexer.go) feeds it verified
// records and heartbeats, asks it for matches, reserves the candidates it returns and reports back
// with Hold.
//
// Its parts:
//   - index.go: the Index. Entries are sharded by region code; each shard has its own lock, a
//     dense slice for full scans, per-app lists for the fast path of Match, and the bounding box
//     of its containers, so a request with a latency limit skips regions that are surely too far.
//     Heartbeats update live state (state, load, reservation, bookings, fee) under one shard's
//     lock; records, new peers and removals change the structure under the index's lock.
//   - match.go: request validation, the filters (standby, app, hardware, latency, budget,
//     calendar), the refusal that names the filter that emptied the list, and the three rankings
//     (lowest fee, best experience, the evaluation index) with partial selection of the best.
//   - geo.go: geohash decoding, great-circle distances and the latency model.
//   - price.go: retail prices and the regional demand multiplier, sampled during an epoch and
//     applied in the next.
//
// docs/MATCHING.md is the reference for the match model: every formula, constant and rule, and why.
package indexer
