package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// hostileCase is one payload of the hostile corpus. Its bytes come from
// testdata/hostile/<file>.payload, or from gen for the large ones (a
// megabyte of brackets is not worth a file in the repository).
type hostileCase struct {
	name    string
	file    string        // default: name
	gen     func() []byte // instead of file
	subject string        // default: cardio.records.hostile
	header  nats.Header
	// want is the field and a fragment of the problem one of the dead
	// letter's reasons must have; the golden file holds the full reasons.
	field, want string
	stage       schemas.Stage
}

const hostileSubject = "cardio.records.hostile"

// The server's max_payload (nats-server's default, which the embedded server
// keeps) and the RECORDS stream's max_msg_size are both 1 MiB; the record
// decoder's own limit is schemas.MaxRecordBytes (16 KiB).
const serverMaxPayload = 1 << 20

func hostileCases() []hostileCase {
	D, V := schemas.StageDecode, schemas.StageValidate
	repeat := func(prefix, s string, n int, suffix string) func() []byte {
		return func() []byte { return []byte(prefix + strings.Repeat(s, n) + suffix) }
	}
	hdr := func(kv ...string) nats.Header {
		h := nats.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	const valid = "valid-record"
	return []hostileCase{
		// Encoding.
		{name: "invalid-utf8", stage: D, want: "payload is not valid UTF-8 (first invalid byte at 30)"},
		{name: "invalid-utf8-key", stage: D, want: "payload is not valid UTF-8"},
		{name: "overlong-utf8", stage: D, want: "payload is not valid UTF-8"},
		{name: "nul-in-string", stage: D, want: "control character '\\x00' in string"},
		{name: "nul-after-object", stage: D, want: "unexpected data after the JSON object"},
		{name: "bom", stage: D, want: "unexpected '\\ufeff'; expected a JSON object"},
		{name: "gzip-body", stage: D, header: hdr("Content-Encoding", "gzip"), want: "payload is not valid UTF-8"},
		// Not an object.
		{name: "array", stage: D, want: "payload must be a JSON object, got array"},
		{name: "null", stage: D, want: "payload must be a JSON object, got null"},
		{name: "empty", stage: D, want: "payload is empty"},
		{name: "whitespace-only", stage: D, want: "payload is only whitespace"},
		{name: "string", stage: D, want: "payload must be a JSON object, got string"},
		{name: "number", stage: D, want: "payload must be a JSON object, got number"},
		// Syntax JSON does not have.
		{name: "hex-number", stage: D, want: "invalid JSON at byte"},
		{name: "leading-plus", stage: D, want: "invalid JSON at byte"},
		{name: "leading-zero", stage: D, want: "leading zero in number"},
		{name: "trailing-comma", stage: D, want: "expected a string key"},
		{name: "single-quotes", stage: D, want: "expected a string key"},
		{name: "comment", stage: D, want: "expected a string key"},
		{name: "two-objects", stage: D, want: "a payload is a single object"},
		{name: "truncated", stage: D, want: "unexpected end of input"},
		// Duplicate keys (encoding/json would silently keep the last one).
		{name: "duplicate-feature", stage: D, field: "features.age", want: "duplicate key"},
		{name: "duplicate-id", stage: D, field: "id", want: "duplicate key"},
		{name: "duplicate-features-object", stage: D, field: "features", want: "duplicate key"},
		// Numbers that are not numbers, or not representable.
		{name: "numbers-as-strings", stage: D, field: "features.chol", want: "must be a number (or null when unknown), got string"},
		{name: "nan-literal", stage: D, field: "features.oldpeak", want: "NaN"},
		{name: "infinity-literals", stage: D, field: "features.oldpeak", want: "Infinity"},
		{name: "nan-as-string", stage: D, field: "features.oldpeak", want: "got string"},
		{name: "huge-exponent", stage: V, field: "features.chol", want: "got 1e400"},
		{name: "huge-negative-exponent-age", stage: V, field: "features.age", want: "got -1e400"},
		{name: "huge-integer", stage: V, field: "features.age", want: "got 123456789012345678901234567890"},
		{name: "huge-integer-code", stage: V, field: "features.cp", want: "got 100000000000000000001"},
		// Wrong shapes inside the object.
		{name: "features-array", stage: D, field: "features", want: "must be an object, got array"},
		{name: "features-null", stage: D, field: "features", want: "must be an object, got null"},
		{name: "boolean-feature", stage: D, field: "features.sex", want: "got boolean"},
		{name: "object-feature", stage: D, field: "features.age", want: "got object"},
		{name: "id-number", stage: D, field: "id", want: "must be a string, got number"},
		{name: "id-escaped-nul", stage: V, field: "id", want: "must match"},
		{name: "id-empty", stage: V, field: "id", want: "must match"},
		{name: "schema-version-2", stage: V, field: "schema_version", want: "must be 1"},
		{name: "observed-at-garbage", stage: V, field: "observed_at", want: "RFC 3339"},
		{name: "unknown-field-and-patient-value", stage: D, field: "diagnosis", want: "unknown field"},
		// Nesting and size.
		{name: "deep-nesting-in-member", gen: repeat(`{"id":"h-deep","features":{"age":63},"x":`, "[", 10_000, "}"), stage: D, want: "nested deeper than 64 levels"},
		{name: "deep-nesting-100k", gen: repeat("", "[", 100_000, ""), stage: D, want: "payload is 100000 bytes; the limit is 16384 bytes"},
		{name: "just-over-record-limit", gen: func() []byte {
			return padRecord("h-pad", schemas.MaxRecordBytes+1)
		}, stage: D, want: "payload is 16385 bytes; the limit is 16384 bytes"},
		{name: "server-max-payload", gen: func() []byte {
			return padRecord("h-1mib", serverMaxPayload)
		}, stage: D, want: "payload is 1048576 bytes; the limit is 16384 bytes"},
		// Headers that lie: the scorer goes by the payload, never by headers.
		{name: "content-type-lies", header: hdr("Content-Type", "application/json", "Nats-Schema-Version", "1"), stage: D, want: "invalid JSON at byte 0: unexpected 't'; expected a JSON object"},
		{name: "header-not-utf8", file: "numbers-as-strings", header: hdr("X-Evil", "\xff\xfe\x00"), stage: D, field: "features.age", want: "got string"},
		{name: "msg-id-clash", file: "array", header: hdr(jetstream.MsgIDHeader, "hostile/clash"), stage: D, want: "got array"},
		// Odd subjects the server accepts and RECORDS stores: the source
		// token is not one of ours, so the record goes to
		// cardio.deadletter._invalid whatever its payload.
		{name: "subject-wildcard-star", file: valid, subject: "cardio.records.*", stage: V, field: "subject", want: `subject "cardio.records.*" is not cardio.records.<source>`},
		{name: "subject-wildcard-gt", file: valid, subject: "cardio.records.>", stage: V, field: "subject", want: "is not cardio.records.<source>"},
		{name: "subject-two-tokens", file: valid, subject: "cardio.records.clinic.a", stage: V, field: "subject", want: "is not cardio.records.<source>"},
		{name: "subject-non-ascii", file: valid, subject: "cardio.records.klinik-ü", stage: V, field: "subject", want: `"cardio.records.klinik-ü"`},
		{name: "subject-invalid-utf8", file: valid, subject: "cardio.records.\xff", stage: V, field: "subject", want: `"cardio.records.\xff"`},
		{name: "subject-nul", file: valid, subject: "cardio.records.a\x00b", stage: V, field: "subject", want: `"cardio.records.a\x00b"`},
		{name: "subject-dollar", file: valid, subject: "cardio.records.$x", stage: V, field: "subject", want: "is not cardio.records.<source>"},
		{name: "subject-65-chars", file: valid, subject: "cardio.records." + strings.Repeat("s", 65), stage: V, field: "subject", want: "1-64 letters"},
		{name: "subject-and-payload-bad", file: "null", subject: "cardio.records.a.b", stage: D, field: "subject", want: "is not cardio.records.<source>"},
	}
}

// padRecord is a record of exactly n bytes (a long unknown member).
func padRecord(id string, n int) []byte {
	head := `{"id":"` + id + `","features":{"age":63},"pad":"`
	return []byte(head + strings.Repeat("x", n-len(head)-2) + `"}`)
}

// hostileRefusal is a publish the server (or the client library) refuses:
// it is never stored, so it never reaches the scorer, and the publisher
// sees the error.
type hostileRefusal struct {
	name    string
	subject string
	header  nats.Header
	size    int // payload size; default a small valid record
	check   func(error) bool
}

func apiCode(code jetstream.ErrorCode) func(error) bool {
	return func(err error) bool {
		var apiErr *jetstream.APIError
		return errors.As(err, &apiErr) && apiErr.ErrorCode == code
	}
}

func hostileRefusals() []hostileRefusal {
	h := func(k, v string) nats.Header { return nats.Header{k: []string{v}} }
	noStream := func(err error) bool { return errors.Is(err, jetstream.ErrNoStreamResponse) }
	return []hostileRefusal{
		// An empty token matches no subscription, so no stream answers.
		{name: "empty source token", subject: "cardio.records.", check: noStream},
		{name: "empty middle token", subject: "cardio.records..x", check: noStream},
		{name: "space in subject", subject: "cardio.records.a b", check: func(err error) bool { return errors.Is(err, nats.ErrBadSubject) }},
		{name: "tab in subject", subject: "cardio.records.a\tb", check: func(err error) bool { return errors.Is(err, nats.ErrBadSubject) }},
		{name: "payload over max_payload", size: serverMaxPayload + 1, check: func(err error) bool { return errors.Is(err, nats.ErrMaxPayload) }},
		{name: "fake Nats-Expected-Stream", header: h("Nats-Expected-Stream", "OTHER"), check: apiCode(10060)},
		{name: "fake Nats-Expected-Last-Sequence", header: h("Nats-Expected-Last-Sequence", "999999"), check: apiCode(10071)},
		{name: "fake Nats-Expected-Last-Subject-Sequence", header: h("Nats-Expected-Last-Subject-Sequence", "999999"), check: apiCode(10071)},
		{name: "fake Nats-Expected-Last-Msg-Id", header: h("Nats-Expected-Last-Msg-Id", "nope"), check: apiCode(10070)},
		{name: "Nats-Rollup", header: h("Nats-Rollup", "all"), check: apiCode(10111)},
		{name: "Nats-TTL", header: h("Nats-TTL", "1s"), check: apiCode(10166)},
		{name: "headers over 64 KiB", header: h("X-Big", strings.Repeat("a", 70_000)), check: apiCode(10097)},
	}
}

// goldenDeadLetter is what the golden file keeps of each dead letter.
type goldenDeadLetter struct {
	Subject           string            `json:"subject"`
	DeadLetterSubject string            `json:"deadletter_subject"`
	Stage             schemas.Stage     `json:"stage"`
	RecordID          string            `json:"record_id,omitempty"`
	Reasons           []schemas.Problem `json:"reasons"`
	PayloadSize       int               `json:"payload_size"`
	PayloadTruncated  bool              `json:"payload_truncated,omitempty"`
}

// TestHostileCorpusEndToEnd publishes the hostile corpus (testdata/hostile)
// to a real `cardiostream standalone` OS process: every stored payload ends
// as exactly one dead letter with the golden stage and field-level reasons
// (testdata/hostile.golden), publishes the server refuses are refused with
// the expected error and never stored, no payload value reaches the logs, and
// the process neither crashes nor stalls: valid records published after the
// corpus are all scored, and it exits 0 on SIGTERM.
func TestHostileCorpusEndToEnd(t *testing.T) {
	cases := hostileCases()
	payloads := make([][]byte, len(cases))
	for i, c := range cases {
		if c.gen != nil {
			payloads[i] = c.gen()
			continue
		}
		f := c.file
		if f == "" {
			f = c.name
		}
		b, err := os.ReadFile(filepath.Join("testdata", "hostile", f+".payload"))
		if err != nil {
			t.Fatal(err)
		}
		payloads[i] = b
	}
	checkCorpusFilesUsed(t, cases)

	p := startProcess(t, "standalone", "--data-dir", t.TempDir())
	js := connectTo(t, p.natsURL)
	ctx := context.Background()
	pub := func(m *nats.Msg) (*jetstream.PubAck, error) {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return js.PublishMsg(pctx, m)
	}

	bySeq := map[uint64]int{}
	start := time.Now()
	for i, c := range cases {
		subj := c.subject
		if subj == "" {
			subj = hostileSubject
		}
		ack, err := pub(&nats.Msg{Subject: subj, Header: c.header, Data: payloads[i]})
		if err != nil {
			t.Fatalf("%s: publish: %v", c.name, err)
		}
		if ack.Duplicate {
			t.Fatalf("%s: publish ack says duplicate", c.name)
		}
		bySeq[ack.Sequence] = i
		if c.name == "msg-id-clash" {
			// A second message under the same Nats-Msg-Id, even a valid
			// record, is dropped by RECORDS' duplicate window: the publisher
			// gets a duplicate ack naming the first message's sequence.
			again := &nats.Msg{Subject: hostileSubject, Header: c.header, Data: []byte(`{"id":"h-clash-2","features":{"age":63}}`)}
			ack2, err := pub(again)
			if err != nil || !ack2.Duplicate || ack2.Sequence != ack.Sequence {
				t.Fatalf("second publish under a used Nats-Msg-Id: ack %+v err %v, want a duplicate of seq %d", ack2, err, ack.Sequence)
			}
		}
	}

	refusals := hostileRefusals()
	for _, r := range refusals {
		subj := r.subject
		if subj == "" {
			subj = hostileSubject
		}
		data := []byte(`{"id":"h-refused","features":{"age":63}}`)
		if r.size > 0 {
			data = bytes.Repeat([]byte(" "), r.size)
		}
		ack, err := pub(&nats.Msg{Subject: subj, Header: r.header, Data: data})
		if err == nil || !r.check(err) {
			t.Errorf("%s: publish = ack %+v, err %v; want it refused", r.name, ack, err)
		}
	}
	// Past the client library's own check, the server refuses an oversized
	// PUB and closes the connection.
	if line := rawPublish(t, p.natsURL, hostileSubject, serverMaxPayload+1); !strings.Contains(line, "Maximum Payload Violation") {
		t.Errorf("raw PUB of %d bytes: server answered %q, want -ERR 'Maximum Payload Violation'", serverMaxPayload+1, line)
	}

	// Valid records after the corpus: the process must still score.
	const after = 50
	for i := range after {
		rec := fmt.Sprintf(`{"id":"after-%d","features":{"age":%d,"sex":1,"cp":2,"chol":%d}}`, i, 40+i%30, 180+i)
		if _, err := pub(&nats.Msg{Subject: "cardio.records.after", Data: []byte(rec)}); err != nil {
			t.Fatal(err)
		}
	}
	published := time.Now()
	// Wait on the streams; on timeout go on, so the checks below say which
	// records are missing.
	streamCount := func(name string) int {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := js.Stream(sctx, name)
		if err != nil {
			return -1
		}
		return int(s.CachedInfo().State.Msgs)
	}
	for deadline := time.Now().Add(90 * time.Second); ; {
		np, nd := streamCount(schemas.StreamPredictions), streamCount(schemas.StreamDeadLetter)
		if np >= after && nd >= len(cases) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after 90s: %d predictions (want %d) and %d dead letters (want %d)", np, after, nd, len(cases))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	settled := time.Now()
	// The monitor (in the same process) reads every dead letter too. It
	// counts a record once per (source, record id), as it joins them; dead
	// letters without a readable id count one each.
	dlIdentities := map[string]bool{}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamDeadLetter) {
		var d schemas.DeadLetter
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			t.Fatal(err)
		}
		k := d.Source + "/" + d.RecordID
		if d.RecordID == "" {
			k = fmt.Sprintf("#%d", d.StreamSequence)
		}
		dlIdentities[k] = true
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		fams := scrape(t, p.metricsAddr)
		pr, _ := metricValue(fams, "cardiostream_monitor_predictions_total")
		dl, _ := metricValue(fams, "cardiostream_monitor_dead_lettered_total")
		if int(pr) == after && int(dl) == len(dlIdentities) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the monitor saw %v predictions (want %d) and %v dead letters (want %d distinct records)", pr, after, dl, len(dlIdentities))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Count from the streams, not from the process's counters.
	if n := len(natstest.StreamMessages(t, js, schemas.StreamRecords)); n != len(cases)+after {
		t.Errorf("RECORDS holds %d messages, want %d (corpus) + %d (valid): a refused publish was stored or a stored one is missing", n, len(cases), after)
	}
	preds := natstest.StreamMessages(t, js, schemas.StreamPredictions)
	ids := map[string]int{}
	for _, m := range preds {
		var pr schemas.Prediction
		if err := json.Unmarshal(m.Data(), &pr); err != nil {
			t.Fatal(err)
		}
		ids[pr.Source+"/"+pr.RecordID]++
	}
	for i := range after {
		if n := ids[fmt.Sprintf("after/after-%d", i)]; n != 1 {
			t.Errorf("record after-%d has %d predictions, want 1", i, n)
		}
	}
	if len(preds) != after {
		t.Errorf("%d predictions, want %d: a hostile payload was scored", len(preds), after)
	}

	got := map[string]goldenDeadLetter{}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamDeadLetter) {
		var d schemas.DeadLetter
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			t.Fatalf("dead letter on %s is not JSON: %v", m.Subject(), err)
		}
		i, ok := bySeq[d.StreamSequence]
		if !ok {
			t.Errorf("dead letter for RECORDS seq %d, which is no corpus case (record %q)", d.StreamSequence, d.RecordID)
			continue
		}
		c := cases[i]
		if _, dup := got[c.name]; dup {
			t.Errorf("%s: two dead letters", c.name)
		}
		got[c.name] = goldenDeadLetter{Subject: d.Subject, DeadLetterSubject: m.Subject(), Stage: d.Stage, RecordID: d.RecordID,
			Reasons: d.Reasons, PayloadSize: d.PayloadSize, PayloadTruncated: d.PayloadTruncated}
		checkHostileDeadLetter(t, c, payloads[i], d)
	}
	for _, c := range cases {
		if _, ok := got[c.name]; !ok {
			t.Errorf("%s: no dead letter", c.name)
		}
	}
	compareGolden(t, filepath.Join("testdata", "hostile.golden"), got)

	// Still alive and healthy, then a clean exit.
	if err := p.healthy(); err != nil {
		t.Fatalf("after the corpus: %v; stderr:\n%s", err, p.stderr.String())
	}
	if code := p.terminate(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM; stderr:\n%s", code, p.stderr.String())
	}
	logs := p.stderr.String()
	for _, secret := range []string{"SECRET-PATIENT-77", "SECRET-DIAGNOSIS-77", "h-clash-2"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain payload content %q", secret)
		}
	}
	if strings.Contains(logs, "panic") {
		t.Errorf("the logs mention a panic:\n%s", logs)
	}
	t.Logf("FIGURE %s corpus=%d dead_lettered=%d monitor_distinct_dead_letters=%d refused_at_publish=%d valid_after=%d scored=%d settle_ms=%d",
		t.Name(), len(cases), len(got), len(dlIdentities), len(refusals)+1, after, len(ids), settled.Sub(published).Milliseconds())
	t.Logf("corpus published in %v", published.Sub(start))
}

