package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Watch delivers the pointer state: the current state first, then the
// state after every change of the active or shadow pointer. A slow reader
// never blocks the watch and never sees a stale state: an undelivered state
// is replaced by the newer one. The channel is closed when ctx ends.
//
// Changes come from a KV watch (milliseconds) and, as a backstop, from
// reading the pointers every Config.PointerPoll: after a server restart the
// KV watch needs ~20 s to notice that its consumer is gone. Each pointer
// only moves forward in KV revision, so the two sources cannot undo each
// other.
func (r *Registry) Watch(ctx context.Context) (<-chan Pointers, error) {
	w, err := r.kv.WatchFiltered(ctx, []string{KeyActive, KeyShadow})
	if err != nil {
		return nil, fmt.Errorf("watching the registry pointers: %w", err)
	}
	out := make(chan Pointers, 1)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		st := watchState{revs: map[string]uint64{}}
		initial := true
		poll := time.NewTicker(r.cfg.PointerPoll)
		defer poll.Stop()
		updates := w.Updates()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-updates:
				if !ok {
					// Keep serving from the poll; log once.
					if ctx.Err() == nil {
						r.log.Warn("registry pointer watch ended; following the pointers by polling")
					}
					updates = nil
					continue
				}
				if e == nil { // end of the initial values
					initial = false
					r.publish(ctx, out, st.cur)
					continue
				}
				p, err := decodePointer(e)
				if err != nil {
					r.log.Warn("ignoring an unreadable pointer", "err", err)
					continue
				}
				if st.apply(e.Key(), p, e.Revision()) && !initial {
					r.publish(ctx, out, st.cur)
				}
			case <-poll.C:
				if initial && updates != nil {
					continue
				}
				changed := false
				for _, key := range []string{KeyActive, KeyShadow} {
					p, rev, err := r.lastPointer(ctx, key)
					if err != nil {
						continue // NATS unreachable: the next tick retries
					}
					changed = st.apply(key, p, rev) || changed
				}
				if changed || initial {
					initial = false
					r.publish(ctx, out, st.cur)
				}
			}
		}
	}()
	return out, nil
}

// watchState is the pointer state with each key's revision.
type watchState struct {
	cur  Pointers
	revs map[string]uint64
}

// apply records p (nil = deleted) for key at rev when rev is newer than what
// is known; it reports whether the state changed.
func (s *watchState) apply(key string, p *Pointer, rev uint64) bool {
	if rev <= s.revs[key] {
		return false
	}
	s.revs[key] = rev
	switch key {
	case KeyActive:
		s.cur.Active = p
	case KeyShadow:
		s.cur.Shadow = p
	default:
		return false
	}
	s.cur.Revision = max(s.cur.Revision, rev)
	return true
}

// lastPointer reads a pointer's latest entry, delete markers included (a
// KV Get hides them), so a deletion has a revision like any other change.
func (r *Registry) lastPointer(ctx context.Context, key string) (*Pointer, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PointerPoll)
	defer cancel()
	e, err := r.kv.Get(ctx, key)
	switch {
	case err == nil:
		p, derr := decodePointer(e)
		return p, e.Revision(), derr
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, err
	}
	// Deleted or never set: the delete marker's sequence, if any, is the
	// revision of the deletion.
	m, err := r.kvRaw.GetLastMsgForSubject(ctx, "$KV."+r.cfg.PointersBucket+"."+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return nil, m.Sequence, nil
}

// publish replaces an undelivered state in out by p. Only the watch
// goroutine sends, so after draining there is room.
func (r *Registry) publish(ctx context.Context, out chan Pointers, p Pointers) {
	select {
	case <-out:
	default:
	}
	select {
	case out <- clonePointers(p):
	case <-ctx.Done():
	}
}

func clonePointers(p Pointers) Pointers {
	if p.Active != nil {
		a := *p.Active
		p.Active = &a
	}
	if p.Shadow != nil {
		s := *p.Shadow
		p.Shadow = &s
	}
	return p
}
