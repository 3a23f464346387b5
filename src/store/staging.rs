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

use anyhow::Context;

use super::Db;
use crate::domain::ids::OrgId;
use crate::domain::imports::DuplicateHandling;
use crate::files::fetch::Fetched;
use crate::on_pool;

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

/// Forgets what an earlier validation run staged, and its issues.
pub async fn clear(db: &Db, id: i64) -> anyhow::Result<()> {
    for table in ["import_rows", "import_row_values", "import_keys", "import_issues", "import_issue_cells"] {
        let sql = format!("DELETE FROM {table} WHERE import_id = $1");
        on_pool!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).execute(p).await.map(|_| ()))
            .with_context(|| format!("clearing {table}"))?;
    }
    on_pool!(db, p => sqlx::query("UPDATE imports SET staging_purged_at = NULL WHERE id = $1")
        .bind(id)
        .execute(p)
        .await
        .map(|_| ()))
    .context("clearing staging mark")
}

/// Stores one batch of staged rows, their values and issues, in one transaction.
pub async fn insert(
    db: &Db,
    id: i64,
    rows: &[StagedRow],
    values: &[StagedValue],
    issues: &[StagedIssue],
) -> anyhow::Result<()> {
    // (statement, its rows as JSON, what it does) for each non-empty part
    let mut parts: Vec<(String, String, &str)> = vec![];
    if !rows.is_empty() {
        let json = serde_json::to_string(
            &rows
                .iter()
                .map(|r| {
                    let (hi, lo) = r.digest.split_at(8);
                    (
                        r.row_number,
                        r.state,
                        i64::from_be_bytes(hi.try_into().unwrap_or_default()),
                        i64::from_be_bytes(lo.try_into().unwrap_or_default()),
                        &r.record_key,
                        &r.problem,
                        &r.data,
                        &r.row_hash,
                        &r.search_text,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        let sql = format!(
            "INSERT INTO import_rows (import_id, row_number, state, digest_hi, digest_lo, record_key, problem, data,
                                      row_hash, search_text)
             SELECT $1, c0, c1, c2, c3, c4, c5, c6, c7, c8 FROM ({}) AS x",
            from_json(db, &["BIGINT", "TEXT", "BIGINT", "BIGINT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT"])
        );
        parts.push((sql, json, "staging rows"));
    }
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
        for (sql, json, what) in parts {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(json).execute(&mut *tx).await.context(what)?;
        }
        tx.commit().await.context("committing staged rows")
    })
}

/// Refreshes PostgreSQL's statistics of the staging tables and records after bulk writes,
/// so the set-based phases get join plans for the rows actually there (autovacuum catches
/// up too late for a job that runs right after). SQLite plans by its indexes alone.
pub async fn analyze(db: &Db) -> anyhow::Result<()> {
    if let Db::Postgres(p) = db {
        sqlx::query("ANALYZE import_rows, import_row_values, records").execute(p).await.context("analyzing")?;
    }
    Ok(())
}

/// Runs `issues_sql` (which inserts issues of `kind` for some pending rows) and then moves
/// the pending rows that now have such an issue to `state`, in one transaction; returns how
/// many rows moved.
async fn leave_out(
    db: &Db,
    id: i64,
    issues_sql: String,
    binds: &[Bind<'_>],
    kind: &str,
    state: &str,
) -> anyhow::Result<i64> {
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(issues_sql)).bind(id);
        for b in binds {
            q = match b {
                Bind::Int(v) => q.bind(*v),
                Bind::Text(v) => q.bind(*v),
            };
        }
        q.execute(&mut *tx).await.context("recording issues")?;
        let moved = sqlx::query(
            "UPDATE import_rows SET state = $3 WHERE import_id = $1 AND state = 'pending'
               AND row_number IN (SELECT row_number FROM import_issues WHERE import_id = $1 AND kind = $2)",
        )
        .bind(id)
        .bind(kind)
        .bind(state)
        .execute(&mut *tx)
        .await
        .context("leaving rows out")?
        .rows_affected();
        tx.commit().await.context("committing")?;
        Ok(moved as i64)
    })
}

/// A value bound after the import id (`$1`) in `leave_out`'s statement.
enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

