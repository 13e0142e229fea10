package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// testJetStream starts an embedded server with the cardiostream streams.
func testJetStream(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	ns := natstest.RunServer(tb)
	_, js := natstest.Connect(tb, ns)
	natstest.EnsureStreams(tb, js, nil)
	return js
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// wireRecord decodes a published record without depending on the schemas
// decoder (records may be out of range on purpose).
type wireRecord struct {
	SchemaVersion int                 `json:"schema_version"`
	ID            string              `json:"id"`
	PatientRef    string              `json:"patient_ref"`
	ObservedAt    time.Time           `json:"observed_at"`
	Features      map[string]*float64 `json:"features"`
}

func fastConfig() Config {
	cfg := DefaultConfig()
	cfg.Outcomes = true
	cfg.LabelDelay = 0
	cfg.ProgressInterval = 100 * time.Millisecond
	return cfg
}

type stored struct {
	subject string
	msgID   string
	at      time.Time
	data    []byte
}

func readStream(tb testing.TB, js jetstream.JetStream, stream string) []stored {
	tb.Helper()
	var out []stored
	for _, m := range natstest.StreamMessages(tb, js, stream) {
		md, err := m.Metadata()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, stored{subject: m.Subject(), msgID: m.Headers().Get(jetstream.MsgIDHeader), at: md.Timestamp, data: m.Data()})
	}
	return out
}

