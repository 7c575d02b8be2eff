package event

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

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

	Scores []Score // scores, as given; Enrich checks and sorts a copy

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

	// The decoder checked EventName as Enrich would (a known name needs no
	// check), so Enrich does not again.
	nameChecked bool
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
	return in.wrongType(s, path, want)
}

// wrongType is typeErr's error. Not inlined, it leaves typeErr small
// enough to be: a mistyped field is rare.
//
//go:noinline
func (in *Input) wrongType(s slot, path, want string) error {
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
	if !in.nameChecked {
		if err := checkEventName(in.EventName); err != nil {
			return err
		}
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
	// The lifted strings: one test in the usual case, each field's error in
	// the others.
	if in.mistyped&liftedSlots != 0 || len(in.Model.V) > MaxLabelLen || len(in.Provider.V) > MaxLabelLen ||
		len(in.SessionID.V) > MaxIDLen || len(in.UserID.V) > MaxIDLen || len(in.SampleID.V) > MaxIDLen || len(in.Cohort.V) > MaxIDLen {
		if err := in.checkLifted(); err != nil {
			return err
		}
	}
	e.Model, e.Provider, e.SessionID, e.UserID, e.SampleID, e.Cohort = in.Model, in.Provider, in.SessionID, in.UserID, in.SampleID, in.Cohort
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
	return enrichScores(e, in)
}

const liftedSlots = 1<<slotModel | 1<<slotProvider | 1<<slotSessionID | 1<<slotUserID | 1<<slotSampleID | 1<<slotCohort

// checkLifted finds the first of the lifted strings that is mistyped or too
// long.
func (in *Input) checkLifted() error {
	const label, id = "a string", "a string or a number"
	for _, f := range [...]struct {
		s          slot
		v          Null[string]
		path, want string
		max        int
	}{
		{slotModel, in.Model, "metadata.model", label, MaxLabelLen}, {slotProvider, in.Provider, "metadata.provider", label, MaxLabelLen},
		{slotSessionID, in.SessionID, "metadata.session_id", id, MaxIDLen}, {slotUserID, in.UserID, "metadata.user_id", id, MaxIDLen},
		{slotSampleID, in.SampleID, "metadata.sample_id", id, MaxIDLen}, {slotCohort, in.Cohort, "metadata.cohort", id, MaxIDLen},
	} {
		if _, err := in.text(f.s, f.v, f.path, f.want, f.max); err != nil {
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

// status reads "ok" as a success and "error" as a failure, in any case;
// known is false for any other status.
func status(s string) (ok, known bool) {
	switch {
	case strings.EqualFold(s, "ok"):
		return true, true
	case strings.EqualFold(s, "error"):
		return false, true
	}
	return false, false
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
	for _, st := range [...]Null[string]{in.MeasurementsStatus, in.MetadataStatus} {
		if st.Valid {
			if ok, known := status(st.V); known {
				return Some(ok), nil
			}
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
