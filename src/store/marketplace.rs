//! Marketplace bundle imports (`cl_marketplace_imports`): started by a person, applied by a
//! background job in one transaction, rolled back by deleting exactly the records in the
//! import's `rollback_snapshot`.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::Db;
use crate::domain::ids::{OrgId, UserId};
use crate::domain::marketplace::Item;
use crate::{on_pool, on_writer};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MarketplaceImport {
    pub id: i64,
    pub org_id: i64,
    pub bundle_key: String,
    pub bundle_version: String,
    pub bundle_title: String,
    pub status: String,
    pub item_count: i64,
    pub skipped_count: i64,
    pub rollback_snapshot: String,
    pub reason: String,
    pub imported_by_label: String,
    pub imported_at: i64,
    pub completed_at: Option<i64>,
    pub rolled_back_at: Option<i64>,
    pub rolled_back_by_label: Option<String>,
}

impl MarketplaceImport {
    pub fn snapshot(&self) -> Vec<SnapshotRow> {
        serde_json::from_str(&self.rollback_snapshot).unwrap_or_default()
    }
}

/// A record an import created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub entity: String,
    pub id: i64,
    pub key: String,
    /// The record's content hash as the import stored it.
    pub hash: String,
}

const COLUMNS: &str = "id, org_id, bundle_key, bundle_version, bundle_title, status, item_count, skipped_count,
    rollback_snapshot, reason, imported_by_label, imported_at, completed_at, rolled_back_at, rolled_back_by_label";

/// Starting an import: a new one, or the one of the same version already running.
#[derive(Debug, PartialEq)]
pub enum Begin {
    Started(i64),
    AlreadyRunning(i64),
}

pub async fn begin(
    db: &Db,
    org: OrgId,
    key: &str,
    version: &str,
    title: &str,
    by: UserId,
    by_label: &str,
) -> anyhow::Result<Begin> {
    let inserted = on_writer!(db, p => sqlx::query_scalar::<_, i64>(
        "INSERT INTO cl_marketplace_imports (org_id, bundle_key, bundle_version, bundle_title, status, imported_by,
                                             imported_by_label, imported_at)
         VALUES ($1, $2, $3, $4, 'in_progress', $5, $6, $7) RETURNING id",
    )
    .bind(org.get())
    .bind(key)
    .bind(version)
    .bind(title)
    .bind(by.get())
    .bind(by_label)
    .bind(crate::now())
    .fetch_one(p)
    .await);
    match inserted {
        Ok(id) => Ok(Begin::Started(id)),
        Err(e) if super::is_unique_violation(&e) => {
            let running = on_pool!(db, p => sqlx::query_scalar::<_, i64>(
                "SELECT id FROM cl_marketplace_imports
                 WHERE org_id = $1 AND bundle_key = $2 AND bundle_version = $3 AND status = 'in_progress'",
            )
            .bind(org.get())
            .bind(key)
            .bind(version)
            .fetch_optional(p)
            .await)
            .context("finding the running import")?;
            match running {
                Some(id) => Ok(Begin::AlreadyRunning(id)),
                // it finished in between: start anew
                None => Box::pin(begin(db, org, key, version, title, by, by_label)).await,
            }
        }
        Err(e) => Err(anyhow::Error::from(e).context("starting a marketplace import")),
    }
}

pub async fn get(db: &Db, org: OrgId, id: i64) -> anyhow::Result<Option<MarketplaceImport>> {
    let sql = format!("SELECT {COLUMNS} FROM cl_marketplace_imports WHERE org_id = $1 AND id = $2");
    on_pool!(db, p => sqlx::query_as::<_, MarketplaceImport>(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(org.get())
        .bind(id)
        .fetch_optional(p)
        .await)
    .context("reading a marketplace import")
}

/// The org's imports, most recent first.
pub async fn list(db: &Db, org: OrgId, limit: i64, offset: i64) -> anyhow::Result<Vec<MarketplaceImport>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM cl_marketplace_imports WHERE org_id = $1 ORDER BY imported_at DESC, id DESC
         LIMIT $2 OFFSET $3"
    );
    on_pool!(db, p => sqlx::query_as::<_, MarketplaceImport>(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(org.get())
        .bind(limit)
        .bind(offset)
        .fetch_all(p)
        .await)
    .context("listing marketplace imports")
}