/// Preparsing: rows repeated within the file, per `duplicate_handling`. Returns how many
/// rows were left out.
pub async fn mark_repeated_rows(db: &Db, id: i64, handling: DuplicateHandling) -> anyhow::Result<i64> {
    let (message, only_later) = match handling {
        DuplicateHandling::IgnoreAll => (
            "CASE WHEN r.row_number = d.first_row
                  THEN 'row ' || CAST(r.row_number AS TEXT) || ' appears ' || CAST(d.copies AS TEXT)
                       || ' times in the file; every copy is left out (duplicate handling: ignore all)'
                  ELSE 'row ' || CAST(r.row_number AS TEXT) || ' repeats row ' || CAST(d.first_row AS TEXT)
                       || '; every copy is left out (duplicate handling: ignore all)' END",
            "",
        ),
        DuplicateHandling::UseFirst => (
            "'row ' || CAST(r.row_number AS TEXT) || ' repeats row ' || CAST(d.first_row AS TEXT)
             || '; only the first copy is imported'",
            "AND r.row_number > d.first_row",
        ),
    };
    let sql = format!(
        "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
         SELECT $1, r.row_number, 'duplicate', {message}, ''
         FROM import_rows r
         JOIN (SELECT digest_hi, digest_lo, MIN(row_number) AS first_row, COUNT(*) AS copies FROM import_rows
               WHERE import_id = $1 AND state = 'pending' GROUP BY digest_hi, digest_lo HAVING COUNT(*) > 1) d
           ON d.digest_hi = r.digest_hi AND d.digest_lo = r.digest_lo
         WHERE r.import_id = $1 AND r.state = 'pending' {only_later}"
    );
    leave_out(db, id, sql, &[], "duplicate", "duplicate").await
}

/// Transforming: a key used by an earlier row of the file with other values.
pub async fn mark_key_conflicts(db: &Db, id: i64, key_field: &str) -> anyhow::Result<i64> {
    let sql = "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
         SELECT $1, r.row_number, 'error', 'row ' || CAST(r.row_number AS TEXT) || ', ' || $2 || ': \"' || r.record_key
                || '\" is also in row ' || CAST(k.first_row AS TEXT)
                || ' with other values; a record can appear only once in a file', ''
         FROM import_rows r
         JOIN (SELECT record_key, MIN(row_number) AS first_row FROM import_rows
               WHERE import_id = $1 AND state = 'pending' AND record_key <> '' GROUP BY record_key HAVING COUNT(*) > 1) k
           ON k.record_key = r.record_key
         WHERE r.import_id = $1 AND r.state = 'pending' AND r.row_number > k.first_row";
    leave_out(db, id, sql.to_string(), &[Bind::Text(key_field)], "error", "conflict").await
}

/// Parsing: rows with a value that is not of its field's type or breaks its rules.
pub async fn mark_parse_errors(db: &Db, id: i64) -> anyhow::Result<i64> {
    let sql = "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
         SELECT $1, row_number, 'error', 'row ' || CAST(row_number AS TEXT) || ', ' || problem, ''
         FROM import_rows WHERE import_id = $1 AND state = 'pending' AND problem IS NOT NULL";
    leave_out(db, id, sql.to_string(), &[], "error", "invalid").await
}

/// Validation: references to records that do not exist, and unique values used by another
/// stored record or by an earlier row of the file; one issue per row naming every problem.
pub async fn mark_reference_problems(db: &Db, org: OrgId, id: i64, entity: &str) -> anyhow::Result<i64> {
    let agg = match db {
        Db::Sqlite(_) => "group_concat(p.msg, '; ')",
        Db::Postgres(_) => "string_agg(p.msg, '; ')",
    };
    let sql = format!(
        "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
         SELECT $1, p.row_number, 'error', 'row ' || CAST(p.row_number AS TEXT) || ', ' || {agg}, ''
         FROM (
           SELECT v.row_number, v.field || ': no ' || v.target || ' record has the key \"' || v.value || '\"' AS msg
           FROM import_row_values v
           JOIN import_rows s ON s.import_id = v.import_id AND s.row_number = v.row_number
           WHERE v.import_id = $1 AND v.kind = 'ref' AND s.state = 'pending'
             AND NOT EXISTS (SELECT 1 FROM records r WHERE r.org_id = $2 AND r.entity = v.target AND r.record_key = v.value)
           UNION ALL
           SELECT v.row_number, v.field || ': \"' || v.value || '\" is already used by ' || r.record_key AS msg
           FROM import_row_values v
           JOIN import_rows s ON s.import_id = v.import_id AND s.row_number = v.row_number
           JOIN record_unique_values u ON u.org_id = $2 AND u.entity = $3 AND u.field = v.field AND u.value = v.value
           JOIN records r ON r.id = u.record_id
           WHERE v.import_id = $1 AND v.kind = 'unique' AND s.state = 'pending' AND r.record_key <> s.record_key
           UNION ALL
           SELECT v.row_number, v.field || ': \"' || v.value || '\" is also in row ' || CAST(f.first_row AS TEXT) AS msg
           FROM import_row_values v
           JOIN import_rows s ON s.import_id = v.import_id AND s.row_number = v.row_number
           JOIN (SELECT v2.field, v2.value, MIN(v2.row_number) AS first_row
                 FROM import_row_values v2
                 JOIN import_rows s2 ON s2.import_id = v2.import_id AND s2.row_number = v2.row_number
                 WHERE v2.import_id = $1 AND v2.kind = 'unique' AND s2.state = 'pending'
                 GROUP BY v2.field, v2.value HAVING COUNT(*) > 1) f
             ON f.field = v.field AND f.value = v.value
           WHERE v.import_id = $1 AND v.kind = 'unique' AND s.state = 'pending' AND v.row_number > f.first_row
         ) p
         GROUP BY p.row_number"
    );
    leave_out(db, id, sql, &[Bind::Int(org.get()), Bind::Text(entity)], "error", "invalid").await
}

