//! `/v1/todos`: the caller's todos.

use shared::problem::FieldCode;
use std::sync::Arc;

use poem::http::StatusCode;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, OpenApi};
use shared::body::JsonBody;
use shared::error_set;
use shared::page::Page;
use shared::patterned::{Cursor, Patterned};
use shared::problem::ApiErr;
use shared::ratelimit::Limit;
use shared::tokens::{Principal, Scope};
use shared::verify::BearerAuth;
use shared::{ApiError, FieldError};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::dto::IdempotencyKey;
use crate::api::dto::{CreateTodo, PatchTodo, SortParam, Todo};
use crate::api::preconditions::{etag, parse_if_match};
use crate::domain::{Description, TodoPatch, TodoTitle};
use crate::error::TodoError;
use crate::service::todos::{self, CreateInput, Created, Idempotency, ListRequest, Rendered};
use crate::state::AppState;
use crate::store::todos::TodoRow;

pub struct TodosApi {
    pub state: Arc<AppState>,
}

#[derive(ApiResponse)]
pub enum ListResponse {
    /// One page of todos.
    #[oai(status = 200)]
    Ok(Json<Page<Todo>>),
}

#[derive(ApiResponse)]
pub enum CreateResponse {
    /// Created (or, for a retried `Idempotency-Key`, the first response replayed).
    #[oai(status = 201)]
    Created(
        Json<Todo>,
        /// The new todo's URL.
        #[oai(header = "Location")]
        String,
        #[oai(header = "ETag")] String,
        /// `true` when this is a replay of the first response for the key.
        #[oai(header = "Idempotent-Replayed")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum TodoResponse {
    /// The todo.
    #[oai(status = 200)]
    Ok(Json<Todo>, #[oai(header = "ETag")] String),
    /// Unchanged since the `If-None-Match` ETag.
    #[oai(status = 304)]
    NotModified(#[oai(header = "ETag")] String),
}

#[derive(ApiResponse)]
pub enum PatchResponse {
    /// The todo as changed.
    #[oai(status = 200)]
    Ok(Json<Todo>, #[oai(header = "ETag")] String),
}

#[derive(ApiResponse)]
pub enum DeleteResponse {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

error_set!(pub ListErrors: 401, 403, 422);
error_set!(pub CreateErrors: 401, 403, 409, 413, 415, 422, 429);
error_set!(pub GetErrors: 401, 403, 404);
error_set!(pub PatchErrors: 401, 403, 404, 412, 413, 415, 422, 429);
error_set!(pub DeleteErrors: 401, 403, 404, 412, 429);

pub fn location(row: &TodoRow) -> String {
    format!("/v1/todos/{}", row.id)
}

fn owner(principal: &Principal, scope: Scope) -> Result<&str, ApiError> {
    principal.require(scope)?;
    Ok(&principal.subject)
}

impl TodosApi {
    /// A writer: `todos:write`, within the per-caller write limit.
    async fn writer<'p>(&self, principal: &'p Principal) -> Result<&'p str, ApiError> {
        let owner = owner(principal, Scope::TodosWrite)?;
        self.state
            .limiter
            .enforce(&[Limit::new(
                "todo-write",
                self.state.settings.todo.rate_write_user,
                owner,
            )])
            .await?;
        Ok(owner)
    }
}

#[OpenApi(prefix_path = "/v1/todos", tag = "ApiTags::Todos")]
impl TodosApi {
    /// The caller's todos, a page at a time (keyset pagination: stable while todos are
    /// added). Needs `todos:read`.
    #[oai(path = "/", method = "get", operation_id = "listTodos")]
    async fn list(
        &self,
        auth: BearerAuth,
        /// Only done (true) or open (false) todos.
        done: Query<Option<bool>>,
        sort: Query<Option<SortParam>>,
        /// 1 to 100, default 20.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<Cursor>>,
    ) -> Result<ListResponse, ApiErr<ListErrors>> {
        let owner = owner(&auth.0, Scope::TodosRead)?;
        let (rows, next_cursor) = todos::list(
            &self.state,
            ListRequest {
                owner: Some(owner),
                done: done.0,
                sort: sort.0.unwrap_or(SortParam::CreatedAt).into(),
                cursor: cursor.0.as_deref(),
                limit: shared::cursor::page_limit(limit.0)?,
            },
        )
        .await?;
        Ok(ListResponse::Ok(Json(Page::of(rows, next_cursor, |r| {
            Todo::from(&r)
        }))))
    }

    /// Create a todo. With an `Idempotency-Key`, a retry with the same body replays the
    /// first response and creates nothing; the same key with another body is 422
    /// `VALIDATION_FAILED` naming `Idempotency-Key` (`REUSED_WITH_DIFFERENT_BODY`). Needs
    /// `todos:write`.
    ///
    /// Writes (create, update, delete) are rate limited per caller (`TODO_RATE_WRITE_USER`,
    /// default 600 per 60 s); refused: 429 with `Retry-After`.
    #[oai(path = "/", method = "post", operation_id = "createTodo")]
    async fn create(
        &self,
        auth: BearerAuth,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<IdempotencyKey>>,
        body: JsonBody<CreateTodo>,
    ) -> Result<CreateResponse, ApiErr<CreateErrors>> {
        let owner = self.writer(&auth.0).await?;
        let idempotency = match idempotency_key.0 {
            Some(key) => {
                let canonical = serde_json::to_value(&body.0)
                    .map_err(|e| shared::problem::internal_error("fingerprint", &e))?;
                Some(Idempotency::new(key.into_inner(), &canonical))
            }
            None => None,
        };
        let body = body.0;
        let input = CreateInput {
            title: body.title.into_inner(),
            description: body.description.map(Patterned::into_inner),
            done: body.done.unwrap_or(false),
            due_at: body.due_at,
        };
        let render = |row: &TodoRow| Rendered {
            status: StatusCode::CREATED.as_u16(),
            body: serde_json::to_value(Todo::from(row)).unwrap_or_default(),
            location: location(row),
        };
        match todos::create(&self.state, owner, input, idempotency, render).await? {
            Created::New(row) => Ok(CreateResponse::Created(
                Json(Todo::from(&row)),
                location(&row),
                etag(row.version),
                None,
            )),
            Created::Replayed(stored) => {
                let todo: Todo = serde_json::from_value(stored.response_body).map_err(|e| {
                    shared::problem::internal_error("replaying a stored response", &e)
                })?;
                debug_assert_eq!(
                    stored.response_status,
                    i32::from(StatusCode::CREATED.as_u16())
                );
                Ok(CreateResponse::Created(
                    Json(todo.clone()),
                    stored
                        .location
                        .unwrap_or_else(|| format!("/v1/todos/{}", todo.id)),
                    etag(todo.version),
                    Some("true".into()),
                ))
            }
        }
    }

    /// One of the caller's todos, with its `ETag`. Someone else's todo is 404. Needs
    /// `todos:read`.
    #[oai(path = "/:id", method = "get", operation_id = "getTodo")]
    async fn get(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        #[oai(name = "If-None-Match")] if_none_match: Header<Option<String>>,
    ) -> Result<TodoResponse, ApiErr<GetErrors>> {
        let owner = owner(&auth.0, Scope::TodosRead)?;
        let row = todos::get(&self.state, Some(owner), id.0).await?;
        let tag = etag(row.version);
        if if_none_match.0.as_deref().is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == tag)
        }) {
            return Ok(TodoResponse::NotModified(tag));
        }
        Ok(TodoResponse::Ok(Json(Todo::from(&row)), tag))
    }

