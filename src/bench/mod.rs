//! `stevedore bench import`: a generated contacts file (or your own, with its schema)
//! through the same validation and import jobs the UI runs, timed, with the peak memory of
//! the process, and as a ratio to [`floor`] measured on the same file in the same run.
//! `bench export` does the same for the export job.

pub mod api;
mod client;
pub mod cluster;
mod data;
mod export;
pub mod floor;
pub mod grid;
pub mod history;
mod load;
pub mod pickup;

pub use export::export;

use data::{CONTACTS, generate, peak_rss_mib};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::domain::entities::Schemas;
use crate::domain::ids::{OrgId, UserId};
use crate::domain::imports::mapping::auto_map_schema;
use crate::domain::imports::{Action, DuplicateHandling, Import, Stage};
use crate::jobs::{Worker, WorkerConfig};
use crate::store::{self, Db};

/// What to measure besides the first import.
#[derive(Debug, Clone, Copy, Default)]
pub struct Runs {
    /// A second import merging a file of the same size: half its rows update records of the
    /// first, half create new ones; then its rollback.
    pub merge: bool,
    /// The rollback of the first import (every record it created removed).
    pub rollback: bool,
}

/// People using the app while the first import runs (`--load N`): the app's settings (its
/// database and folders are the benchmark's) and how many people.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub clients: usize,
    pub app: crate::config::Settings,
}

/// The file to measure: generated contacts, or `file` read as the entity of `schema` (a
/// schema TOML file; the contacts schema when None).
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub file: Option<PathBuf>,
    pub schema: Option<PathBuf>,
}

impl Input {
    /// The schema file's name and text (the contacts schema by default).
    fn schema_file(&self) -> anyhow::Result<(String, String)> {
        match &self.schema {
            Some(p) => Ok((
                p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "schema.toml".into()),
                std::fs::read_to_string(p).with_context(|| format!("cannot read --schema {}", p.display()))?,
            )),
            None => Ok(("bench_contacts.toml".into(), CONTACTS.into())),
        }
    }

    /// The file: `--file`, or `rows` contacts generated in `dir`.
    fn prepare(&self, dir: &std::path::Path, rows: usize) -> anyhow::Result<PathBuf> {
        if let Some(f) = &self.file {
            anyhow::ensure!(f.exists(), "--file {} does not exist", f.display());
            return Ok(f.clone());
        }
        let file = dir.join("contacts.csv");
        let t = Instant::now();
        generate(&file, rows, 0, 1)?;
        let size = std::fs::metadata(&file)?.len();
        println!(
            "generated {rows} rows, 12 columns, {:.1} MB in {:.2} s",
            size as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        Ok(file)
    }
}

/// A fresh temporary folder for one benchmark run, removed after `f`.
async fn in_temp_dir<F, Fut>(f: F) -> anyhow::Result<()>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let dir = std::env::temp_dir().join(format!("stevedore-bench-{}-{}", std::process::id(), crate::random_token(4)?));
    std::fs::create_dir_all(&dir)?;
    let result = f(dir.clone()).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs the benchmark; prints progress lines and, last, one JSON object.
pub async fn import(
    rows: usize,
    chunk: i64,
    database: Option<String>,
    runs: Runs,
    input: Input,
    load: Option<LoadSettings>,
) -> anyhow::Result<()> {
    anyhow::ensure!(input.file.is_none() || !runs.merge, "--merge needs the generated file (leave out --file)");
    let Some(url) = database.filter(|u| u.starts_with("postgres")) else {
        return in_temp_dir(|dir| async move { run(&dir, rows, chunk, None, runs, &input, load).await }).await;
    };
    // a schema of its own in the PostgreSQL database, dropped after: an earlier run's
    // records would slow this one's down
    in_schema(&url, |isolated| async move {
        in_temp_dir(|dir| async move { run(&dir, rows, chunk, Some(isolated), runs, &input, load).await }).await
    })
    .await
}

/// Runs `f` with the URL of a new schema of the PostgreSQL database at `url`, dropped after.
async fn in_schema<F, Fut>(url: &str, f: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let schema = format!("bench_{}", crate::random_token(6)?);
    let admin = Db::connect(url, 1).await?;
    crate::on_pool!(&admin, p => sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(p).await.map(|_| ()))
        .context("creating the benchmark's schema")?;
    let sep = if url.contains('?') { '&' } else { '?' };
    let result = f(format!("{url}{sep}options%5Bsearch_path%5D={schema}")).await;
    let dropped = crate::on_pool!(&admin, p => sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(p).await.map(|_| ()));
    admin.close().await;
    result?;
    dropped.context("dropping the benchmark's schema")?;
    Ok(())
}

