package experiment

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/evalstore"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// newManager opens a Manager of dir on clock c; with sets more options.
func newManager(t *testing.T, dir string, c *clock, with ...func(*Options)) *Manager {
	t.Helper()
	o := Options{
		Dir: dir, Now: c.now, Logger: slog.New(slog.DiscardHandler),
		Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour,
			Registerer: prometheus.NewRegistry()},
	}
	for _, f := range with {
		f(&o)
	}
	m := NewManager(o)
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func create(t *testing.T, m *Manager, body string) Record {
	t.Helper()
	req, err := DecodeCreateRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := m.Create(req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func events(t *testing.T, n int, extra string) []*event.Event {
	t.Helper()
	out := make([]*event.Event, n)
	for i := range out {
		e, err := event.Parse([]byte(fmt.Sprintf(`{"event_name":"req_llm.request.stop","latency_ms":%d%s}`, i+1, extra)), time.Now(), pricing.Default())
		if err != nil {
			t.Fatal(err)
		}
		out[i] = e
	}
	return out
}

func TestCreateDefaultsAndIdempotency(t *testing.T) {
	m := newManager(t, t.TempDir(), &clock{time.Now()})
	r := create(t, m, `{"name":"A"}`)
	if len(r.ID) != 16 || r.Condition != "default" || r.SamplingRate != 1 || !r.MetricsConfig.Latency ||
		r.Status != Running || string(r.Metadata) != "{}" || r.Tags == nil {
		t.Fatalf("defaults not applied: %+v", r)
	}
	body := `{"id":"ab-1","name":"A","tags":["x"],"metadata":{"b":1, "a":2}}`
	create(t, m, body)
	req, _ := DecodeCreateRequest([]byte(`{"id":"ab-1","name":"A","tags":["x"],"metadata":{"a":2,"b":1}}`))
	if _, created, err := m.Create(req); err != nil || created {
		t.Fatalf("same fields again: created=%v err=%v, want existing record", created, err)
	}
	req, _ = DecodeCreateRequest([]byte(`{"id":"ab-1","name":"B"}`))
	var se *StateError
	if _, _, err := m.Create(req); !errors.As(err, &se) || se.Code != "exists" || !errors.Is(err, ErrConflict) {
		t.Fatalf("different fields: err = %v, want conflict", err)
	}
}

func TestCreateInvalid(t *testing.T) {
	m := newManager(t, t.TempDir(), &clock{time.Now()})
	for _, c := range []struct{ name, body string }{
		{"no name", `{}`}, {"empty name", `{"name":""}`}, {"id with a leading dash", `{"name":"a","id":"-bad"}`},
		{"id with a space", `{"name":"a","id":"has space"}`}, {"sampling rate 0", `{"name":"a","sampling_rate":0}`},
		{"sampling rate above 1", `{"name":"a","sampling_rate":1.5}`}, {"sample size 0", `{"name":"a","sample_size":0}`},
		{"stop without a sample size", `{"name":"a","stop_at_sample_size":true}`}, {"metadata not an object", `{"name":"a","metadata":[1]}`},
		{"unknown field", `{"name":"a","bogus":1}`}, {"name too long", `{"name":"` + strings.Repeat("x", 257) + `"}`},
		{"not an object", `[]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := DecodeCreateRequest([]byte(c.body))
			if err == nil {
				_, _, err = m.Create(req)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: err = %v, want ErrInvalid", c.body, err)
			}
		})
	}
	if l, err := m.List("", ""); err != nil || len(l) != 0 {
		t.Fatalf("invalid creates stored %d experiments (%v)", len(l), err)
	}
}

func TestLifecycle(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	m := newManager(t, dir, c)
	create(t, m, `{"id":"e","name":"E"}`)
	steps := []struct {
		name    string
		op      func(string) (Record, error)
		advance time.Duration
		code    string
		status  Status
	}{
		{"resume running", m.Resume, 0, "not_paused", Running},
		{"pause", m.Pause, 10 * time.Second, "", Paused},
		{"pause paused", m.Pause, 0, "already_paused", Paused},
		{"resume", m.Resume, 5 * time.Second, "", Running},
		{"pause again", m.Pause, 10 * time.Second, "", Paused},
		{"stop", m.Stop, 20 * time.Second, "", Stopped},
		{"stop stopped", m.Stop, time.Second, "", Stopped},
		{"pause stopped", m.Pause, 0, "not_running", Stopped},
		{"resume stopped", m.Resume, 0, "not_paused", Stopped},
	}
	for i, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			c.t = c.t.Add(s.advance)
			r, err := s.op("e")
			var se *StateError
			if s.code != "" {
				if !errors.As(err, &se) || se.Code != s.code {
					t.Fatalf("step %d: err = %v, want %s", i, err, s.code)
				}
				return
			}
			if err != nil || r.Status != s.status {
				t.Fatalf("step %d: %v %v", i, r.Status, err)
			}
		})
	}
	r, _ := m.Get("e")
	// started at 0; paused 10s..15s and 25s..45s; stopped at 45s.
	if r.PauseCount != 2 || r.PausedSeconds != 25 || r.ActiveSeconds != 20 || r.StoppedAt == nil {
		t.Fatalf("bookkeeping: %+v", r)
	}
	m.Close()
	m2 := newManager(t, dir, c)
	r2, err := m2.Get("e")
	if err != nil || r2.Status != Stopped || r2.PausedSeconds != 25 {
		t.Fatalf("after reopen: %+v %v", r2, err)
	}
	if _, err := m2.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func TestIngestRouting(t *testing.T) {
	m := newManager(t, t.TempDir(), &clock{time.Now()})
	create(t, m, `{"id":"a","name":"A","condition":"control"}`)
	create(t, m, `{"id":"b","name":"B","condition":"treatment"}`)
	create(t, m, `{"id":"p","name":"P"}`)
	m.Pause("p")

	// No path, no experiment_id, several running: rejected, naming them,
	// so that A/B arms never swallow each other's events.
	res, err := m.Ingest("", events(t, 3, ""), time.Now())
	if err != nil || res.Accepted != 0 || len(res.Rejected) != 3 || !strings.Contains(res.Rejected[0].Error, "several experiments are running (a, b)") {
		t.Fatalf("unrouted: %+v %v", res, err)
	}
	// With BroadcastUnrouted, every running experiment gets it.
	m.opts.BroadcastUnrouted = true
	res, err = m.Ingest("", events(t, 3, ""), time.Now())
	if err != nil || res.Accepted != 6 {
		t.Fatalf("fan-out: %+v %v", res, err)
	}
	m.opts.BroadcastUnrouted = false
	// The event's experiment_id.
	evs := events(t, 3, `,"experiment_id":"b"`)
	evs[2].ExperimentID = "missing"
	res, _ = m.Ingest("", evs, time.Now())
	if res.Accepted != 2 || len(res.Rejected) != 1 || res.Rejected[0].Index != 2 {
		t.Fatalf("by experiment_id: %+v", res)
	}
	// The path wins over the event's experiment_id.
	res, _ = m.Ingest("a", events(t, 2, `,"experiment_id":"b"`), time.Now())
	if res.Accepted != 2 {
		t.Fatalf("by path: %+v", res)
	}
	ra, _ := m.Get("a")
	rb, _ := m.Get("b")
	if ra.EventsStored != 5 || rb.EventsStored != 5 {
		t.Fatalf("stored a=%d b=%d, want 5 and 5", ra.EventsStored, rb.EventsStored)
	}
	// Paused drops, stopped rejects (409 by path).
	res, _ = m.Ingest("p", events(t, 4, ""), time.Now())
	if res.DroppedPaused != 4 || res.Accepted != 0 {
		t.Fatalf("paused: %+v", res)
	}
	m.Stop("a")
	if _, err := m.Ingest("a", events(t, 1, ""), time.Now()); !errors.Is(err, ErrConflict) {
		t.Fatalf("stopped by path: %v", err)
	}
	res, _ = m.Ingest("", events(t, 1, `,"experiment_id":"a"`), time.Now())
	if len(res.Rejected) != 1 || !strings.Contains(res.Rejected[0].Error, "stopped") {
		t.Fatalf("stopped by id: %+v", res)
	}
	if _, err := m.Ingest("zzz", events(t, 1, ""), time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown path: %v", err)
	}
	// The stored event carries the experiment's fields.
	got, _ := m.Events(t.Context(), "b", Filter{})
	var e event.Event
	json.Unmarshal(got[0], &e)
	if e.ExperimentID != "b" || e.ExperimentName != "B" || e.Condition != "treatment" || e.SampleWeight != 1 {
		t.Fatalf("stored event: %+v", e)
	}
}

func TestSamplingAndSampleSize(t *testing.T) {
	if testing.Short() {
		t.Skip("samples 4000 events: slow; runs without -short")
	}
	m := newManager(t, t.TempDir(), &clock{time.Now()})
	create(t, m, `{"id":"s","name":"S","sampling_rate":0.25}`)
	res, _ := m.Ingest("s", events(t, 4000, ""), time.Now())
	if res.Accepted+res.DroppedSampled != 4000 || res.Accepted < 800 || res.Accepted > 1200 {
		t.Fatalf("sampling 0.25 of 4000: %+v", res)
	}
	got, _ := m.Events(t.Context(), "s", Filter{Limit: 1})
	var e event.Event
	json.Unmarshal(got[0], &e)
	if e.SampleWeight != 4 {
		t.Fatalf("sample_weight %v, want 4", e.SampleWeight)
	}

	create(t, m, `{"id":"n","name":"N","sample_size":10,"stop_at_sample_size":true}`)
	res, _ = m.Ingest("n", events(t, 7, ""), time.Now())
	res2, _ := m.Ingest("n", events(t, 7, ""), time.Now())
	r, _ := m.Get("n")
	if res.Accepted != 7 || res2.Accepted != 3 || len(res2.Rejected) != 4 || r.Status != Stopped || r.EventsStored != 10 {
		t.Fatalf("sample size: %+v %+v %+v", res, res2, r)
	}
}

func TestEventsFilter(t *testing.T) {
	m := newManager(t, t.TempDir(), &clock{time.Now()})
	create(t, m, `{"id":"f","name":"F"}`)
	base := time.Now().Add(-time.Minute).UnixMicro()
	var evs []*event.Event
	for i := range 10 {
		model := []string{"gpt-4", "claude-3-opus"}[i%2]
		raw := fmt.Sprintf(`{"event_name":"req_llm.request.%s","timestamp":%d,"success":%v,"metadata":{"model":%q}}`,
			[]string{"stop", "exception"}[i/8], base+int64(9-i)*1000, i%3 != 0, model)
		e, err := event.Parse([]byte(raw), time.Now(), pricing.Default())
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	if _, err := m.Ingest("f", evs, time.Now()); err != nil {
		t.Fatal(err)
	}
	yes, from, to := true, base+2000, base+5000
	cases := []struct {
		name string
		f    Filter
		n    int
	}{
		{"all", Filter{}, 10},
		{"event", Filter{Event: "req_llm.request.exception"}, 2},
		{"model", Filter{Model: "gpt-4"}, 5},
		{"success", Filter{Success: &yes}, 6},
		{"range inclusive", Filter{From: &from, To: &to}, 4},
		{"last_n", Filter{LastN: 3}, 3},
		{"limit", Filter{Limit: 4}, 4},
		{"condition", Filter{Condition: "other"}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := m.Events(t.Context(), "f", c.f)
			if err != nil || len(got) != c.n {
				t.Fatalf("got %d events (%v), want %d", len(got), err, c.n)
			}
			prev := int64(-1)
			for _, raw := range got {
				var e event.Event
				json.Unmarshal(raw, &e)
				if e.Timestamp < prev {
					t.Fatal("not ascending by timestamp")
				}
				prev = e.Timestamp
			}
			if c.name == "last_n" {
				var e event.Event
				json.Unmarshal(got[2], &e)
				if e.Timestamp != base+9000 {
					t.Fatalf("last_n must keep the newest: %d", e.Timestamp)
				}
			}
		})
	}
}

// TestMetricsRebuiltAfterRestart: counters and histograms come back from
// the event log, so no series goes backwards across a restart.
func TestMetricsRebuiltAfterRestart(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Now()}
	open := func() (*Manager, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		m := NewManager(Options{
			Dir: dir, Now: c.now, Logger: slog.New(slog.DiscardHandler),
			Metrics: collector.New(reg, collector.Options{StoppedSeriesTTL: time.Hour}),
			Store:   tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: reg},
		})
		if err := m.Open(); err != nil {
			t.Fatal(err)
		}
		return m, reg
	}
	m, reg := open()
	create(t, m, `{"id":"r","name":"R","sample_size":50}`)
	if _, err := m.Ingest("r", events(t, 30, `,"metadata":{"model":"gpt-4","tokens":{"prompt":10,"completion":20}},"success":true`), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ingest("r", events(t, 12, `,"success":false`), time.Now()); err != nil {
		t.Fatal(err)
	}
	names := []string{"crucible_events_total", "crucible_latency_seconds", "crucible_cost_usd_total", "crucible_tokens_total",
		"crucible_experiment_events", "crucible_experiment_target_events", "crucible_experiment_status", "crucible_stream_latency_mean_seconds"}
	before := gatherText(t, reg, names)
	if !strings.Contains(before, `crucible_experiment_events{experiment_id="r"} 42`) {
		t.Fatalf("before restart:\n%s", before)
	}
	streamBefore, err := m.Stream("r")
	if err != nil || streamBefore.Events != 42 {
		t.Fatalf("stream before restart: %+v %v", streamBefore, err)
	}
	m.Close()

	m2, reg2 := open()
	defer m2.Close()
	if after := gatherText(t, reg2, names); after != before {
		t.Fatalf("metrics changed across a restart:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	streamAfter, err := m2.Stream("r")
	if err != nil || streamAfter.Events != streamBefore.Events || streamAfter.Latency.Mean != streamBefore.Latency.Mean {
		t.Fatalf("stream %+v, before %+v", streamAfter, streamBefore)
	}
}

func gatherText(t *testing.T, g prometheus.Gatherer, names []string) string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if slices.Contains(names, mf.GetName()) {
			expfmt.MetricFamilyToText(&b, mf)
		}
	}
	return b.String()
}

// TestStreamAgreesWithStoredEvents: the streaming statistics equal exact
// ones computed from the stored events to 1e-9 relative.
func TestStreamAgreesWithStoredEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("ingests and reads back 5000 events: slow; runs without -short")
	}
	reg := prometheus.NewRegistry()
	m := NewManager(Options{
		Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Metrics: collector.New(reg, collector.Options{}),
		Store:   tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: reg},
	})
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	create(t, m, `{"id":"s","name":"S"}`)
	var lines []*event.Event
	for i := range 5000 {
		raw := fmt.Sprintf(`{"event_name":"x","latency_ms":%g,"cost_usd":%g,"success":%v}`,
			1e6+float64(i%97)*0.37, 1e-6*float64(i%13), i%7 != 0)
		if i%11 == 0 {
			raw = `{"event_name":"y"}` // no latency, cost or outcome
		}
		e, err := event.Parse([]byte(raw), time.Now(), pricing.Default())
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, e)
	}
	if _, err := m.Ingest("s", lines, time.Now()); err != nil {
		t.Fatal(err)
	}
	stored, _ := m.Events(t.Context(), "s", Filter{})
	var lat, cost []float64
	judged, ok := 0, 0
	for _, raw := range stored {
		var e event.Event
		json.Unmarshal(raw, &e)
		if e.LatencyMs.Valid {
			lat = append(lat, e.LatencyMs.V)
		}
		if e.CostUSD.Valid {
			cost = append(cost, e.CostUSD.V)
		}
		if e.Success.Valid {
			judged++
			if e.Success.V {
				ok++
			}
		}
	}
	s, err := m.Stream("s")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		w    collector.Welford
		xs   []float64
	}{{"latency", s.Latency, lat}, {"cost", s.Cost, cost}} {
		t.Run(c.name, func(t *testing.T) {
			mean, sd, lo, hi := exactMoments(c.xs)
			if c.w.N != int64(len(c.xs)) || relErr(c.w.Mean, mean) > 1e-9 || relErr(c.w.StdDev(), sd) > 1e-9 || c.w.Min != lo || c.w.Max != hi {
				t.Errorf("%s: stream n=%d mean=%v sd=%v min=%v max=%v; exact n=%d mean=%v sd=%v min=%v max=%v",
					c.name, c.w.N, c.w.Mean, c.w.StdDev(), c.w.Min, c.w.Max, len(c.xs), mean, sd, lo, hi)
			}
		})
	}
	if s.Judged != int64(judged) || s.Successful != int64(ok) || s.Events != int64(len(stored)) {
		t.Errorf("reliability: %+v, exact judged %d successful %d of %d", s, judged, ok, len(stored))
	}
}

// exactMoments computes mean, sample standard deviation, min and max in two
// passes, as the analysis does.
func exactMoments(xs []float64) (mean, sd, lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		mean += x
		lo, hi = min(lo, x), max(hi, x)
	}
	mean /= float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(xs)-1)), lo, hi
}

func relErr(a, b float64) float64 {
	if a == b {
		return 0
	}
	return math.Abs(a-b) / math.Max(math.Abs(a), math.Abs(b))
}

// TestStoppedSeriesAfterRestart: a restart brings a stopped experiment's
// series back only for what is left of their TTL.
func TestStoppedSeriesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Now()}
	open := func() (*Manager, *prometheus.Registry, *collector.Metrics) {
		reg := prometheus.NewRegistry()
		metrics := collector.New(reg, collector.Options{StoppedSeriesTTL: 15 * time.Minute, Now: c.now})
		m := NewManager(Options{
			Dir: dir, Now: c.now, Logger: slog.New(slog.DiscardHandler), Metrics: metrics,
			Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: reg},
		})
		if err := m.Open(); err != nil {
			t.Fatal(err)
		}
		return m, reg, metrics
	}
	m, _, _ := open()
	create(t, m, `{"id":"old","name":"Old"}`)
	m.Ingest("old", events(t, 3, ""), time.Now())
	m.Stop("old")
	m.Close()

	c.t = c.t.Add(10 * time.Minute)
	m, reg, metrics := open()
	if n, err := testutil.GatherAndCount(reg, "crucible_events_total"); err != nil || n == 0 {
		t.Fatalf("within the TTL the series must be back: %d (%v)", n, err)
	}
	c.t = c.t.Add(6 * time.Minute)
	if gone := metrics.Expire(); len(gone) != 1 {
		t.Fatalf("the TTL counts from when it stopped, not from the restart: expired %v", gone)
	}
	m.Close()
	m, reg, _ = open()
	defer m.Close()
	if n, err := testutil.GatherAndCount(reg, "crucible_events_total", "crucible_experiment_info"); err != nil || n != 0 {
		t.Fatalf("past the TTL a restart must not bring the series back: %d (%v)", n, err)
	}
	if r, err := m.Get("old"); err != nil || r.EventsStored != 3 {
		t.Fatalf("the experiment itself stays: %+v %v", r, err)
	}
}

// TestOrderedReadMergesRuns: events stored out of order come back in
// (timestamp, event_id) order, each once, also when sorted in many runs.
func TestOrderedReadMergesRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("sorts 2500 events three times, down to runs of one: slow; runs without -short")
	}
	m := newManager(t, t.TempDir(), &clock{time.Now()})
	create(t, m, `{"id":"o","name":"O"}`)
	base := time.Now().Add(-2 * time.Minute).UnixMicro()
	var evs []*event.Event
	for i := range 2500 {
		ts := base + int64((i*7919)%1000)*1000 // many share a timestamp
		e, err := event.Parse([]byte(fmt.Sprintf(`{"event_name":"x","event_id":"id-%05d","timestamp":%d,"latency_ms":%d}`, (i*31)%2500, ts, i)), time.Now(), pricing.Default())
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	for i := 0; i < len(evs); i += 100 {
		if _, err := m.Ingest("o", evs[i:i+100], time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, runSize := range []int{RunSize, 300, 1} {
		t.Run(fmt.Sprintf("run size %d", runSize), func(t *testing.T) {
			o, err := m.ordered("o")
			if err != nil {
				t.Fatal(err)
			}
			o.runSize = runSize
			var got []string
			var prevTS int64
			prevID := ""
			firsts := 0
			err = o.Read(t.Context(), readSpec{
				// Each event's annotation must reach it through the sort.
				Annotate: func(e *event.Event) ([]byte, error) { firsts++; return []byte("note " + e.EventID), nil },
				Visit: func(e *event.Event, note []byte) error {
					if string(note) != "note "+e.EventID {
						return fmt.Errorf("%s arrived with the annotation %q", e.EventID, note)
					}
					if e.Timestamp < prevTS || (e.Timestamp == prevTS && e.EventID <= prevID) {
						return fmt.Errorf("out of order at %s", e.EventID)
					}
					prevTS, prevID = e.Timestamp, e.EventID
					got = append(got, e.EventID)
					return nil
				},
			})
			if err != nil || len(got) != 2500 || firsts != 2500 {
				t.Fatalf("run size %d: %d events, %d first calls, %v", runSize, len(got), firsts, err)
			}
		})
	}
	tmp, _ := os.ReadDir(m.opts.Dir)
	for _, e := range tmp {
		if n := e.Name(); n != experimentsDir && n != lockFile && n != evalstore.File {
			t.Fatalf("sort run left behind: %s", n)
		}
	}
}

// failingWriter fails once it has taken n bytes.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return 0, errors.New("client went away")
	}
	w.n -= len(p)
	return len(p), nil
}

// TestExportStopsWhenTheWriterFails: a CSV export to a client that goes
// away mid-way ends with the writer's error, in every format, also while
// rows are being formatted on their own goroutine.
func TestExportStopsWhenTheWriterFails(t *testing.T) {
	if testing.Short() {
		t.Skip("six exports of 5000 events: slow; runs without -short")
	}
	m := newManager(t, t.TempDir(), &clock{time.Now()})
	create(t, m, `{"id":"f","name":"F"}`)
	var evs []*event.Event
	for i := range 5000 {
		e, err := event.Parse([]byte(fmt.Sprintf(`{"event_name":"x","latency_ms":%d,"metadata":{"k%d":"v","n":%d}}`, i, i%7, i)), time.Now(), pricing.Default())
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	if _, err := m.Ingest("f", evs, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"csv", "jsonl", "json"} {
		for _, limit := range []int{0, 100_000} {
			t.Run(fmt.Sprintf("%s, failing after %d bytes", format, limit), func(t *testing.T) {
				o, err := m.ordered("f")
				if err != nil {
					t.Fatal(err)
				}
				o.runSize = 700
				n, err := o.export(t.Context(), &failingWriter{n: limit}, ExportOptions{Format: format, Flatten: true})
				if err == nil || !strings.Contains(err.Error(), "client went away") {
					t.Errorf("%s, failing after %d bytes: %d events, error %v", format, limit, n, err)
				}
			})
		}
	}
	var sink strings.Builder
	if n, err := m.Export(t.Context(), &sink, "f", ExportOptions{Format: "csv", Flatten: true}); err != nil || n != 5000 {
		t.Fatalf("export after the failures: %d, %v", n, err)
	}
	header := strings.SplitN(sink.String(), "\n", 2)[0]
	for i := range 7 {
		if !strings.Contains(header, fmt.Sprintf("metadata_k%d", i)) {
			t.Errorf("header lacks metadata_k%d: %s", i, header)
		}
	}
}

// ValidID is IDPattern, without the regular expression.
func TestValidIDIsIDPattern(t *testing.T) {
	ids := []string{"", "a", "A-1", "a.b_c-d", "-a", ".a", "_a", "a b", "a/b", "é", strings.Repeat("a", 64), strings.Repeat("a", 65), "a\n", "0", "a-"}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "aZ09._-/ \x00é"
	for range 5000 {
		b := make([]byte, rng.IntN(70))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		ids = append(ids, string(b))
	}
	for _, id := range ids {
		if got, want := ValidID(id), IDPattern.MatchString(id); got != want {
			t.Fatalf("ValidID(%q) = %v, IDPattern says %v", id, got, want)
		}
	}
}
