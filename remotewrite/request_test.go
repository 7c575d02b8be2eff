package remotewrite

import (
	"math"
	"strconv"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// busySamples are n samples as a busy sidecar commits them: 100 events a
// millisecond spread over slot series, five numbers each.
func busySamples(n int) []tsdbstore.Sample {
	var series []labels.Labels
	for slot := range 20 {
		for _, model := range []string{"gpt-4o", "gpt-4o-mini"} {
			for _, name := range tsdbstore.MetricNames[:5] {
				b := labels.NewBuilder(labels.FromStrings("__name__", name, "experiment_id", "loadgen", "condition", "control",
					"event", "llm.request", "model", model, "provider", "openai"))
				if slot > 0 {
					b.Set(tsdbstore.SlotLabel, strconv.Itoa(slot))
				}
				series = append(series, b.Labels())
			}
		}
	}
	out := make([]tsdbstore.Sample, n)
	for i := range out {
		ls := series[i%len(series)]
		out[i] = tsdbstore.Sample{Labels: ls, Hash: ls.Hash(), T: 1_764_000_000_000 + int64(i/len(series)), V: float64(i%997) / 7}
	}
	return out
}

// BenchmarkRequest measures building and marshalling one request of
// 10,000 samples.
//
//	go test ./remotewrite -run '^$' -bench Request -count 5
func BenchmarkRequest(b *testing.B) {
	samples := busySamples(10_000)
	r := newRequest(labels.FromStrings("pod", "crucible-0"))
	var buf []byte
	for b.Loop() {
		r.reset()
		for _, s := range samples {
			r.add(s)
		}
		buf = marshalled(b, r, buf)
	}
	b.ReportMetric(float64(len(buf))/float64(len(samples)), "bytes/sample")
}

func marshalled(tb testing.TB, r *request, buf []byte) []byte {
	n := r.Size()
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := r.MarshalToSizedBuffer(buf); err != nil {
		tb.Fatal(err)
	}
	return buf
}

// A request encodes into the very bytes prompb gives the WriteRequest of
// its samples (grouped by series in order of first appearance, labels
// merged with the external ones), including proto3's left-out zeros, and
// decodes back with prompb into its samples. Requests keep their series
// from one to the next, so each case runs twice on a fresh request and
// once on one that built every case before.
func TestRequestEncoding(t *testing.T) {
	a := labels.FromStrings("__name__", "crucible_event_latency_seconds", "experiment_id", "x", "model", "m")
	b := labels.FromStrings("__name__", "crucible_event_cost_usd", "experiment_id", "x", "slot", "2")
	external := labels.FromStrings("cluster", "eu", "pod", "crucible-0")
	shared := newRequest(external)
	at := func(ls labels.Labels, hash uint64, t int64, v float64) tsdbstore.Sample {
		return tsdbstore.Sample{Labels: ls, Hash: hash, T: t, V: v}
	}
	for _, tc := range []struct {
		name    string
		samples []tsdbstore.Sample
	}{
		{"empty", nil},
		{"two series interleaved", []tsdbstore.Sample{
			at(a, a.Hash(), 1_764_000_000_000, 0.25), at(b, b.Hash(), 1_764_000_000_000, 0.001), at(a, a.Hash(), 1_764_000_000_001, 1.5)}},
		{"zero value and zero time left out", []tsdbstore.Sample{at(a, a.Hash(), 0, 0), at(a, a.Hash(), 5, 0), at(a, a.Hash(), 0, 7)}},
		{"negative zero, NaN, infinities, a negative time", []tsdbstore.Sample{
			at(a, a.Hash(), -1, math.Copysign(0, -1)), at(a, a.Hash(), 1, math.NaN()), at(b, b.Hash(), math.MaxInt64, math.Inf(1)), at(b, b.Hash(), math.MinInt64, math.Inf(-1))}},
		{"two series of one hash stay two", []tsdbstore.Sample{at(a, 42, 1, 1), at(b, 42, 1, 2), at(a, 42, 2, 3)}},
		{"a busy request", busySamples(DefaultQueueConfig.MaxSamplesPerSend)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh := newRequest(external)
			for _, r := range []*request{fresh, fresh, shared} {
				r.reset()
				for _, s := range tc.samples {
					r.add(s)
				}
				got := marshalled(t, r, nil)
				want := prompbRequest(tc.samples, external)
				wantBytes, err := want.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != string(wantBytes) {
					t.Fatalf("encoded %d bytes, prompb %d, and they differ", len(got), len(wantBytes))
				}
				var back prompb.WriteRequest
				if err := back.Unmarshal(got); err != nil {
					t.Fatal(err)
				}
				if n := countSamples(back); n != len(tc.samples) || r.samples != n {
					t.Fatalf("%d samples decoded, %d counted, %d added", n, r.samples, len(tc.samples))
				}
			}
		})
	}
}

// prompbRequest is the WriteRequest of samples built with prompb's types:
// one TimeSeries per distinct label set, in order of first appearance.
func prompbRequest(samples []tsdbstore.Sample, external labels.Labels) *prompb.WriteRequest {
	wr := &prompb.WriteRequest{}
	index := map[string]int{}
	for _, s := range samples {
		key := s.Labels.String()
		i, ok := index[key]
		if !ok {
			i = len(wr.Timeseries)
			index[key] = i
			b := labels.NewBuilder(s.Labels)
			external.Range(func(l labels.Label) { b.Set(l.Name, l.Value) })
			var ls []prompb.Label
			b.Labels().Range(func(l labels.Label) { ls = append(ls, prompb.Label{Name: l.Name, Value: l.Value}) })
			wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{Labels: ls})
		}
		wr.Timeseries[i].Samples = append(wr.Timeseries[i].Samples, prompb.Sample{Timestamp: s.T, Value: s.V})
	}
	return wr
}

func countSamples(wr prompb.WriteRequest) int {
	n := 0
	for _, ts := range wr.Timeseries {
		n += len(ts.Samples)
	}
	return n
}

// The series a request keeps are bounded: past maxKnownSeries the next
// request starts afresh, and encodes as before.
func TestRequestForgetsSeriesPastTheBound(t *testing.T) {
	r := newRequest(labels.EmptyLabels())
	var many []tsdbstore.Sample
	for i := range maxKnownSeries + 1 {
		ls := labels.FromStrings("__name__", "crucible_event_latency_seconds", "slot", strconv.Itoa(i))
		many = append(many, tsdbstore.Sample{Labels: ls, Hash: ls.Hash(), T: int64(i), V: 1})
	}
	for _, s := range many {
		r.add(s)
	}
	r.reset()
	if len(r.series) != 0 || len(r.index) != 0 {
		t.Fatalf("%d series kept, %d indexed, past a bound of %d", len(r.series), len(r.index), maxKnownSeries)
	}
	few := many[:3]
	for _, s := range few {
		r.add(s)
	}
	want, _ := prompbRequest(few, labels.EmptyLabels()).Marshal()
	if got := marshalled(t, r, nil); string(got) != string(want) {
		t.Fatal("a request after the bound encodes differently from prompb")
	}
}
