// Package experiment holds experiment records, their lifecycle, and the
// Manager that owns every open experiment and routes events to them.
package experiment

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Status is an experiment's lifecycle state.
type Status string

const (
	Running  Status = "running"
	Paused   Status = "paused"
	Stopped  Status = "stopped"
	Archived Status = "archived"
)

// Statuses lists every state in a fixed order.
var Statuses = []Status{Running, Paused, Stopped, Archived}

// Errors, classified with errors.Is; the API maps them to status codes.
var (
	ErrInvalid  = errors.New("invalid request")
	ErrNotFound = errors.New("experiment not found")
	ErrConflict = errors.New("conflict")
	ErrNotReady = errors.New("storage is still opening")
	// ErrUnavailable is an experiment whose storage could not be opened.
	ErrUnavailable = errors.New("experiment storage is unavailable")
)

// StateError is a lifecycle conflict with a machine-readable code
// (already_paused, not_running, not_paused, exists, stopped).
type StateError struct {
	Code string
	Msg  string
}

func (e *StateError) Error() string        { return e.Code + ": " + e.Msg }
func (e *StateError) Is(target error) bool { return target == ErrConflict }

// IDPattern is the syntax of an experiment id; ValidID tests it.
var IDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidID tells whether id matches IDPattern, without the regular
// expression: ingest checks the experiment_id of every event it routes.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// MetricsConfig selects which numbers are recorded (SPEC §3).
type MetricsConfig struct {
	Latency     bool     `json:"latency"`
	Cost        bool     `json:"cost"`
	SuccessRate bool     `json:"success_rate"`
	Tokens      bool     `json:"tokens"`
	Custom      []string `json:"custom"`
}

// Spec is what a client chooses when creating an experiment.
type Spec struct {
	ID               string          `json:"id"`
	Name             string          `json:"name"`
	Hypothesis       string          `json:"hypothesis"`
	Condition        string          `json:"condition"`
	Tags             []string        `json:"tags"`
	Metadata         json.RawMessage `json:"metadata"`
	SampleSize       *int64          `json:"sample_size"`
	StopAtSampleSize bool            `json:"stop_at_sample_size"`
	SamplingRate     float64         `json:"sampling_rate"`
	MetricsConfig    MetricsConfig   `json:"metrics_config"`
}

// Stamp gives an event its experiment's identity (SPEC §4.3). The log
// stores events without it, as it is the same for every event of an
// experiment: ingest stamps an event before it is stored, and every read
// stamps it again.
func (s *Spec) Stamp(e *event.Event) {
	e.ExperimentID, e.ExperimentName, e.Condition, e.Tags = s.ID, s.Name, s.Condition, s.Tags
}

// Record is an experiment as stored and shown (SPEC §3).
type Record struct {
	Spec
	Status        Status     `json:"status"`
	StartedAt     time.Time  `json:"started_at"`
	StoppedAt     *time.Time `json:"stopped_at"`
	PausedAt      *time.Time `json:"paused_at"`
	PauseCount    int        `json:"pause_count"`
	PausedSeconds float64    `json:"paused_seconds"`
	ActiveSeconds float64    `json:"active_seconds"`
	EventsStored  int64      `json:"events_stored"`
	// Storage is the health of the experiment's storage, filled in on every
	// view and never stored.
	Storage *Health `json:"storage,omitempty"`
}

// Health says whether an experiment's stored data is whole (SPEC §18).
type Health struct {
	// Status is "ok"; "degraded" when the event log has damaged frames
	// that were skipped (every other event serves); "unavailable" when the
	// storage could not be opened at all.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// CorruptFrames and CorruptBytes count the damaged parts of the event
	// log that reads skip; the files are left as they are.
	CorruptFrames int64 `json:"corrupt_frames"`
	CorruptBytes  int64 `json:"corrupt_bytes"`
}

// Health statuses.
const (
	HealthOK          = "ok"
	HealthDegraded    = "degraded"
	HealthUnavailable = "unavailable"
)

// CreateRequest is the body of POST /api/v1/experiments. Pointers tell an
// omitted field from a zero one so defaults apply.
type CreateRequest struct {
	ID               string          `json:"id"`
	Name             string          `json:"name"`
	Hypothesis       string          `json:"hypothesis"`
	Condition        string          `json:"condition"`
	Tags             []string        `json:"tags"`
	Metadata         json.RawMessage `json:"metadata"`
	SampleSize       *int64          `json:"sample_size"`
	StopAtSampleSize bool            `json:"stop_at_sample_size"`
	SamplingRate     *float64        `json:"sampling_rate"`
	MetricsConfig    *struct {
		Latency     *bool    `json:"latency"`
		Cost        *bool    `json:"cost"`
		SuccessRate *bool    `json:"success_rate"`
		Tokens      *bool    `json:"tokens"`
		Custom      []string `json:"custom"`
	} `json:"metrics_config"`
}

