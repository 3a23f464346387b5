//! Entity records of an org: listing, searching, counting, and adding one record.

use anyhow::Context;

use super::Db;
use crate::domain::entities::PreparedRecord;
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

/// How many records of `entity` the org has (matching `q` when given). Without a search the
/// count reads only an index, not every record's text.
pub async fn count(db: &Db, org: OrgId, entity: &str, q: Option<&str>) -> anyhow::Result<i64> {
    let pattern = q.map(str::trim).filter(|q| !q.is_empty()).map(like_pattern);
    let sql = if pattern.is_some() {
        "SELECT COUNT(*) FROM records WHERE org_id = $1 AND entity = $2 AND search_text LIKE $3 ESCAPE '\\'"
    } else {
        "SELECT COUNT(*) FROM records WHERE org_id = $1 AND entity = $2"
    };
    on_pool!(db, p => {
        let mut query = sqlx::query_scalar::<_, i64>(sql).bind(org.get()).bind(entity);
        if let Some(pattern) = &pattern {
            query = query.bind(pattern);
        }
        query.fetch_one(p).await
    })
    .context("counting records")
}

/// Whether the org has any record of `entity` (one index probe, whatever their number).
pub async fn any(db: &Db, org: OrgId, entity: &str) -> anyhow::Result<bool> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>("SELECT id FROM records WHERE org_id = $1 AND entity = $2 LIMIT 1")
        .bind(org.get())
        .bind(entity)
        .fetch_optional(p)
        .await)
    .map(|r| r.is_some())
    .context("looking for records")
}

/// The counts of entities with many records, remembered for a moment. Counting reads every
/// entry of an index: ~15 ms a million records here, and more while an import writes. Twenty
/// people on a list of a million records spent a core counting; with the count remembered for
/// [`CountMemo::FOR`], a page shows a number at most that old while it grows, and small
/// entities (under [`CountMemo::FROM`]) are always counted afresh. One per instance.
pub struct CountMemo {
    from: i64,
    ttl: std::time::Duration,
    counts: std::sync::Mutex<std::collections::HashMap<(i64, String), (i64, std::time::Instant)>>,
}

impl Default for CountMemo {
    fn default() -> Self {
        CountMemo::new(CountMemo::FROM, CountMemo::FOR)
    }
}

impl CountMemo {
    /// Counts from this many records on are remembered.
    pub const FROM: i64 = 10_000;
    /// For this long.
    pub const FOR: std::time::Duration = std::time::Duration::from_secs(2);

    pub fn new(from: i64, ttl: std::time::Duration) -> CountMemo {
        CountMemo { from, ttl, counts: Default::default() }
    }

    /// How many records of `entity` the org has (as [`count`] without a search).
    pub async fn count(&self, db: &Db, org: OrgId, entity: &str) -> anyhow::Result<i64> {
        let key = (org.get(), entity.to_string());
        let lock = || self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, at)) = lock().get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(*n);
        }
        let n = count(db, org, entity, None).await?;
        let mut counts = lock();
        if n >= self.from {
            counts.insert(key, (n, std::time::Instant::now()));
        } else {
            counts.remove(&key);
        }
        Ok(n)
    }
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
    let pattern = q.map(str::trim).filter(|q| !q.is_empty()).map(like_pattern);
    let sql = if pattern.is_some() {
        "SELECT id, record_key, data, updated_at FROM records
         WHERE org_id = $1 AND entity = $2 AND search_text LIKE $5 ESCAPE '\\'
         ORDER BY record_key LIMIT $3 OFFSET $4"
    } else {
        "SELECT id, record_key, data, updated_at FROM records
         WHERE org_id = $1 AND entity = $2
         ORDER BY record_key LIMIT $3 OFFSET $4"
    };
    on_pool!(db, p => {
        let mut query = sqlx::query_as::<_, RecordRow>(sql).bind(org.get()).bind(entity).bind(limit).bind(offset);
        if let Some(pattern) = &pattern {
            query = query.bind(pattern);
        }
        query.fetch_all(p).await
    })
    .context("listing records")
}

/// Which of the `(entity, key)` pairs the org has a record for, in one query.
pub async fn existing_keys(
    db: &Db,
    org: OrgId,
    pairs: &[(&str, &str)],
) -> anyhow::Result<std::collections::HashSet<(String, String)>> {
    let sql = format!(
        "SELECT r.entity, r.record_key FROM ({}) AS j
         JOIN records r ON r.org_id = $1 AND r.entity = j.c0 AND r.record_key = j.c1",
        super::staging::from_json(db, &["TEXT", "TEXT"])
    );
    let json = serde_json::to_string(pairs).context("listing keys")?;
    let found: Vec<(String, String)> = on_pool!(db, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(org.get())
        .bind(&json)
        .fetch_all(p)
        .await)
    .context("looking up records")?;
    Ok(found.into_iter().collect())
}

/// `(id, entity, key, row hash)` of the org's records among `ids`, in one query.
pub async fn by_ids(db: &Db, org: OrgId, ids: &[i64]) -> anyhow::Result<Vec<(i64, String, String, String)>> {
    let sql = format!(
        "SELECT id, entity, record_key, row_hash FROM records
         WHERE org_id = $1 AND id IN (SELECT c0 FROM ({}) AS j)",
        super::staging::from_json(db, &["BIGINT"])
    );
    let json = serde_json::to_string(&ids.iter().map(|id| [*id]).collect::<Vec<_>>()).context("listing ids")?;
    on_pool!(db, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(org.get())
        .bind(&json)
        .fetch_all(p)
        .await)
    .context("reading records by id")
}

