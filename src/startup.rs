//! Building the app: database, migrations, first-start demo org, middleware, routes.
//! [`App::build`] binds before it returns, so tests can ask for port 0 and read the port.

use std::net::TcpListener;
use std::time::Duration as StdDuration;

use actix_session::SessionMiddleware;
use actix_session::config::{BrowserSession, TtlExtensionPolicy};
use actix_web::cookie::{Key, SameSite, time::Duration};
use actix_web::dev::Server;
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{HttpServer, web};
use anyhow::Context;
use secrecy::ExposeSecret;

use crate::auth::{csrf, identity, password, session::DbSessionStore};
use crate::config::Settings;
use crate::content::{load_catalog, load_schemas};
use crate::domain::entities::Schemas;
use crate::domain::marketplace::Catalog;
use crate::domain::permissions::Role;
use crate::files::object::FileStore;
use crate::jobs::{WorkerConfig, background, maintenance};
use crate::state::AppState;
use crate::store::{self, Db};
use crate::web::layout;

/// The login created on first start, printed once by `serve`.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub org_slug: String,
    pub email: String,
    pub password: String,
}

pub struct App {
    port: u16,
    server: Server,
    db: Db,
    /// The job worker opens connections of its own (on its own thread).
    database_url: String,
    workers: usize,
    lease_secs: i64,
    import_ttl_secs: i64,
    import_retention_secs: i64,
    export_retention_secs: i64,
    fetch_private_networks: bool,
    file_limits: crate::files::Limits,
    files: FileStore,
    catalog: std::sync::Arc<Catalog>,
    schemas: std::sync::Arc<Schemas>,
    pub demo_login: Option<DemoLogin>,
}

/// The Content-Security-Policy: our own scripts and styles only, no inline script, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// Connects and migrates.
pub async fn open_database(settings: &crate::config::DbSettings) -> anyhow::Result<Db> {
    settings.ensure_data_dir()?;
    let db = Db::connect(&settings.database_url, settings.pool_size).await?;
    db.migrate().await?;
    Ok(db)
}

