package experiment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/evalstore"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Offline reads the experiments of a data directory without a sidecar (of
// a stopped one, or an unpacked archive): the offline commands' source,
// with the Manager's read methods. It reads the event logs, not the points
// index, and takes no lock: it writes nothing but sort runs.
type Offline struct {
	dir string

	evalsOnce sync.Once
	evals     *evalstore.Store
	evalsErr  error
}

// NewOffline returns a reader of the data directory storagePath.
func NewOffline(storagePath string) *Offline { return &Offline{dir: storagePath} }

// evaluations reads the data directory's evaluations store, once.
func (d *Offline) evaluations() (*evalstore.Store, error) {
	d.evalsOnce.Do(func() { d.evals, d.evalsErr = evalstore.OpenReadOnly(d.dir) })
	return d.evals, d.evalsErr
}

// Get returns an experiment's record as its record file holds it.
func (d *Offline) Get(id string) (Record, error) {
	if !ValidID(id) {
		return Record{}, fmt.Errorf("%w: invalid experiment id %q", ErrInvalid, id)
	}
	dir := experimentDir(d.dir, id)
	rec, _, err := readRecordFile(dir)
	if errors.Is(err, errNoRecord) {
		return Record{}, fmt.Errorf("%w: %s (no %s in %s)", ErrNotFound, id, recordFile, dir)
	}
	return rec, err
}

// scan reads an experiment's event log in log order until ctx is done.
func (d *Offline) scan(id string) func(context.Context, func(*tsdbstore.LogRecord) error) error {
	logDir := filepath.Join(experimentDir(d.dir, id), eventsDir)
	return func(ctx context.Context, visit func(*tsdbstore.LogRecord) error) error {
		_, err := tsdbstore.ReadLog(logDir, func(r *tsdbstore.LogRecord) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return visit(r)
		})
		return err
	}
}

// Points returns what the analysis needs of every stored event that matches
// f (LastN and Limit do not apply), read from the event log; with
// f.Cluster, each with its cluster.
func (d *Offline) Points(ctx context.Context, id string, f Filter) ([]analysis.Point, error) {
	rec, err := d.Get(id)
	if err != nil {
		return nil, err
	}
	if f.Condition != "" && f.Condition != rec.Condition {
		return []analysis.Point{}, nil
	}
	evals, err := d.evaluations()
	if err != nil {
		return nil, err
	}
	scan := d.scan(id)
	log := func(visit func(*tsdbstore.LogRecord) error) error { return scan(ctx, visit) }
	out := []analysis.Point{}
	keep := func(p *tsdbstore.Point) error {
		if matchPoint(&f, p) {
			joinPoint(evals, p)
			out = append(out, toAnalysis(p))
		}
		return nil
	}
	if f.Cluster != nil {
		err = tsdbstore.ClusteredPointsFromLog(log, *f.Cluster, keep)
	} else {
		err = tsdbstore.PointsFromLog(log, keep)
	}
	return out, err
}

func (d *Offline) ordered(id string) (*orderedReader, error) {
	rec, err := d.Get(id)
	if err != nil {
		return nil, err
	}
	evals, err := d.evaluations()
	if err != nil {
		return nil, err
	}
	return &orderedReader{scan: d.scan(id), spec: rec.Spec, evals: evals, tmpDir: d.dir, runSize: RunSize}, nil
}

// Analyze is the exact analysis of the events f selects (SPEC §7).
func (d *Offline) Analyze(ctx context.Context, id string, f Filter) (analysis.Report, error) {
	return analyze(ctx, d, id, f)
}

// Compare analyses experiments and compares each treatment with the
// baseline, ids[0] (SPEC §8).
func (d *Offline) Compare(ctx context.Context, ids []string, f Filter, opts analysis.CompareOptions) (CompareReport, error) {
	return compare(ctx, d, ids, f, opts)
}

// Pairs lists the per-sample differences of metric between two
// experiments, the baseline ids[0] and the treatment ids[1] (SPEC §13).
func (d *Offline) Pairs(ctx context.Context, ids []string, f Filter, metric string, limit int) (analysis.PairList, error) {
	return pairs(ctx, d, ids, f, metric, limit)
}

// Power plans an experiment from the events f selects as the baseline
// (SPEC §14).
func (d *Offline) Power(ctx context.Context, id string, f Filter, req PowerRequest) (analysis.Power, error) {
	return power(ctx, d, id, f, req)
}

// Export writes an experiment's events in (timestamp, event_id) order and
// returns how many it wrote (SPEC §9).
func (d *Offline) Export(ctx context.Context, w io.Writer, id string, opts ExportOptions) (int64, error) {
	return exportEvents(ctx, d, w, id, opts)
}
