//! Content policy: whether prompts and completions are recorded, where, how long, and with what
//! redacted. Credentials are never recorded in any mode (rules cannot read credential headers or
//! query parameters; see the spec compiler).

use regex::Regex;
use serde_json::Value as Json;

use crate::engine::Record;

/// Where message content goes, as `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` says.
///
/// ```
/// use specter::Capture;
///
/// let capture: Capture = "event_only".parse().unwrap();
/// assert_eq!(capture, Capture::EventOnly);
/// assert!(capture.on_event() && !capture.on_span());
/// assert_eq!("false".parse::<Capture>().unwrap(), Capture::NoContent);
/// ```
#[non_exhaustive]
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

/// The variable that sets [`Capture`] from the environment.
pub const CAPTURE_VARIABLE: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";

/// The values [`Capture`] accepts, case-insensitively, as listed in error messages.
pub const CAPTURE_VALUES: &str = "true, false, NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT \
     (also 1, on, yes for the default SPAN_ONLY and 0, off, no, none, disabled for NO_CONTENT)";

/// A content capture value that is none of [`CAPTURE_VALUES`].
///
/// ```
/// let error = "sometimes".parse::<specter::Capture>().unwrap_err();
/// assert_eq!(error.value, "sometimes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is not a content capture mode; accepted (case-insensitive): {CAPTURE_VALUES}", crate::printable::escape_controls(.value))]
pub struct CaptureError {
    /// The value as given.
    pub value: String,
}

/// The content capture variable holds a value that is not accepted.
///
/// ```
/// use std::ffi::OsStr;
/// use specter::Capture;
///
/// let error = Capture::from_env_value(Some(OsStr::new("sometimes"))).unwrap_err();
/// assert_eq!(error.0.value, "sometimes");
/// assert_eq!(Capture::from_env_value(Some(OsStr::new("SPAN_AND_EVENT"))), Ok(Some(Capture::SpanAndEvent)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{CAPTURE_VARIABLE}: {0}")]
pub struct ContentEnvError(pub CaptureError);

impl From<CaptureError> for ContentEnvError {
    fn from(error: CaptureError) -> Self {
        ContentEnvError(error)
    }
}

impl std::str::FromStr for Capture {
    type Err = CaptureError;

    /// Parses a capture value strictly: the documented values, and the common spellings of on
    /// and off; anything else is an error (content is never captured by mistake).
    fn from_str(value: &str) -> Result<Capture, CaptureError> {
        match value.trim().to_ascii_uppercase().as_str() {
            "TRUE" | "1" | "ON" | "YES" | "SPAN_ONLY" => Ok(Capture::SpanOnly),
            "FALSE" | "0" | "OFF" | "NO" | "NONE" | "DISABLED" | "NO_CONTENT" => {
                Ok(Capture::NoContent)
            }
            "EVENT_ONLY" => Ok(Capture::EventOnly),
            "SPAN_AND_EVENT" => Ok(Capture::SpanAndEvent),
            _ => Err(CaptureError {
                value: value.to_string(),
            }),
        }
    }
}

impl Capture {
    /// Parses a capture value ([`CAPTURE_VALUES`], case-insensitive); `None` for anything else.
    /// [`str::parse`] gives the error instead.
    ///
    /// ```
    /// use specter::Capture;
    /// assert_eq!(Capture::parse("false"), Some(Capture::NoContent));
    /// assert_eq!(Capture::parse("off"), Some(Capture::NoContent));
    /// assert_eq!(Capture::parse("SPAN_AND_EVENT"), Some(Capture::SpanAndEvent));
    /// assert_eq!(Capture::parse("maybe"), None);
    /// assert!("maybe".parse::<Capture>().is_err());
    /// ```
    pub fn parse(value: &str) -> Option<Capture> {
        value.parse().ok()
    }

    /// The capture mode the environment asks for: `None` when
    /// [`CAPTURE_VARIABLE`] is unset or empty.
    ///
    /// # Errors
    /// When the variable holds a value that is not accepted.
    pub fn from_env() -> Result<Option<Capture>, ContentEnvError> {
        Capture::from_env_value(std::env::var_os(CAPTURE_VARIABLE).as_deref())
    }

    /// [`Capture::from_env`] for a given value of the variable.
    ///
    /// # Errors
    /// When the value is not accepted.
    pub fn from_env_value(
        value: Option<&std::ffi::OsStr>,
    ) -> Result<Option<Capture>, ContentEnvError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let text = value.to_string_lossy();
        if text.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(text.parse()?))
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
///
/// ```
/// let redaction = specter::Redaction {
///     pattern: regex::Regex::new(r"\b\d{4}-\d{4}-\d{4}-\d{4}\b").unwrap(),
///     replacement: "<card>".into(),
/// };
/// let policy = specter::ContentPolicy::default().with_redactions(vec![redaction]);
/// assert_eq!(policy.redactions[0].replacement, "<card>");
/// ```
#[derive(Debug, Clone)]
pub struct Redaction {
    /// What to find.
    pub pattern: Regex,
    /// What to put instead (`$1` refers to groups).
    pub replacement: String,
}