/// Validation: rows identical to the stored record with their key change nothing.
pub async fn mark_unchanged(db: &Db, org: OrgId, id: i64, entity: &str) -> anyhow::Result<i64> {
    let sql = "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
         SELECT $1, s.row_number, 'duplicate', 'row ' || CAST(s.row_number AS TEXT)
                || ' is identical to the stored record ' || s.record_key || '; nothing to change', ''
         FROM import_rows s
         WHERE s.import_id = $1 AND s.state = 'pending'
           AND EXISTS (SELECT 1 FROM records r WHERE r.org_id = $2 AND r.entity = $3
                         AND r.row_hash = s.row_hash AND r.record_key = s.record_key)";
    leave_out(db, id, sql.to_string(), &[Bind::Int(org.get()), Bind::Text(entity)], "duplicate", "unchanged").await
}

/// Delete action: rows naming a key no record has are reported as skipped.
pub async fn mark_missing(db: &Db, org: OrgId, id: i64, entity: &str) -> anyhow::Result<i64> {
    let sql = "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
         SELECT $1, s.row_number, 'skipped', 'row ' || CAST(s.row_number AS TEXT) || ': no ' || $3
                || ' record has the key \"' || s.record_key || '\"; nothing to delete', ''
         FROM import_rows s
         WHERE s.import_id = $1 AND s.state = 'pending'
           AND NOT EXISTS (SELECT 1 FROM records r WHERE r.org_id = $2 AND r.entity = $3 AND r.record_key = s.record_key)";
    leave_out(db, id, sql.to_string(), &[Bind::Int(org.get()), Bind::Text(entity)], "skipped", "skipped").await
}

/// The pending rows: (all of them, those whose key the org already has).
pub async fn pending_counts(db: &Db, org: OrgId, id: i64, entity: &str) -> anyhow::Result<(i64, i64)> {
    on_pool!(db, p => sqlx::query_as::<_, (i64, i64)>(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM records r WHERE r.org_id = $2 AND r.entity = $3
                                                          AND r.record_key = s.record_key) THEN 1 ELSE 0 END), 0)
         FROM import_rows s WHERE s.import_id = $1 AND s.state = 'pending'",
    )
    .bind(id)
    .bind(org.get())
    .bind(entity)
    .fetch_one(p)
    .await)
    .context("counting staged rows")
}

/// Row numbers (ascending, after `after`) of issues whose cells are not filled in yet.
pub async fn rows_without_cells(db: &Db, id: i64, after: i64, limit: i64) -> anyhow::Result<Vec<i64>> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "SELECT DISTINCT i.row_number FROM import_issues i
         WHERE i.import_id = $1 AND i.cells = '' AND i.row_number > $2
           AND NOT EXISTS (SELECT 1 FROM import_issue_cells c WHERE c.import_id = $1 AND c.row_number = i.row_number)
         ORDER BY i.row_number LIMIT $3",
    )
    .bind(id)
    .bind(after)
    .bind(limit)
    .fetch_all(p)
    .await)
    .context("finding issues without cells")
}

/// Stores the cells of these rows for their issues, in one statement.
pub async fn set_cells(db: &Db, id: i64, cells: &[(i64, String)]) -> anyhow::Result<()> {
    if cells.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO import_issue_cells (import_id, row_number, cells) SELECT $1, c0, c1 FROM ({}) AS x WHERE TRUE
         ON CONFLICT (import_id, row_number) DO NOTHING",
        from_json(db, &["BIGINT", "TEXT"])
    );
    let json = serde_json::to_string(cells)?;
    on_pool!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(json).execute(p).await.map(|_| ()))
        .context("storing issue cells")
}

/// Up to `limit` pending rows after `after` that name files to fetch, with their data.
pub async fn rows_with_files(db: &Db, id: i64, after: i64, limit: i64) -> anyhow::Result<Vec<(i64, String)>> {
    on_pool!(db, p => sqlx::query_as::<_, (i64, String)>(
        "SELECT s.row_number, s.data FROM import_rows s
         WHERE s.import_id = $1 AND s.state = 'pending' AND s.row_number > $2
           AND EXISTS (SELECT 1 FROM import_row_values v
                       WHERE v.import_id = $1 AND v.row_number = s.row_number AND v.kind = 'file')
         ORDER BY s.row_number LIMIT $3",
    )
    .bind(id)
    .bind(after)
    .bind(limit)
    .fetch_all(p)
    .await)
    .context("finding rows with files")
}

