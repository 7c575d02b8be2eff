package query

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/storage"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// storeTarget is a store under an experiment id; hook, when set, runs
// after each querier opens.
type storeTarget struct {
	id   string
	s    *tsdbstore.Store
	hook func()
}

func (t *storeTarget) ID() string { return t.id }

func (t *storeTarget) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := t.s.Querier(mint, maxt)
	if err == nil && t.hook != nil {
		t.hook()
	}
	return q, err
}

// base is the time of the first event of every test experiment.
var base = time.Now().Add(-10 * time.Minute).Truncate(time.Second)

// openExperiment writes n events one second apart, latency 100+i ms.
func openExperiment(t *testing.T, id string, n int) *storeTarget {
	t.Helper()
	s, err := tsdbstore.Open(t.TempDir(), tsdbstore.Options{
		ExperimentID: id, Condition: "control", OutOfOrderWindow: time.Hour, SyncInterval: time.Second,
		DedupWindow: time.Hour, Metrics: tsdbstore.AllMetrics, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = &event.Event{
			EventID: event.NewID(), ExperimentID: id, Condition: "control", EventName: "req_llm.request.stop",
			Timestamp: base.Add(time.Duration(i) * time.Second).UnixMicro(), LatencyMs: event.Some(100 + float64(i)),
			Success: event.Some(i%2 == 0), Model: event.Some("gpt-4o"), Provider: event.Some("openai"), SampleWeight: 1,
		}
	}
	res, err := s.Append(evs, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Status != tsdbstore.Stored {
			t.Fatalf("event not stored: %v", r.Err)
		}
	}
	return &storeTarget{id: id, s: s}
}

func newServer(t *testing.T, o Options, targets ...Target) *httptest.Server {
	t.Helper()
	o.Targets = func() ([]Target, error) { return targets, nil }
	a := New(o)
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", a.Query)
	mux.HandleFunc("/api/v1/query_range", a.QueryRange)
	mux.HandleFunc("/api/v1/series", a.Series)
	mux.HandleFunc("/api/v1/labels", a.LabelNames)
	mux.HandleFunc("/api/v1/label/{name}/values", a.LabelValues)
	mux.HandleFunc("/api/v1/status/buildinfo", a.BuildInfo)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

func get(t *testing.T, srv *httptest.Server, path string, params url.Values, post bool) (int, answer) {
	t.Helper()
	var resp *http.Response
	var err error
	if post {
		resp, err = http.PostForm(srv.URL+path, params)
	} else {
		resp, err = http.Get(srv.URL + path + "?" + params.Encode())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, a
}

// unix is t as Prometheus writes times: seconds, fraction only when there is one.
func unix(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64) }

func TestAPI(t *testing.T) {
	a, b := openExperiment(t, "a", 10), openExperiment(t, "b", 4)
	srv := newServer(t, Options{}, a, b)
	at := unix(base.Add(time.Minute))
	count := func(sel string) string {
		return fmt.Sprintf("sum(count_over_time(crucible_event_latency_seconds%s[1h]))", sel)
	}
	for _, c := range []struct {
		name   string
		path   string
		params url.Values
		post   bool
		code   int
		// want is the data, or the errorType of an error.
		want string
	}{
		{"instant count of one experiment", "/api/v1/query", url.Values{"query": {count(`{experiment_id="a"}`)}, "time": {at}}, false, 200,
			`{"resultType":"vector","result":[{"metric":{},"value":[` + at + `,"10"]}]}`},
		{"instant by POST, RFC 3339 time", "/api/v1/query", url.Values{"query": {count(`{experiment_id="b"}`)}, "time": {base.Add(time.Minute).UTC().Format(time.RFC3339)}}, true, 200,
			`{"resultType":"vector","result":[{"metric":{},"value":[` + unix(base.Add(time.Minute)) + `,"4"]}]}`},
		{"instant over every experiment", "/api/v1/query", url.Values{"query": {"sum by (experiment_id) (count_over_time(crucible_event_latency_seconds[1h]))"}, "time": {at}}, false, 200,
			`{"resultType":"vector","result":[{"metric":{"experiment_id":"a"},"value":[` + at + `,"10"]},{"metric":{"experiment_id":"b"},"value":[` + at + `,"4"]}]}`},
		{"quantile over raw samples", "/api/v1/query", url.Values{"query": {`max_over_time(crucible_event_latency_seconds{experiment_id="a"}[1h])`}, "time": {at}}, false, 200,
			`{"resultType":"vector","result":[{"metric":{"condition":"control","event":"req_llm.request.stop","experiment_id":"a","model":"gpt-4o","provider":"openai"},"value":[` + at + `,"0.109"]}]}`},
		{"scalar", "/api/v1/query", url.Values{"query": {"1+1"}, "time": {"1700000000"}}, false, 200,
			`{"resultType":"scalar","result":[1700000000,"2"]}`},
		{"empty vector", "/api/v1/query", url.Values{"query": {`crucible_event_latency_seconds{experiment_id="none"}`}, "time": {at}}, false, 200,
			`{"resultType":"vector","result":[]}`},
		{"range", "/api/v1/query_range", url.Values{"query": {count(`{experiment_id="a"}`)}, "start": {unix(base)}, "end": {unix(base.Add(10 * time.Second))}, "step": {"5s"}}, false, 200,
			`{"resultType":"matrix","result":[{"metric":{},"values":[[` + unix(base) + `,"1"],[` + unix(base.Add(5*time.Second)) + `,"6"],[` + unix(base.Add(10*time.Second)) + `,"10"]]}]}`},
		{"range by POST, step in seconds", "/api/v1/query_range", url.Values{"query": {count(`{experiment_id="b"}`)}, "start": {unix(base.Add(time.Minute))}, "end": {unix(base.Add(time.Minute))}, "step": {"15"}}, true, 200,
			`{"resultType":"matrix","result":[{"metric":{},"values":[[` + unix(base.Add(time.Minute)) + `,"4"]]}]}`},
		{"series", "/api/v1/series", url.Values{"match[]": {`crucible_event_latency_seconds{experiment_id="b"}`}}, false, 200,
			`[{"__name__":"crucible_event_latency_seconds","condition":"control","event":"req_llm.request.stop","experiment_id":"b","model":"gpt-4o","provider":"openai"}]`},
		{"series by POST, two matchers", "/api/v1/series", url.Values{"match[]": {`crucible_event_latency_seconds{experiment_id="b"}`, `crucible_event_latency_seconds{experiment_id="a"}`}}, true, 200,
			`[{"__name__":"crucible_event_latency_seconds","condition":"control","event":"req_llm.request.stop","experiment_id":"a","model":"gpt-4o","provider":"openai"},{"__name__":"crucible_event_latency_seconds","condition":"control","event":"req_llm.request.stop","experiment_id":"b","model":"gpt-4o","provider":"openai"}]`},
		{"labels", "/api/v1/labels", nil, false, 200,
			`["__name__","condition","event","experiment_id","model","provider"]`},
		{"label values", "/api/v1/label/experiment_id/values", nil, false, 200, `["a","b"]`},
		{"label values with match[]", "/api/v1/label/experiment_id/values", url.Values{"match[]": {`{experiment_id=~"b|c"}`}}, false, 200, `["b"]`},
		{"metric names", "/api/v1/label/__name__/values", url.Values{"match[]": {`{experiment_id="a"}`}}, false, 200,
			`["crucible_event_latency_seconds","crucible_event_success"]`},
		{"bad query", "/api/v1/query", url.Values{"query": {"sum(("}}, false, 400, "bad_data"},
		{"bad time", "/api/v1/query", url.Values{"query": {"1"}, "time": {"yesterday"}}, false, 400, "bad_data"},
		{"zero step", "/api/v1/query_range", url.Values{"query": {"1"}, "start": {"0"}, "end": {"60"}, "step": {"0"}}, false, 400, "bad_data"},
		{"too many points", "/api/v1/query_range", url.Values{"query": {"1"}, "start": {"0"}, "end": {"100000"}, "step": {"1"}}, false, 400, "bad_data"},
		{"series without match[]", "/api/v1/series", nil, false, 400, "bad_data"},
		{"series matching everything", "/api/v1/series", url.Values{"match[]": {`{model=~".*"}`}}, false, 400, "bad_data"},
		{"bad label name", "/api/v1/label/%ff/values", nil, false, 400, "bad_data"},
		{"timeout", "/api/v1/query", url.Values{"query": {"1"}, "timeout": {"0.000000001"}}, false, 503, "timeout"},
		{"zero timeout", "/api/v1/query", url.Values{"query": {"1"}, "timeout": {"0"}}, false, 400, "bad_data"},
		{"negative timeout", "/api/v1/query", url.Values{"query": {"1"}, "timeout": {"-1s"}}, false, 400, "bad_data"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, ans := get(t, srv, c.path, c.params, c.post)
			if code != c.code {
				t.Fatalf("code %d, want %d: %+v", code, c.code, ans)
			}
			if c.code != 200 {
				if ans.Status != "error" || ans.ErrorType != c.want || ans.Error == "" {
					t.Fatalf("got %+v, want errorType %s", ans, c.want)
				}
				return
			}
			if ans.Status != "success" || string(ans.Data) != c.want {
				t.Fatalf("data\n%s\nwant\n%s", ans.Data, c.want)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	a := openExperiment(t, "a", 50)
	srv := newServer(t, Options{MaxSamples: 10}, a)
	code, ans := get(t, srv, "/api/v1/query", url.Values{"query": {`count_over_time(crucible_event_latency_seconds[1h])`}, "time": {unix(base.Add(time.Minute))}}, false)
	if code != 422 || ans.ErrorType != "execution" || !strings.Contains(ans.Error, "too many samples") {
		t.Fatalf("over the sample limit: %d %+v", code, ans)
	}

	srv = newServer(t, Options{Timeout: time.Nanosecond}, a)
	code, ans = get(t, srv, "/api/v1/query", url.Values{"query": {`crucible_event_latency_seconds`}}, false)
	if code != 503 || ans.ErrorType != "timeout" {
		t.Fatalf("over --query.timeout: %d %+v", code, ans)
	}

	srv = newServer(t, Options{}, a)
	code, ans = get(t, srv, "/api/v1/label/__name__/values", url.Values{"limit": {"1"}}, false)
	if code != 200 || string(ans.Data) != `["crucible_event_latency_seconds"]` || !slices.Contains(ans.Warnings, "results truncated due to limit") {
		t.Fatalf("limit: %d %+v", code, ans)
	}
}

// A query slot is held while a query runs: with one slot, a second query
// waits, and gives up at its timeout.
func TestConcurrencyLimit(t *testing.T) {
	a := openExperiment(t, "a", 5)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	a.hook = func() {
		select {
		case entered <- struct{}{}:
			<-release
		default:
		}
	}
	srv := newServer(t, Options{MaxConcurrency: 1}, a)
	done := make(chan int)
	go func() {
		code, _ := get(t, srv, "/api/v1/query", url.Values{"query": {"crucible_event_latency_seconds"}, "time": {unix(base)}}, false)
		done <- code
	}()
	<-entered
	code, ans := get(t, srv, "/api/v1/query", url.Values{"query": {"1"}, "timeout": {"50ms"}}, false)
	if code != 503 || ans.ErrorType != "timeout" {
		t.Fatalf("query past the concurrency limit: %d %+v", code, ans)
	}
	// Series and label reads take a slot too.
	for _, path := range []string{"/api/v1/labels", "/api/v1/label/experiment_id/values"} {
		code, ans := get(t, srv, path, url.Values{"timeout": {"50ms"}}, false)
		if code != 503 || ans.ErrorType != "timeout" {
			t.Fatalf("%s past the concurrency limit: %d %+v", path, code, ans)
		}
	}
	code, ans = get(t, srv, "/api/v1/series", url.Values{"match[]": {"crucible_event_latency_seconds"}, "timeout": {"50ms"}}, false)
	if code != 503 || ans.ErrorType != "timeout" {
		t.Fatalf("series past the concurrency limit: %d %+v", code, ans)
	}
	close(release)
	if code := <-done; code != 200 {
		t.Fatalf("first query: %d", code)
	}
}

// A store closed while a query reads it stays open until the query ends;
// afterwards its experiment has no series, and queries still answer.
func TestStoreClosedDuringQuery(t *testing.T) {
	a, b := openExperiment(t, "a", 10), openExperiment(t, "b", 4)
	closed := make(chan error, 1)
	a.hook = func() {
		a.hook = nil
		go func() { closed <- a.s.Close() }()
		time.Sleep(20 * time.Millisecond) // Close has begun and waits for the query
	}
	srv := newServer(t, Options{}, a, b)
	at := unix(base.Add(time.Minute))
	q := url.Values{"query": {"sum(count_over_time(crucible_event_latency_seconds[1h]))"}, "time": {at}}
	code, ans := get(t, srv, "/api/v1/query", q, false)
	if want := `{"resultType":"vector","result":[{"metric":{},"value":[` + at + `,"14"]}]}`; code != 200 || string(ans.Data) != want {
		t.Fatalf("query during Close: %d %s, want %s", code, ans.Data, want)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	code, ans = get(t, srv, "/api/v1/query", q, false)
	if want := `{"resultType":"vector","result":[{"metric":{},"value":[` + at + `,"4"]}]}`; code != 200 || string(ans.Data) != want {
		t.Fatalf("query after Close: %d %s, want %s", code, ans.Data, want)
	}
	code, ans = get(t, srv, "/api/v1/label/experiment_id/values", nil, false)
	if code != 200 || string(ans.Data) != `["b"]` {
		t.Fatalf("label values after Close: %d %s", code, ans.Data)
	}
}

func TestBuildInfo(t *testing.T) {
	srv := newServer(t, Options{})
	code, ans := get(t, srv, "/api/v1/status/buildinfo", nil, false)
	var info map[string]string
	if err := json.Unmarshal(ans.Data, &info); code != 200 || err != nil || info["goVersion"] == "" {
		t.Fatalf("%d %s %v", code, ans.Data, err)
	}
	for _, k := range []string{"version", "revision", "branch", "buildUser", "buildDate"} {
		if _, ok := info[k]; !ok {
			t.Errorf("no %s in %s", k, ans.Data)
		}
	}
}
