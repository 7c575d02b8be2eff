package collector

import (
	"maps"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Stream is an experiment's streaming statistics since Since (its start, or
// the last reset).
type Stream struct {
	Since      time.Time
	Events     int64
	Latency    Welford // milliseconds, over events with a latency
	Cost       Welford // USD, over events with a cost
	Judged     int64   // events whose success is known
	Successful int64
	ByName     map[string]int64
}

func (s *Stream) add(e *event.Event) {
	s.Events++
	if e.LatencyMs.Valid {
		s.Latency.Add(e.LatencyMs.V)
	}
	if e.CostUSD.Valid {
		s.Cost.Add(e.CostUSD.V)
	}
	if e.Success.Valid {
		s.Judged++
		if e.Success.V {
			s.Successful++
		}
	}
	if s.ByName == nil {
		s.ByName = make(map[string]int64)
	}
	s.ByName[e.EventName]++
}

func (s Stream) clone() Stream {
	s.ByName = maps.Clone(s.ByName)
	return s
}

// SuccessRate is successful over judged events; NaN when none is judged.
func (s Stream) SuccessRate() float64 {
	if s.Judged == 0 {
		return math.NaN()
	}
	return float64(s.Successful) / float64(s.Judged)
}

type streamDescs struct {
	mean, stddev, min, max, ratio *prometheus.Desc
}

func newStreamDescs() streamDescs {
	labels := []string{"experiment_id", "experiment", "condition"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, labels, nil) }
	return streamDescs{
		mean:   d("crucible_stream_latency_mean_seconds", "Mean latency since the start or the last stream reset (Welford)."),
		stddev: d("crucible_stream_latency_stddev_seconds", "Sample standard deviation (n-1) of latency since the start or the last stream reset."),
		min:    d("crucible_stream_latency_min_seconds", "Smallest latency since the start or the last stream reset."),
		max:    d("crucible_stream_latency_max_seconds", "Largest latency since the start or the last stream reset."),
		ratio:  d("crucible_stream_success_ratio", "Successful over judged events since the start or the last stream reset."),
	}
}

// streamCollector exposes the streaming statistics as const metrics, read
// at scrape time.
type streamCollector struct{ m *Metrics }

func (c streamCollector) Describe(ch chan<- *prometheus.Desc) {
	d := c.m.streamDescs
	for _, x := range []*prometheus.Desc{d.mean, d.stddev, d.min, d.max, d.ratio} {
		ch <- x
	}
}

func (c streamCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.m.streamDescs
	c.m.mu.Lock()
	exps := make([]*experiment, 0, len(c.m.exps))
	for _, x := range c.m.exps {
		exps = append(exps, x)
	}
	c.m.mu.Unlock()
	for _, x := range exps {
		x.mu.Lock()
		s := x.stream
		x.mu.Unlock()
		lv := []string{x.ID, x.Name, x.Condition}
		if s.Latency.N > 0 {
			ch <- prometheus.MustNewConstMetric(d.mean, prometheus.GaugeValue, s.Latency.Mean/1000, lv...)
			ch <- prometheus.MustNewConstMetric(d.stddev, prometheus.GaugeValue, s.Latency.StdDev()/1000, lv...)
			ch <- prometheus.MustNewConstMetric(d.min, prometheus.GaugeValue, s.Latency.Min/1000, lv...)
			ch <- prometheus.MustNewConstMetric(d.max, prometheus.GaugeValue, s.Latency.Max/1000, lv...)
		}
		if s.Judged > 0 {
			ch <- prometheus.MustNewConstMetric(d.ratio, prometheus.GaugeValue, s.SuccessRate(), lv...)
		}
	}
}
