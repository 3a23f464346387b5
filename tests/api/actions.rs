//! Import actions (merge, overwrite, delete) and rolling them back from the journal: after a
//! rollback the org's records equal, byte for byte, what they were before the import (ids,
//! values, hashes, timestamps, unique values).

use awc::http::StatusCode;

use crate::helpers::{Client, TestApp, app, attrs, count, roll_back, start_import, stat, text, texts, validated};

/// Every record of every org with its unique values, in id order: what a rollback must
/// restore exactly.
pub(crate) async fn snapshot(app: &TestApp) -> Vec<String> {
    let records = "SELECT id, org_id, entity, record_key, data, row_hash, search_text, import_id, import_row,
                          created_at, updated_at FROM records ORDER BY id";
    let uniques = "SELECT org_id, entity, field, value, record_id FROM record_unique_values ORDER BY record_id, field";
    type Rec = (i64, i64, String, String, String, String, String, Option<i64>, Option<i64>, i64, i64);
    type Uni = (i64, String, String, String, i64);
    let (recs, unis): (Vec<Rec>, Vec<Uni>) = match &app.db {
        stevedore::store::Db::Sqlite(p) => {
            (sqlx::query_as(records).fetch_all(p).await.unwrap(), sqlx::query_as(uniques).fetch_all(p).await.unwrap())
        }
        stevedore::store::Db::Postgres(p) => {
            (sqlx::query_as(records).fetch_all(p).await.unwrap(), sqlx::query_as(uniques).fetch_all(p).await.unwrap())
        }
    };
    recs.iter().map(|r| format!("{r:?}")).chain(unis.iter().map(|u| format!("{u:?}"))).collect()
}

/// The upload form's `action` choices.
const MERGE: &[(&str, &str)] = &[("action", "merge")];
const OVERWRITE: &[(&str, &str)] = &[("action", "overwrite")];
const DELETE: &[(&str, &str)] = &[("action", "delete")];

const BASE: &str = "code,name,kind,city\n\
LOC-1,Main,clinic,Portland\n\
LOC-2,North,office,Salem\n\
LOC-3,East,clinic,Bend\n\
LOC-4,West,residential,Eugene\n";

/// The four base locations, imported (and left there) before each scenario.
async fn with_base(app: &TestApp, c: &mut Client) {
    let id = validated(app, c, "locations", ("file.csv", BASE.as_bytes()), MERGE).await;
    start_import(app, c, id, &[]).await.see_other();
    assert!(c.get("/locations").await.body.contains("4 records"));
}

async fn data_of(app: &TestApp, key: &str) -> Option<serde_json::Value> {
    let org = stevedore::domain::ids::OrgId::new(app.org_id("acme").await);
    let rows = stevedore::store::records::list(&app.db, org, "locations", None, 100, 0).await.unwrap();
    rows.into_iter().find(|r| r.record_key == key).map(|r| serde_json::from_str(&r.data).unwrap())
}

