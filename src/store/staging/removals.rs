//! Chunk transactions that remove records: a delete import's chunks, overwrite's cleanup of
//! the records its file did not contain (both journaling before-images), and a chunk that
//! failed, recorded as such so the import goes on.

use anyhow::Context;

use super::chunks::{ChunkResult, ChunkTarget, chunk_exec, open_chunk};
use super::from_json;
use crate::domain::ids::OrgId;
use crate::domain::imports::Stage;
use crate::domain::jobs::Fence;
use crate::on_pool;
use crate::store::Db;

/// The journal statement for the before-images of the records `r` that `from` selects
/// (`$1` is the import), about to be deleted.
fn journal_deleted_sql(from: &str) -> String {
    format!(
        "INSERT INTO import_journal (import_id, op, record_id, record_key, before_data, before_hash, before_search,
                                     before_import_id, before_import_row, before_created_at, before_updated_at)
         SELECT $1, 'deleted', r.id, r.record_key, r.data, r.row_hash, r.search_text, r.import_id, r.import_row,
                r.created_at, r.updated_at
         FROM {from}"
    )
}

/// The same for their unique values.
fn journal_deleted_uniques_sql(from: &str) -> String {
    format!(
        "INSERT INTO import_journal_uniques (import_id, record_id, field, value)
         SELECT $1, u.record_id, u.field, u.value FROM record_unique_values u, {from} AND u.record_id = r.id"
    )
}

/// Delete action: removes the records that the pending rows in `(from_row, to_row]` name,
/// their before-images journaled, in one transaction that moves the cursor as
/// [`write_chunk`] does. A row whose record is gone since validation counts as unchanged.
#[tracing::instrument(skip(db, t), fields(org_id = t.org.get(), import_id = t.import_id))]
pub async fn delete_chunk(
    db: &Db,
    t: &ChunkTarget<'_>,
    from_row: i64,
    to_row: i64,
) -> anyhow::Result<Option<ChunkResult>> {
    let (org, id, entity) = (t.org.get(), t.import_id, t.entity);
    let named = "records r WHERE r.org_id = $4 AND r.entity = $5 AND r.record_key IN
                   (SELECT s.record_key FROM import_rows s
                    WHERE s.import_id = $1 AND s.row_number > $2 AND s.row_number <= $3 AND s.state = 'pending')";
    let journal = journal_deleted_sql(named);
    let uniques = journal_deleted_uniques_sql(named);
    on_pool!(db, p => {
        let (journal, uniques) = (journal.clone(), uniques.clone());
        let (mut tx, cache) = crate::begin_bulk_write!(db, p).context("starting chunk transaction")?;
        let Some(rows) = open_chunk!(db, t.fence, tx, id, from_row, to_row, crate::now()) else { return Ok(None) };
        for (sql, what) in [(uniques, "journaling unique values"), (journal, "journaling deletions")] {
            chunk_exec!(tx, sqlx::AssertSqlSafe(sql), (id, from_row, to_row, org, entity), what);
        }
        let deleted = chunk_exec!(tx, sqlx::AssertSqlSafe(format!("DELETE FROM records WHERE id IN (SELECT r.id FROM {named})")), (id, from_row, to_row, org, entity), "deleting records");
        sqlx::query("UPDATE imports SET processed_rows = processed_rows + $2, deleted_rows = deleted_rows + $3 WHERE id = $1")
            .bind(id)
            .bind(rows)
            .bind(deleted)
            .execute(&mut *tx)
            .await
            .context("counting progress")?;
        crate::commit_bulk!(tx, cache).context("committing chunk")?;
        Ok(Some(ChunkResult { rows, unchanged: rows - deleted, ..ChunkResult::default() }))
    })
}

/// The org's records of the entity whose key no row of the import's file has.
const NOT_IN_FILE: &str = "records r WHERE r.org_id = $2 AND r.entity = $3
      AND NOT EXISTS (SELECT 1 FROM import_keys k WHERE k.import_id = $1 AND k.record_key = r.record_key)";

/// How many records an overwrite import would remove; first stages the file's keys.
pub async fn count_not_in_file(db: &Db, org: OrgId, id: i64, entity: &str) -> anyhow::Result<i64> {
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        sqlx::query("DELETE FROM import_keys WHERE import_id = $1").bind(id).execute(&mut *tx).await.context("clearing keys")?;
        sqlx::query(
            "INSERT INTO import_keys (import_id, record_key)
             SELECT DISTINCT $1, record_key FROM import_rows WHERE import_id = $1 AND record_key <> ''",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("staging the file's keys")?;
        tx.commit().await.context("committing keys")
    })?;
    let sql = format!("SELECT COUNT(*) FROM {NOT_IN_FILE}");
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(org.get())
        .bind(entity)
        .fetch_one(p)
        .await)
    .context("counting records not in the file")
}

