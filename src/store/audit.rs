//! The audit log: who did what, when, from where.

use anyhow::Context;

use super::Db;
use crate::domain::ids::{OrgId, UserId};
use crate::on_pool;

/// One thing to record. `org` is None for events outside an org (a failed sign-in).
pub struct AuditEvent<'a> {
    pub actor: Option<UserId>,
    pub actor_label: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub detail: &'a str,
    pub address: &'a str,
}

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

pub async fn record(db: &Db, org: Option<OrgId>, e: &AuditEvent<'_>) -> anyhow::Result<()> {
    on_pool!(db, p => sqlx::query(
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

/// The org's most recent events, newest first.
pub async fn recent(db: &Db, org: OrgId, limit: i64) -> anyhow::Result<Vec<AuditRow>> {
    on_pool!(db, p => sqlx::query_as::<_, AuditRow>(
        "SELECT id, actor_label, action, target, detail, address, at FROM audit_events
         WHERE org_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(org.get())
    .bind(limit)
    .fetch_all(p)
    .await)
    .context("loading audit events")
}
