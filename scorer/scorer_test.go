package scorer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

func TestValidRecordsGetExactlyOnePredictionEach(t *testing.T) {
	for _, tc := range []struct {
		name  string
		model Model
	}{
		{"single", fakeModel{}},
		{"batch model", batchFake{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var tick atomic.Int64
			base := time.Now().Add(time.Hour) // clock ahead of the server: latency about 1h
			clock := func() time.Time { return base.Add(time.Duration(tick.Add(1)) * time.Millisecond) }
			r := e.start(t, testConfig(), tc.model, WithClock(clock))

			const perSource = 150
			e.publishRecords(t, "clinic-a", "a", perSource)
			e.publishRecords(t, "clinic_b", "b", perSource)
			natstest.Eventually(t, 20*time.Second, func() error {
				if st := r.s.Stats(); st.Scored != 2*perSource {
					return fmt.Errorf("scored %d of %d", st.Scored, 2*perSource)
				}
				return nil
			})
			e.settled(t, 10*time.Second)

			stored := map[string]time.Time{} // record id → RECORDS timestamp
			for _, m := range natstest.StreamMessages(t, e.js, schemas.StreamRecords) {
				md, _ := m.Metadata()
				rec, err := schemas.DecodeRecord(m.Data())
				if err != nil {
					t.Fatal(err)
				}
				stored[rec.ID] = md.Timestamp
			}
			byID := uniqueIDs(t, e.predictions(t))
			if len(byID) != 2*perSource {
				t.Fatalf("%d predictions, want %d", len(byID), 2*perSource)
			}
			for src, prefix := range map[string]string{"clinic-a": "a", "clinic_b": "b"} {
				for i := range perSource {
					id := fmt.Sprintf("%s-%d", prefix, i)
					p, ok := byID[src+"/"+id]
					if !ok {
						t.Fatalf("no prediction for %s/%s", src, id)
					}
					rec, _ := schemas.DecodeRecord(recordJSON(id, i))
					wantP := fakeProb((*[13]float64)(&rec.Features))
					wantLabel := 0
					if wantP >= 0.5 {
						wantLabel = 1
					}
					if p.SchemaVersion != schemas.Version || p.PatientRef != "p-"+id || p.Threshold != 0.5 ||
						math.Abs(p.Probability-wantP) > 1e-12 || p.Label != wantLabel || p.Deliveries != 1 ||
						p.Model != (fakeModel{}).Ref() {
						t.Fatalf("prediction %+v: want probability %v label %d", p, wantP, wantLabel)
					}
					if !p.ReceivedAt.Equal(stored[id]) {
						t.Errorf("%s: received_at %v, want RECORDS timestamp %v", id, p.ReceivedAt, stored[id])
					}
					if !p.ScoredAt.After(base) {
						t.Errorf("%s: scored_at %v does not come from the injected clock", id, p.ScoredAt)
					}
					wantLatency := float64(max(p.ScoredAt.Sub(p.ReceivedAt), 0)) / 1e6
					if math.Abs(p.LatencyMS-wantLatency) > 1e-6 {
						t.Errorf("%s: latency_ms %v, want %v", id, p.LatencyMS, wantLatency)
					}
				}
			}

			// Metrics agree with Stats and with the streams.
			st := r.s.Stats()
			for name, pair := range map[string][2]float64{
				"received":  {testutil.ToFloat64(r.s.m.received), float64(st.Received)},
				"scored":    {testutil.ToFloat64(r.s.m.scored), float64(st.Scored)},
				"published": {testutil.ToFloat64(r.s.m.published), float64(e.streamCount(t, schemas.StreamPredictions))},
				"inflight":  {testutil.ToFloat64(r.s.m.inflight), 0},
				"dead":      {testutil.ToFloat64(r.s.m.deadLettered[schemas.StageDecode]), 0},
			} {
				if pair[0] != pair[1] {
					t.Errorf("metric %s = %v, want %v", name, pair[0], pair[1])
				}
			}
			if n := testutil.CollectAndCount(r.reg, "cardiostream_scorer_scoring_latency_seconds"); n != 1 {
				t.Errorf("latency histogram: %d series", n)
			}
			err := testutil.GatherAndCompare(r.reg, strings.NewReader(`
# HELP cardiostream_scorer_model_info The model this scorer uses (always 1).
# TYPE cardiostream_scorer_model_info gauge
cardiostream_scorer_model_info{name="fake",sha256="0123abcd",version="1.0.0"} 1
# HELP cardiostream_scorer_records_dead_lettered_total Records published to DEADLETTER and terminated, by the stage that rejected them.
# TYPE cardiostream_scorer_records_dead_lettered_total counter
cardiostream_scorer_records_dead_lettered_total{stage="decode"} 0
cardiostream_scorer_records_dead_lettered_total{stage="score"} 0
cardiostream_scorer_records_dead_lettered_total{stage="validate"} 0
`), "cardiostream_scorer_model_info", "cardiostream_scorer_records_dead_lettered_total")
			if err != nil {
				t.Error(err)
			}
			if err := r.stop(t); err != nil {
				t.Errorf("Run: %v", err)
			}
			if !errors.Is(r.s.Ready(), ErrNotReady) {
				t.Errorf("Ready after stop = %v, want ErrNotReady", r.s.Ready())
			}
		})
	}
}

