//! Background work yields the processor to people. The job worker runs on a thread of its own
//! at a lower scheduling priority (nice 10 on Linux), in an async runtime of its own with
//! database connections of its own, so every thread it starts inherits the priority: the
//! threads that read and check an import's file, an export's writer. (Not SQLite's connection
//! threads: see [`sqlite_connection`].)
//! When both cores are wanted, a request's thread gets about nine tenths of a core against an
//! import's tenth (the scheduler's weights for nice 0 and 10); when nobody is asking, the
//! import has them all.

use std::future::Future;

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use super::{Worker, WorkerConfig};
use crate::domain::entities::Schemas;
use crate::store::Db;

/// How much lower background threads run than the process by default (in nice steps).
pub const NICE: i32 = 10;

/// How much lower background threads run: `STEVEDORE_JOB_NICE` (0 to 19; 0 runs jobs at the
/// requests' priority), else [`NICE`].
pub fn nice() -> i32 {
    static NICE_SET: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *NICE_SET.get_or_init(|| match std::env::var("STEVEDORE_JOB_NICE") {
        Err(_) => NICE,
        Ok(v) => match parse_nice(&v) {
            Some(n) => n,
            None => {
                tracing::warn!(value = %v, "STEVEDORE_JOB_NICE is not a number from 0 to 19; jobs run at nice 10");
                NICE
            }
        },
    })
}

fn parse_nice(v: &str) -> Option<i32> {
    v.trim().parse().ok().filter(|n| (0..=19).contains(n))
}

/// Lowers the calling thread's scheduling priority by [`nice()`]; threads it starts afterwards
/// inherit it. A thread can lower its own priority without privileges, but not raise it
/// again: call this only on threads made for background work. A no-op off Linux.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        let by = nice();
        if by == 0 {
            return;
        }
        let tid = rustix::thread::gettid();
        let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
        if let Err(e) = rustix::process::setpriority_process(Some(tid), (now + by).min(19)) {
            tracing::warn!(error = %e, "background work could not lower its priority; it competes with requests");
        }
    }
}

/// This thread's nice value (None where there is no such thing).
pub fn this_thread_nice() -> Option<i32> {
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

/// The SQLite connection of background work to `url`, or None for PostgreSQL.
///
/// One connection, whatever the number of jobs: SQLite has one writer anyway, and a
/// connection's page cache survives only its own writes. In WAL mode a connection that starts
/// a transaction after another connection committed throws its whole cache away, and a pool
/// hands its connections out in turn, so with four of them every chunk of an import began with
/// a cold cache and read its index pages again (`bench import --rows 1000000`: validation
/// 13.6 s and import 20.8 s with four, 9.0 s and 14.5 s with one, peak RSS 211 → 137 MiB).
///
/// It is opened here, by the calling thread, so the thread that runs its statements keeps
/// that thread's priority: a background writer holds the database's one write lock while its
/// statements run, and people wait for it (with that thread lowered too, a busy processor gave
/// the holder a tenth of a core and the people behind it waited three times as long).
/// PostgreSQL's statements run in the server, and its connections belong to the runtime that
/// opens them, so the background thread opens its own.
pub async fn sqlite_connection(url: &str) -> anyhow::Result<Option<Db>> {
    if url.starts_with("sqlite:") { Db::connect_all_now(url, 1).await.map(Some) } else { Ok(None) }
}

/// The job worker (every handler, `config.concurrency` jobs at a time) on a background thread
/// named "stevedore-jobs", with database connections of its own to `database_url` (on
/// PostgreSQL one per job plus two for lease renewals and progress; on SQLite one, see
/// [`sqlite_connection`]), until `stop` turns true.
pub async fn worker(
    database_url: String,
    schemas: Arc<Schemas>,
    config: WorkerConfig,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let connections = u32::try_from(config.concurrency).unwrap_or(u32::MAX).saturating_add(2);
    let concurrency = config.concurrency;
    let sqlite = sqlite_connection(&database_url).await?;
    run("stevedore-jobs", move || async move {
        let db = match sqlite {
            Some(db) => db,
            None => Db::connect(&database_url, connections).await?,
        };
        let worker = Worker::with_all_handlers(db.clone(), schemas, config)?;
        tracing::info!(owner = worker.owner(), concurrency, "job worker started");
        worker.run(stop).await;
        db.close().await;
        anyhow::Ok(())
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn background_threads_run_at_a_lower_priority_and_the_caller_keeps_its_own() {
        let mine = this_thread_nice();
        let (theirs, child) = run("bg-test", || async {
            // a thread started from a background thread inherits its priority
            let child = std::thread::spawn(this_thread_nice).join().ok().flatten();
            (this_thread_nice(), child)
        })
        .await
        .unwrap();
        assert_eq!(this_thread_nice(), mine, "the calling thread is not lowered");
        if cfg!(target_os = "linux") {
            let base = mine.unwrap();
            assert_eq!(theirs, Some((base + nice()).min(19)));
            assert_eq!(child, theirs);
        }
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
