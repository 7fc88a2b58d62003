//! The todo use cases.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{Description, TodoPatch, TodoTitle};
use crate::error::TodoError;
use crate::state::AppState;
use crate::store::idempotency::{self, NewStoredResponse, StoredResponse};
use crate::store::todos::{self, After, ListQuery, NewTodo, Sort, TodoChanges, TodoRow};

pub struct CreateInput {
    pub title: String,
    pub description: Option<String>,
    pub done: bool,
    pub due_at: Option<DateTime<Utc>>,
}

/// A client's `Idempotency-Key` and the fingerprint of its request body.
pub struct Idempotency {
    pub key: String,
    pub request_hash: Vec<u8>,
}

impl Idempotency {
    /// `key` as the client sent it (the api admits only the documented form: 1 to 255
    /// visible ASCII characters), and a fingerprint of the request body.
    pub fn new(key: String, canonical_body: &Value) -> Self {
        // serde_json sorts object keys, so equal bodies hash equally whatever their order.
        let request_hash = Sha256::digest(canonical_body.to_string().as_bytes()).to_vec();
        Self { key, request_hash }
    }
}

/// What a create produced: a new todo, or the stored first response to replay.
pub enum Created {
    New(TodoRow),
    Replayed(StoredResponse),
}

/// The response a create sends, as stored for replays.
pub struct Rendered {
    pub status: u16,
    pub body: Value,
    pub location: String,
}

pub async fn create(
    state: &AppState,
    owner: &str,
    input: CreateInput,
    idempotency: Option<Idempotency>,
    render: impl Fn(&TodoRow) -> Rendered + Send + Sync,
) -> Result<Created, TodoError> {
    let mut errors = Vec::new();
    let title = TodoTitle::parse(&input.title)
        .map_err(|e| errors.push(e))
        .ok();
    let description = input
        .description
        .as_deref()
        .map(Description::parse)
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let Some(title) = title else {
        return Err(TodoError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(TodoError::Validation(errors));
    }
    let limit = state.settings.todo.max_todos_per_owner;
    let ttl = chrono::Duration::seconds(state.settings.todo.idempotency_ttl_secs);
    let title = title.into_inner();
    let description = description.map(Description::into_inner);
    let now = Utc::now();
    let new = || NewTodo {
        id: Uuid::now_v7(),
        owner_id: owner,
        title: &title,
        description: description.as_deref(),
        done: input.done,
        due_at: input.due_at,
        created_at: now,
        updated_at: now,
    };
    let mut conn = shared::db::conn(&state.pool).await?;
    let Some(idem) = &idempotency else {
        // One statement, no transaction: the limit check and the insert are one.
        return todos::insert_counted(&mut conn, new(), limit)
            .await?
            .map(Created::New)
            .ok_or(TodoError::LimitReached(limit));
    };
    conn.transaction(async |conn| {
        idempotency::lock(conn, owner, &idem.key).await?;
        if let Some(stored) = idempotency::find(conn, owner, &idem.key, now).await? {
            if stored.request_hash != idem.request_hash {
                return Err(TodoError::IdempotencyMismatch);
            }
            return Ok(Created::Replayed(stored));
        }
        let row = todos::insert_counted(conn, new(), limit)
            .await?
            .ok_or(TodoError::LimitReached(limit))?;
        let rendered = render(&row);
        idempotency::store(
            conn,
            NewStoredResponse {
                owner_id: owner,
                key: &idem.key,
                request_hash: &idem.request_hash,
                response_status: i32::from(rendered.status),
                response_body: &rendered.body,
                location: Some(&rendered.location),
                expires_at: now + ttl,
            },
        )
        .await?;
        Ok(Created::New(row))
    })
    .await
}

#[derive(Serialize, Deserialize)]
struct CursorData {
    /// The sort the cursor belongs to.
    s: String,
    a: Option<i64>,
    i: Uuid,
}

fn sort_tag(sort: Sort) -> &'static str {
    match sort {
        Sort::CreatedAsc => "c",
        Sort::CreatedDesc => "-c",
        Sort::DueAsc => "d",
    }
}

fn encode_cursor(sort: Sort, row: &TodoRow) -> String {
    let at = match sort {
        Sort::CreatedAsc | Sort::CreatedDesc => Some(row.created_at.timestamp_micros()),
        Sort::DueAsc => row.due_at.map(|d| d.timestamp_micros()),
    };
    shared::cursor::encode(&CursorData {
        s: sort_tag(sort).into(),
        a: at,
        i: row.id,
    })
}

