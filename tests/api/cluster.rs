//! Several instances on one PostgreSQL database and one bucket (issue 16): three `serve`
//! processes (A takes no jobs) and one `stevedore worker`, each with a data directory of its
//! own, files in a moto S3 bucket. A user signs in on A and uploads there; validation runs
//! on another process, which reads the file from the bucket; the detail page on C shows the
//! import moving; the process running the import is killed with SIGKILL and another one
//! finishes it with exactly the file's rows. A session made on A is good on B and C; an
//! API download link signed on A works on B; logging out on B ends the session on A; API
//! rate limits and sign-in throttling count across instances; an instance with another
//! session key refuses to start.
//!
//! Runs on PostgreSQL (`TEST_DATABASE_URL`) with moto; says so and passes otherwise (SQLite
//! is one instance's database).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use stevedore::domain::imports::Stage;
use stevedore::store::Db;

use crate::helpers::{Client, PASSWORD, fresh_database_url, wait_for_import};
use crate::s3::{BUCKET, S3Server};

const ROWS: usize = 40_000;
const KEY: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

/// One process of the deployment, killed (SIGKILL) and reaped when dropped.
struct Process {
    name: &'static str,
    child: Child,
    dir: PathBuf,
    base: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

/// The environment every process shares: the database, the bucket, the key.
fn command(url: &str, s3: &S3Server, dir: &Path, key: &str) -> Command {
    std::fs::create_dir_all(dir).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_stevedore"));
    c.env("STEVEDORE_DATA_DIR", dir)
        .env("DATABASE_URL", url)
        .env("STEVEDORE_SESSION_KEY", key)
        .env("STEVEDORE_S3_BUCKET", BUCKET)
        .env("STEVEDORE_S3_ENDPOINT", &s3.endpoint)
        .env("STEVEDORE_S3_PREFIX", "cluster/")
        .env("STEVEDORE_S3_ACCESS_KEY_ID", "AKIDSTEVEDORE")
        .env("STEVEDORE_S3_SECRET_ACCESS_KEY", "s3cr3t")
        .env("STEVEDORE_JOB_LEASE_SECS", "2")
        .env("STEVEDORE_API_RATE_LIMIT", "12")
        .env("STEVEDORE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log")).unwrap());
    c
}

fn serve(name: &'static str, url: &str, s3: &S3Server, root: &Path, workers: &str) -> Process {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = root.join(name);
    let child = command(url, s3, &dir, KEY)
        .env("STEVEDORE_BIND", format!("127.0.0.1:{port}"))
        .env("STEVEDORE_WORKERS", workers)
        .arg("serve")
        .spawn()
        .unwrap();
    Process { name, child, dir, base: format!("http://127.0.0.1:{port}") }
}

async fn wait_up(p: &mut Process) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe = awc::Client::new();
    loop {
        let ok = probe.get(format!("{}/readyz", p.base)).send().await.map(|r| r.status() == StatusCode::OK);
        if ok.unwrap_or(false) {
            return;
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("instance {} exited ({status}):\n{}", p.name, p.log());
        }
        assert!(Instant::now() < deadline, "instance {} did not get ready:\n{}", p.name, p.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Files below `dir` (recursively) whose path contains `part`.
fn files_in(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_in(&p, part));
        } else if p.to_string_lossy().contains(part) {
            out.push(p);
        }
    }
    out
}

/// How many jobs of `kind` the process ran to the end (its log says so).
fn ran(p: &Process, kind: &str) -> usize {
    p.log().lines().filter(|l| l.contains("job succeeded") && l.contains(kind)).count()
}

/// The pid in a job lease owner (`host:pid:token`).
fn pid_of(owner: &str) -> u32 {
    owner.split(':').nth(1).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("lease owner {owner:?}"))
}

/// The worker holding the newest running job of `kind`.
async fn lease_owner(db: &Db, kind: &str) -> Option<String> {
    let Db::Postgres(p) = db else { unreachable!("PostgreSQL only") };
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT lease_owner FROM jobs WHERE kind = $1 AND status = 'running' ORDER BY id DESC LIMIT 1",
    )
    .bind(kind)
    .fetch_optional(p)
    .await
    .unwrap()
    .flatten()
}

