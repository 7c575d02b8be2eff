package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// evalRun is one arm of an evaluation as NDJSON: samples q-00 … q-39, each
// answered once, with a latency, a success and two scores. The candidate
// (arm 1) is faster, as successful (it fails other samples) and worse at
// exact_match (50% against 80%), and costs about the same; both arms also answer a sample of their
// own, and the baseline has an event without a sample.
func evalRun(arm int) string {
	base := time.Now().Add(-time.Minute).UnixMicro()
	var b strings.Builder
	line := func(i int, sample string, latency float64, success, exact bool, judge float64) {
		fmt.Fprintf(&b, `{"event_name":"eval.sample","timestamp":%d,"latency_ms":%v,"cost_usd":%v,"success":%v,"scores":{"exact_match":%v,"judge.helpfulness":%v},"metadata":{"model":"gpt-4o"%s}}`+"\n",
			base+int64(i)*1000, latency, 0.001*float64(1+(i+arm)%3), success, exact, judge, sample)
	}
	for i := range 40 {
		id := fmt.Sprintf(`,"sample_id":"q-%02d"`, i)
		if arm == 0 {
			line(i, id, float64(100+i%20), i%8 != 0, i%5 != 0, 0.5+float64(i%5)/10)
		} else {
			line(i, id, float64(90+i%20+i%3), i%8 != 1, i%2 == 0, 0.6+float64(i%4)/10)
		}
	}
	line(40, fmt.Sprintf(`,"sample_id":"only-%d"`, arm), 100, true, true, 1)
	if arm == 0 {
		line(41, "", 100, true, true, 1)
	}
	return b.String()
}

// storeRuns stores, in process, the NDJSON events of each experiment in a
// fresh data directory.
func storeRuns(t *testing.T, runs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	m := experiment.NewManager(experiment.Options{
		Dir: dir, Logger: slog.New(slog.DiscardHandler),
		Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: prometheus.NewRegistry()},
	})
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for id, lines := range runs {
		if _, _, err := m.Create(experiment.CreateRequest{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
		var evs []*event.Event
		for _, line := range strings.Split(strings.TrimSpace(lines), "\n") {
			e, err := event.Parse([]byte(line), now, pricing.Default())
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			evs = append(evs, e)
		}
		if res, err := m.Ingest(id, evs, now); err != nil || res.Accepted != len(evs) {
			t.Fatalf("ingest %s: %+v %v", id, res, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestComparePairsOffline: compare --pairs prints the pairs the analysis
// lists, as JSON or a table, and refuses what it cannot list.
func TestComparePairsOffline(t *testing.T) {
	dir := storeRuns(t, map[string]string{"base": evalRun(0), "cand": evalRun(1)})
	cf := compareFlags{storagePath: dir, format: "json", experiments: []string{"base", "cand"}, pairs: "score:exact_match", limit: 5}
	var out bytes.Buffer
	if code := runCompare(cf, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	want, err := experiment.NewOffline(dir).Pairs(t.Context(), cf.experiments, experiment.Filter{}, cf.pairs, 5)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.Marshal(want)
	if got := canonical(t, out.Bytes()); got != canonical(t, wantJSON) || len(want.Pairs) != 5 || want.Improved+want.Regressed+want.Ties != 40 {
		t.Errorf("compare --pairs --format=json:\n%s\nwant\n%s", got, wantJSON)
	}
	out.Reset()
	cf.format = "table"
	if code := runCompare(cf, &out); code != 0 || !strings.Contains(out.String(), "cand − base, score:exact_match, per sample_id") ||
		!strings.Contains(out.String(), want.Pairs[0].SampleID) {
		t.Errorf("table: exit %d\n%s", code, out.String())
	}
	for _, c := range []struct {
		name string
		edit func(*compareFlags)
		code int
	}{
		{"three experiments", func(cf *compareFlags) { cf.experiments = []string{"base", "cand", "base"} }, 2},
		{"limit", func(cf *compareFlags) { cf.limit = 0 }, 2},
		{"metric", func(cf *compareFlags) { cf.pairs = "tokens" }, 2},
		{"unknown experiment", func(cf *compareFlags) { cf.experiments = []string{"base", "nope"} }, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := cf
			c.edit(&bad)
			out.Reset()
			if code := runCompare(bad, &out); code != c.code || out.Len() != 0 {
				t.Errorf("exit %d, want %d; printed %q", code, c.code, out.String())
			}
		})
	}
}
