package collector

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest(t *testing.T) (*Metrics, *prometheus.Registry, *clock) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := New(reg, Options{StoppedSeriesTTL: 15 * time.Minute, Now: c.now})
	return m, reg, c
}

func ev(name, model string, latencyMs float64, success *bool, cost float64) *event.Event {
	e := &event.Event{EventName: name, LatencyMs: event.Some(latencyMs), CostUSD: event.Some(cost), SampleWeight: 1,
		Tokens: &event.Tokens{Prompt: event.Some(int64(10)), Completion: event.Some(int64(5)), Total: event.Some(int64(15))}}
	if model != "" {
		e.Model, e.Provider = event.Some(model), event.Some("openai")
	}
	if success != nil {
		e.Success = event.Some(*success)
	}
	return e
}

var yes, no = true, false

func TestGolden(t *testing.T) {
	m, reg, _ := newTest(t)
	m.Set(Experiment{ID: "ab", Name: "AB", Condition: "control", Status: "running", Target: 10})
	m.Observe("ab", []*event.Event{
		ev("req_llm.request.stop", "gpt-4", 150, &yes, 0.015),
		ev("req_llm.request.stop", "gpt-4", 50, &no, 0.005),
		ev("req_llm.request.exception", "gpt-4", 30, nil, 0),
	}, nil, 3)
	want := `
# HELP crucible_events_total Events stored, by outcome: success, failure, or unknown when the event does not say.
# TYPE crucible_events_total counter
crucible_events_total{condition="control",event="req_llm.request.exception",experiment="AB",experiment_id="ab",outcome="failure"} 0
crucible_events_total{condition="control",event="req_llm.request.exception",experiment="AB",experiment_id="ab",outcome="success"} 0
crucible_events_total{condition="control",event="req_llm.request.exception",experiment="AB",experiment_id="ab",outcome="unknown"} 1
crucible_events_total{condition="control",event="req_llm.request.stop",experiment="AB",experiment_id="ab",outcome="failure"} 1
crucible_events_total{condition="control",event="req_llm.request.stop",experiment="AB",experiment_id="ab",outcome="success"} 1
crucible_events_total{condition="control",event="req_llm.request.stop",experiment="AB",experiment_id="ab",outcome="unknown"} 0
# HELP crucible_cost_usd_total Cost of the events in USD.
# TYPE crucible_cost_usd_total counter
crucible_cost_usd_total{condition="control",experiment="AB",experiment_id="ab",model="gpt-4",provider="openai"} 0.02
# HELP crucible_tokens_total Tokens of the events, by type: prompt or completion.
# TYPE crucible_tokens_total counter
crucible_tokens_total{condition="control",experiment="AB",experiment_id="ab",model="gpt-4",provider="openai",type="completion"} 15
crucible_tokens_total{condition="control",experiment="AB",experiment_id="ab",model="gpt-4",provider="openai",type="prompt"} 30
# HELP crucible_experiment_info Always 1: the name and condition of each experiment.
# TYPE crucible_experiment_info gauge
crucible_experiment_info{condition="control",experiment="AB",experiment_id="ab"} 1
# HELP crucible_experiment_status 1 for the experiment's current status, 0 for the others.
# TYPE crucible_experiment_status gauge
crucible_experiment_status{experiment_id="ab",status="archived"} 0
crucible_experiment_status{experiment_id="ab",status="paused"} 0
crucible_experiment_status{experiment_id="ab",status="running"} 1
crucible_experiment_status{experiment_id="ab",status="stopped"} 0
# HELP crucible_experiment_events Events stored for the experiment.
# TYPE crucible_experiment_events gauge
crucible_experiment_events{experiment_id="ab"} 3
# HELP crucible_experiment_target_events The experiment's sample_size; absent when it has none.
# TYPE crucible_experiment_target_events gauge
crucible_experiment_target_events{experiment_id="ab"} 10
# HELP crucible_stream_success_ratio Successful over judged events since the start or the last stream reset.
# TYPE crucible_stream_success_ratio gauge
crucible_stream_success_ratio{condition="control",experiment="AB",experiment_id="ab"} 0.5
# HELP crucible_stream_latency_min_seconds Smallest latency since the start or the last stream reset.
# TYPE crucible_stream_latency_min_seconds gauge
crucible_stream_latency_min_seconds{condition="control",experiment="AB",experiment_id="ab"} 0.03
# HELP crucible_stream_latency_max_seconds Largest latency since the start or the last stream reset.
# TYPE crucible_stream_latency_max_seconds gauge
crucible_stream_latency_max_seconds{condition="control",experiment="AB",experiment_id="ab"} 0.15
`
	names := []string{"crucible_events_total", "crucible_cost_usd_total", "crucible_tokens_total", "crucible_experiment_info",
		"crucible_experiment_status", "crucible_experiment_events", "crucible_experiment_target_events",
		"crucible_stream_success_ratio", "crucible_stream_latency_min_seconds", "crucible_stream_latency_max_seconds"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	// The histogram keeps classic buckets beside the native ones.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "crucible_latency_seconds" {
			continue
		}
		found = true
		h := mf.GetMetric()[0].GetHistogram()
		if len(h.GetBucket()) != len(LatencyBuckets) || h.GetSchema() == 0 && len(h.GetPositiveSpan()) == 0 {
			t.Fatalf("want classic and native buckets, got %d classic, schema %d", len(h.GetBucket()), h.GetSchema())
		}
	}
	if !found {
		t.Fatal("no crucible_latency_seconds histogram")
	}
}

