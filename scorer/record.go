package scorer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// InvalidSource is the source token of the dead-letter subject used for a
// record whose own subject has no valid source token
// (<prefix>.deadletter._invalid).
const InvalidSource = "_invalid"

// verdict is what happens to a record after decoding and scoring; the ack
// decision follows from it and from the publish ack (see settle).
type verdict uint8

const (
	verdictPredict    verdict = iota // publish the prediction, then Ack
	verdictDeadLetter                // publish a dead letter, then Term
	verdictRetry                     // transient failure: NakWithDelay
	verdictStored                    // an earlier delivery's output is stored (kind): Ack or Term, publish nothing
)

// item is one delivered record on its way through a batch.
type item struct {
	msg        jetstream.Msg
	subject    string
	data       []byte
	seq        uint64    // stream sequence in RECORDS
	deliveries uint64    // delivery count, 1 on first delivery
	storedAt   time.Time // when RECORDS stored the record

	source  string // the subject's source token, or InvalidSource
	rec     schemas.Record
	verdict verdict
	stage   schemas.Stage     // verdictDeadLetter
	reasons []schemas.Problem // verdictDeadLetter
	failure string            // verdictRetry: what failed, for the final dead letter
	prob    float64
	scored  time.Time

	kind   string // kindPrediction or kindDeadLetter once published
	fut    jetstream.PubAckFuture
	pubErr error

	// The shadow model's prediction (shadowOK: scored and valid), published
	// beside the main one; its outcome never changes the record's.
	shadowProb float64
	shadowOK   bool
	shadowFut  jetstream.PubAckFuture
	shadowErr  error
}

func (it *item) deadLetter(stage schemas.Stage, reasons ...schemas.Problem) {
	it.verdict = verdictDeadLetter
	it.stage = stage
	it.reasons = reasons
}

// decode fills it.source and it.rec, or turns it into a dead letter. Every
// problem found is reported, the subject's included.
func (s *Scorer) decode(it *item) {
	var reasons []schemas.Problem
	src, ok := s.subjects.SourceOf("records", it.subject)
	switch {
	case ok && src == schemas.ShadowToken:
		it.source = InvalidSource
		reasons = append(reasons, schemas.Problem{Field: "subject", Problem: fmt.Sprintf(
			"source %q is reserved (%s.predictions.%s.<source> carries shadow predictions); publish under another source", src, s.subjects.Prefix, schemas.ShadowToken)})
	case ok:
		it.source = src
	default:
		it.source = InvalidSource
		reasons = append(reasons, schemas.Problem{Field: "subject", Problem: fmt.Sprintf(
			"subject %q is not %s.records.<source> with a source of 1-64 letters, digits, '_' or '-'", it.subject, s.subjects.Prefix)})
	}
	rec, err := decodeRecord(it.data)
	it.rec = rec
	if err != nil {
		stage := schemas.StageDecode
		var ve *schemas.ValidationError
		if errors.As(err, &ve) {
			stage = ve.Stage
			reasons = append(reasons, ve.Problems...)
		} else {
			reasons = append(reasons, schemas.Problem{Problem: err.Error()})
		}
		if stage == "" {
			stage = schemas.StageDecode
		}
		if errors.Is(err, errPanic) {
			s.m.panics.Inc()
		}
		it.deadLetter(stage, reasons...)
		return
	}
	// The id names the prediction and deduplicates redeliveries, so the
	// scorer insists on it whatever the schema validator allows.
	if p, ok := checkRecordID(rec.ID); !ok {
		reasons = append(reasons, p)
	}
	if len(reasons) > 0 {
		it.deadLetter(schemas.StageValidate, reasons...)
	}
}

var errPanic = errors.New("internal error")

// decodeRecord is schemas.DecodeRecord made safe: a panic in the decoder is
// an error for this record, not the end of the process.
func decodeRecord(data []byte) (rec schemas.Record, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: decoder panicked: %s", errPanic, panicText(v))
		}
	}()
	return schemas.DecodeRecord(data)
}

