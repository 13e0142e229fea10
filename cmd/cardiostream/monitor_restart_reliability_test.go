//go:build reliability

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// startMonitorProc starts `cardiostream monitor` against url as an OS
// process and waits until /readyz says it is ready (inputs folded up to
// their start-up end). It returns the process and how long it took to
// become ready.
func startMonitorProc(t *testing.T, url string, env []string, args ...string) (*osProc, time.Duration) {
	t.Helper()
	return procStartReady(t, "monitor", procEnv(env...), append([]string{"monitor", "--nats-url", url}, args...)...)
}

// streamTruth joins PREDICTIONS with OUTCOMES by (source, record_id), read
// straight from the streams: what an uninterrupted monitor must report.
type streamTruth struct {
	predictions, outcomes, deadLetters int
	joined, unscorable                 int
	confusion                          [2][2]int // [actual][predicted]
	accuracy                           float64
	duplicatePredictions               int
	// joins are the joined records in data order: the later of the two
	// messages' stream timestamps, the order the monitor's window keeps.
	joins []truthJoin
	// lastSeq is each stream's last sequence.
	lastSeq map[string]uint64
}

type truthJoin struct {
	ord   int64
	right bool
}

type truthSide struct {
	label int
	ord   int64
}

func readStreamTruth(t *testing.T, js jetstream.JetStream) streamTruth {
	t.Helper()
	var tr streamTruth
	tr.lastSeq = map[string]uint64{}
	ord := func(m jetstream.Msg, stream string) int64 {
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		tr.lastSeq[stream] = max(tr.lastSeq[stream], meta.Sequence.Stream)
		return meta.Timestamp.UnixNano()
	}
	preds := map[string]truthSide{}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamPredictions) {
		var p schemas.Prediction
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			t.Fatal(err)
		}
		o := ord(m, schemas.StreamPredictions)
		k := p.Source + "/" + p.RecordID
		if _, dup := preds[k]; dup {
			tr.duplicatePredictions++
			continue // the monitor keeps the first
		}
		preds[k] = truthSide{p.Label, o}
	}
	dead := map[string]bool{}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamDeadLetter) {
		ord(m, schemas.StreamDeadLetter)
		var d schemas.DeadLetter
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			t.Fatal(err)
		}
		dead[d.Source+"/"+d.RecordID] = true
	}
	subj := schemas.NewSubjects("")
	outs := map[string]truthSide{}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamOutcomes) {
		var o schemas.Outcome
		if err := json.Unmarshal(m.Data(), &o); err != nil {
			t.Fatal(err)
		}
		od := ord(m, schemas.StreamOutcomes)
		src, _ := subj.SourceOf("outcomes", m.Subject())
		if _, dup := outs[src+"/"+o.RecordID]; !dup {
			outs[src+"/"+o.RecordID] = truthSide{o.Label, od}
		}
	}
	tr.predictions, tr.outcomes, tr.deadLetters = len(preds), len(outs), len(dead)
	for k, actual := range outs {
		if pred, ok := preds[k]; ok {
			tr.joined++
			tr.confusion[actual.label][pred.label]++
			tr.joins = append(tr.joins, truthJoin{ord: max(pred.ord, actual.ord), right: pred.label == actual.label})
		} else if dead[k] {
			tr.unscorable++
		}
	}
	slices.SortFunc(tr.joins, func(a, b truthJoin) int { return cmp.Compare(a.ord, b.ord) })
	tr.accuracy = float64(tr.confusion[0][0]+tr.confusion[1][1]) / float64(tr.joined)
	return tr
}

