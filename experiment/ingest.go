package experiment

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Rejection is one event that was not stored, and why.
type Rejection struct {
	Index int    `json:"index"`
	Error string `json:"error"`
}

// IngestResult counts what happened to a request's events (SPEC §4.1).
type IngestResult struct {
	Accepted       int         `json:"accepted"`
	Duplicates     int         `json:"duplicates"`
	DroppedPaused  int         `json:"dropped_paused"`
	DroppedSampled int         `json:"dropped_sampled"`
	Rejected       []Rejection `json:"rejected"`
	// Unpriced counts accepted events whose model has no price.
	Unpriced int `json:"-"`
}

func (r *IngestResult) reject(i int, msg string) {
	r.Rejected = append(r.Rejected, Rejection{Index: i, Error: msg})
}

type item struct {
	index int
	ev    *event.Event
}

// Ingest routes events to experiments and stores them: to pathID when set,
// else to each event's experiment_id, else to the one running experiment
// (to every running one with BroadcastUnrouted).
// Entries of events that are nil were rejected by the caller. A routed-by-path
// request to an unknown experiment is ErrNotFound, to a stopped one a
// conflict; any other error is a storage failure.
func (m *Manager) Ingest(pathID string, events []*event.Event, now time.Time) (IngestResult, error) {
	res := IngestResult{Rejected: []Rejection{}}
	if !m.Ready() {
		return res, ErrNotReady
	}
	groups := map[*Experiment][]item{}
	var order []*Experiment
	add := func(x *Experiment, it item) {
		if _, ok := groups[x]; !ok {
			order = append(order, x)
		}
		groups[x] = append(groups[x], it)
	}
	if pathID != "" {
		x, err := m.lookup(pathID)
		if err != nil {
			return res, err
		}
		x.mu.Lock()
		st := x.rec.Status
		x.mu.Unlock()
		if st == Stopped || st == Archived {
			return res, &StateError{"not_running", "experiment " + pathID + " is " + string(st) + " and takes no events"}
		}
		for i, e := range events {
			if e != nil {
				add(x, item{i, e})
			}
		}
	} else {
		var running []*Experiment
		m.mu.RLock()
		for i, e := range events {
			if e == nil {
				continue
			}
			if e.ExperimentID != "" {
				if x := m.exps[e.ExperimentID]; x != nil {
					add(x, item{i, e})
				} else if u := m.unavailable[e.ExperimentID]; u != nil {
					res.reject(i, fmt.Sprintf("experiment %s is unavailable: %v", e.ExperimentID, u.err))
				} else {
					res.reject(i, "unknown experiment "+e.ExperimentID)
				}
				continue
			}
			if running == nil {
				running = m.runningLocked()
			}
			if len(running) == 0 {
				res.reject(i, "no experiment_id given and no experiment is running")
				continue
			}
			if len(running) > 1 && !m.opts.BroadcastUnrouted {
				res.reject(i, "no experiment_id given and several experiments are running ("+strings.Join(runningIDs(running), ", ")+"): name one")
				continue
			}
			for j, x := range running {
				ev := e
				if j > 0 {
					c := *e
					ev = &c
				}
				add(x, item{i, ev})
			}
		}
		m.mu.RUnlock()
	}
	for _, x := range order {
		if err := x.ingest(m, groups[x], now, &res); err != nil {
			return res, err
		}
	}
	slices.SortFunc(res.Rejected, func(a, b Rejection) int { return a.Index - b.Index })
	return res, nil
}

func runningIDs(xs []*Experiment) []string {
	ids := make([]string, len(xs))
	for i, x := range xs {
		x.mu.Lock()
		ids[i] = x.rec.ID
		x.mu.Unlock()
	}
	slices.Sort(ids)
	return ids
}

func (m *Manager) runningLocked() []*Experiment {
	out := []*Experiment{}
	for _, x := range m.exps {
		x.mu.Lock()
		if x.rec.Status == Running {
			out = append(out, x)
		}
		x.mu.Unlock()
	}
	return out
}

var sampleSeed = maphash.MakeSeed()

// sampledIn decides whether an event is kept at rate. A client-chosen id
// decides the same way every time, so a retried event is not re-sampled.
func sampledIn(e *event.Event, rate float64) bool {
	if rate >= 1 {
		return true
	}
	var u uint64
	if e.ClientID {
		u = maphash.String(sampleSeed, e.EventID)
	} else {
		u = rand.Uint64()
	}
	return float64(u>>11)/(1<<53) < rate
}

func (x *Experiment) ingest(m *Manager, items []item, now time.Time, res *IngestResult) error {
	x.mu.Lock()
	spec, status := x.rec.Spec, x.rec.Status
	x.mu.Unlock()
	switch status {
	case Paused:
		res.DroppedPaused += len(items)
		return nil
	case Stopped, Archived:
		for _, it := range items {
			res.reject(it.index, "experiment "+spec.ID+" is "+string(status))
		}
		return nil
	}
	kept := items[:0:0]
	for _, it := range items {
		if !sampledIn(it.ev, spec.SamplingRate) {
			res.DroppedSampled++
			continue
		}
		e := it.ev
		spec.Stamp(e)
		e.SampleWeight = 1 / spec.SamplingRate
		kept = append(kept, it)
	}
	if len(kept) == 0 {
		return nil
	}
	if spec.StopAtSampleSize && spec.SampleSize != nil {
		x.capMu.Lock()
		defer x.capMu.Unlock()
		remaining := *spec.SampleSize - x.count()
		if remaining < int64(len(kept)) {
			for _, it := range kept[max(remaining, 0):] {
				res.reject(it.index, fmt.Sprintf("experiment %s reached its sample_size of %d and stopped", spec.ID, *spec.SampleSize))
			}
			kept = kept[:max(remaining, 0)]
		}
	}
	evs := make([]*event.Event, len(kept))
	for i, it := range kept {
		evs[i] = it.ev
	}
	s := x.store.Load()
	if s == nil { // archived (and its storage closed as idle) since status was read
		for _, it := range kept {
			res.reject(it.index, "experiment "+spec.ID+" is "+string(Archived))
		}
		return nil
	}
	results, err := s.Append(evs, now)
	if err != nil {
		return err
	}
	stored := evs[:0:0]
	var overflow []event.LabelOverflow
	for i, r := range results {
		switch r.Status {
		case tsdbstore.Stored:
			stored = append(stored, evs[i])
			overflow = append(overflow, r.Overflow)
			res.Accepted++
			if evs[i].Unpriced {
				res.Unpriced++
			}
		case tsdbstore.Duplicate:
			res.Duplicates++
		case tsdbstore.Rejected:
			res.reject(kept[i].index, r.Err.Error())
		}
	}
	if m.opts.Metrics != nil && len(stored) > 0 {
		m.opts.Metrics.Observe(spec.ID, stored, overflow, x.count())
	}
	if spec.StopAtSampleSize && spec.SampleSize != nil && x.count() >= *spec.SampleSize {
		if _, err := m.Stop(spec.ID); err != nil {
			return err
		}
		m.logger.Info("experiment reached its sample size", "id", spec.ID, "sample_size", *spec.SampleSize)
	}
	return nil
}
