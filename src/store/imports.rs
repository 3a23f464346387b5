//! Imports: the import rows themselves, their phases, the rows they leave out (issues),
//! the lookups validation needs, and the chunk transaction of the import phase.
//!
//! Exactly once: a chunk's records, its counts and the import's cursor (`next_row`) are
//! written in one transaction that first moves the cursor from where the chunk started.
//! If another worker already moved it (a job taken over), the chunk is rolled back.

use std::collections::{HashMap, HashSet};

use anyhow::Context;

use super::Db;
use crate::domain::entities::PreparedRecord;
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
}

impl ImportRow {
    pub fn stage(&self) -> Stage {
        Stage::parse(&self.stage).unwrap_or(Stage::Failed)
    }
}

const COLUMNS: &str = "id, org_id, resource, name, upload_mode, action, duplicate_handling, stage, paused, reason,
    file_name, file_path, file_size, checksum, sheet, headers, column_mapping, chunk_size, total_rows, valid_rows,
    invalid_rows, duplicate_rows, to_create, to_update, unchanged_rows, processed_rows, created_rows, updated_rows,
    failed_rows, next_row, created_by, created_by_label, updated_by, created_at, updated_at";

pub struct NewImport<'a> {
    pub resource: &'a str,
    pub name: &'a str,
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
                              chunk_size, created_by, created_by_label, updated_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $10, $12, $12) RETURNING id",
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
    .fetch_one(p)
    .await)
    .context("creating import")
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
}

/// validating → ready with the counts.
pub async fn finish_validation(db: &Db, id: i64, v: &Validated) -> anyhow::Result<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "UPDATE imports SET stage = 'ready', total_rows = $2, valid_rows = $3, invalid_rows = $4, duplicate_rows = $5,
                to_create = $6, to_update = $7, unchanged_rows = $8, updated_at = $9
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
                updated_rows = 0, failed_rows = 0, updated_by = $3, updated_at = $4
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

/// Forgets the issues of earlier validation runs.
pub async fn clear_issues(db: &Db, id: i64) -> anyhow::Result<()> {
    on_pool!(db, p => sqlx::query("DELETE FROM import_issues WHERE import_id = $1")
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("clearing issues")?;
    Ok(())
}

/// Stores issues in one transaction.
pub async fn add_issues(db: &Db, id: i64, issues: &[Issue]) -> anyhow::Result<()> {
    if issues.is_empty() {
        return Ok(());
    }
    on_pool!(db, p => {
        let mut tx = p.begin().await.context("starting transaction")?;
        for i in issues {
            sqlx::query("INSERT INTO import_issues (import_id, row_number, kind, message, cells) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(i.row_number)
                .bind(&i.kind)
                .bind(&i.message)
                .bind(&i.cells)
                .execute(&mut *tx)
                .await
                .context("storing issue")?;
        }
        tx.commit().await.context("committing issues")
    })
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
        "SELECT row_number, kind, message, cells FROM import_issues WHERE import_id = $1
         ORDER BY row_number, id LIMIT $2 OFFSET $3",
    )
    .bind(id)
    .bind(limit)
    .bind(offset)
    .fetch_all(p)
    .await)
    .context("loading issues")
}

/// The row numbers that validation left out.
pub async fn left_out_rows(db: &Db, id: i64) -> anyhow::Result<HashSet<i64>> {
    let rows = on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "SELECT DISTINCT row_number FROM import_issues WHERE import_id = $1 AND kind IN ('error', 'duplicate')",
    )
    .bind(id)
    .fetch_all(p)
    .await)
    .context("loading left-out rows")?;
    Ok(rows.into_iter().collect())
}

fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Of `keys`, those with a record of `entity` in the org, with their row hash.
pub async fn existing_keys(
    db: &Db,
    org: OrgId,
    entity: &str,
    keys: &[String],
) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for batch in keys.chunks(500) {
        let sql = format!(
            "SELECT record_key, row_hash FROM records WHERE org_id = $1 AND entity = $2 AND record_key IN ({})",
            placeholders(3, batch.len())
        );
        let rows: Vec<(String, String)> = on_pool!(db, p => {
            let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql)).bind(org.get()).bind(entity);
            for k in batch {
                q = q.bind(k);
            }
            q.fetch_all(p).await
        })
        .context("looking up record keys")?;
        out.extend(rows);
    }
    Ok(out)
}

