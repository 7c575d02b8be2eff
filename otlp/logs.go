package otlp

import (
	"fmt"
	"math"
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// The evaluation event of the GenAI conventions and its attributes.
const (
	EvaluationEventName = "gen_ai.evaluation.result"
	attrEventName       = "event.name" // the event name of SDKs older than LogRecord.EventName
	attrEvalName        = "gen_ai.evaluation.name"
	attrEvalValue       = "gen_ai.evaluation.score.value"
	attrErrorType       = "error.type"
)

// Logs maps the log records of ld to evaluations (SPEC §15). A record is
// an evaluation when its event name — LogRecord.EventName, else its
// event.name attribute — is gen_ai.evaluation.result; every other record
// is counted and ignored. An evaluation is rejected when it names no span
// (its trace and span ids), has no valid score name
// (gen_ai.evaluation.name, SPEC §4.2), has no finite
// gen_ai.evaluation.score.value (a number, a boolean as 1 or 0, or a string
// of a number, as for token counts; a label alone is no score), or failed
// (error.type is set: the evaluator's error is no score of the span).
func Logs(ld plog.Logs) LogBatch {
	var b LogBatch
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		sls := rls.At(i).ScopeLogs()
		for j := range sls.Len() {
			b.Total += sls.At(j).LogRecords().Len()
		}
	}
	idx := 0
	for i := range rls.Len() {
		sls := rls.At(i).ScopeLogs()
		for j := range sls.Len() {
			lrs := sls.At(j).LogRecords()
			for k := range lrs.Len() {
				ev, isEval, err := evaluation(lrs.At(k))
				switch {
				case !isEval:
					if b.Ignored == nil {
						b.Ignored = make(map[string]int, 1)
					}
					b.Ignored[ReasonNotEvaluation]++
				case err != nil:
					b.Rejected = append(b.Rejected, Rejection{Index: idx, Err: err})
				default:
					if b.Evaluations == nil {
						b.Evaluations = make([]Evaluation, 0, b.Total-idx)
					}
					b.Evaluations = append(b.Evaluations, ev)
				}
				idx++
			}
		}
	}
	return b
}

// evaluation reads one record; isEval is false when it is no evaluation.
func evaluation(lr plog.LogRecord) (ev Evaluation, isEval bool, err error) {
	var name, value, errType pcommon.Value
	var hasName, hasValue, hasErr bool
	eventName := lr.EventName()
	for k, v := range lr.Attributes().All() {
		switch k {
		case attrEventName:
			if eventName == "" && v.Type() == pcommon.ValueTypeStr {
				eventName = v.Str()
			}
		case attrEvalName:
			if !hasName {
				name, hasName = v, true
			}
		case attrEvalValue:
			if !hasValue {
				value, hasValue = v, true
			}
		case attrErrorType:
			if !hasErr {
				errType, hasErr = v, true
			}
		}
	}
	if eventName != EvaluationEventName {
		return Evaluation{}, false, nil
	}
	fail := func(format string, args ...any) (Evaluation, bool, error) {
		return Evaluation{}, true, fmt.Errorf("%s record of span %s of trace %s: %w", EvaluationEventName, idText(lr.SpanID()), idText(lr.TraceID()),
			invalid(format, args...))
	}
	if lr.TraceID().IsEmpty() || lr.SpanID().IsEmpty() {
		return fail("an evaluation needs the trace_id and span_id of the span it scores")
	}
	if hasErr && errType.Type() != pcommon.ValueTypeEmpty && !(errType.Type() == pcommon.ValueTypeStr && errType.Str() == "") {
		return fail("the evaluation failed (error.type %s): no score", strconv.Quote(cut(errType.AsString(), 64)))
	}
	switch {
	case !hasName:
		return fail("%s is missing", attrEvalName)
	case name.Type() != pcommon.ValueTypeStr:
		return fail("%s must be a string, got a value of type %s", attrEvalName, name.Type())
	case !event.ValidScoreName(name.Str()):
		return fail("%s %s is not a score name: a letter or _, then up to 63 of [A-Za-z0-9_.:-]",
			attrEvalName, strconv.Quote(cut(name.Str(), 64)))
	}
	if !hasValue {
		return fail("%s is missing: a label alone is no score", attrEvalValue)
	}
	var x float64
	switch value.Type() {
	case pcommon.ValueTypeDouble:
		x = value.Double()
	case pcommon.ValueTypeInt:
		x = float64(value.Int())
	case pcommon.ValueTypeBool:
		if value.Bool() {
			x = 1
		}
	case pcommon.ValueTypeStr:
		if x, err = strconv.ParseFloat(value.Str(), 64); err != nil {
			return fail("%s must be a number, got %s", attrEvalValue, strconv.Quote(cut(value.Str(), 64)))
		}
	default:
		return fail("%s must be a number, got a value of type %s", attrEvalValue, value.Type())
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return fail("%s must be a finite number, got %v", attrEvalValue, x)
	}
	ts := lr.Timestamp()
	if ts == 0 {
		ts = lr.ObservedTimestamp()
	}
	return Evaluation{
		Span:        event.NewSpanKey(lr.TraceID(), lr.SpanID()),
		Name:        name.Str(),
		Value:       x,
		TimestampUs: int64(uint64(ts) / 1000),
	}, true, nil
}
