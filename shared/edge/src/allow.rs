//! The methods each path answers, for the `Allow` header of a 405 (RFC 9110 section
//! 15.5.6), read once from the service's own OpenAPI document so that it cannot drift from
//! the routes.

/// One documented path, as segments (`None` for a `{parameter}`), and its methods.
#[derive(Debug)]
struct Entry {
    segments: Vec<Option<String>>,
    methods: Vec<String>,
}

#[derive(Debug, Default)]
pub struct AllowedMethods(Vec<Entry>);

impl AllowedMethods {
    /// From an OpenAPI document (its `paths`), plus the paths served beside it.
    pub fn from_spec(spec: &str, extra: &[(&str, &[&str])]) -> Self {
        let doc: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let mut entries = Vec::new();
        if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
            for (path, item) in paths {
                let methods = item
                    .as_object()
                    .map(|ops| {
                        ops.keys()
                            .filter(|m| {
                                matches!(
                                    m.as_str(),
                                    "get" | "put" | "post" | "delete" | "patch" | "head"
                                )
                            })
                            .map(|m| m.to_ascii_uppercase())
                            .collect()
                    })
                    .unwrap_or_default();
                entries.push(Entry {
                    segments: segments(path),
                    methods,
                });
            }
        }
        for (path, methods) in extra {
            entries.push(Entry {
                segments: segments(path),
                methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            });
        }
        Self(entries)
    }

    /// The `Allow` value for a request path: the methods of the documented path it matches,
    /// with `OPTIONS` (CORS preflights are answered everywhere).
    pub fn allow(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let entry = self.0.iter().find(|e| {
            e.segments.len() == parts.len()
                && e.segments
                    .iter()
                    .zip(&parts)
                    .all(|(seg, part)| seg.as_deref().is_none_or(|lit| lit == *part))
        })?;
        let mut methods = entry.methods.clone();
        methods.sort();
        methods.dedup();
        methods.push("OPTIONS".to_owned());
        Some(methods.join(", "))
    }
}

fn segments(path: &str) -> Vec<Option<String>> {
    path.trim_end_matches('/')
        .split('/')
        .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_found_by_path_with_parameters() {
        let spec = r#"{"paths":{
            "/v1/todos":{"get":{},"post":{}},
            "/v1/todos/{id}":{"get":{},"patch":{},"delete":{},"parameters":[]}
        }}"#;
        let allowed = AllowedMethods::from_spec(spec, &[("/openapi.json", &["GET"])]);
        assert_eq!(
            allowed.allow("/v1/todos").as_deref(),
            Some("GET, POST, OPTIONS")
        );
        assert_eq!(
            allowed.allow("/v1/todos/0199").as_deref(),
            Some("DELETE, GET, PATCH, OPTIONS")
        );
        assert_eq!(
            allowed.allow("/openapi.json").as_deref(),
            Some("GET, OPTIONS")
        );
        assert_eq!(allowed.allow("/v1/nothing"), None);
    }
}
