package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/config"
	"github.com/cardiostream/cardiostream/internal/ctxtime"
	"github.com/cardiostream/cardiostream/internal/streams"
)

// defaultClientURL is where role processes look for NATS when none is
// configured: the address a standalone process listens on.
const defaultClientURL = "nats://127.0.0.1:4222"

// connectNATS connects to url and waits until the connection is up. A server
// that is not reachable yet is retried with backoff until ctx ends, so
// processes can start in any order. A server that refuses the client for
// good (nats.go closes the connection after the same authorization error
// twice) ends the wait with that error instead of an endless "waiting".
func connectNATS(ctx context.Context, cfg *config.Config, url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	// A URL may carry a password (nats://user:pass@host): never log it whole.
	shown := config.RedactURLs(url)
	log = log.With("component", "nats", "url", shown)
	attempts := &connAttempts{}
	// Name, timeouts, reconnects, and for an external server its token,
	// credentials and TLS come from the configuration.
	opts := append(cfg.NATS.ClientOptions(),
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { attempts.failed(err) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("NATS async error", "subject", subject, "err", err)
		}),
	)
	opts = append(opts, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", shown, err)
	}
	if err := waitConnected(ctx, nc, shown, attempts, cfg.NATS.ReconnectWait, log); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// connAttempts keeps the last failed connection attempt's error, reported by
// nats.go's reconnect error handler, so the wait can say why it waits.
type connAttempts struct {
	mu   sync.Mutex
	last error
}

func (a *connAttempts) failed(err error) {
	a.mu.Lock()
	a.last = err
	a.mu.Unlock()
}

// lastErr is the most recent reason the connection is not up: the
// connection's own error (an authorization violation, say) or the last
// failed attempt (connection refused, a timeout, …).
func (a *connAttempts) lastErr(nc *nats.Conn) error {
	// After a refused first attempt nc.LastError is only "no servers
	// available"; the attempts say why.
	err := nc.LastError()
	if err != nil && !errors.Is(err, nats.ErrNoServers) {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last != nil {
		return a.last
	}
	return err
}

// waitConnected waits until nc is connected, logging what it waits for
// after a moment and again whenever the reason changes. It fails when ctx
// ends or nats.go gives up (closes the connection).
func waitConnected(ctx context.Context, nc *nats.Conn, shownURL string, attempts *connAttempts, maxWait time.Duration, log *slog.Logger) error {
	start := time.Now()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	logged := false
	lastLogged := ""
	for !nc.IsConnected() {
		err := attempts.lastErr(nc)
		if nc.IsClosed() {
			if err == nil {
				err = nats.ErrConnectionClosed
			}
			return fmt.Errorf("connecting to NATS at %s: %w (the client gave up; check the URL, credentials and TLS settings)", shownURL, err)
		}
		reason := "no answer yet"
		if err != nil {
			reason = err.Error()
		}
		if time.Since(start) > 2*time.Second && reason != lastLogged {
			log.Warn("waiting for NATS to become reachable before setting up streams and consumers; retrying with backoff (is nats-server running at this address?)",
				"err", reason, "max_retry_interval", maxWait)
			logged, lastLogged = true, reason
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for NATS at %s: %w (last error: %s)", shownURL, ctx.Err(), reason)
		case <-t.C:
		}
	}
	if logged {
		log.Info("connected to NATS", "after", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// connectAndSetup connects to url, creates the JetStream context and makes
// sure the streams exist: what every process does before its components
// start. The caller drains the returned connection.
func connectAndSetup(ctx context.Context, cfg *config.Config, url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := connectNATS(ctx, cfg, url, name, log, extra...)
	if err != nil {
		return nil, nil, err
	}
	// A plain context: the scorer publishes through its own, sized to its
	// ack window, and the replay through one with ingest's options.
	js, err := jetstream.New(nc)
	if err == nil {
		err = ensureStreams(ctx, js, cfg.Streams, log)
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// ensureStreams creates or updates the streams, retrying until ctx ends: on a
// cluster that is still forming, placement can fail for a while.
func ensureStreams(ctx context.Context, js jetstream.JetStream, cfg streams.Config, log *slog.Logger) error {
	return retrySetup(ctx, "setting up streams", log, func(ctx context.Context) error {
		err := streams.Ensure(ctx, js, cfg)
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return permanent{fmt.Errorf("%w: start nats-server with JetStream enabled (-js)", err)}
		}
		return err
	})
}

// permanent marks an error retrySetup must not retry.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// retrySetup runs step (each attempt bounded by 10 s) until it succeeds, it
// returns a permanent error, or ctx ends, backing off from 100 ms to 5 s.
// Set-up steps on a cluster — creating replicated streams and buckets — can
// fail while the cluster forms or elects leaders; that is a wait, not a
// reason to exit. A changed error is logged once.
func retrySetup(ctx context.Context, what string, log *slog.Logger, step func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	var lastMsg string
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := step(actx)
		cancel()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return fmt.Errorf("%s: %w", what, p.error)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		}
		if msg := err.Error(); msg != lastMsg {
			log.Warn(what+" failed; retrying", "err", err)
			lastMsg = msg
		}
		if !ctxtime.Sleep(ctx, backoff) {
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
