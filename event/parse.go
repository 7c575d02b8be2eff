package event

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fastjson"

	"github.com/crucible-telemetry/crucible-telemetry/pricing"
)

// ErrInvalid marks an event that cannot be stored; the message says why.
var ErrInvalid = errors.New("invalid event")

// MaxFuture is how far past the time of receipt an event's timestamp may be.
const MaxFuture = 5 * time.Minute

// MaxEventIDLen bounds client-chosen event ids.
const MaxEventIDLen = 128

// Bounds on the strings of an event that become label values (TSDB series,
// /metrics, the points index) or keys a query groups by: one outsized value
// must not reach them. Lengths are in bytes, after unescaping.
const (
	MaxEventNameLen = 256  // event_name, dotted
	MaxLabelLen     = 256  // metadata.model, metadata.provider
	MaxIDLen        = 1024 // metadata.session_id, user_id, sample_id, cohort
)

// maxExactInt is the largest integer a float64 holds exactly (2^53).
const maxExactInt = 1 << 53

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Decoder parses client events (SPEC §4.2) with one pass of a reusable JSON
// parser. Events it returns share its arena, so a Decoder serves one request
// at a time; Reset it (or take a fresh one) for the next.
type Decoder struct {
	p      fastjson.Parser
	arena  []byte
	intern map[string]string

	// scratch space of the strict checks (strict.go)
	keys    []uint64 // hashes of the keys of the objects being walked
	nkeys   int
	scratch []byte
}

var decoderPool = sync.Pool{New: func() any { return &Decoder{intern: make(map[string]string)} }}

// GetDecoder takes a Decoder from a pool. Events it decodes share its arena:
// call PutDecoder only when they are no longer used.
func GetDecoder() *Decoder { d := decoderPool.Get().(*Decoder); d.arena = d.arena[:0]; return d }

// Reset lets the Decoder reuse its arena: events it decoded before lose
// their metadata and measurements.
func (d *Decoder) Reset() { d.arena = d.arena[:0] }

// PutDecoder returns d to the pool.
func PutDecoder(d *Decoder) {
	if cap(d.arena) > 32<<20 {
		d.arena = nil // let an outsized arena go
	}
	if cap(d.keys) > 1<<16 || cap(d.scratch) > 1<<16 {
		d.keys, d.scratch = nil, nil
	}
	decoderPool.Put(d)
}

// Parse decodes one client event, validates it and computes the enriched
// fields that do not depend on the experiment (SPEC §4.3). now is the time of
// receipt. The returned event's ExperimentID is the one the client named
// (maybe empty); the caller sets the experiment's fields.
func Parse(data []byte, now time.Time, prices *pricing.Table) (*Event, error) {
	d := GetDecoder()
	defer PutDecoder(d)
	e := &Event{}
	if err := d.ParseInto(e, data, now, prices); err != nil {
		return nil, err
	}
	// The event outlives the pooled decoder: give it its own bytes.
	e.Metadata, e.Measurements = bytes.Clone(e.Metadata), bytes.Clone(e.Measurements)
	return e, nil
}

// str returns b as a string, sharing one copy of short repeated values
// (model and provider names, conditions).
func (d *Decoder) str(b []byte) string {
	if len(b) > 64 {
		return string(b)
	}
	if d.intern == nil {
		d.intern = make(map[string]string)
	}
	if s, ok := d.intern[string(b)]; ok {
		return s
	}
	if len(d.intern) >= 4096 {
		clear(d.intern)
	}
	s := string(b)
	d.intern[s] = s
	return s
}

// raw re-encodes v compactly into the arena.
func (d *Decoder) raw(v *fastjson.Value) []byte {
	start := len(d.arena)
	d.arena = v.MarshalTo(d.arena)
	return d.arena[start:len(d.arena):len(d.arena)]
}

func typeName(t fastjson.Type) string {
	switch t {
	case fastjson.TypeString:
		return "a string"
	case fastjson.TypeNumber:
		return "a number"
	case fastjson.TypeObject:
		return "an object"
	case fastjson.TypeArray:
		return "an array"
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	}
	return "null"
}

func wrongType(path string, v *fastjson.Value, want string) error {
	return invalid("field %q: cannot use %s as %s", path, typeName(v.Type()), want)
}

func present(v *fastjson.Value) bool { return v != nil && v.Type() != fastjson.TypeNull }

