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
}

func analyze(ctx context.Context, s source, id string, f Filter) (analysis.Report, error) {
	pts, err := s.Points(ctx, id, f)
	if err != nil {
		return analysis.Report{}, err
	}
	return analysis.Analyze(pts), nil
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
	groups := make([][]analysis.Point, len(ids))
	for i, id := range ids {
		var err error
		if groups[i], err = s.Points(ctx, id, f); err != nil {
			return CompareReport{}, err
		}
	}
	cmp := analysis.Compare(groups[0], groups[1:], opts)
	out := CompareReport{Experiments: ids, Individual: make([]analysis.Report, len(ids)), Comparison: map[string]analysis.Comparison{}}
	for i, g := range groups {
		out.Individual[i] = analysis.Analyze(g)
		if i > 0 {
			out.Comparison[ids[i]] = cmp[i-1]
		}
	}
	return out, nil
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
