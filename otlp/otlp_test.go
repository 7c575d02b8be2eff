package otlp

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testNow is the time of receipt: the payloads' spans start 10 s before.
var testNow = time.UnixMicro(1764220000_000000)

var testPrices = pricing.Default()

// secret marks every message-content value in the payloads.
const secret = "CONTENT-MUST-NOT-APPEAR"

// traceCases are the trace payloads and the X-Crucible-Experiment header
// each is sent with.
var traceCases = []struct {
	file, experiment string
}{
	{"genai_current", ""},
	{"genai_legacy", "from-header"},
	{"openinference", ""},
	{"errors", ""},
	{"mixed", ""},
	{"resource_experiment", "from-header"},
	{"bounds", ""},
}

func readTraces(t testing.TB, file string) ptrace.Traces {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var u ptrace.JSONUnmarshaler
	td, err := u.UnmarshalTraces(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return td
}

// renderTraces is a batch as its golden file holds it: each event's JSON on
// a line after the index of its span, then the rejections and the counts.
func renderTraces(b TraceBatch) []byte {
	var out []byte
	for i := range b.Events {
		out = fmt.Appendf(out, "# span %d\n", b.Spans[i])
		out = b.Events[i].AppendJSON(out)
		out = append(out, '\n')
	}
	for _, r := range b.Rejected {
		out = fmt.Appendf(out, "# rejected span %d: %v\n", r.Index, r.Err)
	}
	return appendCounts(out, b.Ignored, b.Total)
}

func appendCounts(out []byte, ignored map[string]int, total int) []byte {
	reasons := make([]string, 0, len(ignored))
	for r := range ignored {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		out = fmt.Appendf(out, "# ignored %s: %d\n", r, ignored[r])
	}
	return fmt.Appendf(out, "# total %d\n", total)
}

func golden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", file+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./otlp -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the mapping; got:\n%s", path, got)
	}
}

func TestTracesGolden(t *testing.T) {
	for _, tc := range traceCases {
		t.Run(tc.file, func(t *testing.T) {
			td := readTraces(t, tc.file)
			b := Traces(td, tc.experiment, testNow, testPrices)
			checkBatch(t, td, b)
			out := renderTraces(b)
			if bytes.Contains(out, []byte(secret)) {
				t.Errorf("message contents copied into an event:\n%s", out)
			}
			golden(t, tc.file, out)
		})
	}
}

// checkBatch checks what holds for every batch: the counts add up, every
// event is its span's, with valid JSON metadata that copies no message
// contents.
func checkBatch(t testing.TB, td ptrace.Traces, b TraceBatch) {
	t.Helper()
	ignored := 0
	for _, n := range b.Ignored {
		ignored += n
	}
	if td.SpanCount() != b.Total || len(b.Events)+len(b.Rejected)+ignored != b.Total || len(b.Spans) != len(b.Events) {
		t.Fatalf("counts: %d spans, total %d, %d events (%d indexes), %d rejected, %d ignored",
			td.SpanCount(), b.Total, len(b.Events), len(b.Spans), len(b.Rejected), ignored)
	}
	spans := allSpans(td)
	for i := range b.Events {
		e := &b.Events[i]
		idx := b.Spans[i]
		if idx < 0 || idx >= len(spans) || i > 0 && idx <= b.Spans[i-1] {
			t.Fatalf("event %d: span index %d out of order or range", i, idx)
		}
		s := spans[idx]
		if want := event.NewSpanKey(s.TraceID(), s.SpanID()).EventID(); e.EventID != want || !e.ClientID {
			t.Fatalf("event %d: event_id %q (client %v), want %q given by the client", i, e.EventID, e.ClientID, want)
		}
		if _, ok := event.SpanKeyOf(e.EventID); !ok {
			t.Fatalf("event %d: event_id %q is not a span key", i, e.EventID)
		}
		checkMetadata(t, e.Metadata)
		if !json.Valid(e.AppendJSON(nil)) {
			t.Fatalf("event %d: invalid JSON %s", i, e.AppendJSON(nil))
		}
	}
	for i, r := range b.Rejected {
		if r.Index < 0 || r.Index >= b.Total || i > 0 && r.Index <= b.Rejected[i-1].Index || !errors.Is(r.Err, event.ErrInvalid) {
			t.Fatalf("rejection %d: %+v", i, r)
		}
	}
}

