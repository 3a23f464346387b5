//! The staged rows of an import (`import_rows`, `import_row_values`).
//!
//! Validation reads the file once and stages every row: its state, the digest of its cells,
//! its key and, when it parsed, the record it will become. The later phases are set-based
//! statements over the staged rows, each leaving out rows with an issue; what stays
//! `pending` is what the import phase copies into records, a chunk per transaction.
//!
//! Row states: `pending` (to import), `malformed`, `duplicate` (repeated in the file),
//! `conflict` (key used by another row), `invalid` (a value or reference is wrong),
//! `unchanged` (identical to the stored record), `skipped` (a delete naming no record),
//! `failed` (its chunk could not store it).
//! A file or image URL that could not be fetched makes its row `invalid` too.
//!
//! Exactly once: a chunk's records, its counts and the import's cursor (`next_row`) are
//! written in one transaction that first moves the cursor from where the chunk started.
//! If another worker already moved it (a job taken over), the chunk is rolled back.
//!
//! Issues written here start with empty `cells`; `rows_without_cells` / `set_cells` let the
//! caller fill them from the file in one ordered pass.
//!
//! Here: the staged rows' types, one batch's insert, and what every part shares. The
//! set-based phases are in [`checks`], the chunk transactions in [`chunks`] (merge and
//! overwrite) and [`removals`] (delete, overwrite's cleanup, failed chunks), purging and
//! expiry in [`lifecycle`].

pub mod checks;
pub mod chunks;
mod direct;
pub mod lifecycle;
pub mod removals;

pub use checks::*;
pub use chunks::*;
pub use lifecycle::*;
pub use removals::*;

use anyhow::Context;

use super::Db;
use crate::{on_pool, on_writer};

/// One row as the file pass staged it.
#[derive(Debug, Clone, Default)]
pub struct StagedRow {
    pub row_number: i64,
    pub state: &'static str,
    pub digest: [u8; 16],
    pub record_key: String,
    /// What parsing found wrong; None when every field parsed.
    pub problem: Option<String>,
    pub data: Option<String>,
    pub row_hash: Option<String>,
    pub search_text: Option<String>,
}

/// A staged row's reference (`kind = "ref"`, `target` the entity) or unique value.
#[derive(Debug, Clone)]
pub struct StagedValue {
    pub row_number: i64,
    pub kind: &'static str,
    pub field: String,
    pub target: String,
    pub value: String,
}

/// An issue found while staging (a malformed row), with its cells.
#[derive(Debug, Clone)]
pub struct StagedIssue {
    pub row_number: i64,
    pub message: String,
    pub cells: String,
}

/// The SELECT that turns a JSON array of arrays (bound as `$2`) into rows, its columns
/// named `c0`, `c1`, … with the given SQL types; each backend's JSON functions do the work,
/// so a whole batch is one bound value rather than thousands.
pub(crate) fn from_json(db: &Db, types: &[&str]) -> String {
    match db {
        Db::Sqlite(_) => {
            let cols: Vec<String> = (0..types.len()).map(|i| format!("j.value ->> {i} AS c{i}")).collect();
            format!("SELECT {} FROM json_each($2) AS j", cols.join(", "))
        }
        Db::Postgres(_) => {
            let cols: Vec<String> =
                types.iter().enumerate().map(|(i, t)| format!("CAST(j.v ->> {i} AS {t}) AS c{i}")).collect();
            format!("SELECT {} FROM json_array_elements(CAST($2 AS TEXT)::json) AS j(v)", cols.join(", "))
        }
    }
}

/// Rows one statement deletes when staging is cleared or purged on SQLite, so no delete
/// holds the one write lock long.
const DELETE_BATCH: i64 = 20_000;

/// Deletes an import's rows from a staging table (`column` tells rows apart within the
/// import): on SQLite a batch per statement, on PostgreSQL in one.
pub(super) async fn delete_staged(db: &Db, table: &'static str, column: &'static str, id: i64) -> anyhow::Result<()> {
    let sql = match db {
        Db::Postgres(_) => format!("DELETE FROM {table} WHERE import_id = $1"),
        Db::Sqlite(_) => format!(
            "DELETE FROM {table} WHERE import_id = $1 AND {column} IN
               (SELECT {column} FROM {table} WHERE import_id = $1 ORDER BY {column} LIMIT {DELETE_BATCH})"
        ),
    };
    loop {
        let n = on_writer!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .with_context(|| format!("deleting from {table}"))?;
        if n == 0 || matches!(db, Db::Postgres(_)) {
            return Ok(());
        }
    }
}

