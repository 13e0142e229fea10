// Package streams owns the JetStream topology shared by every cardiostream
// component: the six streams (RECORDS, PREDICTIONS, OUTCOMES, DEADLETTER,
// ALERTS, AUDIT), their retention limits, and the names of the durable consumers.
// Setup is idempotent: every process may call Ensure at start-up.
//
// It imports only schemas; scorer, monitor and ingest import it.
package streams
