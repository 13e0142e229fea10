package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// syncBuffer is a goroutine-safe bytes.Buffer for capturing command output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is a cardiostream command running in-process.
type running struct {
	info   startedInfo
	stdout *syncBuffer
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan int

	once sync.Once
	code int
}

// wait waits up to timeout for the command to end and returns its exit code.
func (r *running) wait(timeout time.Duration) (int, bool) {
	ended := false
	r.once.Do(func() {
		select {
		case r.code = <-r.done:
		case <-time.After(timeout):
			r.code = -1
		}
	})
	if r.code != -1 {
		ended = true
	}
	return r.code, ended
}

// stop cancels the command (as SIGTERM would) and returns its exit code.
func (r *running) stop(t testing.TB) int {
	t.Helper()
	r.cancel()
	code, ended := r.wait(60 * time.Second)
	if !ended {
		t.Fatalf("command did not stop within 60s after cancel; stderr:\n%s", r.stderr.String())
	}
	return code
}

// testEnviron is a minimal environment: tests must not depend on the
// developer's variables.
func testEnviron(extra ...string) []string {
	return append([]string{"DEPLOYMENT_ENV=development"}, extra...)
}

// start runs args in-process and waits until the command reports it is serving.
func start(t testing.TB, environ []string, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	started := make(chan startedInfo, 1)
	c := &cli{stdout: r.stdout, stderr: r.stderr, environ: environ,
		hooks: hooks{started: func(i startedInfo) { started <- i }}}
	go func() { r.done <- c.execute(ctx, args) }()
	select {
	case r.info = <-started:
	case code := <-r.done:
		cancel()
		t.Fatalf("%v exited with %d before serving; stderr:\n%s", args, code, r.stderr.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("%v not serving after 60s; stderr:\n%s", args, r.stderr.String())
	}
	t.Cleanup(func() {
		cancel()
		r.wait(60 * time.Second)
	})
	return r
}

// runCmd runs args in-process to completion.
func runCmd(t testing.TB, environ []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb syncBuffer
	c := &cli{stdout: &out, stderr: &errb, environ: environ}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code = c.execute(ctx, args)
	return code, out.String(), errb.String()
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// scrape fetches /metrics from addr and returns the metric families.
func scrape(t testing.TB, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s: %s", addr, resp.Status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing metrics: %v", err)
	}
	return fams
}

// metricValue returns the value of the series of name whose labels include
// labels (pairs), summing every matching series; ok is false when the
// metric family does not exist.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	sum := 0.0
	for _, m := range f.GetMetric() {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, true
}

func mustMetric(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := metricValue(fams, name, labels...)
	if !ok {
		names := make([]string, 0, len(fams))
		for n := range fams {
			if strings.HasPrefix(n, "cardiostream_") {
				names = append(names, n)
			}
		}
		t.Fatalf("metric %s not exported; cardiostream metrics: %s", name, fmt.Sprint(names))
	}
	return v
}
