// Package monitor watches the model in production. It consumes predictions,
// outcomes and dead letters, joins each prediction with its outcome by
// (source, record_id) whichever arrives first, computes live metrics
// (accuracy, precision, recall, F1, confusion matrix, latency quantiles,
// error rate; cumulatively and over a sliding window), exports them to
// Prometheus, evaluates alert rules and publishes every alert transition to
// the ALERTS stream (<prefix>.alerts.<rule>, schemas.Alert).
//
// It owns: the durable consumers monitor-predictions (filter
// <prefix>.predictions.*, so shadow predictions are not counted as
// predictions), monitor-shadow (<prefix>.predictions.shadow.*),
// monitor-outcomes, monitor-deadletter and monitor-audit
// (<prefix>.audit.model.artifact_refused, see audit.go); the
// pending bucket (KV, default CARDIO_MONITOR_PENDING, TTL = label_deadline);
// the ledger stream (default MONITOR_LEDGER, <prefix>.monitor.ledger.<kind>.<source>);
// the joined bucket (default CARDIO_MONITOR_JOINED, TTL joined_ttl); the
// state bucket holding the checkpoint (default CARDIO_MONITOR_STATE);
// and publishing to ALERTS. It does not deliver webhooks (monitor/webhook
// consumes ALERTS).
//
// It imports schemas and internal/streams only; it must not import scorer,
// ingest, monitor/webhook or cmd.
//
// # Joins survive restarts
//
// The pending side of every join lives in the pending bucket, one key per
// (source, record_id): "r." + hex of the first 128 bits of SHA-256 over
// source, NUL, record_id (client ids are not valid KV keys). The value
// holds each side's label and arrival time (never patient features) and a
// "resolved" flag, and every change is a compare-and-set on the key's
// revision, so concurrent handlers, in one process or several, agree on
// which of them completes a join. For each input the handler reads the
// entry, publishes the input's ledger event and, if both sides are then
// present, the join event (with the joined marker, below, concurrently),
// then CASes its side, and the resolved flag, into the entry in one write.
// Inputs are acked only after those writes succeed; a
// redelivery at any point either finds its side already recorded (a
// duplicate: not counted again) or repeats a ledger publish that the
// ledger's Nats-Msg-Id deduplication drops. An outcome whose record was
// dead-lettered resolves as "unscorable" the same way. Entries expire with
// the label deadline, which bounds the bucket. Before an entry is marked
// resolved, a one-byte marker under the same key goes to the joined bucket
// (default CARDIO_MONITOR_JOINED, TTL joined_ttl, default 7 days); an input
// that finds no pending entry but a marker is a late duplicate of a joined
// record and is dropped (cardiostream_monitor_late_duplicates_total). A
// duplicate arriving after joined_ttl, or a duplicate of a side whose entry
// expired unresolved, is still counted again: nothing remembers it.
//
// Within a process, each consume loop only decodes its messages and queues
// each on one of Consumer.Lanes lanes chosen by (source, record_id): the
// lanes overlap the round trips of different records, and two inputs for
// the same record are handled one after the other in delivery order. On
// shutdown the queued inputs are finished (until ShutdownTimeout) before
// the final checkpoint; an input not finished stays unacked and is
// redelivered.
//
// # The metrics are a fold over the ledger
//
// Every aggregate is a pure function of the ledger: one event per distinct
// input (prediction, outcome, dead letter) and one per resolution (join,
// unscorable), each stamped with the monitor's clock. Every monitor process
// reads the whole ledger with its own ordered consumer, so several monitors
// report the same numbers, and a restart gives exactly the numbers of an
// uninterrupted run: every CheckpointInterval (and at shutdown) the fold's
// state (counters, confusion matrix, latency histogram, window samples,
// pending counts) is saved with the ledger sequence it includes; on start
// the checkpoint is loaded and the ledger replayed from the next sequence
// (or from its start when there is no usable checkpoint). Ready reports nil
// once that replay has reached the ledger's end as it was at start-up.
// Counts from the checkpoint onward depend on the ledger still holding
// those events (ledger.max_age, default 30 days).
//
// Windows: a sample (a join; a prediction's latency; a prediction or dead
// letter for the error rate; a shadow join) is in the window when it is
// among the last window_size samples of its kind AND younger than
// window_duration at the evaluation instant.
//
// # Per model version
//
// Every prediction names its model version; the ledger carries it, so the
// per-version metrics are part of the same fold. Role "active": the joins
// of main predictions, grouped by the version that made them (during a
// swap both versions appear). Role "shadow": a shadow prediction is
// recorded in the record's pending entry beside the main sides (not as a
// pending side itself) and resolves, once the outcome and the main
// prediction (or dead letter) are present, into one shadow_join event per
// shadow version (message id rs/<version>/<source>/<record_id>) carrying
// the shadow label, the outcome and the active model's label and version.
// Exported as cardiostream_monitor_model_window_{accuracy,precision,recall,
// f1,samples}{model_version,role}, model_window_agreement{model_version}
// (shadow: fraction of its joined records where it predicted the active
// model's label) and model_predictions_total{model_version,role}; Snapshot
// has them as Versions, PredictionsByVersion and ShadowPredictionsByVersion.
// Agreement is measured on joined records, the same records as the
// shadow's accuracy. A shadow prediction whose record has no outcome within
// the label deadline is counted but never joined.
//
// Pending gauges count the sides opened in the last label_deadline and not
// yet resolved; older ones are reported as expired (the bucket has dropped
// them).
//
// # Alerts
//
// Each rule moves inactive → pending (breached, waiting for "for") → firing
// → inactive, evaluated every evaluation_interval and right after each
// ledger batch, only once the replay is done. Firing and resolving each
// publish one schemas.Alert with id <rule>-<starts_at unix ns>-firing or
// -resolved (repeats: -firing-repeat-<n>), published with Nats-Msg-Id = id
// and the rule subject's expected last sequence, so a retry is deduplicated
// and two monitors cannot both fire. A rule's state is committed only after
// its alert is stored. On start each rule's state is restored from the last
// message on its subject, so a restart neither re-fires nor forgets a
// firing alert; a "pending" rule restarts its "for" period. AlertsFired and
// AlertsResolved count this process's transitions.
package monitor
