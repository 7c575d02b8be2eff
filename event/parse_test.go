package event

import (
	"errors"
	"github.com/valyala/fastjson"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"

	"github.com/crucible-telemetry/crucible-telemetry/pricing"
)

var (
	testNow    = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	testPrices = pricing.Default()
)

func ptr[T any](v T) *T { return &v }

func TestParseEnrichment(t *testing.T) {
	type want struct {
		name       string
		latency    *float64
		cost       *float64
		success    *bool
		tokens     *[3]int64
		model      string
		unpriced   bool
		timestamp  int64
		sessionID  string
		sampleID   string
		experiment string
	}
	cases := []struct {
		desc string
		in   string
		want want
	}{
		{"seed req_llm stop", `{"event_name":["req_llm","request","stop"],"timestamp":1764220000123456,
			"measurements":{"duration":150000000},
			"metadata":{"model":"gpt-4","provider":"openai","tokens":{"prompt":100,"completion":200},"session_id":"s-1","sample_id":17,"response":"hi"}}`,
			want{name: "req_llm.request.stop", latency: ptr(150.0), cost: ptr(0.015), success: ptr(true), tokens: &[3]int64{100, 200, 300},
				model: "gpt-4", timestamp: 1764220000123456, sessionID: "s-1", sampleID: "17"}},
		{"explicit fields win", `{"event_name":"a.b","latency_ms":12.5,"cost_usd":0.5,"success":false,"measurements":{"duration":1e9,"status":"ok"},"metadata":{"model":"gpt-4","tokens":{"input":1,"output":2}}}`,
			want{name: "a.b", latency: ptr(12.5), cost: ptr(0.5), success: ptr(false), tokens: &[3]int64{1, 2, 3}, model: "gpt-4", timestamp: testNow.UnixMicro()}},
		{"start stop latency", `{"event_name":"x","measurements":{"start":1000000,"stop":3500000}}`,
			want{name: "x", latency: ptr(2.5), timestamp: testNow.UnixMicro()}},
		{"exception event fails", `{"event_name":"req_llm.request.exception","metadata":{"model":"gpt-4"}}`,
			want{name: "req_llm.request.exception", success: ptr(false), model: "gpt-4", timestamp: testNow.UnixMicro()}},
		{"metadata error fails", `{"event_name":"x","metadata":{"error":{"kind":"timeout","stack":["a","b"]},"response":"r"}}`,
			want{name: "x", success: ptr(false), timestamp: testNow.UnixMicro()}},
		{"status error", `{"event_name":"x","measurements":{"status":"error"}}`,
			want{name: "x", success: ptr(false), timestamp: testNow.UnixMicro()}},
		{"metadata status ok", `{"event_name":"x","metadata":{"status":"ok"}}`,
			want{name: "x", success: ptr(true), timestamp: testNow.UnixMicro()}},
		{"null response is unknown", `{"event_name":"x","metadata":{"response":null}}`,
			want{name: "x", timestamp: testNow.UnixMicro()}},
		{"unknown model is unpriced", `{"event_name":"x","metadata":{"model":"llama-9","tokens":{"prompt":10,"completion":5}}}`,
			want{name: "x", model: "llama-9", unpriced: true, tokens: &[3]int64{10, 5, 15}, timestamp: testNow.UnixMicro()}},
		{"dated model priced by base", `{"event_name":"x","metadata":{"model":"gpt-4o-2024-08-06","tokens":{"prompt":1000000,"completion":0}}}`,
			want{name: "x", model: "gpt-4o-2024-08-06", cost: ptr(2.5), tokens: &[3]int64{1000000, 0, 1000000}, timestamp: testNow.UnixMicro()}},
		{"metadata cost", `{"event_name":"x","metadata":{"cost":0.25,"model":"gpt-4","tokens":{"prompt":1}}}`,
			want{name: "x", cost: ptr(0.25), model: "gpt-4", tokens: &[3]int64{1, 0, 1}, timestamp: testNow.UnixMicro()}},
		{"measurement cost when unpriced", `{"event_name":"x","measurements":{"cost":0.125}}`,
			want{name: "x", cost: ptr(0.125), timestamp: testNow.UnixMicro()}},
		{"measurement tokens", `{"event_name":"x","measurements":{"prompt_tokens":3,"completion_tokens":4}}`,
			want{name: "x", tokens: &[3]int64{3, 4, 7}, timestamp: testNow.UnixMicro()}},
		{"rfc3339 timestamp", `{"event_name":"x","timestamp":"2025-11-27T05:06:40.123456Z"}`,
			want{name: "x", timestamp: time.Date(2025, 11, 27, 5, 6, 40, 123456000, time.UTC).UnixMicro()}},
		{"experiment id kept for routing", `{"event_name":"x","experiment_id":"exp-1"}`,
			want{name: "x", timestamp: testNow.UnixMicro(), experiment: "exp-1"}},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			e, err := Parse([]byte(c.in), testNow, testPrices)
			if err != nil {
				t.Fatal(err)
			}
			w := c.want
			if e.EventName != w.name || e.Timestamp != w.timestamp || e.Model.V != w.model || e.Unpriced != w.unpriced ||
				e.SessionID.V != w.sessionID || e.SampleID.V != w.sampleID || e.ExperimentID != w.experiment {
				t.Errorf("got %+v", e)
			}
			checkFloat(t, "latency", e.LatencyMs, w.latency)
			checkFloat(t, "cost", e.CostUSD, w.cost)
			if (w.success == nil) != !e.Success.Valid || (w.success != nil && *w.success != e.Success.V) {
				t.Errorf("success = %+v, want %v", e.Success, w.success)
			}
			if w.tokens == nil {
				if e.Tokens != nil {
					t.Errorf("tokens = %+v, want none", e.Tokens)
				}
			} else if e.Tokens == nil || e.Tokens.Prompt.V != w.tokens[0] || e.Tokens.Completion.V != w.tokens[1] || e.Tokens.Total.V != w.tokens[2] {
				t.Errorf("tokens = %+v, want %v", e.Tokens, *w.tokens)
			}
			if len(e.EventID) != 32 && !e.ClientID {
				t.Errorf("generated event id %q is not 32 hex chars", e.EventID)
			}
		})
	}
}

