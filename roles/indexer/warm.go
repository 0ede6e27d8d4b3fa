package indexer

import (
	"cmp"
	"slices"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// warmApps is how many of a region's apps (the most offered) Warm ranks for.
const warmApps = 2

// warmRankings are the rankings Warm ranks by.
var warmRankings = []pb.Ranking{pb.Ranking_RANKING_INDEX, pb.Ranking_RANKING_FEE, pb.Ranking_RANKING_EXPERIENCE}

// Warm returns the containers a match is most likely to reserve next: in each region, for each of
// its warmApps most offered apps and each ranking, the k best containers that pass the standby
// filter now, ranked among the region's own containers as for a consumer without a location
// (every round trip the same). Each container is listed once, by region in order, then app, then
// ranking, best first.
//
// An indexer holds connections to these (docs/MATCHING.md, "Warm connections"): a reservation
// to a container it is not connected to costs a dial on top of the request's round trip. The
// k-th best of a region changes as containers are reserved, so an indexer asks again every few
// seconds; a scan costs what a match's scan of the region does, times apps and rankings.
func (ix *Index) Warm(now time.Time, k int) []Candidate {
	if k <= 0 {
		return nil
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []Candidate
	seen := map[string]bool{}
	var cands []cand
	for _, sh := range ix.order {
		apps := make([]string, 0, len(sh.byApp))
		for a, list := range sh.byApp {
			if len(list) > 0 {
				apps = append(apps, a)
			}
		}
		slices.SortFunc(apps, func(a, b string) int {
			return cmp.Or(cmp.Compare(len(sh.byApp[b]), len(sh.byApp[a])), cmp.Compare(a, b))
		})
		apps = apps[:min(len(apps), warmApps)]
		for _, app := range apps {
			for _, r := range warmRankings {
				q, err := newQuery(&pb.MatchRequest{App: app, Ranking: r}, now)
				if err != nil {
					continue // cannot happen: the request has no wholesale block
				}
				mult := q.multiplier(ix.demand, sh.region)
				cands = cands[:0]
				sh.mu.RLock()
				for _, p := range sh.byApp[app] {
					h := &sh.hot[p]
					if price, rtt, ok := q.pass(h, sh.entries[p], mult); ok {
						cands = append(cands, candidate(h, sh.entries[p], price, rtt))
					}
				}
				sh.mu.RUnlock()
				for _, c := range q.rank(cands, k) {
					if !seen[c.Peer] {
						seen[c.Peer] = true
						out = append(out, c)
					}
				}
			}
		}
	}
	return out
}
