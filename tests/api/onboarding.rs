//! The onboarding workflow (seed 000, issue 14): the steps in the order references need,
//! each step's import and state, skipping, the state kept per org.

use awc::http::StatusCode;

use crate::helpers::{app, attrs, count, id_in, import_file, start_import, text, texts};

const PAGE: &str = "/settings/imports/onboarding";

fn state_of(page: &str, entity: &str) -> String {
    text(page, &format!("#step-{entity} .step-head .badge"))
}

#[actix_web::test]
async fn steps_follow_the_references_and_each_shows_its_import() {
    let (app, mut c) = app().await;
    // an org without records is offered the onboarding on its overview
    assert!(c.get("/").await.body.contains("Start onboarding"));
    let page = c.get(PAGE).await;
    assert_eq!(page.status, StatusCode::OK);
    // computed from the schemas: staff and clients refer to locations, clients to staff
    let order = attrs(&page.body, "ol.steps > li", "id");
    assert_eq!(order, ["step-locations", "step-staff", "step-clients", "step-policies", "step-forms"]);
    assert_eq!(texts(&page.body, "ol.steps .step-head .badge"), ["Not started"; 5]);
    assert!(text(&page.body, "#step-staff .step-body").contains("Import Locations first, or skip it"));
    assert!(text(&page.body, "#step-clients .step-body").contains("Import Locations and Staff first, or skip them"));
    assert_eq!(count(&page.body, "#step-staff form.step-upload"), 0, "a step waiting for another offers no upload");
    assert_eq!(count(&page.body, "#step-locations form.step-upload"), 1);
    assert_eq!(attrs(&page.body, "#step-locations a[download]", "href"), ["/locations/template.csv"]);
    assert!(text(&page.body, "#onboarding-steps").contains("0 of 5 steps done · 0 records imported so far"));
    // the server holds a step as the page does
    let held = c.upload("staff", ("s.csv", b"employee_id\nE-1\n"), &[("onboarding", "1")]).await;
    assert_eq!(held.status, StatusCode::CONFLICT);
    assert!(held.body.contains("Import Locations first, or skip it: Staff refer to it by key."), "{}", held.body);
    assert!(c.get("/settings/imports").await.body.contains("No imports yet"), "nothing was created");

    // a file refused: the form to try again stays the step's
    let bad = c.upload("locations", ("x.csv", b"\x89PNG\x00\x00"), &[("onboarding", "1")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(attrs(&bad.body, "input[name=onboarding]", "value"), ["1"]);
    assert!(bad.body.contains("Back to the onboarding"));
    assert_eq!(state_of(&c.get(PAGE).await.body, "locations"), "Not started", "a refused file is no step's import");
    // the locations step: uploaded from the onboarding, it is the step's import
    let file = b"code,name,kind\nLOC-1,Main,clinic\nLOC-2,North,office\nLOC-3,,spaceship\n";
    let id = id_in(&c.upload("locations", ("sites.csv", file), &[("onboarding", "1")]).await.see_other());
    let page = c.get(PAGE).await.body;
    assert_eq!(state_of(&page, "locations"), "In progress");
    assert!(text(&page, "#step-locations").contains("waiting for you to check the column mapping"), "{page}");
    assert_eq!(count(&page, "#step-locations form.step-upload"), 0, "no second file while one is on its way");
    let detail = c.get(&format!("/settings/imports/{id}")).await.body;
    assert_eq!(attrs(&detail, ".breadcrumb a", "href"), ["/settings/imports", PAGE], "the import leads back");
    c.confirm_mapping(id).await.see_other();
    app.drain().await;
    start_import(&app, &mut c, id, &[]).await.see_other();
    let page = c.get(PAGE).await.body;
    assert_eq!(state_of(&page, "locations"), "Needs attention");
    assert!(text(&page, "#step-locations").contains("2 records created, 0 updated; 1 of 3 rows left out"), "{page}");
    assert!(text(&page, "#onboarding-steps").contains("1 of 5 steps done · 2 records imported so far"), "{page}");
    // the steps waiting for locations may go now
    assert_eq!(count(&page, "#step-staff form.step-upload"), 1);
    assert!(text(&page, "#step-clients .step-body").contains("Import Staff first, or skip it"), "{page}");
    assert!(!c.get("/").await.body.contains("Start onboarding"), "records are in: no more offer");

    // the state is the org's: another owner, in another session, sees the same
    app.user("acme", "bob@acme.test", "owner").await;
    let mut bob = app.signed_in("bob@acme.test").await;
    let theirs = bob.get(PAGE).await.body;
    assert_eq!(state_of(&theirs, "locations"), "Needs attention");
    assert_eq!(texts(&theirs, "ol.steps .step-head .badge"), texts(&page, "ol.steps .step-head .badge"));

    // finishing waits for every step; then a summary, an event per step and one for the whole
    assert_eq!(count(&page, "#onboarding-summary"), 0, "no summary before every step is done");
    bob.submit(PAGE, &format!("{PAGE}/finish"), &[]).await.see_other();
    let page = bob.get(PAGE).await.body;
    assert!(
        page.contains("Finish once every step is done or skipped; not yet: Staff, Clients, Policies, Forms."),
        "{page}"
    );
    for step in ["staff", "clients", "policies", "forms"] {
        bob.submit(PAGE, &format!("{PAGE}/{step}/skip"), &[]).await.see_other();
    }
    let page = bob.get(PAGE).await.body;
    let summary = texts(&page, "#onboarding-summary tbody tr");
    assert_eq!(summary.len(), 5);
    assert!(summary[0].contains("Locations") && summary[0].contains("2") && summary[0].contains("ada@acme.test"));
    assert_eq!(attrs(&page, "#onboarding-summary a[download]", "href"), [format!("/settings/imports/{id}/errors.csv")]);
    assert!(summary[1].contains("Skipped by bob@acme.test"), "{}", summary[1]);
    bob.submit(PAGE, &format!("{PAGE}/finish"), &[]).await.see_other();
    let page = bob.get(PAGE).await.body;
    assert!(page.contains("Onboarding finished: 5 steps: 2 records created, 0 updated; 4 skipped."), "{page}");
    assert!(text(&page, "#onboarding-summary .card-header").contains("Finished by bob@acme.test at"));
    assert_eq!(count(&page, "form[action$='/finish']"), 0, "finished once");
    let audit = bob.get("/settings/audit?kind=onboarding").await.body;
    assert_eq!(texts(&audit, "tbody tr").iter().filter(|t| t.contains("Onboarding step done")).count(), 5);
    assert!(audit.contains("Finished the onboarding") && audit.contains("Locations: 2 created, 0 updated, 1 left out"));
}

#[actix_web::test]
async fn a_skipped_step_lets_the_next_go_and_can_be_taken_up_again() {
    let (app, mut c) = app().await;
    // records imported before the onboarding: the step says so and does not count them done
    import_file(&app, &mut c, "locations", ("l.csv", b"code,name,kind\nLOC-1,Main,clinic\nLOC-2,North,office\n")).await;
    let page = c.get(PAGE).await.body;
    assert!(text(&page, "#step-locations").contains("This organization already has 2 records of Locations."), "{page}");
    assert_eq!(state_of(&page, "locations"), "Not started");
    for step in ["locations", "staff"] {
        let r = c.submit(PAGE, &format!("{PAGE}/{step}/skip"), &[]).await;
        assert_eq!(r.see_other(), PAGE);
    }
    let page = c.get(PAGE).await.body;
    assert!(page.contains("Skipped Staff: the steps after it may go on."), "{page}");
    assert_eq!(state_of(&page, "staff"), "Skipped");
    assert!(text(&page, "#step-staff").contains("Skipped by ada@acme.test at"), "{page}");
    assert_eq!(count(&page, "#step-clients form.step-upload"), 1, "clients wait for nothing skipped");
    assert!(text(&page, "#onboarding-steps").contains("2 of 5 steps done"));
    c.submit(PAGE, &format!("{PAGE}/staff/resume"), &[]).await.see_other();
    let page = c.get(PAGE).await.body;
    assert_eq!(state_of(&page, "staff"), "Not started");
    assert!(text(&page, "#step-clients .step-body").contains("Import Staff first"));
    let audit = c.get("/settings/audit?kind=onboarding").await.body;
    assert!(audit.contains("Skipped an onboarding step") && audit.contains("Took up an onboarding step again"));
    // an unknown step or verb is a 404; a step being imported is not skipped
    assert_eq!(c.submit(PAGE, &format!("{PAGE}/spaceships/skip"), &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(c.submit(PAGE, &format!("{PAGE}/staff/explode"), &[]).await.status, StatusCode::NOT_FOUND);
    let file = b"employee_id,first_name,last_name\nE-1,Ada,Lovelace\n";
    c.upload("staff", ("staff.csv", file), &[("onboarding", "1")]).await.see_other();
    c.submit(PAGE, &format!("{PAGE}/staff/skip"), &[]).await.see_other();
    let page = c.get(PAGE).await.body;
    assert!(page.contains("Staff is being imported, so it was not skipped."), "{page}");
    assert_eq!(state_of(&page, "staff"), "In progress");
}

#[actix_web::test]
async fn the_onboarding_needs_the_upload_permission() {
    let (app, _) = app().await;
    app.user("acme", "vic@acme.test", "viewer").await;
    let mut vic = app.signed_in("vic@acme.test").await;
    assert_eq!(vic.get(PAGE).await.status, StatusCode::FORBIDDEN);
    assert!(!vic.get("/").await.body.contains("Start onboarding"), "not offered to someone who cannot import");
    let token = vic.get("/").await.csrf();
    let r = vic.post_form(&format!("{PAGE}/locations/skip"), &[("csrf_token", token.as_str())]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // another org's onboarding is its own: its steps, its imports
    let mut ada = app.signed_in("ada@acme.test").await;
    let id = id_in(
        &ada.upload("locations", ("l.csv", b"code,name,kind\nLOC-1,Main,clinic\n"), &[("onboarding", "1")])
            .await
            .see_other(),
    );
    ada.submit(PAGE, &format!("{PAGE}/staff/skip"), &[]).await.see_other();
    app.user("globex", "gus@globex.test", "owner").await;
    let mut gus = app.signed_in("gus@globex.test").await;
    let theirs = gus.get(PAGE).await.body;
    assert_eq!(texts(&theirs, "ol.steps .step-head .badge"), ["Not started"; 5], "{theirs}");
    assert_eq!(gus.get(&format!("/settings/imports/{id}")).await.status, StatusCode::NOT_FOUND);
    gus.submit(PAGE, &format!("{PAGE}/locations/skip"), &[]).await.see_other();
    assert_eq!(state_of(&ada.get(PAGE).await.body, "locations"), "In progress", "untouched by the other org");
}

/// Uploads `file` from the onboarding for `entity` and imports it; the import's id.
async fn import_step(app: &crate::helpers::TestApp, c: &mut crate::helpers::Client, entity: &str, file: &[u8]) -> i64 {
    let id = id_in(&c.upload(entity, ("step.csv", file), &[("onboarding", "1")]).await.see_other());
    c.confirm_mapping(id).await.see_other();
    app.drain().await;
    start_import(app, c, id, &[]).await.see_other();
    id
}

#[actix_web::test]
async fn rolling_the_onboarding_back_undoes_every_step_last_first_and_leaves_the_org_as_before() {
    let (app, mut c) = app().await;
    // what the org had before: a location the onboarding then updates
    import_file(&app, &mut c, "locations", ("before.csv", b"code,name,kind\nLOC-0,Old name,clinic\n")).await;
    let before = crate::actions::snapshot(&app).await;
    let sites = b"code,name,kind\nLOC-0,New name,clinic\nLOC-1,Main,clinic\nLOC-2,North,office\n";
    let locations = import_step(&app, &mut c, "locations", sites).await;
    let staff = b"employee_id,first_name,last_name,email,role,home_location\nE-1,Ava,Nguyen,ava@x.test,nurse,LOC-1\n";
    let staff_id = import_step(&app, &mut c, "staff", staff).await;
    c.submit(PAGE, &format!("{PAGE}/clients/skip"), &[]).await.see_other();
    assert_ne!(crate::actions::snapshot(&app).await, before);

    // the dialog names every step's count, last step first
    let page = c.get(&format!("{PAGE}?rollback=1")).await.body;
    let lines = texts(&page, "#onboarding-rollback-desc ul li");
    assert_eq!(lines.len(), 2, "{page}");
    assert!(lines[0].starts_with("Staff") && lines[0].ends_with(": 1 created record removed"), "{lines:?}");
    assert!(lines[1].starts_with("Locations"), "{lines:?}");
    assert!(lines[1].ends_with(": 2 created records removed, 1 updated record gets earlier values back"), "{lines:?}");
    assert_eq!(attrs(&page, "#onboarding-rollback[open]", "id").len(), 1, "opened by the link without script");

    c.submit(PAGE, &format!("{PAGE}/rollback"), &[]).await.see_other();
    let page = c.get(PAGE).await.body;
    assert!(page.contains("Rolling back the onboarding, one step at a time: Staff, then Locations."), "{page}");
    assert_eq!(count(&page, "#onboarding-rolling-back"), 1);
    // staff first: locations wait until it is undone
    let org = stevedore::domain::ids::OrgId::new(app.org_id("acme").await);
    let get = async |id: i64| stevedore::store::imports::get(&app.db, org, id).await.unwrap().unwrap();
    assert!(get(locations).await.rollback.requested_at.is_none(), "locations wait for staff");
    assert!(get(staff_id).await.rollback.requested_at.is_some());
    app.drain().await;
    app.drain().await;
    let page = c.get(PAGE).await.body;
    assert_eq!(count(&page, "#onboarding-rolling-back"), 0, "{page}");
    assert_eq!(state_of(&page, "locations"), "Not started");
    assert_eq!(state_of(&page, "staff"), "Not started");
    assert_eq!(crate::actions::snapshot(&app).await, before, "the org's records are as they were, byte for byte");
    let audit = c.get("/settings/audit?kind=onboarding").await.body;
    assert!(audit.contains("Asked to roll back the onboarding") && audit.contains("Onboarding rolled back"), "{audit}");
    // nothing left to undo
    c.submit(PAGE, &format!("{PAGE}/rollback"), &[]).await.see_other();
    assert!(c.get(PAGE).await.body.contains("Nothing of the onboarding can be rolled back"));
}

/// POSTs `file` to the onboarding's workbook upload; the response.
async fn upload_workbook(c: &mut crate::helpers::Client, file: (&str, &[u8])) -> crate::helpers::Resp {
    let token = c.get(PAGE).await.csrf();
    c.post_multipart(&format!("{PAGE}/workbook?csrf_token={token}"), &[], Some(file)).await
}

/// Confirms the mapping of the step's import and imports it.
async fn go_through(app: &crate::helpers::TestApp, c: &mut crate::helpers::Client, id: i64) {
    c.confirm_mapping(id).await.see_other();
    app.drain().await;
    start_import(app, c, id, &[]).await.see_other();
}

fn step_import_id(page: &str, entity: &str) -> i64 {
    let href = attrs(page, &format!("#step-{entity} .step-body a[href^='/settings/imports/']"), "href");
    id_in(href.first().unwrap_or_else(|| panic!("no import for {entity}: {page}")))
}

#[actix_web::test]
async fn one_workbook_makes_every_matched_sheet_its_steps_import_and_lists_the_others() {
    use rust_xlsxwriter::Workbook;
    let (app, mut c) = app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.xlsx");
    let mut wb = Workbook::new();
    let rows: [(&str, &[&[&str]]); 3] = [
        ("Locations", &[&["code", "name", "kind"], &["LOC-1", "Main", "clinic"], &["LOC-2", "North", "office"]]),
        (
            "Staff member",
            &[
                &["employee_id", "first_name", "last_name", "email", "role", "home_location"],
                &["E-1", "Ava", "Nguyen", "ava@x.test", "nurse", "LOC-2"],
            ],
        ),
        ("Notes", &[&["anything"], &["not an entity type"]]),
    ];
    for (sheet, cells) in rows {
        let ws = wb.add_worksheet().set_name(sheet).unwrap();
        for (r, row) in cells.iter().enumerate() {
            for (col, v) in row.iter().enumerate() {
                ws.write_string(r as u32, col as u16, *v).unwrap();
            }
        }
    }
    wb.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    upload_workbook(&mut c, ("org.xlsx", &bytes)).await.see_other();
    let page = c.get(PAGE).await.body;
    assert!(
        page.contains("org.xlsx: 2 imports created (Locations, Staff), each waiting for its column mapping"),
        "{page}"
    );
    assert!(page.contains("Matching no entity type, so ignored: Notes."), "{page}");
    assert_eq!(state_of(&page, "locations"), "In progress");
    assert_eq!(state_of(&page, "staff"), "In progress");
    assert!(
        text(&page, "#step-staff").contains("From the same workbook as Locations: Validate all checks it after them"),
        "{page}"
    );
    assert_eq!(state_of(&page, "clients"), "Not started");
    // in step order, the staff sheet's references resolve against the locations sheet's records
    let locations = step_import_id(&page, "locations");
    let staff = step_import_id(&page, "staff");
    let detail = c.get(&format!("/settings/imports/{staff}")).await.body;
    assert!(detail.contains("sample-values\" id=\"sample-home_location\">LOC-2<"), "the sheet's values: {detail}");
    go_through(&app, &mut c, locations).await;
    go_through(&app, &mut c, staff).await;
    let page = c.get(PAGE).await.body;
    assert_eq!(state_of(&page, "locations"), "Completed", "{page}");
    assert_eq!(state_of(&page, "staff"), "Completed", "{page}");
    assert!(text(&page, "#onboarding-steps").contains("3 records imported so far"), "{page}");
    let audit = c.get("/settings/audit?kind=imports").await.body;
    assert!(audit.contains("org.xlsx, sheet Staff member"), "{audit}");
    // the workbook again: a completed step takes a new file, one whose import is on its way does not
    c.upload("locations", ("l.csv", b"code,name,kind\nLOC-3,South,clinic\n"), &[("onboarding", "1")]).await.see_other();
    upload_workbook(&mut c, ("org.xlsx", &bytes)).await.see_other();
    let page = c.get(PAGE).await.body;
    assert!(page.contains("org.xlsx: 1 import created (Staff)"), "{page}");
    assert!(
        page.contains("Not created: Locations: an import of it is on its way, so &#34;Locations&#34; was left alone."),
        "{page}"
    );
}

#[actix_web::test]
async fn a_zip_of_csv_files_works_the_same_and_anything_else_is_refused() {
    use std::io::Write;
    let (app, mut c) = app().await;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        for (name, body) in [
            ("export/LOCATIONS.csv", "code,name,kind\nLOC-1,Main,clinic\n"),
            ("readme.txt", "not a csv"),
            ("orders.csv", "id\n1\n"),
        ] {
            zip.start_file(name, opts).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
    }
    let bytes = buf.into_inner();
    upload_workbook(&mut c, ("org.zip", &bytes)).await.see_other();
    let page = c.get(PAGE).await.body;
    assert!(page.contains("org.zip: 1 import created (Locations)"), "{page}");
    assert!(page.contains("Matching no entity type, so ignored: orders.csv."), "{page}");
    let id = step_import_id(&page, "locations");
    let detail = c.get(&format!("/settings/imports/{id}")).await.body;
    assert!(detail.contains("LOCATIONS.csv"), "the file keeps its own name: {detail}");
    go_through(&app, &mut c, id).await;
    assert_eq!(state_of(&c.get(PAGE).await.body, "locations"), "Completed");
    // not a workbook nor a zip: said, and nothing is created
    upload_workbook(&mut c, ("org.csv", b"code,name\nLOC-9,X\n")).await.see_other();
    let page = c.get(PAGE).await.body;
    assert!(page.contains("org.csv: Upload an XLSX workbook with a sheet per entity type, or a zip of CSV files"));
    assert_eq!(texts(&page, "ol.steps .step-head .badge")[1..], ["Not started"; 4]);
}

/// An XLSX of `sheets` (name, rows of cells), as bytes.
fn workbook(sheets: &[(&str, &[&[&str]])]) -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    for (sheet, rows) in sheets {
        let ws = wb.add_worksheet().set_name(*sheet).unwrap();
        for (r, row) in rows.iter().enumerate() {
            for (col, v) in row.iter().enumerate() {
                ws.write_string(r as u32, col as u16, *v).unwrap();
            }
        }
    }
    wb.save_to_buffer().unwrap()
}

const CLIENT_HEADER: &[&str] =
    &["client_number", "first_name", "last_name", "birth_date", "status", "location", "primary_staff"];

#[actix_web::test]
async fn a_workbook_validates_in_dependency_order_previews_once_and_imports_with_one_click() {
    let (app, mut c) = app().await;
    let bytes = workbook(&[
        ("Clients", &[CLIENT_HEADER, &["CL-1", "Ann", "Lee", "1980-02-03", "active", "LOC-2", "E-1"]]),
        ("Locations", &[&["code", "name", "kind"], &["LOC-1", "Main", "clinic"], &["LOC-2", "North", "office"]]),
        (
            "Staff",
            &[
                &["employee_id", "first_name", "last_name", "email", "role", "home_location"],
                &["E-1", "Ava", "Nguyen", "ava@x.test", "nurse", "LOC-2"],
                &["E-2", "Bo", "Ray", "bo@x.test", "nurse", "LOC-9"],
            ],
        ),
    ]);
    upload_workbook(&mut c, ("org.xlsx", &bytes)).await.see_other();
    let page = c.get(PAGE).await.body;
    assert_eq!(texts(&page, "#workbook-preview tbody td.cell-title"), ["Locations", "Staff", "Clients"], "step order");
    assert_eq!(count(&page, "#workbook-preview form[action$='/validate']"), 1, "{page}");
    c.submit(PAGE, &format!("{PAGE}/validate"), &[]).await.see_other();
    let page = c.get(PAGE).await.body;
    assert!(page.contains("Validating Locations, then Staff, then Clients"), "{page}");
    app.drain().await;
    // every sheet validated; the references to rows of other sheets resolved before any import
    let page = c.get(PAGE).await.body;
    let rows = texts(&page, "#workbook-preview tbody tr");
    assert!(rows[0].contains("Ready") && rows[0].ends_with("2 0 2 0"), "{rows:?}");
    assert!(rows[1].contains("Ready") && rows[1].ends_with("1 1 1 0"), "E-2 names no location: {rows:?}");
    assert!(rows[2].contains("Ready") && rows[2].ends_with("1 0 1 0"), "CL-1 names LOC-2 and E-1: {rows:?}");
    let staff = step_import_id(&page, "staff");
    let issues = c.get(&format!("/settings/imports/{staff}")).await.body;
    assert!(issues.contains("home_location: no locations record has the key &#34;LOC-9&#34;"), "{issues}");
    assert_eq!(count(&page, "#workbook-preview form[action$='/import']"), 1, "{page}");
    // a sheet started on its own page waits for the sheets whose rows it refers to
    let clients = step_import_id(&page, "clients");
    start_import(&app, &mut c, clients, &[]).await.see_other();
    let detail = c.get(&format!("/settings/imports/{clients}")).await.body;
    assert!(
        detail.contains("Import Locations and Staff first: this sheet of the workbook refers to their rows"),
        "{detail}"
    );
    c.submit(PAGE, &format!("{PAGE}/import"), &[]).await.see_other();
    app.drain().await;
    let page = c.get(PAGE).await.body;
    assert_eq!(state_of(&page, "locations"), "Completed", "{page}");
    assert_eq!(state_of(&page, "staff"), "Needs attention");
    assert_eq!(state_of(&page, "clients"), "Completed");
    assert!(text(&page, "#onboarding-steps").contains("4 records imported so far"), "{page}");
    assert_eq!(count(&page, "#workbook-preview form"), 0, "nothing left to do");
    let audit = c.get("/settings/audit?kind=imports").await.body;
    assert!(audit.contains("ada@acme.test (Import all)"), "each import started in the person's name: {audit}");
}

#[actix_web::test]
async fn a_sheet_that_fails_stops_the_sheets_that_refer_to_it_and_only_those() {
    let (app, mut c) = app().await;
    let bytes = workbook(&[
        ("Locations", &[&["code", "name", "kind"], &["LOC-1", "Main", "clinic"]]),
        (
            "Staff",
            &[
                &["employee_id", "first_name", "last_name", "email", "role", "home_location"],
                &["E-1", "Ava", "Nguyen", "ava@x.test", "nurse", "LOC-1"],
            ],
        ),
        ("Clients", &[CLIENT_HEADER, &["CL-1", "Ann", "Lee", "1980-02-03", "active", "LOC-1", "E-1"]]),
        ("Forms", &[&["form_code", "title", "category"], &["F-1", "Intake", "intake"]]),
    ]);
    upload_workbook(&mut c, ("org.xlsx", &bytes)).await.see_other();
    c.submit(PAGE, &format!("{PAGE}/validate"), &[]).await.see_other();
    app.drain().await;
    // the staff import fails before it is imported (discarded here, as a failure would)
    let page = c.get(PAGE).await.body;
    let staff = step_import_id(&page, "staff");
    let token = c.get(&format!("/settings/imports/{staff}")).await.csrf();
    c.post_form(&format!("/settings/imports/{staff}/discard"), &[("csrf_token", token.as_str())]).await.see_other();
    // clients, which refer to staff, stop saying why; the rest go on with one click
    let page = c.get(PAGE).await.body;
    assert_eq!(state_of(&page, "clients"), "Needs attention", "{page}");
    assert!(
        text(&page, "#step-clients").contains("Not imported: Staff, which it refers to, did not import (import #"),
        "{page}"
    );
    c.submit(PAGE, &format!("{PAGE}/import"), &[]).await.see_other();
    let page = c.get(PAGE).await.body;
    assert!(page.contains("Importing Locations, then Forms, in that order."), "{page}");
    app.drain().await;
    let page = c.get(PAGE).await.body;
    assert_eq!(state_of(&page, "locations"), "Completed");
    assert_eq!(state_of(&page, "forms"), "Completed");
    assert_eq!(state_of(&page, "staff"), "Needs attention");
    assert_eq!(state_of(&page, "clients"), "Needs attention");
}

/// The five example files (`examples/`), in step order: (entity, bytes, rows).
fn examples() -> Vec<(&'static str, Vec<u8>, i64)> {
    ["locations", "staff", "clients", "policies", "forms"]
        .into_iter()
        .map(|e| {
            let bytes = std::fs::read(format!("examples/{e}.csv")).unwrap();
            let rows = csv::Reader::from_reader(bytes.as_slice()).records().count() as i64;
            (e, bytes, rows)
        })
        .collect()
}

#[actix_web::test]
async fn the_five_example_files_step_by_step() {
    let (app, mut c) = app().await;
    let mut total = 0;
    for (entity, bytes, rows) in examples() {
        let page = c.get(PAGE).await.body;
        assert_eq!(count(&page, &format!("#step-{entity} form.step-upload")), 1, "{entity} may go: {page}");
        import_step(&app, &mut c, entity, &bytes).await;
        total += rows;
        let page = c.get(PAGE).await.body;
        assert_eq!(state_of(&page, entity), "Completed", "{entity}: {page}");
        assert!(text(&page, &format!("#step-{entity}")).contains(&format!("{rows} records created")), "{page}");
    }
    let page = c.get(PAGE).await.body;
    assert!(text(&page, "#onboarding-steps").contains(&format!("5 of 5 steps done · {total} records imported so far")));
}

#[actix_web::test]
async fn the_same_examples_as_one_workbook_and_as_a_zip_resolve_across_sheets() {
    use std::io::Write;
    let all = examples();
    let total: i64 = all.iter().map(|e| e.2).sum();
    // the workbook: a sheet per file, named by label, in an order references do not follow
    let mut cells: Vec<(String, Vec<Vec<String>>)> = vec![];
    for (entity, bytes, _) in all.iter().rev() {
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes.as_slice());
        let rows = rdr.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
        let label = entity[..1].to_uppercase() + &entity[1..];
        cells.push((label, rows));
    }
    let mut wb = rust_xlsxwriter::Workbook::new();
    for (sheet, rows) in &cells {
        let ws = wb.add_worksheet().set_name(sheet).unwrap();
        for (r, row) in rows.iter().enumerate() {
            for (col, v) in row.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
                ws.write_string(r as u32, col as u16, v).unwrap();
            }
        }
    }
    let xlsx = wb.save_to_buffer().unwrap();
    let mut zip = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut zip);
        for (entity, bytes, _) in &all {
            w.start_file(format!("org/{entity}.csv"), zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap();
    }
    let zip = zip.into_inner();
    for (name, bytes) in [("org.xlsx", xlsx), ("org.zip", zip)] {
        let (app, mut c) = app().await;
        upload_workbook(&mut c, (name, &bytes)).await.see_other();
        let page = c.get(PAGE).await.body;
        assert!(
            page.contains(&format!("{name}: 5 imports created (Locations, Staff, Clients, Policies, Forms)")),
            "{page}"
        );
        c.submit(PAGE, &format!("{PAGE}/validate"), &[]).await.see_other();
        app.drain().await;
        let page = c.get(PAGE).await.body;
        let preview = texts(&page, "#workbook-preview tbody tr");
        for ((entity, _, rows), line) in all.iter().zip(&preview) {
            assert!(
                line.ends_with(&format!("{rows} 0 {rows} 0")),
                "{name} {entity}: every row valid, to create: {preview:?}"
            );
        }
        c.submit(PAGE, &format!("{PAGE}/import"), &[]).await.see_other();
        app.drain().await;
        let page = c.get(PAGE).await.body;
        assert_eq!(texts(&page, "ol.steps .step-head .badge"), ["Completed"; 5], "{name}: {page}");
        assert!(text(&page, "#onboarding-steps").contains(&format!("{total} records imported so far")), "{name}");
    }
}
