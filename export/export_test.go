package export

import (
	"bytes"
	"encoding/csv"
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
		if got := cell(fastjson.MustParse(c.in)); got != c.want {
			t.Errorf("%s: got %q, want %q", c.in, got, c.want)
		}
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
