//! A passing database error in the middle of validation retries the job instead of failing
//! the import; on the job's last attempt it fails the import with a reason a person can
//! read, so no import is left validating forever. The error is injected by taking away a
//! table the validation phase reads (`record_unique_values`, read only once four phases
//! have run) and putting it back.

use stevedore::domain::ids::OrgId;
use stevedore::domain::imports::{Import, Stage};
use stevedore::store::Db;

use crate::helpers::{Client, TestApp, app};

const STAFF: &str = "employee_id,first_name,last_name,email,role,home_location
EMP-1,Ada,Lovelace,ada@acme.test,nurse,HQ
EMP-2,Alan,Turing,alan@acme.test,clinician,HQ
EMP-3,Grace,Hopper,grace@acme.test,nurse,NOWHERE
";

async fn job_state(db: &Db) -> (String, i64, String) {
    let sql = "SELECT status, attempts, last_error FROM jobs WHERE kind = 'import.validate' ORDER BY id DESC LIMIT 1";
    match db {
        Db::Sqlite(p) => sqlx::query_as(sql).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_as(sql).fetch_one(p).await,
    }
    .unwrap()
}

async fn import(app: &TestApp, id: i64) -> Import {
    let org = OrgId::new(app.org_id("acme").await);
    stevedore::store::imports::get(&app.db, org, id).await.unwrap().unwrap()
}

/// An owner of acme with one location, and a staff file uploaded and mapped (validation
/// queued, not run).
async fn mapped() -> (TestApp, Client, i64) {
    let (app, mut c) = app().await;
    app.add_record("acme", "locations", &[("code", "HQ"), ("name", "Head office"), ("kind", "clinic")]).await;
    let id = c.upload_mapped("staff", ("staff.csv", STAFF.as_bytes()), &[]).await;
    (app, c, id)
}

#[actix_web::test]
async fn a_database_error_during_validation_retries_and_the_retry_validates() {
    let (app, mut c, id) = mapped().await;
    app.exec("ALTER TABLE record_unique_values RENAME TO record_unique_values_away", &[]).await;
    app.drain().await;

    let imp = import(&app, id).await;
    assert_eq!(imp.stage, Stage::Validating, "a passing error does not fail the import: {}", imp.reason);
    assert!(imp.reason.is_empty(), "{}", imp.reason);
    let (status, attempts, error) = job_state(&app.db).await;
    assert_eq!((status.as_str(), attempts), ("queued", 1), "the job waits for its retry: {error}");
    assert!(error.contains("record_unique_values"), "the queue keeps the cause: {error}");
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert!(page.body.contains("interrupted by a database error; trying again"), "the phase says so");

    // the table is back and the retry is due
    app.exec("ALTER TABLE record_unique_values_away RENAME TO record_unique_values", &[]).await;
    app.exec("UPDATE jobs SET run_after = 0 WHERE kind = 'import.validate'", &[]).await;
    app.drain().await;

    let imp = import(&app, id).await;
    assert_eq!(imp.stage, Stage::Ready, "{}", imp.reason);
    assert_eq!((imp.validated.total_rows, imp.validated.to_create, imp.validated.invalid_rows), (3, 2, 1));
    let (status, attempts, _) = job_state(&app.db).await;
    assert_eq!((status.as_str(), attempts), ("succeeded", 2));
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert!(!page.body.contains("trying again"), "every phase ran again to the end");
    assert!(page.body.contains("NOWHERE"), "the row left out is listed once: {}", page.body.len());
    assert_eq!(page.body.matches("no locations record has the key").count(), 1, "not twice after the retry");
}

#[actix_web::test]
async fn a_database_error_on_the_last_attempt_fails_the_import_with_a_reason() {
    let (app, mut c, id) = mapped().await;
    app.exec("ALTER TABLE record_unique_values RENAME TO record_unique_values_away", &[]).await;
    // the next claim is the job's last attempt
    app.exec("UPDATE jobs SET attempts = max_attempts - 1 WHERE kind = 'import.validate'", &[]).await;
    app.drain().await;

    let imp = import(&app, id).await;
    assert_eq!(imp.stage, Stage::Failed);
    assert!(imp.reason.contains("a database error kept interrupting it"), "{}", imp.reason);
    let (status, _, _) = job_state(&app.db).await;
    assert_eq!(status, "failed");
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert!(page.body.contains("The import failed"));
    app.exec("ALTER TABLE record_unique_values_away RENAME TO record_unique_values", &[]).await;
}

#[actix_web::test]
async fn a_file_missing_from_storage_fails_the_import_at_once_saying_where_it_looked() {
    let (app, mut c) = app().await;
    let id = c.upload_mapped("staff", ("staff.csv", STAFF.as_bytes()), &[]).await;
    let org = OrgId::new(app.org_id("acme").await);
    let key = stevedore::store::imports::get(&app.db, org, id).await.unwrap().unwrap().file.path;
    std::fs::remove_file(app.files.path_of(&key)).unwrap();
    app.drain().await;
    let imp = stevedore::store::imports::get(&app.db, org, id).await.unwrap().unwrap();
    assert_eq!(imp.stage, Stage::Failed, "{}", imp.reason);
    assert!(imp.reason.contains("not in this process's data directory"), "{}", imp.reason);
    assert!(imp.reason.contains("STEVEDORE_S3_BUCKET"), "{}", imp.reason);
    let (status, attempts, _) = job_state(&app.db).await;
    assert_eq!((status.as_str(), attempts), ("succeeded", 1), "no retries: another attempt would not find it either");
}
