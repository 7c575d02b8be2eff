package otlp

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// benchRequest is an OTLP/protobuf export of n GenAI chat spans ending
// before now, as the OpenTelemetry GenAI instrumentations send them: 14
// attributes and the dated model name a provider answers with, and with
// contents the two message attributes that capturing content adds (which
// the mapping leaves out). Spans of different rounds have different ids.
func benchRequest(b testing.TB, n int, now time.Time, round int, contents bool) []byte {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	ra := rs.Resource().Attributes()
	ra.PutStr("service.name", "support-bot")
	ra.PutStr("service.version", "1.4.2")
	ra.PutStr("telemetry.sdk.language", "python")
	ra.PutStr("telemetry.sdk.name", "opentelemetry")
	ra.PutStr("telemetry.sdk.version", "1.38.0")
	ra.PutStr(AttrExperimentID, "ab-prompt-v2")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("opentelemetry.instrumentation.openai_v2")
	ss.Scope().SetVersion("2.2b0")
	start := uint64(now.UnixNano()) - 60e9
	for i := range n {
		s := ss.Spans().AppendEmpty()
		var tid [16]byte
		var sid [8]byte
		for j := range tid {
			tid[j] = byte(i>>(j%4*8)) ^ byte(j*37+1)
		}
		tid[15] ^= byte(round)
		tid[14] ^= byte(round >> 8)
		for j := range sid {
			sid[j] = byte(i>>(j%4*8)) ^ byte(j*11+3)
		}
		s.SetTraceID(tid)
		s.SetSpanID(sid)
		s.SetName("chat gpt-4o")
		s.SetKind(ptrace.SpanKindClient)
		st := start + uint64(i)*1e6
		s.SetStartTimestamp(pcommon.Timestamp(st))
		s.SetEndTimestamp(pcommon.Timestamp(st + uint64(200+i%300)*1e6))
		a := s.Attributes()
		a.PutStr("gen_ai.operation.name", "chat")
		a.PutStr("gen_ai.provider.name", "openai")
		a.PutStr("gen_ai.request.model", "gpt-4o")
		a.PutStr("gen_ai.response.model", "gpt-4o-2024-08-06")
		a.PutDouble("gen_ai.request.temperature", 0.2)
		a.PutInt("gen_ai.request.max_tokens", 512)
		a.PutStr("gen_ai.response.id", fmt.Sprintf("chatcmpl-%08x", i))
		a.PutEmptySlice("gen_ai.response.finish_reasons").AppendEmpty().SetStr("stop")
		a.PutInt("gen_ai.usage.input_tokens", int64(200+i%100))
		a.PutInt("gen_ai.usage.output_tokens", int64(20+i%50))
		a.PutStr("gen_ai.conversation.id", fmt.Sprintf("conv-%x", i*7919))
		a.PutStr(AttrSampleID, fmt.Sprintf("q-%d", i))
		a.PutStr("server.address", "api.openai.com")
		a.PutInt("server.port", 443)
		if !contents {
			continue
		}
		a.PutStr("gen_ai.input.messages", `[{"role":"user","parts":[{"type":"text","content":"Summarise the document."}]}]`)
		a.PutStr("gen_ai.output.messages", `[{"role":"assistant","parts":[{"type":"text","content":"Here is a summary of the document: the proposal improves retrieval quality."}],"finish_reason":"stop"}]`)
	}
	data, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkTraces measures an OTLP/protobuf request of 1000 GenAI spans
// decoded and mapped to events, as the OTLP handler does before storing,
// and the mapping alone.
func BenchmarkTraces(b *testing.B) {
	const n = 1000
	for _, contents := range []bool{true, false} {
		name := "decode+map"
		if !contents {
			name += "/no-contents"
		}
		data := benchRequest(b, n, testNow, 0, contents)
		b.Run(name, func(b *testing.B) { benchDecodeMap(b, data, n) })
	}
	data := benchRequest(b, n, testNow, 0, true)
	b.Run("map", func(b *testing.B) {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(data); err != nil {
			b.Fatal(err)
		}
		td := req.Traces()
		b.ReportAllocs()
		for b.Loop() {
			Traces(td, "", testNow, testPrices)
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
}

func benchDecodeMap(b *testing.B, data []byte, n int) {
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(data); err != nil {
			b.Fatal(err)
		}
		if got := Traces(req.Traces(), "", testNow, testPrices); len(got.Events) != n {
			b.Fatalf("%d events, %d rejected: %v", len(got.Events), len(got.Rejected), got.Rejected)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}
