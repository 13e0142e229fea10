package monitor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pendingDoc is the pending-bucket value for one (source, record_id). Every
// change is a compare-and-set on the key's revision, so concurrent handlers
// (in one process or many) agree on who completes the join.
type pendingDoc struct {
	Prediction *docSide `json:"p,omitempty"`
	Outcome    *docSide `json:"o,omitempty"`
	DeadLetter *docSide `json:"d,omitempty"`
	// Resolved marks a join (or unscorable) already written to the ledger;
	// later duplicates of either side are recognised by it until the entry
	// expires with the label deadline.
	Resolved bool `json:"r,omitempty"`
	// Shadow holds the shadow predictions by model version (usually one).
	// They are not pending sides: they resolve (R) into a shadow join once
	// the outcome and the active prediction (or dead letter) are present.
	Shadow map[string]*docSide `json:"s,omitempty"`
}

// docSide is what the join needs from one side: no patient data.
type docSide struct {
	Label int       `json:"l"`
	At    time.Time `json:"t"`
	V     string    `json:"v,omitempty"` // model version (predictions)
	R     bool      `json:"r,omitempty"` // shadow side: its shadow join is written
}

// has reports whether ev's side is already recorded in d.
func (d *pendingDoc) has(ev event) bool {
	if ev.Kind == kindShadow {
		return d.Shadow[ev.Version] != nil
	}
	return *d.side(sideOf(ev.Kind)) != nil
}

// set records ev's side in d.
func (d *pendingDoc) set(ev event) {
	ds := &docSide{Label: ev.Label, At: ev.At, V: ev.Version}
	if ev.Kind == kindShadow {
		if d.Shadow == nil {
			d.Shadow = map[string]*docSide{}
		}
		d.Shadow[ev.Version] = ds
		return
	}
	*d.side(sideOf(ev.Kind)) = ds
}

// shadowResolvable returns a shadow version whose shadow join is owed: its
// record has an outcome and an active prediction or dead letter.
func (d *pendingDoc) shadowResolvable() (string, bool) {
	if d.Outcome == nil || (d.Prediction == nil && d.DeadLetter == nil) {
		return "", false
	}
	for _, v := range slices.Sorted(maps.Keys(d.Shadow)) {
		if !d.Shadow[v].R {
			return v, true
		}
	}
	return "", false
}

// shadowResolution is the shadow join event of version v.
func (d *pendingDoc) shadowResolution(source, recordID, v string, now time.Time) event {
	sh := d.Shadow[v]
	ev := event{V: ledgerVersion, Kind: kindShadowJoin, Source: source, RecordID: recordID, At: now,
		Version: v, Predicted: sh.Label, Actual: d.Outcome.Label}
	if d.Prediction != nil {
		l := d.Prediction.Label
		ev.ActiveVersion, ev.ActivePredicted = d.Prediction.V, &l
	}
	return ev
}

func (d *pendingDoc) side(s side) **docSide {
	switch s {
	case sidePrediction:
		return &d.Prediction
	case sideOutcome:
		return &d.Outcome
	default:
		return &d.DeadLetter
	}
}

func (d *pendingDoc) resolvable() bool {
	return !d.Resolved && d.Outcome != nil && (d.Prediction != nil || d.DeadLetter != nil)
}

// resolution is the join (or unscorable) event for a resolvable doc.
func (d *pendingDoc) resolution(source, recordID string, now time.Time) event {
	ev := event{V: ledgerVersion, Source: source, RecordID: recordID, At: now, Actual: d.Outcome.Label}
	ev.OutcomeAt = timePtr(d.Outcome.At)
	if d.DeadLetter != nil {
		ev.DeadLetterAt = timePtr(d.DeadLetter.At)
	}
	if d.Prediction != nil {
		ev.Kind = kindJoin
		ev.Version = d.Prediction.V
		ev.Predicted = d.Prediction.Label
		ev.PredictionAt = timePtr(d.Prediction.At)
	} else {
		ev.Kind = kindUnscorable
	}
	return ev
}

func timePtr(t time.Time) *time.Time { return &t }

func sideOf(kind string) side {
	switch kind {
	case kindPrediction:
		return sidePrediction
	case kindOutcome:
		return sideOutcome
	default:
		return sideDeadLetter
	}
}

// pendingKey derives a valid KV key from client-chosen ids: "r." and the
// first 128 bits of SHA-256 over source, NUL, record id.
func pendingKey(source, recordID string) string {
	h := sha256.Sum256([]byte(source + "\x00" + recordID))
	return "r." + hex.EncodeToString(h[:16])
}

const maxCASAttempts = 16

