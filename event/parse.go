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

// Decoder parses client events (SPEC §4.2) with one pass of a reusable JSON
// parser into an Input, and enriches that (Enrich). Events it returns share
// its arena, so a Decoder serves one request at a time; Reset it (or take a
// fresh one) for the next.
type Decoder struct {
	p      fastjson.Parser
	arena  []byte
	intern map[string]string
	in     Input // the event being decoded: one per Decoder, so none is allocated per event

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
	d.in = Input{} // keeps no strings of the last event alive in the pool
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
	in := &d.in
	*in = Input{}
	if err := d.decode(in, o, objects); err != nil {
		return err
	}
	return Enrich(e, in, now, prices)
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

func kindOf(t fastjson.Type) kind {
	switch t {
	case fastjson.TypeString:
		return kindString
	case fastjson.TypeNumber:
		return kindNumber
	case fastjson.TypeObject:
		return kindObject
	case fastjson.TypeArray:
		return kindArray
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return kindBool
	}
	return kindNull
}

func typeName(t fastjson.Type) string { return kindOf(t).String() }

func wrongType(path string, v *fastjson.Value, want string) error {
	return wrongKind(path, kindOf(v.Type()), want)
}

func present(v *fastjson.Value) bool { return v != nil && v.Type() != fastjson.TypeNull }

// topFields are what the decoder reads of an event's top level in their
// JSON forms; the other known keys go straight into the Input.
type topFields struct {
	eventName, measurements, metadata *fastjson.Value
	timestamp                         num
	unknown                           []byte // the first key that is no field
}

// num is a known field read as a number: collect checks it against RFC
// 8259's grammar and reads it in the same pass (readNum).
type num struct {
	v     *fastjson.Value
	f     float64 // the value, when v is a number
	i     int64   // the value, when isInt: an integer of at most 18 digits
	isInt bool
}

// Known keys that have no slot of the Input, numbered after the slots: a
// known key's number is its bit in the keys an object has given.
const (
	keyEventName slot = nslots + iota
	keyTimestamp
	keyMetadata
	keyMeasurements
	keyTokens
	keyError
	keyException
	keyStatus
	keyResponse
)

var _ uint64 = 1 << keyResponse // every key has a bit

// once notes that an object gave the known key k (numbered s); a key
// given twice rejects the event.
func once(seen *uint64, s slot, k []byte) *walkError {
	if *seen&(1<<s) != 0 {
		return duplicateKey(k)
	}
	*seen |= 1 << s
	return nil
}

// readNum reads the value of a numeric field: a number is checked and
// read, any other value walked (a wrong type where it is read, free-form
// where not).
func (d *Decoder) readNum(dst *num, k []byte, v *fastjson.Value) *walkError {
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

// number decodes the numeric field k (slot s) into dst. A value of another
// type is noted for Enrich and walked.
func (d *Decoder) number(in *Input, seen *uint64, s slot, k []byte, v *fastjson.Value, dst *Null[float64]) *walkError {
	if w := once(seen, s, k); w != nil {
		return w
	}
	switch v.Type() {
	case fastjson.TypeNumber:
		var n num
		if w := d.readNumber(v, &n, true); w != nil {
			return w.in(shorten(k))
		}
		*dst = Some(n.f)
		return nil
	case fastjson.TypeNull:
		return nil
	}
	in.mistype(s, kindOf(v.Type()))
	return d.member(k, v)
}

// text decodes a string field (slot s); a value of another type is noted
// for Enrich. Short, repeated values (model names) share one copy.
func (d *Decoder) text(in *Input, s slot, v *fastjson.Value, shared bool) Null[string] {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		if shared {
			return Some(d.str(b))
		}
		return Some(string(b))
	case fastjson.TypeNull:
		return Null[string]{}
	}
	in.mistype(s, kindOf(v.Type()))
	return Null[string]{}
}

// id decodes an identifier that clients send as a string or a number
// (kept as written).
func (d *Decoder) id(in *Input, seen *uint64, s slot, k []byte, v *fastjson.Value, dst *Null[string]) *walkError {
	if w := once(seen, s, k); w != nil {
		return w
	}
	if v.Type() != fastjson.TypeNumber {
		*dst = d.text(in, s, v, false)
		return nil
	}
	b := v.MarshalTo(d.scratch[:0])
	if cap(b) > cap(d.scratch) {
		d.scratch = b[:0]
	}
	var n num
	if w := readNumber(b, &n, false); w != nil {
		w.number = bytes.Clone(w.number)
		return w.in(shorten(k))
	}
	*dst = Some(string(b))
	return nil
}

// flag notes whether the field k is set (not null); its value is walked.
func (d *Decoder) flag(seen *uint64, s slot, k []byte, v *fastjson.Value, dst *bool) *walkError {
	if w := once(seen, s, k); w != nil {
		return w
	}
	if v.Type() != fastjson.TypeNull {
		*dst = true
	}
	return d.member(k, v)
}

// status decodes a status field: only a string is one.
func (d *Decoder) status(seen *uint64, k []byte, v *fastjson.Value, dst *Null[string]) *walkError {
	if w := once(seen, keyStatus, k); w != nil {
		return w
	}
	if v.Type() == fastjson.TypeString {
		b, _ := v.StringBytes()
		*dst = Some(d.str(b))
		return nil
	}
	return d.member(k, v)
}

// training decodes a training field of metadata or measurements into t,
// whose slots start at base; ok is false when k is none.
func (d *Decoder) training(in *Input, seen *uint64, base slot, k []byte, v *fastjson.Value, t *InputTraining) (w *walkError, ok bool) {
	var dst *Null[float64]
	var s slot
	switch string(k) {
	case "epoch":
		s, dst = trainEpoch, &t.Epoch
	case "batch":
		s, dst = trainBatch, &t.Batch
	case "loss":
		s, dst = trainLoss, &t.Loss
	case "accuracy":
		s, dst = trainAccuracy, &t.Accuracy
	case "learning_rate":
		s, dst = trainLearningRate, &t.LearningRate
	case "gradient_norm":
		s, dst = trainGradientNorm, &t.GradientNorm
	case "checkpoint_path":
		if w = once(seen, base+trainCheckpointPath, k); w == nil {
			t.CheckpointPath = d.text(in, base+trainCheckpointPath, v, true)
			w = d.member(k, v)
		}
		return w, true
	default:
		return nil, false
	}
	return d.number(in, seen, base+s, k, v, dst), true
}

// The collect methods decode an object's known keys into the Input and do
// walk's checks (strict.go) on the way, so the objects an event usually has
// are visited once. A known key given twice is caught by once; the other
// keys are noted for endObject.

func (d *Decoder) collectTop(in *Input, top *topFields, o *fastjson.Object) *walkError {
	start := d.nkeys
	var seen uint64
	var w *walkError
	o.Visit(func(k []byte, v *fastjson.Value) {
		if w != nil {
			return
		}
		switch string(k) {
		// Fields read as strings on every path (anything else rejects the
		// event) hold nothing for walk to check.
		case "event_name":
			if w = once(&seen, keyEventName, k); w == nil {
				top.eventName = v
			}
		case "experiment_id":
			if w = once(&seen, slotExperimentID, k); w == nil {
				in.ExperimentID = d.text(in, slotExperimentID, v, true).V
			}
		case "event_id":
			if w = once(&seen, slotEventID, k); w == nil {
				in.EventID = d.text(in, slotEventID, v, false)
			}
		case "timestamp":
			if w = once(&seen, keyTimestamp, k); w == nil {
				w = d.readNum(&top.timestamp, k, v)
			}
		case "measurements":
			if w = once(&seen, keyMeasurements, k); w == nil {
				top.measurements = v // collectMeasurements walks it
			}
		case "metadata":
			if w = once(&seen, keyMetadata, k); w == nil {
				top.metadata = v // collectMetadata walks it
			}
		case "latency_ms":
			w = d.number(in, &seen, slotLatency, k, v, &in.LatencyMs)
		case "cost_usd":
			w = d.number(in, &seen, slotCost, k, v, &in.CostUSD)
		case "success":
			if w = once(&seen, slotSuccess, k); w != nil {
				return
			}
			switch v.Type() {
			case fastjson.TypeTrue:
				in.Success = Some(true)
			case fastjson.TypeFalse:
				in.Success = Some(false)
			case fastjson.TypeNull:
			default:
				in.mistype(slotSuccess, kindOf(v.Type()))
				w = d.member(k, v)
			}
		default:
			if !ignoredField(string(k)) {
				if top.unknown == nil {
					top.unknown = k
				}
				return // rejected
			}
			d.key(k)
			if compound(v) {
				w = d.member(k, v)
			}
		}
	})
	return d.endObject(o, start, w)
}

func (d *Decoder) collectMetadata(in *Input, o *fastjson.Object) error {
	start := d.nkeys
	var seen uint64
	var w *walkError
	var tokens *fastjson.Value
	o.Visit(func(k []byte, v *fastjson.Value) {
		if w != nil {
			return
		}
		switch string(k) {
		// Read as strings (ids also as numbers, which id checks) on every
		// path: nothing for walk to check.
		case "model":
			if w = once(&seen, slotModel, k); w == nil {
				in.Model = d.text(in, slotModel, v, true)
			}
		case "provider":
			if w = once(&seen, slotProvider, k); w == nil {
				in.Provider = d.text(in, slotProvider, v, true)
			}
		case "session_id":
			w = d.id(in, &seen, slotSessionID, k, v, &in.SessionID)
		case "user_id":
			w = d.id(in, &seen, slotUserID, k, v, &in.UserID)
		case "sample_id":
			w = d.id(in, &seen, slotSampleID, k, v, &in.SampleID)
		case "cohort":
			w = d.id(in, &seen, slotCohort, k, v, &in.Cohort)
		case "tokens":
			if w = once(&seen, keyTokens, k); w == nil {
				tokens = v // collectTokens walks it
			}
		case "cost":
			w = d.number(in, &seen, slotMetadataCost, k, v, &in.MetadataCost)
		case "error":
			w = d.flag(&seen, keyError, k, v, &in.Error)
		case "exception":
			w = d.flag(&seen, keyException, k, v, &in.Error)
		case "status":
			w = d.status(&seen, k, v, &in.MetadataStatus)
		case "response":
			w = d.flag(&seen, keyResponse, k, v, &in.Response)
		default:
			var ok bool
			if w, ok = d.training(in, &seen, slotMetadataTraining, k, v, &in.MetadataTraining); !ok {
				d.key(k)
				w = d.member(k, v)
			}
		}
	})
	if w = d.endObject(o, start, w); w != nil {
		return w.in("metadata").err()
	}
	obj, err := object(tokens, "metadata.tokens")
	if err != nil || obj == nil {
		return err
	}
	if w := d.collectTokens(in, obj); w != nil {
		return w.in("tokens").in("metadata").err()
	}
	return nil
}

func (d *Decoder) collectMeasurements(in *Input, o *fastjson.Object) *walkError {
	start := d.nkeys
	var seen uint64
	var w *walkError
	o.Visit(func(k []byte, v *fastjson.Value) {
		if w != nil {
			return
		}
		switch string(k) {
		case "duration":
			w = d.number(in, &seen, slotDuration, k, v, &in.Duration)
		case "start":
			w = d.number(in, &seen, slotStart, k, v, &in.Start)
		case "stop":
			w = d.number(in, &seen, slotStop, k, v, &in.Stop)
		case "status":
			w = d.status(&seen, k, v, &in.MeasurementsStatus)
		case "prompt_tokens":
			w = d.number(in, &seen, slotPromptTokens, k, v, &in.PromptTokens)
		case "completion_tokens":
			w = d.number(in, &seen, slotCompletionTokens, k, v, &in.CompletionTokens)
		case "cost":
			w = d.number(in, &seen, slotMeasurementsCost, k, v, &in.MeasurementsCost)
		default:
			var ok bool
			if w, ok = d.training(in, &seen, slotMeasurementsTraining, k, v, &in.MeasurementsTraining); !ok {
				d.key(k)
				w = d.member(k, v)
			}
		}
	})
	return d.endObject(o, start, w).in("measurements")
}

func (d *Decoder) collectTokens(in *Input, o *fastjson.Object) *walkError {
	start := d.nkeys
	var seen uint64
	var w *walkError
	t := &in.Tokens
	o.Visit(func(k []byte, v *fastjson.Value) {
		if w != nil {
			return
		}
		switch string(k) {
		case "prompt":
			w = d.number(in, &seen, slotTokensPrompt, k, v, &t.Prompt)
		case "input":
			w = d.number(in, &seen, slotTokensInput, k, v, &t.Input)
		case "completion":
			w = d.number(in, &seen, slotTokensCompletion, k, v, &t.Completion)
		case "output":
			w = d.number(in, &seen, slotTokensOutput, k, v, &t.Output)
		case "total":
			w = d.number(in, &seen, slotTokensTotal, k, v, &t.Total)
		case "cached":
			w = d.number(in, &seen, slotTokensCached, k, v, &t.Cached)
		default:
			d.key(k)
			w = d.member(k, v)
		}
	})
	return d.endObject(o, start, w)
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

// decode fills in from the event object o. With objects set, in.Metadata
// and in.Measurements are copies of those objects in the arena.
func (d *Decoder) decode(in *Input, o *fastjson.Object, objects bool) error {
	var top topFields
	if w := d.collectTop(in, &top, o); w != nil {
		return w.err()
	}
	if top.unknown != nil {
		return unknownField(top.unknown)
	}
	var err error
	if in.EventName, err = parseEventName(top.eventName); err != nil {
		return err
	}
	if in.Timestamp, err = parseTimestamp(top.timestamp); err != nil {
		return err
	}
	// Metadata and measurements are copied before collect unescapes their
	// keys: fastjson writes an unescaped key or string back with Go's
	// quoting, which is not JSON.
	if obj, err := object(top.metadata, "metadata"); err != nil {
		return err
	} else if obj != nil {
		if objects {
			in.Metadata = d.raw(top.metadata)
		}
		if err := d.collectMetadata(in, obj); err != nil {
			return err
		}
	}
	if obj, err := object(top.measurements, "measurements"); err != nil {
		return err
	} else if obj != nil {
		if objects {
			in.Measurements = d.raw(top.measurements)
		}
		if w := d.collectMeasurements(in, obj); w != nil {
			return w.err()
		}
	}
	return nil
}

// parseEventName reads event_name, a dotted string or a list of segments,
// as a dotted name. Enrich checks a string; a list's segments are checked
// here, where a segment holding a dot is still one.
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
		return string(b), nil
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
	if len(segs) < 1 || len(segs) > maxSegments {
		return badSegmentCount(len(segs))
	}
	for _, s := range segs {
		if !validSegment(s) {
			return badSegment(s)
		}
	}
	return nil
}

// parseTimestamp reads a timestamp in microseconds or RFC 3339; Enrich
// checks its range.
func parseTimestamp(n num) (Null[int64], error) {
	v := n.v
	if !present(v) {
		return Null[int64]{}, nil
	}
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		t, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil {
			return Null[int64]{}, invalid("timestamp %q is not RFC 3339", b)
		}
		return Some(t.UnixMicro()), nil
	case fastjson.TypeNumber:
		if err := checkTimestampUnit(n.f, v); err != nil {
			return Null[int64]{}, err
		}
		if n.isInt {
			return Some(n.i), nil
		}
		if n.f != math.Trunc(n.f) || math.Abs(n.f) > maxExactInt {
			return Null[int64]{}, invalid("timestamp must be integer microseconds since the epoch or an RFC 3339 string")
		}
		return Some(int64(n.f)), nil
	}
	return Null[int64]{}, wrongType("timestamp", v, "microseconds or an RFC 3339 string")
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

// maxSegments bounds the segments of an event name.
const maxSegments = 8

// maxExactInt is the largest integer a float64 holds exactly (2^53).
const maxExactInt = 1 << 53

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Input is one event as its protocol's decoder read it, before enrichment:
// every value SPEC §4.3's rules read, each from the field the SPEC names
// (shown in the comments) or from what a protocol maps to it. Absent values
// are Null, or empty; Enrich validates what is present. The JSON decoder
// fills it from an event's keys; a decoder of another protocol fills it
// from its own fields (an OTLP span's attributes) and calls Enrich, so that
// every protocol is enriched by the same rules. Enrich's errors name the
// fields by their JSON paths (SPEC §4.2).
type Input struct {
	EventName    string       // event_name, dotted
	ExperimentID string       // experiment_id; "" when the event names none
	EventID      Null[string] // event_id; absent: a random one
	Timestamp    Null[int64]  // timestamp, µs since the epoch; absent: the time of receipt

	LatencyMs Null[float64] // latency_ms
	Duration  Null[float64] // measurements.duration, ns
	Start     Null[float64] // measurements.start, ns
	Stop      Null[float64] // measurements.stop, ns

	Tokens           InputTokens   // metadata.tokens
	PromptTokens     Null[float64] // measurements.prompt_tokens
	CompletionTokens Null[float64] // measurements.completion_tokens

	CostUSD          Null[float64] // cost_usd
	MetadataCost     Null[float64] // metadata.cost
	MeasurementsCost Null[float64] // measurements.cost

	Success            Null[bool]   // success
	Error              bool         // metadata.error or metadata.exception is set (not null)
	MeasurementsStatus Null[string] // measurements.status
	MetadataStatus     Null[string] // metadata.status
	Response           bool         // metadata.response is set (not null)

	Model     Null[string] // metadata.model
	Provider  Null[string] // metadata.provider
	SessionID Null[string] // metadata.session_id
	UserID    Null[string] // metadata.user_id
	SampleID  Null[string] // metadata.sample_id
	Cohort    Null[string] // metadata.cohort

	// Read for crucible_train.* events only, metadata's first.
	MetadataTraining     InputTraining
	MeasurementsTraining InputTraining

	// The free-form objects, as JSON, kept as the stored event's; nil when
	// the caller keeps the event's bytes instead (Event.Raw).
	Metadata     []byte
	Measurements []byte

	// Fields the decoder found with a value of the wrong type, by slot.
	// Enrich rejects the event when it reads one; a field it does not read
	// (measurements.cost when cost_usd is given) stays free-form.
	mistyped uint64
	found    [nslots]kind
}

// InputTokens are the token counts of metadata.tokens. Counts are numbers
// as clients send them; Enrich checks that they are whole.
type InputTokens struct {
	Prompt, Input      Null[float64] // prompt, else input
	Completion, Output Null[float64] // completion, else output
	Total              Null[float64] // absent: prompt + completion
	Cached             Null[float64] // prompt tokens served from the provider's cache, for the price
}

// InputTraining are the training fields of metadata or of measurements.
type InputTraining struct {
	Epoch, Batch                               Null[float64] // whole numbers
	Loss, Accuracy, LearningRate, GradientNorm Null[float64]
	CheckpointPath                             Null[string]
}

// slot numbers the fields of an Input that a decoder can find mistyped.
type slot uint8

const (
	slotExperimentID slot = iota
	slotEventID
	slotLatency
	slotCost
	slotSuccess
	slotDuration
	slotStart
	slotStop
	slotPromptTokens
	slotCompletionTokens
	slotMetadataCost
	slotMeasurementsCost
	slotModel
	slotProvider
	slotSessionID
	slotUserID
	slotSampleID
	slotCohort
	slotTokensPrompt
	slotTokensInput
	slotTokensCompletion
	slotTokensOutput
	slotTokensTotal
	slotTokensCached
	slotMetadataTraining                                            // the first of metadata's training fields
	slotMeasurementsTraining = slotMetadataTraining + trainingSlots // the first of measurements'
	nslots                   = slotMeasurementsTraining + trainingSlots
)

// The training fields, from a training slot's first.
const (
	trainEpoch slot = iota
	trainBatch
	trainLoss
	trainAccuracy
	trainLearningRate
	trainGradientNorm
	trainCheckpointPath
	trainingSlots
)

// kind is the type of a value a decoder found, for the error that names it.
type kind uint8

const (
	kindNull kind = iota
	kindString
	kindNumber
	kindBool
	kindObject
	kindArray
)

func (k kind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindBool:
		return "a boolean"
	case kindObject:
		return "an object"
	case kindArray:
		return "an array"
	}
	return "null"
}

