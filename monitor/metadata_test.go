package monitor

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// natsMeta is what nats.go's own parser reads from reply (the legacy
// nats.Msg.Metadata and jetstream.Msg.Metadata share it).
func natsMeta(reply string) (ackMeta, bool) {
	md, err := (&nats.Msg{Reply: reply, Sub: &nats.Subscription{}}).Metadata()
	if err != nil {
		return ackMeta{}, false
	}
	return ackMeta{streamSeq: md.Sequence.Stream, timestamp: md.Timestamp.UnixNano(), pending: md.NumPending}, true
}

var ackReplies = []string{
	"$JS.ACK.PREDICTIONS.oc_1.1.12345.987.1767225600000000000.42",
	"$JS.ACK.hub.ACCHASH.PREDICTIONS.oc_1.1.12345.987.1767225600000000000.42.r4nd0m",
	"$JS.ACK._.ACCHASH.PREDICTIONS.oc_1.1.12345.987.1767225600000000000.0",
	"$JS.ACK.hub.ACCHASH.PREDICTIONS.oc_1.1.12345.987.1767225600000000000.7.r.future.tokens",
	"$JS.ACK.S.C.1.x12.1.2.3",           // a number token with a non-digit reads as 0
	"$JS.ACK.S.C.1.2.3.4",               // 8 tokens
	"$JS.ACK.a.b.S.C.1.2.3.4.5.6.7.8.9", // more tokens than either layout: the second
	"$JS.ACK.a.S.C.1.2.3.4.5",           // 10 tokens
	"$JS.NAK.S.C.1.2.3.4.5",
	"_INBOX.abc",
	"",
}

// TestParseAckReply: the monitor's reply parser reads what nats.go's parser
// reads, and refuses what it refuses, in both layouts.
func TestParseAckReply(t *testing.T) {
	for _, reply := range ackReplies {
		t.Run(reply, func(t *testing.T) {
			got, err := parseAckReply(reply)
			want, ok := natsMeta(reply)
			if (err == nil) != ok || got != want {
				t.Fatalf("got %+v, %v; nats.go reads %+v (ok %v)", got, err, want, ok)
			}
		})
	}
	if m, _ := parseAckReply(ackReplies[1]); m != (ackMeta{streamSeq: 12345, timestamp: 1767225600000000000, pending: 42}) {
		t.Fatalf("domain layout read as %+v", m)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = parseAckReply(ackReplies[1]) }); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

// FuzzParseAckReply: any reply subject reads as nats.go's parser reads it.
func FuzzParseAckReply(f *testing.F) {
	for _, r := range ackReplies {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		got, err := parseAckReply(reply)
		want, ok := natsMeta(reply)
		if (err == nil) != ok || got != want {
			t.Fatalf("%q: got %+v, %v; nats.go reads %+v (ok %v)", reply, got, err, want, ok)
		}
	})
}
