package api

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// traces builds a request of spans: "genai:<experiment>" a GenAI chat span
// naming the experiment ("" none), "plain" an HTTP span.
func traces(kinds ...string) ptrace.Traces {
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	now := time.Now()
	for i, k := range kinds {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID([16]byte{1, byte(i)})
		sp.SetSpanID([8]byte{2, byte(i)})
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Second)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
		exp, genai := strings.CutPrefix(k, "genai:")
		if !genai {
			sp.SetName("GET /")
			sp.Attributes().PutStr("http.request.method", "GET")
			continue
		}
		sp.SetName("chat gpt-4o")
		a := sp.Attributes()
		a.PutStr("gen_ai.operation.name", "chat")
		a.PutStr("gen_ai.provider.name", "openai")
		a.PutStr("gen_ai.request.model", "gpt-4o")
		a.PutInt("gen_ai.usage.input_tokens", 100)
		a.PutInt("gen_ai.usage.output_tokens", 10)
		if exp == "long" { // a model name past event.MaxLabelLen: the mapping rejects it
			a.PutStr("gen_ai.request.model", strings.Repeat("m", event.MaxLabelLen+1))
			exp = "a"
		}
		if exp != "" {
			a.PutStr("crucible.experiment_id", exp)
		}
	}
	return td
}

