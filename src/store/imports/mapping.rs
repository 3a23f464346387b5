//! An import's columns: the header read at upload with a few values of each column and a
//! profile of its first rows, the mapping (and column options) a person confirms, and the
//! mapping an org last confirmed for a set of headers.

use anyhow::Context;

use super::{ColumnMapping, Stage, stage_list};
use crate::domain::ids::{Actor, OrgId};
use crate::domain::imports::{ColumnOptions, FileProfile};
use crate::store::Db;
use crate::{on_pool, on_writer};

/// What reading a file's first rows at upload gave: its header, the proposed mapping and
/// column options, the sheet read, a few values of each column and a profile of them.
pub struct FileColumns<'a> {
    pub headers: &'a [String],
    pub mapping: &'a ColumnMapping,
    pub proposed: &'a ColumnOptions,
    pub sheet: Option<&'a str>,
    pub samples: &'a [Vec<String>],
    pub profile: &'a FileProfile,
}

/// After the file was read: its headers and the proposed mapping; pending → mapping.
pub async fn set_headers(db: &Db, id: i64, c: &FileColumns<'_>) -> anyhow::Result<bool> {
    let sql = format!(
        "UPDATE imports SET headers = $2, column_mapping = $3, sheet = $4, stage = $6, updated_at = $5,
                column_samples = $7, column_options = $8, column_profile = $9
         WHERE id = $1 AND stage IN ({})",
        stage_list(&Stage::sources(Stage::Mapping))
    );
    let n = on_writer!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
    .bind(id)
    .bind(serde_json::to_string(c.headers)?)
    .bind(serde_json::to_string(c.mapping)?)
    .bind(c.sheet)
    .bind(crate::now())
    .bind(Stage::Mapping.as_str())
    .bind(serde_json::to_string(c.samples)?)
    .bind(serde_json::to_string(c.proposed)?)
    .bind(serde_json::to_string(c.profile)?)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("saving headers")?;
    Ok(n > 0)
}

/// The few values of each column read at upload (in the header's order; empty for an
/// import whose file came another way).
pub async fn column_samples(db: &Db, id: i64) -> anyhow::Result<Vec<Vec<String>>> {
    let raw: Option<String> = on_pool!(db, p => sqlx::query_scalar("SELECT column_samples FROM imports WHERE id = $1")
        .bind(id)
        .fetch_optional(p)
        .await)
    .context("reading column samples")?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default())
}

/// The first rows of the file, column by column, read at upload (empty for an import whose
/// file came another way).
pub async fn column_profile(db: &Db, id: i64) -> anyhow::Result<FileProfile> {
    let raw: Option<String> = on_pool!(db, p => sqlx::query_scalar("SELECT column_profile FROM imports WHERE id = $1")
        .bind(id)
        .fetch_optional(p)
        .await)
    .context("reading the column profile")?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default())
}

/// The person confirmed a mapping (and its column options): mapping or ready → validating,
/// counts cleared.
#[tracing::instrument(skip(db, mapping, options), fields(org_id = org.get(), import_id = id))]
pub async fn confirm_mapping(
    db: &Db,
    org: OrgId,
    id: i64,
    mapping: &ColumnMapping,
    options: &ColumnOptions,
    by: Actor,
) -> anyhow::Result<bool> {
    let sql = format!(
        "UPDATE imports SET column_mapping = $3, column_options = $8, stage = $6,
                edits_validated = (SELECT COALESCE(MAX(e.id), 0) FROM import_edits e WHERE e.import_id = $2),
                reason = '', updated_by = $4, updated_by_key = $7,
                updated_at = $5,
                total_rows = 0, valid_rows = 0, invalid_rows = 0, duplicate_rows = 0, to_create = 0, to_update = 0,
                unchanged_rows = 0
         WHERE org_id = $1 AND id = $2 AND stage IN ({})",
        stage_list(&Stage::sources(Stage::Validating))
    );
    let n = on_writer!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
    .bind(org.get())
    .bind(id)
    .bind(serde_json::to_string(mapping)?)
    .bind(by.user())
    .bind(crate::now())
    .bind(Stage::Validating.as_str())
    .bind(by.key())
    .bind(serde_json::to_string(options)?)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("saving the column mapping")?;
    Ok(n > 0)
}

/// The mapping an org last confirmed for files of `entity` with these headers.
pub struct Remembered {
    pub mapping: ColumnMapping,
    pub options: ColumnOptions,
    pub import_id: i64,
    pub updated_at: i64,
}

/// Keeps `mapping` and `options` as the org's choice for files of `entity` whose headers
/// give `headers_key`, replacing the one before.
pub async fn remember_mapping(
    db: &Db,
    org: OrgId,
    entity: &str,
    headers_key: &str,
    mapping: &ColumnMapping,
    options: &ColumnOptions,
    import_id: i64,
) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "INSERT INTO mapping_memory (org_id, resource, headers_key, column_mapping, column_options, import_id, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (org_id, resource, headers_key) DO UPDATE SET column_mapping = excluded.column_mapping,
             column_options = excluded.column_options, import_id = excluded.import_id, updated_at = excluded.updated_at",
    )
    .bind(org.get())
    .bind(entity)
    .bind(headers_key)
    .bind(serde_json::to_string(mapping)?)
    .bind(serde_json::to_string(options)?)
    .bind(import_id)
    .bind(crate::now())
    .execute(p)
    .await
    .map(|_| ()))
    .context("remembering the column mapping")?;
    Ok(())
}

/// The mapping the org last confirmed for these headers, if any (one that no longer reads,
/// say after a schema change, is not proposed).
pub async fn remembered_mapping(
    db: &Db,
    org: OrgId,
    entity: &str,
    headers_key: &str,
) -> anyhow::Result<Option<Remembered>> {
    let row: Option<(String, String, i64, i64)> = on_pool!(db, p => sqlx::query_as(
        "SELECT column_mapping, column_options, import_id, updated_at FROM mapping_memory
         WHERE org_id = $1 AND resource = $2 AND headers_key = $3",
    )
    .bind(org.get())
    .bind(entity)
    .bind(headers_key)
    .fetch_optional(p)
    .await)
    .context("reading the remembered column mapping")?;
    Ok(row.and_then(|(m, o, import_id, updated_at)| {
        Some(Remembered {
            mapping: serde_json::from_str(&m).ok()?,
            options: serde_json::from_str(&o).ok()?,
            import_id,
            updated_at,
        })
    }))
}
