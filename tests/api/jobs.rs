//! The job queue and worker, on the real database (SQLite or PostgreSQL).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use stevedore::domain::jobs::{Finish, Outcome};
use stevedore::jobs::{JobContext, JobHandler, Worker, WorkerConfig};
use stevedore::store::{Db, jobs};

use crate::helpers::fresh_database_url;

async fn fresh_db() -> (tempfile::TempDir, Db, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let db = Db::connect(&url, 4).await.unwrap();
    db.migrate().await.unwrap();
    (dir, db, url)
}

fn new_job<'a>(kind: &'a str, now: i64) -> jobs::NewJob<'a> {
    jobs::NewJob {
        org: None,
        kind,
        payload: "{}",
        max_attempts: 3,
        budget_secs: 3600,
        run_after: now,
        dedupe_key: None,
    }
}

#[actix_web::test]
async fn concurrent_workers_never_claim_the_same_job() {
    let (_dir, db, _) = fresh_db().await;
    let now = stevedore::now();
    for _ in 0..30 {
        jobs::enqueue(&db, &new_job("test.noop", now), now).await.unwrap();
    }
    let claimed: Rc<RefCell<Vec<i64>>> = Rc::default();
    let mut tasks = vec![];
    for w in 0..4 {
        let (db, claimed) = (db.clone(), claimed.clone());
        tasks.push(actix_web::rt::spawn(async move {
            let owner = format!("w{w}");
            while let Some(job) = jobs::claim(&db, &owner, 30, now).await.unwrap() {
                claimed.borrow_mut().push(job.id);
                assert!(jobs::finish(&db, job.id, &owner, &Finish::Succeeded, now).await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut ids = claimed.borrow().clone();
    assert_eq!(ids.len(), 30);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "every job claimed exactly once");
}

#[actix_web::test]
async fn a_job_whose_lease_runs_out_is_taken_over_and_the_old_owner_is_shut_out() {
    let (_dir, db, _) = fresh_db().await;
    let now = stevedore::now();
    let id = jobs::enqueue(&db, &new_job("test.noop", now), now).await.unwrap().unwrap();
    let a = jobs::claim(&db, "a", 30, now).await.unwrap().unwrap();
    assert_eq!((a.id, a.attempts), (id, 1));
    assert!(jobs::claim(&db, "b", 30, now + 10).await.unwrap().is_none(), "leased");
    assert!(jobs::heartbeat(&db, id, "a", 30, now + 20).await.unwrap(), "the owner renews");
    assert!(jobs::claim(&db, "b", 30, now + 45).await.unwrap().is_none(), "renewed lease holds");
    let b = jobs::claim(&db, "b", 30, now + 51).await.unwrap().expect("taken over after the lease ran out");
    assert_eq!((b.id, b.attempts), (id, 2));
    assert!(!jobs::heartbeat(&db, id, "a", 30, now + 52).await.unwrap(), "the old owner has lost it");
    assert!(!jobs::finish(&db, id, "a", &Finish::Succeeded, now + 52).await.unwrap());
    assert!(jobs::finish(&db, id, "b", &Finish::Succeeded, now + 53).await.unwrap());
    assert_eq!(jobs::get(&db, id).await.unwrap().unwrap().status, "succeeded");
}

/// A handler that answers with the outcomes it is given, one per run, recording payloads.
struct Scripted {
    outcomes: RefCell<Vec<Outcome>>,
    runs: Rc<RefCell<Vec<String>>>,
}

impl JobHandler for Scripted {
    fn kind(&self) -> &'static str {
        "test.scripted"
    }
    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(async move {
            self.runs.borrow_mut().push(ctx.job.payload.clone());
            self.outcomes.borrow_mut().remove(0)
        })
    }
}

fn scripted(db: &Db, outcomes: Vec<Outcome>) -> (Worker, Rc<RefCell<Vec<String>>>) {
    let runs: Rc<RefCell<Vec<String>>> = Rc::default();
    let mut w = Worker::new(db.clone(), WorkerConfig::default()).unwrap();
    w.register(Scripted { outcomes: RefCell::new(outcomes), runs: runs.clone() });
    (w, runs)
}

#[actix_web::test]
async fn the_worker_runs_retries_with_backoff_and_gives_up() {
    let (_dir, db, _) = fresh_db().await;
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let (worker, runs) =
        scripted(&db, vec![Outcome::Done, Outcome::Retry("database busy".into()), Outcome::Fail("bad file".into())]);

    let ok = stevedore::jobs::enqueue(&db, None, "test.scripted", &serde_json::json!({"n": 1}), None)
        .await
        .unwrap()
        .unwrap();
    assert!(worker.run_one(&stop).await.unwrap());
    assert_eq!(runs.borrow().as_slice(), [r#"{"n":1}"#]);
    assert_eq!(jobs::get(&db, ok).await.unwrap().unwrap().status, "succeeded");
    assert!(!worker.run_one(&stop).await.unwrap(), "queue empty");

    let flaky = stevedore::jobs::enqueue(&db, None, "test.scripted", &serde_json::json!({"n": 2}), None)
        .await
        .unwrap()
        .unwrap();
    assert!(worker.run_one(&stop).await.unwrap());
    let j = jobs::get(&db, flaky).await.unwrap().unwrap();
    assert_eq!((j.status.as_str(), j.attempts, j.last_error.as_str()), ("queued", 1, "database busy"));
    assert!(j.run_after >= stevedore::now() + 4, "retried after a backoff");
    assert!(!worker.run_one(&stop).await.unwrap(), "not due yet");
    // once due, the next attempt fails for good
    let due = j.run_after;
    let c = jobs::claim(&db, worker.owner(), 30, due).await.unwrap().unwrap();
    assert_eq!(c.attempts, 2);
    assert!(jobs::finish(&db, c.id, worker.owner(), &Finish::Failed { error: "bad file".into() }, due).await.unwrap());
    assert_eq!(jobs::get(&db, flaky).await.unwrap().unwrap().status, "failed");

    let unknown =
        stevedore::jobs::enqueue(&db, None, "test.nobody", &serde_json::json!({}), None).await.unwrap().unwrap();
    assert!(worker.run_one(&stop).await.unwrap());
    let j = jobs::get(&db, unknown).await.unwrap().unwrap();
    assert_eq!((j.status.as_str(), j.last_error.as_str()), ("failed", "no handler for job kind \"test.nobody\""));
}

#[actix_web::test]
async fn jobs_past_their_budget_or_attempts_end_without_running() {
    let (_dir, db, _) = fresh_db().await;
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let (worker, runs) = scripted(&db, vec![]);
    let now = stevedore::now();
    let late = jobs::enqueue(&db, &jobs::NewJob { budget_secs: 0, ..new_job("test.scripted", now) }, now)
        .await
        .unwrap()
        .unwrap();
    assert!(worker.run_one(&stop).await.unwrap());
    assert_eq!(jobs::get(&db, late).await.unwrap().unwrap().status, "timed_out");
    // a job whose every worker died: three claims whose leases ran out, the fourth ends it
    let past = now - 1000;
    let orphan = jobs::enqueue(&db, &new_job("test.scripted", past), past).await.unwrap().unwrap();
    for i in 0..3 {
        let c = jobs::claim(&db, "dead", 1, past + i * 10).await.unwrap().expect("claimable once the lease ran out");
        assert_eq!(c.id, orphan);
    }
    assert!(worker.run_one(&stop).await.unwrap());
    let j = jobs::get(&db, orphan).await.unwrap().unwrap();
    assert_eq!(j.status, "failed");
    assert!(j.last_error.contains("stopped responding"), "{}", j.last_error);
    assert!(runs.borrow().is_empty(), "neither ran");
}

/// Runs until asked to stop, like an import between chunks.
struct UntilStopped;

impl JobHandler for UntilStopped {
    fn kind(&self) -> &'static str {
        "test.long"
    }
    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(async move {
            while !ctx.should_stop() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Outcome::Stopped
        })
    }
}

#[actix_web::test]
async fn on_shutdown_a_running_job_goes_back_to_the_queue_at_once() {
    let (_dir, db, _) = fresh_db().await;
    let mut worker =
        Worker::new(db.clone(), WorkerConfig { poll: Duration::from_millis(20), ..Default::default() }).unwrap();
    worker.register(UntilStopped);
    let id = stevedore::jobs::enqueue(&db, None, "test.long", &serde_json::json!({}), None).await.unwrap().unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let running = actix_web::rt::spawn(worker.run(stop));
    let deadline = Instant::now() + Duration::from_secs(10);
    while jobs::get(&db, id).await.unwrap().unwrap().status != "running" {
        assert!(Instant::now() < deadline, "the worker never claimed the job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    running.await.unwrap();
    let j = jobs::get(&db, id).await.unwrap().unwrap();
    assert_eq!((j.status.as_str(), j.attempts, j.lease_owner), ("queued", 0, None), "released, attempt not counted");
    assert!(jobs::claim(&db, "next", 30, stevedore::now()).await.unwrap().is_some(), "claimable at once");
}

/// Never looks at `should_stop`, like a handler stuck in a long step.
struct Stubborn;

impl JobHandler for Stubborn {
    fn kind(&self) -> &'static str {
        "test.stubborn"
    }
    fn run<'a>(&'a self, _ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Outcome::Done
        })
    }
}

struct Panics;

impl JobHandler for Panics {
    fn kind(&self) -> &'static str {
        "test.panics"
    }
    #[allow(clippy::panic)]
    fn run<'a>(&'a self, _ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(async move { panic!("boom") })
    }
}