// checkMetadata checks that metadata is {"otel": {...}} in valid JSON,
// without a content attribute.
func checkMetadata(t testing.TB, meta []byte) {
	t.Helper()
	var m struct {
		Otel struct {
			Attributes map[string]json.RawMessage `json:"attributes"`
			Resource   map[string]json.RawMessage `json:"resource"`
		} `json:"otel"`
	}
	if !json.Valid(meta) {
		t.Fatalf("metadata is not valid JSON: %q", meta)
	}
	if err := json.Unmarshal(meta, &m); err != nil {
		t.Fatalf("metadata %s: %v", meta, err)
	}
	for _, attrs := range []map[string]json.RawMessage{m.Otel.Attributes, m.Otel.Resource} {
		for k := range attrs {
			if isContent(k) {
				t.Fatalf("metadata holds the content attribute %q", k)
			}
		}
	}
}

func allSpans(td ptrace.Traces) []ptrace.Span {
	var spans []ptrace.Span
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, s := range ss.Spans().All() {
				spans = append(spans, s)
			}
		}
	}
	return spans
}

// TestTracesProtoEqualsJSON: a payload maps the same whether it came as
// OTLP/JSON or OTLP/protobuf.
func TestTracesProtoEqualsJSON(t *testing.T) {
	for _, tc := range traceCases {
		t.Run(tc.file, func(t *testing.T) {
			td := readTraces(t, tc.file)
			var m ptrace.ProtoMarshaler
			data, err := m.MarshalTraces(td)
			if err != nil {
				t.Fatal(err)
			}
			req := ptraceotlp.NewExportRequest()
			if err := req.UnmarshalProto(data); err != nil {
				t.Fatal(err)
			}
			fromJSON := renderTraces(Traces(td, tc.experiment, testNow, testPrices))
			fromProto := renderTraces(Traces(req.Traces(), tc.experiment, testNow, testPrices))
			if !bytes.Equal(fromJSON, fromProto) {
				t.Errorf("protobuf maps differently from JSON:\n%s\nvs\n%s", fromProto, fromJSON)
			}
		})
	}
}

