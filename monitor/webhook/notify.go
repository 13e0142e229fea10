package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// maxResponseBody is how much of a response is read: enough for a reason
// phrase in the log, and to let the connection be reused.
const maxResponseBody = 64 << 10

// maxLoggedBody bounds the part of a response body kept in a StatusError.
const maxLoggedBody = 256

// notify makes one POST of body for the alert with the given delivery id.
// Like Alertmanager's notifiers it says whether a failure is worth retrying:
// network errors, timeouts, 408, 429 and 5xx are; any other non-2xx answer
// (3xx, 4xx) means the receiver will never take this request as it is.
func (n *Notifier) notify(ctx context.Context, deliveryID string, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("building request: %w", err)
	}
	now := n.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.userAgent)
	req.Header.Set(HeaderDelivery, deliveryID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	if n.cfg.Secret.IsSet() {
		req.Header.Set(HeaderSignature, Sign([]byte(n.cfg.Secret.Reveal()), now, body))
	}

	resp, err := n.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, which may embed a token: keep only
		// the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return true, fmt.Errorf("posting to %s: %w", n.target, err)
	}
	defer resp.Body.Close()
	// Read (a bounded part of) the body so the connection can be reused and
	// a refusal's reason can be logged.
	respBody, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// The status line is the receiver's acceptance; a body cut short
		// after it does not undo that.
		return false, nil
	}
	serr := &StatusError{Code: resp.StatusCode, Body: printable(respBody, maxLoggedBody)}
	if readErr != nil && serr.Body == "" {
		serr.Body = "(body unreadable)"
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusServiceUnavailable:
		serr.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		return true, serr
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode >= 500:
		return true, serr
	default:
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			serr.Body = "redirect (not followed: configure the final URL)"
		}
		return false, serr
	}
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
// It returns 0 when absent, malformed or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second) // the caller caps it far lower anyway
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// errorKind names the kind of a failed attempt, to log when it changes
// rather than on every attempt.
func errorKind(err error) string {
	var serr *StatusError
	var nerr net.Error
	switch {
	case errors.As(err, &serr):
		return "status_" + strconv.Itoa(serr.Code)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection_reset"
	default:
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return "dns"
		}
		return "network"
	}
}

// printable returns up to max bytes of b as a single line of printable text.
func printable(b []byte, max int) string {
	s := strings.TrimSpace(string(bytes.ToValidUTF8(b, []byte("?"))))
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	if len(s) <= max {
		return s
	}
	cut := 0
	for i := range s { // rune boundaries, so the cut leaves valid UTF-8
		if i > max {
			break
		}
		cut = i
	}
	return s[:cut] + "…"
}

// redactURL keeps the scheme and host of the configured URL: paths and
// queries of hosted webhooks often carry a token.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(webhook url)"
	}
	s := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		s += "/…"
	}
	return s
}