/// `stevedore bench floor`: the floor alone (SQLite, and `COPY` with a PostgreSQL
/// `database`); prints rows/s and, last, one JSON object.
pub async fn floor_only(rows: usize, database: Option<String>, input: Input) -> anyhow::Result<()> {
    in_temp_dir(|dir| async move {
        let file = input.prepare(&dir, rows)?;
        let schema = standalone_schema(&input)?;
        let mut json = serde_json::json!({});
        measure_floors(&dir, &file, &schema, database.as_deref(), &mut json).await?;
        println!("peak RSS {:.1} MiB", peak_rss_mib());
        println!("{json}");
        Ok(())
    })
    .await
}

/// The input's schema, loaded with the shipped ones (a relationship may point at them).
fn standalone_schema(input: &Input) -> anyhow::Result<Arc<crate::domain::entities::EntitySchema>> {
    let schemas = load_schemas(input)?;
    let (name, text) = input.schema_file()?;
    let entity = crate::domain::entities::EntitySchema::parse(&name, &text).map_err(anyhow::Error::msg)?.name;
    schemas.get(&entity).cloned().context("the benchmark schema")
}

/// The shipped schemas plus the input's.
fn load_schemas(input: &Input) -> anyhow::Result<Schemas> {
    let mut files: Vec<(String, String)> =
        crate::content::SHIPPED_SCHEMAS.iter().map(|(n, t)| ((*n).to_string(), (*t).to_string())).collect();
    files.push(input.schema_file()?);
    Schemas::load(files.iter().map(|(n, t)| (n.as_str(), t.as_str()))).map_err(anyhow::Error::msg)
}

/// Runs the floors over `file` and records them in `json`: SQLite's always, and `COPY`'s
/// when `database` is PostgreSQL.
async fn measure_floors(
    dir: &std::path::Path,
    file: &std::path::Path,
    schema: &Arc<crate::domain::entities::EntitySchema>,
    database: Option<&str>,
    json: &mut serde_json::Value,
) -> anyhow::Result<()> {
    let f = floor::sqlite(dir, file, schema.clone()).await?;
    println!(
        "floor (parse, check, MD5, SQLite insert): {} rows in {:.2} s ({:.0} rows/s), {} valid",
        f.rows,
        f.seconds,
        f.rows_per_sec(),
        f.valid
    );
    json["floor_rows"] = f.rows.into();
    json["floor_s"] = secs(f.seconds).into();
    json["floor_rows_per_sec"] = f.rows_per_sec().round().into();
    if let Some(url) = database.filter(|u| u.starts_with("postgres")) {
        let c = floor::postgres(url, file, schema).await?;
        println!("floor (PostgreSQL COPY): {} rows in {:.2} s ({:.0} rows/s)", c.rows, c.seconds, c.rows_per_sec());
        json["copy_s"] = secs(c.seconds).into();
        json["copy_rows_per_sec"] = c.rows_per_sec().round().into();
    }
    Ok(())
}

/// Runs the floors in a process of its own (`stevedore bench floor` over the same file) and
/// records them in `json`, so the peak memory printed after the import is the import's alone:
/// measured in this process, the floor's 64 MiB page cache and what its thread's allocator
/// keeps after it counted as the import's (and more of it the larger the file).
async fn measure_floors_apart(
    file: &std::path::Path,
    input: &Input,
    database: Option<&str>,
    json: &mut serde_json::Value,
) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new(std::env::current_exe().context("finding this program to run the floor")?);
    cmd.args(["bench", "floor", "--file"]).arg(file).stderr(std::process::Stdio::inherit());
    if let Some(schema) = &input.schema {
        cmd.arg("--schema").arg(schema);
    }
    if let Some(url) = database.filter(|u| u.starts_with("postgres")) {
        cmd.args(["--database", url]);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output()).await?.context("running the floor")?;
    anyhow::ensure!(out.status.success(), "the floor failed ({})", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let (lines, last) = text.trim_end().rsplit_once('\n').context("the floor printed no figures")?;
    for line in lines.lines() {
        match line.strip_prefix("peak RSS ") {
            Some(rss) => println!("floor's peak RSS (its own process) {rss}"),
            None => println!("{line}"),
        }
    }
    let floor: serde_json::Value = serde_json::from_str(last).context("reading the floor's figures")?;
    for key in ["floor_rows", "floor_s", "floor_rows_per_sec", "copy_s", "copy_rows_per_sec"] {
        if let Some(v) = floor.get(key) {
            json[key] = v.clone();
        }
    }
    Ok(())
}