func TestReplayUCIFiles(t *testing.T) {
	waitForDatasets(t)
	js := testJetStream(t)
	cfg := fastConfig()
	cfg.LabelDelay = 300 * time.Millisecond
	var progress bytes.Buffer
	rep, err := Replay(t.Context(), cfg, js, schemas.NewSubjects(""), uciPaths(), &progress, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 4 || rep.Rows != 920 || rep.Records != 920 || rep.Outcomes != 920 || rep.ParseErrors != 0 ||
		rep.DuplicateRecords != 0 || rep.FailedRecords != 0 || rep.OutcomesSkipped != 0 || rep.Unconfirmed != 0 {
		t.Fatalf("report: %+v", rep)
	}
	if !strings.Contains(progress.String(), "records 920/920 (100%)") || !strings.Contains(progress.String(), "outcomes 920/920") {
		t.Errorf("progress output lacks the final line:\n%s", progress.String())
	}

	// Expected: every row's id, subject and label, from ReadFile.
	wantLabel := map[string]int{}
	wantSubject := map[string]string{}
	wantFeatures := map[string]schemas.Features{}
	for _, path := range uciPaths() {
		rows, _, err := ReadFile(path, FormatAuto, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		src := SourceFromPath(path)
		for _, r := range rows {
			wantLabel[r.ID] = *r.Label
			wantSubject[r.ID] = "cardio.records." + src
			wantFeatures[r.ID] = r.Features
		}
	}
	if len(wantLabel) != 920 {
		t.Fatalf("%d distinct ids from the files", len(wantLabel))
	}

	records := readStream(t, js, schemas.StreamRecords)
	if len(records) != 920 {
		t.Fatalf("RECORDS holds %d messages, want 920", len(records))
	}
	recordAt := map[string]time.Time{}
	for _, m := range records {
		var rec wireRecord
		if err := json.Unmarshal(m.data, &rec); err != nil {
			t.Fatal(err)
		}
		src := strings.TrimPrefix(m.subject, "cardio.records.")
		if wantSubject[rec.ID] != m.subject || m.msgID != src+"/"+rec.ID || rec.SchemaVersion != 1 || rec.ObservedAt.IsZero() {
			t.Fatalf("record %s on %s with msg id %s: %s", rec.ID, m.subject, m.msgID, m.data)
		}
		for i, name := range schemas.FeatureNames {
			want, got := wantFeatures[rec.ID][i], rec.Features[name]
			if (got == nil) != math.IsNaN(want) || (got != nil && *got != want) {
				t.Fatalf("record %s: %s = %v, want %v", rec.ID, name, got, want)
			}
		}
		recordAt[rec.ID] = m.at
	}
	if _, ok := recordAt["processed-cleveland-000001"]; !ok {
		t.Error("no record processed-cleveland-000001")
	}
	if _, ok := recordAt["processed-va-000200"]; !ok {
		t.Error("no record processed-va-000200")
	}

	outcomes := readStream(t, js, schemas.StreamOutcomes)
	if len(outcomes) != 920 {
		t.Fatalf("OUTCOMES holds %d messages, want 920", len(outcomes))
	}
	ones := 0
	for _, m := range outcomes {
		var o schemas.Outcome
		if err := json.Unmarshal(m.data, &o); err != nil {
			t.Fatal(err)
		}
		want, ok := wantLabel[o.RecordID]
		if !ok || o.Label != want {
			t.Fatalf("outcome %s label %d, want %d (known %v)", o.RecordID, o.Label, want, ok)
		}
		if "cardio.outcomes."+strings.TrimPrefix(wantSubject[o.RecordID], "cardio.records.") != m.subject {
			t.Fatalf("outcome %s on %s", o.RecordID, m.subject)
		}
		if gap := m.at.Sub(recordAt[o.RecordID]); gap < cfg.LabelDelay {
			t.Fatalf("outcome %s stored %s after its record, want at least the label delay %s", o.RecordID, gap, cfg.LabelDelay)
		}
		ones += o.Label
	}
	if ones != 509 || len(outcomes)-ones != 411 {
		t.Errorf("labels: %d ones, %d zeros; want 509 and 411", ones, len(outcomes)-ones)
	}

	// Re-running the same replay stores nothing new: every message id is
	// within the duplicate window.
	rep2, err := Replay(t.Context(), cfg, js, schemas.NewSubjects(""), uciPaths(), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Records != 920 || rep2.DuplicateRecords != 920 || rep2.DuplicateOutcomes != 920 {
		t.Errorf("re-run report: %+v", rep2)
	}
	if n := len(readStream(t, js, schemas.StreamRecords)); n != 920 {
		t.Errorf("RECORDS holds %d after the re-run, want 920", n)
	}
	if n := len(readStream(t, js, schemas.StreamOutcomes)); n != 920 {
		t.Errorf("OUTCOMES holds %d after the re-run, want 920", n)
	}
}

func TestReplayRepeat(t *testing.T) {
	js := testJetStream(t)
	cfg := fastConfig()
	cfg.Repeat = 3
	files := []string{filepath.Join("testdata", "mixed.data"), filepath.Join("testdata", "header.csv")}
	rep, err := Replay(t.Context(), cfg, js, schemas.NewSubjects(""), files, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// mixed.data: 5 rows (4 labelled), 6 parse errors; header.csv: 6 rows
	// (5 labelled), 3 parse errors.
	if rep.Rows != 11 || rep.ParseErrors != 9 || rep.Records != 33 || rep.Outcomes != 27 || rep.OutcomesSkipped != 6 {
		t.Fatalf("report: %+v", rep)
	}
	ids := map[string]bool{}
	for _, m := range readStream(t, js, schemas.StreamRecords) {
		var rec wireRecord
		if err := json.Unmarshal(m.data, &rec); err != nil {
			t.Fatal(err)
		}
		if ids[rec.ID] {
			t.Errorf("id %s stored twice", rec.ID)
		}
		ids[rec.ID] = true
	}
	for _, id := range []string{"mixed-000001", "mixed-r1-000001", "mixed-r2-000008", "p1", "p1-r1", "p9-r2", "header-000011", "header-r2-000011"} {
		if !ids[id] {
			t.Errorf("missing id %s (have %d)", id, len(ids))
		}
	}
	if len(ids) != 33 {
		t.Errorf("%d distinct ids, want 33", len(ids))
	}
}

func TestReplaySharedSourceAndDuplicateIDs(t *testing.T) {
	js := testJetStream(t)
	cfg := fastConfig()
	cfg.Source = "clinic-1"
	cfg.Outcomes = false
	dir := t.TempDir()
	a := writeFile(t, dir, "a.jsonl", `{"id":"x1","features":{"age":50}}`+"\n"+`{"features":{"age":51}}`+"\n")
	b := writeFile(t, dir, "b.jsonl", `{"id":"x1","features":{"age":52}}`+"\n"+`{"features":{"age":53}}`+"\n")
	rep, err := Replay(t.Context(), cfg, js, schemas.NewSubjects(""), []string{a, b}, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 3 || rep.ParseErrors != 1 || rep.Rows != 3 {
		t.Fatalf("report: %+v", rep)
	}
	var got []string
	for _, m := range readStream(t, js, schemas.StreamRecords) {
		got = append(got, m.subject+" "+m.msgID)
	}
	want := "cardio.records.clinic-1 clinic-1/x1,cardio.records.clinic-1 clinic-1/clinic-1-a-000002,cardio.records.clinic-1 clinic-1/clinic-1-b-000002"
	if strings.Join(got, ",") != want {
		t.Errorf("stored %v\nwant %s", got, want)
	}
}

func TestReplayNoLabelColumn(t *testing.T) {
	js := testJetStream(t)
	rep, err := Replay(t.Context(), fastConfig(), js, schemas.NewSubjects(""), []string{filepath.Join("testdata", "nolabel.csv")}, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 2 || rep.Outcomes != 0 || rep.OutcomesSkipped != 2 {
		t.Fatalf("report: %+v", rep)
	}
}

// TestReplayRate checks only the bound that cannot be noisy: a rate-limited
// replay cannot finish faster than the limiter allows.
func TestReplayRate(t *testing.T) {
	js := testJetStream(t)
	cfg := fastConfig()
	cfg.Rate = 100 // burst 1
	cfg.Outcomes = false
	dir := t.TempDir()
	var b strings.Builder
	for i := 0; i < 31; i++ {
		b.WriteString("63,1,1,145,233,1,2,150,0,2.3,3,0,6,0\n")
	}
	path := writeFile(t, dir, "rate.data", b.String())
	start := time.Now()
	rep, err := Replay(t.Context(), cfg, js, schemas.NewSubjects(""), []string{path}, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 31 {
		t.Fatalf("report: %+v", rep)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("31 records at 100/s took %s; the limiter allows no less than 300ms", el)
	}
	msgs := readStream(t, js, schemas.StreamRecords)
	if span := msgs[len(msgs)-1].at.Sub(msgs[0].at); span < 250*time.Millisecond {
		t.Errorf("records stored within %s; at 100/s they span at least 300ms", span)
	}
}

func TestReplayCancelDuringLabelDelay(t *testing.T) {
	js := testJetStream(t)
	cfg := fastConfig()
	cfg.LabelDelay = time.Hour
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		rep Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := Replay(ctx, cfg, js, schemas.NewSubjects(""), []string{filepath.Join("testdata", "mixed.data")}, nil, testLogger(t))
		done <- result{rep, err}
	}()
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := len(readStream(t, js, schemas.StreamRecords)); n != 5 {
			return fmt.Errorf("%d records stored", n)
		}
		return nil
	})
	cancel()
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Replay did not return after cancel")
	}
	if !errors.Is(res.err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", res.err)
	}
	// 4 of the 5 records are labelled; their outcomes were waiting.
	if res.rep.Records+res.rep.Unconfirmed != 5 || res.rep.Outcomes != 0 || res.rep.OutcomesNotSent+res.rep.Unconfirmed < 4 {
		t.Errorf("report: %+v", res.rep)
	}
}

func TestReplayPublishFailure(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns) // no streams: nothing can be stored
	cfg := fastConfig()
	cfg.PublishRetries = 2
	cfg.RetryBackoff = time.Millisecond
	cfg.PublishTimeout = 500 * time.Millisecond
	rep, err := Replay(t.Context(), cfg, js, schemas.NewSubjects(""), []string{filepath.Join("testdata", "crlf.data")}, nil, testLogger(t))
	if !errors.Is(err, ErrPublishFailed) {
		t.Fatalf("err = %v, want ErrPublishFailed", err)
	}
	if rep.Records != 0 || rep.FailedRecords+rep.Unconfirmed != 2 || rep.FailedRecords < 1 {
		t.Errorf("report: %+v", rep)
	}
}

func TestReplayRefusesBadInput(t *testing.T) {
	js := testJetStream(t)
	dir := t.TempDir()
	tests := []struct {
		name    string
		cfg     func(*Config)
		files   []string
		wantErr error
	}{
		{name: "no files", wantErr: ErrNoFiles},
		{name: "unknown extension", files: []string{writeFile(t, dir, "x.txt", "1\n")}, wantErr: ErrUnknownFormat},
		{name: "headerless csv", files: []string{writeFile(t, dir, "x.csv", "63,1,1,145,233,1,2,150,0,2.3,3,0,6,0\n")}, wantErr: ErrNoFeatureColumns},
		{name: "missing file", files: []string{filepath.Join(dir, "nope.data")}, wantErr: fsNotExist},
		{name: "invalid config", cfg: func(c *Config) { c.Repeat = 0 }, files: []string{"testdata/crlf.data"}, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fastConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			rep, err := Replay(t.Context(), cfg, js, schemas.NewSubjects(""), tt.files, nil, testLogger(t))
			if err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if rep.Records != 0 {
				t.Errorf("published %d records before failing", rep.Records)
			}
		})
	}
	if msgs := readStream(t, js, schemas.StreamRecords); len(msgs) != 0 {
		t.Errorf("%d records stored", len(msgs))
	}
}
