//! Storage. Every SQL statement of the app lives below this module, written once with
//! `$1`-style placeholders that both SQLite and PostgreSQL accept; [`on_pool!`] runs it
//! on whichever pool the app was started with. Dialect differences stay in here.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub mod accounts;
pub mod audit;
pub mod exports;
pub mod fetched_files;
pub mod imports;
pub mod jobs;
pub mod journal;
pub mod login_attempts;
pub mod marketplace;
pub mod records;
pub mod sessions;
pub mod staging;

/// Runs `$body` with `$p` bound to the concrete pool, once per backend.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($p) => $body,
            $crate::store::Db::Postgres($p) => $body,
        }
    };
}

/// Starts a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`, taking the
/// write lock up front: a deferred transaction that reads and then writes fails with
/// `SQLITE_BUSY` when another writer committed in between, which `busy_timeout` cannot
/// wait out. PostgreSQL uses row locks instead (`FOR UPDATE`).
#[macro_export]
macro_rules! begin_write {
    ($db:expr, $p:expr) => {
        if matches!($db, $crate::store::Db::Sqlite(_)) {
            $p.begin_with("BEGIN IMMEDIATE").await
        } else {
            $p.begin().await
        }
    };
}

/// In a write transaction `$tx` on `$db`: whether the job of `$fence` (an
/// `Option<&Fence>`; None checks nothing) still runs under that lease. On PostgreSQL the
/// job's row stays locked until the transaction ends, so no claim can take the job over
/// between the check and the commit; SQLite's writer is alone in its transaction anyway.
#[macro_export]
macro_rules! fence_holds {
    ($db:expr, $tx:ident, $fence:expr) => {{
        match $fence {
            None => true,
            Some(f) => {
                let sql = if matches!($db, $crate::store::Db::Postgres(_)) {
                    "SELECT id FROM jobs WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND status = 'running' FOR UPDATE"
                } else {
                    "SELECT id FROM jobs WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND status = 'running'"
                };
                let f: &$crate::domain::jobs::Fence = f;
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(f.job_id)
                    .bind(&f.owner)
                    .bind(f.attempt)
                    .fetch_optional(&mut *$tx)
                    .await
                    .context("checking the job's lease")?
                    .is_some()
            }
        }
    }};
}

/// The database, SQLite (embedded default) or PostgreSQL (several instances).
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`). A SQLite file is created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("DATABASE_URL: cannot parse SQLite URL \"{url}\""))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .pragma("cache_size", "-32768")
                .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .connect_with(opts)
                .await
                .with_context(|| format!("cannot open SQLite database {url}"))?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)
                .context("DATABASE_URL: cannot parse PostgreSQL URL")?
                .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(10));
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .context("cannot connect to PostgreSQL (check DATABASE_URL and that the server is running)")?;
            Ok(Db::Postgres(pool))
        } else {
            anyhow::bail!(
                "DATABASE_URL must start with sqlite:// or postgres:// (got \"{}\")",
                url.split(':').next().unwrap_or_default()
            )
        }
    }

    /// Applies every migration not applied yet; returns how many there are in all.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        match self {
            Db::Sqlite(p) => {
                SQLITE_MIGRATIONS.run(p).await.context("applying SQLite migrations")?;
                Ok(SQLITE_MIGRATIONS.iter().count())
            }
            Db::Postgres(p) => {
                POSTGRES_MIGRATIONS.run(p).await.context("applying PostgreSQL migrations")?;
                Ok(POSTGRES_MIGRATIONS.iter().count())
            }
        }
    }

    /// The backend's name, for logs and the health check.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> anyhow::Result<()> {
        on_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ())).context("database did not answer")
    }

    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}

/// Refreshes PostgreSQL's statistics of `tables` (fixed names of ours, never input) after
/// bulk writes, so plans fit the rows actually there (autovacuum catches up too late for
/// work that runs right after). SQLite plans by its indexes alone: nothing to do there.
pub async fn analyze(db: &Db, tables: &[&'static str]) -> anyhow::Result<()> {
    if let Db::Postgres(p) = db {
        let sql = format!("ANALYZE {}", tables.join(", "));
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(p).await.context("analyzing")?;
    }
    Ok(())
}

/// `'a', 'b'`: the stored names of `stages`, for a `stage IN (…)` clause. The names are
/// the domain's own constants, never input, so they are safe to write into SQL.
pub fn stage_list(stages: &[crate::domain::imports::Stage]) -> String {
    let names: Vec<String> = stages.iter().map(|s| format!("'{}'", s.as_str())).collect();
    if names.is_empty() { "NULL".into() } else { names.join(", ") }
}

/// Whether an error is a unique-constraint violation (the same on both backends).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