// TestMonitorSIGKILLRestartEqualsUninterrupted: a `cardiostream monitor` OS
// process consumes while a scorer scores a paced replay and its outcomes
// arrive; it is killed with SIGKILL twice at different points and restarted.
// At the end its /metrics (joined, confusion matrix, accuracy, counts,
// pending joins) equal the join computed directly from the streams.
func TestMonitorSIGKILLRestartEqualsUninterrupted(t *testing.T) {
	const repeat = 3
	const records = repeat * 920
	ns := natstest.RunServer(t)
	url := ns.ClientURL()
	monEnv := []string{
		// Checkpoints between the kills, so restarts load one and read
		// the inputs after it.
		"CARDIOSTREAM_MONITOR__CHECKPOINT_INTERVAL=500ms",
		// Messages in flight at the kill come back after ack_wait.
		"CARDIOSTREAM_MONITOR__CONSUMER__ACK_WAIT=3s",
		"CARDIOSTREAM_MONITOR__OP_TIMEOUT=2s",
	}
	start(t, testEnviron(), "scorer", "--nats-url", url, "--metrics-addr", "127.0.0.1:0")
	mon, ready := startMonitorProc(t, url, monEnv)
	t.Logf("monitor 1 pid %d ready in %s", mon.cmd.Process.Pid, ready.Round(time.Millisecond))

	// The replay runs in the background: predictions and outcomes keep
	// arriving through both kills.
	replayDone := make(chan int, 1)
	go func() {
		args := append([]string{"replay", "--nats-url", url, "--repeat", fmt.Sprint(repeat), "--rate", "300", "--outcomes", "--label-delay", "500ms"}, uciFiles...)
		code, _, stderr := runCmd(t, testEnviron(), args...)
		if code != 0 {
			t.Errorf("replay exited %d: %s", code, stderr)
		}
		replayDone <- code
	}()

	_, js := natstest.Connect(t, ns)
	joined := func(p *osProc) float64 {
		v, _ := metricValue(scrape(t, p.metricsAddr), "cardiostream_monitor_joined_total")
		return v
	}
	streamCount := func(name string) uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	// Kill points: by the replay's progress (outcomes stored), once the
	// running monitor has joined more than its predecessor had.
	var lastJoined float64
	for i, frac := range []float64{0.2, 0.55} {
		natstest.Eventually(t, 120*time.Second, func() error {
			if o := streamCount(schemas.StreamOutcomes); float64(o) < frac*records {
				return fmt.Errorf("%d outcomes stored, waiting for %.0f%%", o, 100*frac)
			}
			if j := joined(mon); j <= lastJoined {
				return fmt.Errorf("monitor %d joined %v, waiting for more than %v", i+1, j, lastJoined)
			}
			return nil
		})
		j := joined(mon)
		lastJoined = j
		mon.kill(t)
		p, o := streamCount(schemas.StreamPredictions), streamCount(schemas.StreamOutcomes)
		if o >= records {
			t.Fatalf("kill %d came after the last outcome (%d): not mid-stream", i+1, o)
		}
		t.Logf("FIGURE TestMonitorSIGKILLRestartEqualsUninterrupted kill=%d signal=SIGKILL joined_at_kill=%v predictions_stored=%d outcomes_stored=%d", i+1, j, p, o)
		mon, ready = startMonitorProc(t, url, monEnv)
		t.Logf("FIGURE TestMonitorSIGKILLRestartEqualsUninterrupted restart=%d ready_seconds=%.2f", i+1, ready.Seconds())
	}

	select {
	case <-replayDone:
	case <-time.After(3 * time.Minute):
		t.Fatal("replay did not finish within 3 minutes")
	}
	// Every record is scored or dead-lettered, then the monitor settles.
	natstest.Eventually(t, 120*time.Second, func() error {
		if n := streamCount(schemas.StreamPredictions) + streamCount(schemas.StreamDeadLetter); n < records {
			return fmt.Errorf("%d of %d records scored or dead-lettered", n, records)
		}
		return nil
	})
	want := readStreamTruth(t, js)
	stable := 0
	natstest.Eventually(t, 120*time.Second, func() error {
		fams := scrape(t, mon.metricsAddr)
		for in, stream := range map[string]string{"predictions": schemas.StreamPredictions, "outcomes": schemas.StreamOutcomes, "deadletter": schemas.StreamDeadLetter} {
			if want.lastSeq[stream] == 0 {
				continue
			}
			if got, _ := metricValue(fams, "cardiostream_monitor_input_sequence", "input", in); uint64(got) != want.lastSeq[stream] {
				stable = 0
				return fmt.Errorf("monitor folded %s up to sequence %v of %d", in, got, want.lastSeq[stream])
			}
		}
		if j := joined(mon); int(j) < want.joined {
			stable = 0
			return fmt.Errorf("monitor joined %v of %d", j, want.joined)
		}
		if stable++; stable < 5 {
			return fmt.Errorf("settled on %d polls in a row", stable)
		}
		return nil
	})

	fams := scrape(t, mon.metricsAddr)
	got := func(name string, labels ...string) float64 { return mustMetric(t, fams, name, labels...) }
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"joined_total", got("cardiostream_monitor_joined_total"), float64(want.joined)},
		{"accuracy", got("cardiostream_monitor_accuracy"), want.accuracy},
		{"predictions_total", got("cardiostream_monitor_predictions_total"), float64(want.predictions)},
		{"outcomes_total", got("cardiostream_monitor_outcomes_total"), float64(want.outcomes)},
		{"dead_lettered_total", got("cardiostream_monitor_dead_lettered_total"), float64(want.deadLetters)},
		{"outcomes_unscorable_total", got("cardiostream_monitor_outcomes_unscorable_total"), float64(want.unscorable)},
		{"confusion tn", got("cardiostream_monitor_confusion_matrix", "actual", "0", "predicted", "0"), float64(want.confusion[0][0])},
		{"confusion fp", got("cardiostream_monitor_confusion_matrix", "actual", "0", "predicted", "1"), float64(want.confusion[0][1])},
		{"confusion fn", got("cardiostream_monitor_confusion_matrix", "actual", "1", "predicted", "0"), float64(want.confusion[1][0])},
		{"confusion tp", got("cardiostream_monitor_confusion_matrix", "actual", "1", "predicted", "1"), float64(want.confusion[1][1])},
		{"pending_joins", got("cardiostream_monitor_pending_joins"), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: monitor after 2 SIGKILLs says %v, the streams say %v", c.name, c.got, c.want)
		}
	}
	// The window: the last window_size joins in data order, all within the
	// hour, exactly as an uninterrupted fold of the same streams keeps them.
	const windowSize = 500 // monitor.window_size default
	window := want.joins[max(len(want.joins)-windowSize, 0):]
	right := 0
	for _, j := range window {
		if j.right {
			right++
		}
	}
	wantWindowAcc := float64(right) / float64(len(window))
	if g := got("cardiostream_monitor_window_accuracy"); g != wantWindowAcc {
		t.Errorf("window accuracy after the restarts %v, the streams' last %d joins give %v", g, len(window), wantWindowAcc)
	}
	if g := got("cardiostream_monitor_window_samples"); g != float64(len(window)) {
		t.Errorf("window samples %v, want %d", g, len(window))
	}
	if want.duplicatePredictions != 0 {
		t.Errorf("PREDICTIONS holds %d duplicate predictions", want.duplicatePredictions)
	}
	t.Logf("FIGURE TestMonitorSIGKILLRestartEqualsUninterrupted records=%d kills=2 predictions=%d outcomes=%d dead_lettered=%d joined_streams=%d joined_monitor=%v accuracy_streams=%.10f accuracy_monitor=%.10f window_accuracy_streams=%.4f window_accuracy_monitor=%.4f late_duplicates=%v input_errors=%v",
		records, want.predictions, want.outcomes, want.deadLetters, want.joined, got("cardiostream_monitor_joined_total"),
		want.accuracy, got("cardiostream_monitor_accuracy"), wantWindowAcc, got("cardiostream_monitor_window_accuracy"), got("cardiostream_monitor_late_duplicates_total"), got("cardiostream_monitor_errors_total", "op", "input"))
}
