package simnet

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	dto "github.com/prometheus/client_model/go"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// An attacker runs modified software: a libp2p host with its own gossipsub (no validation, and
// for some no signatures) and a DHT client that stores whatever it is given. It joins its
// region's heartbeat topic, records honest heartbeats to replay, and from the flood's start sends
// a mix of bad messages at the scenario's rate.
type attacker struct {
	spec     *peerSpec
	h        host.Host
	ps       *pubsub.PubSub
	dht      *dht.IpfsDHT
	topic    *pubsub.Topic
	sub      *pubsub.Subscription
	signed   bool // signs its gossip (kind "signed"): gossipsub drops all of it
	captured [][]byte

	// The indexer topic, for the "ticket" kind: captured tickets to replay and break.
	tickets      *pubsub.Topic
	ticketSub    *pubsub.Subscription
	mu           sync.Mutex
	capturedTkts [][]byte

	// The attestation topic, for the "attestation" kind: captured attestations to replay and break.
	attests      *pubsub.Topic
	attestSub    *pubsub.Subscription
	capturedAtts [][]byte
}

type floodStats struct {
	attackers []*attacker
	sent      map[string]int
	scores    []float64 // per attacker: mean score honest peers give it
	honest    []float64 // per honest peer sampled: mean score its peers give it
}

// permissive accepts any record: the attacker's DHT must not stop its own forgeries.
type permissive struct{}

func (permissive) Validate(string, []byte) error        { return nil }
func (permissive) Select(string, [][]byte) (int, error) { return 0, nil }

func (s *sim) runFlood() {
	pl := s.plan
	s.flood.sent = map[string]int{}
	for _, p := range pl.peers {
		if p.role != roleAttacker {
			continue
		}
		a, err := s.newAttacker(p, len(s.flood.attackers))
		if err != nil {
			s.log.Warn("attacker failed to start", "peer", p.index, "err", err)
			continue
		}
		s.mu.Lock()
		s.flood.attackers = append(s.flood.attackers, a)
		s.mu.Unlock()
		s.wg.Go(func() { a.capture(s.ctx) })
		s.wg.Go(func() { a.captureTickets(s.ctx) })
		s.wg.Go(func() { a.captureAttestations(s.ctx) })
		s.goAt(pl.floodAt, func() { s.attack(a) })
	}
}

func (s *sim) newAttacker(p *peerSpec, k int) (*attacker, error) {
	opts := append([]libp2p.Option{
		libp2p.Identity(p.key),
		libp2p.ListenAddrStrings(listenAddr(p.index)),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableMetrics(),
	}, s.links.transports(p.index)...)
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, err
	}
	a := &attacker{spec: p, h: h, signed: k%4 == 3 && containsKind(s.sc.Flood.Kinds, "signed")}
	var boot []peer.AddrInfo
	for _, b := range s.plan.peers[:s.sc.Bootstrap] {
		boot = append(boot, peer.AddrInfo{ID: b.id, Addrs: addrsOf(b)})
	}
	a.dht, err = dht.New(h, dht.Mode(dht.ModeClient), dht.ProtocolPrefix(p2p.DHTProtocolPrefix),
		dht.Validator(record.NamespacedValidator{p2p.ContainerRecordNamespace: permissive{}}),
		dht.BootstrapPeers(boot...))
	if err != nil {
		h.Close()
		return nil, err
	}
	// The network's gossip policy (no author, no signature, content IDs), so that what it sends
	// reaches the validators; a "signed" attacker signs its gossip as libp2p does by default.
	// It floods: each message goes to every peer of the topic it is connected to, not only to its
	// mesh (honest nodes publish to their mesh, docs/ARCHITECTURE.md).
	psOpts := []pubsub.Option{pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(p2p.GossipMsgID)}
	if a.signed {
		psOpts = []pubsub.Option{pubsub.WithMessageSignaturePolicy(pubsub.StrictSign)}
	}
	psOpts = append(psOpts, pubsub.WithMaxMessageSize(1<<20), pubsub.WithFloodPublish(true))
	a.ps, err = pubsub.NewGossipSub(s.ctx, h, psOpts...)
	if err != nil {
		a.close()
		return nil, err
	}
	// It dials the bootstrap peers and a handful of honest peers of its region, as a crawler would.
	for _, b := range boot {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		h.Connect(ctx, b)
		cancel()
	}
	region := s.sc.Topology.Regions[p.region].Name
	dialled := 0
	for _, q := range s.plan.peers {
		if dialled == 8 {
			break
		}
		if q.region == p.region && q.role != roleAttacker && q.role != roleBootstrap && q.settled(s.now(), 0, 0) {
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			if h.Connect(ctx, peer.AddrInfo{ID: q.id, Addrs: addrsOf(q)}) == nil {
				dialled++
			}
			cancel()
		}
	}
	if a.topic, err = a.ps.Join(p2p.HeartbeatTopic(region)); err != nil {
		a.close()
		return nil, err
	}
	if a.sub, err = a.topic.Subscribe(); err != nil {
		a.close()
		return nil, err
	}
	if containsKind(s.sc.Flood.Kinds, "attestation") && !a.signed {
		if a.attests, err = a.ps.Join(p2p.AttestTopic); err != nil {
			a.close()
			return nil, err
		}
		if a.attestSub, err = a.attests.Subscribe(); err != nil {
			a.close()
			return nil, err
		}
	}
	if containsKind(s.sc.Flood.Kinds, "ticket") && !a.signed {
		if a.tickets, err = a.ps.Join(p2p.IndexerTopic); err != nil {
			a.close()
			return nil, err
		}
		if a.ticketSub, err = a.tickets.Subscribe(); err != nil {
			a.close()
			return nil, err
		}
	}
	return a, nil
}

