package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/cardiostream/cardiostream/schemas"
)

// maxLoggedParseErrors bounds the parse errors logged one by one per file;
// the rest are counted and summarised.
const maxLoggedParseErrors = 20

// Report summarises a replay. Records and outcomes are counted per message,
// so with Repeat N a row counts N times; Rows and ParseErrors count file
// rows once.
type Report struct {
	Files int `json:"files"`
	// Rows is the number of rows that parsed, over all files (one repetition).
	Rows int `json:"rows"`
	// ParseErrors counts rows that could not be parsed (or had a duplicate
	// id); they were reported with file and line and not published.
	ParseErrors int `json:"parse_errors"`
	// Records is the number of records acknowledged by JetStream, including
	// DuplicateRecords: those the stream already held under the same
	// message id (a re-run within the duplicate window) and did not store again.
	Records          int `json:"records"`
	DuplicateRecords int `json:"duplicate_records"`
	// FailedRecords could not be published (after retries, or refused for
	// good, e.g. too large); each was logged with file, line and id.
	FailedRecords int `json:"failed_records"`
	// Outcomes is the number of outcomes acknowledged, including DuplicateOutcomes.
	Outcomes          int `json:"outcomes"`
	DuplicateOutcomes int `json:"duplicate_outcomes"`
	FailedOutcomes    int `json:"failed_outcomes"`
	// OutcomesSkipped counts published records without a label (a "?" num,
	// or a file without a label column): no outcome exists for them.
	OutcomesSkipped int `json:"outcomes_skipped"`
	// OutcomesNotSent counts stored records whose outcome was still waiting
	// for its delay when the replay was cancelled.
	OutcomesNotSent int `json:"outcomes_not_sent"`
	// Unconfirmed counts publishes whose ack was outstanding when the replay
	// was cancelled: they may or may not be stored.
	Unconfirmed int           `json:"unconfirmed"`
	Duration    time.Duration `json:"-"`
}

// MarshalJSON writes the report with snake_case keys and the duration in
// seconds (the replay command prints it as its last line).
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	return json.Marshal(struct {
		plain
		DurationSeconds float64 `json:"duration_seconds"`
	}{plain(r), r.Duration.Seconds()})
}

// LogValue lets a Report be logged as one group.
func (r Report) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int("files", r.Files), slog.Int("rows", r.Rows), slog.Int("parse_errors", r.ParseErrors),
		slog.Int("records", r.Records), slog.Int("duplicate_records", r.DuplicateRecords), slog.Int("failed_records", r.FailedRecords),
		slog.Int("outcomes", r.Outcomes), slog.Int("duplicate_outcomes", r.DuplicateOutcomes), slog.Int("failed_outcomes", r.FailedOutcomes),
		slog.Int("outcomes_skipped", r.OutcomesSkipped), slog.Int("outcomes_not_sent", r.OutcomesNotSent),
		slog.Int("unconfirmed", r.Unconfirmed), slog.Duration("duration", r.Duration),
	)
}

// String is a one-line summary for a terminal.
func (r Report) String() string {
	s := fmt.Sprintf("%d files, %d rows (%d parse errors): %d records published (%d already stored, %d failed), %d outcomes (%d already stored, %d failed, %d skipped without label)",
		r.Files, r.Rows, r.ParseErrors, r.Records, r.DuplicateRecords, r.FailedRecords,
		r.Outcomes, r.DuplicateOutcomes, r.FailedOutcomes, r.OutcomesSkipped)
	if r.OutcomesNotSent > 0 || r.Unconfirmed > 0 {
		s += fmt.Sprintf(", %d outcomes not sent and %d publishes unconfirmed (cancelled)", r.OutcomesNotSent, r.Unconfirmed)
	}
	return s + fmt.Sprintf(" in %s", r.Duration.Round(time.Millisecond))
}

// fileRun is one input file's plan and scan results.
type fileRun struct {
	path    string
	format  Format
	source  string
	prefix  string // default-id prefix: the source, or source-stem when files share a source
	subject string
	outSubj string

	rows, labelled, parseErrors int
	skip                        map[int]struct{} // lines whose file id repeats an earlier one
}

