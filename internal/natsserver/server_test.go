package natsserver

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartRefusesABusyPortAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start := time.Now()
	_, err = Start(Config{Listen: ln.Addr().String(), DataDir: t.TempDir(), StartTimeout: 20 * time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "--nats-listen") {
		t.Fatalf("err = %v, want a busy-port error with advice", err)
	}
	// Not the start timeout: the check is immediate. (Generous bound: this
	// asserts "did not wait 20 s", not a speed.)
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("waited %s for a busy port", waited)
	}
}

func TestStartServesJetStream(t *testing.T) {
	ns, err := Start(Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), SyncAlways: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.JetStreamEnabled() {
		t.Error("JetStream not enabled")
	}
	if !ns.ReadyForConnections(time.Second) || !strings.HasPrefix(ns.ClientURL(), "nats://127.0.0.1:") {
		t.Errorf("client URL %q", ns.ClientURL())
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"ok", Config{Listen: "127.0.0.1:4222", DataDir: "/tmp/x"}, ""},
		{"no port", Config{Listen: "127.0.0.1", DataDir: "/tmp/x"}, "nats.embedded.listen"},
		{"bad port", Config{Listen: "127.0.0.1:99999", DataDir: "/tmp/x"}, "nats.embedded.listen"},
		{"no data dir", Config{Listen: "127.0.0.1:4222"}, "nats.embedded.data_dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
