//! The one helper set of the API tests.
//!
//! - Apps: `spawn_app()` is the real app on a random port with a fresh database (a temporary
//!   SQLite file, or its own schema on PostgreSQL when `TEST_DATABASE_URL` is set); `app()`
//!   is the usual start of a page test: no in-process worker (tests `drain` the queue, so
//!   every step is deterministic), ada@acme.test owning acme, and a client signed in as her.
//! - `Client`: a cookie-keeping HTTP client that follows no redirects so tests can see them,
//!   with the import flow as a user goes through it (`upload`, `confirm_mapping`,
//!   `upload_mapped`, `import_action`).
//! - The import flow with the queue run in between: `validated`, `start_import`,
//!   `roll_back`, `import_file`; `wait_for_import` polls an import a real server runs.
//! - Reading pages through an HTML parser (scraper), by ids, classes and roles: `texts`,
//!   `text`, `count`, `attrs`, `html_of`, `definition`, `stat`, `first_id`, `csrf_token`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use scraper::{ElementRef, Html, Selector};
use stevedore::config::{CommonArgs, ServeArgs, Settings};
use stevedore::startup::App;
use stevedore::store::Db;

pub struct TestApp {
    pub base: String,
    pub db: Db,
    /// Kept alive for the test's duration: the SQLite file and session key live here.
    pub _data_dir: tempfile::TempDir,
    pub demo_password: Option<String>,
    /// Whether jobs may fetch file URLs on private networks (as the app was set up).
    pub fetch_private: bool,
    /// The app's file limits, which the jobs `drain` runs read files with.
    pub file_limits: stevedore::files::Limits,
    /// Where files go (as the app was set up).
    pub files: stevedore::files::object::FileStore,
    /// Extra marketplace bundles (as the app was set up).
    pub marketplace_dir: Option<std::path::PathBuf>,
}

/// The database URL for a fresh test database: SQLite in `dir`, or a new schema in
/// `TEST_DATABASE_URL`'s PostgreSQL database.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let schema = format!("t_{}", stevedore::random_token(8).unwrap());
            let admin = Db::connect(&url, 1).await.expect("TEST_DATABASE_URL must be reachable");
            if let Db::Postgres(p) = &admin {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(p).await.unwrap();
            }
            admin.close().await;
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}options%5Bsearch_path%5D={schema}")
        }
        _ => format!("sqlite://{}", dir.join("test.db").display()),
    }
}

pub fn settings(dir: &std::path::Path, database_url: &str, tweak: impl FnOnce(&mut ServeArgs)) -> Settings {
    let common = CommonArgs {
        data_dir: dir.to_path_buf(),
        database_url: Some(database_url.to_string()),
        db_pool_size: "4".into(),
        log_format: "text".into(),
    };
    let mut serve = ServeArgs {
        bind: "127.0.0.1:0".into(),
        session_key: None,
        upload_limit: "512MiB".into(),
        idle_timeout_minutes: "30".into(),
        session_lifetime_minutes: "480".into(),
        secure_cookies: "false".into(),
        trust_proxy: "false".into(),
        schema_dir: None,
        marketplace_dir: None,
        workers: "2".into(),
        job_lease_secs: "30".into(),
        import_ttl_hours: "24".into(),
        import_retention_days: "90".into(),
        export_retention_days: "7".into(),
        fetch_private_networks: "false".into(),
        replace_session_key: "false".into(),
        max_columns: "1024".into(),
        max_rows: "2000000".into(),
        max_cell_kib: "32".into(),
        max_xlsx_inflated_mib: "2048".into(),
        max_xlsx_shared_strings_mib: "64".into(),
        api_rate_limit: "600".into(),
        metrics_token: None,
        s3_bucket: None,
        s3_endpoint: None,
        s3_region: "us-east-1".into(),
        s3_prefix: "".into(),
        s3_access_key_id: None,
        s3_secret_access_key: None,
    };
    tweak(&mut serve);
    Settings::from_args(&common, &serve).expect("test settings are valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut ServeArgs)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        stevedore::telemetry::init(false);
    }
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let settings = settings(dir.path(), &url, tweak);
    let fetch_private = settings.fetch_private_networks;
    let file_limits = settings.file_limits;
    let files =
        stevedore::files::object::FileStore::from_settings(&settings.db.data_dir, settings.s3.as_ref()).unwrap();
    let marketplace_dir = settings.marketplace_dir.clone();
    let app = App::build(settings).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let demo_password = app.demo_login.as_ref().map(|d| d.password.clone());
    let db = Db::connect(&url, 2).await.unwrap();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp { base, db, _data_dir: dir, demo_password, fetch_private, file_limits, files, marketplace_dir }
}

