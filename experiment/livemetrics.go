package experiment

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

var unavailableDesc = prometheus.NewDesc("crucible_experiment_storage_unavailable",
	"1 for each experiment whose storage could not be opened; the reason is in its record and the log.", []string{"experiment_id"}, nil)

// unavailableCollector shows the experiments whose storage did not open.
type unavailableCollector struct{ m *Manager }

func (c unavailableCollector) Describe(ch chan<- *prometheus.Desc) { ch <- unavailableDesc }

func (c unavailableCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.RLock()
	defer c.m.mu.RUnlock()
	for id := range c.m.unavailable {
		ch <- prometheus.MustNewConstMetric(unavailableDesc, prometheus.GaugeValue, 1, id)
	}
}

// setMetrics shows an experiment's state on /metrics.
func (m *Manager) setMetrics(r Record, stored int64) {
	if m.opts.Metrics == nil {
		return
	}
	var target int64
	if r.SampleSize != nil {
		target = *r.SampleSize
	}
	var stoppedAt time.Time
	if r.StoppedAt != nil {
		stoppedAt = *r.StoppedAt
	}
	m.opts.Metrics.Set(collector.Experiment{
		ID: r.ID, Name: r.Name, Condition: r.Condition, Status: string(r.Status), Target: target, Stored: stored,
		StoppedAt: stoppedAt,
	})
}

// rebuildMetrics returns a visitor that counts every stored event into the
// live metrics while the store opens, so counters never go backwards across
// restarts.
func (m *Manager) rebuildMetrics(id string) func(*tsdbstore.LogRecord) error {
	if m.opts.Metrics == nil {
		return nil
	}
	dec := new(event.Decoder)
	var e event.Event
	one := []*event.Event{&e}
	overflow := make([]event.LabelOverflow, 1)
	n := int64(0)
	return func(r *tsdbstore.LogRecord) error {
		if err := dec.DecodeRecord(r.Data, &e, false); err != nil {
			return fmt.Errorf("%w: %v: %w", tsdbstore.ErrCorrupt, r.Pos, err)
		}
		n++
		overflow[0] = r.Overflow()
		m.opts.Metrics.Observe(id, one, overflow, n)
		return nil
	}
}

// Stream returns an experiment's streaming statistics.
func (m *Manager) Stream(id string) (collector.Stream, error) {
	if _, err := m.lookup(id); err != nil {
		return collector.Stream{}, err
	}
	if m.opts.Metrics == nil {
		return collector.Stream{}, fmt.Errorf("%w: live metrics are off", ErrNotFound)
	}
	s, ok := m.opts.Metrics.Stream(id)
	if !ok {
		return collector.Stream{}, fmt.Errorf("%w: %s has no live metrics (stopped longer than the series TTL)", ErrNotFound, id)
	}
	return s, nil
}

// ResetStream restarts an experiment's streaming statistics.
func (m *Manager) ResetStream(id string) (collector.Stream, error) {
	if _, err := m.lookup(id); err != nil {
		return collector.Stream{}, err
	}
	if m.opts.Metrics == nil || !m.opts.Metrics.ResetStream(id, m.opts.Now()) {
		return collector.Stream{}, fmt.Errorf("%w: %s has no live metrics", ErrNotFound, id)
	}
	return m.Stream(id)
}
