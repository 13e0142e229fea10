// Package ingest owns the replay side of cardiostream: reading patient data
// files (UCI ".data", CSV with a header, JSON Lines) into schemas.Record
// values, and publishing them to <prefix>.records.<source> (and, after a
// label delay, their outcomes to <prefix>.outcomes.<source>) on JetStream.
// It backs `cardiostream replay` and `cardiostream standalone --replay`.
//
// Replay is a client tool, not a validator: rows that cannot be parsed at all
// (wrong column count, non-numeric text, malformed JSON) are reported with
// file and line and counted, while values that parse but are out of range are
// published unchanged so that the scorer dead-letters them with reasons.
//
// Delivery: every record and outcome carries Nats-Msg-Id "<source>/<record
// id>", so re-running a replay inside the stream's duplicate window stores
// nothing twice. Publishes are asynchronous with a bounded in-flight window;
// every publish ack is awaited, transient failures (no responders, ack
// timeouts: what a publisher sees while a cluster elects a new stream
// leader) are retried with backoff under the same message id, and a message
// that still cannot be published is counted and reported, never silently
// dropped. Once a retry succeeds, the next failed message is first retried
// at once: the messages lost in one outage do not each wait a backoff.
//
// This package imports only schemas (and the NATS client). It must not import
// scorer, monitor, cmd or any other component package; cmd wires it.
package ingest
