//! Content policy: whether prompts and completions are recorded, where, how long, and with what
//! redacted. Credentials are never recorded in any mode (rules cannot read credential headers or
//! query parameters; see the spec compiler).

use regex::Regex;
use serde_json::Value as Json;

use crate::engine::Record;

/// Where message content goes, as `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// No message content anywhere.
    NoContent,
    /// Message attributes on the span (the default).
    SpanOnly,
    /// Content on a `gen_ai.client.inference.operation.details` event only.
    EventOnly,
    /// Both.
    SpanAndEvent,
}

impl Capture {
    /// Parses the environment variable's values: `true`/`false` and the named modes
    /// (case-insensitive). `None` for anything else.
    ///
    /// ```
    /// use specter::content::Capture;
    /// assert_eq!(Capture::parse("false"), Some(Capture::NoContent));
    /// assert_eq!(Capture::parse("SPAN_AND_EVENT"), Some(Capture::SpanAndEvent));
    /// assert_eq!(Capture::parse("maybe"), None);
    /// ```
    pub fn parse(value: &str) -> Option<Capture> {
        match value.trim().to_ascii_uppercase().as_str() {
            "TRUE" | "SPAN_ONLY" => Some(Capture::SpanOnly),
            "FALSE" | "NO_CONTENT" => Some(Capture::NoContent),
            "EVENT_ONLY" => Some(Capture::EventOnly),
            "SPAN_AND_EVENT" => Some(Capture::SpanAndEvent),
            _ => None,
        }
    }

    /// Whether content goes on span attributes.
    pub fn on_span(self) -> bool {
        matches!(self, Capture::SpanOnly | Capture::SpanAndEvent)
    }

    /// Whether content goes on an event.
    pub fn on_event(self) -> bool {
        matches!(self, Capture::EventOnly | Capture::SpanAndEvent)
    }
}

/// A redaction: every match of `pattern` in content is replaced by `replacement`.
#[derive(Debug, Clone)]
pub struct Redaction {
    /// What to find.
    pub pattern: Regex,
    /// What to put instead (`$1` refers to groups).
    pub replacement: String,
}

/// What content is recorded and how.
#[derive(Debug, Clone)]
pub struct ContentPolicy {
    /// Where content goes.
    pub capture: Capture,
    /// Longest string kept inside message content, in characters; longer ones end in `…`.
    pub max_length: Option<usize>,
    /// Applied to every content string, in order.
    pub redactions: Vec<Redaction>,
}

impl Default for ContentPolicy {
    fn default() -> Self {
        ContentPolicy {
            capture: Capture::SpanOnly,
            max_length: None,
            redactions: Vec::new(),
        }
    }
}

impl ContentPolicy {
    /// The default policy, with `capture` from `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`
    /// when it is set to a known value.
    pub fn from_env() -> ContentPolicy {
        let capture = std::env::var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
            .ok()
            .and_then(|v| Capture::parse(&v))
            .unwrap_or(Capture::SpanOnly);
        ContentPolicy {
            capture,
            ..ContentPolicy::default()
        }
    }

    /// Applies truncation and redaction to the record's message content in place (the JSON stays
    /// valid: content strings are shortened, never cut out of their structure; roles, types, ids
    /// and names are left alone), or removes the content.
    pub fn apply(&self, record: &mut Record) {
        if self.capture == Capture::NoContent {
            record.input_messages = None;
            record.output_messages = None;
            record.system_instructions = None;
            record.tool_definitions = None;
            return;
        }
        if self.max_length.is_none() && self.redactions.is_empty() {
            return;
        }
        for messages in [&mut record.input_messages, &mut record.output_messages] {
            edit(messages, |value| {
                for message in value.as_array_mut().into_iter().flatten() {
                    if let Some(parts) = message.get_mut("parts") {
                        self.clean_parts(parts);
                    }
                }
            });
        }
        edit(&mut record.system_instructions, |parts| {
            self.clean_parts(parts)
        });
        edit(&mut record.tool_definitions, |tools| {
            for tool in tools.as_array_mut().into_iter().flatten() {
                for key in ["description", "parameters"] {
                    if let Some(value) = tool.get_mut(key) {
                        self.clean(value);
                    }
                }
            }
        });
    }

    fn clean_parts(&self, parts: &mut Json) {
        const CONTENT: [&str; 6] = [
            "content",
            "arguments",
            "response",
            "uri",
            "server_tool_call",
            "server_tool_call_response",
        ];
        for part in parts.as_array_mut().into_iter().flatten() {
            for key in CONTENT {
                if let Some(value) = part.get_mut(key) {
                    self.clean(value);
                }
            }
        }
    }

    fn clean(&self, value: &mut Json) {
        match value {
            Json::String(text) => {
                for r in &self.redactions {
                    if r.pattern.is_match(text) {
                        *text = r
                            .pattern
                            .replace_all(text, r.replacement.as_str())
                            .into_owned();
                    }
                }
                if let Some(max) = self.max_length {
                    if let Some((cut, _)) = text.char_indices().nth(max) {
                        text.truncate(cut);
                        text.push('…');
                    }
                }
            }
            Json::Array(items) => items.iter_mut().for_each(|v| self.clean(v)),
            Json::Object(map) => map.values_mut().for_each(|v| self.clean(v)),
            _ => {}
        }
    }
}

/// Edits message JSON text through its value. Text that is not JSON (never written by the
/// engine) is removed rather than recorded unredacted.
fn edit(text: &mut Option<String>, f: impl FnOnce(&mut Json)) {
    let Some(current) = text.as_deref() else {
        return;
    };
    *text = serde_json::from_str::<Json>(current)
        .ok()
        .and_then(|mut value| {
            f(&mut value);
            serde_json::to_string(&value).ok()
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> Record {
        Record {
            provider: "p".into(),
            operation: "o".into(),
            span_name: "chat".into(),
            client_span: true,
            attributes: Default::default(),
            input_messages: Some(
                json!([{"role": "user", "parts": [{"type": "text", "content": "my key is sk-abc123 and more text"}]}])
                    .to_string(),
            ),
            output_messages: None,
            system_instructions: None,
            tool_definitions: None,
            error: None,
            problems: vec![],
            stream: None,
            metric_values: vec![],
        }
    }

    #[test]
    fn truncates_and_redacts_keeping_json() {
        let policy = ContentPolicy {
            capture: Capture::SpanOnly,
            max_length: Some(12),
            redactions: vec![Redaction {
                pattern: Regex::new(r"sk-[a-z0-9]+").unwrap(),
                replacement: "[REDACTED]".into(),
            }],
        };
        let mut r = record();
        policy.apply(&mut r);
        let messages: Json = serde_json::from_str(&r.input_messages.unwrap()).unwrap();
        assert_eq!(messages[0]["parts"][0]["content"], "my key is [R…");
    }

    #[test]
    fn no_content_removes_messages() {
        let policy = ContentPolicy {
            capture: Capture::NoContent,
            ..ContentPolicy::default()
        };
        let mut r = record();
        policy.apply(&mut r);
        assert!(r.input_messages.is_none());
    }
}
