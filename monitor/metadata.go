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
	n := strings.Count(reply, ".") + 1
	if n < 9 || (n > 9 && n < 11) {
		return ackMeta{}, errNotJSReply
	}
	rest := reply[len(prefix):]
	// Token index (after the prefix) of <stream>: 0 in the first layout,
	// 2 in the second.
	first := 0
	if n > 9 {
		first = 2
	}
	var m ackMeta
	for i := 0; i <= first+6; i++ {
		tok, after, _ := strings.Cut(rest, ".")
		rest = after
		switch i - first {
		case 3:
			m.streamSeq = parseNum(tok)
		case 5:
			m.timestamp = int64(parseNum(tok))
		case 6:
			m.pending = parseNum(tok)
		}
	}
	return m, nil
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
