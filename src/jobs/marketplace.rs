//! `marketplace.import`: applies a bundle version to an org. The whole bundle goes in one
//! transaction (bundles are small), so a worker that dies leaves nothing behind and the
//! job taken over applies it from the start, exactly once.

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use super::{JobContext, JobHandler};
use crate::domain::ids::OrgId;
use crate::domain::jobs::Outcome;
use crate::domain::marketplace::Catalog;
use crate::domain::words::Grouped;
use crate::store::Db;
use crate::store::marketplace as store;

pub const KIND: &str = "marketplace.import";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub org_id: i64,
    pub import_id: i64,
}

pub async fn enqueue(db: &Db, org: OrgId, import_id: i64) -> anyhow::Result<()> {
    let payload = serde_json::to_value(Payload { org_id: org.get(), import_id })?;
    super::enqueue(db, Some(org), KIND, &payload, None).await?;
    Ok(())
}

pub struct MarketplaceHandler {
    pub catalog: Arc<Catalog>,
}

async fn event(db: &Db, org: OrgId, action: &str, import_id: i64, detail: &str) {
    let event = crate::store::audit::AuditEvent {
        actor: None,
        actor_label: "background job",
        action,
        target: &format!("marketplace import {import_id}"),
        detail,
        address: "",
    };
    if let Err(e) = crate::store::audit::record(db, Some(org), &event).await {
        tracing::warn!(error = ?e, import_id, action, "recording an audit event failed");
    }
}

impl JobHandler for MarketplaceHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(async move {
            let p: Payload = match ctx.payload() {
                Ok(p) => p,
                Err(e) => return Outcome::Fail(e),
            };
            let org = OrgId::new(p.org_id);
            let import = match store::get(&ctx.db, org, p.import_id).await {
                Ok(Some(i)) => i,
                Ok(None) => return Outcome::Done,
                Err(e) => return Outcome::Retry(format!("{e:#}")),
            };
            if import.status != "in_progress" {
                return Outcome::Done;
            }
            let label = format!("{} {}", import.bundle_key, import.bundle_version);
            let Some(bundle) = self.catalog.get(&import.bundle_key, &import.bundle_version) else {
                let why = format!("{label} is no longer in the catalog");
                return match store::fail(&ctx.db, import.id, &why).await {
                    Ok(()) => {
                        event(&ctx.db, org, "marketplace_import_failed", import.id, &why).await;
                        Outcome::Done
                    }
                    Err(e) => Outcome::Retry(format!("{e:#}")),
                };
            };
            match store::apply(&ctx.db, import.id, &bundle.items).await {
                Ok(Some((created, skipped))) => {
                    let detail = format!(
                        "{label}: {} created, {} already present skipped",
                        created.count("item", "items"),
                        skipped.grouped()
                    );
                    event(&ctx.db, org, "marketplace_imported", import.id, &detail).await;
                    Outcome::Done
                }
                Ok(None) => Outcome::Done,
                Err(e) => {
                    if ctx.job.attempts >= ctx.job.max_attempts {
                        tracing::warn!(error = format!("{e:#}"), import_id = import.id, "a marketplace import failed");
                        let why = "the bundle could not be stored (see the server log)";
                        if store::fail(&ctx.db, import.id, why).await.is_ok() {
                            event(&ctx.db, org, "marketplace_import_failed", import.id, why).await;
                        }
                    }
                    Outcome::Retry(format!("{e:#}"))
                }
            }
        })
    }
}
