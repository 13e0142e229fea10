package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// uciFiles are the four UCI files in the order golden.csv lists their rows.
var uciFiles = []string{
	"../../datasets/uci-heart-disease/processed.cleveland.data",
	"../../datasets/uci-heart-disease/processed.hungarian.data",
	"../../datasets/uci-heart-disease/processed.switzerland.data",
	"../../datasets/uci-heart-disease/processed.va.data",
}

// goldenByFeatures maps a feature vector to XGBoost's own probability
// (models/heart-xgb/golden.csv). Identical rows have identical probabilities.
func goldenByFeatures(t testing.TB) map[string]float64 {
	t.Helper()
	f, err := os.Open("../../models/heart-xgb/golden.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, row := range rows[1:] {
		var feat schemas.Features
		for i := range feat {
			if row[i] == "" || row[i] == "nan" || row[i] == "NaN" {
				feat[i] = math.NaN()
				continue
			}
			if feat[i], err = strconv.ParseFloat(row[i], 64); err != nil {
				t.Fatalf("golden: %v", err)
			}
		}
		p, err := strconv.ParseFloat(row[schemas.NumFeatures], 64)
		if err != nil {
			t.Fatal(err)
		}
		out[featureKey(feat)] = p
	}
	if len(rows)-1 != 920 {
		t.Fatalf("golden.csv has %d rows, want 920", len(rows)-1)
	}
	return out
}

func featureKey(f schemas.Features) string {
	var b strings.Builder
	for _, v := range f {
		if math.IsNaN(v) {
			b.WriteString("NaN,")
		} else {
			fmt.Fprintf(&b, "%g,", float32(v))
		}
	}
	return b.String()
}

type recordKey struct{ source, id string }

// streamContents reads RECORDS, PREDICTIONS, DEADLETTER and OUTCOMES.
type streamContents struct {
	records     map[recordKey]schemas.Record
	predictions map[recordKey][]schemas.Prediction
	deadLetters map[recordKey][]schemas.DeadLetter
	outcomes    map[recordKey]schemas.Outcome
	nPred, nDL  int
}

func readStreams(t testing.TB, js jetstream.JetStream) streamContents {
	t.Helper()
	subj := schemas.NewSubjects("")
	sc := streamContents{
		records:     map[recordKey]schemas.Record{},
		predictions: map[recordKey][]schemas.Prediction{},
		deadLetters: map[recordKey][]schemas.DeadLetter{},
		outcomes:    map[recordKey]schemas.Outcome{},
	}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamRecords) {
		src, _ := subj.SourceOf("records", m.Subject())
		rec, err := schemas.DecodeRecord(m.Data())
		if err != nil {
			t.Fatalf("record on %s does not decode: %v", m.Subject(), err)
		}
		k := recordKey{src, rec.ID}
		if _, dup := sc.records[k]; dup {
			t.Fatalf("record %v stored twice in RECORDS", k)
		}
		sc.records[k] = rec
	}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamPredictions) {
		var p schemas.Prediction
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			t.Fatalf("prediction: %v", err)
		}
		k := recordKey{p.Source, p.RecordID}
		sc.predictions[k] = append(sc.predictions[k], p)
		sc.nPred++
	}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamDeadLetter) {
		var d schemas.DeadLetter
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			t.Fatalf("dead letter: %v", err)
		}
		k := recordKey{d.Source, d.RecordID}
		sc.deadLetters[k] = append(sc.deadLetters[k], d)
		sc.nDL++
	}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamOutcomes) {
		src, _ := subj.SourceOf("outcomes", m.Subject())
		o, err := schemas.DecodeOutcome(m.Data())
		if err != nil {
			t.Fatalf("outcome: %v", err)
		}
		sc.outcomes[recordKey{src, o.RecordID}] = o
	}
	return sc
}

