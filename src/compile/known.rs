//! Names the compiler checks specs against: the GenAI semantic-convention attributes, attributes
//! the engine sets itself, and what counts as a credential.

/// The `gen_ai.operation.name` values the GenAI semantic conventions define (registry
/// `gen_ai.operation.name`), in order.
pub const OPERATION_NAMES: &[&str] = &[
    "chat",
    "create_agent",
    "embeddings",
    "execute_tool",
    "generate_content",
    "invoke_agent",
    "invoke_workflow",
    "retrieval",
    "text_completion",
];

/// Attributes of the GenAI registry that rules may set directly.
pub const GEN_AI_ATTRIBUTES: &[&str] = &[
    "gen_ai.agent.description",
    "gen_ai.agent.id",
    "gen_ai.agent.name",
    "gen_ai.agent.version",
    "gen_ai.conversation.id",
    "gen_ai.data_source.id",
    "gen_ai.embeddings.dimension.count",
    "gen_ai.operation.name",
    "gen_ai.output.type",
    "gen_ai.prompt.name",
    "gen_ai.provider.name",
    "gen_ai.request.choice.count",
    "gen_ai.request.encoding_formats",
    "gen_ai.request.frequency_penalty",
    "gen_ai.request.max_tokens",
    "gen_ai.request.model",
    "gen_ai.request.presence_penalty",
    "gen_ai.request.seed",
    "gen_ai.request.stop_sequences",
    "gen_ai.request.stream",
    "gen_ai.request.temperature",
    "gen_ai.request.top_k",
    "gen_ai.request.top_p",
    "gen_ai.response.finish_reasons",
    "gen_ai.response.id",
    "gen_ai.response.model",
    "gen_ai.response.time_to_first_chunk",
    "gen_ai.retrieval.query.text",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.id",
    "gen_ai.tool.call.result",
    "gen_ai.tool.description",
    "gen_ai.tool.name",
    "gen_ai.tool.type",
    "gen_ai.usage.audio.input_tokens",
    "gen_ai.usage.audio.output_tokens",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cost",
    "gen_ai.usage.image.input_tokens",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.text.input_tokens",
    "gen_ai.usage.text.output_tokens",
    "gen_ai.usage.video.input_tokens",
    "gen_ai.workflow.name",
];

/// Attributes produced from message rules, which rules may not set directly.
pub const MESSAGE_ATTRIBUTES: &[&str] = &[
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
];

/// Attributes the engine sets on every span, usable in span name templates.
pub const KNOWN_TEMPLATE_VARS: &[&str] = &[
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "server.address",
    "server.port",
];

/// Default attributes of provider metric points.
pub const DEFAULT_METRIC_ATTRIBUTES: &[&str] = &[
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
];

/// Attributes with unbounded values, never allowed on metrics.
pub const UNBOUNDED_ATTRIBUTES: &[&str] = &[
    "gen_ai.response.id",
    "gen_ai.conversation.id",
    "gen_ai.tool.call.id",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.retrieval.query.text",
    "session.id",
    "user.id",
];

/// Whether a (lower-case) header name carries credentials.
///
/// ```
/// use specter::unstable::compile::is_credential_header;
/// assert!(is_credential_header("authorization"));
/// assert!(is_credential_header("x-goog-api-key"));
/// assert!(is_credential_header("x-amz-security-token"));
/// assert!(!is_credential_header("x-amzn-bedrock-input-token-count"));
/// assert!(!is_credential_header("x-ratelimit-remaining-tokens"));
/// assert!(is_credential_header("x-session-token"));
/// assert!(is_credential_header("session"));
/// assert!(!is_credential_header("x-specter-session-id"));
/// assert!(!is_credential_header("helicone-session-id"));
/// assert!(!is_credential_header("helicone-session-name"));
/// assert!(is_credential_header("x-session-secret-id"));
/// ```
pub fn is_credential_header(name: &str) -> bool {
    // The headers of nearly every request, none a credential, answered without a copy.
    if matches!(
        name,
        "content-type"
            | "content-length"
            | "host"
            | "accept"
            | "accept-encoding"
            | "user-agent"
            | "connection"
            | "traceparent"
            | "tracestate"
    ) {
        return false;
    }
    let name = name.to_ascii_lowercase();
    // A session *id* or *name* names a session (`x-specter-session-id`, `helicone-session-id`,
    // `helicone-session-name`); a session token or key (`x-session-token`, `x-session-key`) or a
    // bare `session` still opens one.
    let session_id = ["-id", "_id", ".id", "-name", "_name", ".name"]
        .iter()
        .any(|s| name.ends_with(s));
    if name.contains("session") && session_id && !name.contains("token") {
        return is_credential_header(&name.replace("session", ""));
    }
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || [
        "api-key",
        "apikey",
        "api_key",
        "secret",
        "password",
        "auth",
        "session",
        "signature",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
        || name.ends_with("-token")
        || name.ends_with("_token")
}

/// Whether a query parameter name carries credentials.
pub fn is_credential_query(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "key" | "api-key" | "api_key" | "apikey" | "access_token" | "token" | "sig" | "signature"
    ) || lower.starts_with("x-amz-")
}
