//! Path templates and the route index that finds an operation from a request path.

use std::collections::HashMap;

use super::rules::{PathTemplate, Piece};

/// Parses a path template such as `/v1beta/models/{model}:generateContent`.
pub fn parse_template(source: &str) -> Result<PathTemplate, String> {
    let mut segments = Vec::new();
    let mut names = Vec::new();
    for raw in source.split('/').skip(1) {
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

impl PathTemplate {
    /// Matches a request path (without query), returning the percent-decoded captures.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let mut captures = Vec::new();
        let mut parts = path.split('/').skip(1);
        for pieces in &self.segments {
            let segment = parts.next()?;
            match_segment(pieces, segment, &mut captures)?;
        }
        if parts.next().is_some() {
            return None;
        }
        Some(captures)
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
/// compares only the few templates that could match.
#[derive(Debug, Clone)]
pub struct RouteIndex<T> {
    buckets: HashMap<BucketKey, Vec<Entry<T>>>,
}

/// Method, segment count, literal first segment (or empty).
type BucketKey = (String, usize, String);
/// Template, query conditions, value.
type Entry<T> = (PathTemplate, Vec<(String, String)>, T);

impl<T> Default for RouteIndex<T> {
    fn default() -> Self {
        RouteIndex {
            buckets: HashMap::new(),
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
        let head = template.literal_head().unwrap_or("").to_string();
        let key = (method.to_string(), template.segments.len(), head);
        self.buckets
            .entry(key)
            .or_default()
            .push((template, query, value));
    }

    /// Every route matching the method, path and query, in insertion order.
    pub fn find<'a>(
        &'a self,
        method: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Vec<RouteMatch<'a, T>> {
        let count = path.split('/').count().saturating_sub(1);
        let head = path.split('/').nth(1).unwrap_or("");
        let mut found = Vec::new();
        for head in [head, ""] {
            let key = (method.to_string(), count, head.to_string());
            let Some(bucket) = self.buckets.get(&key) else {
                continue;
            };
            for (template, conditions, value) in bucket {
                let query_ok = conditions
                    .iter()
                    .all(|(k, v)| query.iter().any(|(qk, qv)| qk == k && qv == v));
                if !query_ok {
                    continue;
                }
                if let Some(captures) = template.matches(path) {
                    found.push((value, captures));
                }
            }
        }
        // More specific routes (more literal text, query conditions) first.
        found.sort_by_key(|(_, captures)| captures.len());
        found
    }
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
    }
}
