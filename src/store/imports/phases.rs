//! An import's phase records (seed 004's seven phases: status, timing, counts) and the
//! rows it left out (`import_issues`, with their cells).

use anyhow::Context;

use crate::domain::imports::PhaseStatus;
use crate::store::Db;
use crate::{on_pool, on_writer};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PhaseRow {
    pub phase: String,
    pub status: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub rows_in: i64,
    pub rows_out: i64,
    pub detail: String,
}

pub async fn phase_started(db: &Db, id: i64, phase: &str) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "INSERT INTO import_phases (import_id, phase, status, started_at) VALUES ($1, $2, $4, $3)
         ON CONFLICT (import_id, phase) DO UPDATE SET status = excluded.status, started_at = excluded.started_at,
             finished_at = NULL, duration_ms = NULL, rows_in = 0, rows_out = 0, detail = ''",
    )
    .bind(id)
    .bind(phase)
    .bind(crate::now())
    .bind(PhaseStatus::Running.as_str())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("recording phase start")?;
    Ok(())
}

/// How many rows a running phase has taken in so far (the page shows it while validating).
pub async fn phase_progress(db: &Db, id: i64, phase: &str, rows_in: i64) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "UPDATE import_phases SET rows_in = $3 WHERE import_id = $1 AND phase = $2 AND status = $4",
    )
    .bind(id)
    .bind(phase)
    .bind(rows_in)
    .bind(PhaseStatus::Running.as_str())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("recording phase progress")?;
    Ok(())
}

pub struct PhaseEnd<'a> {
    pub status: PhaseStatus,
    pub duration_ms: i64,
    pub rows_in: i64,
    pub rows_out: i64,
    pub detail: &'a str,
}

pub async fn phase_finished(db: &Db, id: i64, phase: &str, e: &PhaseEnd<'_>) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "INSERT INTO import_phases (import_id, phase, status, started_at, finished_at, duration_ms, rows_in, rows_out, detail)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8)
         ON CONFLICT (import_id, phase) DO UPDATE SET status = excluded.status, finished_at = excluded.finished_at,
             duration_ms = excluded.duration_ms, rows_in = excluded.rows_in, rows_out = excluded.rows_out,
             detail = excluded.detail",
    )
    .bind(id)
    .bind(phase)
    .bind(e.status.as_str())
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
        "SELECT phase, status, started_at, finished_at, duration_ms, rows_in, rows_out, detail FROM import_phases WHERE import_id = $1",
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
