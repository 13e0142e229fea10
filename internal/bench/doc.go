// Package bench holds the parts of `cardiostream bench` that know nothing
// about the scorer or the monitor: the bare JetStream relay that is the
// ceiling the pipeline is compared with, the synthetic records both are fed,
// an offered-rate load generator with a latency recorder, and small
// statistics helpers.
//
// The relay does what the scorer does on the wire and nothing else: one
// durable pull consumer read with Consume (same PullMaxMessages, pull expiry,
// MaxAckPending and AckWait as the scorer), one PublishAsync per record of an
// output of the prediction's size with a Nats-Msg-Id to the same
// file-backed PREDICTIONS stream, and an ack of the record only after the
// output's publish ack. It does not decode, validate, score or encode.
//
// It imports schemas only; it must not import scorer, monitor, ingest or cmd
// (cmd wires those into the benchmark).
package bench
