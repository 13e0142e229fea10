package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Values of the result label of cardiostream_webhook_deliveries_total.
const (
	resultSuccess = "success" // the receiver accepted the alert (2xx)
	resultRetry   = "retry"   // an attempt failed and will be retried
	resultFailed  = "failed"  // the alert was given up on (terminated)
)

type metrics struct {
	success, retry, failed prometheus.Counter
	duration               prometheus.Histogram
	attempts               prometheus.Histogram
	lastSuccess            prometheus.Gauge
	pending                prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "cardiostream", "webhook"
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "deliveries_total",
		Help: "Webhook delivery attempts by result: success (accepted), retry (failed, will be retried), failed (alert given up and terminated).",
	}, []string{"result"})
	m := &metrics{
		// Created up front so every series exists at 0 from the start.
		success: deliveries.WithLabelValues(resultSuccess),
		retry:   deliveries.WithLabelValues(resultRetry),
		failed:  deliveries.WithLabelValues(resultFailed),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "delivery_duration_seconds",
			Help:    "Duration of one webhook HTTP attempt, whatever its result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		attempts: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "attempts_per_alert",
			Help:    "HTTP attempts an alert took until it was delivered or given up (in this process).",
			Buckets: []float64{1, 2, 3, 5, 10, 20, 50, 100},
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "last_success_timestamp_seconds",
			Help: "Unix time of the last alert the receiver accepted; 0 before the first.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "pending",
			Help: "Alerts in ALERTS not yet delivered or given up, including the one in flight, as of the last alert read.",
		}),
	}
	for _, c := range []prometheus.Collector{deliveries, m.duration, m.attempts, m.lastSuccess, m.pending} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
