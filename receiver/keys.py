"""Attribute keys the translator reads, per convention, in one place.

Conventions covered (see ../shared/spec/otlp.md §2):
- OTel GenAI semconv, latest experimental (semantic-conventions 1.37, util-genai 1.1b0)
- OpenLLMetry 0.62 (current semconv names) and <=0.53 (flattened ``gen_ai.prompt.N.*`` / ``llm.*``)
- OpenInference semantic conventions 0.1.42
- the Anthropic SDK's own spans (scope ``com.anthropic.sdk.python``)

Only keys listed here (or under the prefixes below) are read from a span; everything else
is skipped without being converted, which is where most of the per-span cost goes.
"""

from __future__ import annotations

# --- span kind markers -----------------------------------------------------------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
TRACELOOP_SPAN_KIND = "traceloop.span.kind"
LLM_REQUEST_TYPE = "llm.request.type"  # OpenLLMetry <=0.53: "chat" / "completion"

OPERATION_LLM = frozenset({"chat", "text_completion", "generate_content"})
OPERATION_TOOL = frozenset({"execute_tool"})
OPERATION_RETRIEVAL = frozenset({"retrieval"})
OPERATION_STRUCTURE = frozenset({"invoke_agent", "invoke_workflow", "create_agent", "embeddings"})
OPENINFERENCE_LLM = frozenset({"LLM"})
OPENINFERENCE_TOOL = frozenset({"TOOL"})
OPENINFERENCE_RETRIEVAL = frozenset({"RETRIEVER"})
TRACELOOP_TOOL = frozenset({"tool"})
TRACELOOP_STRUCTURE = frozenset({"workflow", "agent", "task"})

ANTHROPIC_NATIVE_SCOPE = "com.anthropic.sdk.python"

# --- run identity ----------------------------------------------------------------------
GEN_AI_AGENT_NAME = "gen_ai.agent.name"  # on a span, or as a resource attribute (names every run)
OPENINFERENCE_AGENT_NAME = "agent.name"
OPENINFERENCE_GRAPH_NODE_ID = "graph.node.id"  # on AGENT spans: the agent's node (CrewAI's role)
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"
TRACELOOP_WORKFLOW_NAME = "traceloop.workflow.name"
SERVICE_NAME = "service.name"
UNKNOWN_SERVICE_PREFIX = "unknown_service"  # the SDK's placeholder when no name was set

# --- LLM call --------------------------------------------------------------------------
REQUEST_MODEL_KEYS = ("gen_ai.request.model", "llm.request.model_name", "llm.model_name")
RESPONSE_MODEL_KEYS = ("gen_ai.response.model", "llm.response.model_name")
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
RESPONSE_ID = "gen_ai.response.id"
INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_TOKEN_KEYS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
FINISH_REASONS = "gen_ai.response.finish_reasons"  # string[]
OPENINFERENCE_FINISH_REASON = "llm.finish_reason"
ANTHROPIC_STOP_REASON = "anthropic.message.stop_reason"
# Langfuse prompt linkage, kept for the explain issue (names, not content).
LANGFUSE_PROMPT_NAME = "langfuse.observation.prompt.name"
LANGFUSE_PROMPT_VERSION = "langfuse.observation.prompt.version"

# Tool calls a response asked for, as a span attribute (OpenLIT: a Python repr or JSON list of
# {"id", "type", "function": {"name", "arguments"}}).
RESPONSE_TOOL_CALLS = "gen_ai.response.tool_calls"
# Older OpenLIT: the one tool call a response asked for, flattened onto the LLM span.
LLM_SPAN_TOOL_NAME = "gen_ai.tool.name"
LLM_SPAN_TOOL_ARGS = "gen_ai.tool.args"

# Current semconv content: JSON strings on spans.
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"

# OpenLLMetry <=0.53 flattened content.
LEGACY_PROMPT_PREFIX = "gen_ai.prompt."
LEGACY_COMPLETION_PREFIX = "gen_ai.completion."
LEGACY_FUNCTIONS_PREFIX = "llm.request.functions."

# OpenInference flattened content.
OI_INPUT_MESSAGES_PREFIX = "llm.input_messages."
OI_OUTPUT_MESSAGES_PREFIX = "llm.output_messages."
OI_TOOLS_PREFIX = "llm.tools."

# --- tool call -------------------------------------------------------------------------
TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name", "traceloop.entity.name")
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_ARGS_KEYS = ("gen_ai.tool.call.arguments", "traceloop.entity.input", "input.value")
TOOL_RESULT_KEYS = ("gen_ai.tool.call.result", "traceloop.entity.output", "output.value")

