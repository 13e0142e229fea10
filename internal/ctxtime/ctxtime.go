// Package ctxtime holds the context-aware sleep that the scorer, the replay,
// the webhook notifier and the model follower back off with (one copy, not
// one per package).
package ctxtime

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
