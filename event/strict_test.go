package event

import (
	stdjson "encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestParseStrictJSON: an event is exactly RFC 8259 JSON, without duplicate
// keys or unpaired surrogates, and every number fits a float64.
func TestParseStrictJSON(t *testing.T) {
	cases := []struct{ desc, in, msg string }{
		{"raw NUL in a metadata key", "{\"event_name\":\"0\",\"metadata\":{\"\x00\":\"\"}}", "control character"},
		{"raw control in a string", "{\"event_name\":\"x\",\"metadata\":{\"note\":\"a\x01b\"}}", "control character 0x01"},
		{"raw tab in a string", "{\"event_name\":\"x\",\"metadata\":{\"note\":\"a\tb\"}}", "control character 0x09"},
		{"raw newline in a string", "{\"event_name\":\"x\",\"metadata\":{\"note\":\"a\nb\"}}", "control character 0x0a"},
		{"raw control in the name", "{\"event_name\":\"x\x7f\x1f\"}", "control character 0x1f"},
		{"invalid UTF-8", "{\"event_name\":\"x\",\"metadata\":{\"note\":\"\xff\"}}", "invalid UTF-8"},
		{"overlong UTF-8", "{\"event_name\":\"x\",\"metadata\":{\"note\":\"\xc0\xaf\"}}", "invalid UTF-8"},
		{"UTF-8 surrogate", "{\"event_name\":\"x\",\"metadata\":{\"note\":\"\xed\xa0\x80\"}}", "invalid UTF-8"},
		{"truncated UTF-8", "{\"event_name\":\"x\",\"metadata\":{\"n\xc3\":1}}", "invalid UTF-8"},
		{"dot", `{"event_name":"x","metadata":{"n":.}}`, ""},
		{"leading dot", `{"event_name":"x","metadata":{"n":.5}}`, "number"},
		{"leading zero", `{"event_name":"x","metadata":{"n":01}}`, "number"},
		{"negative leading zero", `{"event_name":"x","measurements":{"n":-01}}`, "number"},
		{"plus", `{"event_name":"x","latency_ms":+1}`, "number"},
		{"NaN", `{"event_name":"x","metadata":{"n":NaN}}`, "number"},
		{"nan", `{"event_name":"x","metadata":{"n":nan}}`, "number"},
		{"inf", `{"event_name":"x","metadata":{"n":inf}}`, "number"},
		{"minus inf", `{"event_name":"x","cost_usd":-inf}`, "number"},
		{"trailing dot", `{"event_name":"x","metadata":{"n":1.}}`, "number"},
		{"bare exponent", `{"event_name":"x","metadata":{"n":1e}}`, "number"},
		{"signed bare exponent", `{"event_name":"x","metadata":{"n":1e+}}`, "number"},
		{"minus alone", `{"event_name":"x","metadata":{"n":-}}`, "number"},
		{"double minus", `{"event_name":"x","metadata":{"n":--1}}`, "number"},
		{"two dots", `{"event_name":"x","metadata":{"n":1.2.3}}`, "number"},
		{"two exponents", `{"event_name":"x","metadata":{"n":1e5e5}}`, "number"},
		{"nested number", `{"event_name":"x","metadata":{"error":{"a":[1,{"b":01}]}}}`, "number"},
		{"number in an ignored field", `{"event_name":"x","tags":[01]}`, "number"},
		{"number in the name list", `{"event_name":["a",01]}`, "list of strings"},
		{"number as an id", `{"event_name":"x","metadata":{"session_id":01}}`, `"01" at metadata.session_id is not a JSON number`},
		{"number in a training field", `{"event_name":"crucible_train.epoch.stop","metadata":{"loss":1e999}}`, "out of range"},
		{"number out of range", `{"event_name":"x","metadata":{"n":1e999}}`, "out of range"},
		{"negative number out of range", `{"event_name":"x","measurements":{"n":-2e308}}`, "out of range"},
		{"long number out of range", `{"event_name":"x","metadata":{"n":` + strings.Repeat("9", 400) + `}}`, "out of range"},
		{"bad escape", `{"event_name":"x","metadata":{"s":"\x"}}`, "escape"},
		{"single quote escape", `{"event_name":"x","metadata":{"s":"\'"}}`, "escape"},
		{"short unicode escape", `{"event_name":"x","metadata":{"s":"\u12"}}`, "escape"},
		{"non-hex unicode escape", `{"event_name":"x","metadata":{"s":"\u12G4"}}`, "escape"},
		{"escape in a key", `{"event_name":"x","metadata":{"\q":1}}`, "escape"},
		{"lone high surrogate", `{"event_name":"x","metadata":{"s":"\ud800"}}`, "surrogate"},
		{"lone low surrogate", `{"event_name":"x","metadata":{"s":"\udc00"}}`, "surrogate"},
		{"high surrogate then letter", `{"event_name":"x","metadata":{"s":"\ud800\u0041"}}`, "surrogate"},
		{"high surrogate at the end", `{"event_name":"x","metadata":{"s":"a\uD83D"}}`, "surrogate"},
		{"duplicate event_name", `{"event_name":"a","event_name":"b"}`, `duplicate key "event_name"`},
		{"duplicate latency", `{"event_name":"a","latency_ms":1,"latency_ms":2}`, `duplicate key "latency_ms"`},
		{"duplicate ignored top-level key", `{"event_name":"a","tags":[],"tags":["x"]}`, `duplicate key "tags"`},
		{"duplicate model", `{"event_name":"a","metadata":{"model":"a","model":"b"}}`, `duplicate key "model" in metadata`},
		{"duplicate free-form metadata key", `{"event_name":"a","metadata":{"x":1,"y":2,"x":3}}`, `duplicate key "x" in metadata`},
		{"duplicate measurement", `{"event_name":"a","measurements":{"duration":1,"duration":2}}`, `duplicate key "duration" in measurements`},
		{"duplicate spelled with an escape", `{"event_name":"a","metadata":{"a":1,"\u0061":2}}`, `duplicate key "a"`},
		{"duplicate in nested metadata", `{"event_name":"a","metadata":{"error":{"k":[{"z":1,"z":2}]}}}`, `duplicate key "z" in metadata.error.k[0]`},
		{"duplicate token count", `{"event_name":"a","metadata":{"tokens":{"prompt":1,"prompt":2}}}`, `duplicate key "prompt" in metadata.tokens`},
		{"duplicate score", `{"event_name":"a","scores":{"exact_match":1,"exact_match":0}}`, `duplicate key "exact_match" in scores`},
		{"duplicate empty key", `{"event_name":"a","metadata":{"":1,"":2}}`, `duplicate key "" in metadata`},
		{"bad number under an empty key", `{"event_name":"a","metadata":{"":{"":.}}}`, `"." at metadata."".""`},
		{"bad number under an odd key", `{"event_name":"a","metadata":{"a.b":[01]}}`, `"01" at metadata."a.b"[0]`},
		{"duplicate in a large object", `{"event_name":"a","metadata":{` + manyKeys(40) + `,"k7":0}}`, `duplicate key "k7"`},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			for _, forStorage := range []bool{false, true} {
				var err error
				if forStorage {
					d := GetDecoder()
					var e Event
					err = d.ParseForStorage(&e, []byte(c.in), testNow, testPrices)
					PutDecoder(d)
				} else {
					_, err = Parse([]byte(c.in), testNow, testPrices)
				}
				if err == nil || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				if !strings.Contains(err.Error(), c.msg) {
					t.Fatalf("err = %q, want it to mention %q", err, c.msg)
				}
			}
		})
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + itoa(int64(i)) + `":` + itoa(int64(i)))
	}
	return b.String()
}

