//! Imports: the `imports` rows, decoded once into the domain's [`Import`], and every change
//! of their stage, each guarded by the stages the domain allows it from
//! ([`Stage::sources`]). Phases and the rows left out are in [`phases`]; the staged rows
//! and the chunk transactions in [`super::staging`].

mod api;
pub mod edits;
mod mapping;
pub mod phases;

pub use api::{Shown, attach_and_validate, cancel, list_shown, set_requested_mapping, shown};
pub use mapping::{
    FileColumns, Remembered, column_profile, column_samples, confirm_mapping, remember_mapping, remembered_mapping,
    set_headers,
};

use anyhow::Context;

use super::{Db, stage_list};
use crate::domain::ids::{Actor, OrgId, UserId};
use crate::domain::imports::history::Cursor;
use crate::domain::imports::{
    Action, ApiOrigin, ColumnMapping, DuplicateHandling, Import, ImportFile, Rollback, Stage, Validated,
};
use crate::{on_pool, on_writer};

/// An `imports` row as stored; [`ImportRecord::decode`] makes it an [`Import`].
#[derive(Debug, Clone, sqlx::FromRow)]
struct ImportRecord {
    id: i64,
    org_id: i64,
    resource: String,
    name: String,
    action: String,
    duplicate_handling: String,
    stage: String,
    paused: bool,
    reason: String,
    file_name: String,
    file_path: String,
    file_size: i64,
    checksum: String,
    sheet: Option<String>,
    headers: String,
    column_mapping: String,
    column_options: String,
    chunk_size: i64,
    total_rows: i64,
    valid_rows: i64,
    invalid_rows: i64,
    duplicate_rows: i64,
    to_create: i64,
    to_update: i64,
    unchanged_rows: i64,
    processed_rows: i64,
    created_rows: i64,
    updated_rows: i64,
    failed_rows: i64,
    next_row: i64,
    created_by: Option<i64>,
    created_by_label: String,
    updated_by: Option<i64>,
    created_at: i64,
    updated_at: i64,
    to_delete: i64,
    deleted_rows: i64,
    rollback_requested_at: Option<i64>,
    rollback_requested_by_label: String,
    rollback_overwrite: bool,
    rollback_cursor: i64,
    rolled_back_rows: i64,
    rollback_skipped: i64,
    rolled_back_at: Option<i64>,
    staging_purged_at: Option<i64>,
    journal_purged_at: Option<i64>,
    upload_mode: String,
    auto_start: bool,
    created_by_key: Option<i64>,
    updated_by_key: Option<i64>,
}

impl ImportRecord {
    /// The typed import; a stored value the domain does not know is an error, not a guess.
    fn decode(self) -> anyhow::Result<Import> {
        let id = self.id;
        let bad = |what: &str, e: String| anyhow::anyhow!("import {id}: stored {what} is not valid: {e}");
        let headers: Vec<String> = if self.headers.is_empty() {
            vec![]
        } else {
            serde_json::from_str(&self.headers).map_err(|e| bad("headers", e.to_string()))?
        };
        let mapping: ColumnMapping = if self.column_mapping.is_empty() {
            ColumnMapping::new()
        } else {
            serde_json::from_str(&self.column_mapping).map_err(|e| bad("column mapping", e.to_string()))?
        };
        let options = if self.column_options.is_empty() {
            Default::default()
        } else {
            serde_json::from_str(&self.column_options).map_err(|e| bad("column options", e.to_string()))?
        };
        Ok(Import {
            id,
            org: OrgId::new(self.org_id),
            entity: self.resource,
            name: self.name,
            action: Action::parse(&self.action).map_err(|e| bad("action", e))?,
            duplicate_handling: DuplicateHandling::parse(&self.duplicate_handling)
                .map_err(|e| bad("duplicate handling", e))?,
            stage: Stage::parse(&self.stage).ok_or_else(|| bad("stage", self.stage.clone()))?,
            paused: self.paused,
            reason: self.reason,
            file: ImportFile {
                name: self.file_name,
                path: self.file_path,
                size: self.file_size,
                checksum: self.checksum,
                sheet: self.sheet,
            },
            headers,
            mapping,
            options,
            chunk_size: self.chunk_size,
            validated: Validated {
                total_rows: self.total_rows,
                valid_rows: self.valid_rows,
                invalid_rows: self.invalid_rows,
                duplicate_rows: self.duplicate_rows,
                to_create: self.to_create,
                to_update: self.to_update,
                unchanged_rows: self.unchanged_rows,
                to_delete: self.to_delete,
            },
            next_row: self.next_row,
            processed_rows: self.processed_rows,
            created_rows: self.created_rows,
            updated_rows: self.updated_rows,
            deleted_rows: self.deleted_rows,
            failed_rows: self.failed_rows,
            created_by: self.created_by.map(UserId::new),
            created_by_label: self.created_by_label,
            updated_by: self.updated_by.map(UserId::new),
            created_at: self.created_at,
            updated_at: self.updated_at,
            rollback: Rollback {
                requested_at: self.rollback_requested_at,
                requested_by_label: self.rollback_requested_by_label,
                overwrite: self.rollback_overwrite,
                cursor: self.rollback_cursor,
                rolled_back_rows: self.rolled_back_rows,
                skipped: self.rollback_skipped,
                rolled_back_at: self.rolled_back_at,
            },
            staging_purged_at: self.staging_purged_at,
            journal_purged_at: self.journal_purged_at,
            api: ApiOrigin {
                sync: self.upload_mode == "sync",
                auto_start: self.auto_start,
                created_by_key: self.created_by_key,
                updated_by_key: self.updated_by_key,
            },
        })
    }
}

