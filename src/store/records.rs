//! Entity records of an org: listing, searching, counting, and adding one record.

use anyhow::Context;

use super::Db;
use crate::domain::ids::OrgId;
use crate::on_pool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordRow {
    pub id: i64,
    pub record_key: String,
    pub data: String,
    pub updated_at: i64,
}

/// `%text%` for LIKE, with the wildcards in `text` escaped.
fn like_pattern(q: &str) -> String {
    let escaped = q.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

pub async fn count(db: &Db, org: OrgId, entity: &str, q: Option<&str>) -> anyhow::Result<i64> {
    let pattern = like_pattern(q.unwrap_or_default());
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM records WHERE org_id = $1 AND entity = $2 AND search_text LIKE $3 ESCAPE '\\'",
    )
    .bind(org.get())
    .bind(entity)
    .bind(&pattern)
    .fetch_one(p)
    .await)
    .context("counting records")
}

/// A page of records, ordered by key; `q` matches any field's text, case-insensitively.
pub async fn list(
    db: &Db,
    org: OrgId,
    entity: &str,
    q: Option<&str>,
    limit: i64,
    offset: i64,
) -> anyhow::Result<Vec<RecordRow>> {
    let pattern = like_pattern(q.unwrap_or_default());
    on_pool!(db, p => sqlx::query_as::<_, RecordRow>(
        "SELECT id, record_key, data, updated_at FROM records
         WHERE org_id = $1 AND entity = $2 AND search_text LIKE $3 ESCAPE '\\'
         ORDER BY record_key LIMIT $4 OFFSET $5",
    )
    .bind(org.get())
    .bind(entity)
    .bind(&pattern)
    .bind(limit)
    .bind(offset)
    .fetch_all(p)
    .await)
    .context("listing records")
}

/// A record ready to store: key, normalized JSON, content hash, search text.
pub struct NewRecord<'a> {
    pub key: &'a str,
    pub data: &'a str,
    pub row_hash: &'a str,
    pub search_text: &'a str,
}

/// Adds one record; returns its id.
pub async fn insert(db: &Db, org: OrgId, entity: &str, r: &NewRecord<'_>) -> anyhow::Result<i64> {
    let now = crate::now();
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "INSERT INTO records (org_id, entity, record_key, data, row_hash, search_text, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(org.get())
    .bind(entity)
    .bind(r.key)
    .bind(r.data)
    .bind(r.row_hash)
    .bind(r.search_text)
    .bind(now)
    .fetch_one(p)
    .await)
    .context("adding record")
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::like_pattern("A_b%c\\"), "%a\\_b\\%c\\\\%");
        assert_eq!(super::like_pattern(""), "%%");
    }
}
