package api

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

const maxBody = 64 << 10

type fixture struct {
	dir     string
	srv     *httptest.Server
	api     *API
	manager *experiment.Manager
	reg     *prometheus.Registry
	reloads int
	reload  error
}

func newFixture(t *testing.T, open bool) *fixture {
	t.Helper()
	return newFixtureWith(t, open, Options{})
}

// newFixtureWith is newFixture with the limits of o.
func newFixtureWith(t *testing.T, open bool, o Options) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewRegistry(), dir: t.TempDir()}
	f.manager = experiment.NewManager(experiment.Options{
		Dir: f.dir, Logger: slog.New(slog.DiscardHandler), Metrics: collector.New(f.reg, collector.Options{}),
		Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: f.reg},
	})
	if open {
		if err := f.manager.Open(); err != nil {
			t.Fatal(err)
		}
	}
	o.Manager, o.Prices, o.MaxRequestBytes, o.Registerer = f.manager, pricing.NewHolder(pricing.Default()), maxBody, f.reg
	o.Reload = func() error { f.reloads++; return f.reload }
	f.api = New(o)
	h, err := f.api.Handler(RouteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(func() { f.srv.Close(); f.manager.Close() })
	return f
}

type reply struct {
	code   int
	header http.Header
	env    struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Code      string          `json:"code"`
	}
}

func (f *fixture) do(t *testing.T, method, path string, body []byte, headers ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := reply{code: resp.StatusCode, header: resp.Header}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r.env); err != nil {
			t.Fatalf("%s %s: bad envelope %q: %v", method, path, b, err)
		}
	}
	return r
}

func (f *fixture) stored(t *testing.T, id string) int64 {
	t.Helper()
	r := f.do(t, "GET", "/api/v1/experiments/"+id, nil)
	var rec experiment.Record
	if err := json.Unmarshal(r.env.Data, &rec); err != nil || r.code != 200 {
		t.Fatalf("experiment %s: %d %s (%v)", id, r.code, r.env.Data, err)
	}
	return rec.EventsStored
}

func TestExperimentRoutes(t *testing.T) {
	f := newFixture(t, true)
	cases := []struct {
		name, method, path, body string
		code                     int
		errType, errCode         string
	}{
		{"create", "POST", "/api/v1/experiments", `{"id":"ab","name":"AB","condition":"control","tags":["t1"]}`, 201, "", ""},
		{"create again", "POST", "/api/v1/experiments", `{"id":"ab","name":"AB","condition":"control","tags":["t1"]}`, 200, "", ""},
		{"create with other fields", "POST", "/api/v1/experiments", `{"id":"ab","name":"other"}`, 409, "conflict", "exists"},
		{"empty name", "POST", "/api/v1/experiments", `{"name":""}`, 400, "bad_data", ""},
		{"truncated body", "POST", "/api/v1/experiments", `{"name":`, 400, "bad_data", ""},
		{"unknown field", "POST", "/api/v1/experiments", `{"name":"x","typo_field":1}`, 400, "bad_data", ""},
		{"get", "GET", "/api/v1/experiments/ab", "", 200, "", ""},
		{"get unknown", "GET", "/api/v1/experiments/nope", "", 404, "not_found", ""},
		{"get bad id", "GET", "/api/v1/experiments/bad$id", "", 400, "bad_data", ""},
		{"resume running", "POST", "/api/v1/experiments/ab/resume", "", 409, "conflict", "not_paused"},
		{"pause", "POST", "/api/v1/experiments/ab/pause", "", 200, "", ""},
		{"pause paused", "POST", "/api/v1/experiments/ab/pause", "", 409, "conflict", "already_paused"},
		{"resume", "POST", "/api/v1/experiments/ab/resume", "", 200, "", ""},
		{"stop", "POST", "/api/v1/experiments/ab/stop", "", 200, "", ""},
		{"stop stopped", "POST", "/api/v1/experiments/ab/stop", "", 200, "", ""},
		{"pause stopped", "POST", "/api/v1/experiments/ab/pause", "", 409, "conflict", "not_running"},
		{"stop unknown", "POST", "/api/v1/experiments/nope/stop", "", 404, "not_found", ""},
		{"list by status and tag", "GET", "/api/v1/experiments?status=stopped&tag=t1", "", 200, "", ""},
		{"list bad status", "GET", "/api/v1/experiments?status=bogus", "", 400, "bad_data", ""},
		{"event types", "GET", "/api/v1/event-types", "", 200, "", ""},
		{"pricing", "GET", "/api/v1/pricing", "", 200, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.do(t, c.method, c.path, []byte(c.body))
			if r.code != c.code || r.env.ErrorType != c.errType || r.env.Code != c.errCode {
				t.Errorf("%s %s %s: got %d %q %q (%s), want %d %q %q", c.method, c.path, c.body, r.code,
					r.env.ErrorType, r.env.Code, r.env.Error, c.code, c.errType, c.errCode)
			}
			wantStatus := "success"
			if c.code >= 400 {
				wantStatus = "error"
			}
			if r.env.Status != wantStatus {
				t.Errorf("%s %s: envelope status %q", c.method, c.path, r.env.Status)
			}
		})
	}
	r := f.do(t, "GET", "/api/v1/experiments?status=stopped&tag=t1", nil)
	var list []experiment.Record
	json.Unmarshal(r.env.Data, &list)
	if len(list) != 1 || list[0].ID != "ab" || list[0].PauseCount != 1 {
		t.Fatalf("list: %+v", list)
	}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zst(b []byte) []byte {
	enc, _ := zstd.NewWriter(nil)
	return enc.EncodeAll(b, nil)
}

