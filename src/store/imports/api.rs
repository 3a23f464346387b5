//! The statements only imports driven through the JSON API need: the uploaded file attached
//! (and validation started) in one step, the mapping asked for at creation, and cancelling.

use anyhow::Context;

use super::get;
use crate::domain::ids::{Actor, OrgId};
use crate::domain::imports::{ColumnMapping, ImportFile, Stage};
use crate::on_writer;
use crate::store::Db;

/// The file uploaded for an import the API created, its header and mapping, and the move to
/// `validating`, in one statement: only while the import still waits for a file (a second
/// upload finds it taken and changes nothing); whether it did.
pub async fn attach_and_validate(
    db: &Db,
    org: OrgId,
    id: i64,
    file: &ImportFile,
    headers: &[String],
    mapping: &ColumnMapping,
) -> anyhow::Result<bool> {
    let n = on_writer!(db, p => sqlx::query(
        "UPDATE imports SET file_name = $3, file_path = $4, file_size = $5, checksum = $6, sheet = $7, headers = $8,
                column_mapping = $9, stage = $10, reason = '', updated_at = $11
         WHERE org_id = $1 AND id = $2 AND stage = $12 AND file_path = ''",
    )
    .bind(org.get())
    .bind(id)
    .bind(&file.name)
    .bind(&file.path)
    .bind(file.size)
    .bind(&file.checksum)
    .bind(&file.sheet)
    .bind(serde_json::to_string(headers)?)
    .bind(serde_json::to_string(mapping)?)
    .bind(Stage::Validating.as_str())
    .bind(crate::now())
    .bind(Stage::Pending.as_str())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("attaching the uploaded file")?;
    Ok(n > 0)
}

/// Keeps the mapping (and column options) an API client gave when it created the import,
/// until its file comes.
pub async fn set_requested_mapping(
    db: &Db,
    id: i64,
    mapping: &ColumnMapping,
    options: &crate::domain::imports::ColumnOptions,
) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "UPDATE imports SET column_mapping = $2, column_options = $3 WHERE id = $1 AND file_path = ''",
    )
        .bind(id)
        .bind(serde_json::to_string(mapping)?)
        .bind(serde_json::to_string(options)?)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("keeping the requested mapping")?;
    Ok(())
}

/// Cancels an import that has not finished: it fails with `reason`; chunks already
/// committed stay (a running chunk job stops before its next chunk). The stage it was in,
/// or None when it had finished already.
pub async fn cancel(db: &Db, org: OrgId, id: i64, by: Actor, reason: &str) -> anyhow::Result<Option<Stage>> {
    for _ in 0..3 {
        let Some(imp) = get(db, org, id).await? else { return Ok(None) };
        if !imp.stage.can_transition_to(Stage::Failed) {
            return Ok(None);
        }
        let n = on_writer!(db, p => sqlx::query(
            "UPDATE imports SET stage = $4, reason = $5, paused = FALSE, updated_by = $6, updated_by_key = $7,
                    updated_at = $8
             WHERE org_id = $1 AND id = $2 AND stage = $3",
        )
        .bind(org.get())
        .bind(id)
        .bind(imp.stage.as_str())
        .bind(Stage::Failed.as_str())
        .bind(reason)
        .bind(by.user())
        .bind(by.key())
        .bind(crate::now())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .context("cancelling import")?;
        if n > 0 {
            return Ok(Some(imp.stage));
        }
    }
    Ok(None)
}
