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
