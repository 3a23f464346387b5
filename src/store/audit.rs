//! The audit log: who did what, when, from where.

use anyhow::Context;

use super::Db;
use crate::domain::ids::{OrgId, UserId};
use crate::{on_pool, on_writer};

/// One thing to record. `org` is None for events outside an org (a failed sign-in).
pub struct AuditEvent<'a> {
    pub actor: Option<UserId>,
    pub actor_label: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub detail: &'a str,
    pub address: &'a str,
}

pub async fn record(db: &Db, org: Option<OrgId>, e: &AuditEvent<'_>) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "INSERT INTO audit_events (org_id, actor_user_id, actor_label, action, target, detail, address, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(org.map(OrgId::get))
    .bind(e.actor.map(UserId::get))
    .bind(e.actor_label)
    .bind(e.action)
    .bind(e.target)
    .bind(e.detail)
    .bind(e.address)
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("recording audit event")?;
    Ok(())
}

/// A recorded event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub actor_label: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub address: String,
    pub at: i64,
}

/// What the audit page filters by; empty strings match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    pub action: &'a str,
    /// Part of the actor's email or label.
    pub actor: &'a str,
    /// Part of the target (`import 12`, an email, …).
    pub target: &'a str,
    /// A `LIKE` pattern for the kind of target (`import %`), or empty.
    pub kind: &'a str,
}

const WHERE: &str = "WHERE org_id = $1 AND ($2 = '' OR action = $2)
      AND ($3 = '' OR LOWER(actor_label) LIKE $3 ESCAPE '\\') AND ($4 = '' OR LOWER(target) LIKE $4 ESCAPE '\\')
      AND ($5 = '' OR target LIKE $5)";

fn contains(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let escaped = s.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

pub async fn count(db: &Db, org: OrgId, f: &AuditFilter<'_>) -> anyhow::Result<i64> {
    let sql = format!("SELECT COUNT(*) FROM audit_events {WHERE}");
    on_pool!(db, p => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(f.action)
        .bind(contains(f.actor))
        .bind(contains(f.target))
        .bind(f.kind)
        .fetch_one(p)
        .await)
    .context("counting audit events")
}

/// A page of the org's events, newest first.
pub async fn list(db: &Db, org: OrgId, f: &AuditFilter<'_>, limit: i64, offset: i64) -> anyhow::Result<Vec<AuditRow>> {
    let sql = format!(
        "SELECT id, actor_label, action, target, detail, address, at FROM audit_events {WHERE}
         ORDER BY at DESC, id DESC LIMIT $6 OFFSET $7"
    );
    on_pool!(db, p => sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(sql))
        .bind(org.get())
        .bind(f.action)
        .bind(contains(f.actor))
        .bind(contains(f.target))
        .bind(f.kind)
        .bind(limit)
        .bind(offset)
        .fetch_all(p)
        .await)
    .context("listing audit events")
}

/// The events about one target (`import 12`), newest first.
pub async fn for_target(db: &Db, org: OrgId, target: &str, limit: i64) -> anyhow::Result<Vec<AuditRow>> {
    on_pool!(db, p => sqlx::query_as::<_, AuditRow>(
        "SELECT id, actor_label, action, target, detail, address, at FROM audit_events
         WHERE org_id = $1 AND target = $2 ORDER BY at DESC, id DESC LIMIT $3",
    )
    .bind(org.get())
    .bind(target)
    .bind(limit)
    .fetch_all(p)
    .await)
    .context("listing events of a target")
}

/// The actions recorded in the org, for the filter.
/// Who appears in the org's log (people, API keys, the system), for the filter; at most
/// `limit`, by name.
pub async fn actors(db: &Db, org: OrgId, limit: i64) -> anyhow::Result<Vec<String>> {
    on_pool!(db, p => sqlx::query_scalar::<_, String>(
        "SELECT DISTINCT actor_label FROM audit_events WHERE org_id = $1 AND actor_label <> '' ORDER BY actor_label LIMIT $2",
    )
    .bind(org.get())
    .bind(limit)
    .fetch_all(p)
    .await)
    .context("listing audit actors")
}

pub async fn actions(db: &Db, org: OrgId) -> anyhow::Result<Vec<String>> {
    on_pool!(db, p => sqlx::query_scalar::<_, String>(
        "SELECT DISTINCT action FROM audit_events WHERE org_id = $1 ORDER BY action",
    )
    .bind(org.get())
    .fetch_all(p)
    .await)
    .context("listing audit actions")
}
