package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// otelSpan is one span the test makes, and the JSON event it must equal.
type otelSpan struct {
	family  string // current, legacy, openinference, plain (not GenAI)
	model   string
	prompt  int
	answer  int
	failed  bool
	sample  string
	latency time.Duration
	judge   float64 // its evaluation; NaN: none
}

func otelSpans(arm int, n int) []otelSpan {
	families := []string{"current", "legacy", "openinference"}
	models := []string{"gpt-4o", "claude-3-5-sonnet-20241022", "gpt-4o-mini"}
	var out []otelSpan
	for i := range n {
		f := i % 3
		s := otelSpan{family: families[f], model: models[f], prompt: 100 + 7*i, answer: 20 + 3*i + 5*arm,
			failed: (i+arm)%7 == 0, sample: fmt.Sprintf("q-%d", i),
			latency: time.Duration(200+13*i+40*arm) * time.Millisecond, judge: math.Round(float64((i*5+arm*3)%10)) / 10}
		out = append(out, s)
	}
	return out
}

// record makes the spans with a recording tracer provider whose resource
// names the experiment, so that the test decides when they are exported.
func recordSpans(t *testing.T, experiment string, specs []otelSpan, base time.Time) []sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	res := resource.NewSchemaless(attribute.String("service.name", "eval-harness"), attribute.String("crucible.experiment_id", experiment))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(res))
	tr := tp.Tracer("crucible-e2e")
	for i, s := range specs {
		start := base.Add(time.Duration(i) * 100 * time.Millisecond)
		ctx, parent := tr.Start(context.Background(), "POST /answer", trace.WithTimestamp(start)) // not GenAI: ignored
		var attrs []attribute.KeyValue
		switch s.family {
		case "current":
			attrs = []attribute.KeyValue{attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.provider.name", "openai"),
				attribute.String("gen_ai.request.model", "gpt-4"), attribute.String("gen_ai.response.model", s.model),
				attribute.Int("gen_ai.usage.input_tokens", s.prompt), attribute.Int("gen_ai.usage.output_tokens", s.answer),
				attribute.String("gen_ai.input.messages", `[{"role":"user","parts":[{"type":"text","content":"SECRET PROMPT"}]}]`)}
		case "legacy":
			attrs = []attribute.KeyValue{attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.system", "anthropic"),
				attribute.String("gen_ai.request.model", s.model),
				attribute.Int("gen_ai.usage.prompt_tokens", s.prompt), attribute.Int("gen_ai.usage.completion_tokens", s.answer),
				attribute.String("gen_ai.prompt.0.content", "SECRET PROMPT"), attribute.String("gen_ai.completion.0.content", "SECRET ANSWER")}
		case "openinference":
			attrs = []attribute.KeyValue{attribute.String("openinference.span.kind", "LLM"), attribute.String("llm.provider", "openai"),
				attribute.String("llm.model_name", s.model),
				attribute.Int("llm.token_count.prompt", s.prompt), attribute.Int("llm.token_count.completion", s.answer),
				attribute.String("input.value", "SECRET PROMPT"), attribute.String("llm.output_messages.0.message.content", "SECRET ANSWER")}
		}
		attrs = append(attrs, attribute.String("crucible.sample_id", s.sample))
		_, span := tr.Start(ctx, "chat "+s.model, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start), trace.WithAttributes(attrs...))
		if s.failed {
			span.SetStatus(codes.Error, "rate limited")
		}
		span.End(trace.WithTimestamp(start.Add(s.latency)))
		parent.End(trace.WithTimestamp(start.Add(s.latency + time.Millisecond)))
	}
	var genai []sdktrace.ReadOnlySpan
	for _, sp := range rec.Ended() {
		genai = append(genai, sp)
	}
	return genai
}

// jsonTwin is the JSON event a GenAI span must equal, with its evaluation
// as a score.
func jsonTwin(s otelSpan, start time.Time) string {
	provider := map[string]string{"current": "openai", "legacy": "anthropic", "openinference": "openai"}[s.family]
	return fmt.Sprintf(`{"event_name":"gen_ai.chat","timestamp":%d,"latency_ms":%v,"success":%v,"scores":{"judge":%v},`+
		`"metadata":{"model":%q,"provider":%q,"sample_id":%q,"tokens":{"prompt":%d,"completion":%d}}}`,
		start.UnixMicro(), float64(s.latency.Nanoseconds())/1e6, !s.failed, s.judge, s.model, provider, s.sample, s.prompt, s.answer)
}