// TestParseStrictAccepts: what RFC 8259 allows stays accepted, and its
// stored forms are valid JSON.
func TestParseStrictAccepts(t *testing.T) {
	for _, c := range []struct{ desc, in string }{
		{"numbers", `{"event_name":"x","latency_ms":0,"cost_usd":1.5e-3,"metadata":{"a":-0,"b":0.5,"c":1E+5,"d":-1.25e-7,"e":1e-400,"f":123456789012345678901234567890,"g":[0,-1,2e0]}}`},
		{"escapes", `{"event_name":"x","metadata":{"s":"\"\\\/\b\f\n\r\t\u00e9\u0000\u001f","pair":"\ud83d\ude00","model":"m\u0001\u0007\u000b","session_id":"\ud83d\ude00","k\u0001\u007f":1,"\u0007":{"\u000b":2}}}`},
		{"raw UTF-8 and DEL", "{\"event_name\":\"x\",\"metadata\":{\"s\":\"é 😀 \x7f\",\"é\":1}}"},
		{"pretty printed", "{\r\n\t\"event_name\" : \"x\" ,\n  \"metadata\": {\n\t\"a\": [ 1 , 2 ]\n  }\n}\n"},
		{"same key in different objects", `{"event_name":"x","metadata":{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]},"measurements":{"a":5}}`},
		{"many distinct keys", `{"event_name":"x","metadata":{` + manyKeys(40) + `}}`},
		{"every stored field", `{"event_id":"e1","experiment_id":"x1","experiment_name":"n","condition":"c","tags":["a"],"event_name":"x",
			"timestamp":1764220000123456,"measurements":{},"metadata":{},"latency_ms":1,"cost_usd":null,"success":true,"tokens":null,
			"session_id":null,"user_id":null,"sample_id":null,"cohort":null,"model":null,"provider":null,"epoch":null,"batch":null,
			"loss":null,"accuracy":null,"learning_rate":null,"gradient_norm":null,"checkpoint_path":null,"sample_weight":1,"scores":{"a":1}}`},
	} {
		t.Run(c.desc, func(t *testing.T) {
			e, err := Parse([]byte(c.in), testNow, testPrices)
			if err != nil {
				t.Fatal(err)
			}
			checkStored(t, []byte(c.in), e)
			d := GetDecoder()
			defer PutDecoder(d)
			var s Event
			if err := d.ParseForStorage(&s, []byte(c.in), testNow, testPrices); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// checkStored asserts that every stored form of an accepted event is valid
// JSON: the client's bytes, the event's JSON encoding, and the JSON part of
// its log record, with and without the client's bytes.
func checkStored(t *testing.T, data []byte, e *Event) {
	t.Helper()
	valid := func(what string, b []byte) {
		t.Helper()
		if !stdjson.Valid(b) || !utf8.Valid(b) {
			t.Fatalf("%s is not valid JSON: %q (input %q)", what, b, data)
		}
	}
	valid("accepted input", data)
	if dup, ok := repeatedKey(data); ok {
		t.Fatalf("accepted input has the key %q twice: %q", dup, data)
	}
	valid("metadata", appendRaw(nil, e.Metadata))
	valid("measurements", appendRaw(nil, e.Measurements))
	valid("event JSON", e.AppendJSON(nil))
	d := GetDecoder()
	defer PutDecoder(d)
	for _, raw := range [][]byte{data, nil} {
		var rec Event
		if err := d.DecodeRecord(e.AppendRecord(nil, raw), &rec, true); err != nil {
			t.Fatalf("stored record does not decode: %v", err)
		}
		valid("record JSON", rec.Raw)
		valid("record event JSON", rec.AppendJSON(nil))
	}
}

// repeatedKey returns a key that some object of data (valid JSON) holds
// twice, found with encoding/json's tokenizer.
func repeatedKey(data []byte) (string, bool) {
	dec := stdjson.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	type frame struct {
		keys  map[string]bool
		isKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.keys != nil && top.isKey {
			if s, ok := tok.(string); ok {
				if top.keys[s] {
					return s, true
				}
				top.keys[s] = true
				top.isKey = false
				continue
			}
		}
		switch tok {
		case stdjson.Delim('{'):
			if top != nil {
				top.isKey = true
			}
			stack = append(stack, &frame{keys: map[string]bool{}, isKey: true})
			continue
		case stdjson.Delim('['):
			if top != nil {
				top.isKey = true
			}
			stack = append(stack, &frame{})
			continue
		case stdjson.Delim('}'), stdjson.Delim(']'):
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil {
			top.isKey = true // a value ends: a key comes next in an object
		}
	}
}

// TestParseLimits: label-like strings are bounded at ingest.
func TestParseLimits(t *testing.T) {
	long := func(n int) string { return strings.Repeat("m", n) }
	seg := strings.Repeat("a", 31) // 8 segments of 31 and 7 dots: 255 bytes
	name8 := strings.Repeat(seg+".", 7) + seg
	cases := []struct {
		desc, in, msg string
	}{
		{"model", `{"event_name":"x","metadata":{"model":"` + long(MaxLabelLen+1) + `"}}`, "metadata.model must be at most 256 bytes, got 257"},
		{"huge model", `{"event_name":"x","metadata":{"model":"` + long(1536<<10) + `"}}`, "metadata.model must be at most 256 bytes"},
		{"provider", `{"event_name":"x","metadata":{"provider":"` + long(MaxLabelLen+1) + `"}}`, "metadata.provider must be at most 256 bytes"},
		{"event name", `{"event_name":"` + name8 + `aa"}`, "event_name must be at most 256 bytes, got 257"},
		{"event name list", `{"event_name":["` + strings.Join(strings.Split(name8+"aa", "."), `","`) + `"]}`, "event_name must be at most 256 bytes, got 257"},
		{"long single segment", `{"event_name":"` + long(100000) + `"}`, "event_name must be at most 256 bytes"},
		{"session_id", `{"event_name":"x","metadata":{"session_id":"` + long(MaxIDLen+1) + `"}}`, "metadata.session_id must be at most 1024 bytes, got 1025"},
		{"user_id", `{"event_name":"x","metadata":{"user_id":"` + long(MaxIDLen+1) + `"}}`, "metadata.user_id must be at most 1024 bytes"},
		{"sample_id", `{"event_name":"x","metadata":{"sample_id":"` + long(MaxIDLen+1) + `"}}`, "metadata.sample_id must be at most 1024 bytes"},
		{"numeric sample_id", `{"event_name":"x","metadata":{"sample_id":0.` + strings.Repeat("7", MaxIDLen-1) + `}}`, "metadata.sample_id must be at most 1024 bytes"},
		{"cohort", `{"event_name":"x","metadata":{"cohort":"` + long(MaxIDLen+1) + `"}}`, "metadata.cohort must be at most 1024 bytes"},
		{"model with escapes counts decoded bytes", `{"event_name":"x","metadata":{"model":"` + strings.Repeat(`\u00e9`, 129) + `"}}`, "metadata.model must be at most 256 bytes, got 258"},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			_, err := Parse([]byte(c.in), testNow, testPrices)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, c.msg)
			}
		})
	}
	t.Run("at the limits", func(t *testing.T) {
		in := `{"event_name":"` + name8 + `a","metadata":{"model":"` + long(MaxLabelLen) + `","provider":"` + long(MaxLabelLen) +
			`","session_id":"` + long(MaxIDLen) + `","user_id":"` + long(MaxIDLen) + `","sample_id":"` + long(MaxIDLen) + `","cohort":"` + long(MaxIDLen) + `"}}`
		e, err := Parse([]byte(in), testNow, testPrices)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.EventName) != MaxEventNameLen || len(e.Model.V) != MaxLabelLen || len(e.Cohort.V) != MaxIDLen {
			t.Fatalf("lengths %d %d %d", len(e.EventName), len(e.Model.V), len(e.Cohort.V))
		}
	})
}