// Replay publishes the rows of files as records to
// <prefix>.records.<source>, and (cfg.Outcomes) each labelled record's
// outcome cfg.LabelDelay after the record's ack to <prefix>.outcomes.<source>.
//
// It first scans every file (so unreadable files fail before anything is
// published, parse errors are reported once, and the total is known), then
// streams the files cfg.Repeat times without holding rows in memory. It
// returns when every record and outcome is acked, or when ctx ends (then
// with ctx's error; the Report says what was and was not confirmed).
//
// Record ids are the file's id when it has one, else
// "<source>-<line, 6 digits>"; when several files share a source (--source
// with many files, or equal base names) the default ids are
// "<source>-<file stem>-<line>" so they stay unique. Repetitions: see
// RepeatID. Each message's Nats-Msg-Id is "<source>/<record id>".
//
// The error is nil when everything was published; it wraps ErrPublishFailed
// when records or outcomes could not be published (counted in the Report).
// Parse errors are counted, not returned.
func Replay(ctx context.Context, cfg Config, js jetstream.JetStream, subjects schemas.Subjects, files []string, progress io.Writer, log *slog.Logger) (Report, error) {
	start := time.Now()
	var rep Report
	if err := cfg.Validate(); err != nil {
		return rep, fmt.Errorf("replay config: %w", err)
	}
	if err := subjects.Validate(); err != nil {
		return rep, fmt.Errorf("replay subjects: %w", err)
	}
	if len(files) == 0 {
		return rep, ErrNoFiles
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "ingest")

	runs, err := plan(cfg, subjects, files, log)
	if err != nil {
		return rep, err
	}
	rep.Files = len(runs)
	seenIDs := make(map[string]map[string]string) // source → file id → "file:line"
	labelled := 0
	for _, fr := range runs {
		if err := fr.scan(cfg, seenIDs, log); err != nil {
			return rep, err
		}
		rep.Rows += fr.rows
		rep.ParseErrors += fr.parseErrors
		labelled += fr.labelled
	}
	totalRecords := int64(rep.Rows) * int64(cfg.Repeat)
	totalOutcomes := int64(0)
	if cfg.Outcomes {
		totalOutcomes = int64(labelled) * int64(cfg.Repeat)
	}
	log.Info("replay starting", "files", rep.Files, "rows", rep.Rows, "parse_errors", rep.ParseErrors,
		"repeat", cfg.Repeat, "records", totalRecords, "outcomes", totalOutcomes,
		"rate", cfg.Rate, "label_delay", cfg.LabelDelay)

	runCtx, abort := context.WithCancelCause(ctx)
	defer abort(nil)

	var c counters
	outPub := newPublisher(js, "outcome", cfg, log, func(tag msgTag, ack *jetstream.PubAck, err error) {
		switch {
		case err == nil:
			c.outcomes.Add(1)
			if ack.Duplicate {
				c.dupOutcomes.Add(1)
			}
		case errors.Is(err, errUnconfirmed):
			c.unconfirmed.Add(1)
		default:
			c.failedOutcomes.Add(1)
			log.Error("outcome not published", "file", tag.run.path, "line", tag.line, "record_id", tag.id, "err", err)
		}
	}, abort)
	sched := newScheduler(outPub, time.Now, func(n int) { c.outcomesNotSent.Add(int64(n)) })
	recPub := newPublisher(js, "record", cfg, log, func(tag msgTag, ack *jetstream.PubAck, err error) {
		switch {
		case err == nil:
			c.records.Add(1)
			if ack.Duplicate {
				c.dupRecords.Add(1)
			}
			if !cfg.Outcomes {
				return
			}
			if tag.label == nil {
				c.outcomesSkipped.Add(1)
				return
			}
			sched.add(dueOutcome{source: tag.run.source, subject: tag.run.outSubj, tag: tag, label: *tag.label, due: time.Now().Add(cfg.LabelDelay)})
		case errors.Is(err, errUnconfirmed):
			c.unconfirmed.Add(1)
		default:
			c.failedRecords.Add(1)
			log.Error("record not published", "file", tag.run.path, "line", tag.line, "record_id", tag.id, "err", err)
		}
	}, abort)

	prog := startProgress(progress, &c, totalRecords, totalOutcomes, cfg.ProgressInterval)
	var wg sync.WaitGroup
	wg.Go(func() { outPub.run(runCtx) })
	wg.Go(func() { sched.run(runCtx) })
	wg.Go(func() { recPub.run(runCtx) })

	var limiter *rate.Limiter
	if cfg.Rate > 0 {
		// A burst of 10 ms worth of records (at least 1) keeps the stream
		// smooth while letting timer granularity not cap high rates.
		limiter = rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate/100)))
	}
	var readErr error
