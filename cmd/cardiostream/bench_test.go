package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cardiostream/cardiostream/internal/bench"
)

// TestBenchCommand runs a tiny `cardiostream bench --json` (its scorer,
// relay and monitor are child processes: this test binary re-executed as
// the program) and checks the report's keys and its sanity: every run
// stored exactly one output per record, every latency record came back,
// every monitor pair joined. No figure is asserted; they are logged.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and several child processes")
	}
	if raceBuild {
		// The children are this race-built binary: offered rates of 5,000/s
		// are beyond them and the full run takes minutes. The pipeline runs
		// still exercise bench's and the scorer's code under the detector.
		testBenchPipelineOnly(t)
		return
	}
	code, stdout, stderr := runCmd(t, testEnviron("CARDIOSTREAM_TEST_RUN_MAIN=1"),
		"bench", "--json", "--records", "1000", "--reps", "1", "--latency-duration", "500ms",
		"--monitor-pairs", "300", "--monitor-duration", "60s")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "bench [") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(lastLine(stdout)), &raw); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	for _, k := range []string{"baseline_per_s", "pipeline_per_s", "ratio", "baseline_p99_ms_at_5k",
		"pipeline_p99_ms_at_5k", "monitor_joins_per_s", "peak_rss_mb"} {
		v, ok := raw[k].(float64)
		if !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, raw[k])
		}
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(lastLine(stdout)), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.ExactlyOnceChecked || rep.ScoredPerRun != rep.Records {
		t.Errorf("exactly once checked %v, %d predictions per run for %d records", rep.ExactlyOnceChecked, rep.ScoredPerRun, rep.Records)
	}
	if len(rep.BaselineRuns) != 1 || len(rep.PipelineRuns) != 1 || len(rep.PipelineW2Runs) != 1 {
		t.Errorf("runs %v %v %v, want one of each", rep.BaselineRuns, rep.PipelineRuns, rep.PipelineW2Runs)
	}
	for _, l := range append(rep.BaselineLatency, rep.PipelineLatency...) {
		if l.Sent == 0 || l.Received != l.Sent {
			t.Errorf("latency run at %.0f/s: %d outputs for %d records", l.OfferedPerS, l.Received, l.Sent)
		}
	}
	if len(rep.BaselineLatency) != 3 || len(rep.PipelineLatency) != 3 {
		t.Errorf("latency runs %d and %d, want 3 each", len(rep.BaselineLatency), len(rep.PipelineLatency))
	}
	if rep.MonitorJoins != rep.MonitorPairs || rep.MonitorPairs != 300 || len(rep.MonitorRuns) != 1 {
		t.Errorf("monitor joined %d of %d pairs in %d runs, want all 300 in one run", rep.MonitorJoins, rep.MonitorPairs, len(rep.MonitorRuns))
	}
	if rep.Model.PredictNS <= 0 || rep.Model.DecodeNS <= 0 || rep.Model.EncodeNS <= 0 {
		t.Errorf("model costs %+v", rep.Model)
	}
	t.Logf("FIGURE TestBenchCommand baseline_per_s=%.0f pipeline_per_s=%.0f ratio=%.3f baseline_p99_ms_at_5k=%.2f pipeline_p99_ms_at_5k=%.2f monitor_joins_per_s=%.0f peak_rss_mb=%.0f duration_s=%.1f",
		rep.BaselinePerS, rep.PipelinePerS, rep.Ratio, rep.BaselineP99At5k, rep.PipelineP99At5k, rep.MonitorJoinsPerS, rep.PeakRSSMB, rep.DurationSeconds)
}

func TestBenchRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"too few records", []string{"--records", "5"}},
		{"no repetitions", []string{"--reps", "0"}},
		{"unknown sync mode", []string{"--sync", "sometimes"}},
		{"no monitor pairs", []string{"--monitor-pairs", "0"}},
		{"pipeline only and latency only", []string{"--pipeline-only", "--latency-only"}},
		{"latency only and monitor only", []string{"--latency-only", "--monitor-only"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, testEnviron(), append([]string{"bench"}, tc.args...)...)
			if code != 2 || stdout != "" || strings.Contains(stderr, "bench [") {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
			}
		})
	}
}

