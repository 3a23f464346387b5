//! Checkpoints of a SQLite database's write-ahead log, kept off background work's path.
//!
//! SQLite copies the log into the database file (a checkpoint) in the connection whose
//! commit takes the log past `wal_autocheckpoint` pages, and that commit waits for the copy
//! and its two `fsync`s: 81 ms for 40 MB here, sixteen times in a 1,000,000-row import, a
//! quarter of its chunks' time. Background work's connections leave it to a checkpointer
//! beside the work instead ([`keep_up`]): every [`EVERY`] it copies what was committed since
//! (`PRAGMA wal_checkpoint(PASSIVE)`, which waits for no writer and makes none wait), and once
//! the log has passed [`START_OVER_AT`] pages it copies the last of it in this process's write
//! turn. SQLite starts the log over only for a write transaction that begins after all of it
//! was copied (and while no reader is using it); a writer that commits chunk after chunk has
//! always begun its next one by then, so without the turn the log would only grow. By then
//! most of the log is in the file and synced: the turn is held for ~10 ms instead of a
//! commit's 81.
//!
//! Nothing else depends on it: a person's connection still checkpoints itself past 10,000
//! pages, as before, and a background connection past [`BACKSTOP`] pages, so a checkpointer
//! that falls behind (or a writer in another process) leaves the log bounded all the same.

use std::time::Duration;

use anyhow::Context;

use super::Db;

/// How often the checkpointer copies what was committed since.
pub const EVERY: Duration = Duration::from_millis(50);

/// Pages of log after which the checkpointer finishes it in the write turn, so it starts over
/// (under the 10,000 at which a person's commit would checkpoint it).
pub const START_OVER_AT: i64 = 8_000;

/// `wal_autocheckpoint` of background connections: their commits checkpoint only a log four
/// times as long as a person's would (160 MB), which the checkpointer never lets it reach.
pub const BACKSTOP: &str = "40000";

/// One passive checkpoint: (pages in the log, pages of it now in the database file).
async fn pass(p: &sqlx::SqlitePool) -> anyhow::Result<(i64, i64)> {
    let (_, log, copied): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(p).await.context("checkpointing")?;
    Ok((log, copied))
}

/// Keeps `db`'s log copied into its file until the pool is closed (at once on PostgreSQL,
/// which has nothing of the kind to do). Meant to run beside background work, on its
/// thread: its turns give way to people's as the work's do.
pub async fn keep_up(db: Db) {
    let Db::Sqlite(p) = &db else { return };
    let mut failing = false;
    while !p.is_closed() {
        tokio::time::sleep(EVERY).await;
        let done = match pass(p).await {
            Ok((log, _)) if log >= START_OVER_AT => {
                // the log starts over only for a writer that begins after it was all copied,
                // and the work's next transaction has usually begun already: copy the rest
                // again while no writer of this process may begin one
                let _turn = super::write_turn(&db).await;
                pass(p).await.map(drop)
            }
            other => other.map(drop),
        };
        // said once, not every 50 ms, while it lasts (the pool closing ends the loop)
        match done {
            Err(e) if !failing && !p.is_closed() => {
                failing = true;
                tracing::warn!(error = ?e, "checkpointing the write-ahead log failed; commits will checkpoint it");
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_writer_that_never_stops_still_finds_the_log_starting_over() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let db = Db::connect_all_now(&url, 3).await.unwrap();
        let Db::Sqlite(p) = &db else { unreachable!() };
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)").execute(p).await.unwrap();
        let checkpointer = tokio::spawn(keep_up(db.clone()));
        // ~120 MB of commits, one after the other, each in the write turn as the import's are:
        // three times the log at which the checkpointer starts it over
        let row = "x".repeat(4000);
        for _ in 0..300 {
            let _turn = crate::store::write_turn(&db).await;
            let mut tx = p.begin().await.unwrap();
            for _ in 0..100 {
                sqlx::query("INSERT INTO t (v) VALUES ($1)").bind(&row).execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        checkpointer.abort();
        // ~30,000 pages were written: a log that never started over holds them all (a last
        // pass reports the log's length)
        let (pages, _) = pass(p).await.unwrap();
        assert!(pages < 20_000, "the log started over instead of growing ({pages} pages)");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(p).await.unwrap();
        assert_eq!(n, 30_000, "every row is there");
        db.close().await;
        assert!(tokio::time::timeout(Duration::from_secs(5), keep_up(db)).await.is_ok(), "it ends with its pool");
    }
}
