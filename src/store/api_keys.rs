//! An org's API keys (`api_keys`): created, listed, revoked, and found by the hash of the
//! key a request presents.

use anyhow::Context;

use super::Db;
use crate::domain::ids::{OrgId, UserId};
use crate::{on_pool, on_writer};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub prefix: String,
    pub permissions: String,
    pub created_by_label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_by_label: String,
    pub last_used_at: Option<i64>,
    pub last_used_from: String,
}

const COLUMNS: &str = "id, org_id, name, prefix, permissions, created_by_label, created_at, expires_at, revoked_at, \
                       revoked_by_label, last_used_at, last_used_from";

pub struct NewApiKey<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub hash: &'a str,
    pub permissions: &'a str,
    pub created_by: Option<UserId>,
    pub created_by_label: &'a str,
    pub expires_at: Option<i64>,
}

/// Stores a new key; its id.
pub async fn create(db: &Db, org: OrgId, k: &NewApiKey<'_>) -> anyhow::Result<i64> {
    on_writer!(db, p => sqlx::query_scalar::<_, i64>(
        "INSERT INTO api_keys (org_id, name, prefix, secret_hash, permissions, created_by, created_by_label,
                               created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(org.get())
    .bind(k.name)
    .bind(k.prefix)
    .bind(k.hash)
    .bind(k.permissions)
    .bind(k.created_by.map(UserId::get))
    .bind(k.created_by_label)
    .bind(crate::now())
    .bind(k.expires_at)
    .fetch_one(p)
    .await)
    .context("creating API key")
}

/// The org's keys, newest first (an org has tens of keys, not thousands).
pub async fn list(db: &Db, org: OrgId) -> anyhow::Result<Vec<ApiKeyRow>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT 500");
    on_pool!(db, p => sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(sql)).bind(org.get()).fetch_all(p).await)
        .context("listing API keys")
}

/// The key, if it belongs to the org.
pub async fn get(db: &Db, org: OrgId, id: i64) -> anyhow::Result<Option<ApiKeyRow>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 AND id = $2");
    on_pool!(db, p => sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(id)
        .fetch_optional(p)
        .await)
    .context("loading API key")
}

/// The key whose hash this is, in whatever org.
pub async fn by_hash(db: &Db, hash: &str) -> anyhow::Result<Option<ApiKeyRow>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE secret_hash = $1");
    on_pool!(db, p => sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(sql)).bind(hash).fetch_optional(p).await)
        .context("finding API key")
}

/// The keys requests presented lately, by hash, remembered for [`KeyMemo::FOR`] on SQLite,
/// so that an API request is not two statements (the key, then what it asks for) each a
/// round trip to a connection's thread. One instance serves a SQLite database, and keys
/// change only through it: revoking a key forgets every remembered key at once
/// ([`KeyMemo::forget`]), so a revoked key is refused from the next request on, and an
/// expired one too (expiry is checked on every request). A hash no key has is never
/// remembered (a key created meanwhile works at once). On PostgreSQL, where another instance
/// may revoke a key, every request reads it.
pub struct KeyMemo {
    ttl: std::time::Duration,
    keys: std::sync::Mutex<std::collections::HashMap<String, (ApiKeyRow, std::time::Instant)>>,
    /// Counts [`KeyMemo::forget`]s: a key read before one is not remembered after it.
    forgotten: std::sync::atomic::AtomicU64,
}

impl Default for KeyMemo {
    fn default() -> Self {
        KeyMemo::new(KeyMemo::FOR)
    }
}

impl KeyMemo {
    /// How long a key is remembered.
    pub const FOR: std::time::Duration = std::time::Duration::from_secs(10);
    /// More keys than this in use at once: forget them all and start again.
    const AT_MOST: usize = 10_000;

