//! Server-side sessions: the cookie holds a random key; its SHA-256 names the row here.

use anyhow::Context;

use super::Db;
use crate::domain::ids::UserId;
use crate::{on_pool, on_writer};

pub async fn load(db: &Db, id: &str, now: i64) -> anyhow::Result<Option<String>> {
    on_pool!(db, p => sqlx::query_scalar::<_, String>("SELECT state FROM sessions WHERE id = $1 AND expires_at > $2")
        .bind(id)
        .bind(now)
        .fetch_optional(p)
        .await)
    .context("loading session")
}

pub async fn insert(db: &Db, id: &str, user: Option<i64>, state: &str, expires_at: i64) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query("INSERT INTO sessions (id, user_id, state, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(user)
        .bind(state)
        .bind(expires_at)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("saving session")?;
    Ok(())
}

/// Returns false when no live session has that id.
pub async fn update(
    db: &Db,
    id: &str,
    user: Option<i64>,
    state: &str,
    expires_at: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let n = on_writer!(db, p => sqlx::query(
        "UPDATE sessions SET user_id = $2, state = $3, expires_at = $4 WHERE id = $1 AND expires_at > $5",
    )
    .bind(id)
    .bind(user)
    .bind(state)
    .bind(expires_at)
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("updating session")?;
    Ok(n > 0)
}

/// Extends a session's expiry to `expires_at`, but only once it would move by more than
/// `slack` seconds: a page view does not cost a database write (on PostgreSQL a flushed
/// commit) each time. Whether it is due is read first: on SQLite even an `UPDATE` that
/// changes nothing waits for the one writer (behind an import's chunk, say), a read does not.
pub async fn touch(db: &Db, id: &str, expires_at: i64, slack: i64) -> anyhow::Result<()> {
    let due =
        on_pool!(db, p => sqlx::query_scalar::<_, String>("SELECT id FROM sessions WHERE id = $1 AND expires_at < $2 - $3")
        .bind(id)
        .bind(expires_at)
        .bind(slack)
        .fetch_optional(p)
        .await)
        .context("reading session expiry")?;
    if due.is_none() {
        return Ok(());
    }
    on_writer!(db, p => sqlx::query("UPDATE sessions SET expires_at = $2 WHERE id = $1 AND expires_at < $2 - $3")
        .bind(id)
        .bind(expires_at)
        .bind(slack)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("extending session")?;
    Ok(())
}

pub async fn delete(db: &Db, id: &str) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query("DELETE FROM sessions WHERE id = $1").bind(id).execute(p).await.map(|r| r.rows_affected()))
        .context("deleting session")?;
    Ok(())
}

/// Ends every session of a user (disabled, password changed elsewhere).
pub async fn delete_for_user(db: &Db, user: UserId) -> anyhow::Result<u64> {
    let n = on_writer!(db, p => sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user.get())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("ending the user's sessions")?;
    Ok(n)
}

pub async fn prune(db: &Db, now: i64) -> anyhow::Result<u64> {
    let n = on_writer!(db, p => sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("pruning sessions")?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn expiry(db: &Db, id: &str) -> i64 {
        on_pool!(db, p => sqlx::query_scalar::<_, i64>("SELECT expires_at FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_one(p)
            .await)
        .unwrap()
    }

    #[tokio::test]
    async fn a_page_view_within_the_slack_neither_writes_nor_waits_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("s.db").display()), 2).await.unwrap();
        db.migrate().await.unwrap();
        insert(&db, "s1", None, "{}", 1_000).await.unwrap();
        {
            // an import's chunk holds the turn to write meanwhile
            let _busy = crate::store::write_turn(&db).await;
            let not_due = tokio::time::timeout(Duration::from_secs(2), touch(&db, "s1", 1_050, 60)).await;
            assert!(not_due.is_ok(), "an extension within the slack waited for the writer");
            assert_eq!(expiry(&db, "s1").await, 1_000);
        }
        touch(&db, "s1", 1_100, 60).await.unwrap();
        assert_eq!(expiry(&db, "s1").await, 1_100, "due: extended");
    }
}
