package loadgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
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
	return ptraceotlp.NewExportRequestFromTraces(otlpTraces(rng, n, now, experiment)).MarshalProto()
}

func otlpTraces(rng *rand.Rand, n int, now time.Time, experiment string) ptrace.Traces {
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
	return td
}

// otlpTemplate is one marshalled export that later batches copy with new
// ids and times written over the old: building and marshalling pdata for
// every batch would cost the load generator more CPU than the sidecar
// spends decoding it, on the cores they share.
type otlpTemplate struct {
	body   []byte
	now    time.Time
	ids    []int // offsets of each span's trace id (16 bytes) and span id (8)
	times  []int // offsets of each span's start and end time (fixed64 ns)
	spanID []int
}

func newOTLPTemplate(rng *rand.Rand, n int, now time.Time, experiment string) (*otlpTemplate, error) {
	td := otlpTraces(rng, n, now, experiment)
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return nil, err
	}
	t := &otlpTemplate{body: body, now: now}
	spans := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	// A span's bytes are contiguous and after the span before it; within
	// them the encoder chooses the order of the fields.
	at, next := 0, 0
	find := func(b []byte) (int, error) {
		i := bytes.Index(body[at:], b)
		if i < 0 {
			return 0, fmt.Errorf("OTLP template: field not found after byte %d", at)
		}
		next = max(next, at+i+len(b))
		return at + i, nil
	}
	for i := range spans.Len() {
		sp := spans.At(i)
		tid, sid := sp.TraceID(), sp.SpanID()
		var start, end [8]byte
		binary.LittleEndian.PutUint64(start[:], uint64(sp.StartTimestamp()))
		binary.LittleEndian.PutUint64(end[:], uint64(sp.EndTimestamp()))
		for _, f := range []struct {
			b    []byte
			into *[]int
		}{{tid[:], &t.ids}, {sid[:], &t.spanID}, {start[:], &t.times}, {end[:], &t.times}} {
			off, err := find(f.b)
			if err != nil {
				return nil, err
			}
			*f.into = append(*f.into, off)
		}
		at = next
	}
	return t, nil
}

// batch is the template with fresh random ids and its times moved to now.
func (t *otlpTemplate) batch(dst []byte, rng *rand.Rand, now time.Time) []byte {
	dst = append(dst[:0], t.body...)
	for _, off := range t.ids {
		binary.LittleEndian.PutUint64(dst[off:], rng.Uint64())
		binary.LittleEndian.PutUint64(dst[off+8:], rng.Uint64())
	}
	for _, off := range t.spanID {
		binary.LittleEndian.PutUint64(dst[off:], rng.Uint64()|1)
	}
	shift := uint64(now.Sub(t.now))
	for _, off := range t.times {
		binary.LittleEndian.PutUint64(dst[off:], binary.LittleEndian.Uint64(dst[off:])+shift)
	}
	return dst
}

// postOTLP sends one OTLP/HTTP protobuf export and checks that no span was
// rejected.
func postOTLP(ctx context.Context, client *http.Client, url string, body []byte) error {
	b, err := postBody(ctx, client, url, "application/x-protobuf", body)
	if err != nil {
		return err
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
