//! The worker loop: claim a job, run its handler while renewing the lease, record the end.
//!
//! A worker that dies leaves its lease to run out; the next claim after that takes the
//! job over (handlers make their work resumable, e.g. per committed chunk). On shutdown
//! handlers are asked to stop at a safe point and their jobs go back to the queue at once.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use tokio::sync::watch;
use tracing::Instrument;

use crate::domain::entities::Schemas;
use crate::domain::jobs::{Fence, Finish, Outcome, after_attempt, on_claim};
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
    /// The worker that claimed the job.
    owner: String,
    stop: watch::Receiver<bool>,
    lost: Rc<Cell<bool>>,
}

impl JobContext {
    /// True when the handler should stop at its next safe point: the worker is shutting
    /// down, or another worker has taken the job over.
    pub fn should_stop(&self) -> bool {
        *self.stop.borrow() || self.lost.get()
    }

    /// This attempt's lease token, for writes that must not happen once the lease is lost.
    pub fn fence(&self) -> Fence {
        Fence { job_id: self.job.id, owner: self.owner.clone(), attempt: self.job.attempts }
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
    /// After shutdown is asked, how long a handler may take to stop at a safe point.
    pub stop_grace: Duration,
    /// How long a validated import may wait to be started (maintenance expires it after).
    pub import_ttl_secs: i64,
    /// How long an import's journal and original file are kept.
    pub import_retention_secs: i64,
    /// How long a completed export's file is kept.
    pub export_retention_secs: i64,
    /// Whether imports may fetch file URLs on private networks.
    pub fetch_private_networks: bool,
    /// What an import's file may hold.
    pub file_limits: crate::files::Limits,
    /// Where every file is kept.
    pub files: crate::files::object::FileStore,
    /// The marketplace bundles imports apply.
    pub catalog: Arc<crate::domain::marketplace::Catalog>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 2,
            poll: Duration::from_millis(500),
            lease_secs: 30,
            stop_grace: STOP_GRACE,
            import_ttl_secs: 86_400,
            import_retention_secs: 90 * 86_400,
            export_retention_secs: 7 * 86_400,
            fetch_private_networks: false,
            file_limits: crate::files::Limits::default(),
            files: crate::files::object::FileStore::local(&std::env::temp_dir().join("stevedore")),
            catalog: Arc::default(),
        }
    }
}

