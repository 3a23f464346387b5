//! `spawn_app()`: the real app on a random port with a fresh database (a temporary SQLite
//! file, or its own schema on PostgreSQL when `TEST_DATABASE_URL` is set), and `Client`,
//! a cookie-keeping HTTP client that follows no redirects so tests can see them.

use std::collections::BTreeMap;

use awc::http::StatusCode;
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
    /// Where export files go (as the app was set up).
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
    let files = stevedore::files::object::FileStore::from_settings(settings.s3.as_ref()).unwrap();
    let marketplace_dir = settings.marketplace_dir.clone();
    let app = App::build(settings).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let demo_password = app.demo_login.as_ref().map(|d| d.password.clone());
    let db = Db::connect(&url, 2).await.unwrap();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp { base, db, _data_dir: dir, demo_password, fetch_private, files, marketplace_dir }
}

pub const PASSWORD: &str = "correct horse battery";

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
        stevedore::jobs::enqueue(&self.db, None, stevedore::jobs::maintenance::KIND, &serde_json::json!({}), None)
            .await
            .unwrap();
        self.drain().await;
    }

    /// Runs every due background job to completion, as a worker would.
    pub async fn drain(&self) {
        let schemas = std::sync::Arc::new(stevedore::content::load_schemas(None).unwrap());
        let config = stevedore::jobs::WorkerConfig {
            fetch_private_networks: self.fetch_private,
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
        let marker = "name=\"csrf_token\" value=\"";
        let start = self.body.find(marker).expect("page has a CSRF field") + marker.len();
        self.body[start..].split('"').next().unwrap().to_string()
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

    /// POSTs a multipart form (text fields and one file) to `path`, which carries the
    /// CSRF token in its query string as the upload form's action does.
    /// Uploads a file for `entity` with the upload form's `fields`, then confirms the
    /// mapping `(field, column)`; returns the import id.
    pub async fn upload_mapped(
        &mut self,
        fields: &[(&str, &str)],
        file: (&str, &[u8]),
        mapping: &[(&str, &str)],
    ) -> i64 {
        let token = self.get("/settings/imports/upload").await.csrf();
        let r = self.post_multipart(&format!("/settings/imports/upload?csrf_token={token}"), fields, Some(file)).await;
        assert_eq!(r.status, awc::http::StatusCode::SEE_OTHER, "{}", r.body);
        let id: i64 = r.location().rsplit('/').next().unwrap().parse().unwrap();
        let token = self.get(&format!("/settings/imports/{id}")).await.csrf();
        let names: Vec<String> = mapping.iter().map(|(f, _)| format!("map.{f}")).collect();
        let mut form = vec![("csrf_token", token.as_str())];
        form.extend(names.iter().zip(mapping).map(|(n, (_, column))| (n.as_str(), *column)));
        let r = self.post_form(&format!("/settings/imports/{id}/mapping"), &form).await;
        assert_eq!(r.status, awc::http::StatusCode::SEE_OTHER, "{}", r.body);
        id
    }

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
}
