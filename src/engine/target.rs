//! The target of a request: scheme, host, port, path and query, from a URL.

/// Where a request went.
///
/// ```
/// let t = specter::unstable::engine::HttpTarget::parse("https://api.openai.com/v1/chat/completions?x=1").unwrap();
/// assert_eq!((t.host.as_str(), t.port(), t.path.as_str()), ("api.openai.com", Some(443), "/v1/chat/completions"));
/// assert_eq!(t.query, vec![("x".to_string(), "1".to_string())]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpTarget {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name, lower case.
    pub host: String,
    /// Explicit port.
    pub explicit_port: Option<u16>,
    /// Path, still percent-encoded.
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
}

impl HttpTarget {
    /// Parses an absolute `http(s)://` URL; `None` when it is not one.
    pub fn parse(url: &str) -> Option<HttpTarget> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        let authority = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let (host, explicit_port) = match authority.rsplit_once(':') {
            // `[::1]` has colons inside its brackets: a port follows only after `]`.
            Some((host, port)) if !authority.starts_with('[') || host.ends_with(']') => {
                (host, Some(port.parse().ok()?))
            }
            _ => (authority, None),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        Some(HttpTarget {
            scheme,
            host: host.to_ascii_lowercase(),
            explicit_port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
            query: parse_query(query),
        })
    }

    /// The port: explicit, or the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.explicit_port.or(match self.scheme.as_str() {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        })
    }
}

/// Parses `a=1&b=x%20y` into decoded pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}