pub const PASSWORD: &str = "correct horse battery";

/// The owner `app()` signs in.
pub const OWNER: &str = "ada@acme.test";

/// The app without an in-process worker, [`OWNER`] owning the org `acme`, and a client
/// signed in as her.
pub async fn app() -> (TestApp, Client) {
    app_with(|_| {}).await
}

/// [`app()`] with more settings changed.
pub async fn app_with(tweak: impl FnOnce(&mut ServeArgs)) -> (TestApp, Client) {
    let app = spawn_app_with(|s| {
        s.workers = "0".into();
        tweak(s);
    })
    .await;
    app.user("acme", OWNER, "owner").await;
    let c = app.signed_in(OWNER).await;
    (app, c)
}

impl TestApp {
    /// Creates a user with [`PASSWORD`] and a role in an org (created when missing).
    pub async fn user(&self, org: &str, email: &str, role: &str) {
        stevedore::cli::add_user(&self.db, org, email, role, "", PASSWORD).await.unwrap();
    }

    pub fn client(&self) -> Client {
        Client {
            base: self.base.clone(),
            http: awc::Client::builder().disable_redirects().finish(),
            cookies: BTreeMap::new(),
        }
    }

    /// A client signed in as `email` (with [`PASSWORD`]).
    pub async fn signed_in(&self, email: &str) -> Client {
        let mut c = self.client();
        let r = c.login(email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "login of {email} failed: {}", r.body);
        c
    }

    pub async fn user_id(&self, email: &str) -> i64 {
        stevedore::store::accounts::user_by_email(&self.db, email).await.unwrap().unwrap().id
    }

    pub async fn org_id(&self, slug: &str) -> i64 {
        stevedore::store::accounts::org_by_slug(&self.db, slug).await.unwrap().unwrap().id
    }

    /// Stores a record the way the importer will: validated by the schema first.
    pub async fn add_record(&self, org: &str, entity: &str, cells: &[(&str, &str)]) {
        use stevedore::store::records::{self, NewRecord};
        let org = stevedore::domain::ids::OrgId::new(self.org_id(org).await);
        let schemas = stevedore::content::load_schemas(None).unwrap();
        let r = schemas.get(entity).unwrap().prepare(|f| cells.iter().find(|(n, _)| *n == f).map(|(_, v)| *v)).unwrap();
        records::insert(&self.db, org, entity, &NewRecord::from(&r)).await.unwrap().unwrap();
    }

    /// Moves a completed export's completion `secs` into the past.
    pub async fn backdate_export(&self, id: i64, secs: i64) {
        let sql = "UPDATE export_requests SET completed_at = completed_at - $2 WHERE id = $1";
        match &self.db {
            Db::Sqlite(p) => sqlx::query(sql).bind(id).bind(secs).execute(p).await.map(|_| ()).unwrap(),
            Db::Postgres(p) => sqlx::query(sql).bind(id).bind(secs).execute(p).await.map(|_| ()).unwrap(),
        }
    }

    /// Runs maintenance now (and whatever else is due).
    pub async fn maintain(&self) {
        self.queue_maintenance().await;
        self.drain().await;
    }

    /// Queues a maintenance run outside the schedule's dedupe (nothing runs it yet).
    pub async fn queue_maintenance(&self) {
        stevedore::jobs::enqueue(&self.db, None, stevedore::jobs::maintenance::KIND, &serde_json::json!({}), None)
            .await
            .unwrap();
    }