/// Of `values` of a unique field, those already used, with the key of the record using them.
pub async fn used_unique_values(
    db: &Db,
    org: OrgId,
    entity: &str,
    field: &str,
    values: &[String],
) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for batch in values.chunks(500) {
        let sql = format!(
            "SELECT u.value, r.record_key FROM record_unique_values u JOIN records r ON r.id = u.record_id
             WHERE u.org_id = $1 AND u.entity = $2 AND u.field = $3 AND u.value IN ({})",
            placeholders(4, batch.len())
        );
        let rows: Vec<(String, String)> = on_pool!(db, p => {
            let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql)).bind(org.get()).bind(entity).bind(field);
            for v in batch {
                q = q.bind(v);
            }
            q.fetch_all(p).await
        })
        .context("looking up unique values")?;
        out.extend(rows);
    }
    Ok(out)
}

/// One row to write in a chunk.
pub struct ChunkRow {
    pub row_number: i64,
    pub record: PreparedRecord,
    /// The original cells, for an issue if the row fails.
    pub cells: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChunkResult {
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub failed: i64,
}

/// Writes one chunk (merge: create or update by key) in one transaction that first moves
/// the import's cursor from `from_row` to `to_row`; returns None when the cursor was not at
/// `from_row` (another worker did this chunk), leaving everything as it was.
pub async fn write_chunk(
    db: &Db,
    org: OrgId,
    import_id: i64,
    entity: &str,
    from_row: i64,
    to_row: i64,
    rows: &[ChunkRow],
) -> anyhow::Result<Option<ChunkResult>> {
    let now = crate::now();
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting chunk transaction")?;
        let moved = sqlx::query("UPDATE imports SET next_row = $3, updated_at = $4 WHERE id = $1 AND next_row = $2 AND stage = 'importing'")
            .bind(import_id)
            .bind(from_row)
            .bind(to_row)
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("moving the import cursor")?
            .rows_affected();
        if moved == 0 {
            return Ok(None);
        }
        let mut res = ChunkResult::default();
        let mut failed: Vec<(i64, String, &str)> = vec![];
        // the chunk's existing records, in one query
        let keys: Vec<&str> = rows.iter().map(|r| r.record.key.as_str()).collect();
        let mut existing: HashMap<String, (i64, String)> = HashMap::new();
        if !keys.is_empty() {
            let sql = format!(
                "SELECT id, record_key, row_hash FROM records WHERE org_id = $1 AND entity = $2 AND record_key IN ({})",
                placeholders(3, keys.len())
            );
            let mut q = sqlx::query_as::<_, (i64, String, String)>(sqlx::AssertSqlSafe(sql)).bind(org.get()).bind(entity);
            for k in &keys {
                q = q.bind(*k);
            }
            for (id, key, hash) in q.fetch_all(&mut *tx).await.context("looking up records")? {
                existing.insert(key, (id, hash));
            }
        }
        // the unique values already taken, one query per unique field
        let mut taken: HashMap<(String, String), i64> = HashMap::new();
        let fields: HashSet<&str> = rows.iter().flat_map(|r| r.record.uniques.iter().map(|(f, _)| f.as_str())).collect();
        for field in fields {
            let values: Vec<&str> = rows
                .iter()
                .flat_map(|r| r.record.uniques.iter().filter(|(f, _)| f == field).map(|(_, v)| v.as_str()))
                .collect();
            let sql = format!(
                "SELECT value, record_id FROM record_unique_values WHERE org_id = $1 AND entity = $2 AND field = $3 AND value IN ({})",
                placeholders(4, values.len())
            );
            let mut q = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql)).bind(org.get()).bind(entity).bind(field);
            for v in &values {
                q = q.bind(*v);
            }
            for (value, record) in q.fetch_all(&mut *tx).await.context("checking unique values")? {
                taken.insert((field.to_string(), value), record);
            }
        }
        let mut creates: Vec<&ChunkRow> = vec![];
        let mut uniques_of: Vec<(i64, &[(String, String)])> = vec![];
        for row in rows {
            let r = &row.record;
            let current = existing.get(&r.key);
            if let Some((_, hash)) = current
                && *hash == r.row_hash
            {
                res.unchanged += 1;
                continue;
            }
            let clash = r.uniques.iter().find(|(f, v)| {
                taken.get(&(f.clone(), v.clone())).is_some_and(|owner| Some(*owner) != current.map(|(id, _)| *id))
            });
            if let Some((field, value)) = clash {
                failed.push((row.row_number, format!("{field}: \"{value}\" is already used by another record"), &row.cells));
                continue;
            }
            // later rows of this chunk see this row's unique values as taken
            for (f, v) in &r.uniques {
                taken.insert((f.clone(), v.clone()), current.map(|(id, _)| *id).unwrap_or(-row.row_number));
            }
            match current {
                Some((id, _)) => {
                    sqlx::query(
                        "UPDATE records SET data = $2, row_hash = $3, search_text = $4, import_id = $5, import_row = $6, updated_at = $7
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(&r.data)
                    .bind(&r.row_hash)
                    .bind(&r.search_text)
                    .bind(import_id)
                    .bind(row.row_number)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .context("updating record")?;
                    sqlx::query("DELETE FROM record_unique_values WHERE record_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .context("updating unique values")?;
                    uniques_of.push((*id, &r.uniques));
                    res.updated += 1;
                }
                None => creates.push(row),
            }
        }
        // the new records, in one statement per 100 rows
        for batch in creates.chunks(100) {
            let rows_sql: Vec<String> = (0..batch.len())
                .map(|i| {
                    let b = 5 + i * 5;
                    format!("($1, $2, ${}, ${}, ${}, ${}, $3, ${}, $4, $4)", b, b + 1, b + 2, b + 3, b + 4)
                })
                .collect();
            let sql = format!(
                "INSERT INTO records (org_id, entity, record_key, data, row_hash, search_text, import_id, import_row, created_at, updated_at)
                 VALUES {} RETURNING id, record_key",
                rows_sql.join(", ")
            );
            let mut q = sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(sql)).bind(org.get()).bind(entity).bind(import_id).bind(now);
            for row in batch {
                let r = &row.record;
                q = q.bind(&r.key).bind(&r.data).bind(&r.row_hash).bind(&r.search_text).bind(row.row_number);
            }
            let ids: HashMap<String, i64> = q.fetch_all(&mut *tx).await.context("creating records")?.into_iter().map(|(id, k)| (k, id)).collect();
            for row in batch {
                if let Some(id) = ids.get(&row.record.key) {
                    uniques_of.push((*id, &row.record.uniques));
                }
            }
            res.created += batch.len() as i64;
        }
        for (record_id, uniques) in uniques_of {
            for (field, value) in uniques {
                sqlx::query("INSERT INTO record_unique_values (org_id, entity, field, value, record_id) VALUES ($1, $2, $3, $4, $5)")
                    .bind(org.get())
                    .bind(entity)
                    .bind(field)
                    .bind(value)
                    .bind(record_id)
                    .execute(&mut *tx)
                    .await
                    .context("storing unique values")?;
            }
        }
        for (row_number, why, cells) in &failed {
            sqlx::query("INSERT INTO import_issues (import_id, row_number, kind, message, cells) VALUES ($1, $2, 'failed', $3, $4)")
                .bind(import_id)
                .bind(row_number)
                .bind(why)
                .bind(cells)
                .execute(&mut *tx)
                .await
                .context("storing failed row")?;
        }
        res.failed = failed.len() as i64;
        sqlx::query(
            "UPDATE imports SET processed_rows = processed_rows + $2, created_rows = created_rows + $3,
                    updated_rows = updated_rows + $4, failed_rows = failed_rows + $5 WHERE id = $1",
        )
        .bind(import_id)
        .bind(rows.len() as i64)
        .bind(res.created)
        .bind(res.updated)
        .bind(res.failed)
        .execute(&mut *tx)
        .await
        .context("counting progress")?;
        tx.commit().await.context("committing chunk")?;
        Ok(Some(res))
    })
}

