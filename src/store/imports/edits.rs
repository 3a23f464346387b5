//! Rows left out, fixed on the import's page: the rows the grid pages through (with their
//! cells as they stand), every edit of a cell (`import_edits`), and the edits validation
//! reads through.

use anyhow::Context;

use super::phases::Issue;
use crate::domain::ids::UserId;
use crate::store::Db;
use crate::store::staging::from_json;
use crate::{on_pool, on_writer};

/// A cell's edit to store.
pub struct NewEdit<'a> {
    pub row_number: i64,
    pub column: &'a str,
    pub field: &'a str,
    pub old_value: &'a str,
    pub new_value: &'a str,
}

/// `%, kind:%` and `%; kind:%`: a row's message naming `field` (LIKE wildcards escaped).
fn naming(field: &str) -> (String, String) {
    let f = field.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    (format!("%, {f}:%"), format!("%; {f}:%"))
}

/// The filter on a row's issues: errors only (a duplicate is fixed by its first copy), not
/// skipped, naming `field` when given (`$2`, `$3`).
fn filter(field: Option<&str>) -> &'static str {
    match field {
        Some(_) => {
            "kind = 'error' AND (message LIKE $2 ESCAPE '\\' OR message LIKE $3 ESCAPE '\\') AND row_number NOT IN
             (SELECT s.row_number FROM import_skips s WHERE s.import_id = $1)"
        }
        None => {
            "kind = 'error' AND $2 = $3 AND row_number NOT IN
             (SELECT s.row_number FROM import_skips s WHERE s.import_id = $1)"
        }
    }
}

/// How many rows the grid has (rows left out with an error, naming `field` when given).
pub async fn count_rows_left_out(db: &Db, id: i64, field: Option<&str>) -> anyhow::Result<i64> {
    let (a, b) = field.map(naming).unwrap_or_default();
    let sql =
        format!("SELECT COUNT(DISTINCT row_number) FROM import_issues WHERE import_id = $1 AND {}", filter(field));
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(id).bind(a).bind(b).fetch_one(p).await)
        .context("counting rows left out")
}

/// A page of the grid: the rows' error issues, by row (a row may have more than one), their
/// cells as they stand (with the edits made since).
pub async fn rows_left_out(
    db: &Db,
    id: i64,
    field: Option<&str>,
    limit: i64,
    offset: i64,
) -> anyhow::Result<Vec<Issue>> {
    let (a, b) = field.map(naming).unwrap_or_default();
    let sql = format!(
        "SELECT i.row_number, i.kind, i.message, COALESCE(c.cells, i.cells) AS cells
         FROM import_issues i
         LEFT JOIN import_issue_cells c ON c.import_id = i.import_id AND c.row_number = i.row_number
         WHERE i.import_id = $1 AND i.kind = 'error' AND i.row_number IN (
             SELECT DISTINCT row_number FROM import_issues WHERE import_id = $1 AND {}
             ORDER BY row_number LIMIT $4 OFFSET $5)
         ORDER BY i.row_number, i.id",
        filter(field)
    );
    on_pool!(db, p => sqlx::query_as::<_, Issue>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(a)
        .bind(b)
        .bind(limit)
        .bind(offset)
        .fetch_all(p)
        .await)
    .context("loading rows left out")
}

/// One row left out with an error (its issues), if it is one.
pub async fn row_left_out(db: &Db, id: i64, row: i64) -> anyhow::Result<Vec<Issue>> {
    on_pool!(db, p => sqlx::query_as::<_, Issue>(
        "SELECT i.row_number, i.kind, i.message, COALESCE(c.cells, i.cells) AS cells
         FROM import_issues i
         LEFT JOIN import_issue_cells c ON c.import_id = i.import_id AND c.row_number = i.row_number
         WHERE i.import_id = $1 AND i.row_number = $2 AND i.kind = 'error' ORDER BY i.id",
    )
    .bind(id)
    .bind(row)
    .fetch_all(p)
    .await)
    .context("loading a row left out")
}

