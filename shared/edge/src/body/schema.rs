//! The check itself: a parsed JSON value against the schema the OpenAPI document publishes
//! for the request type, problem by problem.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde_json::Value;

use crate::FieldError;
use crate::problem::FieldCode;

/// The schema of one request type, built once.
pub(super) struct Shape {
    pub registry: Registry,
    pub root: MetaSchemaRef,
}

pub(super) fn shape_of<T: Type + 'static>() -> Arc<Shape> {
    static SHAPES: LazyLock<RwLock<HashMap<TypeId, Arc<Shape>>>> = LazyLock::new(Default::default);
    let id = TypeId::of::<T>();
    if let Some(shape) = SHAPES.read().ok().and_then(|m| m.get(&id).cloned()) {
        return shape;
    }
    let mut registry = Registry::new();
    T::register(&mut registry);
    let shape = Arc::new(Shape {
        registry,
        root: T::schema_ref(),
    });
    if let Ok(mut map) = SHAPES.write() {
        map.insert(id, shape.clone());
    }
    shape
}

/// Follow references, and the `allOf` poem-openapi wraps a documented field's type in
/// (`allOf: [{$ref}, {description}]`): the part that has a type is the field's schema.
fn resolve<'a>(registry: &'a Registry, schema: &'a MetaSchemaRef) -> Option<&'a MetaSchema> {
    let schema = match schema {
        MetaSchemaRef::Inline(s) => s,
        MetaSchemaRef::Reference(name) => registry.schemas.get(name)?,
    };
    if schema.all_of.is_empty() || !schema.properties.is_empty() {
        return Some(schema);
    }
    schema
        .all_of
        .iter()
        .filter_map(|part| resolve(registry, part))
        .find(|part| !part.ty.is_empty())
}