/// Overwrite's cleanup phase: removes up to `size` records the file did not contain, their
/// before-images journaled, in one transaction. Some(0) when none is left; None when the
/// import is paused or no longer running. Safe to repeat: a removed record is not selected
/// again.
#[tracing::instrument(skip(db, t), fields(org_id = t.org.get(), import_id = t.import_id))]
pub async fn cleanup_chunk(db: &Db, t: &ChunkTarget<'_>, size: i64) -> anyhow::Result<Option<i64>> {
    let (org, id, entity) = (t.org.get(), t.import_id, t.entity);
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting cleanup transaction")?;
        if !crate::fence_holds!(db, tx, t.fence) {
            return Ok(None);
        }
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT r.id FROM {NOT_IN_FILE} ORDER BY r.id LIMIT $4")))
            .bind(id)
            .bind(org)
            .bind(entity)
            .bind(size.max(1))
            .fetch_all(&mut *tx)
            .await
            .context("choosing records to remove")?;
        let going = ids.len() as i64;
        let running = sqlx::query(
            "UPDATE imports SET deleted_rows = deleted_rows + $2, updated_at = $3
             WHERE id = $1 AND stage = $4 AND paused = FALSE",
        )
        .bind(id)
        .bind(going)
        .bind(crate::now())
        .bind(Stage::Importing.as_str())
        .execute(&mut *tx)
        .await
        .context("counting removals")?
        .rows_affected();
        if running == 0 {
            return Ok(None);
        }
        if going == 0 {
            tx.commit().await.context("committing")?;
            return Ok(Some(0));
        }
        // rows of one column, as from_json reads them
        let ids_json = serde_json::to_string(&ids.iter().map(|i| (*i,)).collect::<Vec<_>>())?;
        let listed = format!("records r WHERE r.id IN (SELECT c0 FROM ({}) AS x)", from_json(db, &["BIGINT"]));
        for (sql, what) in [
            (journal_deleted_uniques_sql(&listed), "journaling unique values"),
            (journal_deleted_sql(&listed), "journaling removals"),
            (
                format!(
                    "DELETE FROM records WHERE id IN (SELECT r.id FROM {listed})
                       AND org_id = (SELECT org_id FROM imports WHERE id = $1)"
                ),
                "removing records",
            ),
        ] {
            let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(&ids_json)
                .execute(&mut *tx)
                .await
                .context(what)?
                .rows_affected();
            anyhow::ensure!(what != "removing records" || n as i64 == going, "cleanup removed {n} of {going} records");
        }
        tx.commit().await.context("committing cleanup")?;
        Ok(Some(going))
    })
}

/// A chunk whose transaction failed: its pending rows are recorded as failed with the
/// reason, and the cursor moves past it so the import goes on. False when the cursor was
/// not at `from_row`.
#[tracing::instrument(skip(db, why))]
pub async fn fail_chunk(
    db: &Db,
    fence: Option<&Fence>,
    id: i64,
    from_row: i64,
    to_row: i64,
    why: &str,
) -> anyhow::Result<bool> {
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        if !crate::fence_holds!(db, tx, fence) {
            return Ok(false);
        }
        let moved = sqlx::query(
            "UPDATE imports SET next_row = $3, updated_at = $4 WHERE id = $1 AND next_row = $2 AND stage = $5",
        )
        .bind(id)
        .bind(from_row)
        .bind(to_row)
        .bind(crate::now())
        .bind(Stage::Importing.as_str())
        .execute(&mut *tx)
        .await
        .context("moving the import cursor")?
        .rows_affected();
        if moved == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO import_issues (import_id, row_number, kind, message, cells)
             SELECT $1, row_number, 'failed', $4, '' FROM import_rows
             WHERE import_id = $1 AND row_number > $2 AND row_number <= $3 AND state = 'pending'",
        )
        .bind(id)
        .bind(from_row)
        .bind(to_row)
        .bind(why)
        .execute(&mut *tx)
        .await
        .context("storing failed rows")?;
        let n = sqlx::query(
            "UPDATE import_rows SET state = 'failed'
             WHERE import_id = $1 AND row_number > $2 AND row_number <= $3 AND state = 'pending'",
        )
        .bind(id)
        .bind(from_row)
        .bind(to_row)
        .execute(&mut *tx)
        .await
        .context("failing rows")?
        .rows_affected() as i64;
        sqlx::query("UPDATE imports SET processed_rows = processed_rows + $2, failed_rows = failed_rows + $2 WHERE id = $1")
            .bind(id)
            .bind(n)
            .execute(&mut *tx)
            .await
            .context("counting failed rows")?;
        tx.commit().await.context("committing failed chunk")?;
        Ok(true)
    })
}