func checkFloat(t *testing.T, what string, got Null[float64], want *float64) {
	t.Helper()
	if want == nil {
		if got.Valid {
			t.Errorf("%s = %v, want null", what, got.V)
		}
		return
	}
	if !got.Valid || math.Abs(got.V-*want) > 1e-12*math.Max(1, *want) {
		t.Errorf("%s = %+v, want %v", what, got, *want)
	}
}

func TestParseTraining(t *testing.T) {
	e, err := Parse([]byte(`{"event_name":"crucible_train.batch.stop","metadata":{"epoch":2,"loss":0.5},
		"measurements":{"loss":9,"batch":7,"learning_rate":0.001,"gradient_norm":1.5,"accuracy":0.9}}`), testNow, testPrices)
	if err != nil {
		t.Fatal(err)
	}
	tr := e.Training
	if tr == nil || tr.Epoch.V != 2 || tr.Batch.V != 7 || tr.Loss.V != 0.5 || tr.LearningRate.V != 0.001 || tr.GradientNorm.V != 1.5 || tr.Accuracy.V != 0.9 {
		t.Fatalf("training = %+v", tr)
	}
	other, _ := Parse([]byte(`{"event_name":"req_llm.request.stop","metadata":{"loss":1}}`), testNow, testPrices)
	if other.Training != nil {
		t.Fatal("training fields belong to crucible_train.* events only")
	}
}