func wrongKind(path string, k kind, want string) error {
	return invalid("field %q: cannot use %s as %s", path, k, want)
}

// mistype notes that the field in slot s came with a value of kind k.
func (in *Input) mistype(s slot, k kind) {
	in.mistyped |= 1 << s
	in.found[s] = k
}

// typeErr is the error of reading slot s when it came mistyped.
func (in *Input) typeErr(s slot, path, want string) error {
	if in.mistyped&(1<<s) == 0 {
		return nil
	}
	return wrongKind(path, in.found[s], want)
}

// The readers of an Input's values test the usual case first and leave the
// errors to badNumber and badText. A mistyped field counts as given, so it
// wins over the next candidate and rejects the event.

// What a number must be, besides finite.
const (
	anyNumber = iota
	nonNegative
	whole // and non-negative
)

// number reads the finite number n of slot s, named path: ok is false
// when it is absent.
func (in *Input) number(s slot, n Null[float64], path string) (v float64, ok bool, err error) {
	if in.mistyped&(1<<s) != 0 || n.Valid && n.V-n.V != 0 { // x-x is NaN for NaN and ±Inf
		return in.badNumber(s, n, path, anyNumber)
	}
	return n.V, n.Valid, nil
}

// nonNegative is number for a value that must be >= 0.
func (in *Input) nonNegative(s slot, n Null[float64], path string) (float64, bool, error) {
	if in.mistyped&(1<<s) != 0 || n.Valid && !(n.V >= 0 && n.V <= math.MaxFloat64) {
		return in.badNumber(s, n, path, nonNegative)
	}
	return n.V, n.Valid, nil
}

