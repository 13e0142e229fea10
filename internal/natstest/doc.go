// Package natstest starts real embedded nats-servers with JetStream for tests:
// in-process, on 127.0.0.1, random ports, storage in t.TempDir(). RunCluster
// starts a 3-node JetStream cluster whose nodes can be shut down and
// restarted on the same ports and store directories, with lookups for the
// node leading a stream or consumer and a wait for a node's copy of a stream
// to catch up. It also has the polling helper tests use instead of sleeping.
// Only tests import it.
package natstest