func checkHostileDeadLetter(t *testing.T, c hostileCase, payload []byte, d schemas.DeadLetter) {
	t.Helper()
	if d.Stage != c.stage {
		t.Errorf("%s: stage %q, want %q (reasons %v)", c.name, d.Stage, c.stage, d.Reasons)
	}
	found := false
	for _, r := range d.Reasons {
		if r.Problem == "" {
			t.Errorf("%s: empty problem for field %q", c.name, r.Field)
		}
		found = found || (r.Field == c.field && strings.Contains(r.Problem, c.want))
	}
	if !found {
		t.Errorf("%s: no reason with field %q and problem containing %q: %v", c.name, c.field, c.want, d.Reasons)
	}
	subj := c.subject
	if subj == "" {
		subj = hostileSubject
	}
	// JSON cannot carry invalid UTF-8: such a subject comes back with U+FFFD.
	if d.Subject != strings.ToValidUTF8(subj, "\uFFFD") {
		t.Errorf("%s: dead letter subject %q, want %q", c.name, d.Subject, subj)
	}
	sum := sha256.Sum256(payload)
	want := payload
	if len(want) > schemas.MaxDeadLetterPayload {
		want = want[:schemas.MaxDeadLetterPayload]
	}
	if d.PayloadSize != len(payload) || d.PayloadSHA256 != hex.EncodeToString(sum[:]) || !bytes.Equal(d.Payload, want) ||
		d.PayloadTruncated != (len(payload) > schemas.MaxDeadLetterPayload) {
		t.Errorf("%s: dead letter payload: size %d sha %s truncated %v, want size %d", c.name, d.PayloadSize, d.PayloadSHA256, d.PayloadTruncated, len(payload))
	}
	if d.Deliveries != 1 {
		t.Errorf("%s: dead-lettered on delivery %d, want the first", c.name, d.Deliveries)
	}
}

