package experiment

import (
	"cmp"
	"slices"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// FollowTarget is an experiment as a follower of its committed samples
// (remote-write) sees it. Its store is opened by Store only, so that an
// archived experiment whose samples were all sent stays closed.
type FollowTarget struct {
	m  *Manager
	x  *Experiment
	id string
}

// ID is the experiment's id.
func (t FollowTarget) ID() string { return t.id }

// Created is when the experiment was created.
func (t FollowTarget) Created() time.Time {
	t.x.mu.Lock()
	defer t.x.mu.Unlock()
	return t.x.rec.StartedAt
}

// Final tells whether the experiment takes no more events (it is
// archived), and how many it holds, without opening its store.
func (t FollowTarget) Final() (bool, int64) {
	t.x.mu.Lock()
	archived := t.x.rec.Status == Archived
	t.x.mu.Unlock()
	return archived, t.x.count()
}

// Store returns the experiment's store, opening an archived one. An
// experiment deleted since it was listed gives ErrNotFound.
func (t FollowTarget) Store() (*tsdbstore.Store, error) { return t.m.storeOf(t.x) }

// FollowTargets lists the experiments whose storage is open or can be
// opened, by id; those whose storage is unavailable have no samples to
// follow until they are mended and the sidecar restarted.
func (m *Manager) FollowTargets() ([]FollowTarget, error) {
	if !m.Ready() {
		return nil, ErrNotReady
	}
	m.mu.RLock()
	out := make([]FollowTarget, 0, len(m.exps))
	for id, x := range m.exps {
		out = append(out, FollowTarget{m: m, x: x, id: id})
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b FollowTarget) int { return cmp.Compare(a.id, b.id) })
	return out, nil
}