/// The file fetched from `url` for the org earlier, if any.
pub async fn fetched_file(db: &Db, org: OrgId, url: &str) -> anyhow::Result<Option<Fetched>> {
    let row = on_pool!(db, p => sqlx::query_as::<_, (String, String, i64, String, String)>(
        "SELECT name, content_type, size, md5, path FROM fetched_files WHERE org_id = $1 AND source_url = $2",
    )
    .bind(org.get())
    .bind(url)
    .fetch_optional(p)
    .await)
    .context("looking up a fetched file")?;
    Ok(row.map(|(name, content_type, size, md5, path)| Fetched { name, content_type, size, md5, path: path.into() }))
}

/// Remembers a fetched file (the first fetch of a URL wins).
pub async fn add_fetched_file(db: &Db, org: OrgId, url: &str, f: &Fetched) -> anyhow::Result<()> {
    on_pool!(db, p => sqlx::query(
        "INSERT INTO fetched_files (org_id, source_url, name, content_type, size, md5, path, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (org_id, source_url) DO NOTHING",
    )
    .bind(org.get())
    .bind(url)
    .bind(&f.name)
    .bind(&f.content_type)
    .bind(f.size)
    .bind(&f.md5)
    .bind(f.path.to_string_lossy().as_ref())
    .bind(crate::now())
    .execute(p)
    .await
    .map(|_| ()))
    .context("remembering a fetched file")
}

/// After fetching: new data for rows whose files were all fetched, and an issue for each
/// row with a file that could not be (the row is left out), in one transaction.
pub async fn files_fetched(db: &Db, id: i64, data: &[(i64, String)], failed: &[(i64, String)]) -> anyhow::Result<()> {
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        for (row, d) in data {
            sqlx::query("UPDATE import_rows SET data = $3 WHERE import_id = $1 AND row_number = $2")
                .bind(id)
                .bind(row)
                .bind(d)
                .execute(&mut *tx)
                .await
                .context("storing fetched file details")?;
        }
        for (row, message) in failed {
            sqlx::query("INSERT INTO import_issues (import_id, row_number, kind, message, cells) VALUES ($1, $2, 'error', $3, '')")
                .bind(id)
                .bind(row)
                .bind(message)
                .execute(&mut *tx)
                .await
                .context("recording a file problem")?;
            sqlx::query("UPDATE import_rows SET state = 'invalid' WHERE import_id = $1 AND row_number = $2")
                .bind(id)
                .bind(row)
                .execute(&mut *tx)
                .await
                .context("leaving a row out")?;
        }
        tx.commit().await.context("committing fetched files")
    })
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

/// The last row of the next chunk of at most `size` pending rows after `cursor`; None
/// when no pending row is left.
pub async fn chunk_end(db: &Db, id: i64, cursor: i64, size: i64) -> anyhow::Result<Option<i64>> {
    let full = on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "SELECT row_number FROM import_rows WHERE import_id = $1 AND row_number > $2 AND state = 'pending'
         ORDER BY row_number LIMIT 1 OFFSET $3",
    )
    .bind(id)
    .bind(cursor)
    .bind(size.max(1) - 1)
    .fetch_optional(p)
    .await)
    .context("finding the next chunk")?;
    if full.is_some() {
        return Ok(full);
    }
    on_pool!(db, p => sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MAX(row_number) FROM import_rows WHERE import_id = $1 AND row_number > $2 AND state = 'pending'",
    )
    .bind(id)
    .bind(cursor)
    .fetch_one(p)
    .await)
    .context("finding the last chunk")
}

/// In a chunk's transaction: moves the import's cursor from `$from` to `$to` (None when it
/// was not at `$from`, or the import is paused or no longer running), then counts the
/// chunk's pending rows.
macro_rules! open_chunk {
    ($tx:ident, $id:expr, $from:expr, $to:expr, $now:expr) => {{
        let moved = sqlx::query(
            "UPDATE imports SET next_row = $3, updated_at = $4
             WHERE id = $1 AND next_row = $2 AND stage = 'importing' AND paused = FALSE",
        )
        .bind($id)
        .bind($from)
        .bind($to)
        .bind($now)
        .execute(&mut *$tx)
        .await
        .context("moving the import cursor")?
        .rows_affected();
        if moved == 0 {
            None
        } else {
            Some(
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM import_rows
                     WHERE import_id = $1 AND row_number > $2 AND row_number <= $3 AND state = 'pending'",
                )
                .bind($id)
                .bind($from)
                .bind($to)
                .fetch_one(&mut *$tx)
                .await
                .context("counting the chunk")?,
            )
        }
    }};
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChunkResult {
    pub rows: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub failed: i64,
}

