package api

import (
	"fmt"
	"net/http"
)

// Probes serves /-/healthy and /-/ready alone: a handler for a listener
// without TLS or authentication that Kubernetes probes can reach however
// --web.config.file protects the API.
func (a *API) Probes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/healthy", a.healthy)
	mux.HandleFunc("GET /-/ready", a.ready)
	return mux
}

func (a *API) healthy(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "Healthy.")
}

func (a *API) ready(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !a.Manager.Ready() {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "Opening experiment storage.")
		return
	}
	fmt.Fprintln(w, "Ready.")
}

func (a *API) reload(w http.ResponseWriter, r *http.Request) {
	if a.Reload == nil {
		a.respond(w, http.StatusOK, nil)
		return
	}
	if err := a.Reload(); err != nil {
		a.fail(w, r, fmt.Errorf("%w: reload: %w", errBadRequest, err))
		return
	}
	a.respond(w, http.StatusOK, nil)
}
