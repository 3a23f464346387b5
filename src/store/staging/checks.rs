//! The set-based validation phases over an import's staged rows: each records issues for
//! some pending rows and moves those rows out of `pending` in one transaction. Also the
//! counts validation reports, the cells of issues, and the rows whose files are fetched.

use anyhow::Context;

use super::from_json;
use crate::domain::ids::OrgId;
use crate::domain::imports::DuplicateHandling;
use crate::store::Db;
use crate::{on_pool, on_writer};

/// `sqlx::query(sql)` with the import id as `$1` and `binds` after it.
macro_rules! with_binds {
    ($sql:expr, $id:expr, $binds:expr) => {{
        let mut q = sqlx::query(sqlx::AssertSqlSafe($sql)).bind($id);
        for b in $binds {
            q = match b {
                Bind::Int(v) => q.bind(*v),
                Bind::Text(v) => q.bind(*v),
            };
        }
        q
    }};
}

/// Rows `leave_out` writes per transaction on SQLite.
const LEAVE_OUT_BATCH: i64 = 5_000;

/// Runs `select_sql` (which yields `row_number, message` for the pending rows to leave out,
/// with the import id as `$1` and `binds` after it), records an issue of `kind` for each
/// and moves those rows from `pending` to `state`; returns how many rows moved.
///
/// On PostgreSQL it is one transaction. On SQLite, whose one writer everyone shares, the
/// search (often a scan of every staged row) runs without the write lock into a temporary
/// table of the connection, and the issues and states are then written a batch per short
/// transaction; a validation run that stops half-way starts over from a cleared staging.
async fn leave_out(
    db: &Db,
    id: i64,
    select_sql: String,
    binds: &[Bind<'_>],
    kind: &'static str,
    state: &'static str,
) -> anyhow::Result<i64> {
    match db {
        Db::Postgres(p) => {
            let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
            let sql = format!(
                "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
                 SELECT $1, x.row_number, '{kind}', x.message, '' FROM ({select_sql}) AS x"
            );
            with_binds!(sql, id, binds).execute(&mut *tx).await.context("recording issues")?;
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
        }
        Db::Sqlite(p) => {
            let mut conn = p.acquire().await.context("taking a connection")?;
            sqlx::query("DROP TABLE IF EXISTS temp.left_out").execute(&mut *conn).await.context("dropping temp")?;
            sqlx::query("CREATE TEMP TABLE left_out (row_number INTEGER PRIMARY KEY, message TEXT NOT NULL)")
                .execute(&mut *conn)
                .await
                .context("creating temp")?;
            let sql = format!(
                "INSERT INTO temp.left_out (row_number, message) SELECT x.row_number, x.message FROM ({select_sql}) AS x"
            );
            with_binds!(sql, id, binds).execute(&mut *conn).await.context("finding the rows to leave out")?;
            let (mut after, mut moved) = (0i64, 0i64);
            loop {
                let last: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(row_number) FROM (SELECT row_number FROM temp.left_out WHERE row_number > $1
                                                  ORDER BY row_number LIMIT $2)",
                )
                .bind(after)
                .bind(LEAVE_OUT_BATCH)
                .fetch_one(&mut *conn)
                .await
                .context("paging the rows to leave out")?;
                let Some(last) = last else { break };
                let _turn = crate::store::write_turn(db).await;
                let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
                    .await
                    .context("starting transaction")?;
                sqlx::query(
                    "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
                     SELECT $1, row_number, $4, message, '' FROM temp.left_out WHERE row_number > $2 AND row_number <= $3",
                )
                .bind(id)
                .bind(after)
                .bind(last)
                .bind(kind)
                .execute(&mut *tx)
                .await
                .context("recording issues")?;
                moved += sqlx::query(
                    "UPDATE import_rows SET state = $4 WHERE import_id = $1 AND state = 'pending'
                       AND row_number IN (SELECT row_number FROM temp.left_out WHERE row_number > $2 AND row_number <= $3)",
                )
                .bind(id)
                .bind(after)
                .bind(last)
                .bind(state)
                .execute(&mut *tx)
                .await
                .context("leaving rows out")?
                .rows_affected() as i64;
                tx.commit().await.context("committing")?;
                after = last;
            }
            sqlx::query("DROP TABLE temp.left_out").execute(&mut *conn).await.context("dropping temp")?;
            Ok(moved)
        }
    }
}

