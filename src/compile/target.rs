//! Fold targets: dotted paths into the rebuilt response (`choices[{$.index}].message.content`).

use super::rules::{IndexExpr, Target, TargetStep};
use super::JsonPath;

/// Parses a target path. `$` or an empty string is the current target itself.
pub fn parse_target(source: &str) -> Result<Target, String> {
    let source = source.trim();
    if source.is_empty() || source == "$" {
        return Ok(Target::default());
    }
    let mut steps = Vec::new();
    let mut rest = source;
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let key = &rest[..end];
        if key.is_empty() {
            return Err("empty key".to_string());
        }
        rest = &rest[end..];
        let mut index = None;
        if let Some(after) = rest.strip_prefix('[') {
            let close = find_close(after).ok_or("unclosed `[`")?;
            let inner = after[..close].trim();
            index = Some(if inner == "#" {
                IndexExpr::Position
            } else if inner == "-1" {
                IndexExpr::Last
            } else if let Some(path) = inner.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                IndexExpr::Path(
                    JsonPath::parse(path.trim()).map_err(|e| format!("index `{inner}`: {e}"))?,
                )
            } else {
                IndexExpr::Fixed(inner.parse().map_err(|_| {
                    format!("index `{inner}` is not a number, `-1`, `#` or `{{jsonpath}}`")
                })?)
            });
            rest = &after[close + 1..];
        }
        steps.push(TargetStep {
            key: key.to_string(),
            index,
        });
        if let Some(after) = rest.strip_prefix('.') {
            if after.is_empty() {
                return Err("trailing `.`".to_string());
            }
            rest = after;
        } else if !rest.is_empty() {
            return Err(format!("unexpected `{rest}`"));
        }
    }
    Ok(Target { steps })
}

/// Finds the `]` closing an index, skipping brackets inside `{...}`.
fn find_close(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ']' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t =
            parse_target("choices[{$.index}].message.tool_calls[#].function.arguments").unwrap();
        assert_eq!(t.steps.len(), 5);
        assert_eq!(t.steps[0].key, "choices");
        assert!(matches!(t.steps[0].index, Some(IndexExpr::Path(_))));
        assert!(matches!(t.steps[2].index, Some(IndexExpr::Position)));
        assert_eq!(parse_target("$").unwrap(), Target::default());
        assert!(matches!(
            parse_target("a[2]").unwrap().steps[0].index,
            Some(IndexExpr::Fixed(2))
        ));
        assert!(parse_target("a[x]").is_err());
        assert!(parse_target("a.").is_err());
        assert!(parse_target("a[{$.b[}]").is_err());
    }
}