func checkRecordID(id string) (schemas.Problem, bool) {
	if id == "" {
		return schemas.Problem{Field: "id", Problem: "missing: every record needs an id (it names the prediction and deduplicates redeliveries)"}, false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c == 0x7f {
			return schemas.Problem{Field: "id", Problem: "contains control characters"}, false
		}
	}
	return schemas.Problem{}, true
}

// panicText renders a recovered value for a dead letter, bounded.
func panicText(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// predictOne scores one record, turning a panic into an error.
func predictOne(m Model, f *schemas.Features) (p float64, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: model panicked: %s", errPanic, panicText(v))
		}
	}()
	return m.Predict((*[schemas.NumFeatures]float64)(f)), nil
}

// predictBatch runs a BatchModel, turning a panic into an error.
func predictBatch(m BatchModel, rows [][schemas.NumFeatures]float64, out []float64) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: model panicked: %s", errPanic, panicText(v))
		}
	}()
	return m.PredictBatch(rows, out)
}

func validProbability(p float64) bool { return p >= 0 && p <= 1 } // false for NaN

// scoringFailed records a failed scoring attempt: retried while deliveries
// remain, dead-lettered (stage score) on the last one.
func (s *Scorer) scoringFailed(it *item, what string) {
	if it.deliveries >= uint64(s.cfg.MaxDeliver) {
		it.deadLetter(schemas.StageScore, schemas.Problem{Problem: fmt.Sprintf(
			"%s on delivery %d of max_deliver %d", what, it.deliveries, s.cfg.MaxDeliver)})
		return
	}
	it.verdict = verdictRetry
	it.failure = what
}

// prediction builds the prediction of a scored record by the model ref with
// threshold that returned prob.
func (s *Scorer) prediction(ref schemas.ModelRef, threshold, prob float64, it *item) schemas.Prediction {
	label := 0
	if prob >= threshold {
		label = 1
	}
	return schemas.Prediction{
		SchemaVersion: schemas.Version,
		RecordID:      it.rec.ID,
		Source:        it.source,
		PatientRef:    it.rec.PatientRef,
		Probability:   prob,
		Label:         label,
		Threshold:     threshold,
		Model:         ref,
		ReceivedAt:    it.storedAt,
		ScoredAt:      it.scored,
		LatencyMS:     float64(max(it.scored.Sub(it.storedAt), 0)) / float64(time.Millisecond),
		Deliveries:    it.deliveries,
	}
}

// predictionBytes is room for one encoded prediction (about 390 bytes with
// a 64-hex model sha256); a larger one gets its own buffer.
const predictionBytes = 512

func encodePrediction(p *schemas.Prediction) ([]byte, error) {
	return p.AppendJSON(make([]byte, 0, predictionBytes))
}

// outputs is the memory for one batch's output messages, allocated once per
// batch instead of once per record (pprof: outMsg was the scorer's largest
// allocation site). It is fresh for every batch and never pooled or reused:
// the client library keeps each published message until its publish ack
// arrives (and may republish it), so nothing here may be overwritten while
// the library can still reference it. The garbage collector frees it once
// the last of the batch's messages is unreferenced.
type outputs struct {
	msgs  []nats.Msg
	buf   []byte
	ids   []string
	idBuf []byte // the bytes of ids; written once, never modified
}

// idBytes is room for one message id ("<source>/<record id>") per record.
const idBytes = 64

func (s *Scorer) newOutputs(n int) *outputs {
	return &outputs{msgs: make([]nats.Msg, 0, n), buf: make([]byte, 0, n*predictionBytes),
		ids: make([]string, 0, n), idBuf: make([]byte, 0, n*idBytes)}
}

// predictionID is source + "/" + recordID, in the batch's memory when it
// fits. The string shares idBuf's bytes (unsafe.String): they are written
// here once and never changed, and outputs is never reused.
func (o *outputs) predictionID(source, recordID string) string {
	n := len(source) + 1 + len(recordID)
	if o == nil || cap(o.idBuf)-len(o.idBuf) < n {
		return source + "/" + recordID
	}
	off := len(o.idBuf)
	o.idBuf = append(append(append(o.idBuf, source...), '/'), recordID...)
	return unsafe.String(&o.idBuf[off], n)
}

