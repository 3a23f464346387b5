//! `import.validate`, `import.process` and `import.rollback`: the background phases of an
//! import, one file each ([`validate`], [`process`], [`rollback`]); [`rows`] reads the file
//! on a blocking thread and stages its rows.
//!
//! Validation makes one streaming pass over the stored file, staging every row, then runs
//! the later seed-004 phases as set-based statements, each recording its status, timing and
//! counts; rows it leaves out are stored as issues with the reason and the original cells.
//! Processing writes the remaining rows in chunks, each chunk one transaction that also
//! moves the import's cursor, so a job taken over after a crash continues after the last
//! committed chunk and never writes a row twice.
//!
//! Errors: a store error is a [`StepError::Retry`] (the job runs again with backoff, and
//! every step is safe to repeat); a problem with the import itself is a
//! [`StepError::Fail`] that fails the import with its reason. On the job's last attempt a
//! passing error fails the import too, so none is left validating forever.

mod process;
mod rollback;
mod rows;
mod seen;
mod validate;

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use super::{JobContext, JobHandler, StepError};
use crate::domain::entities::Schemas;
use crate::domain::ids::OrgId;
use crate::domain::imports::Stage;
use crate::domain::jobs::Outcome;
use crate::files::fetch::Fetcher;
use crate::store::Db;
use crate::store::imports as store;

pub const VALIDATE: &str = "import.validate";
pub const PROCESS: &str = "import.process";
pub const ROLLBACK: &str = "import.rollback";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub org_id: i64,
    pub import_id: i64,
}

/// Shared state of the handlers.
pub struct Handlers {
    pub schemas: Arc<Schemas>,
    pub fetcher: Fetcher,
    /// What an import's file may hold (checked again when a job reads it).
    pub limits: crate::files::Limits,
    /// Where the files are kept.
    pub files: crate::files::object::FileStore,
}

/// Registered as `import.validate`.
pub struct ValidateHandler(pub Arc<Handlers>);
/// Registered as `import.process`.
pub struct ProcessHandler(pub Arc<Handlers>);
/// Registered as `import.rollback`.
pub struct RollbackHandler(pub Arc<Handlers>);

impl JobHandler for ValidateHandler {
    fn kind(&self) -> &'static str {
        VALIDATE
    }
    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(validate::run(&self.0, ctx))
    }
}

impl JobHandler for ProcessHandler {
    fn kind(&self) -> &'static str {
        PROCESS
    }
    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(process::run(&self.0, ctx))
    }
}

impl JobHandler for RollbackHandler {
    fn kind(&self) -> &'static str {
        ROLLBACK
    }
    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(rollback::run(&self.0, ctx))
    }
}

/// Queues the next background step of an import.
pub async fn enqueue(db: &Db, org: OrgId, import_id: i64, kind: &str) -> anyhow::Result<()> {
    let payload = serde_json::to_value(Payload { org_id: org.get(), import_id })?;
    super::enqueue(db, Some(org), kind, &payload, None).await?;
    Ok(())
}

/// The onboarding's workbook steps after this import's job ended (see
/// [`crate::jobs::onboarding::go_on`]); a problem there is logged, the page goes on later.
async fn onboarding_goes_on(h: &Handlers, ctx: &JobContext, org: OrgId) {
    if let Err(e) = crate::jobs::onboarding::go_on(&ctx.db, &h.schemas, org).await {
        tracing::warn!(error = ?e, "moving the onboarding's workbook steps on failed");
    }
}

/// What the queue records when a step of an import in `from` stopped with `err`: a passing
/// error retries (the import stays where it is), a lasting one fails the import.
async fn conclude(ctx: &JobContext, import_id: i64, from: Stage, err: StepError) -> Outcome {
    match err {
        StepError::Fail(why) => fail_import(&ctx.db, import_id, from, &why).await,
        StepError::Retry(e) => match StepError::retry_outcome(&e, ctx.job.attempts, ctx.job.max_attempts) {
            Some(retry) => retry,
            None => {
                let why = format!(
                    "a database error kept interrupting it (tried {} times; see the server log)",
                    ctx.job.attempts
                );
                fail_import(&ctx.db, import_id, from, &why).await;
                Outcome::Fail(format!("{e:#}"))
            }
        },
    }
}

/// Records what a background job did to an import in the org's audit log (best effort:
/// the job's own result stands either way).
async fn system_event(db: &Db, org: OrgId, action: &str, import_id: i64, detail: &str) {
    let event = crate::store::audit::AuditEvent {
        actor: None,
        actor_label: "background job",
        action,
        target: &format!("import {import_id}"),
        detail,
        address: "",
    };
    if let Err(e) = crate::store::audit::record(db, Some(org), &event).await {
        tracing::warn!(error = ?e, import_id, action, "recording an audit event failed");
    }
}

/// Moves the import from `from` to failed with `why`, and says so in the audit log.
#[tracing::instrument(skip(db, why))]
async fn fail_import(db: &Db, id: i64, from: Stage, why: &str) -> Outcome {
    match store::transition(db, id, from, Stage::Failed, why).await {
        Ok(true) => {
            if let Ok(Some(org)) = store::org_of(db, id).await {
                system_event(db, org, "import_failed", id, why).await;
            }
            Outcome::Done
        }
        Ok(false) => Outcome::Done,
        Err(e) => Outcome::Retry(format!("{e:#}")),
    }
}
