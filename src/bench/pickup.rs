//! `stevedore bench pickup --database postgres://…`: how long a queued job waits for a
//! worker of another process. Starts `stevedore worker` processes on a schema of its own,
//! then queues `ping` jobs one at a time (the workers idle in between) and watches each
//! (every millisecond) until a worker has claimed it; prints p50/p90/p99 and the poll
//! interval a worker would otherwise wait up to. The figures include the queuing statement
//! and the watch's own round trip, so they are an upper bound.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::client::percentile;
use crate::store::Db;

async fn status(db: &Db, id: i64) -> anyhow::Result<String> {
    crate::on_pool!(db, p => sqlx::query_scalar::<_, String>("SELECT status FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(p)
        .await)
    .context("reading a job's status")
}

/// Queues a ping and waits until it leaves `queued`; how long that took.
async fn one(db: &Db, limit: Duration) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let id = crate::jobs::enqueue(db, None, crate::jobs::maintenance::PING, &serde_json::json!({}), None)
        .await?
        .context("queuing a ping")?;
    while status(db, id).await? == "queued" {
        anyhow::ensure!(t.elapsed() < limit, "no worker took the job within {limit:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(t.elapsed())
}

pub async fn run(url: &str, jobs: usize, workers: usize) -> anyhow::Result<()> {
    anyhow::ensure!(url.starts_with("postgres"), "bench pickup measures LISTEN/NOTIFY: give a PostgreSQL --database");
    super::in_schema(url, |isolated| async move { measure(&isolated, jobs, workers).await }).await
}

async fn measure(url: &str, jobs: usize, workers: usize) -> anyhow::Result<()> {
    let db = Db::connect(url, 2).await?;
    db.migrate().await?;
    let exe = std::env::current_exe().context("finding the stevedore binary")?;
    let dir = std::env::temp_dir().join(format!("stevedore-pickup-{}", crate::random_token(4)?));
    let mut children = super::cluster::Children(vec![]);
    for n in 0..workers.max(1) {
        let data = dir.join(format!("w{n}"));
        std::fs::create_dir_all(&data)?;
        let child = Command::new(&exe)
            .args(["worker", "--concurrency", "1"])
            .env("DATABASE_URL", url)
            .env("STEVEDORE_DATA_DIR", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a worker")?;
        children.0.push(child);
    }
    // the workers are up (and listening) once one has taken a ping
    one(&db, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut took: Vec<f64> = Vec::with_capacity(jobs);
    for n in 0..jobs {
        // idle workers, waiting on their poll: what NOTIFY is for
        tokio::time::sleep(Duration::from_millis(40 + (n as u64 * 7) % 60)).await;
        took.push(one(&db, Duration::from_secs(10)).await?.as_secs_f64() * 1000.0);
    }
    drop(children);
    let _ = std::fs::remove_dir_all(&dir);
    took.sort_by(f64::total_cmp);
    let ms = |p: f64| percentile(&took, p / 100.0);
    let poll = crate::jobs::WorkerConfig::default().poll;
    println!(
        "job pick-up, {jobs} pings, {} worker process(es): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (a worker polls every {} ms)",
        workers.max(1),
        ms(50.0),
        ms(90.0),
        ms(99.0),
        took.last().copied().unwrap_or(0.0),
        poll.as_millis()
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "pickup", "jobs": jobs, "workers": workers.max(1),
            "p50_ms": ms(50.0), "p90_ms": ms(90.0), "p99_ms": ms(99.0), "poll_ms": poll.as_millis() as u64,
        })
    );
    db.close().await;
    Ok(())
}