    /// Runs every due background job to completion, as a worker would.
    pub async fn drain(&self) {
        let schemas = std::sync::Arc::new(stevedore::content::load_schemas(None).unwrap());
        let config = stevedore::jobs::WorkerConfig {
            fetch_private_networks: self.fetch_private,
            file_limits: self.file_limits,
            files: self.files.clone(),
            catalog: std::sync::Arc::new(stevedore::content::load_catalog(&schemas, self.marketplace_dir.as_deref())),
            ..Default::default()
        };
        let worker = stevedore::jobs::Worker::with_all_handlers(self.db.clone(), schemas, config).unwrap();
        let (_tx, stop) = tokio::sync::watch::channel(false);
        for _ in 0..1000 {
            if !worker.run_one(&stop).await.unwrap() {
                return;
            }
        }
        panic!("the job queue never emptied");
    }

    /// Runs one statement with `binds` for `$1`, `$2`, … on either backend.
    pub async fn exec(&self, sql: &'static str, binds: &[i64]) {
        self.try_exec(sql, binds).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs `sql` with `binds`; the database's error as text when it refuses.
    pub async fn try_exec(&self, sql: &'static str, binds: &[i64]) -> Result<(), String> {
        match &self.db {
            Db::Sqlite(p) => binds.iter().fold(sqlx::query(sql), |q, b| q.bind(*b)).execute(p).await.map(|_| ()),
            Db::Postgres(p) => binds.iter().fold(sqlx::query(sql), |q, b| q.bind(*b)).execute(p).await.map(|_| ()),
        }
        .map_err(|e| e.to_string())
    }

    /// The one number a query with `binds` answers, on either backend.
    pub async fn scalar(&self, sql: &'static str, binds: &[i64]) -> i64 {
        match &self.db {
            Db::Sqlite(p) => binds.iter().fold(sqlx::query_scalar(sql), |q, b| q.bind(*b)).fetch_one(p).await,
            Db::Postgres(p) => binds.iter().fold(sqlx::query_scalar(sql), |q, b| q.bind(*b)).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The one text a query with `binds` answers, on either backend.
    pub async fn text(&self, sql: &'static str, binds: &[i64]) -> String {
        match &self.db {
            Db::Sqlite(p) => binds.iter().fold(sqlx::query_scalar(sql), |q, b| q.bind(*b)).fetch_one(p).await,
            Db::Postgres(p) => binds.iter().fold(sqlx::query_scalar(sql), |q, b| q.bind(*b)).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn role_of(&self, org: &str, email: &str) -> Option<String> {
        let org = stevedore::domain::ids::OrgId::new(self.org_id(org).await);
        let user = stevedore::domain::ids::UserId::new(self.user_id(email).await);
        stevedore::store::accounts::member(&self.db, org, user).await.unwrap().map(|m| m.role)
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub body: String,
    /// The body as received (a zip, say).
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn location(&self) -> String {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    }
    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        csrf_token(&self.body)
    }
    /// Asserts a 303 (showing the body otherwise); the Location it points to.
    pub fn see_other(&self) -> String {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        self.location()
    }
}

pub struct Client {
    pub base: String,
    http: awc::Client,
    pub cookies: BTreeMap<String, String>,
}

impl Client {
    /// A client of the app at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Client {
        Client {
            base: base.to_string(),
            http: awc::Client::builder().disable_redirects().finish(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep_cookies(&mut self, headers: &awc::http::header::HeaderMap) {
        for v in headers.get_all("set-cookie") {
            let Ok(v) = v.to_str() else { continue };
            let first = v.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            let expired = v.to_ascii_lowercase().contains("max-age=0") || value.is_empty();
            if expired {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.cookies.get("stevedore_session").cloned()
    }

    async fn finish(
        &mut self,
        mut res: awc::ClientResponse<
            impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
        >,
    ) -> Resp {
        self.keep_cookies(res.headers());
        let body = res.body().limit(64 << 20).await.unwrap();
        Resp {
            status: res.status(),
            headers: res.headers().clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
            bytes: body.to_vec(),
        }
    }

    /// GETs `path` as htmx does (`HX-Request: true`), with the session's cookies and
    /// without keeping any it sets: (status, its `Vary` header, body).
    pub async fn htmx_get(&self, path: &str) -> (StatusCode, String, String) {
        let mut res = self
            .http
            .get(format!("{}{path}", self.base))
            .insert_header(("cookie", self.cookie_header()))
            .insert_header(("hx-request", "true"))
            .send()
            .await
            .unwrap();
        let vary = res.headers().get("vary").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let body = res.body().limit(64 << 20).await.unwrap();
        (res.status(), vary, String::from_utf8_lossy(&body).into_owned())
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .insert_header(("cookie", self.cookie_header()))
            .send()
            .await
            .unwrap();
        self.finish(res).await
    }

    /// GETs `path` with extra request headers (`Authorization`, say).
    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.http.get(format!("{}{path}", self.base)).insert_header(("cookie", self.cookie_header()));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let res = req.send().await.unwrap();
        self.finish(res).await
    }

    /// Any request: `method` to `path` with request headers and a body.
    pub async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let res = req.send_body(body).await.unwrap();
        self.finish(res).await
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .insert_header(("cookie", self.cookie_header()))
            .send_form(&fields)
            .await
            .unwrap();
        self.finish(res).await
    }

    /// POSTs a form with extra request headers (`Origin`, `Sec-Fetch-Site`, …).
    pub async fn post_form_with(&mut self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
        let mut req = self.http.post(format!("{}{path}", self.base)).insert_header(("cookie", self.cookie_header()));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let res = req.send_form(&fields).await.unwrap();
        self.finish(res).await
    }

    /// POSTs a multipart form (text fields and one file) to `path`; an upload carries the
    /// CSRF token in its query string as the upload form's action does.
    pub async fn post_multipart(&mut self, path: &str, fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Resp {
        let boundary = "stevedoreTestBoundary7MA4YWxkTrZu0gW";
        let mut body: Vec<u8> = vec![];
        for (k, v) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
            );
        }
        if let Some((name, bytes)) = file {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        self.post_raw(path, &format!("multipart/form-data; boundary={boundary}"), body).await
    }

    pub async fn post_raw(&mut self, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .insert_header(("cookie", self.cookie_header()))
            .insert_header(("content-type", content_type))
            .send_body(body)
            .await
            .unwrap();
        self.finish(res).await
    }

    /// POSTs a form with the CSRF token read from `page` (a GET of the page first).
    pub async fn submit(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Resp {
        let token = self.get(page).await.csrf();
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf_token", &token));
        self.post_form(action, &all).await
    }

    pub async fn login(&mut self, email: &str, password: &str) -> Resp {
        self.submit("/login", "/login", &[("email", email), ("password", password)]).await
    }

    /// Uploads `file` (name, bytes) for `entity` as the upload page does, with more form
    /// `fields` (`action`, `chunk_size`, `duplicate_handling`, …); the response.
    pub async fn upload(&mut self, entity: &str, file: (&str, &[u8]), fields: &[(&str, &str)]) -> Resp {
        let token = self.get("/settings/imports/upload").await.csrf();
        let mut all = vec![("resource", entity)];
        all.extend_from_slice(fields);
        self.post_multipart(&format!("/settings/imports/upload?csrf_token={token}"), &all, Some(file)).await
    }

    /// Confirms the column mapping import `id`'s page proposes, as a browser submits its form
    /// untouched; the response.
    pub async fn confirm_mapping(&mut self, id: i64) -> Resp {
        self.submit_mapping(id, &[]).await
    }

    /// Submits import `id`'s mapping form as the page proposes it, with the selects named in
    /// `changes` set to the values given (`map.kind`, `fmt.opened_on`, `vto.kind.0`); the
    /// response.
    pub async fn submit_mapping(&mut self, id: i64, changes: &[(&str, &str)]) -> Resp {
        let page = self.get(&format!("/settings/imports/{id}")).await;
        let form = mapping_form(&page.body);
        assert!(form.iter().any(|(k, _)| k.starts_with("map.")), "import {id} shows no mapping: {}", page.body);
        let mut form: Vec<(String, String)> = form
            .into_iter()
            .map(|(k, v)| match changes.iter().find(|(c, _)| *c == k) {
                Some((_, changed)) => (k, changed.to_string()),
                None => (k, v),
            })
            .collect();
        for (k, _) in changes {
            assert!(form.iter().any(|(f, _)| f == k), "the mapping form has no {k}");
        }
        form.retain(|(k, _)| k != "csrf_token");
        form.push(("csrf_token".into(), page.csrf()));
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.post_form(&format!("/settings/imports/{id}/mapping"), &form).await
    }

    /// Uploads and confirms the proposed mapping, both answered with a 303; the import id.
    /// Validation is queued, not run (see [`validated`]).
    pub async fn upload_mapped(&mut self, entity: &str, file: (&str, &[u8]), fields: &[(&str, &str)]) -> i64 {
        let id = id_in(&self.upload(entity, file, fields).await.see_other());
        self.confirm_mapping(id).await.see_other();
        id
    }

    /// Presses one of import `id`'s buttons (`start`, `pause`, `resume`, `rollback`) with
    /// more form `fields`, the CSRF token read from its page; the response. Nothing runs yet.
    pub async fn import_action(&mut self, id: i64, action: &str, fields: &[(&str, &str)]) -> Resp {
        self.submit(&format!("/settings/imports/{id}"), &format!("/settings/imports/{id}/{action}"), fields).await
    }
}

/// What the page's mapping form sends untouched: each select's selected option (the first
/// enabled one when none is marked) and each hidden input, in page order.
pub fn mapping_form(html: &str) -> Vec<(String, String)> {
    let doc = Html::parse_document(html);
    let form = doc.select(&selector("form[data-mapping-form]")).next().expect("a mapping form");
    let mut out = vec![];
    for el in form.select(&selector("select, input[type=hidden]")) {
        let Some(name) = el.attr("name") else { continue };
        let value = if el.value().name() == "select" {
            let options: Vec<ElementRef> = el.select(&selector("option")).collect();
            let chosen = options
                .iter()
                .find(|o| o.attr("selected").is_some())
                .or_else(|| options.iter().find(|o| o.attr("disabled").is_none()));
            chosen.and_then(|o| o.attr("value")).unwrap_or_default().to_string()
        } else {
            el.attr("value").unwrap_or_default().to_string()
        };
        out.push((name.to_string(), value));
    }
    out
}

/// The id at the end of a location such as `/settings/imports/12`.
pub fn id_in(location: &str) -> i64 {
    location.rsplit('/').next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no id in {location:?}"))
}

/// Upload → proposed mapping → validation run; the import id.
pub async fn validated(
    app: &TestApp,
    c: &mut Client,
    entity: &str,
    file: (&str, &[u8]),
    fields: &[(&str, &str)],
) -> i64 {
    let id = c.upload_mapped(entity, file, fields).await;
    app.drain().await;
    id
}

/// Presses Start with more form `fields` (such as `confirm_delete`) and runs what it
/// queued; the response, whatever it is.
pub async fn start_import(app: &TestApp, c: &mut Client, id: i64, fields: &[(&str, &str)]) -> Resp {
    let r = c.import_action(id, "start", fields).await;
    app.drain().await;
    r
}

/// Presses Roll back (confirming the dialog) with more form `fields` (such as
/// `overwrite_changed`) and runs what it queued; the response.
pub async fn roll_back(app: &TestApp, c: &mut Client, id: i64, fields: &[(&str, &str)]) -> Resp {
    let r = c.import_action(id, "rollback", fields).await;
    app.drain().await;
    r
}

/// A whole import of `file` for `entity`: validated, started (a 303) and run; its id.
pub async fn import_file(app: &TestApp, c: &mut Client, entity: &str, file: (&str, &[u8])) -> i64 {
    let id = validated(app, c, entity, file, &[]).await;
    start_import(app, c, id, &[]).await.see_other();
    id
}

/// Polls import `id` (run by a server elsewhere) every `every` until `done` holds for it;
/// its row then, or `Err` with the last row seen once `deadline` has passed.
pub async fn wait_for_import(
    db: &Db,
    org: stevedore::domain::ids::OrgId,
    id: i64,
    deadline: Instant,
    every: Duration,
    done: impl Fn(&stevedore::domain::imports::Import) -> bool,
) -> Result<stevedore::domain::imports::Import, stevedore::domain::imports::Import> {
    loop {
        let row = stevedore::store::imports::get(db, org, id).await.unwrap().expect("the import exists");
        if done(&row) {
            return Ok(row);
        }
        if Instant::now() > deadline {
            return Err(row);
        }
        tokio::time::sleep(every).await;
    }
}

// Reading pages. Every helper parses the HTML and selects by CSS (ids, classes, roles, as
// the templates have them); text is what a reader sees, whitespace collapsed.

fn selector(css: &str) -> Selector {
    Selector::parse(css).unwrap_or_else(|e| panic!("bad selector {css:?}: {e}"))
}

fn words(el: ElementRef) -> String {
    el.text().flat_map(str::split_whitespace).collect::<Vec<_>>().join(" ")
}

/// The text of every element `css` selects, in page order.
pub fn texts(html: &str, css: &str) -> Vec<String> {
    Html::parse_document(html).select(&selector(css)).map(words).collect()
}

/// The text of the first element `css` selects; panics when there is none.
pub fn text(html: &str, css: &str) -> String {
    texts(html, css).into_iter().next().unwrap_or_else(|| panic!("nothing matches {css:?} in {html}"))
}

/// How many elements `css` selects.
pub fn count(html: &str, css: &str) -> usize {
    Html::parse_document(html).select(&selector(css)).count()
}

/// The `attr` attribute of every element `css` selects that has one, in page order.
pub fn attrs(html: &str, css: &str, attr: &str) -> Vec<String> {
    Html::parse_document(html).select(&selector(css)).filter_map(|e| e.attr(attr).map(String::from)).collect()
}

/// The markup of the first element `css` selects (the element included); panics when none.
pub fn html_of(html: &str, css: &str) -> String {
    let doc = Html::parse_document(html);
    let el = doc.select(&selector(css)).next().unwrap_or_else(|| panic!("nothing matches {css:?} in {html}"));
    el.html()
}

/// The text of the `<dd>` after the `<dt>` reading `term`, in the first element `scope` selects.
pub fn definition(html: &str, scope: &str, term: &str) -> String {
    let doc = Html::parse_document(html);
    let within = doc.select(&selector(scope)).next().unwrap_or_else(|| panic!("nothing matches {scope:?}"));
    within
        .select(&selector("dt"))
        .filter(|dt| words(*dt) == term)
        .find_map(|dt| dt.next_siblings().find_map(ElementRef::wrap))
        .map(words)
        .unwrap_or_else(|| panic!("no {term:?} in {scope:?}: {}", within.html()))
}

/// The number on the stat card labelled `label` (an import page's counts).
pub fn stat(html: &str, label: &str) -> i64 {
    let doc = Html::parse_document(html);
    let (value, name) = (selector(".stat-value"), selector(".stat-label"));
    doc.select(&selector(".stat"))
        .find(|card| card.select(&name).next().is_some_and(|l| words(l) == label))
        .and_then(|card| card.select(&value).next())
        .map(|v| words(v).replace(',', "").parse().unwrap_or_else(|e| panic!("stat {label}: {e}")))
        .unwrap_or_else(|| panic!("no stat {label}"))
}

/// The number in the id of the first element whose id is `prefix` and a number: the
/// newest row of a list (`export-12`, `mp-import-3`).
pub fn first_id(html: &str, prefix: &str) -> i64 {
    attrs(html, &format!("[id^=\"{prefix}\"]"), "id")
        .iter()
        .find_map(|id| id[prefix.len()..].parse().ok())
        .unwrap_or_else(|| panic!("no element with an id {prefix}N"))
}

/// The CSRF token of the first form on the page.
pub fn csrf_token(html: &str) -> String {
    attrs(html, "input[name=\"csrf_token\"]", "value").into_iter().next().expect("page has a CSRF field")
}
