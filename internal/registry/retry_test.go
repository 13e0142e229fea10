package registry_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/registry"
)

// TestRegistryWaitsOutJetStreamUnavailable: while JetStream does not answer
// (as while a cluster elects the leader of a bucket's stream, where every
// request finds no responders: TestRegistryChangesWhileKVLeaderKilled),
// pointer changes, reads and the audit wait and retry within
// registry.timeout instead of failing with "no responders"; each change is
// audited once. Before the fix a rollback failed at once with "reading
// pointer active: nats: no responders available for request".
func TestRegistryWaitsOutJetStreamUnavailable(t *testing.T) {
	natstest.SkipJetStreamOutageUnderRace(t)
	dir := t.TempDir()
	ns := natstest.RunServerIn(t, dir)
	_, js := natstest.Connect(t, ns)
	e := &env{js: js, r: openRegistry(t, js, nil)}
	e.push(t, dirV100, "1.0.0")
	e.push(t, dirV110, "1.1.0")
	opts := registry.ChangeOptions{Actor: "tester@host"}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, err := e.r.Activate(ctx(t), v, opts); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name string
		do   func() error
	}{
		{"rollback", func() error { _, err := e.r.Rollback(ctx(t), "", opts); return err }},
		{"shadow", func() error { _, err := e.r.SetShadow(ctx(t), "1.1.0", opts); return err }},
		// List and History retry too, but an attempt of theirs waits out
		// its 5-10 s bound here (their consumers are not refused), too
		// slow for the plain suite; the cluster tests run them.
		{"shadow off", func() error { _, err := e.r.ShadowOff(ctx(t), opts); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// JetStream comes back while the call retries.
			err := natstest.JetStreamOutage(t, ns, dir, 700*time.Millisecond, tt.do)
			if err != nil {
				t.Fatalf("%s while JetStream was unavailable: %v", tt.name, err)
			}
		})
	}
	got := strings.Join(actions(auditEntries(t, js)), " ")
	if want := "push push activate activate rollback shadow_set shadow_off"; got != want {
		t.Fatalf("audit actions %q, want %q", got, want)
	}
}
