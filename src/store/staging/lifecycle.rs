//! After an import: purging its staged rows once it is finished, and expiring ready
//! imports nobody started within their time to live.

use anyhow::Context;

use crate::domain::imports::Stage;
use crate::on_pool;
use crate::store::{Db, stage_list};

/// Rows deleted per statement when purging, so a purge never holds the write lock long.
const PURGE_BATCH: i64 = 20_000;

/// Deletes an import's staged rows (in batches) and marks it purged.
pub async fn purge(db: &Db, id: i64) -> anyhow::Result<()> {
    loop {
        let n = on_pool!(db, p => sqlx::query(
            "DELETE FROM import_rows WHERE import_id = $1 AND row_number IN
               (SELECT row_number FROM import_rows WHERE import_id = $1 ORDER BY row_number LIMIT $2)",
        )
        .bind(id)
        .bind(PURGE_BATCH)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .context("purging staged rows")?;
        if n == 0 {
            break;
        }
    }
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        for sql in ["DELETE FROM import_row_values WHERE import_id = $1", "DELETE FROM import_keys WHERE import_id = $1"] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await.context("purging staged values")?;
        }
        sqlx::query("UPDATE imports SET staging_purged_at = $2 WHERE id = $1")
            .bind(id)
            .bind(crate::now())
            .execute(&mut *tx)
            .await
            .context("marking staging purged")?;
        tx.commit().await.context("committing purge")
    })
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
    let sql = format!(
        "UPDATE imports SET stage = $3, reason = 'not started within its time to live; upload the file again',
                updated_at = $2
         WHERE stage IN ({}) AND updated_at < $1 RETURNING id",
        stage_list(&Stage::sources(Stage::Expired))
    );
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
    .bind(before)
    .bind(crate::now())
    .bind(Stage::Expired.as_str())
    .fetch_all(p)
    .await)
    .context("expiring ready imports")
}