// record handles one distinct input (ev is its input event, inputSeq its
// stream sequence). The order of writes makes a redelivery at any point
// harmless:
//
//  1. read the pending entry; if this side is already there, it is a
//     duplicate (only the join may still be owed, step 4);
//  2. publish the input event to the ledger (Nats-Msg-Id dedups a retry);
//  3. if both sides are now present, publish the join event (deduplicated by
//     its id) and, concurrently, the joined marker;
//  4. CAS the side (and the resolved flag) into the entry in one write (a
//     lost CAS re-reads and goes again);
//  5. likewise for each shadow prediction whose shadow join is owed.
//
// The caller acks only after record returns nil.
func (m *Monitor) record(ctx context.Context, ev event, inputSeq uint64) error {
	if ev.RecordID == "" {
		// A dead letter whose payload had no readable id: it is counted but
		// can never be joined.
		return m.publishEvent(ctx, ev, inputSeq)
	}
	key := pendingKey(ev.Source, ev.RecordID)
attempts:
	for range maxCASAttempts {
		doc, rev, err := m.getDoc(ctx, key)
		if err != nil {
			return err
		}
		if rev == 0 {
			// No pending entry: a first arrival, or a late duplicate of a
			// record whose entry expired with the label deadline after it
			// was resolved. The joined marker tells them apart.
			joined, err := m.isJoined(ctx, key)
			if err != nil {
				return err
			}
			if joined {
				m.metrics.lateDuplicates.Inc()
				return nil
			}
		}
		changed := false
		if !doc.has(ev) {
			// Shadow predictions are not pending sides of the main join.
			ev.Pending = !doc.Resolved && ev.Kind != kindShadow
			if err := m.publishEvent(ctx, ev, inputSeq); err != nil {
				return err
			}
			doc.set(ev)
			changed = true
		}
		if doc.resolvable() {
			// The side and the resolution go into the entry with one CAS:
			// until it succeeds a redelivery repeats the input event, the
			// resolution and the marker, each deduplicated or idempotent.
			if err := m.resolve(ctx, key, doc.resolution(ev.Source, ev.RecordID, m.now())); err != nil {
				return err
			}
			doc.Resolved = true
			changed = true
		}
		if changed {
			if rev, err = m.putDoc(ctx, key, doc, rev); errors.Is(err, errConflict) {
				continue
			} else if err != nil {
				return err
			}
		}
		for {
			v, ok := doc.shadowResolvable()
			if !ok {
				return nil
			}
			if err := m.publishEvent(ctx, doc.shadowResolution(ev.Source, ev.RecordID, v, m.now()), 0); err != nil {
				return err
			}
			doc.Shadow[v].R = true
			if rev, err = m.putDoc(ctx, key, doc, rev); errors.Is(err, errConflict) {
				continue attempts
			} else if err != nil {
				return err
			}
		}
	}
	return errTooManyConflicts
}

func (m *Monitor) getDoc(ctx context.Context, key string) (*pendingDoc, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	e, err := m.pending.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return &pendingDoc{}, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading pending entry: %w", err)
	}
	var d pendingDoc
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		// Only this package writes the bucket; a value it cannot read is
		// overwritten rather than wedging the record forever.
		m.log.Warn("unreadable pending entry; replacing it", "key", key, "err", err)
		return &pendingDoc{}, e.Revision(), nil
	}
	return &d, e.Revision(), nil
}

// resolve writes a resolution: its ledger event and the joined marker,
// concurrently (two round trips in the time of one). Both must succeed
// before the entry is marked resolved, so every resolved entry has a marker
// and a ledger event (a crash in between repeats both writes, each
// idempotent), and the marker outlives the entry.
func (m *Monitor) resolve(ctx context.Context, key string, res event) error {
	marked := make(chan error, 1)
	go func() { marked <- m.markJoined(ctx, key) }()
	perr := m.publishEvent(ctx, res, 0)
	merr := <-marked
	return errors.Join(perr, merr)
}

// isJoined reports whether the record of key was resolved within JoinedTTL.
func (m *Monitor) isJoined(ctx context.Context, key string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	_, err := m.joined.Get(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		return false, nil
	}
	return false, fmt.Errorf("reading joined marker: %w", err)
}

// markJoined records that the record of key is resolved. The value is one
// byte: the key (a hash of source and record id) is the information.
func (m *Monitor) markJoined(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	if _, err := m.joined.Put(ctx, key, []byte{'1'}); err != nil {
		return fmt.Errorf("writing joined marker: %w", err)
	}
	return nil
}

func (m *Monitor) putDoc(ctx context.Context, key string, d *pendingDoc, rev uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	b, err := json.Marshal(d)
	if err != nil {
		return 0, fmt.Errorf("encoding pending entry: %w", err)
	}
	if rev == 0 {
		rev, err = m.pending.Create(ctx, key, b)
	} else {
		rev, err = m.pending.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		m.metrics.casConflicts.Inc()
		return 0, errConflict
	}
	if err != nil {
		return 0, fmt.Errorf("writing pending entry: %w", err)
	}
	return rev, nil
}

// publishEvent appends ev to the ledger, deduplicated by its id.
func (m *Monitor) publishEvent(ctx context.Context, ev event, inputSeq uint64) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding ledger event: %w", err)
	}
	msg := &nats.Msg{Subject: ledgerSubject(m.subjects, ev.Kind, ev.Source), Data: b}
	if _, err := m.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.msgID(inputSeq)), jetstream.WithExpectStream(m.cfg.Ledger.Stream)); err != nil {
		return fmt.Errorf("publishing %s event to the ledger: %w", ev.Kind, err)
	}
	return nil
}
