//! Opaque pagination cursors: any serialisable position, as base64url JSON. Clients must
//! not build or read them; a cursor that does not decode is a 400.

use crate::problem::FieldCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn encode<T: Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

pub fn decode<T: DeserializeOwned>(cursor: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The field problem (422) of a cursor that does not decode or does not fit the request.
pub fn invalid() -> crate::FieldError {
    crate::FieldError::new(
        "cursor",
        FieldCode::InvalidValue,
        "is not a cursor of this list; start again without it",
    )
}

/// A list's `limit`: 1 to 100, default 20.
pub fn page_limit(raw: Option<u32>) -> Result<u32, crate::ApiError> {
    match raw.unwrap_or(20) {
        n @ 1..=100 => Ok(n),
        _ => Err(crate::ApiError::validation(vec![crate::FieldError::new(
            "limit",
            FieldCode::OutOfRange,
            "must be between 1 and 100",
        )])),
    }
}

/// Cut `rows`, fetched with one row more than `limit`, to `limit`, and give the cursor of
/// the next page (none on the last page).
pub fn split_page<T>(
    mut rows: Vec<T>,
    limit: usize,
    cursor_of: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(cursor_of)
    } else {
        None
    };
    (rows, next)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = super::encode(&(42i64, "x"));
        assert_eq!(super::decode::<(i64, String)>(&c), Some((42, "x".into())));
        assert_eq!(super::decode::<(i64, String)>("!!"), None);
        assert_eq!(super::decode::<(i64, String)>("e30"), None);
    }
}
