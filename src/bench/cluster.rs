//! `stevedore bench cluster --database postgres://…`: the deployment of docs/deploy.md on
//! this machine. Starts `instances` `serve --workers 0` processes and `processes` `stevedore
//! worker` processes on a schema of their own (files in the bucket, every process a data
//! directory of its own, when `STEVEDORE_S3_*` is set in the environment, which they
//! inherit; else one data directory for all), then:
//!
//! 1. imports the generated file through the JSON API on the first instance (create, PUT,
//!    poll until completed): seconds end to end and rows/s, and the workers' peak RSS;
//! 2. `clients` signed-in people, spread over the instances, read Import History, the
//!    imports list of the API and Data Exports as fast as they are answered for `secs`
//!    seconds: requests, p50/p99 per page and every answer that was not 2xx.
//!
//! The last line is one JSON object.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::client::{Browser, percentile};
use super::{Input, in_schema, in_temp_dir};
use crate::domain::permissions::Role;
use crate::store::{self, Db};

const EMAIL: &str = "cluster-bench@bench.test";
const PASSWORD: &str = "correct horse battery staple";

/// The pages read under load: a name and a path (the API's with the key).
const PAGES: [(&str, &str); 3] = [
    ("import_history", "/settings/imports"),
    ("api_imports", "/api/v1/imports?limit=25"),
    ("exports", "/settings/exports"),
];

/// Child processes, killed when dropped.
pub(super) struct Children(pub(super) Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the run is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub rows: usize,
    pub instances: usize,
    pub processes: usize,
    pub clients: usize,
    pub secs: u64,
}

/// One read: which page, its latency in ms, its status (0: no answer).
type Sample = (usize, f64, u16);

pub async fn run(url: &str, shape: Shape) -> anyhow::Result<()> {
    anyhow::ensure!(
        url.starts_with("postgres"),
        "bench cluster runs instances on one database: give a PostgreSQL --database"
    );
    in_schema(
        url,
        |isolated| async move { in_temp_dir(|dir| async move { measure(&dir, &isolated, shape).await }).await },
    )
    .await
}

/// The peak resident memory of a process, in MiB (Linux).
fn peak_rss_of(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok());
    kib.unwrap_or(0.0) / 1024.0
}

