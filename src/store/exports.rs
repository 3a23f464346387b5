//! Export requests and the rows an export reads, a page at a time.

use anyhow::Context;

use super::Db;
use crate::domain::ids::{OrgId, UserId};
use crate::{on_pool, on_writer};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportRow {
    pub id: i64,
    pub org_id: i64,
    pub export_type: String,
    pub format: String,
    pub entity_types: String,
    pub date_from: Option<i64>,
    pub date_to: Option<i64>,
    pub status: String,
    pub reason: String,
    pub file_path: String,
    pub file_name: String,
    pub file_size: Option<i64>,
    pub row_count: i64,
    pub requested_by_label: String,
    pub requested_at: i64,
    pub completed_at: Option<i64>,
    /// The file's key in the object store, when it was moved there.
    pub object_key: Option<String>,
}

const COLUMNS: &str = "id, org_id, export_type, format, entity_types, date_from, date_to, status, reason, file_path,
    file_name, file_size, row_count, requested_by_label, requested_at, completed_at, object_key";

pub struct NewExport<'a> {
    pub export_type: &'a str,
    pub format: &'a str,
    pub entity_types: &'a str,
    pub date_from: Option<i64>,
    pub date_to: Option<i64>,
    pub file_dir: &'a str,
    pub file_name: &'a str,
    pub by: UserId,
    pub by_label: &'a str,
}

/// Creates a pending request; its file will be `file_dir/<id>.<ext of file_name>`.
pub async fn create(db: &Db, org: OrgId, n: &NewExport<'_>) -> anyhow::Result<i64> {
    let now = crate::now();
    let ext = n.file_name.rsplit('.').next().unwrap_or("bin");
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO export_requests (org_id, export_type, format, entity_types, date_from, date_to, status,
                                          file_path, file_name, requested_by, requested_by_label, requested_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', '', $7, $8, $9, $10, $10) RETURNING id",
        )
        .bind(org.get())
        .bind(n.export_type)
        .bind(n.format)
        .bind(n.entity_types)
        .bind(n.date_from)
        .bind(n.date_to)
        .bind(n.file_name)
        .bind(n.by.get())
        .bind(n.by_label)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .context("creating export request")?;
        sqlx::query("UPDATE export_requests SET file_path = $2 WHERE id = $1")
            .bind(id)
            .bind(format!("{}/{id}.{ext}", n.file_dir.trim_end_matches('/')))
            .execute(&mut *tx)
            .await
            .context("naming the export file")?;
        tx.commit().await.context("committing export request")?;
        Ok(id)
    })
}

pub async fn get(db: &Db, org: OrgId, id: i64) -> anyhow::Result<Option<ExportRow>> {
    let sql = format!("SELECT {COLUMNS} FROM export_requests WHERE org_id = $1 AND id = $2");
    on_pool!(db, p => sqlx::query_as::<_, ExportRow>(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(id)
        .fetch_optional(p)
        .await)
    .context("loading export request")
}

/// A request by id alone: for a signed link, whose signature names the org.
pub async fn by_id(db: &Db, id: i64) -> anyhow::Result<Option<ExportRow>> {
    let sql = format!("SELECT {COLUMNS} FROM export_requests WHERE id = $1");
    on_pool!(db, p => sqlx::query_as::<_, ExportRow>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await)
        .context("loading export request")
}

pub async fn count(db: &Db, org: OrgId) -> anyhow::Result<i64> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM export_requests WHERE org_id = $1")
        .bind(org.get())
        .fetch_one(p)
        .await)
    .context("counting export requests")
}

/// A page of the org's requests, newest first.
pub async fn list(db: &Db, org: OrgId, limit: i64, offset: i64) -> anyhow::Result<Vec<ExportRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM export_requests WHERE org_id = $1 ORDER BY requested_at DESC, id DESC LIMIT $2 OFFSET $3"
    );
    on_pool!(db, p => sqlx::query_as::<_, ExportRow>(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(limit)
        .bind(offset)
        .fetch_all(p)
        .await)
    .context("listing export requests")
}

