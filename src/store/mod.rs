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
pub mod api_keys;
pub mod audit;
pub mod checkpoint;
pub mod exports;
pub mod fetched_files;
pub mod imports;
pub mod instances;
pub mod jobs;
pub mod journal;
pub mod login_attempts;
pub mod marketplace;
pub mod onboarding;
pub mod records;
pub mod sessions;
pub mod staging;
pub mod turn;

pub use turn::{WriteTurn, write_turn};

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

/// Starts a transaction that will write, after taking this process's turn to write
/// ([`write_turn`]); the turn is held until the transaction ends. On SQLite it is
/// `BEGIN IMMEDIATE`, taking the write lock up front: a deferred transaction that reads and
/// then writes fails with `SQLITE_BUSY` when another writer committed in between, which
/// `busy_timeout` cannot wait out. PostgreSQL uses row locks instead (`FOR UPDATE`).
#[macro_export]
macro_rules! begin_write {
    ($db:expr, $p:expr) => {{
        let turn = $crate::store::write_turn($db).await;
        let tx = if matches!($db, $crate::store::Db::Sqlite(_)) {
            $p.begin_with("BEGIN IMMEDIATE").await
        } else {
            $p.begin().await
        };
        tx.map(|tx| $crate::store::WriteTx { tx, _turn: turn })
    }};
}

/// [`begin_write!`] for one of a background job's many transactions (a chunk of records, a
/// batch of staged rows, a rollback's chunk); end it with [`commit_bulk!`]. Evaluates to
/// `(transaction, the cache size to restore)`.
///
/// On PostgreSQL `synchronous_commit` is off for it (~4 ms a commit here). A crash of the
/// server may then lose the last such commits, each whole, never a part of one; every one
/// moves its job's cursor (or is forgotten by a job that starts again) in the same
/// transaction, so the job redoes just those. Its last commit (the phase or the import
/// finished) waits for the disk as any other does, and makes every commit before it durable
/// with it: PostgreSQL's log is written in order.
///
/// On SQLite the connection's page cache is raised to [`BULK_CACHE`] for the transaction
/// (background work's connections keep 2 MiB otherwise, see `Db::connect_all_now`): a chunk's
/// random inserts into the records' key and hash indexes dirty more pages than 2 MiB holds,
/// and SQLite writes dirty pages out before the commit once its cache is full (the import
/// phase of 1,000,000 rows took 6.0 s instead of 5.5–5.7 s). A transaction that ends without
/// [`commit_bulk!`] (the chunk found paused or its lease lost, a database error) leaves its
/// connection at 8 MiB until the pool closes it: at most what every background connection
/// had before.
#[macro_export]
macro_rules! begin_bulk_write {
    ($db:expr, $p:expr) => {{
        match $crate::begin_write!($db, $p) {
            Ok(mut tx) => {
                if matches!($db, $crate::store::Db::Postgres(_)) {
                    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await.map(|_| (tx, None))
                } else {
                    match sqlx::query_scalar::<_, i64>("PRAGMA cache_size").fetch_one(&mut *tx).await {
                        Ok(kib) if kib > $crate::store::BULK_CACHE => sqlx::query(sqlx::AssertSqlSafe(format!(
                            "PRAGMA cache_size = {}",
                            $crate::store::BULK_CACHE
                        )))
                        .execute(&mut *tx)
                        .await
                        .map(|_| (tx, Some(kib))),
                        Ok(_) => Ok((tx, None)),
                        Err(e) => Err(e),
                    }
                }
            }
            Err(e) => Err(e),
        }
    }};
}

/// Commits a transaction of [`begin_bulk_write!`], its connection's page cache first set
/// back to its own size (`$restore`).
#[macro_export]
macro_rules! commit_bulk {
    ($tx:ident, $restore:expr) => {{
        if let Some(kib) = $restore {
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA cache_size = {kib}"))).execute(&mut *$tx).await?;
        }
        $tx.commit().await
    }};
}

/// The page cache of a connection in a [`begin_bulk_write!`] transaction, as SQLite's
/// `cache_size` (negative: KiB): 8 MiB at least.
pub const BULK_CACHE: i64 = -8192;

