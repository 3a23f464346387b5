//! The statements only imports driven through the JSON API need: an import read with its
//! phases and whether it left rows out in one statement, the uploaded file attached (and
//! validation started) in one step, the mapping asked for at creation, and cancelling.

use anyhow::Context;

use super::phases::PhaseRow;
use super::{COLUMNS, ImportRecord, ListFilter, get, list_of};
use crate::domain::ids::{Actor, OrgId};
use crate::domain::imports::history::Cursor;
use crate::domain::imports::{ColumnMapping, Import, ImportFile, Stage};
use crate::store::Db;
use crate::{on_pool, on_writer};

/// An import with what the API shows beside it: its phases and whether it left rows out.
#[derive(Debug)]
pub struct Shown {
    pub import: Import,
    pub phases: Vec<PhaseRow>,
    pub has_issues: bool,
}

/// An import's row with its phases (as JSON) and whether it has issues.
#[derive(sqlx::FromRow)]
struct ShownRecord {
    #[sqlx(flatten)]
    record: ImportRecord,
    has_issues: bool,
    phases: String,
}

impl ShownRecord {
    fn decode(self) -> anyhow::Result<Shown> {
        type Phase = (String, String, Option<i64>, Option<i64>, Option<i64>, i64, i64, String);
        let import = self.record.decode()?;
        let phases: Vec<Phase> =
            serde_json::from_str(&self.phases).with_context(|| format!("import {}: reading its phases", import.id))?;
        let phases = phases
            .into_iter()
            .map(|(phase, status, started_at, finished_at, duration_ms, rows_in, rows_out, detail)| PhaseRow {
                phase,
                status,
                started_at,
                finished_at,
                duration_ms,
                rows_in,
                rows_out,
                detail,
            })
            .collect();
        Ok(Shown { import, phases, has_issues: self.has_issues })
    }
}

/// The columns of [`ShownRecord`]: an API read is one statement, not three (on SQLite each
/// statement is a round trip to the connection's thread, which was most of a read's cost
/// while an import ran).
fn shown_columns(db: &Db) -> String {
    const PHASE: &str = "phase, status, started_at, finished_at, duration_ms, rows_in, rows_out, detail";
    let phases = match db {
        Db::Sqlite(_) => format!("SELECT json_group_array(json_array({PHASE}))"),
        Db::Postgres(_) => format!("SELECT COALESCE(CAST(json_agg(json_build_array({PHASE})) AS TEXT), '[]')"),
    };
    format!(
        "{COLUMNS},
         EXISTS (SELECT 1 FROM import_issues s WHERE s.import_id = imports.id) AS has_issues,
         ({phases} FROM import_phases ph WHERE ph.import_id = imports.id) AS phases"
    )
}

/// The org's import `id` with its phases and whether it left rows out.
pub async fn shown(db: &Db, org: OrgId, id: i64) -> anyhow::Result<Option<Shown>> {
    let sql = format!("SELECT {} FROM imports WHERE org_id = $1 AND id = $2", shown_columns(db));
    let row = on_pool!(db, p => sqlx::query_as::<_, ShownRecord>(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(id)
        .fetch_optional(p)
        .await)
    .context("loading import")?;
    row.map(ShownRecord::decode).transpose()
}

/// A page of imports as [`super::list`] reads it, each with its phases and whether it left
/// rows out.
pub async fn list_shown(
    db: &Db,
    org: OrgId,
    f: &ListFilter<'_>,
    cursor: Cursor,
    limit: i64,
) -> anyhow::Result<(Vec<Shown>, bool)> {
    let (rows, more) = list_of::<ShownRecord>(db, (org, f, cursor, limit), &shown_columns(db)).await?;
    Ok((rows.into_iter().map(ShownRecord::decode).collect::<anyhow::Result<_>>()?, more))
}

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
