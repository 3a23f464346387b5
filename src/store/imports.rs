//! Imports: the import rows themselves, their phases and the rows they leave out (issues).
//! The staged rows and the chunk transaction are in [`super::staging`].

use anyhow::Context;

use super::Db;
use crate::domain::ids::{OrgId, UserId};
use crate::domain::imports::Stage;
use crate::on_pool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImportRow {
    pub id: i64,
    pub org_id: i64,
    pub resource: String,
    pub name: String,
    pub upload_mode: String,
    pub action: String,
    pub duplicate_handling: String,
    pub stage: String,
    pub paused: bool,
    pub reason: String,
    pub file_name: String,
    pub file_path: String,
    pub file_size: i64,
    pub checksum: String,
    pub sheet: Option<String>,
    pub headers: String,
    pub column_mapping: String,
    pub chunk_size: i64,
    pub total_rows: i64,
    pub valid_rows: i64,
    pub invalid_rows: i64,
    pub duplicate_rows: i64,
    pub to_create: i64,
    pub to_update: i64,
    pub unchanged_rows: i64,
    pub processed_rows: i64,
    pub created_rows: i64,
    pub updated_rows: i64,
    pub failed_rows: i64,
    pub next_row: i64,
    pub created_by: Option<i64>,
    pub created_by_label: String,
    pub updated_by: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub to_delete: i64,
    pub deleted_rows: i64,
    pub rollback_requested_at: Option<i64>,
    pub rollback_requested_by_label: String,
    pub rollback_overwrite: bool,
    pub rollback_cursor: i64,
    pub rolled_back_rows: i64,
    pub rollback_skipped: i64,
    pub rolled_back_at: Option<i64>,
    pub staging_purged_at: Option<i64>,
    pub journal_purged_at: Option<i64>,
}

impl ImportRow {
    pub fn stage(&self) -> Stage {
        Stage::parse(&self.stage).unwrap_or(Stage::Failed)
    }
}

const COLUMNS: &str = "id, org_id, resource, name, upload_mode, action, duplicate_handling, stage, paused, reason,
    file_name, file_path, file_size, checksum, sheet, headers, column_mapping, chunk_size, total_rows, valid_rows,
    invalid_rows, duplicate_rows, to_create, to_update, unchanged_rows, processed_rows, created_rows, updated_rows,
    failed_rows, next_row, created_by, created_by_label, updated_by, created_at, updated_at, to_delete, deleted_rows,
    rollback_requested_at, rollback_requested_by_label, rollback_overwrite, rollback_cursor, rolled_back_rows,
    rollback_skipped, rolled_back_at, staging_purged_at, journal_purged_at";

pub struct NewImport<'a> {
    pub resource: &'a str,
    pub name: &'a str,
    pub action: &'a str,
    pub duplicate_handling: &'a str,
    pub file_name: &'a str,
    pub file_path: &'a str,
    pub file_size: i64,
    pub checksum: &'a str,
    pub chunk_size: i64,
    pub created_by: UserId,
    pub created_by_label: &'a str,
}

pub async fn create(db: &Db, org: OrgId, n: &NewImport<'_>) -> anyhow::Result<i64> {
    let now = crate::now();
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "INSERT INTO imports (org_id, resource, name, duplicate_handling, stage, file_name, file_path, file_size, checksum,
                              chunk_size, created_by, created_by_label, updated_by, created_at, updated_at, action)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $10, $12, $12, $13) RETURNING id",
    )
    .bind(org.get())
    .bind(n.resource)
    .bind(n.name)
    .bind(n.duplicate_handling)
    .bind(n.file_name)
    .bind(n.file_path)
    .bind(n.file_size)
    .bind(n.checksum)
    .bind(n.chunk_size)
    .bind(n.created_by.get())
    .bind(n.created_by_label)
    .bind(now)
    .bind(n.action)
    .fetch_one(p)
    .await)
    .context("creating import")
}

/// The org's imports after `after_id` in id order, created within `range` (epoch seconds,
/// inclusive, either end open).
pub async fn page_after(
    db: &Db,
    org: OrgId,
    range: (Option<i64>, Option<i64>),
    after_id: i64,
    limit: i64,
) -> anyhow::Result<Vec<ImportRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM imports WHERE org_id = $1 AND id > $2
           AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at <= $4)
         ORDER BY id LIMIT $5"
    );
    on_pool!(db, p => sqlx::query_as::<_, ImportRow>(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(after_id)
        .bind(range.0)
        .bind(range.1)
        .bind(limit)
        .fetch_all(p)
        .await)
    .context("reading imports")
}

