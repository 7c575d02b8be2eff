package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/valyala/fastjson"
)

// The stored form of an event, as the event log keeps it:
//
//	u8 version | uvarint presence bits | the event's scalar fields |
//	[uvarint n | n × (name, f64 value)] scores | the client's JSON
//
// Every field the sidecar derived or lifted is stored in binary, so reading
// numbers and labels back (TSDB replay, analysis) needs no JSON parsing.
// The client's JSON is kept as it arrived — cheaper than re-encoding it, and
// its metadata and measurements objects are what the API shows.

// Version 2 is version 1 with scores; an event without scores is still
// written as version 1, so a log without scores stays readable by a
// version-1 reader and one with them is refused by it rather than misread.
const (
	recordVersion       = 1
	recordVersionScores = 2
)

// ErrCorruptRecord marks a stored event that cannot be decoded.
var ErrCorruptRecord = errors.New("corrupt stored event")

// Presence bits of the stored form.
const (
	hasLatency = 1 << iota
	hasCost
	hasSuccess
	successTrue
	hasTokens
	hasPrompt
	hasCompletion
	hasTotal
	hasSession
	hasUser
	hasSample
	hasCohort
	hasModel
	hasProvider
	hasTraining
	hasEpoch
	hasBatch
	hasLoss
	hasAccuracy
	hasLR
	hasGradNorm
	hasCheckpoint
	isUnpriced
	isClientID
	hasWeight
	hasScores
)

