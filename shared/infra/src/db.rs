//! One PostgreSQL pool per service, built once from config, and embedded migrations.

use std::time::Duration;

use anyhow::Context;
use deadpool::Runtime;
use deadpool::managed::{Metrics, Object, Pool, PoolError, RecycleError, RecycleResult};
use diesel::ConnectionError;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection,
};
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use futures_util::FutureExt;

use crate::metrics::deadpool_status::PoolStatus;

pub type PgPool = Pool<PgManager>;
pub type PgConn = Object<PgManager>;

/// A connection checked out again within this long of its last checkout is handed out
/// without a `SELECT 1` round trip (HikariCP's default bypass window is 500 ms too); one
/// idle for longer is verified first.
const VERIFIED_RECENTLY: Duration = Duration::from_millis(500);

/// diesel-async's pool manager, minus the verifying round trip for a connection that was in
/// use a moment ago. On a busy service that is every checkout, and the round trip was one
/// statement in nine of a login.
pub struct PgManager(AsyncDieselConnectionManager<AsyncPgConnection>);

impl deadpool::managed::Manager for PgManager {
    type Type = AsyncPgConnection;
    type Error = diesel_async::pooled_connection::PoolError;

    async fn create(&self) -> Result<AsyncPgConnection, Self::Error> {
        self.0.create().await
    }

    async fn recycle(
        &self,
        conn: &mut AsyncPgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<Self::Error> {
        if metrics.last_used() < VERIFIED_RECENTLY {
            if conn.is_broken() {
                return Err(RecycleError::message("broken connection"));
            }
            return Ok(());
        }
        self.0.recycle(conn, metrics).await
    }
}

/// How the pool is sized and how each connection is set up.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_size: usize,
    /// How long a request waits for a free connection before answering 503.
    pub acquire_timeout: Duration,
    /// `statement_timeout` on every connection, so no query runs away.
    pub statement_timeout: Duration,
    /// `application_name`, visible in `pg_stat_activity`.
    pub application_name: &'static str,
}

impl PoolOptions {
    /// A service's pool: `max_size` connections, a request waits at most 5 s for one, and
    /// no statement runs longer than 10 s.
    pub fn service(application_name: &'static str, max_size: usize) -> Self {
        Self {
            max_size,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            application_name,
        }
    }
}

