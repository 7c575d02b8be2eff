package tsdbstore

import (
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
)

// unregisterer remembers what it registered so that closing the store
// removes its metrics: two TSDBs on one registerer would otherwise collide.
// With only set, it registers just the collectors whose every metric is in
// it and drops the rest.
type unregisterer struct {
	prometheus.Registerer
	cs   []prometheus.Collector
	only map[string]bool
}

func newUnregisterer(r prometheus.Registerer) *unregisterer { return &unregisterer{Registerer: r} }

// TSDBHealthMetrics are the TSDB's own metrics shown per experiment unless
// Options.DetailedTSDBMetrics asks for all of them (about a hundred): what
// tells whether an experiment's TSDB takes every sample and stays whole.
var TSDBHealthMetrics = []string{
	"prometheus_tsdb_head_series",
	"prometheus_tsdb_head_samples_appended_total",
	"prometheus_tsdb_out_of_order_samples_total",
	"prometheus_tsdb_out_of_bound_samples_total",
	"prometheus_tsdb_too_old_samples_total",
	"prometheus_tsdb_wal_corruptions_total",
	"prometheus_tsdb_compactions_failed_total",
	"prometheus_tsdb_storage_blocks_bytes",
}

// lintFailing are TSDB metrics whose names `promtool check metrics` rejects
// ("should not include type 'histogram'"); they are never registered so
// that /metrics passes the linter.
var lintFailing = map[string]bool{
	"prometheus_tsdb_head_native_histogram_buckets": true,
	"prometheus_tsdb_head_native_histogram_series":  true,
}

var fqName = regexp.MustCompile(`fqName: "([^"]*)"`)

// metricNames are the names of the metrics c describes.
func metricNames(c prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	var names []string
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}

func (u *unregisterer) allowed(name string) bool {
	return !lintFailing[name] && (u.only == nil || u.only[name])
}

// Register registers c, or of c only the metrics allowed: some TSDB
// collectors describe many metrics at once.
func (u *unregisterer) Register(c prometheus.Collector) error {
	names := metricNames(c)
	keep := 0
	for _, n := range names {
		if u.allowed(n) {
			keep++
		}
	}
	switch {
	case keep == 0:
		return nil
	case keep < len(names):
		c = &filtered{Collector: c, allowed: u.allowed}
	}
	if err := u.Registerer.Register(c); err != nil {
		return err
	}
	u.cs = append(u.cs, c)
	return nil
}

// filtered passes on the metrics of a collector that allowed takes.
type filtered struct {
	prometheus.Collector
	allowed func(name string) bool
}

func descAllowed(d *prometheus.Desc, allowed func(string) bool) bool {
	m := fqName.FindStringSubmatch(d.String())
	return m != nil && allowed(m[1])
}

func (f *filtered) Describe(ch chan<- *prometheus.Desc) {
	all := make(chan *prometheus.Desc)
	go func() { f.Collector.Describe(all); close(all) }()
	for d := range all {
		if descAllowed(d, f.allowed) {
			ch <- d
		}
	}
}

func (f *filtered) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { f.Collector.Collect(all); close(all) }()
	for m := range all {
		if descAllowed(m.Desc(), f.allowed) {
			ch <- m
		}
	}
}

func (u *unregisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := u.Register(c); err != nil {
			panic(err)
		}
	}
}

func (u *unregisterer) unregisterAll() {
	for _, c := range u.cs {
		u.Registerer.Unregister(c)
	}
	u.cs = nil
}