/// Keeps `edits` (made by `by`) and the rows' cells as they now stand, in one transaction
/// of two statements however many rows (each batch one bound JSON value, each row found by
/// its key): the grid and the error download show the fixed values at once.
pub async fn add_edits(
    db: &Db,
    id: i64,
    edits: &[NewEdit<'_>],
    cells: &[(i64, String)],
    by: UserId,
    by_label: &str,
) -> anyhow::Result<()> {
    let rows: Vec<(i64, &str, &str, &str, &str)> =
        edits.iter().map(|e| (e.row_number, e.column, e.field, e.old_value, e.new_value)).collect();
    let (edits_json, cells_json) = (serde_json::to_string(&rows)?, serde_json::to_string(cells)?);
    let insert = format!(
        "INSERT INTO import_edits (import_id, row_number, column_name, field, old_value, new_value, user_id, by_label,
                                   created_at)
         SELECT $1, c0, c1, c2, c3, c4, $3, $4, $5 FROM ({}) AS x",
        from_json(db, &["BIGINT", "TEXT", "TEXT", "TEXT", "TEXT"])
    );
    // the row's cells as they now stand, over those the file had (read with COALESCE)
    let keep_cells = format!(
        "INSERT INTO import_issue_cells (import_id, row_number, cells) SELECT $1, c0, c1 FROM ({}) AS x WHERE TRUE
         ON CONFLICT (import_id, row_number) DO UPDATE SET cells = excluded.cells",
        from_json(db, &["BIGINT", "TEXT"])
    );
    let now = crate::now();
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting to keep edits")?;
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(id)
            .bind(&edits_json)
            .bind(by.get())
            .bind(by_label)
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("keeping edits")?;
        sqlx::query(sqlx::AssertSqlSafe(keep_cells))
            .bind(id)
            .bind(&cells_json)
            .execute(&mut *tx)
            .await
            .context("keeping rows' cells")?;
        tx.commit().await.context("keeping edits")
    })
}

/// Every edit of the import's cells, oldest first: `(row, column header, value)`.
pub async fn edited_cells(db: &Db, id: i64) -> anyhow::Result<Vec<(i64, String, String)>> {
    on_pool!(db, p => sqlx::query_as::<_, (i64, String, String)>(
        "SELECT row_number, column_name, new_value FROM import_edits WHERE import_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(p)
    .await)
    .context("loading edits")
}

/// Rows edited since the import was last validated (their fixes count once validated).
pub async fn rows_edited_since_validation(db: &Db, id: i64) -> anyhow::Result<i64> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(DISTINCT e.row_number) FROM import_edits e JOIN imports i ON i.id = e.import_id
         WHERE e.import_id = $1 AND e.id > i.edits_validated",
    )
    .bind(id)
    .fetch_one(p)
    .await)
    .context("counting edited rows")
}

/// Which rows from `from` to `to` were edited since the import was last validated.
pub async fn rows_edited_in(db: &Db, id: i64, from: i64, to: i64) -> anyhow::Result<Vec<i64>> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "SELECT DISTINCT e.row_number FROM import_edits e JOIN imports i ON i.id = e.import_id
         WHERE e.import_id = $1 AND e.id > i.edits_validated AND e.row_number BETWEEN $2 AND $3",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .fetch_all(p)
    .await)
    .context("finding edited rows")
}

/// Up to `limit` rows left out with an error after row `after`, with their cells as they
/// stand: a bulk fix reads them a batch at a time.
pub async fn cells_left_out(db: &Db, id: i64, after: i64, limit: i64) -> anyhow::Result<Vec<(i64, String)>> {
    on_pool!(db, p => sqlx::query_as::<_, (i64, String)>(
        "SELECT DISTINCT i.row_number, COALESCE(c.cells, i.cells) FROM import_issues i
         LEFT JOIN import_issue_cells c ON c.import_id = i.import_id AND c.row_number = i.row_number
         WHERE i.import_id = $1 AND i.kind = 'error' AND i.row_number > $2
         ORDER BY i.row_number LIMIT $3",
    )
    .bind(id)
    .bind(after)
    .bind(limit)
    .fetch_all(p)
    .await)
    .context("reading rows left out")
}

/// Skips these rows (those left out with an error, not skipped yet): they stay left out and
/// leave the grid. How many were skipped.
pub async fn skip_rows(db: &Db, id: i64, rows: &[i64], by: UserId, by_label: &str) -> anyhow::Result<i64> {
    let sql = format!(
        "INSERT INTO import_skips (import_id, row_number, user_id, by_label, created_at)
         SELECT DISTINCT $1, i.row_number, $3, $4, $5 FROM import_issues i
         WHERE i.import_id = $1 AND i.kind = 'error' AND i.row_number IN (SELECT c0 FROM ({}) AS x)
         ON CONFLICT (import_id, row_number) DO NOTHING",
        from_json(db, &["BIGINT"])
    );
    let json = serde_json::to_string(&rows.iter().map(|r| [*r]).collect::<Vec<_>>())?;
    on_writer!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(json)
        .bind(by.get())
        .bind(by_label)
        .bind(crate::now())
        .execute(p)
        .await
        .map(|r| r.rows_affected() as i64))
    .context("skipping rows")
}

/// Puts every skipped row of the import back in the grid; how many.
pub async fn unskip_rows(db: &Db, id: i64) -> anyhow::Result<i64> {
    on_writer!(db, p => sqlx::query("DELETE FROM import_skips WHERE import_id = $1")
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected() as i64))
    .context("putting skipped rows back")
}

/// How many rows of the import were skipped.
pub async fn count_skipped(db: &Db, id: i64) -> anyhow::Result<i64> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM import_skips WHERE import_id = $1")
        .bind(id)
        .fetch_one(p)
        .await)
    .context("counting skipped rows")
}