// sendEvaluations sends one gen_ai.evaluation.result per GenAI span of spans,
// naming the span by its context, with the OpenTelemetry logs SDK.
func sendEvaluations(t *testing.T, endpoint string, spans []sdktrace.ReadOnlySpan, judge func(sdktrace.ReadOnlySpan) float64) {
	t.Helper()
	ctx := context.Background()
	exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(endpoint), otlploghttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
	logger := lp.Logger("crucible-e2e-judge")
	for _, sp := range spans {
		v := judge(sp)
		if math.IsNaN(v) {
			continue
		}
		var r otellog.Record
		r.SetEventName("gen_ai.evaluation.result")
		r.SetTimestamp(time.Now())
		r.AddAttributes(attribute.String("gen_ai.evaluation.name", "judge"), attribute.Float64("gen_ai.evaluation.score.value", v))
		logger.Emit(trace.ContextWithSpanContext(ctx, sp.SpanContext()), r)
	}
	if err := lp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestOTLPEndToEnd: the OpenTelemetry Go SDK's exporters (OTLP/HTTP and
// OTLP/gRPC traces, OTLP/HTTP logs) pointed at the built sidecar. GenAI
// spans of three convention families become events, routed by the
// resource's crucible.experiment_id, without message contents; other
// spans are counted and ignored; a retried export is a duplicate;
// evaluation logs sent before and after their spans become scores, also
// after a restart; and the analysis and comparison of the experiments
// equal those of the same events sent as JSON.
func TestOTLPEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	dir := t.TempDir()
	grpcAddr := freePort(t)
	s := startSidecar(t, dir, "--otlp.grpc-listen-address="+grpcAddr)
	host := strings.TrimPrefix(s.root, "http://")
	for _, body := range []string{
		`{"id":"otel-a","name":"OTel A","condition":"control"}`, `{"id":"otel-b","name":"OTel B","condition":"treatment"}`,
		`{"id":"json-a","name":"JSON A","condition":"control"}`, `{"id":"json-b","name":"JSON B","condition":"treatment"}`,
	} {
		if code, out := s.post("/api/v1/experiments", body); code != http.StatusCreated {
			t.Fatalf("create: %d %s", code, out)
		}
	}
	ctx := context.Background()
	const n = 30
	base := time.Now().Add(-2 * time.Minute).Truncate(time.Millisecond)
	arms := [2][]otelSpan{otelSpans(0, n), otelSpans(1, n)}
	var spans [2][]sdktrace.ReadOnlySpan
	judgeOf := map[trace.SpanID]float64{}
	for arm, id := range []string{"otel-a", "otel-b"} {
		all := recordSpans(t, id, arms[arm], base)
		for _, sp := range all {
			if sp.Name() == "POST /answer" {
				continue
			}
			spans[arm] = append(spans[arm], sp)
		}
		if len(spans[arm]) != n {
			t.Fatalf("%d GenAI spans recorded", len(spans[arm]))
		}
		for i, sp := range spans[arm] {
			judgeOf[sp.SpanContext().SpanID()] = arms[arm][i].judge
		}
		// The plain spans travel with the GenAI ones.
		spans[arm] = all
	}
	judge := func(sp sdktrace.ReadOnlySpan) float64 {
		if v, ok := judgeOf[sp.SpanContext().SpanID()]; ok {
			return v
		}
		return math.NaN()
	}
	// Half of the evaluations arrive before their spans.
	sendEvaluations(t, host, spans[0][:n], judge)
	sendEvaluations(t, host, spans[1][:n], judge)

	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(host), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(grpcAddr), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	for _, export := range []func() error{
		func() error { return httpExp.ExportSpans(ctx, spans[0]) },
		func() error { return grpcExp.ExportSpans(ctx, spans[1]) },
		// Retried exports: duplicates, not double counts.
		func() error { return httpExp.ExportSpans(ctx, spans[0][:10]) },
		func() error { return grpcExp.ExportSpans(ctx, spans[1][:10]) },
	} {
		if err := export(); err != nil {
			t.Fatalf("export: %v", err)
		}
	}
	retriedGenAI := 0
	for arm := range spans {
		for _, sp := range spans[arm][:10] {
			if _, ok := judgeOf[sp.SpanContext().SpanID()]; ok {
				retriedGenAI++
			}
		}
	}
	sendEvaluations(t, host, spans[0][n:], judge)
	sendEvaluations(t, host, spans[1][n:], judge)
	httpExp.Shutdown(ctx)
	grpcExp.Shutdown(ctx)

	// The same events as JSON.
	for arm, id := range []string{"json-a", "json-b"} {
		var sb strings.Builder
		for i, sp := range arms[arm] {
			sb.WriteString(jsonTwin(sp, base.Add(time.Duration(i)*100*time.Millisecond)) + "\n")
		}
		if code, out := s.post("/api/v1/experiments/"+id+"/events", sb.String()); code != http.StatusOK || !strings.Contains(out, fmt.Sprintf(`"accepted":%d`, n)) {
			t.Fatalf("JSON ingest: %d %s", code, out)
		}
	}

	var events []json.RawMessage
	s.get("/api/v1/experiments/otel-a/events", &events)
	if len(events) != n {
		t.Fatalf("otel-a holds %d events, want %d (the plain spans ignored, the retry a duplicate)", len(events), n)
	}
	for _, e := range events {
		if strings.Contains(string(e), "SECRET") {
			t.Fatalf("message contents stored: %s", e)
		}
		if !strings.Contains(string(e), `"otel":`) || !strings.Contains(string(e), `"judge":`) {
			t.Fatalf("event without metadata.otel or its evaluation: %s", e)
		}
	}
	metrics := scrape(t, s)
	for _, want := range []string{
		fmt.Sprintf(`crucible_otlp_ignored_total{reason="not_genai",signal="traces"} %d`, 2*n+20-retriedGenAI),
		fmt.Sprintf(`crucible_otlp_evaluations_total{result="accepted"} %d`, 2*n),
		fmt.Sprintf(`crucible_ingest_events_total{result="duplicate"} %d`, retriedGenAI),
		fmt.Sprintf(`crucible_evaluation_scores %d`, 2*n),
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	checkTwins := func(t *testing.T, s *sidecar) {
		t.Helper()
		for _, pair := range [][2]string{{"otel-a", "json-a"}, {"otel-b", "json-b"}} {
			var got, want json.RawMessage
			s.get("/api/v1/experiments/"+pair[0]+"/metrics", &got)
			s.get("/api/v1/experiments/"+pair[1]+"/metrics", &want)
			if canonical(t, got) != canonical(t, want) {
				t.Errorf("analysis of %s differs from its JSON twin:\n%s\n%s", pair[0], got, want)
			}
		}
		var got, want struct {
			Comparison map[string]json.RawMessage `json:"comparison"`
		}
		s.get("/api/v1/compare?experiments=otel-a,otel-b", &got)
		s.get("/api/v1/compare?experiments=json-a,json-b", &want)
		if canonical(t, got.Comparison["otel-b"]) != canonical(t, want.Comparison["json-b"]) {
			t.Errorf("comparison differs from the JSON twins':\n%s\n%s", got.Comparison["otel-b"], want.Comparison["json-b"])
		}
		if !strings.Contains(string(got.Comparison["otel-b"]), fmt.Sprintf(`"n_pairs":%d`, n)) {
			t.Errorf("comparison is not paired over %d samples: %s", n, got.Comparison["otel-b"])
		}
	}
	checkTwins(t, s)
	if code := s.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, s.logs)
	}
	s = startSidecar(t, dir, "--otlp.grpc-listen-address="+grpcAddr)
	t.Run("after a restart", func(t *testing.T) { checkTwins(t, s) })

	t.Run("OTLP/HTTP answers", func(t *testing.T) { otlpAnswers(t, s) })
	s.stop(syscall.SIGTERM)
}

