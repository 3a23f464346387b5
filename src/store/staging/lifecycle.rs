//! After an import: purging its staged rows once it is finished, and expiring ready
//! imports nobody started within their time to live.

use anyhow::Context;

use crate::domain::imports::Stage;
use crate::store::{Db, stage_list};
use crate::{on_pool, on_writer};

/// Deletes an import's staged rows (in batches on SQLite) and marks it purged.
pub async fn purge(db: &Db, id: i64) -> anyhow::Result<()> {
    for (table, column) in
        [("import_rows", "row_number"), ("import_row_values", "row_number"), ("import_keys", "record_key")]
    {
        super::delete_staged(db, table, column, id).await?;
    }
    on_writer!(db, p => sqlx::query("UPDATE imports SET staging_purged_at = $2 WHERE id = $1")
        .bind(id)
        .bind(crate::now())
        .execute(p)
        .await
        .map(|_| ()))
    .context("marking staging purged")
}

/// Imports whose staged rows are no longer needed (finished, failed, expired), oldest
/// first.
pub async fn purgeable(db: &Db, limit: i64) -> anyhow::Result<Vec<i64>> {
    let sql = format!(
        "SELECT id FROM imports WHERE staging_purged_at IS NULL AND stage IN ({}) ORDER BY id LIMIT $1",
        stage_list(&Stage::finished())
    );
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
    .bind(limit)
    .fetch_all(p)
    .await)
    .context("finding imports to purge")
}

/// Ready imports not started since `before` become expired; returns their ids.
pub async fn expire_ready(db: &Db, before: i64) -> anyhow::Result<Vec<i64>> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(
        "UPDATE imports SET stage = $3, reason = 'not started within its time to live; upload the file again',
                updated_at = $2
         WHERE stage = $4 AND updated_at < $1 RETURNING id",
    )
    .bind(before)
    .bind(crate::now())
    .bind(Stage::Expired.as_str())
    .bind(Stage::Ready.as_str())
    .fetch_all(p)
    .await)
    .context("expiring ready imports")
}

/// Expires the imports created through the API before `before` that never got their file;
/// their ids.
pub async fn expire_awaiting_file(db: &Db, before: i64) -> anyhow::Result<Vec<i64>> {
    on_writer!(db, p => sqlx::query_scalar::<_, i64>(
        "UPDATE imports SET stage = $3, reason = 'no file was uploaded within its time to live; create a new import',
                updated_at = $2
         WHERE stage = $4 AND file_path = '' AND created_at < $1 RETURNING id",
    )
    .bind(before)
    .bind(crate::now())
    .bind(Stage::Expired.as_str())
    .bind(Stage::Pending.as_str())
    .fetch_all(p)
    .await)
    .context("expiring imports that never got their file")
}
