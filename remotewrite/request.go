package remotewrite

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// request builds one remote-write 1.0 WriteRequest: samples grouped by
// series, each series' labels sorted by name with the external labels
// merged in, as the protocol requires.
//
// It encodes itself (Size and MarshalToSizedBuffer, the methods
// client_golang's client looks for) into the bytes prompb's WriteRequest
// would give (TestRequestEncoding). The series it has seen outlive a
// request, with their labels encoded once: the same series come back in
// every request, where prompb would encode their labels each time.
type request struct {
	external []prompb.Label // sorted by name
	series   []series       // every series seen, up to maxKnownSeries
	index    map[uint64]int // series hash → index into series
	// recent caches index by the hash's low bits: most lookups end here.
	recent  [recentSize]recentEntry
	used    []int // the series of this request, in order of first sample
	round   int   // this request's number
	samples int
	newest  int64 // ms of the newest sample
}

type series struct {
	labels  labels.Labels
	encoded []byte // its TimeSeries' label fields
	round   int    // the request its samples belong to
	samples []sample
	size    int // of its encoded TimeSeries in this request
}

type sample struct {
	t int64
	v float64
}

const recentSize = 4096

type recentEntry struct {
	hash uint64
	i    int // index into series, +1 (0: empty)
}

// maxKnownSeries bounds the series a request keeps; past it, the next
// request starts afresh.
const maxKnownSeries = 10_000

func newRequest(external labels.Labels) *request {
	r := &request{index: map[uint64]int{}}
	external.Range(func(l labels.Label) { r.external = append(r.external, prompb.Label{Name: l.Name, Value: l.Value}) })
	return r
}

func (r *request) reset() {
	r.round++
	r.used = r.used[:0]
	r.samples, r.newest = 0, 0
	if len(r.series) > maxKnownSeries {
		clear(r.series)
		r.series = r.series[:0]
		clear(r.index)
		clear(r.recent[:])
	}
}

func (r *request) add(s tsdbstore.Sample) {
	i := r.lookup(s)
	sr := &r.series[i]
	if sr.round != r.round {
		sr.round, sr.samples, sr.size = r.round, sr.samples[:0], len(sr.encoded)
		r.used = append(r.used, i)
	}
	smp := sample{s.T, s.V}
	sr.samples = append(sr.samples, smp)
	sr.size += 2 + smp.size() // tag, length (a sample is < 128 bytes), sample
	if r.samples == 0 || s.T > r.newest {
		r.newest = s.T
	}
	r.samples++
}

// lookup returns the index of s's series, adding it when new.
func (r *request) lookup(s tsdbstore.Sample) int {
	h := s.Hash
	e := &r.recent[h%recentSize]
	i, ok := e.i-1, e.i > 0 && e.hash == h
	if !ok {
		if i, ok = r.index[h]; ok {
			*e = recentEntry{h, i + 1}
		}
	}
	if ok && labels.Equal(r.series[i].labels, s.Labels) {
		return i
	}
	i = len(r.series)
	r.series = append(r.series, series{labels: s.Labels, encoded: r.encodeLabels(s.Labels)})
	// Another series with the same hash stays unindexed: a request may
	// then hold one series twice.
	if !ok {
		r.index[h] = i
		*e = recentEntry{h, i + 1}
	}
	return i
}

// encodeLabels encodes ls merged with the external labels as a
// TimeSeries' label fields.
func (r *request) encodeLabels(ls labels.Labels) []byte {
	var b []byte
	for _, l := range r.mergeLabels(ls) {
		b = appendTag(b, 1, wireBytes)
		b = binary.AppendUvarint(b, uint64(l.Size()))
		b = appendString(b, 1, l.Name)
		b = appendString(b, 2, l.Value)
	}
	return b
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

// The protobuf encoding of remote-write 1.0's messages, as prompb (gogo)
// writes them: fields in number order, proto3 zero values left out.
// WriteRequest{1: repeated TimeSeries}, TimeSeries{1: repeated Label,
// 2: repeated Sample}, Label{1: name, 2: value}, Sample{1: double value,
// 2: int64 timestamp}.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
)

func appendTag(b []byte, field, wire int) []byte { return append(b, byte(field<<3|wire)) }

func appendString(b []byte, field int, s string) []byte {
	if s == "" {
		return b
	}
	b = appendTag(b, field, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

func (s sample) size() int {
	n := 0
	if s.v != 0 {
		n += 1 + 8
	}
	if s.t != 0 {
		n += 1 + uvarintLen(uint64(s.t))
	}
	return n
}

// Size is the length of the encoded WriteRequest.
func (r *request) Size() int {
	n := 0
	for _, i := range r.used {
		n += 1 + uvarintLen(uint64(r.series[i].size)) + r.series[i].size
	}
	return n
}

// MarshalToSizedBuffer encodes the WriteRequest into b, of length Size().
func (r *request) MarshalToSizedBuffer(b []byte) (int, error) {
	out := b[:0]
	for _, i := range r.used {
		s := &r.series[i]
		out = appendTag(out, 1, wireBytes)
		out = binary.AppendUvarint(out, uint64(s.size))
		out = append(out, s.encoded...)
		for _, smp := range s.samples {
			out = append(out, 2<<3|wireBytes, byte(smp.size()))
			if smp.v != 0 {
				out = appendTag(out, 1, wireFixed64)
				out = binary.LittleEndian.AppendUint64(out, math.Float64bits(smp.v))
			}
			if smp.t != 0 {
				out = appendTag(out, 2, wireVarint)
				out = binary.AppendUvarint(out, uint64(smp.t))
			}
		}
	}
	if len(out) != len(b) {
		return 0, fmt.Errorf("encoded %d bytes of a request of %d", len(out), len(b))
	}
	return len(out), nil
}