publishing:
	for r := 0; r < cfg.Repeat; r++ {
		for _, fr := range runs {
			if readErr = fr.publish(runCtx, cfg, r, limiter, recPub); readErr != nil {
				break publishing
			}
		}
	}
	// Drain in order: record acks (which queue the last outcomes), the
	// outcome queue (waiting out the label delay), the outcome acks.
	recPub.close()
	sched.close()
	outPub.close()
	wg.Wait()
	prog.stop()

	rep.Records = int(c.records.Load())
	rep.DuplicateRecords = int(c.dupRecords.Load())
	rep.FailedRecords = int(c.failedRecords.Load())
	rep.Outcomes = int(c.outcomes.Load())
	rep.DuplicateOutcomes = int(c.dupOutcomes.Load())
	rep.FailedOutcomes = int(c.failedOutcomes.Load())
	rep.OutcomesSkipped = int(c.outcomesSkipped.Load())
	rep.OutcomesNotSent = int(c.outcomesNotSent.Load())
	rep.Unconfirmed = int(c.unconfirmed.Load())
	rep.Duration = time.Since(start)

	if rep.DuplicateRecords > 0 {
		log.Warn("some records were already stored under the same message id (a re-run within the stream's duplicate window) and were not stored again",
			"duplicate_records", rep.DuplicateRecords)
	}
	err = nil
	switch cause := context.Cause(runCtx); {
	case ctx.Err() != nil:
		err = fmt.Errorf("replay interrupted: %w", context.Cause(ctx))
	case cause != nil:
		err = cause // a publish kept failing: already wraps ErrPublishFailed
	case readErr != nil:
		err = readErr
	case rep.FailedRecords > 0 || rep.FailedOutcomes > 0:
		err = fmt.Errorf("%w: %d records and %d outcomes could not be published", ErrPublishFailed, rep.FailedRecords, rep.FailedOutcomes)
	}
	if err != nil {
		log.Error("replay failed", "report", rep, "err", err)
	} else {
		log.Info("replay finished", "report", rep)
	}
	return rep, err
}

// maxPrefix keeps default ids (prefix + "-r<rep>-<line>") within the
// 128 characters a record id may have.
const maxPrefix = 96

// plan resolves each file's format, source, subjects and default-id prefix.
func plan(cfg Config, subjects schemas.Subjects, files []string, log *slog.Logger) ([]*fileRun, error) {
	runs := make([]*fileRun, 0, len(files))
	bySource := make(map[string][]*fileRun)
	var order []string
	seenPath := make(map[string]bool)
	for _, path := range files {
		if seenPath[path] {
			return nil, fmt.Errorf("file %s is listed twice (use --repeat to replay it again)", path)
		}
		seenPath[path] = true
		f, err := DetectFormat(path, cfg.Format)
		if err != nil {
			return nil, err
		}
		src := cfg.Source
		if src == "" {
			src = SourceFromPath(path)
		}
		fr := &fileRun{path: path, format: f, source: src, prefix: src,
			subject: subjects.Records(src), outSubj: subjects.Outcomes(src)}
		runs = append(runs, fr)
		if bySource[src] == nil {
			order = append(order, src)
		}
		bySource[src] = append(bySource[src], fr)
	}
	for _, src := range order {
		group := bySource[src]
		if len(group) < 2 {
			continue
		}
		taken := make(map[string]bool)
		for _, fr := range group {
			base := src + "-" + SourceFromPath(fr.path)
			if len(base) > maxPrefix {
				base = strings.TrimRight(base[:maxPrefix], "-_")
			}
			p := base
			for n := 2; taken[p]; n++ {
				p = fmt.Sprintf("%s-%d", base, n)
			}
			taken[p] = true
			fr.prefix = p
		}
		log.Info("several files share a source; default record ids include the file name", "source", src, "files", len(group))
	}
	return runs, nil
}

