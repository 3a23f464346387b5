//! The binary's subcommands and start-up errors, run as a user would run them.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::fresh_database_url;

fn stevedore(dir: &std::path::Path, url: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(args)
        .env("STEVEDORE_DATA_DIR", dir)
        .env("DATABASE_URL", url)
        .env_remove("STEVEDORE_SESSION_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[actix_web::test]
async fn migrate_and_user_add_work_and_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let (code, out, err) = stevedore(dir.path(), &url, &["migrate"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Database is up to date"));

    let (code, out, err) = stevedore(
        dir.path(),
        &url,
        &["user", "add", "--org", "acme-health", "--email", "Ada@Acme.test", "--role", "owner", "--password-stdin"],
        "correct horse battery\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "Created ada@acme.test as owner of acme-health (organization created).");

    let db = stevedore::store::Db::connect(&url, 1).await.unwrap();
    let user = stevedore::store::accounts::user_by_email(&db, "ada@acme.test").await.unwrap().unwrap();
    assert!(stevedore::auth::password::verify_blocking("correct horse battery", &user.password_hash));
    assert_eq!(stevedore::store::accounts::org_by_slug(&db, "acme-health").await.unwrap().unwrap().name, "Acme Health");

    for (args, stdin, expect) in [
        (
            vec![
                "user",
                "add",
                "--org",
                "acme-health",
                "--email",
                "b@acme.test",
                "--role",
                "admin",
                "--password-stdin",
            ],
            "correct horse battery\n",
            "--role: \"admin\" is not a role",
        ),
        (
            vec!["user", "add", "--org", "Acme", "--email", "b@acme.test", "--role", "owner", "--password-stdin"],
            "correct horse battery\n",
            "--org: \"Acme\" is not an organization slug",
        ),
        (
            vec!["user", "add", "--org", "acme", "--email", "b@acme.test", "--role", "owner", "--password-stdin"],
            "short\n",
            "password: Use at least 12 characters",
        ),
        (vec!["user", "add", "--org", "acme", "--email", "b@acme.test", "--role", "owner"], "", "--password-stdin"),
    ] {
        let (code, _, err) = stevedore(dir.path(), &url, &args, stdin);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert!(stevedore::store::accounts::user_by_email(&db, "b@acme.test").await.unwrap().is_none());
}

#[test]
fn invalid_settings_stop_start_up_with_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, expect) in [
        ("STEVEDORE_UPLOAD_LIMIT", "lots", "invalid setting STEVEDORE_UPLOAD_LIMIT: \"lots\" is not a size"),
        ("STEVEDORE_BIND", "localhost", "invalid setting STEVEDORE_BIND"),
        ("STEVEDORE_SESSION_KEY", "abcd", "invalid setting STEVEDORE_SESSION_KEY"),
        ("DATABASE_URL", "mysql://x", "invalid setting DATABASE_URL: must start with sqlite:// or postgres://"),
        ("STEVEDORE_IDLE_TIMEOUT_MINUTES", "0", "invalid setting STEVEDORE_IDLE_TIMEOUT_MINUTES"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_stevedore"))
            .env("STEVEDORE_DATA_DIR", dir.path())
            .env(var, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{var}");
        assert!(err.contains(expect), "{var}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{var}: {err}");
    }
}

/// The last line of a benchmark's output: its JSON figures.
fn figures(out: &str) -> serde_json::Value {
    serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[actix_web::test]
async fn bench_import_reports_its_ratio_to_the_floor_measured_in_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let mut args = vec!["bench", "import", "--rows", "3000", "--chunk", "500"];
    if url.starts_with("postgres") {
        args.extend(["--database", url.as_str()]);
    }
    let (code, out, err) = stevedore(dir.path(), &url, &args, "");
    assert_eq!(code, 0, "{out}\n{err}");
    let j = figures(&out);
    assert_eq!(j["rows"], 3000, "{j}");
    assert_eq!(j["floor_rows"], 3000, "the floor reads the same file: {j}");
    assert!(j["floor_rows_per_sec"].as_f64().unwrap() > 0.0, "{j}");
    let ratio = j["floor_ratio"].as_f64().unwrap();
    let expected = j["rows_per_sec"].as_f64().unwrap() / j["floor_rows_per_sec"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 0.01, "floor_ratio is the import's rows/s over the floor's: {j}");
    assert!(out.contains("ratio to the floor:"), "{out}");
    if url.starts_with("postgres") {
        assert!(j["copy_rows_per_sec"].as_f64().unwrap() > 0.0 && j["copy_ratio"].as_f64().is_some(), "{j}");
    } else {
        assert!(j.get("copy_ratio").is_none(), "COPY is PostgreSQL's: {j}");
    }
}

#[actix_web::test]
async fn bench_import_with_load_reports_what_the_people_using_the_app_saw() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let mut args = vec!["bench", "import", "--rows", "20000", "--load", "3"];
    if url.starts_with("postgres") {
        args.extend(["--database", url.as_str()]);
    }
    let (code, out, err) = stevedore(dir.path(), &url, &args, "");
    assert_eq!(code, 0, "{out}\n{err}");
    let j = figures(&out);
    assert_eq!(j["rows"], 20000, "{j}");
    assert!(j["load_requests"].as_i64().unwrap() >= 6, "three people signed in at least: {j}");
    assert_eq!(j["load_failures"], 0, "every answer was a page or a redirect: {out}");
    let (p50, p99) = (j["load_p50_ms"].as_f64().unwrap(), j["load_p99_ms"].as_f64().unwrap());
    assert!(p50 > 0.0 && p99 >= p50 && j["load_max_ms"].as_f64().unwrap() >= p99, "{j}");
    assert!(out.contains("load: 3 people"), "{out}");
    assert!(out.contains("sign in") && out.contains("Import History"), "per-request figures: {out}");
}

#[actix_web::test]
async fn bench_export_is_measured_against_the_sqlite3_shell() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    if url.starts_with("postgres") {
        return; // the reference is SQLite's own shell
    }
    let (code, out, err) = stevedore(dir.path(), &url, &["bench", "export", "--rows", "3000"], "");
    assert_eq!(code, 0, "{out}\n{err}");
    let j = figures(&out);
    assert_eq!(j["format"], "csv", "{j}");
    assert!(j["rows"].as_i64().unwrap() > 2500, "{j}");
    let shell = std::process::Command::new("sqlite3").arg("-version").output().is_ok();
    if shell {
        let ratio = j["cli_ratio"].as_f64().unwrap_or_else(|| panic!("no cli_ratio: {j}"));
        let expected = j["rows_per_sec"].as_f64().unwrap() / j["cli_rows_per_sec"].as_f64().unwrap();
        assert!((ratio - expected).abs() < 0.01, "{j}");
    } else {
        assert!(out.contains("no sqlite3 command"), "{out}");
    }
}

#[actix_web::test]
async fn bench_floor_and_import_take_your_own_file_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let schema = dir.path().join("gadgets.toml");
    std::fs::write(
        &schema,
        "entity = \"gadgets\"\nlabel = \"Gadgets\"\nsingular = \"Gadget\"\nkey = \"code\"\n\
         [[fields]]\nname = \"code\"\ntype = \"text\"\nrequired = true\n\
         [[fields]]\nname = \"weight\"\ntype = \"integer\"\nmin = 0\n",
    )
    .unwrap();
    let file = dir.path().join("gadgets.csv");
    let mut csv = String::from("code,weight\n");
    for i in 0..200 {
        csv.push_str(&format!("G{i},{i}\n"));
    }
    csv.push_str("BAD,-5\n");
    std::fs::write(&file, csv).unwrap();
    let (file, schema) = (file.display().to_string(), schema.display().to_string());

    let (code, out, err) = stevedore(dir.path(), &url, &["bench", "floor", "--file", &file, "--schema", &schema], "");
    assert_eq!(code, 0, "{out}\n{err}");
    let j = figures(&out);
    assert_eq!(j["floor_rows"], 201, "{j}");
    assert!(out.contains("200 valid"), "the floor checks types too: {out}");

    let args = ["bench", "import", "--file", &file, "--schema", &schema, "--chunk", "50"];
    let (code, out, err) = stevedore(dir.path(), &url, &args, "");
    assert_eq!(code, 0, "{out}\n{err}");
    let j = figures(&out);
    assert_eq!(
        (j["rows"].as_i64(), j["created"].as_i64(), j["invalid"].as_i64()),
        (Some(201), Some(200), Some(1)),
        "{j}"
    );

    let (code, _, err) = stevedore(dir.path(), &url, &["bench", "import", "--file", &file, "--merge"], "");
    assert_ne!(code, 0);
    assert!(err.contains("--merge needs the generated file"), "{err}");
}

#[actix_web::test]
async fn bench_history_measures_every_view_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let mut args = vec!["bench", "history", "--imports", "400", "--requests", "3"];
    if url.starts_with("postgres") {
        args.extend(["--database", url.as_str()]);
    }
    let (code, out, err) = stevedore(dir.path(), &url, &args, "");
    assert_eq!(code, 0, "{out}\n{err}");
    let j = figures(&out);
    assert_eq!(j["imports"], 400, "{j}");
    for view in ["unfiltered", "by_status", "by_entity_type", "by_both", "deep_page"] {
        let p99 = j[view]["p99_ms"].as_f64().unwrap_or_else(|| panic!("{view} missing: {j}"));
        assert!(p99 > 0.0 && p99 >= j[view]["p50_ms"].as_f64().unwrap(), "{view}: {j}");
    }
    // 400 imports are 16 pages: following Next stops at the last one
    assert!(out.contains("page=16)"), "the deep page is the last one: {out}");
}

#[actix_web::test]
async fn bench_pickup_times_jobs_taken_by_worker_processes() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    if !url.starts_with("postgres") {
        let (code, _, err) = stevedore(dir.path(), &url, &["bench", "pickup", "--database", &url], "");
        assert_eq!(code, 1);
        assert!(err.contains("give a PostgreSQL --database"), "{err}");
        return;
    }
    let args = ["bench", "pickup", "--jobs", "5", "--processes", "1", "--database", &url];
    let (code, out, err) = stevedore(dir.path(), &url, &args, "");
    assert_eq!(code, 0, "{out}\n{err}");
    let j = figures(&out);
    assert_eq!((j["jobs"].as_u64(), j["workers"].as_u64()), (Some(5), Some(1)), "{j}");
    let (p50, p99) = (j["p50_ms"].as_f64().unwrap(), j["p99_ms"].as_f64().unwrap());
    assert!(p50 > 0.0 && p99 >= p50, "{j}");
    assert!(out.contains("job pick-up, 5 pings, 1 worker process(es)"), "{out}");
}