func TestParseRejects(t *testing.T) {
	future := testNow.Add(6 * time.Minute).UnixMicro()
	cases := []struct{ desc, in, msg string }{
		{"not json", `{"event_name":`, "malformed JSON"},
		{"not an object", `42`, "expected a JSON object"},
		{"missing name", `{}`, "event_name is required"},
		{"empty name", `{"event_name":""}`, "must match"},
		{"bad segment", `{"event_name":"a.b-c"}`, "must match"},
		{"empty segment", `{"event_name":"a..b"}`, "must match"},
		{"too many segments", `{"event_name":"a.b.c.d.e.f.g.h.i"}`, "1 to 8 segments"},
		{"name wrong type", `{"event_name":5}`, "string or a list"},
		{"latency wrong type", `{"event_name":"x","latency_ms":"fast"}`, `"latency_ms"`},
		{"negative latency", `{"event_name":"x","latency_ms":-1}`, ">= 0"},
		{"start and stop too far apart", `{"event_name":"x","measurements":{"start":-1e308,"stop":1e308}}`, "too large"},
		{"negative duration", `{"event_name":"x","measurements":{"duration":-5}}`, ">= 0"},
		{"stop before start", `{"event_name":"x","measurements":{"start":5,"stop":1}}`, "before"},
		{"negative tokens", `{"event_name":"x","metadata":{"tokens":{"prompt":-1}}}`, ">= 0"},
		{"fractional tokens", `{"event_name":"x","metadata":{"tokens":{"prompt":1.5}}}`, "whole number"},
		{"negative cost", `{"event_name":"x","cost_usd":-0.1}`, ">= 0"},
		{"overflowing number", `{"event_name":"x","latency_ms":1e999}`, ""},
		{"future timestamp", `{"event_name":"x","timestamp":` + itoa(future) + `}`, "future"},
		{"negative timestamp", `{"event_name":"x","timestamp":-1}`, "before 1970"},
		{"fractional timestamp", `{"event_name":"x","timestamp":1.5}`, "integer microseconds"},
		{"bad rfc3339", `{"event_name":"x","timestamp":"yesterday"}`, "RFC 3339"},
		{"metadata not object", `{"event_name":"x","metadata":[1]}`, "metadata must be a JSON object"},
		{"model wrong type", `{"event_name":"x","metadata":{"model":5}}`, "metadata.model"},
		{"success wrong type", `{"event_name":"x","success":"yes"}`, `"success"`},
		{"empty event id", `{"event_name":"x","event_id":""}`, "event_id"},
		{"long event id", `{"event_name":"x","event_id":"` + strings.Repeat("a", 129) + `"}`, "event_id"},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			_, err := Parse([]byte(c.in), testNow, testPrices)
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %q, want it to mention %q", err, c.msg)
			}
		})
	}
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestAppendJSONRoundTrip(t *testing.T) {
	in := `{"event_name":"crucible_train.epoch.stop","event_id":"client-1","timestamp":1764220000123456,
		"measurements":{"duration":1234567},"metadata":{"model":"gpt-4","provider":"openai","note":"quote \" backslash \\ tab \t nl \n ctl \u0001 é",
		"tokens":{"prompt":1,"completion":2},"user_id":"u","cohort":"c","loss":0.25,"epoch":3}}`
	e, err := Parse([]byte(in), testNow, testPrices)
	if err != nil {
		t.Fatal(err)
	}
	e.ExperimentID, e.ExperimentName, e.Condition, e.Tags = "exp", "Exp \"1\"", "treatment", []string{"a", "b"}
	out := e.AppendJSON(nil)
	if !json.Valid(out) {
		t.Fatalf("invalid JSON: %s", out)
	}
	var back Event
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	back.ClientID = e.ClientID
	if !reflect.DeepEqual(compactRaw(t, &back), compactRaw(t, e)) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", back, *e)
	}
}

func compactRaw(t *testing.T, e *Event) Event {
	c := *e
	c.Metadata, c.Measurements = compact(t, e.Metadata), compact(t, e.Measurements)
	return c
}

func compact(t *testing.T, raw []byte) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return b
}

func TestAppendFloatRoundTrips(t *testing.T) {
	for _, f := range []float64{0, 1, 0.1, 1e-7, 123456.789, 1e21, 5e-324, math.MaxFloat64, 0.015} {
		b := appendFloat(nil, f)
		var back float64
		if err := json.Unmarshal(b, &back); err != nil || back != f {
			t.Errorf("%v -> %s -> %v (%v)", f, b, back, err)
		}
	}
}

