package scorer

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardiostream/cardiostream/schemas"
)

const (
	namespace = "cardiostream"
	subsystem = "scorer"
)

// Publish kinds, the values of the "kind" label of publish_failures_total.
const (
	kindPrediction = "prediction"
	kindDeadLetter = "deadletter"
)

type metrics struct {
	received        prometheus.Counter
	scored          prometheus.Counter
	deadLettered    map[schemas.Stage]prometheus.Counter
	published       prometheus.Counter
	duplicates      prometheus.Counter
	publishFailures map[string]prometheus.Counter
	redeliveries    prometheus.Counter
	retried         prometheus.Counter
	backPressure    prometheus.Counter
	panics          prometheus.Counter
	latency         prometheus.Histogram
	batchSize       prometheus.Histogram
	modelInfo       *prometheus.GaugeVec
	shadowInfo      *prometheus.GaugeVec
	swaps           prometheus.Counter
	shadowPublished prometheus.Counter
	shadowDuplicate prometheus.Counter
	shadowFailures  map[string]prometheus.Counter
	inflight        prometheus.Gauge
}

// Reasons of shadow_failures_total.
const (
	shadowFailScore   = "score"   // the shadow model panicked or returned no valid probability
	shadowFailPublish = "publish" // the shadow prediction's publish failed or timed out
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}
	}
	dl := prometheus.NewCounterVec(opts("records_dead_lettered_total",
		"Records published to DEADLETTER and terminated, by the stage that rejected them."), []string{"stage"})
	pf := prometheus.NewCounterVec(opts("publish_failures_total",
		"Publishes (prediction or dead letter) that failed or timed out; the record is retried."), []string{"kind"})
	m := &metrics{
		received:     prometheus.NewCounter(opts("records_received_total", "Record deliveries received from the consumer, redeliveries included.")),
		scored:       prometheus.NewCounter(opts("records_scored_total", "Records acked after their prediction was stored (new or duplicate).")),
		published:    prometheus.NewCounter(opts("predictions_published_total", "Predictions stored in PREDICTIONS (publish acks that were not duplicates).")),
		duplicates:   prometheus.NewCounter(opts("predictions_duplicate_total", "Prediction publishes the stream deduplicated: a redelivered record whose prediction was already stored.")),
		redeliveries: prometheus.NewCounter(opts("redeliveries_total", "Record deliveries with a delivery count above 1.")),
		retried:      prometheus.NewCounter(opts("records_retried_total", "Records NAKed with a delay after a transient failure.")),
		backPressure: prometheus.NewCounter(opts("publish_backpressure_total",
			"Publishes refused because the output stream was full or unavailable; the record is retried, never dead-lettered for it.")),
		panics: prometheus.NewCounter(opts("panics_total", "Panics recovered while decoding or scoring a record; the record is dead-lettered.")),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "scoring_latency_seconds",
			Help:    "Time from a record's arrival in RECORDS to its prediction.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "batch_size",
			Help:    "Records processed together in one batch.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000},
		}),
		modelInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "model_info",
			Help: "The model this scorer uses (always 1).",
		}, []string{"name", "version", "sha256"}),
		shadowInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "shadow_model_info",
			Help: "The shadow model this scorer also scores every record with (always 1; absent when none).",
		}, []string{"name", "version", "sha256"}),
		swaps:           prometheus.NewCounter(opts("model_swaps_total", "Changes of the active model while running (SetModels with a different model).")),
		shadowPublished: prometheus.NewCounter(opts("shadow_predictions_published_total", "Shadow predictions stored in PREDICTIONS (not duplicates).")),
		shadowDuplicate: prometheus.NewCounter(opts("shadow_predictions_duplicate_total", "Shadow prediction publishes the stream deduplicated (a redelivered record).")),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "inflight",
			Help: "Records received and not yet acked, NAKed or terminated.",
		}),
		deadLettered:    make(map[schemas.Stage]prometheus.Counter, 3),
		publishFailures: make(map[string]prometheus.Counter, 2),
		shadowFailures:  make(map[string]prometheus.Counter, 2),
	}
	sf := prometheus.NewCounterVec(opts("shadow_failures_total",
		"Records whose shadow prediction was not stored (the main prediction is unaffected), by reason."), []string{"reason"})
	for _, r := range []string{shadowFailScore, shadowFailPublish} {
		m.shadowFailures[r] = sf.WithLabelValues(r)
	}
	for _, st := range []schemas.Stage{schemas.StageDecode, schemas.StageValidate, schemas.StageScore} {
		m.deadLettered[st] = dl.WithLabelValues(string(st))
	}
	for _, k := range []string{kindPrediction, kindDeadLetter} {
		m.publishFailures[k] = pf.WithLabelValues(k)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.received, m.scored, dl, m.published, m.duplicates, pf,
		m.redeliveries, m.retried, m.backPressure, m.panics, m.latency, m.batchSize, m.modelInfo, m.inflight,
		m.shadowInfo, m.swaps, m.shadowPublished, m.shadowDuplicate, sf} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering scorer metrics: %w", err)
		}
	}
	return m, nil
}

// setModels points model_info and shadow_model_info at the new set.
func (m *metrics) setModels(old, set *modelSet) {
	if old != nil {
		m.modelInfo.DeleteLabelValues(old.ref.Name, old.ref.Version, old.ref.SHA256)
		if old.shadow != nil {
			m.shadowInfo.DeleteLabelValues(old.shadowRef.Name, old.shadowRef.Version, old.shadowRef.SHA256)
		}
	}
	m.modelInfo.WithLabelValues(set.ref.Name, set.ref.Version, set.ref.SHA256).Set(1)
	if set.shadow != nil {
		m.shadowInfo.WithLabelValues(set.shadowRef.Name, set.shadowRef.Version, set.shadowRef.SHA256).Set(1)
	}
}
