//! Todo rows and their queries. Every query of a user's todos filters by owner, so another
//! owner's todo is simply not found.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::todos;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = todos)]
pub struct TodoRow {
    pub id: Uuid,
    pub owner_id: String,
    pub title: String,
    pub description: Option<String>,
    pub done: bool,
    pub due_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewTodo<'a> {
    pub id: Uuid,
    pub owner_id: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub done: bool,
    pub due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A merge patch: `None` leaves a field alone; `Some(None)` clears a nullable one.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = todos)]
pub struct TodoChanges {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub done: Option<bool>,
    pub due_at: Option<Option<DateTime<Utc>>>,
}

impl TodoChanges {
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.done.is_none()
            && self.due_at.is_none()
    }
}

/// The three orders a list can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    CreatedAsc,
    CreatedDesc,
    /// Soonest due first; todos without a due date last.
    DueAsc,
}

/// Where the previous page ended: the sort key and id of its last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    /// Microseconds since the epoch of `created_at` or `due_at` (`None`: a null `due_at`).
    pub at: Option<i64>,
    pub id: Uuid,
}

pub struct ListQuery<'a> {
    /// `None` lists every owner's todos (admin).
    pub owner: Option<&'a str>,
    pub done: Option<bool>,
    pub sort: Sort,
    pub after: Option<After>,
    pub limit: i64,
}

fn micros(at: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at).unwrap_or_default()
}

/// One page in keyset order: stable while rows are inserted between pages.
pub async fn list(conn: &mut AsyncPgConnection, q: ListQuery<'_>) -> QueryResult<Vec<TodoRow>> {
    // `(<column>, id) <op> (at, id)`: a row comparison, which PostgreSQL turns into an
    // index condition on `(owner_id, <column>, id)`, seeking to the page's start instead
    // of reading (and filtering out) the rows before it.
    let seek = |column: &'static str, op: &'static str, at: i64, id: Uuid| {
        diesel::dsl::sql::<diesel::sql_types::Bool>("(")
            .sql(column)
            .sql(", id) ")
            .sql(op)
            .sql(" (")
            .bind::<diesel::sql_types::Timestamptz, _>(micros(at))
            .sql(", ")
            .bind::<diesel::sql_types::Uuid, _>(id)
            .sql(")")
    };
    let base = || {
        let mut query = todos::table.select(TodoRow::as_select()).into_boxed();
        if let Some(owner) = q.owner {
            query = query.filter(todos::owner_id.eq(owner.to_owned()));
        }
        if let Some(done) = q.done {
            query = query.filter(todos::done.eq(done));
        }
        query
    };
    let mut query = base();
    query = match q.sort {
        Sort::CreatedAsc => {
            if let Some(After { at: Some(at), id }) = q.after {
                query = query.filter(seek("created_at", ">", at, id));
            }
            query.order((todos::created_at.asc(), todos::id.asc()))
        }
        Sort::CreatedDesc => {
            if let Some(After { at: Some(at), id }) = q.after {
                query = query.filter(seek("created_at", "<", at, id));
            }
            query.order((todos::created_at.desc(), todos::id.desc()))
        }
        Sort::DueAsc => {
            let by_due = (todos::due_at.asc().nulls_last(), todos::id.asc());
            match q.after {
                // The rest of the dated todos, then the undated ones. One condition with
                // `OR due_at IS NULL` would make PostgreSQL read the owner's todos from the
                // first and filter; two seeks read only the page (the second runs only when
                // the dated ones run out).
                Some(After { at: Some(at), id }) => {
                    let mut rows: Vec<TodoRow> = query
                        .filter(seek("due_at", ">", at, id))
                        .order(by_due)
                        .limit(q.limit)
                        .load(conn)
                        .await?;
                    if (rows.len() as i64) < q.limit {
                        // Two statements, two snapshots: a todo whose due date was cleared
                        // between them comes back from both. It stays where the first put
                        // it, and the page is filled from as many undated ones as it could
                        // need (at most the page's size).
                        let undated: Vec<TodoRow> = base()
                            .filter(todos::due_at.is_null())
                            .order(by_due)
                            .limit(q.limit)
                            .load(conn)
                            .await?;
                        let dated: std::collections::HashSet<Uuid> =
                            rows.iter().map(|r| r.id).collect();
                        rows.extend(undated.into_iter().filter(|r| !dated.contains(&r.id)));
                        rows.truncate(q.limit as usize);
                    }
                    return Ok(rows);
                }
                // Ordered by `due_at` too (all null here), so that PostgreSQL seeks with
                // `owner_id`, `due_at IS NULL` and `id` on `(owner_id, due_at, id)`.
                Some(After { at: None, id }) => {
                    query = query.filter(todos::due_at.is_null().and(todos::id.gt(id)));
                }
                None => {}
            }
            query.order(by_due)
        }
    };
    query.limit(q.limit).load(conn).await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    owner: Option<&str>,
    id: Uuid,
) -> QueryResult<Option<TodoRow>> {
    let mut query = todos::table
        .find(id)
        .select(TodoRow::as_select())
        .into_boxed();
    if let Some(owner) = owner {
        query = query.filter(todos::owner_id.eq(owner.to_owned()));
    }
    query.first(conn).await.optional()
}

