//! Recorded cases: the folders `<fixtures>/<provider>/<case>/` and their `meta.yaml` (method,
//! URL, status, content type, headers and the names of the body files), read into what
//! [`crate::offline::extract`] takes. Every problem names the file and the key.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::offline::Recorded;

/// The file of a case that describes the exchange.
pub const META_FILE: &str = "meta.yaml";

/// The request body file when `meta.yaml` names none.
const DEFAULT_REQUEST_FILE: &str = "request.json";

/// Why a case could not be read.
///
/// ```
/// let error = specter::harness::cases::read_case(std::path::Path::new("/no/such/case")).unwrap_err();
/// assert!(error.to_string().contains("/no/such/case"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `meta.yaml` is not valid YAML.
    #[error("{path}:{line}:{col}: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// `meta.yaml` is not a mapping of keys.
    #[error("{path}: expected a mapping of keys (`method: POST`, `url: ...`)")]
    NotMapping {
        /// The file.
        path: PathBuf,
    },
    /// A required key is missing.
    #[error("{path}: `{key}` is missing")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
    },
    /// A key holds a value of the wrong kind.
    #[error("{path}: `{key}` must be {expected}, found {found}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What the key takes.
        expected: &'static str,
        /// The value found, as JSON.
        found: String,
    },
    /// A body file named by `meta.yaml` cannot be read.
    #[error("{path} (named by `{key}`) cannot be read: {source}")]
    BodyFile {
        /// The body file.
        path: PathBuf,
        /// The key naming it.
        key: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The response body is not what its content type says.
    #[error("{path} is not JSON although its content type is `{content_type}`: {reason}")]
    NotJson {
        /// The body file.
        path: PathBuf,
        /// The content type.
        content_type: String,
        /// The parse error.
        reason: String,
    },
}

/// A case folder: `<fixtures>/<provider>/<case>/` holding a `meta.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Case {
    /// The provider (the parent folder's name).
    pub provider: String,
    /// The case (the folder's name).
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
}

impl Case {
    /// `provider/case`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.provider, self.name)
    }

    /// The case of a folder, named after it and its parent.
    pub fn of_dir(dir: &Path) -> Case {
        let name_of = |p: Option<&Path>| {
            p.and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        Case {
            provider: name_of(dir.parent()),
            name: name_of(Some(dir)),
            dir: dir.to_path_buf(),
        }
    }
}

/// Every case under `fixtures`, sorted by provider and case. Folders without a `meta.yaml` are
/// not cases.
pub fn discover(fixtures: &Path) -> Result<Vec<Case>, CaseError> {
    let mut cases = Vec::new();
    for provider_dir in subdirs(fixtures)? {
        for dir in subdirs(&provider_dir)? {
            if dir.join(META_FILE).is_file() {
                cases.push(Case::of_dir(&dir));
            }
        }
    }
    cases.sort();
    Ok(cases)
}

/// The subdirectories of a directory.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CaseError> {
    let io = |source| CaseError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            out.push(path);
        }
    }
    Ok(out)
}

/// A case read from its folder: the exchange and the whole `meta.yaml`.
#[derive(Debug, Clone)]
pub struct CaseData {
    /// HTTP method.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Response status.
    pub status: u16,
    /// The response content type of `response_content_type`, if not null.
    pub content_type: Option<String>,
    /// Request body.
    pub request: Vec<u8>,
    /// Response body as received.
    pub response: Vec<u8>,
    /// The response body file.
    pub response_path: PathBuf,
    /// `request_headers`.
    pub request_headers: Vec<(String, String)>,
    /// `response_headers`.
    pub response_headers: Vec<(String, String)>,
    /// `streaming`, when given.
    pub streaming: Option<bool>,
    /// The whole `meta.yaml` as JSON (for keys that document the recording).
    pub meta: Json,
}

