package otlp

import (
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Bounds on what an event copies into metadata.otel, so that one span
// cannot make a huge event: an attribute past a bound is left out and
// counted (dropped_attributes, dropped_resource_attributes).
const (
	maxValueBytes    = 4 << 10  // an attribute's value, as JSON
	maxAttrsBytes    = 16 << 10 // a span's attributes, as JSON
	maxResourceBytes = 4 << 10  // a resource's attributes, as JSON: every event of the resource has a copy
	// maxResourceCopies bounds the bytes of resource attributes copied into
	// the events of one request: many tiny spans of one resource must not
	// make a request's events many times its size. Past it, an event's
	// resource is {} (and its attributes counted as dropped).
	maxResourceCopies = 32 << 20
	maxKeyBytes       = 256     // an attribute's key
	maxDepth          = 8       // maps and slices nested in a value
	maxTextBytes      = 1 << 10 // the span's name, its status message, the scope's name and version: cut there
)

// kv is an attribute to encode. f is the field the mapping read it as, or
// noField.
type kv struct {
	key string
	val pcommon.Value
	f   field
}

const (
	noField      field = nfields     // an attribute the mapping copies as it is
	contentField field = nfields + 1 // one it leaves out (isContent)
)

// encoder writes attributes as JSON objects with sorted keys — stored
// events must not depend on the order a client sent its attributes in —
// reusing its scratch across the objects of a request.
type encoder struct {
	kvs []kv // the entries of the objects being written, innermost last
}

func compareKV(a, b kv) int { return strings.Compare(a.key, b.key) }

// sortOrder appends to order the permutation of kvs that sorts them by
// key. It sorts indexes, not kvs: an entry is 40 bytes of pointers, an
// index 4.
func sortOrder(order []int32, kvs []kv) []int32 {
	for i := range kvs {
		order = append(order, int32(i))
	}
	slices.SortStableFunc(order, func(i, j int32) int { return strings.Compare(kvs[i].key, kvs[j].key) })
	return order
}

// appendAttrs writes kvs in the sorted order as a JSON object of at most
// max bytes, leaving out the entries whose field is in skip (the values an
// event field holds), a repeated key after its first, and what breaks the
// bounds; written and dropped count the entries written and the latter.
func (e *encoder) appendAttrs(b []byte, kvs []kv, order []int32, skip uint64, max int) (_ []byte, written, dropped int) {
	start := len(b)
	b = append(b, '{')
	for i, o := range order {
		a := &kvs[o]
		if i > 0 && a.key == kvs[order[i-1]].key || a.f != noField && skip&(1<<a.f) != 0 {
			continue
		}
		mark := len(b)
		if written > 0 {
			b = append(b, ',')
		}
		var ok bool
		if len(a.key) <= maxKeyBytes {
			b = appendString(b, a.key)
			b = append(b, ':')
			valueStart := len(b)
			b, ok = e.appendValue(b, a.val, valueStart+maxValueBytes, 0)
			ok = ok && len(b)-valueStart <= maxValueBytes && len(b)-start < max
		}
		if !ok {
			b = b[:mark]
			dropped++
			continue
		}
		written++
	}
	return append(b, '}'), written, dropped
}

// appendValue writes v as JSON; ok is false when it passes limit (an
// offset in b) or maxDepth, and then b holds part of it.
func (e *encoder) appendValue(b []byte, v pcommon.Value, limit, depth int) (_ []byte, ok bool) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		s := v.Str()
		if len(b)+len(s) > limit {
			return b, false
		}
		b = appendString(b, s)
	case pcommon.ValueTypeInt:
		b = strconv.AppendInt(b, v.Int(), 10)
	case pcommon.ValueTypeDouble:
		b = appendDouble(b, v.Double())
	case pcommon.ValueTypeBool:
		b = strconv.AppendBool(b, v.Bool())
	case pcommon.ValueTypeBytes:
		raw := v.Bytes().AsRaw()
		if len(b)+base64.StdEncoding.EncodedLen(len(raw)) > limit {
			return b, false
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, raw)
		b = append(b, '"')
	case pcommon.ValueTypeSlice:
		if depth >= maxDepth {
			return b, false
		}
		s := v.Slice()
		b = append(b, '[')
		for i := range s.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = e.appendValue(b, s.At(i), limit, depth+1); !ok || len(b) > limit {
				return b, false
			}
		}
		b = append(b, ']')
	case pcommon.ValueTypeMap:
		if depth >= maxDepth {
			return b, false
		}
		return e.appendMap(b, v.Map(), limit, depth+1)
	default:
		b = append(b, "null"...)
	}
	return b, len(b) <= limit
}

// appendMap writes a map nested in a value, sorted by key, a repeated key
// after its first left out.
func (e *encoder) appendMap(b []byte, m pcommon.Map, limit, depth int) (_ []byte, ok bool) {
	from := len(e.kvs)
	defer func() { e.kvs = e.kvs[:from] }()
	for k, v := range m.All() {
		e.kvs = append(e.kvs, kv{key: k, val: v, f: noField})
	}
	kvs := e.kvs[from:]
	slices.SortStableFunc(kvs, compareKV)
	b = append(b, '{')
	for i := range kvs {
		if i > 0 && kvs[i].key == kvs[i-1].key {
			continue
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, kvs[i].key)
		b = append(b, ':')
		if b, ok = e.appendValue(b, kvs[i].val, limit, depth); !ok || len(b) > limit {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendDouble writes f as encoding/json does; NaN and the infinities,
// which JSON has no numbers for, as the strings OTLP/JSON uses.
func appendDouble(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(b, f, format, -1, 64)
}

// appendString writes s as a JSON string, as the event's own encoding
// does: invalid UTF-8 becomes U+FFFD, so what is stored is valid JSON
// whatever a client sent.
func appendString(b []byte, s string) []byte { return event.AppendJSONString(b, s) }

// cut shortens s to at most n bytes, at a rune's start.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