fn decode_all(rows: Vec<ImportRecord>) -> anyhow::Result<Vec<Import>> {
    rows.into_iter().map(ImportRecord::decode).collect()
}

const COLUMNS: &str = "id, org_id, resource, name, action, duplicate_handling, stage, paused, reason,
    file_name, file_path, file_size, checksum, sheet, headers, column_mapping, column_options, chunk_size, total_rows, valid_rows,
    invalid_rows, duplicate_rows, to_create, to_update, unchanged_rows, processed_rows, created_rows, updated_rows,
    failed_rows, next_row, created_by, created_by_label, updated_by, created_at, updated_at, to_delete, deleted_rows,
    rollback_requested_at, rollback_requested_by_label, rollback_overwrite, rollback_cursor, rolled_back_rows,
    rollback_skipped, rolled_back_at, staging_purged_at, journal_purged_at, upload_mode, auto_start, created_by_key,
    updated_by_key";

pub struct NewImport<'a> {
    pub entity: &'a str,
    pub name: &'a str,
    pub action: Action,
    pub duplicate_handling: DuplicateHandling,
    pub file_name: &'a str,
    pub file_path: &'a str,
    pub file_size: i64,
    pub checksum: &'a str,
    pub chunk_size: i64,
    pub created_by: Actor,
    pub created_by_label: &'a str,
    pub upload_mode_sync: bool,
    pub auto_start: bool,
}

#[tracing::instrument(skip_all, fields(org_id = org.get(), entity = n.entity))]
pub async fn create(db: &Db, org: OrgId, n: &NewImport<'_>) -> anyhow::Result<i64> {
    let now = crate::now();
    on_writer!(db, p => sqlx::query_scalar::<_, i64>(
        "INSERT INTO imports (org_id, resource, name, duplicate_handling, stage, file_name, file_path, file_size, checksum,
                              chunk_size, created_by, created_by_label, updated_by, created_at, updated_at, action,
                              created_by_key, updated_by_key, upload_mode, auto_start)
         VALUES ($1, $2, $3, $4, $14, $5, $6, $7, $8, $9, $10, $11, $10, $12, $12, $13, $15, $15, $16, $17)
         RETURNING id",
    )
    .bind(org.get())
    .bind(n.entity)
    .bind(n.name)
    .bind(n.duplicate_handling.as_str())
    .bind(n.file_name)
    .bind(n.file_path)
    .bind(n.file_size)
    .bind(n.checksum)
    .bind(n.chunk_size)
    .bind(n.created_by.user())
    .bind(n.created_by_label)
    .bind(now)
    .bind(n.action.as_str())
    .bind(Stage::Pending.as_str())
    .bind(n.created_by.key())
    .bind(if n.upload_mode_sync { "sync" } else { "async" })
    .bind(n.auto_start)
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
) -> anyhow::Result<Vec<Import>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM imports WHERE org_id = $1 AND id > $2
           AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at <= $4)
         ORDER BY id LIMIT $5"
    );
    let rows = on_pool!(db, p => sqlx::query_as::<_, ImportRecord>(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(after_id)
        .bind(range.0)
        .bind(range.1)
        .bind(limit)
        .fetch_all(p)
        .await)
    .context("reading imports")?;
    decode_all(rows)
}

