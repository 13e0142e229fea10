// Package ops serves the operational HTTP endpoints of a cardiostream process:
// /metrics (Prometheus, from the process's own registry, optionally behind a
// bearer token), /healthz (the process is alive) and /readyz (every component
// is connected and consuming). It knows nothing of scorers or monitors: they
// are registered as named readiness checks.
package ops
