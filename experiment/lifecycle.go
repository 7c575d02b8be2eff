package experiment

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Create creates and starts an experiment. Creating the same experiment
// again returns the existing record with created false; the same id with
// different fields is a conflict.
func (m *Manager) Create(req CreateRequest) (rec Record, created bool, err error) {
	if !m.Ready() {
		return Record{}, false, ErrNotReady
	}
	spec, err := req.Normalize()
	if err != nil {
		return Record{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if x := m.exps[spec.ID]; x != nil {
		r := x.record(m.opts.Now())
		if !sameSpec(r.Spec, spec) {
			return Record{}, false, &StateError{"exists", "experiment " + spec.ID + " exists with different fields"}
		}
		return r, false, nil
	}
	if u := m.unavailable[spec.ID]; u != nil {
		return Record{}, false, &StateError{"exists", fmt.Sprintf("experiment %s exists but its storage is unavailable (%v); its files in %s are kept", spec.ID, u.err, u.dir)}
	}
	dir := filepath.Join(m.experimentsDir(), spec.ID)
	// Only a directory this call creates is removed when the create fails.
	// One that exists without a record is reused only when it holds no
	// events: a create that did not finish left it; events in it belong to
	// an experiment whose record is lost, and are never adopted silently.
	made := true
	if err := os.Mkdir(dir, 0o755); errors.Is(err, os.ErrExist) {
		made = false
		if !logEmpty(dir) {
			return Record{}, false, &StateError{"exists", fmt.Sprintf("%s holds the events of an experiment %s whose record is lost; move it away or restore its %s", dir, spec.ID, recordFile)}
		}
	} else if err != nil {
		return Record{}, false, err
	}
	r := Record{Spec: spec, Status: Running, StartedAt: m.opts.Now().UTC()}
	store, err := m.openStore(dir, spec, nil)
	if err == nil {
		err = writeRecord(dir, r)
		if err != nil {
			store.Close()
		}
	}
	if err != nil {
		if made {
			os.RemoveAll(dir)
		}
		return Record{}, false, err
	}
	x := &Experiment{dir: dir, rec: r}
	x.store.Store(store)
	m.exps[spec.ID] = x
	m.setMetrics(r, 0)
	m.logger.Info("created experiment", "id", spec.ID, "name", spec.Name, "condition", spec.Condition)
	return x.record(m.opts.Now()), true, nil
}

func (x *Experiment) record(now time.Time) Record {
	x.mu.Lock()
	defer x.mu.Unlock()
	r := x.rec.view(now, x.count())
	r.Storage = healthOf(x.damage())
	return r
}

func healthOf(d tsdbstore.Damage) *Health {
	if d.Frames == 0 {
		return &Health{Status: HealthOK}
	}
	return &Health{Status: HealthDegraded, Error: d.First, CorruptFrames: d.Frames, CorruptBytes: d.Bytes}
}

func (u *unavailable) record() Record {
	r := u.rec
	r.Storage = &Health{Status: HealthUnavailable, Error: u.err.Error()}
	return r
}

// Get returns an experiment's record; that of an experiment whose storage
// is unavailable says why.
func (m *Manager) Get(id string) (Record, error) {
	x, err := m.lookup(id)
	if errors.Is(err, ErrUnavailable) {
		m.mu.RLock()
		u := m.unavailable[id]
		m.mu.RUnlock()
		if u != nil {
			return u.record(), nil
		}
	}
	if err != nil {
		return Record{}, err
	}
	return x.record(m.opts.Now()), nil
}

// List returns the records, newest first, optionally filtered by status and tag.
func (m *Manager) List(status Status, tag string) ([]Record, error) {
	if !m.Ready() {
		return nil, ErrNotReady
	}
	now := m.opts.Now()
	m.mu.RLock()
	out := make([]Record, 0, len(m.exps))
	keep := func(r Record) {
		if (status == "" || r.Status == status) && (tag == "" || slices.Contains(r.Tags, tag)) {
			out = append(out, r)
		}
	}
	for _, x := range m.exps {
		keep(x.record(now))
	}
	for _, u := range m.unavailable {
		keep(u.record())
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b Record) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// transition applies a lifecycle change and persists it.
func (m *Manager) transition(id string, apply func(r *Record, now time.Time) (bool, error)) (Record, error) {
	x, err := m.lookup(id)
	if err != nil {
		return Record{}, err
	}
	now := m.opts.Now().UTC()
	x.mu.Lock()
	next := x.rec
	changed, err := apply(&next, now)
	if err == nil && changed {
		if err = writeRecord(x.dir, next); err == nil {
			x.rec = next
		}
	}
	x.mu.Unlock()
	if err != nil {
		return Record{}, err
	}
	if changed {
		m.setMetrics(next, x.count())
		m.logger.Info("experiment changed state", "id", id, "status", next.Status)
	}
	return x.record(now), nil
}

// Pause moves a running experiment to paused.
func (m *Manager) Pause(id string) (Record, error) {
	return m.transition(id, func(r *Record, now time.Time) (bool, error) { return true, r.pause(now) })
}

// Resume moves a paused experiment to running.
func (m *Manager) Resume(id string) (Record, error) {
	return m.transition(id, func(r *Record, now time.Time) (bool, error) { return true, r.resume(now) })
}

// Stop stops a running or paused experiment; stopping again changes nothing.
func (m *Manager) Stop(id string) (Record, error) {
	return m.transition(id, func(r *Record, now time.Time) (bool, error) { return r.stop(now), nil })
}