// encode encodes p into the batch's buffer when it fits, else into its own.
func (o *outputs) encode(p *schemas.Prediction) ([]byte, error) {
	if o == nil || cap(o.buf)-len(o.buf) < predictionBytes {
		return encodePrediction(p)
	}
	off := len(o.buf)
	data, err := p.AppendJSON(o.buf[off : off : off+predictionBytes])
	if err == nil && len(data) <= predictionBytes { // not reallocated: it is o.buf's
		o.buf = o.buf[:off+len(data)]
	}
	return data, err
}

// msg returns a message with a Nats-Msg-Id header (and s's ScorerHeader), from the batch's memory
// when there is room.
func (o *outputs) msg(s *Scorer, subject string, data []byte, id string) *nats.Msg {
	if o == nil || len(o.msgs) == cap(o.msgs) {
		return &nats.Msg{Subject: subject, Data: data, Header: s.header([]string{id})}
	}
	o.ids = append(o.ids, id)
	k := len(o.ids)
	o.msgs = append(o.msgs, nats.Msg{Subject: subject, Data: data, Header: s.header(o.ids[k-1 : k : k])})
	return &o.msgs[len(o.msgs)-1]
}

// deadLetterMsg builds the dead letter of it.
func (s *Scorer) deadLetterMsg(it *item, now time.Time) schemas.DeadLetter {
	payload := it.data
	truncated := false
	if len(payload) > schemas.MaxDeadLetterPayload {
		payload = payload[:schemas.MaxDeadLetterPayload]
		truncated = true
	}
	sum := sha256.Sum256(it.data)
	return schemas.DeadLetter{
		SchemaVersion:    schemas.Version,
		Subject:          it.subject,
		Source:           it.source,
		RecordID:         it.rec.ID,
		Stage:            it.stage,
		Reasons:          it.reasons,
		Payload:          payload,
		PayloadSize:      len(it.data),
		PayloadSHA256:    hex.EncodeToString(sum[:]),
		PayloadTruncated: truncated,
		StreamSequence:   it.seq,
		Deliveries:       it.deliveries,
		ReceivedAt:       it.storedAt,
		DeadLetteredAt:   now,
	}
}

// outMsg is the NATS message published for it: its prediction or its dead
// letter, with the message id that makes a redelivery's publish a duplicate.
func (s *Scorer) outMsg(set *modelSet, it *item) (*nats.Msg, error) { return s.outMsgIn(set, it, nil) }

// outMsgIn is outMsg with the batch's output memory (nil: allocate).
func (s *Scorer) outMsgIn(set *modelSet, it *item, o *outputs) (*nats.Msg, error) {
	var (
		subject, id string
		data        []byte
		err         error
	)
	switch it.verdict {
	case verdictPredict:
		p := s.prediction(set.ref, set.threshold, it.prob, it)
		data, err = o.encode(&p)
		subject = s.predictionSubject(it.source)
		id = o.predictionID(it.source, it.rec.ID)
		it.kind = kindPrediction
	case verdictDeadLetter:
		dl := s.deadLetterMsg(it, s.now())
		data, err = json.Marshal(&dl)
		subject = s.subjects.DeadLetter(it.source)
		id = "dl/" + strconv.FormatUint(it.seq, 10)
		it.kind = kindDeadLetter
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", it.kind, err)
	}
	return o.msg(s, subject, data, id), nil
}

// maxCachedSubjects bounds the prediction subjects kept per process: source
// tokens are chosen by clients.
const maxCachedSubjects = 4096

// predictionSubject is subjects.Predictions(source), built once per source
// (pprof: one allocation per record otherwise).
func (s *Scorer) predictionSubject(source string) string {
	if v, ok := s.predSubjects.Load(source); ok {
		return v.(string)
	}
	subj := s.subjects.Predictions(source)
	if s.predSubjectCount.Load() < maxCachedSubjects {
		if _, loaded := s.predSubjects.LoadOrStore(source, subj); !loaded {
			s.predSubjectCount.Add(1)
		}
	}
	return subj
}
