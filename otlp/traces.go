package otlp

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
)

// Traces maps the spans of td to events (SPEC §15). experiment is the
// request's X-Crucible-Experiment header, "" when it has none: a span's
// own crucible.experiment_id, then its resource's, come first. now is the
// time of receipt.
//
// Each GenAI span is enriched by event.Enrich, as a JSON event is:
//
//   - event_id: the span's trace and span ids (event.SpanKey), given as the
//     client's, so that a retried export is a duplicate. A span without
//     them is rejected: its events would all share one id.
//   - timestamp: the span's start (floor of its ns to µs); the time of
//     receipt when it has none. latency_ms: end − start, absent when either
//     is missing or the end is before the start.
//   - event_name: gen_ai.<gen_ai.operation.name>, rejected unless it makes
//     a valid event name. Without an operation, OpenLLMetry's
//     llm.request.type names it (chat, completion → text_completion,
//     embedding → embeddings, rerank); else it is gen_ai.chat, as for
//     OpenInference LLM spans: a span that names only its provider comes
//     from instrumentation older than gen_ai.operation.name, which
//     described model calls, chat completions nearly all.
//   - model, provider, tokens, session_id, user_id, sample_id: in SPEC §15's
//     order of attributes, the span's before its resource's (tokens from the
//     span only). A token count is an int, a whole double or a string of a
//     number — some SDKs stringify attribute values — and anything else
//     rejects the span, as a mistyped count rejects a JSON event: tokens
//     make the cost. A string field takes a string (an id also an int); a
//     value of another type is not lifted and stays in the metadata.
//     Empty strings count as absent.
//   - success: false when the status is ERROR or error.type is set, else
//     true. cost_usd: from prices.
//   - metadata: {"otel": {...}} with the span's name, kind, status, ids,
//     scope, resource attributes and its other attributes — not the ones an
//     event field holds, not message contents (see contentPrefixes), and
//     within the bounds of encode.go.
//
// Events alias one buffer of the batch and the strings of td.
func Traces(td ptrace.Traces, experiment string, now time.Time, prices *pricing.Table) TraceBatch {
	m := traceMapper{experiment: experiment, now: now, prices: prices}
	return m.run(td)
}

// fields are the values of the attributes the mapping reads, each its
// first.
type fields struct {
	set  uint64 // bit f: vals[f] is one
	vals [nfields]pcommon.Value
}

func (fs *fields) add(f field, v pcommon.Value) {
	if fs.set&(1<<f) == 0 {
		fs.set |= 1 << f
		fs.vals[f] = v
	}
}

func (fs *fields) get(f field) (pcommon.Value, bool) {
	return fs.vals[f], fs.set&(1<<f) != 0
}

// str is the first of cands that holds a non-empty string; ids also takes
// an int.
func (fs *fields) str(ids bool, cands ...field) (field, string, bool) {
	for _, f := range cands {
		if fs.set&(1<<f) == 0 {
			continue
		}
		switch v := fs.vals[f]; v.Type() {
		case pcommon.ValueTypeStr:
			if s := v.Str(); s != "" {
				return f, s, true
			}
		case pcommon.ValueTypeInt:
			if ids {
				return f, strconv.FormatInt(v.Int(), 10), true
			}
		}
	}
	return 0, "", false
}

type traceMapper struct {
	experiment string
	now        time.Time
	prices     *pricing.Table

	enc   encoder
	arena []byte // the events' metadata, one after the other
	ends  []int  // ends[i]: the end of event i's metadata in arena

	shape      shape
	resOrder   []int32
	sf         fields // the span's
	res        fields // its resource's
	resJSON    []byte // the resource's attributes, as a JSON object
	resAttrs   int    // in resJSON
	resDropped int    // left out of it
	resCopied  int    // bytes of resJSON copied into the request's events
	scopeJSON  []byte // the scope's name and version; empty when it has neither
	in         event.Input
	batch      TraceBatch
	spanIndex  int
}

