package experiment

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	json "github.com/goccy/go-json"
	"github.com/prometheus/prometheus/storage"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Filter selects stored events (SPEC §7). Zero fields select everything;
// From and To are inclusive µs.
type Filter struct {
	Event, Condition, Model, Provider string
	Success                           *bool
	From, To                          *int64
	LastN                             int // keep only the newest N matches
	Limit                             int // then at most Limit
	// Cluster, when set, gives each analysed point its cluster (SPEC §14);
	// the points are then read from the event log.
	Cluster *event.ClusterKey
}

// Match tells whether e passes the filter.
func (f *Filter) Match(e *event.Event) bool {
	return (f.Event == "" || e.EventName == f.Event) &&
		(f.Condition == "" || e.Condition == f.Condition) &&
		(f.Model == "" || (e.Model.Valid && e.Model.V == f.Model)) &&
		(f.Provider == "" || (e.Provider.Valid && e.Provider.V == f.Provider)) &&
		(f.Success == nil || (e.Success.Valid && e.Success.V == *f.Success)) &&
		(f.From == nil || e.Timestamp >= *f.From) &&
		(f.To == nil || e.Timestamp <= *f.To)
}

type match struct {
	ts   int64
	id   string
	json json.RawMessage
}

// Events returns the stored events that match f, encoded as the API shows
// them (SPEC §4.3), ascending by (timestamp, event_id).
func (m *Manager) Events(ctx context.Context, id string, f Filter) ([]json.RawMessage, error) {
	var out []match
	var e event.Event
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	err := m.readStore(id, func(store *tsdbstore.Store, spec Spec) error {
		return store.Scan(ctx, func(r *tsdbstore.LogRecord) error {
			if err := dec.DecodeRecord(r.Data, &e, false); err != nil {
				return fmt.Errorf("%w: %v: %w", tsdbstore.ErrCorrupt, r.Pos, err)
			}
			spec.Stamp(&e)
			if !f.Match(&e) {
				return nil
			}
			// A match: read its metadata and measurements too.
			dec.Reset()
			if err := dec.DecodeRecord(r.Data, &e, true); err != nil {
				return fmt.Errorf("%w: %v: %w", tsdbstore.ErrCorrupt, r.Pos, err)
			}
			spec.Stamp(&e)
			joinEvent(m.evals.Load(), &e)
			out = append(out, match{e.Timestamp, e.EventID, e.AppendJSON(nil)})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b match) int {
		return cmp.Or(cmp.Compare(a.ts, b.ts), cmp.Compare(a.id, b.id))
	})
	if f.LastN > 0 && len(out) > f.LastN {
		out = out[len(out)-f.LastN:]
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	res := make([]json.RawMessage, len(out))
	for i, mt := range out {
		res[i] = mt.json
	}
	return res, nil
}

// Points returns what the analysis needs of every stored event that matches
// f (LastN and Limit do not apply), read from the store's points index.
func (m *Manager) Points(ctx context.Context, id string, f Filter) ([]analysis.Point, error) {
	var out []analysis.Point
	err := m.readStore(id, func(store *tsdbstore.Store, spec Spec) error {
		if f.Condition != "" && f.Condition != spec.Condition {
			out = []analysis.Point{}
			return nil
		}
		var err error
		out, err = m.points(ctx, store, f)
		return err
	})
	return out, err
}

// points reads the points of store that match f.
func (m *Manager) points(ctx context.Context, store *tsdbstore.Store, f Filter) ([]analysis.Point, error) {
	var out []analysis.Point
	keep := func(p *tsdbstore.Point) error {
		if matchPoint(&f, p) {
			joinPoint(m.evals.Load(), p)
			out = append(out, toAnalysis(p))
		}
		return nil
	}
	// Clustered by sample_id, the index holds the key; the other keys
	// are read from the log.
	bySample := func(p *tsdbstore.Point) error {
		p.Cluster, p.HasCluster = p.Sample, p.Sample != ""
		return keep(p)
	}
	read := func() error {
		out = make([]analysis.Point, 0, store.Count())
		switch {
		case f.Cluster == nil:
			return store.Points(ctx, keep)
		case f.Cluster.IsSampleID():
			return store.Points(ctx, bySample)
		}
		return store.ClusteredPoints(ctx, *f.Cluster, keep)
	}
	err := read()
	if errors.Is(err, tsdbstore.ErrIndexDamaged) {
		err = read() // from the log this time
	}
	return out, err
}

func matchPoint(f *Filter, p *tsdbstore.Point) bool {
	return (f.Event == "" || p.Event == f.Event) &&
		(f.Model == "" || p.Model == f.Model) &&
		(f.Provider == "" || p.Provider == f.Provider) &&
		(f.Success == nil || (p.Judged && p.Success == *f.Success)) &&
		(f.From == nil || p.TimestampUs >= *f.From) &&
		(f.To == nil || p.TimestampUs <= *f.To)
}

func toAnalysis(p *tsdbstore.Point) analysis.Point {
	a := analysis.Point{TimestampUs: p.TimestampUs, Event: p.Event, LatencyMs: p.LatencyMs, CostUSD: p.CostUSD, Success: -1,
		HasTokens: p.HasTokens, Prompt: p.Prompt, Completion: p.Completion, Total: p.Total}
	if p.Judged {
		a.Success = 0
		if p.Success {
			a.Success = 1
		}
	}
	// The point's strings and scores are the reader's: copied.
	if p.Sample != "" {
		a.Sample = strings.Clone(p.Sample)
	}
	if p.HasCluster {
		a.Cluster, a.HasCluster = strings.Clone(p.Cluster), true
	}
	if len(p.Scores) > 0 {
		a.Scores = make([]analysis.Score, len(p.Scores))
		for i, s := range p.Scores {
			a.Scores[i] = analysis.Score{Name: s.Name, Value: s.Value}
		}
	}
	return a
}

// readStore calls read with an experiment's store, opened for a read, and
// its spec. A store closed as idle between the lookup and the read (the
// read fails with ErrClosed before it sees anything, and the experiment is
// not gone) is opened again for one more try.
func (m *Manager) readStore(id string, read func(*tsdbstore.Store, Spec) error) error {
	x, err := m.lookup(id)
	if err != nil {
		return err
	}
	return m.readStoreOf(x, read)
}

// readStoreOf is readStore of an experiment already looked up.
func (m *Manager) readStoreOf(x *Experiment, read func(*tsdbstore.Store, Spec) error) error {
	for try := 0; ; try++ {
		s, err := m.storeOf(x)
		if err != nil {
			return err
		}
		x.mu.Lock()
		spec := x.rec.Spec
		x.mu.Unlock()
		err = read(s, spec)
		if try == 0 && errors.Is(err, tsdbstore.ErrClosed) && !x.gone.Load() {
			continue
		}
		return err
	}
}

// lookupRead returns an experiment's store, opened for a read, and its spec.
func (m *Manager) lookupRead(id string) (*tsdbstore.Store, Spec, error) {
	x, err := m.lookup(id)
	if err != nil {
		return nil, Spec{}, err
	}
	s, err := m.storeOf(x)
	if err != nil {
		return nil, Spec{}, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return s, x.rec.Spec, nil
}

// QueryTarget is an experiment as a PromQL query reads it. Its store is
// opened by Querier only, so that a query that cannot select an archived
// experiment leaves it closed.
type QueryTarget struct {
	m  *Manager
	x  *Experiment
	id string
	// unavailable is why the experiment's storage did not open; its
	// Querier fails with it, so an answer warns that it is missing.
	unavailable error
}

// ID is the experiment's id, the experiment_id label of all its series.
func (t QueryTarget) ID() string { return t.id }

// Querier reads the experiment's TSDB, holding its store open until the
// querier's Close. An experiment deleted since it was listed gives
// ErrNotFound or tsdbstore.ErrClosed.
func (t QueryTarget) Querier(mint, maxt int64) (storage.Querier, error) {
	if t.unavailable != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, t.id, t.unavailable)
	}
	var q storage.Querier
	err := t.m.readStoreOf(t.x, func(s *tsdbstore.Store, _ Spec) error {
		var err error
		q, err = s.Querier(mint, maxt)
		return err
	})
	return q, err
}

// QueryTargets lists every experiment by id, those whose storage did not
// open too (reading them fails with ErrUnavailable).
func (m *Manager) QueryTargets() ([]QueryTarget, error) {
	if !m.Ready() {
		return nil, ErrNotReady
	}
	m.mu.RLock()
	out := make([]QueryTarget, 0, len(m.exps))
	for id, x := range m.exps {
		out = append(out, QueryTarget{m: m, x: x, id: id})
	}
	for id, u := range m.unavailable {
		out = append(out, QueryTarget{m: m, id: id, unavailable: u.err})
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b QueryTarget) int { return cmp.Compare(a.id, b.id) })
	return out, nil
}
