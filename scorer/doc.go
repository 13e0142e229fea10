// Package scorer owns the scoring worker: it reads patient records from the
// durable pull consumer shared by every scorer process (internal/streams.
// ConsumerScorer on RECORDS, <prefix>.records.>), decodes and validates each
// one (schemas.DecodeRecord), scores valid ones with a Model and publishes a
// schemas.Prediction on <prefix>.predictions.<source>, or a schemas.DeadLetter
// on <prefix>.deadletter.<source> (<prefix>.deadletter._invalid when the
// record's subject has no valid source token).
//
// # Delivery guarantees
//
// Every record ends as exactly one stored prediction or one stored dead
// letter. The ack follows from the outcome (see settle in batch.go):
//   - valid and scored: the prediction is published with Nats-Msg-Id
//     "<source>/<record id>" and the record is acked only after the publish
//     ack; a duplicate publish ack (a redelivery whose prediction was already
//     stored) counts as stored. PREDICTIONS' duplicate window must cover
//     Config.RedeliveryHorizon (AckWait × MaxDeliver); Run warns when it does
//     not. A record redelivered later than that (a lone scorer killed and
//     restarted after the window, a long outage) is looked up first: its
//     earlier prediction or dead letter is found by message id in
//     PREDICTIONS and DEADLETTER and the record is settled without a second
//     output (stored.go).
//   - invalid (decode or validate stage, or a bad subject): the dead letter
//     (Nats-Msg-Id "dl/<stream sequence>") is published, then the record is
//     terminated.
//   - transient failure (the model returned NaN, Inf or a value outside
//     [0, 1]; the prediction publish was refused or timed out): NakWithDelay
//     with NakDelay doubled per delivery, capped at AckWait. On delivery
//     MaxDeliver a model failure or a publish the stream rejected for the
//     message itself (a 4xx answer such as "message size exceeds maximum
//     allowed", or beyond max_payload) is dead-lettered instead (stage
//     "score", the reason names what failed and the delivery count).
//   - back-pressure: a publish refused because the output stream is full
//     (discard policy new: "maximum bytes exceeded", "maximum messages
//     exceeded"), out of storage or unavailable (a 5xx answer), or because
//     no stream listens, is not the record's fault. The record is NAKed with
//     the same backoff capped at 2 s, so scoring resumes within seconds once
//     the stream takes messages again, and it is retried without limit:
//     never dead-lettered for it, however long the pressure lasts. Memory
//     stays bounded meanwhile: at most MaxAckPending records are delivered
//     and unacked, NAKed ones included.
//   - a publish whose outcome is unknown (the ack timed out, the connection
//     dropped, the scorer was killed before acking) is never dead-lettered:
//     the prediction may be stored, and a dead letter would give the record
//     both. The record is redelivered past MaxDeliver, scored again and its
//     prediction republished under the same message id until a publish ack
//     (new or duplicate) settles it.
//   - a panic while decoding or scoring is recovered and dead-lettered at
//     once ("internal error: ..."): retrying the same input cannot help.
//
// The consumer is created with MaxDeliver -1 and the scorer enforces
// Config.MaxDeliver itself, so a record whose last delivery could not be
// settled (DEADLETTER down, a publish ack lost, scorer killed) is redelivered
// until its prediction or dead letter is stored instead of being dropped by
// the server.
//
// A prediction's label is 1 when probability >= the model's threshold, else
// 0. received_at is the time RECORDS stored the record; latency_ms is
// scored_at − received_at (clamped at 0 against clock skew).
//
// # Batches
//
// The consumer is read with Consume (BatchSize messages per pull, pull
// expiry PullExpiry with heartbeats). Each pull is also bounded by bytes
// (pullMaxBytes: BatchSize × schemas.MaxRecordBytes, at least twice the
// server's max_payload), and the payloads held between delivery and
// settlement by maxBufferedBytes (64 MiB): records are small, so neither
// binds in normal operation, but a backlog of 1 MiB payloads otherwise got
// the scorer disconnected as a slow consumer after every reconnect. Worker goroutines take one record, then
// whatever is already buffered up to BatchSize, decode and score them (through
// BatchModel when the model implements it) and PublishAsync every output; a
// single acker goroutine waits for the publish acks of each batch in turn and
// acks, NAKs or terminates its records. A batch is decoded, scored and
// published in chunks of 1, 2, 4, ... records, so its first records are
// published before the rest are scored (a batch that may need a lookup of
// earlier outputs, see stored.go, is one chunk). Publishing never waits for earlier
// batches' publish acks: the acker's queue holds up to MaxAckPending batches
// (the server delivers no more unsettled records than that), so a slow
// publish ack delays only its own batch's acks, not the publishing of
// records delivered after it.
//
// # Models: hot swap and shadow
//
// SetModels(active, shadow) replaces the models from any goroutine; each
// batch loads the model set once when it starts, so a batch is scored,
// labelled and named wholly by one set, and within a worker no prediction
// of an older set follows one of a newer set. Every prediction names the
// model that produced it (Model.Ref(): name, version, sha256). A record
// redelivered after a swap is scored by the new model but published under
// the same message id, so whichever prediction was stored first stays the
// record's only one: a swap loses and duplicates nothing.
//
// With a shadow model, each record headed for a prediction is also scored
// by it; its prediction (naming the shadow model) is published beside the
// main one on <prefix>.predictions.shadow.<source> with message id
// "shadow/<version>/<source>/<record id>", and its publish ack is awaited
// within the batch's deadline before the record is acked. A shadow failure
// (NaN, panic, a refused or timed-out publish) only loses the shadow
// prediction: it is counted in shadow_failures_total{reason} and never
// retries, delays beyond its batch or dead-letters the record. A record on
// <prefix>.records.shadow is dead-lettered: the source token "shadow" is
// reserved (schemas.ShadowToken).
//
// # JetStream options
//
// cmd passes its jetstream.JetStream and needs to set nothing special on it:
// it is used for the consumer only. The scorer publishes through its own
// JetStream context on js.Conn() (same API prefix or domain) with
// WithPublishAsyncMaxPending(MaxAckPending + BatchSize) and
// WithPublishAsyncTimeout(PublishTimeout), so a lost publish ack resolves and
// the publish acks it waits for on shutdown are only its own. Use a loopback
// TCP connection, not the in-process one (see /work/shared/notes/jetstream.md).
//
// Nothing here logs patient features, payloads or problem texts (which may
// quote values): dead letters are logged by stream sequence, stage and field
// names only.
//
// This package imports schemas and internal/streams only. It must not import
// ingest, monitor, config, internal/model or cmd: the model arrives as the
// Model interface.
package scorer