/// pending (or processing, when a job is taken over) → processing; false when the request
/// is gone or finished.
pub async fn start(db: &Db, id: i64) -> anyhow::Result<bool> {
    let n = on_writer!(db, p => sqlx::query(
        "UPDATE export_requests SET status = 'processing', row_count = 0, updated_at = $2
         WHERE id = $1 AND status IN ('pending', 'processing')",
    )
    .bind(id)
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("starting export")?;
    Ok(n > 0)
}

/// Rows written so far, for the page.
pub async fn progress(db: &Db, id: i64, rows: i64) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query("UPDATE export_requests SET row_count = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(rows)
        .bind(crate::now())
        .execute(p)
        .await
        .map(|_| ()))
    .context("recording export progress")
}

/// Marks a build complete; `object_key` names the file in the object store when it was moved there.
pub async fn complete(db: &Db, id: i64, rows: i64, size: i64, object_key: Option<&str>) -> anyhow::Result<bool> {
    let now = crate::now();
    let n = on_writer!(db, p => sqlx::query(
        "UPDATE export_requests SET status = 'completed', row_count = $2, file_size = $3, completed_at = $4, updated_at = $4,
                object_key = $5
         WHERE id = $1 AND status = 'processing'",
    )
    .bind(id)
    .bind(rows)
    .bind(size)
    .bind(now)
    .bind(object_key)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("completing export")?;
    Ok(n > 0)
}

pub async fn fail(db: &Db, id: i64, reason: &str) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "UPDATE export_requests SET status = 'failed', reason = $2, updated_at = $3 WHERE id = $1 AND status IN ('pending', 'processing')",
    )
    .bind(id)
    .bind(reason)
    .bind(crate::now())
    .execute(p)
    .await
    .map(|_| ()))
    .context("failing export")
}

/// Deletes a request (its file is the caller's); false when it is not the org's.
pub async fn delete(db: &Db, org: OrgId, id: i64) -> anyhow::Result<bool> {
    let n = on_writer!(db, p => sqlx::query("DELETE FROM export_requests WHERE org_id = $1 AND id = $2")
        .bind(org.get())
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("deleting export request")?;
    Ok(n > 0)
}

/// Completed exports finished before `before` become expired; returns their file paths and
/// object keys.
pub async fn expire(db: &Db, before: i64) -> anyhow::Result<Vec<(String, Option<String>)>> {
    on_writer!(db, p => sqlx::query_as::<_, (String, Option<String>)>(
        "UPDATE export_requests SET status = 'expired', updated_at = $2
         WHERE status = 'completed' AND completed_at < $1 RETURNING file_path, object_key",
    )
    .bind(before)
    .bind(crate::now())
    .fetch_all(p)
    .await)
    .context("expiring exports")
}

/// A page of an entity's records after `after_id`: (id, key, data), in id order.
pub async fn records_page(
    db: &Db,
    org: OrgId,
    entity: &str,
    range: (Option<i64>, Option<i64>),
    after_id: i64,
    limit: i64,
) -> anyhow::Result<Vec<(i64, String, String)>> {
    on_pool!(db, p => sqlx::query_as::<_, (i64, String, String)>(
        "SELECT id, record_key, data FROM records
         WHERE org_id = $1 AND entity = $2 AND id > $3
           AND ($4 IS NULL OR updated_at >= $4) AND ($5 IS NULL OR updated_at <= $5)
         ORDER BY id LIMIT $6",
    )
    .bind(org.get())
    .bind(entity)
    .bind(after_id)
    .bind(range.0)
    .bind(range.1)
    .bind(limit)
    .fetch_all(p)
    .await)
    .context("reading records to export")
}

/// A page of the org's audit events after `after_id`, in id order.
pub async fn audit_page(
    db: &Db,
    org: OrgId,
    range: (Option<i64>, Option<i64>),
    after_id: i64,
    limit: i64,
) -> anyhow::Result<Vec<crate::store::audit::AuditRow>> {
    on_pool!(db, p => sqlx::query_as::<_, crate::store::audit::AuditRow>(
        "SELECT id, actor_label, action, target, detail, address, at FROM audit_events
         WHERE org_id = $1 AND id > $2 AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at <= $4)
         ORDER BY id LIMIT $5",
    )
    .bind(org.get())
    .bind(after_id)
    .bind(range.0)
    .bind(range.1)
    .bind(limit)
    .fetch_all(p)
    .await)
    .context("reading audit events to export")
}