#[actix_web::test]
async fn merge_updates_by_key_creates_the_rest_and_rolls_back_exactly() {
    let (app, mut c) = app().await;
    with_base(&app, &mut c).await;
    let before = snapshot(&app).await;
    // a second later, so a restored timestamp differs from a rewritten one
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let csv = "code,name,kind,city\nLOC-1,Main Campus,clinic,Portland\nLOC-2,North,office,Salem\nLOC-5,South,clinic,Medford\n";
    let id = validated(&app, &mut c, "locations", ("file.csv", csv.as_bytes()), MERGE).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(
        (stat(&page.body, "To create"), stat(&page.body, "To update"), stat(&page.body, "Unchanged")),
        (1, 1, 1)
    );
    start_import(&app, &mut c, id, &[]).await;
    assert_eq!(data_of(&app, "LOC-1").await.unwrap()["name"], "Main Campus");
    assert_eq!(data_of(&app, "LOC-5").await.unwrap()["city"], "Medford");
    let after = snapshot(&app).await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[1..4], before[1..4], "LOC-2..LOC-4 untouched, timestamps included");

    let page = c.get(&format!("/settings/imports/{id}?rollback=1")).await;
    assert_eq!(count(&page.body, "dialog#rollback-dialog[open]"), 1, "{}", page.body);
    assert!(page.body.contains("1 created record is removed"));
    assert!(page.body.contains("1 updated record gets its earlier values back"));
    assert!(page.body.contains("Roll back the import of"));
    let r = roll_back(&app, &mut c, id, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(snapshot(&app).await, before, "the records are exactly as before the import");
    let page = c.get(&format!("/settings/imports/{id}")).await;
    let badge = text(&page.body, ".page-header .badge");
    assert!(badge == "Rolled Back" || badge == "Rolled back", "{}", page.body);
    assert!(page.body.contains("2 changes undone"));
    assert_eq!(count(&page.body, "#rollback-dialog"), 0, "no second rollback offered");
    // the counts say what the import did, and beside them what the rollback undid
    assert_eq!((stat(&page.body, "Created"), stat(&page.body, "Undone by the rollback")), (1, 2));
    assert!(text(&page.body, ".stat-note").contains("the rollback undid 2 of those changes"));
    let history = c.get("/settings/imports").await;
    assert_eq!(texts(&history.body, "tbody td.num .muted"), ["undone"], "{}", history.body);
}

