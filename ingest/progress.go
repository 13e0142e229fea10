package ingest

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// counters are updated by the collectors and read by progress and Report.
type counters struct {
	records, dupRecords, failedRecords    atomic.Int64
	outcomes, dupOutcomes, failedOutcomes atomic.Int64
	outcomesSkipped, outcomesNotSent      atomic.Int64
	unconfirmed                           atomic.Int64
}

// progress shows records published / total, rate and ETA: a progress bar
// when the writer is a terminal, otherwise a plain line every interval (so
// CI logs show long replays moving), nothing when the writer is nil.
type progress struct {
	stopc    chan struct{}
	finished chan struct{}
}

func startProgress(w io.Writer, c *counters, records, outcomes int64, interval time.Duration) *progress {
	p := &progress{stopc: make(chan struct{}), finished: make(chan struct{})}
	if w == nil {
		close(p.finished)
		return p
	}
	if isTerminal(w) {
		go p.runBar(w, c, records, outcomes)
	} else {
		go p.runLines(w, c, records, outcomes, interval)
	}
	return p
}

// stop renders the final state and waits for the progress goroutine.
func (p *progress) stop() {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	<-p.finished
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p *progress) runBar(w io.Writer, c *counters, records, outcomes int64) {
	defer close(p.finished)
	bar := progressbar.NewOptions64(records,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("records"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rec"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetRenderBlankState(true),
	)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	update := func() {
		done := c.records.Load() + c.failedRecords.Load()
		if outcomes > 0 && done >= records {
			bar.Describe(fmt.Sprintf("records (outcomes %d/%d)", c.outcomes.Load()+c.failedOutcomes.Load(), outcomes))
		}
		_ = bar.Set64(done)
	}
	for {
		select {
		case <-tick.C:
			update()
		case <-p.stopc:
			update()
			_ = bar.Exit()
			fmt.Fprintln(w)
			return
		}
	}
}

func (p *progress) runLines(w io.Writer, c *counters, records, outcomes int64, interval time.Duration) {
	defer close(p.finished)
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastDone int64
	lastAt := start
	var recordsDoneAt time.Time // when the last record was acked
	line := func(final bool) {
		now := time.Now()
		done := c.records.Load() + c.failedRecords.Load()
		if done >= records && recordsDoneAt.IsZero() {
			recordsDoneAt = now
		}
		rate := float64(done-lastDone) / now.Sub(lastAt).Seconds()
		if final || !recordsDoneAt.IsZero() {
			// The records' own rate: waiting for delayed outcomes does not count.
			end := now
			if !recordsDoneAt.IsZero() {
				end = recordsDoneAt
			}
			rate = float64(done) / end.Sub(start).Seconds()
		}
		lastDone, lastAt = done, now
		pct := 100.0
		if records > 0 {
			pct = 100 * float64(done) / float64(records)
		}
		eta := "-"
		if rate > 0 && done < records {
			eta = time.Duration(float64(records-done) / rate * float64(time.Second)).Round(time.Second).String()
		}
		s := fmt.Sprintf("replay: records %d/%d (%.0f%%), %.0f rec/s, elapsed %s, eta %s",
			done, records, pct, rate, now.Sub(start).Round(time.Second), eta)
		if outcomes > 0 {
			s += fmt.Sprintf(", outcomes %d/%d", c.outcomes.Load()+c.failedOutcomes.Load(), outcomes)
		}
		fmt.Fprintln(w, s)
	}
	// Check often whether the records are all acked (for an honest rate),
	// print every interval.
	poll := time.NewTicker(min(interval, 50*time.Millisecond))
	defer poll.Stop()
	for {
		select {
		case <-poll.C:
			if recordsDoneAt.IsZero() && c.records.Load()+c.failedRecords.Load() >= records {
				recordsDoneAt = time.Now()
			}
		case <-tick.C:
			line(false)
		case <-p.stopc:
			line(true)
			return
		}
	}
}
