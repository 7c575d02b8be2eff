// Package event defines the stored event: decoding a client's event,
// validating it, enriching it with computed fields, and its JSON encoding.
package event

import (
	"math"
	"strconv"
	"unicode/utf8"

	json "github.com/goccy/go-json"
)

// Null is a value that may be absent; absent encodes as JSON null.
type Null[T any] struct {
	V     T
	Valid bool
}

// Some returns a present value.
func Some[T any](v T) Null[T] { return Null[T]{V: v, Valid: true} }

// MarshalJSON encodes the value or null.
func (n Null[T]) MarshalJSON() ([]byte, error) {
	if !n.Valid {
		return []byte("null"), nil
	}
	return json.Marshal(n.V)
}

// UnmarshalJSON decodes the value; null leaves it absent.
func (n *Null[T]) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Null[T]{}
		return nil
	}
	n.Valid = true
	return json.Unmarshal(b, &n.V)
}

// Tokens are the token counts of one request.
type Tokens struct {
	Prompt     Null[int64] `json:"prompt"`
	Completion Null[int64] `json:"completion"`
	Total      Null[int64] `json:"total"`
}

// Training holds the fields lifted from crucible_train.* events.
type Training struct {
	Epoch          Null[int64]   `json:"epoch"`
	Batch          Null[int64]   `json:"batch"`
	Loss           Null[float64] `json:"loss"`
	Accuracy       Null[float64] `json:"accuracy"`
	LearningRate   Null[float64] `json:"learning_rate"`
	GradientNorm   Null[float64] `json:"gradient_norm"`
	CheckpointPath Null[string]  `json:"checkpoint_path"`
}

// Event is an enriched, stored event (SPEC §4.3).
type Event struct {
	EventID        string          `json:"event_id"`
	ExperimentID   string          `json:"experiment_id"`
	ExperimentName string          `json:"experiment_name"`
	Condition      string          `json:"condition"`
	Tags           []string        `json:"tags"`
	EventName      string          `json:"event_name"`
	Timestamp      int64           `json:"timestamp"` // µs since the Unix epoch
	Measurements   json.RawMessage `json:"measurements"`
	Metadata       json.RawMessage `json:"metadata"`
	LatencyMs      Null[float64]   `json:"latency_ms"`
	CostUSD        Null[float64]   `json:"cost_usd"`
	Success        Null[bool]      `json:"success"`
	Tokens         *Tokens         `json:"tokens"`
	SessionID      Null[string]    `json:"session_id"`
	UserID         Null[string]    `json:"user_id"`
	SampleID       Null[string]    `json:"sample_id"`
	Cohort         Null[string]    `json:"cohort"`
	Model          Null[string]    `json:"model"`
	Provider       Null[string]    `json:"provider"`
	*Training                      // promoted: training fields are top-level keys
	Scores         []Score         `json:"-"` // sorted by name; AppendJSON writes them as an object
	SampleWeight   float64         `json:"sample_weight"`

	// ClientID is true when the client chose EventID (only those are
	// de-duplicated). Unpriced is true when the model has no price.
	ClientID bool   `json:"-"`
	Unpriced bool   `json:"-"`
	Raw      []byte `json:"-"` // the client's JSON, kept in the event log

}