// run maps every span of td.
func (m *traceMapper) run(td ptrace.Traces) TraceBatch {
	rss := td.ResourceSpans()
	n := 0
	for i := range rss.Len() {
		sss := rss.At(i).ScopeSpans()
		for j := range sss.Len() {
			n += sss.At(j).Spans().Len()
		}
	}
	m.batch = TraceBatch{Total: n}
	if n == 0 {
		return m.batch
	}
	ids := spanIDs(rss, n)
	m.batch.Events = make([]event.Event, 0, n)
	m.batch.Spans = make([]int, 0, n)
	m.ends = make([]int, 0, n)
	for i := range rss.Len() {
		rs := rss.At(i)
		m.resource(rs.Resource())
		sss := rs.ScopeSpans()
		for j := range sss.Len() {
			ss := sss.At(j)
			m.scope(ss.Scope())
			spans := ss.Spans()
			for k := range spans.Len() {
				idx := m.spanIndex
				m.spanIndex++
				m.span(spans.At(k), idx, ids[idx*keyHexLen:(idx+1)*keyHexLen])
			}
		}
	}
	for i := range m.batch.Events {
		start := 0
		if i > 0 {
			start = m.ends[i-1]
		}
		m.batch.Events[i].Metadata = m.arena[start:m.ends[i]:m.ends[i]]
	}
	return m.batch
}

const keyHexLen = 2 * len(event.SpanKey{})

// maxPresize bounds the metadata buffer sized from a request's first span;
// past it the buffer grows with what the spans hold.
const maxPresize = 8 << 20

// spanIDs is the event ids of the request's n spans, in order, in one
// string: one allocation for the request instead of two per span. Each is
// event.SpanKey.EventID's.
func spanIDs(rss ptrace.ResourceSpansSlice, n int) string {
	var sb strings.Builder
	sb.Grow(n * keyHexLen)
	var buf [keyHexLen]byte
	for i := range rss.Len() {
		sss := rss.At(i).ScopeSpans()
		for j := range sss.Len() {
			spans := sss.At(j).Spans()
			for k := range spans.Len() {
				s := spans.At(k)
				key := event.NewSpanKey(s.TraceID(), s.SpanID())
				hex.Encode(buf[:], key[:])
				sb.Write(buf[:])
			}
		}
	}
	return sb.String()
}

// resource reads a resource's fields and encodes its attributes, once for
// all its spans.
func (m *traceMapper) resource(r pcommon.Resource) {
	m.res.set = 0
	kvs := m.enc.kvs[:0]
	for k, v := range r.Attributes().All() {
		if f, ok := fieldOf(k); ok {
			m.res.add(f, v)
			if k == AttrExperimentID {
				continue // routing, as experiment_id is: the event is the experiment's
			}
		} else if isContent(k) {
			continue
		}
		kvs = append(kvs, kv{key: k, val: v, f: noField})
	}
	m.enc.kvs = kvs
	m.resOrder = sortOrder(m.resOrder[:0], kvs)
	m.resJSON, m.resAttrs, m.resDropped = m.enc.appendAttrs(m.resJSON[:0], kvs, m.resOrder, 0, maxResourceBytes)
	m.enc.kvs = m.enc.kvs[:0]
}

// scope encodes a scope's name and version, once for all its spans.
func (m *traceMapper) scope(s pcommon.InstrumentationScope) {
	m.scopeJSON = m.scopeJSON[:0]
	name, version := s.Name(), s.Version()
	if name == "" && version == "" {
		return
	}
	m.scopeJSON = append(m.scopeJSON, `{"name":`...)
	m.scopeJSON = appendString(m.scopeJSON, cut(name, maxTextBytes))
	if version != "" {
		m.scopeJSON = append(m.scopeJSON, `,"version":`...)
		m.scopeJSON = appendString(m.scopeJSON, cut(version, maxTextBytes))
	}
	m.scopeJSON = append(m.scopeJSON, '}')
}

func (m *traceMapper) ignore(reason string) {
	if m.batch.Ignored == nil {
		m.batch.Ignored = make(map[string]int, 1)
	}
	m.batch.Ignored[reason]++
}

func (m *traceMapper) reject(s ptrace.Span, idx int, err error) {
	m.batch.Rejected = append(m.batch.Rejected, Rejection{Index: idx, Err: spanError(s, err)})
}

// spanError names the span of an error so that its user can find it.
func spanError(s ptrace.Span, err error) error {
	return fmt.Errorf("span %s of trace %s (%q): %w", idText(s.SpanID()), idText(s.TraceID()), cut(s.Name(), 64), err)
}

