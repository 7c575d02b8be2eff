// Package api serves CrucibleTelemetry's HTTP API: routes, the Prometheus
// style response envelope, error mapping, body limits and decompression.
package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// errorType values of the error envelope (SPEC §2).
const (
	errBadData     = "bad_data"
	errNotFound    = "not_found"
	errConflict    = "conflict"
	errUnavailable = "unavailable"
	errTooLarge    = "too_large"
	errInternal    = "internal"
)

// Errors of the API layer itself.
var (
	errBodyTooLarge = errors.New("request body too large")
	errBadRequest   = errors.New("bad request")
	errAdminAPI     = errors.New("admin APIs are disabled; start the sidecar with --web.enable-admin-api")
)

type envelope struct {
	Status    string `json:"status"`
	Data      any    `json:"data,omitempty"`
	ErrorType string `json:"errorType,omitempty"`
	Error     string `json:"error,omitempty"`
	Code      string `json:"code,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func respond(w http.ResponseWriter, code int, data any) {
	writeJSON(w, code, envelope{Status: "success", Data: data})
}

// classify maps an error to its HTTP status and errorType: the one place
// where the API decides status codes.
func classify(err error) (int, string) {
	switch {
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge, errTooLarge
	case errors.Is(err, errAdminAPI):
		return http.StatusForbidden, errUnavailable
	case errors.Is(err, errBadRequest), errors.Is(err, experiment.ErrInvalid),
		errors.Is(err, event.ErrInvalid), errors.Is(err, event.ErrBody):
		return http.StatusBadRequest, errBadData
	case errors.Is(err, experiment.ErrNotFound):
		return http.StatusNotFound, errNotFound
	case errors.Is(err, experiment.ErrConflict):
		return http.StatusConflict, errConflict
	case errors.Is(err, experiment.ErrNotReady), errors.Is(err, tsdbstore.ErrClosed),
		errors.Is(err, experiment.ErrUnavailable):
		return http.StatusServiceUnavailable, errUnavailable
	}
	return http.StatusInternalServerError, errInternal
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, typ := classify(err)
	env := envelope{Status: "error", ErrorType: typ, Error: err.Error()}
	var se *experiment.StateError
	if errors.As(err, &se) {
		env.Code = se.Code
	}
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(1))
	}
	if code >= 500 {
		a.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		a.logger.Debug("request rejected", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	writeJSON(w, code, env)
}
