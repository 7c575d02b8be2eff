package promsource_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/promsource"
	"github.com/crucible-telemetry/crucible-telemetry/query"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// sidecar is a Manager with two experiments, and its own PromQL API as
// the "Prometheus" the samples are read back from.
func sidecar(t *testing.T, n int) (*experiment.Manager, string, time.Time) {
	t.Helper()
	m := experiment.NewManager(experiment.Options{
		Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Store: tsdbstore.Options{OutOfOrderWindow: 24 * time.Hour, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: prometheus.NewRegistry()},
	})
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	prices := pricing.Default()
	for _, arm := range []string{"ctl", "trt"} {
		req, _ := experiment.DecodeCreateRequest(fmt.Appendf(nil, `{"id":%q,"name":%q,"condition":%q}`, arm, arm, map[string]string{"ctl": "control", "trt": "treatment"}[arm]))
		if _, _, err := m.Create(req); err != nil {
			t.Fatal(err)
		}
		var evs []*event.Event
		for i := range n {
			lat := 100 + (i*31)%500
			ok := i%7 != 0
			if arm == "trt" {
				lat, ok = lat-10, i%5 != 0
			}
			// Bursts of three in one millisecond (slots), spread over two
			// hours; some events without success or tokens.
			ts := base.Add(time.Duration(i/3) * 7 * time.Millisecond)
			body := fmt.Sprintf(`{"event_name":"%s","timestamp":%d,"latency_ms":%d,"metadata":{"sample_id":"s%d","model":"%s","provider":"openai"`,
				[]string{"llm.request", "llm.judge"}[i%2], ts.UnixMicro(), lat, i, []string{"gpt-4o-mini", "gpt-4o"}[i%2])
			if i%4 != 0 {
				body += fmt.Sprintf(`,"tokens":{"prompt":%d,"completion":%d}`, 50+i%13, 10+i%7)
			}
			body += "}"
			if i%6 != 0 {
				body += fmt.Sprintf(`,"success":%t`, ok)
			}
			body += fmt.Sprintf(`,"scores":{"judge":%g,"exact":%d}}`, float64((i*7)%10)/10, i%2)
			e, err := event.Parse([]byte(body), time.Now(), prices)
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, e)
		}
		for len(evs) > 0 {
			part := evs[:min(500, len(evs))]
			evs = evs[len(part):]
			if _, err := m.Ingest(arm, part, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	a := query.New(query.Options{Targets: query.Experiments(m)})
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", a.Query)
	mux.HandleFunc("/api/v1/query_range", a.QueryRange)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return m, srv.URL, base
}

// equalNumbers compares two JSON documents: numbers to 1e-9 relative,
// everything else exactly, keys in skip ignored.
func equalNumbers(t *testing.T, path string, a, b any, skip map[string]bool) {
	t.Helper()
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			t.Errorf("%s: %v vs %v", path, a, b)
			return
		}
		for k := range av {
			if !skip[k] {
				equalNumbers(t, path+"."+k, av[k], bv[k], skip)
			}
		}
		for k := range bv {
			if _, ok := av[k]; !ok && !skip[k] {
				t.Errorf("%s.%s: missing on one side", path, k)
			}
		}
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			t.Errorf("%s: %v vs %v", path, a, b)
			return
		}
		for i := range av {
			equalNumbers(t, fmt.Sprintf("%s[%d]", path, i), av[i], bv[i], skip)
		}
	case float64:
		bv, ok := b.(float64)
		if !ok || math.Abs(av-bv) > 1e-9*math.Max(math.Abs(av), math.Abs(bv)) {
			t.Errorf("%s: %v vs %v", path, a, b)
		}
	default:
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s: %v vs %v", path, a, b)
		}
	}
}

