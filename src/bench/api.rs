//! `stevedore bench api --rows N`: the generated file imported three times in one run: first
//! as `bench import` does it (the jobs called directly); then the way an integrator does it,
//! over HTTP against the real app (create the import, PUT the file, poll until completed),
//! alone; then over HTTP again while `clients` other clients read the import and the list as
//! fast as they are answered for the first `secs` seconds. Prints rows/s of each, the ratio
//! of the HTTP path to the direct one, and p50/p99 of the two reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::client::percentile;
use super::{Input, in_temp_dir, setup};
use crate::domain::imports::Action;
use crate::store::{self, Db};

/// One read's latency in ms, whether it was the list, and its status (0: no answer).
type Sample = (f64, bool, u16);

/// Reads of the import and the list by `clients` clients, on a thread of their own.
fn start_readers(
    base: String,
    key: String,
    import_id: String,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return vec![] };
        rt.block_on(async move {
            let tasks = (0..clients).map(|i| {
                let (base, key, id, stop) = (base.clone(), key.clone(), import_id.clone(), stop.clone());
                async move {
                    let mut out = vec![];
                    let Ok(http) = reqwest::Client::builder().timeout(Duration::from_secs(30)).build() else {
                        return out;
                    };
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let list = n % 2 == 0;
                        let path =
                            if list { "/api/v1/imports?limit=10".to_string() } else { format!("/api/v1/imports/{id}") };
                        let t = Instant::now();
                        let status = match http.get(format!("{base}{path}")).bearer_auth(&key).send().await {
                            Ok(r) => {
                                let s = r.status().as_u16();
                                let _ = r.bytes().await;
                                s
                            }
                            Err(_) => 0,
                        };
                        out.push((t.elapsed().as_secs_f64() * 1000.0, list, status));
                    }
                    out
                }
            });
            futures_util::future::join_all(tasks).await.into_iter().flatten().collect()
        })
    })
}