func TestLifecycleOwnsSeries(t *testing.T) {
	m, reg, c := newTest(t)
	m.Set(Experiment{ID: "e", Name: "E", Condition: "c", Status: "running"})
	m.Observe("e", []*event.Event{ev("x", "gpt-4", 1, &yes, 1)}, nil, 1)
	count := func() int {
		n, err := testutil.GatherAndCount(reg, "crucible_events_total", "crucible_experiment_info", "crucible_latency_seconds")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	m.Set(Experiment{ID: "e", Name: "E", Condition: "c", Status: "paused", Stored: 1})
	c.t = c.t.Add(time.Hour)
	if m.Expire(); count() != before {
		t.Fatal("pause must keep the series")
	}
	m.Set(Experiment{ID: "e", Name: "E", Condition: "c", Status: "stopped", Stored: 1})
	c.t = c.t.Add(14 * time.Minute)
	if gone := m.Expire(); len(gone) != 0 || count() != before {
		t.Fatal("stopped series must stay for the TTL")
	}
	c.t = c.t.Add(2 * time.Minute)
	if gone := m.Expire(); len(gone) != 1 || count() != 0 {
		t.Fatalf("after the TTL: removed %v, %d series left", gone, count())
	}
	m.Set(Experiment{ID: "d", Name: "D", Condition: "c", Status: "running"})
	m.Observe("d", []*event.Event{ev("x", "", 1, nil, 0)}, nil, 1)
	m.Remove("d")
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Fatalf("%d series left after Remove (%v)", n, err)
	}
}

