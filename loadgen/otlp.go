package loadgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// OTLPBatch is n GenAI chat spans as an OpenTelemetry SDK exports them over
// OTLP/HTTP protobuf: one resource naming the experiment, spans with the
// GenAI conventions' attributes and the numbers of BatchWith's events
// (models, tokens, latencies, a sample id, one error in fifty). Each span
// has random trace and span ids, so no two are duplicates.
func OTLPBatch(rng *rand.Rand, n int, now time.Time, experiment string) ([]byte, error) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	ra := rs.Resource().Attributes()
	ra.PutStr("service.name", "chat-service")
	ra.PutStr("telemetry.sdk.language", "go")
	ra.PutStr("telemetry.sdk.name", "opentelemetry")
	ra.PutStr("telemetry.sdk.version", "1.47.0")
	ra.PutStr("crucible.experiment_id", experiment)
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
		binary.LittleEndian.PutUint64(sid[:], rng.Uint64()|1) // never the invalid all-zero id
		sp.SetTraceID(tid)
		sp.SetSpanID(sid)
		sp.SetName("chat " + m.model)
		sp.SetKind(ptrace.SpanKindClient)
		start := now.Add(-time.Duration(n-i) * 4 * time.Microsecond)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(200e6 + rng.ExpFloat64()*800e6))))
		a := sp.Attributes()
		a.PutStr("gen_ai.operation.name", "chat")
		a.PutStr("gen_ai.provider.name", m.provider)
		a.PutStr("gen_ai.request.model", m.model)
		a.PutStr("gen_ai.response.model", m.model)
		a.PutInt("gen_ai.usage.input_tokens", int64(200+rng.IntN(1800)))
		a.PutInt("gen_ai.usage.output_tokens", int64(20+rng.IntN(600)))
		a.PutStr("gen_ai.conversation.id", "s-"+strconv.FormatUint(rng.Uint64()%100000, 16))
		a.PutStr("crucible.sample_id", "q-"+strconv.Itoa(rng.IntN(5000)))
		a.PutStr("gen_ai.response.id", "chatcmpl-"+strconv.FormatUint(rng.Uint64(), 36))
		a.PutStr("server.address", "api.example.com")
		if rng.IntN(50) == 0 {
			sp.Status().SetCode(ptrace.StatusCodeError)
			a.PutStr("error.type", "rate_limit")
		}
	}
	return ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
}

// postOTLP sends one OTLP/HTTP protobuf export and checks that no span was
// rejected.
func postOTLP(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if t := throttled(resp); t != nil {
		return t
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %x", resp.Status, b)
	}
	out := ptraceotlp.NewExportResponse()
	if err := out.UnmarshalProto(b); err != nil {
		return fmt.Errorf("OTLP answer: %w", err)
	}
	if ps := out.PartialSuccess(); ps.RejectedSpans() > 0 {
		return fmt.Errorf("%d spans rejected: %s", ps.RejectedSpans(), ps.ErrorMessage())
	}
	return nil
}