/// [`on_pool!`] for a statement that writes: it waits for this process's turn to write
/// ([`write_turn`]) first, without holding a connection meanwhile.
#[macro_export]
macro_rules! on_writer {
    ($db:expr, $p:ident => $body:expr) => {{
        let _turn = $crate::store::write_turn($db).await;
        $crate::on_pool!($db, $p => $body)
    }};
}

/// A write transaction holding the process's turn to write; derefs to the connection, as
/// sqlx's `Transaction` does.
pub struct WriteTx<'c, DB: sqlx::Database> {
    pub tx: sqlx::Transaction<'c, DB>,
    pub _turn: WriteTurn,
}

impl<DB: sqlx::Database> WriteTx<'_, DB> {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl<DB: sqlx::Database> std::ops::Deref for WriteTx<'_, DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.tx
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for WriteTx<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }
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
        Db::connect_with(url, max_connections, false).await
    }

    /// As [`Db::connect`], with every connection opened now (by the calling thread) and kept
    /// open: a SQLite connection runs its statements on a thread of its own, started by the
    /// thread that opens it, whose scheduling priority it inherits.
    pub async fn connect_all_now(url: &str, connections: u32) -> anyhow::Result<Db> {
        Db::connect_with(url, connections, true).await
    }

    async fn connect_with(url: &str, max_connections: u32, all_now: bool) -> anyhow::Result<Db> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("DATABASE_URL: cannot parse SQLite URL \"{url}\""))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                // 8 MiB of page cache a connection (the 8 of the people's pool held up to
                // 256 MiB at 32 MiB each, for no faster page: a commit of anyone's empties
                // every other connection's cache, and an import commits every few
                // milliseconds; Import History with 100,000 imports: p99 1.2–1.9 ms either
                // way); 2 MiB for background work's (see
                // `jobs::background::sqlite_connections`), raised to 8 MiB in a chunk's
                // transaction (`begin_bulk_write!`): the set-based phases over an import's
                // staged rows read them once, and with 8 MiB on each of the work's
                // connections they kept 30 MiB more for nothing (peak RSS 95–110 MiB at
                // 1,000,000 rows instead of 70–80)
                .pragma("cache_size", if all_now { "-2048" } else { "-8192" })
                // a checkpoint every 40 MB of WAL instead of every 4 MB: an import's chunks
                // are written to the database file in larger, fewer passes. Background
                // work's connections leave checkpoints to a checkpointer beside it
                // (`checkpoint::keep_up`) and run one only past a larger backstop
                .pragma("wal_autocheckpoint", if all_now { checkpoint::BACKSTOP } else { "10000" })
                // the temporary tables (an import's chunk of records read again from the
                // file) keep their rollback journal in memory: a chunk's table reuses the
                // pages the last one freed, and journaling them to a file was a tenth of
                // an import's writing
                .pragma("temp.journal_mode", "memory")
                .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(10));
            let mut pool = SqlitePoolOptions::new().max_connections(max_connections);
            if all_now {
                pool = pool.min_connections(max_connections).idle_timeout(None).max_lifetime(None);
            }
            let pool = pool.connect_with(opts).await.with_context(|| format!("cannot open SQLite database {url}"))?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)
                .context("DATABASE_URL: cannot parse PostgreSQL URL")?
                .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(10));
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .min_connections(if all_now { max_connections } else { 0 })
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

    /// Migrations applied to the database and migrations this build knows: the database is
    /// current when every known one is applied.
    pub async fn migrations(&self) -> anyhow::Result<(i64, i64)> {
        let known = match self {
            Db::Sqlite(_) => SQLITE_MIGRATIONS.iter().count(),
            Db::Postgres(_) => POSTGRES_MIGRATIONS.iter().count(),
        } as i64;
        let applied = on_pool!(self, p => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(p)
        .await)
        .context("reading applied migrations")?;
        Ok((applied, known))
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

/// Whether an error is SQLite saying the database is busy or locked (`SQLITE_BUSY`,
/// `SQLITE_LOCKED` and their extended codes): another process's writer held on past the busy
/// timeout, or a snapshot went stale. Worth another try; nothing was written.
pub fn is_busy(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(cause.downcast_ref::<sqlx::Error>(), Some(sqlx::Error::Database(d))
            if d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)))
    })
}

