package api

import (
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
)

// isNDJSON tells whether the body is one event per line.
func isNDJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines":
		return true
	}
	return false
}

// ingest is the JSON protocol of ingest (SPEC §4.1): one object, an array
// of them, or NDJSON.
func (a *API) ingest(w http.ResponseWriter, r *http.Request) {
	id := ""
	if r.PathValue("id") != "" {
		var err error
		if id, err = pathID(r); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	// Before the body is read: storage that is still opening takes nothing.
	if !a.Manager.Ready() {
		a.fail(w, r, experiment.ErrNotReady)
		return
	}
	// The body is read before a slot is taken, so a client trickling its
	// body does not hold one of the few slots.
	deadline := time.Now().Add(a.QueueTimeout)
	buf, err := readBody(w, r, a.MaxRequestBytes, a.bodies, deadline)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Parsed events alias the buffer until they are stored.
	defer buf.release()
	done, ok := a.slots.acquire(r.Context(), deadline)
	if !ok {
		a.fail(w, r, fmt.Errorf("%w: %d ingest requests are being stored (--ingest.max-inflight-requests); retry later", errBusy, cap(a.slots)))
		return
	}
	defer done()
	parts, err := event.Split(buf.Bytes(), isNDJSON(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	now := a.Now()
	prices := a.Prices.Table()
	dec := event.GetDecoder()
	defer event.PutDecoder(dec) // after the events are stored: they share its arena
	events := make([]*event.Event, len(parts))
	backing := make([]event.Event, len(parts))
	var parseRejects []experiment.Rejection
	for i, p := range parts {
		e := &backing[i]
		err := dec.ParseForStorage(e, p, now, prices)
		if err != nil {
			parseRejects = append(parseRejects, experiment.Rejection{Index: i, Error: err.Error()})
			continue
		}
		if e.ExperimentID != "" && id == "" && !experiment.ValidID(e.ExperimentID) {
			parseRejects = append(parseRejects, experiment.Rejection{Index: i, Error: "invalid experiment_id " + strconv.Quote(e.ExperimentID)})
			continue
		}
		events[i] = e
	}
	a.storeEvents(w, r, id, events, parseRejects, now)
}

// storeEvents is the end of the JSON protocol's ingest: ingestEvents, then
// the answer of SPEC §4.1.
func (a *API) storeEvents(w http.ResponseWriter, r *http.Request, target string, events []*event.Event, rejected []experiment.Rejection, now time.Time) {
	res, err := a.ingestEvents(target, events, rejected, now)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, res)
}

// ingestEvents is the end of ingest, whatever the protocol. A protocol's
// handler decodes its body into events, nil where it rejected one (saying
// why in rejected, ascending by index), and calls it with the experiment
// the request names ("" routes each event by its own). ingestEvents checks
// that storage is ready, stores the events through the Manager (routing,
// lifecycle, sampling, de-duplication), merges the rejections and counts
// the results; the handler answers in its protocol's form. The events must
// stay valid until it returns.
func (a *API) ingestEvents(target string, events []*event.Event, rejected []experiment.Rejection, now time.Time) (experiment.IngestResult, error) {
	if !a.Manager.Ready() {
		return experiment.IngestResult{}, experiment.ErrNotReady
	}
	res, err := a.Manager.Ingest(target, events, now)
	if err != nil {
		return res, err
	}
	if len(rejected) > 0 {
		res.Rejected = mergeRejections(rejected, res.Rejected)
	}
	a.count(res)
	return res, nil
}

// count adds a request's results to crucible_ingest_events_total.
func (a *API) count(res experiment.IngestResult) {
	for _, c := range []struct {
		name string
		n    int
	}{{"accepted", res.Accepted}, {"rejected", len(res.Rejected)}, {"duplicate", res.Duplicates},
		{"dropped_paused", res.DroppedPaused}, {"dropped_sampled", res.DroppedSampled}, {"unpriced", res.Unpriced}} {
		if c.n > 0 {
			a.results[c.name].Add(float64(c.n))
		}
	}
}

// mergeRejections merges two lists sorted by index.
func mergeRejections(a, b []experiment.Rejection) []experiment.Rejection {
	out := make([]experiment.Rejection, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].Index <= b[0].Index {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}