/// What a chunk writes into.
pub struct ChunkTarget<'a> {
    pub org: OrgId,
    pub import_id: i64,
    pub entity: &'a str,
    /// Whether the entity has unique fields besides its key (their values are kept too).
    pub has_uniques: bool,
}

/// Imports the pending rows in `(from_row, to_row]` (merge: create or update by key) in one
/// transaction that first moves the import's cursor from `from_row` to `to_row`; None when
/// the cursor was not at `from_row` or the import is no longer running (another worker did
/// this chunk, or it was paused), leaving everything as it was.
pub async fn write_chunk(
    db: &Db,
    t: &ChunkTarget<'_>,
    from_row: i64,
    to_row: i64,
) -> anyhow::Result<Option<ChunkResult>> {
    let now = crate::now();
    let (org, id, entity) = (t.org.get(), t.import_id, t.entity);
    let journal_created_sql = format!(
        "INSERT INTO import_journal (import_id, op, record_id, record_key, after_hash)
         SELECT $1, 'created', c0, c1, c2 FROM ({}) AS x",
        from_json(db, &["BIGINT", "TEXT", "TEXT"])
    );
    let sqlite = matches!(db, Db::Sqlite(_));
    on_pool!(db, p => {
        let journal_created_sql = journal_created_sql.clone();
        let mut tx = crate::begin_write!(db, p).context("starting chunk transaction")?;
        let Some(rows) = open_chunk!(tx, id, from_row, to_row, now) else { return Ok(None) };
        let mut res = ChunkResult { rows, ..ChunkResult::default() };
        if t.has_uniques {
            // a unique value another record took since validation fails just that row
            sqlx::query(
                "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
                 SELECT $1, s.row_number, 'failed', MIN(v.field || ': \"' || v.value || '\" is already used by ' || r.record_key), ''
                 FROM import_rows s
                 JOIN import_row_values v ON v.import_id = s.import_id AND v.row_number = s.row_number AND v.kind = 'unique'
                 JOIN record_unique_values u ON u.org_id = $4 AND u.entity = $5 AND u.field = v.field AND u.value = v.value
                 JOIN records r ON r.id = u.record_id
                 WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
                   AND r.record_key <> s.record_key
                 GROUP BY s.row_number",
            )
            .bind(id)
            .bind(from_row)
            .bind(to_row)
            .bind(org)
            .bind(entity)
            .execute(&mut *tx)
            .await
            .context("checking unique values")?;
            res.failed = sqlx::query(
                "UPDATE import_rows SET state = 'failed'
                 WHERE import_id = $1 AND row_number > $2 AND row_number <= $3 AND state = 'pending'
                   AND row_number IN (SELECT row_number FROM import_issues WHERE import_id = $1 AND kind = 'failed'
                                        AND row_number > $2 AND row_number <= $3)",
            )
            .bind(id)
            .bind(from_row)
            .bind(to_row)
            .execute(&mut *tx)
            .await
            .context("failing rows")?
            .rows_affected() as i64;
        }
        // the journal first: before-images of the records about to change
        sqlx::query(
            "INSERT INTO import_journal (import_id, op, record_id, record_key, after_hash, before_data, before_hash,
                                         before_search, before_import_id, before_import_row, before_created_at,
                                         before_updated_at)
             SELECT $1, 'updated', r.id, r.record_key, s.row_hash, r.data, r.row_hash, r.search_text, r.import_id,
                    r.import_row, r.created_at, r.updated_at
             FROM import_rows s JOIN records r ON r.org_id = $4 AND r.entity = $5 AND r.record_key = s.record_key
             WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
               AND r.row_hash <> s.row_hash",
        )
        .bind(id)
        .bind(from_row)
        .bind(to_row)
        .bind(org)
        .bind(entity)
        .execute(&mut *tx)
        .await
        .context("journaling updates")?;
        if t.has_uniques {
            sqlx::query(
                "INSERT INTO import_journal_uniques (import_id, record_id, field, value)
                 SELECT $1, u.record_id, u.field, u.value
                 FROM import_rows s
                 JOIN records r ON r.org_id = $4 AND r.entity = $5 AND r.record_key = s.record_key
                 JOIN record_unique_values u ON u.record_id = r.id
                 WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
                   AND r.row_hash <> s.row_hash",
            )
            .bind(id)
            .bind(from_row)
            .bind(to_row)
            .bind(org)
            .bind(entity)
            .execute(&mut *tx)
            .await
            .context("journaling unique values")?;
        }
        // SQLite's writer is alone in its transaction, so the rows this chunk creates are the
        // ids after the largest one before; PostgreSQL says which ids it created.
        let last_id: i64 = if sqlite {
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM records").fetch_one(&mut *tx).await.context("finding the last id")?
        } else {
            0
        };
        let insert = "INSERT INTO records (org_id, entity, record_key, data, row_hash, search_text, import_id, import_row,
                                           created_at, updated_at)
             SELECT $4, $5, s.record_key, s.data, s.row_hash, s.search_text, $1, s.row_number, $6, $6
             FROM import_rows s
             WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
               AND NOT EXISTS (SELECT 1 FROM records r WHERE r.org_id = $4 AND r.entity = $5 AND r.record_key = s.record_key)";
        if sqlite {
            res.created = sqlx::query(insert)
                .bind(id)
                .bind(from_row)
                .bind(to_row)
                .bind(org)
                .bind(entity)
                .bind(now)
                .execute(&mut *tx)
                .await
                .context("creating records")?
                .rows_affected() as i64;
            sqlx::query(
                "INSERT INTO import_journal (import_id, op, record_id, record_key, after_hash)
                 SELECT $1, 'created', id, record_key, row_hash FROM records WHERE id > $2",
            )
            .bind(id)
            .bind(last_id)
            .execute(&mut *tx)
            .await
            .context("journaling created records")?;
        } else {
            let created: Vec<(i64, String, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("{insert} RETURNING id, record_key, row_hash")))
                    .bind(id)
                    .bind(from_row)
                    .bind(to_row)
                    .bind(org)
                    .bind(entity)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await
                    .context("creating records")?;
            res.created = created.len() as i64;
            if !created.is_empty() {
                sqlx::query(sqlx::AssertSqlSafe(journal_created_sql))
                    .bind(id)
                    .bind(serde_json::to_string(&created)?)
                    .execute(&mut *tx)
                    .await
                    .context("journaling created records")?;
            }
        }
        res.updated = sqlx::query(
            "UPDATE records SET data = s.data, row_hash = s.row_hash, search_text = s.search_text,
                    import_id = $1, import_row = s.row_number, updated_at = $6
             FROM import_rows s
             WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
               AND records.org_id = $4 AND records.entity = $5 AND records.record_key = s.record_key
               AND records.row_hash <> s.row_hash",
        )
        .bind(id)
        .bind(from_row)
        .bind(to_row)
        .bind(org)
        .bind(entity)
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("updating records")?
        .rows_affected() as i64;
        res.unchanged = res.rows - res.failed - res.created - res.updated;
        if t.has_uniques {
            sqlx::query(
                "DELETE FROM record_unique_values WHERE record_id IN (
                   SELECT r.id FROM import_rows s
                   JOIN records r ON r.org_id = $4 AND r.entity = $5 AND r.record_key = s.record_key
                   WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending'
                     AND r.import_id = $1 AND r.import_row = s.row_number)",
            )
            .bind(id)
            .bind(from_row)
            .bind(to_row)
            .bind(org)
            .bind(entity)
            .execute(&mut *tx)
            .await
            .context("replacing unique values")?;
            sqlx::query(
                "INSERT INTO record_unique_values (org_id, entity, field, value, record_id)
                 SELECT $4, $5, v.field, v.value, r.id
                 FROM import_row_values v
                 JOIN import_rows s ON s.import_id = v.import_id AND s.row_number = v.row_number
                 JOIN records r ON r.org_id = $4 AND r.entity = $5 AND r.record_key = s.record_key
                 WHERE v.import_id = $1 AND v.kind = 'unique' AND v.row_number > $2 AND v.row_number <= $3
                   AND s.state = 'pending' AND r.import_id = $1 AND r.import_row = s.row_number",
            )
            .bind(id)
            .bind(from_row)
            .bind(to_row)
            .bind(org)
            .bind(entity)
            .execute(&mut *tx)
            .await
            .context("storing unique values")?;
        }
        sqlx::query(
            "UPDATE imports SET processed_rows = processed_rows + $2, created_rows = created_rows + $3,
                    updated_rows = updated_rows + $4, failed_rows = failed_rows + $5 WHERE id = $1",
        )
        .bind(id)
        .bind(res.rows)
        .bind(res.created)
        .bind(res.updated)
        .bind(res.failed)
        .execute(&mut *tx)
        .await
        .context("counting progress")?;
        tx.commit().await.context("committing chunk")?;
        Ok(Some(res))
    })
}