// TestParseUnknownField: a misspelled top-level field rejects the event and
// names the field it was probably meant to be.
func TestParseUnknownField(t *testing.T) {
	cases := []struct{ desc, in, msg string }{
		{"measurments", `{"event_name":"x","measurments":{"duration":1}}`, `unknown field "measurments" (did you mean "measurements"?)`},
		{"latncy_ms", `{"event_name":"x","latncy_ms":5}`, `unknown field "latncy_ms" (did you mean "latency_ms"?)`},
		{"sucess", `{"event_name":"x","sucess":true}`, `unknown field "sucess" (did you mean "success"?)`},
		{"capitalised", `{"event_name":"x","Success":true}`, `unknown field "Success" (did you mean "success"?)`},
		{"camel case", `{"eventName":"x"}`, `unknown field "eventName" (did you mean "event_name"?)`},
		{"transposed", `{"event_name":"x","metdaata":{}}`, `unknown field "metdaata" (did you mean "metadata"?)`},
		{"timestmap", `{"event_name":"x","timestmap":1}`, `unknown field "timestmap" (did you mean "timestamp"?)`},
		{"a prefix", `{"event_name":"x","latency":5}`, `unknown field "latency" (did you mean "latency_ms"?)`},
		{"nothing close", `{"event_name":"x","foo":1}`, `unknown field "foo"`},
		{"long key is cut", `{"event_name":"x","` + strings.Repeat("k", 5000) + `":1}`, `unknown field "` + strings.Repeat("k", 64) + `…"`},
		{"long key is cut at a rune", `{"event_name":"x","k` + strings.Repeat("é", 100) + `":1}`, `unknown field "k` + strings.Repeat("é", 31) + `…"`},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			_, err := Parse([]byte(c.in), testNow, testPrices)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.HasSuffix(err.Error(), c.msg) {
				t.Fatalf("err = %v, want ErrInvalid ending in %q", err, c.msg)
			}
			if c.desc == "nothing close" && strings.Contains(err.Error(), "did you mean") {
				t.Fatalf("err = %v suggests a field for an unrelated key", err)
			}
		})
	}
	t.Run("free-form objects", func(t *testing.T) {
		if _, err := Parse([]byte(`{"event_name":"x","metadata":{"measurments":1,"sucess":2},"measurements":{"latncy_ms":3}}`), testNow, testPrices); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an exported event imports back", func(t *testing.T) {
		e, err := Parse([]byte(`{"event_name":"crucible_train.epoch.stop","event_id":"c1","timestamp":1764220000123456,"latency_ms":3,
			"metadata":{"model":"gpt-4","provider":"openai","tokens":{"prompt":1,"completion":2},"session_id":"s","user_id":"u",
			"sample_id":"q","cohort":"c","loss":0.5,"epoch":1,"checkpoint_path":"/c"},"measurements":{"batch":2}}`), testNow, testPrices)
		if err != nil {
			t.Fatal(err)
		}
		e.ExperimentID, e.ExperimentName, e.Condition, e.Tags, e.SampleWeight = "exp", "Exp", "treatment", []string{"a"}, 2
		out := e.AppendJSON(nil)
		back, err := Parse(out, testNow, testPrices)
		if err != nil {
			t.Fatalf("export does not import: %v\n%s", err, out)
		}
		if back.EventID != e.EventID || back.Timestamp != e.Timestamp || *back.Training != *e.Training || back.Model != e.Model {
			t.Fatalf("import differs:\n got %+v\nwant %+v", back, e)
		}
	})
}

