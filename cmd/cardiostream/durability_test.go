package main

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/cardiostream/cardiostream/config"
)

// TestEmbeddedServerSyncMode (issue 3, promise 10): the embedded server that
// standalone starts (startEmbedded, from the loaded configuration) really
// runs JetStream with sync_always in staging and production, lazily in
// development, and as the operator overrides it. Read back from the running
// server's own varz, not from our configuration.
func TestEmbeddedServerSyncMode(t *testing.T) {
	tests := []struct {
		name    string
		env     string
		environ []string
		want    bool
	}{
		{name: "development is lazy", env: config.Development, want: false},
		{name: "staging syncs always", env: config.Staging, want: true},
		{name: "production syncs always", env: config.Production, want: true},
		{name: "operator chooses lazy in staging", env: config.Staging,
			environ: []string{"CARDIOSTREAM_NATS__EMBEDDED__SYNC_ALWAYS=false"}, want: false},
		{name: "operator chooses always in development", env: config.Development,
			environ: []string{"CARDIOSTREAM_NATS__EMBEDDED__SYNC_ALWAYS=true"}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Load(config.LoadOptions{Env: tt.env, Environ: append([]string{}, tt.environ...)})
			if err != nil {
				t.Fatal(err)
			}
			cfg.NATS.Embedded.Listen = "127.0.0.1:0"
			cfg.NATS.Embedded.DataDir = t.TempDir()
			ns, err := startEmbedded(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
			v, err := ns.Varz(&server.VarzOptions{})
			if err != nil {
				t.Fatal(err)
			}
			js := v.JetStream.Config
			if js == nil {
				t.Fatal("varz has no JetStream config: JetStream is not enabled")
			}
			if js.SyncAlways != tt.want {
				t.Errorf("running server: sync_always = %v, want %v", js.SyncAlways, tt.want)
			}
			// Lazy means nats-server's default background fsync interval.
			if !tt.want && js.SyncInterval != 2*time.Minute {
				t.Errorf("running server: sync_interval = %s, want nats-server's default 2m0s", js.SyncInterval)
			}
			if js.StoreDir != cfg.NATS.Embedded.DataDir+"/jetstream" && js.StoreDir != cfg.NATS.Embedded.DataDir {
				t.Errorf("store dir %q, want under %q", js.StoreDir, cfg.NATS.Embedded.DataDir)
			}
		})
	}
}