// The known fields of an event, its metadata and measurements, collected in
// one pass over each object's keys. A key given twice rejects the event.
type topFields struct {
	eventName, experimentID, eventID, measurements, metadata, success *fastjson.Value
	timestamp, latency, cost                                          num
	unknown                                                           []byte // the first key that is no field
}

type trainFields struct {
	epoch, batch, loss, accuracy, learningRate, gradientNorm, checkpointPath *fastjson.Value
}

type metaFields struct {
	model, provider, sessionID, userID, sampleID, cohort, tokens, err, exception, status, response *fastjson.Value
	cost                                                                                           num
	train                                                                                          trainFields
}

type measFields struct {
	status                                                      *fastjson.Value
	duration, start, stop, promptTokens, completionTokens, cost num
	train                                                       trainFields
}

type tokenFields struct {
	prompt, input, completion, output, total, cached num
}

// num is a known field read as a number: collect checks it against RFC
// 8259's grammar and reads it in the same pass (setNum).
type num struct {
	v     *fastjson.Value
	f     float64 // the value, when v is a number
	i     int64   // the value, when isInt: an integer of at most 18 digits
	isInt bool
}

// set records the value of a known key; false when the key came before.
func set(dst **fastjson.Value, v *fastjson.Value) bool {
	if *dst != nil {
		return false
	}
	*dst = v
	return true
}

// setNum is set for a numeric field: a number is checked and read, any
// other value walked (a wrong type where it is read, free-form where not).
func (d *Decoder) setNum(dst *num, k []byte, v *fastjson.Value) *walkError {
	if dst.v != nil {
		return duplicateKey(k)
	}
	dst.v = v
	if v.Type() != fastjson.TypeNumber {
		return d.member(k, v)
	}
	w := d.readNumber(v, dst, true)
	if w != nil {
		w.in(shorten(k))
	}
	return w
}

// visit records a training field; ok is false when k is none.
func (t *trainFields) visit(k string, v *fastjson.Value) (fresh, ok bool) {
	switch k {
	case "epoch":
		return set(&t.epoch, v), true
	case "batch":
		return set(&t.batch, v), true
	case "loss":
		return set(&t.loss, v), true
	case "accuracy":
		return set(&t.accuracy, v), true
	case "learning_rate":
		return set(&t.learningRate, v), true
	case "gradient_norm":
		return set(&t.gradientNorm, v), true
	case "checkpoint_path":
		return set(&t.checkpointPath, v), true
	}
	return true, false
}

// The collect methods do walk's checks (strict.go) on the way, so the
// objects an event usually has are visited once. A known key given twice is
// caught by set; the other keys are noted for endObject.

func (f *topFields) collect(d *Decoder, o *fastjson.Object) *walkError {
	start := d.nkeys
	var w *walkError
	o.Visit(func(k []byte, v *fastjson.Value) {
		if w != nil {
			return
		}
		fresh := true
		var n *num
		switch string(k) {
		// Fields read as strings on every path (anything else rejects the
		// event) hold nothing for walk to check.
		case "event_name":
			fresh, v = set(&f.eventName, v), nil
		case "experiment_id":
			fresh, v = set(&f.experimentID, v), nil
		case "event_id":
			fresh, v = set(&f.eventID, v), nil
		case "timestamp":
			n = &f.timestamp
		case "measurements":
			if !set(&f.measurements, v) {
				w = duplicateKey(k)
			}
			return // measFields.collect walks it
		case "metadata":
			if !set(&f.metadata, v) {
				w = duplicateKey(k)
			}
			return // metaFields.collect walks it
		case "latency_ms":
			n = &f.latency
		case "cost_usd":
			n = &f.cost
		case "success":
			fresh = set(&f.success, v)
		default:
			if !ignoredField(string(k)) {
				if f.unknown == nil {
					f.unknown = k
				}
				return // rejected
			}
			d.key(k)
		}
		switch {
		case n != nil:
			w = d.setNum(n, k, v)
		case !fresh:
			w = duplicateKey(k)
		case v != nil && compound(v):
			w = d.member(k, v)
		}
	})
	return d.endObject(o, start, w)
}

