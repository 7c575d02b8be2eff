package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crucible-telemetry/crucible-telemetry/query"
)

// TestEveryRouteUnderThePrefix requests every route the main listener
// registers, without a route prefix and under one, and checks that each
// reaches its handler there and nowhere else.
func TestEveryRouteUnderThePrefix(t *testing.T) {
	if testing.Short() {
		t.Skip("two one-second CPU profiles among the routes: slow; runs without -short")
	}
	for _, prefix := range []string{"", "/crucible"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			f := newFixtureWith(t, true, Options{EnableAdminAPI: true})
			for _, body := range []string{`{"id":"e","name":"E"}`, `{"id":"e2","name":"E2"}`, `{"id":"l","name":"L"}`,
				`{"id":"arc","name":"Arc"}`, `{"id":"d","name":"D"}`} {
				if r := f.do(t, "POST", "/api/v1/experiments", []byte(body)); r.code != 201 {
					t.Fatalf("create %s: %d %s", body, r.code, r.env.Error)
				}
			}
			for _, id := range []string{"e", "e2"} {
				if r := f.do(t, "POST", "/api/v1/experiments/"+id+"/events", []byte(ev+"\n"+ev)); r.code != 200 {
					t.Fatalf("ingest: %d %s", r.code, r.env.Error)
				}
			}
			f.api.PromQL = query.New(query.Options{Targets: query.Experiments(f.manager)})
			h, err := f.api.Handler(RouteOptions{Prefix: prefix, TelemetryPath: "/metrics", Metrics: promhttp.HandlerFor(f.reg, promhttp.HandlerOpts{}), Pprof: true})
			if err != nil {
				t.Fatal(err)
			}
			rt := h.(*router)
			srv := httptest.NewServer(h)
			defer srv.Close()
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

			type row struct {
				method, path, body string
				code               int
				want               string // in the body, or the Location header of a redirect
			}
			rows := []row{
				{"GET", "/-/healthy", "", 200, "Healthy."},
				{"GET", "/-/ready", "", 200, "Ready."},
				{"POST", "/-/reload", "", 200, `"success"`},
				{"PUT", "/-/reload", "", 200, `"success"`},
				{"GET", "/api/v1/experiments", "", 200, `"id":"e"`},
				{"POST", "/api/v1/experiments", `{"id":"new","name":"New"}`, 201, `"id":"new"`},
				{"GET", "/api/v1/experiments/e", "", 200, `"events_stored":2`},
				{"POST", "/api/v1/experiments/l/pause", "", 200, `"status":"paused"`},
				{"POST", "/api/v1/experiments/l/resume", "", 200, `"status":"running"`},
				{"POST", "/api/v1/experiments/l/stop", "", 200, `"status":"stopped"`},
				{"POST", "/api/v1/experiments/arc/archive", "", 200, `"status":"archived"`},
				{"DELETE", "/api/v1/experiments/d", "", 200, `"success"`},
				{"POST", "/api/v1/events", `{"event_name":"x","experiment_id":"e"}`, 200, `"accepted":1`},
				{"POST", "/api/v1/experiments/e/events", `{"event_name":"x"}`, 200, `"accepted":1`},
				{"GET", "/api/v1/experiments/e/events", "", 200, `"event_name":"x"`},
				// OTLP/HTTP, without a Content-Type: routed, and refused as OTLP refuses.
				{"POST", "/v1/traces", "{}", 415, `unsupported media type`},
				{"POST", "/v1/logs", "{}", 415, `unsupported media type`},
				{"GET", "/api/v1/experiments/e/metrics", "", 200, `"total_events":4`},
				{"GET", "/api/v1/experiments/e/windows", "", 200, `"event_count":4`},
				{"GET", "/api/v1/experiments/e/power?metric=latency&mde=5", "", 200, `"n_per_arm":`},
				{"GET", "/api/v1/experiments/e/stream", "", 200, `"count":4`},
				{"POST", "/api/v1/experiments/e/stream/reset", "", 200, `"count":0`},
				{"GET", "/api/v1/experiments/e/export", "", 200, `"event_name":"req_llm.request.stop"`},
				{"GET", "/api/v1/compare?experiments=e,e2", "", 200, `"comparison":{"e2"`},
				{"GET", "/api/v1/compare/pairs?experiments=e,e2&metric=latency", "", 200, `"key":"sample_id"`},
				{"GET", "/api/v1/event-types", "", 200, `"req_llm.request.stop"`},
				{"GET", "/api/v1/pricing", "", 200, `"gpt-4"`},
				{"GET", "/api/v1/no-such-route", "", 404, `"errorType":"not_found"`},
				// Prometheus' API takes parameters it does not know (Grafana's).
				{"GET", "/prometheus/api/v1/query?query=vector(1)&grafana_extra=1", "", 200, `"resultType":"vector"`},
				{"POST", "/prometheus/api/v1/query?query=vector(1)", "", 200, `"resultType":"vector"`},
				{"GET", "/prometheus/api/v1/query_range?query=vector(1)&start=0&end=60&step=15s", "", 200, `"resultType":"matrix"`},
				{"POST", "/prometheus/api/v1/query_range?query=vector(1)&start=0&end=60&step=15", "", 200, `"resultType":"matrix"`},
				{"GET", "/prometheus/api/v1/series?match[]=crucible_event_latency_seconds", "", 200, `"experiment_id":"e2"`},
				{"POST", "/prometheus/api/v1/series?match[]=crucible_event_latency_seconds", "", 200, `"experiment_id":"e"`},
				{"GET", "/prometheus/api/v1/labels", "", 200, `"experiment_id"`},
				{"POST", "/prometheus/api/v1/labels", "", 200, `"experiment_id"`},
				{"GET", "/prometheus/api/v1/label/experiment_id/values", "", 200, `"e2"`},
				{"POST", "/prometheus/api/v1/label/experiment_id/values", "", 200, `"e2"`},
				{"GET", "/prometheus/api/v1/status/buildinfo", "", 200, `"goVersion"`},
				{"POST", "/prometheus/api/v1/read", "not a snappy body", 400, "snappy"},
				{"GET", "/prometheus/api/v1/query?query=sum((", "", 400, `"errorType":"bad_data"`},
				{"GET", "/prometheus/api/v1/no-such-route", "", 404, `"errorType":"not_found"`},
				{"GET", "/metrics", "", 200, `crucible_ingest_events_total{result="accepted"} 6`},
				{"GET", "/", "", 200, `href="` + prefix + `/metrics"`},
				{"GET", "/debug/pprof/", "", 200, "Types of profiles available"},
				{"GET", "/debug/pprof/heap?debug=1", "", 200, "heap profile"},
				{"GET", "/debug/pprof/symbol", "", 200, "num_symbols"},
				{"GET", "/debug/pprof/trace?seconds=0.01", "", 200, ""},
				{"GET", "/debug/pprof/profile?seconds=1", "", 200, ""},
			}
			// Every path of the API answers another method with 405.
			for _, p := range rt.patterns {
				p, ok := strings.CutPrefix(p, prefix)
				if !ok || strings.Contains(p, " ") || !strings.HasPrefix(p, "/-/") && !strings.HasPrefix(p, "/api/v1/") && !strings.HasPrefix(p, "/v1/") && !strings.HasPrefix(p, "/prometheus/") ||
					p == "/api/v1/" || p == "/prometheus/api/v1/" {
					continue
				}
				path := strings.NewReplacer("{id}", "e", "{name}", "experiment_id").Replace(p)
				rows = append(rows, row{"PATCH", path, "", 405, `"method PATCH not allowed on ` + prefix + p})
			}
			if prefix != "" {
				rows = append(rows,
					row{"GET", "/", "", 302, prefix + "/"},
					row{"GET", "", "", 307, prefix + "/"}, // the prefix alone, as the mux redirects it
				)
			}

			matched := map[string]bool{}
			for _, c := range rows {
				t.Run(c.method+" "+c.path, func(t *testing.T) {
					// The root redirect lives outside the prefix; the rest under it.
					path := prefix + c.path
					if c.code == 302 {
						path = c.path
					}
					req := httptest.NewRequest(c.method, path, nil)
					if _, pattern := rt.mux.Handler(req); pattern != "" {
						matched[pattern] = true
					}
					req, _ = http.NewRequest(c.method, srv.URL+path, strings.NewReader(c.body))
					resp, err := client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					got := string(b)
					if c.code/100 == 3 {
						got = resp.Header.Get("Location")
					}
					if resp.StatusCode != c.code || !strings.Contains(got, c.want) {
						t.Errorf("%s %s: %d %.300q, want %d with %q", c.method, path, resp.StatusCode, got, c.code, c.want)
					}
					if c.code == 201 && resp.Header.Get("Location") != prefix+"/api/v1/experiments/new" {
						t.Errorf("POST %s: Location %q", path, resp.Header.Get("Location"))
					}
					if prefix != "" && c.code != 302 && c.path != "" {
						// The same route without the prefix is not there.
						resp, err := client.Get(srv.URL + c.path)
						if err != nil {
							t.Fatal(err)
						}
						resp.Body.Close()
						if want := 404; c.path == "/" {
							if resp.StatusCode != 302 {
								t.Errorf("GET / beside the prefix: %d, want the redirect", resp.StatusCode)
							}
						} else if resp.StatusCode != want {
							t.Errorf("GET %s without the prefix: %d, want %d", c.path, resp.StatusCode, want)
						}
					}
				})
			}
			for _, p := range rt.patterns {
				if !matched[p] {
					t.Errorf("route %q is not in the table", p)
				}
			}

			// The probe listener keeps its plain paths, whatever the prefix.
			probes := httptest.NewServer(f.api.Probes())
			defer probes.Close()
			for _, p := range []string{"/-/healthy", "/-/ready"} {
				t.Run("probe "+p, func(t *testing.T) {
					resp, err := http.Get(probes.URL + p)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("probe %s: %d", p, resp.StatusCode)
					}
				})
			}
		})
	}
}

// TestRoutePrefixes: the prefix is normalised as Prometheus normalises
// --web.route-prefix, and one the mux would read as a pattern is refused.
func TestRoutePrefixes(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""}, {"/", ""}, {"//", ""}, {"crucible", "/crucible"}, {"/crucible/", "/crucible"},
		{"/a/b.c/d_e~f-g", "/a/b.c/d_e~f-g"},
	} {
		t.Run("in="+c.in, func(t *testing.T) {
			rt, err := newRouter(c.in)
			if err != nil || rt.prefix != c.want {
				t.Errorf("%q: %v %v, want %q", c.in, rt, err, c.want)
			}
		})
	}
	for _, bad := range []string{"/{id}", "/a b", "/a/../b", "/a//b", "/.", "/a?b", "/a#b", "/a/{$}"} {
		t.Run(bad, func(t *testing.T) {
			if _, err := newRouter(bad); err == nil {
				t.Errorf("%q: accepted", bad)
			} else if !strings.Contains(err.Error(), "route prefix") {
				t.Errorf("%q: %v", bad, err)
			}
		})
	}
}
