//! `stevedore bench floor`: the least an import of a file can cost on this machine, the
//! reference every import figure is a ratio to (machines here differ by 2× and more, so
//! only a ratio measured in the same run means anything).
//!
//! SQLite: one pass that parses the CSV, checks every cell against its field's type and
//! rules (the importer's own `parse_cell`), hashes the row (MD5) and inserts it into a plain
//! table (the 16-byte hash and the checked values as JSON) with a unique index on (org, hash):
//! 10,000 rows per transaction as one statement, a 64 MiB page cache and a larger WAL
//! autocheckpoint, in a fresh database file.
//! PostgreSQL: `COPY … FROM STDIN` of the file into a plain typed table indexed on the key (not
//! unique: the benchmark file repeats some rows on purpose), the fastest way PostgreSQL takes
//! rows in.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use md5::{Digest, Md5};
use sqlx::postgres::{PgPoolCopyExt, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::entities::{EntitySchema, FieldKind, parse_cell};

/// Rows per transaction of the SQLite floor.
const BATCH: usize = 10_000;

/// What the floor measured.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub rows: u64,
    pub seconds: f64,
    /// Rows whose cells all passed their checks.
    pub valid: u64,
}

impl Floor {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-9)
    }
}

/// One batch from the reading thread: `(hash, checked values as JSON)` per valid row, and
/// how many rows were read.
struct Batch {
    rows: Vec<(String, String)>,
    read: u64,
}

/// Reads, checks and hashes `file` on a blocking thread, sending batches of [`BATCH`] rows.
fn read_batches(file: PathBuf, schema: Arc<EntitySchema>) -> tokio::sync::mpsc::Receiver<anyhow::Result<Batch>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let run = || -> anyhow::Result<()> {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&file)?));
            let headers = reader.headers()?.clone();
            // each field's column, by the header that names it
            let columns: Vec<Option<usize>> =
                schema.fields.iter().map(|f| headers.iter().position(|h| h.trim() == f.name())).collect();
            let mut record = csv::StringRecord::new();
            let mut batch = Batch { rows: Vec::with_capacity(BATCH), read: 0 };
            while reader.read_record(&mut record)? {
                batch.read += 1;
                let mut h = Md5::new();
                let mut values = Vec::with_capacity(schema.fields.len());
                let mut valid = true;
                for (f, col) in schema.fields.iter().zip(&columns) {
                    let cell = col.and_then(|c| record.get(c)).unwrap_or("");
                    h.update(cell.as_bytes());
                    h.update([0x1f]);
                    match parse_cell(&f.rule, cell) {
                        Ok(v) => values.push(v),
                        Err(_) => valid = false,
                    }
                }
                if valid {
                    batch.rows.push((hex::encode(h.finalize()), serde_json::Value::Array(values).to_string()));
                }
                if batch.read as usize == BATCH {
                    let full = std::mem::replace(&mut batch, Batch { rows: Vec::with_capacity(BATCH), read: 0 });
                    if tx.blocking_send(Ok(full)).is_err() {
                        return Ok(());
                    }
                }
            }
            if batch.read > 0 {
                let _ = tx.blocking_send(Ok(batch));
            }
            Ok(())
        };
        if let Err(e) = run() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// The SQLite floor over `file`, in a fresh database in `dir`.
pub async fn sqlite(dir: &Path, file: &Path, schema: Arc<EntitySchema>) -> anyhow::Result<Floor> {
    let path = dir.join(format!("floor-{}.db", crate::random_token(4)?));
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .pragma("cache_size", "-65536")
        .pragma("wal_autocheckpoint", "10000");
    let pool =
        SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.context("opening the floor database")?;
    sqlx::query("CREATE TABLE floor_rows (id INTEGER PRIMARY KEY, org_id INTEGER NOT NULL, row_hash BLOB NOT NULL, data TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    sqlx::query("CREATE UNIQUE INDEX floor_rows_hash ON floor_rows (org_id, row_hash)").execute(&pool).await?;
    let started = Instant::now();
    let (mut rows, mut valid) = (0u64, 0u64);
    let mut batches = read_batches(file.to_path_buf(), schema);
    while let Some(batch) = batches.recv().await {
        let batch = batch?;
        rows += batch.read;
        valid += batch.rows.len() as u64;
        let json = serde_json::to_string(&batch.rows)?;
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT OR IGNORE INTO floor_rows (org_id, row_hash, data)
             SELECT 1, unhex(j.value ->> 0), j.value ->> 1 FROM json_each($1) AS j",
        )
        .bind(json)
        .execute(&mut *tx)
        .await
        .context("inserting a batch")?;
        tx.commit().await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(Floor { rows, seconds, valid })
}

/// The PostgreSQL column type a field's cells are copied into. Dates stay text: the
/// benchmark file has deliberately bad ones, which the importer reports and `COPY` cannot.
fn pg_type(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Integer => "BIGINT",
        FieldKind::Decimal => "NUMERIC",
        FieldKind::Boolean => "BOOLEAN",
        _ => "TEXT",
    }
}

