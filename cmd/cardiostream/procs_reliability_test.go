//go:build reliability

package main

import (
	"testing"
	"time"
)

// procStartReady is procStart for a command that serves /readyz on a fresh
// loopback address: it waits until the process is ready and returns how
// long that took.
func procStartReady(tb testing.TB, name string, env []string, args ...string) (*osProc, time.Duration) {
	tb.Helper()
	addr := procMetricsAddr(tb)
	began := time.Now()
	p := procStart(tb, name, env, addr, append(args, "--metrics-addr", addr)...)
	p.waitReady(tb, 60*time.Second)
	return p, time.Since(began)
}

// stop sends SIGTERM and returns the exit code (waiting up to 60 s).
func (p *osProc) stop(tb testing.TB) int {
	tb.Helper()
	code, _ := p.sigterm(tb, 60*time.Second)
	return code
}

// kill sends SIGKILL (no shutdown at all) and reaps the process.
func (p *osProc) kill(tb testing.TB) {
	tb.Helper()
	if p.done() {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		tb.Errorf("%s pid %d not reaped 30s after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}
