package event

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"

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

var segmentRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// input is the client's event before enrichment (SPEC §4.2).
type input struct {
	EventName    json.RawMessage `json:"event_name"`
	ExperimentID *string         `json:"experiment_id"`
	EventID      *string         `json:"event_id"`
	Timestamp    json.RawMessage `json:"timestamp"`
	Measurements json.RawMessage `json:"measurements"`
	Metadata     json.RawMessage `json:"metadata"`
	LatencyMs    *float64        `json:"latency_ms"`
	CostUSD      *float64        `json:"cost_usd"`
	Success      *bool           `json:"success"`
}

// known holds the fields of metadata and measurements that enrichment reads.
// Both objects are stored verbatim; this is only a view of them.
type known struct {
	Model     *string         `json:"model"`
	Provider  *string         `json:"provider"`
	SessionID *idValue        `json:"session_id"`
	UserID    *idValue        `json:"user_id"`
	SampleID  *idValue        `json:"sample_id"`
	Cohort    *idValue        `json:"cohort"`
	Tokens    *tokensIn       `json:"tokens"`
	Cost      *float64        `json:"cost"`
	Error     json.RawMessage `json:"error"`
	Exception json.RawMessage `json:"exception"`
	Status    json.RawMessage `json:"status"`
	Response  json.RawMessage `json:"response"`

	Duration         *float64 `json:"duration"`
	Start            *float64 `json:"start"`
	Stop             *float64 `json:"stop"`
	PromptTokens     *float64 `json:"prompt_tokens"`
	CompletionTokens *float64 `json:"completion_tokens"`

	Epoch          *float64 `json:"epoch"`
	Batch          *float64 `json:"batch"`
	Loss           *float64 `json:"loss"`
	Accuracy       *float64 `json:"accuracy"`
	LearningRate   *float64 `json:"learning_rate"`
	GradientNorm   *float64 `json:"gradient_norm"`
	CheckpointPath *string  `json:"checkpoint_path"`
}

type tokensIn struct {
	Prompt     *float64 `json:"prompt"`
	Input      *float64 `json:"input"`
	Completion *float64 `json:"completion"`
	Output     *float64 `json:"output"`
	Total      *float64 `json:"total"`
	Cached     *float64 `json:"cached"`
}

// idValue is an identifier that clients send as a string or a number.
type idValue string

func (v *idValue) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = idValue(s)
		return nil
	}
	if _, err := strconv.ParseFloat(string(b), 64); err != nil {
		return errors.New("must be a string or a number")
	}
	*v = idValue(b)
	return nil
}

// Parse decodes one client event, validates it and computes the enriched
// fields that do not depend on the experiment (SPEC §4.3). now is the time of
// receipt. The returned event's ExperimentID is the one the client named
// (maybe empty); the caller sets the experiment's fields.
func Parse(data []byte, now time.Time, prices *pricing.Table) (*Event, error) {
	var in input
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, invalid("%s", decodeMessage(err))
	}
	e := &Event{}
	if err := in.fill(e, now, prices); err != nil {
		return nil, err
	}
	return e, nil
}

// decodeMessage turns a decoder error into a message for the client.
func decodeMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			return fmt.Sprintf("expected a JSON object, got %s", te.Value)
		}
		return fmt.Sprintf("field %q: cannot use %s as %s", field, te.Value, typeName(te.Type.String()))
	}
	return "malformed JSON: " + err.Error()
}

func typeName(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "float64", "int64":
		return "a number"
	case "string", "event.idValue":
		return "a string"
	case "bool":
		return "a boolean"
	case "event.tokensIn", "event.known":
		return "an object"
	}
	return goType
}