pub async fn count(db: &Db, org: OrgId) -> anyhow::Result<i64> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM cl_marketplace_imports WHERE org_id = $1")
        .bind(org.get())
        .fetch_one(p)
        .await)
    .context("counting marketplace imports")
}

/// `(bundle key, version, status, imported at)` of the org's imports that are running or
/// completed (not rolled back, not failed), newest first.
pub async fn held(db: &Db, org: OrgId) -> anyhow::Result<Vec<(String, String, String, i64)>> {
    on_pool!(db, p => sqlx::query_as::<_, (String, String, String, i64)>(
        "SELECT bundle_key, bundle_version, status, imported_at FROM cl_marketplace_imports
         WHERE org_id = $1 AND status IN ('in_progress', 'completed') ORDER BY imported_at DESC, id DESC",
    )
    .bind(org.get())
    .fetch_all(p)
    .await)
    .context("reading the org's bundles")
}

/// Applies a running import in one transaction: every item whose key (or unique value) the
/// org does not have yet is created and named in the snapshot; the rest are skipped. The
/// import becomes completed in the same transaction, so a crash leaves either nothing or
/// all of it. `(created, skipped)`, or None when the import is no longer running.
pub async fn apply(db: &Db, id: i64, items: &[Item]) -> anyhow::Result<Option<(i64, i64)>> {
    let now = crate::now();
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        // takes the row's lock (PostgreSQL) before anything is written
        let org: Option<i64> = sqlx::query_scalar(
            "UPDATE cl_marketplace_imports SET status = status WHERE id = $1 AND status = 'in_progress' RETURNING org_id",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .context("locking the import")?;
        let Some(org) = org else { return Ok(None) };
        let mut snapshot = Vec::with_capacity(items.len());
        let mut skipped = 0i64;
        for item in items {
            let r = &item.record;
            let taken: Option<i64> =
                sqlx::query_scalar("SELECT id FROM records WHERE org_id = $1 AND entity = $2 AND record_key = $3")
                    .bind(org)
                    .bind(&item.entity)
                    .bind(&r.key)
                    .fetch_optional(&mut *tx)
                    .await
                    .context("checking for an existing record")?;
            let mut value_taken = false;
            for (field, value) in &r.uniques {
                let t: Option<i64> = sqlx::query_scalar(
                    "SELECT record_id FROM record_unique_values WHERE org_id = $1 AND entity = $2 AND field = $3 AND value = $4",
                )
                .bind(org)
                .bind(&item.entity)
                .bind(field)
                .bind(value)
                .fetch_optional(&mut *tx)
                .await
                .context("checking unique values")?;
                value_taken |= t.is_some();
            }
            if taken.is_some() || value_taken {
                skipped += 1;
                continue;
            }
            let record_id: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(super::records::insert_into_records(
                false,
                "VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7, $7) RETURNING id",
            )))
            .bind(org)
            .bind(&item.entity)
            .bind(&r.key)
            .bind(&r.data)
            .bind(&r.row_hash)
            .bind(&r.search_text)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .context("creating a record")?;
            for (field, value) in &r.uniques {
                sqlx::query(
                    "INSERT INTO record_unique_values (org_id, entity, field, value, record_id) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(org)
                .bind(&item.entity)
                .bind(field)
                .bind(value)
                .bind(record_id)
                .execute(&mut *tx)
                .await
                .context("storing a unique value")?;
            }
            snapshot.push(SnapshotRow {
                entity: item.entity.clone(),
                id: record_id,
                key: r.key.clone(),
                hash: r.row_hash.clone(),
            });
        }
        let created = snapshot.len() as i64;
        sqlx::query(
            "UPDATE cl_marketplace_imports SET status = 'completed', item_count = $2, skipped_count = $3,
                    rollback_snapshot = $4, completed_at = $5
             WHERE id = $1",
        )
        .bind(id)
        .bind(created)
        .bind(skipped)
        .bind(serde_json::to_string(&snapshot).context("writing the snapshot")?)
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("completing the import")?;
        tx.commit().await.context("committing the import")?;
        Ok(Some((created, skipped)))
    })
}

