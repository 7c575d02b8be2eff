package event

import (
	stdjson "encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	json "github.com/goccy/go-json"
)

// FuzzParse feeds arbitrary bytes through decoding, validation, enrichment
// and encoding: it must never panic, every error must be ErrInvalid, what
// is accepted must be RFC 8259 JSON without a repeated key, and every
// stored form of it (the client's bytes, the event's JSON, the log record)
// must be valid JSON. A syntax error must be one by encoding/json too.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"event_name":"req_llm.request.stop","measurements":{"duration":150000000},"metadata":{"model":"gpt-4","tokens":{"prompt":100,"completion":200},"response":"x"}}`,
		`{"event_name":["a","b"],"timestamp":"2025-01-01T00:00:00Z","success":null,"latency_ms":1}`,
		`{"event_name":"crucible_train.batch.stop","metadata":{"loss":1,"epoch":2},"measurements":{"batch":3}}`,
		`{"event_name":"x","metadata":{"error":{"a":[{"b":1}]}},"timestamp":1}`,
		`[]`, `{}`, `null`, `{"event_name":"x","metadata":{"tokens":{"prompt":1e308}}}`,
		// Found by fuzzing: accepted, and stored as invalid JSON.
		"{\"event_name\":\"0\",\"metadata\":{\"\x00\":\"\"}}",
		"{\"event_name\":\"0\",\"metadata\":{\"\\u0001\":0}}",
		"{\"event_name\":\"0\",\"metadata\":{\"\xff\":0}}",
		`{"event_name":"0","metadata":{"0":01}}`,
		`{"event_name":"0","metadata":{"0":.}}`,
		`{"event_name":"0","metadata":{"0":nan}}`,
		`{"event_name":"0","metadata":{"0":"\x"}}`,
		`{"event_name":"0","metadata":{"0":"\ud800"}}`,
		`{"event_name":"0","metadata":{"0":0,"0":0}}`,
		`{"event_name":"0","metadata":{"0":1e999}}`,
		// What strictness must keep accepting.
		"{\"event_name\":\"0\",\"metadata\":{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00 é\"},\"tags\":[-0,0.5,1E+2,1e-400]}",
		"{\r\n\t\"event_name\" : \"0\"\n}",
		`{"event_name":"eval.sample","scores":{"exact_match":true,"judge.helpfulness":0.8,"pass_at_1":1},"metadata":{"sample_id":"q-1"}}`,
		`{"event_name":"x","scores":{"a":1,"a":2}}`,
		`{"event_name":"x","scores":{"a":"1"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(data, testNow, testPrices)
		if err != nil {
			checkRejected(t, data, err)
			return
		}
		checkStored(t, data, e)
		out := e.AppendJSON(nil)
		var back Event
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("stored JSON does not decode: %v\n%s", err, out)
		}
		d := GetDecoder()
		defer PutDecoder(d)
		var rec Event
		if err := d.DecodeRecord(e.AppendRecord(nil, data), &rec, true); err != nil {
			t.Fatalf("stored record does not decode: %v", err)
		}
		if rec.EventID != e.EventID || rec.Timestamp != e.Timestamp || rec.LatencyMs != e.LatencyMs || rec.CostUSD != e.CostUSD ||
			!slices.Equal(rec.Scores, e.Scores) {
			t.Fatalf("stored record differs: %+v vs %+v", rec, e)
		}
		var s Event
		if err := d.ParseForStorage(&s, data, testNow, testPrices); err != nil {
			t.Fatalf("ParseForStorage rejects what Parse accepts: %v", err)
		}
	})
}

// checkRejected asserts that a rejection is classified and that what it
// calls malformed JSON or a repeated key is one for encoding/json too.
func checkRejected(t *testing.T, data []byte, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error not classified: %v", err)
	}
	msg := err.Error()
	valid := stdjson.Valid(data) && utf8.Valid(data)
	switch {
	case strings.Contains(msg, "malformed JSON") && !strings.Contains(msg, "too big depth") && valid:
		t.Fatalf("valid JSON %q rejected as malformed: %v", data, err)
	case strings.Contains(msg, "duplicate key") && valid && !hasRepeatedKey(data):
		t.Fatalf("%q rejected for a repeated key it does not have: %v", data, err)
	}
}

func hasRepeatedKey(data []byte) bool { _, ok := repeatedKey(data); return ok }

// FuzzSplit checks that the body splitter never panics, that a body split
// as a whole yields valid JSON values, and that every event of it that
// parses has valid stored forms.
func FuzzSplit(f *testing.F) {
	f.Add([]byte(`[{"a":1},{"b":2}]`), false)
	f.Add([]byte("{\"a\":1}\n{\"b\":2}"), true)
	f.Add([]byte(`[{"event_name":"x","metadata":{"k":1,"k":2}},{"event_name":"y"}]`), false)
	f.Add([]byte("{\"event_name\":\"x\",\"metadata\":{\"\x00\":1}}\n{\"event_name\":\"y\",\"latency_ms\":01}\n{\"event_name\":\"z\"}"), true)
	f.Add([]byte("{\"event_name\":\"x\"} {\"event_name\":\"\xff\"}"), false)
	f.Fuzz(func(t *testing.T, data []byte, ndjson bool) {
		parts, err := Split(data, ndjson)
		if err != nil && !errors.Is(err, ErrBody) {
			t.Fatalf("error not classified: %v", err)
		}
		for _, p := range parts {
			if !ndjson && !stdjson.Valid(p) {
				t.Fatalf("body %q split into invalid JSON %q", data, p)
			}
			e, err := Parse(p, testNow, testPrices)
			if err != nil {
				checkRejected(t, p, err)
				continue
			}
			checkStored(t, p, e)
		}
	})
}