/// Whether a property may be `null`: marked so itself, or in the `allOf` poem-openapi
/// wraps a documented field's type in.
fn nullable(registry: &Registry, schema: &MetaSchemaRef) -> bool {
    let MetaSchemaRef::Inline(s) = schema else {
        return resolve(registry, schema).is_some_and(|s| s.nullable);
    };
    s.nullable
        || s.all_of.iter().any(|part| match part {
            MetaSchemaRef::Inline(p) => p.nullable,
            MetaSchemaRef::Reference(_) => false,
        })
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

pub(super) fn check(
    registry: &Registry,
    schema: &MetaSchemaRef,
    value: &Value,
    field: &str,
    out: &mut Vec<FieldError>,
) {
    let Some(schema) = resolve(registry, schema) else {
        return;
    };
    let here = if field.is_empty() { "body" } else { field };
    let wrong_type = |expected: &str| {
        FieldError::new(here, FieldCode::InvalidType, format!("must be {expected}"))
    };
    match schema.ty {
        "object" if !schema.properties.is_empty() => {
            let Value::Object(map) = value else {
                out.push(wrong_type("a JSON object"));
                return;
            };
            for key in map.keys() {
                if !schema.properties.iter().any(|(name, _)| name == key) {
                    out.push(FieldError::new(
                        &join(field, key),
                        FieldCode::UnknownField,
                        "is not a field of this request",
                    ));
                }
            }
            for (name, property) in &schema.properties {
                let path = join(field, name);
                let required = schema.required.contains(name);
                match map.get(*name) {
                    None | Some(Value::Null) if required => {
                        out.push(FieldError::new(&path, FieldCode::Required, "is required"));
                    }
                    Some(Value::Null) if !nullable(registry, property) => {
                        out.push(FieldError::new(
                            &path,
                            FieldCode::InvalidType,
                            "must not be null",
                        ));
                    }
                    None | Some(Value::Null) => {}
                    Some(v) => check(registry, property, v, &path, out),
                }
            }
        }
        "string" => {
            let Value::String(s) = value else {
                out.push(wrong_type("a string"));
                return;
            };
            if !schema.enum_items.is_empty() && !schema.enum_items.iter().any(|e| e == value) {
                let allowed: Vec<&str> =
                    schema.enum_items.iter().filter_map(Value::as_str).collect();
                out.push(FieldError::new(
                    here,
                    FieldCode::InvalidValue,
                    format!("must be one of: {}", allowed.join(", ")),
                ));
                return;
            }
            let chars = s.chars().count();
            if schema.min_length.is_some_and(|min| chars < min) {
                out.push(FieldError::new(
                    here,
                    FieldCode::TooShort,
                    format!(
                        "must be at least {} characters",
                        schema.min_length.unwrap_or(0)
                    ),
                ));
                return;
            }
            if schema.max_length.is_some_and(|max| chars > max) {
                out.push(FieldError::new(
                    here,
                    FieldCode::TooLong,
                    format!(
                        "must be at most {} characters",
                        schema.max_length.unwrap_or(0)
                    ),
                ));
                return;
            }
            if let Some(pattern) = &schema.pattern
                && !crate::patterned::matches(pattern, s)
            {
                out.push(FieldError::new(
                    here,
                    FieldCode::InvalidValue,
                    "does not have the documented form (see the OpenAPI document)",
                ));
                return;
            }
            let format_ok = match schema.format {
                Some("date-time") => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                Some("uuid") => uuid::Uuid::try_parse(s).is_ok(),
                _ => true,
            };
            if !format_ok {
                let what = if schema.format == Some("uuid") {
                    "a UUID"
                } else {
                    "an RFC 3339 date-time"
                };
                out.push(FieldError::new(
                    here,
                    FieldCode::InvalidFormat,
                    format!("must be {what}"),
                ));
            }
        }
        "integer" if !(value.is_i64() || value.is_u64()) => out.push(wrong_type("an integer")),
        "number" if !value.is_number() => out.push(wrong_type("a number")),
        "integer" | "number" => {
            let n = value.as_f64().unwrap_or_default();
            let below = schema.minimum.is_some_and(|min| n < min);
            let above = schema.maximum.is_some_and(|max| n > max);
            if below || above {
                out.push(FieldError::new(
                    here,
                    FieldCode::OutOfRange,
                    "is outside the documented range (see the OpenAPI document)",
                ));
            }
        }
        "boolean" if !value.is_boolean() => out.push(wrong_type("true or false")),
        "array" => {
            let Value::Array(items) = value else {
                out.push(wrong_type("an array"));
                return;
            };
            let too_few = schema.min_items.is_some_and(|min| items.len() < min);
            let too_many = schema.max_items.is_some_and(|max| items.len() > max);
            if too_few || too_many {
                out.push(FieldError::new(
                    here,
                    if too_few {
                        FieldCode::TooShort
                    } else {
                        FieldCode::TooLong
                    },
                    "has a number of items outside the documented range",
                ));
                return;
            }
            if schema.unique_items == Some(true)
                && items
                    .iter()
                    .enumerate()
                    .any(|(i, v)| items[..i].contains(v))
            {
                out.push(FieldError::new(
                    here,
                    FieldCode::DuplicateItem,
                    "must not list an item twice",
                ));
                return;
            }
            if let Some(item) = &schema.items {
                for (i, v) in items.iter().enumerate() {
                    if v.is_null() {
                        out.push(FieldError::new(
                            &format!("{here}[{i}]"),
                            FieldCode::InvalidType,
                            "must not be null",
                        ));
                    } else {
                        check(registry, item, v, &format!("{here}[{i}]"), out);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::Object;
    use poem_openapi::types::MaybeUndefined;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Object)]
    #[oai(deny_unknown_fields)]
    struct Sample {
        name: String,
        count: Option<i64>,
        tags: Option<Vec<String>>,
        #[oai(nullable)]
        due_at: MaybeUndefined<chrono::DateTime<chrono::Utc>>,
        #[oai(validator(max_length = 3, pattern = r"^[a-z]*$"))]
        code: Option<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "9")))]
        level: Option<i64>,
        #[oai(validator(min_items = 1))]
        picks: Option<Vec<Kind>>,
        kind: Option<Kind>,
        /// A documented field: poem-openapi wraps its type in `allOf`.
        documented_kind: Option<Kind>,
        /// A documented nested object.
        inner: Option<Inner>,
    }

    #[derive(Debug, Object)]
    #[oai(deny_unknown_fields)]
    struct Inner {
        flag: bool,
    }

    #[derive(Debug, poem_openapi::Enum)]
    #[oai(rename_all = "lowercase")]
    enum Kind {
        Small,
        Large,
    }

    fn problems(value: Value) -> Vec<(String, String)> {
        let shape = shape_of::<Sample>();
        let mut out = Vec::new();
        check(&shape.registry, &shape.root, &value, "", &mut out);
        out.into_iter().map(|e| (e.field, e.code)).collect()
    }

    fn pair(field: &str, code: &str) -> (String, String) {
        (field.to_owned(), code.to_owned())
    }

    #[test]
    fn a_valid_body_has_no_problems() {
        assert!(problems(json!({"name": "x"})).is_empty());
        assert!(
            problems(
                json!({"name": "x", "count": 3, "tags": ["a"], "due_at": null, "kind": "small"})
            )
            .is_empty()
        );
        assert!(problems(json!({"name": "x", "due_at": "2030-01-01T00:00:00Z"})).is_empty());
    }

    #[test]
    fn the_documented_bounds_hold_and_null_only_where_documented() {
        assert!(
            problems(json!({"name": "x", "code": "abc", "level": 9, "picks": ["small"]}))
                .is_empty()
        );
        assert_eq!(
            problems(json!({"name": "x", "code": "abcd", "level": 0, "picks": []})),
            vec![
                pair("code", "TOO_LONG"),
                pair("level", "OUT_OF_RANGE"),
                pair("picks", "TOO_SHORT")
            ]
        );
        assert_eq!(
            problems(json!({"name": "x", "code": "A"})),
            vec![pair("code", "INVALID_VALUE")]
        );
        assert_eq!(
            problems(json!({"name": "x", "count": null, "code": null})),
            vec![pair("count", "INVALID_TYPE"), pair("code", "INVALID_TYPE")]
        );
    }

    #[test]
    fn each_problem_names_its_field() {
        assert_eq!(problems(json!({})), vec![pair("name", "REQUIRED")]);
        assert_eq!(
            problems(json!({"name": null})),
            vec![pair("name", "REQUIRED")]
        );
        assert_eq!(
            problems(json!({"name": 5, "extra": 1})),
            vec![pair("extra", "UNKNOWN_FIELD"), pair("name", "INVALID_TYPE")]
        );
        assert_eq!(
            problems(json!({"name": "x", "count": "3", "tags": ["a", 2]})),
            vec![
                pair("count", "INVALID_TYPE"),
                pair("tags[1]", "INVALID_TYPE")
            ]
        );
        assert_eq!(
            problems(json!({"name": "x", "due_at": "tomorrow", "kind": "huge"})),
            vec![
                pair("due_at", "INVALID_FORMAT"),
                pair("kind", "INVALID_VALUE")
            ]
        );
        assert_eq!(problems(json!([1])), vec![pair("body", "INVALID_TYPE")]);
        assert_eq!(
            problems(json!({"name": "x", "documented_kind": "huge", "inner": {"flag": 1, "x": 2}})),
            vec![
                pair("documented_kind", "INVALID_VALUE"),
                pair("inner.x", "UNKNOWN_FIELD"),
                pair("inner.flag", "INVALID_TYPE")
            ]
        );
        assert_eq!(
            problems(json!({"name": "x", "documented_kind": 5, "inner": {}})),
            vec![
                pair("documented_kind", "INVALID_TYPE"),
                pair("inner.flag", "REQUIRED")
            ]
        );
    }
}