/// The benchmark's database, org, user, schema and worker.
struct Bench {
    db: Db,
    org: OrgId,
    user: UserId,
    schema: Arc<crate::domain::entities::EntitySchema>,
    /// The worker runs on a background thread of its own, as in the app, connected here.
    url: String,
    schemas: Arc<Schemas>,
    stop: tokio::sync::watch::Receiver<bool>,
    /// Kept so the worker never reads a dropped sender as "stop".
    _stop_tx: tokio::sync::watch::Sender<bool>,
    chunk: i64,
    /// The import being measured (for the pages `--load` reads).
    current: Arc<std::sync::atomic::AtomicI64>,
}

fn secs(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

impl Bench {
    /// Runs every queued job, the way the app's worker does (on a thread of its own, with
    /// connections of its own); the seconds it took.
    async fn drain(&self) -> anyhow::Result<f64> {
        let (url, schemas, stop) = (self.url.clone(), self.schemas.clone(), self.stop.clone());
        let t = Instant::now();
        crate::jobs::background::run_connected("bench-jobs", url, 4, move |db| async move {
            let worker = Worker::with_all_handlers(db, schemas, WorkerConfig::default())?;
            while worker.run_one(&stop).await? {}
            Ok(())
        })
        .await?;
        Ok(t.elapsed().as_secs_f64())
    }

    /// Validates `file` for `action`: the import, waiting at Ready, and the seconds it took.
    async fn validate(&self, file: &std::path::Path, action: Action) -> anyhow::Result<(Import, f64)> {
        let (db, org) = (&self.db, self.org);
        let info =
            crate::files::sniff(file, None, &crate::files::Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mapping = auto_map_schema(&self.schema, &info.headers);
        let path = file.to_string_lossy().into_owned();
        let id = store::imports::create(
            db,
            org,
            &store::imports::NewImport {
                entity: &self.schema.name,
                name: "benchmark",
                action,
                duplicate_handling: DuplicateHandling::IgnoreAll,
                file_name: &file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                file_path: &path,
                file_size: std::fs::metadata(file)?.len() as i64,
                checksum: "",
                chunk_size: self.chunk,
                created_by: self.user.into(),
                upload_mode_sync: false,
                auto_start: false,
                created_by_label: "bench",
            },
        )
        .await?;
        self.current.store(id, std::sync::atomic::Ordering::Relaxed);
        let none = Default::default();
        let columns = store::imports::FileColumns {
            headers: &info.headers,
            mapping: &mapping,
            proposed: &none,
            sheet: None,
            samples: &[],
            profile: &Default::default(),
        };
        store::imports::set_headers(db, id, &columns).await?;
        store::imports::confirm_mapping(db, org, id, &mapping, &none, self.user.into()).await?;
        crate::jobs::import::enqueue(db, org, id, crate::jobs::import::VALIDATE).await?;
        let validate_s = self.drain().await?;
        let v = imported(db, org, id).await?;
        anyhow::ensure!(v.stage == Stage::Ready, "validation ended {}: {}", v.stage, v.reason);
        println!(
            "validated in {validate_s:.2} s ({:.0} rows/s): {} valid ({} to create, {} to update), {} invalid, {} duplicates",
            v.validated.total_rows as f64 / validate_s,
            v.validated.valid_rows,
            v.validated.to_create,
            v.validated.to_update,
            v.validated.invalid_rows,
            v.validated.duplicate_rows
        );
        print_phases(db, id).await?;
        Ok((v, validate_s))
    }

    /// Validates and imports `file` with `action`: (import, validate seconds, import seconds).
    async fn import(&self, file: &std::path::Path, action: Action) -> anyhow::Result<(Import, f64, f64)> {
        let (v, validate_s) = self.validate(file, action).await?;
        let (db, org, id) = (&self.db, self.org, v.id);
        store::imports::start_import(db, org, id, self.user.into()).await?;
        crate::jobs::import::enqueue(db, org, id, crate::jobs::import::PROCESS).await?;
        let import_s = self.drain().await?;
        let done = imported(db, org, id).await?;
        anyhow::ensure!(done.stage == Stage::Completed, "import ended {}: {}", done.stage, done.reason);
        println!(
            "imported in {import_s:.2} s ({:.0} rows/s): {} created, {} updated, chunks of {}",
            (done.created_rows + done.updated_rows) as f64 / import_s,
            done.created_rows,
            done.updated_rows,
            self.chunk
        );
        Ok((done, validate_s, import_s))
    }

    /// Rolls an import back; the seconds it took.
    async fn roll_back(&self, imp: &Import) -> anyhow::Result<f64> {
        anyhow::ensure!(
            crate::store::journal::request(&self.db, self.org, imp.id, self.user.into(), "bench", false).await?,
            "the rollback was refused"
        );
        crate::jobs::import::enqueue(&self.db, self.org, imp.id, crate::jobs::import::ROLLBACK).await?;
        let s = self.drain().await?;
        let done = imported(&self.db, self.org, imp.id).await?;
        anyhow::ensure!(done.stage == Stage::RolledBack, "rollback ended {}", done.stage);
        anyhow::ensure!(done.rollback.skipped == 0, "{} records were skipped", done.rollback.skipped);
        println!(
            "rolled back in {s:.2} s ({:.0} changes/s): {} created removed, {} updated restored",
            done.rollback.rolled_back_rows as f64 / s,
            done.created_rows,
            done.updated_rows
        );
        Ok(s)
    }
}

/// A database (fresh SQLite in `dir` unless `database`), the benchmark org, user and worker.
async fn setup(dir: &std::path::Path, chunk: i64, database: Option<String>, input: &Input) -> anyhow::Result<Bench> {
    let url = database_url(dir, database);
    let db = Db::connect(&url, 2).await?;
    db.migrate().await?;
    let schemas = Arc::new(load_schemas(input)?);
    let schema = standalone_schema(input)?;
    let slug = format!("bench-{}", crate::random_token(3)?);
    let (org, _) = store::accounts::ensure_org(&db, &slug, "Benchmark").await?;
    let user = store::accounts::create_user(&db, &format!("{slug}@bench.test"), "Bench", "x", false).await?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let current = Arc::new(std::sync::atomic::AtomicI64::new(0));
    Ok(Bench { db, org, user: UserId::new(user.get()), schema, url, schemas, stop, _stop_tx: stop_tx, chunk, current })
}

/// The benchmark's database: `database`, or a fresh SQLite file in `dir`.
fn database_url(dir: &std::path::Path, database: Option<String>) -> String {
    database.unwrap_or_else(|| format!("sqlite://{}", dir.join("bench.db").display()))
}

/// The app, serving the benchmark's database and schema, with people using it.
struct Serving {
    server: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    base: String,
    load: load::Load,
}

async fn serve_with_load(
    dir: &std::path::Path,
    database: Option<String>,
    input: &Input,
    b: &Bench,
    settings: LoadSettings,
) -> anyhow::Result<Serving> {
    let mut app = settings.app;
    app.db.database_url = database_url(dir, database);
    app.db.data_dir = dir.join("app");
    let schemas = dir.join("schemas");
    std::fs::create_dir_all(&schemas)?;
    let (name, text) = input.schema_file()?;
    std::fs::write(schemas.join(name), text)?;
    app.schema_dir = Some(schemas);
    let app = crate::startup::App::build(app).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let server = actix_web::rt::spawn(app.run_until_stopped());
    let load = load::start(&b.db, b.org, &base, &b.schema.name, settings.clients, b.current.clone()).await?;
    Ok(Serving { server, base, load })
}

async fn run(
    dir: &std::path::Path,
    rows: usize,
    chunk: i64,
    database: Option<String>,
    runs: Runs,
    input: &Input,
    load: Option<LoadSettings>,
) -> anyhow::Result<()> {
    let file = input.prepare(dir, rows)?;
    let mut json = serde_json::json!({});
    measure_floors_apart(&file, input, database.as_deref(), &mut json).await?;
    let b = setup(dir, chunk, database.clone(), input).await?;
    let db = b.db.clone();
    let serving = match load {
        Some(l) => Some(serve_with_load(dir, database, input, &b, l).await?),
        None => None,
    };
    let first = b.import(&file, Action::Merge).await;
    if let Some(s) = serving {
        let r = s.load.finish().await;
        s.server.abort();
        json["load_requests"] = r.requests.into();
        json["load_p50_ms"] = ((r.p50_ms * 10.0).round() / 10.0).into();
        json["load_p99_ms"] = ((r.p99_ms * 10.0).round() / 10.0).into();
        json["load_max_ms"] = ((r.max_ms * 10.0).round() / 10.0).into();
        json["load_failures"] = r.failures.into();
    }
    let (first, validate_s, import_s) = first?;
    let rows = first.validated.total_rows as usize;
    let total = validate_s + import_s;
    let peak = peak_rss_mib();
    let rate = rows as f64 / total;
    println!("end to end {total:.2} s ({rate:.0} rows/s), peak RSS {peak:.1} MiB");
    let floor_rate = json["floor_rows_per_sec"].as_f64().unwrap_or(0.0);
    let floor_ratio = (rate / floor_rate.max(1.0) * 100.0).round() / 100.0;
    println!("ratio to the floor: {floor_ratio:.2} ({rate:.0} / {floor_rate:.0} rows/s)");
    json["rows"] = rows.into();
    json["validate_s"] = secs(validate_s).into();
    json["import_s"] = secs(import_s).into();
    json["rows_per_sec"] = rate.round().into();
    json["floor_ratio"] = floor_ratio.into();
    if let Some(copy_rate) = json["copy_rows_per_sec"].as_f64() {
        let copy_ratio = (rate / copy_rate.max(1.0) * 100.0).round() / 100.0;
        println!("ratio to PostgreSQL COPY: {copy_ratio:.2} ({rate:.0} / {copy_rate:.0} rows/s)");
        json["copy_ratio"] = copy_ratio.into();
    }
    if let Db::Postgres(pool) = &db {
        let w = floor::postgres_written(pool, first.id, dir).await?;
        let alone = w.records_s + w.journal_s;
        let ratio = (alone / import_s.max(1e-9) * 100.0).round() / 100.0;
        println!(
            "PostgreSQL writing the import's {} records and their journal alone (COPY into tables like them): \
             {:.2} s + {:.2} s = {alone:.2} s; the import phase took {import_s:.2} s, ratio {ratio:.2}",
            w.records, w.records_s, w.journal_s
        );
        json["written_records_s"] = secs(w.records_s).into();
        json["written_journal_s"] = secs(w.journal_s).into();
        json["written_ratio"] = ratio.into();
    }
    json["created"] = first.created_rows.into();
    json["invalid"] = first.validated.invalid_rows.into();
    json["duplicates"] = first.validated.duplicate_rows.into();
    json["chunk_size"] = chunk.into();
    json["database"] = db.backend().into();

    if runs.merge {
        // every even row updates a record of the first file, every odd row is a new key
        let second = dir.join("contacts-merge.csv");
        generate(&second, rows, rows, 2)?;
        println!("merge: {rows} rows, half updating records of the first file, half new");
        let (merged, validate_s, import_s) = b.import(&second, Action::Merge).await?;
        let total = validate_s + import_s;
        println!("merge end to end {total:.2} s ({:.0} rows/s)", rows as f64 / total);
        let rollback_s = b.roll_back(&merged).await?;
        json["merge_validate_s"] = secs(validate_s).into();
        json["merge_import_s"] = secs(import_s).into();
        json["merge_rows_per_sec"] = (rows as f64 / total).round().into();
        json["merge_updated"] = merged.updated_rows.into();
        json["merge_rollback_s"] = secs(rollback_s).into();
    }
    if runs.rollback {
        let rollback_s = b.roll_back(&first).await?;
        json["rollback_s"] = secs(rollback_s).into();
        json["rollback_rows_per_sec"] = (first.created_rows as f64 / rollback_s).round().into();
    }
    let peak = peak_rss_mib();
    println!("peak RSS {peak:.1} MiB");
    json["peak_rss_mib"] = ((peak * 10.0).round() / 10.0).into();
    db.close().await;
    println!("{json}");
    Ok(())
}

/// Each phase's time and counts, as the detail sheet shows them.
async fn print_phases(db: &Db, id: i64) -> anyhow::Result<()> {
    let mut phases = store::imports::phases::phases(db, id).await?;
    phases.sort_by_key(|p| crate::domain::imports::Phase::ALL.iter().position(|k| k.as_str() == p.phase));
    for p in phases {
        let ms = p.duration_ms.unwrap_or(0);
        println!("  {:<14} {:>7} ms  {:>9} in {:>9} out  {}", p.phase, ms, p.rows_in, p.rows_out, p.detail);
    }
    Ok(())
}

async fn imported(db: &Db, org: OrgId, id: i64) -> anyhow::Result<Import> {
    store::imports::get(db, org, id).await?.context("benchmark import vanished")
}