impl CaseData {
    /// The exchange as [`crate::offline::extract`] takes it.
    pub fn recorded(&self) -> Recorded<'_> {
        Recorded {
            method: &self.method,
            url: &self.url,
            status: self.status,
            request: &self.request,
            response: &self.response,
            content_type: self.content_type.as_deref(),
            request_headers: &self.request_headers,
            response_headers: &self.response_headers,
        }
    }

    /// The response's content type: `response_content_type`, else the `Content-Type` response
    /// header.
    pub fn effective_content_type(&self) -> Option<&str> {
        self.content_type
            .as_deref()
            .or_else(|| header(&self.response_headers, "content-type"))
    }
}

/// A header's value, by case-insensitive name.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads the case in `dir`: its `meta.yaml` and the body files it names, and checks that a JSON
/// response body is JSON.
///
/// ```
/// let case = specter::harness::cases::read_case(std::path::Path::new("tests/fixtures/openai/chat_plain")).unwrap();
/// let exchange = case.recorded();
/// assert_eq!(exchange.method, "POST");
/// ```
pub fn read_case(dir: &Path) -> Result<CaseData, CaseError> {
    let meta_path = dir.join(META_FILE);
    let text = std::fs::read_to_string(&meta_path).map_err(|source| CaseError::Io {
        path: meta_path.clone(),
        source,
    })?;
    let meta = parse_meta(&meta_path, &text)?;
    let keys = Keys {
        path: &meta_path,
        meta: &meta,
    };
    let request_file = keys.optional_str("request_file")?;
    let response_file = keys.required_str("response_file")?;
    let request = match request_file {
        Some(name) => read_body(dir, &name, "request_file")?,
        None => read_default_request(dir, &keys)?,
    };
    let response_path = dir.join(&response_file);
    let data = CaseData {
        method: keys.required_str("method")?,
        url: keys.required_str("url")?,
        status: keys.status()?,
        content_type: keys.optional_str("response_content_type")?,
        request,
        response: read_body(dir, &response_file, "response_file")?,
        response_path,
        request_headers: keys.headers("request_headers")?,
        response_headers: keys.headers("response_headers")?,
        streaming: keys.optional_bool("streaming")?,
        meta: meta.clone(),
    };
    check_json_body(&data)?;
    Ok(data)
}

/// Parses `meta.yaml` into a mapping.
fn parse_meta(path: &Path, text: &str) -> Result<Json, CaseError> {
    let doc = crate::yaml::parse(text).map_err(|e| CaseError::Yaml {
        path: path.to_path_buf(),
        line: e.pos.line,
        col: e.pos.col,
        message: e.message,
    })?;
    if doc.value.is_object() {
        Ok(doc.value)
    } else {
        Err(CaseError::NotMapping {
            path: path.to_path_buf(),
        })
    }
}

/// `request.json` when the key is absent (an empty body when there is no such file); no body
/// when `request_file` is null.
fn read_default_request(dir: &Path, keys: &Keys<'_>) -> Result<Vec<u8>, CaseError> {
    let present = keys.meta.get("request_file").is_some();
    if present || !dir.join(DEFAULT_REQUEST_FILE).is_file() {
        return Ok(Vec::new());
    }
    read_body(dir, DEFAULT_REQUEST_FILE, "request_file")
}

/// Reads a body file of the case.
fn read_body(dir: &Path, name: &str, key: &'static str) -> Result<Vec<u8>, CaseError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|source| CaseError::BodyFile { path, key, source })
}

/// A response under a JSON content type must parse as JSON, unless a `Content-Encoding` header
/// says it is stored encoded.
fn check_json_body(data: &CaseData) -> Result<(), CaseError> {
    let Some(content_type) = data.effective_content_type() else {
        return Ok(());
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" {
        return Ok(());
    }
    let encoded = header(&data.response_headers, "content-encoding")
        .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    match serde_json::from_slice::<serde::de::IgnoredAny>(&data.response) {
        Ok(_) => Ok(()),
        Err(_) if encoded => Ok(()),
        Err(e) => Err(CaseError::NotJson {
            path: data.response_path.clone(),
            content_type: content_type.to_string(),
            reason: if data.response.is_empty() {
                "the file is empty".into()
            } else {
                e.to_string()
            },
        }),
    }
}

