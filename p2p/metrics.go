package p2p

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the p2p layer's own Prometheus collectors (libp2p registers its own beside them). Several
// nodes in one process (devnet, simnet) share one Metrics so their counters add up.
type Metrics struct {
	RecordRejected *prometheus.CounterVec
	RecordAccepted prometheus.Counter
	// RecordFetches counts consumers' record fetches (FetchContainerRecord) by where the record came
	// from: "container", "dht", or "none" when neither had one.
	RecordFetches *prometheus.CounterVec
	// LookupStalls counts DHT reads ended because they waited only on peers that did not answer
	// (lookup.go).
	LookupStalls       prometheus.Counter
	HeartbeatRejected  *prometheus.CounterVec
	HeartbeatDelivered prometheus.Counter
	TicketRejected     *prometheus.CounterVec
	TicketAccepted     prometheus.Counter
	// Matchmaking, at indexers: answers by result ("matched" or the refusal), time to answer, and
	// reservations by result at containers.
	Matches      *prometheus.CounterVec
	MatchSeconds prometheus.Histogram
	Reservations *prometheus.CounterVec
	IndexEntries prometheus.Gauge
	// RenderSessions counts render streams at containers by result (ok, failed, refused).
	RenderSessions *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (nil: not registered). Collectors that
// reg already holds are reused, so calling NewMetrics twice with one registry is safe.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		RecordRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "dht", Name: "record_rejected_total",
			Help: "Container records rejected by the DHT validator, by reason.",
		}, []string{"reason"}),
		RecordAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "dht", Name: "record_accepted_total",
			Help: "Container records that passed the DHT validator.",
		}),
		RecordFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "dht", Name: "record_fetches_total",
			Help: "Container records fetched for queries, by source (container, dht, none).",
		}, []string{"source"}),
		LookupStalls: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "dht", Name: "lookup_stalls_total",
			Help: "DHT lookups ended after the lookup patience without progress, waiting only on silent peers.",
		}),
		HeartbeatRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "gossip", Name: "heartbeat_rejected_total",
			Help: "Heartbeats rejected or ignored by the topic validator, by reason.",
		}, []string{"reason"}),
		HeartbeatDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "gossip", Name: "heartbeat_accepted_total",
			Help: "Heartbeats that passed the topic validator.",
		}),
		TicketRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "indexer", Name: "ticket_rejected_total",
			Help: "Indexer tickets rejected or ignored (gossip and committee records), by reason.",
		}, []string{"reason"}),
		TicketAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "indexer", Name: "ticket_accepted_total",
			Help: "Indexer tickets accepted from gossip.",
		}),
		Matches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "indexer", Name: "matches_total",
			Help: "Match requests answered by this process's indexers, by result (matched or the refusal).",
		}, []string{"result"}),
		MatchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "rendermesh", Subsystem: "indexer", Name: "match_seconds",
			Help:    "Time from a match request's arrival to the answer, reservation included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		Reservations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "container", Name: "reservations_total",
			Help: "Reservation requests answered by containers, by result (reserved or the refusal).",
		}, []string{"result"}),
		IndexEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "rendermesh", Subsystem: "indexer", Name: "index_entries",
			Help: "Containers in the index (last indexer to update it, when several share a process).",
		}),
		RenderSessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rendermesh", Subsystem: "container", Name: "render_sessions_total",
			Help: "Render streams served by containers, by result (ok, failed, refused).",
		}, []string{"result"}),
	}
	if reg == nil {
		return m
	}
	m.RenderSessions = register(reg, m.RenderSessions)
	m.Matches = register(reg, m.Matches)
	m.MatchSeconds = register(reg, m.MatchSeconds)
	m.Reservations = register(reg, m.Reservations)
	m.IndexEntries = register(reg, m.IndexEntries)
	m.RecordRejected = register(reg, m.RecordRejected)
	m.RecordAccepted = register(reg, m.RecordAccepted)
	m.RecordFetches = register(reg, m.RecordFetches)
	m.LookupStalls = register(reg, m.LookupStalls)
	m.HeartbeatRejected = register(reg, m.HeartbeatRejected)
	m.HeartbeatDelivered = register(reg, m.HeartbeatDelivered)
	m.TicketRejected = register(reg, m.TicketRejected)
	m.TicketAccepted = register(reg, m.TicketAccepted)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a programming error: two different collectors with one name
	}
	return c
}
