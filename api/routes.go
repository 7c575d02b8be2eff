package api

import (
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/http/pprof"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"

	"github.com/crucible-telemetry/crucible-telemetry/ui"
)

// RouteOptions choose what the main listener serves beside the API.
type RouteOptions struct {
	// Prefix is --web.route-prefix: every route is served under it.
	// "" and "/" mean none.
	Prefix string
	// TelemetryPath is where Metrics is served (--web.telemetry-path).
	TelemetryPath string
	Metrics       http.Handler
	// Pprof serves Go profiles under /debug/pprof/.
	Pprof bool
}

// router is the one mux of the main listener. Routes are registered by
// their path without the prefix; handle applies it, once for every route.
type router struct {
	prefix   string // "" or "/name", no trailing slash
	mux      *http.ServeMux
	patterns []string // as registered on mux, for tests
}

// prefixPattern is a route prefix the mux can take literally: no
// wildcards, no empty, dot or dot-dot segments.
var prefixPattern = regexp.MustCompile(`^(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*$`)

// newRouter returns a router under prefix, normalised as Prometheus does
// --web.route-prefix: "crucible", "/crucible/" and "/crucible" are one.
func newRouter(prefix string) (*router, error) {
	p := "/" + strings.Trim(prefix, "/")
	if p == "/" {
		p = ""
	}
	if !prefixPattern.MatchString(p) {
		return nil, fmt.Errorf("route prefix %q: want path segments of letters, digits and ._~- such as /crucible", prefix)
	}
	return &router{prefix: p, mux: http.NewServeMux()}, nil
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.mux.ServeHTTP(w, r) }

// path is what a client asks for to reach route path p.
func (rt *router) path(p string) string { return rt.prefix + p }

// handle registers h for pattern, "[METHOD ]/path", under the prefix.
func (rt *router) handle(pattern string, h http.Handler) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	full := rt.path(path)
	if method != "" {
		full = method + " " + full
	}
	rt.patterns = append(rt.patterns, full)
	rt.mux.Handle(full, h)
}

