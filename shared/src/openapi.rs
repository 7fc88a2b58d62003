//! The OpenAPI document as served: poem-openapi's, made exact where it cannot say what the
//! services do.
//!
//! - Every object schema with properties gets `additionalProperties: false`: request bodies
//!   refuse unknown fields (`UNKNOWN_FIELD`), and responses never carry any.

use serde_json::Value;

/// The document `spec` (poem-openapi's JSON), made exact.
pub fn exact(spec: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(spec) else {
        return spec.to_owned();
    };
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for schema in schemas.values_mut() {
            close(schema);
        }
    }
    serde_json::to_string(&doc).unwrap_or_else(|_| spec.to_owned())
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
