//! Background work runs apart from requests. The job worker runs on a thread of its own, in an
//! async runtime of its own with database connections of its own; its SQLite writes give way
//! to people's (`store::turn`), and it can run at a lower scheduling priority
//! (`STEVEDORE_JOB_NICE`, Linux nice steps), which every thread it starts inherits: the threads
//! that read and check an import's file, an export's writer. (Not SQLite's connection threads:
//! see [`sqlite_connections`].)
//!
//! The priority is off by default: measured here, nice 10 cost an export 2.7× its time on an
//! idle machine (each page is handed between a lowered thread and a normal one, and the
//! scheduler let the lowered one wait its turn behind the other on the same core) and bought
//! people under an import nothing the turns had not already bought.

use std::future::Future;

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use super::{Worker, WorkerConfig};
use crate::domain::entities::Schemas;
use crate::store::Db;

/// How much lower background threads run than the process by default (in nice steps).
pub const NICE: i32 = 0;

/// How much lower background threads run: `STEVEDORE_JOB_NICE` (0 to 19; 0 runs jobs at the
/// requests' priority), else [`NICE`].
pub fn nice() -> i32 {
    static NICE_SET: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *NICE_SET.get_or_init(|| match std::env::var("STEVEDORE_JOB_NICE") {
        Err(_) => NICE,
        Ok(v) => match parse_nice(&v) {
            Some(n) => n,
            None => {
                tracing::warn!(value = %v, "STEVEDORE_JOB_NICE is not a number from 0 to 19; jobs run at the requests' priority");
                NICE
            }
        },
    })
}

fn parse_nice(v: &str) -> Option<i32> {
    v.trim().parse().ok().filter(|n| (0..=19).contains(n))
}

/// Lowers the calling thread's scheduling priority by [`nice()`] (nothing by default); threads
/// it starts afterwards inherit it. A thread can lower its own priority without privileges,
/// but not raise it again: call this only on threads made for background work.
pub fn lower_this_thread() {
    lower_by(nice());
}