func TestInvalidRecordsAreDeadLettered(t *testing.T) {
	e := newEnv(t)
	big := bytes.Repeat([]byte("x"), 100<<10) // beyond MaxRecordBytes and MaxDeadLetterPayload
	oversizedJSON := append(append([]byte(`{"id":"big","pad":"`), bytes.Repeat([]byte("y"), schemas.MaxRecordBytes)...), '"', '}')
	cases := []struct {
		name      string
		source    string // subject suffix after cardio.records.
		payload   []byte
		stage     schemas.Stage
		field     string // a reason must name this field
		validator bool   // needs the full schemas validator to be rejected
	}{
		{name: "not json", source: "s1", payload: []byte("this is not json"), stage: schemas.StageDecode},
		{name: "json array", source: "s1", payload: []byte(`[1,2,3]`), stage: schemas.StageDecode},
		{name: "truncated json", source: "s1", payload: []byte(`{"id":"x","features":{"age":`), stage: schemas.StageDecode},
		{name: "feature of wrong type", source: "s1", payload: []byte(`{"id":"t1","features":{"age":"sixty"}}`), stage: schemas.StageDecode},
		{name: "id of wrong type", source: "s1", payload: []byte(`{"id":17,"features":{}}`), stage: schemas.StageDecode},
		{name: "missing id", source: "s1", payload: []byte(`{"features":{"age":50}}`), stage: schemas.StageDecode, field: "id"},
		{name: "id with control characters", source: "s1", payload: []byte(`{"id":"a\nb","features":{"age":50}}`), stage: schemas.StageValidate, field: "id"},
		{name: "out of range code", source: "s1", payload: []byte(`{"id":"cp9","features":{"age":50,"sex":1,"cp":9}}`), stage: schemas.StageValidate, field: "features.cp", validator: true},
		{name: "oversized payload", source: "s1", payload: oversizedJSON, stage: schemas.StageDecode},
		{name: "huge non-json payload", source: "s1", payload: big, stage: schemas.StageDecode},
		{name: "multi-token source", source: "a.b", payload: recordJSON("mt", 1), stage: schemas.StageValidate, field: "subject"},
		{name: "bad character in source", source: "bad$src", payload: recordJSON("bc", 1), stage: schemas.StageValidate, field: "subject"},
		{name: "source too long", source: strings.Repeat("s", 65), payload: recordJSON("tl", 1), stage: schemas.StageValidate, field: "subject"},
		{name: "bad source and bad payload", source: "a.b", payload: []byte("nope"), stage: schemas.StageDecode, field: "subject"},
	}
	seqs := make([]uint64, len(cases))
	expectDL := 0
	for i, tc := range cases {
		if tc.validator {
			if _, err := schemas.DecodeRecord(tc.payload); err == nil {
				t.Logf("%s: skipped, schemas.DecodeRecord does not validate this yet", tc.name)
				seqs[i] = 0
				continue
			}
		}
		seqs[i] = e.publish(t, "cardio.records."+tc.source, tc.payload)
		expectDL++
	}
	const valid = 20
	e.publishRecords(t, "ok", "v", valid)

	r := e.start(t, testConfig(), fakeModel{})
	natstest.Eventually(t, 20*time.Second, func() error {
		if st := r.s.Stats(); st.Scored+st.DeadLettered != uint64(valid+expectDL) {
			return fmt.Errorf("scored %d + dead-lettered %d != %d records", st.Scored, st.DeadLettered, valid+expectDL)
		}
		return nil
	})
	e.settled(t, 10*time.Second)

	if n := e.streamCount(t, schemas.StreamPredictions); n != valid {
		t.Errorf("%d predictions, want %d", n, valid)
	}
	dls := e.deadLetters(t)
	if len(dls) != expectDL {
		t.Errorf("%d dead letters, want %d", len(dls), expectDL)
	}
	var byStage = map[schemas.Stage]float64{}
	for i, tc := range cases {
		if seqs[i] == 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			d, ok := dls[seqs[i]]
			if !ok {
				t.Fatalf("no dead letter for seq %d", seqs[i])
			}
			byStage[d.Stage]++
			if d.Stage != tc.stage {
				t.Errorf("stage %q, want %q (reasons %+v)", d.Stage, tc.stage, d.Reasons)
			}
			if len(d.Reasons) == 0 {
				t.Error("no reasons")
			}
			if tc.field != "" && !hasField(d.Reasons, tc.field) {
				t.Errorf("reasons %+v do not name %q", d.Reasons, tc.field)
			}
			wantSrc := tc.source
			if !schemas.ValidToken(tc.source) {
				wantSrc = InvalidSource
			}
			if d.Source != wantSrc || d.subject != "cardio.deadletter."+wantSrc || d.Subject != "cardio.records."+tc.source {
				t.Errorf("source %q on %q for subject %q", d.Source, d.subject, d.Subject)
			}
			sum := sha256.Sum256(tc.payload)
			wantPayload, trunc := tc.payload, false
			if len(wantPayload) > schemas.MaxDeadLetterPayload {
				wantPayload, trunc = wantPayload[:schemas.MaxDeadLetterPayload], true
			}
			if !bytes.Equal(d.Payload, wantPayload) || d.PayloadTruncated != trunc || d.PayloadSize != len(tc.payload) ||
				d.PayloadSHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("payload: %d bytes truncated=%v size=%d sha=%s", len(d.Payload), d.PayloadTruncated, d.PayloadSize, d.PayloadSHA256)
			}
			if d.Deliveries != 1 || d.SchemaVersion != schemas.Version || d.ReceivedAt.IsZero() || d.DeadLetteredAt.IsZero() {
				t.Errorf("dead letter %+v", d.DeadLetter)
			}
		})
	}
	for _, st := range []schemas.Stage{schemas.StageDecode, schemas.StageValidate, schemas.StageScore} {
		if got := testutil.ToFloat64(r.s.m.deadLettered[st]); got != byStage[st] {
			t.Errorf("records_dead_lettered_total{stage=%q} = %v, want %v", st, got, byStage[st])
		}
	}
}

