package event

// Category groups the known event names.
type Category string

// Type describes one known event name.
type Type struct {
	Name        string   `json:"name"`
	Category    Category `json:"category"`
	Description string   `json:"description"`
}

// CategoryCustom is the category of every event name that is not known.
const CategoryCustom Category = "custom"

var knownTypes = []Type{
	{"req_llm.request.start", "llm", "An LLM request was sent."},
	{"req_llm.request.stop", "llm", "An LLM request completed; carries duration, tokens and the response."},
	{"req_llm.request.exception", "llm", "An LLM request failed; counted as a failure."},
	{"ensemble.prediction.start", "ensemble", "An ensemble prediction started."},
	{"ensemble.prediction.stop", "ensemble", "An ensemble prediction completed."},
	{"ensemble.vote.completed", "ensemble", "An ensemble finished voting."},
	{"hedging.request.start", "hedging", "A hedged request started."},
	{"hedging.request.duplicated", "hedging", "A hedged request sent a backup request."},
	{"hedging.request.stop", "hedging", "A hedged request completed."},
	{"causal_trace.event.created", "causal_trace", "A causal trace recorded a reasoning event."},
	{"altar.tool.start", "tool", "A tool invocation started."},
	{"altar.tool.stop", "tool", "A tool invocation completed."},
	{"crucible_train.training.start", "training", "A training run started."},
	{"crucible_train.training.stop", "training", "A training run finished."},
	{"crucible_train.epoch.start", "training", "A training epoch started."},
	{"crucible_train.epoch.stop", "training", "A training epoch finished; carries loss and accuracy."},
	{"crucible_train.batch.stop", "training", "A training batch finished; carries loss, learning rate and gradient norm."},
	{"crucible_train.checkpoint.saved", "training", "A model checkpoint was saved."},
	{"crucible_deployment.inference.start", "deployment", "A deployed model started an inference."},
	{"crucible_deployment.inference.stop", "deployment", "A deployed model finished an inference."},
	{"crucible_deployment.inference.exception", "deployment", "A deployed model's inference failed; counted as a failure."},
	{"crucible_framework.pipeline.start", "framework", "A pipeline started."},
	{"crucible_framework.pipeline.stop", "framework", "A pipeline finished."},
	{"crucible_framework.stage.start", "framework", "A pipeline stage started."},
	{"crucible_framework.stage.stop", "framework", "A pipeline stage finished."},
}

var knownByName = func() map[string]Type {
	m := make(map[string]Type, len(knownTypes))
	for _, t := range knownTypes {
		m[t.Name] = t
	}
	return m
}()

// KnownTypes lists the known event names in a fixed order.
func KnownTypes() []Type { return append([]Type(nil), knownTypes...) }

// TypeOf describes name; unknown names are in the custom category.
func TypeOf(name string) Type {
	if t, ok := knownByName[name]; ok {
		return t
	}
	return Type{Name: name, Category: CategoryCustom, Description: "An event name defined by the application."}
}
