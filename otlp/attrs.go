package otlp

import "strings"

// field numbers the attributes the mapping reads. A span's (or a
// resource's) attributes are read in one pass that keeps each field's first
// value; the mapping then picks among a field's candidates in SPEC §15's
// order.
type field uint8

const (
	fOperation           field = iota // gen_ai.operation.name
	fProviderName                     // gen_ai.provider.name
	fSystem                           // gen_ai.system
	fLLMProvider                      // llm.provider (OpenInference)
	fLLMSystem                        // llm.system (OpenInference)
	fResponseModel                    // gen_ai.response.model
	fRequestModel                     // gen_ai.request.model
	fLLMModelName                     // llm.model_name (OpenInference)
	fInputTokens                      // gen_ai.usage.input_tokens
	fPromptTokens                     // gen_ai.usage.prompt_tokens (deprecated; OpenLLMetry)
	fLLMPromptTokens                  // llm.token_count.prompt (OpenInference)
	fOutputTokens                     // gen_ai.usage.output_tokens
	fCompletionTokens                 // gen_ai.usage.completion_tokens (deprecated; OpenLLMetry)
	fLLMCompletionTokens              // llm.token_count.completion (OpenInference)
	fTotalTokens                      // gen_ai.usage.total_tokens (OpenLLMetry)
	fLLMUsageTotal                    // llm.usage.total_tokens (OpenLLMetry before 0.5)
	fLLMTotalTokens                   // llm.token_count.total (OpenInference)
	fCacheRead                        // gen_ai.usage.cache_read.input_tokens
	fCacheReadOld                     // gen_ai.usage.cache_read_input_tokens (OpenLLMetry before 0.5)
	fLLMCacheRead                     // llm.token_count.prompt_details.cache_read (OpenInference)
	fConversationID                   // gen_ai.conversation.id
	fSessionID                        // session.id
	fUserID                           // user.id
	fEndUserID                        // enduser.id
	fSampleID                         // crucible.sample_id
	fExperimentID                     // crucible.experiment_id
	fErrorType                        // error.type
	fSpanKind                         // openinference.span.kind
	fRequestType                      // llm.request.type (OpenLLMetry)
	nfields
)

// fieldOf is the field of an attribute key; false for every other key.
func fieldOf(key string) (field, bool) {
	switch key {
	case "gen_ai.operation.name":
		return fOperation, true
	case "gen_ai.provider.name":
		return fProviderName, true
	case "gen_ai.system":
		return fSystem, true
	case "llm.provider":
		return fLLMProvider, true
	case "llm.system":
		return fLLMSystem, true
	case "gen_ai.response.model":
		return fResponseModel, true
	case "gen_ai.request.model":
		return fRequestModel, true
	case "llm.model_name":
		return fLLMModelName, true
	case "gen_ai.usage.input_tokens":
		return fInputTokens, true
	case "gen_ai.usage.prompt_tokens":
		return fPromptTokens, true
	case "llm.token_count.prompt":
		return fLLMPromptTokens, true
	case "gen_ai.usage.output_tokens":
		return fOutputTokens, true
	case "gen_ai.usage.completion_tokens":
		return fCompletionTokens, true
	case "llm.token_count.completion":
		return fLLMCompletionTokens, true
	case "gen_ai.usage.total_tokens":
		return fTotalTokens, true
	case "llm.usage.total_tokens":
		return fLLMUsageTotal, true
	case "llm.token_count.total":
		return fLLMTotalTokens, true
	case "gen_ai.usage.cache_read.input_tokens":
		return fCacheRead, true
	case "gen_ai.usage.cache_read_input_tokens":
		return fCacheReadOld, true
	case "llm.token_count.prompt_details.cache_read":
		return fLLMCacheRead, true
	case "gen_ai.conversation.id":
		return fConversationID, true
	case "session.id":
		return fSessionID, true
	case "user.id":
		return fUserID, true
	case "enduser.id":
		return fEndUserID, true
	case AttrSampleID:
		return fSampleID, true
	case AttrExperimentID:
		return fExperimentID, true
	case "error.type":
		return fErrorType, true
	case "openinference.span.kind":
		return fSpanKind, true
	case "llm.request.type":
		return fRequestType, true
	}
	return 0, false
}

