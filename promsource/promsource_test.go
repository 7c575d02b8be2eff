package promsource_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"

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
	mux.Handle("/api/v1/read", a.RemoteRead())
	mux.Handle("/samples/api/v1/read", onlySamples(t, a.RemoteRead()))
	mux.Handle("/samples/api/v1/", http.StripPrefix("/samples", mux))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return m, srv.URL, base
}

// onlySamples makes remote-read requests accept only the samples response
// type, as a receiver without streamed chunks would answer.
func onlySamples(t *testing.T, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var rr prompb.ReadRequest
		if err == nil {
			var raw []byte
			if raw, err = snappy.Decode(nil, body); err == nil {
				err = rr.Unmarshal(raw)
			}
		}
		if err != nil {
			t.Errorf("remote-read request: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rr.AcceptedResponseTypes = []prompb.ReadRequest_ResponseType{prompb.ReadRequest_SAMPLES}
		raw, _ := rr.Marshal()
		r.Body = io.NopCloser(bytes.NewReader(snappy.Encode(nil, raw)))
		r.ContentLength = -1
		next.ServeHTTP(w, r)
	})
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
// whether the samples are read with remote read (streamed chunks or
// samples) or through the query API in one query or many small chunks.
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
		name, path, read, via string
		chunks                int64
	}{
		{"query API, one chunk", "", promsource.ReadQuery, promsource.ReadQuery, 0},
		{"query API, many chunks", "", promsource.ReadQuery, promsource.ReadQuery, 500},
		{"remote read, streamed chunks", "", promsource.ReadRemote, promsource.ReadRemote, 0},
		{"remote read, samples", "/samples", promsource.ReadRemote, promsource.ReadRemote, 0},
		{"auto", "", promsource.ReadAuto, promsource.ReadRemote, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := promsource.New(promsource.Options{URL: promURL + tc.path, Start: base.Add(-time.Hour), End: time.Now(),
				ChunkSamples: tc.chunks, Read: tc.read})
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
			if src.Via() != tc.via {
				t.Fatalf("read via %s, want %s", src.Via(), tc.via)
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

// Filters are label matchers and time bounds on the receiver's side.
func TestFleetFilters(t *testing.T) {
	m, promURL, base := sidecar(t, 600)
	yes := true
	from, to := base.Add(time.Second).UnixMicro(), base.Add(1400*time.Millisecond).UnixMicro()
	for _, read := range []string{promsource.ReadQuery, promsource.ReadRemote} {
		src, err := promsource.New(promsource.Options{URL: promURL, Start: base.Add(-time.Hour), End: time.Now(), ChunkSamples: 300, Read: read})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []experiment.Filter{
			{Model: "gpt-4o"}, {Event: "llm.judge"}, {Success: &yes}, {From: &from, To: &to}, {Condition: "treatment"},
		} {
			t.Run(fmt.Sprintf("%s %+v", read, f), func(t *testing.T) {
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
		Start: time.Now().Add(-time.Hour), End: time.Now(), Read: promsource.ReadQuery})
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
	if _, err := promsource.New(promsource.Options{URL: srv.URL, Start: time.Now().Add(-time.Hour), End: time.Now(), Read: "grpc"}); err == nil {
		t.Error("read mode grpc accepted")
	}
}

// A receiver without remote read (404, 405, VictoriaMetrics' 400, an
// answer that is not protobuf) is read through its query API in auto
// mode and is an error that says so with --prometheus.read=remote-read;
// a remote-read failure is an error in both.
func TestRemoteReadFallback(t *testing.T) {
	empty := `{"status":"success","data":{"resultType":"matrix","result":[]}}`
	for _, tc := range []struct {
		name, ctype, body string
		status            int
		fallback          bool
	}{
		{"404", "text/plain", "404 page not found", http.StatusNotFound, true},
		{"405", "text/plain", "method not allowed", http.StatusMethodNotAllowed, true},
		{"VictoriaMetrics", "text/plain", `unsupported path requested: "/api/v1/read"`, http.StatusBadRequest, true},
		{"a web page", "text/html", "<html></html>", http.StatusOK, true},
		{"a failure", "text/plain", "boom", http.StatusInternalServerError, false},
		{"a bad request", "text/plain", "bad matchers", http.StatusBadRequest, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var orgs []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				orgs = append(orgs, r.Header.Get("X-Scope-OrgID"))
				mu.Unlock()
				if r.URL.Path == "/api/v1/read" {
					if r.Header.Get("Content-Encoding") != "snappy" || r.Header.Get("X-Prometheus-Remote-Read-Version") == "" {
						t.Errorf("remote-read headers %v", r.Header)
					}
					w.Header().Set("Content-Type", tc.ctype)
					w.WriteHeader(tc.status)
					fmt.Fprint(w, tc.body)
					return
				}
				fmt.Fprint(w, empty)
			}))
			defer srv.Close()
			for _, read := range []string{promsource.ReadAuto, promsource.ReadRemote} {
				src, err := promsource.New(promsource.Options{URL: srv.URL, Header: http.Header{"X-Scope-Orgid": {"team-a"}},
					Start: time.Now().Add(-time.Hour), End: time.Now(), Read: read})
				if err != nil {
					t.Fatal(err)
				}
				_, err = src.Read(context.Background(), "ctl", promsource.Filter{})
				switch {
				case tc.fallback && read == promsource.ReadAuto:
					if err != nil || src.Via() != promsource.ReadQuery {
						t.Fatalf("auto: %v, via %s", err, src.Via())
					}
				case tc.fallback:
					if err == nil || !strings.Contains(err.Error(), "--prometheus.read=query") {
						t.Fatalf("remote-read: %v", err)
					}
				default:
					if err == nil || !strings.Contains(err.Error(), tc.body) {
						t.Fatalf("%s: %v, want the receiver's message", read, err)
					}
				}
			}
			for _, o := range orgs {
				if o != "team-a" {
					t.Fatalf("a request without the header: %q", orgs)
				}
			}
		})
	}
}
