//! Versions on the wire: the `ETag` of a todo and the `If-Match` a write is conditional on.

use crate::service::todos::Precondition;

/// Parse `If-Match` (`"3"`, `*`, or a list of those). `If-Match` compares strongly
/// (RFC 9110 section 13.1.1), so a weak tag such as `W/"3"` never matches.
pub fn parse_if_match(raw: Option<&str>) -> Precondition {
    let Some(raw) = raw else {
        return Precondition::None;
    };
    let mut versions = Vec::new();
    for tag in raw.split(',').map(str::trim) {
        if tag == "*" {
            return Precondition::Any;
        }
        if let Some(v) = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| t.parse().ok())
        {
            versions.push(v);
        }
    }
    match versions.as_slice() {
        [v] => Precondition::Version(*v),
        _ => Precondition::Never,
    }
}

/// The ETag of a version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        assert_eq!(parse_if_match(None), Precondition::None);
        assert_eq!(parse_if_match(Some("*")), Precondition::Any);
        assert_eq!(parse_if_match(Some("\"3\"")), Precondition::Version(3));
        assert_eq!(parse_if_match(Some("W/\"3\"")), Precondition::Never);
        assert_eq!(parse_if_match(Some("\"x\"")), Precondition::Never);
        assert_eq!(parse_if_match(Some("3")), Precondition::Never);
    }
}