/// A record ready to store: key, normalized JSON, content hash, search text.
pub struct NewRecord<'a> {
    pub key: &'a str,
    pub data: &'a str,
    pub row_hash: &'a str,
    pub search_text: &'a str,
    /// Values of the schema's unique fields, enforced by `record_unique_values`.
    pub uniques: &'a [(String, String)],
}

impl<'a> From<&'a PreparedRecord> for NewRecord<'a> {
    fn from(r: &'a PreparedRecord) -> Self {
        NewRecord {
            key: &r.key,
            data: &r.data,
            row_hash: &r.row_hash,
            search_text: &r.search_text,
            uniques: &r.uniques,
        }
    }
}

/// Why a record could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum InsertError {
    /// Another record of the org already has this key.
    DuplicateKey,
    /// Another record of the org already has this value in a unique field.
    DuplicateValue { field: String, value: String },
}

/// Adds one record and its unique values in one transaction; returns its id, or why not.
pub async fn insert(db: &Db, org: OrgId, entity: &str, r: &NewRecord<'_>) -> anyhow::Result<Result<i64, InsertError>> {
    let now = crate::now();
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        // The row hash covers the key, so an existing key is the only duplicate to check.
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT id FROM records WHERE org_id = $1 AND entity = $2 AND record_key = $3")
                .bind(org.get())
                .bind(entity)
                .bind(r.key)
                .fetch_optional(&mut *tx)
                .await
                .context("checking for an existing key")?;
        if taken.is_some() {
            return Ok(Err(InsertError::DuplicateKey));
        }
        let inserted = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(insert_into_records(
            false,
            "VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7, $7) RETURNING id",
        )))
        .bind(org.get())
        .bind(entity)
        .bind(r.key)
        .bind(r.data)
        .bind(r.row_hash)
        .bind(r.search_text)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        // another request stored the same key (or content, which includes the key) meanwhile
        let id = match inserted {
            Ok(id) => id,
            Err(e) if super::is_unique_violation(&e) => return Ok(Err(InsertError::DuplicateKey)),
            Err(e) => return Err(anyhow::Error::from(e).context("adding record")),
        };
        for (field, value) in r.uniques {
            let res = sqlx::query(
                "INSERT INTO record_unique_values (org_id, entity, field, value, record_id) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(org.get())
            .bind(entity)
            .bind(field)
            .bind(value)
            .bind(id)
            .execute(&mut *tx)
            .await;
            match res {
                Ok(_) => {}
                Err(e) if super::is_unique_violation(&e) => {
                    // Dropping the transaction rolls the record back too.
                    return Ok(Err(InsertError::DuplicateValue { field: field.clone(), value: value.clone() }));
                }
                Err(e) => return Err(anyhow::Error::from(e).context("adding unique value")),
            }
        }
        tx.commit().await.context("committing record")?;
        Ok(Ok(id))
    })
}

/// The one statement that creates records, every writer's (a person's form, a chunk of an
/// import, a marketplace bundle, a rollback restoring what an import deleted):
/// `INSERT INTO records (…) <source>`, where `source` (a `VALUES` or a `SELECT`) gives
/// `org_id, entity, record_key, data, row_hash, search_text, import_id, import_row,
/// created_at, updated_at` in that order, preceded by `id` when `keep_ids` (a restore).
pub(crate) fn insert_into_records(keep_ids: bool, source: &str) -> String {
    let id = if keep_ids { "id, " } else { "" };
    format!(
        "INSERT INTO records ({id}org_id, entity, record_key, data, row_hash, search_text, import_id, import_row,
                              created_at, updated_at)
         {source}"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::like_pattern("A_b%c\\"), "%a\\_b\\%c\\\\%");
        assert_eq!(super::like_pattern(""), "%%");
    }

    #[tokio::test]
    async fn large_counts_are_remembered_for_a_moment_and_small_ones_never() {
        use super::*;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("c.db").display()), 2).await.unwrap();
        db.migrate().await.unwrap();
        let (org, _) = crate::store::accounts::ensure_org(&db, "acme", "Acme").await.unwrap();
        let add = |k: &'static str| {
            let db = db.clone();
            async move {
                let r = NewRecord { key: k, data: "{}", row_hash: k, search_text: k, uniques: &[] };
                insert(&db, org, "contacts", &r).await.unwrap().unwrap();
            }
        };
        assert!(!any(&db, org, "contacts").await.unwrap());
        let memo = CountMemo::new(2, std::time::Duration::from_millis(300));
        add("a").await;
        assert!(any(&db, org, "contacts").await.unwrap());
        assert_eq!(memo.count(&db, org, "contacts").await.unwrap(), 1);
        add("b").await;
        assert_eq!(memo.count(&db, org, "contacts").await.unwrap(), 2, "under the threshold: counted afresh");
        add("c").await;
        assert_eq!(memo.count(&db, org, "contacts").await.unwrap(), 2, "remembered");
        assert_eq!(memo.count(&db, org, "others").await.unwrap(), 0, "per entity");
        tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        assert_eq!(memo.count(&db, org, "contacts").await.unwrap(), 3, "counted again once old");
    }
}
