//! JSON request bodies whose problems are reported field by field.
//!
//! poem-openapi's own `Json<T>` answers a missing or mistyped field with one sentence that
//! does not name the field, and quietly turns a number into a string. [`JsonBody`] checks
//! the parsed JSON against the schema the OpenAPI document publishes for `T` before `T`
//! parses it, so a client learns which field is wrong: 422 `VALIDATION_FAILED` with
//! `errors` (`REQUIRED`, `UNKNOWN_FIELD`, `INVALID_TYPE`, `INVALID_VALUE`,
//! `INVALID_FORMAT`, `DUPLICATE_FIELD` for a member given twice). A body that is not JSON at
//! all is 400 `VALIDATION_FAILED`.

mod schema;

use std::ops::Deref;

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use serde_json::Value;

use crate::problem::FieldCode;
use crate::{ApiError, FieldError};
use schema::{check, shape_of};

/// A JSON request body, documented exactly like poem-openapi's `Json<T>`.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T> Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        let essence = essence.to_ascii_lowercase();
        essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub == "json" || sub.ends_with("+json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON + 'static> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        let value = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&data).map_err(|err| {
                ApiError::bad_request(format!("The body is not valid JSON: {err}."))
            })?
        };
        if let Some(field) = crate::json_keys::first_duplicate(&data) {
            return Err(ApiError::validation(vec![FieldError::new(
                &field,
                FieldCode::DuplicateField,
                "appears more than once; send each field once",
            )])
            .into());
        }
        if value.is_null() && !data.is_empty() {
            // A literal `null` is no body of any documented shape (an empty body is how to
            // send none where a body is optional).
            return Err(ApiError::validation(vec![FieldError::new(
                "body",
                FieldCode::InvalidType,
                "must be a JSON object, not null",
            )])
            .into());
        }
        if value.is_null() && T::IS_REQUIRED {
            return Err(ApiError::validation(vec![FieldError::new(
                "body",
                FieldCode::Required,
                "a JSON body is required",
            )])
            .into());
        }
        let problems = if value.is_null() {
            Vec::new()
        } else {
            let shape = shape_of::<T>();
            let mut problems = Vec::new();
            check(&shape.registry, &shape.root, &value, "", &mut problems);
            problems
        };
        if !problems.is_empty() {
            return Err(ApiError::validation(problems).into());
        }
        T::parse_from_json(Some(value)).map(Self).map_err(|err| {
            // The schema check passed, so this is a rule the schema does not carry.
            let message = err.into_message();
            ApiError::validation(vec![FieldError::new("body", FieldCode::Invalid, message)]).into()
        })
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON + 'static);
