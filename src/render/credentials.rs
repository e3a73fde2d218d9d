//! The credential values of one request (API keys in headers and query parameters), collected
//! when its call starts and scrubbed from every string its span exports: an upstream that echoes
//! the key in an error message (`Incorrect API key provided: sk-...`) cannot get it recorded.
//!
//! Which headers and query parameters carry credentials is decided by
//! [`crate::compile::is_credential_header`] and [`crate::compile::is_credential_query`], the same
//! rules that keep spec rules from reading them.

use base64::Engine as _;
use serde_json::Value as Json;

use crate::compile::{is_credential_header, is_credential_query};
use crate::engine::Record;

/// What a credential is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Values shorter than this (in bytes) are not scrubbed: they would match ordinary text.
pub const MIN_SECRET_LEN: usize = 8;

/// The shortest prefix of a key that, followed by a mask (`***`, `...`, `…`), counts as a
/// partly masked echo of it.
const MIN_MASKED_PREFIX: usize = 4;

/// The credential values of a request, longest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    secrets: Vec<String>,
    /// The first [`MIN_MASKED_PREFIX`] characters of each secret: every echo of it, whole or
    /// masked, starts with them, so a string without them is skipped after one search.
    heads: Vec<String>,
}

impl Credentials {
    /// Collects the credential values of a request: the whole value of every credential header
    /// (`authorization`, `x-api-key`, `api-key`, `x-goog-api-key`, cookies, ...), the token after
    /// an `Authorization` scheme (`Bearer `, `Basic `, ...), for `Basic` the decoded `user:password`
    /// and password, every cookie value, and every credential query parameter (`key`, `api-key`,
    /// ...). Values shorter than [`MIN_SECRET_LEN`] are left out.
    ///
    /// ```
    /// use specter::unstable::render::credentials::Credentials;
    /// let c = Credentials::of_request(
    ///     &[("Authorization".into(), "Bearer sk-live-0123456789".into())],
    ///     &[("key".into(), "AIzaSyExample0123".into())],
    /// );
    /// assert_eq!(
    ///     c.scrub("bad key sk-live-0123456789 or AIzaSyExample0123"),
    ///     "bad key [REDACTED] or [REDACTED]"
    /// );
    /// ```
    pub fn of_request(headers: &[(String, String)], query: &[(String, String)]) -> Credentials {
        let mut secrets = Vec::new();
        for (name, value) in headers {
            if is_credential_header(name) {
                header_secrets(&name.to_ascii_lowercase(), value, &mut secrets);
            }
        }
        for (name, value) in query {
            if is_credential_query(name) {
                secrets.push(value.clone());
            }
        }
        Credentials::from_values(secrets)
    }

    /// Credentials from values as they are (short ones left out).
    pub fn from_values(values: impl IntoIterator<Item = String>) -> Credentials {
        let mut secrets: Vec<String> = values
            .into_iter()
            .map(|v| v.trim().to_string())
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so that `Bearer sk-...` goes as one before `sk-...` alone.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let heads = secrets
            .iter()
            .map(|s| s.chars().take(MIN_MASKED_PREFIX).collect())
            .collect();
        Credentials { secrets, heads }
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every credential, and every partly masked echo of one (`sk-abc1***...wxyz`),
    /// replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        self.scrub_in_place(&mut out);
        out
    }

    /// [`Credentials::scrub`] in place; leaves the string untouched (no copy) when nothing matches.
    pub fn scrub_in_place(&self, text: &mut String) {
        for (secret, head) in self.secrets.iter().zip(&self.heads) {
            if memchr::memmem::find(text.as_bytes(), head.as_bytes()).is_none() {
                continue;
            }
            if text.contains(secret.as_str()) {
                *text = text.replace(secret.as_str(), REDACTED);
            }
            if let Some(masked) = scrub_masked(text, secret, head) {
                *text = masked;
            }
        }
    }