/// The org an import belongs to.
pub async fn org_of(db: &Db, id: i64) -> anyhow::Result<Option<i64>> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>("SELECT org_id FROM imports WHERE id = $1")
        .bind(id)
        .fetch_optional(p)
        .await)
    .context("finding the import's org")
}

/// The import, if it belongs to the org.
pub async fn get(db: &Db, org: OrgId, id: i64) -> anyhow::Result<Option<ImportRow>> {
    let sql = format!("SELECT {COLUMNS} FROM imports WHERE org_id = $1 AND id = $2");
    on_pool!(db, p => sqlx::query_as::<_, ImportRow>(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(id)
        .fetch_optional(p)
        .await)
    .context("loading import")
}

/// Filters of Import History; empty strings mean any.
pub struct ListFilter<'a> {
    pub stage: &'a str,
    pub resource: &'a str,
}

pub async fn count(db: &Db, org: OrgId, f: &ListFilter<'_>) -> anyhow::Result<i64> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM imports WHERE org_id = $1 AND ($2 = '' OR stage = $2) AND ($3 = '' OR resource = $3)",
    )
    .bind(org.get())
    .bind(f.stage)
    .bind(f.resource)
    .fetch_one(p)
    .await)
    .context("counting imports")
}

/// Newest first.
pub async fn list(db: &Db, org: OrgId, f: &ListFilter<'_>, limit: i64, offset: i64) -> anyhow::Result<Vec<ImportRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM imports WHERE org_id = $1 AND ($2 = '' OR stage = $2) AND ($3 = '' OR resource = $3)
         ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
    );
    on_pool!(db, p => sqlx::query_as::<_, ImportRow>(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(f.stage)
        .bind(f.resource)
        .bind(limit)
        .bind(offset)
        .fetch_all(p)
        .await)
    .context("listing imports")
}

/// Moves the import from `from` to `to` if it is still in `from`; false otherwise (another
/// request or worker got there first).
pub async fn transition(db: &Db, id: i64, from: Stage, to: Stage, reason: &str) -> anyhow::Result<bool> {
    if !from.can_transition_to(to) {
        anyhow::bail!("import {id}: {from} cannot become {to}");
    }
    let n = on_pool!(db, p => sqlx::query(
        "UPDATE imports SET stage = $3, reason = $4, updated_at = $5 WHERE id = $1 AND stage = $2",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(reason)
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("changing import stage")?;
    Ok(n > 0)
}

/// After the file was read: its headers and the proposed mapping; pending → mapping.
pub async fn set_headers(db: &Db, id: i64, headers: &str, mapping: &str, sheet: Option<&str>) -> anyhow::Result<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "UPDATE imports SET headers = $2, column_mapping = $3, sheet = $4, stage = 'mapping', updated_at = $5
         WHERE id = $1 AND stage = 'pending'",
    )
    .bind(id)
    .bind(headers)
    .bind(mapping)
    .bind(sheet)
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("saving headers")?;
    Ok(n > 0)
}

/// The user confirmed a mapping: mapping or ready → validating, counts cleared.
pub async fn confirm_mapping(db: &Db, org: OrgId, id: i64, mapping: &str, by: UserId) -> anyhow::Result<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "UPDATE imports SET column_mapping = $3, stage = 'validating', reason = '', updated_by = $4, updated_at = $5,
                total_rows = 0, valid_rows = 0, invalid_rows = 0, duplicate_rows = 0, to_create = 0, to_update = 0,
                unchanged_rows = 0
         WHERE org_id = $1 AND id = $2 AND stage IN ('mapping', 'ready')",
    )
    .bind(org.get())
    .bind(id)
    .bind(mapping)
    .bind(by.get())
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("saving the column mapping")?;
    Ok(n > 0)
}

/// What validation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validated {
    pub total_rows: i64,
    pub valid_rows: i64,
    pub invalid_rows: i64,
    pub duplicate_rows: i64,
    pub to_create: i64,
    pub to_update: i64,
    pub unchanged_rows: i64,
    pub to_delete: i64,
}

/// validating → ready with the counts.
pub async fn finish_validation(db: &Db, id: i64, v: &Validated) -> anyhow::Result<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "UPDATE imports SET stage = 'ready', total_rows = $2, valid_rows = $3, invalid_rows = $4, duplicate_rows = $5,
                to_create = $6, to_update = $7, unchanged_rows = $8, updated_at = $9, to_delete = $10
         WHERE id = $1 AND stage = 'validating'",
    )
    .bind(id)
    .bind(v.total_rows)
    .bind(v.valid_rows)
    .bind(v.invalid_rows)
    .bind(v.duplicate_rows)
    .bind(v.to_create)
    .bind(v.to_update)
    .bind(v.unchanged_rows)
    .bind(crate::now())
    .bind(v.to_delete)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("saving validation results")?;
    Ok(n > 0)
}