# --- retrieval -------------------------------------------------------------------------
RETRIEVAL_INDEX_KEYS = ("gen_ai.data_source.id",)
RETRIEVAL_QUERY_KEYS = ("gen_ai.retrieval.query.text", "input.value", "traceloop.entity.input")
RETRIEVAL_DOCUMENTS = "gen_ai.retrieval.documents"  # JSON string
OI_RETRIEVAL_DOCUMENTS_PREFIX = "retrieval.documents."
TRACELOOP_ENTITY_OUTPUT = "traceloop.entity.output"

# --- run input (root span) -------------------------------------------------------------
ROOT_INPUT_KEYS = ("traceloop.entity.input", "input.value")

# --- errors ----------------------------------------------------------------------------
ERROR_TYPE = "error.type"
EXCEPTION_EVENT = "exception"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"

# --- log records (content sent as events) ----------------------------------------------
LOG_EVENT_SYSTEM = "gen_ai.system.message"
LOG_EVENT_USER = "gen_ai.user.message"
LOG_EVENT_ASSISTANT = "gen_ai.assistant.message"
LOG_EVENT_TOOL = "gen_ai.tool.message"
LOG_EVENT_CHOICE = "gen_ai.choice"
LOG_EVENT_NAME_ATTR = "event.name"  # older SDKs put the event name in an attribute
GEN_AI_MESSAGE_EVENTS = frozenset(
    {LOG_EVENT_SYSTEM, LOG_EVENT_USER, LOG_EVENT_ASSISTANT, LOG_EVENT_TOOL, LOG_EVENT_CHOICE}
)
# Current semconv (util-genai >= 1.0): one record per call, the whole exchange in its attributes
# (gen_ai.input.messages / gen_ai.output.messages / gen_ai.system_instructions as real lists).
LOG_EVENT_OPERATION_DETAILS = "gen_ai.client.inference.operation.details"
GEN_AI_LOG_EVENTS = GEN_AI_MESSAGE_EVENTS | {LOG_EVENT_OPERATION_DETAILS}

# --- span events carrying content (instead of attributes or log records) ------------------
# Older semconv (<= 1.26, OpenLIT): the prompt / completion as one attribute each, JSON or text.
EVENT_CONTENT_PROMPT = "gen_ai.content.prompt"
EVENT_CONTENT_COMPLETION = "gen_ai.content.completion"
EVENT_PROMPT_ATTR = "gen_ai.prompt"
EVENT_COMPLETION_ATTR = "gen_ai.completion"
EVENT_CONTENT_ATTR = "gen_ai.event.content"  # semconv 1.27 message events as span events: JSON body
SPAN_CONTENT_EVENTS = GEN_AI_LOG_EVENTS | {EVENT_CONTENT_PROMPT, EVENT_CONTENT_COMPLETION}

