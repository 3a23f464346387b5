//! What happens to a job after an attempt: retried with backoff, failed, timed out.

/// A job attempt's lease token: the worker that claimed the job and the attempt it is on.
/// A write made on the job's behalf first checks that the job still runs under this token,
/// in the write's own transaction, so a worker that lost its lease (another took the job
/// over) cannot write again, even before it notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub job_id: i64,
    pub owner: String,
    pub attempt: i64,
}

/// How an attempt ended, in the handler's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A passing problem (database busy, network): try again later.
    Retry(String),
    /// A problem another attempt cannot fix.
    Fail(String),
    /// The handler stopped at a safe point because it was asked to (shutdown, pause).
    Stopped,
}

/// What the queue records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Succeeded,
    Retry {
        error: String,
        retry_at: i64,
    },
    Failed {
        error: String,
    },
    TimedOut {
        error: String,
    },
    /// Back in the queue at once, the attempt not counted (graceful shutdown).
    Released,
}

/// Seconds to wait before attempt `attempt + 1`: 5, 10, 20 … at most 5 minutes.
pub fn backoff_secs(attempt: i64) -> i64 {
    let exp = attempt.clamp(1, 7) - 1;
    (5_i64 << exp).min(300)
}

/// The queue's record of an attempt that ended with `outcome`.
pub fn after_attempt(outcome: Outcome, attempts: i64, max_attempts: i64, now: i64) -> Finish {
    match outcome {
        Outcome::Done => Finish::Succeeded,
        Outcome::Stopped => Finish::Released,
        Outcome::Fail(error) => Finish::Failed { error },
        Outcome::Retry(error) if attempts >= max_attempts => {
            Finish::Failed { error: format!("gave up after {attempts} attempts: {error}") }
        }
        Outcome::Retry(error) => Finish::Retry { error, retry_at: now + backoff_secs(attempts) },
    }
}

/// Checks a freshly claimed job before it runs: one whose earlier workers all died, or
/// whose time budget is spent, ends here instead of running again.
pub fn on_claim(attempts: i64, max_attempts: i64, deadline_at: Option<i64>, now: i64) -> Option<Finish> {
    if let Some(d) = deadline_at
        && now >= d
    {
        return Some(Finish::TimedOut { error: "the job ran past its time budget".into() });
    }
    if attempts > max_attempts {
        return Some(Finish::Failed {
            error: format!("gave up after {max_attempts} attempts: the worker running it stopped responding"),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!([1, 2, 3, 4, 7, 20].map(backoff_secs), [5, 10, 20, 40, 300, 300]);
    }

    #[test]
    fn retries_until_the_last_attempt() {
        assert_eq!(
            after_attempt(Outcome::Retry("busy".into()), 1, 3, 100),
            Finish::Retry { error: "busy".into(), retry_at: 105 }
        );
        assert_eq!(
            after_attempt(Outcome::Retry("busy".into()), 3, 3, 100),
            Finish::Failed { error: "gave up after 3 attempts: busy".into() }
        );
        assert_eq!(after_attempt(Outcome::Fail("bad".into()), 1, 3, 100), Finish::Failed { error: "bad".into() });
        assert_eq!(after_attempt(Outcome::Done, 1, 3, 100), Finish::Succeeded);
        assert_eq!(after_attempt(Outcome::Stopped, 1, 3, 100), Finish::Released);
    }

    #[test]
    fn claims_past_the_budget_or_the_attempts_end_the_job() {
        assert_eq!(on_claim(1, 3, Some(200), 100), None);
        assert!(matches!(on_claim(1, 3, Some(100), 100), Some(Finish::TimedOut { .. })));
        assert!(
            matches!(on_claim(4, 3, None, 100), Some(Finish::Failed { error }) if error.contains("stopped responding"))
        );
    }
}
