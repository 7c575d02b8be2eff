package event

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// TestEnrich applies SPEC §4.3's rules to an Input alone, as a decoder of
// any protocol hands it over: no JSON involved.
func TestEnrich(t *testing.T) {
	ts := testNow.UnixMicro() - 1000
	tok := func(p, c, total int64) *Tokens {
		return &Tokens{Prompt: Some(p), Completion: Some(c), Total: Some(total)}
	}
	prompt := func(p int64) *Tokens { return &Tokens{Prompt: Some(p), Total: Some(p)} }
	f := Some[float64]
	// Every case starts from this input and the event it makes.
	base := func() Input { return Input{EventName: "a.b", EventID: Some("e1"), Timestamp: Some(ts)} }
	stored := func() Event {
		return Event{EventID: "e1", ClientID: true, EventName: "a.b", Timestamp: ts, SampleWeight: 1}
	}
	cases := []struct {
		desc string
		in   func(*Input)
		want func(*Event) // the changes to stored(); nil when err is set
		err  string       // part of the rejection's message
	}{
		{"nothing to enrich", func(*Input) {}, func(*Event) {}, ""},
		{"objects and experiment kept", func(in *Input) {
			in.ExperimentID, in.Metadata, in.Measurements = "exp-1", []byte(`{"k":1}`), []byte(`{"m":2}`)
		}, func(e *Event) {
			e.ExperimentID, e.Metadata, e.Measurements = "exp-1", []byte(`{"k":1}`), []byte(`{"m":2}`)
		}, ""},

		// event_name
		{"known name", func(in *Input) { in.EventName = "req_llm.request.stop" }, func(e *Event) { e.EventName = "req_llm.request.stop" }, ""},
		{"eight segments", func(in *Input) { in.EventName = "a.b.c.d.e.f.g.H_9" }, func(e *Event) { e.EventName = "a.b.c.d.e.f.g.H_9" }, ""},
		{"nine segments", func(in *Input) { in.EventName = "a.b.c.d.e.f.g.h.i" }, nil, "1 to 8 segments, got 9"},
		{"empty name", func(in *Input) { in.EventName = "" }, nil, `segment "" must match`},
		{"empty segment", func(in *Input) { in.EventName = "a..b" }, nil, `segment "" must match`},
		{"trailing dot", func(in *Input) { in.EventName = "a.b." }, nil, `segment "" must match`},
		{"bad byte", func(in *Input) { in.EventName = "a.b-c" }, nil, `segment "b-c" must match`},
		{"long name", func(in *Input) { in.EventName = strings.Repeat("a", MaxEventNameLen+1) }, nil, "event_name must be at most 256 bytes, got 257"},

		// event_id
		{"generated event id", func(in *Input) { in.EventID = Null[string]{} }, func(e *Event) { e.EventID, e.ClientID = "generated", false }, ""},
		{"empty event id", func(in *Input) { in.EventID = Some("") }, nil, "event_id must be a string of 1-128 printable characters"},
		{"long event id", func(in *Input) { in.EventID = Some(strings.Repeat("i", MaxEventIDLen+1)) }, nil, "event_id"},
		{"event id at the limit", func(in *Input) { in.EventID = Some(strings.Repeat("i", MaxEventIDLen)) },
			func(e *Event) { e.EventID = strings.Repeat("i", MaxEventIDLen) }, ""},
		{"control in event id", func(in *Input) { in.EventID = Some("a\x7fb") }, nil, "event_id"},

		// timestamp
		{"timestamp of receipt", func(in *Input) { in.Timestamp = Null[int64]{} }, func(e *Event) { e.Timestamp = testNow.UnixMicro() }, ""},
		{"five minutes ahead", func(in *Input) { in.Timestamp = Some(testNow.Add(MaxFuture).UnixMicro()) },
			func(e *Event) { e.Timestamp = testNow.Add(MaxFuture).UnixMicro() }, ""},
		{"past five minutes ahead", func(in *Input) { in.Timestamp = Some(testNow.Add(MaxFuture).UnixMicro() + 1) }, nil, "in the future"},
		{"before 1970", func(in *Input) { in.Timestamp = Some(int64(-1)) }, nil, "before 1970"},

		// latency_ms: explicit, else duration, else stop - start
		{"explicit latency wins", func(in *Input) { in.LatencyMs, in.Duration, in.Start, in.Stop = f(12.5), f(1e9), f(0), f(5e6) },
			func(e *Event) { e.LatencyMs = f(12.5) }, ""},
		{"explicit zero latency wins", func(in *Input) { in.LatencyMs, in.Duration = f(0), f(1e9) }, func(e *Event) { e.LatencyMs = f(0) }, ""},
		{"duration in ns", func(in *Input) { in.Duration, in.Start, in.Stop = f(150e6), f(0), f(5e6) }, func(e *Event) { e.LatencyMs = f(150) }, ""},
		{"stop minus start", func(in *Input) { in.Start, in.Stop = f(1e6), f(3.5e6) }, func(e *Event) { e.LatencyMs = f(2.5) }, ""},
		{"start alone", func(in *Input) { in.Start = f(1e6) }, func(*Event) {}, ""},
		{"negative latency", func(in *Input) { in.LatencyMs = f(-1) }, nil, "latency_ms must be >= 0, got -1"},
		{"NaN latency", func(in *Input) { in.LatencyMs = f(math.NaN()) }, nil, "latency_ms must be a finite number"},
		{"infinite duration", func(in *Input) { in.Duration = f(math.Inf(1)) }, nil, "measurements.duration must be a finite number"},
		{"negative duration", func(in *Input) { in.Duration = f(-5) }, nil, "measurements.duration must be >= 0"},
		{"stop before start", func(in *Input) { in.Start, in.Stop = f(5), f(1) }, nil, "measurements.stop is before measurements.start"},
		{"stop minus start overflows", func(in *Input) { in.Start, in.Stop = f(-1e308), f(1e308) }, nil, "too large"},

		// tokens: metadata.tokens {prompt|input, completion|output, total}, else measurements
		{"total is the sum", func(in *Input) { in.Tokens.Prompt, in.Tokens.Completion = f(100), f(200) },
			func(e *Event) { e.Tokens = tok(100, 200, 300) }, ""},
		{"input and output", func(in *Input) { in.Tokens.Input, in.Tokens.Output = f(1), f(2) }, func(e *Event) { e.Tokens = tok(1, 2, 3) }, ""},
		{"prompt before input", func(in *Input) {
			in.Tokens.Prompt, in.Tokens.Input, in.Tokens.Completion, in.Tokens.Output = f(5), f(9), f(6), f(8)
		}, func(e *Event) { e.Tokens = tok(5, 6, 11) }, ""},
		{"explicit total", func(in *Input) { in.Tokens.Prompt, in.Tokens.Completion, in.Tokens.Total = f(1), f(2), f(10) },
			func(e *Event) { e.Tokens = tok(1, 2, 10) }, ""},
		{"total alone", func(in *Input) { in.Tokens.Total = f(10) }, func(e *Event) { e.Tokens = &Tokens{Total: Some[int64](10)} }, ""},
		{"prompt alone", func(in *Input) { in.Tokens.Prompt = f(7) }, func(e *Event) { e.Tokens = prompt(7) }, ""},
		{"measurements' tokens", func(in *Input) { in.PromptTokens, in.CompletionTokens = f(3), f(4) }, func(e *Event) { e.Tokens = tok(3, 4, 7) }, ""},
		{"metadata's tokens before measurements'", func(in *Input) { in.Tokens.Prompt, in.PromptTokens, in.CompletionTokens = f(1), f(100), f(200) },
			func(e *Event) { e.Tokens = prompt(1) }, ""},
		{"cached alone is no tokens", func(in *Input) { in.Tokens.Cached = f(5) }, func(*Event) {}, ""},
		{"fractional tokens", func(in *Input) { in.Tokens.Prompt = f(1.5) }, nil, "metadata.tokens.prompt must be a whole number"},
		{"negative tokens", func(in *Input) { in.Tokens.Output = f(-1) }, nil, "metadata.tokens.completion must be >= 0"},
		{"tokens past 2^53", func(in *Input) { in.Tokens.Total = f(1 << 54) }, nil, "metadata.tokens.total must be a whole number"},
		{"NaN tokens", func(in *Input) { in.CompletionTokens = f(math.NaN()) }, nil, "measurements.completion_tokens must be a finite number"},
		{"fractional cached", func(in *Input) { in.Tokens.Prompt, in.Tokens.Cached = f(1), f(0.5) }, nil, "metadata.tokens.cached must be a whole number"},

		// cost_usd: explicit, else metadata.cost, else tokens × price, else measurements.cost
		{"explicit cost wins", func(in *Input) {
			in.CostUSD, in.MetadataCost, in.MeasurementsCost = f(0.5), f(0.25), f(0.125)
			in.Model, in.Tokens.Prompt = Some("gpt-4"), f(100)
		}, func(e *Event) { e.CostUSD, e.Model, e.Tokens = f(0.5), Some("gpt-4"), prompt(100) }, ""},
		{"explicit zero cost wins", func(in *Input) { in.CostUSD, in.MetadataCost = f(0), f(0.25) }, func(e *Event) { e.CostUSD = f(0) }, ""},
		{"metadata cost before the price", func(in *Input) {
			in.MetadataCost, in.MeasurementsCost, in.Model, in.Tokens.Prompt = f(0.25), f(0.125), Some("gpt-4"), f(100)
		}, func(e *Event) { e.CostUSD, e.Model, e.Tokens = f(0.25), Some("gpt-4"), prompt(100) }, ""},
		{"price before measurements' cost", func(in *Input) {
			in.MeasurementsCost, in.Model, in.Tokens.Prompt, in.Tokens.Completion = f(9), Some("gpt-4"), f(100), f(200)
		}, func(e *Event) { e.CostUSD, e.Model, e.Tokens = f(0.015), Some("gpt-4"), tok(100, 200, 300) }, ""},
		{"cached prompt tokens at their price", func(in *Input) {
			in.Model, in.Tokens.Prompt, in.Tokens.Cached = Some("gpt-4o"), f(2e6), f(1e6)
		}, func(e *Event) { e.CostUSD, e.Model, e.Tokens = f(2.5+1.25), Some("gpt-4o"), prompt(2e6) }, ""},
		{"dated model priced by its base", func(in *Input) { in.Model, in.Tokens.Prompt = Some("gpt-4o-2024-08-06"), f(1e6) },
			func(e *Event) { e.CostUSD, e.Model, e.Tokens = f(2.5), Some("gpt-4o-2024-08-06"), prompt(1e6) }, ""},
		{"unknown model is unpriced", func(in *Input) { in.Model, in.Tokens.Prompt = Some("llama-9"), f(10) },
			func(e *Event) { e.Unpriced, e.Model, e.Tokens = true, Some("llama-9"), prompt(10) }, ""},
		{"measurements' cost for an unpriced model", func(in *Input) { in.MeasurementsCost, in.Model, in.Tokens.Prompt = f(0.125), Some("llama-9"), f(10) },
			func(e *Event) { e.CostUSD, e.Model, e.Tokens = f(0.125), Some("llama-9"), prompt(10) }, ""},
		{"no model is not unpriced", func(in *Input) { in.Tokens.Prompt = f(10) }, func(e *Event) { e.Tokens = prompt(10) }, ""},
		{"no tokens is not unpriced", func(in *Input) { in.Model = Some("llama-9") }, func(e *Event) { e.Model = Some("llama-9") }, ""},
		{"measurements' cost alone", func(in *Input) { in.MeasurementsCost = f(0.125) }, func(e *Event) { e.CostUSD = f(0.125) }, ""},
		{"negative cost", func(in *Input) { in.CostUSD = f(-0.1) }, nil, "cost_usd must be >= 0"},
		{"negative metadata cost", func(in *Input) { in.MetadataCost = f(-0.1) }, nil, "metadata.cost must be >= 0"},
		{"negative measurements' cost", func(in *Input) { in.MeasurementsCost = f(-0.1) }, nil, "measurements.cost must be >= 0"},
		{"infinite cost", func(in *Input) { in.CostUSD = f(math.Inf(1)) }, nil, "cost_usd must be a finite number"},

		// success: explicit; error/exception; status (measurements, metadata); *.exception; response
		{"explicit success wins", func(in *Input) { in.Success, in.Error = Some(true), true }, func(e *Event) { e.Success = Some(true) }, ""},
		{"explicit failure wins", func(in *Input) { in.Success, in.MeasurementsStatus, in.Response = Some(false), Some("ok"), true },
			func(e *Event) { e.Success = Some(false) }, ""},
		{"error before status", func(in *Input) { in.Error, in.MeasurementsStatus = true, Some("ok") }, func(e *Event) { e.Success = Some(false) }, ""},
		{"status ok", func(in *Input) { in.MeasurementsStatus = Some("OK") }, func(e *Event) { e.Success = Some(true) }, ""},
		{"status error", func(in *Input) { in.MetadataStatus = Some("Error") }, func(e *Event) { e.Success = Some(false) }, ""},
		{"measurements' status first", func(in *Input) { in.MeasurementsStatus, in.MetadataStatus = Some("error"), Some("ok") },
			func(e *Event) { e.Success = Some(false) }, ""},
		{"another status is none", func(in *Input) { in.MeasurementsStatus, in.MetadataStatus = Some("pending"), Some("ok") },
			func(e *Event) { e.Success = Some(true) }, ""},
		{"status before the name", func(in *Input) { in.EventName, in.MetadataStatus = "a.exception", Some("ok") },
			func(e *Event) { e.EventName, e.Success = "a.exception", Some(true) }, ""},
		{"exception name before the response", func(in *Input) { in.EventName, in.Response = "req_llm.request.exception", true },
			func(e *Event) { e.EventName, e.Success = "req_llm.request.exception", Some(false) }, ""},
		{"name exception", func(in *Input) { in.EventName = "exception" }, func(e *Event) { e.EventName, e.Success = "exception", Some(false) }, ""},
		{"name ending in exception is not one", func(in *Input) { in.EventName = "a.no_exception" }, func(e *Event) { e.EventName = "a.no_exception" }, ""},
		{"response", func(in *Input) { in.Response = true }, func(e *Event) { e.Success = Some(true) }, ""},

		// lifted from metadata
		{"lifted fields", func(in *Input) {
			in.Model, in.Provider, in.SessionID, in.UserID, in.SampleID, in.Cohort = Some("m"), Some("p"), Some("s"), Some("u"), Some("17"), Some("c")
		}, func(e *Event) {
			e.Model, e.Provider, e.SessionID, e.UserID, e.SampleID, e.Cohort = Some("m"), Some("p"), Some("s"), Some("u"), Some("17"), Some("c")
		}, ""},
		{"labels at their limits", func(in *Input) {
			in.Model, in.Provider, in.Cohort = Some(strings.Repeat("m", MaxLabelLen)), Some(strings.Repeat("p", MaxLabelLen)), Some(strings.Repeat("c", MaxIDLen))
		}, func(e *Event) {
			e.Model, e.Provider, e.Cohort = Some(strings.Repeat("m", MaxLabelLen)), Some(strings.Repeat("p", MaxLabelLen)), Some(strings.Repeat("c", MaxIDLen))
		}, ""},
		{"long model", func(in *Input) { in.Model = Some(strings.Repeat("m", MaxLabelLen+1)) }, nil, "metadata.model must be at most 256 bytes, got 257"},
		{"long provider", func(in *Input) { in.Provider = Some(strings.Repeat("p", MaxLabelLen+1)) }, nil, "metadata.provider must be at most 256 bytes"},
		{"long session id", func(in *Input) { in.SessionID = Some(strings.Repeat("s", MaxIDLen+1)) }, nil, "metadata.session_id must be at most 1024 bytes, got 1025"},
		{"long user id", func(in *Input) { in.UserID = Some(strings.Repeat("u", MaxIDLen+1)) }, nil, "metadata.user_id must be at most 1024 bytes"},
		{"long sample id", func(in *Input) { in.SampleID = Some(strings.Repeat("q", MaxIDLen+1)) }, nil, "metadata.sample_id must be at most 1024 bytes"},
		{"long cohort", func(in *Input) { in.Cohort = Some(strings.Repeat("c", MaxIDLen+1)) }, nil, "metadata.cohort must be at most 1024 bytes"},

		// training fields, for crucible_train.* events: metadata's, then measurements'
		{"training fields", func(in *Input) {
			in.EventName = "crucible_train.batch.stop"
			in.MetadataTraining = InputTraining{Epoch: f(2), Loss: f(0.5), CheckpointPath: Some("/c/1")}
			in.MeasurementsTraining = InputTraining{Epoch: f(9), Batch: f(7), Loss: f(9), Accuracy: f(0.9), LearningRate: f(1e-3), GradientNorm: f(1.5), CheckpointPath: Some("/c/2")}
		}, func(e *Event) {
			e.EventName = "crucible_train.batch.stop"
			e.Training = &Training{Epoch: Some[int64](2), Batch: Some[int64](7), Loss: f(0.5), Accuracy: f(0.9), LearningRate: f(1e-3), GradientNorm: f(1.5), CheckpointPath: Some("/c/1")}
		}, ""},
		{"training event without its fields", func(in *Input) { in.EventName = "crucible_train.epoch.stop" },
			func(e *Event) { e.EventName, e.Training = "crucible_train.epoch.stop", &Training{} }, ""},
		{"training fields of another event", func(in *Input) { in.MetadataTraining = InputTraining{Epoch: f(1.5), Loss: f(math.NaN())} }, func(*Event) {}, ""},
		{"fractional epoch", func(in *Input) { in.EventName, in.MeasurementsTraining.Epoch = "crucible_train.epoch.stop", f(1.5) }, nil, "epoch must be a whole number"},
		{"negative batch", func(in *Input) { in.EventName, in.MetadataTraining.Batch = "crucible_train.batch.stop", f(-1) }, nil, "batch must be >= 0"},
		{"NaN loss", func(in *Input) { in.EventName, in.MetadataTraining.Loss = "crucible_train.batch.stop", f(math.NaN()) }, nil, "loss must be a finite number"},
		{"negative loss", func(in *Input) { in.EventName, in.MetadataTraining.Loss = "crucible_train.batch.stop", f(-0.5) },
			func(e *Event) { e.EventName, e.Training = "crucible_train.batch.stop", &Training{Loss: f(-0.5)} }, ""},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			in := base()
			c.in(&in)
			// Enrich sets every field: nothing of an event decoded before stays.
			e := Event{ExperimentName: "old", Condition: "old", Tags: []string{"old"}, Raw: []byte("old"), Unpriced: true, SampleWeight: 4}
			err := Enrich(&e, &in, testNow, testPrices)
			if c.err != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := stored()
			c.want(&want)
			if want.EventID == "generated" {
				if len(e.EventID) != 32 || strings.Trim(e.EventID, "0123456789abcdef") != "" {
					t.Fatalf("generated event id %q is not 32 hex characters", e.EventID)
				}
				want.EventID = e.EventID
			}
			if !reflect.DeepEqual(e, want) {
				t.Fatalf("enriched\n got %+v %+v %+v\nwant %+v %+v %+v", e, e.Tokens, e.Training, want, want.Tokens, want.Training)
			}
		})
	}
}

