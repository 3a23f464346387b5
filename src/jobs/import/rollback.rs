//! `import.rollback`: undoes an import from its journal, a chunk per transaction with a
//! cursor, so a rollback interrupted by a crash finishes after a restart and undoes each
//! change once. Records changed since the import are left alone unless asked otherwise.

use super::{Payload, system_event};
use crate::domain::ids::OrgId;
use crate::domain::jobs::Outcome;
use crate::domain::words::Grouped;
use crate::jobs::{JobContext, StepError};
use crate::store::imports as store;
use crate::store::journal::{self, RollbackTarget};

/// Journal entries one rollback transaction undoes at most (the import's chunk size, up to
/// this).
const ROLLBACK_CHUNK: i64 = 10_000;

/// A passing error retries while attempts remain; the rollback resumes at its cursor.
fn retry(ctx: &JobContext, e: anyhow::Error) -> Outcome {
    StepError::retry_outcome(&e, ctx.job.attempts, ctx.job.max_attempts)
        .unwrap_or_else(|| Outcome::Fail(format!("the rollback kept failing: {e:#}")))
}

#[tracing::instrument(skip_all, fields(job_id = ctx.job.id))]
pub(super) async fn run(h: &super::Handlers, ctx: &JobContext) -> Outcome {
    let p: Payload = match ctx.payload() {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(e),
    };
    let org = OrgId::new(p.org_id);
    let imp = match store::get(&ctx.db, org, p.import_id).await {
        Ok(Some(i)) if i.is_rolling_back() => i,
        Ok(_) => return Outcome::Done,
        Err(e) => return retry(ctx, e),
    };
    // every chunk is undone under this attempt's lease (see `Fence`)
    let fence = ctx.fence();
    let target = RollbackTarget {
        org,
        import_id: imp.id,
        entity: &imp.entity,
        overwrite: imp.rollback.overwrite,
        fence: Some(&fence),
    };
    loop {
        if ctx.should_stop() {
            return Outcome::Stopped;
        }
        match journal::rollback_chunk(&ctx.db, &target, imp.chunk_size.clamp(1, ROLLBACK_CHUNK)).await {
            Ok(Some(u)) if u.entries == 0 => break,
            Ok(Some(_)) => {}
            // another worker moved the cursor, or the rollback is no longer asked for
            Ok(None) => return Outcome::Done,
            Err(e) => return retry(ctx, e),
        }
    }
    match journal::finish(&ctx.db, imp.id).await {
        Ok(true) => {
            let detail = match store::get(&ctx.db, org, imp.id).await {
                Ok(Some(i)) if i.rollback.skipped > 0 => format!(
                    "{} undone; {} changed since the import left as {}",
                    i.rollback.rolled_back_rows.count("change", "changes"),
                    i.rollback.skipped.count("record", "records"),
                    if i.rollback.skipped == 1 { "it was" } else { "they were" }
                ),
                Ok(Some(i)) => format!("{} undone", i.rollback.rolled_back_rows.count("change", "changes")),
                _ => String::new(),
            };
            system_event(&ctx.db, org, "import_rolled_back", imp.id, &detail).await;
            // part of the onboarding's rollback: the step before it goes next
            if let Err(e) = crate::jobs::onboarding::roll_back_next(&ctx.db, &h.schemas, org).await {
                tracing::warn!(error = ?e, import_id = imp.id, "starting the onboarding's next rollback failed");
            }
            Outcome::Done
        }
        Ok(false) => Outcome::Done,
        Err(e) => retry(ctx, e),
    }
}