func hasField(ps []schemas.Problem, field string) bool {
	for _, p := range ps {
		if p.Field == field {
			return true
		}
	}
	return false
}

func TestRedeliveryAfterCrashStoresNoDuplicatePrediction(t *testing.T) {
	e := newEnv(t)
	const n = 300
	e.publishRecords(t, "c", "r", n)

	atCrash := e.crashBeforeAck(t, testConfig())

	// Scorer B gets every record again after AckWait.
	b := e.start(t, testConfig(), fakeModel{})
	natstest.Eventually(t, 30*time.Second, func() error {
		if st := b.s.Stats(); st.Scored != n {
			return fmt.Errorf("scorer B scored %d of %d", st.Scored, n)
		}
		return nil
	})
	e.settled(t, 10*time.Second)
	ps := e.predictions(t)
	if len(uniqueIDs(t, ps)) != n || len(ps) != n {
		t.Fatalf("%d predictions (%d unique), want %d", len(ps), len(uniqueIDs(t, ps)), n)
	}
	st := b.s.Stats()
	if st.Duplicates != atCrash {
		t.Errorf("scorer B saw %d duplicate publish acks, want %d (predictions stored before the crash)", st.Duplicates, atCrash)
	}
	if got := testutil.ToFloat64(b.s.m.published); got != float64(n-int(atCrash)) {
		t.Errorf("B predictions_published_total = %v, want %d", got, n-int(atCrash))
	}
	if got := testutil.ToFloat64(b.s.m.redeliveries); got < float64(atCrash) {
		t.Errorf("B redeliveries_total = %v, want >= %d", got, atCrash)
	}
	for _, p := range ps {
		if p.Deliveries < 1 {
			t.Fatalf("prediction %s: deliveries %d", p.RecordID, p.Deliveries)
		}
	}
}