async fn wait_for_status(db: &Db, id: i64, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = jobs::get(db, id).await.unwrap().unwrap().status;
        if s == want {
            return;
        }
        assert!(Instant::now() < deadline, "job {id} is {s}, never {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_panicking_handler_fails_its_job_and_the_worker_goes_on() {
    let (_dir, db, _) = fresh_db().await;
    let config = WorkerConfig { concurrency: 1, poll: Duration::from_millis(20), ..Default::default() };
    let mut worker = Worker::new(db.clone(), config).unwrap();
    worker.register(Panics);
    worker.register(Scripted { outcomes: RefCell::new(vec![Outcome::Done]), runs: Rc::default() });
    let bad = stevedore::jobs::enqueue(&db, None, "test.panics", &serde_json::json!({}), None).await.unwrap().unwrap();
    let good =
        stevedore::jobs::enqueue(&db, None, "test.scripted", &serde_json::json!({}), None).await.unwrap().unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let running = actix_web::rt::spawn(worker.run(stop));
    wait_for_status(&db, good, "succeeded").await;
    let j = jobs::get(&db, bad).await.unwrap().unwrap();
    assert_eq!(j.status, "failed");
    assert!(j.last_error.contains("stopped unexpectedly (boom)"), "{}", j.last_error);
    stop_tx.send(true).unwrap();
    running.await.unwrap();
}

#[actix_web::test]
async fn a_handler_that_ignores_shutdown_is_released_after_the_grace_period() {
    let (_dir, db, _) = fresh_db().await;
    let config =
        WorkerConfig { poll: Duration::from_millis(20), stop_grace: Duration::from_millis(300), ..Default::default() };
    let mut worker = Worker::new(db.clone(), config).unwrap();
    worker.register(Stubborn);
    let id = stevedore::jobs::enqueue(&db, None, "test.stubborn", &serde_json::json!({}), None).await.unwrap().unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let running = actix_web::rt::spawn(worker.run(stop));
    wait_for_status(&db, id, "running").await;
    let asked = Instant::now();
    stop_tx.send(true).unwrap();
    running.await.unwrap();
    assert!(asked.elapsed() < Duration::from_secs(5), "shutdown is bounded");
    let j = jobs::get(&db, id).await.unwrap().unwrap();
    assert_eq!((j.status.as_str(), j.attempts), ("queued", 0), "released for another worker");
}

#[actix_web::test]
async fn a_worker_whose_stop_sender_is_gone_stops_instead_of_spinning() {
    let (_dir, db, _) = fresh_db().await;
    let worker =
        Worker::new(db.clone(), WorkerConfig { poll: Duration::from_millis(20), ..Default::default() }).unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let running = actix_web::rt::spawn(worker.run(stop));
    drop(stop_tx);
    tokio::time::timeout(Duration::from_secs(5), running).await.expect("the loop ends").unwrap();
}

#[actix_web::test]
async fn maintenance_is_scheduled_once_per_period_and_prunes() {
    let (_dir, db, _) = fresh_db().await;
    let first = stevedore::jobs::maintenance::schedule(&db).await.unwrap();
    let second = stevedore::jobs::maintenance::schedule(&db).await.unwrap();
    assert!(first.is_some());
    assert!(second.is_none(), "a second instance's offer is a no-op");
    stevedore::store::sessions::insert(&db, "old", None, "{}", 10).await.unwrap();
    stevedore::store::sessions::insert(&db, "live", None, "{}", stevedore::now() + 600).await.unwrap();
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let schemas = std::sync::Arc::new(stevedore::content::load_schemas(None).unwrap());
    let worker = Worker::with_all_handlers(db.clone(), schemas, WorkerConfig::default()).unwrap();
    assert!(worker.run_one(&stop).await.unwrap());
    assert_eq!(jobs::get(&db, first.unwrap()).await.unwrap().unwrap().status, "succeeded");
    assert!(stevedore::store::sessions::load(&db, "old", 0).await.unwrap().is_none());
    assert!(stevedore::store::sessions::load(&db, "live", 0).await.unwrap().is_some());
}

#[actix_web::test]
async fn the_worker_command_runs_jobs_and_stops_on_sigterm() {
    let (dir, db, url) = fresh_db().await;
    let id = stevedore::jobs::maintenance::schedule(&db).await.unwrap().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(["worker", "--concurrency", "1"])
        .env("STEVEDORE_DATA_DIR", dir.path())
        .env("DATABASE_URL", &url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut statuses = HashMap::new();
    loop {
        let s = jobs::get(&db, id).await.unwrap().unwrap().status;
        statuses.insert(s.clone(), ());
        if s == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never ran the job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the worker did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}