/// Forgets what an earlier validation run staged, and its issues.
#[tracing::instrument(skip(db))]
pub async fn clear(db: &Db, id: i64) -> anyhow::Result<()> {
    for (table, column) in [
        ("import_rows", "row_number"),
        ("import_row_values", "row_number"),
        ("import_keys", "record_key"),
        ("import_issues", "id"),
        ("import_issue_cells", "row_number"),
    ] {
        delete_staged(db, table, column, id).await?;
    }
    on_writer!(db, p => sqlx::query("UPDATE imports SET staging_purged_at = NULL WHERE id = $1")
        .bind(id)
        .execute(p)
        .await
        .map(|_| ()))
    .context("clearing staging mark")
}

/// Stores one batch of staged rows, their values and issues, in one transaction.
#[tracing::instrument(skip(db, rows, values, issues), fields(rows = rows.len()))]
pub async fn insert(
    db: &Db,
    id: i64,
    rows: &[StagedRow],
    values: &[StagedValue],
    issues: &[StagedIssue],
) -> anyhow::Result<()> {
    if let Db::Postgres(p) = db {
        return copy_staged(db, p, id, rows, values, issues).await;
    }
    // (statement, its rows as JSON, what it does) for each non-empty part
    let mut parts: Vec<(String, String, &str)> = vec![];
    if !values.is_empty() {
        let json = serde_json::to_string(
            &values.iter().map(|v| (v.row_number, v.kind, &v.field, &v.target, &v.value)).collect::<Vec<_>>(),
        )?;
        let sql = format!(
            "INSERT INTO import_row_values (import_id, row_number, kind, field, target, value)
             SELECT $1, c0, c1, c2, c3, c4 FROM ({}) AS x",
            from_json(db, &["BIGINT", "TEXT", "TEXT", "TEXT", "TEXT"])
        );
        parts.push((sql, json, "staging row values"));
    }
    if !issues.is_empty() {
        let json =
            serde_json::to_string(&issues.iter().map(|i| (i.row_number, &i.message, &i.cells)).collect::<Vec<_>>())?;
        let sql = format!(
            "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
             SELECT $1, c0, 'error', c1, c2 FROM ({}) AS x",
            from_json(db, &["BIGINT", "TEXT", "TEXT"])
        );
        parts.push((sql, json, "storing issues"));
    }
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting staging transaction")?;
        // the rows as bound values, anonymous parameters (SQLite finds a numbered one by a walk
        // over all of them): no JSON to build and take apart
        for part in rows.chunks(STAGE_ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO import_rows (import_id, row_number, state, digest_hi, digest_lo, record_key, problem, data,
                                          row_hash, search_text) VALUES ",
            );
            sql.push_str(&vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; part.len()].join(","));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in part {
                let (hi, lo) = digest_halves(&r.digest);
                q = q
                    .bind(id)
                    .bind(r.row_number)
                    .bind(r.state)
                    .bind(hi)
                    .bind(lo)
                    .bind(r.record_key.as_str())
                    .bind(r.problem.as_deref())
                    .bind(r.data.as_deref())
                    .bind(r.row_hash.as_deref())
                    .bind(r.search_text.as_deref());
            }
            q.execute(&mut *tx).await.context("staging rows")?;
        }
        for (sql, json, what) in parts {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(json).execute(&mut *tx).await.context(what)?;
        }
        tx.commit().await.context("committing staged rows")
    })
}

/// Staged rows per statement on SQLite (ten parameters each, under SQLite's limit).
const STAGE_ROWS_PER_INSERT: usize = 500;

/// A digest as the two integers staging keeps it in.
pub fn digest_halves(digest: &[u8; 16]) -> (i64, i64) {
    let (hi, lo) = digest.split_at(8);
    (i64::from_be_bytes(hi.try_into().unwrap_or_default()), i64::from_be_bytes(lo.try_into().unwrap_or_default()))
}

