//! The onboarding workflow's state per org (`onboarding_steps`): which import each entity
//! type's step made last, and which steps were skipped.

use anyhow::Context;

use super::Db;
use crate::domain::ids::OrgId;
use crate::{on_pool, on_writer};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StepRow {
    pub entity: String,
    pub import_id: Option<i64>,
    pub skipped: bool,
    /// The workbook the import came from ('' for a file of its own).
    pub workbook: String,
    pub validate_queued: bool,
    pub import_queued: bool,
    pub queued_by: Option<i64>,
    pub updated_by_label: String,
    pub updated_at: i64,
}

/// The org's recorded steps (entity types without a row have not been touched).
pub async fn steps(db: &Db, org: OrgId) -> anyhow::Result<Vec<StepRow>> {
    on_pool!(db, p => sqlx::query_as::<_, StepRow>(
        "SELECT entity, import_id, skipped, workbook, validate_queued, import_queued, queued_by, updated_by_label,
                updated_at
         FROM onboarding_steps WHERE org_id = $1",
    )
    .bind(org.get())
    .fetch_all(p)
    .await)
    .context("reading onboarding steps")
}

/// The import uploaded for a step becomes its import (a skipped step is taken up again);
/// `workbook` names the workbook it came from ('' for a file of its own).
pub async fn attach(db: &Db, org: OrgId, entity: &str, import_id: i64, workbook: &str, by: &str) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "INSERT INTO onboarding_steps (org_id, entity, import_id, skipped, workbook, validate_queued, import_queued,
                                       updated_by_label, updated_at)
         VALUES ($1, $2, $3, $4, $7, $4, $4, $5, $6)
         ON CONFLICT (org_id, entity) DO UPDATE SET import_id = excluded.import_id, skipped = excluded.skipped,
             workbook = excluded.workbook, validate_queued = excluded.validate_queued,
             import_queued = excluded.import_queued,
             updated_by_label = excluded.updated_by_label, updated_at = excluded.updated_at",
    )
    .bind(org.get())
    .bind(entity)
    .bind(import_id)
    .bind(false)
    .bind(by)
    .bind(crate::now())
    .bind(workbook)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("attaching an import to its onboarding step")?;
    Ok(())
}

/// Marks a step skipped, or takes it up again.
pub async fn set_skipped(db: &Db, org: OrgId, entity: &str, skipped: bool, by: &str) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "INSERT INTO onboarding_steps (org_id, entity, import_id, skipped, updated_by_label, updated_at)
         VALUES ($1, $2, NULL, $3, $4, $5)
         ON CONFLICT (org_id, entity) DO UPDATE SET skipped = excluded.skipped,
             updated_by_label = excluded.updated_by_label, updated_at = excluded.updated_at",
    )
    .bind(org.get())
    .bind(entity)
    .bind(skipped)
    .bind(by)
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("skipping an onboarding step")?;
    Ok(())
}

/// The step import `import_id` is, if it is one: (entity type, workbook it came from, ''
/// for a file of its own).
pub async fn step_of_import(db: &Db, org: OrgId, import_id: i64) -> anyhow::Result<Option<(String, String)>> {
    on_pool!(db, p => sqlx::query_as::<_, (String, String)>(
        "SELECT entity, workbook FROM onboarding_steps WHERE org_id = $1 AND import_id = $2",
    )
    .bind(org.get())
    .bind(import_id)
    .fetch_optional(p)
    .await)
    .context("finding an import's onboarding step")
}

/// When the org finished the workflow, and who: None while it has not.
pub async fn finished(db: &Db, org: OrgId) -> anyhow::Result<Option<(i64, String)>> {
    on_pool!(db, p => sqlx::query_as::<_, (i64, String)>(
        "SELECT finished_at, finished_by_label FROM onboardings WHERE org_id = $1 AND finished_at IS NOT NULL",
    )
    .bind(org.get())
    .fetch_optional(p)
    .await)
    .context("reading whether the onboarding finished")
}

/// Marks the workflow finished (again, if it was: the latest finish counts).
pub async fn finish(db: &Db, org: OrgId, by: &str) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "INSERT INTO onboardings (org_id, finished_at, finished_by_label) VALUES ($1, $2, $3)
         ON CONFLICT (org_id) DO UPDATE SET finished_at = excluded.finished_at,
             finished_by_label = excluded.finished_by_label",
    )
    .bind(org.get())
    .bind(crate::now())
    .bind(by)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("finishing the onboarding")?;
    Ok(())
}

/// A rollback of the whole onboarding, as asked.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RollbackAsked {
    pub rollback_requested_at: i64,
    pub rollback_requested_by: Option<i64>,
    pub rollback_requested_by_label: String,
    pub rollback_overwrite: bool,
}

