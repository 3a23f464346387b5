//! An import's columns: the header read at upload with a few values of each column, and the
//! mapping a person confirms.

use anyhow::Context;

use super::{ColumnMapping, Stage, stage_list};
use crate::domain::ids::{Actor, OrgId};
use crate::store::Db;
use crate::{on_pool, on_writer};

/// After the file was read: its headers and the proposed mapping; pending → mapping.
pub async fn set_headers(
    db: &Db,
    id: i64,
    headers: &[String],
    mapping: &ColumnMapping,
    sheet: Option<&str>,
    samples: &[Vec<String>],
) -> anyhow::Result<bool> {
    let sql = format!(
        "UPDATE imports SET headers = $2, column_mapping = $3, sheet = $4, stage = $6, updated_at = $5,
                column_samples = $7
         WHERE id = $1 AND stage IN ({})",
        stage_list(&Stage::sources(Stage::Mapping))
    );
    let n = on_writer!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
    .bind(id)
    .bind(serde_json::to_string(headers)?)
    .bind(serde_json::to_string(mapping)?)
    .bind(sheet)
    .bind(crate::now())
    .bind(Stage::Mapping.as_str())
    .bind(serde_json::to_string(samples)?)
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

/// The person confirmed a mapping: mapping or ready → validating, counts cleared.
#[tracing::instrument(skip(db, mapping), fields(org_id = org.get(), import_id = id))]
pub async fn confirm_mapping(db: &Db, org: OrgId, id: i64, mapping: &ColumnMapping, by: Actor) -> anyhow::Result<bool> {
    let sql = format!(
        "UPDATE imports SET column_mapping = $3, stage = $6, reason = '', updated_by = $4, updated_by_key = $7,
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
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("saving the column mapping")?;
    Ok(n > 0)
}
