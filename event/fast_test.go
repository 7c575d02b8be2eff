package event

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/crucible-telemetry/crucible-telemetry/loadgen"
)

// parseBoth parses data on the storage path with the fast path allowed and
// with the full decoder alone. taken tells whether the fast path answered.
func parseBoth(t *testing.T, data []byte) (fast, full *Event, fastErr, fullErr error, taken bool) {
	t.Helper()
	d, ref := GetDecoder(), GetDecoder()
	defer PutDecoder(d)
	defer PutDecoder(ref)
	ref.slowOnly = true
	defer func() { ref.slowOnly = false }()
	var in Input
	taken = d.fast(&in, data) && checkText(data) == nil
	fast, full = &Event{}, &Event{}
	fastErr = d.ParseForStorage(fast, data, testNow, testPrices)
	fullErr = ref.ParseForStorage(full, data, testNow, testPrices)
	for _, e := range []*Event{fast, full} {
		if !e.ClientID {
			e.EventID = "" // random
		}
	}
	return fast, full, fastErr, fullErr, taken
}

// sameAnswer fails unless both paths gave the same event or the same error.
func sameAnswer(t *testing.T, data []byte) bool {
	t.Helper()
	fast, full, fastErr, fullErr, taken := parseBoth(t, data)
	switch {
	case (fastErr == nil) != (fullErr == nil):
		t.Fatalf("%q: fast path %v, full decoder %v", data, fastErr, fullErr)
	case fastErr != nil && fastErr.Error() != fullErr.Error():
		t.Fatalf("%q: fast path %q, full decoder %q", data, fastErr, fullErr)
	case fastErr == nil && !reflect.DeepEqual(fast, full):
		t.Fatalf("%q:\nfast path    %+v\nfull decoder %+v", data, fast, full)
	}
	return taken
}

func TestFastPathTakesUsualEvents(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var lines [][]byte
	for scores := range 5 {
		body := loadgen.BatchWith(nil, rng, 200, testNow.UnixMicro(), loadgen.BatchOptions{Scores: scores})
		parts, err := Split(body, true)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, parts...)
	}
	for _, l := range lines {
		if !sameAnswer(t, l) {
			t.Fatalf("the fast path gave up on a load generator event: %s", l)
		}
	}
	for _, tc := range []struct{ name, event string }{
		{"spaced", "{ \"event_name\" : \"x.y\" ,\n\t\"latency_ms\" : 12.5 }\r\n"},
		{"nulls", `{"event_name":"x","latency_ms":null,"cost_usd":null,"success":null,"timestamp":null,"metadata":null,"measurements":null,"scores":null,"event_id":null,"experiment_id":null}`},
		{"ids as numbers", `{"event_name":"x","metadata":{"session_id":12,"sample_id":-3.5e2,"user_id":"u","cohort":0}}`},
		{"client event id", `{"event_name":"x","event_id":"e-1","experiment_id":"exp","timestamp":1764000000000000}`},
		{"training", `{"event_name":"crucible_train.batch.stop","metadata":{"loss":0.5,"epoch":2,"checkpoint_path":"/tmp/c"},"measurements":{"batch":3,"learning_rate":1e-4,"gradient_norm":1.5,"accuracy":0.9}}`},
		{"free-form values", `{"event_name":"x","metadata":{"error":{"type":"rate_limit","codes":[429,{"a":[true,false,null,"s\n\"q\""]}],"status":429},"k":-0.0,"tags":[]},"tags":["a"],"condition":"c","sample_weight":2}`},
		{"statuses", `{"event_name":"x","metadata":{"status":"error","exception":null,"response":null},"measurements":{"status":{"code":1},"start":1,"stop":5,"cost":0.1,"prompt_tokens":3,"completion_tokens":4}}`},
		{"all tokens", `{"event_name":"x","metadata":{"model":"gpt-4o","tokens":{"input":10,"output":5,"total":15,"cached":2,"extra":1}}}`},
		{"scores", `{"event_name":"x","scores":{"exact_match":true,"wrong":false,"judge":0.75,"n":3}}`},
		{"empty objects", `{"event_name":"x","metadata":{},"measurements":{},"scores":{}}`},
		{"escapes in free strings", `{"event_name":"x","metadata":{"response":"\u00e9\ud83d\ude00 \\ \/ \b\f\r\t é"}}`},
		{"float timestamp", `{"event_name":"x","timestamp":1764000000000000.0}`},
		{"a custom event name", `{"event_name":"my_app.step.done"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !sameAnswer(t, []byte(tc.event)) {
				t.Fatalf("the fast path gave up on %s", tc.event)
			}
		})
	}
}

func TestFastPathGivesUp(t *testing.T) {
	deep := `{"event_name":"x","metadata":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}}`
	for _, tc := range []struct{ name, event string }{
		{"escaped key", `{"event_name":"x","metadata":{"mod\u0065l":"m"}}`},
		{"escaped read string", `{"event_name":"x","metadata":{"model":"gpt\u002d4"}}`},
		{"escaped event name", `{"event_name":"x\u002ey"}`},
		{"event name as a list", `{"event_name":["x","y"]}`},
		{"no event name", `{"latency_ms":1}`},
		{"event name null", `{"event_name":null}`},
		{"bad event name", `{"event_name":"x..y"}`},
		{"RFC 3339 timestamp", `{"event_name":"x","timestamp":"2025-01-01T00:00:00Z"}`},
		{"timestamp in seconds", `{"event_name":"x","timestamp":1764000000}`},
		{"fractional timestamp", `{"event_name":"x","timestamp":1.5}`},
		{"mistyped latency", `{"event_name":"x","latency_ms":"12"}`},
		{"mistyped success", `{"event_name":"x","success":1}`},
		{"mistyped model", `{"event_name":"x","metadata":{"model":4}}`},
		{"metadata not an object", `{"event_name":"x","metadata":[]}`},
		{"tokens not an object", `{"event_name":"x","metadata":{"tokens":5}}`},
		{"string score", `{"event_name":"x","scores":{"a":"1"}}`},
		{"duplicate top key", `{"event_name":"x","latency_ms":1,"latency_ms":2}`},
		{"duplicate ignored key", `{"event_name":"x","tags":[],"tags":[]}`},
		{"duplicate free key", `{"event_name":"x","metadata":{"k":1,"k":2}}`},
		{"duplicate nested key", `{"event_name":"x","metadata":{"e":{"a":1,"a":1}}}`},
		{"duplicate score", `{"event_name":"x","scores":{"a":1,"a":2}}`},
		{"unknown field", `{"event_name":"x","latncy_ms":1}`},
		{"leading zero", `{"event_name":"x","latency_ms":01}`},
		{"bare dot", `{"event_name":"x","metadata":{"k":.5}}`},
		{"NaN", `{"event_name":"x","metadata":{"k":NaN}}`},
		{"out of range", `{"event_name":"x","metadata":{"k":1e999}}`},
		{"bad escape", `{"event_name":"x","metadata":{"k":"\x"}}`},
		{"unpaired surrogate", `{"event_name":"x","metadata":{"k":"\ud800"}}`},
		{"control character", "{\"event_name\":\"x\",\"metadata\":{\"k\":\"a\x01b\"}}"},
		{"invalid UTF-8", "{\"event_name\":\"x\",\"metadata\":{\"k\":\"\xff\"}}"},
		{"deep nesting", deep},
		{"trailing bytes", `{"event_name":"x"} x`},
		{"trailing comma", `{"event_name":"x",}`},
		{"not an object", `["event_name"]`},
		{"unterminated", `{"event_name":"x`},
		{"too many scores", `{"event_name":"x","scores":{` + manyScores(MaxScores+1) + `}}`},
		{"negative latency", `{"event_name":"x","latency_ms":-1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, _, taken := parseBoth(t, []byte(tc.event))
			// What Enrich rejects (a negative latency) passes the fast
			// path's decoding; the rest must not.
			if taken && tc.name != "negative latency" && tc.name != "bad event name" {
				t.Fatalf("the fast path took %s", tc.event)
			}
			sameAnswer(t, []byte(tc.event))
		})
	}
}

func manyScores(n int) string {
	var b bytes.Buffer
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"s`)
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(`":1`)
	}
	return b.String()
}