/// Asks for the whole onboarding to be rolled back; false when a rollback already runs.
pub async fn request_rollback(
    db: &Db,
    org: OrgId,
    by: Option<i64>,
    by_label: &str,
    overwrite: bool,
) -> anyhow::Result<bool> {
    let n = on_writer!(db, p => sqlx::query(
        "INSERT INTO onboardings (org_id, rollback_requested_at, rollback_requested_by, rollback_requested_by_label,
                                  rollback_overwrite)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (org_id) DO UPDATE SET rollback_requested_at = excluded.rollback_requested_at,
             rollback_requested_by = excluded.rollback_requested_by,
             rollback_requested_by_label = excluded.rollback_requested_by_label,
             rollback_overwrite = excluded.rollback_overwrite
         WHERE onboardings.rollback_requested_at IS NULL",
    )
    .bind(org.get())
    .bind(crate::now())
    .bind(by)
    .bind(by_label)
    .bind(overwrite)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("asking for the onboarding's rollback")?;
    Ok(n > 0)
}

/// The rollback of the whole onboarding that runs, if one does.
pub async fn rollback_asked(db: &Db, org: OrgId) -> anyhow::Result<Option<RollbackAsked>> {
    on_pool!(db, p => sqlx::query_as::<_, RollbackAsked>(
        "SELECT rollback_requested_at, rollback_requested_by, rollback_requested_by_label, rollback_overwrite
         FROM onboardings WHERE org_id = $1 AND rollback_requested_at IS NOT NULL",
    )
    .bind(org.get())
    .fetch_optional(p)
    .await)
    .context("reading the onboarding's rollback")
}

/// Every step is undone: the rollback is over and the workflow is no longer finished.
/// False when another caller ended it first.
pub async fn rollback_done(db: &Db, org: OrgId) -> anyhow::Result<bool> {
    let n = on_writer!(db, p => sqlx::query(
        "UPDATE onboardings SET rollback_requested_at = NULL, finished_at = NULL
         WHERE org_id = $1 AND rollback_requested_at IS NOT NULL",
    )
    .bind(org.get())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("ending the onboarding's rollback")?;
    Ok(n > 0)
}

/// The validated imports (at Ready) of the other steps of the workbook import `id` came
/// from: their valid rows are records to be, which its references may name.
pub async fn workbook_siblings(db: &Db, org: OrgId, id: i64) -> anyhow::Result<Vec<i64>> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "SELECT o.import_id FROM onboarding_steps o
         JOIN onboarding_steps me ON me.org_id = o.org_id AND me.import_id = $2 AND me.workbook <> ''
         JOIN imports i ON i.id = o.import_id
         WHERE o.org_id = $1 AND o.workbook = me.workbook AND o.import_id <> $2 AND NOT o.skipped
           AND i.org_id = $1 AND i.stage IN ($3, $4)",
    )
    .bind(org.get())
    .bind(id)
    .bind(crate::domain::imports::Stage::Ready.as_str())
    .bind(crate::domain::imports::Stage::Importing.as_str())
    .fetch_all(p)
    .await)
    .context("finding the workbook's other imports")
}

/// Takes a step's turn to validate (`"validate"`) or import (`"import"`): true for the one
/// caller that took it, so its job is queued once however many callers race.
pub async fn take_turn(db: &Db, org: OrgId, entity: &str, what: &str) -> anyhow::Result<bool> {
    let column = if what == "import" { "import_queued" } else { "validate_queued" };
    let sql = format!("UPDATE onboarding_steps SET {column} = $3 WHERE org_id = $1 AND entity = $2 AND {column} = $4");
    let n = on_writer!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
    .bind(org.get())
    .bind(entity)
    .bind(true)
    .bind(false)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("taking an onboarding step's turn")?;
    Ok(n > 0)
}

/// Asks for a workbook step to be validated (`"validate"`: its turn is free again) or
/// imported (`"import"`), in the name of `by`.
pub async fn queue(db: &Db, org: OrgId, entity: &str, what: &str, by: i64, by_label: &str) -> anyhow::Result<()> {
    let set = if what == "import" { "import_queued = $3" } else { "validate_queued = $4, import_queued = $4" };
    let sql = format!(
        "UPDATE onboarding_steps SET {set}, queued_by = $5, updated_by_label = $6, updated_at = $7
         WHERE org_id = $1 AND entity = $2"
    );
    on_writer!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
    .bind(org.get())
    .bind(entity)
    .bind(true)
    .bind(false)
    .bind(by)
    .bind(by_label)
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("queueing an onboarding step")?;
    Ok(())
}