// TimestampMs is the event's millisecond, the TSDB's unit of time.
func (e *Event) TimestampMs() int64 { return floorDiv(e.Timestamp, 1000) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// AppendJSON appends the event's full JSON encoding (SPEC §4.3) to b:
// every field, null when absent. Hand-written because it runs for every
// event served.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"event_id":`...)
	b = appendString(b, e.EventID)
	b = append(b, `,"experiment_id":`...)
	b = appendString(b, e.ExperimentID)
	b = append(b, `,"experiment_name":`...)
	b = appendString(b, e.ExperimentName)
	b = append(b, `,"condition":`...)
	b = appendString(b, e.Condition)
	b = append(b, `,"tags":[`...)
	for i, t := range e.Tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, t)
	}
	b = append(b, ']')
	b = append(b, `,"event_name":`...)
	b = appendString(b, e.EventName)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, e.Timestamp, 10)
	b = append(b, `,"measurements":`...)
	b = appendRaw(b, e.Measurements)
	b = append(b, `,"metadata":`...)
	b = appendRaw(b, e.Metadata)
	b = append(b, `,"latency_ms":`...)
	b = appendNullFloat(b, e.LatencyMs)
	b = append(b, `,"cost_usd":`...)
	b = appendNullFloat(b, e.CostUSD)
	b = append(b, `,"success":`...)
	switch {
	case !e.Success.Valid:
		b = append(b, "null"...)
	case e.Success.V:
		b = append(b, "true"...)
	default:
		b = append(b, "false"...)
	}
	b = append(b, `,"tokens":`...)
	if e.Tokens == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"prompt":`...)
		b = appendNullInt(b, e.Tokens.Prompt)
		b = append(b, `,"completion":`...)
		b = appendNullInt(b, e.Tokens.Completion)
		b = append(b, `,"total":`...)
		b = appendNullInt(b, e.Tokens.Total)
		b = append(b, '}')
	}
	b = append(b, `,"scores":`...)
	b = appendScores(b, e.Scores)
	for _, f := range [...]struct {
		key string
		v   Null[string]
	}{
		{`,"session_id":`, e.SessionID}, {`,"user_id":`, e.UserID}, {`,"sample_id":`, e.SampleID},
		{`,"cohort":`, e.Cohort}, {`,"model":`, e.Model}, {`,"provider":`, e.Provider},
	} {
		b = append(b, f.key...)
		b = appendNullString(b, f.v)
	}
	if tr := e.Training; tr != nil {
		b = append(b, `,"epoch":`...)
		b = appendNullInt(b, tr.Epoch)
		b = append(b, `,"batch":`...)
		b = appendNullInt(b, tr.Batch)
		b = append(b, `,"loss":`...)
		b = appendNullFloat(b, tr.Loss)
		b = append(b, `,"accuracy":`...)
		b = appendNullFloat(b, tr.Accuracy)
		b = append(b, `,"learning_rate":`...)
		b = appendNullFloat(b, tr.LearningRate)
		b = append(b, `,"gradient_norm":`...)
		b = appendNullFloat(b, tr.GradientNorm)
		b = append(b, `,"checkpoint_path":`...)
		b = appendNullString(b, tr.CheckpointPath)
	}
	b = append(b, `,"sample_weight":`...)
	b = appendFloat(b, e.SampleWeight)
	return append(b, '}')
}

func appendRaw(b []byte, raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return append(b, "null"...)
	}
	return append(b, raw...)
}

func appendNullFloat(b []byte, n Null[float64]) []byte {
	if !n.Valid {
		return append(b, "null"...)
	}
	return appendFloat(b, n.V)
}

func appendNullInt(b []byte, n Null[int64]) []byte {
	if !n.Valid {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, n.V, 10)
}

func appendNullString(b []byte, n Null[string]) []byte {
	if !n.Valid {
		return append(b, "null"...)
	}
	return appendString(b, n.V)
}

// appendFloat writes the shortest representation that parses back to the
// same float64, as encoding/json does.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...) // never stored: validation rejects them
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(b, f, format, -1, 64)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString writes s as a JSON string; invalid UTF-8 becomes
// U+FFFD, so what is stored is valid JSON whatever a client sent. Eight
// plain ASCII bytes are passed over at a time.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none needs escaping or is past
		// ASCII: keys and most values are plain ASCII.
		for i+8 <= len(s) && plain8(uint64(s[i])|uint64(s[i+1])<<8|uint64(s[i+2])<<16|uint64(s[i+3])<<24|
			uint64(s[i+4])<<32|uint64(s[i+5])<<40|uint64(s[i+6])<<48|uint64(s[i+7])<<56) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// plain8 tells whether none of the eight bytes of x is a control byte,
// '"', '\\' or past ASCII.
func plain8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	return (x&highs | (x-0x20*ones)&^x&highs | hasZero(x^'"'*ones) | hasZero(x^'\\'*ones)) == 0
}

func appendString(b []byte, s string) []byte { return AppendJSONString(b, s) }