// TestParseTimestampUnit: a timestamp in seconds, milliseconds or
// nanoseconds is rejected with the unit it looks like.
func TestParseTimestampUnit(t *testing.T) {
	cases := []struct{ desc, ts, msg string }{
		{"seconds", "1764220000", "timestamp 1764220000 looks like seconds since the epoch; timestamps are microseconds"},
		{"fractional seconds", "1764220000.25", "timestamp 1764220000.25 looks like seconds since the epoch; timestamps are microseconds"},
		{"seconds in 2000", "946684800", "looks like seconds"},
		{"milliseconds", "1764220000123", "timestamp 1764220000123 looks like milliseconds since the epoch; timestamps are microseconds"},
		{"nanoseconds", "1764220000123456789", "timestamp 1764220000123456789 looks like nanoseconds since the epoch; timestamps are microseconds"},
		{"nanoseconds as a float", "1.764220000123456789e18", "looks like nanoseconds"},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			_, err := Parse([]byte(`{"event_name":"x","timestamp":`+c.ts+`}`), testNow, testPrices)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, c.msg)
			}
		})
	}
	for _, ts := range []int64{1, 1764220000123456, testNow.UnixMicro(), 946684800000000} {
		if e, err := Parse([]byte(`{"event_name":"x","timestamp":`+itoa(ts)+`}`), testNow, testPrices); err != nil || e.Timestamp != ts {
			t.Errorf("timestamp %d: %v", ts, err)
		}
	}
}

