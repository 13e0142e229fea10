// Package natsserver starts the embedded nats-server with JetStream that
// cardiostream runs when no external NATS is given. It owns only the server's
// lifecycle; streams are set up by package streams.
package natsserver