/// Lowers the calling thread's priority by `by` nice steps (19 at most); a no-op off Linux.
fn lower_by(by: i32) {
    #[cfg(target_os = "linux")]
    {
        if by == 0 {
            return;
        }
        let tid = rustix::thread::gettid();
        let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
        if let Err(e) = rustix::process::setpriority_process(Some(tid), (now + by).min(19)) {
            tracing::warn!(error = %e, "background work could not lower its priority; it competes with requests");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
}

/// This thread's nice value (None where there is no such thing).
#[cfg(test)]
fn this_thread_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Runs `make()`'s future to its end on a new thread named `name`, at background priority
/// and with its SQLite writes giving way to people's (`store::turn`), in an actix runtime
/// of its own (jobs start local tasks); resolves with its output.
/// Whatever the future connects to or starts belongs to that thread's runtime: open the
/// worker's database pool inside it.
pub fn run<F, Fut, T>(name: &str, make: F) -> impl Future<Output = anyhow::Result<T>> + use<F, Fut, T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name(name.to_string()).spawn(move || {
        lower_this_thread();
        crate::store::turn::mark_background_thread();
        let out = actix_web::rt::System::new().block_on(make());
        let _ = tx.send(out);
    });
    async move {
        spawned.context("cannot start a background thread")?;
        rx.await.context("a background thread ended without finishing its work (it panicked)")
    }
}

/// The SQLite connections of background work to `url` (`connections` of them), or None for
/// PostgreSQL.
///
/// They are opened here, by the calling thread, so the threads that run their statements keep
/// that thread's priority: a background writer holds the database's one write lock while its
/// statements run, and people wait for it. PostgreSQL's statements run in the server, and its
/// connections belong to the runtime that opens them, so the background thread opens its own.
///
/// Their page caches are 2 MiB each, raised to 8 MiB inside a chunk's transaction
/// (`begin_bulk_write!`): in WAL mode a connection that starts a transaction after another
/// one committed throws its cache away, and a pool hands its connections out in turn, so a
/// large cache per connection mostly held pages about to be dropped (`bench import --rows
/// 1000000`: peak RSS 194–245 MiB with 32 MiB each, 121–136 MiB with 8, the same speed within
/// the machine's noise; with 2 MiB outside chunks, the floor measured in its own process,
/// 62–64 MiB at 100,000 rows and 75–76 MiB at 1,000,000). Only a chunk's own transaction
/// needs more: its random inserts into the key and hash indexes dirty more pages than 2 MiB
/// holds. A single connection would keep one warm
/// cache, but some job code holds a connection while it waits for its turn to write and other
/// code the other way round: with one connection two of them waited on each other until the
/// turn's 10 s ran out. That order has to be made one first.
async fn sqlite_connections(url: &str, connections: u32) -> anyhow::Result<Option<Db>> {
    if url.starts_with("sqlite:") { Db::connect_all_now(url, connections).await.map(Some) } else { Ok(None) }
}

/// Runs `work` as [`run`] does, with `connections` database connections of its own to `url`
/// (see [`sqlite_connections`]), closed when it ends. On SQLite a checkpointer runs beside it
/// on one more connection (`store::checkpoint`): the work's commits leave the write-ahead log
/// to it.
pub async fn run_connected<F, Fut, T>(name: &str, url: String, connections: u32, work: F) -> anyhow::Result<T>
where
    F: FnOnce(Db) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + 'static,
    T: Send + 'static,
{
    // SQLite: one more connection, for the checkpointer that runs beside the work
    let sqlite = sqlite_connections(&url, connections + 1).await?;
    run(name, move || async move {
        let db = match sqlite {
            Some(db) => db,
            None => Db::connect(&url, connections).await?,
        };
        // (on PostgreSQL it ends at once)
        let checkpointer = tokio::spawn(crate::store::checkpoint::keep_up(db.clone()));
        let out = work(db.clone()).await;
        checkpointer.abort();
        db.close().await;
        out
    })
    .await?
}

/// The job worker (every handler, `config.concurrency` jobs at a time) on a background thread
/// named "stevedore-jobs", with database connections of its own to `database_url` (one per job
/// plus two for lease renewals and progress, and on SQLite one for the checkpointer), until
/// `stop` turns true.
pub async fn worker(
    database_url: String,
    schemas: Arc<Schemas>,
    config: WorkerConfig,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let connections = u32::try_from(config.concurrency).unwrap_or(u32::MAX).saturating_add(2);
    let concurrency = config.concurrency;
    run_connected("stevedore-jobs", database_url, connections, move |db| async move {
        let worker = Worker::with_all_handlers(db, schemas, config)?;
        tracing::info!(owner = worker.owner(), concurrency, "job worker started");
        worker.run(stop).await;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowered_thread_passes_its_priority_on_and_the_caller_keeps_its_own() {
        let mine = this_thread_nice();
        let (theirs, child) = std::thread::spawn(|| {
            lower_by(3);
            // a thread started from a lowered thread inherits its priority
            let child = std::thread::spawn(this_thread_nice).join().ok().flatten();
            (this_thread_nice(), child)
        })
        .join()
        .unwrap();
        assert_eq!(this_thread_nice(), mine, "the calling thread is not lowered");
        if cfg!(target_os = "linux") {
            let base = mine.unwrap();
            assert_eq!(theirs, Some((base + 3).min(19)));
            assert_eq!(child, theirs);
        }
    }

    #[actix_web::test]
    async fn background_work_runs_on_a_thread_of_its_own_marked_as_background() {
        let caller = std::thread::current().id();
        let (thread, marked) =
            run("bg-test", || async { (std::thread::current().id(), crate::store::turn::on_background_thread()) })
                .await
                .unwrap();
        assert_ne!(thread, caller);
        assert!(marked, "its writes give way to people's");
        assert!(!crate::store::turn::on_background_thread(), "the caller is not marked");
    }

    #[test]
    fn the_nice_setting_is_a_number_from_0_to_19() {
        assert_eq!(parse_nice(" 5 "), Some(5));
        assert_eq!(parse_nice("0"), Some(0));
        assert_eq!(parse_nice("19"), Some(19));
        assert_eq!(parse_nice("20"), None);
        assert_eq!(parse_nice("-1"), None);
        assert_eq!(parse_nice("low"), None);
    }

    #[actix_web::test]
    async fn a_background_future_answers_with_its_output_and_can_start_local_tasks() {
        let got = run("bg-test", || async { actix_web::rt::spawn(async { 41 + 1 }).await.unwrap() }).await.unwrap();
        assert_eq!(got, 42);
    }
}