    /// `text` scrubbed as [`Credentials::scrub`] does, borrowed (not copied) when it holds the
    /// start of no credential.
    pub fn scrubbed<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let holds_head = self
            .heads
            .iter()
            .any(|head| memchr::memmem::find(text.as_bytes(), head.as_bytes()).is_some());
        if holds_head {
            std::borrow::Cow::Owned(self.scrub(text))
        } else {
            std::borrow::Cow::Borrowed(text)
        }
    }

    /// Scrubs every string inside a JSON value (keys are left alone).
    pub fn scrub_json(&self, value: &mut Json) {
        match value {
            Json::String(text) => self.scrub_in_place(text),
            Json::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            Json::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }

    /// Scrubs every string of a record that can be exported: attributes, message content (JSON
    /// text), the error message and type, problems and the span name.
    pub fn scrub_record(&self, record: &mut Record) {
        if self.is_empty() {
            return;
        }
        self.scrub_in_place(&mut record.span_name);
        record
            .attributes
            .values_mut()
            .for_each(|v| self.scrub_json(v));
        for text in [
            &mut record.input_messages,
            &mut record.output_messages,
            &mut record.system_instructions,
            &mut record.tool_definitions,
        ]
        .into_iter()
        .flatten()
        {
            self.scrub_in_place(text);
        }
        if let Some(error) = &mut record.error {
            self.scrub_in_place(&mut error.error_type);
            if let Some(message) = &mut error.message {
                self.scrub_in_place(message);
            }
        }
        record
            .problems
            .iter_mut()
            .for_each(|p| self.scrub_in_place(p));
    }
}

/// The secrets of one credential header's value.
fn header_secrets(name: &str, value: &str, out: &mut Vec<String>) {
    out.push(value.to_string());
    match name {
        "authorization" | "proxy-authorization" => {
            if let Some((scheme, token)) = value.trim().split_once(' ') {
                let token = token.trim();
                out.push(token.to_string());
                if scheme.eq_ignore_ascii_case("basic") {
                    basic_secrets(token, out);
                }
            }
        }
        "cookie" => {
            for pair in value.split(';') {
                if let Some((_, v)) = pair.split_once('=') {
                    out.push(v.to_string());
                }
            }
        }
        _ => {}
    }
}

/// `user:password` and the password of a Basic token.
fn basic_secrets(token: &str, out: &mut Vec<String>) {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(token) else {
        return;
    };
    let Ok(pair) = String::from_utf8(bytes) else {
        return;
    };
    if let Some((_, password)) = pair.split_once(':') {
        out.push(password.to_string());
    }
    out.push(pair);
}

/// Characters that mask the middle of a key in an echo.
fn is_mask(c: char) -> bool {
    matches!(c, '*' | '.' | '…' | '•' | 'x' | 'X')
}

