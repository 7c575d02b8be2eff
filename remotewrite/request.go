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
	// known keeps the merged labels of series seen in earlier requests:
	// the same few series come back in every request.
	known map[uint64]knownSeries
}

type knownSeries struct {
	labels labels.Labels
	merged []prompb.Label // shared by the requests' series: never appended to
}

// maxKnownSeries bounds request.known; past it the cache starts afresh.
const maxKnownSeries = 10_000

func newRequest(external labels.Labels) *request {
	r := &request{index: map[uint64]int{}, known: map[uint64]knownSeries{}}
	external.Range(func(l labels.Label) { r.external = append(r.external, prompb.Label{Name: l.Name, Value: l.Value}) })
	return r
}

func (r *request) reset() {
	for i := range r.wr.Timeseries {
		ts := &r.wr.Timeseries[i]
		ts.Labels, ts.Samples = nil, ts.Samples[:0]
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
		r.wr.Timeseries[i].Labels = r.merged(s.Labels, h)
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

// merged returns the labels ls (of hash h) and the external labels,
// sorted by name.
func (r *request) merged(ls labels.Labels, h uint64) []prompb.Label {
	if k, ok := r.known[h]; ok && labels.Equal(k.labels, ls) {
		return k.merged
	}
	m := r.mergeLabels(ls)
	if len(r.known) >= maxKnownSeries {
		clear(r.known)
	}
	r.known[h] = knownSeries{ls, m}
	return m
}

// mergeLabels returns ls and the external labels, sorted by name. Both are
// sorted and their names disjoint (New checks that).
func (r *request) mergeLabels(ls labels.Labels) []prompb.Label {
	dst := make([]prompb.Label, 0, ls.Len()+len(r.external))
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
