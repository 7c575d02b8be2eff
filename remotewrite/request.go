package remotewrite

import (
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// request builds one remote-write 1.0 WriteRequest: samples grouped by
// series, each series' labels sorted by name with the external labels
// merged in, as the protocol requires. Its buffers are reused.
type request struct {
	external []prompb.Label // sorted by name
	wr       prompb.WriteRequest
	index    map[uint64]int  // series hash → index into wr.Timeseries
	series   []labels.Labels // of wr.Timeseries, to tell hash collisions
	samples  int
	newest   int64 // ms of the newest sample
}

func newRequest(external labels.Labels) *request {
	r := &request{index: map[uint64]int{}}
	external.Range(func(l labels.Label) { r.external = append(r.external, prompb.Label{Name: l.Name, Value: l.Value}) })
	return r
}

func (r *request) reset() {
	for i := range r.wr.Timeseries {
		ts := &r.wr.Timeseries[i]
		ts.Labels, ts.Samples = ts.Labels[:0], ts.Samples[:0]
	}
	r.wr.Timeseries = r.wr.Timeseries[:0]
	clear(r.index)
	clear(r.series)
	r.series = r.series[:0]
	r.samples, r.newest = 0, 0
}

func (r *request) add(s tsdbstore.Sample) {
	h := s.Hash
	i, ok := r.index[h]
	// Another series with the same hash gets a series of its own, unindexed:
	// a request may hold one series twice.
	if !ok || !labels.Equal(r.series[i], s.Labels) {
		i = len(r.wr.Timeseries)
		if i < cap(r.wr.Timeseries) {
			r.wr.Timeseries = r.wr.Timeseries[:i+1]
		} else {
			r.wr.Timeseries = append(r.wr.Timeseries, prompb.TimeSeries{})
		}
		r.wr.Timeseries[i].Labels = r.mergeLabels(r.wr.Timeseries[i].Labels[:0], s.Labels)
		r.series = append(r.series, s.Labels)
		if !ok {
			r.index[h] = i
		}
	}
	ts := &r.wr.Timeseries[i]
	ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: s.T, Value: s.V})
	if r.samples == 0 || s.T > r.newest {
		r.newest = s.T
	}
	r.samples++
}

// mergeLabels appends ls and the external labels to dst, sorted by name.
// Both are sorted and their names disjoint (New checks that).
func (r *request) mergeLabels(dst []prompb.Label, ls labels.Labels) []prompb.Label {
	ext := r.external
	ls.Range(func(l labels.Label) {
		for len(ext) > 0 && strings.Compare(ext[0].Name, l.Name) < 0 {
			dst = append(dst, ext[0])
			ext = ext[1:]
		}
		dst = append(dst, prompb.Label{Name: l.Name, Value: l.Value})
	})
	return append(dst, ext...)
}