func post(t *testing.T, f *fixture, path, contentType string, body []byte, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestOTLPTraces(t *testing.T) {
	f := newFixture(t, true)
	for _, id := range []string{"a", "b"} {
		f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"`+id+`","name":"`+id+`"}`))
	}
	req := ptraceotlp.NewExportRequestFromTraces(traces("genai:a", "genai:", "plain", "genai:bad id!", "genai:long", "genai:nope"))
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	for _, tc := range []struct {
		name, contentType string
		body              []byte
		decode            func(ptraceotlp.ExportResponse, []byte) error
	}{
		{"protobuf", "application/x-protobuf", pb, func(r ptraceotlp.ExportResponse, b []byte) error { return r.UnmarshalProto(b) }},
		{"json gzip", "application/json", gz(js), func(r ptraceotlp.ExportResponse, b []byte) error { return r.UnmarshalJSON(b) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.name == "json gzip" {
				headers = []string{"Content-Encoding", "gzip"}
			}
			resp, b := post(t, f, "/v1/traces", tc.contentType, tc.body, append(headers, ExperimentHeader, "b")...)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tc.contentType {
				t.Fatalf("%d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			out := ptraceotlp.NewExportResponse()
			if err := tc.decode(out, b); err != nil {
				t.Fatal(err)
			}
			// The invalid experiment id, the model too long and the unknown
			// experiment are rejected, each with its reason, in span order.
			ps := out.PartialSuccess()
			msg := ps.ErrorMessage()
			if ps.RejectedSpans() != 3 || !strings.Contains(msg, `span 3 (event_id `) ||
				!strings.Contains(msg, `invalid crucible.experiment_id "bad id!"`) || !strings.Contains(msg, "span 4: ") || !strings.Contains(msg, "span 5 (") ||
				strings.Index(msg, "span 3") > strings.Index(msg, "span 4") || strings.Index(msg, "span 4") > strings.Index(msg, "span 5") {
				t.Fatalf("partial success %d %q", ps.RejectedSpans(), ps.ErrorMessage())
			}
		})
	}
	// The first request stored one event in each; the second was a retry.
	if a, b := f.stored(t, "a"), f.stored(t, "b"); a != 1 || b != 1 {
		t.Fatalf("stored a=%d b=%d, want 1 and 1", a, b)
	}
	if got := testutil.ToFloat64(f.api.ingested.WithLabelValues("duplicate")); got != 2 {
		t.Errorf("duplicates %v, want 2", got)
	}
	if got := testutil.ToFloat64(f.api.otlpStats.ignored.WithLabelValues("traces", "not_genai")); got != 2 {
		t.Errorf("ignored %v, want 2", got)
	}

	t.Run("failures", func(t *testing.T) {
		for _, tc := range []struct {
			name, contentType string
			body              []byte
			headers           []string
			code              int
			grpc              codes.Code
		}{
			{"undecodable protobuf", "application/x-protobuf", []byte{0xff, 0xff}, nil, http.StatusBadRequest, codes.InvalidArgument},
			{"bad header", "application/x-protobuf", pb, []string{ExperimentHeader, "no good"}, http.StatusBadRequest, codes.InvalidArgument},
			{"too large", "application/x-protobuf", make([]byte, maxBody+1), nil, http.StatusRequestEntityTooLarge, codes.InvalidArgument},
			{"media type", "text/plain", pb, nil, http.StatusUnsupportedMediaType, codes.InvalidArgument},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := f.stored(t, "a") + f.stored(t, "b")
				resp, b := post(t, f, "/v1/traces", tc.contentType, tc.body, tc.headers...)
				if resp.StatusCode != tc.code {
					t.Fatalf("%d %q, want %d", resp.StatusCode, b, tc.code)
				}
				if tc.contentType == "application/x-protobuf" {
					var st status.Status
					if err := proto.Unmarshal(b, &st); err != nil || codes.Code(st.Code) != tc.grpc || st.Message == "" {
						t.Fatalf("status %v %v, want code %v with a message", &st, err, tc.grpc)
					}
				}
				if after := f.stored(t, "a") + f.stored(t, "b"); after != before {
					t.Fatalf("a failed request stored %d events", after-before)
				}
			})
		}
	})
}

func TestOTLPNotReady(t *testing.T) {
	f := newFixture(t, false)
	pb, _ := ptraceotlp.NewExportRequestFromTraces(traces("genai:a")).MarshalProto()
	resp, b := post(t, f, "/v1/traces", "application/x-protobuf", pb)
	var st status.Status
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || proto.Unmarshal(b, &st) != nil || codes.Code(st.Code) != codes.Unavailable {
		t.Fatalf("%d Retry-After=%q %v: want a retryable 503", resp.StatusCode, resp.Header.Get("Retry-After"), &st)
	}
}

func evaluationLogs(records ...[3]any) plog.Logs {
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for _, r := range records {
		lr := lrs.AppendEmpty()
		lr.SetEventName("gen_ai.evaluation.result")
		lr.SetTraceID([16]byte{1, r[0].(byte)})
		lr.SetSpanID([8]byte{2, r[0].(byte)})
		lr.Attributes().PutStr("gen_ai.evaluation.name", r[1].(string))
		lr.Attributes().PutDouble("gen_ai.evaluation.score.value", r[2].(float64))
	}
	lr := lrs.AppendEmpty() // not an evaluation
	lr.Body().SetStr("hello")
	return ld
}

func TestOTLPLogs(t *testing.T) {
	f := newFixture(t, true)
	pb, _ := plogotlp.NewExportRequestFromLogs(evaluationLogs([3]any{byte(0), "relevance", 0.5}, [3]any{byte(1), "not valid", 1.0})).MarshalProto()
	resp, b := post(t, f, "/v1/logs", "application/x-protobuf", pb)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
	out := plogotlp.NewExportResponse()
	if err := out.UnmarshalProto(b); err != nil {
		t.Fatal(err)
	}
	if ps := out.PartialSuccess(); ps.RejectedLogRecords() != 1 || !strings.Contains(ps.ErrorMessage(), "not valid") {
		t.Fatalf("partial success %d %q", ps.RejectedLogRecords(), ps.ErrorMessage())
	}
	k := event.NewSpanKey([16]byte{1, 0}, [8]byte{2, 0})
	if got := f.manager.Evaluations().Scores(k); len(got) != 1 || got[0] != (event.Score{Name: "relevance", Value: 0.5}) {
		t.Fatalf("stored %v", got)
	}
	for _, c := range []struct {
		result string
		want   float64
	}{{"accepted", 1}, {"rejected", 1}} {
		if got := testutil.ToFloat64(f.api.otlpStats.evaluations.WithLabelValues(c.result)); got != c.want {
			t.Errorf("evaluations %s = %v, want %v", c.result, got, c.want)
		}
	}
	if got := testutil.ToFloat64(f.api.otlpStats.ignored.WithLabelValues("logs", "not_evaluation")); got != 1 {
		t.Errorf("ignored %v, want 1", got)
	}
}

// The gRPC receiver stores as OTLP/HTTP does, routes by the
// x-crucible-experiment metadata, and refuses with OTLP's codes.
func TestOTLPGRPC(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"a","name":"a"}`))
	conn := grpcClient(t, f)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-crucible-experiment", "a")
	resp, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(traces("genai:", "plain", "genai:nope")))
	if err != nil {
		t.Fatal(err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedSpans() != 1 {
		t.Fatalf("partial success %d %q", ps.RejectedSpans(), ps.ErrorMessage())
	}
	if n := f.stored(t, "a"); n != 1 {
		t.Fatalf("stored %d", n)
	}
	lresp, err := plogotlp.NewGRPCClient(conn).Export(ctx, plogotlp.NewExportRequestFromLogs(evaluationLogs([3]any{byte(0), "relevance", 1.0})))
	if err != nil || lresp.PartialSuccess().RejectedLogRecords() != 0 {
		t.Fatalf("logs: %v %v", err, lresp.PartialSuccess().ErrorMessage())
	}
	bad := metadata.AppendToOutgoingContext(context.Background(), "x-crucible-experiment", "no good")
	_, err = ptraceotlp.NewGRPCClient(conn).Export(bad, ptraceotlp.NewExportRequestFromTraces(traces("genai:")))
	if grpcstatus.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad metadata: %v, want InvalidArgument", err)
	}
}

// With every ingest slot taken, a gRPC export is refused as Unavailable,
// which OTLP exporters retry (ResourceExhausted they retry only with
// RetryInfo), and stores nothing.
func TestOTLPGRPCBusy(t *testing.T) {
	f := newFixtureWith(t, true, Options{MaxInflightRequests: 1, QueueTimeout: 10 * time.Millisecond})
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"a","name":"a"}`))
	conn := grpcClient(t, f)
	done, ok := f.api.slots.acquire(context.Background(), time.Now())
	if !ok {
		t.Fatal("no slot")
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-crucible-experiment", "a")
	_, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(traces("genai:")))
	done()
	if grpcstatus.Code(err) != codes.Unavailable {
		t.Fatalf("busy: %v, want Unavailable", err)
	}
	if n := f.stored(t, "a"); n != 0 {
		t.Fatalf("a refused export stored %d events", n)
	}
}

// grpcClient serves f's OTLP/gRPC receiver on a loopback port and returns
// a connection to it.
func grpcClient(t *testing.T, f *fixture) *grpc.ClientConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := f.api.GRPCServer()
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
