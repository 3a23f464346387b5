//! Background jobs. [`worker`] claims jobs from the database queue, keeps their lease
//! alive while they run, and records how they ended; one file per job kind beside it.
//! Workers run inside `serve` (`--workers`, default 2) and as `stevedore worker`; any
//! number of them, on any number of instances, share one queue.

pub mod background;
pub mod export;
pub mod import;
pub mod maintenance;
pub mod marketplace;
pub mod onboarding;
pub mod worker;

pub use worker::{JobContext, JobHandler, Worker, WorkerConfig};

use crate::domain::ids::OrgId;
use crate::domain::jobs::Outcome;
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

/// Why a job's step stopped short: a passing problem worth another attempt, or one that
/// another attempt cannot fix. `?` on a store call (an `anyhow::Error`) means the former.
#[derive(Debug)]
pub enum StepError {
    /// The database was busy or briefly unavailable, a connection dropped: try again.
    Retry(anyhow::Error),
    /// The work itself cannot be done (a bad file, a column gone): said to the person.
    Fail(String),
}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        StepError::Retry(e)
    }
}

/// A step's result.
pub type Step<T> = Result<T, StepError>;

impl StepError {
    /// The queue's outcome for a passing problem on attempt `attempts` of `max`: retry
    /// while attempts remain; None on the last one, when the caller gives up for good.
    pub fn retry_outcome(e: &anyhow::Error, attempts: i64, max: i64) -> Option<Outcome> {
        if attempts >= max {
            tracing::error!(error = ?e, attempts, "giving up after a passing error on the last attempt");
            None
        } else {
            tracing::warn!(error = ?e, attempts, "passing error; the job will try again");
            Some(Outcome::Retry(format!("{e:#}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_errors_retry_until_the_last_attempt() {
        let e = anyhow::anyhow!("database is locked");
        assert_eq!(StepError::retry_outcome(&e, 1, 5), Some(Outcome::Retry("database is locked".into())));
        assert!(StepError::retry_outcome(&e, 4, 5).is_some());
        assert_eq!(StepError::retry_outcome(&e, 5, 5), None, "the last attempt gives up");
        let from_store: StepError = anyhow::anyhow!("no such table").into();
        assert!(matches!(from_store, StepError::Retry(_)), "a store error is passing");
    }
}
