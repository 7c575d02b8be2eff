package experiment

import (
	"context"
	"fmt"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
)

// source is where the read path finds an experiment's events: the
// Manager's open stores, or a data directory read Offline. The analysis
// and export are assembled once, over either.
type source interface {
	Points(ctx context.Context, id string, f Filter) ([]analysis.Point, error)
	ordered(id string) (*orderedReader, error)
}

// CompareReport is a comparison of experiments (SPEC §8): each one's
// analysis, and each treatment against the baseline, the first.
type CompareReport struct {
	Experiments []string                       `json:"experiments"`
	Individual  []analysis.Report              `json:"individual"`
	Comparison  map[string]analysis.Comparison `json:"comparison"`
	// SRM checks the experiments' event counts against opts.Allocation.
	SRM analysis.SRM `json:"srm"`
	// Notes say what a comparison read from elsewhere than the event logs
	// cannot hold (fleet analysis, SPEC §16).
	Notes []string `json:"notes,omitempty"`
}

func analyze(ctx context.Context, s source, id string, f Filter) (analysis.Report, error) {
	pts, err := s.Points(ctx, id, f)
	if err != nil {
		return analysis.Report{}, err
	}
	return analysis.AnalyzeWith(pts, analysis.AnalyzeOptions{Clustered: f.Cluster != nil}), nil
}

func windows(ctx context.Context, s source, id string, f Filter, size, step time.Duration) ([]analysis.Window, error) {
	if size.Microseconds() < 1 || step.Microseconds() < 1 {
		return nil, fmt.Errorf("%w: window size and step must be at least 1µs", ErrInvalid)
	}
	pts, err := s.Points(ctx, id, f)
	if err != nil {
		return nil, err
	}
	return analysis.Windows(pts, size.Microseconds(), step.Microseconds()), nil
}

func compare(ctx context.Context, s source, ids []string, f Filter, opts analysis.CompareOptions) (CompareReport, error) {
	if len(ids) < 2 {
		return CompareReport{}, fmt.Errorf("%w: a comparison needs a baseline and at least one treatment", ErrInvalid)
	}
	if opts.Allocation != nil && len(opts.Allocation) != len(ids) {
		return CompareReport{}, fmt.Errorf("%w: allocation has %d shares for %d experiments", ErrInvalid, len(opts.Allocation), len(ids))
	}
	groups := make([][]analysis.Point, len(ids))
	counts := make([]int64, len(ids))
	for i, id := range ids {
		var err error
		if groups[i], err = s.Points(ctx, id, f); err != nil {
			return CompareReport{}, err
		}
		counts[i] = int64(len(groups[i]))
	}
	srm, err := analysis.SampleRatio(counts, opts.Allocation)
	if err != nil {
		return CompareReport{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// With clusters, the differences and each experiment's means get
	// clustered errors.
	opts.Clustered = opts.Clustered || f.Cluster != nil
	cmp := analysis.Compare(groups[0], groups[1:], opts)
	out := CompareReport{Experiments: ids, Individual: make([]analysis.Report, len(ids)), Comparison: map[string]analysis.Comparison{}, SRM: srm}
	for i, g := range groups {
		out.Individual[i] = analysis.AnalyzeWith(g, analysis.AnalyzeOptions{Clustered: opts.Clustered})
		if i > 0 {
			out.Comparison[ids[i]] = cmp[i-1]
		}
	}
	return out, nil
}

// pairs lists, sample by sample, the differences of metric between the
// treatment ids[1] and the baseline ids[0] (SPEC §13), at most limit of
// them, the largest first.
func pairs(ctx context.Context, s source, ids []string, f Filter, metric string, limit int) (analysis.PairList, error) {
	if len(ids) != 2 {
		return analysis.PairList{}, fmt.Errorf("%w: per-sample differences need exactly two experiments, the baseline and the treatment; got %d", ErrInvalid, len(ids))
	}
	// The request is checked before the experiments are read.
	if _, err := analysis.Pairs(nil, nil, metric, limit); err != nil {
		return analysis.PairList{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	arms := make([][]analysis.Point, 2)
	for i, id := range ids {
		var err error
		if arms[i], err = s.Points(ctx, id, f); err != nil {
			return analysis.PairList{}, err
		}
	}
	pl, err := analysis.Pairs(arms[0], arms[1], metric, limit)
	if err != nil {
		return analysis.PairList{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return pl, nil
}

// PowerRequest asks for a sample size (SPEC §14): of metric (latency, cost,
// success or score:<name>), to detect MDE at level Alpha with probability
// Power.
type PowerRequest struct {
	Metric            string
	MDE, Alpha, Power float64
}

// DefaultPowerRequest has the conventional level and power.
var DefaultPowerRequest = PowerRequest{Alpha: 0.05, Power: 0.8}

func power(ctx context.Context, s source, id string, f Filter, req PowerRequest) (analysis.Power, error) {
	// The request is checked before the experiment is read.
	if _, err := analysis.MetricValues(nil, req.Metric); err != nil {
		return analysis.Power{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := analysis.PowerOf(req.Metric, nil, req.MDE, req.Alpha, req.Power); err != nil {
		return analysis.Power{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	pts, err := s.Points(ctx, id, f)
	if err != nil {
		return analysis.Power{}, err
	}
	values, _ := analysis.MetricValues(pts, req.Metric)
	return analysis.PowerOf(req.Metric, values, req.MDE, req.Alpha, req.Power)
}

// Power plans an experiment from the events f selects as the baseline
// (SPEC §14).
func (m *Manager) Power(ctx context.Context, id string, f Filter, req PowerRequest) (analysis.Power, error) {
	return power(ctx, m, id, f, req)
}

// Analyze is the exact analysis of the events f selects (SPEC §7).
func (m *Manager) Analyze(ctx context.Context, id string, f Filter) (analysis.Report, error) {
	return analyze(ctx, m, id, f)
}

// Windows is the analysis of the events f selects in windows of size,
// one every step, anchored at the first event (SPEC §7).
func (m *Manager) Windows(ctx context.Context, id string, f Filter, size, step time.Duration) ([]analysis.Window, error) {
	return windows(ctx, m, id, f, size, step)
}

// Compare analyses experiments and compares each treatment with the
// baseline, ids[0] (SPEC §8).
func (m *Manager) Compare(ctx context.Context, ids []string, f Filter, opts analysis.CompareOptions) (CompareReport, error) {
	return compare(ctx, m, ids, f, opts)
}

// Pairs lists the per-sample differences of metric between two
// experiments, the baseline ids[0] and the treatment ids[1] (SPEC §13).
func (m *Manager) Pairs(ctx context.Context, ids []string, f Filter, metric string, limit int) (analysis.PairList, error) {
	return pairs(ctx, m, ids, f, metric, limit)
}