/// The journal statement for the before-images of the records `r` that `from` selects
/// (`$1` is the import), about to be deleted.
fn journal_deleted_sql(from: &str) -> String {
    format!(
        "INSERT INTO import_journal (import_id, op, record_id, record_key, before_data, before_hash, before_search,
                                     before_import_id, before_import_row, before_created_at, before_updated_at)
         SELECT $1, 'deleted', r.id, r.record_key, r.data, r.row_hash, r.search_text, r.import_id, r.import_row,
                r.created_at, r.updated_at
         FROM {from}"
    )
}

/// The same for their unique values.
fn journal_deleted_uniques_sql(from: &str) -> String {
    format!(
        "INSERT INTO import_journal_uniques (import_id, record_id, field, value)
         SELECT $1, u.record_id, u.field, u.value FROM record_unique_values u, {from} AND u.record_id = r.id"
    )
}

/// Delete action: removes the records that the pending rows in `(from_row, to_row]` name,
/// their before-images journaled, in one transaction that moves the cursor as
/// [`write_chunk`] does. A row whose record is gone since validation counts as unchanged.
pub async fn delete_chunk(
    db: &Db,
    t: &ChunkTarget<'_>,
    from_row: i64,
    to_row: i64,
) -> anyhow::Result<Option<ChunkResult>> {
    let (org, id, entity) = (t.org.get(), t.import_id, t.entity);
    let named = "records r WHERE r.org_id = $4 AND r.entity = $5 AND r.record_key IN
                   (SELECT s.record_key FROM import_rows s
                    WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending')";
    let journal = journal_deleted_sql(named);
    let uniques = journal_deleted_uniques_sql(named);
    on_pool!(db, p => {
        let (journal, uniques) = (journal.clone(), uniques.clone());
        let mut tx = crate::begin_write!(db, p).context("starting chunk transaction")?;
        let Some(rows) = open_chunk!(tx, id, from_row, to_row, crate::now()) else { return Ok(None) };
        for (sql, what) in [(uniques, "journaling unique values"), (journal, "journaling deletions")] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(from_row)
                .bind(to_row)
                .bind(org)
                .bind(entity)
                .execute(&mut *tx)
                .await
                .context(what)?;
        }
        let deleted = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM records WHERE id IN (SELECT r.id FROM {named})")))
            .bind(id)
            .bind(from_row)
            .bind(to_row)
            .bind(org)
            .bind(entity)
            .execute(&mut *tx)
            .await
            .context("deleting records")?
            .rows_affected() as i64;
        sqlx::query("UPDATE imports SET processed_rows = processed_rows + $2, deleted_rows = deleted_rows + $3 WHERE id = $1")
            .bind(id)
            .bind(rows)
            .bind(deleted)
            .execute(&mut *tx)
            .await
            .context("counting progress")?;
        tx.commit().await.context("committing chunk")?;
        Ok(Some(ChunkResult { rows, unchanged: rows - deleted, ..ChunkResult::default() }))
    })
}

