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
/// compares only the few templates that could match. A lookup allocates nothing but the captures
/// of the routes that match.
#[derive(Debug, Clone)]
pub struct RouteIndex<T> {
    /// Per method and segment count (a few of each, searched in order).
    shapes: Vec<Shape<T>>,
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
        RouteIndex { shapes: Vec::new() }
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

    /// Every route matching the method, path and query: more specific routes (fewer captures)
    /// first, then in insertion order.
    pub fn find<'a>(
        &'a self,
        method: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Vec<RouteMatch<'a, T>> {
        let mut found = Vec::new();
        for bucket in self.buckets(method, path) {
            for entry in bucket {
                if let Some(captures) = matching(entry, path, query) {
                    found.push((&entry.2, captures));
                }
            }
        }
        found.sort_by_key(|(_, captures)| captures.len());
        found
    }

    /// The first route [`find`](RouteIndex::find) would return, without collecting the others:
    /// the search stops at the first route without captures.
    pub fn first<'a>(
        &'a self,
        method: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Option<RouteMatch<'a, T>> {
        let mut best: Option<RouteMatch<'a, T>> = None;
        for bucket in self.buckets(method, path) {
            for entry in bucket {
                let Some(captures) = matching(entry, path, query) else {
                    continue;
                };
                if best.as_ref().is_none_or(|b| captures.len() < b.1.len()) {
                    let exact = captures.is_empty();
                    best = Some((&entry.2, captures));
                    if exact {
                        return best;
                    }
                }
            }
        }
        best
    }
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
}