/// The org an import belongs to.
pub async fn org_of(db: &Db, id: i64) -> anyhow::Result<Option<OrgId>> {
    let org = on_pool!(db, p => sqlx::query_scalar::<_, i64>("SELECT org_id FROM imports WHERE id = $1")
        .bind(id)
        .fetch_optional(p)
        .await)
    .context("finding the import's org")?;
    Ok(org.map(OrgId::new))
}

/// The import, if it belongs to the org.
#[tracing::instrument(skip_all, fields(org_id = org.get(), import_id = id))]
pub async fn get(db: &Db, org: OrgId, id: i64) -> anyhow::Result<Option<Import>> {
    let sql = format!("SELECT {COLUMNS} FROM imports WHERE org_id = $1 AND id = $2");
    let row = on_pool!(db, p => sqlx::query_as::<_, ImportRecord>(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(id)
        .fetch_optional(p)
        .await)
    .context("loading import")?;
    row.map(ImportRecord::decode).transpose()
}

/// The org's other imports of the same file (by its MD5), newest first, at most `limit`.
pub async fn same_file(db: &Db, imp: &Import, limit: i64) -> anyhow::Result<Vec<Import>> {
    if imp.file.checksum.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM imports WHERE org_id = $1 AND checksum = $2 AND id <> $3 ORDER BY id DESC LIMIT $4"
    );
    let rows = on_pool!(db, p => sqlx::query_as::<_, ImportRecord>(sqlx::AssertSqlSafe(sql))
        .bind(imp.org.get())
        .bind(&imp.file.checksum)
        .bind(imp.id)
        .bind(limit)
        .fetch_all(p)
        .await)
    .context("finding imports of the same file")?;
    rows.into_iter().map(ImportRecord::decode).collect()
}

/// Filters of Import History; None means any.
pub struct ListFilter<'a> {
    /// Any of these stages (empty: any stage).
    pub stages: &'a [Stage],
    pub entity: Option<&'a str>,
    /// Created at or after / before this time (epoch seconds); [`count`] takes neither.
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    /// Of the pending imports, only those with a file (true) or only those still waiting
    /// for one (false); None: both.
    pub pending_with_file: Option<bool>,
    /// Only imports newer than this (created_at, id), besides the cursor's bound.
    pub newer_than: Option<(i64, i64)>,
}

impl ListFilter<'_> {
    /// The filter's conditions, with `$2`, `$3` … for its values (`$1` is the org), and the
    /// values in order. Written only for the filters set, so each reads its own index.
    fn conditions(&self) -> (String, Vec<String>) {
        let (mut sql, mut binds) = (String::new(), vec![]);
        if !self.stages.is_empty() {
            let mut marks = vec![];
            for stage in self.stages {
                binds.push(stage.as_str().to_string());
                marks.push(format!("${}", binds.len() + 1));
            }
            if marks.len() == 1 {
                sql.push_str(&format!(" AND stage = {}", marks[0]));
            } else {
                sql.push_str(&format!(" AND stage IN ({})", marks.join(", ")));
            }
        }
        if let Some(entity) = self.entity {
            binds.push(entity.to_string());
            sql.push_str(&format!(" AND resource = ${}", binds.len() + 1));
        }
        (sql, binds)
    }

    /// The created-at conditions, with literal numbers (they are integers).
    fn created_range(&self) -> String {
        let mut sql = String::new();
        if let Some(at) = self.created_after {
            sql.push_str(&format!(" AND created_at >= {at}"));
        }
        if let Some(at) = self.created_before {
            sql.push_str(&format!(" AND created_at < {at}"));
        }
        if let Some((at, id)) = self.newer_than {
            sql.push_str(&format!(" AND (created_at, id) > ({at}, {id})"));
        }
        match self.pending_with_file {
            Some(true) => sql.push_str(" AND (stage <> 'pending' OR file_path <> '')"),
            Some(false) => sql.push_str(" AND (stage <> 'pending' OR file_path = '')"),
            None => {}
        }
        sql
    }
}