func (f *metaFields) collect(d *Decoder, o *fastjson.Object) *walkError {
	start := d.nkeys
	var w *walkError
	o.Visit(func(k []byte, v *fastjson.Value) {
		if w != nil {
			return
		}
		fresh := true
		var n *num
		switch string(k) {
		// Read as strings (ids also as numbers, which id checks) on every
		// path: nothing for walk to check.
		case "model":
			fresh, v = set(&f.model, v), nil
		case "provider":
			fresh, v = set(&f.provider, v), nil
		case "session_id":
			fresh, v = set(&f.sessionID, v), nil
		case "user_id":
			fresh, v = set(&f.userID, v), nil
		case "sample_id":
			fresh, v = set(&f.sampleID, v), nil
		case "cohort":
			fresh, v = set(&f.cohort, v), nil
		case "tokens":
			if !set(&f.tokens, v) {
				w = duplicateKey(k)
			}
			return // tokenFields.collect walks it
		case "cost":
			n = &f.cost
		case "error":
			fresh = set(&f.err, v)
		case "exception":
			fresh = set(&f.exception, v)
		case "status":
			fresh = set(&f.status, v)
		case "response":
			fresh = set(&f.response, v)
		default:
			var ok bool
			if fresh, ok = f.train.visit(string(k), v); !ok {
				d.key(k)
			}
		}
		switch {
		case n != nil:
			w = d.setNum(n, k, v)
		case !fresh:
			w = duplicateKey(k)
		case v != nil && compound(v):
			w = d.member(k, v)
		}
	})
	return d.endObject(o, start, w).in("metadata")
}

func (f *measFields) collect(d *Decoder, o *fastjson.Object) *walkError {
	start := d.nkeys
	var w *walkError
	o.Visit(func(k []byte, v *fastjson.Value) {
		if w != nil {
			return
		}
		fresh := true
		var n *num
		switch string(k) {
		case "duration":
			n = &f.duration
		case "start":
			n = &f.start
		case "stop":
			n = &f.stop
		case "status":
			fresh = set(&f.status, v)
		case "prompt_tokens":
			n = &f.promptTokens
		case "completion_tokens":
			n = &f.completionTokens
		case "cost":
			n = &f.cost
		default:
			var ok bool
			if fresh, ok = f.train.visit(string(k), v); !ok {
				d.key(k)
			}
		}
		switch {
		case n != nil:
			w = d.setNum(n, k, v)
		case !fresh:
			w = duplicateKey(k)
		case v != nil && compound(v):
			w = d.member(k, v)
		}
	})
	return d.endObject(o, start, w).in("measurements")
}

func (f *tokenFields) collect(d *Decoder, o *fastjson.Object) *walkError {
	start := d.nkeys
	var w *walkError
	o.Visit(func(k []byte, v *fastjson.Value) {
		if w != nil {
			return
		}
		fresh := true
		var n *num
		switch string(k) {
		case "prompt":
			n = &f.prompt
		case "input":
			n = &f.input
		case "completion":
			n = &f.completion
		case "output":
			n = &f.output
		case "total":
			n = &f.total
		case "cached":
			n = &f.cached
		default:
			d.key(k)
		}
		switch {
		case n != nil:
			w = d.setNum(n, k, v)
		case !fresh:
			w = duplicateKey(k)
		case v != nil && compound(v):
			w = d.member(k, v)
		}
	})
	return d.endObject(o, start, w).in("tokens").in("metadata")
}

// number reads an optional number named path (finite: collect checked it).
func number(n num, path string) (float64, bool, error) {
	if !present(n.v) {
		return 0, false, nil
	}
	if n.v.Type() != fastjson.TypeNumber {
		return 0, false, wrongType(path, n.v, "a number")
	}
	return n.f, true, nil
}

// num reads a number that walk checked.
func (d *Decoder) num(v *fastjson.Value, path string) (num, error) {
	n := num{v: v}
	if present(v) && v.Type() == fastjson.TypeNumber {
		if w := d.readNumber(v, &n, true); w != nil {
			return n, w.under(path).err()
		}
	}
	return n, nil
}

// text reads an optional string named path of at most max bytes (0: any).
func (d *Decoder) text(v *fastjson.Value, path string, max int) (Null[string], error) {
	if !present(v) {
		return Null[string]{}, nil
	}
	if v.Type() != fastjson.TypeString {
		return Null[string]{}, wrongType(path, v, "a string")
	}
	b, _ := v.StringBytes()
	if max > 0 && len(b) > max {
		return Null[string]{}, tooLong(path, max, len(b))
	}
	return Some(d.str(b)), nil
}