func addrsOf(p *peerSpec) []ma.Multiaddr {
	return []ma.Multiaddr{ma.StringCast(listenAddr(p.index))}
}

func containsKind(kinds []string, k string) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// captureAttestations keeps the last honest attestations the attacker sees.
func (a *attacker) captureAttestations(ctx context.Context) {
	if a.attestSub == nil {
		return
	}
	for {
		msg, err := a.attestSub.Next(ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == a.h.ID() {
			continue
		}
		a.mu.Lock()
		if len(a.capturedAtts) == 16 {
			a.capturedAtts = a.capturedAtts[1:]
		}
		a.capturedAtts = append(a.capturedAtts, msg.Data)
		a.mu.Unlock()
	}
}

// forgedAttestation is an attestation an attacker can make: a failure of an honest container in its
// own name (it holds no checker licence: ineligible), the same dated in another epoch (wrong
// epoch), a captured honest one replayed (a duplicate, ignored without penalty), or a captured one
// with its signature broken.
func (s *sim) forgedAttestation(a *attacker, r *rand.Rand, i int) []byte {
	a.mu.Lock()
	captured := slices.Clone(a.capturedAtts)
	a.mu.Unlock()
	switch {
	case i%4 == 2 && len(captured) > 0:
		return rewrap(captured[r.IntN(len(captured))])
	case i%4 == 3 && len(captured) > 0:
		data := append([]byte(nil), captured[r.IntN(len(captured))]...)
		data[len(data)-1] ^= 0xff
		return data
	}
	victim := s.randomVictim(r)
	if victim == nil {
		return nil
	}
	sched := epoch.Schedule{Genesis: s.genesis(), Length: time.Duration(s.sc.Epochs.Length)}
	now := time.Now()
	e := sched.Epoch(now)
	if i%4 == 1 {
		e += 5
	}
	nonce := make([]byte, 16)
	for j := range nonce {
		nonce[j] = byte(r.Uint32())
	}
	att := &pb.Attestation{Checker: []byte(a.h.ID()), Container: []byte(victim.id), Epoch: e,
		Kind: pb.CheckKind_CHECK_KIND_RANDOM, Method: pb.CheckMethod_CHECK_METHOD_SIMULATION, Verdict: pb.Verdict_VERDICT_FAIL,
		M: &pb.Measurements{FpsMilli: 1000}, EvidenceHash: make([]byte, p2p.EvidenceHashSize), Reason: "frame_rate: forged",
		IssuedUnixMs: now.UnixMilli(), Nonce: nonce}
	data, err := p2p.SealAttestation(att, a.h.Peerstore().PrivKey(a.h.ID()))
	if err != nil {
		return nil
	}
	return data
}

// captureTickets keeps the last honest tickets the attacker sees.
func (a *attacker) captureTickets(ctx context.Context) {
	if a.ticketSub == nil {
		return
	}
	for {
		msg, err := a.ticketSub.Next(ctx)
		if err != nil {
			return
		}
		a.mu.Lock()
		if len(a.capturedTkts) == 16 {
			a.capturedTkts = a.capturedTkts[1:]
		}
		a.capturedTkts = append(a.capturedTkts, msg.Data)
		a.mu.Unlock()
	}
}

// forgedTicket is an indexer ticket an attacker can make: one in its own name (it holds no stake),
// a captured one replayed (later: an epoch that is over), or a captured one with its signature broken.
func (s *sim) forgedTicket(a *attacker, r *rand.Rand, i int) []byte {
	a.mu.Lock()
	captured := slices.Clone(a.capturedTkts)
	a.mu.Unlock()
	switch {
	case i%3 == 1 && len(captured) > 0:
		return rewrap(captured[r.IntN(len(captured))])
	case i%3 == 2 && len(captured) > 0:
		data := append([]byte(nil), captured[r.IntN(len(captured))]...)
		data[len(data)-1] ^= 0xff
		return data
	}
	sched := epoch.Schedule{Genesis: s.genesis(), Length: time.Duration(s.sc.Epochs.Length)}
	proof := make([]byte, epoch.ProofSize)
	for j := range proof {
		proof[j] = byte(r.Uint32())
	}
	seed := make([]byte, 32)
	tk := &pb.IndexerTicket{PeerId: []byte(a.h.ID()), Epoch: sched.Epoch(time.Now()) + 1, Role: string(epoch.RoleIndexer),
		VrfProof: proof, Seats: 1, Stake: []byte{1}, QualityPpm: 1_000_000, Seed: seed}
	data, err := p2p.Seal(p2p.KindIndexerTicket, tk, a.h.Peerstore().PrivKey(a.h.ID()))
	if err != nil {
		return nil
	}
	return data
}

// capture keeps the last honest heartbeats the attacker sees, to replay and to forge from.
func (a *attacker) capture(ctx context.Context) {
	for {
		msg, err := a.sub.Next(ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == a.h.ID() {
			continue
		}
		if len(a.captured) == 16 {
			a.captured = a.captured[1:]
		}
		a.captured = append(a.captured, msg.Data)
	}
}

func (s *sim) attack(a *attacker) {
	r := rand.New(rand.NewPCG(uint64(s.cfg.Seed), uint64(a.spec.index)))
	kinds := s.sc.Flood.Kinds
	if a.signed {
		kinds = []string{"signed"}
	} else {
		kinds = without(kinds, "signed")
	}
	every := time.Duration(float64(time.Second) / s.sc.Flood.Rate)
	region := s.sc.Topology.Regions[a.spec.region].Name
	for i := 0; ; i++ {
		select {
		case <-time.After(every):
		case <-s.ctx.Done():
			return
		}
		kind := kinds[i%len(kinds)]
		var data []byte
		switch kind {
		case "malformed", "signed":
			data = make([]byte, 64+r.IntN(448))
			for j := range data {
				data[j] = byte(r.Uint32())
			}
		case "oversize":
			data = make([]byte, p2p.MaxGossipMessageSize+1024)
		case "replayed":
			if len(a.captured) == 0 {
				continue
			}
			data = rewrap(a.captured[r.IntN(len(a.captured))])
		case "forged":
			victim := s.randomVictim(r)
			if victim == nil {
				continue
			}
			if i%2 == 0 {
				// A heartbeat in the victim's name, sealed with the attacker's key.
				hb := &pb.Heartbeat{PeerId: []byte(victim.id), Seq: uint64(1) << 62, SentUnixMs: time.Now().UnixMilli(),
					Region: region, State: pb.ContainerState_CONTAINER_STATE_STANDBY}
				var err error
				if data, err = p2p.Seal(p2p.KindHeartbeat, hb, a.h.Peerstore().PrivKey(a.h.ID())); err != nil {
					continue
				}
			} else if len(a.captured) > 0 {
				// A captured heartbeat with its signature broken.
				data = append([]byte(nil), a.captured[r.IntN(len(a.captured))]...)
				data[len(data)-1] ^= 0xff
			} else {
				continue
			}
		case "attestation":
			if a.attests == nil {
				continue
			}
			if data = s.forgedAttestation(a, r, i/len(kinds)); data == nil {
				continue
			}
			s.mu.Lock()
			s.flood.sent[kind]++
			s.mu.Unlock()
			a.attests.Publish(s.ctx, data)
			continue
		case "ticket":
			if a.tickets == nil {
				continue
			}
			if data = s.forgedTicket(a, r, i/len(kinds)); data == nil {
				continue
			}
			s.mu.Lock()
			s.flood.sent[kind]++
			s.mu.Unlock()
			a.tickets.Publish(s.ctx, data)
			continue
		case "bad_record":
			victim := s.randomVictim(r)
			if victim == nil {
				continue
			}
			now := time.Now()
			rec := &pb.ContainerRecord{PeerId: []byte(victim.id), Seq: uint64(1) << 62, Apps: []string{"demo"},
				SessionFeeMicros: 1, IssuedUnixMs: now.UnixMilli(), ExpiresUnixMs: now.Add(time.Hour).UnixMilli()}
			forged, err := p2p.Seal(p2p.KindContainerRecord, rec, a.h.Peerstore().PrivKey(a.h.ID()))
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.flood.sent[kind]++
			s.mu.Unlock()
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			a.dht.PutValue(ctx, p2p.ContainerRecordKey(victim.id), forged)
			cancel()
			continue
		}
		s.mu.Lock()
		s.flood.sent[kind]++
		s.mu.Unlock()
		a.topic.Publish(s.ctx, data)
	}
}

func without(xs []string, x string) []string {
	var out []string
	for _, v := range xs {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

func (s *sim) randomVictim(r *rand.Rand) *peerSpec {
	for range 16 {
		p := s.plan.peers[r.IntN(len(s.plan.peers))]
		if p.role == roleContainer {
			return p
		}
	}
	return nil
}

func (a *attacker) close() {
	if a.attestSub != nil {
		a.attestSub.Cancel()
	}
	if a.attests != nil {
		a.attests.Close()
	}
	if a.ticketSub != nil {
		a.ticketSub.Cancel()
	}
	if a.tickets != nil {
		a.tickets.Close()
	}
	if a.sub != nil {
		a.sub.Cancel()
	}
	if a.topic != nil {
		a.topic.Close()
	}
	if a.dht != nil {
		a.dht.Close()
	}
	a.h.Close()
}

// snapshotScores reads, before peers stop, how honest peers score the attackers and each other.
func (s *sim) snapshotScores() {
	if len(s.flood.attackers) == 0 {
		return
	}
	s.mu.Lock()
	nodes := s.nodes
	s.mu.Unlock()
	for _, a := range s.flood.attackers {
		sum, n := 0.0, 0
		for _, nd := range nodes {
			if nd == nil {
				continue
			}
			if sc, ok := nd.Net().PeerScore(a.h.ID()); ok {
				sum += sc
				n++
			}
		}
		if n > 0 {
			s.flood.scores = append(s.flood.scores, sum/float64(n))
		}
	}
	// Honest peers, for comparison: the first 32 online.
	for _, p := range s.plan.peers {
		if len(s.flood.honest) == 32 {
			break
		}
		if p.role == roleAttacker || nodes[p.index] == nil {
			continue
		}
		sum, n := 0.0, 0
		for _, nd := range nodes {
			if nd == nil {
				continue
			}
			if sc, ok := nd.Net().PeerScore(p.id); ok {
				sum += sc
				n++
			}
		}
		if n > 0 {
			s.flood.honest = append(s.flood.honest, sum/float64(n))
		}
	}
}

func (s *sim) closeFlood() {
	for _, a := range s.flood.attackers {
		a.close()
	}
}

func (s *sim) floodSummary(sum *Summary) {
	for _, n := range s.flood.sent {
		sum.FloodSent += n
	}
	if len(s.flood.attackers) > 0 {
		sum.FloodRejected = int(s.counter("rendermesh_gossip_heartbeat_rejected_total") + s.counter("rendermesh_dht_record_rejected_total") +
			s.counter("rendermesh_indexer_ticket_rejected_total") + s.counter("rendermesh_gossip_attestation_rejected_total"))
	}
	sum.AttackerScoreMean = mean(s.flood.scores)
	sum.HonestScoreMean = mean(s.flood.honest)
	gray := 0
	for _, sc := range s.flood.scores {
		if sc < p2p.ScoreGraylistThreshold {
			gray++
		}
	}
	sum.AttackersGraylisted = ratio(gray, len(s.flood.scores))
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return float64(int64(t/float64(len(xs))*10)) / 10
}

// counter sums a counter family over its labels, leaving out the reasons honest traffic has too
// (stale or replayed heartbeats, expired or superseded records).
func (s *sim) counter(name string) float64 {
	mfs, err := s.reg.Gather()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			honest := false
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && slices.Contains(honestReasons, l.GetValue()) {
					honest = true
				}
			}
			if !honest {
				total += counterValue(m)
			}
		}
	}
	return total
}

// labelled reads one series of a counter family: the one whose label name has value.
func (s *sim) labelled(name, label, value string) float64 {
	mfs, err := s.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return counterValue(m)
				}
			}
		}
	}
	return 0
}

var honestReasons = []string{p2p.HBIgnoreStale, p2p.HBIgnoreReplayed, p2p.ReasonReplayed, p2p.ReasonExpired,
	epoch.TicketDuplicate, epoch.TicketUnknownSeed, epoch.TicketOtherSeed,
	string(p2p.AttestDuplicate), string(p2p.AttestLate), string(p2p.AttestFromFuture)}

func counterValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return 0
}

// rewrap returns a signed envelope in new bytes with the same signed content: an unknown field (15,
// varint 0) after the envelope's own. Gossip identifies messages by their content, so the same
// bytes again would be dropped as seen before any validator runs; new bytes make the replay a new
// message, which the validators must recognise.
func rewrap(data []byte) []byte {
	return append(slices.Clone(data), 0x78, 0x00)
}
