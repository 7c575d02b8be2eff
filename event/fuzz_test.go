package event

import (
	"errors"
	"testing"

	json "github.com/goccy/go-json"
)

// FuzzParse feeds arbitrary bytes through decoding, validation, enrichment
// and encoding: it must never panic, every error must be ErrInvalid, and
// every accepted event must encode to valid JSON that decodes again.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"event_name":"req_llm.request.stop","measurements":{"duration":150000000},"metadata":{"model":"gpt-4","tokens":{"prompt":100,"completion":200},"response":"x"}}`,
		`{"event_name":["a","b"],"timestamp":"2025-01-01T00:00:00Z","success":null,"latency_ms":1}`,
		`{"event_name":"crucible_train.batch.stop","metadata":{"loss":1,"epoch":2},"measurements":{"batch":3}}`,
		`{"event_name":"x","metadata":{"error":{"a":[{"b":1}]}},"timestamp":1}`,
		`[]`, `{}`, `null`, `{"event_name":"x","metadata":{"tokens":{"prompt":1e308}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(data, testNow, testPrices)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not classified: %v", err)
			}
			return
		}
		out := e.AppendJSON(nil)
		if !json.Valid(out) {
			t.Fatalf("invalid stored JSON %q from %q", out, data)
		}
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
		if rec.EventID != e.EventID || rec.Timestamp != e.Timestamp || rec.LatencyMs != e.LatencyMs || rec.CostUSD != e.CostUSD {
			t.Fatalf("stored record differs: %+v vs %+v", rec, e)
		}
	})
}

// FuzzSplit checks the body splitter never panics.
func FuzzSplit(f *testing.F) {
	f.Add([]byte(`[{"a":1},{"b":2}]`), false)
	f.Add([]byte("{\"a\":1}\n{\"b\":2}"), true)
	f.Fuzz(func(t *testing.T, data []byte, ndjson bool) {
		parts, err := Split(data, ndjson)
		if err != nil && !errors.Is(err, ErrBody) {
			t.Fatalf("error not classified: %v", err)
		}
		for _, p := range parts {
			_, _ = Parse(p, testNow, testPrices)
		}
	})
}
