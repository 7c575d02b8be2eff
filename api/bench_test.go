package api

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/loadgen"
	"github.com/crucible-telemetry/crucible-telemetry/otlp"
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
		body := otlpBatch(b, rng, n, time.Now())
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

// otlpBatch is n GenAI chat spans as an OpenTelemetry SDK exports them:
// a resource naming the experiment, and the GenAI conventions' attributes.
func otlpBatch(b *testing.B, rng *rand.Rand, n int, now time.Time) []byte {
	models := [][2]string{{"gpt-4o", "openai"}, {"gpt-4o-mini", "openai"}, {"claude-3-5-sonnet-20241022", "anthropic"}}
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	ra := rs.Resource().Attributes()
	ra.PutStr("service.name", "chat-service")
	ra.PutStr("telemetry.sdk.language", "go")
	ra.PutStr("telemetry.sdk.name", "opentelemetry")
	ra.PutStr("telemetry.sdk.version", "1.47.0")
	ra.PutStr(otlp.AttrExperimentID, "bench")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("go.opentelemetry.io/contrib/instrumentation/genai")
	spans := ss.Spans()
	spans.EnsureCapacity(n)
	for i := range n {
		m := models[rng.IntN(len(models))]
		sp := spans.AppendEmpty()
		var tid [16]byte
		var sid [8]byte
		binary.LittleEndian.PutUint64(tid[:], rng.Uint64())
		binary.LittleEndian.PutUint64(tid[8:], rng.Uint64())
		binary.LittleEndian.PutUint64(sid[:], rng.Uint64())
		sp.SetTraceID(tid)
		sp.SetSpanID(sid)
		sp.SetName("chat " + m[0])
		sp.SetKind(ptrace.SpanKindClient)
		start := now.Add(-time.Duration(n-i) * 4 * time.Microsecond)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(200e6 + rng.ExpFloat64()*800e6))))
		a := sp.Attributes()
		a.PutStr("gen_ai.operation.name", "chat")
		a.PutStr("gen_ai.provider.name", m[1])
		a.PutStr("gen_ai.request.model", m[0])
		a.PutStr("gen_ai.response.model", m[0])
		a.PutInt("gen_ai.usage.input_tokens", int64(200+rng.IntN(1800)))
		a.PutInt("gen_ai.usage.output_tokens", int64(20+rng.IntN(600)))
		a.PutStr("gen_ai.conversation.id", "s-"+strconv.FormatUint(rng.Uint64()%100000, 16))
		a.PutStr(otlp.AttrSampleID, "q-"+strconv.Itoa(rng.IntN(5000)))
		a.PutStr("gen_ai.response.id", "chatcmpl-"+strconv.FormatUint(rng.Uint64(), 36))
		a.PutStr("server.address", "api.openai.com")
		if rng.IntN(50) == 0 {
			sp.Status().SetCode(ptrace.StatusCodeError)
			a.PutStr("error.type", "rate_limit")
		}
	}
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		b.Fatal(err)
	}
	return body
}