// DecodeCreateRequest decodes strictly: unknown fields are errors, so a
// misspelt option is not silently ignored.
func DecodeCreateRequest(b []byte) (CreateRequest, error) {
	var req CreateRequest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if dec.More() {
		return req, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalid)
	}
	if req.ID == "" {
		// An omitted id is generated; an empty one is a mistake.
		var id struct {
			ID *string `json:"id"`
		}
		if json.Unmarshal(b, &id) == nil && id.ID != nil {
			return req, fmt.Errorf("%w: id must not be empty; omit it to have one generated", ErrInvalid)
		}
	}
	return req, nil
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Normalize validates the request and applies defaults.
func (r CreateRequest) Normalize() (Spec, error) {
	s := Spec{
		ID: r.ID, Name: r.Name, Hypothesis: r.Hypothesis, Condition: r.Condition,
		Tags: r.Tags, SampleSize: r.SampleSize, StopAtSampleSize: r.StopAtSampleSize,
		SamplingRate: 1, MetricsConfig: MetricsConfig{Latency: true, Cost: true, SuccessRate: true, Tokens: true, Custom: []string{}},
	}
	if s.ID == "" {
		s.ID = NewID()
	} else if !ValidID(s.ID) {
		return s, invalidf("id %q must match %s", s.ID, IDPattern)
	}
	if s.Name == "" || len(s.Name) > 256 {
		return s, invalidf("name is required and must be at most 256 characters")
	}
	if s.Condition == "" {
		s.Condition = "default"
	}
	if len(s.Condition) > 128 {
		return s, invalidf("condition must be at most 128 characters")
	}
	if s.Tags == nil {
		s.Tags = []string{}
	}
	for _, t := range s.Tags {
		if t == "" || len(t) > 128 {
			return s, invalidf("tags must be 1-128 characters each")
		}
	}
	meta := bytes.TrimSpace(r.Metadata)
	switch {
	case len(meta) == 0 || string(meta) == "null":
		s.Metadata = json.RawMessage("{}")
	case meta[0] != '{':
		return s, invalidf("metadata must be a JSON object")
	default:
		var compact bytes.Buffer
		if err := json.Compact(&compact, meta); err != nil {
			return s, invalidf("metadata: %v", err)
		}
		s.Metadata = compact.Bytes()
	}
	if s.SampleSize != nil && *s.SampleSize <= 0 {
		return s, invalidf("sample_size must be > 0")
	}
	if s.StopAtSampleSize && s.SampleSize == nil {
		return s, invalidf("stop_at_sample_size needs sample_size")
	}
	if r.SamplingRate != nil {
		v := *r.SamplingRate
		if math.IsNaN(v) || v <= 0 || v > 1 {
			return s, invalidf("sampling_rate must be in (0, 1], got %v", v)
		}
		s.SamplingRate = v
	}
	if mc := r.MetricsConfig; mc != nil {
		for _, f := range []struct {
			src *bool
			dst *bool
		}{{mc.Latency, &s.MetricsConfig.Latency}, {mc.Cost, &s.MetricsConfig.Cost},
			{mc.SuccessRate, &s.MetricsConfig.SuccessRate}, {mc.Tokens, &s.MetricsConfig.Tokens}} {
			if f.src != nil {
				*f.dst = *f.src
			}
		}
		if mc.Custom != nil {
			s.MetricsConfig.Custom = mc.Custom
		}
	}
	return s, nil
}

// sameSpec tells whether a repeated create asks for the same experiment.
func sameSpec(a, b Spec) bool {
	var ma, mb any
	if json.Unmarshal(a.Metadata, &ma) != nil || json.Unmarshal(b.Metadata, &mb) != nil {
		return false
	}
	ja, _ := json.Marshal(ma)
	jb, _ := json.Marshal(mb)
	a.Metadata, b.Metadata = ja, jb
	return a.ID == b.ID && a.Name == b.Name && a.Hypothesis == b.Hypothesis && a.Condition == b.Condition &&
		slices.Equal(a.Tags, b.Tags) && bytes.Equal(a.Metadata, b.Metadata) &&
		equalPtr(a.SampleSize, b.SampleSize) && a.StopAtSampleSize == b.StopAtSampleSize &&
		a.SamplingRate == b.SamplingRate && a.MetricsConfig.Latency == b.MetricsConfig.Latency &&
		a.MetricsConfig.Cost == b.MetricsConfig.Cost && a.MetricsConfig.SuccessRate == b.MetricsConfig.SuccessRate &&
		a.MetricsConfig.Tokens == b.MetricsConfig.Tokens && slices.Equal(a.MetricsConfig.Custom, b.MetricsConfig.Custom)
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// NewID returns 16 random hex characters.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// view fills the computed fields of a record as of now.
func (r Record) view(now time.Time, stored int64) Record {
	end := now
	if r.StoppedAt != nil {
		end = *r.StoppedAt
	}
	paused := r.PausedSeconds
	if r.Status == Paused && r.PausedAt != nil {
		paused += now.Sub(*r.PausedAt).Seconds()
	}
	r.ActiveSeconds = max(0, end.Sub(r.StartedAt).Seconds()-paused)
	r.PausedSeconds = paused
	r.EventsStored = stored
	return r
}

// pause, resume and stop are the lifecycle's transitions.
func (r *Record) pause(now time.Time) error {
	switch r.Status {
	case Running:
		r.Status, r.PausedAt = Paused, &now
		r.PauseCount++
		return nil
	case Paused:
		return &StateError{"already_paused", "experiment " + r.ID + " is already paused"}
	default:
		return &StateError{"not_running", "experiment " + r.ID + " is " + string(r.Status)}
	}
}

func (r *Record) resume(now time.Time) error {
	if r.Status != Paused {
		return &StateError{"not_paused", "experiment " + r.ID + " is " + string(r.Status)}
	}
	if r.PausedAt != nil {
		r.PausedSeconds += now.Sub(*r.PausedAt).Seconds()
	}
	r.Status, r.PausedAt = Running, nil
	return nil
}

// stop reports whether anything changed: stopping a stopped experiment is
// not an error.
func (r *Record) stop(now time.Time) bool {
	switch r.Status {
	case Running, Paused:
		if r.Status == Paused && r.PausedAt != nil {
			r.PausedSeconds += now.Sub(*r.PausedAt).Seconds()
		}
		r.Status, r.PausedAt, r.StoppedAt = Stopped, nil, &now
		return true
	}
	return false
}
