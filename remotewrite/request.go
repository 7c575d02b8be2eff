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
// merged in, as the protocol requires. Its buffers are reused.
//
// It encodes itself (Size and MarshalToSizedBuffer, the methods
// client_golang's client looks for) into the bytes prompb's WriteRequest
// would give (TestRequestEncoding): each series' labels are encoded once
// and kept, where prompb would encode them in every request, and samples
// are held as time and value, without prompb's per-sample fields.
type request struct {
	external []prompb.Label // sorted by name
	series   []series
	index    map[uint64]int  // series hash → index into series
	labels   []labels.Labels // of series, to tell hash collisions
	// recent caches index by the hash's low bits: a request's samples come
	// from a few hundred series, and most lookups end here.
	recent  [recentSize]recentEntry
	samples int
	newest  int64 // ms of the newest sample
	// known keeps the encoded labels of series seen in earlier requests:
	// the same series come back in every request.
	known map[uint64]knownSeries
}

type series struct {
	labels  []byte // the TimeSeries' encoded label fields; shared with known
	samples []sample
	size    int // of the encoded TimeSeries
}

const recentSize = 1024

type recentEntry struct {
	hash uint64
	i    int // index into series, +1 (0: empty)
}

type sample struct {
	t int64
	v float64
}

type knownSeries struct {
	labels  labels.Labels
	encoded []byte
}

// maxKnownSeries bounds request.known; past it the cache starts afresh.
const maxKnownSeries = 10_000

func newRequest(external labels.Labels) *request {
	r := &request{index: map[uint64]int{}, known: map[uint64]knownSeries{}}
	external.Range(func(l labels.Label) { r.external = append(r.external, prompb.Label{Name: l.Name, Value: l.Value}) })
	return r
}

func (r *request) reset() {
	for i := range r.series {
		r.series[i].labels, r.series[i].samples = nil, r.series[i].samples[:0]
	}
	r.series = r.series[:0]
	clear(r.index)
	clear(r.recent[:])
	clear(r.labels)
	r.labels = r.labels[:0]
	r.samples, r.newest = 0, 0
}

func (r *request) add(s tsdbstore.Sample) {
	h := s.Hash
	var i int
	var ok bool
	if e := &r.recent[h%recentSize]; e.i > 0 && e.hash == h {
		i, ok = e.i-1, true
	} else if i, ok = r.index[h]; ok {
		*e = recentEntry{h, i + 1}
	}
	// Another series with the same hash gets a series of its own, unindexed:
	// a request may hold one series twice.
	if !ok || !labels.Equal(r.labels[i], s.Labels) {
		i = len(r.series)
		if i < cap(r.series) {
			r.series = r.series[:i+1]
		} else {
			r.series = append(r.series, series{})
		}
		r.series[i].labels = r.encodedLabels(s.Labels, h)
		r.series[i].size = len(r.series[i].labels)
		r.labels = append(r.labels, s.Labels)
		if !ok {
			r.index[h] = i
			r.recent[h%recentSize] = recentEntry{h, i + 1}
		}
	}
	smp := sample{s.T, s.V}
	sr := &r.series[i]
	sr.samples = append(sr.samples, smp)
	sr.size += 2 + smp.size() // tag, length (a sample is < 128 bytes), sample
	if r.samples == 0 || s.T > r.newest {
		r.newest = s.T
	}
	r.samples++
}

// encodedLabels returns the encoded label fields of ls (of hash h) merged
// with the external labels.
func (r *request) encodedLabels(ls labels.Labels, h uint64) []byte {
	if k, ok := r.known[h]; ok && labels.Equal(k.labels, ls) {
		return k.encoded
	}
	var b []byte
	for _, l := range r.mergeLabels(ls) {
		b = appendTag(b, 1, wireBytes)
		b = binary.AppendUvarint(b, uint64(l.Size()))
		b = appendString(b, 1, l.Name)
		b = appendString(b, 2, l.Value)
	}
	if len(r.known) >= maxKnownSeries {
		clear(r.known)
	}
	r.known[h] = knownSeries{ls, b}
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
	for i := range r.series {
		n += 1 + uvarintLen(uint64(r.series[i].size)) + r.series[i].size
	}
	return n
}

// MarshalToSizedBuffer encodes the WriteRequest into b, of length Size().
func (r *request) MarshalToSizedBuffer(b []byte) (int, error) {
	out := b[:0]
	for i := range r.series {
		s := &r.series[i]
		out = appendTag(out, 1, wireBytes)
		out = binary.AppendUvarint(out, uint64(s.size))
		out = append(out, s.labels...)
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