// FuzzFastPath holds the fast path equal to the full decoder: for any
// bytes, the same event or the same error.
func FuzzFastPath(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	body := loadgen.BatchWith(nil, rng, 20, testNow.UnixMicro(), loadgen.BatchOptions{Scores: 2})
	parts, _ := Split(body, true)
	for _, p := range parts {
		f.Add(p)
	}
	for _, seed := range []string{
		`{"event_name":"x","metadata":{"error":{"a":[1,{"b":null}]},"session_id":7},"scores":{"a":true}}`,
		`{"event_name":"crucible_train.epoch.stop","metadata":{"loss":1},"measurements":{"accuracy":0.5,"status":"ok"}}`,
		`{"event_name":"x","metadata":{"k":1,"k":2}}`,
		`{"event_name":"x","timestamp":"2025-01-01T00:00:00Z"}`,
		`{"event_name":"x","metadata":{"r":"a\"b\\"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) { sameAnswer(t, data) })
}

// FuzzFastPathReused is FuzzFastPath with one decoder of each kind reused
// for two events, as the ingest path reuses one for a whole batch: what
// the first leaves behind (a fast path given up midway) must not change
// the second's answer.
func FuzzFastPathReused(f *testing.F) {
	f.Add([]byte(`{"event_name":"x","scores":{"a":1,"b":2,"a":3}}`), []byte(`{"event_name":"x","scores":{"c":1}}`))
	f.Add([]byte(`{"event_name":"x","metadata":{"e":{"k":1,"k":2}}}`), []byte(`{"event_name":"x","metadata":{"k":1}}`))
	f.Add([]byte(`{"event_name":"x","metadata":{"tokens":{"prompt":1,"p":01}}}`), []byte(`{"event_name":"y","latency_ms":3}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		d, ref := GetDecoder(), GetDecoder()
		ref.slowOnly = true
		defer func() { ref.slowOnly = false; PutDecoder(ref); PutDecoder(d) }()
		for _, data := range [][]byte{a, b} {
			var fast, full Event
			fastErr := d.ParseForStorage(&fast, data, testNow, testPrices)
			fullErr := ref.ParseForStorage(&full, data, testNow, testPrices)
			if (fastErr == nil) != (fullErr == nil) || fastErr != nil && fastErr.Error() != fullErr.Error() {
				t.Fatalf("%q: fast path %v, full decoder %v", data, fastErr, fullErr)
			}
			if !fast.ClientID {
				fast.EventID, full.EventID = "", ""
			}
			if fastErr == nil && !reflect.DeepEqual(fast, full) {
				t.Fatalf("%q:\nfast path    %+v\nfull decoder %+v", data, fast, full)
			}
			if d.nkeys != 0 || ref.nkeys != 0 {
				t.Fatalf("%q: %d and %d keys left noted", data, d.nkeys, ref.nkeys)
			}
		}
	})
}
