//! `maintenance.prune`: deletes expired sessions, old sign-in attempts and finished jobs
//! older than a week; expires validated imports not started within their time to live;
//! purges the staged rows of imports that no longer need them, and the journals and
//! original files of imports past their retention, and the files of exports past theirs. Every instance offers to schedule it every ten minutes; the dedupe
//! key makes that one job per ten minutes, whatever the number of instances.

use futures_util::future::LocalBoxFuture;

use super::{JobContext, JobHandler};
use crate::domain::jobs::Outcome;
use crate::store::{self, Db};

pub const KIND: &str = "maintenance.prune";
pub const EVERY_SECS: i64 = 600;

pub struct Prune {
    /// How long a validated import may wait to be started.
    pub import_ttl_secs: i64,
    /// How long an import's journal and original file are kept.
    pub import_retention_secs: i64,
    /// How long a completed export's file is kept.
    pub export_retention_secs: i64,
    /// Where files are kept.
    pub files: crate::files::object::FileStore,
}

/// `ping`: does nothing. `stevedore bench pickup` queues these to time how long a job waits
/// for a worker.
pub struct Ping;

pub const PING: &str = "ping";

impl JobHandler for Ping {
    fn kind(&self) -> &'static str {
        PING
    }

    fn run<'a>(&'a self, _: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(async { Outcome::Done })
    }
}

/// Imports whose staged rows one run purges at most (the next run takes the rest).
const PURGES_PER_RUN: i64 = 20;

impl JobHandler for Prune {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(async move {
            let now = crate::now();
            let result = async {
                let sessions = store::sessions::prune(&ctx.db, now).await?;
                let attempts = store::login_attempts::prune(&ctx.db, now).await?;
                let jobs = store::jobs::prune_finished(&ctx.db, now - 7 * 86_400).await?;
                let mut expired = store::staging::expire_ready(&ctx.db, now - self.import_ttl_secs).await?;
                for id in &expired {
                    tracing::info!(import_id = id, "import expired: not started within its time to live");
                }
                let never_uploaded = store::staging::expire_awaiting_file(&ctx.db, now - self.import_ttl_secs).await?;
                for id in &never_uploaded {
                    tracing::info!(import_id = id, "import expired: no file was uploaded within its time to live");
                }
                expired.extend(never_uploaded);
                let purge = store::staging::purgeable(&ctx.db, PURGES_PER_RUN).await?;
                for id in &purge {
                    if ctx.should_stop() {
                        break;
                    }
                    store::staging::purge(&ctx.db, *id).await?;
                }
                let old =
                    store::journal::past_retention(&ctx.db, now - self.import_retention_secs, PURGES_PER_RUN).await?;
                for (id, file) in &old {
                    if ctx.should_stop() {
                        break;
                    }
                    store::journal::purge(&ctx.db, *id).await?;
                    if !file.is_empty() {
                        self.files.remove_file(file).await;
                    }
                }
                for (file, object) in store::exports::expire(&ctx.db, now - self.export_retention_secs).await? {
                    self.files.discard(&file, object.as_deref()).await;
                }
                anyhow::Ok((sessions, attempts, jobs, expired.len(), purge.len() + old.len()))
            }
            .await;
            match result {
                Ok((sessions, attempts, jobs, expired, purged)) => {
                    tracing::info!(
                        sessions,
                        sign_in_attempts = attempts,
                        jobs,
                        imports_expired = expired,
                        imports_purged = purged,
                        "pruned"
                    );
                    Outcome::Done
                }
                Err(e) => Outcome::Retry(format!("{e:#}")),
            }
        })
    }
}

/// Enqueues this ten minutes' prune job unless an instance already has.
pub async fn schedule(db: &Db) -> anyhow::Result<Option<i64>> {
    let bucket = crate::now() / EVERY_SECS;
    super::enqueue(db, None, KIND, &serde_json::json!({}), Some(&format!("{KIND}:{bucket}"))).await
}
