package api

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/loadgen"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

func benchAPI(b *testing.B, live bool) http.Handler {
	reg := prometheus.NewRegistry()
	var metrics *collector.Metrics
	if live {
		metrics = collector.New(reg, collector.Options{})
	}
	m := experiment.NewManager(experiment.Options{
		Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler), Metrics: metrics,
		Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: reg},
	})
	if err := m.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	if _, _, err := m.Create(experiment.CreateRequest{ID: "bench", Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	a := New(Options{Manager: m, Prices: pricing.NewHolder(pricing.Default()), MaxRequestBytes: 16 << 20, Registerer: reg})
	mux := http.NewServeMux()
	a.Register(mux)
	return mux
}

// BenchmarkIngestBatch measures the whole ingest path of one 1000-event
// NDJSON batch: body, decode, enrich, log, TSDB, and the live metrics.
func BenchmarkIngestBatch(b *testing.B) {
	b.Run("live-metrics", func(b *testing.B) { benchIngest(b, true, 0) })
	b.Run("storage-only", func(b *testing.B) { benchIngest(b, false, 0) })
	// Two quality scores per event (SPEC §13): decoded, stored in the log
	// and the points index, two more TSDB samples and summary observations.
	b.Run("live-metrics-2-scores", func(b *testing.B) { benchIngest(b, true, 2) })
}

func benchIngest(b *testing.B, live bool, scores int) {
	h := benchAPI(b, live)
	rng := rand.New(rand.NewPCG(1, 1))
	const n = 1000
	b.ReportAllocs()
	var body []byte
	for b.Loop() {
		b.StopTimer()
		body = loadgen.BatchWith(body[:0], rng, n, time.Now().UnixMicro(), loadgen.BatchOptions{Scores: scores})
		req := httptest.NewRequest(http.MethodPost, "/api/v1/experiments/bench/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-ndjson")
		rec := httptest.NewRecorder()
		b.StartTimer()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Body.String())
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkOTLPIngest measures the whole OTLP/HTTP ingest path of one
// 1000-span protobuf request — body, pdata decode, the GenAI mapping,
// enrichment, log, TSDB, live metrics — beside the JSON path's
// BenchmarkIngestBatch/live-metrics, whose events carry the same numbers.
func BenchmarkOTLPIngest(b *testing.B) {
	h := benchAPI(b, true)
	rng := rand.New(rand.NewPCG(1, 1))
	const n = 1000
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		body, err := loadgen.OTLPBatch(rng, n, time.Now(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		rec := httptest.NewRecorder()
		b.StartTimer()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Body.Len() > 0 && bytes.Contains(rec.Body.Bytes(), []byte("rejected")) {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}
