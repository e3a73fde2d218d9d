//! Path templates and the route index that finds an operation from a request path.

use std::collections::HashMap;

use super::rules::{PathTemplate, Piece};

/// Parses a path template such as `/v1beta/models/{model}:generateContent`. A capture matches
/// within one segment; a capture written `{name...}` as the whole last segment matches the rest
/// of the path, one or more segments (`/accounts/{account}/ai/run/{model...}` captures
/// `@cf/meta/llama-3.1-8b-instruct`).
pub fn parse_template(source: &str) -> Result<PathTemplate, String> {
    let mut segments = Vec::new();
    let mut names = Vec::new();
    let count = source.split('/').skip(1).count();
    for (n, raw) in source.split('/').skip(1).enumerate() {
        if let Some(name) = rest_capture(raw, source)? {
            if n + 1 != count {
                return Err(format!(
                    "`{{{name}...}}` captures the rest of the path and must be the last segment of `{source}`"
                ));
            }
            if names.contains(&name) {
                return Err(format!("capture `{name}` appears twice in path `{source}`"));
            }
            names.push(name);
            segments.push(vec![Piece::Rest(name.to_string())]);
            continue;
        }
        let mut pieces = Vec::new();
        let mut rest = raw;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in path `{source}`"))?;
            let name = &rest[open + 1..open + close];
            if name.ends_with("...") {
                return Err(format!(
                    "`{{{name}}}` captures the rest of the path and must be a whole segment of its own, the last one, in `{source}`"
                ));
            }
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid capture name `{name}` in path `{source}`"));
            }
            if matches!(pieces.last(), Some(Piece::Capture(_))) {
                return Err(format!(
                    "two captures need literal text between them in `{source}`"
                ));
            }
            if names.contains(&name) {
                return Err(format!("capture `{name}` appears twice in path `{source}`"));
            }
            names.push(name);
            pieces.push(Piece::Capture(name.to_string()));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched `}}` in path `{source}`"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        segments.push(pieces);
    }
    Ok(PathTemplate {
        source: source.to_string(),
        segments,
    })
}

/// The name of a `{name...}` segment, if `raw` is one.
fn rest_capture<'a>(raw: &'a str, source: &str) -> Result<Option<&'a str>, String> {
    let Some(name) = raw.strip_prefix('{').and_then(|r| r.strip_suffix("...}")) else {
        return Ok(None);
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("invalid capture name `{name}` in path `{source}`"));
    }
    Ok(Some(name))
}

impl PathTemplate {
    /// Matches a request path (without query), returning the percent-decoded captures.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let mut captures = Vec::new();
        let mut parts = path.split('/').skip(1);
        for pieces in &self.segments {
            if let [Piece::Rest(name)] = pieces.as_slice() {
                let rest: Vec<&str> = parts.by_ref().collect();
                if rest.is_empty() || rest.iter().any(|s| s.is_empty()) {
                    return None;
                }
                let joined = rest.join("/");
                let decoded = percent_encoding::percent_decode_str(&joined).decode_utf8_lossy();
                captures.push((name.clone(), decoded.into_owned()));
                return Some(captures);
            }
            let segment = parts.next()?;
            match_segment(pieces, segment, &mut captures)?;
        }
        if parts.next().is_some() {
            return None;
        }
        Some(captures)
    }

    /// Whether the last segment captures the rest of the path (any number of segments).
    pub fn is_open(&self) -> bool {
        matches!(
            self.segments.last().map(Vec::as_slice),
            Some([Piece::Rest(_)])
        )
    }

    /// The literal first segment, used to index templates.
    fn literal_head(&self) -> Option<&str> {
        match self.segments.first().map(Vec::as_slice) {
            Some([Piece::Literal(text)]) => Some(text),
            _ => None,
        }
    }
}

fn match_segment(
    pieces: &[Piece],
    segment: &str,
    captures: &mut Vec<(String, String)>,
) -> Option<()> {
    let mut rest = segment;
    let mut iter = pieces.iter().peekable();
    while let Some(piece) = iter.next() {
        match piece {
            Piece::Literal(text) => rest = rest.strip_prefix(text.as_str())?,
            // Only ever a whole last segment, matched by `PathTemplate::matches`.
            Piece::Rest(_) => return None,
            Piece::Capture(name) => {
                let end = match iter.peek() {
                    Some(Piece::Literal(next)) => rest.find(next.as_str())?,
                    _ => rest.len(),
                };
                let raw = &rest[..end];
                if raw.is_empty() {
                    return None;
                }
                let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
                captures.push((name.clone(), decoded.into_owned()));
                rest = &rest[end..];
            }
        }
    }
    rest.is_empty().then_some(())
}

