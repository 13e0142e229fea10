package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/jsretry"
	"github.com/cardiostream/cardiostream/schemas"
)

// ChangeOptions describe one pointer change.
type ChangeOptions struct {
	Actor  string
	Reason string
	// Force bypasses failed quality gates (never integrity: a tampered or
	// unsigned artifact is refused regardless). Refused in production.
	Force bool
}

// ChangeResult says what a pointer change did.
type ChangeResult struct {
	Action  string   `json:"action"`
	Key     string   `json:"pointer"`
	From    string   `json:"from_version,omitempty"`
	To      string   `json:"to_version,omitempty"`
	Pointer *Pointer `json:"new_pointer,omitempty"`
	// Unchanged is true when the pointer already had the asked-for value.
	Unchanged bool `json:"unchanged"`
	// ShadowCleared is true when the version made active was the shadow:
	// the shadow pointer was removed (audited as shadow_off), since a
	// shadow runs a different version beside the active one.
	ShadowCleared bool        `json:"shadow_cleared,omitempty"`
	Forced        bool        `json:"forced"`
	Gates         *GateReport `json:"gates,omitempty"`
}

// maxCASAttempts bounds the retries when another actor changes the pointer
// between our read and our compare-and-set.
const maxCASAttempts = 5

// Activate makes version the active one after it passes the gates.
func (r *Registry) Activate(ctx context.Context, version string, opts ChangeOptions) (*ChangeResult, error) {
	return r.change(ctx, schemas.AuditActivate, KeyActive, opts, func(*Pointer) (string, error) { return version, nil })
}

// Rollback makes the previously active version (or to, when set) active
// again, after it passes the gates.
func (r *Registry) Rollback(ctx context.Context, to string, opts ChangeOptions) (*ChangeResult, error) {
	return r.change(ctx, schemas.AuditRollback, KeyActive, opts, func(cur *Pointer) (string, error) {
		switch {
		case to != "":
			return to, nil
		case cur == nil || cur.Previous == "":
			return "", fmt.Errorf("%w: the active pointer records none (use --to VERSION; see `cardiostream model history`)", ErrNoPrevious)
		}
		return cur.Previous, nil
	})
}

// SetShadow makes version the shadow (challenger) after it passes the gates.
func (r *Registry) SetShadow(ctx context.Context, version string, opts ChangeOptions) (*ChangeResult, error) {
	return r.change(ctx, schemas.AuditShadowSet, KeyShadow, opts, func(*Pointer) (string, error) { return version, nil })
}

// ShadowOff removes the shadow pointer. Without a shadow it is a no-op.
func (r *Registry) ShadowOff(ctx context.Context, opts ChangeOptions) (*ChangeResult, error) {
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	res := &ChangeResult{Action: schemas.AuditShadowOff, Key: KeyShadow}
	removed, err := r.removeShadow(ctx, func(*Pointer) bool { return true }, schemas.AuditEntry{Actor: opts.Actor, Reason: opts.Reason})
	if removed == nil {
		res.Unchanged = err == nil
		if err != nil {
			return nil, err
		}
		return res, nil
	}
	res.From = removed.Version
	return res, err
}

// removeShadow deletes the shadow pointer if it is set and match accepts
// it, compare-and-set on its revision, and audits the removal as shadow_off
// (entry gives actor, reason and details). It returns the removed pointer,
// or nil when there was none to remove.
func (r *Registry) removeShadow(ctx context.Context, match func(*Pointer) bool, entry schemas.AuditEntry) (*Pointer, error) {
	var sent *Pointer // removed by an attempt whose answer was lost, if it landed
	delay := jsretry.BackoffMin
	for conflicts := 0; conflicts < maxCASAttempts; {
		cur, rev, err := r.pointer(ctx, KeyShadow)
		if err != nil {
			return nil, fmt.Errorf("reading the shadow pointer: %w", err)
		}
		if cur == nil && sent != nil {
			return sent, r.auditShadowOff(ctx, sent, entry) // the lost attempt landed
		}
		if cur == nil || !match(cur) {
			return nil, nil
		}
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err = r.kv.Delete(actx, KeyShadow, jetstream.LastRevision(rev))
		cancel()
		switch {
		case isRevisionConflict(err):
			conflicts++
			continue
		case jsretry.Transient(ctx, err):
			if sent == nil {
				r.log.Warn("removing the shadow pointer: the cluster did not answer; reading it again and retrying", "err", err)
			}
			sent = cur
			var ok bool
			if delay, ok = jsretry.Backoff(ctx, delay); !ok {
				return nil, fmt.Errorf("removing the shadow pointer: %w; %w", err, errNoAnswerInTime)
			}
			continue
		case err != nil:
			return nil, fmt.Errorf("removing the shadow pointer: %w", err)
		}
		return cur, r.auditShadowOff(ctx, cur, entry)
	}
	return nil, fmt.Errorf("%w: the shadow pointer changed %d times while we tried to remove it", ErrConflict, maxCASAttempts)
}

