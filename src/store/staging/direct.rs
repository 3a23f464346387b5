//! PostgreSQL's way for a chunk of new records: one `COPY` straight into `records`.
//!
//! The chunk's rows, read again from the file, are matched in memory with the chunk's
//! pending staged rows (by row number, and only while they still hash as validated) and
//! streamed into `records` in the chunk's transaction, then journaled from `records` by their
//! import row. No statement per row, no temporary table, no record staged at validation.
//!
//! `COPY` cannot skip a row whose key is taken, as `INSERT … ON CONFLICT DO NOTHING` does:
//! it runs under a savepoint, and when a key was committed meanwhile (another import of the
//! same keys) it is undone and the chunk goes the way that looks for each key.

use anyhow::Context;

use super::ChunkRow;

/// What a row of `records` is copied with, in this order.
const COLUMNS: &str =
    "org_id, entity, record_key, data, row_hash, search_text, import_id, import_row, created_at, updated_at";

/// In a chunk's PostgreSQL transaction: creates the records of the pending rows of
/// `(from, to]` from `read` and journals them; how many, or None when a key was taken
/// meanwhile (nothing written: the caller creates them by key instead).
pub(super) async fn copy_created(
    conn: &mut sqlx::PgConnection,
    (id, from, to, org, entity, now): (i64, i64, i64, i64, &str, i64),
    read: &[ChunkRow],
) -> anyhow::Result<Option<i64>> {
    let pending: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT row_number, record_key, row_hash FROM import_rows
         WHERE import_id = $1 AND row_number > $2 AND row_number <= $3 AND state = 'pending' AND row_hash IS NOT NULL
         ORDER BY row_number",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await
    .context("reading the chunk's pending rows")?;
    let (org, import, now) = (org.to_string(), id.to_string(), now.to_string());
    let mut out = Vec::with_capacity(read.len() * 512);
    let mut rows = read.iter().peekable();
    let mut copied = 0i64;
    for (row_number, key, hash) in &pending {
        while rows.next_if(|r| r.row_number < *row_number).is_some() {}
        // a row that no longer hashes as validated is not written here; the caller names it
        if let Some(r) = rows.next_if(|r| r.row_number == *row_number && r.row_hash == *hash) {
            let n = row_number.to_string();
            let fields = [&org, entity, key, &r.data, &r.row_hash, &r.search_text, &import, &n, &now, &now];
            super::copy_line(&mut out, &fields.map(Some));
            copied += 1;
        }
    }
    if copied == 0 {
        return Ok(Some(0));
    }
    sqlx::query("SAVEPOINT copy_created").execute(&mut *conn).await.context("setting a savepoint")?;
    let sent = async {
        let mut copy = conn.copy_in_raw(&format!("COPY records ({COLUMNS}) FROM STDIN")).await?;
        if let Err(e) = copy.send(out).await {
            let _ = copy.abort("chunk failed").await;
            return Err(e);
        }
        copy.finish().await
    }
    .await;
    match sent {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            sqlx::query("ROLLBACK TO SAVEPOINT copy_created")
                .execute(&mut *conn)
                .await
                .context("undoing the chunk's copy")?;
            return Ok(None);
        }
        Err(e) => return Err(e).context("copying the chunk's records"),
    }
    let journaled = sqlx::query(
        "INSERT INTO import_journal (import_id, op, record_id, record_key, after_hash)
         SELECT $1, 'created', id, record_key, row_hash FROM records
         WHERE import_id = $1 AND import_row > $2 AND import_row <= $3",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .execute(&mut *conn)
    .await
    .context("journaling created records")?
    .rows_affected() as i64;
    anyhow::ensure!(journaled == copied, "journaled {journaled} records where the chunk copied {copied}");
    Ok(Some(copied))
}