/// The org's records of the entity whose key no row of the import's file has.
const NOT_IN_FILE: &str = "records r WHERE r.org_id = $2 AND r.entity = $3
      AND NOT EXISTS (SELECT 1 FROM import_keys k WHERE k.import_id = $1 AND k.record_key = r.record_key)";

/// How many records an overwrite import would remove; first stages the file's keys.
pub async fn count_not_in_file(db: &Db, org: OrgId, id: i64, entity: &str) -> anyhow::Result<i64> {
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        sqlx::query("DELETE FROM import_keys WHERE import_id = $1").bind(id).execute(&mut *tx).await.context("clearing keys")?;
        sqlx::query(
            "INSERT INTO import_keys (import_id, record_key)
             SELECT DISTINCT $1, record_key FROM import_rows WHERE import_id = $1 AND record_key <> ''",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("staging the file's keys")?;
        tx.commit().await.context("committing keys")
    })?;
    let sql = format!("SELECT COUNT(*) FROM {NOT_IN_FILE}");
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(org.get())
        .bind(entity)
        .fetch_one(p)
        .await)
    .context("counting records not in the file")
}

/// Overwrite's cleanup phase: removes up to `size` records the file did not contain, their
/// before-images journaled, in one transaction. Some(0) when none is left; None when the
/// import is paused or no longer running. Safe to repeat: a removed record is not selected
/// again.
pub async fn cleanup_chunk(db: &Db, t: &ChunkTarget<'_>, size: i64) -> anyhow::Result<Option<i64>> {
    let (org, id, entity) = (t.org.get(), t.import_id, t.entity);
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting cleanup transaction")?;
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT r.id FROM {NOT_IN_FILE} ORDER BY r.id LIMIT $4")))
            .bind(id)
            .bind(org)
            .bind(entity)
            .bind(size.max(1))
            .fetch_all(&mut *tx)
            .await
            .context("choosing records to remove")?;
        let going = ids.len() as i64;
        let running = sqlx::query(
            "UPDATE imports SET deleted_rows = deleted_rows + $2, updated_at = $3
             WHERE id = $1 AND stage = 'importing' AND paused = FALSE",
        )
        .bind(id)
        .bind(going)
        .bind(crate::now())
        .execute(&mut *tx)
        .await
        .context("counting removals")?
        .rows_affected();
        if running == 0 {
            return Ok(None);
        }
        if going == 0 {
            tx.commit().await.context("committing")?;
            return Ok(Some(0));
        }
        // rows of one column, as from_json reads them
        let ids_json = serde_json::to_string(&ids.iter().map(|i| (*i,)).collect::<Vec<_>>())?;
        let listed = format!("records r WHERE r.id IN (SELECT c0 FROM ({}) AS x)", from_json(db, &["BIGINT"]));
        for (sql, what) in [
            (journal_deleted_uniques_sql(&listed), "journaling unique values"),
            (journal_deleted_sql(&listed), "journaling removals"),
            (
                format!(
                    "DELETE FROM records WHERE id IN (SELECT r.id FROM {listed})
                       AND org_id = (SELECT org_id FROM imports WHERE id = $1)"
                ),
                "removing records",
            ),
        ] {
            let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(&ids_json)
                .execute(&mut *tx)
                .await
                .context(what)?
                .rows_affected();
            anyhow::ensure!(what != "removing records" || n as i64 == going, "cleanup removed {n} of {going} records");
        }
        tx.commit().await.context("committing cleanup")?;
        Ok(Some(going))
    })
}