/// Build the pool. No connection is made until the first use.
pub fn build_pool(url: &str, opts: &PoolOptions) -> anyhow::Result<PgPool> {
    let statement_timeout_ms = opts.statement_timeout.as_millis();
    let app_name = opts.application_name;
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.custom_setup = Box::new(move |url| {
        async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            // The post-create hook: every pooled connection gets the same session settings.
            conn.batch_execute(&format!(
                "SET statement_timeout = {statement_timeout_ms}; SET application_name = '{app_name}'"
            ))
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = PgManager(AsyncDieselConnectionManager::new_with_config(url, config));
    Pool::builder(manager)
        .max_size(opts.max_size)
        .wait_timeout(Some(opts.acquire_timeout))
        .create_timeout(Some(opts.acquire_timeout))
        .recycle_timeout(Some(opts.acquire_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .context("building the database pool")
}

/// No connection could be had: the pool is exhausted or PostgreSQL is down (logged where it
/// happens). Callers answer "try again shortly".
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the database is unavailable")]
pub struct DbUnavailable;

/// A query that failed because the database went away, could not take it, or gave up on it
/// (the connection closed, the server shutting down or restarting, a read-only server after
/// a failover, a statement timeout) rather than because of the query: the request may be
/// tried again shortly, so it answers 503, not 500. Logged and counted here. (Server
/// messages are matched in English, PostgreSQL's default `lc_messages`.)
pub fn unavailable(err: &diesel::result::Error) -> Option<DbUnavailable> {
    use diesel::result::{DatabaseErrorKind, Error};
    let reason = match err {
        // diesel-async reports every client-side error without a SQLSTATE this way, bugs
        // (a wrong parameter count) included: only the connection's own failures count.
        Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand, info) => {
            let message = info.message();
            [
                "connection closed",
                "error communicating with the server",
                "timeout",
            ]
            .iter()
            .any(|m| message.starts_with(m))
            .then_some("lost")
        }
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
        | Error::BrokenTransactionManager => Some("lost"),
        Error::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _) => Some("read_only"),
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            if message == "canceling statement due to statement timeout" {
                Some("statement_timeout")
            } else if message.starts_with("terminating connection")
                || message.starts_with("the database system is")
                || message.starts_with("canceling statement due to conflict with recovery")
            {
                Some("lost")
            } else {
                None
            }
        }
        Error::RollbackErrorOnCommit { commit_error, .. } => {
            return unavailable(commit_error);
        }
        _ => None,
    }?;
    crate::metrics::db_pool_failure(reason);
    tracing::warn!(error = %err, reason, "database unavailable for this request");
    Some(DbUnavailable)
}

/// Take a connection; exhaustion and outages are logged and become [`DbUnavailable`].
pub async fn conn(pool: &PgPool) -> Result<PgConn, DbUnavailable> {
    pool.get().await.map_err(|err| {
        match &err {
            PoolError::Timeout(_) => {
                crate::metrics::db_pool_failure("timeout");
                tracing::warn!("database pool exhausted");
            }
            _ => {
                crate::metrics::db_pool_failure("backend");
                tracing::error!(error = %err, "database unavailable");
            }
        }
        DbUnavailable
    })
}

/// Apply pending migrations over one connection.
pub async fn run_migrations(url: &str, migrations: EmbeddedMigrations) -> anyhow::Result<usize> {
    let conn = AsyncPgConnection::establish(url)
        .await
        .context("connecting to PostgreSQL to migrate")?;
    // The harness drives diesel's synchronous migration code; keep it off the runtime.
    tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        harness
            .run_pending_migrations(migrations)
            .map(|applied| applied.len())
            .map_err(|e| anyhow::anyhow!("running migrations: {e}"))
    })
    .await
    .context("migration task")?
}

/// Whether the database answers, for readiness.
pub async fn ping(pool: &PgPool) -> bool {
    // A PostgreSQL that accepts connections and never answers is down for readiness within
    // this bound, not after the request's own timeout.
    let probe = async {
        let Ok(mut conn) = pool.get().await else {
            return false;
        };
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .is_ok()
    };
    tokio::time::timeout(PING_TIMEOUT, probe)
        .await
        .unwrap_or(false)
}

/// How long a readiness probe waits for PostgreSQL.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub fn status(pool: &PgPool) -> PoolStatus {
    let s = pool.status();
    PoolStatus {
        size: s.size,
        available: s.available,
        waiting: s.waiting,
        max_size: s.max_size,
    }
}

/// Rows a purge deletes per statement.
pub const PURGE_BATCH: i64 = 1000;

/// What a purge did: rows deleted, in how many batches, and the longest batch (each batch
/// is one statement, so this is the longest any of its row locks was held).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub rows: usize,
    pub batches: usize,
    pub longest_batch: Duration,
}

impl Purged {
    /// Count one batch that deleted `deleted` rows and started at `started`.
    fn batch(&mut self, started: std::time::Instant, deleted: usize) {
        self.longest_batch = self.longest_batch.max(started.elapsed());
        self.rows += deleted;
        self.batches += 1;
    }
}

/// The pause between two batches of a purge, so that requests go first.
const PURGE_PAUSE: Duration = Duration::from_millis(20);

/// Delete expired rows in small batches: `delete_batch` is a `DELETE` of at most `$2` rows
/// older than `$1` (a subselect with `LIMIT`), run again until a batch comes back short.
/// Each batch is its own short statement on a connection taken for it alone, with a pause
/// between, so a large backlog neither holds locks long nor keeps a connection from the
/// requests.
pub async fn purge_in_batches(
    pool: &PgPool,
    delete_batch: &'static str,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Purged> {
    use diesel::sql_types::{BigInt, Timestamptz};
    let mut purged = Purged::default();
    loop {
        let mut conn = pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = std::time::Instant::now();
        let deleted = diesel::sql_query(delete_batch)
            .bind::<Timestamptz, _>(cutoff)
            .bind::<BigInt, _>(PURGE_BATCH)
            .execute(&mut conn)
            .await?;
        drop(conn);
        purged.batch(started, deleted);
        if (deleted as i64) < PURGE_BATCH {
            return Ok(purged);
        }
        tokio::time::sleep(PURGE_PAUSE).await;
    }
}

