package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/api"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// TestOfflineClusterMatchesTheAPI: analyze --cluster and compare --cluster
// print, as JSON, what GET .../metrics?cluster= and GET /compare?cluster=
// answer over the same data directory; their tables show the clustered
// errors; a bad key is a usage error.
func TestOfflineClusterMatchesTheAPI(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	m := experiment.NewManager(experiment.Options{
		Dir: dir, Logger: slog.New(slog.DiscardHandler),
		Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: reg},
	})
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for k, id := range []string{"ctl", "trt"} {
		if _, _, err := m.Create(experiment.CreateRequest{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
		var evs []*event.Event
		for i := range 300 + 40*k {
			s := (i * 7) % 37 // 37 sessions of 8 to 9 events, interleaved
			session := fmt.Sprintf(`,"session_id":"s-%d"`, s)
			if i%25 == 0 {
				session = "" // a cluster of its own
			}
			e, err := event.Parse([]byte(fmt.Sprintf(`{"event_name":"x","timestamp":%d,"latency_ms":%d,"cost_usd":%g,"success":%v,"scores":{"acc":%g},"metadata":{"team":"t%d"%s}}`,
				now.Add(-time.Minute).UnixMicro()+int64(i)*1000, 100+3*s+i%5+10*k, 0.001*float64(1+s%3), (s+i)%6 != 0, float64(s%4)/4, s%3, session)), now, pricing.Default())
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, e)
		}
		if res, err := m.Ingest(id, evs, now); err != nil || res.Accepted != len(evs) {
			t.Fatalf("ingest %s: %+v %v", id, res, err)
		}
	}
	a := api.New(api.Options{Manager: m, Prices: pricing.NewHolder(pricing.Default()), MaxRequestBytes: 1 << 20, Registerer: reg})
	h, err := a.Handler(api.RouteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	data := func(path string) any {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(b, &env); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return decode(t, env.Data)
	}
	keys := []string{"session_id", "metadata.team"}
	metrics, comparisons := map[string]any{}, map[string]any{}
	for _, key := range keys {
		metrics[key] = data("/api/v1/experiments/trt/metrics?cluster=" + key)
		comparisons[key] = data("/api/v1/compare?experiments=ctl,trt&cluster=" + key)
	}
	srv.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			var out bytes.Buffer
			if code := runAnalyze(analyzeFlags{storagePath: dir, experiment: "trt", format: "json", cluster: key}, &out); code != 0 {
				t.Fatalf("analyze: exit %d", code)
			}
			if got := decode(t, out.Bytes()); !reflect.DeepEqual(got, metrics[key]) {
				t.Errorf("analyze --cluster=%s --format=json differs from the API:\n%.800s\n%.800s", key, out.String(), jsonText(metrics[key]))
			}
			if !strings.Contains(out.String(), `"mean_se_clustered"`) {
				t.Errorf("no clustered errors: %.400s", out.String())
			}
			out.Reset()
			cf := compareFlags{storagePath: dir, format: "json", experiments: []string{"ctl", "trt"}, resamples: analysis.DefaultResamples, seed: 1,
				sequentialTuning: analysis.DefaultSequentialTuning, limit: 100, cluster: key}
			if code := runCompare(cf, &out); code != 0 {
				t.Fatalf("compare: exit %d", code)
			}
			if got := decode(t, out.Bytes()); !reflect.DeepEqual(got, comparisons[key]) {
				t.Errorf("compare --cluster=%s --format=json differs from the API:\n%.800s\n%.800s", key, out.String(), jsonText(comparisons[key]))
			}

			// The tables.
			out.Reset()
			if code := runAnalyze(analyzeFlags{storagePath: dir, experiment: "trt", format: "table", cluster: key}, &out); code != 0 {
				t.Fatalf("analyze table: exit %d", code)
			}
			for _, want := range []string{"clustered errors by " + key, "SE (clustered)", "95% CI (clustered)", "success rate", "score acc"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("analyze table lacks %q:\n%s", want, out.String())
				}
			}
			out.Reset()
			cf.format = "table"
			if code := runCompare(cf, &out); code != 0 {
				t.Fatalf("compare table: exit %d", code)
			}
			// Under latency, success rate, cost/request and the score.
			if n := strings.Count(out.String(), "\n  clustered "); n != 4 || !strings.Contains(out.String(), "clustered errors by "+key) {
				t.Errorf("compare table has %d clustered rows:\n%s", n, out.String())
			}
		})
	}

	t.Run("without", func(t *testing.T) {
		var out bytes.Buffer
		cf := compareFlags{storagePath: dir, format: "table", experiments: []string{"ctl", "trt"}, seed: 1, sequentialTuning: analysis.DefaultSequentialTuning, limit: 100}
		if code := runCompare(cf, &out); code != 0 || strings.Contains(out.String(), "clustered") {
			t.Errorf("compare without --cluster: exit %d\n%s", code, out.String())
		}
		out.Reset()
		if code := runAnalyze(analyzeFlags{storagePath: dir, experiment: "trt", format: "json"}, &out); code != 0 || strings.Contains(out.String(), "_clustered") {
			t.Errorf("analyze without --cluster: exit %d\n%.400s", code, out.String())
		}
	})

	t.Run("bad", func(t *testing.T) {
		var out bytes.Buffer
		for name, code := range map[string]int{
			"analyze": runAnalyze(analyzeFlags{storagePath: dir, experiment: "trt", format: "json", cluster: "session"}, &out),
			"compare": runCompare(compareFlags{storagePath: dir, format: "json", experiments: []string{"ctl", "trt"}, seed: 1,
				sequentialTuning: analysis.DefaultSequentialTuning, cluster: "metadata."}, &out),
			"compare --pairs": runCompare(compareFlags{storagePath: dir, format: "json", experiments: []string{"ctl", "trt"}, pairs: "success",
				limit: 100, cluster: "session_id"}, &out),
		} {
			if code != 2 {
				t.Errorf("%s: exit %d, want 2", name, code)
			}
		}
		if out.Len() > 0 {
			t.Errorf("output on bad usage: %s", out.String())
		}
	})
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %.200s", err, b)
	}
	return v
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