#[actix_web::test]
async fn overwrite_asks_for_the_number_it_removes_and_rolls_back_exactly() {
    let (app, mut c) = app().await;
    with_base(&app, &mut c).await;
    let before = snapshot(&app).await;
    let csv =
        "code,name,kind,city\nLOC-1,Main Campus,clinic,Portland\nLOC-2,North,office,Salem\nLOC-6,Lake,clinic,Klamath\n";
    let id = validated(&app, &mut c, "locations", ("file.csv", csv.as_bytes()), OVERWRITE).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(stat(&page.body, "To delete"), 2, "LOC-3 and LOC-4 are not in the file");
    assert!(page.body.contains("2 Locations records that this file does not contain will be removed"), "{}", page.body);
    // starting without confirming that number changes nothing
    let r = start_import(&app, &mut c, id, &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Remove 2 records?") && count(&r.body, "dialog[open][data-modal]") == 1, "{}", r.body);
    let r = start_import(&app, &mut c, id, &[("confirm_delete", "3")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a stale number is not a confirmation");
    assert_eq!(snapshot(&app).await, before);
    let r = start_import(&app, &mut c, id, &[("confirm_delete", "2")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert!(page.body.contains("Import completed"), "{}", page.body);
    assert_eq!(stat(&page.body, "Deleted"), 2);
    assert!(data_of(&app, "LOC-3").await.is_none() && data_of(&app, "LOC-4").await.is_none());
    assert_eq!(data_of(&app, "LOC-6").await.unwrap()["name"], "Lake");
    assert!(page.body.contains("2 records not in the file removed"));

    roll_back(&app, &mut c, id, &[]).await;
    assert_eq!(snapshot(&app).await, before, "removed records are back with their ids, the rest as before");
}

#[actix_web::test]
async fn an_overwrite_that_would_empty_the_entity_says_so() {
    let (app, mut c) = app().await;
    with_base(&app, &mut c).await;
    let before = snapshot(&app).await;
    let id =
        validated(&app, &mut c, "locations", ("file.csv", b"code,name,kind\nLOC-9,Nowhere,spaceship\n"), OVERWRITE)
            .await;
    let r = start_import(&app, &mut c, id, &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Remove 4 records?"));
    assert!(r.body.contains("leaving no Locations records at all"), "{}", r.body);
    assert_eq!(snapshot(&app).await, before);
}

#[actix_web::test]
async fn delete_removes_what_the_file_names_reports_the_rest_and_rolls_back_exactly() {
    let (app, mut c) = app().await;
    with_base(&app, &mut c).await;
    let before = snapshot(&app).await;
    // a delete file needs only the key column
    let id = validated(&app, &mut c, "locations", ("file.csv", b"code\nLOC-2\nLOC-9\nLOC-4\n"), DELETE).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    let body = page.body.replace("&#34;", "\"");
    assert!(body.contains("Ready to import"), "{body}");
    assert_eq!(stat(&body, "To delete"), 2);
    assert!(body.contains("row 3: no locations record has the key \"LOC-9\"; nothing to delete"), "{body}");
    assert!(texts(&body, "td .badge").contains(&"Skipped".to_string()));
    start_import(&app, &mut c, id, &[]).await;
    assert!(data_of(&app, "LOC-2").await.is_none() && data_of(&app, "LOC-4").await.is_none());
    assert!(data_of(&app, "LOC-1").await.is_some() && data_of(&app, "LOC-3").await.is_some());
    let page = c.get(&format!("/settings/imports/{id}?rollback=1")).await;
    assert!(page.body.contains("2 deleted records are re-created"));
    roll_back(&app, &mut c, id, &[]).await;
    assert_eq!(snapshot(&app).await, before);
}

#[actix_web::test]
async fn records_changed_since_are_listed_and_left_alone_unless_overwritten() {
    let (app, mut c) = app().await;
    with_base(&app, &mut c).await;
    let csv = "code,name,kind\nLOC-1,Main Campus,clinic\nLOC-5,South,clinic\nLOC-6,Lake,clinic\n";
    let first = validated(&app, &mut c, "locations", ("file.csv", csv.as_bytes()), MERGE).await;
    start_import(&app, &mut c, first, &[]).await;
    // a later import changes LOC-5
    let later =
        validated(&app, &mut c, "locations", ("file.csv", b"code,name,kind\nLOC-5,South Annex,office\n"), MERGE).await;
    start_import(&app, &mut c, later, &[]).await;
    let page = c.get(&format!("/settings/imports/{first}?rollback=1")).await;
    assert!(page.body.contains("1 record has changed since the import"), "{}", page.body);
    assert_eq!(texts(&page.body, "#rollback-dialog li code"), ["LOC-5"]);
    // two tabs: one rollback
    let token = page.csrf();
    let url = format!("/settings/imports/{first}/rollback");
    let a = c.post_form(&url, &[("csrf_token", token.as_str())]).await;
    let b = c.post_form(&url, &[("csrf_token", token.as_str())]).await;
    assert_eq!((a.status, b.status), (StatusCode::SEE_OTHER, StatusCode::SEE_OTHER));
    assert!(c.get(&b.location()).await.body.contains("This import is already being rolled back."));
    app.drain().await;
    assert_eq!(data_of(&app, "LOC-1").await.unwrap()["name"], "Main", "restored");
    assert!(data_of(&app, "LOC-6").await.is_none(), "removed");
    assert_eq!(data_of(&app, "LOC-5").await.unwrap()["name"], "South Annex", "changed since: left alone");
    let page = c.get(&format!("/settings/imports/{first}")).await;
    assert!(page.body.contains("1 record changed since the import was left as it is"), "{}", page.body);
    let again = c.post_form(&url, &[("csrf_token", token.as_str())]).await;
    assert!(c.get(&again.location()).await.body.contains("This import was already rolled back."));

    // the later import, rolled back overwriting: LOC-5 returns to what the first import left
    let page = c.get(&format!("/settings/imports/{later}?rollback=1")).await;
    assert!(page.body.contains("1 updated record gets its earlier values back"), "{}", page.body);
    roll_back(&app, &mut c, later, &[("overwrite_changed", "1")]).await;
    assert_eq!(data_of(&app, "LOC-5").await.unwrap()["name"], "South");
}

#[actix_web::test]
async fn unique_values_come_back_with_the_records() {
    let (app, mut c) = app().await;
    app.add_record("acme", "locations", &[("code", "LOC-1"), ("name", "Main"), ("kind", "clinic")]).await;
    let staff = "employee_id,first_name,last_name,email,role,home_location\n\
                 E-1,Ava,Nguyen,ava@x.test,nurse,LOC-1\nE-2,Liam,Patel,liam@x.test,nurse,LOC-1\n";
    let id = validated(&app, &mut c, "staff", ("file.csv", staff.as_bytes()), MERGE).await;
    start_import(&app, &mut c, id, &[]).await;
    let before = snapshot(&app).await;
    // E-1 takes a new email (its old one is free again), E-2 is deleted by an overwrite
    let csv = "employee_id,first_name,last_name,email,role,home_location\nE-1,Ava,Nguyen,ava.n@x.test,nurse,LOC-1\n";
    let id = validated(&app, &mut c, "staff", ("file.csv", csv.as_bytes()), OVERWRITE).await;
    start_import(&app, &mut c, id, &[("confirm_delete", "1")]).await;
    assert_ne!(snapshot(&app).await, before);
    roll_back(&app, &mut c, id, &[]).await;
    assert_eq!(snapshot(&app).await, before, "records and their unique values as before");
    // the restored emails are taken again
    let csv = "employee_id,first_name,last_name,email,role,home_location\nE-3,Mia,Khan,liam@x.test,nurse,LOC-1\n";
    let id = validated(&app, &mut c, "staff", ("file.csv", csv.as_bytes()), MERGE).await;
    let body = c.get(&format!("/settings/imports/{id}")).await.body.replace("&#34;", "\"");
    assert!(body.contains("email: \"liam@x.test\" is already used by E-2"), "{body}");
}

#[actix_web::test]
async fn every_step_of_an_import_is_in_its_activity_and_the_owners_audit_log() {
    let (app, mut c) = app().await;
    app.user("acme", "ian@acme.test", "importer").await;
    let id = validated(&app, &mut c, "locations", ("file.csv", BASE.as_bytes()), MERGE).await;
    start_import(&app, &mut c, id, &[]).await;
    assert_eq!(c.get(&format!("/settings/imports/{id}/original")).await.status, StatusCode::OK);
    roll_back(&app, &mut c, id, &[]).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    let activity = texts(&page.body, "section[aria-labelledby=\"activity-title\"] tbody tr");
    let row = |words: &str| {
        activity.iter().position(|r| r.contains(words)).unwrap_or_else(|| panic!("{words}: {activity:?}"))
    };
    for words in [
        "Uploaded a file",
        "Confirmed the column mapping",
        "Started the import",
        "Import completed",
        "Downloaded an import file",
        "Asked for a rollback",
        "Rollback completed",
    ] {
        row(words);
    }
    let all = activity.join("\n");
    assert!(all.contains("ada@acme.test") && all.contains("background job"));
    assert!(all.contains("4 created, 0 updated, 0 deleted, 0 failed"));
    assert!(all.contains("127.0.0.1"), "from where");
    // newest first
    assert!(row("Rollback completed") < row("Uploaded a file"));

    // the org-wide log, filterable, for owners only
    let log = c.get("/settings/audit").await;
    assert_eq!(log.status, StatusCode::OK);
    assert!(log.body.contains("Signed in") && log.body.contains("Rollback completed"));
    assert!(attrs(&log.body, "main a", "href").contains(&format!("/settings/imports/{id}")));
    let only = c.get("/settings/audit?action=import_rolled_back").await;
    assert!(only.body.contains("1 event<"), "{}", only.body);
    let none = c.get("/settings/audit?actor=nobody").await;
    assert!(none.body.contains("No events match these filters"));
    // who and what about are chosen from lists, not typed
    let people = texts(&log.body, "select#f-actor option");
    assert_eq!(people[0], "Everyone");
    assert!(people.contains(&"ada@acme.test".to_string()), "{people:?}");
    assert_eq!(
        texts(&log.body, "select#f-kind option"),
        ["Everything", "Imports", "Onboarding", "Exports", "Bundle imports", "API keys", "Members"]
    );
    let imports = c.get("/settings/audit?kind=imports").await;
    let signed_in = |html: &str| texts(html, "tbody td").iter().any(|t| t == "Signed in");
    assert!(!texts(&imports.body, "tbody td a").is_empty() && !signed_in(&imports.body), "{}", imports.body);
    assert_eq!(count(&imports.body, "select#f-kind option[selected][value=imports]"), 1);
    let everyone = c.get("/settings/audit?kind=bogus").await;
    assert!(signed_in(&everyone.body), "an unknown kind filters nothing");
    let mut ian = app.signed_in("ian@acme.test").await;
    assert_eq!(ian.get("/settings/audit").await.status, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn rollback_needs_the_upload_permission_and_stays_in_its_org() {
    let (app, mut c) = app().await;
    app.user("acme", "vic@acme.test", "viewer").await;
    app.user("globex", "gus@globex.test", "owner").await;
    with_base(&app, &mut c).await;
    let before = snapshot(&app).await;
    let id = validated(&app, &mut c, "locations", ("file.csv", b"code,name,kind\nLOC-7,Pier,clinic\n"), MERGE).await;
    start_import(&app, &mut c, id, &[]).await;
    let after = snapshot(&app).await;
    assert_ne!(after, before);
    let mut vic = app.signed_in("vic@acme.test").await;
    let token = vic.get("/").await.csrf();
    let r = vic.post_form(&format!("/settings/imports/{id}/rollback"), &[("csrf_token", token.as_str())]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("pf.import.upload"));
    let mut gus = app.signed_in("gus@globex.test").await;
    let token = gus.get("/").await.csrf();
    let r = gus.post_form(&format!("/settings/imports/{id}/rollback"), &[("csrf_token", token.as_str())]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another org's import is not there");
    app.drain().await;
    assert_eq!(snapshot(&app).await, after, "nothing was rolled back");
}

#[actix_web::test]
async fn past_the_retention_the_journal_and_original_go_and_rollback_says_why() {
    let (app, mut c) = app().await;
    let csv = b"code,name,kind\nLOC-1,Main,clinic\nLOC-2,,clinic\n";
    let id = validated(&app, &mut c, "locations", ("file.csv", csv), MERGE).await;
    start_import(&app, &mut c, id, &[]).await;
    let journal = "SELECT COUNT(*) FROM import_journal WHERE import_id = $1";
    assert_eq!(app.scalar(journal, &[id]).await, 1);
    let file_path: String = {
        let org = stevedore::domain::ids::OrgId::new(app.org_id("acme").await);
        let key = stevedore::store::imports::get(&app.db, org, id).await.unwrap().unwrap().file.path;
        app.files.path_of(&key).to_string_lossy().into_owned()
    };
    assert!(std::path::Path::new(&file_path).exists());
    // within the retention nothing goes
    app.queue_maintenance().await;
    app.drain().await;
    assert_eq!(app.scalar(journal, &[id]).await, 1);
    // 91 days later
    app.exec("UPDATE imports SET created_at = created_at - 91 * 86400 WHERE id = $1", &[id]).await;
    app.queue_maintenance().await;
    app.drain().await;
    assert_eq!(app.scalar(journal, &[id]).await, 0, "the journal is purged");
    assert!(!std::path::Path::new(&file_path).exists(), "the original file is deleted");
    let page = c.get(&format!("/settings/imports/{id}?rollback=1")).await;
    assert!(page.body.contains("Rollback is no longer available"), "{}", page.body);
    assert!(page.body.contains("imports are kept undoable for 90 days"));
    assert_eq!(count(&page.body, "#rollback-dialog, a[href$=\"/original\"][download]"), 0);
    let r = roll_back(&app, &mut c, id, &[]).await;
    assert!(
        c.get(&r.location()).await.body.contains("This import can no longer be rolled back: its journal was purged on")
    );
    let r = c.get(&format!("/settings/imports/{id}/original")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(c.get(&r.location()).await.body.contains("The original file was deleted on"));
    // the rows left out stay downloadable
    let errors = c.get(&format!("/settings/imports/{id}/errors.csv")).await;
    assert_eq!(errors.status, StatusCode::OK);
    assert!(errors.body.contains("LOC-2"));
    assert!(data_of(&app, "LOC-1").await.is_some(), "records are never touched by the purge");
}