/// What one batch of [`purge_walk`] answers: the rows it deleted, and the key of the last
/// one (`None` when it deleted none).
#[derive(diesel::QueryableByName)]
struct WalkStep {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    deleted: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    last_at: Option<chrono::DateTime<chrono::Utc>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
    last_id: Option<uuid::Uuid>,
}

/// [`purge_in_batches`] with a cursor, for rows found through an index on `(time, id)`:
/// `delete_batch` deletes at most `$2` rows older than `$1` whose key is at or after
/// `($3, $4)`, in key order, and answers one row `(deleted, last_at, last_id)`. Each batch
/// starts where the last one stopped, so none reads again what an earlier one left behind
/// (rows it skipped or kept), and a large backlog costs the same per batch from the first
/// to the last.
pub async fn purge_walk(
    pool: &PgPool,
    delete_batch: &'static str,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Purged> {
    use diesel::sql_types::{BigInt, Timestamptz, Uuid};
    let mut purged = Purged::default();
    let (mut at, mut id) = (chrono::DateTime::UNIX_EPOCH, uuid::Uuid::nil());
    loop {
        let mut conn = pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = std::time::Instant::now();
        let step: WalkStep = diesel::sql_query(delete_batch)
            .bind::<Timestamptz, _>(cutoff)
            .bind::<BigInt, _>(PURGE_BATCH)
            .bind::<Timestamptz, _>(at)
            .bind::<Uuid, _>(id)
            .get_result(&mut conn)
            .await?;
        drop(conn);
        purged.batch(started, step.deleted as usize);
        match (step.last_at, step.last_id) {
            (Some(last_at), Some(last_id)) if step.deleted >= PURGE_BATCH => {
                (at, id) = (last_at, last_id);
            }
            _ => return Ok(purged),
        }
        tokio::time::sleep(PURGE_PAUSE).await;
    }
}

#[cfg(test)]
mod unavailable_tests {
    use diesel::result::{DatabaseErrorKind, Error};

    fn db_error(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_string()))
    }

    #[test]
    fn a_lost_connection_or_a_stopping_server_is_unavailable_not_internal() {
        for err in [
            db_error(DatabaseErrorKind::UnableToSendCommand, "connection closed"),
            db_error(DatabaseErrorKind::ClosedConnection, "closed"),
            db_error(
                DatabaseErrorKind::UnableToSendCommand,
                "error communicating with the server: Connection reset by peer",
            ),
            db_error(
                DatabaseErrorKind::ReadOnlyTransaction,
                "read-only transaction",
            ),
            db_error(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            db_error(
                DatabaseErrorKind::Unknown,
                "the database system is shutting down",
            ),
            db_error(
                DatabaseErrorKind::Unknown,
                "canceling statement due to statement timeout",
            ),
            Error::BrokenTransactionManager,
            Error::RollbackErrorOnCommit {
                rollback_error: Box::new(Error::NotFound),
                commit_error: Box::new(db_error(
                    DatabaseErrorKind::UnableToSendCommand,
                    "connection closed",
                )),
            },
        ] {
            assert!(super::unavailable(&err).is_some(), "{err:?}");
        }
    }

    #[test]
    fn a_query_that_fails_on_its_own_is_not() {
        for err in [
            db_error(DatabaseErrorKind::UniqueViolation, "duplicate key"),
            db_error(DatabaseErrorKind::Unknown, "syntax error at or near"),
            db_error(
                DatabaseErrorKind::SerializationFailure,
                "could not serialize",
            ),
            Error::NotFound,
        ] {
            assert!(super::unavailable(&err).is_none(), "{err:?}");
        }
    }
}
