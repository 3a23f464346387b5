//! Sign-in attempts, counted for throttling.

use anyhow::Context;

use super::Db;
use crate::domain::throttle::{RecentFailures, WINDOW_SECS};
use crate::{on_pool, on_writer};

/// Records an attempt as failed before the password is checked, so concurrent guesses all
/// count; returns its id for [`mark_succeeded`] or [`forget`].
pub async fn record_pending(db: &Db, email: &str, address: &str) -> anyhow::Result<i64> {
    on_writer!(db, p => sqlx::query_scalar::<_, i64>(
        "INSERT INTO login_attempts (email, address, succeeded, at) VALUES ($1, $2, FALSE, $3) RETURNING id",
    )
    .bind(email)
    .bind(address)
    .bind(crate::now())
    .fetch_one(p)
    .await)
    .context("recording sign-in attempt")
}

pub async fn mark_succeeded(db: &Db, id: i64) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query("UPDATE login_attempts SET succeeded = TRUE WHERE id = $1")
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("recording sign-in success")?;
    Ok(())
}

/// Drops an attempt that was refused before its password was checked (locked), so
/// hammering a locked account does not keep extending the lock.
pub async fn forget(db: &Db, id: i64) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query("DELETE FROM login_attempts WHERE id = $1")
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("forgetting sign-in attempt")?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Count {
    n: i64,
    oldest: Option<i64>,
}

/// Failures in the window that came before `attempt`, by order of arrival (ids), not by
/// clock: for the account those after its last success before `attempt`, for the address
/// all. A guess made in the same second as a success still counts.
pub async fn failures_before(
    db: &Db,
    attempt: i64,
    email: &str,
    address: &str,
    now: i64,
) -> anyhow::Result<RecentFailures> {
    let since = now - WINDOW_SECS;
    let account = on_pool!(db, p => sqlx::query_as::<_, Count>(
        "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM login_attempts
         WHERE email = $1 AND NOT succeeded AND at > $2 AND id < $3
           AND id > COALESCE((SELECT MAX(id) FROM login_attempts WHERE email = $1 AND succeeded AND id < $3), 0)",
    )
    .bind(email)
    .bind(since)
    .bind(attempt)
    .fetch_one(p)
    .await)
    .context("counting sign-in failures")?;
    let addr = on_pool!(db, p => sqlx::query_as::<_, Count>(
        "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM login_attempts
         WHERE address = $1 AND NOT succeeded AND at > $2 AND id < $3",
    )
    .bind(address)
    .bind(since)
    .bind(attempt)
    .fetch_one(p)
    .await)
    .context("counting sign-in failures")?;
    Ok(RecentFailures {
        account: account.n,
        address: addr.n,
        oldest_account_failure: account.oldest,
        oldest_address_failure: addr.oldest,
    })
}

/// Forgets attempts older than a day.
pub async fn prune(db: &Db, now: i64) -> anyhow::Result<u64> {
    let r = on_writer!(db, p => sqlx::query("DELETE FROM login_attempts WHERE at < $1")
        .bind(now - 86_400)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("pruning sign-in attempts")?;
    Ok(r)
}
