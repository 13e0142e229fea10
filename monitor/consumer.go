package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// reader is one input stream the monitor folds, read with an ordered
// consumer from the checkpoint's position. Every monitor process reads all
// of each input itself; nothing is acked, so several monitors (and
// `cardiostream model compare`) can read the same streams independently and
// each computes the same numbers.
type reader struct {
	name   string // metric label and checkpoint position: predictions, outcomes, deadletter
	stream string
	// sources caches what each subject means (kind, source); owned by the
	// reader's one callback goroutine, like dec.
	sources map[string]subjectKind
	dec     *inputDecoder
}

// inputDecoder is a reader's decoding state, reused message after message so
// that a valid prediction or outcome allocates nothing.
type inputDecoder struct {
	sd schemas.SummaryDecoder
	// versions interns the model versions seen (a handful), so that a
	// prediction's version is not a new string each time, and the joiner's
	// records share them.
	versions interner
}

func newInputDecoder() *inputDecoder {
	return &inputDecoder{versions: interner{}}
}

func (m *Monitor) readers() []reader {
	return []reader{
		// Each reader takes its stream whole, with no filter: the stream's
		// one subject is <prefix>.<kind>.>, so a filter would select every
		// message anyway, and the server would still match each message's
		// subject against it (in the monitor's bench, 7% of the server's
		// CPU while it serves the readers). The reader sorts the subjects
		// itself: main and shadow predictions share the stream and one
		// reader keeps them in stream order, and a subject of neither shape
		// (<prefix>.predictions.a.b, or another prefix's) is skipped.
		{name: "predictions", stream: schemas.StreamPredictions},
		{name: "outcomes", stream: schemas.StreamOutcomes},
		{name: "deadletter", stream: schemas.StreamDeadLetter},
	}
}

// legacyConsumers are the durable consumers of the design before the
// readers (each input was acked after a KV and ledger write); setup removes
// them so that they do not linger with an ever-growing pending count.
var legacyConsumers = []struct{ stream, name string }{
	{schemas.StreamPredictions, "monitor-predictions"},
	{schemas.StreamPredictions, "monitor-shadow"},
	{schemas.StreamOutcomes, "monitor-outcomes"},
	{schemas.StreamDeadLetter, "monitor-deadletter"},
}

// decodeInput decodes one message of r into its event (At and Ord are set
// by the caller). The metric label of the input is returned for errors.
func (m *Monitor) decodeInput(r reader, msg jetstream.Msg) (event, string, error) {
	subject := msg.Subject()
	// A reader's messages come from a handful of sources: remember what
	// each subject means rather than parse it every time.
	s, ok := r.sources[subject]
	if !ok {
		if s, ok = m.kindOf(r.name, subject); !ok {
			return event{}, r.name, fmt.Errorf("%w: %q", errNotInput, subject)
		}
		if r.sources != nil && len(r.sources) < maxCachedSubjects {
			r.sources[subject] = s
		}
	}
	return decodeFor(r.dec, s.kind, msg.Data(), s.source)
}

// maxCachedSubjects bounds a reader's subject cache (one entry per source).
const maxCachedSubjects = 4096

type subjectKind struct{ kind, source string }

// kindOf says what subject means on the stream of the reader named name: the
// kind of input and its source; false for a subject the reader does not read.
func (m *Monitor) kindOf(name, subject string) (subjectKind, bool) {
	switch name {
	case "predictions":
		if source, ok := m.subjects.SourceOf(schemas.ShadowKind, subject); ok {
			return subjectKind{kind: kindShadow, source: source}, true
		}
		if source, ok := m.subjects.SourceOf("predictions", subject); ok {
			return subjectKind{kind: kindPrediction, source: source}, true
		}
	case "outcomes":
		if source, ok := m.subjects.SourceOf("outcomes", subject); ok {
			return subjectKind{kind: kindOutcome, source: source}, true
		}
	case "deadletter":
		if source, ok := m.subjects.SourceOf("deadletter", subject); ok {
			return subjectKind{kind: kindDeadLetter, source: source}, true
		}
	}
	return subjectKind{}, false
}

func decodeFor(d *inputDecoder, kind string, data []byte, source string) (event, string, error) {
	switch kind {
	case kindShadow:
		ev, err := d.shadow(data, source)
		return ev, "shadow", err
	case kindPrediction:
		ev, err := d.prediction(data, source)
		return ev, "predictions", err
	case kindOutcome:
		ev, err := d.outcome(data, source)
		return ev, "outcomes", err
	default:
		ev, err := decodeDeadLetter(data, source)
		return ev, "deadletter", err
	}
}