// The series follow storage's label-cap decision, made once per event:
// what storage put under "other" is counted there, and nothing else is,
// however many values there are.
func TestSeriesFollowStorageOverflow(t *testing.T) {
	m, reg, _ := newTest(t)
	m.Set(Experiment{ID: "e", Name: "E", Condition: "c", Status: "running"})
	var evs []*event.Event
	var overflow []event.LabelOverflow
	for i := range 80 {
		evs = append(evs, ev("x", fmt.Sprintf("model-%d", i), 1, &yes, 0))
		var o event.LabelOverflow
		if i >= 60 {
			o = event.OverflowModel
		}
		overflow = append(overflow, o)
	}
	m.Observe("e", evs, overflow, 80)
	m.Observe("e", evs, overflow, 160)
	models := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "crucible_latency_seconds" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "model" {
					models[l.GetValue()] += float64(mm.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	if len(models) != 61 || models["model-0"] != 2 || models["model-59"] != 2 || models[event.OverflowValue] != 40 {
		t.Fatalf("%d models (%v), want model-0 … model-59 and other", len(models), models)
	}
	if got := testutil.ToFloat64(m.overflow.WithLabelValues("e", "model")); got != 40 {
		t.Fatalf("overflow counter %v, want 40", got)
	}
}

func TestStreamResetLeavesCounters(t *testing.T) {
	m, _, c := newTest(t)
	m.Set(Experiment{ID: "e", Name: "E", Condition: "c", Status: "running"})
	m.Observe("e", []*event.Event{ev("x", "", 100, &yes, 1), ev("x", "", 300, &no, 3)}, nil, 2)
	s, _ := m.Stream("e")
	if s.Events != 2 || s.Latency.Mean != 200 || math.Abs(s.Latency.StdDev()-141.4213562373095) > 1e-9 || s.SuccessRate() != 0.5 {
		t.Fatalf("stream %+v", s)
	}
	c.t = c.t.Add(time.Minute)
	m.ResetStream("e", c.t)
	m.Observe("e", []*event.Event{ev("y", "", 7, nil, 0)}, nil, 3)
	s, _ = m.Stream("e")
	if s.Events != 1 || s.Latency.Mean != 7 || s.Judged != 0 || !s.Since.Equal(c.t) || s.ByName["y"] != 1 || s.ByName["x"] != 0 {
		t.Fatalf("after reset %+v", s)
	}
	if got := testutil.ToFloat64(m.events.WithLabelValues("e", "E", "c", "x", "success")); got != 1 {
		t.Fatalf("reset must leave counters: %v", got)
	}
}

func TestStorage(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "experiments", "a"), 0o755)
	os.WriteFile(filepath.Join(dir, "experiments", "a", "events"), make([]byte, 1000), 0o644)
	os.WriteFile(filepath.Join(dir, "experiment.json"), make([]byte, 24), 0o644)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewStorage(dir))
	want := `# HELP crucible_storage_used_bytes Bytes of the files under --storage.path.
# TYPE crucible_storage_used_bytes gauge
crucible_storage_used_bytes 1024
# HELP crucible_storage_scrape_errors_total Scrapes that could not read the size or free space of --storage.path.
# TYPE crucible_storage_scrape_errors_total counter
crucible_storage_scrape_errors_total 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "crucible_storage_used_bytes", "crucible_storage_scrape_errors_total"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	if avail, size := got["crucible_storage_filesystem_avail_bytes"], got["crucible_storage_filesystem_size_bytes"]; !(avail > 0 && size >= avail) {
		t.Fatalf("filesystem: avail %v, size %v", avail, size)
	}

	gone := NewStorage(filepath.Join(dir, "missing"))
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(gone)
	if n, err := testutil.GatherAndCount(reg, "crucible_storage_filesystem_avail_bytes"); err != nil || n != 0 {
		t.Fatalf("missing directory: %d series, %v", n, err)
	}
	if v := testutil.ToFloat64(gone.errors); v != 1 {
		t.Fatalf("errors counted: %v, want 1", v)
	}
}

// TestScores: each score is observed into crucible_score under its name,
// or under "other" when storage says the name is past the cap; the series
// go with the experiment.
func TestScores(t *testing.T) {
	m, reg, _ := newTest(t)
	m.Set(Experiment{ID: "e", Name: "E", Condition: "c", Status: "running"})
	scored := func(scores ...event.Score) *event.Event {
		e := ev("eval.sample", "gpt-4", 1, &yes, 0)
		e.Scores = scores
		return e
	}
	evs := []*event.Event{
		scored(event.Score{Name: "exact_match", Value: 1}, event.Score{Name: "judge", Value: 0.5}),
		scored(event.Score{Name: "exact_match", Value: 0}, event.Score{Name: "judge", Value: 0.75}, event.Score{Name: "late", Value: 3}),
		scored(),
	}
	m.Observe("e", evs, []event.LabelOverflow{0, event.OverflowScore(2) | event.OverflowModel, 0}, 3)
	const want = `
# HELP crucible_score Quality scores of the events, by score name.
# TYPE crucible_score summary
crucible_score_sum{condition="c",experiment="E",experiment_id="e",score="exact_match"} 1
crucible_score_count{condition="c",experiment="E",experiment_id="e",score="exact_match"} 2
crucible_score_sum{condition="c",experiment="E",experiment_id="e",score="judge"} 1.25
crucible_score_count{condition="c",experiment="E",experiment_id="e",score="judge"} 2
crucible_score_sum{condition="c",experiment="E",experiment_id="e",score="other"} 3
crucible_score_count{condition="c",experiment="E",experiment_id="e",score="other"} 1
# HELP crucible_label_overflow_events_total Events whose model, provider, event name or a score name was counted as "other" because the experiment reached --metrics.max-label-values.
# TYPE crucible_label_overflow_events_total counter
crucible_label_overflow_events_total{experiment_id="e",label="model"} 1
crucible_label_overflow_events_total{experiment_id="e",label="score"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "crucible_score", "crucible_label_overflow_events_total"); err != nil {
		t.Fatal(err)
	}
	m.Remove("e")
	if n := testutil.CollectAndCount(m.score); n != 0 {
		t.Fatalf("%d score series after Remove", n)
	}
}