fn decode_cursor(sort: Sort, cursor: &str) -> Result<After, TodoError> {
    let bad = || TodoError::from(shared::cursor::invalid());
    let data: CursorData = shared::cursor::decode(cursor).ok_or_else(bad)?;
    if data.s != sort_tag(sort) || (data.a.is_none() && sort != Sort::DueAsc) {
        return Err(bad());
    }
    Ok(After {
        at: data.a,
        id: data.i,
    })
}

pub struct ListRequest<'a> {
    pub owner: Option<&'a str>,
    pub done: Option<bool>,
    pub sort: Sort,
    pub cursor: Option<&'a str>,
    pub limit: u32,
}

/// One page and the cursor of the next (none on the last page).
pub async fn list(
    state: &AppState,
    req: ListRequest<'_>,
) -> Result<(Vec<TodoRow>, Option<String>), TodoError> {
    let after = req.cursor.map(|c| decode_cursor(req.sort, c)).transpose()?;
    let limit = i64::from(req.limit);
    let mut conn = shared::db::conn(&state.pool).await?;
    let rows = todos::list(
        &mut conn,
        ListQuery {
            owner: req.owner,
            done: req.done,
            sort: req.sort,
            after,
            limit: limit + 1,
        },
    )
    .await?;
    Ok(shared::cursor::split_page(rows, limit as usize, |last| {
        encode_cursor(req.sort, last)
    }))
}

pub async fn get(state: &AppState, owner: Option<&str>, id: Uuid) -> Result<TodoRow, TodoError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    todos::find(&mut conn, owner, id)
        .await?
        .ok_or(TodoError::NotFound)
}

/// What `If-Match` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// `*`: the todo must exist.
    Any,
    Version(i64),
    /// An ETag that cannot be ours: never matches.
    Never,
}

pub async fn update(
    state: &AppState,
    owner: &str,
    id: Uuid,
    precondition: Precondition,
    patch: TodoPatch,
) -> Result<TodoRow, TodoError> {
    let changes = TodoChanges {
        title: patch.title.map(TodoTitle::into_inner),
        description: patch.description.map(|d| d.map(Description::into_inner)),
        done: patch.done,
        due_at: patch.due_at,
    };
    let mut conn = shared::db::conn(&state.pool).await?;
    let expected = match precondition {
        Precondition::Version(v) => Some(v),
        Precondition::Never => Some(-1),
        Precondition::None | Precondition::Any => None,
    };
    if changes.is_empty() {
        let row = todos::find(&mut conn, Some(owner), id)
            .await?
            .ok_or(TodoError::NotFound)?;
        return match expected {
            Some(v) if v != row.version => Err(TodoError::PreconditionFailed),
            _ => Ok(row),
        };
    }
    match todos::update(&mut conn, owner, id, expected, changes).await? {
        Some(row) => Ok(row),
        None => match todos::find(&mut conn, Some(owner), id).await? {
            Some(_) => Err(TodoError::PreconditionFailed),
            None => Err(TodoError::NotFound),
        },
    }
}

pub async fn delete(
    state: &AppState,
    owner: Option<&str>,
    id: Uuid,
    precondition: Precondition,
) -> Result<(), TodoError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    let expected = match precondition {
        Precondition::Version(v) => Some(v),
        Precondition::Never => Some(-1),
        Precondition::None | Precondition::Any => None,
    };
    if todos::delete(&mut conn, owner, id, expected).await? {
        return Ok(());
    }
    match todos::find(&mut conn, owner, id).await? {
        Some(_) => Err(TodoError::PreconditionFailed),
        None => Err(TodoError::NotFound),
    }
}

/// Drop expired idempotency records, in small batches (a background job).
pub async fn purge_idempotency_keys(state: &AppState) {
    match shared::db::purge_in_batches(&state.pool, idempotency::PURGE_BATCH, Utc::now()).await {
        Ok(purged) if purged.rows == 0 => {}
        Ok(purged) => tracing::info!(deleted = purged.rows, "purged expired idempotency keys"),
        Err(err) => tracing::warn!(error = %err, "purging idempotency keys failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_fingerprinted_by_content() {
        let a = serde_json::json!({"title": "x", "done": false});
        let b: Value = serde_json::from_str(r#"{"done": false, "title": "x"}"#).unwrap();
        let c = serde_json::json!({"title": "y", "done": false});
        let hash = |v: &Value| Idempotency::new("k".into(), v).request_hash;
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&c));
    }
}