func readLogs(t testing.TB, file string) plog.Logs {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var u plog.JSONUnmarshaler
	ld, err := u.UnmarshalLogs(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return ld
}

func renderLogs(b LogBatch) []byte {
	var out []byte
	for _, ev := range b.Evaluations {
		out = fmt.Appendf(out, `{"span":%q,"name":%q,"value":%v,"timestamp_us":%d}`+"\n", ev.Span.EventID(), ev.Name, ev.Value, ev.TimestampUs)
	}
	for _, r := range b.Rejected {
		out = fmt.Appendf(out, "# rejected record %d: %v\n", r.Index, r.Err)
	}
	return appendCounts(out, b.Ignored, b.Total)
}

func TestLogsGolden(t *testing.T) {
	ld := readLogs(t, "evaluations")
	b := Logs(ld)
	checkLogBatch(t, ld, b)
	golden(t, "evaluations", renderLogs(b))
}

func checkLogBatch(t testing.TB, ld plog.Logs, b LogBatch) {
	t.Helper()
	ignored := 0
	for _, n := range b.Ignored {
		ignored += n
	}
	if ld.LogRecordCount() != b.Total || len(b.Evaluations)+len(b.Rejected)+ignored != b.Total {
		t.Fatalf("counts: %d records, total %d, %d evaluations, %d rejected, %d ignored",
			ld.LogRecordCount(), b.Total, len(b.Evaluations), len(b.Rejected), ignored)
	}
	for _, ev := range b.Evaluations {
		if !event.ValidScoreName(ev.Name) || ev.Value-ev.Value != 0 || ev.Span == (event.SpanKey{}) {
			t.Fatalf("invalid evaluation %+v", ev)
		}
	}
	for i, r := range b.Rejected {
		if r.Index < 0 || r.Index >= b.Total || i > 0 && r.Index <= b.Rejected[i-1].Index || !errors.Is(r.Err, event.ErrInvalid) {
			t.Fatalf("rejection %d: %+v", i, r)
		}
	}
}

func TestIsContent(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"gen_ai.input.messages", true},
		{"gen_ai.output.messages", true},
		{"gen_ai.system_instructions", true},
		{"gen_ai.tool.call.arguments", true},
		{"gen_ai.tool.call.result", true},
		{"gen_ai.prompt", true},
		{"gen_ai.prompt.0.content", true},
		{"gen_ai.completion.3.tool_calls.0.arguments", true},
		{"llm.input_messages.0.message.content", true},
		{"llm.output_messages.1.message.contents.0.message_content.text", true},
		{"llm.prompts.0.prompt.text", true},
		{"input.value", true},
		{"output.value", true},
		{"ai.prompt.messages", true},
		{"events", true},
		{"gen_ai.prompt.name", false}, // an identifier
		{"gen_ai.request.model", false},
		{"gen_ai.tool.name", false},
		{"gen_ai.usage.prompt_tokens", false},
		{"llm.token_count.prompt", false},
		{"input.mime_type", false},
		{"event", false},
		{"", false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			if got := isContent(tc.key); got != tc.want {
				t.Fatalf("isContent(%q) = %v, want %v", tc.key, got, tc.want)
			}
		})
	}
}

// TestFieldNames: every field has its key, and the key reads as it.
func TestFieldNames(t *testing.T) {
	for f := range nfields {
		name := fieldName[f]
		if got, ok := fieldOf(name); !ok || got != f {
			t.Errorf("field %d: name %q reads as %d, %v", f, name, got, ok)
		}
		if isContent(name) {
			t.Errorf("field %q is a content attribute", name)
		}
	}
}

func TestValidOperation(t *testing.T) {
	for _, tc := range []struct {
		op   string
		want bool
	}{
		{"chat", true},
		{"custom_op", true},
		{"chat.stream", true},
		{"a.b.c.d.e.f.g", true},
		{"a.b.c.d.e.f.g.h", false}, // gen_ai. makes 9 segments
		{"chat completions", false},
		{"chat-completions", false},
		{".chat", false},
		{"chat.", false},
		{"a..b", false},
		{strings.Repeat("a", event.MaxEventNameLen-len("gen_ai.")), true},
		{strings.Repeat("a", event.MaxEventNameLen-len("gen_ai.")+1), false},
	} {
		t.Run(tc.op, func(t *testing.T) {
			if got := validOperation(tc.op); got != tc.want {
				t.Fatalf("validOperation(%q) = %v, want %v", tc.op, got, tc.want)
			}
		})
	}
}

// TestResourceCopiesBounded: many small spans of a resource with large
// attributes do not make a request's events many times its size.
func TestResourceCopiesBounded(t *testing.T) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "big")
	rs.Resource().Attributes().PutStr("process.command_args", strings.Repeat("a", maxValueBytes-100))
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	n := maxResourceCopies/(maxValueBytes-100) + 100
	for i := range n {
		s := spans.AppendEmpty()
		s.SetTraceID([16]byte{1})
		s.SetSpanID([8]byte{byte(i), byte(i >> 8), byte(i >> 16), 1})
		s.Attributes().PutStr("gen_ai.operation.name", "chat")
	}
	b := Traces(td, "", testNow, testPrices)
	if len(b.Events) != n {
		t.Fatalf("%d events of %d spans: %v", len(b.Events), n, b.Rejected)
	}
	var copied int
	for i := range b.Events {
		copied += len(b.Events[i].Metadata)
	}
	if copied > maxResourceCopies+n*512 {
		t.Fatalf("%d spans made %d bytes of metadata", n, copied)
	}
	last := string(b.Events[n-1].Metadata)
	if !strings.Contains(last, `"dropped_resource_attributes":2`) || !strings.Contains(last, `"resource":{}`) {
		t.Fatalf("the last event keeps its resource: %s", last)
	}
	if first := string(b.Events[0].Metadata); !strings.Contains(first, `"service.name":"big"`) {
		t.Fatalf("the first event lost its resource: %.300s", first)
	}
}