// scan reads the file once: counts rows, reports parse errors and repeated
// file ids, and fails on files that cannot be read at all.
func (fr *fileRun) scan(cfg Config, seenIDs map[string]map[string]string, log *slog.Logger) error {
	r, err := openFile(fr.path, fr.format, cfg.readOptions(fr.prefix))
	if err != nil {
		return err
	}
	defer r.Close()
	flog := log.With("file", fr.path)
	if missing := r.MissingFeatures(); len(missing) > 0 {
		flog.Warn("CSV header lacks some features; they are missing in every record", "missing", missing)
	}
	if cfg.Outcomes && r.LabelColumn() == "" {
		want := "num or label"
		if cfg.LabelColumn != "" {
			want = cfg.LabelColumn
		}
		flog.Warn("file has no label column: replaying records only, outcomes skipped", "label_column", want)
	}
	ids := seenIDs[fr.source]
	report := func(pe *ParseError) {
		fr.parseErrors++
		if fr.parseErrors <= maxLoggedParseErrors {
			flog.Warn("row skipped", "line", pe.Line, "err", pe.Err)
		} else if fr.parseErrors == maxLoggedParseErrors+1 {
			flog.Warn("more rows skipped; not logging each")
		}
	}
	for {
		row, err := r.Next()
		if err == io.EOF {
			break
		}
		var pe *ParseError
		if errors.As(err, &pe) {
			report(pe)
			continue
		}
		if err != nil {
			return err
		}
		if row.IDFromFile {
			if ids == nil {
				ids = make(map[string]string)
				seenIDs[fr.source] = ids
			}
			where := fmt.Sprintf("%s:%d", fr.path, row.Line)
			if first, dup := ids[row.ID]; dup {
				if fr.skip == nil {
					fr.skip = make(map[int]struct{})
				}
				fr.skip[row.Line] = struct{}{}
				report(&ParseError{File: fr.path, Line: row.Line, Err: fmt.Errorf("%w: first used at %s", ErrDuplicateID, first)})
				continue
			}
			ids[row.ID] = where
		}
		fr.rows++
		if row.Label != nil {
			fr.labelled++
		}
	}
	if fr.parseErrors > 0 {
		flog.Warn("file has rows that could not be parsed", "parse_errors", fr.parseErrors, "rows", fr.rows)
	}
	if fr.rows == 0 {
		flog.Warn("file has no rows to replay")
	}
	flog.Info("file scanned", "format", fr.format, "source", fr.source, "rows", fr.rows, "labelled", fr.labelled)
	return nil
}

// publish streams the file's rows as records of repetition rep.
func (fr *fileRun) publish(ctx context.Context, cfg Config, rep int, limiter *rate.Limiter, pub *publisher) error {
	r, err := openFile(fr.path, fr.format, cfg.readOptions(fr.prefix))
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		row, err := r.Next()
		if err == io.EOF {
			return nil
		}
		var pe *ParseError
		if errors.As(err, &pe) {
			continue // reported by scan
		}
		if err != nil {
			return err
		}
		if _, dup := fr.skip[row.Line]; dup {
			continue
		}
		if err := wait(ctx, limiter); err != nil {
			return nil // ctx ended: Replay reports it
		}
		id := RepeatID(row, fr.prefix, rep)
		rec := schemas.Record{
			SchemaVersion: schemas.Version,
			ID:            id,
			PatientRef:    row.PatientRef,
			ObservedAt:    row.ObservedAt,
			Features:      row.Features,
		}
		if rec.ObservedAt.IsZero() {
			rec.ObservedAt = time.Now().UTC()
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encoding record %s: %w", id, err)
		}
		msg := &nats.Msg{
			Subject: fr.subject,
			Data:    data,
			Header: nats.Header{
				jetstream.MsgIDHeader:          []string{fr.source + "/" + id},
				jetstream.ExpectedStreamHeader: []string{schemas.StreamRecords},
			},
		}
		if err := pub.publish(ctx, msg, msgTag{run: fr, line: row.Line, id: id, label: row.Label}); err != nil {
			return nil // ctx ended: Replay reports it
		}
	}
}

// wait takes one token from limiter (nil: no limit), or returns ctx's error.
// Reserve-and-sleep rather than Limiter.Wait, which fails early when the
// token would come after ctx's deadline.
func wait(ctx context.Context, limiter *rate.Limiter) error {
	if limiter == nil {
		return ctx.Err()
	}
	d := limiter.Reserve().Delay()
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