/// ready → importing, from the first row.
pub async fn start_import(db: &Db, org: OrgId, id: i64, by: UserId) -> anyhow::Result<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "UPDATE imports SET stage = 'importing', paused = FALSE, next_row = 0, processed_rows = 0, created_rows = 0,
                updated_rows = 0, failed_rows = 0, deleted_rows = 0, updated_by = $3, updated_at = $4
         WHERE org_id = $1 AND id = $2 AND stage = 'ready'",
    )
    .bind(org.get())
    .bind(id)
    .bind(by.get())
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("starting import")?;
    Ok(n > 0)
}

/// Pauses or resumes an importing import; false when it is not importing.
pub async fn set_paused(db: &Db, org: OrgId, id: i64, paused: bool, by: UserId) -> anyhow::Result<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "UPDATE imports SET paused = $3, updated_by = $4, updated_at = $5 WHERE org_id = $1 AND id = $2 AND stage = 'importing'",
    )
    .bind(org.get())
    .bind(id)
    .bind(paused)
    .bind(by.get())
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("pausing import")?;
    Ok(n > 0)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PhaseRow {
    pub phase: String,
    pub status: String,
    pub started_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub rows_in: i64,
    pub rows_out: i64,
    pub detail: String,
}

pub async fn phase_started(db: &Db, id: i64, phase: &str) -> anyhow::Result<()> {
    on_pool!(db, p => sqlx::query(
        "INSERT INTO import_phases (import_id, phase, status, started_at) VALUES ($1, $2, 'running', $3)
         ON CONFLICT (import_id, phase) DO UPDATE SET status = 'running', started_at = excluded.started_at,
             finished_at = NULL, duration_ms = NULL, rows_in = 0, rows_out = 0, detail = ''",
    )
    .bind(id)
    .bind(phase)
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("recording phase start")?;
    Ok(())
}

pub struct PhaseEnd<'a> {
    pub status: &'a str,
    pub duration_ms: i64,
    pub rows_in: i64,
    pub rows_out: i64,
    pub detail: &'a str,
}

pub async fn phase_finished(db: &Db, id: i64, phase: &str, e: &PhaseEnd<'_>) -> anyhow::Result<()> {
    on_pool!(db, p => sqlx::query(
        "INSERT INTO import_phases (import_id, phase, status, started_at, finished_at, duration_ms, rows_in, rows_out, detail)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8)
         ON CONFLICT (import_id, phase) DO UPDATE SET status = excluded.status, finished_at = excluded.finished_at,
             duration_ms = excluded.duration_ms, rows_in = excluded.rows_in, rows_out = excluded.rows_out,
             detail = excluded.detail",
    )
    .bind(id)
    .bind(phase)
    .bind(e.status)
    .bind(crate::now())
    .bind(e.duration_ms)
    .bind(e.rows_in)
    .bind(e.rows_out)
    .bind(e.detail)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("recording phase end")?;
    Ok(())
}

pub async fn phases(db: &Db, id: i64) -> anyhow::Result<Vec<PhaseRow>> {
    on_pool!(db, p => sqlx::query_as::<_, PhaseRow>(
        "SELECT phase, status, started_at, duration_ms, rows_in, rows_out, detail FROM import_phases WHERE import_id = $1",
    )
    .bind(id)
    .fetch_all(p)
    .await)
    .context("loading phases")
}

/// A row left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Issue {
    pub row_number: i64,
    pub kind: String,
    pub message: String,
    /// The row's original cells, as a JSON array.
    pub cells: String,
}

pub async fn count_issues(db: &Db, id: i64) -> anyhow::Result<i64> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM import_issues WHERE import_id = $1")
        .bind(id)
        .fetch_one(p)
        .await)
    .context("counting issues")
}

/// A page of issues by row.
pub async fn issues(db: &Db, id: i64, limit: i64, offset: i64) -> anyhow::Result<Vec<Issue>> {
    on_pool!(db, p => sqlx::query_as::<_, Issue>(
        "SELECT i.row_number, i.kind, i.message, COALESCE(c.cells, i.cells) AS cells
         FROM import_issues i
         LEFT JOIN import_issue_cells c ON c.import_id = i.import_id AND c.row_number = i.row_number
         WHERE i.import_id = $1
         ORDER BY i.row_number, i.id LIMIT $2 OFFSET $3",
    )
    .bind(id)
    .bind(limit)
    .bind(offset)
    .fetch_all(p)
    .await)
    .context("loading issues")
}

/// importing → completed (or failed), when the cursor reached the end.
pub async fn finish_import(db: &Db, id: i64, to: Stage, reason: &str) -> anyhow::Result<bool> {
    transition(db, id, Stage::Importing, to, reason).await
}
