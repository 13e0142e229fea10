//go:build reliability

package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/schemas"
)

// TestModelCommandsWhileRegistryLeaderKilled: the node leading the
// registry's KV stream is lost abruptly (SIGKILL of a nats-server OS
// process: no leadership hand-over, the survivors must notice and elect).
// Right after the kill, each model command is issued exactly once (no retry
// by the test) with the cluster's URL list, as an operator would: every
// one must succeed once the cluster has failed over, and the audit trail
// must hold each change exactly once.
func TestModelCommandsWhileRegistryLeaderKilled(t *testing.T) {
	c := natstest.RunClusterProcesses(t, 3)
	base := testEnviron("USER=release", "CARDIOSTREAM_STREAMS__REPLICAS=3", "CARDIOSTREAM_NATS__URL="+c.URLs())
	model := func(args ...string) (string, time.Duration) {
		t.Helper()
		t0 := time.Now()
		code, out, errOut := modelProcEnv(t, slices.Clone(base), args...)
		took := time.Since(t0)
		t.Logf("model %v: exit %d after %s; stderr:\n%s", args, code, took.Round(time.Millisecond), errOut)
		if code != 0 {
			t.Fatalf("model %v: exit %d after %s\nstdout:\n%s\nstderr:\n%s", args, code, took.Round(time.Millisecond), out, errOut)
		}
		return out, took
	}
	model("push", "models/heart-xgb", "--version", "1.0.0")
	model("push", "models/heart-xgb-1.1.0", "--version", "1.1.0")
	model("activate", "1.0.0")
	model("activate", "1.1.0")

	type step struct {
		args []string
		want string
	}
	steps := []step{
		{[]string{"rollback", "--reason", "leader killed"}, "active: 1.1.0 -> 1.0.0"},
		{[]string{"shadow", "1.1.0"}, "shadow: - -> 1.1.0"},
		{[]string{"list"}, "1.1.0"},
		{[]string{"show", "1.1.0"}, "version:   1.1.0 (shadow)"},
		{[]string{"shadow", "--off"}, "shadow: 1.1.0 -> none"},
		{[]string{"rollback", "--to", "1.1.0"}, "active: 1.0.0 -> 1.1.0"},
		{[]string{"history"}, "rollback"},
	}
	leader := c.StreamLeader(t, "KV_CARDIO_MODEL_REGISTRY")
	leader.Kill(t)
	killed := time.Now()
	var figures []string
	for i, s := range steps {
		out, took := model(s.args...)
		if !strings.Contains(out, s.want) {
			t.Fatalf("model %v: output lacks %q:\n%s", s.args, s.want, out)
		}
		if i == 0 {
			figures = append(figures, fmt.Sprintf("first_command_s=%.2f", took.Seconds()))
		}
	}
	figures = append(figures, fmt.Sprintf("all_commands_s=%.2f", time.Since(killed).Seconds()))

	leader.Restart(t)
	c.WaitReady(t, 60*time.Second)
	code, out, errOut := modelProcEnv(t, testEnviron("USER=release", "CARDIOSTREAM_NATS__URL="+leader.ClientURL()), "history", "--json")
	if code != 0 {
		t.Fatalf("history via the restarted node: exit %d\n%s", code, errOut)
	}
	var hist []schemas.AuditEntry
	if err := json.Unmarshal([]byte(out), &hist); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range hist {
		got = append(got, e.Action+":"+e.FromVersion+">"+e.ToVersion)
	}
	want := []string{"push:>1.0.0", "push:>1.1.0", "activate:>1.0.0", "activate:1.0.0>1.1.0",
		"rollback:1.1.0>1.0.0", "shadow_set:>1.1.0", "shadow_off:1.1.0>", "rollback:1.0.0>1.1.0"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("history\n got %v\nwant %v", got, want)
	}
	code, out, errOut = modelProcEnv(t, testEnviron("USER=release", "CARDIOSTREAM_NATS__URL="+leader.ClientURL()), "list", "--json")
	var vs []registry.VersionInfo
	if code != 0 || json.Unmarshal([]byte(out), &vs) != nil {
		t.Fatalf("list via the restarted node: exit %d\n%s%s", code, out, errOut)
	}
	for _, v := range vs {
		if v.Active != (v.Version == "1.1.0") || v.Shadow {
			t.Errorf("list via the restarted node: %s active %v shadow %v", v.Version, v.Active, v.Shadow)
		}
	}
	t.Logf("FIGURE TestModelCommandsWhileRegistryLeaderKilled %s", strings.Join(figures, " "))
}