/// An index of routes by method, segment count and literal first segment, so that a lookup
/// compares only the few templates that could match. A lookup allocates nothing but the captures
/// of the routes that match.
#[derive(Debug, Clone)]
pub struct RouteIndex<T> {
    /// Per method and segment count (a few of each, searched in order).
    shapes: Vec<Shape<T>>,
    /// Routes ending in a `{name...}` capture, which match paths of many lengths, by method;
    /// searched after the routes of fixed length.
    open: Vec<(String, Vec<Entry<T>>)>,
}

/// The routes of one method and segment count.
#[derive(Debug, Clone)]
struct Shape<T> {
    method: String,
    segments: usize,
    /// Routes whose first segment is this literal.
    by_head: HashMap<String, Vec<Entry<T>>>,
    /// Routes whose first segment is not a plain literal.
    other: Vec<Entry<T>>,
}

/// Template, query conditions, value.
type Entry<T> = (PathTemplate, Vec<(String, String)>, T);

impl<T> Default for RouteIndex<T> {
    fn default() -> Self {
        RouteIndex {
            shapes: Vec::new(),
            open: Vec::new(),
        }
    }
}

/// A found route: the value, and the captures of the path.
pub type RouteMatch<'a, T> = (&'a T, Vec<(String, String)>);

impl<T> RouteIndex<T> {
    /// Adds a route.
    pub fn insert(
        &mut self,
        method: &str,
        template: PathTemplate,
        query: Vec<(String, String)>,
        value: T,
    ) {
        if template.is_open() {
            let entry = (template, query, value);
            match self.open.iter_mut().find(|(m, _)| m == method) {
                Some((_, entries)) => entries.push(entry),
                None => self.open.push((method.to_string(), vec![entry])),
            }
            return;
        }
        let segments = template.segments.len();
        let index = match self
            .shapes
            .iter()
            .position(|s| s.method == method && s.segments == segments)
        {
            Some(i) => i,
            None => {
                self.shapes.push(Shape {
                    method: method.to_string(),
                    segments,
                    by_head: HashMap::new(),
                    other: Vec::new(),
                });
                self.shapes.len() - 1
            }
        };
        let Some(shape) = self.shapes.get_mut(index) else {
            return;
        };
        match template.literal_head().map(str::to_string) {
            Some(head) if !head.is_empty() => shape.by_head.entry(head).or_default(),
            _ => &mut shape.other,
        }
        .push((template, query, value));
    }

    /// The routes that could match, in the order the index prefers them: those whose first
    /// segment is the path's, then those whose first segment is not a plain literal.
    fn buckets(&self, method: &str, path: &str) -> [&[Entry<T>]; 2] {
        let count = path.split('/').count().saturating_sub(1);
        let head = path.split('/').nth(1).unwrap_or("");
        let Some(shape) = self
            .shapes
            .iter()
            .find(|s| s.method == method && s.segments == count)
        else {
            return [&[], &[]];
        };
        [
            shape.by_head.get(head).map_or(&[], Vec::as_slice),
            &shape.other,
        ]
    }

    /// The routes that could match: the fixed-length buckets, then the open routes of the method.
    fn candidates(&self, method: &str, path: &str) -> impl Iterator<Item = &Entry<T>> {
        let open = self
            .open
            .iter()
            .find(|(m, _)| m == method)
            .map_or(&[][..], |(_, entries)| entries.as_slice());
        let [head, other] = self.buckets(method, path);
        [head, other, open].into_iter().flatten()
    }

    /// Every route matching the method, path and query: more specific routes first (fixed
    /// length before a `{name...}` capture, then fewer captures), then in insertion order.
    pub fn find<'a>(
        &'a self,
        method: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Vec<RouteMatch<'a, T>> {
        let mut found = Vec::new();
        for entry in self.candidates(method, path) {
            if let Some(captures) = matching(entry, path, query) {
                found.push((rank(entry, &captures), (&entry.2, captures)));
            }
        }
        found.sort_by_key(|(rank, _)| *rank);
        found.into_iter().map(|(_, m)| m).collect()
    }

    /// The first route [`find`](RouteIndex::find) would return, without collecting the others:
    /// the search stops at the first route without captures.
    pub fn first<'a>(
        &'a self,
        method: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Option<RouteMatch<'a, T>> {
        let mut best: Option<((bool, usize), RouteMatch<'a, T>)> = None;
        for entry in self.candidates(method, path) {
            let Some(captures) = matching(entry, path, query) else {
                continue;
            };
            let rank = rank(entry, &captures);
            if best.as_ref().is_none_or(|b| rank < b.0) {
                let exact = captures.is_empty();
                best = Some((rank, (&entry.2, captures)));
                if exact {
                    break;
                }
            }
        }
        best.map(|(_, m)| m)
    }
}

/// How specific a matched route is (lower first): fixed length, then fewer captures.
fn rank<T>((template, _, _): &Entry<T>, captures: &[(String, String)]) -> (bool, usize) {
    (template.is_open(), captures.len())
}