    /// Change a todo with a JSON merge patch (`application/merge-patch+json` or
    /// `application/json`). With `If-Match`, a stale ETag is 412 and changes nothing.
    /// Needs `todos:write`.
    #[oai(path = "/:id", method = "patch", operation_id = "updateTodo")]
    async fn update(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: JsonBody<PatchTodo>,
    ) -> Result<PatchResponse, ApiErr<PatchErrors>> {
        let owner = self.writer(&auth.0).await?;
        let changes = changes(body.0)?;
        let row = todos::update(
            &self.state,
            owner,
            id.0,
            parse_if_match(if_match.0.as_deref()),
            changes,
        )
        .await?;
        Ok(PatchResponse::Ok(Json(Todo::from(&row)), etag(row.version)))
    }

    /// Delete one of the caller's todos. Needs `todos:write`.
    #[oai(path = "/:id", method = "delete", operation_id = "deleteTodo")]
    async fn delete(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<DeleteResponse, ApiErr<DeleteErrors>> {
        let owner = self.writer(&auth.0).await?;
        todos::delete(
            &self.state,
            Some(owner),
            id.0,
            parse_if_match(if_match.0.as_deref()),
        )
        .await?;
        Ok(DeleteResponse::Deleted)
    }
}

/// Turn a merge patch into validated changes.
fn changes(patch: PatchTodo) -> Result<TodoPatch, TodoError> {
    let mut errors = Vec::new();
    let mut changes = TodoPatch::default();
    match patch.title {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => errors.push(FieldError::new(
            "title",
            FieldCode::Required,
            "cannot be null",
        )),
        MaybeUndefined::Value(t) => match TodoTitle::parse(&t) {
            Ok(t) => changes.title = Some(t),
            Err(e) => errors.push(e),
        },
    }
    match patch.description {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => changes.description = Some(None),
        MaybeUndefined::Value(d) => match Description::parse(&d) {
            Ok(d) => changes.description = Some(Some(d)),
            Err(e) => errors.push(e),
        },
    }
    match patch.done {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => errors.push(FieldError::new(
            "done",
            FieldCode::Required,
            "cannot be null",
        )),
        MaybeUndefined::Value(d) => changes.done = Some(d),
    }
    match patch.due_at {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => changes.due_at = Some(None),
        MaybeUndefined::Value(d) => changes.due_at = Some(Some(d)),
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(TodoError::Validation(errors))
    }
}