// count reads an optional whole, non-negative number.
func (in *Input) count(s slot, n Null[float64], path string) (Null[int64], error) {
	if in.mistyped&(1<<s) != 0 || n.Valid && !(n.V >= 0 && n.V <= maxExactInt && n.V == math.Trunc(n.V)) {
		_, _, err := in.badNumber(s, n, path, whole)
		return Null[int64]{}, err
	}
	return Null[int64]{V: int64(n.V), Valid: n.Valid}, nil
}

// badNumber is the error of a number that is mistyped or breaks rule.
func (in *Input) badNumber(s slot, n Null[float64], path string, rule int) (float64, bool, error) {
	if err := in.typeErr(s, path, "a number"); err != nil {
		return 0, false, err
	}
	switch v := n.V; {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return 0, false, invalid("%s must be a finite number, got %v", path, v)
	case rule >= nonNegative && v < 0:
		return 0, false, invalid("%s must be >= 0, got %v", path, v)
	case rule == whole && (v != math.Trunc(v) || v > maxExactInt):
		return 0, false, invalid("%s must be a whole number, got %v", path, v)
	}
	return n.V, n.Valid, nil
}

// text reads an optional string of slot s of at most max bytes; want names
// what a decoder may have found instead.
func (in *Input) text(s slot, v Null[string], path, want string, max int) (Null[string], error) {
	if in.mistyped&(1<<s) != 0 || len(v.V) > max {
		return in.badText(s, v, path, want, max)
	}
	return v, nil
}

