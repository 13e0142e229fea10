package monitor

import (
	"maps"
	"math"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	namespace = "cardiostream"
	subsystem = "monitor"
)

// Operations counted by cardiostream_monitor_errors_total{op}.
const (
	errOpInput        = "input" // handling an audit entry
	errOpAlertPublish = "alert_publish"
	errOpCheckpoint   = "checkpoint"
)

// metrics holds the operational counters. The domain metrics are produced
// from a Snapshot at scrape time by snapshotCollector, so they always agree
// with Snapshot().
type metrics struct {
	invalid map[string]prometheus.Counter
	errors  map[string]prometheus.Counter
	// lateDuplicates counts inputs of records resolved within joined_ttl.
	lateDuplicates prometheus.Counter
	refusals       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, m *Monitor) (*metrics, error) {
	invalid := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "invalid_messages_total",
		Help: "Input messages that could not be decoded and were terminated, by input stream.",
	}, []string{"input"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "errors_total",
		Help: "Failed operations (retried), by operation.",
	}, []string{"op"})
	late := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "late_duplicates_total",
		Help: "Inputs of a record already joined (or unscorable) within joined_ttl: duplicates, not counted again.",
	})
	refusals := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "artifact_refused_alerts_total",
		Help: "Alerts raised for artifact_refused audit entries (a scorer refused a model artifact).",
	})
	mt := &metrics{invalid: map[string]prometheus.Counter{}, errors: map[string]prometheus.Counter{}, lateDuplicates: late, refusals: refusals}
	for _, in := range []string{"predictions", "shadow", "outcomes", "deadletter", "audit"} {
		mt.invalid[in] = invalid.WithLabelValues(in)
	}
	for _, op := range []string{errOpInput, errOpAlertPublish, errOpCheckpoint} {
		mt.errors[op] = errs.WithLabelValues(op)
	}
	for _, c := range []prometheus.Collector{invalid, errs, late, refusals, newSnapshotCollector(m)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return mt, nil
}

type snapshotCollector struct {
	m     *Monitor
	descs map[string]*prometheus.Desc
}