/// Ends a running import that cannot be applied.
pub async fn fail(db: &Db, id: i64, reason: &str) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "UPDATE cl_marketplace_imports SET status = 'failed', reason = $2, completed_at = $3
         WHERE id = $1 AND status = 'in_progress'",
    )
    .bind(id)
    .bind(reason)
    .bind(crate::now())
    .execute(p)
    .await
    .map(|_| ()))
    .context("failing a marketplace import")
}

/// How a snapshot row stands now.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    /// Changed by the org after the import.
    Edited,
    /// Already deleted.
    Gone,
}

/// The snapshot rows that are no longer as the import left them (one query).
pub async fn changed_since(db: &Db, org: OrgId, snapshot: &[SnapshotRow]) -> anyhow::Result<Vec<(SnapshotRow, Since)>> {
    let ids: Vec<i64> = snapshot.iter().map(|r| r.id).collect();
    let now: std::collections::HashMap<i64, (String, String, String)> = super::records::by_ids(db, org, &ids)
        .await?
        .into_iter()
        .map(|(id, entity, key, hash)| (id, (entity, key, hash)))
        .collect();
    let mut out = vec![];
    for row in snapshot {
        // the same id under another entity or key is another record: this one is gone
        match now.get(&row.id).filter(|(entity, key, _)| *entity == row.entity && *key == row.key) {
            None => out.push((row.clone(), Since::Gone)),
            Some((_, _, hash)) if *hash != row.hash => out.push((row.clone(), Since::Edited)),
            Some(_) => {}
        }
    }
    Ok(out)
}

/// What a rollback did.
#[derive(Debug, PartialEq)]
pub enum Rollback {
    /// The records deleted.
    Done(i64),
    /// It had been rolled back already (another tab, a double submit).
    AlreadyRolledBack,
    /// Only completed imports roll back; this one is in another status.
    NotCompleted(String),
}

/// Deletes exactly the records in the import's snapshot and marks it rolled back, in one
/// transaction; a second call finds it rolled back and changes nothing.
pub async fn rollback(db: &Db, org: OrgId, id: i64, by_label: &str) -> anyhow::Result<Option<Rollback>> {
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        let snapshot: Option<String> = sqlx::query_scalar(
            "UPDATE cl_marketplace_imports SET status = 'rolled_back', rolled_back_at = $3, rolled_back_by_label = $4
             WHERE org_id = $1 AND id = $2 AND status = 'completed' RETURNING rollback_snapshot",
        )
        .bind(org.get())
        .bind(id)
        .bind(crate::now())
        .bind(by_label)
        .fetch_optional(&mut *tx)
        .await
        .context("marking the import rolled back")?;
        let Some(snapshot) = snapshot else {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM cl_marketplace_imports WHERE org_id = $1 AND id = $2")
                    .bind(org.get())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .context("reading the import")?;
            return Ok(status.map(|s| if s == "rolled_back" { Rollback::AlreadyRolledBack } else { Rollback::NotCompleted(s) }));
        };
        let rows: Vec<SnapshotRow> = serde_json::from_str(&snapshot).context("reading the snapshot")?;
        let mut deleted = 0;
        for row in &rows {
            // the key too: a record deleted since could have left its id to another
            let n = sqlx::query("DELETE FROM records WHERE id = $1 AND org_id = $2 AND entity = $3 AND record_key = $4")
                .bind(row.id)
                .bind(org.get())
                .bind(&row.entity)
                .bind(&row.key)
                .execute(&mut *tx)
                .await
                .context("deleting a record")?
                .rows_affected();
            if n > 0 {
                sqlx::query("DELETE FROM record_unique_values WHERE record_id = $1 AND org_id = $2")
                    .bind(row.id)
                    .bind(org.get())
                    .execute(&mut *tx)
                    .await
                    .context("deleting unique values")?;
            }
            deleted += n as i64;
        }
        tx.commit().await.context("committing the rollback")?;
        Ok(Some(Rollback::Done(deleted)))
    })
}
