// Package webhook delivers cardiostream alert transitions to an HTTP
// endpoint. The ALERTS stream is its outbox: a durable pull consumer reads
// every alert the monitor published (<prefix>.alerts.<rule>), in order, and
// POSTs the stored JSON, signed with HMAC-SHA256, until the receiver accepts
// it (2xx) or refuses it for good (3xx, or a 4xx other than 408 and 429).
// A shutdown or a crash leaves the undelivered alert in the stream, so it is
// sent after the restart; delivery is at least once and receivers drop
// repeats by the X-Cardiostream-Delivery id.
//
// It owns the delivery consumer (streams.ConsumerAlertWebhook by default),
// the request format and signature scheme (Sign, Verify; see
// docs/webhooks.md), the retry policy and the cardiostream_webhook_* metrics.
//
// It imports only schemas and internal plumbing (streams, secret). It must
// not import monitor, scorer or ingest: cmd wires it next to the monitor.
package webhook
