package simnet

import (
	"encoding/hex"
	"math/big"
	"slices"
	"time"

	"github.com/rendermesh/rendermesh/node"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// The indexer elections in a simulation: every honest peer runs them (node's own code); a share of
// peers, fixed by the seed, hold stake. Epoch 0 starts when the warm-up ends, so the peers that found
// the network follow every epoch and churn joiners catch up by importing committee records.

// genesisSeed is the simulated network's seed(0), derived from the run's seed.
func genesisSeed(seed int64) epoch.Seed {
	var s epoch.Seed
	for i := range 4 {
		v := splitmix64(uint64(seed) ^ uint64(i+1)*0x5851f42d4c957f2d)
		for j := range 8 {
			s[i*8+j] = byte(v >> (8 * j))
		}
	}
	return s
}

// allocation gives stake to a share of the honest peers, 1000 to 2500 tokens each, and a checker
// licence to the checkers.
func (s *sim) allocation() (epoch.Allocation, error) {
	var a epoch.Allocation
	for _, p := range s.plan.peers {
		if p.role == roleAttacker {
			continue
		}
		h := splitmix64(uint64(s.cfg.Seed) ^ uint64(p.index)*0x2545f4914f6cdd1d)
		staked := unit(h) < s.sc.Epochs.StakeShare
		if !staked && !p.checker {
			continue
		}
		stake := new(big.Int) // a checker without stake: licensed, never drawn as an indexer
		if staked {
			stake.Mul(big.NewInt(int64(1000+500*(h>>32%4))), big.NewInt(1e18))
		}
		c, err := node.NewCandidate(p.id, stake, 1_000_000)
		if err != nil {
			return nil, err
		}
		c.Checker = p.checker
		a = append(a, c)
	}
	return node.SortAllocation(a)
}

// networkConfig is the genesis every simulated peer shares.
func (s *sim) networkConfig() node.NetworkConfig {
	nc := node.DefaultNetwork()
	ep := s.sc.Epochs
	nc.GenesisTime = s.genesis().UTC().Format(time.RFC3339Nano)
	gs := genesisSeed(s.cfg.Seed)
	nc.GenesisSeed = hex.EncodeToString(gs[:])
	nc.EpochLength = node.Duration(ep.Length)
	nc.CommitteeSize = ep.CommitteeSize
	nc.RecencyWindow = ep.RecencyWindow
	// Indexers follow every region of the topology.
	nc.Regions = nil
	for _, r := range s.sc.Topology.Regions {
		nc.Regions = append(nc.Regions, r.Name)
	}
	return nc
}

func (s *sim) genesis() time.Time { return s.t0.Add(time.Duration(s.sc.Warmup)) }

// epochObs is what the sampler saw of one epoch's committee across the online peers.
type epochObs struct {
	epoch        uint64
	lastDiffer   time.Duration // last sample (since the run began) at which views differed; -1: never
	shareAfter   float64       // share holding the majority view at the first sample AgreementAfter into the epoch
	haveAfter    bool
	members      int // committee size in the majority view, at the last sample
	lastDigest   string
	seenAgreeing bool
}

// observeEpochs compares the settled online peers' views of the current and next epoch's committees.
func (s *sim) observeEpochs(nodes []*node.Node) {
	sched := epoch.Schedule{Genesis: s.genesis(), Length: time.Duration(s.sc.Epochs.Length)}
	now := time.Now()
	if now.Before(sched.Genesis) {
		return
	}
	cur := sched.Epoch(now)
	for _, e := range []uint64{cur, cur + 1} {
		views := map[string]int{}
		sizes := map[string]int{}
		online := 0
		for i, n := range nodes {
			// A peer counts once it has been online for the scenario's settle time (a joiner first
			// imports the committee records of the epochs it missed).
			if n == nil || n.Epochs() == nil || s.plan.peers[i].join+time.Duration(s.sc.Settle) > s.now() {
				continue
			}
			dg, size := n.Epochs().Digest(e)
			views[dg]++
			sizes[dg] = size
			online++
		}
		if online == 0 {
			continue
		}
		best := ""
		for dg, c := range views {
			if best == "" || c > views[best] || (c == views[best] && dg < best) {
				best = dg
			}
		}
		s.mu.Lock()
		o := s.epochObs[e]
		if o == nil {
			o = &epochObs{epoch: e, lastDiffer: -1}
			s.epochObs[e] = o
		}
		if len(views) > 1 || (o.seenAgreeing && best != o.lastDigest) {
			o.lastDiffer = s.now()
		}
		o.seenAgreeing = o.seenAgreeing || len(views) == 1
		o.lastDigest, o.members = best, sizes[best]
		if e == cur && !o.haveAfter && now.Sub(sched.Start(e)) >= time.Duration(s.sc.Epochs.AgreementAfter) {
			o.shareAfter, o.haveAfter = float64(views[best])/float64(online), true
		}
		s.mu.Unlock()
	}
}

// epochSummary fills the summary's indexer fields from the epochs whose agreement time fell inside
// the measured window.
func (s *sim) epochSummary(sum *Summary) {
	sched := epoch.Schedule{Genesis: s.genesis(), Length: time.Duration(s.sc.Epochs.Length)}
	var obs []*epochObs
	for _, o := range s.epochObs {
		if o.haveAfter {
			obs = append(obs, o)
		}
	}
	slices.SortFunc(obs, func(a, b *epochObs) int { return int(a.epoch) - int(b.epoch) })
	sum.IndexerAgreement = 1
	for _, o := range obs {
		sum.IndexerEpochs++
		sum.IndexerAgreement = min(sum.IndexerAgreement, o.shareAfter)
		sum.IndexerCommitteeMean += float64(o.members)
		// When views last differed, relative to the epoch's start (negative: before it began).
		settled := -time.Duration(s.sc.Epochs.Length)
		if o.lastDiffer >= 0 {
			settled = s.t0.Add(o.lastDiffer + time.Second).Sub(sched.Start(o.epoch))
		}
		sum.IndexerAgreeMsMax = max(sum.IndexerAgreeMsMax, ms(settled))
		if sum.IndexerEpochs == 1 {
			sum.IndexerAgreeMsMax = ms(settled)
		}
		sum.IndexerEpochList = append(sum.IndexerEpochList, EpochView{Epoch: o.epoch, Members: o.members,
			AgreementAfter: o.shareAfter, SettledMs: ms(settled)})
	}
	if sum.IndexerEpochs > 0 {
		sum.IndexerCommitteeMean /= float64(sum.IndexerEpochs)
	} else {
		sum.IndexerAgreement = 0
	}
	sum.IndexerAgreementAfterS = time.Duration(s.sc.Epochs.AgreementAfter).Seconds()
}