func newSnapshotCollector(m *Monitor) *snapshotCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, labels, nil)
	}
	return &snapshotCollector{m: m, descs: map[string]*prometheus.Desc{
		"predictions":     d("predictions_total", "Distinct predictions received."),
		"dead_lettered":   d("dead_lettered_total", "Distinct dead-lettered records, by stage.", "stage"),
		"outcomes":        d("outcomes_total", "Distinct outcomes received."),
		"joined":          d("joined_total", "Predictions joined with their outcome."),
		"unscorable":      d("outcomes_unscorable_total", "Outcomes whose record was dead-lettered."),
		"expired":         d("pending_expired_total", "Pending joins that reached the label deadline unresolved, by side.", "side"),
		"pending":         d("pending_joins", "Joins waiting for their other side, by the side present.", "side"),
		"accuracy":        d("accuracy", "Cumulative accuracy of joined predictions (NaN before the first join)."),
		"confusion":       d("confusion_matrix", "Cumulative confusion matrix of joined predictions.", "actual", "predicted"),
		"w_accuracy":      d("window_accuracy", "Accuracy over the sliding window (NaN when undefined)."),
		"w_precision":     d("window_precision", "Precision over the sliding window (NaN when undefined)."),
		"w_recall":        d("window_recall", "Recall over the sliding window (NaN when undefined)."),
		"w_f1":            d("window_f1", "F1 over the sliding window (NaN when undefined)."),
		"w_samples":       d("window_samples", "Joined samples in the sliding window."),
		"w_error_rate":    d("window_error_rate", "Dead-lettered / received over the sliding window (NaN when empty)."),
		"latency":         d("prediction_latency_seconds", "Record arrival to prediction, from the predictions' latency_ms."),
		"latency_q":       d("prediction_latency_window_seconds", "Prediction latency quantiles over the sliding window (NaN when empty).", "quantile"),
		"alerts_fired":    d("alerts_fired_total", "Alert rules that started firing (this process).", "rule"),
		"alerts_resolved": d("alerts_resolved_total", "Firing alert rules that resolved (this process).", "rule"),
		"alert_state":     d("alert_state", "1 while the rule is firing, else 0.", "rule"),
		"input_seq":       d("input_sequence", "Last stream sequence of each input folded into the metrics.", "input"),
		"v_predictions":   d("model_predictions_total", "Distinct predictions by model version and role (active: main predictions; shadow: shadow predictions).", "model_version", "role"),
		"v_accuracy":      d("model_window_accuracy", "Accuracy over the sliding window, by model version and role (NaN when undefined).", "model_version", "role"),
		"v_precision":     d("model_window_precision", "Precision over the sliding window, by model version and role (NaN when undefined).", "model_version", "role"),
		"v_recall":        d("model_window_recall", "Recall over the sliding window, by model version and role (NaN when undefined).", "model_version", "role"),
		"v_f1":            d("model_window_f1", "F1 over the sliding window, by model version and role (NaN when undefined).", "model_version", "role"),
		"v_samples":       d("model_window_samples", "Joined samples in the sliding window, by model version and role.", "model_version", "role"),
		"v_agreement":     d("model_window_agreement", "Fraction of a shadow version's joined records in the window where it predicted the active model's label (NaN when none).", "model_version"),
		"v_agreement_n":   d("model_window_agreement_samples", "Shadow joins in the window whose record also has an active prediction, by shadow version.", "model_version"),
	}}
}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	s, hist := c.m.snapshotWithHistogram()
	counter := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, v, labels...)
	}
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	orNaN := func(v float64, defined bool) float64 {
		if !defined {
			return math.NaN()
		}
		return v
	}
	counter("predictions", float64(s.Predictions))
	for _, st := range stages {
		counter("dead_lettered", float64(s.DeadLetteredByStage[st]), string(st))
	}
	counter("outcomes", float64(s.Outcomes))
	counter("joined", float64(s.Joined))
	counter("unscorable", float64(s.OutcomesUnscorable))
	gauge("pending", float64(s.PendingPredictions), sideNames[sidePrediction])
	gauge("pending", float64(s.PendingOutcomes), sideNames[sideOutcome])
	gauge("pending", float64(s.PendingDeadLetters), sideNames[sideDeadLetter])
	counter("expired", float64(s.ExpiredPredictions), sideNames[sidePrediction])
	counter("expired", float64(s.ExpiredOutcomes), sideNames[sideOutcome])
	counter("expired", float64(s.ExpiredDeadLetters), sideNames[sideDeadLetter])

	cu, w := s.Cumulative, s.Window
	gauge("accuracy", orNaN(cu.Accuracy, cu.defined(MetricAccuracy)))
	gauge("confusion", float64(cu.TP), "1", "1")
	gauge("confusion", float64(cu.FP), "0", "1")
	gauge("confusion", float64(cu.TN), "0", "0")
	gauge("confusion", float64(cu.FN), "1", "0")
	gauge("w_accuracy", orNaN(w.Accuracy, w.defined(MetricAccuracy)))
	gauge("w_precision", orNaN(w.Precision, w.defined(MetricPrecision)))
	gauge("w_recall", orNaN(w.Recall, w.defined(MetricRecall)))
	gauge("w_f1", orNaN(w.F1, w.defined(MetricF1)))
	gauge("w_samples", float64(w.Samples))
	gauge("w_error_rate", orNaN(s.ErrorRate, s.ErrorRateSamples > 0))
	hasLat := s.LatencySamples > 0
	gauge("latency_q", orNaN(s.LatencyP50/1000, hasLat), "0.5")
	gauge("latency_q", orNaN(s.LatencyP95/1000, hasLat), "0.95")
	gauge("latency_q", orNaN(s.LatencyP99/1000, hasLat), "0.99")

	buckets := make(map[float64]uint64, len(latencyBuckets))
	var cum uint64
	for i, ub := range latencyBuckets {
		cum += hist.counts[i]
		buckets[ub] = cum
	}
	cum += hist.counts[len(latencyBuckets)]
	ch <- prometheus.MustNewConstHistogram(c.descs["latency"], cum, hist.sum, buckets)

	for _, r := range s.Rules {
		counter("alerts_fired", float64(r.Fired), r.Name)
		counter("alerts_resolved", float64(r.Resolved), r.Name)
		firing := 0.0
		if r.Status == RuleFiring {
			firing = 1
		}
		gauge("alert_state", firing, r.Name)
	}
	for _, in := range slices.Sorted(maps.Keys(s.Positions)) {
		gauge("input_seq", float64(s.Positions[in]), in)
	}

	for v, n := range s.PredictionsByVersion {
		counter("v_predictions", float64(n), v, RoleActive)
	}
	for v, n := range s.ShadowPredictionsByVersion {
		counter("v_predictions", float64(n), v, RoleShadow)
	}
	for _, vm := range s.Versions {
		c := vm.Classification
		gauge("v_accuracy", orNaN(c.Accuracy, c.defined(MetricAccuracy)), vm.Version, vm.Role)
		gauge("v_precision", orNaN(c.Precision, c.defined(MetricPrecision)), vm.Version, vm.Role)
		gauge("v_recall", orNaN(c.Recall, c.defined(MetricRecall)), vm.Version, vm.Role)
		gauge("v_f1", orNaN(c.F1, c.defined(MetricF1)), vm.Version, vm.Role)
		gauge("v_samples", float64(c.Samples), vm.Version, vm.Role)
		if vm.Role == RoleShadow {
			gauge("v_agreement", orNaN(vm.Agreement, vm.AgreementSamples > 0), vm.Version)
			gauge("v_agreement_n", float64(vm.AgreementSamples), vm.Version)
		}
	}
}