/// Aborts a spawned task when dropped, whichever way its owner returns.
struct AbortOnDrop(actix_web::rt::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease every third of it. The lease counts as lost when another worker took
/// the job, or when renewals have failed for longer than the lease itself.
async fn heartbeats(db: Db, job_id: i64, owner: String, lease_secs: i64, lost: Rc<Cell<bool>>) {
    let every = Duration::from_secs((lease_secs / 3).max(1) as u64);
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut held_until = crate::now() + lease_secs;
    loop {
        tick.tick().await;
        let now = crate::now();
        match store::jobs::heartbeat(&db, job_id, &owner, lease_secs, now).await {
            Ok(true) => held_until = now + lease_secs,
            Ok(false) => {
                lost.set(true);
                return;
            }
            Err(e) => {
                tracing::warn!(error = ?e, "could not renew the job lease");
                if crate::now() >= held_until {
                    lost.set(true);
                    return;
                }
            }
        }
    }
}

/// The default time a handler may take to stop at a safe point after shutdown is asked.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

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
    pub fn with_all_handlers(db: Db, schemas: Arc<Schemas>, config: WorkerConfig) -> anyhow::Result<Worker> {
        let (import_ttl_secs, import_retention_secs, export_retention_secs) =
            (config.import_ttl_secs, config.import_retention_secs, config.export_retention_secs);
        let fetcher = crate::files::fetch::Fetcher::new(config.fetch_private_networks)?;
        let file_limits = config.file_limits;
        let files = config.files.clone();
        let catalog = config.catalog.clone();
        let mut w = Worker::new(db, config)?;
        w.register(super::marketplace::MarketplaceHandler { catalog });
        w.register(super::maintenance::Ping);
        w.register(super::maintenance::Prune {
            import_ttl_secs,
            import_retention_secs,
            export_retention_secs,
            files: files.clone(),
        });
        w.register(super::export::ExportHandler { schemas: schemas.clone(), files: files.clone() });
        let imports = Arc::new(super::import::Handlers { schemas, fetcher, limits: file_limits, files });
        w.register(super::import::ValidateHandler(imports.clone()));
        w.register(super::import::ProcessHandler(imports.clone()));
        w.register(super::import::RollbackHandler(imports));
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
            let owner = self.owner.clone();
            let ctx = JobContext { db: self.db.clone(), job, owner, stop, lost: Rc::new(Cell::new(false)) };
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
        self.record_finish(job_id, &finish).await
    }

    /// Runs the handler, renewing the lease; None when the time budget ran out first.
    /// The lease counts as lost (and the handler is told to stop) when another worker took
    /// it, or when renewals have failed for longer than the lease itself. After `stop`,
    /// the handler has the configured grace to reach a safe point; then it is dropped, which
    /// rolls back its open transaction, and the job is released. `stop_grace` is the grace.
    async fn supervise(&self, handler: &dyn JobHandler, ctx: &JobContext, deadline: Option<i64>) -> Option<Outcome> {
        // Heartbeats run as their own task. Awaited inside the loop below they would stall
        // the handler: on SQLite a heartbeat waits for the write lock that the handler's
        // open chunk transaction holds, and the handler is only polled by this loop.
        let _heartbeats = AbortOnDrop(actix_web::rt::spawn(heartbeats(
            ctx.db.clone(),
            ctx.job.id,
            self.owner.clone(),
            self.config.lease_secs,
            ctx.lost.clone(),
        )));
        let budget = deadline.map(|d| (d - crate::now()).max(0) as u64).unwrap_or(u64::MAX / 4);
        let over = tokio::time::sleep(Duration::from_secs(budget));
        tokio::pin!(over);
        let mut stop = ctx.stop.clone();
        let grace = tokio::time::sleep(Duration::from_secs(u64::MAX / 4));
        tokio::pin!(grace);
        let mut stopping = *stop.borrow();
        let fut = std::panic::AssertUnwindSafe(handler.run(ctx)).catch_unwind();
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => {
                    return Some(out.unwrap_or_else(|p| {
                        let why = p.downcast_ref::<&str>().map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown cause".into());
                        tracing::error!(%why, "job handler panicked");
                        Outcome::Fail(format!("the job stopped unexpectedly ({why}); it was not retried"))
                    }));
                }
                _ = &mut over => return None,
                _ = &mut grace => {
                    tracing::warn!("job did not stop within the grace period; released");
                    return Some(Outcome::Stopped);
                }
                changed = stop.changed(), if !stopping => {
                    if changed.is_err() || *stop.borrow() {
                        stopping = true;
                        grace.as_mut().reset(tokio::time::Instant::now() + self.config.stop_grace);
                    }
                }
            }
        }
    }

    /// Records the end of an attempt, retrying briefly if the database is unreachable:
    /// a success that is not recorded would run again once the lease expires.
    async fn record_finish(&self, job_id: i64, finish: &Finish) -> anyhow::Result<()> {
        let mut delay = Duration::from_millis(250);
        for attempt in 1..=6 {
            match store::jobs::finish(&self.db, job_id, &self.owner, finish, crate::now()).await {
                Ok(_) => return Ok(()),
                Err(e) if attempt == 6 => return Err(e),
                Err(e) => {
                    tracing::warn!(error = ?e, attempt, "could not record the end of the job; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        Ok(())
    }

    /// Claims and runs jobs until `stop` turns true, `concurrency` at a time.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        // scratch copies a killed process left behind
        self.config.files.sweep_scratch().await;
        let me = Rc::new(self);
        // on PostgreSQL, a job queued on any instance wakes this one's idle loops
        let _listening = match &me.db {
            Db::Postgres(pool) => Some(Listening::start(pool)),
            Db::Sqlite(_) => None,
        };
        let loops: Vec<_> = (0..me.config.concurrency.max(1))
            .map(|_| {
                let me = me.clone();
                let mut stop = stop.clone();
                actix_web::rt::spawn(async move {
                    while !*stop.borrow() {
                        // armed before looking, so a job queued meanwhile is not missed
                        let woken = store::jobs::WAKE.notified();
                        tokio::pin!(woken);
                        woken.as_mut().enable();
                        match me.run_one(&stop).await {
                            Ok(true) => continue,
                            Ok(false) => {}
                            Err(e) => tracing::error!(error = ?e, "job queue error"),
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(me.config.poll) => {}
                            _ = woken => {}
                            changed = stop.changed() => {
                                // a dropped sender means nobody can ask any more: stop too
                                if changed.is_err() {
                                    break;
                                }
                            }
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

/// Wake-ups from `NOTIFY stevedore_jobs` (sent by the jobs table's insert trigger), heard on
/// a thread of their own with a connection of their own, so they end cleanly whenever the
/// worker goes (dropping this stops the thread).
struct Listening {
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Listening {
    fn start(pool: &sqlx::PgPool) -> Listening {
        let options = (*pool.connect_options()).clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new().name("job-wake-ups".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::warn!(error = %e, "job wake-ups: no runtime; workers poll"),
            };
            rt.block_on(async move {
                let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_lazy_with(options);
                tokio::select! {
                    _ = listen(&pool) => {}
                    _ = rx => {}
                }
                pool.close().await;
            });
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "job wake-ups: no thread; workers poll");
        }
        Listening { _stop: tx }
    }
}

/// Turns notifications into wake-ups of this process's idle loops; reconnects when the
/// connection drops (a notification missed meanwhile waits for the next poll).
async fn listen(pool: &sqlx::PgPool) {
    loop {
        match sqlx::postgres::PgListener::connect_with(pool).await {
            Ok(mut l) => match l.listen("stevedore_jobs").await {
                Ok(()) => loop {
                    match l.recv().await {
                        Ok(_) => store::jobs::WAKE.notify_waiters(),
                        Err(e) => {
                            tracing::warn!(error = %e, "job wake-ups: the listening connection failed");
                            break;
                        }
                    }
                },
                Err(e) => tracing::warn!(error = %e, "job wake-ups: LISTEN failed"),
            },
            Err(e) => tracing::warn!(error = %e, "job wake-ups: cannot connect"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