const ev = `{"event_name":"req_llm.request.stop","measurements":{"duration":150000000},"metadata":{"model":"gpt-4","provider":"openai","tokens":{"prompt":100,"completion":200},"response":"ok"}}`

func TestIngestFormats(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"e","name":"E"}`))
	ndjson := []byte(ev + "\n" + ev + "\n")
	cases := []struct {
		name    string
		body    []byte
		headers []string
		n       int
	}{
		{"object", []byte(ev), nil, 1},
		{"array", []byte("[" + ev + "," + ev + "]"), nil, 2},
		{"ndjson", ndjson, []string{"Content-Type", "application/x-ndjson"}, 2},
		{"concatenated objects", ndjson, nil, 2},
		{"gzip", gz(ndjson), []string{"Content-Type", "application/x-ndjson", "Content-Encoding", "gzip"}, 2},
		{"zstd", zst(ndjson), []string{"Content-Encoding", "zstd"}, 2},
		{"snappy", snappy.Encode(nil, ndjson), []string{"Content-Encoding", "snappy"}, 2},
	}
	total := int64(0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.do(t, "POST", "/api/v1/experiments/e/events", c.body, c.headers...)
			var res experiment.IngestResult
			json.Unmarshal(r.env.Data, &res)
			if r.code != 200 || res.Accepted != c.n || len(res.Rejected) != 0 {
				t.Fatalf("got %d %s %+v", r.code, r.env.Error, res)
			}
			total += int64(c.n)
			if got := f.stored(t, "e"); got != total {
				t.Fatalf("stored %d, want %d", got, total)
			}
		})
	}
	// Routing by the event's experiment_id on the global endpoint.
	r := f.do(t, "POST", "/api/v1/events", []byte(`{"event_name":"x","experiment_id":"e"}`))
	if r.code != 200 || f.stored(t, "e") != total+1 {
		t.Fatalf("global endpoint: %d %s", r.code, r.env.Data)
	}
}

func TestIngestBadInputChangesNothing(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"e","name":"E"}`))
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"s","name":"S"}`))
	f.do(t, "POST", "/api/v1/experiments/s/stop", nil)
	bomb := gz(bytes.Repeat([]byte(" "), 10*maxBody)) // small compressed, huge inflated
	future := time.Now().Add(time.Hour).UnixMicro()
	cases := []struct {
		name    string
		path    string
		body    []byte
		code    int
		errType string
	}{
		{"malformed json", "/api/v1/experiments/e/events", []byte(`{"event_name":`), 400, "bad_data"},
		{"broken array", "/api/v1/experiments/e/events", []byte(`[` + ev + `,`), 400, "bad_data"},
		{"empty body", "/api/v1/experiments/e/events", nil, 400, "bad_data"},
		{"too large", "/api/v1/experiments/e/events", bytes.Repeat([]byte("x"), maxBody+1), 413, "too_large"},
		{"gzip bomb", "/api/v1/experiments/e/events", bomb, 413, "too_large"},
		{"bad gzip", "/api/v1/experiments/e/events", []byte("not gzip"), 400, "bad_data"},
		{"unknown encoding", "/api/v1/experiments/e/events", []byte(ev), 400, "bad_data"},
		{"unknown experiment", "/api/v1/experiments/nope/events", []byte(ev), 404, "not_found"},
		{"invalid id", "/api/v1/experiments/-x/events", []byte(ev), 400, "bad_data"},
		{"stopped experiment", "/api/v1/experiments/s/events", []byte(ev), 409, "conflict"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var headers []string
			switch c.name {
			case "gzip bomb", "bad gzip":
				headers = []string{"Content-Encoding", "gzip"}
			case "unknown encoding":
				headers = []string{"Content-Encoding", "br"}
			}
			r := f.do(t, "POST", c.path, c.body, headers...)
			if r.code != c.code || r.env.ErrorType != c.errType || r.env.Status != "error" || r.env.Error == "" {
				t.Fatalf("got %d %q %q, want %d %q", r.code, r.env.ErrorType, r.env.Error, c.code, c.errType)
			}
		})
	}
	// Per-event problems: the body parsed, so 200 with each bad event listed.
	lines := []string{
		ev,
		`{"event_name":""}`,
		`{"event_name":"x","latency_ms":"fast"}`,
		`{"event_name":"x","latency_ms":-1}`,
		`{"event_name":"x","timestamp":` + itoa(future) + `}`,
		`{"event_name":"x","metadata":{"tokens":{"prompt":-5}}}`,
		`{"event_name":"x","experiment_id":"bad id"}`,
		`{"event_name":"x","cost_usd":1e999}`,
		`{not json`,
		`42`,
	}
	r := f.do(t, "POST", "/api/v1/experiments/e/events", []byte(strings.Join(lines, "\n")), "Content-Type", "application/x-ndjson")
	var res experiment.IngestResult
	json.Unmarshal(r.env.Data, &res)
	if r.code != 200 || res.Accepted != 2 || len(res.Rejected) != len(lines)-2 {
		t.Fatalf("got %d %+v", r.code, res)
	}
	for i, rej := range res.Rejected {
		if rej.Error == "" || (i > 0 && rej.Index <= res.Rejected[i-1].Index) {
			t.Fatalf("rejections must be ordered and explained: %+v", res.Rejected)
		}
	}
	if got := f.stored(t, "e"); got != 2 {
		t.Fatalf("stored %d events, want 2 (bad input must change nothing)", got)
	}
	if got := testutil.ToFloat64(f.api.ingested.WithLabelValues("rejected")); got != float64(len(lines)-2) {
		t.Fatalf("rejected counter %v", got)
	}
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestIngestCounts(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"e","name":"E"}`))
	body := []byte(`[{"event_name":"x","event_id":"a"},{"event_name":"x","event_id":"a"},{"event_name":"x","event_id":"b","metadata":{"model":"unknown-llm","tokens":{"prompt":1}}}]`)
	r := f.do(t, "POST", "/api/v1/experiments/e/events", body)
	want := `{"accepted":2,"duplicates":1,"dropped_paused":0,"dropped_sampled":0,"rejected":[]}`
	if string(r.env.Data) != want {
		t.Fatalf("got %s, want %s", r.env.Data, want)
	}
	// A retried batch stores nothing.
	r = f.do(t, "POST", "/api/v1/experiments/e/events", body)
	if !strings.Contains(string(r.env.Data), `"accepted":0,"duplicates":3`) {
		t.Fatalf("retry: %s", r.env.Data)
	}
	f.do(t, "POST", "/api/v1/experiments/e/pause", nil)
	r = f.do(t, "POST", "/api/v1/experiments/e/events", []byte(`{"event_name":"x"}`))
	if !strings.Contains(string(r.env.Data), `"dropped_paused":1`) {
		t.Fatalf("paused: %s", r.env.Data)
	}
	for res, n := range map[string]float64{"accepted": 2, "duplicate": 4, "dropped_paused": 1, "unpriced": 1} {
		t.Run(res, func(t *testing.T) {
			if got := testutil.ToFloat64(f.api.ingested.WithLabelValues(res)); got != n {
				t.Errorf("crucible_ingest_events_total{result=%q} = %v, want %v", res, got, n)
			}
		})
	}
}