func TestSplit(t *testing.T) {
	cases := []struct {
		desc   string
		body   string
		ndjson bool
		n      int
		err    bool
	}{
		{"object", `{"event_name":"a"}`, false, 1, false},
		{"array", `[{"event_name":"a"},{"event_name":"b"}]`, false, 2, false},
		{"concatenated", "{\"a\":1}\n{\"b\":2}\n", false, 2, false},
		{"ndjson with a bad line", "{\"a\":1}\n{bad\n\n{\"b\":2}\r\n", true, 3, false},
		{"broken array", `[{"a":1},`, false, 0, true},
		{"empty", "  \n", false, 0, true},
		{"garbage", `xyz`, false, 0, true},
		// A body that is not JSON is refused whole (400); what only an
		// event's parse finds is that event's rejection.
		{"array with a raw NUL", "[{\"a\":\"\x00\"}]", false, 0, true},
		{"array with a bad number", `[{"a":01}]`, false, 0, true},
		{"object with NaN", `{"a":NaN}`, false, 0, true},
		{"ndjson keeps bad lines apart", "{\"a\":01}\n{\"b\":\"\x00\"}\n{\"c\":1}", true, 3, false},
		{"array with a repeated key", `[{"a":1,"a":2},{"b":1}]`, false, 2, false},
		{"array with invalid UTF-8", "[{\"a\":\"\xff\"}]", false, 1, false},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			parts, err := Split([]byte(c.body), c.ndjson)
			if c.err {
				if !errors.Is(err, ErrBody) {
					t.Fatalf("err = %v, want ErrBody", err)
				}
				return
			}
			if err != nil || len(parts) != c.n {
				t.Fatalf("got %d parts, err %v; want %d", len(parts), err, c.n)
			}
		})
	}
}

func TestKnownTypes(t *testing.T) {
	if TypeOf("req_llm.request.exception").Category != "llm" {
		t.Fatal("known type not found")
	}
	if TypeOf("my.custom.event").Category != CategoryCustom {
		t.Fatal("unknown types are custom")
	}
	seen := map[string]bool{}
	for _, k := range KnownTypes() {
		if seen[k.Name] {
			t.Fatalf("duplicate %s", k.Name)
		}
		seen[k.Name] = true
		if _, err := parseEventName(fastjson.MustParse(`"` + k.Name + `"`)); err != nil {
			t.Fatalf("known name %s is not valid: %v", k.Name, err)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, in := range []string{
		`{"event_name":"x"}`,
		`{"event_name":"req_llm.request.stop","event_id":"mine","measurements":{"duration":5},"metadata":{"model":"gpt-4","tokens":{"prompt":1},"session_id":"s","user_id":7,"cohort":"c","response":"r"}}`,
		`{"event_name":"crucible_train.batch.stop","metadata":{"loss":0.5,"epoch":3,"checkpoint_path":"/c"},"measurements":{"batch":9,"learning_rate":1e-4}}`,
		`{"event_name":"a.b","metadata":{"model":"unknown-llm","tokens":{"prompt":1,"completion":2,"total":10}},"success":false,"latency_ms":0}`,
		`{"event_name":"eval.sample","scores":{"judge.helpfulness":0.75,"exact_match":false,"pass_at_1":1},"metadata":{"sample_id":"q-17"}}`,
	} {
		for _, withRaw := range []bool{true, false} {
			e, err := Parse([]byte(in), testNow, testPrices)
			if err != nil {
				t.Fatal(err)
			}
			e.SampleWeight = 4
			var raw []byte
			if withRaw {
				raw = []byte(in)
			}
			d := GetDecoder()
			var back Event
			if err := d.DecodeRecord(e.AppendRecord(nil, raw), &back, true); err != nil {
				t.Fatal(err)
			}
			back.Raw = nil // the stored client JSON, not part of the event's content
			if !reflect.DeepEqual(compactRaw(t, &back), compactRaw(t, e)) {
				t.Fatalf("record round trip of %s (raw %v) differs:\n got %+v\nwant %+v", in, withRaw, back, *e)
			}
			var lean Event
			if err := d.DecodeRecord(e.AppendRecord(nil, raw), &lean, false); err != nil || lean.Metadata != nil || lean.LatencyMs != e.LatencyMs {
				t.Fatalf("decode without objects: %+v %v", lean, err)
			}
			// A view decodes the same event; its strings alias the record.
			rec := e.AppendRecord(nil, raw)
			var view Event
			if err := d.DecodeRecordView(rec, &view, false); err != nil || !reflect.DeepEqual(view, lean) {
				t.Fatalf("view decode differs:\n got %+v\nwant %+v (%v)", view, lean, err)
			}
			id := view.EventID
			clear(rec)
			if id == e.EventID {
				t.Fatalf("view decode copied the event id %q", id)
			}
			PutDecoder(d)
		}
	}
	d := GetDecoder()
	defer PutDecoder(d)
	var e Event
	for _, bad := range [][]byte{nil, {9}, {recordVersion, 0xff}, {recordVersion, 0, 5, 'a'}} {
		if err := d.DecodeRecord(bad, &e, false); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("%v: err = %v, want ErrCorruptRecord", bad, err)
		}
	}
}