func scrape(t *testing.T, s *sidecar) string {
	t.Helper()
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// otlpAnswers checks OTLP/HTTP's answers as the specification has them:
// a partial success names the rejected spans, a body that does not decode
// is 400 with a Status, an unknown media type 415, and gzip is read.
func otlpAnswers(t *testing.T, s *sidecar) {
	span := func(id, experiment string) string {
		return fmt.Sprintf(`{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"%s","name":"chat","kind":3,`+
			`"startTimeUnixNano":"%d","endTimeUnixNano":"%d","attributes":[`+
			`{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},`+
			`{"key":"gen_ai.provider.name","value":{"stringValue":"openai"}},`+
			`{"key":"crucible.experiment_id","value":{"stringValue":"%s"}}]}`,
			id, time.Now().Add(-time.Second).UnixNano(), time.Now().UnixNano(), experiment)
	}
	body := `{"resourceSpans":[{"resource":{},"scopeSpans":[{"scope":{"name":"x"},"spans":[` +
		span("eee19b7ec3c1b174", "otel-a") + "," + span("eee19b7ec3c1b175", "no such experiment!") + `]}]}]}`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(body))
	zw.Close()
	for _, tc := range []struct {
		name, contentType, encoding string
		body                        []byte
		code                        int
		want                        string
	}{
		{"partial success", "application/json", "gzip", gz.Bytes(), http.StatusOK, `"rejectedSpans":"1"`},
		{"garbage", "application/json", "", []byte(`{"resourceSpans":[{`), http.StatusBadRequest, `"code":3`},
		{"garbage protobuf", "application/x-protobuf", "", []byte{0xff, 0xff, 0xff}, http.StatusBadRequest, ""},
		{"unknown media type", "text/plain", "", []byte(body), http.StatusUnsupportedMediaType, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/traces", bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.contentType)
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			// pdata writes int64 as a JSON string, as protojson does; either form is OTLP/JSON.
			got := strings.ReplaceAll(string(b), `"rejectedSpans":1`, `"rejectedSpans":"1"`)
			if resp.StatusCode != tc.code || !strings.Contains(got, tc.want) {
				t.Fatalf("%d %s, want %d with %s", resp.StatusCode, b, tc.code, tc.want)
			}
		})
	}
}
