//! The import flow over HTTP: upload, map, validate, import, history, detail, downloads.
//! The app runs without an in-process worker; tests drain the queue themselves, so every
//! step is deterministic.

use awc::http::StatusCode;
use stevedore::store::Db;

use crate::helpers::{app, app_with, attrs, count, id_in, start_import, stat, text, texts, validated};

#[actix_web::test]
async fn the_examples_import_in_dependency_order() {
    let (app, mut c) = app().await;
    for entity in ["locations", "staff", "clients"] {
        let bytes = std::fs::read(format!("examples/{entity}.csv")).unwrap();
        let expected = csv::Reader::from_reader(bytes.as_slice()).records().count() as i64;
        let id = validated(&app, &mut c, entity, (&format!("{entity}.csv"), &bytes), &[]).await;
        let page = c.get(&format!("/settings/imports/{id}")).await;
        assert!(page.body.contains("Ready to import"), "{entity}: {}", page.body);
        assert_eq!(stat(&page.body, "To create"), expected, "{entity}");
        assert!(page.body.contains("The first rows as they will be stored"));
        start_import(&app, &mut c, id, &[]).await.see_other();
        let done = c.get(&format!("/settings/imports/{id}")).await;
        assert!(done.body.contains("Import completed"), "{entity}: {}", done.body);
        assert_eq!(stat(&done.body, "Created"), expected);
        assert_eq!(attrs(&done.body, ".alert a", "href"), [format!("/{entity}")], "a way to the records");
        let list = c.get(&format!("/{entity}")).await;
        assert!(list.body.contains(&format!("{expected} records")), "{entity}");
        for phase in ["prevalidation", "preparsing", "transforming", "parsing", "validation", "processing"] {
            assert!(
                texts(&done.body, "section[aria-labelledby=\"phases-title\"] td code").contains(&phase.to_string())
            );
        }
    }
    let history = c.get("/settings/imports").await;
    assert_eq!(history.status, StatusCode::OK);
    let completed = texts(&history.body, "td .badge-success").into_iter().filter(|b| b == "Completed").count();
    assert_eq!(completed, 3, "{}", history.body);
    assert!(history.body.contains("3 imports"));
    let filtered = c.get("/settings/imports?entity=staff").await;
    assert!(filtered.body.contains("1 import<"));
    // the counts follow every stage change (kept by the database, not counted per request)
    assert!(c.get("/settings/imports?stage=completed").await.body.contains("3 imports<"));
    assert!(c.get("/settings/imports?stage=ready").await.body.contains("No imports match these filters"));
    let kept = "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM import_counts WHERE stage = 'completed'";
    assert_eq!(app.scalar(kept, &[]).await, 3);
}

const LOCATIONS: &str = "code,name,kind,capacity,opened_on\n\
LOC-1,Main Clinic,clinic,40,2020-01-15\n\
LOC-2,,office,10,2021-02-01\n\
LOC-3,North,spaceship,5,2021-02-01\n\
LOC-4,East,clinic,many,notadate\n\
LOC-5,West,clinic,12,2022-03-04\n\
LOC-5,West,clinic,12,2022-03-04\n\
LOC-6,South,clinic,8,2022-03-04\n\
LOC-6,South Annex,clinic,9,2022-03-04\n\
LOC-7,Lake,residential,20,2019-12-31,surprise\n";