func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// The fleet answer over the samples equals the local one over the events,
// whether the samples are read in one query or in many small chunks.
func TestFleetEqualsLocal(t *testing.T) {
	m, promURL, base := sidecar(t, 3000)
	opts := analysis.CompareOptions{Resamples: 200, Seed: 1, SequentialTuning: analysis.DefaultSequentialTuning}
	local, err := m.Compare(context.Background(), []string{"ctl", "trt"}, experiment.Filter{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	localAn, err := m.Analyze(context.Background(), "trt", experiment.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		chunks int64
	}{{"one chunk", 0}, {"many chunks", 500}} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := promsource.New(promsource.Options{URL: promURL, Start: base.Add(-time.Hour), End: time.Now(), ChunkSamples: tc.chunks})
			if err != nil {
				t.Fatal(err)
			}
			x, err := src.Read(context.Background(), "ctl", promsource.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(x.Points) != 3000 || len(x.Conditions) != 1 || x.Conditions[0] != "control" {
				t.Fatalf("%d events, conditions %v", len(x.Points), x.Conditions)
			}
			f := experiment.NewFleet(func(ctx context.Context, id string, f experiment.Filter) ([]analysis.Point, error) {
				x, err := src.Read(ctx, id, promsource.Filter{})
				return x.Points, err
			})
			got, err := f.Compare(context.Background(), []string{"ctl", "trt"}, experiment.Filter{}, opts)
			if err != nil {
				t.Fatal(err)
			}
			equalNumbers(t, "compare", asJSON(t, local), asJSON(t, got), map[string]bool{"paired": true})
			an, err := f.Analyze(context.Background(), "trt", experiment.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			equalNumbers(t, "analyze", asJSON(t, localAn), asJSON(t, an), nil)
		})
	}
}

// Filters are label matchers and time bounds on the query API's side.
func TestFleetFilters(t *testing.T) {
	m, promURL, base := sidecar(t, 600)
	src, err := promsource.New(promsource.Options{URL: promURL, Start: base.Add(-time.Hour), End: time.Now(), ChunkSamples: 300})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	from, to := base.Add(time.Second).UnixMicro(), base.Add(1400*time.Millisecond).UnixMicro()
	for _, f := range []experiment.Filter{
		{Model: "gpt-4o"}, {Event: "llm.judge"}, {Success: &yes}, {From: &from, To: &to}, {Condition: "treatment"},
	} {
		t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
			want, err := m.Analyze(context.Background(), "ctl", f)
			if err != nil {
				t.Fatal(err)
			}
			x, err := src.Read(context.Background(), "ctl", promsource.Filter{Condition: f.Condition, Event: f.Event, Model: f.Model,
				Provider: f.Provider, Success: f.Success, FromUs: f.From, ToUs: f.To})
			if err != nil {
				t.Fatal(err)
			}
			equalNumbers(t, "analyze", asJSON(t, want), asJSON(t, analysis.Analyze(x.Points)), nil)
		})
	}
}

// Errors of the query API are reported with its message; headers and the
// selector reach every query.
func TestQueryAPIErrorsHeadersSelector(t *testing.T) {
	var mu sync.Mutex
	var queries []string
	var headers []string
	status, answer := http.StatusOK, `{"status":"success","data":{"resultType":"matrix","result":[]}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		queries = append(queries, r.Form.Get("query"))
		headers = append(headers, r.Header.Get("X-Scope-OrgID"))
		s, a := status, answer
		mu.Unlock()
		w.WriteHeader(s)
		fmt.Fprint(w, a)
	}))
	defer srv.Close()
	sel, err := promsource.ParseSelector(`{cluster="eu"}`)
	if err != nil {
		t.Fatal(err)
	}
	src, err := promsource.New(promsource.Options{URL: srv.URL + "/", Header: http.Header{"X-Scope-Orgid": {"team-a"}}, Selector: sel,
		Start: time.Now().Add(-time.Hour), End: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	x, err := src.Read(context.Background(), "ctl", promsource.Filter{})
	if err != nil || len(x.Points) != 0 {
		t.Fatalf("empty answers: %v %v", x, err)
	}
	for i, q := range queries {
		if !strings.Contains(q, `cluster="eu"`) || !strings.Contains(q, `experiment_id="ctl"`) || headers[i] != "team-a" {
			t.Fatalf("query %q header %q", q, headers[i])
		}
	}
	for _, tc := range []struct {
		status       int
		answer, want string
	}{
		{422, `{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory in query execution"}`, "--prometheus.chunk-samples"},
		{400, `{"status":"error","errorType":"bad_data","error":"parse error"}`, "parse error"},
		{502, `<html>bad gateway</html>`, "502"},
		{200, `{"status":"success","data":{"resultType":"vector","result":[]}}`, "want a matrix"},
	} {
		mu.Lock()
		status, answer = tc.status, tc.answer
		mu.Unlock()
		if _, err := src.Read(context.Background(), "ctl", promsource.Filter{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("answer %d %s: error %v, want %q", tc.status, tc.answer, err, tc.want)
		}
	}
	for _, bad := range []string{`{__name__="x"}`, `{cluster=}`} {
		if _, err := promsource.ParseSelector(bad); err == nil {
			t.Errorf("selector %s accepted", bad)
		}
	}
	if _, err := promsource.New(promsource.Options{URL: "ftp://x", Start: time.Now().Add(-time.Hour), End: time.Now()}); err == nil {
		t.Error("ftp URL accepted")
	}
}
