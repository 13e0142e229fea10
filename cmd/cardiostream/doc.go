// Command cardiostream is the one binary of cardiostream: an embedded
// standalone system, the scorer and monitor roles against an external NATS,
// the replay tool, configuration and model tooling, and the benchmark
// (bench: the scorer against a bare relay on an embedded server, with the
// scorer, relay and monitor as child processes). See README.md.
//
// This is the only package that wires concrete components together: it
// loads the configuration, builds the metrics registry and logger, connects
// to NATS (or starts the embedded server), and runs scorer, monitor, webhook
// notifier and ops server under one errgroup. main is os.Exit(run()); run
// turns signals into a context.
package main