func TestEventsQuery(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"q","name":"Q","condition":"c1"}`))
	base := time.Now().Add(-time.Minute).UnixMicro()
	var lines []string
	for i := range 6 {
		lines = append(lines, `{"event_name":"a.b","event_id":"id`+itoa(int64(i))+`","timestamp":`+itoa(base+int64(5-i)*1000)+`,"success":`+[]string{"true", "false"}[i%2]+`}`)
	}
	f.do(t, "POST", "/api/v1/experiments/q/events", []byte(strings.Join(lines, "\n")), "Content-Type", "application/x-ndjson")
	cases := []struct {
		query string
		ids   string
		code  int
	}{
		{"", "id5,id4,id3,id2,id1,id0", 200},
		{"?success=true", "id4,id2,id0", 200},
		{"?from=" + itoa(base+1000) + "&to=" + itoa(base+3000), "id4,id3,id2", 200},
		{"?from=" + time.UnixMicro(base+4000).UTC().Format(time.RFC3339Nano), "id1,id0", 200},
		{"?last_n=2", "id1,id0", 200},
		{"?limit=2", "id5,id4", 200},
		{"?last=1h", "id5,id4,id3,id2,id1,id0", 200},
		{"?condition=c2", "", 200},
		{"?event=a.b&condition=c1&limit=1", "id5", 200},
		{"?success=maybe", "", 400},
		{"?from=yesterday", "", 400},
		{"?last=-5m", "", 400},
		{"?limit=0", "", 400},
	}
	for _, c := range cases {
		t.Run("events"+c.query, func(t *testing.T) {
			r := f.do(t, "GET", "/api/v1/experiments/q/events"+c.query, nil)
			if r.code != c.code {
				t.Errorf("%s: code %d, want %d (%s)", c.query, r.code, c.code, r.env.Error)
				return
			}
			if c.code != 200 {
				return
			}
			var evs []struct {
				EventID      string `json:"event_id"`
				ExperimentID string `json:"experiment_id"`
				Condition    string `json:"condition"`
			}
			if err := json.Unmarshal(r.env.Data, &evs); err != nil { // or an empty answer passes for no events
				t.Fatalf("%s: %v: %s", c.query, err, r.env.Data)
			}
			var ids []string
			for _, e := range evs {
				ids = append(ids, e.EventID)
				if e.ExperimentID != "q" || e.Condition != "c1" {
					t.Errorf("event without experiment fields: %+v", e)
				}
			}
			if strings.Join(ids, ",") != c.ids {
				t.Errorf("%s: got %v, want %s", c.query, ids, c.ids)
			}
		})
	}
}

func TestHealthReadyReload(t *testing.T) {
	f := newFixture(t, false)
	if r := f.do(t, "GET", "/-/healthy", nil); r.code != 200 {
		t.Fatalf("healthy: %d", r.code)
	}
	r := f.do(t, "GET", "/-/ready", nil)
	if r.code != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("ready before open: %d", r.code)
	}
	if r := f.do(t, "POST", "/api/v1/experiments", []byte(`{"name":"x"}`)); r.code != 503 || r.env.ErrorType != "unavailable" {
		t.Fatalf("create before ready: %d %s", r.code, r.env.ErrorType)
	}
	if err := f.manager.Open(); err != nil {
		t.Fatal(err)
	}
	if r := f.do(t, "GET", "/-/ready", nil); r.code != 200 {
		t.Fatalf("ready after open: %d", r.code)
	}
	if r := f.do(t, "POST", "/-/reload", nil); r.code != 200 || f.reloads != 1 {
		t.Fatalf("reload: %d", r.code)
	}
	f.reload = errors.New("bad file")
	if r := f.do(t, "POST", "/-/reload", nil); r.code != 400 || !strings.Contains(r.env.Error, "bad file") {
		t.Fatalf("failed reload: %d %s", r.code, r.env.Error)
	}
}

func TestStreamEndpoints(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"s","name":"S"}`))
	empty := f.do(t, "GET", "/api/v1/experiments/s/stream", nil)
	if empty.code != 200 || !strings.Contains(string(empty.env.Data), `"latency":{"count":0,"mean":null,"std_dev":null,"min":null,"max":null}`) ||
		!strings.Contains(string(empty.env.Data), `"success_rate":null`) {
		t.Fatalf("empty stream: %d %s", empty.code, empty.env.Data)
	}
	f.do(t, "POST", "/api/v1/experiments/s/events", []byte(`[{"event_name":"a","latency_ms":10,"success":true},{"event_name":"a","latency_ms":30,"success":false}]`))
	r := f.do(t, "GET", "/api/v1/experiments/s/stream", nil)
	var v struct {
		Count   int64 `json:"count"`
		Latency struct {
			Mean, StdDev, Min, Max float64
		} `json:"latency"`
		Reliability struct {
			SuccessRate float64 `json:"success_rate"`
		} `json:"reliability"`
		Events map[string]int64 `json:"events"`
	}
	json.Unmarshal(r.env.Data, &v)
	if v.Count != 2 || v.Latency.Mean != 20 || v.Latency.Min != 10 || v.Latency.Max != 30 || v.Reliability.SuccessRate != 0.5 || v.Events["a"] != 2 {
		t.Fatalf("stream: %s", r.env.Data)
	}
	r = f.do(t, "POST", "/api/v1/experiments/s/stream/reset", nil)
	if r.code != 200 || !strings.Contains(string(r.env.Data), `"count":0`) {
		t.Fatalf("reset: %d %s", r.code, r.env.Data)
	}
	if r := f.do(t, "GET", "/api/v1/experiments/nope/stream", nil); r.code != 404 {
		t.Fatalf("unknown experiment: %d", r.code)
	}
	if got := f.stored(t, "s"); got != 2 {
		t.Fatalf("a reset must leave stored events: %d", got)
	}
}