func TestThreeScorersScoreEveryRecordExactlyOnce(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	// No crash here, so no redelivery may happen either: testConfig's 2 s
	// AckWait and 1 s publish timeout expire under -race on a loaded machine
	// (records redelivered or retried while their prediction is stored,
	// then deduplicated), which this test would count as a failure.
	cfg.AckWait = 30 * time.Second
	cfg.PublishTimeout = 10 * time.Second
	var rs []*running
	for range 3 {
		rs = append(rs, e.start(t, cfg, fakeModel{}))
	}
	const perSource, sources = 1000, 3
	var wg sync.WaitGroup
	for i := range sources {
		wg.Go(func() { e.publishRecords(t, fmt.Sprintf("src%d", i), "x", perSource) })
	}
	wg.Wait()
	total := uint64(perSource * sources)
	natstest.Eventually(t, 30*time.Second, func() error {
		var sum uint64
		for _, r := range rs {
			sum += r.s.Stats().Scored
		}
		if sum != total {
			return fmt.Errorf("scored %d of %d", sum, total)
		}
		return nil
	})
	e.settled(t, 10*time.Second)
	ps := e.predictions(t)
	if len(ps) != int(total) || len(uniqueIDs(t, ps)) != int(total) {
		t.Fatalf("%d predictions, want %d unique", len(ps), total)
	}
	var published float64
	for i, r := range rs {
		st := r.s.Stats()
		t.Logf("scorer %d: %+v", i, st)
		published += testutil.ToFloat64(r.s.m.published)
		if st.Duplicates != 0 {
			t.Errorf("scorer %d: %d duplicates without any crash", i, st.Duplicates)
		}
	}
	if published != float64(total) {
		t.Errorf("sum of predictions_published_total = %v, want %d", published, total)
	}
}