func tooLong(path string, max, n int) error {
	return invalid("%s must be at most %d bytes, got %d", path, max, n)
}

// id reads an identifier that clients send as a string or a number, of at
// most MaxIDLen bytes.
func (d *Decoder) id(v *fastjson.Value, path string) (Null[string], error) {
	if !present(v) {
		return Null[string]{}, nil
	}
	var b []byte
	switch v.Type() {
	case fastjson.TypeString:
		b, _ = v.StringBytes()
	case fastjson.TypeNumber:
		b = v.MarshalTo(d.scratch[:0])
		if cap(b) > cap(d.scratch) {
			d.scratch = b[:0]
		}
		var n num
		if w := readNumber(b, &n, false); w != nil {
			w.number = bytes.Clone(w.number)
			return Null[string]{}, w.under(path).err()
		}
	default:
		return Null[string]{}, wrongType(path, v, "a string or a number")
	}
	if len(b) > MaxIDLen {
		return Null[string]{}, tooLong(path, MaxIDLen, len(b))
	}
	return Some(string(b)), nil
}

// object reads an optional JSON object named path.
func object(v *fastjson.Value, path string) (*fastjson.Object, error) {
	if !present(v) {
		return nil, nil
	}
	obj, err := v.Object()
	if err != nil {
		return nil, invalid("%s must be a JSON object", path)
	}
	return obj, nil
}

// ParseInto is Parse writing into e, with the Decoder's parser and arena.
func (d *Decoder) ParseInto(e *Event, data []byte, now time.Time, prices *pricing.Table) error {
	return d.parse(e, data, now, prices, true)
}

// ParseForStorage is ParseInto for the ingest path: e.Raw keeps data (the
// event log stores it as it came), so metadata and measurements are not
// copied out of it. data must stay unchanged until e is stored.
func (d *Decoder) ParseForStorage(e *Event, data []byte, now time.Time, prices *pricing.Table) error {
	if err := d.parse(e, data, now, prices, false); err != nil {
		return err
	}
	e.Raw = data
	return nil
}

func (d *Decoder) parse(e *Event, data []byte, now time.Time, prices *pricing.Table, objects bool) error {
	v, err := d.p.ParseBytes(data)
	if err != nil {
		return invalid("malformed JSON: %v", err)
	}
	if err := checkText(data); err != nil {
		return err
	}
	o, err := v.Object()
	if err != nil {
		return invalid("expected a JSON object, got %s", typeName(v.Type()))
	}
	*e = Event{}
	var top topFields
	if w := top.collect(d, o); w != nil {
		return w.err()
	}
	if top.unknown != nil {
		return unknownField(top.unknown)
	}

	if e.EventName, err = parseEventName(top.eventName); err != nil {
		return err
	}
	if s, err := d.text(top.experimentID, "experiment_id", 0); err != nil {
		return err
	} else if s.Valid {
		e.ExperimentID = s.V
	}
	if id := top.eventID; present(id) {
		b, err := id.StringBytes()
		if err != nil || len(b) == 0 || len(b) > MaxEventIDLen || strings.ContainsFunc(string(b), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return invalid("event_id must be a string of 1-%d printable characters", MaxEventIDLen)
		}
		e.EventID, e.ClientID = string(b), true
	} else {
		e.EventID = NewID()
	}
	if e.Timestamp, err = parseTimestamp(top.timestamp, now); err != nil {
		return err
	}

	var meta metaFields
	var meas measFields
	// Metadata and measurements are copied before collect unescapes their
	// keys: fastjson writes an unescaped key or string back with Go's
	// quoting, which is not JSON.
	if obj, err := object(top.metadata, "metadata"); err != nil {
		return err
	} else if obj != nil {
		if objects {
			e.Metadata = d.raw(top.metadata)
		}
		if w := meta.collect(d, obj); w != nil {
			return w.err()
		}
	}
	if obj, err := object(top.measurements, "measurements"); err != nil {
		return err
	} else if obj != nil {
		if objects {
			e.Measurements = d.raw(top.measurements)
		}
		if w := meas.collect(d, obj); w != nil {
			return w.err()
		}
	}

	if err := fillLatency(e, &top, &meas); err != nil {
		return err
	}
	cached, err := d.fillTokens(e, &meta, &meas)
	if err != nil {
		return err
	}
	if e.Model, err = d.text(meta.model, "metadata.model", MaxLabelLen); err != nil {
		return err
	}
	if e.Provider, err = d.text(meta.provider, "metadata.provider", MaxLabelLen); err != nil {
		return err
	}
	if e.SessionID, err = d.id(meta.sessionID, "metadata.session_id"); err != nil {
		return err
	}
	if e.UserID, err = d.id(meta.userID, "metadata.user_id"); err != nil {
		return err
	}
	if e.SampleID, err = d.id(meta.sampleID, "metadata.sample_id"); err != nil {
		return err
	}
	if e.Cohort, err = d.id(meta.cohort, "metadata.cohort"); err != nil {
		return err
	}
	if err := fillCost(e, &top, &meta, &meas, cached, prices); err != nil {
		return err
	}
	if e.Success, err = deriveSuccess(&top, &meta, &meas, e.EventName); err != nil {
		return err
	}
	if strings.HasPrefix(e.EventName, "crucible_train.") {
		if e.Training, err = d.training(&meta.train, &meas.train); err != nil {
			return err
		}
	}
	e.SampleWeight = 1
	return nil
}