    pub fn new(ttl: std::time::Duration) -> KeyMemo {
        KeyMemo { ttl, keys: Default::default(), forgotten: Default::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (ApiKeyRow, std::time::Instant)>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key whose hash this is, as [`by_hash`] reads it.
    pub async fn by_hash(&self, db: &Db, hash: &str) -> anyhow::Result<Option<ApiKeyRow>> {
        if !matches!(db, Db::Sqlite(_)) {
            return by_hash(db, hash).await;
        }
        if let Some((row, at)) = self.lock().get(hash)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(row.clone()));
        }
        let before = self.forgotten.load(std::sync::atomic::Ordering::SeqCst);
        let row = by_hash(db, hash).await?;
        let mut keys = self.lock();
        match &row {
            // read before a revocation that has since forgotten every key: not kept
            Some(_) if self.forgotten.load(std::sync::atomic::Ordering::SeqCst) != before => {}
            Some(r) => {
                if keys.len() >= Self::AT_MOST {
                    keys.clear();
                }
                keys.insert(hash.to_string(), (r.clone(), std::time::Instant::now()));
            }
            None => {
                keys.remove(hash);
            }
        }
        Ok(row)
    }

    /// After [`touch`]: the remembered key `id` was used at `now` from `address`.
    pub fn used(&self, id: i64, now: i64, address: &str) {
        for (row, _) in self.lock().values_mut().filter(|(r, _)| r.id == id) {
            row.last_used_at = Some(now);
            row.last_used_from = address.to_string();
        }
    }

    /// After a key changed: nothing remembered is used again.
    pub fn forget(&self) {
        let mut keys = self.lock();
        self.forgotten.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        keys.clear();
    }
}

/// Revokes the key (if it belongs to the org and is not revoked yet); whether it did.
pub async fn revoke(db: &Db, org: OrgId, id: i64, by_label: &str) -> anyhow::Result<bool> {
    let n = on_writer!(db, p => sqlx::query(
        "UPDATE api_keys SET revoked_at = $3, revoked_by_label = $4
         WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
    )
    .bind(org.get())
    .bind(id)
    .bind(crate::now())
    .bind(by_label)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("revoking API key")?;
    Ok(n > 0)
}

/// How stale "last used" may get before a request writes it again: a key making many
/// requests a second writes once a minute, not on each.
pub const LAST_USED_EVERY_SECS: i64 = 60;

/// Notes that the key was used now from `address`, unless its use was noted less than a
/// minute ago.
pub async fn touch(db: &Db, id: i64, address: &str, now: i64) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "UPDATE api_keys SET last_used_at = $2, last_used_from = $3
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $4)",
    )
    .bind(id)
    .bind(now)
    .bind(address)
    .bind(now - LAST_USED_EVERY_SECS)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("noting API key use")?;
    Ok(())
}

/// How long an `Idempotency-Key`'s first answer is replayed.
pub const IDEMPOTENCY_SECS: i64 = 86_400;

/// How long an unfinished first request holds its key.
const STALE_CLAIM_SECS: i64 = 60;

/// What an `Idempotency-Key` finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// Never seen (or seen more than a day ago): the request runs, then [`finish_idempotent`].
    New,
    /// The first answer: status and JSON body.
    Replay(u16, String),
    /// The same key was used for another request.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
}

