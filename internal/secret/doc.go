// Package secret has the String type every secret in cardiostream's
// configuration uses (API keys, webhook signing keys, NATS tokens), so a
// secret cannot leak through fmt, JSON, YAML or slog by accident.
package secret
