package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// This file holds the helpers of the tests that run cardiostream as real OS
// processes (the test binary re-executed as the program, see TestMain) and
// kill, stop and restart them: procStart, osProc and procCheckExactlyOnce.

// procEnv is the environment of a re-executed cardiostream process.
func procEnv(extra ...string) []string {
	return append(testEnviron("CARDIOSTREAM_TEST_RUN_MAIN=1"), extra...)
}

// osProc is one cardiostream command running as an OS process: the test
// binary re-executed as the real program (TestMain, CARDIOSTREAM_TEST_RUN_MAIN).
type osProc struct {
	name        string
	args        []string
	cmd         *exec.Cmd
	metricsAddr string // "" when the command serves no /readyz
	stdout      *syncBuffer
	stderr      *syncBuffer
	exited      chan struct{}
	err         error // cmd.Wait's result, once exited is closed
}

// procStart starts `cardiostream args...` as an OS process. When the
// command serves /metrics, metricsAddr is its --metrics-addr (chosen by the
// caller so it is known before the process starts). The process is killed
// when the test ends if it still runs.
func procStart(tb testing.TB, name string, env []string, metricsAddr string, args ...string) *osProc {
	tb.Helper()
	p := &osProc{name: name, args: args, metricsAddr: metricsAddr,
		stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		if !p.done() {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if tb.Failed() {
			tb.Logf("%s stderr (tail):\n%s", p.name, p.tail())
		}
	})
	return p
}

// done reports whether the process has exited.
func (p *osProc) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// procMetricsAddr reserves a loopback address for a process's /metrics.
func procMetricsAddr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(tb))
}

// readyz returns the status code and body of the process's /readyz (0 and
// the error text when it does not answer).
func (p *osProc) readyz() (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.metricsAddr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String()
}

// waitReady waits until /readyz answers 200, failing the test if the
// process exits first.
func (p *osProc) waitReady(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	natstest.Eventually(tb, timeout, func() error {
		select {
		case <-p.exited:
			tb.Fatalf("%s exited (%v) before becoming ready; stderr:\n%s", p.name, p.err, p.tail())
		default:
		}
		if code, body := p.readyz(); code != http.StatusOK {
			return fmt.Errorf("%s /readyz = %d %s", p.name, code, body)
		}
		return nil
	})
}

// sigterm sends SIGTERM and waits up to timeout for the process to exit; it
// returns the exit code and how long the exit took. A process that does
// not exit in time fails the test.
func (p *osProc) sigterm(tb testing.TB, timeout time.Duration) (code int, took time.Duration) {
	tb.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.done() {
		tb.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	return p.wait(tb, timeout), time.Since(start)
}

// wait waits up to timeout for the process to exit and returns its exit code.
func (p *osProc) wait(tb testing.TB, timeout time.Duration) int {
	tb.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		tb.Fatalf("%s did not exit within %s; stderr:\n%s", p.name, timeout, p.tail())
	}
	return p.cmd.ProcessState.ExitCode()
}

// tail is the end of the process's stderr, for failure messages.
func (p *osProc) tail() string {
	s := p.stderr.String()
	if len(s) > 8000 {
		s = "…" + s[len(s)-8000:]
	}
	return s
}

// procConnect connects to url with unlimited reconnects, so the test's
// connection survives a server restart, and closes it when the test ends.
func procConnect(tb testing.TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url, nats.Name(tb.Name()), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatalf("connecting to %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// procOutputs is the number of messages stored in PREDICTIONS and
// DEADLETTER (0 while the server is unreachable).
func procOutputs(js jetstream.JetStream) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := 0
	for _, name := range []string{schemas.StreamPredictions, schemas.StreamDeadLetter} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return 0, err
		}
		n += int(s.CachedInfo().State.Msgs)
	}
	return n, nil
}

// procSettled returns nil once RECORDS holds at least want records, the
// scorer consumer has delivered and had acknowledged (or terminated) every
// one of them, and PREDICTIONS plus DEADLETTER hold at least as many
// messages as RECORDS.
func procSettled(js jetstream.JetStream, want int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, err := js.Stream(ctx, schemas.StreamRecords)
	if err != nil {
		return err
	}
	records := int(rs.CachedInfo().State.Msgs)
	if records < want {
		return fmt.Errorf("RECORDS holds %d of %d records", records, want)
	}
	ci, err := js.Consumer(ctx, schemas.StreamRecords, streams.ConsumerScorer)
	if err != nil {
		return err
	}
	info := ci.CachedInfo()
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Errorf("consumer: %d records not delivered yet, %d awaiting ack", info.NumPending, info.NumAckPending)
	}
	out, err := procOutputs(js)
	if err != nil {
		return err
	}
	if out < records {
		return fmt.Errorf("%d predictions and dead letters for %d records", out, records)
	}
	return nil
}