/// Creates an import of `resource` (chunks of 5,000) over the API: its id and upload URL.
pub(super) async fn create(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    resource: &str,
) -> anyhow::Result<(String, String)> {
    let create = serde_json::json!({"resource": resource, "chunk_size": 5000}).to_string();
    let created = http
        .post(format!("{base}/api/v1/imports"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(create)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let created: serde_json::Value = serde_json::from_slice(&created)?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    Ok((id, created["_upload_url"].as_str().unwrap_or_default().to_string()))
}

/// PUTs `file` to the import (`id`, upload URL) and polls it until it ends: the import as
/// it ended and the seconds from `started` to the end of the upload.
pub(super) async fn upload_and_wait(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    (id, upload): (&str, &str),
    file: &std::path::Path,
    started: Instant,
) -> anyhow::Result<(serde_json::Value, f64)> {
    let body = tokio::fs::read(file).await?;
    let put = http.put(format!("{base}{upload}")).header("content-type", "text/csv").body(body).send().await?;
    anyhow::ensure!(put.status().is_success(), "the upload answered {}", put.status());
    let uploaded_s = started.elapsed().as_secs_f64();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let got = http.get(format!("{base}/api/v1/imports/{id}")).bearer_auth(key).send().await?.bytes().await?;
        let v: serde_json::Value = serde_json::from_slice(&got)?;
        if matches!(v["status"].as_str(), Some("completed" | "failed" | "timed_out")) {
            return Ok((v, uploaded_s));
        }
    }
}

/// p50 and p99 of the samples of one kind.
fn quantiles(samples: &[Sample], list: bool) -> (usize, f64, f64) {
    let mut ms: Vec<f64> = samples.iter().filter(|s| s.1 == list).map(|s| s.0).collect();
    ms.sort_by(f64::total_cmp);
    (ms.len(), percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// One import of `file` over HTTP against a fresh app (its own database in `dir/tag`), with
/// `clients` readers for at most `secs` seconds from its creation: (seconds end to
/// end, seconds to the end of the upload, the import as it ended, the readers' samples).
async fn over_http(
    dir: &std::path::Path,
    tag: &str,
    mut app: crate::config::Settings,
    file: &std::path::Path,
    resource: &str,
    (clients, secs): (usize, u64),
) -> anyhow::Result<(f64, f64, serde_json::Value, Vec<Sample>)> {
    app.db.data_dir = dir.join(tag);
    app.db.database_url = format!("sqlite://{}", dir.join(format!("{tag}.db")).display());
    let url = app.db.database_url.clone();
    let built = crate::startup::App::build(app).await?;
    let base = format!("http://127.0.0.1:{}", built.port());
    let server = actix_web::rt::spawn(built.run_until_stopped());
    let db = Db::connect(&url, 2).await?;
    store::accounts::ensure_org(&db, "bench-api", "Benchmark").await?;
    let key = crate::cli::create_api_key(&db, "bench-api", "bench", "pf.import.upload", None).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;

    let started = Instant::now();
    let (id, upload) = create(&http, &base, &key, resource).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let readers = (clients > 0).then(|| start_readers(base.clone(), key.clone(), id.clone(), clients, stop.clone()));
    let timer = {
        let stop = stop.clone();
        actix_web::rt::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let ended = upload_and_wait(&http, &base, &key, (&id, &upload), file, started).await;
    let api_s = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    timer.abort();
    let samples = readers.map(|r| r.join().unwrap_or_default()).unwrap_or_default();
    server.abort();
    db.close().await;
    let (done, uploaded_s) = ended?;
    Ok((api_s, uploaded_s, done, samples))
}

/// Runs the benchmark; `app` is the app's settings (its database and folders are replaced
/// by the benchmark's).
pub async fn run(rows: usize, clients: usize, secs: u64, mut app: crate::config::Settings) -> anyhow::Result<()> {
    in_temp_dir(|dir| async move {
        let input = Input::default();
        let file = input.prepare(&dir, rows)?;

        // the reference: the same file through the jobs, called directly (as `bench import`)
        let b = setup(&dir, 5000, None, &input).await?;
        let t = Instant::now();
        let (direct, _, _) = b.import(&file, Action::Merge).await?;
        let direct_s = t.elapsed().as_secs_f64();
        let direct_rate = rows as f64 / direct_s;
        println!(
            "direct (bench import): {rows} rows in {direct_s:.2} s ({direct_rate:.0} rows/s), {} created",
            direct.created_rows
        );
        b.db.close().await;

        // the app, with its own worker, over a database of its own for each run
        let schemas = dir.join("schemas");
        std::fs::create_dir_all(&schemas)?;
        let (name, text) = input.schema_file()?;
        std::fs::write(schemas.join(name), text)?;
        app.schema_dir = Some(schemas);
        app.workers = 2;
        // the readers are one integrator's many clients: the per-key limit is not measured here
        app.api_rate_limit = 1_000_000;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let resource = super::standalone_schema(&input)?.name.clone();

        // first alone: what the HTTP path costs against the direct import
        let (api_s, uploaded_s, done, _) = over_http(&dir, "quiet", app.clone(), &file, &resource, (0, 0)).await?;
        let api_rate = rows as f64 / api_s;
        let ratio = api_rate / direct_rate;
        println!(
            "over HTTP: {rows} rows in {api_s:.2} s ({api_rate:.0} rows/s; upload {uploaded_s:.2} s), status {}, {} created",
            done["status"], done["stats"]["created"]
        );
        println!("ratio to the direct import: {ratio:.2}");

        // then again, with the readers during its first `secs` seconds
        let (loaded_s, _, done, samples) =
            over_http(&dir, "loaded", app, &file, &resource, (clients, secs)).await?;
        let loaded_rate = rows as f64 / loaded_s;
        println!(
            "over HTTP with {clients} clients reading for {secs} s: {loaded_s:.2} s ({loaded_rate:.0} rows/s), status {}",
            done["status"]
        );
        let failures = samples.iter().filter(|s| !(200..400).contains(&s.2)).count();
        let (gets, get_p50, get_p99) = quantiles(&samples, false);
        let (lists, list_p50, list_p99) = quantiles(&samples, true);
        println!("{clients} clients reading meanwhile: GET import {gets} requests, p50 {get_p50:.1} ms, p99 {get_p99:.1} ms");
        println!("                                   GET list   {lists} requests, p50 {list_p50:.1} ms, p99 {list_p99:.1} ms");
        println!("answers not 2xx/3xx: {failures}");
        let round = |x: f64| (x * 10.0).round() / 10.0;
        println!(
            "{}",
            serde_json::json!({
                "rows": rows,
                "direct_s": round(direct_s),
                "direct_rows_per_sec": direct_rate.round(),
                "api_s": round(api_s),
                "api_rows_per_sec": api_rate.round(),
                "ratio_to_direct": (ratio * 100.0).round() / 100.0,
                "clients": clients,
                "read_secs": secs,
                "loaded_s": round(loaded_s),
                "loaded_rows_per_sec": loaded_rate.round(),
                "get_p50_ms": round(get_p50),
                "get_p99_ms": round(get_p99),
                "list_p50_ms": round(list_p50),
                "list_p99_ms": round(list_p99),
                "read_failures": failures,
            })
        );
        Ok(())
    })
    .await
}
