package experiment

import (
	"context"
	"errors"
	"fmt"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
)

// Fleet runs the analysis, comparison and planning of SPEC §7, §8 and §14
// — the same assembly as the Manager's and Offline's — over events
// rebuilt elsewhere: from the raw samples a fleet of sidecars wrote to a
// Prometheus-compatible store (SPEC §16).
type Fleet struct {
	points func(ctx context.Context, id string, f Filter) ([]analysis.Point, error)
}

// NewFleet returns the analysis over points.
func NewFleet(points func(ctx context.Context, id string, f Filter) ([]analysis.Point, error)) *Fleet {
	return &Fleet{points: points}
}

// Points returns the events f selects.
func (d *Fleet) Points(ctx context.Context, id string, f Filter) ([]analysis.Point, error) {
	if f.Cluster != nil {
		return nil, fmt.Errorf("%w: clustered errors need the events' %s, which samples do not carry", ErrInvalid, f.Cluster)
	}
	return d.points(ctx, id, f)
}

// ordered: samples are no events to export.
func (d *Fleet) ordered(string) (*orderedReader, error) {
	return nil, errors.New("raw samples cannot be exported as events: export from the sidecars")
}

// Analyze is the analysis of the events f selects (SPEC §7).
func (d *Fleet) Analyze(ctx context.Context, id string, f Filter) (analysis.Report, error) {
	return analyze(ctx, d, id, f)
}

// Compare compares each treatment with the baseline, ids[0] (SPEC §8).
func (d *Fleet) Compare(ctx context.Context, ids []string, f Filter, opts analysis.CompareOptions) (CompareReport, error) {
	return compare(ctx, d, ids, f, opts)
}

// Power plans an experiment from the events f selects (SPEC §14).
func (d *Fleet) Power(ctx context.Context, id string, f Filter, req PowerRequest) (analysis.Power, error) {
	return power(ctx, d, id, f, req)
}