#[actix_web::test]
async fn bad_rows_are_reported_by_row_and_field_and_the_rest_imports() {
    let (app, mut c) = app().await;
    let id = validated(&app, &mut c, "locations", ("locations.csv", LOCATIONS.as_bytes()), &[]).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    let body = page.body.replace("&#34;", "\"");
    assert!(body.contains("row 3, name: is required but empty"), "{body}");
    assert!(body.contains(
        "row 4, kind: \"spaceship\" is not one of the allowed values (clinic, office, residential, telehealth)"
    ));
    assert!(body.contains("row 5, capacity: \"many\" is not a whole number (expected e.g. 42); opened_on: \"notadate\" is not a date (expected YYYY-MM-DD)"));
    assert!(body.contains("row 6 appears 2 times in the file; every copy is left out"));
    assert!(body.contains("row 7 repeats row 6"));
    assert!(body.contains(
        "row 9, code: \"LOC-6\" is also in row 8 with other values: row 8 is the one imported (a record can appear only once in a file)"
    ));
    assert!(body.contains("row 10 has 6 values but the header has 5 columns"));
    assert_eq!(stat(&page.body, "Rows in the file"), 9);
    assert_eq!(stat(&page.body, "To create"), 2, "LOC-1 and LOC-6 (first)");
    assert_eq!(stat(&page.body, "Duplicates"), 2);
    // the sample shows the rows that will be stored, and only those
    assert_eq!(text(&page.body, "h3"), "The first rows as they will be stored");
    let sample = texts(&page.body, "h3 + .table-wrap td");
    let has = |cell: &str| sample.iter().any(|s| s == cell);
    assert!(has("Main Clinic") && has("South"), "{sample:?}");
    assert!(
        !sample.iter().any(|s| s.contains("West") || s.contains("South Annex") || s.contains("North")),
        "{sample:?}"
    );

    let csv = c.get(&format!("/settings/imports/{id}/errors.csv")).await;
    assert_eq!(csv.header("content-type"), "text/csv; charset=utf-8");
    let mut lines = csv.body.lines();
    assert_eq!(lines.next(), Some("code,name,kind,capacity,opened_on,error"), "original columns plus error");
    assert!(csv.body.contains(
        "LOC-3,North,spaceship,5,2021-02-01,\"row 4, kind: \"\"spaceship\"\" is not one of the allowed values"
    ));
    let json = c.get(&format!("/settings/imports/{id}/errors.json")).await;
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 7);
    assert_eq!(v[0]["row"], 3);
    assert_eq!(v[0]["values"]["code"], "LOC-2");

    start_import(&app, &mut c, id, &[]).await.see_other();
    let list = c.get("/locations").await;
    assert!(list.body.contains("2 records"), "only the valid rows are stored");
    assert!(list.body.contains("Main Clinic") && list.body.contains("LOC-6"));
    let original = c.get(&format!("/settings/imports/{id}/original")).await;
    assert_eq!(original.body, LOCATIONS, "the original file is kept byte for byte");
    // completed, but not everything came in: the badge says so, and how many
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(texts(&page.body, ".page-header .badge-warning"), ["Completed with issues"]);
    let left_out = text(&page.body, ".page-header .left-out");
    assert!(left_out.ends_with("rows left out") && !left_out.starts_with("0 "), "{left_out}");
    let history = c.get("/settings/imports").await;
    assert_eq!(texts(&history.body, "td .badge-warning"), ["Completed with issues"], "{}", history.body);
    // plain words, not internals: the mapping as field ← column, the file's settings as offered
    assert!(page.body.contains("Location code ← code; Name ← name; Kind ← kind"), "{}", page.body);
    assert!(page.body.contains("Leave out every copy of a repeated row"));
    assert!(page.body.contains("Merge: update by key, create the rest"));
    for internal in ["ignore_all", "{&#34;code&#34;", "{\"code\""] {
        assert!(!page.body.contains(internal), "{internal} on the page");
    }
    // its row adds up: total = imported + skipped + failed
    let n: Vec<i64> = texts(&history.body, "td.num").iter().map(|t| t.parse().unwrap()).collect();
    assert_eq!(n.len(), 4, "{n:?}");
    assert_eq!(n[0], n[1] + n[2] + n[3], "{n:?}");
    assert!(n[2] > 0 && n[3] > 0, "the file has repeated and bad rows: {n:?}");
}

#[actix_web::test]
async fn references_must_exist_and_reimports_change_only_what_changed() {
    let (app, mut c) = app().await;
    let locs = "code,name,kind\nLOC-1,Main,clinic\nLOC-2,Annex,office\n";
    let id = validated(&app, &mut c, "locations", ("l.csv", locs.as_bytes()), &[]).await;
    start_import(&app, &mut c, id, &[]).await.see_other();

    let staff = "employee_id,first_name,last_name,email,role,home_location\n\
EMP-1,Ann,Lee,ann@x.test,nurse,LOC-1\n\
EMP-2,Bo,Ray,bo@x.test,nurse,LOC-9\n";
    let id = validated(&app, &mut c, "staff", ("s.csv", staff.as_bytes()), &[]).await;
    let body = c.get(&format!("/settings/imports/{id}")).await.body.replace("&#34;", "\"");
    assert!(body.contains("row 3, home_location: no locations record has the key \"LOC-9\""), "{body}");
    start_import(&app, &mut c, id, &[]).await.see_other();

    // the same file again: nothing to do
    let again = validated(&app, &mut c, "locations", ("l.csv", locs.as_bytes()), &[]).await;
    let page = c.get(&format!("/settings/imports/{again}")).await;
    assert_eq!(stat(&page.body, "To create"), 0);
    // identical rows are counted once, as unchanged, not as duplicates too
    assert_eq!(stat(&page.body, "Duplicates"), 0);
    assert_eq!(stat(&page.body, "Unchanged"), 2);
    assert!(page.body.contains("is identical to the stored record LOC-1"));
    assert!(page.body.contains("Nothing to import"));

    // one row edited: one update
    let edited = "code,name,kind\nLOC-1,Main Campus,clinic\nLOC-2,Annex,office\n";
    let upd = validated(&app, &mut c, "locations", ("l2.csv", edited.as_bytes()), &[]).await;
    let page = c.get(&format!("/settings/imports/{upd}")).await;
    assert_eq!((stat(&page.body, "To update"), stat(&page.body, "To create")), (1, 0));
    start_import(&app, &mut c, upd, &[]).await.see_other();
    let done = c.get(&format!("/settings/imports/{upd}")).await;
    assert_eq!(stat(&done.body, "Updated"), 1);
    assert!(c.get("/locations").await.body.contains("Main Campus"));

    // a unique value already used by another record
    let clash = "employee_id,first_name,last_name,email,role,home_location\nEMP-3,Cy,Doe,ANN@x.test,nurse,LOC-1\n";
    let id = validated(&app, &mut c, "staff", ("s2.csv", clash.as_bytes()), &[]).await;
    let body = c.get(&format!("/settings/imports/{id}")).await.body.replace("&#34;", "\"");
    assert!(body.contains("row 2, email: \"ann@x.test\" is already used by EMP-1"), "{body}");
}