// idText is a trace or span id as OTLP/JSON writes it, or "(none)".
func idText[ID interface {
	IsEmpty() bool
	String() string
}](id ID) string {
	if id.IsEmpty() {
		return "(none)"
	}
	return id.String()
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", event.ErrInvalid, fmt.Sprintf(format, args...))
}

// span maps one span; id is its event id.
func (m *traceMapper) span(s ptrace.Span, idx int, id string) {
	sf := &m.sf
	sf.set = 0
	kvs := m.enc.kvs[:0]
	sh := &m.shape
	same, i := true, 0
	for k, v := range s.Attributes().All() {
		var f field
		if same && i < len(sh.keys) && sh.keys[i] == k {
			f = sh.class[i]
		} else {
			if same {
				same = false
				sh.keys, sh.class = sh.keys[:i], sh.class[:i]
			}
			f = classify(k)
			sh.keys, sh.class = append(sh.keys, k), append(sh.class, f)
		}
		i++
		switch f {
		case contentField:
			continue
		case noField:
		default:
			sf.add(f, v)
		}
		kvs = append(kvs, kv{key: k, val: v, f: f})
	}
	if same && i < len(sh.keys) {
		same = false
		sh.keys, sh.class = sh.keys[:i], sh.class[:i]
	}
	if !same {
		sh.order = sortOrder(sh.order[:0], kvs)
	}
	m.enc.kvs = kvs
	defer func() { m.enc.kvs = m.enc.kvs[:0] }()
	if !isGenAI(sf) {
		m.ignore(ReasonNotGenAI)
		return
	}
	if s.TraceID().IsEmpty() || s.SpanID().IsEmpty() {
		m.reject(s, idx, invalid("a span needs a trace_id and a span_id: they make its event_id"))
		return
	}
	in := &m.in
	*in = event.Input{EventID: event.Some(id)}
	used, err := m.lift(in, sf, s)
	if err != nil {
		m.reject(s, idx, err)
		return
	}
	start := len(m.arena)
	m.arena = m.appendMetadata(m.arena, s, kvs, used)
	if start == 0 && len(m.ends) == 0 {
		// The spans of a request are much alike: size the buffer for all
		// after the first, instead of growing it a dozen times.
		want := min((len(m.arena)+len(m.arena)/4)*(m.batch.Total-idx), maxPresize)
		if want > cap(m.arena) {
			m.arena = append(make([]byte, 0, want), m.arena...)
		}
	}
	m.batch.Events = append(m.batch.Events, event.Event{})
	e := &m.batch.Events[len(m.batch.Events)-1]
	if err := event.Enrich(e, in, m.now, m.prices); err != nil {
		m.batch.Events = m.batch.Events[:len(m.batch.Events)-1]
		m.arena = m.arena[:start]
		m.reject(s, idx, err)
		return
	}
	m.batch.Spans = append(m.batch.Spans, idx)
	m.ends = append(m.ends, len(m.arena))
}

// shape is the previous span's attribute keys and what the mapping made of
// them. The spans of a request mostly have the same keys in the same order
// — one instrumentation made them — so a span whose keys are the previous
// one's skips classifying and sorting them.
type shape struct {
	keys  []string
	class []field // of keys[i]: its field, noField or contentField
	order []int32 // the sorted permutation of the attributes kept
}

// classify is the field of an attribute key, noField or contentField.
func classify(k string) field {
	if f, ok := fieldOf(k); ok {
		return f
	}
	if isContent(k) {
		return contentField
	}
	return noField
}

// isGenAI tells whether a span is a GenAI one (SPEC §15).
func isGenAI(sf *fields) bool {
	if sf.set&(1<<fOperation|1<<fProviderName|1<<fSystem) != 0 {
		return true
	}
	v, ok := sf.get(fSpanKind)
	return ok && v.Type() == pcommon.ValueTypeStr && strings.EqualFold(v.Str(), "LLM")
}

