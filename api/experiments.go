package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/experiment"
)

func (a *API) listExperiments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status := experiment.Status(q.Get("status"))
	if status != "" && !validStatus(status) {
		a.fail(w, r, fmt.Errorf("%w: unknown status %q", errBadRequest, status))
		return
	}
	list, err := a.Manager.List(status, q.Get("tag"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, list)
}

func validStatus(s experiment.Status) bool {
	for _, v := range experiment.Statuses {
		if v == s {
			return true
		}
	}
	return false
}

// createExperiment answers 201 with the new experiment's Location, its
// path under location (the experiments route as clients reach it).
func (a *API) createExperiment(location string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		buf, err := readBody(w, r, a.MaxRequestBytes, a.bodies, time.Now().Add(a.QueueTimeout))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		defer buf.release()
		req, err := experiment.DecodeCreateRequest(buf.Bytes())
		if err != nil {
			a.fail(w, r, err)
			return
		}
		rec, created, err := a.Manager.Create(req)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		code := http.StatusOK
		if created {
			code = http.StatusCreated
			w.Header().Set("Location", location+rec.ID)
		}
		a.respond(w, code, rec)
	}
}

// pathID returns the {id} path value after checking its syntax.
func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !experiment.ValidID(id) {
		return "", fmt.Errorf("%w: invalid experiment id %q", errBadRequest, id)
	}
	return id, nil
}

func (a *API) getExperiment(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		var rec experiment.Record
		if rec, err = a.Manager.Get(id); err == nil {
			a.respond(w, http.StatusOK, rec)
			return
		}
	}
	a.fail(w, r, err)
}

func (a *API) transition(op func(string) (experiment.Record, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r)
		if err == nil {
			var rec experiment.Record
			if rec, err = op(id); err == nil {
				a.respond(w, http.StatusOK, rec)
				return
			}
		}
		a.fail(w, r, err)
	}
}

func (a *API) deleteExperiment(w http.ResponseWriter, r *http.Request) {
	if !a.EnableAdminAPI {
		a.fail(w, r, errAdminAPI)
		return
	}
	id, err := pathID(r)
	if err == nil {
		err = a.Manager.Delete(id)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, nil)
}