#[actix_web::test]
async fn use_first_imports_the_first_copy_and_xlsx_works_too() {
    use rust_xlsxwriter::Workbook;
    let (app, mut c) = app().await;
    let dup = "code,name,kind\nLOC-1,Main,clinic\nLOC-1,Main,clinic\n";
    let id =
        validated(&app, &mut c, "locations", ("d.csv", dup.as_bytes()), &[("duplicate_handling", "use_first")]).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert!(page.body.contains("row 3 repeats row 2; only the first copy is imported"));
    assert_eq!(stat(&page.body, "To create"), 1);

    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    for (c2, h) in ["Location Code", "Name", "Kind", "Capacity"].iter().enumerate() {
        ws.write_string(0, c2 as u16, *h).unwrap();
    }
    ws.write_string(1, 0, "LOC-X").unwrap();
    ws.write_string(1, 1, "Spreadsheet Site").unwrap();
    ws.write_string(1, 2, "office").unwrap();
    ws.write_number(1, 3, 15.0).unwrap();
    let bytes = wb.save_to_buffer().unwrap();
    let id = validated(&app, &mut c, "locations", ("sites.xlsx", &bytes), &[]).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(stat(&page.body, "To create"), 1, "headers matched by label: {}", page.body);
    start_import(&app, &mut c, id, &[]).await.see_other();
    assert!(c.get("/locations").await.body.contains("Spreadsheet Site"));
}

