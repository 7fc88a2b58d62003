//! Test databases: each a copy of a migrated template, dropped when the test ends.

use std::sync::{Arc, Mutex};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::EmbeddedMigrations;
use tokio::sync::OnceCell;

use super::admin_database_url;

/// A database of one test, copied from the migrated template; dropped (with whatever is
/// still connected to it) when the last holder lets go of it. Dereferences to its URL.
pub struct TestDatabase {
    url: String,
    name: String,
}

impl TestDatabase {
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl std::ops::Deref for TestDatabase {
    type Target = str;

    fn deref(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&admin_database_url())
                    .await
                    .ok()?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// The migrated template of `kind` (`auth`, `todo`), built once per set of migrations and
/// kept between runs: its name carries a hash of the files of `migrations/<kind>` (names
/// relative to it, and contents), so a changed migration builds a new one, and checkouts
/// with the same migrations share one. Old templates are left alone (another checkout may
/// be using one); dropping them is safe whenever no test runs.
async fn template(kind: &str, migrations: EmbeddedMigrations) -> String {
    static TEMPLATES: Mutex<Vec<(String, Arc<OnceCell<String>>)>> = Mutex::new(Vec::new());
    let cell = {
        let mut templates = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
        match templates.iter().find(|(k, _)| k == kind) {
            Some((_, cell)) => cell.clone(),
            None => {
                let cell = Arc::new(OnceCell::new());
                templates.push((kind.to_owned(), cell.clone()));
                cell
            }
        }
    };
    cell.get_or_init(|| build_template(kind, migrations))
        .await
        .clone()
}

async fn build_template(kind: &str, migrations: EmbeddedMigrations) -> String {
    let name = format!("test_tpl_{kind}_{:016x}", migrations_hash(kind));
    let mut conn = admin_connection().await;
    // One builder at a time, across test processes too.
    diesel::sql_query("SELECT pg_advisory_lock(4242)")
        .execute(&mut conn)
        .await
        .expect("take the template lock");
    let existing = diesel::sql_query("SELECT datname FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(&name)
        .load::<DatabaseName>(&mut conn)
        .await
        .expect("look for the template");
    if existing.is_empty() {
        // Built under another name and renamed once migrated, so a run that dies halfway
        // leaves no broken template behind.
        let building = format!("{name}_building");
        for sql in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            diesel::sql_query(sql)
                .execute(&mut conn)
                .await
                .expect("create the template");
        }
        crate::db::run_migrations(&database_url(&building), migrations)
            .await
            .expect("migrate the template");
        diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}"))
            .execute(&mut conn)
            .await
            .expect("name the template");
    }
    diesel::sql_query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut conn)
        .await
        .expect("release the template lock");
    name
}

#[derive(diesel::QueryableByName)]
struct DatabaseName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[expect(dead_code, reason = "only whether a row comes back matters")]
    datname: String,
}

/// A hash of every file under `migrations/<kind>`.
fn migrations_hash(kind: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../migrations/{kind}"));
    let mut files = Vec::new();
    let mut pending = vec![dir.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hasher = std::hash::DefaultHasher::new();
    for file in files {
        file.strip_prefix(&dir)
            .unwrap_or(&file)
            .to_string_lossy()
            .hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

async fn admin_connection() -> AsyncPgConnection {
    AsyncPgConnection::establish(&admin_database_url())
        .await
        .expect("TEST_DATABASE_URL must point at a running PostgreSQL (deploy/dev test starts one)")
}

fn database_url(name: &str) -> String {
    let admin = admin_database_url();
    let (base, _) = admin.rsplit_once('/').expect("a database URL has a path");
    format!("{base}/{name}")
}

/// A fresh, migrated database of its own for one test (a copy of the template), dropped
/// when the last holder lets go of it.
pub async fn fresh_database(kind: &str, migrations: EmbeddedMigrations) -> Arc<TestDatabase> {
    let template = template(kind, migrations).await;
    let name = format!("test_{kind}_{}", uuid::Uuid::new_v4().simple());
    diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .execute(&mut admin_connection().await)
        .await
        .expect("create a test database");
    Arc::new(TestDatabase {
        url: database_url(&name),
        name,
    })
}