// fillLatency: explicit latency_ms, else duration (ns), else stop - start (ns).
func fillLatency(e *Event, top *topFields, meas *measFields) error {
	if lat, ok, err := number(top.latency, "latency_ms"); err != nil {
		return err
	} else if ok {
		if lat < 0 {
			return invalid("latency_ms must be >= 0, got %v", lat)
		}
		e.LatencyMs = Some(lat)
		return nil
	}
	if dur, ok, err := number(meas.duration, "measurements.duration"); err != nil {
		return err
	} else if ok {
		if dur < 0 {
			return invalid("measurements.duration must be >= 0, got %v", dur)
		}
		e.LatencyMs = Some(dur / 1e6)
		return nil
	}
	start, okStart, err := number(meas.start, "measurements.start")
	if err != nil {
		return err
	}
	stop, okStop, err := number(meas.stop, "measurements.stop")
	if err != nil {
		return err
	}
	if okStart && okStop {
		if stop < start {
			return invalid("measurements.stop is before measurements.start")
		}
		lat := (stop - start) / 1e6
		if math.IsInf(lat, 0) {
			return invalid("measurements.stop - measurements.start is too large")
		}
		e.LatencyMs = Some(lat)
	}
	return nil
}

func parseEventName(v *fastjson.Value) (string, error) {
	if !present(v) {
		return "", invalid("event_name is required")
	}
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		if t, ok := knownByName[string(b)]; ok {
			return t.Name, nil
		}
		if len(b) > MaxEventNameLen {
			return "", tooLong("event_name", MaxEventNameLen, len(b))
		}
		name := string(b)
		if err := checkSegments(strings.Split(name, ".")); err != nil {
			return "", err
		}
		return name, nil
	case fastjson.TypeArray:
		items, _ := v.Array()
		n := len(items) - 1 // the dots
		for _, it := range items {
			b, err := it.StringBytes()
			if err != nil {
				return "", invalid("event_name must be a string or a list of strings")
			}
			n += len(b)
		}
		if n > MaxEventNameLen {
			return "", tooLong("event_name", MaxEventNameLen, n)
		}
		segs := make([]string, len(items))
		for i, it := range items {
			b, _ := it.StringBytes()
			segs[i] = string(b)
		}
		if err := checkSegments(segs); err != nil {
			return "", err
		}
		return strings.Join(segs, "."), nil
	}
	return "", invalid("event_name must be a string or a list of strings")
}

func checkSegments(segs []string) error {
	if len(segs) < 1 || len(segs) > 8 {
		return invalid("event_name must have 1 to 8 segments, got %d", len(segs))
	}
	for _, s := range segs {
		ok := s != ""
		for i := 0; i < len(s) && ok; i++ {
			c := s[i]
			ok = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		}
		if !ok {
			return invalid("event_name segment %q must match [A-Za-z0-9_]+", s)
		}
	}
	return nil
}