// fieldName is the attribute key of f, for errors.
var fieldName = func() (names [nfields]string) {
	for _, k := range [...]string{
		"gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system",
		"gen_ai.response.model", "gen_ai.request.model", "llm.model_name",
		"gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt",
		"gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion",
		"gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total",
		"gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens", "llm.token_count.prompt_details.cache_read",
		"gen_ai.conversation.id", "session.id", "user.id", "enduser.id", AttrSampleID, AttrExperimentID,
		"error.type", "openinference.span.kind", "llm.request.type",
	} {
		f, _ := fieldOf(k)
		names[f] = k
	}
	return names
}()

// contentPrefixes are the attributes that hold what was sent to a model or
// came back from it — messages, prompts and templates, completions, tool
// definitions, arguments and results, retrieved documents, embeddings — or
// credentials (request headers). Their values are the user's data, often
// large and personal: the sidecar measures calls and never copies them.
// A key matches when it starts with one of them, so the indexed forms
// (gen_ai.prompt.0.content, llm.input_messages.0.message.role) match too.
// They are grouped by first byte for the lookup.
var contentPrefixes = func() (t [256][]string) {
	for c, ps := range map[byte][]string{
		'a': {
			// Vercel AI SDK
			"ai.prompt", "ai.response.text", "ai.response.toolCalls", "ai.response.object", "ai.response.reasoning",
			"ai.response.messages", "ai.toolCall.args", "ai.toolCall.result", "ai.value", "ai.embedding", "ai.schema",
			// Pydantic AI
			"all_messages_events",
			// OpenInference
			"audio.transcript", "audio.url",
		},
		'c': {"completion.text"},
		'd': {"document.content"},
		'e': {"embedding.embeddings", "embedding.text"},
		'f': {"final_result"},
		'g': {
			// OpenTelemetry GenAI, current and deprecated
			"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
			"gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.tool.definitions",
			"gen_ai.retrieval.documents", "gen_ai.retrieval.query.text",
			"gen_ai.prompt", "gen_ai.completion",
			// OpenLLMetry
			"gen_ai.content.", "gen_ai.task.input", "gen_ai.task.output", "gen_ai.headers",
			"gen_ai.request.structured_output_schema",
			// Google ADK
			"gcp.vertex.agent.llm_request", "gcp.vertex.agent.llm_response",
			"gcp.vertex.agent.tool_call_args", "gcp.vertex.agent.tool_response",
		},
		'i': {"input.value", "image.url"},
		'l': {
			// OpenInference
			"llm.input_messages", "llm.output_messages", "llm.prompts", "llm.prompt_template.template",
			"llm.prompt_template.variables", "llm.choices", "llm.function_call", "llm.tools",
			// OpenLLMetry before 0.5
			"llm.completions", "llm.content.", "llm.headers", "llm.request.functions",
			// Langfuse
			"langfuse.observation.input", "langfuse.observation.output", "langfuse.trace.input", "langfuse.trace.output",
		},
		'm': {
			// OpenInference, when a message is flattened to the top level
			"message.", "message_content.",
			"mcp.request.argument", "mcp.response.value",
			"mlflow.spanInputs", "mlflow.spanOutputs",
		},
		'o': {"output.value"},
		'p': {"prompt.text", "pydantic_ai.all_messages"},
		'r': {"retrieval.documents", "reranker.input_documents", "reranker.output_documents", "reranker.query"},
		't': {
			"traceloop.entity.input", "traceloop.entity.output", "traceloop.prompt.template",
			"tool_call.function.arguments",
			// Pydantic AI
			"tool_arguments", "tool_response",
		},
	} {
		t[c] = ps
	}
	return t
}()

// isContent tells whether an attribute holds message contents (see
// contentPrefixes). Pydantic AI's "events" (the messages, as one JSON
// array) is matched exactly, as a prefix it would take too much.
func isContent(key string) bool {
	if key == "" {
		return false
	}
	for _, p := range contentPrefixes[key[0]] {
		if strings.HasPrefix(key, p) {
			// The prompt's name is an identifier, not its text.
			return key != "gen_ai.prompt.name"
		}
	}
	return key == "events"
}