func (in *Input) badText(s slot, v Null[string], path, want string, max int) (Null[string], error) {
	if err := in.typeErr(s, path, want); err != nil {
		return Null[string]{}, err
	}
	return Null[string]{}, tooLong(path, max, len(v.V))
}

func tooLong(path string, max, n int) error {
	return invalid("%s must be at most %d bytes, got %d", path, max, n)
}

// Enrich validates in and makes e the stored event (SPEC §4.3): every field
// but the experiment's (its name, condition and tags) and Raw, which the
// caller sets; e.ExperimentID is the one in names, maybe empty. now is the
// time of receipt. e keeps in's strings and objects.
func Enrich(e *Event, in *Input, now time.Time, prices *pricing.Table) error {
	*e = Event{}
	e.Metadata, e.Measurements, e.SampleWeight = in.Metadata, in.Measurements, 1
	if err := checkEventName(in.EventName); err != nil {
		return err
	}
	e.EventName = in.EventName
	if err := in.typeErr(slotExperimentID, "experiment_id", "a string"); err != nil {
		return err
	}
	e.ExperimentID = in.ExperimentID
	if err := enrichEventID(e, in); err != nil {
		return err
	}
	var err error
	if e.Timestamp, err = checkTimestamp(in.Timestamp, now); err != nil {
		return err
	}
	if err := enrichLatency(e, in); err != nil {
		return err
	}
	cached, err := enrichTokens(e, in)
	if err != nil {
		return err
	}
	if e.Model, err = in.text(slotModel, in.Model, "metadata.model", "a string", MaxLabelLen); err != nil {
		return err
	}
	if e.Provider, err = in.text(slotProvider, in.Provider, "metadata.provider", "a string", MaxLabelLen); err != nil {
		return err
	}
	if e.SessionID, err = in.text(slotSessionID, in.SessionID, "metadata.session_id", "a string or a number", MaxIDLen); err != nil {
		return err
	}
	if e.UserID, err = in.text(slotUserID, in.UserID, "metadata.user_id", "a string or a number", MaxIDLen); err != nil {
		return err
	}
	if e.SampleID, err = in.text(slotSampleID, in.SampleID, "metadata.sample_id", "a string or a number", MaxIDLen); err != nil {
		return err
	}
	if e.Cohort, err = in.text(slotCohort, in.Cohort, "metadata.cohort", "a string or a number", MaxIDLen); err != nil {
		return err
	}
	if err := enrichCost(e, in, cached, prices); err != nil {
		return err
	}
	if e.Success, err = deriveSuccess(in, e.EventName); err != nil {
		return err
	}
	if strings.HasPrefix(e.EventName, "crucible_train.") {
		if e.Training, err = enrichTraining(in); err != nil {
			return err
		}
	}
	return nil
}