#[actix_web::test]
async fn three_instances_and_a_worker_share_one_database_and_one_bucket() {
    if !std::env::var("TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres")) {
        eprintln!("cluster test skipped: it runs on PostgreSQL (TEST_DATABASE_URL=postgres://…)");
        return;
    }
    let Some(s3) = S3Server::start().await else { return };
    let root = tempfile::tempdir().unwrap();
    let url = fresh_database_url(root.path()).await;
    let mut add = command(&url, &s3, &root.path().join("cli"), KEY)
        .args(["user", "add", "--org", "acme", "--email", "ada@acme.test", "--role", "owner", "--password-stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        add.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
        assert!(add.wait().unwrap().success());
    }

    // A serves pages only; B and C run jobs too, and so does the worker W
    let mut a = serve("a", &url, &s3, root.path(), "0");
    let mut b = serve("b", &url, &s3, root.path(), "1");
    let mut c_ = serve("c", &url, &s3, root.path(), "1");
    for p in [&mut a, &mut b, &mut c_] {
        wait_up(p).await;
    }
    let w_dir = root.path().join("w");
    let w = Process {
        name: "w",
        child: command(&url, &s3, &w_dir, KEY).args(["worker", "--concurrency", "1"]).spawn().unwrap(),
        dir: w_dir,
        base: String::new(),
    };
    let mut procs = vec![b, c_, w];

    // an instance with another key refuses to start, saying why
    let other = "7a".repeat(64);
    let refused = command(&url, &s3, &root.path().join("d"), &other)
        .env("STEVEDORE_BIND", "127.0.0.1:0")
        .arg("serve")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!refused.status.success(), "an instance with another key started");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("is not the one the other instances on this database sign with"), "{said}");
    assert!(said.contains("STEVEDORE_SESSION_KEY"), "{said}");

    // sign in and upload on A
    let mut c = Client::new(&a.base);
    assert_eq!(c.login("ada@acme.test", PASSWORD).await.status, StatusCode::SEE_OTHER);
    let (id, db, org) = crate::crash::upload_sites(&mut c, &url, ROWS).await;
    let keys = s3.keys().await;
    assert!(keys.iter().any(|k| k.starts_with(&format!("cluster/imports/{}/", org.get()))), "in the bucket: {keys:?}");
    assert!(files_in(&a.dir.join("files"), "imports").is_empty(), "A kept no copy once the bucket had it");

    // validation ran on another process, which read the file from the bucket
    let deadline = Instant::now() + Duration::from_secs(300);
    let (slow, fast) = (Duration::from_millis(200), Duration::from_millis(20));
    let ready = wait_for_import(&db, org, id, deadline, slow, |r| r.stage == Stage::Ready).await;
    let ready = ready.unwrap_or_else(|r| panic!("validation did not finish: {} {}", r.stage.as_str(), r.reason));
    assert_eq!(ready.validated.to_create, ROWS as i64);
    assert!(ran(&a, "import.validate") == 0, "A runs no jobs");
    let validators: Vec<&str> = procs.iter().filter(|p| ran(p, "import.validate") > 0).map(|p| p.name).collect();
    assert_eq!(validators.len(), 1, "one of B, C, W validated: {validators:?}");

    // start on B with the session made on A; C's detail page shows it moving
    c.base = procs[0].base.clone();
    c.import_action(id, "start", &[]).await.see_other();
    c.base = procs[1].base.clone();
    let progress = |html: &str| -> Option<i64> {
        let v = crate::helpers::attrs(html, "#import-progress", "value");
        v.first().and_then(|v| v.parse().ok())
    };
    let first = wait_for_import(&db, org, id, deadline, fast, |r| r.processed_rows >= 200).await;
    let first = first.expect("the import never started");
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let shown = progress(&page.body).expect("the detail page on C shows the import's progress");
    assert!(shown >= first.processed_rows, "{shown} rows shown");

    // kill -9 the process running the import: another one finishes it
    let runner = pid_of(&lease_owner(&db, "import.process").await.expect("an import job runs"));
    let at = procs.iter().position(|p| p.child.id() == runner).expect("B, C or W runs the import");
    let killed = procs.remove(at);
    let killed_name = killed.name;
    drop(killed);
    let at_kill = stevedore::store::imports::get(&db, org, id).await.unwrap().unwrap();
    assert_eq!(at_kill.stage, Stage::Importing, "killed before the import finished; use more rows");
    eprintln!("cluster: {killed_name} killed with {} of {ROWS} rows imported", at_kill.processed_rows);
    let done = wait_for_import(&db, org, id, deadline, slow, |r| r.stage != Stage::Importing).await;
    let done = done.unwrap_or_else(|r| {
        let logs: Vec<String> = procs.iter().map(|p| format!("--- {}\n{}", p.name, p.log())).collect();
        panic!(
            "the import did not finish after {killed_name} was killed ({} rows):\n{}",
            r.processed_rows,
            logs.join("\n")
        )
    });
    assert_eq!(done.stage, Stage::Completed, "{}", done.reason);
    assert_eq!((done.processed_rows, done.created_rows, done.failed_rows), (ROWS as i64, ROWS as i64, 0));
    let stored = stevedore::store::records::count(&db, org, "locations", None).await.unwrap();
    assert_eq!(stored, ROWS as i64, "every row once ({killed_name} killed at {} rows)", at_kill.processed_rows);
    let finishers: Vec<&str> = procs.iter().filter(|p| ran(p, "import.process") > 0).map(|p| p.name).collect();
    assert_eq!(finishers.len(), 1, "another process finished it: {finishers:?}");
    // and every instance's page says so
    c.base = procs[0].base.clone();
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert!(page.body.contains("Completed"), "{}", page.body);

    // an API link signed on A works on B, which reads the file from the bucket
    c.base = a.base.clone();
    let key = crate::api_v1::create_key(&mut c, "cluster", &["pf.import.upload"], "30").await;
    let auth = format!("Bearer {key}");
    let r = c.get_with(&format!("/api/v1/imports/{id}"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let link = v["_upload_csv_url"].as_str().expect("a signed link").to_string();
    let mut anon = Client::new(&procs[0].base);
    let file = anon.get(&link).await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.body);
    assert_eq!(file.body.lines().count(), ROWS + 1, "the whole file");
    assert!(file.body.contains("LOC-039999,Site number 39999"), "its rows");

    // the API key's limit (12 a minute) counts across instances: 1 request above, 11 more
    // spread over A, B and C pass, the next is refused wherever it goes
    let bases = [a.base.clone(), procs[0].base.clone(), procs.last().unwrap().base.clone()];
    let bases: Vec<&String> = bases.iter().filter(|b| !b.is_empty()).collect();
    for n in 0..11 {
        c.base = bases[n % bases.len()].clone();
        let r = c.get_with("/api/v1/imports?limit=1", &[("authorization", &auth)]).await;
        assert_eq!(r.status, StatusCode::OK, "request {} on {}: {}", n + 2, c.base, r.body);
    }
    for base in &bases {
        c.base = (*base).clone();
        let r = c.get_with("/api/v1/imports?limit=1", &[("authorization", &auth)]).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "on {}: {}", c.base, r.body);
    }

    // sign-in throttling counts across instances: five wrong passwords spread over them
    // lock the account on all
    let mut mallory = Client::new(&a.base);
    for n in 0..5 {
        mallory.base = bases[n % bases.len()].clone();
        let r = mallory.login("ada@acme.test", "not the password").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "wrong password {n}: {}", r.body);
    }
    mallory.base = a.base.clone();
    let r = mallory.login("ada@acme.test", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "locked on A after failures elsewhere: {}", r.body);

    // logging out on B ends the session on A
    c.base = procs[0].base.clone();
    assert_eq!(c.get("/settings/imports").await.status, StatusCode::OK);
    let r = c.submit("/settings/imports", "/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    c.base = a.base.clone();
    let r = c.get("/settings/imports").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "signed out on A too");
    assert!(r.location().starts_with("/login"), "{}", r.location());

    // no scratch copy of the bucket's files is left on any instance's disk
    for p in procs.iter().chain([&a]) {
        assert!(files_in(&p.dir.join("files"), ".scratch/").is_empty(), "{} left scratch copies", p.name);
    }
    db.close().await;
}
