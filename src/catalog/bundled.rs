//! The provider specs embedded in the binary, so specter works without a `providers/` directory.
//! A test checks that this list matches the directory.

/// File name and text of every bundled provider.
pub const PROVIDERS: &[(&str, &str)] = &[
    (
        "anthropic.yaml",
        include_str!("../../providers/anthropic.yaml"),
    ),
    (
        "azure_openai.yaml",
        include_str!("../../providers/azure_openai.yaml"),
    ),
    ("bedrock.yaml", include_str!("../../providers/bedrock.yaml")),
    (
        "cerebras.yaml",
        include_str!("../../providers/cerebras.yaml"),
    ),
    ("cohere.yaml", include_str!("../../providers/cohere.yaml")),
    (
        "deepseek.yaml",
        include_str!("../../providers/deepseek.yaml"),
    ),
    (
        "fireworks.yaml",
        include_str!("../../providers/fireworks.yaml"),
    ),
    ("gemini.yaml", include_str!("../../providers/gemini.yaml")),
    ("groq.yaml", include_str!("../../providers/groq.yaml")),
    (
        "huggingface.yaml",
        include_str!("../../providers/huggingface.yaml"),
    ),
    ("mistral.yaml", include_str!("../../providers/mistral.yaml")),
    ("ollama.yaml", include_str!("../../providers/ollama.yaml")),
    ("openai.yaml", include_str!("../../providers/openai.yaml")),
    (
        "openrouter.yaml",
        include_str!("../../providers/openrouter.yaml"),
    ),
    (
        "perplexity.yaml",
        include_str!("../../providers/perplexity.yaml"),
    ),
    (
        "together.yaml",
        include_str!("../../providers/together.yaml"),
    ),
    (
        "vertexai.yaml",
        include_str!("../../providers/vertexai.yaml"),
    ),
    ("writer.yaml", include_str!("../../providers/writer.yaml")),
    ("xai.yaml", include_str!("../../providers/xai.yaml")),
];