// testBenchPipelineOnly runs `bench --pipeline-only` and checks every
// record was scored exactly once.
func testBenchPipelineOnly(t *testing.T) {
	code, stdout, stderr := runCmd(t, testEnviron("CARDIOSTREAM_TEST_RUN_MAIN=1"),
		"bench", "--json", "--pipeline-only", "--records", "300", "--reps", "1")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(lastLine(stdout)), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	if !rep.ExactlyOnceChecked || rep.ScoredPerRun != 300 || rep.PipelinePerS <= 0 || rep.PeakRSSMB <= 0 {
		t.Errorf("report %+v", rep)
	}
}

// TestBenchMonitorOnly: --monitor-only runs just the monitor phase, --reps
// monitors in turn over one backlog, and each joins every pair from no
// checkpoint (bench fails a run that joins fewer, and one whose checkpoint
// bucket outlived its deletion).
func TestBenchMonitorOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and child processes")
	}
	code, stdout, stderr := runCmd(t, testEnviron("CARDIOSTREAM_TEST_RUN_MAIN=1"),
		"bench", "--json", "--monitor-only", "--records", "300", "--reps", "2", "--monitor-pairs", "300", "--monitor-duration", "60s")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(lastLine(stdout)), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	if len(rep.MonitorRuns) != 2 || rep.MonitorRuns[0] <= 0 || rep.MonitorRuns[1] <= 0 {
		t.Errorf("monitor runs %v, want two rates", rep.MonitorRuns)
	}
	if rep.MonitorJoins != 300 || rep.MonitorJoinsPerS <= 0 || rep.MonitorCPUUSPerJoin <= 0 {
		t.Errorf("monitor joined %d of 300, %.1f joins/s, %.1f µs CPU per join", rep.MonitorJoins, rep.MonitorJoinsPerS, rep.MonitorCPUUSPerJoin)
	}
	if len(rep.BaselineRuns) != 0 || len(rep.PipelineLatency) != 0 {
		t.Errorf("--monitor-only ran throughput or latency runs: %v %v", rep.BaselineRuns, rep.PipelineLatency)
	}
	t.Logf("FIGURE TestBenchMonitorOnly monitor_joins_per_s=%.0f monitor_cpu_us_per_join=%.0f", rep.MonitorJoinsPerS, rep.MonitorCPUUSPerJoin)
}

// TestBenchLatencyOnly runs `bench --latency-only` and checks it alternated
// baseline and pipeline at both rates and every latency record came back.
func TestBenchLatencyOnly(t *testing.T) {
	if testing.Short() || raceBuild {
		t.Skip("starts a server and four child processes offering up to 5,000 records/s")
	}
	code, stdout, stderr := runCmd(t, testEnviron("CARDIOSTREAM_TEST_RUN_MAIN=1"),
		"bench", "--json", "--latency-only", "--reps", "1", "--latency-duration", "500ms")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(lastLine(stdout)), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	if len(rep.BaselineLatency) != 2 || len(rep.PipelineLatency) != 2 {
		t.Fatalf("latency runs %d and %d, want 2 each", len(rep.BaselineLatency), len(rep.PipelineLatency))
	}
	for i, want := range []float64{1000, 5000} {
		for _, l := range []bench.LatencyResult{rep.BaselineLatency[i], rep.PipelineLatency[i]} {
			if l.OfferedPerS != want || l.Sent == 0 || l.Received != l.Sent {
				t.Errorf("latency run at %.0f/s (want %.0f/s): %d outputs for %d records", l.OfferedPerS, want, l.Received, l.Sent)
			}
		}
	}
	if rep.PipelineP99At5k <= 0 || rep.BaselineP99At5k <= 0 || rep.OutputSize <= 0 {
		t.Errorf("report %+v", rep)
	}
	t.Logf("FIGURE TestBenchLatencyOnly baseline_p99_ms_at_5k=%.2f pipeline_p99_ms_at_5k=%.2f pipeline_p50_ms_at_5k=%.2f",
		rep.BaselineP99At5k, rep.PipelineP99At5k, rep.PipelineP50At5k)
}
