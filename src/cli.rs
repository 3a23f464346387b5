//! The command line: `serve` (default), `migrate`, `user add`.

use std::io::BufRead;

use clap::{Parser, Subcommand};

use crate::auth::password;
use crate::config::{CommonArgs, DbSettings, ServeArgs, Settings};
use crate::domain::account::{Email, OrgSlug, check_new_password};
use crate::domain::entities::Schemas;
use crate::domain::permissions::Role;
use crate::jobs::WorkerConfig;
use crate::startup::{App, open_database};
use crate::store::{self, Db};

#[derive(Debug, Parser)]
#[command(name = "stevedore", version, about = "Stevedore: the import/export console for org admins")]
pub struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Run background jobs only (no web server), until SIGINT/SIGTERM.
    Worker {
        /// Jobs run at once.
        #[arg(long, default_value = "2")]
        concurrency: String,
    },
    /// Measure: `bench import --rows N` runs a generated file through validation and import;
    /// `bench floor` the least that file can cost; `bench export` the export job.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create an API key for an org and print it (shown this once; only its hash is kept).
    Create {
        /// The org's slug.
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// Permissions, separated by commas: pf.import.upload, pf.export_requests.view,
        /// pf.export_requests.create, cl.marketplace.import.
        #[arg(long, default_value = "pf.import.upload")]
        permissions: String,
        /// Days until it expires: 30, 90 or 365; never when left out.
        #[arg(long)]
        expires_in_days: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Generate an N-row, 12-column contacts CSV and validate and import it, printing rows/s
    /// and peak memory; the last line is one JSON object.
    Import {
        #[arg(long, default_value = "100000")]
        rows: usize,
        /// Rows per chunk.
        #[arg(long, default_value = "5000")]
        chunk: i64,
        /// Database URL to use instead of a fresh SQLite file.
        #[arg(long)]
        database: Option<String>,
        /// Also merge a second file of as many rows (half updates, half new), then roll it back.
        #[arg(long)]
        merge: bool,
        /// Also roll the first import back (every record it created removed).
        #[arg(long)]
        rollback: bool,
        /// Import this CSV instead of generated contacts (its header names the fields).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// The entity schema (TOML, as in schemas/) of --file; the contacts schema by default.
        #[arg(long)]
        schema: Option<std::path::PathBuf>,
        /// While the first import runs, N people use the app over HTTP (sign in, Import
        /// History, the import's page, records, Data Exports, sign out); prints their p50/p99
        /// latency and the answers that were not 2xx/3xx.
        #[arg(long, default_value = "0")]
        load: usize,
    },
    /// The floor every import figure is a ratio to: parse, type-check, MD5 and insert the same
    /// file into a plain indexed SQLite table (and, with a PostgreSQL --database, COPY it into
    /// a typed table); prints rows/s; the last line is one JSON object.
    Floor {
        #[arg(long, default_value = "100000")]
        rows: usize,
        /// A PostgreSQL URL to also measure COPY there.
        #[arg(long)]
        database: Option<String>,
        /// Measure this CSV instead of generated contacts.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// The entity schema (TOML) of --file; the contacts schema by default.
        #[arg(long)]
        schema: Option<std::path::PathBuf>,
    },
    /// The import through the JSON API: the generated file imported directly (as bench
    /// import) and then created, PUT and polled over HTTP while N clients read the import and
    /// the list; prints rows/s of both, their ratio, and the reads' p50/p99.
    Api {
        #[arg(long, default_value = "100000")]
        rows: usize,
        /// Clients reading the import and the list meanwhile.
        #[arg(long, default_value = "50")]
        clients: usize,
        /// Seconds the clients read for, from the import's creation (while it runs).
        #[arg(long, default_value = "20")]
        secs: u64,
    },
    /// The deployment of docs/deploy.md on this machine (PostgreSQL): N instances and M
    /// worker processes; an import of the generated file through the API end to end, then
    /// people reading the lists on every instance; the last line is one JSON object.
    Cluster {
        #[arg(long, default_value = "1000000")]
        rows: usize,
        /// `stevedore serve --workers 0` processes.
        #[arg(long, default_value = "3")]
        instances: usize,
        /// `stevedore worker` processes (two jobs each).
        #[arg(long, default_value = "2")]
        processes: usize,
        /// People reading Import History, the API's imports list and Data Exports.
        #[arg(long, default_value = "50")]
        clients: usize,
        /// For how long they read.
        #[arg(long, default_value = "30")]
        secs: u64,
        /// The PostgreSQL database (a schema of its own is made and dropped).
        #[arg(long)]
        database: String,
    },
    /// How long a queued job waits for a worker of another process (PostgreSQL, with
    /// LISTEN/NOTIFY): p50/p90/p99 of N pings; the last line is one JSON object.
    Pickup {
        #[arg(long, default_value = "200")]
        jobs: usize,
        /// `stevedore worker` processes to start.
        #[arg(long, default_value = "2")]
        processes: usize,
        /// The PostgreSQL database (a schema of its own is made and dropped).
        #[arg(long)]
        database: String,
    },
    /// Import History's latency over HTTP with N imports in the org: the list, each filter and
    /// a deep page, p50/p99 each; the last line is one JSON object.
    History {
        #[arg(long, default_value = "100000")]
        imports: i64,
        /// Requests per view.
        #[arg(long, default_value = "200")]
        requests: usize,
        /// Database URL to use instead of a fresh SQLite file.
        #[arg(long)]
        database: Option<String>,
    },
    /// The grid of rows left out with N of them, over HTTP: its pages, saving a row (checked
    /// again at once) and a replace in every row; p50/p99 each; the last line is one JSON
    /// object.
    Grid {
        #[arg(long, default_value = "100000")]
        rows: usize,
        /// Requests per view.
        #[arg(long, default_value = "100")]
        requests: usize,
    },
    /// Import N generated contacts, then export them as CSV, XLSX or JSON through the export
    /// job, printing rows/s and peak memory; the last line is one JSON object.
    Export {
        #[arg(long, default_value = "100000")]
        rows: usize,
        /// csv, xlsx or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Database URL to use instead of a fresh SQLite file.
        #[arg(long)]
        database: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user (or update an existing one) with a role in an org, creating the org if missing.
    Add {
        /// The org's slug, e.g. acme-health.
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        /// owner, importer, exporter or viewer.
        #[arg(long)]
        role: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: they cannot sign in, and their open sessions end at once.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user again.
    Enable {
        #[arg(long)]
        email: String,
    },
}

/// Runs the command line; returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let result = actix_web::rt::System::new().block_on(dispatch(cli));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let db_settings = DbSettings::from_args(&cli.common)?;
    crate::telemetry::init(db_settings.json_logs);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(Settings::from_args(&cli.common, &cli.serve)?).await,
        Command::Worker { concurrency } => {
            let n = crate::config::parse_workers(&concurrency).map_err(|e| anyhow::anyhow!("--concurrency: {e}"))?;
            let schemas = crate::content::load_schemas(cli.serve.schema_dir.as_deref())?;
            let lease = crate::config::parse_lease(&cli.serve.job_lease_secs)
                .map_err(|e| anyhow::anyhow!("invalid setting STEVEDORE_JOB_LEASE_SECS: {e}"))?;
            let ttl = crate::config::parse_ttl_hours(&cli.serve.import_ttl_hours)
                .map_err(|e| anyhow::anyhow!("invalid setting STEVEDORE_IMPORT_TTL_HOURS: {e}"))?;
            let fetch_private_networks = crate::config::parse_bool(&cli.serve.fetch_private_networks)
                .map_err(|e| anyhow::anyhow!("invalid setting STEVEDORE_FETCH_PRIVATE_NETWORKS: {e}"))?;
            let retention = crate::config::parse_retention_days(&cli.serve.import_retention_days)
                .map_err(|e| anyhow::anyhow!("invalid setting STEVEDORE_IMPORT_RETENTION_DAYS: {e}"))?;
            let export_retention = crate::config::parse_retention_days(&cli.serve.export_retention_days)
                .map_err(|e| anyhow::anyhow!("invalid setting STEVEDORE_EXPORT_RETENTION_DAYS: {e}"))?;
            let s3 = crate::config::S3Settings::from_args(&cli.serve)?;
            let file_limits = crate::config::file_limits(&cli.serve)?;
            let catalog = crate::content::load_catalog(&schemas, cli.serve.marketplace_dir.as_deref());
            let config = WorkerConfig {
                catalog: std::sync::Arc::new(catalog),
                files: crate::files::object::FileStore::from_settings(&db_settings.data_dir, s3.as_ref())?,
                concurrency: n.max(1),
                lease_secs: lease,
                import_ttl_secs: ttl,
                import_retention_secs: retention,
                export_retention_secs: export_retention,
                fetch_private_networks,
                file_limits,
                ..WorkerConfig::default()
            };
            run_worker(&db_settings, schemas, config).await
        }
        Command::Bench {
            command: BenchCommand::Import { rows, chunk, database, merge, rollback, file, schema, load },
        } => {
            anyhow::ensure!(rows > 0, "--rows must be at least 1");
            anyhow::ensure!((1..=100_000).contains(&chunk), "--chunk must be from 1 to 100000");
            anyhow::ensure!(load <= 1000, "--load must be at most 1000");
            let input = crate::bench::Input { file, schema };
            let load = match load {
                0 => None,
                clients => {
                    Some(crate::bench::LoadSettings { clients, app: bench_app_settings(cli.common, cli.serve)? })
                }
            };
            crate::bench::import(rows, chunk, database, crate::bench::Runs { merge, rollback }, input, load).await
        }
        Command::Bench { command: BenchCommand::Floor { rows, database, file, schema } } => {
            anyhow::ensure!(rows > 0, "--rows must be at least 1");
            crate::bench::floor_only(rows, database, crate::bench::Input { file, schema }).await
        }
        Command::Bench { command: BenchCommand::History { imports, requests, database } } => {
            anyhow::ensure!(imports > 0 && requests > 0, "--imports and --requests must be at least 1");
            bench_history(cli.common, cli.serve, imports, requests, database).await
        }
        Command::Bench { command: BenchCommand::Api { rows, clients, secs } } => {
            anyhow::ensure!(rows > 0, "--rows must be at least 1");
            let settings = bench_app_settings(cli.common, cli.serve)?;
            crate::bench::api::run(rows, clients, secs, settings).await
        }
        Command::Bench { command: BenchCommand::Cluster { rows, instances, processes, clients, secs, database } } => {
            let shape = crate::bench::cluster::Shape { rows, instances, processes, clients, secs };
            crate::bench::cluster::run(&database, shape).await
        }
        Command::Bench { command: BenchCommand::Pickup { jobs, processes, database } } => {
            crate::bench::pickup::run(&database, jobs, processes).await
        }
        Command::Bench { command: BenchCommand::Grid { rows, requests } } => {
            anyhow::ensure!(rows > 0 && requests > 0, "--rows and --requests must be at least 1");
            let settings = bench_app_settings(cli.common, cli.serve)?;
            crate::bench::grid::run(rows, requests, settings).await
        }
        Command::Bench { command: BenchCommand::Export { rows, format, database } } => {
            anyhow::ensure!(rows > 0, "--rows must be at least 1");
            crate::bench::export(rows, &format, database).await
        }
        Command::Migrate => {
            let db = open_database(&db_settings).await?;
            println!("Database is up to date ({}).", db.backend());
            db.close().await;
            Ok(())
        }
        Command::User { command: UserCommand::Add { org, email, role, name, password_stdin } } => {
            if !password_stdin {
                anyhow::bail!("pass the password on standard input with --password-stdin");
            }
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let pw = line.trim_end_matches(['\n', '\r']);
            let db = open_database(&db_settings).await?;
            let msg = add_user(&db, &org, &email, &role, &name, pw).await;
            db.close().await;
            println!("{}", msg?);
            Ok(())
        }
        Command::ApiKey { command: ApiKeyCommand::Create { org, name, permissions, expires_in_days } } => {
            let db = open_database(&db_settings).await?;
            let secret = create_api_key(&db, &org, &name, &permissions, expires_in_days.as_deref()).await;
            db.close().await;
            println!("{}", secret?);
            Ok(())
        }
        Command::User { command: UserCommand::Disable { email } } => toggle_user(&db_settings, &email, true).await,
        Command::User { command: UserCommand::Enable { email } } => toggle_user(&db_settings, &email, false).await,
    }
}