func (in *input) fill(e *Event, now time.Time, prices *pricing.Table) error {
	name, err := parseEventName(in.EventName)
	if err != nil {
		return err
	}
	e.EventName = name

	if in.ExperimentID != nil {
		e.ExperimentID = *in.ExperimentID
	}
	if in.EventID != nil {
		id := *in.EventID
		if id == "" || len(id) > MaxEventIDLen || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return invalid("event_id must be 1-%d printable characters", MaxEventIDLen)
		}
		e.EventID, e.ClientID = id, true
	} else {
		e.EventID = NewID()
	}

	e.Timestamp, err = parseTimestamp(in.Timestamp, now)
	if err != nil {
		return err
	}

	var meta, meas known
	if e.Metadata, err = decodeObject("metadata", in.Metadata, &meta); err != nil {
		return err
	}
	if e.Measurements, err = decodeObject("measurements", in.Measurements, &meas); err != nil {
		return err
	}

	// latency_ms: explicit, else duration (ns), else stop - start (ns).
	switch {
	case in.LatencyMs != nil:
		if err := nonNegative("latency_ms", *in.LatencyMs); err != nil {
			return err
		}
		e.LatencyMs = Some(*in.LatencyMs)
	case meas.Duration != nil:
		if err := nonNegative("measurements.duration", *meas.Duration); err != nil {
			return err
		}
		e.LatencyMs = Some(*meas.Duration / 1e6)
	case meas.Start != nil && meas.Stop != nil:
		d := *meas.Stop - *meas.Start
		if d < 0 {
			return invalid("measurements.stop is before measurements.start")
		}
		e.LatencyMs = Some(d / 1e6)
	}

	if err := fillTokens(e, &meta, &meas); err != nil {
		return err
	}

	e.Model = nullString(meta.Model)
	e.Provider = nullString(meta.Provider)
	e.SessionID = nullID(meta.SessionID)
	e.UserID = nullID(meta.UserID)
	e.SampleID = nullID(meta.SampleID)
	e.Cohort = nullID(meta.Cohort)

	// cost_usd: explicit, metadata.cost, tokens × price, measurements.cost.
	switch {
	case in.CostUSD != nil:
		if err := nonNegative("cost_usd", *in.CostUSD); err != nil {
			return err
		}
		e.CostUSD = Some(*in.CostUSD)
	case meta.Cost != nil:
		if err := nonNegative("metadata.cost", *meta.Cost); err != nil {
			return err
		}
		e.CostUSD = Some(*meta.Cost)
	default:
		priced := false
		if e.Tokens != nil && e.Model.Valid {
			var cached int64
			if meta.Tokens != nil && meta.Tokens.Cached != nil {
				c, err := count("metadata.tokens.cached", *meta.Tokens.Cached)
				if err != nil {
					return err
				}
				cached = c
			}
			if usd, ok := prices.Cost(e.Model.V, e.Tokens.Prompt.V, e.Tokens.Completion.V, cached); ok {
				e.CostUSD, priced = Some(usd), true
			} else {
				e.Unpriced = true
			}
		}
		if !priced && meas.Cost != nil {
			if err := nonNegative("measurements.cost", *meas.Cost); err != nil {
				return err
			}
			e.CostUSD, e.Unpriced = Some(*meas.Cost), false
		}
	}

	e.Success = deriveSuccess(in.Success, &meta, &meas, name)

	if strings.HasPrefix(name, "crucible_train.") {
		tr, err := training(&meta, &meas)
		if err != nil {
			return err
		}
		e.Training = tr
	}
	e.SampleWeight = 1
	return nil
}

func parseEventName(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", invalid("event_name is required")
	}
	var segs []string
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", invalid("event_name: %v", err)
		}
		segs = strings.Split(s, ".")
	case '[':
		if err := json.Unmarshal(raw, &segs); err != nil {
			return "", invalid("event_name must be a string or a list of strings")
		}
	default:
		return "", invalid("event_name must be a string or a list of strings")
	}
	if len(segs) < 1 || len(segs) > 8 {
		return "", invalid("event_name must have 1 to 8 segments, got %d", len(segs))
	}
	for _, s := range segs {
		if !segmentRE.MatchString(s) {
			return "", invalid("event_name segment %q must match [A-Za-z0-9_]+", s)
		}
	}
	return strings.Join(segs, "."), nil
}

func parseTimestamp(raw json.RawMessage, now time.Time) (int64, error) {
	raw = bytes.TrimSpace(raw)
	nowUs := now.UnixMicro()
	if len(raw) == 0 || string(raw) == "null" {
		return nowUs, nil
	}
	var ts int64
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, invalid("timestamp: %v", err)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, invalid("timestamp %q is not RFC 3339", s)
		}
		ts = t.UnixMicro()
	} else {
		v, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(string(raw), 64)
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > maxExactInt {
				return 0, invalid("timestamp must be integer microseconds since the epoch or an RFC 3339 string")
			}
			v = int64(f)
		}
		ts = v
	}
	if ts < 0 {
		return 0, invalid("timestamp must not be before 1970")
	}
	if ts > nowUs+MaxFuture.Microseconds() {
		return 0, invalid("timestamp is more than %s in the future", MaxFuture)
	}
	return ts, nil
}

// decodeObject checks that raw is a JSON object (or absent/null) and reads
// the known fields out of it. It returns the object to store.
func decodeObject(field string, raw json.RawMessage, into *known) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, invalid("%s must be a JSON object", field)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, invalid("%s.%s: cannot use %s as %s", field, te.Field, te.Value, typeName(te.Type.String()))
		}
		return nil, invalid("%s: %v", field, err)
	}
	return raw, nil
}

