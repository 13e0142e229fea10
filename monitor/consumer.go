package monitor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// input is one of the three streams the monitor consumes.
type input struct {
	name     string // metric label: predictions, outcomes, deadletter
	stream   string
	consumer string
	kind     string // subject kind token and ledger event kind
	decode   func(m *Monitor, data []byte, source string, at time.Time) (event, error)
	// filter and process, when set, replace the <prefix>.<kind>.* filter
	// and the ledger path (the audit input raises alerts instead).
	filter  string
	process func(m *Monitor, ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata) error
}

// ConsumerShadow is the durable consumer of shadow predictions
// (<prefix>.predictions.shadow.*) on PREDICTIONS.
const ConsumerShadow = "monitor-shadow"

func (m *Monitor) inputs() []input {
	return []input{
		{name: "predictions", stream: schemas.StreamPredictions, consumer: streams.ConsumerMonitorPredictions, kind: "predictions", decode: decodePrediction},
		{name: "shadow", stream: schemas.StreamPredictions, consumer: ConsumerShadow, kind: schemas.ShadowKind, decode: decodeShadow},
		{name: "outcomes", stream: schemas.StreamOutcomes, consumer: streams.ConsumerMonitorOutcomes, kind: "outcomes", decode: decodeOutcome},
		{name: "deadletter", stream: schemas.StreamDeadLetter, consumer: streams.ConsumerMonitorDeadLetter, kind: "deadletter", decode: decodeDeadLetter},
		{name: "audit", stream: schemas.StreamAudit, consumer: ConsumerAudit, filter: m.subjects.Audit(schemas.AuditArtifactRefused), process: processAudit},
	}
}

// consumerConfig is the durable consumer of in. Its filter takes exactly one
// token after the kind, so <prefix>.predictions.shadow.<source> is not
// counted as a prediction (the shadow input's kind is "predictions.shadow").
func (m *Monitor) consumerConfig(in input) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       in.consumer,
		Description:   "cardiostream monitor: joins and metrics",
		FilterSubject: cmp.Or(in.filter, m.subjects.Prefix+"."+in.kind+".*"),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       m.cfg.Consumer.AckWait,
		MaxDeliver:    -1, // a transient failure must not lose a metric
		MaxAckPending: m.cfg.Consumer.MaxAckPending,
		// Replicas 0: inherit the input stream's. Replicas (the ledger's
		// and buckets') may differ from the shared streams': a consumer
		// cannot have more replicas than its stream (the server refuses
		// it, and the monitor never became ready), and one with fewer
		// would lose its position with its node.
	}
}

func decodePrediction(_ *Monitor, data []byte, source string, at time.Time) (event, error) {
	var p schemas.Prediction
	if err := json.Unmarshal(data, &p); err != nil {
		return event{}, fmt.Errorf("%w: prediction: %w", errInvalidInput, err)
	}
	// The id must be one a record can have (the scorer only writes those):
	// it goes into ledger message ids, and a forged one of 70 KB would be
	// refused by the server on every retry.
	if !schemas.ValidID(p.RecordID) || !validLabel(p.Label) {
		return event{}, fmt.Errorf("%w: prediction: record_id not a valid record id or label %d not 0/1", errInvalidInput, p.Label)
	}
	return event{V: ledgerVersion, Kind: kindPrediction, Source: source, RecordID: p.RecordID, At: at, Label: p.Label, LatencyMS: p.LatencyMS, Version: p.Model.Version}, nil
}

func decodeShadow(_ *Monitor, data []byte, source string, at time.Time) (event, error) {
	var p schemas.Prediction
	if err := json.Unmarshal(data, &p); err != nil {
		return event{}, fmt.Errorf("%w: shadow prediction: %w", errInvalidInput, err)
	}
	if p.RecordID == "" || !validLabel(p.Label) || p.Model.Version == "" {
		return event{}, fmt.Errorf("%w: shadow prediction: record_id or model.version empty, or label %d not 0/1", errInvalidInput, p.Label)
	}
	return event{V: ledgerVersion, Kind: kindShadow, Source: source, RecordID: p.RecordID, At: at, Label: p.Label, Version: p.Model.Version}, nil
}

func decodeOutcome(_ *Monitor, data []byte, source string, at time.Time) (event, error) {
	o, err := schemas.DecodeOutcome(data)
	if err != nil {
		return event{}, fmt.Errorf("%w: outcome: %w", errInvalidInput, err)
	}
	if o.RecordID == "" || !validLabel(o.Label) {
		return event{}, fmt.Errorf("%w: outcome: record_id empty or label %d not 0/1", errInvalidInput, o.Label)
	}
	return event{V: ledgerVersion, Kind: kindOutcome, Source: source, RecordID: o.RecordID, At: at, Label: o.Label}, nil
}

func decodeDeadLetter(_ *Monitor, data []byte, source string, at time.Time) (event, error) {
	var d schemas.DeadLetter
	if err := json.Unmarshal(data, &d); err != nil {
		return event{}, fmt.Errorf("%w: dead letter: %w", errInvalidInput, err)
	}
	if d.RecordID != "" && !schemas.ValidID(d.RecordID) { // empty: the payload had no readable id
		return event{}, fmt.Errorf("%w: dead letter: record_id is not a valid record id", errInvalidInput)
	}
	return event{V: ledgerVersion, Kind: kindDeadLetter, Source: source, RecordID: d.RecordID, At: at, Stage: stageLabel(d.Stage)}, nil
}

// handle decodes one input message and queues it on its lane (see lanes);
// the audit input, and a message that cannot be decoded, are finished here.
func (m *Monitor) handle(ctx context.Context, ln *lanes, in input, msg jetstream.Msg, errs *errorLog) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	if in.process != nil {
		m.finish(in, msg, meta, errs, in.process(m, ctx, msg, meta))
		return
	}
	source, ok := m.subjects.SourceOf(in.kind, msg.Subject())
	if !ok {
		m.finish(in, msg, meta, errs, fmt.Errorf("%w: subject %q has no valid source token", errInvalidInput, msg.Subject()))
		return
	}
	ev, err := in.decode(m, msg.Data(), source, m.now())
	if err != nil {
		m.finish(in, msg, meta, errs, err)
		return
	}
	ln.dispatch(job{in: in, msg: msg, meta: meta, ev: ev, errs: errs})
}

// finish acks a message according to the result of processing it: success →
// Ack; a message that can never be processed → Term; anything else → NAK
// with a delay growing with the delivery count.
func (m *Monitor) finish(in input, msg jetstream.Msg, meta *jetstream.MsgMetadata, errs *errorLog, err error) {
	switch {
	case err == nil:
		errs.ok()
		if aerr := msg.Ack(); aerr != nil {
			m.log.Debug("ack failed; the message will be redelivered", "input", in.name, "err", aerr)
		}
	case errors.Is(err, errInvalidInput):
		m.metrics.invalid[in.name].Inc()
		m.log.Warn("invalid input message; terminated", "input", in.name, "stream_sequence", meta.Sequence.Stream, "err", err)
		_ = msg.Term()
	default:
		m.metrics.errors[errOpInput].Inc()
		errs.failed(err, "input", in.name)
		delay := m.cfg.Consumer.RetryDelay << min(meta.NumDelivered-1, 6)
		_ = msg.NakWithDelay(min(delay, 30*time.Second))
	}
}