// TestKeyHash: keys that differ hash apart (a collision would only cost an
// exact comparison, but the common keys should not pay it).
func TestKeyHash(t *testing.T) {
	seen := map[uint64]string{}
	var keys []string
	for i := range 3000 {
		keys = append(keys, itoa(int64(i)), "k"+itoa(int64(i)), "latency_p"+itoa(int64(i))+"_milliseconds", strings.Repeat("x", i%40)+itoa(int64(i)))
	}
	keys = append(keys, "", "a", "ab", "abc", "abcd", "prompt", "completion", "prompt_tokens", "completion_tokens")
	for _, k := range keys {
		h := keyHash([]byte(k))
		if other, ok := seen[h]; ok && other != k {
			t.Fatalf("%q and %q hash alike", k, other)
		}
		seen[h] = k
	}
}

// TestReadNumber: numbers read in collect's pass equal strconv's reading,
// and what is no JSON number is refused.
func TestReadNumber(t *testing.T) {
	inputs := []string{"0", "-0", "1", "-1", "9", "10", "123456789", "12345678901234567", "123456789012345678",
		"1234567890123456789", "99999999999999999999", "9007199254740993", "1795780800000000", "0.1", "0.015", "-1.5",
		"150.0", "1e5", "1E+5", "1e-5", "2.5e-3", "1e22", "1e23", "1.7976931348623157e308", "5e-324", "1e-400",
		"123456789012345.6", "1234567890123456.7", "0.000001", "3.14159265358979323846", "1e0", "0e0", "-0.0",
		"4.9406564584124654e-324", "22e-22", "1e-22", "9.999999999999999e22"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		if r.IntN(2) == 0 {
			b.WriteByte('-')
		}
		b.WriteString(strconv.FormatUint(r.Uint64()>>uint(r.IntN(64)), 10))
		if r.IntN(2) == 0 {
			b.WriteString("." + strconv.FormatUint(r.Uint64()>>uint(r.IntN(64)), 10))
		}
		if r.IntN(3) == 0 {
			b.WriteString("e" + strconv.Itoa(r.IntN(700)-350))
		}
		inputs = append(inputs, b.String())
	}
	for _, in := range inputs {
		want, err := strconv.ParseFloat(in, 64)
		var n num
		w := readNumber([]byte(in), &n, true)
		if err != nil {
			if w == nil || !w.outOfRange {
				t.Fatalf("%s: got %v, want out of range", in, n.f)
			}
			continue
		}
		if w != nil || math.Float64bits(n.f) != math.Float64bits(want) {
			t.Fatalf("%s: got %v (%v), want %v", in, n.f, w, want)
		}
		if n.isInt {
			if iv, err := strconv.ParseInt(in, 10, 64); err != nil || iv != n.i {
				t.Fatalf("%s: integer %d, want %d", in, n.i, iv)
			}
		}
		var lean num
		if w := readNumber([]byte(in), &lean, false); w != nil {
			t.Fatalf("%s: grammar check refuses it: %v", in, w.err())
		}
	}
	for _, bad := range []string{"", "-", "+1", ".5", "01", "-01", "1.", "1.e5", "1e", "1e+", "--1", "1.2.3", "1e5e5", "NaN", "inf", "0x1", "1_000", " 1"} {
		var n num
		if w := readNumber([]byte(bad), &n, true); w == nil || w.outOfRange {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestPlainASCII: every length and every position of a byte outside
// [0x20, 0x7f] is seen.
func TestPlainASCII(t *testing.T) {
	for n := range 100 {
		b := []byte(strings.Repeat("a", n))
		if !plainASCII(b) {
			t.Fatalf("%d plain bytes refused", n)
		}
		for i := range n {
			for _, c := range []byte{0x00, 0x1f, 0x80, 0xff} {
				b[i] = c
				if plainASCII(b) {
					t.Fatalf("0x%02x at %d of %d accepted", c, i, n)
				}
				b[i] = 'a'
			}
		}
	}
}

func TestHasControl(t *testing.T) {
	for n := range 40 {
		b := []byte(strings.Repeat("é", n/2) + strings.Repeat("a", n%2))
		if hasControl(b) {
			t.Fatalf("%q has no control byte", b)
		}
		for i := range b {
			c := b[i]
			b[i] = 0x1f
			if !hasControl(b) {
				t.Fatalf("control at %d of %q not seen", i, b)
			}
			b[i] = c
		}
	}
}