/// The captures of a route when it matches the path and its query conditions hold.
fn matching<T>(
    (template, conditions, _): &Entry<T>,
    path: &str,
    query: &[(String, String)],
) -> Option<Vec<(String, String)>> {
    let query_ok = conditions
        .iter()
        .all(|(k, v)| query.iter().any(|(qk, qv)| qk == k && qv == v));
    if !query_ok {
        return None;
    }
    template.matches(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_within_segments() {
        let t = parse_template("/v1beta/models/{model}:generateContent").unwrap();
        assert_eq!(
            t.matches("/v1beta/models/gemini-2.0-flash:generateContent"),
            Some(vec![("model".into(), "gemini-2.0-flash".into())])
        );
        assert_eq!(
            t.matches("/v1beta/models/gemini:streamGenerateContent"),
            None
        );
        let t = parse_template("/model/{model}/converse").unwrap();
        assert_eq!(
            t.matches("/model/amazon.nova-micro-v1%3A0/converse"),
            Some(vec![("model".into(), "amazon.nova-micro-v1:0".into())])
        );
        assert_eq!(t.matches("/model//converse"), None);
        assert!(parse_template("/a/{x}{y}").is_err());
        assert!(parse_template("/a/{x").is_err());
        assert!(parse_template("/a/{x}/{x}").is_err());
    }

    #[test]
    fn index_prefers_specific_routes() {
        let mut index = RouteIndex::default();
        index.insert(
            "POST",
            parse_template("/v1/{thing}").unwrap(),
            vec![],
            "generic",
        );
        index.insert("POST", parse_template("/v1/chat").unwrap(), vec![], "chat");
        let found = index.find("POST", "/v1/chat", &[]);
        assert_eq!(*found[0].0, "chat");
        assert_eq!(found.len(), 2);
        assert!(index.find("GET", "/v1/chat", &[]).is_empty());
        assert_eq!(
            index.first("POST", "/v1/chat", &[]).map(|f| *f.0),
            Some("chat")
        );
        assert_eq!(
            index.first("POST", "/v1/other", &[]).map(|f| *f.0),
            Some("generic")
        );
        assert!(index.first("GET", "/v1/chat", &[]).is_none());
    }

    #[test]
    fn a_rest_capture_takes_several_segments() {
        let t = parse_template("/client/v4/accounts/{account_id}/ai/run/{model...}").unwrap();
        assert_eq!(
            t.matches("/client/v4/accounts/abc123/ai/run/@cf/meta/llama-3.1-8b-instruct"),
            Some(vec![
                ("account_id".into(), "abc123".into()),
                ("model".into(), "@cf/meta/llama-3.1-8b-instruct".into())
            ])
        );
        assert_eq!(
            t.matches("/client/v4/accounts/abc123/ai/run/%40cf%2Fmeta/m"),
            Some(vec![
                ("account_id".into(), "abc123".into()),
                ("model".into(), "@cf/meta/m".into())
            ])
        );
        assert_eq!(
            t.matches("/client/v4/accounts/abc123/ai/run/one"),
            Some(vec![
                ("account_id".into(), "abc123".into()),
                ("model".into(), "one".into())
            ])
        );
        assert_eq!(t.matches("/client/v4/accounts/abc123/ai/run"), None);
        assert_eq!(t.matches("/client/v4/accounts/abc123/ai/run/"), None);
        assert_eq!(t.matches("/client/v4/accounts/abc123/ai/run/a//b"), None);
        assert_eq!(t.matches("/client/v4/accounts/abc123/ai/other/a/b"), None);
        assert!(parse_template("/a/{m...}/b").is_err());
        assert!(parse_template("/a/x{m...}").is_err());
        assert!(parse_template("/a/{m...}x").is_err());
        assert!(parse_template("/{m}/{m...}").is_err());
        assert!(parse_template("/a/{...}").is_err());
    }

    #[test]
    fn index_finds_rest_routes_after_fixed_ones() {
        let mut index = RouteIndex::default();
        index.insert(
            "POST",
            parse_template("/run/{model...}").unwrap(),
            vec![],
            "any",
        );
        index.insert(
            "POST",
            parse_template("/run/{a}/{b}").unwrap(),
            vec![],
            "two",
        );
        index.insert("POST", parse_template("/run/x/y").unwrap(), vec![], "exact");
        let first = |path: &str| index.first("POST", path, &[]).map(|f| (*f.0, f.1));
        assert_eq!(first("/run/x/y").map(|f| f.0), Some("exact"));
        assert_eq!(first("/run/p/q").map(|f| f.0), Some("two"));
        assert_eq!(
            first("/run/@cf/meta/llama"),
            Some(("any", vec![("model".into(), "@cf/meta/llama".into())]))
        );
        assert_eq!(first("/run/m").map(|f| f.0), Some("any"));
        assert!(index.first("GET", "/run/m", &[]).is_none());
        let all: Vec<&str> = index
            .find("POST", "/run/x/y", &[])
            .iter()
            .map(|f| *f.0)
            .collect();
        assert_eq!(all, vec!["exact", "two", "any"]);
    }
}
