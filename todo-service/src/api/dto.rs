//! Request and response bodies, as the OpenAPI document shows them.

use chrono::{DateTime, Utc};
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::todos::{Sort, TodoRow};

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Todo {
    pub id: Uuid,
    /// 1 to 200 characters.
    pub title: String,
    /// Up to 2000 characters, or null.
    pub description: Option<String>,
    pub done: bool,
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
    /// 1 to 200 characters after trimming; no control characters.
    pub title: String,
    /// Up to 2000 characters.
    pub description: Option<String>,
    /// Defaults to false.
    pub done: Option<bool>,
    pub due_at: Option<DateTime<Utc>>,
}

/// A JSON merge patch (RFC 7396): absent fields stay, `null` clears `description` and
/// `due_at`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PatchTodo {
    pub title: MaybeUndefined<String>,
    pub description: MaybeUndefined<String>,
    pub done: MaybeUndefined<bool>,
    pub due_at: MaybeUndefined<DateTime<Utc>>,
}

#[derive(Debug, Object)]
pub struct TodoPage {
    pub items: Vec<Todo>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

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
