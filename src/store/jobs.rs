//! The job queue. Claiming is one statement: on PostgreSQL the candidate row is locked
//! with `FOR UPDATE SKIP LOCKED`, so concurrent workers never take the same job; SQLite
//! runs one writer at a time, so the same `UPDATE … RETURNING` is atomic there. Every
//! function takes `now` (epoch seconds) so leases and deadlines can be tested exactly.

use anyhow::Context;

use super::Db;
use crate::domain::ids::OrgId;
pub use crate::domain::jobs::Finish;
use crate::{on_pool, on_writer};

/// A job to add to the queue.
pub struct NewJob<'a> {
    pub org: Option<OrgId>,
    pub kind: &'a str,
    pub payload: &'a str,
    pub max_attempts: i64,
    /// Seconds the job may run in all, across attempts, before it is `timed_out`.
    pub budget_secs: i64,
    pub run_after: i64,
    /// At most one job with this key ever exists; enqueuing it again does nothing.
    pub dedupe_key: Option<&'a str>,
}

/// Wakes this process's idle workers: a job was queued here, or (on PostgreSQL, through
/// `LISTEN stevedore_jobs`) on any instance.
pub static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Adds a job; returns its id, or None when its dedupe key is already taken. Idle workers
/// of this process wake at once (on PostgreSQL the insert's trigger wakes every instance's).
pub async fn enqueue(db: &Db, job: &NewJob<'_>, now: i64) -> anyhow::Result<Option<i64>> {
    let id = insert(db, job, now).await?;
    if id.is_some() {
        WAKE.notify_waiters();
    }
    Ok(id)
}

async fn insert(db: &Db, job: &NewJob<'_>, now: i64) -> anyhow::Result<Option<i64>> {
    on_writer!(db, p => sqlx::query_scalar::<_, i64>(
        "INSERT INTO jobs (org_id, kind, payload, status, max_attempts, budget_secs, run_after, dedupe_key, created_at, updated_at)
         VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $8)
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(job.org.map(OrgId::get))
    .bind(job.kind)
    .bind(job.payload)
    .bind(job.max_attempts)
    .bind(job.budget_secs)
    .bind(job.run_after)
    .bind(job.dedupe_key)
    .bind(now)
    .fetch_optional(p)
    .await)
    .context("enqueuing job")
}

/// A claimed job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedJob {
    pub id: i64,
    pub org_id: Option<i64>,
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub deadline_at: Option<i64>,
}

const CLAIM_SQLITE: &str = "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2,
        attempts = attempts + 1, started_at = COALESCE(started_at, $3),
        deadline_at = COALESCE(deadline_at, $3 + budget_secs), updated_at = $3
     WHERE id = (SELECT id FROM jobs
                 WHERE (status = 'queued' AND run_after <= $3) OR (status = 'running' AND lease_expires_at < $3)
                 ORDER BY run_after, id LIMIT 1)
     RETURNING id, org_id, kind, payload, attempts, max_attempts, deadline_at";

const CLAIM_POSTGRES: &str = "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2,
        attempts = attempts + 1, started_at = COALESCE(started_at, $3),
        deadline_at = COALESCE(deadline_at, $3 + budget_secs), updated_at = $3
     WHERE id = (SELECT id FROM jobs
                 WHERE (status = 'queued' AND run_after <= $3) OR (status = 'running' AND lease_expires_at < $3)
                 ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED)
     RETURNING id, org_id, kind, payload, attempts, max_attempts, deadline_at";

/// Takes the next due job (or one whose worker's lease ran out) for `owner` until
/// `now + lease_secs`.
pub async fn claim(db: &Db, owner: &str, lease_secs: i64, now: i64) -> anyhow::Result<Option<ClaimedJob>> {
    let sql = match db {
        Db::Sqlite(_) => CLAIM_SQLITE,
        Db::Postgres(_) => CLAIM_POSTGRES,
    };
    on_pool!(db, p => sqlx::query_as::<_, ClaimedJob>(sql)
        .bind(owner)
        .bind(now + lease_secs)
        .bind(now)
        .fetch_optional(p)
        .await)
    .context("claiming a job")
}

/// Extends the lease; false when `owner` no longer holds it (the job was taken over).
pub async fn heartbeat(db: &Db, id: i64, owner: &str, lease_secs: i64, now: i64) -> anyhow::Result<bool> {
    let n = on_writer!(db, p => sqlx::query(
        "UPDATE jobs SET lease_expires_at = $3, updated_at = $4 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(owner)
    .bind(now + lease_secs)
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("renewing a job lease")?;
    Ok(n > 0)
}

/// Records the end of an attempt; false when `owner` had lost the lease meanwhile.
pub async fn finish(db: &Db, id: i64, owner: &str, how: &Finish, now: i64) -> anyhow::Result<bool> {
    let (status, error, run_after, finished, uncount): (&str, &str, Option<i64>, Option<i64>, i64) = match how {
        Finish::Succeeded => ("succeeded", "", None, Some(now), 0),
        Finish::Retry { error, retry_at } => ("queued", error, Some(*retry_at), None, 0),
        Finish::Failed { error } => ("failed", error, None, Some(now), 0),
        Finish::TimedOut { error } => ("timed_out", error, None, Some(now), 0),
        Finish::Released => ("queued", "", Some(now), None, 1),
    };
    let n = on_writer!(db, p => sqlx::query(
        "UPDATE jobs SET status = $3, last_error = CASE WHEN $4 = '' THEN last_error ELSE $4 END,
                run_after = COALESCE($5, run_after), finished_at = $6, attempts = attempts - $7,
                lease_owner = NULL, lease_expires_at = NULL, updated_at = $8
         WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(owner)
    .bind(status)
    .bind(error)
    .bind(run_after)
    .bind(finished)
    .bind(uncount)
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("finishing a job")?;
    Ok(n > 0)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: String,
    pub run_after: i64,
    pub lease_owner: Option<String>,
}

pub async fn get(db: &Db, id: i64) -> anyhow::Result<Option<JobRow>> {
    on_pool!(db, p => sqlx::query_as::<_, JobRow>(
        "SELECT id, kind, status, attempts, last_error, run_after, lease_owner FROM jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(p)
    .await)
    .context("loading job")
}

/// Deletes finished jobs older than `before`.
pub async fn prune_finished(db: &Db, before: i64) -> anyhow::Result<u64> {
    on_writer!(db, p => sqlx::query("DELETE FROM jobs WHERE status IN ('succeeded', 'failed', 'timed_out') AND finished_at < $1")
        .bind(before)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("pruning finished jobs")
}

/// Jobs by kind and state, for `/metrics`: queued, running and failed (or timed out), every
/// kind that has any.
pub async fn counts(db: &Db) -> anyhow::Result<Vec<(String, String, i64)>> {
    on_pool!(db, p => sqlx::query_as::<_, (String, String, i64)>(
        "SELECT kind, CASE WHEN status = 'timed_out' THEN 'failed' ELSE status END AS state, COUNT(*)
         FROM jobs WHERE status IN ('queued', 'running', 'failed', 'timed_out')
         GROUP BY kind, CASE WHEN status = 'timed_out' THEN 'failed' ELSE status END ORDER BY 1, 2",
    )
    .fetch_all(p)
    .await)
    .context("counting jobs")
}
