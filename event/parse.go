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
}

var decoderPool = sync.Pool{New: func() any { return &Decoder{intern: make(map[string]string)} }}

// GetDecoder takes a Decoder from a pool. Events it decodes share its arena:
// call PutDecoder only when they are no longer used.
func GetDecoder() *Decoder { d := decoderPool.Get().(*Decoder); d.arena = d.arena[:0]; return d }

// PutDecoder returns d to the pool.
func PutDecoder(d *Decoder) {
	if cap(d.arena) > 32<<20 {
		d.arena = nil // let an outsized arena go
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

// number reads an optional finite number; prefix+key names it in errors.
func number(o *fastjson.Object, key, prefix string) (float64, bool, error) {
	if o == nil {
		return 0, false, nil
	}
	v := o.Get(key)
	if !present(v) {
		return 0, false, nil
	}
	if v.Type() != fastjson.TypeNumber {
		return 0, false, wrongType(prefix+key, v, "a number")
	}
	f, err := v.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false, invalid("%s must be a finite number", prefix+key)
	}
	return f, true, nil
}

// text reads an optional string.
func (d *Decoder) text(o *fastjson.Object, key, prefix string) (Null[string], error) {
	if o == nil {
		return Null[string]{}, nil
	}
	v := o.Get(key)
	if !present(v) {
		return Null[string]{}, nil
	}
	if v.Type() != fastjson.TypeString {
		return Null[string]{}, wrongType(prefix+key, v, "a string")
	}
	b, _ := v.StringBytes()
	return Some(d.str(b)), nil
}

// id reads an identifier that clients send as a string or a number.
func (d *Decoder) id(o *fastjson.Object, key string) (Null[string], error) {
	if o == nil {
		return Null[string]{}, nil
	}
	v := o.Get(key)
	if !present(v) {
		return Null[string]{}, nil
	}
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return Some(string(b)), nil
	case fastjson.TypeNumber:
		return Some(string(v.MarshalTo(nil))), nil
	}
	return Null[string]{}, wrongType("metadata."+key, v, "a string or a number")
}

// object reads an optional JSON object.
func object(o *fastjson.Object, key, path string) (*fastjson.Object, *fastjson.Value, error) {
	v := o.Get(key)
	if !present(v) {
		return nil, nil, nil
	}
	obj, err := v.Object()
	if err != nil {
		return nil, nil, invalid("%s must be a JSON object", path)
	}
	return obj, v, nil
}

