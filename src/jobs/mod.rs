//! Background jobs. [`worker`] claims jobs from the database queue, keeps their lease
//! alive while they run, and records how they ended; one file per job kind beside it.
//! Workers run inside `serve` (`--workers`, default 2) and as `stevedore worker`; any
//! number of them, on any number of instances, share one queue.

pub mod export;
pub mod import;
pub mod maintenance;
pub mod marketplace;
pub mod worker;

pub use worker::{JobContext, JobHandler, Worker, WorkerConfig};

use crate::domain::ids::OrgId;
use crate::store::{self, Db};

/// Enqueues a job due now; returns its id (None when its dedupe key was taken).
pub async fn enqueue(
    db: &Db,
    org: Option<OrgId>,
    kind: &str,
    payload: &serde_json::Value,
    dedupe_key: Option<&str>,
) -> anyhow::Result<Option<i64>> {
    let now = crate::now();
    let payload = payload.to_string();
    let job = store::jobs::NewJob {
        org,
        kind,
        payload: &payload,
        max_attempts: 5,
        budget_secs: 6 * 3600,
        run_after: now,
        dedupe_key,
    };
    store::jobs::enqueue(db, &job, now).await
}