/// Insert `todo` if its owner has fewer than `limit` todos, counting it, in one statement
/// (see `migrations/todo/*_todo_counts`): `None` when the owner is at the limit.
pub async fn insert_counted(
    conn: &mut AsyncPgConnection,
    todo: NewTodo<'_>,
    limit: i64,
) -> QueryResult<Option<TodoRow>> {
    InsertCounted { todo: &todo, limit }
        .get_result(conn)
        .await
        .optional()
}

/// `insert_counted`'s statement: a type of its own with a constant text, so that
/// PostgreSQL prepares it once per connection (a `sql_query` would be prepared again on
/// every create, one more round trip each).
struct InsertCounted<'a> {
    todo: &'a NewTodo<'a>,
    limit: i64,
}

impl QueryFragment<Pg> for InsertCounted<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Bool, Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid};
        let t = self.todo;
        out.push_sql("WITH slot AS (INSERT INTO todo_counts AS c (owner_id, n) VALUES (");
        out.push_bind_param::<Text, str>(t.owner_id)?;
        out.push_sql(", 1) ON CONFLICT (owner_id) DO UPDATE SET n = c.n + 1 WHERE c.n < ");
        out.push_bind_param::<Int8, _>(&self.limit)?;
        out.push_sql(
            " RETURNING c.owner_id) INSERT INTO todos (id, owner_id, title, description, done, \
             due_at, created_at, updated_at) SELECT ",
        );
        out.push_bind_param::<SqlUuid, _>(&t.id)?;
        out.push_sql(", owner_id, ");
        out.push_bind_param::<Text, str>(t.title)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&t.description)?;
        out.push_sql(", ");
        out.push_bind_param::<Bool, _>(&t.done)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&t.due_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&t.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&t.updated_at)?;
        out.push_sql(
            " FROM slot RETURNING id, owner_id, title, description, done, due_at, version, \
             created_at, updated_at",
        );
        Ok(())
    }
}

impl QueryId for InsertCounted<'_> {
    type QueryId = InsertCounted<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for InsertCounted<'_> {
    type SqlType = diesel::dsl::SqlTypeOf<diesel::dsl::AsSelect<TodoRow, Pg>>;
}

/// Apply `changes` and bump the version in one statement; with `expected` only if the
/// version still matches (so of two writers holding one ETag, one wins). `None` when no row
/// matched.
pub async fn update(
    conn: &mut AsyncPgConnection,
    owner: &str,
    id: Uuid,
    expected: Option<i64>,
    changes: TodoChanges,
) -> QueryResult<Option<TodoRow>> {
    let mut target = diesel::update(todos::table)
        .filter(todos::id.eq(id))
        .filter(todos::owner_id.eq(owner.to_owned()))
        .into_boxed();
    if let Some(version) = expected {
        target = target.filter(todos::version.eq(version));
    }
    target
        .set((
            changes,
            todos::version.eq(todos::version + 1),
            todos::updated_at.eq(Utc::now()),
        ))
        .returning(TodoRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Delete; with `expected` only if the version matches. Returns whether a row went.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    owner: Option<&str>,
    id: Uuid,
    expected: Option<i64>,
) -> QueryResult<bool> {
    let mut target = diesel::delete(todos::table)
        .filter(todos::id.eq(id))
        .into_boxed();
    if let Some(owner) = owner {
        target = target.filter(todos::owner_id.eq(owner.to_owned()));
    }
    if let Some(version) = expected {
        target = target.filter(todos::version.eq(version));
    }
    target.execute(conn).await.map(|n| n > 0)
}

/// Everything kept for an owner (todos and idempotency records); returns the todos deleted.
pub async fn delete_owner(conn: &mut AsyncPgConnection, owner: &str) -> QueryResult<usize> {
    use crate::schema::idempotency_keys;
    let deleted = diesel::delete(todos::table.filter(todos::owner_id.eq(owner)))
        .execute(conn)
        .await?;
    diesel::delete(idempotency_keys::table.filter(idempotency_keys::owner_id.eq(owner)))
        .execute(conn)
        .await?;
    Ok(deleted)
}