func nonNegative(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return invalid("%s must be a finite number", field)
	}
	if v < 0 {
		return invalid("%s must be >= 0, got %v", field, v)
	}
	return nil
}

func count(field string, v float64) (int64, error) {
	if err := nonNegative(field, v); err != nil {
		return 0, err
	}
	if v != math.Trunc(v) || v > maxExactInt {
		return 0, invalid("%s must be a whole number, got %v", field, v)
	}
	return int64(v), nil
}

func firstOf(a, b *float64) *float64 {
	if a != nil {
		return a
	}
	return b
}

func fillTokens(e *Event, meta, meas *known) error {
	var prompt, completion, total *float64
	var where string
	if t := meta.Tokens; t != nil {
		prompt, completion, total = firstOf(t.Prompt, t.Input), firstOf(t.Completion, t.Output), t.Total
		where = "metadata.tokens"
	}
	if prompt == nil && completion == nil && total == nil {
		prompt, completion = meas.PromptTokens, meas.CompletionTokens
		where = "measurements"
	}
	if prompt == nil && completion == nil && total == nil {
		return nil
	}
	tok := &Tokens{}
	for _, f := range []struct {
		name string
		v    *float64
		dst  *Null[int64]
	}{{"prompt", prompt, &tok.Prompt}, {"completion", completion, &tok.Completion}, {"total", total, &tok.Total}} {
		if f.v == nil {
			continue
		}
		n, err := count(where+" "+f.name, *f.v)
		if err != nil {
			return err
		}
		*f.dst = Some(n)
	}
	if !tok.Total.Valid {
		tok.Total = Some(tok.Prompt.V + tok.Completion.V)
	}
	e.Tokens = tok
	return nil
}

func present(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && string(raw) != "null"
}

func statusOf(raw json.RawMessage) string {
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return strings.ToLower(s)
	}
	return ""
}

// deriveSuccess applies SPEC §4.3's rules in order.
func deriveSuccess(explicit *bool, meta, meas *known, name string) Null[bool] {
	if explicit != nil {
		return Some(*explicit)
	}
	if present(meta.Error) || present(meta.Exception) {
		return Some(false)
	}
	for _, raw := range []json.RawMessage{meas.Status, meta.Status} {
		switch statusOf(raw) {
		case "ok":
			return Some(true)
		case "error":
			return Some(false)
		}
	}
	if name == "exception" || strings.HasSuffix(name, ".exception") {
		return Some(false)
	}
	if present(meta.Response) {
		return Some(true)
	}
	return Null[bool]{}
}

func training(meta, meas *known) (*Training, error) {
	tr := &Training{}
	ints := []struct {
		name   string
		m1, m2 *float64
		dst    *Null[int64]
	}{{"epoch", meta.Epoch, meas.Epoch, &tr.Epoch}, {"batch", meta.Batch, meas.Batch, &tr.Batch}}
	for _, f := range ints {
		if v := firstOf(f.m1, f.m2); v != nil {
			n, err := count(f.name, *v)
			if err != nil {
				return nil, err
			}
			*f.dst = Some(n)
		}
	}
	floats := []struct {
		name   string
		m1, m2 *float64
		dst    *Null[float64]
	}{
		{"loss", meta.Loss, meas.Loss, &tr.Loss}, {"accuracy", meta.Accuracy, meas.Accuracy, &tr.Accuracy},
		{"learning_rate", meta.LearningRate, meas.LearningRate, &tr.LearningRate},
		{"gradient_norm", meta.GradientNorm, meas.GradientNorm, &tr.GradientNorm},
	}
	for _, f := range floats {
		if v := firstOf(f.m1, f.m2); v != nil {
			if math.IsNaN(*v) || math.IsInf(*v, 0) {
				return nil, invalid("%s must be a finite number", f.name)
			}
			*f.dst = Some(*v)
		}
	}
	if meta.CheckpointPath != nil {
		tr.CheckpointPath = Some(*meta.CheckpointPath)
	} else if meas.CheckpointPath != nil {
		tr.CheckpointPath = Some(*meas.CheckpointPath)
	}
	return tr, nil
}

func nullString(p *string) Null[string] {
	if p == nil {
		return Null[string]{}
	}
	return Some(*p)
}

func nullID(p *idValue) Null[string] {
	if p == nil {
		return Null[string]{}
	}
	return Some(string(*p))
}

// NewID returns 32 random hex characters (128 bits).
func NewID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}
