//! The worker loop: claim a job, run its handler while renewing the lease, record the end.
//!
//! A worker that dies leaves its lease to run out; the next claim after that takes the
//! job over (handlers make their work resumable, e.g. per committed chunk). On shutdown
//! handlers are asked to stop at a safe point and their jobs go back to the queue at once.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use tokio::sync::watch;
use tracing::Instrument;

use crate::domain::jobs::{Finish, Outcome, after_attempt, on_claim};
use crate::store::jobs::ClaimedJob;
use crate::store::{self, Db};

/// Runs one kind of job.
pub trait JobHandler {
    fn kind(&self) -> &'static str;
    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome>;
}

/// What a running handler can see.
pub struct JobContext {
    pub db: Db,
    pub job: ClaimedJob,
    stop: watch::Receiver<bool>,
    lost: Rc<Cell<bool>>,
}

impl JobContext {
    /// True when the handler should stop at its next safe point: the worker is shutting
    /// down, or another worker has taken the job over.
    pub fn should_stop(&self) -> bool {
        *self.stop.borrow() || self.lost.get()
    }

    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.job.payload).map_err(|e| format!("job payload is not valid: {e}"))
    }
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once by this worker.
    pub concurrency: usize,
    /// Wait between polls of an empty queue.
    pub poll: Duration,
    /// Lease length; renewed every third of it.
    pub lease_secs: i64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig { concurrency: 2, poll: Duration::from_millis(500), lease_secs: 30 }
    }
}

pub struct Worker {
    db: Db,
    owner: String,
    config: WorkerConfig,
    handlers: HashMap<&'static str, Rc<dyn JobHandler>>,
}

impl Worker {
    pub fn new(db: Db, config: WorkerConfig) -> anyhow::Result<Worker> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        let owner = format!("{host}:{}:{}", std::process::id(), crate::random_token(4)?);
        Ok(Worker { db, owner, config, handlers: HashMap::new() })
    }

    pub fn register(&mut self, handler: impl JobHandler + 'static) {
        self.handlers.insert(handler.kind(), Rc::new(handler));
    }

    /// With every job kind the app has.
    pub fn with_all_handlers(db: Db, config: WorkerConfig) -> anyhow::Result<Worker> {
        let mut w = Worker::new(db, config)?;
        w.register(super::maintenance::Prune);
        Ok(w)
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims and runs one job; false when none was due.
    pub async fn run_one(&self, stop: &watch::Receiver<bool>) -> anyhow::Result<bool> {
        let now = crate::now();
        let Some(job) = store::jobs::claim(&self.db, &self.owner, self.config.lease_secs, now).await? else {
            return Ok(false);
        };
        let span = tracing::info_span!("job", job_id = job.id, kind = %job.kind, attempt = job.attempts);
        self.run_claimed(job, stop.clone()).instrument(span).await?;
        Ok(true)
    }

    async fn run_claimed(&self, job: ClaimedJob, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let now = crate::now();
        let job_id = job.id;
        let finish = if let Some(f) = on_claim(job.attempts, job.max_attempts, job.deadline_at, now) {
            f
        } else if let Some(handler) = self.handlers.get(job.kind.as_str()).cloned() {
            let (attempts, max, deadline) = (job.attempts, job.max_attempts, job.deadline_at);
            let ctx = JobContext { db: self.db.clone(), job, stop, lost: Rc::new(Cell::new(false)) };
            let outcome = self.supervise(handler.as_ref(), &ctx, deadline).await;
            if ctx.lost.get() {
                tracing::warn!(job_id, "lease lost: another worker has this job now");
                return Ok(());
            }
            match outcome {
                Some(o) => after_attempt(o, attempts, max, crate::now()),
                None => Finish::TimedOut { error: "the job ran past its time budget".into() },
            }
        } else {
            Finish::Failed { error: format!("no handler for job kind \"{}\"", job.kind) }
        };
        match &finish {
            Finish::Succeeded => tracing::info!("job succeeded"),
            Finish::Released => tracing::info!("job released for another worker"),
            other => tracing::warn!(result = ?other, "job did not succeed"),
        }
        store::jobs::finish(&self.db, job_id, &self.owner, &finish, crate::now()).await.map(|_| ())
    }

    /// Runs the handler, renewing the lease; None when the time budget ran out first.
    async fn supervise(&self, handler: &dyn JobHandler, ctx: &JobContext, deadline: Option<i64>) -> Option<Outcome> {
        let every = Duration::from_secs((self.config.lease_secs / 3).max(1) as u64);
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        let budget = deadline.map(|d| (d - crate::now()).max(0) as u64).unwrap_or(u64::MAX / 4);
        let over = tokio::time::sleep(Duration::from_secs(budget));
        tokio::pin!(over);
        let fut = handler.run(ctx);
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                _ = &mut over => return None,
                _ = tick.tick() => {
                    match store::jobs::heartbeat(&ctx.db, ctx.job.id, &self.owner, self.config.lease_secs, crate::now()).await {
                        Ok(true) => {}
                        Ok(false) => ctx.lost.set(true),
                        Err(e) => tracing::warn!(error = ?e, "could not renew the job lease"),
                    }
                }
            }
        }
    }

    /// Claims and runs jobs until `stop` turns true, `concurrency` at a time.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let me = Rc::new(self);
        let loops: Vec<_> = (0..me.config.concurrency.max(1))
            .map(|_| {
                let me = me.clone();
                let mut stop = stop.clone();
                actix_web::rt::spawn(async move {
                    while !*stop.borrow() {
                        match me.run_one(&stop).await {
                            Ok(true) => continue,
                            Ok(false) => {}
                            Err(e) => tracing::error!(error = ?e, "job queue error"),
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(me.config.poll) => {}
                            _ = stop.changed() => {}
                        }
                    }
                })
            })
            .collect();
        for l in loops {
            let _ = l.await;
        }
    }
}