/// A chunk whose transaction failed: its pending rows are recorded as failed with the
/// reason, and the cursor moves past it so the import goes on. False when the cursor was
/// not at `from_row`.
pub async fn fail_chunk(db: &Db, id: i64, from_row: i64, to_row: i64, why: &str) -> anyhow::Result<bool> {
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        let moved = sqlx::query(
            "UPDATE imports SET next_row = $3, updated_at = $4 WHERE id = $1 AND next_row = $2 AND stage = 'importing'",
        )
        .bind(id)
        .bind(from_row)
        .bind(to_row)
        .bind(crate::now())
        .execute(&mut *tx)
        .await
        .context("moving the import cursor")?
        .rows_affected();
        if moved == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
             SELECT $1, row_number, 'failed', $4, '' FROM import_rows
             WHERE import_id = $1 AND row_number > $2 AND row_number <= $3 AND state = 'pending'",
        )
        .bind(id)
        .bind(from_row)
        .bind(to_row)
        .bind(why)
        .execute(&mut *tx)
        .await
        .context("storing failed rows")?;
        let n = sqlx::query(
            "UPDATE import_rows SET state = 'failed'
             WHERE import_id = $1 AND row_number > $2 AND row_number <= $3 AND state = 'pending'",
        )
        .bind(id)
        .bind(from_row)
        .bind(to_row)
        .execute(&mut *tx)
        .await
        .context("failing rows")?
        .rows_affected() as i64;
        sqlx::query("UPDATE imports SET processed_rows = processed_rows + $2, failed_rows = failed_rows + $2 WHERE id = $1")
            .bind(id)
            .bind(n)
            .execute(&mut *tx)
            .await
            .context("counting failed rows")?;
        tx.commit().await.context("committing failed chunk")?;
        Ok(true)
    })
}

/// Rows deleted per statement when purging, so a purge never holds the write lock long.
const PURGE_BATCH: i64 = 20_000;

/// Deletes an import's staged rows (in batches) and marks it purged.
pub async fn purge(db: &Db, id: i64) -> anyhow::Result<()> {
    loop {
        let n = on_pool!(db, p => sqlx::query(
            "DELETE FROM import_rows WHERE import_id = $1 AND row_number IN
               (SELECT row_number FROM import_rows WHERE import_id = $1 ORDER BY row_number LIMIT $2)",
        )
        .bind(id)
        .bind(PURGE_BATCH)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .context("purging staged rows")?;
        if n == 0 {
            break;
        }
    }
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        for sql in ["DELETE FROM import_row_values WHERE import_id = $1", "DELETE FROM import_keys WHERE import_id = $1"] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await.context("purging staged values")?;
        }
        sqlx::query("UPDATE imports SET staging_purged_at = $2 WHERE id = $1")
            .bind(id)
            .bind(crate::now())
            .execute(&mut *tx)
            .await
            .context("marking staging purged")?;
        tx.commit().await.context("committing purge")
    })
}

/// Imports whose staged rows are no longer needed (finished, failed, expired), oldest
/// first.
pub async fn purgeable(db: &Db, limit: i64) -> anyhow::Result<Vec<i64>> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "SELECT id FROM imports WHERE staging_purged_at IS NULL
           AND stage IN ('completed', 'failed', 'rolled_back', 'expired', 'timed_out')
         ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(p)
    .await)
    .context("finding imports to purge")
}

/// Ready imports not started since `before` become expired; returns their ids.
pub async fn expire_ready(db: &Db, before: i64) -> anyhow::Result<Vec<i64>> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "UPDATE imports SET stage = 'expired', reason = 'not started within its time to live; upload the file again',
                updated_at = $2
         WHERE stage = 'ready' AND updated_at < $1 RETURNING id",
    )
    .bind(before)
    .bind(crate::now())
    .fetch_all(p)
    .await)
    .context("expiring ready imports")
}