// checkEventName checks a dotted name: 1 to 8 segments of [A-Za-z0-9_]+.
func checkEventName(name string) error {
	if validName(name) {
		return nil
	}
	if len(name) > MaxEventNameLen {
		return tooLong("event_name", MaxEventNameLen, len(name))
	}
	if n := strings.Count(name, ".") + 1; n > maxSegments {
		return badSegmentCount(n)
	}
	for s := range strings.SplitSeq(name, ".") {
		if !validSegment(s) {
			return badSegment(s)
		}
	}
	return nil
}

// validName is checkEventName's test, without branches on the bytes: it
// runs for every event.
func validName(name string) bool {
	if len(name) == 0 || len(name) > MaxEventNameLen {
		return false
	}
	var bad, dots uint
	prev := uint(classDot) // as if after a dot: an empty first segment fails
	for i := 0; i < len(name); i++ {
		c := uint(nameClass[name[i]])
		bad |= c&classOther | c&prev // another byte, or a dot after a dot
		dots += c & classDot
		prev = c
	}
	return bad == 0 && prev == classSegment && dots < maxSegments
}

// The classes of the bytes of an event name.
const (
	classSegment = 0 // [A-Za-z0-9_]
	classDot     = 1
	classOther   = 2
)

var nameClass = func() (t [256]byte) {
	for c := range t {
		switch {
		case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'):
			t[c] = classSegment
		case c == '.':
			t[c] = classDot
		default:
			t[c] = classOther
		}
	}
	return t
}()

