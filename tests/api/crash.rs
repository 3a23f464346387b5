//! A server killed with SIGKILL in the middle of an import: after a restart the import
//! finishes and every valid row of a 100,000-row file is stored exactly once. Then the
//! same for its rollback: killed part-way, it finishes after a restart and leaves nothing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use stevedore::domain::imports::Stage;

use awc::http::StatusCode;
use stevedore::domain::ids::OrgId;
use stevedore::store::Db;

use crate::helpers::{Client, PASSWORD, fresh_database_url, wait_for_import};

const ROWS: usize = 100_000;

/// A server process, killed (SIGKILL) and reaped when dropped, even if the test fails.
struct Server(Child);

impl Server {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn server(dir: &std::path::Path, url: &str, port: u16) -> Server {
    Server(
        Command::new(env!("CARGO_BIN_EXE_stevedore"))
            .env("STEVEDORE_DATA_DIR", dir)
            .env("DATABASE_URL", url)
            .env("STEVEDORE_BIND", format!("127.0.0.1:{port}"))
            .env("STEVEDORE_JOB_LEASE_SECS", "2")
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap())
            .spawn()
            .unwrap(),
    )
}

async fn wait_up(c: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let probe = awc::Client::new();
    loop {
        let ok = probe.get(format!("{}/healthz", c.base)).send().await.map(|r| r.status() == StatusCode::OK);
        if ok.unwrap_or(false) {
            return;
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Uploads `rows` locations (`LOC-000000,Site number 0,…`) in chunks of 100 with the
/// proposed mapping, as acme's signed-in owner; the import, the database at `url` and acme.
pub(crate) async fn upload_sites(c: &mut Client, url: &str, rows: usize) -> (i64, Db, OrgId) {
    let mut csv = String::from("code,name,kind,city,capacity\n");
    for i in 0..rows {
        csv.push_str(&format!("LOC-{i:06},Site number {i},clinic,Portland,{}\n", i % 500));
    }
    let id = c.upload_mapped("locations", ("big.csv", csv.as_bytes()), &[("chunk_size", "100")]).await;
    let db = Db::connect(url, 2).await.unwrap();
    let org = OrgId::new(stevedore::store::accounts::org_by_slug(&db, "acme").await.unwrap().unwrap().id);
    (id, db, org)
}

#[actix_web::test]
async fn an_import_and_its_rollback_killed_mid_way_finish_after_restart_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let add = Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(["user", "add", "--org", "acme", "--email", "ada@acme.test", "--role", "owner", "--password-stdin"])
        .env("STEVEDORE_DATA_DIR", dir.path())
        .env("DATABASE_URL", &url)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut add = add;
        add.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
        assert!(add.wait().unwrap().success());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut srv = server(dir.path(), &url, port);
    let base = format!("http://127.0.0.1:{port}");
    let mut c = Client::new(&base);
    wait_up(&mut c).await;
    assert_eq!(c.login("ada@acme.test", PASSWORD).await.status, StatusCode::SEE_OTHER);

    let (id, db, org) = upload_sites(&mut c, &url, ROWS).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    let (slow, fast) = (Duration::from_millis(200), Duration::from_millis(20));
    let ready = wait_for_import(&db, org, id, deadline, slow, |r| r.stage == Stage::Ready).await;
    assert_eq!(ready.expect("validation did not finish").validated.to_create, ROWS as i64);
    c.import_action(id, "start", &[]).await.see_other();

    // kill -9 once some chunks are committed
    let at_kill = wait_for_import(&db, org, id, deadline, fast, |r| r.processed_rows >= 200).await;
    srv.kill();
    let at_kill = at_kill.expect("the import never started");
    assert_eq!(at_kill.stage, Stage::Importing);
    assert!(at_kill.processed_rows < ROWS as i64, "the import finished before the kill; use more rows");

    db.close().await;
    let mut srv = server(dir.path(), &url, port);
    wait_up(&mut c).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let done =
        wait_for_import(&db, org, id, deadline, slow, |r| r.stage != Stage::Importing).await.unwrap_or_else(|row| {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            panic!("the import did not finish after the restart ({} rows); server log:\n{log}", row.processed_rows)
        });
    srv.kill();
    assert_eq!(done.stage, Stage::Completed, "{}", done.reason);
    assert_eq!((done.processed_rows, done.created_rows, done.failed_rows), (ROWS as i64, ROWS as i64, 0));
    let stored = stevedore::store::records::count(&db, org, "locations", None).await.unwrap();
    assert_eq!(stored, ROWS as i64, "every row once (killed at {} rows)", at_kill.processed_rows);

    // the rollback, killed part-way (it undoes a chunk of journal entries per transaction)
    let mut srv = server(dir.path(), &url, port);
    wait_up(&mut c).await;
    c.import_action(id, "rollback", &[]).await.see_other();
    let deadline = Instant::now() + Duration::from_secs(300);
    let at_kill = wait_for_import(&db, org, id, deadline, fast, |r| r.rollback.rolled_back_rows >= 200).await;
    srv.kill();
    let at_kill = at_kill.expect("the rollback never started");
    assert_eq!(at_kill.stage, Stage::Completed, "killed before the rollback finished; use more rows");
    let mut srv = server(dir.path(), &url, port);
    wait_up(&mut c).await;
    let done = wait_for_import(&db, org, id, deadline, slow, |r| r.stage == Stage::RolledBack).await;
    let done = done.expect("the rollback did not finish after the restart");
    srv.kill();
    assert_eq!((done.rollback.rolled_back_rows, done.rollback.skipped), (ROWS as i64, 0));
    let left = stevedore::store::records::count(&db, org, "locations", None).await.unwrap();
    assert_eq!(left, 0, "every created record removed once (killed at {} undone)", at_kill.rollback.rolled_back_rows);
}
