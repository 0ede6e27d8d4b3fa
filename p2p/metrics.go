package p2p

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the p2p layer's own Prometheus collectors (libp2p registers its own beside them). Several
// nodes in one process (devnet, simnet) share one Metrics so their counters add up.
type Metrics struct {
	RecordRejected     *prometheus.CounterVec
	RecordAccepted     prometheus.Counter
	HeartbeatRejected  *prometheus.CounterVec
	HeartbeatDelivered prometheus.Counter
	TicketRejected     *prometheus.CounterVec
	TicketAccepted     prometheus.Counter
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
	}
	if reg == nil {
		return m
	}
	m.RecordRejected = register(reg, m.RecordRejected)
	m.RecordAccepted = register(reg, m.RecordAccepted)
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
