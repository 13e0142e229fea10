package config

import (
	"github.com/nats-io/nats.go"
)

// ClientOptions returns the nats.go options every connection to NATS should
// use: name, timeouts, reconnection, and, for an external server, token,
// credentials and TLS. cmd adds its own handlers (disconnect logging etc.).
func (n NATS) ClientOptions() []nats.Option {
	opts := []nats.Option{
		nats.Name(n.Name),
		nats.Timeout(n.ConnectTimeout),
		nats.ReconnectWait(n.ReconnectWait),
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