#[actix_web::test]
async fn bad_uploads_are_refused_with_the_reason_and_nothing_is_created() {
    let (_app, mut c) = app_with(|s| s.upload_limit = "2KiB".into()).await;
    let latin1 = c.upload("locations", ("l.csv", b"code,name,kind\nLOC-1,Caf\xE9,clinic\n"), &[]).await;
    assert_eq!(latin1.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(latin1.body.contains("l.csv: The file is not UTF-8 text: line 2"), "{}", latin1.body);
    let binary = c.upload("locations", ("x.csv", b"\x89PNG\x00\x00\x00"), &[]).await;
    assert!(binary.body.contains("looks like a binary file"));
    let big = c.upload("locations", ("big.csv", &vec![b'a'; 5000]), &[]).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(big.body.contains("larger than the upload limit of 2 KiB"), "{}", big.body);
    let none = c.upload("", ("l.csv", b"code\n"), &[]).await;
    assert!(none.body.contains("Choose what to import"));
    assert!(c.get("/settings/imports").await.body.contains("No imports yet"), "nothing was created");
    // a required field left unmapped blocks validation with the field named
    let r = c.upload("locations", ("l.csv", b"code,title\nLOC-1,Main\n"), &[]).await;
    let id = id_in(&r.location());
    // the mapping step says so at once, and shows what the chosen column holds
    let page = c.get(&format!("/settings/imports/{id}")).await.body;
    assert!(page.contains("Required fields without a column"), "{page}");
    assert!(page.contains("Choose a column for Name and Kind: the file cannot be validated without them."), "{page}");
    assert!(page.contains(r#"<td class="muted sample-values" id="sample-code">LOC-1</td>"#), "{page}");
    assert!(page.contains(r#"data-sample="Main""#), "each column offers its values: {page}");
    assert!(!page.contains("No column matched a field"), "code matched");
    let m = c.confirm_mapping(id).await;
    assert_eq!(m.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(m.body.contains("not mapped yet: Name, Kind"), "{}", m.body);
    let r = c.upload("locations", ("l.csv", b"ref,title\n,Main\n,West\n"), &[]).await;
    let page = c.get(&r.location()).await.body;
    assert!(page.contains("No column matched a field"), "{page}");
    assert!(page.contains("None of the file&#39;s columns (ref, title) has the name of a field"), "{page}");
    assert!(page.contains(r#"data-sample="(empty in the first rows)""#), "{page}");
    // without the token in the action URL the upload is refused
    let r =
        c.post_multipart("/settings/imports/upload", &[("resource", "locations")], Some(("l.csv", b"code\n"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn pause_stops_between_chunks_and_resume_finishes() {
    let (app, mut c) = app().await;
    let mut csv = String::from("code,name,kind\n");
    for i in 0..30 {
        csv.push_str(&format!("LOC-{i},Site {i},clinic\n"));
    }
    let id = validated(&app, &mut c, "locations", ("l.csv", csv.as_bytes()), &[("chunk_size", "5")]).await;
    let r = c.import_action(id, "start", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = c.import_action(id, "pause", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    app.drain().await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(texts(&page.body, ".page-header .badge"), ["Paused"], "one badge, not Importing beside it");
    assert_eq!(texts(&page.body, "form[action$=\"/resume\"] button"), ["Resume"], "{}", page.body);
    assert!(page.body.contains("0 of 30 rows (0%)"));
    let r = c.import_action(id, "resume", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    app.drain().await;
    let done = c.get(&format!("/settings/imports/{id}")).await;
    assert!(done.body.contains("Import completed"));
    assert_eq!(stat(&done.body, "Created"), 30);
    // Pause pressed after the import finished: back to the import, told why
    let late = c.import_action(id, "pause", &[]).await;
    assert_eq!(late.status, StatusCode::SEE_OTHER);
    assert_eq!(late.location(), format!("/settings/imports/{id}"));
    assert!(c.get(&late.location()).await.body.contains("The import is completed now, so there was nothing to pause."));
}

#[actix_web::test]
async fn a_chunk_is_written_once_whoever_retries_it() {
    use stevedore::domain::ids::OrgId;
    use stevedore::store::staging::{ChunkTarget, write_chunk};
    let (app, mut c) = app().await;
    let id = validated(&app, &mut c, "locations", ("l.csv", b"code,name,kind\nLOC-1,Main,clinic\n"), &[]).await;
    let r = c.import_action(id, "start", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let org = OrgId::new(app.org_id("acme").await);
    let t = ChunkTarget { org, import_id: id, entity: "locations", has_uniques: false, updates: false, fence: None };
    // two workers holding the same chunk (one took the job over): only one writes
    let first = write_chunk(&app.db, &t, 0, 2, None).await.unwrap();
    let second = write_chunk(&app.db, &t, 0, 2, None).await.unwrap();
    assert_eq!(first.map(|r| r.created), Some(1));
    assert_eq!(second, None, "the cursor had moved: the second write is refused");
    app.drain().await;
    assert!(c.get("/locations").await.body.contains("1 record<"));
}

#[actix_web::test]
async fn imports_need_the_permission_and_stay_in_their_org() {
    let (app, mut ada) = app().await;
    app.user("acme", "vic@acme.test", "viewer").await;
    app.user("globex", "hank@globex.test", "owner").await;
    let id = validated(&app, &mut ada, "locations", ("l.csv", b"code,name,kind\nLOC-1,Main,clinic\n"), &[]).await;
    let mut vic = app.signed_in("vic@acme.test").await;
    for path in [
        "/settings/imports".to_string(),
        "/settings/imports/upload".into(),
        format!("/settings/imports/{id}"),
        "/locations/importer".into(),
    ] {
        let r = vic.get(&path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(r.body.contains("pf.import.upload"));
        assert!(r.body.contains("Permission needed: Imports <code>pf.import.upload</code>"), "its plain name first");
    }
    assert!(
        !vic.get("/locations").await.body.contains("/locations/importer"),
        "no Import action without the permission"
    );
    // in the Actions menu, and in the empty list's invitation
    assert_eq!(texts(&ada.get("/locations").await.body, "a[href=\"/locations/importer\"]"), ["Import", "Import"]);
    let mut hank = app.signed_in("hank@globex.test").await;
    for path in [
        format!("/settings/imports/{id}"),
        format!("/settings/imports/{id}/original"),
        format!("/settings/imports/{id}/errors.csv"),
    ] {
        assert_eq!(hank.get(&path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = hank.submit("/", &format!("/settings/imports/{id}/start"), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!hank.get("/settings/imports").await.body.contains("l.csv"));
    let importer = ada.get("/locations/importer").await;
    assert!(importer.body.contains("Import locations"));
}

#[actix_web::test]
async fn a_ready_import_not_started_in_time_expires_and_its_staged_rows_are_purged() {
    let (app, mut c) = app().await;
    let csv = b"code,name,kind\nLOC-1,Main,clinic\nLOC-2,North,clinic\n";
    let id = validated(&app, &mut c, "locations", ("l.csv", csv), &[]).await;
    let staged = "SELECT COUNT(*) FROM import_rows WHERE import_id = $1";
    assert_eq!(app.scalar(staged, &[id]).await, 2, "validation staged both rows");
    // maintenance within the time to live changes nothing
    stevedore::jobs::maintenance::schedule(&app.db).await.unwrap();
    app.drain().await;
    assert_eq!(app.scalar(staged, &[id]).await, 2);
    assert_eq!(text(&c.get(&format!("/settings/imports/{id}")).await.body, ".page-header .badge"), "Ready");
    // as if the default 24 hours had passed since validation
    app.exec("UPDATE imports SET updated_at = updated_at - 86401 WHERE id = $1", &[id]).await;
    let bucket_job = stevedore::jobs::maintenance::schedule(&app.db).await.unwrap();
    if bucket_job.is_none() {
        // this ten minutes' prune already ran: queue one outside the dedupe bucket
        app.queue_maintenance().await;
    }
    app.drain().await;
    assert_eq!(app.scalar(staged, &[id]).await, 0, "the staged rows were purged");
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(text(&page.body, ".page-header .badge"), "Expired", "{}", page.body);
    assert!(page.body.contains("not started within its time to live; upload the file again"));
    let r = c.import_action(id, "start", &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("This import is expired; only a ready import can start."));
    app.drain().await;
    assert!(!c.get("/locations").await.body.contains("LOC-1"), "nothing was imported");
}

/// `n` imports of `entity` straight into the store, oldest first (all in the same second,
/// so the id orders them).
async fn stored_imports(app: &crate::helpers::TestApp, n: usize, entity: &str) {
    use stevedore::domain::imports::{Action, DuplicateHandling};
    use stevedore::store::imports::{NewImport, create};
    let org = stevedore::domain::ids::OrgId::new(app.org_id("acme").await);
    let user = stevedore::domain::ids::UserId::new(app.user_id(crate::helpers::OWNER).await);
    for i in 0..n {
        let name = format!("{entity}-{i:03}.csv");
        let new = NewImport {
            entity,
            name: &name,
            action: Action::Merge,
            duplicate_handling: DuplicateHandling::IgnoreAll,
            file_name: &name,
            file_path: "/nowhere",
            file_size: 1,
            checksum: "",
            chunk_size: 50,
            created_by: user.into(),
            upload_mode_sync: false,
            auto_start: false,
            created_by_label: crate::helpers::OWNER,
        };
        create(&app.db, org, &new).await.unwrap();
    }
}

#[actix_web::test]
async fn import_history_pages_from_a_cursor_both_ways_and_with_filters() {
    let (app, mut c) = app().await;
    stored_imports(&app, 40, "locations").await;
    stored_imports(&app, 20, "staff").await;
    let names = |body: &str| texts(body, "td a.cell-title");
    let first = c.get("/settings/imports").await.body;
    let page1 = names(&first);
    assert_eq!(page1.len(), 25);
    assert_eq!((page1[0].as_str(), page1[24].as_str()), ("staff-019.csv", "locations-035.csv"), "newest first");
    assert!(text(&first, "nav.pagination").contains("Showing 1–25 of 60"), "{}", text(&first, "nav.pagination"));
    assert!(attrs(&first, "a[rel=prev]", "href").is_empty());

    let next = attrs(&first, "a[rel=next]", "href").remove(0);
    assert!(next.contains("before=") && next.contains("page=2"), "{next}");
    let second = c.get(&next.replace("&amp;", "&")).await.body;
    let page2 = names(&second);
    assert_eq!((page2[0].as_str(), page2[24].as_str()), ("locations-034.csv", "locations-010.csv"));
    assert!(text(&second, "nav.pagination").contains("Showing 26–50 of 60"));
    let third = c.get(&attrs(&second, "a[rel=next]", "href").remove(0)).await.body;
    assert_eq!(names(&third), (0..10).rev().map(|i| format!("locations-{i:03}.csv")).collect::<Vec<_>>());
    assert!(attrs(&third, "a[rel=next]", "href").is_empty(), "the last page");

    // back: the previous page is the same rows, and from page 2 back to the first
    let back = c.get(&attrs(&third, "a[rel=prev]", "href").remove(0)).await.body;
    assert_eq!(names(&back), page2);
    let prev = attrs(&back, "a[rel=prev]", "href").remove(0);
    assert!(!prev.contains("after="), "page 1 is the list itself: {prev}");
    assert_eq!(names(&c.get(&prev).await.body), page1);

    // a filter pages the same way, through its own index
    let staff = c.get("/settings/imports?entity=staff").await.body;
    assert_eq!(names(&staff).len(), 20);
    assert!(attrs(&staff, "a[rel=next]", "href").is_empty());
    let located = c.get("/settings/imports?entity=locations&stage=pending").await.body;
    assert!(text(&located, "nav.pagination").contains("of 40"), "{}", text(&located, "nav.pagination"));
    let next = attrs(&located, "a[rel=next]", "href").remove(0);
    assert!(next.contains("entity=locations") && next.contains("stage=pending"), "filters kept: {next}");
    assert_eq!(names(&c.get(&next).await.body)[0], "locations-014.csv");

    // a cursor that is not one starts over
    assert_eq!(names(&c.get("/settings/imports?before=nonsense&page=7").await.body), page1);
}

#[actix_web::test]
async fn a_worker_that_lost_its_lease_writes_no_chunk_and_the_new_owner_does() {
    use stevedore::domain::ids::OrgId;
    use stevedore::domain::jobs::Fence;
    use stevedore::store::jobs::claim;
    use stevedore::store::staging::{ChunkTarget, write_chunk};
    let (app, mut c) = app().await;
    let csv = b"code,name,kind\nLOC-1,Main,clinic\nLOC-2,North,clinic\n";
    let id = validated(&app, &mut c, "locations", ("l.csv", csv), &[]).await;
    c.import_action(id, "start", &[]).await.see_other();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;

    // worker A claims the import's job, stalls, and its lease runs out; worker B takes it over
    let a = claim(&app.db, "worker-a", 30, now).await.unwrap().expect("the process job is queued");
    app.exec("UPDATE jobs SET lease_expires_at = 0 WHERE id = $1", &[a.id]).await;
    let b = claim(&app.db, "worker-b", 30, now).await.unwrap().expect("an expired lease is taken over");
    assert_eq!((b.id, b.attempts), (a.id, 2), "B has the same job, on its second attempt");

    let org = OrgId::new(app.org_id("acme").await);
    let fence_a = Fence { job_id: a.id, owner: "worker-a".into(), attempt: a.attempts };
    let fence_b = Fence { job_id: b.id, owner: "worker-b".into(), attempt: b.attempts };
    let target =
        |fence| ChunkTarget { org, import_id: id, entity: "locations", has_uniques: false, updates: false, fence };
    // A wakes up and writes its chunk: refused before anything is written
    assert_eq!(write_chunk(&app.db, &target(Some(&fence_a)), 0, 3, None).await.unwrap(), None);
    let stored = "SELECT COUNT(*) FROM records WHERE entity = 'locations'";
    assert_eq!(app.scalar(stored, &[]).await, 0, "A wrote nothing");
    let cursor = "SELECT next_row FROM imports WHERE id = $1";
    assert_eq!(app.scalar(cursor, &[id]).await, 0, "the cursor did not move");
    // B, holding the lease, writes it
    let written = write_chunk(&app.db, &target(Some(&fence_b)), 0, 3, None).await.unwrap();
    assert_eq!(written.map(|r| r.created), Some(2));
    assert_eq!(app.scalar(cursor, &[id]).await, 3);
    // and A still cannot, even for rows after B's
    assert_eq!(write_chunk(&app.db, &target(Some(&fence_a)), 3, 4, None).await.unwrap(), None);
    assert_eq!(app.scalar(stored, &[]).await, 2, "every row once");
}

#[actix_web::test]
async fn an_unclosed_quote_fails_the_validation_naming_the_row_and_imports_nothing() {
    let (app, mut c) = app().await;
    let csv = b"code,name,kind\nLOC-1,Main,clinic\nLOC-2,\"North,clinic\nLOC-3,South,clinic\nLOC-4,East,clinic\n";
    let id = validated(&app, &mut c, "locations", ("l.csv", csv), &[]).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(text(&page.body, ".page-header .badge"), "Failed");
    assert!(
        page.body.contains(
            "Row 3 cannot be read: a quoted field is not closed: from line 3 it runs to the end of the file."
        ),
        "{}",
        page.body
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM records", &[]).await, 0, "nothing was imported");
}

#[actix_web::test]
async fn a_header_wider_than_the_column_limit_is_refused_at_upload_naming_the_limit() {
    let (app, mut c) = app().await;
    // 100,000 columns: refused at once, whatever the width
    let wide: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
    let file = format!("{}\n", wide.join(","));
    let t = std::time::Instant::now();
    let r = c.upload("locations", ("wide.csv", file.as_bytes()), &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body.contains("wide.csv: The file has 100000 columns; at most 1024 are read (STEVEDORE_MAX_COLUMNS)."),
        "{}",
        r.body
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "refused quickly: {:?}", t.elapsed());
    assert!(c.get("/settings/imports").await.body.contains("No imports yet"), "nothing was created");
    drop(app);

    // the limit is a setting; a file at the limit maps as usual
    let (_app, mut c) = app_with(|s| s.max_columns = "4".into()).await;
    let r = c.upload("locations", ("l.csv", b"code,name,kind,capacity,notes\nLOC-1,Main,clinic,4,x\n"), &[]).await;
    assert!(r.body.contains("The file has 5 columns; at most 4 are read"), "{}", r.body);
    let ok = c.upload("locations", ("l.csv", b"code,name,kind,capacity\nLOC-1,Main,clinic,4\n"), &[]).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
}

#[actix_web::test]
async fn two_imports_of_one_file_at_once_are_warned_and_their_counts_add_up() {
    use stevedore::domain::ids::OrgId;
    let (app, mut c) = app().await;
    const N: i64 = 2000;
    let mut csv = String::from("code,name,kind\n");
    for i in 0..N {
        csv.push_str(&format!("LOC-{i},Site {i},clinic\n"));
    }
    let a = validated(&app, &mut c, "locations", ("sites.csv", csv.as_bytes()), &[("chunk_size", "100")]).await;
    let b = validated(&app, &mut c, "locations", ("sites-again.csv", csv.as_bytes()), &[("chunk_size", "100")]).await;
    // the second upload is warned, with a link to the first (and the first to the second)
    let page = c.get(&format!("/settings/imports/{b}")).await;
    assert!(text(&page.body, "#same-file .alert-title").contains("This file was uploaded before"), "{}", page.body);
    assert_eq!(attrs(&page.body, "#same-file a", "href"), [format!("/settings/imports/{a}")]);
    let page = c.get(&format!("/settings/imports/{a}")).await;
    assert_eq!(attrs(&page.body, "#same-file a", "href"), [format!("/settings/imports/{b}")]);

    // both started, then their chunks run side by side
    for id in [a, b] {
        assert_eq!(c.import_action(id, "start", &[]).await.status, StatusCode::SEE_OTHER);
    }
    futures_util::join!(app.drain(), app.drain());
    let org = OrgId::new(app.org_id("acme").await);
    let (mut created, mut failed) = (0, 0);
    for (id, other) in [(a, b), (b, a)] {
        let imp = stevedore::store::imports::get(&app.db, org, id).await.unwrap().unwrap();
        assert_eq!(imp.stage, stevedore::domain::imports::Stage::Completed, "{}", imp.reason);
        assert_eq!(imp.created_rows + imp.updated_rows + imp.failed_rows, N, "#{id}: every row is counted once");
        let meanwhile = format!("%was written meanwhile by import #{other} with these same values%");
        let listed = "SELECT COUNT(*) FROM import_issues WHERE import_id = $1 AND kind = 'failed' AND message LIKE $2";
        let n = match &app.db {
            stevedore::store::Db::Sqlite(p) => {
                sqlx::query_scalar::<_, i64>(listed).bind(id).bind(&meanwhile).fetch_one(p).await.unwrap()
            }
            stevedore::store::Db::Postgres(p) => {
                sqlx::query_scalar::<_, i64>(listed).bind(id).bind(&meanwhile).fetch_one(p).await.unwrap()
            }
        };
        assert_eq!(n, imp.failed_rows, "#{id}: each row left out says which import wrote it");
        created += imp.created_rows;
        failed += imp.failed_rows;
    }
    assert_eq!(created, N, "every record created once, by one import or the other");
    assert_eq!(failed, N);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM records", &[]).await, N);
    // the page of the import that lost the race says so in its counts and its list
    let loser =
        if stevedore::store::imports::get(&app.db, org, b).await.unwrap().unwrap().failed_rows > 0 { b } else { a };
    let page = c.get(&format!("/settings/imports/{loser}")).await;
    assert!(page.body.contains("was written meanwhile by import #"), "{}", page.body);
}

/// A workbook of `parts`, each written `times` over (so a bomb is built in memory by the
/// test, small on disk).
fn workbook_of(parts: &[(&str, &[u8], usize)]) -> Vec<u8> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(vec![]));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes, times) in parts {
        z.start_file(*name, options).unwrap();
        for _ in 0..*times {
            z.write_all(bytes).unwrap();
        }
    }
    z.finish().unwrap().into_inner()
}

#[actix_web::test]
async fn hostile_files_are_refused_naming_the_limit_and_nothing_is_imported() {
    let (app, mut c) = app_with(|s| {
        s.max_rows = "1000".into();
        s.max_xlsx_shared_strings_mib = "8".into();
    })
    .await;
    // one cell of 64 MiB in a workbook of a few hundred KB: refused before it is read
    let head = br#"<worksheet><dimension ref="A1:A2"/><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>"#;
    let bomb =
        workbook_of(&[("xl/worksheets/sheet1.xml", head, 1), ("xl/worksheets/sheet1.xml.pad", &[b'a'; 65536], 1024)]);
    assert!(bomb.len() < 2_000_000, "small on disk: {}", bomb.len());
    let r = c.upload("locations", ("bomb.xlsx", &bomb), &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("which only a zip bomb does"), "{}", r.body);
    // shared strings past their limit
    let shared = workbook_of(&[("xl/sharedStrings.xml", "<sst><si><t>ab</t></si>".repeat(1000).as_bytes(), 500)]);
    let r = c.upload("locations", ("shared.xlsx", &shared), &[]).await;
    assert!(r.body.contains("shared text inflates to more than 8 MiB"), "{}", r.body);
    // a sheet declaring nine million rows
    let tall = br#"<worksheet><dimension ref="A1:C9000000"/><sheetData/></worksheet>"#;
    let r = c.upload("locations", ("tall.xlsx", &workbook_of(&[("xl/worksheets/sheet1.xml", tall, 1)])), &[]).await;
    assert!(r.body.contains("The file has more than 1000 rows (STEVEDORE_MAX_ROWS)"), "{}", r.body);
    assert!(c.get("/settings/imports").await.body.contains("No imports yet"), "nothing was created");

    // a CSV over the rows allowed, and one with a cell past 32 KiB: the validation stops, naming why
    let mut many = String::from("code,name,kind\n");
    for i in 0..1001 {
        many.push_str(&format!("LOC-{i},Site,clinic\n"));
    }
    let id = validated(&app, &mut c, "locations", ("many.csv", many.as_bytes()), &[]).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert!(page.body.contains("The file has more than 1000 rows (STEVEDORE_MAX_ROWS)."), "{}", page.body);
    let wide = format!("code,name,kind\nLOC-1,{},clinic\n", "x".repeat(40 * 1024));
    let id = validated(&app, &mut c, "locations", ("cell.csv", wide.as_bytes()), &[]).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert!(
        page.body.contains("Row 2 cannot be read: column 2 holds 40 KiB of text; a cell may hold at most 32 KiB (STEVEDORE_MAX_CELL_KIB)"),
        "{}",
        page.body
    );
    assert_eq!(text(&page.body, ".page-header .badge"), "Failed");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM records", &[]).await, 0);
}

#[actix_web::test]
async fn each_chunk_reads_its_records_again_from_the_file_and_leaves_out_a_row_that_changed() {
    let (app, mut c) = app().await;
    // past the first rows validation keeps for the page's sample: records come from the file
    let mut csv = String::from("code,name,kind\n");
    for i in 1..=120 {
        csv += &format!("LOC-{i:03},Place {i:03},clinic\n");
    }
    let id = validated(&app, &mut c, "locations", ("l.csv", csv.as_bytes()), &[]).await;
    // where the import's file is kept
    let stored = async |app: &crate::helpers::TestApp, id: i64| -> std::path::PathBuf {
        let sql = "SELECT file_path FROM imports WHERE id = $1";
        let path: String = match &app.db {
            Db::Sqlite(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await.unwrap(),
            Db::Postgres(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await.unwrap(),
        };
        app.files.path_of(&path)
    };
    // the stored file changes after validation: row 100 (LOC-099) no longer reads as validated
    std::fs::write(stored(&app, id).await, csv.replace("Place 099,", "Place XYZ,")).unwrap();
    start_import(&app, &mut c, id, &[]).await.see_other();

    // (into an entity the org has no records of, PostgreSQL too reads the file again, and
    // copies the records straight into place)
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(stat(&page.body, "Created"), 119, "{}", page.body);
    let errors = c.get(&format!("/settings/imports/{id}/errors.csv")).await;
    assert!(
        errors
            .body
            .contains("row 100: the file no longer reads as it did when it was validated; this row was not written"),
        "{}",
        errors.body
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM records WHERE entity = 'locations'", &[]).await, 119);
    let late = c.get("/locations?q=place+120").await;
    assert!(late.body.contains("Place 120") && late.body.contains("LOC-120"), "a record read from the file");
    assert!(!c.get("/locations?q=place+xyz").await.body.contains("LOC-099"), "the changed row was not written");

    // an update whose row reads otherwise by the time it is written: neither journaled nor
    // written (rolling the import back later must not find a change it never made)
    let updated = csv.replace("Place 050,", "Place 05B,");
    let second = validated(&app, &mut c, "locations", ("l2.csv", updated.as_bytes()), &[]).await;
    std::fs::write(stored(&app, second).await, updated.replace("Place 05B,", "Place 05C,")).unwrap();
    start_import(&app, &mut c, second, &[]).await.see_other();
    let page = c.get(&format!("/settings/imports/{second}")).await;
    if matches!(app.db, Db::Postgres(_)) {
        // into an entity the org has records of, PostgreSQL stages every record at validation
        // (a merge's chunks read them staged): the import writes what was validated
        assert_eq!((stat(&page.body, "Created"), stat(&page.body, "Updated")), (1, 1), "{}", page.body);
        assert!(c.get("/locations?q=place+05b").await.body.contains("LOC-050"));
        assert!(!c.get("/locations?q=place+05c").await.body.contains("LOC-050"));
        return;
    }
    assert_eq!((stat(&page.body, "Created"), stat(&page.body, "Updated")), (1, 0), "LOC-099 only: {}", page.body);
    let errors = c.get(&format!("/settings/imports/{second}/errors.csv")).await;
    assert!(
        errors.body.contains("row 51: the file no longer reads as it did when it was validated"),
        "{}",
        errors.body
    );
    assert!(c.get("/locations?q=place+050").await.body.contains("LOC-050"), "the record as it was");
    let journaled =
        app.scalar("SELECT COUNT(*) FROM import_journal WHERE import_id = $1 AND op = 'updated'", &[second]).await;
    assert_eq!(journaled, 0);
}

#[actix_web::test]
async fn an_import_waiting_at_mapping_or_ready_can_be_discarded_and_nothing_is_imported() {
    let (app, mut c) = app().await;
    app.user("acme", "vic@acme.test", "viewer").await;
    let csv: &[u8] = b"code,name,kind\nLOC-1,Main,clinic\nLOC-2,North,clinic\n";
    let id = validated(&app, &mut c, "locations", ("waiting.csv", csv), &[]).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(texts(&page.body, ".page-header a[data-open='discard-dialog']"), ["Discard"]);
    assert_eq!(count(&page.body, "dialog#discard-dialog[open]"), 0);
    // without script the link opens the dialog, which names the import
    let asked = c.get(&format!("/settings/imports/{id}?discard=1")).await;
    assert_eq!(text(&asked.body, "dialog#discard-dialog[open] h2"), "Discard waiting.csv?");

    // a viewer may not
    let mut vic = app.signed_in("vic@acme.test").await;
    let page = format!("/settings/imports/{id}");
    let refused = vic.submit("/", &format!("{page}/discard"), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let r = c.submit(&page, &format!("{page}/discard"), &[]).await;
    assert_eq!(r.location(), "/settings/imports");
    assert!(c.get(&r.location()).await.body.contains("Discarded waiting.csv: nothing was imported."));
    let gone = c.get(&page).await;
    assert_eq!(texts(&gone.body, ".page-header .badge"), ["Failed"]);
    assert!(gone.body.contains("Discarded by ada@acme.test before it started; nothing was imported."));
    assert_eq!(count(&gone.body, "a[data-open='discard-dialog']"), 0, "no second Discard");
    assert_eq!(count(&gone.body, "form[action$='/start']"), 0, "no Import either");
    app.drain().await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM records", &[]).await, 0);
    assert!(c.get("/settings/audit").await.body.contains("Discarded the import"));

    // a finished import is not discarded: the page says why
    let done = crate::helpers::import_file(&app, &mut c, "locations", ("done.csv", csv)).await;
    let late = c.submit(&format!("/settings/imports/{done}"), &format!("/settings/imports/{done}/discard"), &[]).await;
    assert_eq!(late.location(), format!("/settings/imports/{done}"));
    let after = c.get(&late.location()).await;
    assert!(after.body.contains("The import is completed now, so it was not discarded."));
    assert_eq!(app.scalar("SELECT COUNT(*) FROM records", &[]).await, 2);
}

#[actix_web::test]
async fn before_validation_the_page_shows_no_counts_no_phases_and_no_rows_left_out() {
    let (app, mut c) = app().await;
    let r = c.upload("locations", ("l.csv", b"code,name,kind\nLOC-1,Main,clinic\n"), &[]).await;
    let page = c.get(&r.see_other()).await;
    assert_eq!(count(&page.body, "#map-title"), 1, "the mapping is the one thing to do: {}", page.body);
    for absent in [".grid-stats", "#issues-title", "#phases-title"] {
        assert_eq!(count(&page.body, absent), 0, "{absent} before validation");
    }
    // once validated, they are there, phases by their status in words
    let id = id_in(&r.see_other());
    c.confirm_mapping(id).await;
    app.drain().await;
    let ready = c.get(&format!("/settings/imports/{id}")).await;
    for present in [".grid-stats", "#issues-title", "#phases-title"] {
        assert_eq!(count(&ready.body, present), 1, "{present} once validated");
    }
    let statuses = texts(&ready.body, "section[aria-labelledby='phases-title'] .badge");
    assert_eq!(statuses.iter().filter(|s| *s == "Completed").count(), 5, "{statuses:?}");
    assert!(statuses.iter().all(|s| s == "Completed" || s == "Not started"), "{statuses:?}");
}
