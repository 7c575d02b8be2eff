package event

import (
	"bytes"
	"encoding/binary"
	"math"
)

// The fast path reads the usual event in one pass over its bytes into the
// Input, without building fastjson's tree and walking it again: known
// fields of the expected types, keys without escapes, free-form values
// checked as they are skipped (RFC 8259's grammar, numbers that are
// finite, no key twice in an object). It gives up on anything else, an
// invalid event included: a key or a read string with an escape, a field
// of another type, an event name given as a list, a timestamp as a string,
// deep nesting, two keys with one hash. The full decoder then reads the
// event from the start, so every error and every unusual event is its
// answer; FuzzFastPath holds the two paths equal wherever the fast one
// answers. Decoding is about a fifth of an event's CPU on the ingest path.

// maxFastDepth is the nesting the fast path follows; deeper events take
// the full decoder.
const maxFastDepth = 32

type scanner struct {
	b []byte
	i int
	d *Decoder
}

// fast decodes data into in and tells whether it could.
func (d *Decoder) fast(in *Input, data []byte) bool {
	s := scanner{b: data, d: d}
	n0 := d.nkeys
	ok := s.top(in)
	d.nkeys = n0
	if !ok {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte after whitespace, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// eat takes the byte c when it comes next.
func (s *scanner) eat(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// lit takes the literal w (true, false, null) when it comes next.
func (s *scanner) lit(w string) bool {
	if s.peek() == w[0] && bytes.HasPrefix(s.b[s.i:], []byte(w)) {
		s.i += len(w)
		return true
	}
	return false
}

// str reads a string; plain is false when it holds an escape. Its bytes
// are checked later with the whole text (checkText). Eight bytes are
// passed over at a time while none is a quote or a backslash.
func (s *scanner) str() (v []byte, plain, ok bool) {
	if !s.eat('"') {
		return nil, false, false
	}
	b, start := s.b, s.i
	plain = true
	for i := start; ; {
		for i+8 <= len(b) {
			w := binary.LittleEndian.Uint64(b[i:])
			if zeroByte(w^('"'*lsb))|zeroByte(w^('\\'*lsb)) != 0 {
				break
			}
			i += 8
		}
		if i >= len(b) {
			return nil, false, false
		}
		switch b[i] {
		case '"':
			s.i = i + 1
			return b[start:i], plain, true
		case '\\':
			plain = false
			i += 2
		default:
			i++
		}
	}
}

// zeroByte is not 0 when a byte of w is (and may flag a byte above one
// that is, which only costs a look at it).
func zeroByte(w uint64) uint64 { return (w - lsb) &^ w & msb }

// number reads a number token and checks it against the grammar, reading
// its value with value set.
func (s *scanner) number(value bool) (n num, token []byte, ok bool) {
	s.ws()
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			s.i++
			continue
		}
		break
	}
	token = s.b[start:s.i]
	if len(token) == 0 || readNumber(token, &n, value) != nil {
		return n, nil, false
	}
	return n, token, true
}

// object reads an object, calling member with each key, the scanner at
// its value.
func (s *scanner) object(member func(k []byte) bool) bool {
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return true
	}
	for {
		k, plain, ok := s.str()
		if !ok || !plain || !s.eat(':') || !member(k) {
			return false
		}
		if !s.eat(',') {
			return s.eat('}')
		}
	}
}

// unique tells whether the keys noted since start differ (by hash: two
// alike give up) and forgets them.
func (s *scanner) unique(start int) bool {
	keys := s.d.keys[start:s.d.nkeys]
	s.d.nkeys = start
	return !repeats(keys)
}

// skip checks a free-form value and passes over it.
func (s *scanner) skip(depth int) bool {
	switch s.peek() {
	case '"':
		_, _, ok := s.str()
		return ok
	case '{':
		if depth >= maxFastDepth {
			return false
		}
		start := s.d.nkeys
		return s.object(func(k []byte) bool { s.d.key(k); return s.skip(depth + 1) }) && s.unique(start)
	case '[':
		if depth >= maxFastDepth {
			return false
		}
		s.i++
		if s.eat(']') {
			return true
		}
		for {
			if !s.skip(depth + 1) {
				return false
			}
			if !s.eat(',') {
				return s.eat(']')
			}
		}
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	}
	_, _, ok := s.number(false)
	return ok
}

// free notes the key of a member the decoder does not read and skips its
// value.
func (s *scanner) free(k []byte) bool {
	s.d.key(k)
	return s.skip(1)
}

