//! `/v1/admin/todos`: any owner's todos, for `todos:admin`.

use std::sync::Arc;

use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use shared::error_set;
use shared::page::Page;
use shared::patterned::{Cursor, Filter};
use shared::problem::ApiErr;
use shared::tokens::{NotAllowed, Principal, Role, Scope};
use shared::verify::BearerAuth;
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::dto::Todo;
use crate::api::todos::{DeleteResponse, ListResponse};
use crate::service::todos::{self, ListRequest, Precondition};
use crate::state::AppState;
use crate::store::todos::Sort;

pub struct AdminApi {
    pub state: Arc<AppState>,
}

impl AdminApi {
    /// `todos:admin`, and, with `TODO_ADMIN_REQUIRE_MFA`, a user's login with a second factor
    /// (its token's `amr`; a service client's token has no login and is not asked).
    fn allowed(&self, principal: &Principal) -> Result<(), NotAllowed> {
        principal.require(Scope::TodosAdmin)?;
        if self.state.settings.todo.admin_require_mfa
            && principal.role != Some(Role::Service)
            && !principal.second_factor()
        {
            return Err(NotAllowed(
                "This needs a login with a second factor (log in again with your authenticator)."
                    .into(),
            ));
        }
        Ok(())
    }
}

error_set!(pub AdminListErrors: 401, 403, 422);
error_set!(pub AdminDeleteErrors: 401, 403, 404);

#[OpenApi(prefix_path = "/v1/admin/todos", tag = "ApiTags::Admin")]
impl AdminApi {
    /// Every owner's todos, oldest first, optionally of one owner. Needs `todos:admin` (and,
    /// where `TODO_ADMIN_REQUIRE_MFA` is set, a login with a second factor).
    #[oai(path = "/", method = "get", operation_id = "adminListTodos")]
    async fn list(
        &self,
        auth: BearerAuth,
        /// Only this owner's todos (the `sub` of their tokens).
        owner_id: Query<Option<Filter>>,
        done: Query<Option<bool>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        cursor: Query<Option<Cursor>>,
    ) -> Result<ListResponse, ApiErr<AdminListErrors>> {
        self.allowed(&auth.0)?;
        let (rows, next_cursor) = todos::list(
            &self.state,
            ListRequest {
                owner: owner_id.0.as_deref(),
                done: done.0,
                sort: Sort::CreatedAsc,
                cursor: cursor.0.as_deref(),
                limit: shared::cursor::page_limit(limit.0)?,
            },
        )
        .await?;
        Ok(ListResponse::Ok(Json(Page::of(rows, next_cursor, |r| {
            Todo::from(&r)
        }))))
    }

    /// Delete any owner's todo. Needs `todos:admin` (and, where `TODO_ADMIN_REQUIRE_MFA` is
    /// set, a login with a second factor).
    #[oai(path = "/:id", method = "delete", operation_id = "adminDeleteTodo")]
    async fn delete(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<DeleteResponse, ApiErr<AdminDeleteErrors>> {
        self.allowed(&auth.0)?;
        todos::delete(&self.state, None, id.0, Precondition::None).await?;
        Ok(DeleteResponse::Deleted)
    }
}