// TestScoringFailures: a record whose scoring fails on every try (the poison)
// is retried until the configured max_deliver and then dead-lettered (stage
// score, with the failure and the delivery count), while the records behind
// it, published before it was picked up or while it waits for its next
// delivery (the wave), are scored without waiting for it.
func TestScoringFailures(t *testing.T) {
	poison := func(f *[13]float64) bool { return f[schemas.Age] == 99 }
	cases := []struct {
		name       string
		model      Model
		maxDeliver int           // 0: testConfig's (3)
		nakDelay   time.Duration // 0: testConfig's
		wave       bool          // publish more records once the poison failed its first try
		wantDL     int           // of 1 poison + good (+ wave) records
		wantDeliv  uint64
		reason     string
	}{
		{name: "model fails on one record", model: fakeModel{fail: poison}, wantDL: 1, wantDeliv: 3, reason: "probability NaN"},
		{name: "batch model fails on one record", model: batchFake{fakeModel{fail: poison}}, wantDL: 1, wantDeliv: 3, reason: "probability NaN"},
		{name: "model panics on one record", model: fakeModel{panic: poison}, wantDL: 1, wantDeliv: 1, reason: "internal error: model panicked: fake model exploded"},
		{name: "batch model panics on one record", model: batchFake{fakeModel{panic: poison}}, wantDL: 1, wantDeliv: 1, reason: "internal error: model panicked"},
		{name: "model always fails", model: fakeModel{fail: func(*[13]float64) bool { return true }}, wantDL: 31, wantDeliv: 3, reason: "probability NaN"},
		{name: "max_deliver 1 dead-letters on the first failure", model: fakeModel{fail: poison}, maxDeliver: 1, wantDL: 1, wantDeliv: 1, reason: "probability NaN"},
		// A NAK delay well above the time the wave takes to be scored, so
		// the wave lands while the poison waits for its redelivery.
		{name: "max_deliver 5 with records arriving during the retries", model: batchFake{fakeModel{fail: poison}}, maxDeliver: 5,
			nakDelay: time.Second, wave: true, wantDL: 1, wantDeliv: 5, reason: "probability NaN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := testConfig()
			if tc.maxDeliver > 0 {
				cfg.MaxDeliver = tc.maxDeliver
			}
			if tc.nakDelay > 0 {
				cfg.AckWait, cfg.NakDelay, cfg.PublishTimeout = tc.nakDelay, tc.nakDelay, tc.nakDelay/2
			}
			poisonSeq := e.publish(t, e.subjects.Records("p"), []byte(`{"id":"poison","features":{"age":99,"sex":1}}`))
			const good, waveN = 30, 40
			e.publishRecords(t, "p", "g", good)
			total := good + 1
			r := e.start(t, cfg, tc.model)
			if tc.wave {
				natstest.Eventually(t, 20*time.Second, func() error {
					if r.s.Stats().Retried == 0 {
						return errNotYet
					}
					return nil
				})
				e.publishRecords(t, "p", "w", waveN)
				total += waveN
			}
			natstest.Eventually(t, 30*time.Second, func() error {
				if st := r.s.Stats(); st.Scored+st.DeadLettered != uint64(total) {
					return fmt.Errorf("scored %d + dead-lettered %d of %d", st.Scored, st.DeadLettered, total)
				}
				return nil
			})
			e.settled(t, 10*time.Second)
			dls := e.deadLetters(t)
			ps := e.predictions(t)
			if len(dls) != tc.wantDL || len(ps) != total-tc.wantDL {
				t.Fatalf("%d dead letters and %d predictions, want %d and %d", len(dls), len(ps), tc.wantDL, total-tc.wantDL)
			}
			d := dls[poisonSeq]
			wantMax := fmt.Sprintf("on delivery %d of max_deliver %d", tc.wantDeliv, cfg.MaxDeliver)
			if d.Stage != schemas.StageScore || d.Deliveries != tc.wantDeliv || d.RecordID != "poison" || d.Source != "p" ||
				len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0].Problem, tc.reason) ||
				!strings.Contains(d.Reasons[0].Problem, wantMax) && tc.wantDeliv > 1 {
				t.Errorf("poison dead letter: stage %s deliveries %d reasons %+v; want %q", d.Stage, d.Deliveries, d.Reasons, wantMax)
			}
			// Records behind the failing one were not held up by its retries.
			waveScored := 0
			for _, p := range ps {
				if tc.wantDeliv > 1 && !p.ScoredAt.Before(d.DeadLetteredAt) {
					t.Errorf("prediction %s scored at %v, after the poison record was dead-lettered at %v", p.RecordID, p.ScoredAt, d.DeadLetteredAt)
				}
				if strings.HasPrefix(p.RecordID, "w-") {
					waveScored++
				}
			}
			if tc.wave {
				if waveScored != waveN {
					t.Errorf("%d wave predictions, want %d", waveScored, waveN)
				}
				t.Logf("FIGURE %s max_deliver=%d poison_deliveries=%d wave_records=%d wave_scored_before_deadletter=%d",
					t.Name(), cfg.MaxDeliver, d.Deliveries, waveN, waveScored)
			}
			if got := testutil.ToFloat64(r.s.m.deadLettered[schemas.StageScore]); got != float64(tc.wantDL) {
				t.Errorf("records_dead_lettered_total{stage=score} = %v, want %d", got, tc.wantDL)
			}
			if wantRetries := float64(tc.wantDL) * float64(tc.wantDeliv-1); testutil.ToFloat64(r.s.m.retried) != wantRetries {
				t.Errorf("records_retried_total = %v, want %v", testutil.ToFloat64(r.s.m.retried), wantRetries)
			}
		})
	}
}

func TestGracefulShutdownLosesNothing(t *testing.T) {
	e := newEnv(t)
	const n = 3000
	cfg := testConfig()
	cfg.AckWait = 30 * time.Second // anything left unacked would stall this test: there must be none
	cfg.PublishTimeout = 2 * time.Second

	a := e.start(t, cfg, fakeModel{})
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range 30 {
			e.publishRecords(t, "g", fmt.Sprintf("b%d", i), n/30)
		}
	}()
	natstest.Eventually(t, 20*time.Second, func() error {
		if a.s.Stats().Scored < 200 {
			return errNotYet
		}
		return nil
	})
	if err := a.stop(t); err != nil { // records still flowing
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	aSt := a.s.Stats()
	if aSt.Received != aSt.Scored {
		t.Errorf("scorer A received %d but settled %d", aSt.Received, aSt.Scored)
	}
	<-published

	b := e.start(t, cfg, fakeModel{})
	natstest.Eventually(t, 30*time.Second, func() error {
		if got := a.s.Stats().Scored + b.s.Stats().Scored; got != n {
			return fmt.Errorf("scored %d of %d", got, n)
		}
		return nil
	})
	e.settled(t, 10*time.Second)
	ps := e.predictions(t)
	if len(ps) != n || len(uniqueIDs(t, ps)) != n {
		t.Fatalf("%d predictions, want %d unique", len(ps), n)
	}
	if d := b.s.Stats().Duplicates; d != 0 {
		t.Errorf("%d duplicates after a clean shutdown", d)
	}
	t.Logf("A scored %d before shutdown, B %d", aSt.Scored, b.s.Stats().Scored)
}

