package event

import (
	"bytes"
	"math"
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
	in     Input   // the event being decoded: one per Decoder, so none is allocated per event
	scores []Score // in.Scores' buffer; Enrich copies what it keeps

	// scratch space of the strict checks (strict.go)
	keys    []uint64 // hashes of the keys of the objects being walked
	nkeys   int
	scratch []byte

	slowOnly bool // tests: never take the fast path (fast.go)
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
	clear(d.scores[:cap(d.scores)]) // keeps no names of the last events alive in the pool
	d.in = Input{}                  // keeps no strings of the last event alive in the pool
	d.slowOnly = false
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
	// The fast path leaves the free-form objects where they are: only the
	// storage path, which keeps the client's bytes, can take it.
	if !objects && !d.slowOnly {
		in := &d.in
		*in = Input{}
		if d.fast(in, data) && checkText(data) == nil {
			return Enrich(e, in, now, prices)
		}
	}
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
	eventName, measurements, metadata, scores *fastjson.Value
	timestamp                                 num
	unknown                                   []byte // the first key that is no field
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
	keyScores
)

var _ uint64 = 1 << keyScores // every key has a bit

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
		case "scores":
			if w = once(&seen, keyScores, k); w == nil {
				top.scores = v // collectScores walks it
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
	in.nameChecked = true
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
	if obj, err := object(top.scores, "scores"); err != nil {
		return err
	} else if obj != nil {
		return d.collectScores(in, obj)
	}
	return nil
}

// parseEventName reads event_name, a dotted string or a list of segments,
// as a dotted name, checked as Enrich checks one (a list segment by
// segment, where one holding a dot is still one segment). Known names,
// most events', are valid already.
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
		if len(b) > MaxEventNameLen { // before copying it
			return "", tooLong("event_name", MaxEventNameLen, len(b))
		}
		name := string(b)
		if err := checkEventName(name); err != nil {
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
	if unit := timestampUnit(f); unit != "" {
		return invalid("timestamp %s looks like %s since the epoch; timestamps are microseconds", v.MarshalTo(nil), unit)
	}
	return nil
}

// timestampUnit names the unit a number reads as a date in (seconds,
// milliseconds or nanoseconds), or is "".
func timestampUnit(f float64) string {
	if f < plausibleFrom || f >= plausibleTo*1e9 {
		return ""
	}
	for _, u := range [...]struct {
		perSecond float64
		name      string
	}{{1, "seconds"}, {1e3, "milliseconds"}, {1e9, "nanoseconds"}} {
		if f >= plausibleFrom*u.perSecond && f < plausibleTo*u.perSecond {
			return u.name
		}
	}
	return ""
}