// lift fills in from a span's fields and its resource's; used has the
// bits of the span's attributes an event field now holds.
func (m *traceMapper) lift(in *event.Input, sf *fields, s ptrace.Span) (used uint64, err error) {
	if in.EventName, err = eventName(sf); err != nil {
		return 0, err
	}
	used |= sf.set & (1 << fOperation)
	if st, en := uint64(s.StartTimestamp()), uint64(s.EndTimestamp()); st != 0 {
		in.Timestamp = event.Some(int64(st / 1000))
		if en != 0 && en >= st {
			in.LatencyMs = event.Some(float64(en-st) / 1e6)
		}
	}
	failed := s.Status().Code() == ptrace.StatusCodeError
	if v, ok := sf.get(fErrorType); ok && v.Type() != pcommon.ValueTypeEmpty && !(v.Type() == pcommon.ValueTypeStr && v.Str() == "") {
		failed = true
	}
	in.Success = event.Some(!failed)

	for _, l := range [...]struct {
		dst   *event.Null[string]
		ids   bool
		max   int
		cands []field
	}{
		{&in.Model, false, event.MaxLabelLen, []field{fResponseModel, fRequestModel, fLLMModelName}},
		{&in.Provider, false, event.MaxLabelLen, []field{fProviderName, fSystem, fLLMProvider, fLLMSystem}},
		{&in.SessionID, true, event.MaxIDLen, []field{fConversationID, fSessionID}},
		{&in.UserID, true, event.MaxIDLen, []field{fUserID, fEndUserID}},
		{&in.SampleID, true, event.MaxIDLen, []field{fSampleID}},
	} {
		f, v, ok := sf.str(l.ids, l.cands...)
		if ok {
			used |= 1 << f
		} else if f, v, ok = m.res.str(l.ids, l.cands...); !ok {
			continue
		}
		if len(v) > l.max {
			return 0, invalid("%s must be at most %d bytes, got %d", fieldName[f], l.max, len(v))
		}
		*l.dst = event.Some(v)
	}
	if f, v, ok := sf.str(false, fExperimentID); ok {
		in.ExperimentID, used = v, used|1<<f
	} else if _, v, ok := m.res.str(false, fExperimentID); ok {
		in.ExperimentID = v
	} else {
		in.ExperimentID = m.experiment
	}

	t := &in.Tokens
	for _, c := range [...]struct {
		dst   *event.Null[float64]
		cands []field
	}{
		{&t.Prompt, []field{fInputTokens, fPromptTokens, fLLMPromptTokens}},
		{&t.Completion, []field{fOutputTokens, fCompletionTokens, fLLMCompletionTokens}},
		{&t.Total, []field{fTotalTokens, fLLMUsageTotal, fLLMTotalTokens}},
		{&t.Cached, []field{fCacheRead, fCacheReadOld, fLLMCacheRead}},
	} {
		for _, f := range c.cands {
			v, ok := sf.get(f)
			if !ok {
				continue
			}
			n, err := tokenCount(f, v)
			if err != nil {
				return 0, err
			}
			*c.dst, used = event.Some(n), used|1<<f
			break
		}
	}
	return used, nil
}

// tokenCount reads a token count: an int, a whole double, or a string of
// one. The first candidate given wins, even when it is not a count, as
// for a JSON event.
func tokenCount(f field, v pcommon.Value) (float64, error) {
	var n float64
	switch v.Type() {
	case pcommon.ValueTypeInt:
		n = float64(v.Int())
	case pcommon.ValueTypeDouble:
		n = v.Double()
	case pcommon.ValueTypeStr:
		var err error
		if n, err = strconv.ParseFloat(v.Str(), 64); err != nil {
			return 0, invalid("%s must be a number, got %s", fieldName[f], strconv.Quote(cut(v.Str(), 64)))
		}
	default:
		return 0, invalid("%s must be a number, got a value of type %s", fieldName[f], v.Type())
	}
	if !(n >= 0 && n <= 1<<53 && n == math.Trunc(n)) {
		return 0, invalid("%s must be a whole number >= 0, got %v", fieldName[f], n)
	}
	return n, nil
}

// Event names of the GenAI operations, made once.
var operationNames = func() map[string]string {
	m := make(map[string]string)
	for _, op := range [...]string{
		"chat", "create_agent", "embeddings", "execute_tool", "generate_content", "invoke_agent",
		"invoke_workflow", "retrieval", "text_completion",
	} {
		m[op] = "gen_ai." + op
	}
	return m
}()