func TestReadyAndRecreatedConsumer(t *testing.T) {
	e := newEnv(t)
	s, err := New(testConfig(), e.js, e.subjects, fakeModel{}, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(s.Ready(), ErrNotReady) {
		t.Fatalf("Ready before Run = %v", s.Ready())
	}
	r := e.start(t, testConfig(), fakeModel{})
	e.publishRecords(t, "r", "one", 10)
	natstest.Eventually(t, 10*time.Second, func() error {
		if r.s.Stats().Scored != 10 {
			return errNotYet
		}
		return nil
	})
	// Someone deletes the consumer: the scorer recreates it and goes on.
	if err := e.js.DeleteConsumer(t.Context(), schemas.StreamRecords, r.s.cfg.Consumer); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		if _, err := e.js.Consumer(t.Context(), schemas.StreamRecords, r.s.cfg.Consumer); err != nil {
			return err
		}
		return r.s.Ready()
	})
	e.publishRecords(t, "r", "two", 10)
	// The new consumer delivers from the start: the first ten are
	// deduplicated, the second ten are new.
	natstest.Eventually(t, 20*time.Second, func() error {
		if n := e.streamCount(t, schemas.StreamPredictions); n != 20 {
			return fmt.Errorf("%d predictions", n)
		}
		return nil
	})
	e.settled(t, 10*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(r.s.Run(t.Context()), ErrAlreadyRunning) {
		t.Error("second Run did not return ErrAlreadyRunning")
	}
}

// TestCrashOnLastDeliveryStoresNoDeadLetterToo: a scorer killed after
// publishing predictions on a record's last allowed delivery (max_deliver 1)
// leaves them unacked. The next delivery is past max_deliver, but the
// outcome of the earlier one is unknown, so the record must be republished
// under its message id (a duplicate) and acked, not dead-lettered: a dead
// letter would give the record both.
func TestCrashOnLastDeliveryStoresNoDeadLetterToo(t *testing.T) {
	e := newEnv(t)
	const n = 200
	e.publishRecords(t, "c", "r", n)
	cfg := testConfig()
	cfg.MaxDeliver = 1

	atCrash := e.crashBeforeAck(t, cfg)

	b := e.start(t, cfg, fakeModel{})
	natstest.Eventually(t, 30*time.Second, func() error {
		if st := b.s.Stats(); st.Scored+st.DeadLettered != n {
			return fmt.Errorf("scorer B settled %d of %d", st.Scored+st.DeadLettered, n)
		}
		return nil
	})
	e.settled(t, 10*time.Second)
	ps := e.predictions(t)
	if dl := e.streamCount(t, schemas.StreamDeadLetter); dl != 0 {
		t.Errorf("%d dead letters, want 0: records whose prediction was stored before the crash were dead-lettered too", dl)
	}
	if len(ps) != n || len(uniqueIDs(t, ps)) != n {
		t.Errorf("%d predictions (%d unique), want %d", len(ps), len(uniqueIDs(t, ps)), n)
	}
	if st := b.s.Stats(); st.Duplicates != atCrash {
		t.Errorf("scorer B saw %d duplicate publish acks, want %d", st.Duplicates, atCrash)
	}
}

// crashBeforeAck runs a scorer that publishes its first batches and then
// "crashes" before acking any record: its acker is held and its connection
// closed. It returns how many predictions were stored by then.
func (e *env) crashBeforeAck(t *testing.T, cfg Config) uint64 {
	t.Helper()
	hold := make(chan struct{})
	var once sync.Once
	held := make(chan struct{})
	a := e.start(t, cfg, fakeModel{}, withBeforeSettle(func(int) {
		once.Do(func() { close(held) })
		<-hold
	}))
	<-held
	natstest.Eventually(t, 10*time.Second, func() error {
		if e.streamCount(t, schemas.StreamPredictions) == 0 {
			return errNotYet
		}
		return nil
	})
	a.s.pub.Conn().Close()
	close(hold)
	_ = a.stop(t)
	if sc := a.s.Stats().Scored; sc != 0 {
		t.Fatalf("crashed scorer acked %d records", sc)
	}
	return e.streamCount(t, schemas.StreamPredictions)
}