// input is the durable consumer the monitor acks: the audit entries that
// raise alerts (audit.go).
type input struct {
	name     string // metric label
	stream   string
	consumer string
	filters  []string
	process  func(m *Monitor, ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata) error
}

func (m *Monitor) auditInput() input {
	return input{name: "audit", stream: schemas.StreamAudit, consumer: ConsumerAudit, process: processAudit,
		// Refusals raise the alert; an activation or rollback (the
		// operator's answer) resolves it.
		filters: []string{m.subjects.Audit(schemas.AuditArtifactRefused), m.subjects.Audit(schemas.AuditActivate), m.subjects.Audit(schemas.AuditRollback)}}
}

// consumerConfig is the durable consumer of in.
func (m *Monitor) consumerConfig(in input) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        in.consumer,
		Description:    "cardiostream monitor: alerts from audit entries",
		FilterSubjects: in.filters,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        m.cfg.Consumer.AckWait,
		MaxDeliver:     -1, // a transient failure must not lose an alert
		MaxAckPending:  m.cfg.Consumer.MaxAckPending,
		// Replicas 0: inherit the stream's. A consumer cannot have more
		// replicas than its stream, and one with fewer would lose its
		// position with its node.
	}
}

// decodePrediction, decodeShadow and decodeOutcome decode one input with a
// fresh decoder (tests); the readers reuse theirs.
func decodePrediction(data []byte, source string) (event, error) {
	return newInputDecoder().prediction(data, source)
}

func decodeShadow(data []byte, source string) (event, error) {
	return newInputDecoder().shadow(data, source)
}

func decodeOutcome(data []byte, source string) (event, error) {
	return newInputDecoder().outcome(data, source)
}

func (d *inputDecoder) prediction(data []byte, source string) (event, error) {
	// The summary decoder reads only what the monitor needs, and refuses a
	// record id no record can have (the scorer only writes valid ones): a
	// forged prediction must not make the monitor hold a 70 KB id.
	p, err := d.sd.Prediction(data)
	if err != nil {
		return event{}, fmt.Errorf("%w: prediction: %w", errInvalidInput, err)
	}
	return event{Kind: kindPrediction, Source: source, key: keyOfBytes(source, p.RecordID), keyed: true,
		Label: p.Label, LatencyMS: p.LatencyMS, Version: d.versions.bytes(p.ModelVersion)}, nil
}

func (d *inputDecoder) shadow(data []byte, source string) (event, error) {
	p, err := d.sd.Prediction(data)
	if err != nil {
		return event{}, fmt.Errorf("%w: shadow prediction: %w", errInvalidInput, err)
	}
	if len(p.ModelVersion) == 0 {
		return event{}, fmt.Errorf("%w: shadow prediction: model.version is empty", errInvalidInput)
	}
	return event{Kind: kindShadow, Source: source, key: keyOfBytes(source, p.RecordID), keyed: true,
		Label: p.Label, Version: d.versions.bytes(p.ModelVersion)}, nil
}

func (d *inputDecoder) outcome(data []byte, source string) (event, error) {
	o, err := d.sd.Outcome(data)
	if err != nil {
		return event{}, fmt.Errorf("%w: outcome: %w", errInvalidInput, err)
	}
	if len(o.RecordID) == 0 || !validLabel(o.Label) {
		return event{}, fmt.Errorf("%w: outcome: record_id empty or label %d not 0/1", errInvalidInput, o.Label)
	}
	return event{Kind: kindOutcome, Source: source, key: keyOfBytes(source, o.RecordID), keyed: true, Label: o.Label}, nil
}

func decodeDeadLetter(data []byte, source string) (event, error) {
	var d schemas.DeadLetter
	if err := json.Unmarshal(data, &d); err != nil {
		return event{}, fmt.Errorf("%w: dead letter: %w", errInvalidInput, err)
	}
	if d.RecordID != "" && !schemas.ValidID(d.RecordID) { // empty: the payload had no readable id
		return event{}, fmt.Errorf("%w: dead letter: record_id is not a valid record id", errInvalidInput)
	}
	return event{Kind: kindDeadLetter, Source: source, RecordID: d.RecordID, Stage: stageLabel(d.Stage)}, nil
}

// handle processes one message of a durable input and acks it.
func (m *Monitor) handle(ctx context.Context, in input, msg jetstream.Msg, errs *errorLog) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	m.finish(in, msg, meta, errs, in.process(m, ctx, msg, meta))
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