func validSegment(s string) bool {
	for i := 0; i < len(s); i++ {
		if nameClass[s[i]] != classSegment {
			return false
		}
	}
	return s != ""
}

func badSegmentCount(n int) error {
	return invalid("event_name must have 1 to %d segments, got %d", maxSegments, n)
}

func badSegment(s string) error {
	return invalid("event_name segment %q must match [A-Za-z0-9_]+", s)
}

// enrichEventID keeps a client's event id, or makes one.
func enrichEventID(e *Event, in *Input) error {
	id := in.EventID
	if in.mistyped&(1<<slotEventID) != 0 || id.Valid && (id.V == "" || len(id.V) > MaxEventIDLen ||
		strings.ContainsFunc(id.V, func(r rune) bool { return r < 0x20 || r == 0x7f })) {
		return invalid("event_id must be a string of 1-%d printable characters", MaxEventIDLen)
	}
	if id.Valid {
		e.EventID, e.ClientID = id.V, true
	} else {
		e.EventID = NewID()
	}
	return nil
}

// checkTimestamp defaults a timestamp to now and bounds it.
func checkTimestamp(ts Null[int64], now time.Time) (int64, error) {
	nowUs := now.UnixMicro()
	if !ts.Valid {
		return nowUs, nil
	}
	if ts.V < 0 {
		return 0, invalid("timestamp must not be before 1970")
	}
	if ts.V > nowUs+MaxFuture.Microseconds() {
		return 0, invalid("timestamp is more than %s in the future", MaxFuture)
	}
	return ts.V, nil
}

