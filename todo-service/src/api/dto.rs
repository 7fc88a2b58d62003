//! Request and response bodies, as the OpenAPI document shows them.

use chrono::{DateTime, Utc};
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use shared::patterned::{Patterned, Rule, SingleLine};
use uuid::Uuid;

use crate::store::todos::{Sort, TodoRow};

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Todo {
    pub id: Uuid,
    /// 1 to 200 characters.
    pub title: String,
    /// Up to 2000 characters, or null.
    #[oai(nullable)]
    pub description: Option<String>,
    pub done: bool,
    /// When it is due, or null.
    #[oai(nullable)]
    pub due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Incremented by every change; the ETag is `"<version>"`.
    pub version: i64,
}

impl From<&TodoRow> for Todo {
    fn from(r: &TodoRow) -> Self {
        Self {
            id: r.id,
            title: r.title.clone(),
            description: r.description.clone(),
            done: r.done,
            due_at: r.due_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: r.version,
        }
    }
}

#[derive(Debug, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct CreateTodo {
    /// 1 to 200 characters, not blank; no control characters.
    pub title: SingleLine<200>,
    /// Up to 2000 characters (line breaks and tabs, no other control characters), or null.
    #[oai(nullable)]
    pub description: Option<DescriptionField>,
    /// Defaults to false.
    pub done: Option<bool>,
    /// When it is due, or null.
    #[oai(nullable)]
    pub due_at: Option<DateTime<Utc>>,
}

/// A JSON merge patch (RFC 7396): absent fields stay, `null` clears `description` and
/// `due_at`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PatchTodo {
    /// 1 to 200 characters, not blank; no control characters.
    pub title: MaybeUndefined<SingleLine<200>>,
    /// Up to 2000 characters (line breaks and tabs, no other control characters); null
    /// clears it.
    #[oai(nullable)]
    pub description: MaybeUndefined<DescriptionField>,
    pub done: MaybeUndefined<bool>,
    /// null clears it.
    #[oai(nullable)]
    pub due_at: MaybeUndefined<DateTime<Utc>>,
}

/// A todo's description: up to 2000 characters, line breaks and tabs but no other control
/// characters.
pub struct DescriptionRule;

impl Rule for DescriptionRule {
    const PATTERN: &'static str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";
    const MAX_LENGTH: Option<usize> = Some(2000);
}

pub type DescriptionField = Patterned<DescriptionRule>;

/// An `Idempotency-Key`: 1 to 255 printable ASCII characters.
pub struct IdempotencyKeyRule;

impl Rule for IdempotencyKeyRule {
    const PATTERN: &'static str = r"^[!-~]{1,255}$";
}

pub type IdempotencyKey = Patterned<IdempotencyKeyRule>;

/// List order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum SortParam {
    /// Oldest first (default).
    #[oai(rename = "created_at")]
    CreatedAt,
    /// Newest first.
    #[oai(rename = "-created_at")]
    CreatedAtDesc,
    /// Soonest due first; todos without a due date last.
    #[oai(rename = "due_at")]
    DueAt,
}

impl From<SortParam> for Sort {
    fn from(s: SortParam) -> Self {
        match s {
            SortParam::CreatedAt => Sort::CreatedAsc,
            SortParam::CreatedAtDesc => Sort::CreatedDesc,
            SortParam::DueAt => Sort::DueAsc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IdempotencyKey;

    #[test]
    fn idempotency_keys_are_1_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::new("k".into()).is_ok());
        assert!(IdempotencyKey::new("k".repeat(255)).is_ok());
        assert!(IdempotencyKey::new(String::new()).is_err());
        assert!(IdempotencyKey::new("has space".into()).is_err());
        assert!(IdempotencyKey::new("k".repeat(256)).is_err());
        assert!(IdempotencyKey::new("é".into()).is_err());
    }
}
