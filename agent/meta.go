package agent

import (
	"strconv"
	"unicode/utf8"
)

// appendMeta writes a REQUEST frame's meta as JSON by hand: it is built for
// every request, and reflection-based encoding was a visible share of the
// agent's time per call. Fields are written in requestMeta's order, empty ones
// left out, as encoding/json would.
func appendMeta(dst []byte, m *requestMeta) []byte {
	dst = append(dst, `{"command":`...)
	dst = appendJSONString(dst, m.Command)
	dst = append(dst, `,"request_id":`...)
	dst = appendJSONString(dst, m.RequestID)
	if m.SessionID != "" {
		dst = append(dst, `,"session_id":`...)
		dst = appendJSONString(dst, m.SessionID)
	}
	if m.Epoch != 0 {
		dst = append(dst, `,"session_epoch":`...)
		dst = strconv.AppendInt(dst, m.Epoch, 10)
	}
	if m.Guest {
		dst = append(dst, `,"session_guest":true`...)
	}
	if m.DeadlineMs != 0 {
		dst = append(dst, `,"deadline_ms":`...)
		dst = strconv.AppendInt(dst, m.DeadlineMs, 10)
	}
	if m.Traceparent != "" {
		dst = append(dst, `,"traceparent":`...)
		dst = appendJSONString(dst, m.Traceparent)
	}
	if m.Stream {
		dst = append(dst, `,"stream":true`...)
	}
	if m.Window != 0 {
		dst = append(dst, `,"window":`...)
		dst = strconv.AppendInt(dst, int64(m.Window), 10)
	}
	if m.Pipelined {
		dst = append(dst, `,"pipelined":true`...)
	}
	return append(dst, '}')
}

// appendJSONString quotes s as a JSON string; invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
			i++
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			i++
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			i += size
		}
	}
	return append(dst, '"')
}