/// What content is recorded and how.
///
/// ```
/// use specter::{Capture, ContentPolicy};
///
/// let policy = ContentPolicy::default()
///     .with_capture(Capture::SpanAndEvent)
///     .with_max_length(Some(1000));
/// assert!(policy.capture.on_span() && policy.capture.on_event());
/// assert_eq!(ContentPolicy::default().capture, Capture::SpanOnly);
/// ```
#[non_exhaustive]
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
    /// Sets [`ContentPolicy::capture`].
    ///
    /// ```
    /// use specter::{Capture, ContentPolicy};
    ///
    /// let policy = ContentPolicy::default().with_capture(Capture::EventOnly);
    /// assert!(policy.capture.on_event() && !policy.capture.on_span());
    /// ```
    pub fn with_capture(mut self, capture: Capture) -> Self {
        self.capture = capture;
        self
    }

    /// Sets [`ContentPolicy::max_length`].
    ///
    /// ```
    /// let policy = specter::ContentPolicy::default().with_max_length(Some(200));
    /// assert_eq!(policy.max_length, Some(200));
    /// ```
    pub fn with_max_length(mut self, max_length: Option<usize>) -> Self {
        self.max_length = max_length;
        self
    }

    /// Sets [`ContentPolicy::redactions`].
    ///
    /// ```
    /// use specter::{ContentPolicy, Redaction};
    ///
    /// let email = Redaction {
    ///     pattern: regex::Regex::new(r"[\w.]+@[\w.]+").unwrap(),
    ///     replacement: "<email>".into(),
    /// };
    /// let policy = ContentPolicy::default().with_redactions(vec![email]);
    /// assert_eq!(policy.redactions.len(), 1);
    /// ```
    pub fn with_redactions(mut self, redactions: Vec<Redaction>) -> Self {
        self.redactions = redactions;
        self
    }

    /// The default policy, with `capture` from `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`
    /// when it is set (an empty value counts as unset).
    ///
    /// # Errors
    /// When the variable holds a value that is not accepted: content is then neither captured nor
    /// silently left out.
    pub fn from_env() -> Result<ContentPolicy, ContentEnvError> {
        let capture = Capture::from_env()?.unwrap_or(Capture::SpanOnly);
        Ok(ContentPolicy {
            capture,
            ..ContentPolicy::default()
        })
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
    fn capture_values_parse_strictly() {
        use std::ffi::OsStr;
        for (value, expected) in [
            ("true", Capture::SpanOnly),
            ("TRUE", Capture::SpanOnly),
            ("1", Capture::SpanOnly),
            ("on", Capture::SpanOnly),
            ("Yes", Capture::SpanOnly),
            ("span_only", Capture::SpanOnly),
            ("false", Capture::NoContent),
            ("0", Capture::NoContent),
            ("off", Capture::NoContent),
            ("OFF", Capture::NoContent),
            ("no", Capture::NoContent),
            ("none", Capture::NoContent),
            ("disabled", Capture::NoContent),
            (" NO_CONTENT ", Capture::NoContent),
            ("event_only", Capture::EventOnly),
            ("Span_And_Event", Capture::SpanAndEvent),
        ] {
            assert_eq!(value.parse::<Capture>(), Ok(expected), "{value}");
            assert_eq!(
                Capture::from_env_value(Some(OsStr::new(value))),
                Ok(Some(expected)),
                "{value}"
            );
        }
        for value in ["maybe", "2", "enabled", "SPAN", "off please", "\u{1b}[31m"] {
            let error = value.parse::<Capture>().unwrap_err();
            assert_eq!(error.value, value);
            let message = ContentEnvError(error).to_string();
            assert!(
                message.starts_with("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: `"),
                "{message}"
            );
            for accepted in [
                "true",
                "false",
                "NO_CONTENT",
                "SPAN_ONLY",
                "EVENT_ONLY",
                "SPAN_AND_EVENT",
                "off",
            ] {
                assert!(message.contains(accepted), "{message}");
            }
            assert!(!message.contains('\u{1b}'), "{message}");
        }
        assert_eq!(Capture::from_env_value(None), Ok(None));
        assert_eq!(Capture::from_env_value(Some(OsStr::new(""))), Ok(None));
        assert_eq!(Capture::from_env_value(Some(OsStr::new("  "))), Ok(None));
        assert!(Capture::from_env_value(Some(OsStr::new("maybe"))).is_err());
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
