package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
)

func TestGateUsage(t *testing.T) {
	dir := t.TempDir()
	ok := gateFlags{storagePath: dir, format: "table", baseline: "a", candidate: "b", checks: []string{"latency_mean:5%"}, resamples: 100, seed: 1, timeout: time.Second}
	for _, c := range []struct {
		name string
		edit func(*gateFlags)
		want string
	}{
		{"no check", func(g *gateFlags) { g.checks = nil }, "at least one --max-regression"},
		{"bad check", func(g *gateFlags) { g.checks = []string{"latency_mean:5%", "latency_mean"} }, `--max-regression: regression check "latency_mean"`},
		{"unknown metric", func(g *gateFlags) { g.checks = []string{"tokens:5"} }, `regression check "tokens:5": unknown metric "tokens"`},
		{"both sources", func(g *gateFlags) { g.url = "http://localhost:9477" }, "exactly one of --storage.path"},
		{"no source", func(g *gateFlags) { g.storagePath = "" }, "exactly one of --storage.path"},
		{"same experiment", func(g *gateFlags) { g.candidate = "a" }, "both a"},
		{"seed", func(g *gateFlags) { g.seed = 0 }, "--seed"},
		{"resamples", func(g *gateFlags) { g.resamples = -1 }, "--bootstrap-resamples"},
		{"url scheme", func(g *gateFlags) { g.storagePath, g.url = "", "localhost:9477" }, "--url=localhost:9477: want the sidecar's address"},
		{"url query", func(g *gateFlags) { g.storagePath, g.url = "", "http://localhost:9477/?experiments=a,b" }, "without a query"},
		{"unknown experiment", func(g *gateFlags) {}, "not found"},
		{"invalid id", func(g *gateFlags) { g.baseline = "a$" }, `invalid experiment id "a$"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			gf := ok
			c.edit(&gf)
			var stdout, stderr bytes.Buffer
			if code := runGate(gf, &stdout, &stderr); code != gateUsage || !strings.Contains(stderr.String(), c.want) {
				t.Errorf("exit %d, stderr %q; want 2 with %q", code, stderr.String(), c.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed verdicts without deciding: %s", stdout.String())
			}
		})
	}
}

// TestFetchComparison: gate asks the sidecar under the URL's path (its
// route prefix) for a reproducible comparison, with the URL's credentials,
// and explains what it gets instead of a comparison without showing the
// password.
func TestFetchComparison(t *testing.T) {
	opts := analysis.CompareOptions{Resamples: 100, Seed: 7}
	report := experiment.CompareReport{
		Experiments: []string{"a", "b"},
		Individual:  []analysis.Report{analysis.Analyze(nil), analysis.Analyze(nil)},
		Comparison:  map[string]analysis.Comparison{"b": analysis.Compare(nil, [][]analysis.Point{nil}, opts)[0]},
	}
	good, err := json.Marshal(map[string]any{"status": "success", "data": report})
	if err != nil {
		t.Fatal(err)
	}
	var got *http.Request
	answer := func(code int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got = r
			w.WriteHeader(code)
			w.Write([]byte(body))
		}
	}
	for _, c := range []struct {
		name    string
		path    string // of --url, after the server's address
		handler http.HandlerFunc
		want    string // in the error; "" for none
	}{
		{"prefix", "/crucible/", answer(200, string(good)), ""},
		{"no prefix", "", answer(200, string(good)), ""},
		{"html", "/crucible", answer(404, "404 page not found\n"), "404 Not Found, not the API's JSON (is --url the sidecar's address with its --web.route-prefix?)"},
		{"error envelope", "", answer(404, `{"status":"error","errorType":"not_found","error":"experiment not found: b"}`), "404 Not Found (not_found): experiment not found: b"},
		{"not a comparison", "", answer(200, `{"status":"success","data":{"experiments":["a","b"],"individual":[],"comparison":{}}}`), "lacks the comparison of b with a"},
		{"bad data", "", answer(200, `{"status":"success","data":{"experiments":"a"}}`), "does not decode"},
		{"too slow", "", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, "cannot reach the sidecar"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got = nil
			srv := httptest.NewServer(c.handler)
			defer srv.Close()
			base := strings.Replace(srv.URL, "://", "://ci:s3cret@", 1) + c.path
			rep, err := fetchComparison(base, 200*time.Millisecond, []string{"a", "b"}, opts)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := rep.Comparison["b"]; !ok || len(rep.Individual) != 2 {
					t.Errorf("decoded %+v", rep)
				}
			} else if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			} else if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", err)
			}
			if got == nil {
				return
			}
			user, pass, _ := got.BasicAuth()
			q := got.URL.Query()
			wantPath := strings.TrimSuffix(c.path, "/") + "/api/v1/compare"
			if got.URL.Path != wantPath || q.Get("experiments") != "a,b" || q.Get("seed") != "7" || q.Get("bootstrap_resamples") != "100" ||
				user != "ci" || pass != "s3cret" {
				t.Errorf("asked %s (user %q), want %s?experiments=a,b&seed=7&bootstrap_resamples=100 as ci", got.URL, user, wantPath)
			}
		})
	}
}

// TestGateOffline: gate's verdicts and exit codes on a data directory, and
// compare --pairs on it.
func TestGateOffline(t *testing.T) {
	dir := storeRuns(t, map[string]string{"base": evalRun(0), "cand": evalRun(1)})
	gf := gateFlags{storagePath: dir, format: "json", baseline: "base", candidate: "cand", resamples: 200, seed: 1, timeout: time.Second}
	for _, c := range []struct {
		name     string
		checks   []string
		code     int
		verdicts []string // of the checks, in order
		methods  []string
		stderr   string
	}{
		{"pass", []string{"latency_mean:5%", "latency_p95:10%", "success_rate:0.05", "score:judge.helpfulness:0.01"}, gatePassed,
			[]string{analysis.VerdictPass, analysis.VerdictPass, analysis.VerdictPass, analysis.VerdictPass}, []string{"paired_t", "bootstrap", "paired_t", "paired_t"}, ""},
		{"regress", []string{"latency_mean:5%", "score:exact_match:0.02"}, gateRegression,
			[]string{analysis.VerdictPass, analysis.VerdictRegression}, []string{"paired_t", "paired_t"}, ""},
		{"missing", []string{"latency_mean:5%", "score:no_such_score:0.1"}, gateUsage,
			[]string{analysis.VerdictPass, analysis.VerdictNoData}, []string{"paired_t", "welch"}, "score:no_such_score: no data to judge"},
		{"regress and missing", []string{"score:no_such_score:0.1", "score:exact_match:0.02"}, gateUsage,
			[]string{analysis.VerdictNoData, analysis.VerdictRegression}, []string{"welch", "paired_t"}, "score:no_such_score: no data to judge"},
	} {
		t.Run(c.name, func(t *testing.T) {
			gf.checks = c.checks
			var stdout, stderr bytes.Buffer
			code := runGate(gf, &stdout, &stderr)
			if code != c.code || !strings.Contains(stderr.String(), c.stderr) || (c.stderr == "") != (stderr.Len() == 0) {
				t.Errorf("exit %d, stderr %q; want %d with %q", code, stderr.String(), c.code, c.stderr)
			}
			var res analysis.GateResult
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatalf("%v: %s", err, stdout.String())
			}
			if res.Passed != (c.code == gatePassed) || len(res.Checks) != len(c.checks) {
				t.Fatalf("result %s", stdout.String())
			}
			for i, v := range res.Checks {
				if v.Metric+":"+v.Margin != c.checks[i] || v.Verdict != c.verdicts[i] || v.Method != c.methods[i] {
					t.Errorf("%s: %s:%s %s by %s, want %s by %s", c.checks[i], v.Metric, v.Margin, v.Verdict, v.Method, c.verdicts[i], c.methods[i])
				}
			}
		})
	}
}