/// How many imports the filter finds, from the per-org counts the database keeps up to date
/// (`import_counts`, by triggers on `imports`): a few rows read, however many imports.
#[tracing::instrument(skip_all, fields(org_id = org.get()))]
pub async fn count(db: &Db, org: OrgId, f: &ListFilter<'_>) -> anyhow::Result<i64> {
    anyhow::ensure!(
        f.created_after.is_none() && f.created_before.is_none(),
        "import counts are kept per stage, not by time"
    );
    let (cond, binds) = f.conditions();
    let sql = format!("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM import_counts WHERE org_id = $1{cond}");
    on_pool!(db, p => {
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(org.get());
        for b in &binds {
            q = q.bind(b);
        }
        q.fetch_one(p).await
    })
    .context("counting imports")
}

/// A page of the filter's imports from `cursor`, newest first, and whether there are more
/// beyond it in the cursor's direction (older for the first and next pages, newer for a
/// previous page).
#[tracing::instrument(skip_all, fields(org_id = org.get()))]
pub async fn list(
    db: &Db,
    org: OrgId,
    f: &ListFilter<'_>,
    cursor: Cursor,
    limit: i64,
) -> anyhow::Result<(Vec<Import>, bool)> {
    let (rows, more) = list_of::<ImportRecord>(db, (org, f, cursor, limit), COLUMNS).await?;
    Ok((decode_all(rows)?, more))
}