func parseTimestamp(n num, now time.Time) (int64, error) {
	nowUs := now.UnixMicro()
	v := n.v
	if !present(v) {
		return nowUs, nil
	}
	var ts int64
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		t, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil {
			return 0, invalid("timestamp %q is not RFC 3339", b)
		}
		ts = t.UnixMicro()
	case fastjson.TypeNumber:
		if err := checkTimestampUnit(n.f, v); err != nil {
			return 0, err
		}
		ts = n.i
		if !n.isInt {
			if n.f != math.Trunc(n.f) || math.Abs(n.f) > maxExactInt {
				return 0, invalid("timestamp must be integer microseconds since the epoch or an RFC 3339 string")
			}
			ts = int64(n.f)
		}
	default:
		return 0, wrongType("timestamp", v, "microseconds or an RFC 3339 string")
	}
	if ts < 0 {
		return 0, invalid("timestamp must not be before 1970")
	}
	if ts > nowUs+MaxFuture.Microseconds() {
		return 0, invalid("timestamp is more than %s in the future", MaxFuture)
	}
	return ts, nil
}

// Times since the epoch, in seconds, of the dates a timestamp in another
// unit is taken to mean: 2000-01-01 and 2100-01-01. The ranges they give
// in each unit do not overlap.
const (
	plausibleFrom = 946684800
	plausibleTo   = 4102444800
)

// checkTimestampUnit rejects a number that reads as a date between 2000 and
// 2100 in seconds, milliseconds or nanoseconds: as microseconds it would be
// far in the past or the future, and the client most likely sent the wrong
// unit.
func checkTimestampUnit(f float64, v *fastjson.Value) error {
	if f < plausibleFrom || f >= plausibleTo*1e9 {
		return nil
	}
	for _, u := range [...]struct {
		perSecond float64
		name      string
	}{{1, "seconds"}, {1e3, "milliseconds"}, {1e9, "nanoseconds"}} {
		if f >= plausibleFrom*u.perSecond && f < plausibleTo*u.perSecond {
			return invalid("timestamp %s looks like %s since the epoch; timestamps are microseconds", v.MarshalTo(nil), u.name)
		}
	}
	return nil
}

func count(path string, v float64) (int64, error) {
	if v < 0 {
		return 0, invalid("%s must be >= 0, got %v", path, v)
	}
	if v != math.Trunc(v) || v > maxExactInt {
		return 0, invalid("%s must be a whole number, got %v", path, v)
	}
	return int64(v), nil
}

// tokenCount reads an optional whole, non-negative number.
func tokenCount(v num, path string) (Null[int64], error) {
	f, ok, err := number(v, path)
	if err != nil || !ok {
		return Null[int64]{}, err
	}
	n, err := count(path, f)
	if err != nil {
		return Null[int64]{}, err
	}
	return Some(n), nil
}

func firstPresent(a, b *fastjson.Value) *fastjson.Value {
	if present(a) {
		return a
	}
	return b
}

func firstNum(a, b num) num {
	if present(a.v) {
		return a
	}
	return b
}

// fillTokens sets e.Tokens and returns the count of cached prompt tokens.
func (d *Decoder) fillTokens(e *Event, meta *metaFields, meas *measFields) (int64, error) {
	var tok Tokens
	var cached Null[int64]
	obj, err := object(meta.tokens, "metadata.tokens")
	if err != nil {
		return 0, err
	}
	if obj != nil {
		var t tokenFields
		if w := t.collect(d, obj); w != nil {
			return 0, w.err()
		}
		if tok.Prompt, err = tokenCount(firstNum(t.prompt, t.input), "metadata.tokens.prompt"); err != nil {
			return 0, err
		}
		if tok.Completion, err = tokenCount(firstNum(t.completion, t.output), "metadata.tokens.completion"); err != nil {
			return 0, err
		}
		if tok.Total, err = tokenCount(t.total, "metadata.tokens.total"); err != nil {
			return 0, err
		}
		if cached, err = tokenCount(t.cached, "metadata.tokens.cached"); err != nil {
			return 0, err
		}
	}
	if !tok.Prompt.Valid && !tok.Completion.Valid && !tok.Total.Valid {
		if tok.Prompt, err = tokenCount(meas.promptTokens, "measurements.prompt_tokens"); err != nil {
			return 0, err
		}
		if tok.Completion, err = tokenCount(meas.completionTokens, "measurements.completion_tokens"); err != nil {
			return 0, err
		}
	}
	if !tok.Prompt.Valid && !tok.Completion.Valid && !tok.Total.Valid {
		return 0, nil
	}
	if !tok.Total.Valid {
		tok.Total = Some(tok.Prompt.V + tok.Completion.V)
	}
	e.Tokens = &tok
	return cached.V, nil
}

