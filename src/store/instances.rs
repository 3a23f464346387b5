//! What instances on one database share beyond their tables: the fingerprint of the key
//! they sign with, and each API key's rate-limit window.

use anyhow::Context;

use super::Db;
use crate::on_writer;

/// The fingerprint the database records for the instances' key: the one given, when none
/// is recorded yet (the first instance), or `replace` asks to record it over the old one.
pub async fn recorded_fingerprint(db: &Db, fingerprint: &str, replace: bool) -> anyhow::Result<String> {
    let sql = if replace {
        "INSERT INTO instance_secret (id, fingerprint, created_at) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, created_at = excluded.created_at
         RETURNING fingerprint"
    } else {
        "INSERT INTO instance_secret (id, fingerprint, created_at) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET fingerprint = instance_secret.fingerprint
         RETURNING fingerprint"
    };
    on_writer!(db, p => sqlx::query_scalar::<_, String>(sql)
        .bind(fingerprint)
        .bind(crate::now())
        .fetch_one(p)
        .await)
    .context("reading the instances' key fingerprint")
}

const COUNT_REQUEST: &str = "INSERT INTO api_rate_windows (api_key_id, started, requests) VALUES ($1, $2, 1)
     ON CONFLICT (api_key_id) DO UPDATE SET
       started = CASE WHEN api_rate_windows.started + $3 <= $2 THEN $2 ELSE api_rate_windows.started END,
       requests = CASE WHEN api_rate_windows.started + $3 <= $2 THEN 1 ELSE api_rate_windows.requests + 1 END
     RETURNING started, requests";

/// Counts one request of an API key in its window of `window` seconds (a window that is
/// over starts again at `now`); returns the window's start and its requests, this one
/// included. One statement, so instances counting at once never lose a request. Its commit
/// does not wait for the disk (`synchronous_commit` off): a busy key's requests queue on its
/// row only as long as the update itself, and a crash can forget the last few counts, never
/// more. PostgreSQL only: on SQLite the one instance counts in memory.
pub async fn count_request(pool: &sqlx::PgPool, api_key_id: i64, now: i64, window: i64) -> anyhow::Result<(i64, i64)> {
    let counted = async {
        let mut tx = pool.begin().await?;
        sqlx::query("SET LOCAL synchronous_commit TO OFF").execute(&mut *tx).await?;
        let got = sqlx::query_as::<_, (i64, i64)>(COUNT_REQUEST)
            .bind(api_key_id)
            .bind(now)
            .bind(window)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(got)
    };
    counted.await.context("counting an API request")
}
