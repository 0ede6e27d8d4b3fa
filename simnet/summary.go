package simnet

// Summary is what a run measured, written to DIR/summary.json (and to stdout with --json). Times
// are simulated unless named *wall_seconds or *cpu_*; latencies are in milliseconds. Fields other
// than the wall and CPU times, peak_rss_bytes and the memory and goroutine figures depend only on the
// seed and the scenario (see docs/SIMNET.md on what that promise covers).
type Summary struct {
	Peers    int    `json:"peers"`
	Seed     int64  `json:"seed"`
	Scenario string `json:"scenario"`
	Links    string `json:"links"` // how peers are connected: "quic-simnet" or "streams"
	// TickMs is the stream model's delivery grid in milliseconds (Topology.TickMs; 0: exact times,
	// and always 0 on QUIC links).
	TickMs float64 `json:"tick_ms"`

	SimSeconds   float64 `json:"sim_seconds"`
	WallSeconds  float64 `json:"wall_seconds"`
	PeakRSSBytes uint64  `json:"peak_rss_bytes"`
	// What the phases cost this machine: wall time until the measured span began (peers joining,
	// the warm-up and the settle), then the measured span's wall and CPU time (every thread), and
	// that CPU per online peer and simulated second. The span's figures are zero when a run stops
	// before its span begins.
	WarmupWallSeconds   float64 `json:"warmup_wall_seconds"`
	MeasuredWallSeconds float64 `json:"measured_wall_seconds"`
	MeasuredCPUSeconds  float64 `json:"measured_cpu_seconds"`
	CPUMsPerPeerSecond  float64 `json:"cpu_ms_per_peer_second"`

	Containers int `json:"containers"`
	Attackers  int `json:"attackers"`
	Joins      int `json:"joins"`
	Leaves     int `json:"leaves"`
	// StartFailures counts peers that could not join (bootstrap failed): a health signal.
	StartFailures int `json:"start_failures"`

	// Capability queries (consumer.Find from a random online peer).
	Queries           int     `json:"queries"`
	QuerySuccessRatio float64 `json:"query_success_ratio"`
	QueryMsP50        float64 `json:"query_ms_p50"`
	QueryMsP99        float64 `json:"query_ms_p99"`
	QueryHopsP50      float64 `json:"query_hops_p50"`
	QueryHopsP99      float64 `json:"query_hops_p99"`
	// Where the queries' records came from: the containers themselves, or the DHT when a container
	// had not answered within p2p.DefaultRecordHedge (p2p.Net.FetchContainerRecord).
	QueryRecordsFromContainer int `json:"query_records_from_container"`
	QueryRecordsFromDHT       int `json:"query_records_from_dht"`
	// DHTLookupStalls counts every peer's DHT reads, the whole run, that ended waiting only on peers
	// that did not answer (p2p.Config.LookupPatience).
	DHTLookupStalls int `json:"dht_lookup_stalls"`
	// The worst window's success ratio (the dip), and the longest time from a disruption (a peer
	// leaving, a cut healing) to a failed query after it (0: no failures outside cuts).
	QuerySuccessMinWindow float64 `json:"query_success_min_window"`
	QueryRecoverySeconds  float64 `json:"query_recovery_seconds"`

	// Record propagation: from a container's registration until a query from elsewhere finds it.
	Propagations     int     `json:"propagations"`
	PropagationMsP50 float64 `json:"propagation_ms_p50"`
	PropagationMsP99 float64 `json:"propagation_ms_p99"`

	// Heartbeat gossip: each heartbeat against every peer that carries its region's topic.
	GossipPublished     int     `json:"gossip_published"`
	GossipExpected      int     `json:"gossip_expected"`
	GossipDelivered     int     `json:"gossip_delivered"`
	GossipDeliveryRatio float64 `json:"gossip_delivery_ratio"`
	GossipMsP50         float64 `json:"gossip_ms_p50"`
	GossipMsP99         float64 `json:"gossip_ms_p99"`

	// Flood: messages the attackers sent, and how honest peers scored them.
	FloodSent           int     `json:"flood_sent"`
	FloodRejected       int     `json:"flood_rejected"`
	AttackerScoreMean   float64 `json:"attacker_score_mean"`
	HonestScoreMean     float64 `json:"honest_score_mean"`
	AttackersGraylisted float64 `json:"attackers_graylisted"` // share of attackers scored below the graylist threshold

	// Indexer elections: epochs whose agreement time fell in the measured window; the worst share of
	// online peers holding the epoch's committee IndexerAgreementAfterS seconds after it started;
	// the latest time, relative to an epoch's start, at which views still differed (negative: all
	// agreed before the epoch began); the mean committee size.
	IndexerEpochs          int         `json:"indexer_epochs"`
	IndexerAgreement       float64     `json:"indexer_agreement"`
	IndexerAgreementAfterS float64     `json:"indexer_agreement_after_s"`
	IndexerAgreeMsMax      float64     `json:"indexer_agree_ms_max"`
	IndexerCommitteeMean   float64     `json:"indexer_committee_mean"`
	IndexerEpochList       []EpochView `json:"indexer_epoch_views,omitempty"`

	// Matches: consumers' match requests (node.Connect), each counted once; latency is
	// consumer.Match.Took (from the first request to an indexer until a verified ticket), for the
	// requests that got one within the timeout. MatchRefused counts the others by reason: the
	// indexer's refusal (the filter that emptied the list, "reservation", ...) or "timeout",
	// "no_indexers", "indexer_failed", "error", "consumer_offline". MatchRTTRatioP50 is the median
	// of each match's latency over the topology's round trip between consumer and indexer.
	Matches           int            `json:"matches"`
	MatchSuccessRatio float64        `json:"match_success_ratio"`
	MatchMsP50        float64        `json:"match_ms_p50"`
	MatchMsP99        float64        `json:"match_ms_p99"`
	MatchRefused      map[string]int `json:"match_refused,omitempty"`
	MatchRTTRatioP50  float64        `json:"match_rtt_ratio_p50"`
	// Sessions the containers accepted, the usage receipts co-signed in them, and sessions refused,
	// failed or ended with an error after a match.
	Sessions        int `json:"sessions"`
	SessionReceipts int `json:"session_receipts"`
	SessionFailures int `json:"session_failures"`
	// DoubleBooked counts pairs of tickets for one container whose holds overlapped, as consumers
	// saw them (an accepted session: from the ticket's issue to the session's end; a match-only
	// lease: from issue to expiry). Checked, not assumed: it should be 0.
	DoubleBooked int `json:"double_booked"`
	// UtilizationByRegion is, per region, the mean while consumers run (sampled each simulated
	// second) of the share of its live containers whose newest heartbeat says busy or reserved.
	UtilizationByRegion map[string]float64 `json:"utilization_by_region,omitempty"`

	// Checkers (scenario [checkers]; absent without): peers running the checker role; distinct
	// attestations some node accepted; the share of (attestation, node) pairs accepted within 1 s
	// of issue, over every node other than its checker that was settled at issue, stayed online
	// 1 s more and was on the checker's side of any cut; issue-to-acceptance percentiles over
	// those nodes' acceptances. A cheater is caught when a failing attestation about it was issued within
	// caught_within_s of the start of epoch 0 (cheaters_missed lists the others by peer index); a
	// false positive is an honest container with any failing attestation. The ledgers' Merkle
	// roots are compared at the end between the nodes still online, for every epoch that ended at
	// least one grace before (attestation_root_epochs of them).
	Checkers                 int     `json:"checkers,omitempty"`
	Attestations             int     `json:"attestations,omitempty"`
	AttestationDeliveryRatio float64 `json:"attestation_delivery_ratio,omitempty"`
	AttestationMsP50         float64 `json:"attestation_ms_p50,omitempty"`
	AttestationMsP99         float64 `json:"attestation_ms_p99,omitempty"`
	Cheaters                 int     `json:"cheaters,omitempty"`
	CheatersCaught           int     `json:"cheaters_caught,omitempty"`
	CheatersCaughtRatio      float64 `json:"cheaters_caught_ratio,omitempty"`
	CheatersMissed           []int   `json:"cheaters_missed,omitempty"`
	CaughtWithinS            float64 `json:"caught_within_s,omitempty"`
	FalsePositives           int     `json:"false_positives,omitempty"`
	FalsePositiveRatio       float64 `json:"false_positive_ratio,omitempty"`
	// FalsePositiveChecks counts the failing attestations about honest containers by the check
	// that failed (their reason's first word): why the false positives failed.
	FalsePositiveChecks   map[string]int `json:"false_positive_checks,omitempty"`
	AttestationRootEpochs int            `json:"attestation_root_epochs,omitempty"`
	AttestationRootsAgree *bool          `json:"attestation_roots_agree,omitempty"`

	// Memory and goroutines per online peer, at the end (peak RSS is the whole process): the heap in
	// use (live objects, garbage not yet collected and the collector's headroom), the part of it
	// that was live at the last collection, and the goroutines' stacks.
	HeapBytesPerPeer     uint64  `json:"heap_bytes_per_peer"`
	LiveHeapBytesPerPeer uint64  `json:"live_heap_bytes_per_peer"`
	StackBytesPerPeer    uint64  `json:"stack_bytes_per_peer"`
	GoroutinesPerPeer    float64 `json:"goroutines_per_peer"`

	// TraceSHA256 hashes the scenario's event trace (joins, leaves, cuts, queries, floods): equal
	// seeds and scenarios give equal traces.
	TraceSHA256 string `json:"trace_sha256"`
}

