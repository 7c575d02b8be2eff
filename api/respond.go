package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"syscall"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// errorType values of the error envelope (SPEC §2), and forbidden, which
// that list lacks: a 403 is neither bad data nor a passing unavailability.
const (
	errBadData     = "bad_data"
	errNotFound    = "not_found"
	errConflict    = "conflict"
	errUnavailable = "unavailable"
	errTooLarge    = "too_large"
	errForbidden   = "forbidden"
	errInternal    = "internal"
)

// Errors of the API layer itself.
var (
	errBodyTooLarge = errors.New("request body too large")
	errBadRequest   = errors.New("bad request")
	errBodyTimeout  = errors.New("request body not received in time")
	errBusy         = errors.New("too much ingest in flight")
	errNoRoute      = errors.New("no such route")
	errAdminAPI     = errors.New("admin APIs are disabled; start the sidecar with --web.enable-admin-api")
)

// Retry-After values in seconds: a busy or opening sidecar frees up
// quickly; a full disk needs someone to make room.
const (
	retryBusy = 1
	retryFull = 30
)

type envelope struct {
	Status    string `json:"status"`
	Data      any    `json:"data,omitempty"`
	ErrorType string `json:"errorType,omitempty"`
	Error     string `json:"error,omitempty"`
	Code      string `json:"code,omitempty"`
}

// writeJSON encodes v before writing anything, so an encoding failure is
// answered with a 500 naming it rather than a 2xx with a cut body.
func writeJSON(w http.ResponseWriter, logger *slog.Logger, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		logger.Error("cannot encode the response", "err", err)
		code = http.StatusInternalServerError
		b, _ = json.Marshal(envelope{Status: "error", ErrorType: errInternal, Error: "encoding the response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if _, err := w.Write(append(b, '\n')); err != nil {
		logger.Debug("writing the response", "err", err)
	}
}

func (a *API) respond(w http.ResponseWriter, code int, data any) {
	writeJSON(w, a.logger, code, envelope{Status: "success", Data: data})
}

// storageFull tells a full filesystem (or quota) from other storage faults.
func storageFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// classify maps an error to its HTTP status and errorType: the one place
// where the API decides status codes.
func classify(err error) (int, string) {
	switch {
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge, errTooLarge
	case errors.Is(err, errAdminAPI):
		return http.StatusForbidden, errForbidden
	case errors.Is(err, errBodyTimeout):
		return http.StatusRequestTimeout, errBadData
	case errors.Is(err, errBusy):
		return http.StatusTooManyRequests, errUnavailable
	case errors.Is(err, errNoRoute):
		return http.StatusNotFound, errNotFound
	case errors.Is(err, errBadRequest), errors.Is(err, experiment.ErrInvalid),
		errors.Is(err, event.ErrInvalid), errors.Is(err, event.ErrBody):
		return http.StatusBadRequest, errBadData
	case errors.Is(err, experiment.ErrNotFound):
		return http.StatusNotFound, errNotFound
	case errors.Is(err, experiment.ErrConflict):
		return http.StatusConflict, errConflict
	case storageFull(err):
		// The closest type of SPEC §2: the condition passes once there is room.
		return http.StatusInsufficientStorage, errUnavailable
	case errors.Is(err, experiment.ErrNotReady), errors.Is(err, tsdbstore.ErrClosed),
		errors.Is(err, experiment.ErrUnavailable):
		return http.StatusServiceUnavailable, errUnavailable
	}
	return http.StatusInternalServerError, errInternal
}

// message is the error text of the envelope; a full disk names the path
// that could not be written.
func message(err error) string {
	if !storageFull(err) {
		return err.Error()
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("storage full at %s: %v; retry once there is room", pe.Path, err)
	}
	return "storage full under --storage.path: " + err.Error() + "; retry once there is room"
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, typ := classify(err)
	env := envelope{Status: "error", ErrorType: typ, Error: message(err)}
	var se *experiment.StateError
	if errors.As(err, &se) {
		env.Code = se.Code
	}
	switch code {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(retryBusy))
	case http.StatusInsufficientStorage:
		w.Header().Set("Retry-After", strconv.Itoa(retryFull))
	}
	if code >= 500 {
		a.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	} else {
		a.logger.Debug("request rejected", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	writeJSON(w, a.logger, code, env)
}