/// A page of the filter's imports as rows of `R`, read with `columns` (the ones of
/// [`list`], and any the caller adds), and whether there are more.
async fn list_of<R>(
    db: &Db,
    (org, f, cursor, limit): (OrgId, &ListFilter<'_>, Cursor, i64),
    columns: &str,
) -> anyhow::Result<(Vec<R>, bool)>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    R: Send + Unpin,
{
    let (mut cond, binds) = f.conditions();
    cond.push_str(&f.created_range());
    let n = binds.len() + 1;
    let (from, order) = match cursor {
        Cursor::First => (String::new(), "DESC"),
        Cursor::Before(..) => (format!(" AND (created_at, id) < (${}, ${})", n + 1, n + 2), "DESC"),
        Cursor::After(..) => (format!(" AND (created_at, id) > (${}, ${})", n + 1, n + 2), "ASC"),
    };
    let sql = format!(
        "SELECT {columns} FROM imports WHERE org_id = $1{cond}{from}
         ORDER BY created_at {order}, id {order} LIMIT {}",
        limit + 1
    );
    let mut rows = on_pool!(db, p => {
        let mut q = sqlx::query_as::<_, R>(sqlx::AssertSqlSafe(sql)).bind(org.get());
        for b in &binds {
            q = q.bind(b);
        }
        if let Cursor::Before(at, id) | Cursor::After(at, id) = cursor {
            q = q.bind(at).bind(id);
        }
        q.fetch_all(p).await
    })
    .context("listing imports")?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    if cursor.reads_ascending() {
        rows.reverse();
    }
    Ok((rows, more))
}

/// Moves the import from `from` to `to` if it is still in `from`; false otherwise (another
/// request or worker got there first).
#[tracing::instrument(skip(db, reason), fields(import_id = id))]
pub async fn transition(db: &Db, id: i64, from: Stage, to: Stage, reason: &str) -> anyhow::Result<bool> {
    if !from.can_transition_to(to) {
        anyhow::bail!("import {id}: {from} cannot become {to}");
    }
    let n = on_writer!(db, p => sqlx::query(
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

/// validating → ready with the counts.
#[tracing::instrument(skip(db, v), fields(import_id = id))]
pub async fn finish_validation(db: &Db, id: i64, v: &Validated) -> anyhow::Result<bool> {
    let sql = format!(
        "UPDATE imports SET stage = $11, total_rows = $2, valid_rows = $3, invalid_rows = $4, duplicate_rows = $5,
                to_create = $6, to_update = $7, unchanged_rows = $8, updated_at = $9, to_delete = $10
         WHERE id = $1 AND stage IN ({})",
        stage_list(&Stage::sources(Stage::Ready))
    );
    let n = on_writer!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
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
    .bind(Stage::Ready.as_str())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("saving validation results")?;
    Ok(n > 0)
}

/// ready → importing, from the first row.
#[tracing::instrument(skip(db), fields(org_id = org.get(), import_id = id))]
pub async fn start_import(db: &Db, org: OrgId, id: i64, by: Actor) -> anyhow::Result<bool> {
    let sql = format!(
        "UPDATE imports SET stage = $5, paused = FALSE, next_row = 0, processed_rows = 0, created_rows = 0,
                updated_rows = 0, failed_rows = 0, deleted_rows = 0, updated_by = $3, updated_by_key = $6,
                updated_at = $4
         WHERE org_id = $1 AND id = $2 AND stage IN ({})",
        stage_list(&Stage::sources(Stage::Importing))
    );
    let n = on_writer!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
    .bind(org.get())
    .bind(id)
    .bind(by.user())
    .bind(crate::now())
    .bind(Stage::Importing.as_str())
    .bind(by.key())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("starting import")?;
    Ok(n > 0)
}

/// Pauses or resumes an importing import; false when it is not importing.
#[tracing::instrument(skip(db), fields(org_id = org.get(), import_id = id))]
pub async fn set_paused(db: &Db, org: OrgId, id: i64, paused: bool, by: Actor) -> anyhow::Result<bool> {
    let n = on_writer!(db, p => sqlx::query(
        "UPDATE imports SET paused = $3, updated_by = $4, updated_by_key = $7, updated_at = $5
         WHERE org_id = $1 AND id = $2 AND stage = $6",
    )
    .bind(org.get())
    .bind(id)
    .bind(paused)
    .bind(by.user())
    .bind(crate::now())
    .bind(Stage::Importing.as_str())
    .bind(by.key())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("pausing import")?;
    Ok(n > 0)
}

/// For `bench history`: `n` finished imports of the org, one a minute back from now, their
/// stage and entity type varying (every third failed, the rest completed; the entity
/// cycling through `entities`), in one statement.
pub async fn insert_many_for_bench(db: &Db, org: OrgId, by: UserId, n: i64, entities: &[&str]) -> anyhow::Result<()> {
    anyhow::ensure!(!entities.is_empty(), "no entity types to spread the imports over");
    let cases: Vec<String> =
        entities.iter().enumerate().map(|(k, e)| format!("WHEN {k} THEN '{}'", e.replace('\'', ""))).collect();
    let sql = format!(
        "INSERT INTO imports (org_id, resource, name, stage, file_name, file_path, file_size, checksum, chunk_size,
                              created_by, created_by_label, updated_by, created_at, updated_at, total_rows, created_rows)
         WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $2)
         SELECT $1, CASE i % {} {} END, 'bench ' || CAST(i AS TEXT),
                CASE WHEN i % 3 = 0 THEN $5 ELSE $6 END, 'bench.csv', '/nowhere', 1, '', 50,
                $3, 'bench', $3, $4 - ($2 - i) * 60, $4 - ($2 - i) * 60, 100, 100
         FROM seq",
        entities.len(),
        cases.join(" ")
    );
    on_writer!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(n)
        .bind(by.get())
        .bind(crate::now())
        .bind(Stage::Failed.as_str())
        .bind(Stage::Completed.as_str())
        .execute(p)
        .await
        .map(|_| ()))
    .context("storing benchmark imports")?;
    super::analyze(db, &["imports"]).await
}

/// importing → completed (or failed), when the cursor reached the end.
pub async fn finish_import(db: &Db, id: i64, to: Stage, reason: &str) -> anyhow::Result<bool> {
    transition(db, id, Stage::Importing, to, reason).await
}