// AppendRecord appends the stored form of e to b. raw is the client's JSON
// for the event; when nil (an event built in code) a JSON object holding
// e's metadata and measurements stands in for it.
func (e *Event) AppendRecord(b, raw []byte) []byte {
	var bits uint64
	set := func(cond bool, bit uint64) {
		if cond {
			bits |= bit
		}
	}
	set(e.LatencyMs.Valid, hasLatency)
	set(e.CostUSD.Valid, hasCost)
	set(e.Success.Valid, hasSuccess)
	set(e.Success.V, successTrue)
	set(e.Unpriced, isUnpriced)
	set(e.ClientID, isClientID)
	set(e.SampleWeight != 1, hasWeight)
	set(len(e.Scores) > 0, hasScores)
	if t := e.Tokens; t != nil {
		bits |= hasTokens
		set(t.Prompt.Valid, hasPrompt)
		set(t.Completion.Valid, hasCompletion)
		set(t.Total.Valid, hasTotal)
	}
	set(e.SessionID.Valid, hasSession)
	set(e.UserID.Valid, hasUser)
	set(e.SampleID.Valid, hasSample)
	set(e.Cohort.Valid, hasCohort)
	set(e.Model.Valid, hasModel)
	set(e.Provider.Valid, hasProvider)
	if tr := e.Training; tr != nil {
		bits |= hasTraining
		set(tr.Epoch.Valid, hasEpoch)
		set(tr.Batch.Valid, hasBatch)
		set(tr.Loss.Valid, hasLoss)
		set(tr.Accuracy.Valid, hasAccuracy)
		set(tr.LearningRate.Valid, hasLR)
		set(tr.GradientNorm.Valid, hasGradNorm)
		set(tr.CheckpointPath.Valid, hasCheckpoint)
	}
	if bits&hasScores != 0 {
		b = append(b, recordVersionScores)
	} else {
		b = append(b, recordVersion)
	}
	b = binary.AppendUvarint(b, bits)
	b = appendStr(b, e.EventID)
	b = appendStr(b, e.EventName)
	b = binary.AppendVarint(b, e.Timestamp)
	b = appendF64(b, bits&hasLatency != 0, e.LatencyMs.V)
	b = appendF64(b, bits&hasCost != 0, e.CostUSD.V)
	if t := e.Tokens; t != nil {
		b = appendI64(b, t.Prompt.Valid, t.Prompt.V)
		b = appendI64(b, t.Completion.Valid, t.Completion.V)
		b = appendI64(b, t.Total.Valid, t.Total.V)
	}
	for _, s := range [...]Null[string]{e.SessionID, e.UserID, e.SampleID, e.Cohort, e.Model, e.Provider} {
		if s.Valid {
			b = appendStr(b, s.V)
		}
	}
	if tr := e.Training; tr != nil {
		b = appendI64(b, tr.Epoch.Valid, tr.Epoch.V)
		b = appendI64(b, tr.Batch.Valid, tr.Batch.V)
		for _, f := range [...]Null[float64]{tr.Loss, tr.Accuracy, tr.LearningRate, tr.GradientNorm} {
			b = appendF64(b, f.Valid, f.V)
		}
		if tr.CheckpointPath.Valid {
			b = appendStr(b, tr.CheckpointPath.V)
		}
	}
	b = appendF64(b, bits&hasWeight != 0, e.SampleWeight)
	if bits&hasScores != 0 {
		b = binary.AppendUvarint(b, uint64(len(e.Scores)))
		for _, s := range e.Scores {
			b = appendStr(b, s.Name)
			b = appendF64(b, true, s.Value)
		}
	}
	if raw != nil {
		return append(b, raw...)
	}
	b = append(b, `{"metadata":`...)
	b = appendRaw(b, e.Metadata)
	b = append(b, `,"measurements":`...)
	b = appendRaw(b, e.Measurements)
	return append(b, '}')
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendF64(b []byte, ok bool, v float64) []byte {
	if !ok {
		return b
	}
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

func appendI64(b []byte, ok bool, v int64) []byte {
	if !ok {
		return b
	}
	return binary.AppendVarint(b, v)
}

// recordReader walks the stored form; the first error sticks.
type recordReader struct {
	b    []byte
	err  error
	view bool // strings alias b instead of copying it
}

func (r *recordReader) fail() {
	if r.err == nil {
		r.err = ErrCorruptRecord
	}
	r.b = nil
}

func (r *recordReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) str() string {
	n := r.uvarint()
	if uint64(len(r.b)) < n {
		r.fail()
		return ""
	}
	var s string
	if r.view && n > 0 {
		s = unsafe.String(&r.b[0], n)
	} else {
		s = string(r.b[:n])
	}
	r.b = r.b[n:]
	return s
}

func (r *recordReader) f64() float64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

// RecordHasScores tells, without decoding it, whether a stored event has
// scores.
func RecordHasScores(data []byte) bool { return len(data) > 0 && data[0] == recordVersionScores }

// DecodeRecord reads the stored form into e, all but the experiment's
// fields, which the caller sets. e.Raw is the client's JSON (aliasing
// data). With objects false, Metadata and Measurements are left empty and
// no JSON is parsed.
func (d *Decoder) DecodeRecord(data []byte, e *Event, objects bool) error {
	return d.decodeRecord(data, e, objects, false)
}

// DecodeRecordView is DecodeRecord without copying: e's strings alias data,
// so e is valid only while data is unchanged. It suits a pass over stored
// events that keeps nothing of them, or copies what it keeps.
func (d *Decoder) DecodeRecordView(data []byte, e *Event, objects bool) error {
	return d.decodeRecord(data, e, objects, true)
}

func (d *Decoder) decodeRecord(data []byte, e *Event, objects, view bool) error {
	*e = Event{SampleWeight: 1}
	if len(data) == 0 || (data[0] != recordVersion && data[0] != recordVersionScores) {
		return fmt.Errorf("%w: unknown version", ErrCorruptRecord)
	}
	r := recordReader{b: data[1:], view: view}
	bits := r.uvarint()
	e.EventID = r.str()
	e.EventName = r.str()
	e.Timestamp = r.varint()
	e.ClientID = bits&isClientID != 0
	e.Unpriced = bits&isUnpriced != 0
	if bits&hasLatency != 0 {
		e.LatencyMs = Some(r.f64())
	}
	if bits&hasCost != 0 {
		e.CostUSD = Some(r.f64())
	}
	if bits&hasSuccess != 0 {
		e.Success = Some(bits&successTrue != 0)
	}
	if bits&hasTokens != 0 {
		t := &Tokens{}
		for _, f := range [...]struct {
			bit uint64
			dst *Null[int64]
		}{{hasPrompt, &t.Prompt}, {hasCompletion, &t.Completion}, {hasTotal, &t.Total}} {
			if bits&f.bit != 0 {
				*f.dst = Some(r.varint())
			}
		}
		e.Tokens = t
	}
	for _, f := range [...]struct {
		bit uint64
		dst *Null[string]
	}{{hasSession, &e.SessionID}, {hasUser, &e.UserID}, {hasSample, &e.SampleID}, {hasCohort, &e.Cohort}} {
		if bits&f.bit != 0 {
			*f.dst = Some(r.str())
		}
	}
	if bits&hasModel != 0 {
		e.Model = Some(d.internRecord(&r))
	}
	if bits&hasProvider != 0 {
		e.Provider = Some(d.internRecord(&r))
	}
	if bits&hasTraining != 0 {
		tr := &Training{}
		if bits&hasEpoch != 0 {
			tr.Epoch = Some(r.varint())
		}
		if bits&hasBatch != 0 {
			tr.Batch = Some(r.varint())
		}
		for _, f := range [...]struct {
			bit uint64
			dst *Null[float64]
		}{{hasLoss, &tr.Loss}, {hasAccuracy, &tr.Accuracy}, {hasLR, &tr.LearningRate}, {hasGradNorm, &tr.GradientNorm}} {
			if bits&f.bit != 0 {
				*f.dst = Some(r.f64())
			}
		}
		if bits&hasCheckpoint != 0 {
			tr.CheckpointPath = Some(r.str())
		}
		e.Training = tr
	}
	if bits&hasWeight != 0 {
		e.SampleWeight = r.f64()
	}
	if bits&hasScores != 0 {
		if data[0] != recordVersionScores {
			return fmt.Errorf("%w: scores in a version-1 record", ErrCorruptRecord)
		}
		n := r.uvarint()
		if n == 0 || n > MaxScores {
			return fmt.Errorf("%w: %d scores", ErrCorruptRecord, n)
		}
		e.Scores = make([]Score, n)
		for i := range e.Scores {
			e.Scores[i] = Score{Name: d.internRecord(&r), Value: r.f64()}
			// Stored sorted and unique: a series takes one sample per time.
			if i > 0 && e.Scores[i].Name <= e.Scores[i-1].Name && r.err == nil {
				return fmt.Errorf("%w: scores not in order", ErrCorruptRecord)
			}
		}
	}
	if r.err != nil {
		return fmt.Errorf("%w: truncated", ErrCorruptRecord)
	}
	e.Raw = r.b
	if !objects {
		return nil
	}
	v, err := d.p.ParseBytes(r.b)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptRecord, err)
	}
	if m := v.Get("metadata"); m != nil && m.Type() == fastjson.TypeObject {
		e.Metadata = d.raw(m)
	}
	if m := v.Get("measurements"); m != nil && m.Type() == fastjson.TypeObject {
		e.Measurements = d.raw(m)
	}
	return nil
}

// internRecord reads a short, often repeated string (a model or provider
// name) without allocating it again.
func (d *Decoder) internRecord(r *recordReader) string {
	n := r.uvarint()
	if uint64(len(r.b)) < n {
		r.fail()
		return ""
	}
	s := d.str(r.b[:n])
	r.b = r.b[n:]
	return s
}