func (r *Registry) auditShadowOff(ctx context.Context, removed *Pointer, entry schemas.AuditEntry) error {
	entry.Action, entry.FromVersion, entry.SHA256 = schemas.AuditShadowOff, removed.Version, removed.SHA256
	return r.Audit(ctx, entry)
}

func isRevisionConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// change moves pointer key to the version target picks from the current
// pointer, compare-and-set on the key's revision.
func (r *Registry) change(ctx context.Context, action, key string, opts ChangeOptions, target func(cur *Pointer) (string, error)) (*ChangeResult, error) {
	if opts.Force && r.cfg.Production {
		return nil, fmt.Errorf("%w: fix the version or push a new one (the gates guard production)", ErrForceRefused)
	}
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	res := &ChangeResult{Action: action, Key: key}
	validated := "" // the version whose gates already ran
	// Pointers written by attempts whose answer was lost: one of them may
	// have landed, and then the change is done (and still to be audited).
	var sent []*Pointer
	delay := jsretry.BackoffMin
	for conflicts := 0; conflicts < maxCASAttempts; {
		cur, rev, err := r.pointer(ctx, key)
		if err != nil {
			return nil, err
		}
		if i := slices.IndexFunc(sent, func(p *Pointer) bool { return samePointer(p, cur) }); i >= 0 {
			res.Pointer, res.From, res.To = sent[i], sent[i].Previous, sent[i].Version
			return r.changed(ctx, res, key, opts)
		}
		version, err := target(cur)
		if err != nil {
			return nil, err
		}
		if err := ValidVersion(version); err != nil {
			return nil, err
		}
		res.To = version
		if cur != nil {
			res.From = cur.Version
		}
		if cur != nil && cur.Version == version {
			res.Unchanged, res.Pointer = true, cur
			return res, nil
		}
		if key == KeyShadow {
			if act, _, err := r.pointer(ctx, KeyActive); err != nil {
				return nil, err
			} else if act != nil && act.Version == version {
				return nil, fmt.Errorf("version %s is the active version; a shadow runs a different version beside it", version)
			}
		}
		if validated != version {
			if err := r.gate(ctx, action, version, res, opts); err != nil {
				return nil, err
			}
			validated = version
		}
		p := &Pointer{
			Version: version, SHA256: res.Gates.sha256, ChangedAt: r.now().UTC(),
			Actor: opts.Actor, Reason: opts.Reason, Forced: res.Forced,
		}
		if cur != nil {
			p.Previous = cur.Version
		}
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		if rev == 0 {
			_, err = r.kv.Create(actx, key, mustJSON(p))
		} else {
			_, err = r.kv.Update(actx, key, mustJSON(p), rev)
		}
		cancel()
		switch {
		case isRevisionConflict(err):
			r.log.Info("pointer changed concurrently; retrying", "pointer", key, "action", action)
			conflicts++
			continue
		case jsretry.Transient(ctx, err):
			// Read the pointer again: the write may have landed.
			if len(sent) == 0 {
				r.log.Warn("updating a pointer: the cluster did not answer; reading it again and retrying", "pointer", key, "err", err)
			}
			sent = append(sent, p)
			var ok bool
			if delay, ok = jsretry.Backoff(ctx, delay); !ok {
				return nil, fmt.Errorf("updating pointer %s: %w; %w", key, err, errNoAnswerInTime)
			}
			continue
		case err != nil:
			return nil, fmt.Errorf("updating pointer %s: %w", key, err)
		}
		res.Pointer = p
		return r.changed(ctx, res, key, opts)
	}
	return nil, fmt.Errorf("%w: pointer %s changed %d times while we tried; retry", ErrConflict, key, maxCASAttempts)
}