// TestAppendString: every string is written as JSON that reads back as it
// (invalid UTF-8 as U+FFFD), whichever of its bytes the 8-byte fast path
// or the byte loop sees.
func TestAppendString(t *testing.T) {
	cases := []string{"", "plain ascii key", "gen_ai.request.model", "tab\there", `quote"back\slash`,
		"é and 日本", "\x00\x1f\x7f", "bad \xff utf-8", "\u2028\u2029", strings.Repeat("a", 17) + "\n"}
	for c := range 256 {
		for pos := range 9 {
			b := []byte("abcdefghijklmnop")
			b[pos] = byte(c)
			cases = append(cases, string(b))
		}
	}
	for _, s := range cases {
		out := appendString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q: %s is not JSON: %v", s, out, err)
		}
		var want []rune
		for _, r := range s { // an invalid byte ranges as U+FFFD
			want = append(want, r)
		}
		if back != string(want) {
			t.Fatalf("%q: reads back as %q", s, back)
		}
	}
}

// TestShapeReuse: a span maps the same after spans with the same keys, a
// prefix of them, or more, as it does alone.
func TestShapeReuse(t *testing.T) {
	shapes := [][]string{
		{"gen_ai.operation.name", "zeta", "gen_ai.request.model", "gen_ai.input.messages", "alpha"},
		{"gen_ai.operation.name", "zeta", "gen_ai.request.model", "gen_ai.input.messages", "alpha"},
		{"gen_ai.operation.name", "zeta", "gen_ai.request.model"},
		{"gen_ai.operation.name", "zeta", "gen_ai.request.model", "gen_ai.input.messages", "alpha", "beta"},
		{"gen_ai.operation.name", "gen_ai.input.messages", "gen_ai.request.model", "zeta", "alpha"},
		{"gen_ai.operation.name", "zeta", "gen_ai.request.model", "gen_ai.input.messages", "alpha"},
	}
	build := func(keys ...[]string) ptrace.Traces {
		td := ptrace.NewTraces()
		spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
		for i, ks := range keys {
			s := spans.AppendEmpty()
			s.SetTraceID([16]byte{1})
			s.SetSpanID([8]byte{byte(i + 1)})
			for _, k := range ks {
				v := k + "-value"
				if k == "gen_ai.operation.name" {
					v = "chat"
				}
				s.Attributes().PutStr(k, v)
			}
		}
		return td
	}
	batch := Traces(build(shapes...), "", testNow, testPrices)
	if len(batch.Events) != len(shapes) {
		t.Fatalf("%d events: %v", len(batch.Events), batch.Rejected)
	}
	for i, ks := range shapes {
		// Alone, but with the span id it has in the batch.
		pre := make([][]string, i+1)
		for j := range i {
			pre[j] = []string{"gen_ai.operation.name", "other" + strconv.Itoa(j)}
		}
		pre[i] = ks
		alone := Traces(build(pre...), "", testNow, testPrices)
		got, want := string(batch.Events[i].Metadata), string(alone.Events[i].Metadata)
		if got != want {
			t.Errorf("span %d maps to\n%s\nafter the others, to\n%s\nalone", i, got, want)
		}
	}
}