// eventName is the event name of a GenAI span (see Traces).
func eventName(sf *fields) (string, error) {
	if v, ok := sf.get(fOperation); ok {
		if v.Type() != pcommon.ValueTypeStr {
			return "", invalid("gen_ai.operation.name must be a string, got a value of type %s", v.Type())
		}
		if op := v.Str(); op != "" {
			if name, ok := operationNames[op]; ok {
				return name, nil
			}
			if !validOperation(op) {
				return "", invalid("gen_ai.operation.name %s does not make an event name gen_ai.<operation>: "+
					"at most %d dot-separated segments of [A-Za-z0-9_]+", strconv.Quote(cut(op, 64)), maxOperationSegments)
			}
			return "gen_ai." + op, nil
		}
	}
	if v, ok := sf.get(fRequestType); ok && v.Type() == pcommon.ValueTypeStr {
		switch strings.ToLower(v.Str()) {
		case "completion":
			return "gen_ai.text_completion", nil
		case "embedding":
			return "gen_ai.embeddings", nil
		case "rerank":
			return "gen_ai.rerank", nil
		}
	}
	return "gen_ai.chat", nil
}

// maxOperationSegments leaves room for gen_ai in an event name's 8
// segments.
const maxOperationSegments = 7

// validOperation tells whether gen_ai.<op> passes the event-name rules
// (SPEC §4.2).
func validOperation(op string) bool {
	if len("gen_ai.")+len(op) > event.MaxEventNameLen {
		return false
	}
	segments, segLen := 1, 0
	for i := 0; i < len(op); i++ {
		switch c := op[i]; {
		case c == '.':
			if segLen == 0 {
				return false
			}
			segments, segLen = segments+1, 0
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			segLen++
		default:
			return false
		}
	}
	return segLen > 0 && segments <= maxOperationSegments
}

// appendMetadata writes a span's metadata object (see Traces); kvs are its
// attributes, but those in used.
func (m *traceMapper) appendMetadata(b []byte, s ptrace.Span, kvs []kv, used uint64) []byte {
	b = append(b, `{"otel":{"attributes":`...)
	b, _, dropped := m.enc.appendAttrs(b, kvs, m.shape.order, used, maxAttrsBytes)
	if dropped > 0 {
		b = append(b, `,"dropped_attributes":`...)
		b = strconv.AppendInt(b, int64(dropped), 10)
	}
	res, resDropped := m.resJSON, m.resDropped
	if m.resCopied += len(res); m.resCopied > maxResourceCopies {
		res, resDropped = []byte("{}"), m.resDropped+m.resAttrs
	}
	if resDropped > 0 {
		b = append(b, `,"dropped_resource_attributes":`...)
		b = strconv.AppendInt(b, int64(resDropped), 10)
	}
	b = append(b, `,"kind":"`...)
	b = append(b, kindName(s.Kind())...)
	b = append(b, `","name":`...)
	b = appendString(b, cut(s.Name(), maxTextBytes))
	if p := s.ParentSpanID(); !p.IsEmpty() {
		b = append(b, `,"parent_span_id":"`...)
		b = hex.AppendEncode(b, p[:])
		b = append(b, '"')
	}
	b = append(b, `,"resource":`...)
	b = append(b, res...)
	if len(m.scopeJSON) > 0 {
		b = append(b, `,"scope":`...)
		b = append(b, m.scopeJSON...)
	}
	// The span id is the event_id's last 16 hex digits; the trace id, its
	// first 32, is kept whole for looking the trace up. An unset status
	// says nothing.
	if st := s.Status(); st.Code() != ptrace.StatusCodeUnset || st.Message() != "" {
		b = append(b, `,"status":{"code":"`...)
		b = append(b, statusName(st.Code())...)
		b = append(b, '"')
		if msg := st.Message(); msg != "" {
			b = append(b, `,"message":`...)
			b = appendString(b, cut(msg, maxTextBytes))
		}
		b = append(b, '}')
	}
	tid := s.TraceID()
	b = append(b, `,"trace_id":"`...)
	b = hex.AppendEncode(b, tid[:])
	return append(b, `"}}`...)
}

func kindName(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindUnspecified:
		return "unspecified"
	case ptrace.SpanKindInternal:
		return "internal"
	case ptrace.SpanKindServer:
		return "server"
	case ptrace.SpanKindClient:
		return "client"
	case ptrace.SpanKindProducer:
		return "producer"
	case ptrace.SpanKindConsumer:
		return "consumer"
	}
	return "unknown"
}

func statusName(c ptrace.StatusCode) string {
	switch c {
	case ptrace.StatusCodeUnset:
		return "unset"
	case ptrace.StatusCodeOk:
		return "ok"
	case ptrace.StatusCodeError:
		return "error"
	}
	return "unknown"
}