// samePointer reports whether two pointer values are the same write (the
// time and actor make a write's value unique).
func samePointer(a, b *Pointer) bool {
	return a != nil && b != nil && a.Version == b.Version && a.SHA256 == b.SHA256 && a.ChangedAt.Equal(b.ChangedAt) &&
		a.Actor == b.Actor && a.Reason == b.Reason && a.Previous == b.Previous && a.Forced == b.Forced
}

// changed audits the pointer change res describes (res.Pointer written)
// and, for the active pointer, removes a shadow naming the same version.
func (r *Registry) changed(ctx context.Context, res *ChangeResult, key string, opts ChangeOptions) (*ChangeResult, error) {
	p := res.Pointer
	e := schemas.AuditEntry{
		Action: res.Action, Actor: opts.Actor, At: p.ChangedAt, FromVersion: res.From, ToVersion: p.Version,
		SHA256: p.SHA256, Reason: opts.Reason, Forced: res.Forced,
	}
	for _, c := range res.Gates.Failed() {
		e.Details = append(e.Details, "forced past: "+c.String())
	}
	if err := r.Audit(ctx, e); err != nil {
		return res, fmt.Errorf("pointer %s now names %s, but %w", key, p.Version, err)
	}
	if key == KeyActive {
		cleared, err := r.clearShadowIf(ctx, p.Version, opts)
		res.ShadowCleared = cleared
		if err != nil {
			return res, fmt.Errorf("version %s is now active, but %w", p.Version, err)
		}
	}
	return res, nil
}

// clearShadowIf removes the shadow pointer while it names version (just made
// active): scoring a version beside itself would only double the work. A
// shadow changed to another version meanwhile is left alone.
func (r *Registry) clearShadowIf(ctx context.Context, version string, opts ChangeOptions) (bool, error) {
	removed, err := r.removeShadow(ctx, func(p *Pointer) bool { return p.Version == version }, schemas.AuditEntry{
		Actor: opts.Actor, Reason: "promoted to active", Details: []string{"the shadow version became the active one"},
	})
	return removed != nil, err
}

// gate fetches (integrity, signature) and evaluates version. Failed quality
// checks refuse unless forced; integrity failures always refuse. Every
// refusal is audited as gate_refused.
func (r *Registry) gate(ctx context.Context, action, version string, res *ChangeResult, opts ChangeOptions) error {
	refuse := func(details []string, err error) error {
		if aerr := r.Audit(ctx, schemas.AuditEntry{
			Action: schemas.AuditGateRefused, Actor: opts.Actor, ToVersion: version, Reason: opts.Reason,
			Details: append([]string{"refused " + action}, details...),
		}); aerr != nil {
			return errors.Join(err, aerr)
		}
		return err
	}
	a, err := r.Fetch(ctx, version)
	switch {
	case errors.Is(err, ErrTampered), errors.Is(err, ErrUnsigned), errors.Is(err, ErrBadSignature), errors.Is(err, ErrIncomplete):
		c := Check{Name: "integrity", Detail: err.Error()}
		return refuse([]string{c.String()}, &GateError{Version: version, Failed: []Check{c}})
	case err != nil:
		return err
	}
	rep, err := r.Evaluate(a)
	if err != nil {
		return err
	}
	rep.sha256 = a.SHA256
	res.Gates = rep
	if rep.OK() {
		return nil
	}
	if opts.Force {
		res.Forced = true
		return nil
	}
	var lines []string
	for _, c := range rep.Failed() {
		lines = append(lines, c.String())
	}
	return refuse(lines, &GateError{Version: version, Failed: rep.Failed()})
}
