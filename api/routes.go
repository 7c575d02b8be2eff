package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Register adds the API's routes to mux. A known path asked with another
// method answers 405 with Allow, an unknown path under /api/v1/ 404, both
// in the envelope.
func (a *API) Register(mux *http.ServeMux) {
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
		if !strings.HasPrefix(path, "/-/") {
			next = func(w http.ResponseWriter, r *http.Request) {
				if err := checkQuery(r.URL.RawQuery, params); err != nil {
					a.fail(w, r, err)
					return
				}
				h(w, r)
			}
		}
		mux.Handle(pattern, promhttp.InstrumentHandlerDuration(
			a.requests.MustCurryWith(prometheus.Labels{"handler": path}), next))
	}
	route("GET /-/healthy", a.healthy, nil)
	route("GET /-/ready", a.ready, nil)
	route("POST /-/reload", a.reload, nil)
	route("PUT /-/reload", a.reload, nil)
	route("GET /api/v1/experiments", a.listExperiments, listParams)
	route("POST /api/v1/experiments", a.createExperiment, nil)
	route("GET /api/v1/experiments/{id}", a.getExperiment, nil)
	route("POST /api/v1/experiments/{id}/pause", a.transition(a.Manager.Pause), nil)
	route("POST /api/v1/experiments/{id}/resume", a.transition(a.Manager.Resume), nil)
	route("POST /api/v1/experiments/{id}/stop", a.transition(a.Manager.Stop), nil)
	route("POST /api/v1/experiments/{id}/archive", a.transition(a.Manager.Archive), nil)
	route("DELETE /api/v1/experiments/{id}", a.deleteExperiment, nil)
	route("POST /api/v1/events", a.ingest, nil)
	route("POST /api/v1/experiments/{id}/events", a.ingest, nil)
	route("GET /api/v1/experiments/{id}/events", a.events, eventsParams)
	route("GET /api/v1/experiments/{id}/metrics", a.metrics, filterParams)
	route("GET /api/v1/experiments/{id}/windows", a.windows, windowsParams)
	route("GET /api/v1/experiments/{id}/stream", a.stream(a.Manager.Stream), nil)
	route("POST /api/v1/experiments/{id}/stream/reset", a.stream(a.Manager.ResetStream), nil)
	route("GET /api/v1/experiments/{id}/export", a.export, exportParams)
	route("GET /api/v1/compare", a.compare, compareParams)
	route("GET /api/v1/event-types", a.eventTypes, nil)
	route("GET /api/v1/pricing", a.pricing, nil)

	for _, path := range paths {
		allow := strings.Join(methods[path], ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeJSON(w, a.logger, http.StatusMethodNotAllowed, envelope{Status: "error", ErrorType: errBadData,
				Error: fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, path, allow)})
		})
	}
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, fmt.Errorf("%w: %s %s", errNoRoute, r.Method, r.URL.Path))
	})
}