// EpochView is one epoch's committee as the simulation saw it.
type EpochView struct {
	Epoch          uint64  `json:"epoch"`
	Members        int     `json:"members"`
	AgreementAfter float64 `json:"agreement"`
	SettledMs      float64 `json:"settled_ms"`
}

// Window is one interval of the run, for plots of delivery and success over time.
type Window struct {
	Start           float64 `json:"start_s"` // simulated seconds since the run began
	Queries         int     `json:"queries"`
	QueriesOK       int     `json:"queries_ok"`
	GossipExpected  int     `json:"gossip_expected"`
	GossipDelivered int     `json:"gossip_delivered"`
}

// QueryPoint is one query: when it was issued, how long it took and whether it succeeded.
type QueryPoint struct {
	T  float64 `json:"t_s"` // simulated seconds since the run began
	Ms float64 `json:"ms"`
	OK bool    `json:"ok"`
}

// Sample is the process's memory and goroutines at one simulated time.
type Sample struct {
	T             float64 `json:"t_s"`
	Online        int     `json:"online"`
	RSSBytes      uint64  `json:"rss_bytes"`
	HeapBytes     uint64  `json:"heap_bytes"`      // in use: live, garbage, the collector's headroom
	LiveHeapBytes uint64  `json:"live_heap_bytes"` // what the last collection kept
	StackBytes    uint64  `json:"stack_bytes"`     // goroutine stacks
	Goroutines    int     `json:"goroutines"`
}

// Mark is a scenario event worth drawing on a time axis (a cut, a heal, a flood starting).
type Mark struct {
	T     float64 `json:"t_s"`
	Label string  `json:"label"`
}

// Report is everything a run's HTML report draws.
type Report struct {
	Summary         Summary
	Description     string
	QueryLatencies  []float64    // ms, one per successful query
	Queries         []QueryPoint // every query, in the order issued
	GossipLatencies []float64    // ms, one per delivered heartbeat
	Propagations    []float64    // ms
	MatchLatencies  []float64    // ms, one per successful match
	Windows         []Window
	WindowSeconds   float64
	Samples         []Sample
	Marks           []Mark
}
