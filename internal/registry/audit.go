package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/jsretry"
	"github.com/cardiostream/cardiostream/schemas"
)

// Audit appends an entry to AUDIT on <prefix>.audit.model.<action>. At is
// set to now when zero. The message id is derived from the entry, so
// retrying the same entry stores it once.
func (r *Registry) Audit(ctx context.Context, e schemas.AuditEntry) error {
	if !slices.Contains(schemas.AuditActions, e.Action) {
		return fmt.Errorf("audit: action %q is not one of %v", e.Action, schemas.AuditActions)
	}
	if e.At.IsZero() {
		e.At = r.now().UTC()
	}
	e.SchemaVersion = schemas.Version
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: encoding entry: %w", err)
	}
	id := sha256.Sum256(body)
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	// The message id makes a repeated attempt (its answer lost) a duplicate
	// the stream drops.
	err = r.retry(ctx, "appending to "+schemas.StreamAudit, func(ctx context.Context) error {
		_, err := r.js.Publish(ctx, r.subj.Audit(e.Action), body, jetstream.WithMsgID("audit-"+hex.EncodeToString(id[:16])))
		return err
	})
	if err != nil {
		return fmt.Errorf("audit: appending %s entry to %s: %w", e.Action, schemas.StreamAudit, err)
	}
	return nil
}

// History returns the audit trail, oldest first; limit > 0 keeps only the
// last limit entries.
func (r *Registry) History(ctx context.Context, limit int) ([]schemas.AuditEntry, error) {
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	var out []schemas.AuditEntry
	// A read repeats safely.
	err := r.retryIf(ctx, "reading "+schemas.StreamAudit, readAttemptTimeout, jsretry.Transient, func(ctx context.Context) (err error) {
		out, err = r.history(ctx, limit)
		return err
	})
	return out, err
}

func (r *Registry) history(ctx context.Context, limit int) ([]schemas.AuditEntry, error) {
	s, err := r.js.Stream(ctx, schemas.StreamAudit)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", schemas.StreamAudit, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", schemas.StreamAudit, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{r.subj.AllAudit()}})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", schemas.StreamAudit, err)
	}
	var out []schemas.AuditEntry
	// Ask for no more than the stream holds, so a fetch returns as soon as
	// its batch is full instead of waiting out its expiry.
	remaining := info.State.Msgs
	for remaining > 0 {
		batch, err := c.Fetch(int(min(remaining, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", schemas.StreamAudit, err)
		}
		n, done := uint64(0), false
		for m := range batch.Messages() {
			n++
			if e, err := decodeAuditEntry(m.Data()); err != nil {
				// Any NATS client may publish here; skip what is not an entry.
				r.log.Warn("skipping an audit message that is not an entry", "subject", m.Subject(), "err", err)
			} else {
				out = append(out, e)
				if limit > 0 && len(out) > limit {
					out = out[1:]
				}
			}
			if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("reading %s: %w", schemas.StreamAudit, err)
		}
		if done || n == 0 || n >= remaining {
			break
		}
		remaining -= n
	}
	return out, nil
}

// decodeAuditEntry decodes one AUDIT message. Any NATS client may publish
// there: errors quote no more than a clipped prefix of the message.
func decodeAuditEntry(data []byte) (schemas.AuditEntry, error) {
	var e schemas.AuditEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return schemas.AuditEntry{}, fmt.Errorf("not an audit entry: %s", schemas.ErrorDetail(err))
	}
	return e, nil
}
