package experiment

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/loadgen"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
)

// storeBatches ingests n loadgen events into experiment id, in batches that
// arrive out of time order.
func storeBatches(t *testing.T, m *Manager, id string, seed uint64, n int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	start := time.Now().Add(-5 * time.Minute)
	for done := 0; done < n; done += 500 {
		body := loadgen.Batch(nil, rng, 500, start.Add(time.Duration((done*7919)%n)*time.Millisecond).UnixMicro())
		parts, err := event.Split(body, true)
		if err != nil {
			t.Fatal(err)
		}
		evs := make([]*event.Event, len(parts))
		for i, p := range parts {
			if evs[i], err = event.Parse(p, time.Now(), pricing.Default()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := m.Ingest(id, evs, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOfflineReadsAsTheManager: the offline commands' reader of a data
// directory answers what the running sidecar's Manager answers, for the
// analysis, the comparison and the export alike: one read path.
func TestOfflineReadsAsTheManager(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 2500 events live and offline: slow; runs without -short")
	}
	dir := t.TempDir()
	m := newManager(t, dir, &clock{time.Now()})
	create(t, m, `{"id":"a","name":"A"}`)
	create(t, m, `{"id":"b","name":"B","condition":"treatment"}`)
	storeBatches(t, m, "a", 1, 1500)
	storeBatches(t, m, "b", 2, 1000)
	ok := true
	key := func(s string) *event.ClusterKey {
		k, err := event.ParseClusterKey(s)
		if err != nil {
			t.Fatal(err)
		}
		return &k
	}
	cases := []struct {
		name string
		f    Filter
	}{
		{"all", Filter{}},
		{"successes", Filter{Success: &ok}},
		{"other condition", Filter{Condition: "none"}},
		{"clustered by session", Filter{Cluster: key("session_id")}},
		{"clustered by model, successes", Filter{Cluster: key("metadata.model"), Success: &ok}},
		{"clustered by sample, from the index", Filter{Cluster: key("sample_id")}},
	}
	opts := analysis.CompareOptions{Resamples: 200, Seed: 5}
	type answers struct{ analyze, compare, csv, jsonl string }
	read := func(t *testing.T, s interface {
		Analyze(context.Context, string, Filter) (analysis.Report, error)
		Compare(context.Context, []string, Filter, analysis.CompareOptions) (CompareReport, error)
		Export(context.Context, io.Writer, string, ExportOptions) (int64, error)
	}, f Filter) answers {
		t.Helper()
		var out answers
		rep, err := s.Analyze(t.Context(), "a", f)
		if err != nil {
			t.Fatal(err)
		}
		cmp, err := s.Compare(t.Context(), []string{"a", "b"}, f, opts)
		if err != nil {
			t.Fatal(err)
		}
		out.analyze, out.compare = jsonOf(t, rep), jsonOf(t, cmp)
		for _, format := range []string{"csv", "jsonl"} {
			var buf bytes.Buffer
			if _, err := s.Export(t.Context(), &buf, "b", ExportOptions{Format: format, Flatten: true, Filter: f}); err != nil {
				t.Fatal(err)
			}
			if format == "csv" {
				out.csv = buf.String()
			} else {
				out.jsonl = buf.String()
			}
		}
		return out
	}
	live := map[string]answers{}
	for _, c := range cases {
		live[c.name] = read(t, m, c.f)
		clustered := strings.Contains(live[c.name].analyze, `"mean_se_clustered":`) &&
			strings.Contains(live[c.name].compare, `"diff_mean_ci95_clustered":`)
		if clustered != (c.f.Cluster != nil) {
			t.Errorf("%s: clustered fields %v", c.name, clustered)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	d := NewOffline(dir)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, want := read(t, d, c.f), live[c.name]
			for _, p := range []struct{ what, got, want string }{
				{"analysis", got.analyze, want.analyze}, {"comparison", got.compare, want.compare},
				{"CSV export", got.csv, want.csv}, {"JSONL export", got.jsonl, want.jsonl},
			} {
				if p.got != p.want {
					t.Errorf("%s differs offline:\n%.400s\nfrom the Manager's:\n%.400s", p.what, p.got, p.want)
				}
			}
		})
	}
}

// TestReadsStopWithTheirContext: a read whose context is done stops and
// says why (the store looks every 1024 events, so there are more).
func TestReadsStopWithTheirContext(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 3000 events: slow; runs without -short")
	}
	dir := t.TempDir()
	m := newManager(t, dir, &clock{time.Now()})
	create(t, m, `{"id":"a","name":"A"}`)
	create(t, m, `{"id":"b","name":"B"}`)
	storeBatches(t, m, "a", 1, 2500)
	storeBatches(t, m, "b", 2, 500)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	reads := func(name string, s interface {
		Points(context.Context, string, Filter) ([]analysis.Point, error)
		Analyze(context.Context, string, Filter) (analysis.Report, error)
		Compare(context.Context, []string, Filter, analysis.CompareOptions) (CompareReport, error)
		Export(context.Context, io.Writer, string, ExportOptions) (int64, error)
	}) map[string]error {
		errs := map[string]error{}
		_, errs[name+" points"] = s.Points(ctx, "a", Filter{})
		_, errs[name+" analyze"] = s.Analyze(ctx, "a", Filter{})
		_, errs[name+" compare"] = s.Compare(ctx, []string{"a", "b"}, Filter{}, analysis.CompareOptions{})
		for _, format := range []string{"csv", "jsonl"} {
			_, errs[name+" export "+format] = s.Export(ctx, io.Discard, "a", ExportOptions{Format: format})
		}
		return errs
	}
	errs := reads("manager", m)
	_, errs["manager events"] = m.Events(ctx, "a", Filter{})
	_, errs["manager windows"] = m.Windows(ctx, "a", Filter{}, time.Minute, time.Minute)
	m.Close()
	for k, v := range reads("offline", NewOffline(dir)) {
		errs[k] = v
	}
	for name, err := range errs {
		t.Run(name, func(t *testing.T) {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v, want context.Canceled", name, err)
			}
		})
	}
}