// text reads a string field (null: absent); short repeated values share
// one copy when shared is set.
func (s *scanner) text(seen *uint64, sl slot, dst *Null[string], shared bool) bool {
	if !first(seen, sl) {
		return false
	}
	if s.lit("null") {
		*dst = Null[string]{}
		return true
	}
	v, plain, ok := s.str()
	if !ok || !plain {
		return false
	}
	if shared {
		*dst = Some(s.d.str(v))
	} else {
		*dst = Some(string(v))
	}
	return true
}

// id reads an identifier: a string, or a number kept as written.
func (s *scanner) id(seen *uint64, sl slot, dst *Null[string]) bool {
	if c := s.peek(); c != '-' && (c < '0' || c > '9') {
		return s.text(seen, sl, dst, false)
	}
	if !first(seen, sl) {
		return false
	}
	_, token, ok := s.number(false)
	if ok {
		*dst = Some(string(token))
	}
	return ok
}

// numeric reads a numeric field (null: absent).
func (s *scanner) numeric(seen *uint64, sl slot, dst *Null[float64]) bool {
	if !first(seen, sl) {
		return false
	}
	if s.lit("null") {
		return true
	}
	n, _, ok := s.number(true)
	if ok {
		*dst = Some(n.f)
	}
	return ok
}

// flag notes whether a field is set (not null) and checks its value.
func (s *scanner) flag(seen *uint64, sl slot, dst *bool) bool {
	if !first(seen, sl) {
		return false
	}
	if s.lit("null") {
		return true
	}
	*dst = true
	return s.skip(1)
}

// status reads a status field: only a string is one; another value is
// checked and passed over.
func (s *scanner) status(seen *uint64, dst *Null[string]) bool {
	if !first(seen, keyStatus) {
		return false
	}
	if s.peek() != '"' {
		return s.skip(1)
	}
	v, plain, ok := s.str()
	if !ok || !plain {
		return false
	}
	*dst = Some(s.d.str(v))
	return true
}

// first notes the known key numbered sl and tells whether it is the first
// of its object.
func first(seen *uint64, sl slot) bool {
	if *seen&(1<<sl) != 0 {
		return false
	}
	*seen |= 1 << sl
	return true
}

// training reads a training field into t, whose slots start at base;
// known is false when k is none.
func (s *scanner) training(seen *uint64, base slot, k []byte, t *InputTraining) (ok, known bool) {
	switch string(k) {
	case "epoch":
		return s.numeric(seen, base+trainEpoch, &t.Epoch), true
	case "batch":
		return s.numeric(seen, base+trainBatch, &t.Batch), true
	case "loss":
		return s.numeric(seen, base+trainLoss, &t.Loss), true
	case "accuracy":
		return s.numeric(seen, base+trainAccuracy, &t.Accuracy), true
	case "learning_rate":
		return s.numeric(seen, base+trainLearningRate, &t.LearningRate), true
	case "gradient_norm":
		return s.numeric(seen, base+trainGradientNorm, &t.GradientNorm), true
	case "checkpoint_path":
		return s.text(seen, base+trainCheckpointPath, &t.CheckpointPath, true), true
	}
	return false, false
}

// top reads the event object, as collectTop and decode do.
func (s *scanner) top(in *Input) bool {
	var seen uint64
	var name, ts []byte
	var stamp num
	start := s.d.nkeys
	ok := s.object(func(k []byte) bool {
		switch string(k) {
		case "event_name":
			var plain, ok bool
			if !first(&seen, keyEventName) {
				return false
			}
			name, plain, ok = s.str()
			return ok && plain
		case "experiment_id":
			var id Null[string]
			ok := s.text(&seen, slotExperimentID, &id, true)
			in.ExperimentID = id.V
			return ok
		case "event_id":
			return s.text(&seen, slotEventID, &in.EventID, false)
		case "timestamp":
			if !first(&seen, keyTimestamp) {
				return false
			}
			if s.lit("null") {
				return true
			}
			var ok bool
			stamp, ts, ok = s.number(true)
			return ok
		case "measurements":
			return first(&seen, keyMeasurements) && (s.lit("null") || s.measurements(in))
		case "metadata":
			return first(&seen, keyMetadata) && (s.lit("null") || s.metadata(in))
		case "scores":
			return first(&seen, keyScores) && (s.lit("null") || s.scores(in))
		case "latency_ms":
			return s.numeric(&seen, slotLatency, &in.LatencyMs)
		case "cost_usd":
			return s.numeric(&seen, slotCost, &in.CostUSD)
		case "success":
			if !first(&seen, slotSuccess) {
				return false
			}
			switch {
			case s.lit("true"):
				in.Success = Some(true)
			case s.lit("false"):
				in.Success = Some(false)
			default:
				return s.lit("null")
			}
			return true
		}
		return ignoredField(string(k)) && s.free(k)
	})
	if !ok || !s.unique(start) || seen&(1<<keyEventName) == 0 {
		return false
	}
	if t, known := knownByName[string(name)]; known {
		in.EventName = t.Name
	} else {
		if len(name) > MaxEventNameLen || checkEventName(string(name)) != nil {
			return false
		}
		in.EventName = string(name)
	}
	in.nameChecked = true
	if ts != nil {
		if timestampUnit(stamp.f) != "" {
			return false
		}
		switch {
		case stamp.isInt:
			in.Timestamp = Some(stamp.i)
		case stamp.f != math.Trunc(stamp.f) || math.Abs(stamp.f) > maxExactInt:
			return false
		default:
			in.Timestamp = Some(int64(stamp.f))
		}
	}
	return true
}

