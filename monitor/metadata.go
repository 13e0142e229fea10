package monitor

import (
	"errors"
	"strings"
)

// ackMeta is what the fold needs of a JetStream message's metadata.
type ackMeta struct {
	streamSeq uint64
	timestamp int64 // the message's stream timestamp, unix ns
	pending   uint64
}

var errNotJSReply = errors.New("not a JetStream message: invalid ack reply subject")

// parseAckReply reads the stream sequence, timestamp and pending count from a
// JetStream message's reply subject without allocating, where
// jetstream.Msg.Metadata allocates the metadata and parses every token. The
// two layouts, as nats.go's parser (internal/parser.GetMetadataFields)
// accepts them:
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>
//	$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>[.<token>...]
//
// The first has 9 tokens; the second at least 11. A number token that is not
// all digits reads as 0, as with nats.go's ParseNum.
func parseAckReply(reply string) (ackMeta, error) {
	const prefix = "$JS.ACK."
	if !strings.HasPrefix(reply, prefix) {
		return ackMeta{}, errNotJSReply
	}
	// One pass: where each of the first 11 tokens starts, and how many
	// tokens there are.
	var start [12]int
	n := 1
	for i := 0; i < len(reply); i++ {
		if reply[i] == '.' {
			if n < len(start) {
				start[n] = i + 1
			}
			n++
		}
	}
	if n < 9 || (n > 9 && n < 11) {
		return ackMeta{}, errNotJSReply
	}
	// <stream> is token 2 in the first layout, 4 in the second.
	s := 2
	if n > 9 {
		s = 4
	}
	tok := func(i int) string { // token i; the last one read (pending) may be the subject's last
		if i+1 < n && i+1 < len(start) {
			return reply[start[i] : start[i+1]-1]
		}
		return reply[start[i]:]
	}
	return ackMeta{streamSeq: parseNum(tok(s + 3)), timestamp: int64(parseNum(tok(s + 5))), pending: parseNum(tok(s + 6))}, nil
}

// parseNum is nats.go's ParseNum: decimal digits, 0 for anything else
// (overflow is not detected).
func parseNum(s string) uint64 {
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}