/// Typed access to the keys of one `meta.yaml`.
struct Keys<'a> {
    path: &'a Path,
    meta: &'a Json,
}

impl Keys<'_> {
    fn invalid(&self, key: &'static str, expected: &'static str, found: &Json) -> CaseError {
        CaseError::Invalid {
            path: self.path.to_path_buf(),
            key,
            expected,
            found: found.to_string(),
        }
    }

    /// A string key; null and absent are `None`.
    fn optional_str(&self, key: &'static str) -> Result<Option<String>, CaseError> {
        match self.meta.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(other) => Err(self.invalid(key, "a non-empty string", other)),
        }
    }

    fn required_str(&self, key: &'static str) -> Result<String, CaseError> {
        self.optional_str(key)?.ok_or_else(|| CaseError::Missing {
            path: self.path.to_path_buf(),
            key,
        })
    }

    fn optional_bool(&self, key: &'static str) -> Result<Option<bool>, CaseError> {
        match self.meta.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.invalid(key, "true or false", other)),
        }
    }

    /// `status`: an HTTP status from 100 to 599.
    fn status(&self) -> Result<u16, CaseError> {
        let value = self.meta.get("status").ok_or_else(|| CaseError::Missing {
            path: self.path.to_path_buf(),
            key: "status",
        })?;
        value
            .as_u64()
            .filter(|s| (100..=599).contains(s))
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| self.invalid("status", "an HTTP status (100 to 599)", value))
    }

    /// A mapping of header names to values. A list is a header sent several times (its values
    /// are joined with `, `); any other value that is not text is written as JSON (recordings
    /// keep binary values as `{__binary__: ...}`).
    fn headers(&self, key: &'static str) -> Result<Vec<(String, String)>, CaseError> {
        let map = match self.meta.get(key) {
            None | Some(Json::Null) => return Ok(Vec::new()),
            Some(Json::Object(map)) => map,
            Some(other) => {
                return Err(self.invalid(key, "a mapping of header names to values", other))
            }
        };
        Ok(map
            .iter()
            .map(|(name, value)| (name.clone(), header_text(value)))
            .collect())
    }
}

