// Package query serves PromQL over every experiment's TSDB as Prometheus'
// HTTP API does (/prometheus/api/v1): Prometheus' own engine over a merge
// of one querier per experiment, so that results have Prometheus' exact
// semantics and Grafana or promtool can use the sidecar as a data source.
package query

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Target is one experiment's TSDB. Its querier must hold the storage open
// until closed.
type Target interface {
	ID() string
	Querier(mint, maxt int64) (storage.Querier, error)
}

// ExperimentLabel is the label of every series that names its experiment.
const ExperimentLabel = "experiment_id"

// Experiments lists the manager's experiments as targets.
func Experiments(m *experiment.Manager) func() ([]Target, error) {
	return func() ([]Target, error) {
		xs, err := m.QueryTargets()
		ts := make([]Target, len(xs))
		for i, x := range xs {
			ts[i] = x
		}
		return ts, err
	}
}

// Queryable merges the queriers of every target Targets lists.
type Queryable struct {
	Targets func() ([]Target, error)
}

// Querier returns a merge of one querier per experiment. Each opens its
// experiment's store only when a call's matchers could select that
// experiment, so that an archived experiment a query cannot touch stays
// closed. They are secondaries of the merge: an experiment whose storage
// fails is a warning of the answer, not the failure of every query.
func (q Queryable) Querier(mint, maxt int64) (storage.Querier, error) {
	ts, err := q.Targets()
	if err != nil {
		return nil, err
	}
	qs := make([]storage.Querier, len(ts))
	for i, t := range ts {
		qs[i] = &lazyQuerier{t: t, mint: mint, maxt: maxt}
	}
	return storage.NewMergeQuerier(nil, qs, storage.ChainedSeriesMerge), nil
}

// lazyQuerier is one experiment's querier, opened on first use.
type lazyQuerier struct {
	t          Target
	mint, maxt int64

	mu     sync.Mutex
	opened bool
	q      storage.Querier // nil: the experiment is gone
	err    error
}

// open opens the querier once. An experiment deleted since it was listed
// has no series rather than an error.
func (l *lazyQuerier) open() (storage.Querier, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.opened {
		l.opened = true
		l.q, l.err = l.t.Querier(l.mint, l.maxt)
		if errors.Is(l.err, tsdbstore.ErrClosed) || errors.Is(l.err, experiment.ErrNotFound) {
			l.q, l.err = nil, nil
		}
	}
	return l.q, l.err
}

// selects tells whether matchers could select a series of this experiment:
// all its series carry its experiment_id.
func (l *lazyQuerier) selects(ms []*labels.Matcher) bool {
	for _, m := range ms {
		if m.Name == ExperimentLabel && !m.Matches(l.t.ID()) {
			return false
		}
	}
	return true
}

func (l *lazyQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	if !l.selects(ms) {
		return storage.EmptySeriesSet()
	}
	q, err := l.open()
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if q == nil {
		return storage.EmptySeriesSet()
	}
	return q.Select(ctx, sortSeries, hints, ms...)
}

func (l *lazyQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	if !l.selects(ms) {
		return nil, nil, nil
	}
	q, err := l.open()
	if q == nil || err != nil {
		return nil, nil, err
	}
	return q.LabelValues(ctx, name, hints, ms...)
}

func (l *lazyQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	if !l.selects(ms) {
		return nil, nil, nil
	}
	q, err := l.open()
	if q == nil || err != nil {
		return nil, nil, err
	}
	return q.LabelNames(ctx, hints, ms...)
}

func (l *lazyQuerier) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.opened = true // no open after Close
	if l.q == nil {
		return nil
	}
	err := l.q.Close()
	l.q = nil
	return err
}