// ParseInto is Parse writing into e, with the Decoder's parser and arena.
func (d *Decoder) ParseInto(e *Event, data []byte, now time.Time, prices *pricing.Table) error {
	v, err := d.p.ParseBytes(data)
	if err != nil {
		return invalid("malformed JSON: %v", err)
	}
	o, err := v.Object()
	if err != nil {
		return invalid("expected a JSON object, got %s", typeName(v.Type()))
	}
	*e = Event{}

	if e.EventName, err = parseEventName(o.Get("event_name")); err != nil {
		return err
	}
	if s, err := d.text(o, "experiment_id", ""); err != nil {
		return err
	} else if s.Valid {
		e.ExperimentID = s.V
	}
	if id := o.Get("event_id"); present(id) {
		b, err := id.StringBytes()
		if err != nil || len(b) == 0 || len(b) > MaxEventIDLen || strings.ContainsFunc(string(b), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return invalid("event_id must be a string of 1-%d printable characters", MaxEventIDLen)
		}
		e.EventID, e.ClientID = string(b), true
	} else {
		e.EventID = NewID()
	}
	if e.Timestamp, err = parseTimestamp(o.Get("timestamp"), now); err != nil {
		return err
	}

	meta, metaV, err := object(o, "metadata", "metadata")
	if err != nil {
		return err
	}
	meas, measV, err := object(o, "measurements", "measurements")
	if err != nil {
		return err
	}
	if metaV != nil {
		e.Metadata = d.raw(metaV)
	}
	if measV != nil {
		e.Measurements = d.raw(measV)
	}

	// latency_ms: explicit, else duration (ns), else stop - start (ns).
	if lat, ok, err := number(o, "latency_ms", ""); err != nil {
		return err
	} else if ok {
		if lat < 0 {
			return invalid("latency_ms must be >= 0, got %v", lat)
		}
		e.LatencyMs = Some(lat)
	} else if dur, ok, err := number(meas, "duration", "measurements."); err != nil {
		return err
	} else if ok {
		if dur < 0 {
			return invalid("measurements.duration must be >= 0, got %v", dur)
		}
		e.LatencyMs = Some(dur / 1e6)
	} else {
		start, okStart, err := number(meas, "start", "measurements.")
		if err != nil {
			return err
		}
		stop, okStop, err := number(meas, "stop", "measurements.")
		if err != nil {
			return err
		}
		if okStart && okStop {
			if stop < start {
				return invalid("measurements.stop is before measurements.start")
			}
			e.LatencyMs = Some((stop - start) / 1e6)
		}
	}

	cached, err := d.fillTokens(e, meta, meas)
	if err != nil {
		return err
	}
	if e.Model, err = d.text(meta, "model", "metadata."); err != nil {
		return err
	}
	if e.Provider, err = d.text(meta, "provider", "metadata."); err != nil {
		return err
	}
	for _, f := range [...]struct {
		key string
		dst *Null[string]
	}{{"session_id", &e.SessionID}, {"user_id", &e.UserID}, {"sample_id", &e.SampleID}, {"cohort", &e.Cohort}} {
		if *f.dst, err = d.id(meta, f.key); err != nil {
			return err
		}
	}

	if err := fillCost(e, o, meta, meas, cached, prices); err != nil {
		return err
	}
	if e.Success, err = deriveSuccess(o, meta, meas, e.EventName); err != nil {
		return err
	}
	if strings.HasPrefix(e.EventName, "crucible_train.") {
		if e.Training, err = d.training(meta, meas); err != nil {
			return err
		}
	}
	e.SampleWeight = 1
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
		name := string(b)
		if err := checkSegments(strings.Split(name, ".")); err != nil {
			return "", err
		}
		return name, nil
	case fastjson.TypeArray:
		items, _ := v.Array()
		segs := make([]string, len(items))
		for i, it := range items {
			b, err := it.StringBytes()
			if err != nil {
				return "", invalid("event_name must be a string or a list of strings")
			}
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

func parseTimestamp(v *fastjson.Value, now time.Time) (int64, error) {
	nowUs := now.UnixMicro()
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
		n, err := v.Int64()
		if err != nil {
			f, ferr := v.Float64()
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > maxExactInt {
				return 0, invalid("timestamp must be integer microseconds since the epoch or an RFC 3339 string")
			}
			n = int64(f)
		}
		ts = n
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

func count(path string, v float64) (int64, error) {
	if v < 0 {
		return 0, invalid("%s must be >= 0, got %v", path, v)
	}
	if v != math.Trunc(v) || v > maxExactInt {
		return 0, invalid("%s must be a whole number, got %v", path, v)
	}
	return int64(v), nil
}

// firstNumber reads the first present key of keys.
func firstNumber(o *fastjson.Object, prefix string, keys ...string) (float64, bool, error) {
	for _, k := range keys {
		f, ok, err := number(o, k, prefix)
		if err != nil || ok {
			return f, ok, err
		}
	}
	return 0, false, nil
}

// fillTokens sets e.Tokens and returns the count of cached prompt tokens.
func (d *Decoder) fillTokens(e *Event, meta, meas *fastjson.Object) (int64, error) {
	type side struct {
		v  float64
		ok bool
	}
	var prompt, completion, total, cached side
	where := "metadata.tokens"
	var err error
	if meta != nil {
		tok, _, err := object(meta, "tokens", "metadata.tokens")
		if err != nil {
			return 0, err
		}
		if tok != nil {
			if prompt.v, prompt.ok, err = firstNumber(tok, "metadata.tokens.", "prompt", "input"); err != nil {
				return 0, err
			}
			if completion.v, completion.ok, err = firstNumber(tok, "metadata.tokens.", "completion", "output"); err != nil {
				return 0, err
			}
			if total.v, total.ok, err = number(tok, "total", "metadata.tokens."); err != nil {
				return 0, err
			}
			if cached.v, cached.ok, err = number(tok, "cached", "metadata.tokens."); err != nil {
				return 0, err
			}
		}
	}
	if !prompt.ok && !completion.ok && !total.ok {
		where = "measurements"
		if prompt.v, prompt.ok, err = number(meas, "prompt_tokens", "measurements."); err != nil {
			return 0, err
		}
		if completion.v, completion.ok, err = number(meas, "completion_tokens", "measurements."); err != nil {
			return 0, err
		}
	}
	if !prompt.ok && !completion.ok && !total.ok {
		return 0, nil
	}
	tok := &Tokens{}
	for _, f := range [...]struct {
		name string
		s    side
		dst  *Null[int64]
	}{{"prompt", prompt, &tok.Prompt}, {"completion", completion, &tok.Completion}, {"total", total, &tok.Total}} {
		if !f.s.ok {
			continue
		}
		n, err := count(where+" "+f.name, f.s.v)
		if err != nil {
			return 0, err
		}
		*f.dst = Some(n)
	}
	if !tok.Total.Valid {
		tok.Total = Some(tok.Prompt.V + tok.Completion.V)
	}
	e.Tokens = tok
	var c int64
	if cached.ok {
		if c, err = count(where+" cached", cached.v); err != nil {
			return 0, err
		}
	}
	return c, nil
}

// fillCost: explicit cost_usd, metadata.cost, tokens × price, measurements.cost.
func fillCost(e *Event, o, meta, meas *fastjson.Object, cached int64, prices *pricing.Table) error {
	for _, src := range [...]struct {
		o           *fastjson.Object
		key, prefix string
	}{{o, "cost_usd", ""}, {meta, "cost", "metadata."}} {
		c, ok, err := number(src.o, src.key, src.prefix)
		if err != nil {
			return err
		}
		if ok {
			if c < 0 {
				return invalid("%s must be >= 0, got %v", src.prefix+src.key, c)
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
	c, ok, err := number(meas, "cost", "measurements.")
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

func status(o *fastjson.Object) string {
	if o == nil {
		return ""
	}
	v := o.Get("status")
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
func deriveSuccess(o, meta, meas *fastjson.Object, name string) (Null[bool], error) {
	if v := o.Get("success"); present(v) {
		switch v.Type() {
		case fastjson.TypeTrue:
			return Some(true), nil
		case fastjson.TypeFalse:
			return Some(false), nil
		}
		return Null[bool]{}, wrongType("success", v, "a boolean")
	}
	if meta != nil && (present(meta.Get("error")) || present(meta.Get("exception"))) {
		return Some(false), nil
	}
	for _, obj := range [...]*fastjson.Object{meas, meta} {
		switch status(obj) {
		case "ok":
			return Some(true), nil
		case "error":
			return Some(false), nil
		}
	}
	if name == "exception" || strings.HasSuffix(name, ".exception") {
		return Some(false), nil
	}
	if meta != nil && present(meta.Get("response")) {
		return Some(true), nil
	}
	return Null[bool]{}, nil
}

// training lifts the training fields, metadata first, then measurements.
func (d *Decoder) training(meta, meas *fastjson.Object) (*Training, error) {
	tr := &Training{}
	lookup := func(key string) (float64, bool, error) {
		if f, ok, err := number(meta, key, "metadata."); err != nil || ok {
			return f, ok, err
		}
		return number(meas, key, "measurements.")
	}
	for _, f := range [...]struct {
		key string
		dst *Null[int64]
	}{{"epoch", &tr.Epoch}, {"batch", &tr.Batch}} {
		v, ok, err := lookup(f.key)
		if err != nil {
			return nil, err
		}
		if ok {
			n, err := count(f.key, v)
			if err != nil {
				return nil, err
			}
			*f.dst = Some(n)
		}
	}
	for _, f := range [...]struct {
		key string
		dst *Null[float64]
	}{{"loss", &tr.Loss}, {"accuracy", &tr.Accuracy}, {"learning_rate", &tr.LearningRate}, {"gradient_norm", &tr.GradientNorm}} {
		v, ok, err := lookup(f.key)
		if err != nil {
			return nil, err
		}
		if ok {
			*f.dst = Some(v)
		}
	}
	var err error
	if tr.CheckpointPath, err = d.text(meta, "checkpoint_path", "metadata."); err != nil {
		return nil, err
	}
	if !tr.CheckpointPath.Valid {
		if tr.CheckpointPath, err = d.text(meas, "checkpoint_path", "measurements."); err != nil {
			return nil, err
		}
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