/// Claims `idem_key` for this API key and request (`request_hash`), or says what the first
/// request with it got.
pub async fn begin_idempotent(db: &Db, key_id: i64, idem_key: &str, request_hash: &str) -> anyhow::Result<Idempotency> {
    let now = crate::now();
    let claimed = on_writer!(db, p => {
        sqlx::query("DELETE FROM api_idempotency WHERE created_at < $1").bind(now - IDEMPOTENCY_SECS).execute(p).await?;
        sqlx::query(
            "INSERT INTO api_idempotency (api_key_id, idempotency_key, request_hash, status, body, created_at)
             VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (api_key_id, idempotency_key) DO NOTHING",
        )
        .bind(key_id)
        .bind(idem_key)
        .bind(request_hash)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })
    .context("claiming an idempotency key")?;
    if claimed > 0 {
        return Ok(Idempotency::New);
    }
    // a first request that never finished (its client went away, the process stopped) frees
    // its key after a minute
    let reclaimed = on_writer!(db, p => sqlx::query(
        "UPDATE api_idempotency SET request_hash = $3, created_at = $4
         WHERE api_key_id = $1 AND idempotency_key = $2 AND status = 0 AND created_at < $5",
    )
    .bind(key_id)
    .bind(idem_key)
    .bind(request_hash)
    .bind(now)
    .bind(now - STALE_CLAIM_SECS)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("reclaiming an idempotency key")?;
    if reclaimed > 0 {
        return Ok(Idempotency::New);
    }
    let row = on_pool!(db, p => sqlx::query_as::<_, (String, i64, String)>(
        "SELECT request_hash, status, body FROM api_idempotency WHERE api_key_id = $1 AND idempotency_key = $2",
    )
    .bind(key_id)
    .bind(idem_key)
    .fetch_optional(p)
    .await)
    .context("reading an idempotency key")?;
    Ok(match row {
        None => Idempotency::InFlight,
        Some((hash, _, _)) if hash != request_hash => Idempotency::Mismatch,
        Some((_, 0, _)) => Idempotency::InFlight,
        Some((_, status, body)) => Idempotency::Replay(status as u16, body),
    })
}

/// Keeps the first answer for the key; a server error is not kept (the request may be tried
/// again with the same key).
pub async fn finish_idempotent(db: &Db, key_id: i64, idem_key: &str, status: u16, body: &str) -> anyhow::Result<()> {
    on_writer!(db, p => {
        if status >= 500 {
            sqlx::query("DELETE FROM api_idempotency WHERE api_key_id = $1 AND idempotency_key = $2")
                .bind(key_id)
                .bind(idem_key)
                .execute(p)
                .await
        } else {
            sqlx::query("UPDATE api_idempotency SET status = $3, body = $4 WHERE api_key_id = $1 AND idempotency_key = $2")
                .bind(key_id)
                .bind(idem_key)
                .bind(i64::from(status))
                .bind(body)
                .execute(p)
                .await
        }
        .map(|r| r.rows_affected())
    })
    .context("keeping the idempotent answer")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembered_keys_are_forgotten_when_one_is_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("k.db").display()), 2).await.unwrap();
        db.migrate().await.unwrap();
        let (org, _) = crate::store::accounts::ensure_org(&db, "acme", "Acme").await.unwrap();
        let key = |hash: &'static str| NewApiKey {
            name: "ci",
            prefix: "sk_1234",
            hash,
            permissions: "pf.import.upload",
            created_by: None,
            created_by_label: "test",
            expires_at: None,
        };
        let memo = KeyMemo::new(std::time::Duration::from_secs(60));
        assert!(memo.by_hash(&db, "h1").await.unwrap().is_none(), "no such key yet");
        let id = create(&db, org, &key("h1")).await.unwrap();
        let row = memo.by_hash(&db, "h1").await.unwrap().expect("a key created meanwhile is found at once");
        assert_eq!(row.id, id);

        touch(&db, id, "10.0.0.1", 1_000).await.unwrap();
        memo.used(id, 1_000, "10.0.0.1");
        let row = memo.by_hash(&db, "h1").await.unwrap().unwrap();
        assert_eq!((row.last_used_at, row.last_used_from.as_str()), (Some(1_000), "10.0.0.1"), "use noted");

        // revoked behind the memo's back: still the remembered row …
        assert!(revoke(&db, org, id, "owner").await.unwrap());
        assert!(memo.by_hash(&db, "h1").await.unwrap().unwrap().revoked_at.is_none());
        // … until the memo is told, as the revoking page does
        memo.forget();
        assert!(memo.by_hash(&db, "h1").await.unwrap().unwrap().revoked_at.is_some());

        // short-lived: read again once old
        let memo = KeyMemo::new(std::time::Duration::from_millis(50));
        let other = create(&db, org, &key("h2")).await.unwrap();
        assert!(memo.by_hash(&db, "h2").await.unwrap().unwrap().revoked_at.is_none());
        assert!(revoke(&db, org, other, "owner").await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        assert!(memo.by_hash(&db, "h2").await.unwrap().unwrap().revoked_at.is_some());
    }
}