func TestAnalysisEndpoints(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"a","name":"A"}`))
	base := time.Now().Add(-time.Minute).UnixMicro()
	var lines []string
	for i := 1; i <= 10; i++ {
		lines = append(lines, fmt.Sprintf(`{"event_name":"req_llm.request.stop","timestamp":%d,"latency_ms":%d,"cost_usd":%g,"success":%v}`,
			base+int64(i)*1_000_000, 100*i, 0.001*float64(i), i <= 8))
	}
	f.do(t, "POST", "/api/v1/experiments/a/events", []byte(strings.Join(lines, "\n")), "Content-Type", "application/x-ndjson")

	var rep struct {
		Summary struct {
			TotalEvents     int     `json:"total_events"`
			DurationSeconds float64 `json:"duration_seconds"`
		} `json:"summary"`
		Latency struct {
			Mean, Median float64
			P95          float64 `json:"p95"`
		} `json:"latency"`
		Cost struct {
			Total float64 `json:"total"`
		} `json:"cost"`
		Reliability struct {
			SuccessRate float64    `json:"success_rate"`
			CI          [2]float64 `json:"success_rate_ci95"`
			SLA99       bool       `json:"sla_99"`
		} `json:"reliability"`
	}
	r := f.do(t, "GET", "/api/v1/experiments/a/metrics", nil)
	json.Unmarshal(r.env.Data, &rep)
	if r.code != 200 || rep.Summary.TotalEvents != 10 || rep.Summary.DurationSeconds != 9 || rep.Latency.Mean != 550 ||
		rep.Latency.Median != 550 || math.Abs(rep.Cost.Total-0.055) > 1e-12 || rep.Reliability.SuccessRate != 0.8 ||
		rep.Reliability.SLA99 || !(rep.Reliability.CI[0] < 0.8 && rep.Reliability.CI[1] > 0.8) {
		t.Fatalf("metrics: %d %s", r.code, r.env.Data)
	}
	r = f.do(t, "GET", "/api/v1/experiments/a/metrics?success=false", nil)
	json.Unmarshal(r.env.Data, &rep)
	if rep.Summary.TotalEvents != 2 || rep.Latency.Mean != 950 {
		t.Fatalf("filtered metrics: %s", r.env.Data)
	}
	var wins []struct {
		EventCount int `json:"event_count"`
	}
	r = f.do(t, "GET", "/api/v1/experiments/a/windows?size=5s&step=5s", nil)
	json.Unmarshal(r.env.Data, &wins)
	if r.code != 200 || len(wins) != 2 || wins[0].EventCount+wins[1].EventCount != 10 {
		t.Fatalf("windows: %d %s", r.code, r.env.Data)
	}
	for _, c := range []struct {
		path string
		code int
	}{
		{"/api/v1/experiments/a/windows?size=1m&step=2m", 400},
		{"/api/v1/experiments/a/windows?size=-1m", 400},
		{"/api/v1/experiments/nope/metrics", 404},
		{"/api/v1/experiments/nope/windows", 404},
		{"/api/v1/experiments/a/metrics?from=yesterday", 400},
	} {
		t.Run(c.path, func(t *testing.T) {
			if r := f.do(t, "GET", c.path, nil); r.code != c.code {
				t.Errorf("%s: %d, want %d", c.path, r.code, c.code)
			}
		})
	}
}

func TestCompareEndpoint(t *testing.T) {
	f := newFixture(t, true)
	base := time.Now().Add(-time.Minute).UnixMicro()
	for k, id := range []string{"ctl", "trt", "empty"} {
		f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"`+id+`","name":"`+id+`"}`))
		if id == "empty" {
			continue
		}
		var lines []string
		for i := range 200 {
			lines = append(lines, fmt.Sprintf(`{"event_name":"x","timestamp":%d,"latency_ms":%d,"cost_usd":0.01,"success":%v}`,
				base+int64(i)*1000, 100+i+k*30, i%10 != 0))
		}
		f.do(t, "POST", "/api/v1/experiments/"+id+"/events", []byte(strings.Join(lines, "\n")), "Content-Type", "application/x-ndjson")
	}
	var out struct {
		Experiments []string `json:"experiments"`
		Individual  []struct {
			Summary struct {
				TotalEvents int `json:"total_events"`
			} `json:"summary"`
		} `json:"individual"`
		Comparison map[string]struct {
			Latency struct {
				DiffMean     float64    `json:"diff_mean"`
				WelchP       float64    `json:"welch_p"`
				WelchPHolm   *float64   `json:"welch_p_holm"`
				DiffMedianCI [2]float64 `json:"diff_median_ci95"`
				Resamples    int        `json:"bootstrap_resamples"`
			} `json:"latency"`
			EventCountDifference int `json:"event_count_difference"`
		} `json:"comparison"`
	}
	r := f.do(t, "GET", "/api/v1/compare?experiments=ctl,trt,empty&bootstrap_resamples=300&seed=9", nil)
	json.Unmarshal(r.env.Data, &out)
	c := out.Comparison["trt"]
	if r.code != 200 || len(out.Individual) != 3 || out.Individual[1].Summary.TotalEvents != 200 || c.Latency.DiffMean != 30 ||
		c.Latency.WelchPHolm == nil || c.Latency.Resamples != 300 || !(c.Latency.DiffMedianCI[0] <= 30 && 30 <= c.Latency.DiffMedianCI[1]) {
		t.Fatalf("compare: %d %s", r.code, r.env.Data)
	}
	// An experiment without events compares to nulls, not to an error.
	if e := out.Comparison["empty"]; e.EventCountDifference != -200 || !strings.Contains(string(r.env.Data), `"diff_mean":null`) {
		t.Fatalf("empty side: %s", r.env.Data)
	}
	again := f.do(t, "GET", "/api/v1/compare?experiments=ctl,trt,empty&bootstrap_resamples=300&seed=9", nil)
	if string(again.env.Data) != string(r.env.Data) {
		t.Fatal("the same seed must give the same answer")
	}
	for _, c := range []struct {
		q    string
		code int
	}{
		{"experiments=ctl", 400},
		{"experiments=ctl,ctl", 400},
		{"experiments=ctl,nope", 404},
		{"experiments=ctl,bad$id", 400},
		{"experiments=ctl,trt&bootstrap_resamples=-1", 400},
		{"experiments=ctl,trt&seed=0", 400},
	} {
		t.Run(c.q, func(t *testing.T) {
			if r := f.do(t, "GET", "/api/v1/compare?"+c.q, nil); r.code != c.code {
				t.Errorf("%s: %d, want %d", c.q, r.code, c.code)
			}
		})
	}
}
