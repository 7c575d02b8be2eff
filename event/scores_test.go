package event

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseScores(t *testing.T) {
	long := strings.Repeat("s", 64)
	many := make([]string, MaxScores+1)
	for i := range many {
		many[i] = `"s` + strings.Repeat("x", i) + `":1`
	}
	cases := []struct {
		desc, scores string
		want         []Score // what is stored when accepted
		msg          string  // part of the error; "" when accepted
	}{
		{"absent", ``, nil, ""},
		{"null", `null`, nil, ""},
		{"empty", `{}`, nil, ""},
		{"numbers and booleans, sorted by name", `{"judge.helpfulness":0.8,"exact_match":true,"pass_at_1":false,"Z":-2.5}`,
			[]Score{{"Z", -2.5}, {"exact_match", 1}, {"judge.helpfulness", 0.8}, {"pass_at_1", 0}}, ""},
		{"a name with @", `{"pass@1":1}`, nil, "invalid name"},
		{"every allowed character", `{"_a.b:c-d9":1}`, []Score{{"_a.b:c-d9", 1}}, ""},
		{"a 64-byte name", `{"` + long + `":3}`, []Score{{long, 3}}, ""},
		{"a 65-byte name", `{"` + long + `x":3}`, nil, "invalid name"},
		{"a name starting with a digit", `{"1st":1}`, nil, "invalid name"},
		{"an empty name", `{"":1}`, nil, "invalid name"},
		{"a name with a space", `{"a b":1}`, nil, "invalid name"},
		{"a string value", `{"a":"0.5"}`, nil, `field "scores.a": cannot use a string as a number or a boolean`},
		{"a null value", `{"a":null}`, nil, `cannot use null as a number or a boolean`},
		{"an object value", `{"a":{"b":1}}`, nil, `cannot use an object as a number or a boolean`},
		{"not an object", `[1,2]`, nil, "scores must be a JSON object"},
		{"a number out of range", `{"a":1e999}`, nil, "number 1e999 at scores.a is out of range"},
		{"a malformed number", `{"a":01}`, nil, `"01" at scores.a is not a JSON number`},
		{"a repeated name", `{"a":1,"a":2}`, nil, `duplicate key "a"`},
		{"the most scores", `{` + strings.Join(many[:MaxScores], ",") + `}`, nil, ""},
		{"one too many", `{` + strings.Join(many, ",") + `}`, nil, "at most 32 per event, got more"},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			in := `{"event_name":"eval.sample"`
			if c.scores != "" {
				in += `,"scores":` + c.scores
			}
			in += `}`
			e, err := Parse([]byte(in), testNow, testPrices)
			if c.msg != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
					t.Fatalf("err = %v, want one with %q", err, c.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.HasPrefix(c.desc, "the most"):
				if len(e.Scores) != MaxScores {
					t.Fatalf("%d scores, want %d", len(e.Scores), MaxScores)
				}
			case !slices.Equal(e.Scores, c.want):
				t.Fatalf("scores = %v, want %v", e.Scores, c.want)
			}
		})
	}
}

// TestScoresRoundTrip: scores survive the stored JSON (what /events and a
// JSONL export show, and what an import reads back) and the stored form.
func TestScoresRoundTrip(t *testing.T) {
	in := `{"event_name":"eval.sample","scores":{"judge":0.1,"exact_match":true,"tiny":1e-300,"big":-1.7976931348623157e308}}`
	e, err := Parse([]byte(in), testNow, testPrices)
	if err != nil {
		t.Fatal(err)
	}
	out := e.AppendJSON(nil)
	if !strings.Contains(string(out), `"scores":{"big":-1.7976931348623157e+308,"exact_match":1,"judge":0.1,"tiny":1e-300}`) {
		t.Fatalf("stored JSON: %s", out)
	}
	back, err := Parse(out, testNow, testPrices)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Scores, e.Scores) {
		t.Fatalf("import of the export: %v, want %v", back.Scores, e.Scores)
	}
	none, _ := Parse([]byte(`{"event_name":"x"}`), testNow, testPrices)
	if !strings.Contains(string(none.AppendJSON(nil)), `"scores":null`) {
		t.Fatalf("no scores: %s", none.AppendJSON(nil))
	}
	d := GetDecoder()
	defer PutDecoder(d)
	rec := e.AppendRecord(nil, []byte(in))
	if rec[0] != recordVersionScores {
		t.Fatalf("record version %d with scores", rec[0])
	}
	if v := none.AppendRecord(nil, nil)[0]; v != recordVersion {
		t.Fatalf("record version %d without scores, want %d", v, recordVersion)
	}
	var got Event
	if err := d.DecodeRecord(rec, &got, false); err != nil || !slices.Equal(got.Scores, e.Scores) {
		t.Fatalf("record: %v %v", got.Scores, err)
	}
	// Scores claimed by a version-1 record are damage, not data.
	rec[0] = recordVersion
	if err := d.DecodeRecord(rec, &got, false); !errors.Is(err, ErrCorruptRecord) {
		t.Fatalf("version-1 record with scores: %v", err)
	}
}

func TestScoreLabels(t *testing.T) {
	e := &Event{Scores: []Score{{"a", 1}, {"b", 2}, {"c", 3}, {OverflowValue, 4}}}
	for _, c := range []struct {
		desc string
		o    LabelOverflow
		want string
	}{
		{"all within the cap", 0, "a=1 b=2 c=3 other=4"},
		{"past the cap: the first as other, a real other within the cap kept", OverflowScore(1) | OverflowScore(2), "a=1 other=4"},
		{"past the cap, the real other too: the first of them", OverflowScore(1) | OverflowScore(3), "a=1 other=2 c=3"},
		{"labels' bits alone change nothing", OverflowModel, "a=1 b=2 c=3 other=4"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			var got []string
			e.ScoreLabels(c.o, func(l string, v float64) { got = append(got, l+"="+strconv.FormatFloat(v, 'g', -1, 64)) })
			if s := strings.Join(got, " "); s != c.want {
				t.Fatalf("%s, want %s", s, c.want)
			}
		})
	}
}

// TestRecordScoresInOrder: a stored event whose scores are not sorted and
// unique is damage, since each would be one TSDB sample at one time.
func TestRecordScoresInOrder(t *testing.T) {
	d := GetDecoder()
	defer PutDecoder(d)
	for _, scores := range [][]Score{{{"b", 1}, {"a", 2}}, {{"a", 1}, {"a", 2}}} {
		e := &Event{EventID: "x", EventName: "x", SampleWeight: 1, Scores: scores}
		var back Event
		if err := d.DecodeRecord(e.AppendRecord(nil, nil), &back, false); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("%v: %v, want ErrCorruptRecord", scores, err)
		}
	}
}