/// PostgreSQL: the batch streamed with `COPY … FROM STDIN` (text format) into the staging
/// tables, in one transaction: no statement to parse per row, no JSON to build and take apart.
async fn copy_staged(
    db: &Db,
    p: &sqlx::PgPool,
    id: i64,
    rows: &[StagedRow],
    values: &[StagedValue],
    issues: &[StagedIssue],
) -> anyhow::Result<()> {
    let import = id.to_string();
    let mut parts: Vec<(&str, Vec<u8>)> = vec![];
    if !rows.is_empty() {
        let mut out = Vec::with_capacity(rows.len() * 256);
        for r in rows {
            let (hi, lo) = digest_halves(&r.digest);
            let (hi, lo) = (hi.to_string(), lo.to_string());
            let n = r.row_number.to_string();
            copy_line(
                &mut out,
                &[
                    Some(&import),
                    Some(&n),
                    Some(r.state),
                    Some(&hi),
                    Some(&lo),
                    Some(&r.record_key),
                    r.problem.as_deref(),
                    r.data.as_deref(),
                    r.row_hash.as_deref(),
                    r.search_text.as_deref(),
                ],
            );
        }
        parts.push((
            "COPY import_rows (import_id, row_number, state, digest_hi, digest_lo, record_key, problem, data, row_hash,
                               search_text) FROM STDIN",
            out,
        ));
    }
    if !values.is_empty() {
        let mut out = vec![];
        for v in values {
            let n = v.row_number.to_string();
            copy_line(
                &mut out,
                &[Some(&import), Some(&n), Some(v.kind), Some(&v.field), Some(&v.target), Some(&v.value)],
            );
        }
        parts.push(("COPY import_row_values (import_id, row_number, kind, field, target, value) FROM STDIN", out));
    }
    if !issues.is_empty() {
        let mut out = vec![];
        for i in issues {
            let n = i.row_number.to_string();
            copy_line(&mut out, &[Some(&import), Some(&n), Some("error"), Some(&i.message), Some(&i.cells)]);
        }
        parts.push(("COPY import_issues (import_id, row_number, kind, message, cells) FROM STDIN", out));
    }
    let (mut tx, cache) = crate::begin_bulk_write!(db, p).context("starting staging transaction")?;
    for (statement, data) in parts {
        let mut copy = tx.copy_in_raw(statement).await.context("starting COPY of staged rows")?;
        if let Err(e) = copy.send(data).await {
            let _ = copy.abort("staging failed").await;
            return Err(e).context("sending staged rows");
        }
        copy.finish().await.context("finishing COPY of staged rows")?;
    }
    crate::commit_bulk!(tx, cache).context("committing staged rows")
}

/// One line of `COPY … FROM STDIN` text format: fields by tabs, `\N` for NULL, and the
/// backslash, tab, newline and carriage return escaped.
fn copy_line(out: &mut Vec<u8>, fields: &[Option<&str>]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match f {
            None => out.extend_from_slice(b"\\N"),
            Some(text) => {
                for b in text.bytes() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        _ => out.push(b),
                    }
                }
            }
        }
    }
    out.push(b'\n');
}

/// Refreshes PostgreSQL's statistics of the staging tables and records after bulk writes,
/// so the set-based phases get join plans for the rows actually there.
pub async fn analyze(db: &Db) -> anyhow::Result<()> {
    super::analyze(db, &["import_rows", "import_row_values", "records"]).await
}

/// Whether every one of the first `probe` pending rows of the import has its record staged.
pub async fn records_staged(db: &Db, id: i64, probe: i64) -> anyhow::Result<bool> {
    on_pool!(db, p => sqlx::query_scalar::<_, bool>(
        "SELECT NOT EXISTS (SELECT 1 FROM (SELECT data FROM import_rows WHERE import_id = $1 AND state = 'pending'
                                           ORDER BY row_number LIMIT $2) f WHERE f.data IS NULL)",
    )
    .bind(id)
    .bind(probe)
    .fetch_one(p)
    .await)
    .context("looking for staged records")
}

/// The data of the first `limit` rows waiting to be imported.
pub async fn sample(db: &Db, id: i64, limit: i64) -> anyhow::Result<Vec<String>> {
    on_pool!(db, p => sqlx::query_scalar::<_, String>(
        "SELECT data FROM import_rows WHERE import_id = $1 AND state = 'pending' AND data IS NOT NULL
         ORDER BY row_number LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(p)
    .await)
    .context("loading sample rows")
}

#[cfg(test)]
mod tests {
    use super::copy_line;

    #[test]
    fn copy_lines_escape_what_the_text_format_needs() {
        let mut out = vec![];
        copy_line(&mut out, &[Some("a\tb"), None, Some("line\nnext\r"), Some("back\\slash"), Some("")]);
        assert_eq!(String::from_utf8(out).unwrap(), "a\\tb\t\\N\tline\\nnext\\r\tback\\\\slash\t\n");
    }
}
