package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStream creates the stream, or updates it only when its configuration
// differs from want. Every process calls this at start-up; sending an update
// when nothing changed would churn a cluster with no-op updates (and
// nats-server v2.15.2 races an update against a concurrent consumer
// creation on the same stream).
func EnsureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, want.Name)
	switch {
	case err == nil && streamUpToDate(s.CachedInfo().Config, want):
		return s, nil
	case err != nil && !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("looking up stream %s: %w", want.Name, err)
	}
	s, err = js.CreateOrUpdateStream(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("creating or updating stream %s: %w", want.Name, err)
	}
	return s, nil
}

// EnsureKeyValue is EnsureStream for a KV bucket: created when missing,
// updated only when its TTL, history, replicas, storage or description
// differ.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, want.Bucket)
	switch {
	case err == nil:
		st, serr := kv.Status(ctx)
		if serr != nil {
			return nil, fmt.Errorf("reading bucket %s: %w", want.Bucket, serr)
		}
		if kvUpToDate(st, want) {
			return kv, nil
		}
	case !errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, fmt.Errorf("looking up bucket %s: %w", want.Bucket, err)
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("creating or updating bucket %s: %w", want.Bucket, err)
	}
	return kv, nil
}

// streamUpToDate compares the settings want sets (non-zero fields) with the
// stream's current configuration; zero fields are left to the server.
func streamUpToDate(have, want jetstream.StreamConfig) bool {
	sameInt := func(h, w int64) bool { return w == 0 || h == w }
	return slices.Equal(sorted(have.Subjects), sorted(want.Subjects)) &&
		have.Description == want.Description &&
		have.Retention == want.Retention &&
		have.Storage == want.Storage &&
		have.Discard == want.Discard &&
		(want.Replicas == 0 || have.Replicas == want.Replicas) &&
		sameInt(int64(have.MaxAge), int64(want.MaxAge)) &&
		sameInt(have.MaxBytes, want.MaxBytes) &&
		sameInt(have.MaxMsgs, want.MaxMsgs) &&
		sameInt(have.MaxMsgsPerSubject, want.MaxMsgsPerSubject) &&
		sameInt(int64(have.MaxMsgSize), int64(want.MaxMsgSize)) &&
		sameInt(int64(have.Duplicates), int64(want.Duplicates)) &&
		have.AllowDirect == want.AllowDirect &&
		have.DenyDelete == want.DenyDelete
}

func kvUpToDate(have jetstream.KeyValueStatus, want jetstream.KeyValueConfig) bool {
	info, ok := have.(interface{ StreamInfo() *jetstream.StreamInfo })
	if !ok {
		return false
	}
	cfg := info.StreamInfo().Config
	history := int64(want.History)
	if history == 0 {
		history = 1
	}
	replicas := want.Replicas
	if replicas == 0 {
		replicas = 1
	}
	return cfg.MaxAge == want.TTL &&
		cfg.MaxMsgsPerSubject == history &&
		cfg.Replicas == replicas &&
		cfg.Storage == want.Storage &&
		cfg.Description == want.Description &&
		(want.MaxBytes == 0 || cfg.MaxBytes == want.MaxBytes)
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
