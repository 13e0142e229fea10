// Package monitor watches the model in production. It consumes predictions,
// outcomes and dead letters, joins each prediction with its outcome by
// (source, record_id) whichever arrives first, computes live metrics
// (accuracy, precision, recall, F1, confusion matrix, latency quantiles,
// error rate; cumulatively and over a sliding window), exports them to
// Prometheus, evaluates alert rules and publishes every alert transition to
// the ALERTS stream (<prefix>.alerts.<rule>, schemas.Alert).
//
// It reads PREDICTIONS (<prefix>.predictions.* and
// <prefix>.predictions.shadow.*), OUTCOMES and DEADLETTER with ordered
// consumers: nothing is acked, and every monitor process reads all of each
// input itself, so several monitors report the same numbers. It owns the
// state bucket (an object store, default CARDIO_MONITOR_STATE) holding its
// checkpoint, the durable consumer monitor-audit
// (<prefix>.audit.model.{artifact_refused,activate,rollback}, see
// audit.go: a refusal fires model_artifact_refused, the next activation or
// rollback resolves it), and publishing to
// ALERTS. It does not deliver webhooks (monitor/webhook consumes ALERTS).
//
// It imports schemas only; it must not import scorer, ingest,
// monitor/webhook or cmd.
//
// # The metrics are a fold over the input streams
//
// The input streams are the monitor's ledger: the server already stores
// every prediction, outcome and dead letter durably and in order, so the
// monitor writes nothing per input. Each reader decodes its messages and
// folds each, under one lock, into the join (join.go) and the aggregates
// (aggregate.go), together with the stream sequence it has reached. The join
// keeps, in memory, the open joins by (source, record_id) (a 128-bit hash of
// both: the sides seen so far, their labels and times, never patient data)
// and, for joined_ttl, what each resolved record resolved to. A prediction
// and its outcome join whichever arrives first; an outcome whose record was
// dead-lettered resolves as "unscorable". A second input of a side already
// recorded, or any input of a record resolved within joined_ttl, is a
// duplicate and is not counted again (the latter counted in
// cardiostream_monitor_late_duplicates_total); a shadow prediction of a
// resolved record is still joined with what the record resolved to. An
// open join expires label_deadline after its last change (the monitor's
// clock): a side arriving later opens a new join, and the old one counts as
// expired.
//
// Every CheckpointInterval (and at shutdown) a copy of the whole fold
// (aggregates, windows, open joins, resolved records, input positions),
// taken under the lock, is saved to the state bucket; on start it is loaded
// and each input is read from the position after it (or from its start when
// there is no usable checkpoint). The checkpoint is consistent: it holds
// exactly the inputs up to its positions. So a restart, even after SIGKILL,
// counts each input once and ends with the numbers of an uninterrupted run.
// Ready reports nil once each reader has reached its stream's last
// sequence at start-up. Counts from the checkpoint onward depend on the
// streams still holding those inputs (their retention).
//
// Memory grows with the open joins (the predictions waiting for their
// outcome within label_deadline) and the resolved records remembered for
// joined_ttl: about 140 bytes each, either kind (one fixed-size record in a
// slab plus its map entry; the fold allocates nothing per input); the
// checkpoint holds about 50 bytes per record.
//
// Windows: a sample (a join; a prediction's latency; a prediction or dead
// letter for the error rate; a shadow join) is in the window when it is
// among the last window_size samples of its kind AND younger than
// window_duration at the evaluation instant. "Last" is by data time (an
// input's stream timestamp; a join's is the later of its two sides'), so
// the window holds the same samples whatever order the three inputs were
// read in, and after a restart; "younger" is by the monitor's clock when the
// sample was folded.
//
// # Per model version
//
// Every prediction names its model version, so the per-version metrics are
// part of the same fold. Role "active": the joins
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
// yet resolved; older ones are reported as expired.
//
// # Alerts
//
// Each rule moves inactive → pending (breached, waiting for "for") → firing
// → inactive, evaluated every evaluation_interval and right after each
// input batch, only once the monitor is ready. Firing and resolving each
// publish one schemas.Alert with id <rule>-<starts_at unix ns>-firing or
// -resolved (repeats: -firing-repeat-<n>), published with Nats-Msg-Id = id
// and the rule subject's expected last sequence, so a retry is deduplicated
// and two monitors cannot both fire. A rule's state is committed only after
// its alert is stored. On start each rule's state is restored from the last
// message on its subject, so a restart neither re-fires nor forgets a
// firing alert; a "pending" rule restarts its "for" period. AlertsFired and
// AlertsResolved count this process's transitions.
package monitor