// enrichLatency: explicit latency_ms, else duration (ns), else stop - start (ns).
func enrichLatency(e *Event, in *Input) error {
	if lat, ok, err := in.nonNegative(slotLatency, in.LatencyMs, "latency_ms"); err != nil {
		return err
	} else if ok {
		e.LatencyMs = Some(lat)
		return nil
	}
	if dur, ok, err := in.nonNegative(slotDuration, in.Duration, "measurements.duration"); err != nil {
		return err
	} else if ok {
		e.LatencyMs = Some(dur / 1e6)
		return nil
	}
	start, okStart, err := in.number(slotStart, in.Start, "measurements.start")
	if err != nil {
		return err
	}
	stop, okStop, err := in.number(slotStop, in.Stop, "measurements.stop")
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

// given tells whether slot s came, with a value or a mistyped one.
func (in *Input) given(s slot, valid bool) bool { return valid || in.mistyped&(1<<s) != 0 }

// enrichTokens sets e.Tokens and returns the count of cached prompt tokens.
func enrichTokens(e *Event, in *Input) (int64, error) {
	var tok Tokens
	var cached Null[int64]
	var err error
	t := &in.Tokens
	prompt, promptSlot := t.Prompt, slotTokensPrompt
	if !in.given(promptSlot, prompt.Valid) {
		prompt, promptSlot = t.Input, slotTokensInput
	}
	completion, completionSlot := t.Completion, slotTokensCompletion
	if !in.given(completionSlot, completion.Valid) {
		completion, completionSlot = t.Output, slotTokensOutput
	}
	if tok.Prompt, err = in.count(promptSlot, prompt, "metadata.tokens.prompt"); err != nil {
		return 0, err
	}
	if tok.Completion, err = in.count(completionSlot, completion, "metadata.tokens.completion"); err != nil {
		return 0, err
	}
	if tok.Total, err = in.count(slotTokensTotal, t.Total, "metadata.tokens.total"); err != nil {
		return 0, err
	}
	if cached, err = in.count(slotTokensCached, t.Cached, "metadata.tokens.cached"); err != nil {
		return 0, err
	}
	if !tok.Prompt.Valid && !tok.Completion.Valid && !tok.Total.Valid {
		if tok.Prompt, err = in.count(slotPromptTokens, in.PromptTokens, "measurements.prompt_tokens"); err != nil {
			return 0, err
		}
		if tok.Completion, err = in.count(slotCompletionTokens, in.CompletionTokens, "measurements.completion_tokens"); err != nil {
			return 0, err
		}
	}
	if !tok.Prompt.Valid && !tok.Completion.Valid && !tok.Total.Valid {
		return 0, nil
	}
	if !tok.Total.Valid {
		tok.Total = Some(tok.Prompt.V + tok.Completion.V)
	}
	e.Tokens = new(Tokens)
	*e.Tokens = tok
	return cached.V, nil
}

// enrichCost: explicit cost_usd, metadata.cost, tokens × price, measurements.cost.
func enrichCost(e *Event, in *Input, cached int64, prices *pricing.Table) error {
	if c, ok, err := in.nonNegative(slotCost, in.CostUSD, "cost_usd"); err != nil || ok {
		e.CostUSD = Null[float64]{V: c, Valid: ok}
		return err
	}
	if c, ok, err := in.nonNegative(slotMetadataCost, in.MetadataCost, "metadata.cost"); err != nil || ok {
		e.CostUSD = Null[float64]{V: c, Valid: ok}
		return err
	}
	if e.Tokens != nil && e.Model.Valid {
		if usd, ok := prices.Cost(e.Model.V, e.Tokens.Prompt.V, e.Tokens.Completion.V, cached); ok {
			e.CostUSD = Some(usd)
			return nil
		}
		e.Unpriced = true
	}
	c, ok, err := in.nonNegative(slotMeasurementsCost, in.MeasurementsCost, "measurements.cost")
	if err != nil {
		return err
	}
	if ok {
		e.CostUSD, e.Unpriced = Some(c), false
	}
	return nil
}

// status reads a status as "ok", "error" or "" (anything else).
func status(s Null[string]) string {
	switch {
	case !s.Valid:
		return ""
	case strings.EqualFold(s.V, "ok"):
		return "ok"
	case strings.EqualFold(s.V, "error"):
		return "error"
	}
	return ""
}

// deriveSuccess applies SPEC §4.3's rules in order.
func deriveSuccess(in *Input, name string) (Null[bool], error) {
	if err := in.typeErr(slotSuccess, "success", "a boolean"); err != nil {
		return Null[bool]{}, err
	}
	if in.Success.Valid {
		return in.Success, nil
	}
	if in.Error {
		return Some(false), nil
	}
	for _, st := range [...]string{status(in.MeasurementsStatus), status(in.MetadataStatus)} {
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
	if in.Response {
		return Some(true), nil
	}
	return Null[bool]{}, nil
}

// enrichTraining lifts the training fields, metadata first, then measurements.
func enrichTraining(in *Input) (*Training, error) {
	meta, meas := &in.MetadataTraining, &in.MeasurementsTraining
	// pick is the slot and value of a training field: metadata's when given.
	pick := func(f slot, m1, m2 Null[float64]) (slot, Null[float64]) {
		if in.given(slotMetadataTraining+f, m1.Valid) {
			return slotMetadataTraining + f, m1
		}
		return slotMeasurementsTraining + f, m2
	}
	tr := &Training{}
	var err error
	for _, f := range [...]struct {
		f      slot
		m1, m2 Null[float64]
		path   string
		dst    *Null[int64]
	}{{trainEpoch, meta.Epoch, meas.Epoch, "epoch", &tr.Epoch}, {trainBatch, meta.Batch, meas.Batch, "batch", &tr.Batch}} {
		s, v := pick(f.f, f.m1, f.m2)
		if *f.dst, err = in.count(s, v, f.path); err != nil {
			return nil, err
		}
	}
	for _, f := range [...]struct {
		f      slot
		m1, m2 Null[float64]
		path   string
		dst    *Null[float64]
	}{
		{trainLoss, meta.Loss, meas.Loss, "loss", &tr.Loss}, {trainAccuracy, meta.Accuracy, meas.Accuracy, "accuracy", &tr.Accuracy},
		{trainLearningRate, meta.LearningRate, meas.LearningRate, "learning_rate", &tr.LearningRate},
		{trainGradientNorm, meta.GradientNorm, meas.GradientNorm, "gradient_norm", &tr.GradientNorm},
	} {
		s, n := pick(f.f, f.m1, f.m2)
		v, ok, err := in.number(s, n, f.path)
		if err != nil {
			return nil, err
		}
		if ok {
			*f.dst = Some(v)
		}
	}
	s, path := slotMetadataTraining+trainCheckpointPath, meta.CheckpointPath
	if !in.given(s, path.Valid) {
		s, path = slotMeasurementsTraining+trainCheckpointPath, meas.CheckpointPath
	}
	if tr.CheckpointPath, err = in.text(s, path, "checkpoint_path", "a string", math.MaxInt); err != nil {
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
