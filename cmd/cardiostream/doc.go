// Command cardiostream is the one binary of cardiostream: an embedded
// standalone system, the scorer and monitor roles against an external NATS,
// the replay tool, and configuration and model tooling. See README.md.
//
// This is the only package that wires concrete components together: it
// loads the configuration, builds the metrics registry and logger, connects
// to NATS (or starts the embedded server), and runs scorer, monitor, webhook
// notifier and ops server under one errgroup. main is os.Exit(run()); run
// turns signals into a context.
package main