/// A value bound after the import id (`$1`) in `leave_out`'s statement.
enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

/// The SELECT of the values of a JSON array bound as `$n` (numbers or strings, of SQL type
/// `typ`).
fn json_values(db: &Db, n: usize, typ: &str) -> String {
    match db {
        Db::Sqlite(_) => format!("SELECT value FROM json_each(${n})"),
        Db::Postgres(_) => {
            format!("SELECT CAST(value AS {typ}) FROM json_array_elements_text(CAST(${n} AS TEXT)::json)")
        }
    }
}

/// Preparsing: rows repeated within the file, per `duplicate_handling`. Returns how many
/// rows were left out.
///
/// `suspects` are the low halves of the digests prevalidation saw more than once, or may
/// have (see `jobs::import::seen`): every repeated row has one of them, so only the rows
/// with one are grouped, instead of every staged row. None groups every pending row.
pub async fn mark_repeated_rows(
    db: &Db,
    id: i64,
    handling: DuplicateHandling,
    suspects: Option<&[i64]>,
) -> anyhow::Result<i64> {
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
            // `+`: a filter, never the range SQLite searches the rows by (without statistics
            // it scanned every later row once per repeated row: over a minute at 1,000,000)
            "AND +r.row_number > d.first_row",
        ),
    };
    let Some(suspects) = suspects else {
        let sql = format!(
            "SELECT r.row_number AS row_number, {message} AS message
             FROM import_rows r
             JOIN (SELECT digest_hi, digest_lo, MIN(row_number) AS first_row, COUNT(*) AS copies FROM import_rows
                   WHERE import_id = $1 AND state = 'pending' GROUP BY digest_hi, digest_lo HAVING COUNT(*) > 1) d
               ON d.digest_hi = r.digest_hi AND d.digest_lo = r.digest_lo
             WHERE r.import_id = $1 AND r.state = 'pending' {only_later}"
        );
        return leave_out(db, id, sql, &[], "duplicate", "duplicate").await;
    };
    // one pass over the staged rows picks those with a suspect digest
    let sql = format!(
        "WITH s AS MATERIALIZED (SELECT row_number, digest_hi, digest_lo FROM import_rows
                                 WHERE import_id = $1 AND state = 'pending' AND digest_lo IN ({}))
         SELECT r.row_number AS row_number, {message} AS message
         FROM s r
         JOIN (SELECT digest_hi, digest_lo, MIN(row_number) AS first_row, COUNT(*) AS copies FROM s
               GROUP BY digest_hi, digest_lo HAVING COUNT(*) > 1) d
           ON d.digest_hi = r.digest_hi AND d.digest_lo = r.digest_lo
         WHERE TRUE {only_later}",
        json_values(db, 2, "BIGINT")
    );
    let list = serde_json::to_string(suspects).context("listing digests")?;
    leave_out(db, id, sql, &[Bind::Text(&list)], "duplicate", "duplicate").await
}

/// Transforming: a key used by an earlier row of the file with other values. `suspects` are
/// the keys prevalidation saw more than once, or may have (as in [`mark_repeated_rows`]);
/// None looks at every pending row. (`+r.row_number`: as in [`mark_repeated_rows`].)
pub async fn mark_key_conflicts(db: &Db, id: i64, key_field: &str, suspects: Option<&[String]>) -> anyhow::Result<i64> {
    let message = "'row ' || CAST(r.row_number AS TEXT) || ', ' || $2 || ': \"' || r.record_key
                || '\" is also in row ' || CAST(k.first_row AS TEXT)
                || ' with other values: row ' || CAST(k.first_row AS TEXT)
                || ' is the one imported (a record can appear only once in a file)'";
    let Some(suspects) = suspects else {
        let sql = format!(
            "SELECT r.row_number AS row_number, {message} AS message
             FROM import_rows r
             JOIN (SELECT record_key, MIN(row_number) AS first_row FROM import_rows
                   WHERE import_id = $1 AND state = 'pending' AND record_key <> '' GROUP BY record_key HAVING COUNT(*) > 1) k
               ON k.record_key = r.record_key
             WHERE r.import_id = $1 AND r.state = 'pending' AND +r.row_number > k.first_row"
        );
        return leave_out(db, id, sql, &[Bind::Text(key_field)], "error", "conflict").await;
    };
    let sql = format!(
        "WITH s AS MATERIALIZED (SELECT row_number, record_key FROM import_rows
                                 WHERE import_id = $1 AND state = 'pending' AND record_key IN ({}))
         SELECT r.row_number AS row_number, {message} AS message
         FROM s r
         JOIN (SELECT record_key, MIN(row_number) AS first_row FROM s GROUP BY record_key HAVING COUNT(*) > 1) k
           ON k.record_key = r.record_key
         WHERE +r.row_number > k.first_row",
        json_values(db, 3, "TEXT")
    );
    let list = serde_json::to_string(suspects).context("listing keys")?;
    leave_out(db, id, sql, &[Bind::Text(key_field), Bind::Text(&list)], "error", "conflict").await
}

