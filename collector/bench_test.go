package collector

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// BenchmarkScrape serves /metrics for 100 experiments with about 20 series
// each, in the text format and in the protobuf format Prometheus asks for
// when it scrapes native histograms.
func BenchmarkScrape(b *testing.B) {
	reg := prometheus.NewRegistry()
	m := New(reg, Options{})
	for i := range 100 {
		id := fmt.Sprintf("exp-%03d", i)
		m.Set(Experiment{ID: id, Name: id, Condition: "c", Status: "running", Target: 1000})
		var evs []*event.Event
		for j := range 200 {
			evs = append(evs, ev([]string{"req_llm.request.stop", "req_llm.request.exception"}[j%2],
				[]string{"gpt-4o", "claude-sonnet-4-5"}[j/2%2], float64(10+j), &yes, 0.001))
		}
		m.Observe(id, evs, nil, 200)
	}
	n, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	series := 0
	for _, mf := range n {
		series += len(mf.GetMetric())
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	for _, format := range []struct{ name, accept string }{
		{"text", "text/plain"},
		{"protobuf", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"},
	} {
		b.Run(format.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				req.Header.Set("Accept", format.accept)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatal(rec.Code)
				}
			}
			b.ReportMetric(float64(series)/100, "series/experiment")
		})
	}
}

// BenchmarkObserve measures the live metrics' share of ingest per event.
func BenchmarkObserve(b *testing.B) {
	reg := prometheus.NewRegistry()
	m := New(reg, Options{})
	m.Set(Experiment{ID: "e", Name: "E", Condition: "c", Status: "running"})
	evs := make([]*event.Event, 1000)
	for i := range evs {
		evs[i] = ev("req_llm.request.stop", []string{"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash"}[i%4], float64(100+i), &yes, 0.001)
	}
	b.ReportAllocs()
	for b.Loop() {
		m.Observe("e", evs, nil, 1000)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}
