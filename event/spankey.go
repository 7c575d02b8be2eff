package event

import "encoding/hex"

// SpanKey is an OpenTelemetry span's identity, its 16-byte trace id then
// its 8-byte span id. An event mapped from a span has the hex of its key as
// its event_id (SPEC §15), so a retried export is a duplicate and a score
// sent later, as an evaluation log record naming the span, finds the event.
type SpanKey [24]byte

// spanKeyHexLen is the length of a span key's event_id: 48 hex digits.
const spanKeyHexLen = 2 * len(SpanKey{})

// NewSpanKey joins a trace id and a span id.
func NewSpanKey(trace [16]byte, span [8]byte) SpanKey {
	var k SpanKey
	copy(k[:16], trace[:])
	copy(k[16:], span[:])
	return k
}

// EventID is the event_id of the span's event: 48 lowercase hex digits.
func (k SpanKey) EventID() string { return hex.EncodeToString(k[:]) }

// SpanKeyOf reads an event_id as a span key. Only the form EventID writes
// (48 lowercase hex digits) is one, so every event id has at most one key.
// It runs for every stored event: no allocation.
func SpanKeyOf(eventID string) (SpanKey, bool) {
	var k SpanKey
	if len(eventID) != spanKeyHexLen {
		return k, false
	}
	bad := byte(0)
	for i := range k {
		hi, lo := hexValue[eventID[2*i]], hexValue[eventID[2*i+1]]
		bad |= hi | lo
		k[i] = hi<<4 | lo&0x0f
	}
	if bad&0xf0 != 0 {
		return SpanKey{}, false
	}
	return k, true
}

// hexValue is the value of a lowercase hex digit, 0xff for any other byte.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()
