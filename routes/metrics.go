package routes

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's counters for /metrics: messages received, routed,
// delivered, retried and dead-lettered, per listener, route and destination,
// with queue depths and latencies. Label values are names from the
// configuration, never message content.
type Metrics struct {
	received     *prometheus.CounterVec
	routed       *prometheus.CounterVec
	unrouted     prometheus.Counter
	deliveries   *prometheus.CounterVec
	depth        *prometheus.GaugeVec
	latency      *prometheus.HistogramVec
	attemptTime  *prometheus.HistogramVec
	routeErrors  prometheus.Counter
	warnings     *prometheus.CounterVec
	collectorSet []prometheus.Collector
}

// NewMetrics returns the engine's metrics, registered nowhere yet: pass
// Collectors to a registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spinebridge_messages_received_total",
			Help: "Messages received, by listener and the acknowledgement code they got.",
		}, []string{"listener", "code"}),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spinebridge_messages_routed_total",
			Help: "Messages matched by each route.",
		}, []string{"route"}),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spinebridge_messages_unrouted_total",
			Help: "Accepted messages no route matched.",
		}),
		routeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spinebridge_routing_errors_total",
			Help: "Messages whose routing failed (an expression error at run time).",
		}),
		warnings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spinebridge_transform_warnings_total",
			Help: "Issues a route's transform met and delivered with, by route and kind (nhs-number, value, ...).",
		}, []string{"route", "kind"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spinebridge_delivery_attempts_total",
			Help: "Delivery attempts by destination and outcome: delivered, retrying or dead-letter.",
		}, []string{"destination", "outcome"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spinebridge_delivery_queue_depth",
			Help: "Deliveries waiting for each destination, in flight included.",
		}, []string{"destination"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spinebridge_delivery_latency_seconds",
			Help:    "Time from a message's receipt to its delivery, by destination.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}, []string{"destination"}),
		attemptTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spinebridge_delivery_attempt_seconds",
			Help:    "Time one delivery attempt took, by destination.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"destination"}),
	}
	m.collectorSet = []prometheus.Collector{m.received, m.routed, m.unrouted, m.routeErrors, m.warnings,
		m.deliveries, m.depth, m.latency, m.attemptTime}
	return m
}

// Collectors returns every metric, to register.
func (m *Metrics) Collectors() []prometheus.Collector { return m.collectorSet }

// Received counts a message a listener answered with code.
func (m *Metrics) Received(listener, code string) {
	if m != nil {
		m.received.WithLabelValues(listener, code).Inc()
	}
}