// procLedger is the exactly-once account of RECORDS, read from the streams.
type procLedger struct {
	Records     int // messages in RECORDS
	Predictions int // messages in PREDICTIONS
	DeadLetters int // messages in DEADLETTER
	Missing     int // records with neither a prediction nor a dead letter
	Duplicated  int // records with more than one prediction or dead letter, or both
	Orphans     int // predictions or dead letters of no record in RECORDS
	Redelivered int // outputs made on a redelivery (deliveries > 1)
	Examples    []string
}

func (l procLedger) String() string {
	return fmt.Sprintf("records=%d predictions=%d dead_letters=%d missing=%d duplicated=%d orphans=%d",
		l.Records, l.Predictions, l.DeadLetters, l.Missing, l.Duplicated, l.Orphans)
}

// ok reports whether every record has exactly one output and every output
// belongs to a record.
func (l procLedger) ok() bool {
	return l.Missing == 0 && l.Duplicated == 0 && l.Orphans == 0 && l.Predictions+l.DeadLetters == l.Records
}

// procCheckExactlyOnce reads RECORDS, PREDICTIONS and DEADLETTER in full and
// accounts for every record: a prediction is matched by "<source>/<record
// id>" (its message id), a dead letter by the record's stream sequence.
func procCheckExactlyOnce(tb testing.TB, js jetstream.JetStream) procLedger {
	tb.Helper()
	subj := schemas.NewSubjects("")
	type rec struct {
		key string // "<source>/<id>", "" when the payload has no readable id
		n   int
	}
	var l procLedger
	bySeq := map[uint64]*rec{}
	byKey := map[string]*rec{}
	for _, m := range natstest.StreamMessages(tb, js, schemas.StreamRecords) {
		md, err := m.Metadata()
		if err != nil {
			tb.Fatal(err)
		}
		r := &rec{}
		var body struct {
			ID string `json:"id"`
		}
		if src, ok := subj.SourceOf("records", m.Subject()); ok && json.Unmarshal(m.Data(), &body) == nil && body.ID != "" {
			r.key = src + "/" + body.ID
			if byKey[r.key] != nil {
				tb.Fatalf("RECORDS holds %s twice (its publisher's message id should have deduplicated it)", r.key)
			}
			byKey[r.key] = r
		}
		bySeq[md.Sequence.Stream] = r
	}
	l.Records = len(bySeq)
	example := func(format string, args ...any) {
		if len(l.Examples) < 10 {
			l.Examples = append(l.Examples, fmt.Sprintf(format, args...))
		}
	}
	for _, m := range natstest.StreamMessages(tb, js, schemas.StreamPredictions) {
		l.Predictions++
		var p schemas.Prediction
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			tb.Fatalf("prediction is not JSON: %v", err)
		}
		if p.Deliveries > 1 {
			l.Redelivered++
		}
		r := byKey[p.Source+"/"+p.RecordID]
		if r == nil {
			l.Orphans++
			example("prediction of unknown record %s/%s", p.Source, p.RecordID)
			continue
		}
		r.n++
	}
	for _, m := range natstest.StreamMessages(tb, js, schemas.StreamDeadLetter) {
		l.DeadLetters++
		var d schemas.DeadLetter
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			tb.Fatalf("dead letter is not JSON: %v", err)
		}
		if d.Deliveries > 1 {
			l.Redelivered++
		}
		r := bySeq[d.StreamSequence]
		if r == nil {
			l.Orphans++
			example("dead letter of unknown stream sequence %d", d.StreamSequence)
			continue
		}
		r.n++
	}
	for seq, r := range bySeq {
		switch {
		case r.n == 0:
			l.Missing++
			example("record seq %d (%s) has no prediction and no dead letter", seq, r.key)
		case r.n > 1:
			l.Duplicated++
			example("record seq %d (%s) has %d outputs", seq, r.key, r.n)
		}
	}
	return l
}

// procPublishInvalid publishes n records that fail validation (sex 2) to
// cardio.records.<source>, with message ids, so the dead-letter path runs
// too. It pauses every so often so they interleave with a replay.
func procPublishInvalid(ctx context.Context, js jetstream.JetStream, source string, n int, every time.Duration) error {
	subj := schemas.NewSubjects("")
	for i := range n {
		id := fmt.Sprintf("invalid-%d", i)
		payload := fmt.Sprintf(`{"id":%q,"features":{"age":50,"sex":2}}`, id)
		if _, err := js.Publish(ctx, subj.Records(source), []byte(payload), jetstream.WithMsgID(source+"/"+id)); err != nil {
			return fmt.Errorf("publishing invalid record %d: %w", i, err)
		}
		if every > 0 && i%10 == 9 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(every):
			}
		}
	}
	return nil
}