/// The PostgreSQL floor: `COPY` of `file` into a plain typed table with a unique index on
/// the key, in a schema of its own that is dropped afterwards.
pub async fn postgres(url: &str, file: &Path, schema: &EntitySchema) -> anyhow::Result<Floor> {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await.context("connecting for the COPY floor")?;
    let ns = format!("floor_{}", crate::random_token(4)?);
    let mut headers = String::new();
    std::fs::File::open(file)?.take(64 * 1024).read_to_string(&mut headers).ok();
    let header_line = headers.lines().next().unwrap_or_default().to_string();
    let columns: Vec<String> = header_line.split(',').map(|h| h.trim().to_string()).collect();
    let defs: Vec<String> = columns
        .iter()
        .map(|c| {
            let kind = schema.field(c).map(|f| f.kind()).unwrap_or(FieldKind::Text);
            format!("\"{}\" {}", c.replace('"', ""), pg_type(kind))
        })
        .collect();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {ns}"))).execute(&pool).await?;
    let result = async {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE TABLE {ns}.floor_rows ({})", defs.join(", "))))
            .execute(&pool)
            .await?;
        let key = schema.key.replace('"', "");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE INDEX floor_rows_key ON {ns}.floor_rows (\"{key}\")")))
            .execute(&pool)
            .await?;
        let started = Instant::now();
        let rows = copy_file_in(&pool, &format!("COPY {ns}.floor_rows FROM STDIN (FORMAT csv, HEADER true)"), file)
            .await
            .context("COPY of the file")?;
        let seconds = started.elapsed().as_secs_f64();
        anyhow::Ok(Floor { rows, seconds, valid: rows })
    }
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {ns} CASCADE"))).execute(&pool).await?;
    pool.close().await;
    result
}

/// What PostgreSQL alone takes to write what an import wrote: its records, then its journal,
/// each read out with `COPY … TO STDOUT` into a file (not timed) and copied back with `COPY …
/// FROM STDIN` into an empty table made `LIKE` it, indexes included (timed). The import
/// phase cannot go below this on this server, whatever the importer does; the COPY floor
/// writes a narrower row into a table with one index.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub records: u64,
    pub records_s: f64,
    pub journal_s: f64,
}

/// Measures [`Written`] for import `import_id` in the connection's schema, with `dir` for
/// the files read out.
pub async fn postgres_written(pool: &sqlx::PgPool, import_id: i64, dir: &Path) -> anyhow::Result<Written> {
    let tables = [
        (
            "records",
            "org_id, entity, record_key, data, row_hash, search_text, import_id, import_row, created_at, updated_at",
        ),
        (
            "import_journal",
            "import_id, op, record_id, record_key, after_hash, before_data, before_hash, before_search, \
             before_import_id, before_import_row, before_created_at, before_updated_at",
        ),
    ];
    let mut times = [(0u64, 0f64); 2];
    for (i, (table, columns)) in tables.into_iter().enumerate() {
        let path = dir.join(format!("written-{table}.copy"));
        {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
            let mut stream = pool
                .copy_out_raw(&format!("COPY (SELECT {columns} FROM {table} WHERE import_id = {import_id}) TO STDOUT"))
                .await
                .with_context(|| format!("reading out {table}"))?;
            while let Some(bytes) = futures_util::StreamExt::next(&mut stream).await {
                std::io::Write::write_all(&mut out, &bytes?)?;
            }
            std::io::Write::flush(&mut out)?;
        }
        let copy = format!("written_{table}");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")))
            .execute(pool)
            .await?;
        let timed = async {
            let started = Instant::now();
            let rows = copy_file_in(pool, &format!("COPY {copy} ({columns}) FROM STDIN"), &path).await?;
            anyhow::Ok((rows, started.elapsed().as_secs_f64()))
        }
        .await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {copy}"))).execute(pool).await?;
        let _ = std::fs::remove_file(&path);
        times[i] = timed.with_context(|| format!("copying {table} back"))?;
    }
    Ok(Written { records: times[0].0, records_s: times[0].1, journal_s: times[1].1 })
}

/// Streams the file at `path` into `statement` (a `COPY … FROM STDIN`), 1 MiB at a time; the
/// rows copied.
async fn copy_file_in(pool: &sqlx::PgPool, statement: &str, path: &Path) -> anyhow::Result<u64> {
    let mut copy = pool.copy_in_raw(statement).await.context("starting COPY")?;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        copy.send(&buf[..n]).await?;
    }
    copy.finish().await.context("finishing COPY")
}