/// Parsing: rows with a value that is not of its field's type or breaks its rules.
pub async fn mark_parse_errors(db: &Db, id: i64) -> anyhow::Result<i64> {
    let sql = "SELECT row_number, 'row ' || CAST(row_number AS TEXT) || ', ' || problem AS message
         FROM import_rows WHERE import_id = $1 AND state = 'pending' AND problem IS NOT NULL";
    leave_out(db, id, sql.to_string(), &[], "error", "invalid").await
}

/// Validation: references to records that do not exist, and unique values used by another
/// stored record or by an earlier row of the file; one issue per row naming every problem.
/// A reference may also name a valid row of a `sibling` import (another sheet of the same
/// onboarding workbook, validated and waiting to be imported before this one).
pub async fn mark_reference_problems(
    db: &Db,
    org: OrgId,
    id: i64,
    entity: &str,
    siblings: &[i64],
) -> anyhow::Result<i64> {
    let agg = match db {
        Db::Sqlite(_) => "group_concat(p.msg, '; ')",
        Db::Postgres(_) => "string_agg(p.msg, '; ')",
    };
    // ids are integers: written into the statement as they are
    let in_siblings = match siblings {
        [] => String::new(),
        ids => format!(
            "AND NOT EXISTS (SELECT 1 FROM import_rows s2 JOIN imports i2 ON i2.id = s2.import_id
                             WHERE s2.import_id IN ({}) AND i2.org_id = $2 AND i2.resource = v.target
                               AND s2.state = 'pending'
                               AND s2.record_key = v.value)",
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        ),
    };
    let sql = format!(
        "SELECT p.row_number AS row_number, 'row ' || CAST(p.row_number AS TEXT) || ', ' || {agg} AS message
         FROM (
           SELECT v.row_number, v.field || ': no ' || v.target || ' record has the key \"' || v.value || '\"' AS msg
           FROM import_row_values v
           JOIN import_rows s ON s.import_id = v.import_id AND s.row_number = v.row_number
           WHERE v.import_id = $1 AND v.kind = 'ref' AND s.state = 'pending'
             AND NOT EXISTS (SELECT 1 FROM records r WHERE r.org_id = $2 AND r.entity = v.target AND r.record_key = v.value)
             {in_siblings}
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
    let sql = "SELECT s.row_number AS row_number, 'row ' || CAST(s.row_number AS TEXT)
                || ' is identical to the stored record ' || s.record_key || '; nothing to change' AS message
         FROM import_rows s
         WHERE s.import_id = $1 AND s.state = 'pending'
           AND EXISTS (SELECT 1 FROM records r WHERE r.org_id = $2 AND r.entity = $3
                         AND r.row_hash = s.row_hash AND r.record_key = s.record_key)";
    leave_out(db, id, sql.to_string(), &[Bind::Int(org.get()), Bind::Text(entity)], "duplicate", "unchanged").await
}

/// Delete action: rows naming a key no record has are reported as skipped.
pub async fn mark_missing(db: &Db, org: OrgId, id: i64, entity: &str) -> anyhow::Result<i64> {
    let sql = "SELECT s.row_number AS row_number, 'row ' || CAST(s.row_number AS TEXT) || ': no ' || $3
                || ' record has the key \"' || s.record_key || '\"; nothing to delete' AS message
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
    on_writer!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(json).execute(p).await.map(|_| ()))
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