// TestEnrichKnownNames: every known event name passes Enrich's check.
func TestEnrichKnownNames(t *testing.T) {
	for _, k := range KnownTypes() {
		if err := checkEventName(k.Name); err != nil {
			t.Errorf("%s: %v", k.Name, err)
		}
	}
}

// TestParseMistyped: a field the JSON decoder found with a value of the
// wrong type rejects the event only where enrichment reads it.
func TestParseMistyped(t *testing.T) {
	for _, c := range []struct{ desc, in, err string }{
		{"explicit latency", `{"event_name":"x","latency_ms":"fast","measurements":{"duration":1}}`, `field "latency_ms": cannot use a string as a number`},
		{"duration under an explicit latency", `{"event_name":"x","latency_ms":1,"measurements":{"duration":"long"}}`, ""},
		{"duration", `{"event_name":"x","measurements":{"duration":[1]}}`, `field "measurements.duration": cannot use an array as a number`},
		{"input under prompt", `{"event_name":"x","metadata":{"tokens":{"prompt":1,"input":"many"}}}`, ""},
		{"measurements' tokens under metadata's", `{"event_name":"x","metadata":{"tokens":{"total":3}},"measurements":{"prompt_tokens":{}}}`, ""},
		{"measurements' tokens", `{"event_name":"x","measurements":{"prompt_tokens":true}}`, `field "measurements.prompt_tokens": cannot use a boolean as a number`},
		{"metadata cost under cost_usd", `{"event_name":"x","cost_usd":1,"metadata":{"cost":"high"}}`, ""},
		{"metadata cost", `{"event_name":"x","metadata":{"cost":"high"}}`, `field "metadata.cost": cannot use a string as a number`},
		{"measurements' cost under a price", `{"event_name":"x","metadata":{"model":"gpt-4","tokens":{"prompt":1}},"measurements":{"cost":"x"}}`, ""},
		{"training field of another event", `{"event_name":"x","metadata":{"epoch":"one"}}`, ""},
		{"training field", `{"event_name":"crucible_train.epoch.stop","metadata":{"epoch":"one"},"measurements":{"epoch":1}}`, `field "epoch": cannot use a string as a number`},
		{"measurements' training field under metadata's", `{"event_name":"crucible_train.epoch.stop","metadata":{"epoch":1},"measurements":{"epoch":"one"}}`, ""},
		{"checkpoint path", `{"event_name":"crucible_train.checkpoint.saved","measurements":{"checkpoint_path":7}}`, `field "checkpoint_path": cannot use a number as a string`},
		{"experiment id", `{"event_name":"x","experiment_id":7}`, `field "experiment_id": cannot use a number as a string`},
		{"event id", `{"event_name":"x","event_id":7}`, "event_id must be a string"},
		{"session id", `{"event_name":"x","metadata":{"session_id":{}}}`, `field "metadata.session_id": cannot use an object as a string or a number`},
		{"status is free-form", `{"event_name":"x","metadata":{"status":5},"measurements":{"status":{"code":1}}}`, ""},
	} {
		t.Run(c.desc, func(t *testing.T) {
			_, err := Parse([]byte(c.in), testNow, testPrices)
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, c.err)
			}
		})
	}
}