# --- our in-process SDK (docs/sdk-spans.md): content reduced in the agent's process ----------
# Spans of this scope carry the reduced features as ``dunetrace.*`` attributes; they are read
# (and validated) only on spans of this scope.
DUNETRACE_SPANS_SCOPE = "dunetrace.sdk"
DT_AGENT_VERSION = "dunetrace.agent.version"  # root
DT_EXIT_REASON = "dunetrace.exit_reason"  # root
DT_PROMPT_HASH = "dunetrace.prompt.hash"  # LLM
DT_PROMPT_LENGTH = "dunetrace.prompt.length"
DT_OUTPUT_HASH = "dunetrace.output.hash"
DT_OUTPUT_LENGTH = "dunetrace.output.length"
DT_TOOL_REQUEST_NAMES = "dunetrace.tool_requests.names"  # string[], parallel:
DT_TOOL_REQUEST_IDS = "dunetrace.tool_requests.ids"  # string[] ("" when none)
DT_TOOL_REQUEST_ARGS_HASHES = "dunetrace.tool_requests.args_hashes"  # string[]
DT_TOOL_ARGS_HASH = "dunetrace.tool.args.hash"  # tool
DT_TOOL_ARGS_LENGTH = "dunetrace.tool.args.length"
DT_TOOL_RESULT_HASH = "dunetrace.tool.result.hash"
DT_TOOL_RESULT_LENGTH = "dunetrace.tool.result.length"
DT_RETRIEVAL_QUERY_HASH = "dunetrace.retrieval.query.hash"  # retrieval
DT_RETRIEVAL_QUERY_LENGTH = "dunetrace.retrieval.query.length"
DT_RETRIEVAL_RESULT_COUNT = "dunetrace.retrieval.result_count"
DT_RETRIEVAL_TOP_SCORE = "dunetrace.retrieval.top_score"
DT_INJECTION_PATTERNS = "dunetrace.injection.patterns"  # LLM, tool, retrieval: string[]
DT_INJECTION_SOURCE = "dunetrace.injection.source"
DT_INJECTION_INPUT_LENGTH = "dunetrace.injection.input_length"
# A local policy that fired: a span event on the root span, with these attributes.
DT_POLICY_EVENT = "dunetrace.policy.triggered"
DT_POLICY_ID = "dunetrace.policy.id"
DT_POLICY_NAME = "dunetrace.policy.name"
DT_POLICY_TRIGGER = "dunetrace.policy.trigger"
DT_POLICY_OPERATOR = "dunetrace.policy.operator"
DT_POLICY_VALUE = "dunetrace.policy.value"  # JSON
DT_POLICY_OBSERVED = "dunetrace.policy.observed"  # JSON
DT_POLICY_ACTION = "dunetrace.policy.action"
DUNETRACE_SPAN_KEYS: frozenset[str] = frozenset(
    {
        DT_AGENT_VERSION,
        DT_EXIT_REASON,
        DT_PROMPT_HASH,
        DT_PROMPT_LENGTH,
        DT_OUTPUT_HASH,
        DT_OUTPUT_LENGTH,
        DT_TOOL_REQUEST_NAMES,
        DT_TOOL_REQUEST_IDS,
        DT_TOOL_REQUEST_ARGS_HASHES,
        DT_TOOL_ARGS_HASH,
        DT_TOOL_ARGS_LENGTH,
        DT_TOOL_RESULT_HASH,
        DT_TOOL_RESULT_LENGTH,
        DT_RETRIEVAL_QUERY_HASH,
        DT_RETRIEVAL_QUERY_LENGTH,
        DT_RETRIEVAL_RESULT_COUNT,
        DT_RETRIEVAL_TOP_SCORE,
        DT_INJECTION_PATTERNS,
        DT_INJECTION_SOURCE,
        DT_INJECTION_INPUT_LENGTH,
    }
)

# Every exact key the span reader keeps.
WANTED_KEYS: frozenset[str] = frozenset(
    {
        GEN_AI_OPERATION_NAME,
        OPENINFERENCE_SPAN_KIND,
        TRACELOOP_SPAN_KIND,
        LLM_REQUEST_TYPE,
        GEN_AI_AGENT_NAME,
        OPENINFERENCE_AGENT_NAME,
        OPENINFERENCE_GRAPH_NODE_ID,
        GEN_AI_WORKFLOW_NAME,
        TRACELOOP_WORKFLOW_NAME,
        RESPONSE_ID,
        FINISH_REASONS,
        RESPONSE_TOOL_CALLS,
        LLM_SPAN_TOOL_ARGS,
        OPENINFERENCE_FINISH_REASON,
        ANTHROPIC_STOP_REASON,
        LANGFUSE_PROMPT_NAME,
        LANGFUSE_PROMPT_VERSION,
        INPUT_MESSAGES,
        OUTPUT_MESSAGES,
        SYSTEM_INSTRUCTIONS,
        TOOL_DEFINITIONS,
        TOOL_CALL_ID,
        RETRIEVAL_DOCUMENTS,
        ERROR_TYPE,
        *REQUEST_MODEL_KEYS,
        *RESPONSE_MODEL_KEYS,
        *PROVIDER_KEYS,
        *INPUT_TOKEN_KEYS,
        *OUTPUT_TOKEN_KEYS,
        *TOOL_NAME_KEYS,
        *TOOL_ARGS_KEYS,
        *TOOL_RESULT_KEYS,
        *RETRIEVAL_INDEX_KEYS,
        *RETRIEVAL_QUERY_KEYS,
        *ROOT_INPUT_KEYS,
    }
)
# Flattened families, kept by prefix.
WANTED_PREFIXES: tuple[str, ...] = (
    LEGACY_PROMPT_PREFIX,
    LEGACY_COMPLETION_PREFIX,
    LEGACY_FUNCTIONS_PREFIX,
    OI_INPUT_MESSAGES_PREFIX,
    OI_OUTPUT_MESSAGES_PREFIX,
    OI_TOOLS_PREFIX,
    OI_RETRIEVAL_DOCUMENTS_PREFIX,
)
# What a span of our SDK's scope is read for: the above, and its features.
DUNETRACE_SPANS_WANTED_KEYS: frozenset[str] = WANTED_KEYS | DUNETRACE_SPAN_KEYS