/// The settings of an app a benchmark serves: a random local port, no in-process worker (the
/// benchmark runs the jobs), a fresh session key; the rest as configured.
fn bench_app_settings(
    common: crate::config::CommonArgs,
    mut serve: crate::config::ServeArgs,
) -> anyhow::Result<Settings> {
    serve.bind = "127.0.0.1:0".into();
    serve.workers = "0".into();
    serve.session_key = None;
    Ok(Settings::from_args(&common, &serve)?)
}

/// `bench history`: the app on a random port over a fresh database (SQLite in a temporary
/// folder unless `database`), measured by [`crate::bench::history`].
async fn bench_history(
    mut common: crate::config::CommonArgs,
    serve: crate::config::ServeArgs,
    imports: i64,
    requests: usize,
    database: Option<String>,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("stevedore-bench-{}-{}", std::process::id(), crate::random_token(4)?));
    std::fs::create_dir_all(&dir)?;
    common.data_dir = dir.clone();
    common.database_url = Some(database.unwrap_or_else(|| format!("sqlite://{}", dir.join("bench.db").display())));
    let settings = bench_app_settings(common, serve)?;
    let db = open_database(&settings.db).await?;
    let app = App::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let server = actix_web::rt::spawn(app.run_until_stopped());
    let result = crate::bench::history::run(&db, &base, imports, requests).await;
    server.abort();
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn toggle_user(db_settings: &DbSettings, email: &str, disabled: bool) -> anyhow::Result<()> {
    let db = open_database(db_settings).await?;
    let msg = set_disabled(&db, email, disabled).await;
    db.close().await;
    println!("{}", msg?);
    Ok(())
}

