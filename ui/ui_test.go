package ui_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/api"
	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
	"github.com/crucible-telemetry/crucible-telemetry/ui"
)

// fixture is the sidecar's main handler, API and pages together as the
// binary serves them, over a Manager on a temporary directory.
type fixture struct {
	srv     *httptest.Server
	url     string // the server and the route prefix
	manager *experiment.Manager
}

func newFixture(t *testing.T, prefix string, admin bool) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := experiment.NewManager(experiment.Options{
		Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), Metrics: collector.New(reg, collector.Options{}),
		Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: reg},
	})
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	a := api.New(api.Options{Manager: m, Prices: pricing.NewHolder(pricing.Default()), MaxRequestBytes: 1 << 20, Registerer: reg, EnableAdminAPI: admin})
	h, err := a.Handler(api.RouteOptions{Prefix: prefix, TelemetryPath: "/metrics", Metrics: metricsStub})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: httptest.NewServer(h), manager: m}
	f.url = f.srv.URL + prefix
	t.Cleanup(func() { f.srv.Close(); m.Close() })
	return f
}

func (f *fixture) get(t *testing.T, p string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(f.url + p)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// data GETs an API path and returns its envelope's data, decoded.
func (f *fixture) data(t *testing.T, p string) any {
	t.Helper()
	resp, b := f.get(t, p)
	var env struct {
		Status string `json:"status"`
		Data   any    `json:"data"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&env); err != nil || resp.StatusCode != 200 || env.Status != "success" {
		t.Fatalf("GET %s: %d %s (%v)", p, resp.StatusCode, b, err)
	}
	return env.Data
}

func (f *fixture) post(t *testing.T, p, body string) {
	t.Helper()
	resp, err := http.Post(f.url+p, "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 || bytes.Contains(b, []byte(`"rejected":[{`)) {
		t.Fatalf("POST %s: %d %s", p, resp.StatusCode, b)
	}
}

// seed creates a control and a treatment that answer the same samples,
// with latency, cost, success and two scores, as the demo does.
func (f *fixture) seed(t *testing.T, n int) {
	t.Helper()
	for arm, id := range []string{"ctl", "trt"} {
		f.post(t, "/api/v1/experiments", fmt.Sprintf(`{"id":%q,"name":"Arm %s","condition":%q,"tags":["ab"],"sample_size":%d}`, id, id, id, 4*n))
		var b strings.Builder
		ts := int64(1764220000000000)
		for i := range n {
			lat := 100 + float64((i*37+arm*11)%90) - 20*float64(arm)
			ok := (i+arm)%9 != 0
			fmt.Fprintf(&b, `{"event_name":"req_llm.request.stop","timestamp":%d,"latency_ms":%v,"cost_usd":%v,"success":%v,"scores":{"exact_match":%v,"judge.helpfulness":%v},"metadata":{"model":"m%d","sample_id":"q-%d","tokens":{"prompt":%d,"completion":%d}}}`+"\n",
				ts+int64(i)*250000, lat, 0.001*float64(1+i%5)/float64(1+arm), ok, ok, 0.5+float64((i*13)%50)/100-0.03*float64(arm), arm, i, 100+i, 50+i%7)
		}
		f.post(t, "/api/v1/experiments/"+id+"/events", b.String())
	}
}

var prefixes = []string{"", "/crucible"}

// metricsStub stands for /metrics, which the pages link to.
var metricsStub = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "# metrics\n") })

// TestPages: each page is HTML whose <base> is the route prefix, which
// every relative URL of the page starts from, under a policy that allows
// nothing from elsewhere.
func TestPages(t *testing.T) {
	for _, prefix := range prefixes {
		t.Run("prefix="+prefix, func(t *testing.T) {
			f := newFixture(t, prefix, false)
			f.seed(t, 20)
			for _, c := range []struct{ path, script string }{
				{"/", "experiments"},
				{"/experiments/ctl", "experiment"},
				{"/compare", "compare"},
				{"/compare?experiments=ctl,trt", "compare"},
			} {
				resp, b := f.get(t, c.path)
				page := string(b)
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
					t.Fatalf("GET %s: %d %s", c.path, resp.StatusCode, resp.Header.Get("Content-Type"))
				}
				for _, want := range []string{
					`<base href="` + prefix + `/">`,
					`<script type="module" src="assets/js/` + c.script + `.js">`,
					`<script src="assets/vendor/uplot/uPlot.iife.min.js" defer>`,
					`href="` + prefix + `/metrics"`,
				} {
					if !strings.Contains(page, want) {
						t.Errorf("GET %s lacks %s", c.path, want)
					}
				}
				if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'self'") {
					t.Errorf("GET %s: Content-Security-Policy %q", c.path, csp)
				}
				// Every URL the page names is on the sidecar, and answers.
				for _, ref := range refs(page) {
					u := resolve(t, f.url+c.path, prefix, ref)
					if u == "" {
						continue
					}
					resp, err := http.Get(u)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("GET %s: %s (%s) answers %d", c.path, ref, u, resp.StatusCode)
					}
				}
			}
			if _, b := f.get(t, "/experiments/ctl"); !strings.Contains(string(b), `data-experiment="ctl"`) {
				t.Errorf("the experiment page does not name its experiment")
			}
			for _, p := range []string{"/nope", "/experiments/", "/assets/", "/assets/js/", "/assets/nope.js", "/ui/"} {
				if resp, _ := f.get(t, p); resp.StatusCode != 404 {
					t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
				}
			}
			if prefix != "" {
				// Beside the prefix, nothing of the pages answers.
				for _, p := range []string{"/experiments/ctl", "/compare", "/assets/app.css"} {
					resp, err := http.Get(f.srv.URL + p)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != 404 {
						t.Errorf("GET %s without the prefix: %d, want 404", p, resp.StatusCode)
					}
				}
			}
		})
	}
}

var refPattern = regexp.MustCompile(`(?:src|href)="([^"]*)"`)

func refs(page string) []string {
	var out []string
	for _, m := range refPattern.FindAllStringSubmatch(page, -1) {
		out = append(out, m[1])
	}
	return out
}

// resolve returns the absolute URL of ref on a page at pageURL with
// <base href="prefix/">, or "" for a fragment.
func resolve(t *testing.T, pageURL, prefix, ref string) string {
	t.Helper()
	if strings.HasPrefix(ref, "#") {
		return ""
	}
	r, err := url.Parse(ref)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	if r.Scheme != "" || r.Host != "" {
		t.Errorf("%s leaves the sidecar", ref)
		return ""
	}
	page, _ := url.Parse(pageURL)
	base := &url.URL{Scheme: page.Scheme, Host: page.Host, Path: prefix + "/"}
	return base.ResolveReference(r).String()
}

// TestDeleteNeedsAdminAPI: the delete button is on the page only when
// the API would take the DELETE.
func TestDeleteNeedsAdminAPI(t *testing.T) {
	for _, admin := range []bool{false, true} {
		f := newFixture(t, "", admin)
		_, b := f.get(t, "/experiments/x")
		if got := strings.Contains(string(b), `data-action="delete"`); got != admin {
			t.Errorf("admin API %v: delete button %v", admin, got)
		}
		if want := fmt.Sprintf(`data-admin-api="%v"`, admin); !strings.Contains(string(b), want) {
			t.Errorf("admin API %v: page lacks %s", admin, want)
		}
	}
}

// wantType is the Content-Type each kind of asset must be served with: a
// module script of another type is refused by the browser.
var wantType = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml",
	"":     "text/plain; charset=utf-8",
}

// TestAssets: every embedded file is served, byte for byte, with its
// content type, under the route prefix.
func TestAssets(t *testing.T) {
	for _, prefix := range prefixes {
		t.Run("prefix="+prefix, func(t *testing.T) {
			f := newFixture(t, prefix, false)
			n := 0
			err := fs.WalkDir(ui.Assets(), ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				n++
				want, err := fs.ReadFile(ui.Assets(), p)
				if err != nil {
					return err
				}
				resp, got := f.get(t, "/assets/"+p)
				if resp.StatusCode != 200 || !bytes.Equal(got, want) {
					t.Errorf("GET /assets/%s: %d, %d bytes, want %d", p, resp.StatusCode, len(got), len(want))
				}
				wt, ok := wantType[path.Ext(p)]
				if !ok {
					t.Errorf("%s: no content type is known for it", p)
				}
				if ct := resp.Header.Get("Content-Type"); ct != wt {
					t.Errorf("GET /assets/%s: Content-Type %q, want %q", p, ct, wt)
				}
				if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
					t.Errorf("GET /assets/%s: no nosniff", p)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n < 8 {
				t.Fatalf("only %d assets", n)
			}
		})
	}
}

// TestModuleImportsResolve: every import of a module names an embedded
// module, so no page fails on a missing file.
func TestModuleImportsResolve(t *testing.T) {
	imp := regexp.MustCompile(`(?m)^\s*import\s[^;]*?from\s+"([^"]+)"|^\s*import\s+"([^"]+)"`)
	err := fs.WalkDir(ui.Assets(), "js", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(ui.Assets(), p)
		if err != nil {
			return err
		}
		for _, m := range imp.FindAllStringSubmatch(string(b), -1) {
			spec := m[1] + m[2]
			if !strings.HasPrefix(spec, "./") && !strings.HasPrefix(spec, "../") {
				t.Errorf("%s imports %q: only relative module paths resolve offline", p, spec)
				continue
			}
			target := path.Join(path.Dir(p), spec)
			if _, err := fs.Stat(ui.Assets(), target); err != nil {
				t.Errorf("%s imports %q: %v", p, spec, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// licenceComment is a comment that carries a licence or a banner:
// /*! ... */ (kept by minifiers for that) or one that says "license".
var licenceComment = regexp.MustCompile(`(?s)/\*!.*?\*/|/\*[^*]*?(?i:licen[cs]e).*?\*/`)

// svgNamespace names the SVG namespace; it is an identifier that is never
// fetched.
const svgNamespace = "http://www.w3.org/2000/svg"

// TestNoExternalURLs: nothing embedded names a place on the network
// outside licence texts, so the pages work offline (and the
// Content-Security-Policy would refuse it anyway).
func TestNoExternalURLs(t *testing.T) {
	url := regexp.MustCompile(`(?i)https?://[^\s"'<>)]*|(?:src|href|action)\s*=\s*["']//|url\(\s*["']?//|@import\s+["']?//`)
	sub, err := fs.Sub(uiFiles(), ".")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(path.Base(p), "LICENSE") {
			return nil // a licence text names its origin
		}
		n++
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		text := licenceComment.ReplaceAllString(string(b), "")
		text = strings.ReplaceAll(text, svgNamespace, "")
		for _, m := range url.FindAllString(text, -1) {
			t.Errorf("%s names %q", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Fatalf("only %d files checked", n)
	}
}

func uiFiles() fs.FS { return ui.Files() }

// TestNoExternalURLsCatches: the check above finds what it is meant to.
func TestNoExternalURLsCatches(t *testing.T) {
	for _, s := range []string{`<script src="https://cdn.example/x.js">`, `@import "//fonts.example/a.css";`, `fetch("http://x")`} {
		text := licenceComment.ReplaceAllString(s, "")
		if !regexp.MustCompile(`(?i)https?://|src="//|@import\s+["']?//`).MatchString(text) {
			t.Errorf("%s is not caught", s)
		}
	}
	if got := licenceComment.ReplaceAllString(`/*! https://github.com/x (MIT) */var a=1;`, ""); strings.Contains(got, "http") {
		t.Errorf("a banner comment is not skipped: %s", got)
	}
}

// TestLatencyHistogram: the distribution the experiment page draws holds
// every event with a latency, between the analysis' min and max.
func TestLatencyHistogram(t *testing.T) {
	f := newFixture(t, "/crucible", false)
	f.seed(t, 200)
	var h ui.Histogram
	decode(t, f.data(t, "/ui/experiments/ctl/latency-histogram"), &h)
	var m struct {
		Latency struct {
			Count int64   `json:"count"`
			Min   float64 `json:"min"`
			Max   float64 `json:"max"`
		} `json:"latency"`
	}
	decode(t, f.data(t, "/api/v1/experiments/ctl/metrics"), &m)
	var sum int64
	for _, b := range h.Bins {
		sum += b.Count
	}
	if h.Count != m.Latency.Count || sum != h.Count {
		t.Errorf("histogram count %d (bins %d), analysis %d", h.Count, sum, m.Latency.Count)
	}
	if h.Min == nil || h.Bins[0].Lower > *h.Min || h.Bins[len(h.Bins)-1].Upper < *h.Max {
		t.Errorf("bins do not cover [%v, %v]: %+v", h.Min, h.Max, h.Bins)
	}

	// An experiment without events has no bins; an unknown one is a 404
	// in the API's envelope; parameters are refused.
	f.post(t, "/api/v1/experiments", `{"id":"empty","name":"Empty"}`)
	decode(t, f.data(t, "/ui/experiments/empty/latency-histogram"), &h)
	if h.Count != 0 || len(h.Bins) != 0 || h.Min != nil {
		t.Errorf("empty experiment: %+v", h)
	}
	for p, want := range map[string]int{
		"/ui/experiments/nope/latency-histogram":       404,
		"/ui/experiments/bad$id/latency-histogram":     400,
		"/ui/experiments/ctl/latency-histogram?bins=3": 400,
	} {
		resp, b := f.get(t, p)
		var env struct{ Status, ErrorType, Error string }
		json.Unmarshal(b, &env)
		if resp.StatusCode != want || env.Status != "error" || env.Error == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %s, want %d in the error envelope", p, resp.StatusCode, b, want)
		}
	}
}

func decode(t *testing.T, v any, into any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
}

// pointer resolves a JSON pointer (RFC 6901) in v.
func pointer(v any, p string) (any, bool) {
	if p == "" {
		return v, true
	}
	for _, tok := range strings.Split(p[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[tok]; !ok {
				return nil, false
			}
		case []any:
			var i int
			if _, err := fmt.Sscan(tok, &i); err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// TestJSONThePagesRead: every field the pages read is in the API's
// answers, with the type the page expects ("num" a number or null, "int"
// an integer, "int?" one or null, "ci" an interval of two numbers or nulls). A field that
// moves or changes type is caught here, before a page shows a blank.
func TestJSONThePagesRead(t *testing.T) {
	f := newFixture(t, "", false)
	f.seed(t, 60)
	f.post(t, "/api/v1/experiments", `{"id":"trt2","name":"Arm trt2","condition":"trt2"}`)
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, `{"event_name":"req_llm.request.stop","latency_ms":%d,"success":true,"scores":{"exact_match":1},"metadata":{"sample_id":"q-%d"}}`+"\n", 50+i, i)
	}
	f.post(t, "/api/v1/experiments/trt2/events", b.String())

	type want map[string]string
	score := func(n string) string { return "/" + strings.ReplaceAll(n, "/", "~1") }
	checks := []struct {
		path   string
		fields want
	}{
		{"/api/v1/experiments", want{"/0/id": "str", "/0/name": "str", "/0/status": "str", "/0/condition": "str", "/0/tags": "list",
			"/0/events_stored": "int", "/0/sample_size": "int?", "/0/stop_at_sample_size": "bool"}},
		{"/api/v1/experiments?status=running&tag=ab", want{"/0/id": "str"}},
		{"/api/v1/experiments/ctl", want{"/id": "str", "/name": "str", "/hypothesis": "str", "/status": "str", "/condition": "str", "/tags": "list",
			"/events_stored": "int", "/sample_size": "int?", "/stop_at_sample_size": "bool", "/started_at": "str", "/stopped_at": "any", "/paused_at": "any",
			"/active_seconds": "num", "/paused_seconds": "num", "/pause_count": "int", "/sampling_rate": "num", "/storage/status": "str"}},
		{"/api/v1/experiments/ctl/metrics", want{
			"/summary/total_events": "int", "/summary/time_range/start": "int", "/summary/time_range/end": "int", "/summary/duration_seconds": "num",
			"/events/req_llm.request.stop/count": "int",
			"/latency/count":                     "int", "/latency/mean": "num", "/latency/median": "num", "/latency/std_dev": "num", "/latency/min": "num", "/latency/max": "num",
			"/latency/p50": "num", "/latency/p90": "num", "/latency/p95": "num", "/latency/p99": "num",
			"/cost/count": "int", "/cost/total": "num", "/cost/mean_per_request": "num", "/cost/median_per_request": "num",
			"/cost/cost_per_1k_requests": "num", "/cost/cost_per_1m_requests": "num",
			"/reliability/total_requests": "int", "/reliability/judged": "int", "/reliability/successful": "int", "/reliability/failed": "int",
			"/reliability/success_rate": "num", "/reliability/success_rate_ci95": "ci", "/reliability/failure_rate": "num",
			"/reliability/sla_99": "bool", "/reliability/sla_999": "bool", "/reliability/sla_9999": "bool",
			"/tokens/count": "int", "/tokens/total_prompt": "int", "/tokens/total_completion": "int", "/tokens/total": "int",
			"/tokens/mean_prompt": "num", "/tokens/mean_completion": "num", "/tokens/mean_total": "num",
			"/scores" + score("judge.helpfulness") + "/count": "int", "/scores" + score("judge.helpfulness") + "/mean": "num",
			"/scores" + score("judge.helpfulness") + "/mean_ci95": "ci", "/scores" + score("judge.helpfulness") + "/std_dev": "num",
			"/scores" + score("judge.helpfulness") + "/median": "num", "/scores" + score("judge.helpfulness") + "/min": "num",
			"/scores" + score("judge.helpfulness") + "/max": "num",
		}},
		{"/api/v1/experiments/ctl/metrics?from=1764220000000000", want{"/summary/time_range/end": "int"}},
		{"/api/v1/experiments/ctl/windows?size=5s", want{"/0/window_start": "int", "/0/window_end": "int", "/0/event_count": "int",
			"/0/mean_latency": "num", "/0/p50_latency": "num", "/0/p95_latency": "num", "/0/total_cost": "num",
			"/0/success_count": "int", "/0/failure_count": "int"}},
		{"/api/v1/experiments/ctl/events?last_n=15", want{"/0/event_id": "str", "/0/timestamp": "int", "/0/event_name": "str", "/0/model": "str",
			"/0/sample_id": "str", "/0/latency_ms": "num", "/0/cost_usd": "num", "/0/success": "bool", "/0/scores/exact_match": "num"}},
		{"/api/v1/experiments/ctl/events?from=1764220000000000&last_n=15", want{"/0/event_id": "str"}},
		{"/ui/experiments/ctl/latency-histogram", want{"/count": "int", "/width": "num", "/bins/0/lower": "num", "/bins/0/upper": "num", "/bins/0/count": "int"}},
	}
	cmp := "/api/v1/compare?experiments=ctl,trt,trt2"
	cw := want{"/experiments/0": "str", "/srm/counts/0": "int", "/srm/expected_shares/0": "num", "/srm/chi2": "num", "/srm/df": "int",
		"/srm/p": "num", "/srm/mismatch": "bool",
		"/individual/0/summary/total_events": "int", "/individual/0/latency/mean": "num", "/individual/0/latency/p50": "num",
		"/individual/0/latency/p95": "num", "/individual/0/latency/p99": "num", "/individual/0/reliability/success_rate": "num",
		"/individual/0/cost/mean_per_request": "num", "/individual/0/cost/total": "num", "/individual/0/scores/exact_match/mean": "num"}
	for _, trt := range []string{"trt", "trt2"} {
		c := "/comparison/" + trt
		for k, v := range map[string]string{
			"/latency/diff_mean": "num", "/latency/diff_mean_ci95": "ci", "/latency/welch_p": "num", "/latency/welch_p_holm": "num",
			"/latency/mann_whitney_p": "num", "/latency/mann_whitney_p_holm": "num", "/latency/relative_change_pct": "num", "/latency/hedges_g": "num",
			"/latency/diff_median": "num", "/latency/diff_median_ci95": "ci", "/latency/diff_p95": "num", "/latency/diff_p95_ci95": "ci",
			"/latency/diff_p99": "num", "/latency/diff_p99_ci95": "ci", "/latency/bootstrap_resamples": "int", "/latency/seed": "int",
			"/latency/sequential/cs95": "ci", "/latency/sequential/p": "num",
			"/success_rate/diff": "num", "/success_rate/diff_ci95": "ci", "/success_rate/p": "num", "/success_rate/p_holm": "num",
			"/success_rate/sequential/cs95": "ci", "/success_rate/sequential/p": "num",
			"/cost/diff_mean_per_request": "num", "/cost/diff_mean_per_request_ci95": "ci", "/cost/p": "num", "/cost/p_holm": "num",
			"/cost/diff_total": "num", "/cost/baseline_cost_per_success": "num", "/cost/treatment_cost_per_success": "num",
			"/cost/sequential/cs95": "ci", "/cost/sequential/p": "num",
			"/scores/exact_match/diff_mean": "num", "/scores/exact_match/diff_mean_ci95": "ci", "/scores/exact_match/welch_p": "num",
			"/scores/exact_match/welch_p_holm": "num", "/scores/exact_match/mann_whitney_p": "num", "/scores/exact_match/mann_whitney_p_holm": "num",
			"/scores/exact_match/sequential/cs95": "ci", "/scores/exact_match/sequential/p": "num",
			"/paired/n_pairs": "int", "/paired/latency/n": "int", "/paired/latency/diff_mean": "num", "/paired/latency/diff_mean_ci95": "ci",
			"/paired/latency/p": "num", "/paired/latency/wilcoxon_p": "num", "/paired/latency/improved": "int", "/paired/latency/regressed": "int",
			"/paired/latency/ties": "int", "/paired/success/mcnemar/b": "int", "/paired/success/mcnemar/c": "int", "/paired/success/mcnemar/p": "num",
			"/paired/scores/exact_match/diff_mean": "num", "/paired/cost/n": "int",
		} {
			cw[c+k] = v
		}
	}
	checks = append(checks,
		struct {
			path   string
			fields want
		}{cmp, cw},
		struct {
			path   string
			fields want
		}{"/api/v1/compare/pairs?experiments=ctl,trt&metric=score:judge.helpfulness&limit=50", want{"/improved": "int", "/regressed": "int", "/ties": "int",
			"/pairs/0/sample_id": "str", "/pairs/0/baseline": "num", "/pairs/0/treatment": "num", "/pairs/0/diff": "num"}},
	)
	for _, c := range checks {
		data := f.data(t, c.path)
		for p, typ := range c.fields {
			v, ok := pointer(data, p)
			if !ok {
				t.Errorf("GET %s: no %s", c.path, p)
				continue
			}
			if !ofType(v, typ) {
				t.Errorf("GET %s: %s is %#v, want %s", c.path, p, v, typ)
			}
		}
	}
}

func ofType(v any, typ string) bool {
	switch typ {
	case "any":
		return true
	case "str":
		_, ok := v.(string)
		return ok
	case "bool":
		_, ok := v.(bool)
		return ok
	case "list":
		_, ok := v.([]any)
		return ok
	case "int?":
		return v == nil || ofType(v, "int")
	case "int":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	case "num":
		if v == nil {
			return true
		}
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		x, err := n.Float64()
		return err == nil && !math.IsInf(x, 0)
	case "ci":
		l, ok := v.([]any)
		return ok && len(l) == 2 && ofType(l[0], "num") && ofType(l[1], "num")
	}
	return false
}