// Handler returns the handler of the main listener. Every route the
// sidecar serves there is registered here, under the route prefix: the
// API, the telemetry path, the web UI (SPEC §17), and pprof when enabled.
func (a *API) Handler(o RouteOptions) (http.Handler, error) {
	rt, err := newRouter(o.Prefix)
	if err != nil {
		return nil, err
	}
	a.routes(rt)
	if o.Metrics != nil {
		rt.handle("GET "+o.TelemetryPath, o.Metrics)
	}
	links := []ui.Link{
		{Address: "/api/v1/experiments", Text: "Experiments API"},
		{Address: "/api/v1/event-types", Text: "Known event types"},
		{Address: "/api/v1/pricing", Text: "Price table"},
		{Address: "/-/healthy", Text: "Health"},
		{Address: "/-/ready", Text: "Readiness"},
	}
	if o.Metrics != nil {
		links = append([]ui.Link{{Address: o.TelemetryPath, Text: "Metrics"}}, links...)
	}
	pages, err := ui.New(ui.Options{
		Prefix:    rt.prefix,
		Version:   version.Info(),
		Links:     links,
		ExtraHTML: template.HTML(analysisRoutesHTML(rt)),
		AdminAPI:  a.EnableAdminAPI,
		Store:     a.Manager,
		Logger:    a.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("web UI: %w", err)
	}
	rt.handle("/", pages)
	if rt.prefix != "" {
		// As Prometheus does: the root leads to where the routes are.
		rt.patterns = append(rt.patterns, "GET /{$}")
		rt.mux.Handle("GET /{$}", http.RedirectHandler(rt.path("/"), http.StatusFound))
	}
	if o.Pprof {
		// pprof finds a profile's name after /debug/pprof/ in the path.
		profile := func(h http.HandlerFunc) http.Handler { return http.StripPrefix(rt.prefix, h) }
		rt.handle("/debug/pprof/", profile(pprof.Index))
		rt.handle("/debug/pprof/profile", profile(pprof.Profile))
		rt.handle("/debug/pprof/symbol", profile(pprof.Symbol))
		rt.handle("/debug/pprof/trace", profile(pprof.Trace))
	}
	return rt, nil
}

// analysisRoutesHTML lists, on the web UI, the read routes that take
// parameters a link cannot guess.
func analysisRoutesHTML(rt *router) string {
	routes := []struct{ path, params, text string }{
		{"/api/v1/experiments/{id}/metrics", "[?cluster=session_id|user_id|cohort|sample_id|metadata.<key>]",
			"the exact analysis of an experiment; with cluster, every mean also has a clustered standard error and interval"},
		{"/api/v1/compare", "?experiments=A,B[,C...][&cluster=<key>]", "each treatment against the baseline, the first; with cluster, every difference of means also has its clustered interval"},
		{"/api/v1/compare/pairs", "?experiments=A,B&metric=success|latency|cost|score:<name>&limit=100",
			"per-sample differences (B − A) of two experiments that answered the same samples, the largest first"},
	}
	var b strings.Builder
	b.WriteString("<div>Analysis:\n<ul>\n")
	for _, r := range routes {
		fmt.Fprintf(&b, "<li><code>GET %s%s</code>: %s</li>\n",
			html.EscapeString(rt.path(r.path)), html.EscapeString(r.params), html.EscapeString(r.text))
	}
	b.WriteString("</ul>\n</div>")
	return b.String()
}

// promPrefix is where Prometheus' query API is served (SPEC §16), so that
// <sidecar>/prometheus is a Prometheus data source.
const promPrefix = "/prometheus"

// Register adds the API's own routes, /-/ and /api/v1/, to mux without a
// route prefix: for a test server of the API alone. The sidecar serves
// Handler.
func (a *API) Register(mux *http.ServeMux) { a.routes(&router{mux: mux}) }

// routes registers the API's routes on rt. A known path asked with
// another method answers 405 with Allow, an unknown path under /api/v1/
// 404, both in the envelope.
func (a *API) routes(rt *router) {
	var paths []string
	methods := map[string][]string{}
	// params are the query parameters the route takes. The /-/ endpoints
	// are not checked: tools probe them with what they like.
	route := func(pattern string, h http.HandlerFunc, params []string) {
		method, path, _ := strings.Cut(pattern, " ")
		if methods[path] == nil {
			paths = append(paths, path)
		}
		methods[path] = append(methods[path], method)
		if method == http.MethodGet {
			methods[path] = append(methods[path], http.MethodHead)
		}
		next := h
		// Prometheus' API ignores parameters it does not know, and its
		// clients (Grafana) send some of their own.
		if !strings.HasPrefix(path, "/-/") && !strings.HasPrefix(path, promPrefix) {
			next = func(w http.ResponseWriter, r *http.Request) {
				if err := checkQuery(r.URL.RawQuery, params); err != nil {
					a.fail(w, r, err)
					return
				}
				h(w, r)
			}
		}
		// The handler label is the path without the prefix, the same
		// wherever the sidecar is mounted.
		rt.handle(pattern, promhttp.InstrumentHandlerDuration(
			a.requests.MustCurryWith(prometheus.Labels{"handler": path}), next))
	}
	route("GET /-/healthy", a.healthy, nil)
	route("GET /-/ready", a.ready, nil)
	route("POST /-/reload", a.reload, nil)
	route("PUT /-/reload", a.reload, nil)
	route("GET /api/v1/experiments", a.listExperiments, listParams)
	route("POST /api/v1/experiments", a.createExperiment(rt.path("/api/v1/experiments/")), nil)
	route("GET /api/v1/experiments/{id}", a.getExperiment, nil)
	route("POST /api/v1/experiments/{id}/pause", a.transition(a.Manager.Pause), nil)
	route("POST /api/v1/experiments/{id}/resume", a.transition(a.Manager.Resume), nil)
	route("POST /api/v1/experiments/{id}/stop", a.transition(a.Manager.Stop), nil)
	route("POST /api/v1/experiments/{id}/archive", a.transition(a.Manager.Archive), nil)
	route("DELETE /api/v1/experiments/{id}", a.deleteExperiment, nil)
	route("POST /api/v1/events", a.ingest, nil)
	route("POST /api/v1/experiments/{id}/events", a.ingest, nil)
	route("POST /v1/traces", a.otlpTraces, nil)
	route("POST /v1/logs", a.otlpLogs, nil)
	route("GET /api/v1/experiments/{id}/events", a.events, eventsParams)
	route("GET /api/v1/experiments/{id}/metrics", a.metrics, metricsParams)
	route("GET /api/v1/experiments/{id}/windows", a.windows, windowsParams)
	route("GET /api/v1/experiments/{id}/power", a.power, powerParams)
	route("GET /api/v1/experiments/{id}/stream", a.stream(a.Manager.Stream), nil)
	route("POST /api/v1/experiments/{id}/stream/reset", a.stream(a.Manager.ResetStream), nil)
	route("GET /api/v1/experiments/{id}/export", a.export, exportParams)
	route("GET /api/v1/compare", a.compare, compareParams)
	route("GET /api/v1/compare/pairs", a.pairs, pairsParams)
	route("GET /api/v1/event-types", a.eventTypes, nil)
	route("GET /api/v1/pricing", a.pricing, nil)
	if p := a.PromQL; p != nil {
		// Prometheus' API takes GET and POST (form) alike.
		for _, m := range []string{"GET", "POST"} {
			route(m+" "+promPrefix+"/api/v1/query", p.Query, nil)
			route(m+" "+promPrefix+"/api/v1/query_range", p.QueryRange, nil)
			route(m+" "+promPrefix+"/api/v1/series", p.Series, nil)
			route(m+" "+promPrefix+"/api/v1/labels", p.LabelNames, nil)
			route(m+" "+promPrefix+"/api/v1/label/{name}/values", p.LabelValues, nil)
		}
		route("GET "+promPrefix+"/api/v1/status/buildinfo", p.BuildInfo, nil)
		route("POST "+promPrefix+"/api/v1/read", p.RemoteRead().ServeHTTP, nil)
	}

	for _, path := range paths {
		allow := strings.Join(methods[path], ", ")
		shown := rt.path(path)
		rt.handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeJSON(w, a.logger, http.StatusMethodNotAllowed, envelope{Status: "error", ErrorType: errBadData,
				Error: fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, shown, allow)})
		}))
	}
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, fmt.Errorf("%w: %s %s", errNoRoute, r.Method, r.URL.Path))
	})
	rt.handle("/api/v1/", notFound)
	if a.PromQL != nil {
		rt.handle(promPrefix+"/api/v1/", notFound)
	}
}