func connectTo(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestEndToEndUCI replays all 920 UCI rows with outcomes through a running
// standalone system and checks the promises: each record becomes exactly one
// prediction or dead letter, probabilities equal XGBoost's, the monitor's
// accuracy equals the accuracy of the joined pairs, and /metrics agrees.
func TestEndToEndUCI(t *testing.T) {
	t00 := time.Now()
	golden := goldenByFeatures(t)
	sys := start(t, testEnviron(), "standalone",
		"--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")

	t.Logf("started at %s", time.Since(t00))
	args := append([]string{"replay", "--nats-url", sys.info.NATSURL, "--outcomes", "--label-delay", "200ms"}, uciFiles...)
	code, stdout, stderr := runCmd(t, testEnviron(), args...)
	if code != 0 {
		t.Fatalf("replay exited %d:\n%s", code, stderr)
	}
	var rep struct {
		Records     int `json:"records"`
		Outcomes    int `json:"outcomes"`
		ParseErrors int `json:"parse_errors"`
	}
	if err := json.Unmarshal([]byte(lastLine(stdout)), &rep); err != nil {
		t.Fatalf("replay report %q: %v", lastLine(stdout), err)
	}
	if rep.Records != 920 || rep.Outcomes != 920 || rep.ParseErrors != 0 {
		t.Fatalf("replay report %+v, want 920 records and outcomes, no parse errors", rep)
	}

	t.Logf("replay done at %s", time.Since(t00))
	natstest.Eventually(t, 90*time.Second, func() error {
		fams := scrape(t, sys.info.MetricsAddr)
		joined, _ := metricValue(fams, "cardiostream_monitor_joined_total")
		unscorable, _ := metricValue(fams, "cardiostream_monitor_outcomes_unscorable_total")
		if joined+unscorable < 920 {
			return fmt.Errorf("monitor joined %v + unscorable %v of 920", joined, unscorable)
		}
		return nil
	})

	t.Logf("joined at %s", time.Since(t00))
	js := connectTo(t, sys.info.NATSURL)
	sc := readStreams(t, js)
	if len(sc.records) != 920 {
		t.Fatalf("RECORDS holds %d distinct records, want 920", len(sc.records))
	}
	// Exactly one prediction or one dead letter per record, and nothing else.
	for k := range sc.records {
		np, nd := len(sc.predictions[k]), len(sc.deadLetters[k])
		if np+nd != 1 {
			t.Errorf("record %v: %d predictions and %d dead letters, want exactly one in total", k, np, nd)
		}
	}
	if sc.nPred+sc.nDL != 920 {
		t.Errorf("%d predictions + %d dead letters, want 920", sc.nPred, sc.nDL)
	}
	// Probabilities equal XGBoost's own within 1e-6.
	maxDiff := 0.0
	for k, ps := range sc.predictions {
		rec, ok := sc.records[k]
		if !ok {
			t.Fatalf("prediction for unknown record %v", k)
		}
		want, ok := golden[featureKey(rec.Features)]
		if !ok {
			t.Fatalf("record %v has no golden row", k)
		}
		d := math.Abs(ps[0].Probability - want)
		maxDiff = math.Max(maxDiff, d)
		if d > 1e-6 {
			t.Errorf("record %v: probability %.9f, XGBoost %.9f", k, ps[0].Probability, want)
		}
		if ps[0].Model.Name != "heart-xgb" || ps[0].Model.SHA256 == "" || ps[0].LatencyMS < 0 {
			t.Errorf("record %v: prediction fields %+v", k, ps[0])
		}
	}
	t.Logf("max |probability - XGBoost| over %d predictions: %.3g", sc.nPred, maxDiff)

	// Accuracy from the joined pairs, computed here directly.
	var correct, joined int
	for k, o := range sc.outcomes {
		ps := sc.predictions[k]
		if len(ps) == 0 {
			continue
		}
		joined++
		if ps[0].Label == o.Label {
			correct++
		}
	}
	wantAcc := float64(correct) / float64(joined)
	fams := scrape(t, sys.info.MetricsAddr)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"cardiostream_monitor_accuracy", nil, wantAcc},
		{"cardiostream_monitor_joined_total", nil, float64(joined)},
		{"cardiostream_monitor_outcomes_total", nil, 920},
		{"cardiostream_monitor_predictions_total", nil, float64(sc.nPred)},
		{"cardiostream_monitor_dead_lettered_total", nil, float64(sc.nDL)},
		{"cardiostream_scorer_records_received_total", nil, 920},
		{"cardiostream_scorer_records_scored_total", nil, float64(sc.nPred)},
		{"cardiostream_scorer_records_dead_lettered_total", nil, float64(sc.nDL)},
		{"cardiostream_scorer_predictions_published_total", nil, float64(sc.nPred)},
	}
	for _, c := range checks {
		got := mustMetric(t, fams, c.name, c.labels...)
		if math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	t.Logf("accuracy over %d joined pairs: %.4f", joined, wantAcc)

	t0 := time.Now()
	defer func() { t.Logf("stop took %s", time.Since(t0)) }()
	if code := sys.stop(t); code != 0 {
		t.Fatalf("standalone exited %d after SIGTERM-like cancel; stderr:\n%s", code, sys.stderr.String())
	}
}

// TestStandaloneExitAfterReplay runs the README's main command (on one file,
// to keep it short) and checks the summary line.
func TestStandaloneExitAfterReplay(t *testing.T) {
	code, stdout, stderr := runCmd(t, testEnviron(), "standalone",
		"--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
		"--label-delay", "100ms", "--exit-after-replay", "--replay", uciFiles[0], uciFiles[3])
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(lastLine(stdout)), &sum); err != nil {
		t.Fatalf("last stdout line is not JSON: %q: %v", lastLine(stdout), err)
	}
	for _, k := range []string{"records", "scored", "dead_lettered", "outcomes", "joined", "accuracy", "p95_latency_ms", "alerts_fired"} {
		if _, ok := sum[k]; !ok {
			t.Errorf("summary lacks %q: %v", k, sum)
		}
	}
	num := func(k string) float64 { v, _ := sum[k].(float64); return v }
	if num("records") != 503 || num("scored")+num("dead_lettered") != 503 || num("outcomes") != 503 ||
		num("joined")+num("outcomes_unscorable") != 503 {
		t.Errorf("summary counts do not add up for 503 rows: %v", sum)
	}
	acc := num("accuracy")
	tp, tn := num("tp"), num("tn")
	if got := (tp + tn) / num("joined"); math.Abs(got-acc) > 1e-12 || acc < 0.5 || acc > 1 {
		t.Errorf("accuracy %v inconsistent with confusion matrix (%v)", acc, got)
	}
	if !strings.Contains(stderr, "replay") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}
}

func TestMain(m *testing.M) {
	// Re-executed as the real binary by the signal test.
	if os.Getenv("CARDIOSTREAM_TEST_RUN_MAIN") == "1" {
		os.Exit(run())
	}
	// Tests run from cmd/cardiostream; the data files are relative to it.
	if _, err := os.Stat(filepath.FromSlash(uciFiles[0])); err != nil {
		fmt.Fprintln(os.Stderr, "UCI data not found:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
