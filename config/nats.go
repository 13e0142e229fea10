package config

import (
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
)

// firstReconnectDelay is the pause before the second round of connection
// attempts; it doubles every round up to ReconnectWait.
const firstReconnectDelay = 100 * time.Millisecond

// ReconnectDelay is the pause before connection round n (1, 2, …, counted
// by nats.go each time every server URL has been tried): 100 ms doubling per
// round up to ReconnectWait, plus up to 10% jitter so that many clients do
// not come back at the same instant. A short outage (a server restart) is
// over within a fraction of a second; a long one is retried every
// ReconnectWait.
func (n NATS) ReconnectDelay(round int) time.Duration {
	d := min(firstReconnectDelay, n.ReconnectWait)
	for i := 1; i < round && d < n.ReconnectWait; i++ {
		d *= 2
	}
	d = min(d, n.ReconnectWait)
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/10+1)
}

// ClientOptions returns the nats.go options every connection to NATS should
// use: name, timeouts, reconnection, and, for an external server, token,
// credentials and TLS. cmd adds its own handlers (disconnect logging etc.).
func (n NATS) ClientOptions() []nats.Option {
	opts := []nats.Option{
		nats.Name(n.Name),
		nats.Timeout(n.ConnectTimeout),
		nats.ReconnectWait(n.ReconnectWait),
		nats.CustomReconnectDelay(n.ReconnectDelay),
		nats.MaxReconnects(n.MaxReconnects),
	}
	if !n.External() {
		return opts
	}
	if n.Token.IsSet() {
		opts = append(opts, nats.Token(n.Token.Reveal()))
	}
	if n.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(n.CredsFile))
	}
	if n.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(n.TLS.CAFile))
	}
	if n.TLS.CertFile != "" && n.TLS.KeyFile != "" {
		opts = append(opts, nats.ClientCert(n.TLS.CertFile, n.TLS.KeyFile))
	}
	return opts
}