/// On a database without any organization: the demo org and its owner, with a one-time password.
pub async fn create_demo_org(db: &Db) -> anyhow::Result<Option<DemoLogin>> {
    if store::accounts::count_orgs(db).await? > 0 {
        return Ok(None);
    }
    let (org, _) = store::accounts::ensure_org(db, "demo", "Demo Organization").await?;
    let email = "admin@example.com".to_string();
    let otp = password::one_time_password()?;
    let hash = password::hash(otp.clone()).await?;
    let user = store::accounts::create_user(db, &email, "Demo Admin", &hash, true).await?;
    store::accounts::upsert_membership(db, org, user, Role::Owner).await?;
    store::accounts::set_last_org(db, user, org).await?;
    Ok(Some(DemoLogin { org_slug: "demo".into(), email, password: otp }))
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let schemas = load_schemas(settings.schema_dir.as_deref())?;
        let catalog = std::sync::Arc::new(load_catalog(&schemas, settings.marketplace_dir.as_deref()));
        let job_schemas = std::sync::Arc::new(schemas.clone());
        let db = open_database(&settings.db).await?;
        let demo_login = create_demo_org(&db).await?;
        // Computed now, so the first sign-in with an unknown email costs what later ones do.
        password::dummy_hash().await?;
        let key_bytes = settings.load_or_create_session_key()?;
        let key = Key::try_from(key_bytes.expose_secret()).context("session key")?;
        // every instance on the database must sign with the same key
        let mine = crate::domain::secret::fingerprint(key_bytes.expose_secret());
        let recorded = store::instances::recorded_fingerprint(&db, &mine, settings.replace_session_key).await?;
        if let Some(why) = crate::domain::secret::mismatch(&mine, &recorded) {
            anyhow::bail!(why);
        }
        if settings.replace_session_key {
            tracing::warn!(fingerprint = %mine, "this instance's session key now is every instance's");
        }
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("cannot listen on {} (STEVEDORE_BIND)", settings.bind))?;
        let port = listener.local_addr().context("reading the bound port")?.port();
        let upload_limit = usize::try_from(settings.upload_limit).unwrap_or(usize::MAX);
        let idle = Duration::seconds(settings.idle_timeout.as_secs() as i64);
        let secure = settings.secure_cookies;
        let workers = settings.workers;
        let lease_secs = settings.job_lease_secs;
        let import_ttl_secs = settings.import_ttl_secs;
        let import_retention_secs = settings.import_retention_secs;
        let export_retention_secs = settings.export_retention_secs;
        let fetch_private_networks = settings.fetch_private_networks;
        let file_limits = settings.file_limits;
        let link_key = crate::domain::exports::link_key(key_bytes.expose_secret());
        let files = FileStore::from_settings(&settings.db.data_dir, settings.s3.as_ref())?;
        let database_url = settings.db.database_url.clone();
        tracing::info!(store = %files.describe(), "files");
        let api_doc = crate::web::api::docs::document(&schemas);
        let state = web::Data::new(AppState {
            db: db.clone(),
            settings,
            schemas,
            link_key,
            files: files.clone(),
            catalog: catalog.clone(),
            rate_limits: Default::default(),
            api_doc,
            record_counts: Default::default(),
            api_keys: Default::default(),
        });
        let server = HttpServer::new(move || {
            let sessions = SessionMiddleware::builder(DbSessionStore::new(state.db.clone()), key.clone())
                .cookie_name("stevedore_session".into())
                .cookie_http_only(true)
                .cookie_secure(secure)
                .cookie_same_site(SameSite::Lax)
                .session_lifecycle(
                    BrowserSession::default()
                        .state_ttl(idle)
                        .state_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest),
                )
                .build();
            let headers = DefaultHeaders::new()
                .add(("Content-Security-Policy", CSP))
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("X-Frame-Options", "DENY"))
                .add(("Referrer-Policy", "same-origin"))
                .add(("Cross-Origin-Opener-Policy", "same-origin"))
                .add(("Permissions-Policy", "camera=(), microphone=(), geolocation=()"))
                .add(("Cache-Control", "no-store"));
            actix_web::App::new()
                .app_data(state.clone())
                .app_data(web::FormConfig::default().limit(csrf::FORM_LIMIT))
                .app_data(web::JsonConfig::default().limit(1 << 20))
                .app_data(web::PayloadConfig::default().limit(upload_limit))
                .configure(crate::web::routes)
                .default_service(web::to(layout::not_found))
                .wrap(from_fn(csrf::check_csrf))
                .wrap(from_fn(identity::load_identity))
                .wrap(from_fn(layout::error_pages))
                .wrap(sessions)
                .wrap(headers)
                .wrap(from_fn(crate::telemetry::log_requests))
        })
        .listen(listener)
        .context("starting the HTTP server")?
        .shutdown_timeout(30)
        .disable_signals()
        .run();
        Ok(App {
            port,
            server,
            db,
            database_url,
            demo_login,
            workers,
            lease_secs,
            import_ttl_secs,
            import_retention_secs,
            export_retention_secs,
            fetch_private_networks,
            file_limits,
            files,
            catalog,
            schemas: job_schemas,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, finishing in-flight requests (30 s at most), with the
    /// in-process job worker (unless `--workers 0`) and the maintenance schedule alongside.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let worker = match self.workers {
            0 => None,
            n => {
                let config = WorkerConfig {
                    concurrency: n,
                    lease_secs: self.lease_secs,
                    import_ttl_secs: self.import_ttl_secs,
                    import_retention_secs: self.import_retention_secs,
                    export_retention_secs: self.export_retention_secs,
                    fetch_private_networks: self.fetch_private_networks,
                    file_limits: self.file_limits,
                    files: self.files.clone(),
                    catalog: self.catalog.clone(),
                    ..WorkerConfig::default()
                };
                let ran = background::worker(self.database_url.clone(), self.schemas.clone(), config, stop_rx.clone());
                Some(actix_web::rt::spawn(async move {
                    if let Err(e) = ran.await {
                        tracing::error!(error = ?e, "the job worker stopped");
                    }
                }))
            }
        };
        let schedule = actix_web::rt::spawn(schedule_maintenance(self.db.clone(), stop_rx));
        // At SIGINT/SIGTERM: jobs are asked to stop at once, while the server drains requests.
        let handle = self.server.handle();
        let signals = actix_web::rt::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping: finishing requests in flight; jobs go back to the queue");
            let _ = stop_tx.send(true);
            handle.stop(true).await;
        });
        let result = self.server.await;
        signals.abort();
        let bound = crate::jobs::worker::STOP_GRACE + StdDuration::from_secs(10);
        if let Some(w) = worker
            && tokio::time::timeout(bound, w).await.is_err()
        {
            tracing::warn!("jobs still running at exit; their leases let another worker resume them");
        }
        schedule.abort();
        self.db.close().await;
        result
    }
}

/// Resolves at SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Offers the maintenance job every ten minutes until `stop`.
pub async fn schedule_maintenance(db: Db, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(StdDuration::from_secs(maintenance::EVERY_SECS as u64));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = maintenance::schedule(&db).await {
                    tracing::warn!(error = ?e, "scheduling maintenance failed");
                }
            }
            _ = stop.changed() => return,
        }
    }
}