/// `user disable` / `user enable`. Disabling also deletes the user's sessions.
pub async fn set_disabled(db: &Db, email: &str, disabled: bool) -> anyhow::Result<String> {
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let user = store::accounts::user_by_email(db, email.as_str())
        .await?
        .ok_or_else(|| anyhow::anyhow!("--email: no user has the email {email}"))?;
    let id = crate::domain::ids::UserId::new(user.id);
    store::accounts::set_disabled(db, id, disabled).await?;
    if disabled {
        let ended = store::sessions::delete_for_user(db, id).await?;
        Ok(format!("Disabled {email}; {ended} open session(s) ended."))
    } else {
        Ok(format!("Enabled {email}."))
    }
}

async fn run_worker(db_settings: &DbSettings, schemas: Schemas, config: WorkerConfig) -> anyhow::Result<()> {
    let db = open_database(db_settings).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let url = db_settings.database_url.clone();
    let running = actix_web::rt::spawn(crate::jobs::background::worker(
        url,
        std::sync::Arc::new(schemas),
        config,
        stop_rx.clone(),
    ));
    let schedule = actix_web::rt::spawn(crate::startup::schedule_maintenance(db.clone(), stop_rx));
    tokio::pin!(running);
    let ended = |e: Result<anyhow::Result<()>, _>| {
        e.map_err(|e| anyhow::anyhow!("the job worker panicked: {e}")).and_then(|r| r)
    };
    let result = tokio::select! {
        // the worker ended by itself: it could not start
        e = &mut running => ended(e),
        _ = crate::startup::shutdown_signal() => {
            tracing::info!("stopping: jobs finish their current step, then go back to the queue");
            let _ = stop_tx.send(true);
            let bound = crate::jobs::worker::STOP_GRACE + std::time::Duration::from_secs(10);
            match tokio::time::timeout(bound, running).await {
                Ok(e) => ended(e),
                Err(_) => {
                    tracing::warn!("jobs still running at exit; their leases let another worker resume them");
                    Ok(())
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    let _ = schedule.await;
    db.close().await;
    result
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let bind = settings.bind;
    let app = App::build(settings).await?;
    let port = app.port();
    if let Some(d) = &app.demo_login {
        println!();
        println!("  Demo organization \"{}\" created. Sign in at http://{}:{port}/login", d.org_slug, bind.ip());
        println!("    email:    {}", d.email);
        println!("    password: {}   (one-time: you choose your own at first sign-in)", d.password);
        println!("  This password is shown only once.");
        println!();
    }
    tracing::info!(address = %format!("{}:{port}", bind.ip()), "Stevedore is listening");
    app.run_until_stopped().await?;
    tracing::info!("Stevedore stopped");
    Ok(())
}

/// `api-key create`: the new key's secret, for an org that exists.
pub async fn create_api_key(
    db: &Db,
    org: &str,
    name: &str,
    permissions: &str,
    expires_in_days: Option<&str>,
) -> anyhow::Result<String> {
    use crate::domain::api_keys;
    let org = store::accounts::org_by_slug(db, org)
        .await?
        .ok_or_else(|| anyhow::anyhow!("--org: no organization \"{org}\""))?;
    let wanted: Vec<String> = permissions.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
    let (name, granted, days) = api_keys::check_new_key(Role::Owner, name, &wanted, expires_in_days.unwrap_or("never"))
        .map_err(anyhow::Error::msg)?;
    let secret = api_keys::generate()?;
    let stored = api_keys::format_permissions(&granted);
    store::api_keys::create(
        db,
        crate::domain::ids::OrgId::new(org.id),
        &store::api_keys::NewApiKey {
            name: &name,
            prefix: &secret.prefix,
            hash: &secret.hash,
            permissions: &stored,
            created_by: None,
            created_by_label: "command line",
            expires_at: days.map(|d| crate::now() + d * 86_400),
        },
    )
    .await?;
    Ok(secret.secret)
}

/// `user add`: validates everything first, then creates the org and user as needed.
pub async fn add_user(db: &Db, org: &str, email: &str, role: &str, name: &str, pw: &str) -> anyhow::Result<String> {
    let slug = OrgSlug::parse(org).map_err(|e| anyhow::anyhow!("--org: {e}"))?;
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let role = Role::parse(role).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    check_new_password(pw).map_err(|e| anyhow::anyhow!("password: {e}"))?;
    let hash = password::hash(pw.to_string()).await?;
    let (org_id, org_created) = store::accounts::ensure_org(db, slug.as_str(), &slug.title()).await?;
    let (user, user_created) = match store::accounts::user_by_email(db, email.as_str()).await? {
        Some(u) => {
            let id = crate::domain::ids::UserId::new(u.id);
            store::accounts::set_password(db, id, &hash, false).await?;
            (id, false)
        }
        None => (store::accounts::create_user(db, email.as_str(), name, &hash, false).await?, true),
    };
    store::accounts::upsert_membership(db, org_id, user, role).await?;
    if user_created {
        // a new account's home org: where sign-in takes them until they switch
        store::accounts::set_last_org(db, user, org_id).await?;
    }
    Ok(format!(
        "{} {email} as {role} of {}{}.",
        if user_created { "Created" } else { "Updated" },
        slug.as_str(),
        if org_created { " (organization created)" } else { "" }
    ))
}