// metadata reads the metadata object, as collectMetadata does.
func (s *scanner) metadata(in *Input) bool {
	var seen uint64
	start := s.d.nkeys
	return s.object(func(k []byte) bool {
		switch string(k) {
		case "model":
			return s.text(&seen, slotModel, &in.Model, true)
		case "provider":
			return s.text(&seen, slotProvider, &in.Provider, true)
		case "session_id":
			return s.id(&seen, slotSessionID, &in.SessionID)
		case "user_id":
			return s.id(&seen, slotUserID, &in.UserID)
		case "sample_id":
			return s.id(&seen, slotSampleID, &in.SampleID)
		case "cohort":
			return s.id(&seen, slotCohort, &in.Cohort)
		case "tokens":
			return first(&seen, keyTokens) && (s.lit("null") || s.tokens(in))
		case "cost":
			return s.numeric(&seen, slotMetadataCost, &in.MetadataCost)
		case "error":
			return s.flag(&seen, keyError, &in.Error)
		case "exception":
			return s.flag(&seen, keyException, &in.Error)
		case "status":
			return s.status(&seen, &in.MetadataStatus)
		case "response":
			return s.flag(&seen, keyResponse, &in.Response)
		}
		if ok, known := s.training(&seen, slotMetadataTraining, k, &in.MetadataTraining); known {
			return ok
		}
		return s.free(k)
	}) && s.unique(start)
}

// measurements reads the measurements object, as collectMeasurements does.
func (s *scanner) measurements(in *Input) bool {
	var seen uint64
	start := s.d.nkeys
	return s.object(func(k []byte) bool {
		switch string(k) {
		case "duration":
			return s.numeric(&seen, slotDuration, &in.Duration)
		case "start":
			return s.numeric(&seen, slotStart, &in.Start)
		case "stop":
			return s.numeric(&seen, slotStop, &in.Stop)
		case "status":
			return s.status(&seen, &in.MeasurementsStatus)
		case "prompt_tokens":
			return s.numeric(&seen, slotPromptTokens, &in.PromptTokens)
		case "completion_tokens":
			return s.numeric(&seen, slotCompletionTokens, &in.CompletionTokens)
		case "cost":
			return s.numeric(&seen, slotMeasurementsCost, &in.MeasurementsCost)
		}
		if ok, known := s.training(&seen, slotMeasurementsTraining, k, &in.MeasurementsTraining); known {
			return ok
		}
		return s.free(k)
	}) && s.unique(start)
}

// tokens reads metadata.tokens, as collectTokens does.
func (s *scanner) tokens(in *Input) bool {
	var seen uint64
	start := s.d.nkeys
	t := &in.Tokens
	return s.object(func(k []byte) bool {
		switch string(k) {
		case "prompt":
			return s.numeric(&seen, slotTokensPrompt, &t.Prompt)
		case "input":
			return s.numeric(&seen, slotTokensInput, &t.Input)
		case "completion":
			return s.numeric(&seen, slotTokensCompletion, &t.Completion)
		case "output":
			return s.numeric(&seen, slotTokensOutput, &t.Output)
		case "total":
			return s.numeric(&seen, slotTokensTotal, &t.Total)
		case "cached":
			return s.numeric(&seen, slotTokensCached, &t.Cached)
		}
		return s.free(k)
	}) && s.unique(start)
}

// scores reads the scores object, as collectScores does.
func (s *scanner) scores(in *Input) bool {
	start := s.d.nkeys
	scores := s.d.scores[:0]
	ok := s.object(func(k []byte) bool {
		if len(scores) == MaxScores {
			return false
		}
		s.d.key(k)
		var v float64
		switch {
		case s.lit("true"):
			v = 1
		case s.lit("false"):
		default:
			n, _, ok := s.number(true)
			if !ok {
				return false
			}
			v = n.f
		}
		scores = append(scores, Score{Name: s.d.str(k), Value: v})
		return true
	})
	s.d.scores = scores
	if !ok || !s.unique(start) {
		return false
	}
	in.Scores = scores
	return true
}
