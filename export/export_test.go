package export

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

func TestCell(t *testing.T) {
	cases := []struct{ in, want string }{
		{`"text"`, "text"},
		{`null`, ""},
		{`1e-7`, "1e-7"},
		{`123456789012345678`, "123456789012345678"},
		{`true`, "true"},
		{`[1,"a",2.5]`, "1,a,2.5"},
		{`[{"file":"a.go"}]`, `[{"file":"a.go"}]`},
		{`[[1,2]]`, `[[1,2]]`},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			if got := cell(fastjson.MustParse(c.in)); got != c.want {
				t.Errorf("%s: got %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestHeaderIsTheUnionOfRows(t *testing.T) {
	rows := []*event.Event{
		{EventID: "1", EventName: "x", Metadata: []byte(`{"a":1}`), SampleWeight: 1},
		{EventID: "2", EventName: "x", Metadata: []byte(`{"b":{"c":2}}`), Measurements: []byte(`{"duration":5}`), SampleWeight: 1},
		{EventID: "3", EventName: "x", Raw: []byte(`{"event_name":"x","metadata":{"z":[1,2]}}`), SampleWeight: 1},
	}
	cols := NewColumnSet(true)
	cells := make([][]byte, len(rows))
	for i, e := range rows {
		var err error
		if cells[i], err = cols.AppendCells(nil, e); err != nil {
			t.Fatal(err)
		}
	}
	header := cols.Header()
	for _, want := range []string{"metadata_a", "metadata_b_c", "measurement_duration", "metadata_z", "event_id", "tags"} {
		if !strings.Contains(","+strings.Join(header, ",")+",", ","+want+",") {
			t.Errorf("header %v lacks %s", header, want)
		}
	}
	var buf bytes.Buffer
	w, err := NewCSV(&buf, cols)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range rows {
		if err := w.WriteCells(e, cells[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteCells(rows[0], []byte{99, 1, 'x'}); err == nil {
		t.Error("cells naming an unknown column must fail")
	}
	w.Close()
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(recs) != 4 {
		t.Fatalf("%v %d", err, len(recs))
	}
	col := func(name string) int {
		for i, h := range recs[0] {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return -1
	}
	if recs[1][col("metadata_a")] != "1" || recs[2][col("metadata_b_c")] != "2" || recs[3][col("metadata_z")] != "1,2" || recs[1][col("metadata_z")] != "" {
		t.Fatalf("rows %v", recs)
	}
	if _, err := New(&buf, "xml"); err == nil {
		t.Fatal("unknown format must fail")
	}
}

func TestAnonymizer(t *testing.T) {
	a, b := NewAnonymizer([]byte("k1")), NewAnonymizer([]byte("k2"))
	first, again := a.Hash("u"), a.Hash("u")
	if first != again || first == b.Hash("u") || first == "u" {
		t.Fatal("hashes must be stable per key and keyed")
	}
	e := &event.Event{UserID: event.Some("u-1"), SessionID: event.Some("s-1"), Metadata: []byte(`{"user_id":"u-1","session_id":"s-1","other":"keep"}`)}
	if err := a.Apply(e); err != nil {
		t.Fatal(err)
	}
	if e.UserID.V != a.Hash("u-1") || bytes.Contains(e.Metadata, []byte("u-1")) || bytes.Contains(e.Metadata, []byte("s-1")) || !bytes.Contains(e.Metadata, []byte("keep")) {
		t.Fatalf("anonymized: %+v %s", e, e.Metadata)
	}
}

// TestCSVNeutralisesFormulas: a text cell that a spreadsheet would run as a
// formula gets a leading quote (OWASP); numbers, negative ones included,
// stay as they are, and JSONL keeps the text as sent.
func TestCSVNeutralisesFormulas(t *testing.T) {
	e := &event.Event{
		EventID: "+1", ExperimentID: "exp", ExperimentName: "=HYPERLINK(\"http://x\")", Condition: "-2+3",
		Tags: []string{"-x", "y"}, EventName: "custom.step", Timestamp: -5,
		LatencyMs: event.Some(-1.5), CostUSD: event.Some(-0.25), Success: event.Some(true),
		Model: event.Some("@SUM(A1)"), Provider: event.Some("a=b"), SampleID: event.Some("s"),
		SessionID: event.Some("\tcmd"), UserID: event.Some("\rcmd"), Cohort: event.Some(""),
		Metadata:     []byte(`{"formula":"=1+1","n":-1.5,"big":-12345678901234567890,"nums":[-1,2],"texts":["-a","b"],"dash":"-","numtext":"-5","plain":"ok","nested":{"at":"@x"},"objs":[{"a":"=x"}],"t":true}`),
		Measurements: []byte(`{"loss":-0.5,"note":"+cmd"}`),
		SampleWeight: 1,
	}
	cols := NewColumnSet(true)
	cells, err := cols.AppendCells(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := NewCSV(&buf, cols)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteCells(e, cells); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(recs) != 2 {
		t.Fatalf("%v %d", err, len(recs))
	}
	row := map[string]string{}
	for i, h := range recs[0] {
		row[h] = recs[1][i]
	}
	for _, c := range []struct{ col, want string }{
		{"event_id", "'+1"},
		{"experiment_id", "exp"},
		{"experiment_name", "'=HYPERLINK(\"http://x\")"},
		{"condition", "'-2+3"},
		{"tags", "'-x;y"},
		{"model", "'@SUM(A1)"},
		{"provider", "a=b"},
		{"session_id", "'\tcmd"},
		{"user_id", "'\rcmd"},
		{"cohort", ""},
		{"timestamp", "-5"},
		{"latency_ms", "-1.5"},
		{"cost_usd", "-0.25"},
		{"success", "true"},
		{"metadata_formula", "'=1+1"},
		{"metadata_n", "-1.5"},
		{"metadata_big", "-12345678901234567890"},
		{"metadata_nums", "-1,2"},
		{"metadata_texts", "'-a,b"},
		{"metadata_dash", "'-"},
		{"metadata_numtext", "'-5"}, // a string, though it reads as a number
		{"metadata_plain", "ok"},
		{"metadata_nested_at", "'@x"},
		{"metadata_objs", `[{"a":"=x"}]`},
		{"metadata_t", "true"},
		{"measurement_loss", "-0.5"},
		{"measurement_note", "'+cmd"},
	} {
		t.Run(c.col, func(t *testing.T) {
			got, ok := row[c.col]
			if !ok {
				t.Fatalf("no column %s in %v", c.col, recs[0])
			}
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}

	var jl bytes.Buffer
	j, _ := New(&jl, "jsonl")
	if err := j.Write(e); err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{`"event_id":"+1"`, `"experiment_name":"=HYPERLINK(\"http://x\")"`, `"formula":"=1+1"`, `"model":"@SUM(A1)"`} {
		if !strings.Contains(jl.String(), raw) {
			t.Errorf("JSONL must keep %s as sent:\n%s", raw, jl.String())
		}
	}
}

// TestScoreColumns: each score is a score_<name> column, flattened or not,
// its number written to round-trip exactly.
func TestScoreColumns(t *testing.T) {
	for _, flatten := range []bool{true, false} {
		t.Run(map[bool]string{true: "flatten", false: "no flatten"}[flatten], func(t *testing.T) {
			rows := []*event.Event{
				{EventID: "1", EventName: "x", Metadata: []byte(`{"a":1}`), Scores: []event.Score{{Name: "exact_match", Value: 1}, {Name: "judge.helpfulness", Value: 0.1}}, SampleWeight: 1},
				{EventID: "2", EventName: "x", Scores: []event.Score{{Name: "judge.helpfulness", Value: 1.0 / 3}}, SampleWeight: 1},
				{EventID: "3", EventName: "x", SampleWeight: 1},
			}
			cols := NewColumnSet(flatten)
			cells := make([][]byte, len(rows))
			for i, e := range rows {
				var err error
				if cells[i], err = cols.AppendCells(nil, e); err != nil {
					t.Fatal(err)
				}
			}
			var buf bytes.Buffer
			w, err := NewCSV(&buf, cols)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range rows {
				if err := w.WriteCells(e, cells[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			recs, err := csv.NewReader(&buf).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			col := func(name string) int {
				for i, h := range recs[0] {
					if h == name {
						return i
					}
				}
				t.Fatalf("header %v lacks %s", recs[0], name)
				return -1
			}
			em, judge := col("score_exact_match"), col("score_judge.helpfulness")
			got := [][2]string{{recs[1][em], recs[1][judge]}, {recs[2][em], recs[2][judge]}, {recs[3][em], recs[3][judge]}}
			want := [][2]string{{"1", "0.1"}, {"", "0.3333333333333333"}, {"", ""}}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("score cells %v, want %v", got, want)
			}
			if hasMeta := strings.Contains(strings.Join(recs[0], ","), "metadata_a"); hasMeta != flatten {
				t.Fatalf("metadata_a in the header: %v, flatten %v", hasMeta, flatten)
			}
		})
	}
}
