//! The OpenAPI document as served: poem-openapi's, made exact where it cannot say what the
//! services do.
//!
//! - Every object schema with properties gets `additionalProperties: false`: request bodies
//!   refuse unknown fields (`UNKNOWN_FIELD`), and responses never carry any.
//! - A documented property of a named type is `allOf: [{$ref}]` with its description (and
//!   `nullable`) beside it, not poem-openapi's `allOf: [{$ref}, {description, nullable}]`,
//!   whose second, untyped member generators read as a union with an unknown type.
//! - In schemas that only responses use, a nullable property is required: the services
//!   always send it, as `null` when there is nothing (poem-openapi marks every `Option`
//!   optional, which a generated client would type as possibly absent).

use std::collections::BTreeSet;

use serde_json::Value;

/// The document `spec` (poem-openapi's JSON), made exact.
pub fn exact(spec: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(spec) else {
        return spec.to_owned();
    };
    let in_requests = request_schemas(&doc);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in schemas.iter_mut() {
            close(schema);
            if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                props.values_mut().for_each(hoist_annotations);
            }
            if !in_requests.contains(name) {
                require_nullables(schema);
            }
        }
    }
    serde_json::to_string(&doc).unwrap_or_else(|_| spec.to_owned())
}

/// `allOf: [{$ref}, {annotations}]` becomes `allOf: [{$ref}]` with the annotations (keys of
/// no type of their own: description, nullable, default, ...) beside it.
fn hoist_annotations(property: &mut Value) {
    let Some(object) = property.as_object_mut() else {
        return;
    };
    let Some(Value::Array(parts)) = object.get("allOf").cloned() else {
        return;
    };
    let is_ref = |p: &Value| p.get("$ref").is_some();
    let is_annotation = |p: &Value| {
        p.as_object().is_some_and(|o| {
            !o.contains_key("$ref") && !o.contains_key("type") && !o.contains_key("properties")
        })
    };
    if parts.iter().filter(|p| is_ref(p)).count() != 1
        || !parts.iter().all(|p| is_ref(p) || is_annotation(p))
    {
        return;
    }
    let mut kept = Vec::new();
    for part in parts {
        if is_ref(&part) {
            kept.push(part);
        } else if let Value::Object(annotations) = part {
            object.extend(annotations);
        }
    }
    object.insert("allOf".into(), Value::Array(kept));
}

/// The component schemas a request body refers to, directly or through others.
fn request_schemas(doc: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut todo = Vec::new();
    for item in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            refs(&op["requestBody"], &mut todo);
        }
    }
    while let Some(name) = todo.pop() {
        if found.insert(name.clone()) {
            refs(&doc["components"]["schemas"][&name], &mut todo);
        }
    }
    found
}

/// Every `#/components/schemas/X` referred to under `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                out.push(name.to_owned());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Mark the nullable properties of a response schema required.
fn require_nullables(schema: &mut Value) {
    let nullable: Vec<String> = schema["properties"]
        .as_object()
        .into_iter()
        .flat_map(|props| props.iter())
        .filter(|(_, p)| p["nullable"] == Value::Bool(true))
        .map(|(name, _)| name.clone())
        .collect();
    if nullable.is_empty() {
        return;
    }
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let required = object
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = required {
        for name in nullable {
            if !list.iter().any(|v| v == name.as_str()) {
                list.push(Value::String(name));
            }
        }
    }
}

/// `additionalProperties: false` on an object schema with properties that says nothing else.
fn close(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let is_object = object.get("type").and_then(Value::as_str) == Some("object");
    if is_object
        && object.contains_key("properties")
        && !object.contains_key("additionalProperties")
    {
        object.insert("additionalProperties".into(), Value::Bool(false));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    #[test]
    fn nullable_properties_of_response_schemas_are_required() {
        let spec = json!({
            "paths": {"/x": {"post": {
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/In"}}}},
                "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Out"}}}}}
            }}},
            "components": {"schemas": {
                "In": {"type": "object", "properties": {
                    "n": {"type": "string", "nullable": true},
                    "inner": {"$ref": "#/components/schemas/Inner"}
                }},
                "Inner": {"type": "object", "properties": {"m": {"type": "string", "nullable": true}}},
                "Out": {"type": "object", "required": ["id"], "properties": {
                    "id": {"type": "string"},
                    "n": {"type": "string", "nullable": true},
                    "maybe": {"type": "string"}
                }},
            }}
        });
        let out: Value = serde_json::from_str(&super::exact(&spec.to_string())).unwrap();
        let schemas = &out["components"]["schemas"];
        assert_eq!(schemas["Out"]["required"], json!(["id", "n"]));
        assert_eq!(schemas["In"].get("required"), None);
        assert_eq!(schemas["Inner"].get("required"), None, "reached through In");
    }

    #[test]
    fn annotations_of_a_named_type_stand_beside_its_reference() {
        let spec = json!({"paths": {}, "components": {"schemas": {"A": {
            "type": "object",
            "properties": {
                "role": {"allOf": [{"$ref": "#/components/schemas/R"}, {"description": "d", "nullable": true}]},
                "two": {"allOf": [{"$ref": "#/components/schemas/R"}, {"$ref": "#/components/schemas/S"}]}
            }
        }}}});
        let out: Value = serde_json::from_str(&super::exact(&spec.to_string())).unwrap();
        let props = &out["components"]["schemas"]["A"]["properties"];
        assert_eq!(
            props["role"],
            json!({"allOf": [{"$ref": "#/components/schemas/R"}], "description": "d", "nullable": true})
        );
        assert_eq!(
            props["two"],
            spec["components"]["schemas"]["A"]["properties"]["two"]
        );
    }

    #[test]
    fn objects_with_properties_are_closed_and_nothing_else_changes() {
        let spec = json!({
            "paths": {},
            "components": {"schemas": {
                "A": {"type": "object", "properties": {"x": {"type": "string"}}},
                "B": {"type": "object", "additionalProperties": {"type": "string"}},
                "C": {"type": "string", "enum": ["x"]},
            }}
        });
        let out: Value = serde_json::from_str(&super::exact(&spec.to_string())).unwrap();
        let schemas = &out["components"]["schemas"];
        assert_eq!(schemas["A"]["additionalProperties"], json!(false));
        assert_eq!(
            schemas["B"]["additionalProperties"],
            json!({"type": "string"})
        );
        assert_eq!(schemas["C"], spec["components"]["schemas"]["C"]);
    }
}
