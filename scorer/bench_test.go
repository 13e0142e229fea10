package scorer

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// offlineScorer is a Scorer with no NATS behind it, for the per-record path.
func offlineScorer(tb testing.TB, m Model) *Scorer {
	tb.Helper()
	mt, err := newMetrics(nil)
	if err != nil {
		tb.Fatal(err)
	}
	set, err := newModelSet(m, nil)
	if err != nil {
		tb.Fatal(err)
	}
	s := &Scorer{cfg: DefaultConfig(), subjects: schemas.NewSubjects(""), m: mt, now: time.Now}
	s.models.Store(set)
	return s
}

// BenchmarkRecordHotPath is the per-record work between delivery and
// publish: decode and validate, features, predict (fake model), encode.
func BenchmarkRecordHotPath(b *testing.B) {
	s := offlineScorer(b, fakeModel{})
	payload := recordJSON("r-123456", 7)
	stored := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		it := item{subject: "cardio.records.cleveland", data: payload, seq: 42, deliveries: 1, storedAt: stored, verdict: verdictPredict}
		s.decode(&it)
		if it.verdict != verdictPredict {
			b.Fatal("record rejected")
		}
		p, err := predictOne(s.models.Load().active, &it.rec.Features)
		if err != nil || !validProbability(p) {
			b.Fatal(p, err)
		}
		it.prob, it.scored = p, s.now()
		if _, err := s.outMsg(s.models.Load(), &it); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatchHotPath is the per-record work of process for a batch of
// BatchSize records, through the BatchModel: decode and validate, features,
// predict, build the output messages. allocs/op is per record; the fake
// model allocates nothing, so every allocation is the scorer's.
func BenchmarkBatchHotPath(b *testing.B) {
	s := offlineScorer(b, batchFake{}) // a BatchModel: scored through PredictBatch
	n := s.cfg.BatchSize
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = recordJSON(fmt.Sprintf("r-%06d", i), i)
	}
	stored := time.Now()
	bt := &batch{items: make([]item, n), set: s.models.Load()}
	b.ReportAllocs()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for b.Loop() {
		for i := range bt.items {
			bt.items[i] = item{subject: "cardio.records.cleveland", data: payloads[i], seq: uint64(i), deliveries: 1, storedAt: stored, verdict: verdictPredict}
			s.decode(&bt.items[i])
		}
		s.score(bt)
		outs := s.newOutputs(n)
		for i := range bt.items {
			if _, err := s.outMsgIn(bt.set, &bt.items[i], outs); err != nil || bt.items[i].verdict != verdictPredict {
				b.Fatal(err, bt.items[i].verdict)
			}
		}
	}
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N*n), "allocs/record")
}

// BenchmarkDeadLetterPath is the same for an invalid record.
func BenchmarkDeadLetterPath(b *testing.B) {
	s := offlineScorer(b, fakeModel{})
	payload := []byte(`{"id":"r-1","features":{"age":50,"sex":7,"cp":9}}`)
	b.ReportAllocs()
	for b.Loop() {
		it := item{subject: "cardio.records.cleveland", data: payload, seq: 42, deliveries: 1, storedAt: time.Now(), verdict: verdictPredict}
		s.decode(&it)
		if it.verdict != verdictDeadLetter {
			b.Fatal("record accepted")
		}
		if _, err := s.outMsg(s.models.Load(), &it); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEndToEnd measures records/s through one scorer process on an
// embedded server over loopback (publish of the records not timed), for
// workers 1 and 2. Numbers are reported, never asserted.
func BenchmarkEndToEnd(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			const n = 20000
			cfg := DefaultConfig()
			cfg.Workers = workers
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				e := newEnv(b) // a fresh server: every record is new
				e.publishRecords(b, "bench", "r", n)
				b.StartTimer()
				start := time.Now()
				r := e.start(b, cfg, batchFake{})
				natstest.Eventually(b, 60*time.Second, func() error {
					if r.s.Stats().Scored < n {
						return errNotYet
					}
					return nil
				})
				total += time.Since(start)
				b.StopTimer()
				_ = r.stop(b)
				b.StartTimer()
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "records/s")
		})
	}
}

func FuzzDecodeAndEncode(f *testing.F) {
	for _, seed := range [][]byte{
		recordJSON("r-1", 1), []byte(`{"id":"x"}`), []byte("not json"), []byte(`{"id":"a\nb","features":{"cp":9}}`), {},
	} {
		f.Add("cardio.records.src", seed)
	}
	f.Add("cardio.records.a.b", []byte(`{}`))
	f.Add("other.subject", recordJSON("r-2", 2))
	s := offlineScorer(f, fakeModel{})
	f.Fuzz(func(t *testing.T, subject string, payload []byte) {
		it := item{subject: subject, data: payload, seq: 1, deliveries: 1, storedAt: time.Now(), verdict: verdictPredict}
		s.decode(&it)
		switch it.verdict {
		case verdictPredict:
			if !schemas.ValidToken(it.source) || it.rec.ID == "" {
				t.Fatalf("accepted source %q id %q", it.source, it.rec.ID)
			}
			p, err := predictOne(s.models.Load().active, &it.rec.Features)
			if err != nil {
				t.Fatal(err)
			}
			it.prob, it.scored = p, time.Now()
		case verdictDeadLetter:
			if len(it.reasons) == 0 || it.stage == "" {
				t.Fatalf("dead letter without stage or reasons: %+v", it)
			}
		default:
			t.Fatalf("verdict %d after decode", it.verdict)
		}
		msg, err := s.outMsg(s.models.Load(), &it)
		if err != nil {
			if it.verdict == verdictPredict {
				return // e.g. NaN from the fake model on odd features: a scoring failure
			}
			t.Fatalf("encoding dead letter: %v", err)
		}
		if it.verdict == verdictDeadLetter {
			var d schemas.DeadLetter
			if err := json.Unmarshal(msg.Data, &d); err != nil {
				t.Fatalf("dead letter does not round-trip: %v", err)
			}
			if d.PayloadSize != len(payload) || d.StreamSequence != 1 {
				t.Fatalf("dead letter %+v", d)
			}
		}
	})
}
