// Package otlp maps OpenTelemetry traces and logs, as the Collector's pdata
// decodes them from OTLP, to the sidecar's events and scores (SPEC §15):
// GenAI spans become events, gen_ai.evaluation.result log records become
// scores of the spans they name. It is pure — no I/O, no storage; the api
// mounts the OTLP/HTTP and OTLP/gRPC handlers and stores what it returns
// through the one ingest entry every protocol shares.
package otlp

import "github.com/crucible-telemetry/crucible-telemetry/event"

// Attributes the mapping reads beyond the GenAI conventions.
const (
	// AttrExperimentID routes a span (or, on the resource, all of its
	// spans) to an experiment.
	AttrExperimentID = "crucible.experiment_id"
	// AttrSampleID is the evaluation sample a span answers.
	AttrSampleID = "crucible.sample_id"
)

// Reasons a span or a log record is counted and ignored.
const (
	// ReasonNotGenAI: a span without gen_ai.operation.name,
	// gen_ai.provider.name or gen_ai.system, and not an OpenInference LLM
	// span.
	ReasonNotGenAI = "not_genai"
	// ReasonNotEvaluation: a log record that is not a
	// gen_ai.evaluation.result.
	ReasonNotEvaluation = "not_evaluation"
)

// Rejection is a span or a log record that cannot be stored. Index is its
// position among the request's spans (or log records), counted from 0 in
// order across resources and scopes.
type Rejection struct {
	Index int
	Err   error
}

// TraceBatch is what a request's spans map to.
type TraceBatch struct {
	// Events are the GenAI spans' enriched events, in the request's order;
	// Spans[i] is the index of Events[i]'s span.
	Events []event.Event
	Spans  []int
	// Rejected are the GenAI spans that cannot be events, in order.
	Rejected []Rejection
	// Ignored counts the spans that are no event, by reason.
	Ignored map[string]int
	// Total is the number of spans in the request.
	Total int
}

// Evaluation is one gen_ai.evaluation.result: a score of the span it names.
type Evaluation struct {
	Span  event.SpanKey
	Name  string  // gen_ai.evaluation.name, a valid score name (SPEC §4.2)
	Value float64 // gen_ai.evaluation.score.value, finite
	// TimestampUs is when the evaluation was made (the record's time, else
	// its observed time), µs since the epoch; 0 when the record has neither.
	TimestampUs int64
}

// LogBatch is what a request's log records map to.
type LogBatch struct {
	Evaluations []Evaluation // in the request's order
	Rejected    []Rejection
	Ignored     map[string]int
	Total       int
}