// fillCost: explicit cost_usd, metadata.cost, tokens × price, measurements.cost.
func fillCost(e *Event, top *topFields, meta *metaFields, meas *measFields, cached int64, prices *pricing.Table) error {
	for _, src := range [...]struct {
		v    num
		path string
	}{{top.cost, "cost_usd"}, {meta.cost, "metadata.cost"}} {
		c, ok, err := number(src.v, src.path)
		if err != nil {
			return err
		}
		if ok {
			if c < 0 {
				return invalid("%s must be >= 0, got %v", src.path, c)
			}
			e.CostUSD = Some(c)
			return nil
		}
	}
	if e.Tokens != nil && e.Model.Valid {
		if usd, ok := prices.Cost(e.Model.V, e.Tokens.Prompt.V, e.Tokens.Completion.V, cached); ok {
			e.CostUSD = Some(usd)
			return nil
		}
		e.Unpriced = true
	}
	c, ok, err := number(meas.cost, "measurements.cost")
	if err != nil {
		return err
	}
	if ok {
		if c < 0 {
			return invalid("measurements.cost must be >= 0, got %v", c)
		}
		e.CostUSD, e.Unpriced = Some(c), false
	}
	return nil
}

func status(v *fastjson.Value) string {
	if v == nil || v.Type() != fastjson.TypeString {
		return ""
	}
	b, _ := v.StringBytes()
	switch {
	case strings.EqualFold(string(b), "ok"):
		return "ok"
	case strings.EqualFold(string(b), "error"):
		return "error"
	}
	return ""
}

// deriveSuccess applies SPEC §4.3's rules in order.
func deriveSuccess(top *topFields, meta *metaFields, meas *measFields, name string) (Null[bool], error) {
	if v := top.success; present(v) {
		switch v.Type() {
		case fastjson.TypeTrue:
			return Some(true), nil
		case fastjson.TypeFalse:
			return Some(false), nil
		}
		return Null[bool]{}, wrongType("success", v, "a boolean")
	}
	if present(meta.err) || present(meta.exception) {
		return Some(false), nil
	}
	for _, st := range [...]string{status(meas.status), status(meta.status)} {
		switch st {
		case "ok":
			return Some(true), nil
		case "error":
			return Some(false), nil
		}
	}
	if name == "exception" || strings.HasSuffix(name, ".exception") {
		return Some(false), nil
	}
	if present(meta.response) {
		return Some(true), nil
	}
	return Null[bool]{}, nil
}

// training lifts the training fields, metadata first, then measurements.
func (d *Decoder) training(meta, meas *trainFields) (*Training, error) {
	tr := &Training{}
	var err error
	for _, f := range [...]struct {
		m1, m2 *fastjson.Value
		path   string
		dst    *Null[int64]
	}{{meta.epoch, meas.epoch, "epoch", &tr.Epoch}, {meta.batch, meas.batch, "batch", &tr.Batch}} {
		n, err := d.num(firstPresent(f.m1, f.m2), f.path)
		if err != nil {
			return nil, err
		}
		if *f.dst, err = tokenCount(n, f.path); err != nil {
			return nil, err
		}
	}
	for _, f := range [...]struct {
		m1, m2 *fastjson.Value
		path   string
		dst    *Null[float64]
	}{
		{meta.loss, meas.loss, "loss", &tr.Loss}, {meta.accuracy, meas.accuracy, "accuracy", &tr.Accuracy},
		{meta.learningRate, meas.learningRate, "learning_rate", &tr.LearningRate},
		{meta.gradientNorm, meas.gradientNorm, "gradient_norm", &tr.GradientNorm},
	} {
		n, err := d.num(firstPresent(f.m1, f.m2), f.path)
		if err != nil {
			return nil, err
		}
		v, ok, err := number(n, f.path)
		if err != nil {
			return nil, err
		}
		if ok {
			*f.dst = Some(v)
		}
	}
	if tr.CheckpointPath, err = d.text(firstPresent(meta.checkpointPath, meas.checkpointPath), "checkpoint_path", 0); err != nil {
		return nil, err
	}
	return tr, nil
}

// NewID returns 32 random hex characters (128 bits).
func NewID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}