#[actix_web::test]
async fn bench_cluster_imports_through_instances_and_reads_their_lists() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    if !url.starts_with("postgres") {
        let (code, _, err) = stevedore(dir.path(), &url, &["bench", "cluster", "--database", &url], "");
        assert_eq!(code, 1);
        assert!(err.contains("give a PostgreSQL --database"), "{err}");
        return;
    }
    let args = [
        "bench",
        "cluster",
        "--rows",
        "300",
        "--instances",
        "2",
        "--processes",
        "1",
        "--clients",
        "3",
        "--secs",
        "1",
        "--database",
        &url,
    ];
    let (code, out, err) = stevedore(dir.path(), &url, &args, "");
    assert_eq!(code, 0, "{out}\n{err}");
    let j = figures(&out);
    assert_eq!(
        (j["rows"].as_u64(), j["instances"].as_u64(), j["worker_processes"].as_u64()),
        (Some(300), Some(2), Some(1))
    );
    assert_eq!(j["server_errors"], 0, "{j}");
    for page in ["import_history", "api_imports", "exports"] {
        let n = j[page]["requests"].as_u64().unwrap_or(0);
        assert!(n > 0 && j[page]["p99_ms"].as_f64().unwrap() >= j[page]["p50_ms"].as_f64().unwrap(), "{page}: {j}");
    }
    assert!(out.contains("import of 300 rows over the API") && out.contains("\"completed\""), "{out}");
}