/// A chunk whose transaction failed: its rows are recorded as failed with the reason, and
/// the cursor moves past it so the import goes on.
pub async fn fail_chunk(
    db: &Db,
    import_id: i64,
    from_row: i64,
    to_row: i64,
    rows: &[(i64, String)],
    why: &str,
) -> anyhow::Result<bool> {
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        let moved = sqlx::query("UPDATE imports SET next_row = $3, processed_rows = processed_rows + $4, failed_rows = failed_rows + $4, updated_at = $5
                                 WHERE id = $1 AND next_row = $2 AND stage = 'importing'")
            .bind(import_id)
            .bind(from_row)
            .bind(to_row)
            .bind(rows.len() as i64)
            .bind(crate::now())
            .execute(&mut *tx)
            .await
            .context("moving the import cursor")?
            .rows_affected();
        if moved == 0 {
            return Ok(false);
        }
        for (row_number, cells) in rows {
            sqlx::query("INSERT INTO import_issues (import_id, row_number, kind, message, cells) VALUES ($1, $2, 'failed', $3, $4)")
                .bind(import_id)
                .bind(row_number)
                .bind(why)
                .bind(cells)
                .execute(&mut *tx)
                .await
                .context("storing failed row")?;
        }
        tx.commit().await.context("committing failed chunk")?;
        Ok(true)
    })
}

/// importing → completed (or failed), when the cursor reached the end.
pub async fn finish_import(db: &Db, id: i64, to: Stage, reason: &str) -> anyhow::Result<bool> {
    transition(db, id, Stage::Importing, to, reason).await
}