async fn measure(dir: &std::path::Path, url: &str, shape: Shape) -> anyhow::Result<()> {
    let db = Db::connect(url, 2).await?;
    db.migrate().await?;
    let (org, _) = store::accounts::ensure_org(&db, "bench-cluster", "Cluster benchmark").await?;
    let hash = crate::auth::password::hash(PASSWORD.to_string()).await?;
    let user = store::accounts::create_user(&db, EMAIL, "Bench", &hash, false).await?;
    store::accounts::upsert_membership(&db, org, user, Role::Owner).await?;
    store::accounts::set_last_org(&db, user, org).await?;
    let key = crate::cli::create_api_key(&db, "bench-cluster", "bench", "pf.import.upload", None).await?;
    // lists worth reading: 2,000 earlier imports and 200 export requests
    store::imports::insert_many_for_bench(&db, org, user, 2000, &["locations", "staff", "clients"]).await?;
    let exports_dir = dir.join("exports").to_string_lossy().into_owned();
    for _ in 0..200 {
        let n = store::exports::NewExport {
            export_type: "entity_data",
            format: "csv",
            entity_types: "locations",
            date_from: None,
            date_to: None,
            file_dir: &exports_dir,
            file_name: "locations.csv",
            by: user,
            by_label: EMAIL,
        };
        store::exports::create(&db, org, &n).await?;
    }
    let input = Input::default();
    let file = input.prepare(dir, shape.rows)?;
    let schemas = dir.join("schemas");
    std::fs::create_dir_all(&schemas)?;
    let (name, text) = input.schema_file()?;
    std::fs::write(schemas.join(name), text)?;

    // the deployment: one key for all, a data directory each
    let exe = std::env::current_exe().context("finding the stevedore binary")?;
    let session_key = crate::random_token(64)?;
    // without a bucket, the processes share one data directory (one machine's deployment)
    let bucket = std::env::var("STEVEDORE_S3_BUCKET").ok().filter(|b| !b.is_empty());
    let spawn = |name: String, args: &[&str], port: Option<u16>| -> anyhow::Result<Child> {
        let data = if bucket.is_some() { dir.join(&name) } else { dir.join("shared") };
        std::fs::create_dir_all(&data)?;
        let mut c = Command::new(&exe);
        c.args(args)
            .env("DATABASE_URL", url)
            .env("STEVEDORE_DATA_DIR", &data)
            .env("STEVEDORE_SESSION_KEY", &session_key)
            .env("STEVEDORE_SCHEMA_DIR", &schemas)
            .env("STEVEDORE_API_RATE_LIMIT", "1000000")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log")))?);
        if let Some(p) = port {
            c.env("STEVEDORE_BIND", format!("127.0.0.1:{p}")).env("STEVEDORE_WORKERS", "0");
        }
        c.spawn().with_context(|| format!("starting {name}"))
    };
    let mut bases = vec![];
    let mut children = Children(vec![]);
    for n in 0..shape.instances.max(1) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        children.0.push(spawn(format!("instance{n}"), &["serve"], Some(port))?);
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    let mut workers = vec![];
    for n in 0..shape.processes.max(1) {
        let child = spawn(format!("worker{n}"), &["worker", "--concurrency", "2"], None)?;
        workers.push(child.id());
        children.0.push(child);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    for base in &bases {
        let t = Instant::now();
        while !http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "{base} did not get ready (see {})", dir.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "{} instances ({}), {} worker processes of 2 jobs each, one PostgreSQL schema, files {}",
        bases.len(),
        bases.join(", "),
        workers.len(),
        match &bucket {
            Some(b) => format!("in the bucket {b} (a data directory each)"),
            None => "in one shared data directory (no STEVEDORE_S3_BUCKET)".into(),
        }
    );

    // 1. the import, end to end through the API of the first instance
    let base = &bases[0];
    let resource = super::standalone_schema(&input)?.name.clone();
    let started = Instant::now();
    let (id, upload) = super::api::create(&http, base, &key, &resource).await?;
    let (done, uploaded_s) = super::api::upload_and_wait(&http, base, &key, (&id, &upload), &file, started).await?;
    let import_s = started.elapsed().as_secs_f64();
    let rate = shape.rows as f64 / import_s;
    let worker_rss = workers.iter().map(|p| peak_rss_of(*p)).fold(0.0, f64::max);
    println!(
        "import of {} rows over the API: {import_s:.1} s end to end ({rate:.0} rows/s; upload {uploaded_s:.1} s), status {}, {} created; worker peak RSS {worker_rss:.0} MiB",
        shape.rows, done["status"], done["stats"]["created"]
    );

    // 2. people reading the lists on every instance
    let mut people = vec![];
    for n in 0..shape.clients {
        people.push(Browser::signed_in(&bases[n % bases.len()], EMAIL, PASSWORD).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers = {
        let (stop, key) = (stop.clone(), key.clone());
        std::thread::spawn(move || read_lists(people, key, stop))
    };
    tokio::time::sleep(Duration::from_secs(shape.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let samples = readers.join().unwrap_or_default();
    let instance_rss: Vec<f64> = children.0.iter().take(bases.len()).map(|c| peak_rss_of(c.id()).round()).collect();
    drop(children);
    // what went wrong, when something did: the answers and the processes' own words
    let mut odd: std::collections::BTreeMap<(usize, u16), usize> = Default::default();
    for s in samples.iter().filter(|s| !(200..300).contains(&s.2)) {
        *odd.entry((s.0, s.2)).or_default() += 1;
    }
    for ((page, status), n) in &odd {
        println!("  {n} × {status} (0: no answer) on {}", PAGES[*page].1);
    }
    if !odd.is_empty() {
        for e in std::fs::read_dir(dir)?.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "log")) {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("ERROR") || l.contains("WARN")).take(5) {
                println!("  {}: {line}", e.file_name().to_string_lossy());
            }
        }
    }
    db.close().await;

    let failures = samples.iter().filter(|s| !(200..300).contains(&s.2)).count();
    let server_errors = samples.iter().filter(|s| s.2 >= 500 || s.2 == 0).count();
    let mut json = serde_json::json!({
        "rows": shape.rows, "instances": bases.len(), "worker_processes": workers.len(),
        "import_s": (import_s * 10.0).round() / 10.0, "import_rows_per_sec": rate.round(),
        "worker_peak_rss_mib": worker_rss.round(), "instance_peak_rss_mib": instance_rss,
        "clients": shape.clients, "secs": shape.secs, "requests": samples.len(),
        "not_2xx": failures, "server_errors": server_errors,
    });
    println!("{} people for {} s on {} instances: {} requests", shape.clients, shape.secs, bases.len(), samples.len());
    for (k, (page, path)) in PAGES.iter().enumerate() {
        let mut ms: Vec<f64> = samples.iter().filter(|s| s.0 == k).map(|s| s.1).collect();
        ms.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
        println!("  {path:<26} {:>6} requests, p50 {p50:>6.1} ms, p99 {p99:>7.1} ms", ms.len());
        json[*page] = serde_json::json!({"requests": ms.len(), "p50_ms": (p50 * 10.0).round() / 10.0, "p99_ms": (p99 * 10.0).round() / 10.0});
    }
    println!("answers not 2xx: {failures} (5xx or none: {server_errors})");
    println!("{json}");
    anyhow::ensure!(done["status"] == "completed", "the import ended {}", done["status"]);
    Ok(())
}

/// Each person reads the three pages in turn until `stop`, on a thread of its own.
fn read_lists(people: Vec<Browser>, key: String, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return vec![] };
    rt.block_on(async move {
        let tasks = people.into_iter().enumerate().map(|(i, mut b)| {
            let (key, stop) = (key.clone(), stop.clone());
            async move {
                let mut out = vec![];
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let page = n % PAGES.len();
                    let t = Instant::now();
                    let status = if page == 1 {
                        b.get_api(PAGES[page].1, &key).await
                    } else {
                        b.get(PAGES[page].1).await.map(|r| r.0)
                    };
                    let status = status.unwrap_or_else(|e| {
                        // why the client got no answer (the server logs nothing then)
                        println!("  no answer from {}: {e:#}", PAGES[page].1);
                        0
                    });
                    out.push((page, t.elapsed().as_secs_f64() * 1000.0, status));
                }
                out
            }
        });
        futures_util::future::join_all(tasks).await.into_iter().flatten().collect()
    })
}