/// Runs `write` again when SQLite says busy, up to three more times (50, 100, 200 ms apart):
/// for the writes a person waits on (sessions), which must not fail because another process
/// (a separate `stevedore worker`) held the lock a moment too long. Within one process the
/// write turns already queue writers.
pub async fn retry_busy<T, F, Fut>(mut write: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut wait = Duration::from_millis(50);
    let mut tries = 0;
    loop {
        match write().await {
            Err(e) if tries < 3 && is_busy(&e) => {
                tracing::warn!(error = %e, "the database was busy; trying again");
                tokio::time::sleep(wait).await;
                wait *= 2;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Whether an error is a unique-constraint violation (the same on both backends).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_write_that_finds_another_process_holding_the_lock_is_tried_again() {
        use std::str::FromStr;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("busy.db").display());
        let db = Db::connect(&url, 2).await.unwrap();
        let Db::Sqlite(p) = &db else { unreachable!() };
        sqlx::query("CREATE TABLE t (n INTEGER)").execute(p).await.unwrap();
        // another process, as far as SQLite knows: its own connection, no busy timeout
        let opts = SqliteConnectOptions::from_str(&url).unwrap().busy_timeout(Duration::ZERO);
        let other = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await.unwrap();
        let mut held = other.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut *held).await.unwrap();
        let impatient = Db::Sqlite(SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap());
        let write = || async {
            on_pool!(&impatient, p => sqlx::query("INSERT INTO t VALUES (2)").execute(p).await.map(|_| ()))
                .context("writing")
        };
        let refused = write().await.unwrap_err();
        assert!(is_busy(&refused), "{refused:#}");
        // the lock is let go while the retries wait: the write goes through
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(80)).await;
            held.commit().await.unwrap();
        });
        retry_busy(write).await.unwrap();
        release.await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(p).await.unwrap();
        assert_eq!(n, 2);
        assert!(!is_busy(&anyhow::anyhow!("something else")));
    }

    /// The page cache each of a connection's transactions sees, as `begin_bulk_write!` and
    /// `commit_bulk!` leave it: one pool of background work's connections (2 MiB), one of
    /// people's (8 MiB already).
    #[tokio::test]
    async fn a_bulk_transaction_has_8_mib_of_cache_and_gives_the_connection_its_own_back() {
        async fn sizes(db: &Db) -> anyhow::Result<(i64, i64, i64)> {
            let Db::Sqlite(p) = db else { unreachable!() };
            const SIZE: &str = "PRAGMA cache_size";
            let before: i64 = sqlx::query_scalar(SIZE).fetch_one(&mut *p.acquire().await?).await?;
            let (mut tx, cache) = crate::begin_bulk_write!(db, p)?;
            let inside: i64 = sqlx::query_scalar(SIZE).fetch_one(&mut *tx).await?;
            sqlx::query("INSERT INTO t VALUES (1)").execute(&mut *tx).await?;
            crate::commit_bulk!(tx, cache)?;
            let after: i64 = sqlx::query_scalar(SIZE).fetch_one(&mut *p.acquire().await?).await?;
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(p).await?;
            anyhow::ensure!(n > 0, "the transaction committed");
            Ok((before, inside, after))
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cache.db").display());
        let people = Db::connect(&url, 1).await.unwrap();
        let Db::Sqlite(p) = &people else { unreachable!() };
        sqlx::query("CREATE TABLE t (n INTEGER)").execute(p).await.unwrap();
        let background = Db::connect_all_now(&url, 1).await.unwrap();
        assert_eq!(sizes(&background).await.unwrap(), (-2048, BULK_CACHE, -2048));
        assert_eq!(sizes(&people).await.unwrap(), (-8192, -8192, -8192), "8 MiB already: left as it is");
    }
}