// checkCorpusFilesUsed fails when a file in testdata/hostile belongs to no
// case: a payload added there must also be given its expectation.
func checkCorpusFilesUsed(t *testing.T, cases []hostileCase) {
	t.Helper()
	used := map[string]bool{}
	for _, c := range cases {
		switch {
		case c.gen != nil:
		case c.file != "":
			used[c.file] = true
		default:
			used[c.name] = true
		}
	}
	files, err := filepath.Glob(filepath.Join("testdata", "hostile", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name, ok := strings.CutSuffix(filepath.Base(f), ".payload")
		if !ok || !used[name] {
			t.Errorf("%s is not a case of hostileCases", f)
		}
	}
}

func compareGolden(t *testing.T, path string, got map[string]goldenDeadLetter) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var wantM map[string]goldenDeadLetter
	if err := json.Unmarshal(want, &wantM); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	names := make([]string, 0, len(wantM))
	for n := range wantM {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := wantM[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		g, _ := json.Marshal(got[n])
		w, _ := json.Marshal(wantM[n])
		if !bytes.Equal(g, w) {
			t.Errorf("%s: dead letter differs from %s (run with -update if intended)\n got: %s\nwant: %s", n, path, g, w)
		}
	}
}

// rawPublish sends a PUB of size bytes over a bare TCP connection, bypassing
// the client library's max_payload check, and returns the server's answer.
func rawPublish(t *testing.T, url, subject string, size int) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPUB %s %d\r\n", subject, size)
	_, _ = conn.Write(bytes.Repeat([]byte("x"), size)) // the server may close before reading it all
	_, _ = conn.Write([]byte("\r\n"))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return line + " (" + err.Error() + ")"
		}
		if !strings.HasPrefix(line, "PING") && !strings.HasPrefix(line, "PONG") && !strings.HasPrefix(line, "+OK") {
			return strings.TrimSpace(line)
		}
	}
}

