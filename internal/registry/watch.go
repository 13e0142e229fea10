package registry

import (
	"context"
	"fmt"
)

// Watch delivers the pointer state: the current state first, then the
// state after every change of the active or shadow pointer. A slow reader
// never blocks the watch and never sees a stale state: an undelivered state
// is replaced by the newer one. The channel is closed when ctx ends (or the
// watch fails; the error is logged).
func (r *Registry) Watch(ctx context.Context) (<-chan Pointers, error) {
	w, err := r.kv.WatchFiltered(ctx, []string{KeyActive, KeyShadow})
	if err != nil {
		return nil, fmt.Errorf("watching the registry pointers: %w", err)
	}
	out := make(chan Pointers, 1)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		var cur Pointers
		initial := true
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					if ctx.Err() == nil {
						r.log.Warn("registry pointer watch ended")
					}
					return
				}
				if e == nil { // end of the initial values
					initial = false
					r.publish(ctx, out, cur)
					continue
				}
				p, err := decodePointer(e)
				if err != nil {
					r.log.Warn("ignoring an unreadable pointer", "err", err)
					continue
				}
				switch e.Key() {
				case KeyActive:
					cur.Active = p
				case KeyShadow:
					cur.Shadow = p
				}
				cur.Revision = max(cur.Revision, e.Revision())
				if !initial {
					r.publish(ctx, out, cur)
				}
			}
		}
	}()
	return out, nil
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