/// Replaces partly masked echoes of `secret`: a prefix of it of at least [`MIN_MASKED_PREFIX`]
/// characters, a mask of at least three mask characters, and a (possibly empty) suffix of it.
/// `None` when there is none.
fn scrub_masked(text: &str, secret: &str, head: &str) -> Option<String> {
    if head.chars().count() < MIN_MASKED_PREFIX || !text.contains(head) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find(head) {
        let (before, candidate) = rest.split_at(at);
        out.push_str(before);
        match masked_len(candidate, secret) {
            Some(len) => {
                out.push_str(REDACTED);
                rest = candidate.get(len..).unwrap_or_default();
                changed = true;
            }
            None => {
                let step = head.len();
                out.push_str(candidate.get(..step).unwrap_or_default());
                rest = candidate.get(step..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// The byte length of a masked echo of `secret` at the start of `text`, if there is one.
fn masked_len(text: &str, secret: &str) -> Option<usize> {
    // The longest common prefix with the secret.
    let prefix = text
        .char_indices()
        .zip(secret.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map(|((i, c), _)| i + c.len_utf8())?;
    let after_prefix = text.get(prefix..)?;
    let mask: usize = after_prefix
        .chars()
        .take_while(|c| is_mask(*c))
        .map(char::len_utf8)
        .sum();
    // An ellipsis character stands for three dots.
    let weight: usize = after_prefix
        .get(..mask)?
        .chars()
        .map(|c| if c == '…' { 3 } else { 1 })
        .sum();
    if weight < 3 || prefix >= secret.len() {
        return None;
    }
    let after_mask = after_prefix.get(mask..)?;
    // The longest run of word characters after the mask that ends the secret.
    let word: usize = after_mask
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_'))
        .map(char::len_utf8)
        .sum();
    let suffix = (0..=word)
        .rev()
        .find(|n| after_mask.get(..*n).is_some_and(|s| secret.ends_with(s)))
        .unwrap_or(0);
    Some(prefix + mask + suffix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "sk-proj-abcdef0123456789wxyz";

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn collects_headers_tokens_and_query_keys() {
        let basic = base64::engine::general_purpose::STANDARD.encode("user:hunter2-password");
        let c = Credentials::of_request(
            &headers(&[
                ("Authorization", &format!("Bearer {KEY}")),
                ("x-api-key", "anthropic-key-123456"),
                ("api-key", "azure-key-1234567"),
                ("x-goog-api-key", "AIzaSy-goog-12345"),
                ("proxy-authorization", &format!("Basic {basic}")),
                ("cookie", "a=1; session=cookie-secret-999"),
                ("content-type", "application/json-long-value"),
                ("x-api-key", "short"),
            ]),
            &headers(&[("key", "query-key-0123456"), ("alt", "sse-long-value")]),
        );
        let text = format!(
            "{KEY} anthropic-key-123456 azure-key-1234567 AIzaSy-goog-12345 hunter2-password \
             cookie-secret-999 query-key-0123456 application/json-long-value sse-long-value short"
        );
        assert_eq!(
            c.scrub(&text),
            "[REDACTED] [REDACTED] [REDACTED] [REDACTED] [REDACTED] [REDACTED] [REDACTED] \
             application/json-long-value sse-long-value short"
        );
        assert_eq!(c.scrub(&format!("Bearer {KEY}")), "[REDACTED]");
    }

    #[test]
    fn short_values_are_not_scrubbed() {
        let c = Credentials::from_values(["1234567".to_string(), " ".to_string()]);
        assert!(c.is_empty());
        assert_eq!(c.scrub("id 1234567"), "id 1234567");
    }

    #[test]
    fn masked_echoes_are_scrubbed() {
        let c = Credentials::from_values([KEY.to_string()]);
        for (echo, expected) in [
            (
                "Incorrect API key provided: sk-proj-***************************wxyz. You can find",
                "Incorrect API key provided: [REDACTED]. You can find",
            ),
            ("key sk-proj-abc...wxyz here", "key [REDACTED] here"),
            ("key sk-p…", "key [REDACTED]"),
            ("key sk-proj-abcdef01xxxxxxxx89wxyz!", "key [REDACTED]!"),
        ] {
            assert_eq!(c.scrub(echo), expected, "{echo}");
        }
        // Shared prefixes without a mask, and other keys, stay.
        for text in [
            "sk-proj-other",
            "sk-proj-abc.",
            "sk-a***",
            "use sk-projects",
        ] {
            assert_eq!(c.scrub(text), text);
        }
    }

    #[test]
    fn scrubs_every_string_of_a_record() {
        let c = Credentials::from_values([KEY.to_string()]);
        let mut record = Record {
            provider: "p".into(),
            operation: "o".into(),
            span_name: format!("chat {KEY}"),
            client_span: true,
            attributes: [
                ("gen_ai.request.model".to_string(), json!(KEY)),
                ("list".to_string(), json!(["a", format!("x{KEY}x")])),
                ("gen_ai.usage.input_tokens".to_string(), json!(3)),
            ]
            .into_iter()
            .collect(),
            input_messages: Some(json!([{"content": KEY}]).to_string()),
            output_messages: Some(json!([{"content": format!("echo {KEY}")}]).to_string()),
            system_instructions: None,
            tool_definitions: None,
            error: Some(crate::engine::ErrorInfo {
                error_type: "invalid_api_key".into(),
                message: Some(format!("Incorrect API key provided: {KEY}.")),
            }),
            problems: vec![format!("bad {KEY}")],
            stream: None,
            metric_values: vec![],
        };
        c.scrub_record(&mut record);
        let all = format!("{record:?}");
        assert!(!all.contains(KEY), "{all}");
        assert_eq!(record.span_name, "chat [REDACTED]");
        assert_eq!(record.attributes["list"], json!(["a", "x[REDACTED]x"]));
        assert_eq!(record.attributes["gen_ai.usage.input_tokens"], json!(3));
        assert_eq!(
            record.error.unwrap().message.unwrap(),
            "Incorrect API key provided: [REDACTED]."
        );
        let output: Json = serde_json::from_str(&record.output_messages.unwrap()).unwrap();
        assert_eq!(output[0]["content"], "echo [REDACTED]");
    }
}