// process is the test binary re-executed as the real cardiostream program.
type process struct {
	cmd         *exec.Cmd
	stderr      *syncBuffer
	exited      chan error
	natsURL     string
	metricsAddr string
}

// startProcess runs `cardiostream <role> args...` as an OS process with its
// NATS listener (standalone) and ops server on free loopback ports, and
// waits until /readyz answers 200.
func startProcess(t *testing.T, role string, args ...string) *process {
	t.Helper()
	return startProcessEnv(t, nil, role, args...)
}

// startProcessEnv is startProcess with extra environment variables (later
// ones win over testEnviron's, e.g. DEPLOYMENT_ENV=production).
func startProcessEnv(t *testing.T, env []string, role string, args ...string) *process {
	t.Helper()
	natsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	p := &process{stderr: &syncBuffer{}, exited: make(chan error, 1),
		natsURL: "nats://" + natsAddr, metricsAddr: fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))}
	args = append([]string{role, "--metrics-addr", p.metricsAddr}, args...)
	if role == "standalone" {
		args = append(args, "--nats-listen", natsAddr)
	}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(testEnviron(env...), "CARDIOSTREAM_TEST_RUN_MAIN=1")
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	natstest.Eventually(t, 60*time.Second, func() error {
		select {
		case err := <-p.exited:
			t.Fatalf("%s exited before it was ready: %v; stderr:\n%s", role, err, p.stderr.String())
		default:
		}
		return p.ready()
	})
	return p
}

func (p *process) ready() error {
	resp, err := http.Get("http://" + p.metricsAddr + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz %s", resp.Status)
	}
	return nil
}

// healthy reports an error when the process has exited or is not ready.
func (p *process) healthy() error {
	select {
	case err := <-p.exited:
		p.exited <- err
		return fmt.Errorf("the process exited: %v", err)
	default:
	}
	return p.ready()
}

// terminate sends SIGTERM and returns the exit code.
func (p *process) terminate(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(60 * time.Second):
		t.Fatalf("no exit within 60s of SIGTERM; stderr:\n%s", p.stderr.String())
		return -1
	}
}
