package streams_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

func TestEnsureIsIdempotentAndApplies(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns)
	ctx := context.Background()
	cfg := streams.DefaultConfig()
	for i := 0; i < 2; i++ {
		if err := streams.Ensure(ctx, js, cfg); err != nil {
			t.Fatalf("Ensure #%d: %v", i+1, err)
		}
	}
	// An update (new retention) applies to the existing stream.
	cfg.Records.MaxAge = 48 * time.Hour
	if err := streams.Ensure(ctx, js, cfg); err != nil {
		t.Fatalf("Ensure with new limits: %v", err)
	}
	want := map[string]string{
		schemas.StreamRecords:     "cardio.records.>",
		schemas.StreamPredictions: "cardio.predictions.>",
		schemas.StreamOutcomes:    "cardio.outcomes.>",
		schemas.StreamDeadLetter:  "cardio.deadletter.>",
		schemas.StreamAlerts:      "cardio.alerts.>",
		schemas.StreamAudit:       "cardio.audit.>",
	}
	for name, subj := range want {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Config.Subjects) != 1 || info.Config.Subjects[0] != subj {
			t.Errorf("%s subjects = %v, want [%s]", name, info.Config.Subjects, subj)
		}
		if info.Config.MaxAge <= 0 || info.Config.Duplicates != cfg.DuplicateWindow {
			t.Errorf("%s: max_age %v, duplicates %v", name, info.Config.MaxAge, info.Config.Duplicates)
		}
		if info.Config.Discard != jetstream.DiscardNew {
			t.Errorf("%s: discard %v, want new (refuse, never drop silently)", name, info.Config.Discard)
		}
		if name == schemas.StreamRecords && info.Config.MaxAge != 48*time.Hour {
			t.Errorf("RECORDS max_age not updated: %v", info.Config.MaxAge)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*streams.Config)
		wantErr string
	}{
		{name: "defaults", mutate: func(*streams.Config) {}},
		{name: "bad prefix", mutate: func(c *streams.Config) { c.Prefix = "a.b" }, wantErr: "streams.prefix"},
		{name: "replicas 2", mutate: func(c *streams.Config) { c.Replicas = 2 }, wantErr: "streams.replicas"},
		{name: "storage", mutate: func(c *streams.Config) { c.Storage = "disk" }, wantErr: "streams.storage"},
		{name: "no max age", mutate: func(c *streams.Config) { c.Alerts.MaxAge = 0 }, wantErr: "streams.alerts.max_age"},
		{name: "negative bytes", mutate: func(c *streams.Config) { c.Records.MaxBytes = -5 }, wantErr: "streams.records"},
		{name: "no dedup window", mutate: func(c *streams.Config) { c.DuplicateWindow = 0 }, wantErr: "streams.duplicate_window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := streams.DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

// TestEnsureUpdatesOnlyWhatChanged: calling Ensure again with the same
// configuration sends no stream update (no UPDATED advisory); a changed
// limit sends exactly one, for that stream. The same holds for KV buckets.
func TestEnsureUpdatesOnlyWhatChanged(t *testing.T) {
	ns := natstest.RunServer(t)
	nc, js := natstest.Connect(t, ns)
	ctx := context.Background()
	updates := make(chan string, 100)
	sub, err := nc.Subscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.>", func(m *nats.Msg) { updates <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	cfg := streams.DefaultConfig()
	kvCfg := jetstream.KeyValueConfig{Bucket: "TEST_BUCKET", TTL: time.Hour, History: 1, Storage: jetstream.FileStorage}
	for i := 0; i < 3; i++ {
		if err := streams.Ensure(ctx, js, cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := streams.EnsureKeyValue(ctx, js, kvCfg); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Predictions.MaxAge = 12 * time.Hour
	if err := streams.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	kvCfg.TTL = 2 * time.Hour
	if _, err := streams.EnsureKeyValue(ctx, js, kvCfg); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	natstest.Eventually(t, 5*time.Second, func() error {
		for {
			select {
			case s := <-updates:
				got = append(got, s)
				continue
			default:
			}
			break
		}
		if len(got) < 2 {
			return fmt.Errorf("updates so far: %v", got)
		}
		return nil
	})
	want := []string{"$JS.EVENT.ADVISORY.STREAM.UPDATED.PREDICTIONS", "$JS.EVENT.ADVISORY.STREAM.UPDATED.KV_TEST_BUCKET"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("stream updates %v, want exactly %v", got, want)
	}
	s, err := js.Stream(ctx, schemas.StreamPredictions)
	if err != nil {
		t.Fatal(err)
	}
	if s.CachedInfo().Config.MaxAge != 12*time.Hour {
		t.Errorf("PREDICTIONS max_age = %v after the update", s.CachedInfo().Config.MaxAge)
	}
}
