package experiment

import (
	"context"
	"fmt"

	"github.com/crucible-telemetry/crucible-telemetry/evalstore"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Evaluations arrive apart from the events they score (OTLP
// gen_ai.evaluation.result log records naming a span, SPEC §15) and are
// kept sidecar-wide in the evaluations store: an evaluation names a span,
// not an experiment, and may come before its span or after it. Every read
// of events joins them — the analysis, comparison, pairing, /events and
// export see an event's scores as if it had been sent with them. The TSDB
// and /metrics hold only the scores an event was sent with.

// AddEvaluations stores evaluations durably and returns the ones refused.
func (m *Manager) AddEvaluations(ctx context.Context, evs []evalstore.Evaluation) ([]evalstore.Rejection, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ev := m.evals.Load()
	if !m.Ready() || ev == nil {
		return nil, ErrNotReady
	}
	return ev.Add(evs)
}

// Evaluations is the evaluations store, for its metrics; nil before Open.
func (m *Manager) Evaluations() *evalstore.Store { return m.evals.Load() }

func openEvaluations(dir string, m *Manager) error {
	s, err := evalstore.Open(dir, evalstore.Options{MaxScores: m.opts.MaxEvaluationScores, Logger: m.logger})
	if err != nil {
		return fmt.Errorf("open %s: %w", evalstore.File, err)
	}
	m.evals.Store(s)
	return nil
}

// joinEvent adds to e the scores evals holds for its span.
func joinEvent(evals *evalstore.Store, e *event.Event) {
	if evals == nil || evals.Empty() {
		return
	}
	if k, ok := event.SpanKeyOf(e.EventID); ok {
		e.Scores = evalstore.Merge(e.Scores, evals.Scores(k))
	}
}

// joinPoint adds to p the scores evals holds for its span.
func joinPoint(evals *evalstore.Store, p *tsdbstore.Point) {
	if evals != nil && p.HasSpan {
		p.Scores = evalstore.Merge(p.Scores, evals.Scores(p.Span))
	}
}
