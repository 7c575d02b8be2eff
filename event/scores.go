package event

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"
)

// Score is one named quality score of an event (SPEC §13): exact match, a
// judge's grade, pass@k. Booleans are stored as 1 and 0.
type Score struct {
	Name  string
	Value float64
}

// MaxScores bounds the scores of one event (SPEC §4.2).
const MaxScores = 32

// maxScoreNameLen bounds a score name: [A-Za-z_][A-Za-z0-9_.:-]{0,63}.
const maxScoreNameLen = 64

// ValidScoreName tells whether name is a valid score name (SPEC §4.2).
func ValidScoreName(name string) bool {
	if name == "" || len(name) > maxScoreNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '.' || c == ':' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// collectScores reads the scores object into in.Scores, reusing the
// Decoder's buffer. A value that is neither a number nor a boolean rejects
// the event: scores have no free-form reading to fall back to.
func (d *Decoder) collectScores(in *Input, o *fastjson.Object) error {
	start := d.nkeys
	scores := d.scores[:0]
	var w *walkError
	var err error
	n := 0
	o.Visit(func(k []byte, v *fastjson.Value) {
		if w != nil || err != nil {
			return
		}
		if n++; n > MaxScores {
			err = invalid("scores: at most %d per event, got more", MaxScores)
			return
		}
		d.key(k)
		var value float64
		switch v.Type() {
		case fastjson.TypeNumber:
			var n num
			if w = d.readNumber(v, &n, true); w != nil {
				w.in(shorten(k)) // "scores" is added below, with endObject's
				return
			}
			value = n.f
		case fastjson.TypeTrue:
			value = 1
		case fastjson.TypeFalse:
		default:
			err = wrongType("scores."+shorten(k), v, "a number or a boolean")
			return
		}
		scores = append(scores, Score{Name: d.str(k), Value: value})
	})
	d.scores = scores
	if w := d.endObject(o, start, w); w != nil {
		return w.in("scores").err()
	}
	if err != nil {
		return err
	}
	in.Scores = scores
	return nil
}

// enrichScores checks in.Scores (SPEC §4.2) and gives e its own copy,
// sorted by name.
func enrichScores(e *Event, in *Input) error {
	if len(in.Scores) == 0 {
		return nil
	}
	if len(in.Scores) > MaxScores {
		return invalid("scores: at most %d per event, got %d", MaxScores, len(in.Scores))
	}
	for _, s := range in.Scores {
		if !ValidScoreName(s.Name) {
			return invalid("scores: invalid name %s: a name is a letter or _, then up to 63 of [A-Za-z0-9_.:-]", strconv.Quote(shorten([]byte(s.Name))))
		}
		if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
			return invalid("scores.%s must be a finite number", s.Name)
		}
	}
	out := slices.Clone(in.Scores)
	slices.SortFunc(out, func(a, b Score) int { return strings.Compare(a.Name, b.Name) })
	for i := 1; i < len(out); i++ {
		if out[i].Name == out[i-1].Name {
			return invalid("scores: %s given twice", strconv.Quote(out[i].Name))
		}
	}
	e.Scores = out
	return nil
}

// appendScores appends the scores as a JSON object, or null.
func appendScores(b []byte, scores []Score) []byte {
	if scores == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i, s := range scores {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s.Name)
		b = append(b, ':')
		b = appendFloat(b, s.Value)
	}
	return append(b, '}')
}

// ScoreLabels calls f with the label and value of each of e's scores as
// they are recorded under the overflow decision o (SPEC §13): a score past
// the cap is recorded as OverflowValue — at most one per event, the first
// by name, since a series holds one value per time — and none is when the
// event has a score of that name within the cap. The TSDB and the live
// metrics both follow it.
func (e *Event) ScoreLabels(o LabelOverflow, f func(label string, v float64)) {
	other := false // OverflowValue is taken
	if o.Scores() {
		for i, s := range e.Scores {
			if s.Name == OverflowValue && o&OverflowScore(i) == 0 {
				other = true
			}
		}
	}
	for i, s := range e.Scores {
		if o&OverflowScore(i) == 0 {
			f(s.Name, s.Value)
			continue
		}
		if !other {
			other = true
			f(OverflowValue, s.Value)
		}
	}
}
