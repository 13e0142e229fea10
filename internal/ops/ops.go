package ops

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cardiostream/cardiostream/internal/secret"
)

// Check reports nil when its component is ready.
type Check func() error

// Config configures the server.
type Config struct {
	// Listen is host:port; port 0 picks a free one.
	Listen string `koanf:"listen"`
	// ReadHeaderTimeout bounds how long a client may take to send headers.
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout"`
	// ShutdownTimeout bounds the graceful shutdown of open requests.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("http.listen: %q is not host:port: %w", c.Listen, err)
	}
	return nil
}

// Server is the operational HTTP server.
type Server struct {
	cfg      Config
	gatherer prometheus.Gatherer
	token    secret.String
	log      *slog.Logger

	mu       sync.Mutex
	checks   map[string]Check
	degraded map[string]bool // checks whose failure degrades, not fails, readiness
	ln       net.Listener
}

// New returns a server exposing gatherer's metrics. When metricsToken is set,
// /metrics requires "Authorization: Bearer <token>".
func New(cfg Config, gatherer prometheus.Gatherer, metricsToken secret.String, log *slog.Logger) *Server {
	return &Server{cfg: cfg, gatherer: gatherer, token: metricsToken, log: log.With("component", "ops"),
		checks: map[string]Check{}, degraded: map[string]bool{}}
}

// AddDegradedCheck registers a check whose failure marks the process
// degraded rather than not ready: /readyz still answers 200 (the process
// works), its body shows "degraded: <error>" under name and "status":
// "degraded". The scorer's model check is one: refusing a new model artifact
// leaves it serving the one it has.
func (s *Server) AddDegradedCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
	s.degraded[name] = true
}

// AddCheck registers a readiness check under name.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// Listen binds the listener, so the address is known before Serve.
func (s *Server) Listen() (net.Addr, error) {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics on %s (set --metrics-addr to a free address): %w", s.cfg.Listen, err)
	}
	s.ln = ln
	return ln.Addr(), nil
}

// Handler returns the HTTP handler (tests use it with httptest).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)})
	mux.Handle("GET /metrics", s.requireToken(metrics))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	return mux
}

func (s *Server) requireToken(next http.Handler) http.Handler {
	if !s.token.IsSet() {
		return next
	}
	want := []byte("Bearer " + s.token.Reveal())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cardiostream metrics"`)
			http.Error(w, "metrics need Authorization: Bearer <MONITORING_KEY>", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make([]Check, len(names))
	soft := make([]bool, len(names))
	sort.Strings(names)
	for i, n := range names {
		checks[i], soft[i] = s.checks[n], s.degraded[n]
	}
	s.mu.Unlock()

	status := http.StatusOK
	body := map[string]string{}
	degraded := false
	for i, c := range checks {
		switch err := c(); {
		case err == nil:
			body[names[i]] = "ok"
		case soft[i]:
			degraded = true
			body[names[i]] = "degraded: " + err.Error()
		default:
			status = http.StatusServiceUnavailable
			body[names[i]] = err.Error()
		}
	}
	if degraded {
		body["status"] = "degraded"
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Run serves until ctx ends, then shuts down gracefully. Listen must have
// been called, or Run binds cfg.Listen itself.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		if _, err := s.Listen(); err != nil {
			return err
		}
	}
	rht := s.cfg.ReadHeaderTimeout
	if rht <= 0 {
		rht = 5 * time.Second
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: rht}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving metrics: %w", err)
	case <-ctx.Done():
	}
	timeout := s.cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	return err
}
