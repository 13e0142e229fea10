// Package natstest starts real embedded nats-servers with JetStream for tests:
// in-process, on 127.0.0.1, random ports, storage in t.TempDir(). It also has
// the polling helper tests use instead of sleeping. Only tests import it.
package natstest