/// The text of a header value of `meta.yaml`.
fn header_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Array(items) if items.iter().all(Json::is_string) => items
            .iter()
            .filter_map(Json::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    const META: &str = "method: POST\nurl: https://api.openai.com/v1/chat/completions\nstatus: 200\nresponse_file: response.json\nresponse_content_type: application/json\n";

    /// A case folder `<tmp>/acme/chat` with `meta` and the given files.
    fn case(meta: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("acme/chat");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(META_FILE), meta).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        (tmp, dir)
    }

    #[test]
    fn reads_the_exchange_of_a_case() {
        let meta = format!(
            "{META}request_headers:\n  x-n: 3\n  vary: [Origin, Referer]\nresponse_headers:\n  Content-Type: application/json\nstreaming: false\n"
        );
        let (_tmp, dir) = case(
            &meta,
            &[("request.json", "{}"), ("response.json", "{\"a\":1}")],
        );
        let data = read_case(&dir).unwrap();
        assert_eq!(data.method, "POST");
        assert_eq!(data.status, 200);
        assert_eq!(data.request, b"{}");
        assert_eq!(data.response, b"{\"a\":1}");
        assert_eq!(data.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            data.request_headers,
            vec![
                ("x-n".to_string(), "3".to_string()),
                ("vary".to_string(), "Origin, Referer".to_string())
            ]
        );
        assert_eq!(data.streaming, Some(false));
        let case = Case::of_dir(&dir);
        assert_eq!(case.id(), "acme/chat");
    }

    #[test]
    fn a_null_request_file_is_no_body_and_an_absent_one_defaults() {
        let meta = format!("{META}request_file: null\n");
        let (_tmp, dir) = case(&meta, &[("request.json", "{}"), ("response.json", "{}")]);
        assert!(read_case(&dir).unwrap().request.is_empty());
        let (_tmp, dir) = case(
            META,
            &[("request.json", "{\"m\":1}"), ("response.json", "{}")],
        );
        assert_eq!(read_case(&dir).unwrap().request, b"{\"m\":1}");
        let (_tmp, dir) = case(META, &[("response.json", "{}")]);
        assert!(read_case(&dir).unwrap().request.is_empty());
    }

    #[test]
    fn problems_name_the_file_and_the_key() {
        let body = [("response.json", "{}")];
        let cases = [
            (
                META.replace("status: 200", "status: <fill in>"),
                "`status` must be an HTTP status (100 to 599), found \"<fill in>\"",
            ),
            (
                META.replace("status: 200", "status: 42"),
                "`status` must be an HTTP status (100 to 599), found 42",
            ),
            (META.replace("method: POST\n", ""), "`method` is missing"),
            (
                META.replace(
                    "url: https://api.openai.com/v1/chat/completions",
                    "url: [a]",
                ),
                "`url` must be a non-empty string, found [\"a\"]",
            ),
            (
                format!("{META}request_headers: [a]\n"),
                "`request_headers` must be a mapping of header names to values, found [\"a\"]",
            ),
            (
                format!("{META}streaming: yes please\n"),
                "`streaming` must be true or false, found \"yes please\"",
            ),
        ];
        for (meta, message) in cases {
            let (_tmp, dir) = case(&meta, &body);
            let error = read_case(&dir).unwrap_err().to_string();
            assert_eq!(
                error,
                format!("{}: {message}", dir.join(META_FILE).display())
            );
        }
        let (_tmp, dir) = case("- a list\n", &body);
        assert!(matches!(read_case(&dir), Err(CaseError::NotMapping { .. })));
        let (_tmp, dir) = case("status: [\n", &body);
        assert!(matches!(
            read_case(&dir),
            Err(CaseError::Yaml { line: 2, .. })
        ));
    }

    #[test]
    fn a_json_content_type_needs_a_json_body_unless_it_is_stored_encoded() {
        let (_tmp, dir) = case(META, &[("response.json", "<html>")]);
        let error = read_case(&dir).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "{} is not JSON although its content type is `application/json`: expected value at line 1 column 1",
                dir.join("response.json").display()
            )
        );
        let (_tmp, dir) = case(META, &[("response.json", "")]);
        assert!(read_case(&dir)
            .unwrap_err()
            .to_string()
            .ends_with(": the file is empty"));
        let encoded = format!("{META}response_headers:\n  Content-Encoding: gzip\n");
        let (_tmp, dir) = case(&encoded, &[("response.json", "\u{1f}binary")]);
        assert!(read_case(&dir).is_ok());
        let sse = META.replace("application/json", "text/event-stream");
        let (_tmp, dir) = case(&sse, &[("response.json", "data: {}\n\n")]);
        assert!(read_case(&dir).is_ok());
    }

    #[test]
    fn discovers_cases_sorted_and_skips_folders_without_meta() {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["b/one", "a/two", "a/one", "a/empty"] {
            std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
        }
        for dir in ["b/one", "a/two", "a/one"] {
            std::fs::write(tmp.path().join(dir).join(META_FILE), META).unwrap();
        }
        let ids: Vec<String> = discover(tmp.path()).unwrap().iter().map(Case::id).collect();
        assert_eq!(ids, vec!["a/one", "a/two", "b/one"]);
        assert!(matches!(
            discover(&tmp.path().join("nowhere")),
            Err(CaseError::Io { .. })
        ));
    }
}
