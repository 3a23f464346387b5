//! Data Exports (seed 002) over HTTP: request, background build, signed download, delete.

use std::io::Read;

use awc::http::StatusCode;

use crate::helpers::{Client, Resp, TestApp, app, attrs, count, first_id, import_file, texts};

/// Requests an export through the New Export form; the response.
async fn request(c: &mut Client, fields: &[(&str, &str)]) -> Resp {
    c.submit("/settings/exports", "/settings/exports", fields).await
}

/// Follows Download to the signed link and fetches the file.
async fn download(c: &mut Client, id: i64) -> (Resp, String) {
    let r = c.get(&format!("/settings/exports/{id}/download")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let link = r.location();
    assert!(link.starts_with(&format!("/exports/{id}/file?expires=")), "{link}");
    (c.get(&link).await, link)
}

async fn records(app: &TestApp, org: &str, entity: &str) -> Vec<(String, String)> {
    let org = stevedore::domain::ids::OrgId::new(app.org_id(org).await);
    stevedore::store::records::list(&app.db, org, entity, None, 1000, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.record_key, r.data))
        .collect()
}

#[actix_web::test]
async fn a_csv_export_re_imports_as_the_records_it_came_from() {
    let (app, mut c) = app().await;
    app.user("globex", "ada@acme.test", "owner").await;
    let examples = std::fs::read("examples/locations.csv").unwrap();
    import_file(&app, &mut c, "locations", ("l.csv", &examples)).await;
    let source = records(&app, "acme", "locations").await;
    assert!(source.len() >= 20);

    let page = c.get("/settings/exports").await;
    assert!(page.body.contains("No exports yet") && page.body.contains("New Export"));
    assert_eq!(
        texts(&page.body, ".empty-state a[data-open='new-export']"),
        ["New Export"],
        "offered where it is empty"
    );
    // an owner's empty entity page offers Import beside the template; every page a skip link
    let empty = c.get("/staff").await;
    assert_eq!(texts(&empty.body, ".empty-state .button"), ["Import", "Download template"]);
    assert_eq!(attrs(&empty.body, ".empty-state a.button", "href")[0], "/staff/importer");
    assert_eq!(attrs(&empty.body, "body > a.skip-link", "href"), ["#main"]);
    let r = request(&mut c, &[("export_type", "entity_data"), ("format", "csv"), ("entity_types", "locations")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = c.get("/settings/exports").await;
    assert_eq!(texts(&page.body, "#exports .badge"), ["Pending"], "{}", page.body);
    assert_eq!(count(&page.body, "[hx-target='#exports']"), 1, "the Refresh button: {}", page.body);
    assert_eq!(
        count(&page.body, "#exports[hx-trigger='every 3s']"),
        1,
        "the list refreshes itself while work is in progress"
    );
    app.drain().await;
    let page = c.get("/settings/exports").await;
    assert_eq!(texts(&page.body, "#exports .badge"), ["Completed"], "{}", page.body);
    assert_eq!(count(&page.body, "[hx-trigger]"), 0, "{}", page.body);
    let cells = texts(&page.body, "#exports td");
    assert!(cells.iter().any(|c| c == "CSV") && cells.iter().any(|c| c == "Locations"), "{cells:?}");
    let id = first_id(&page.body, "export-");

    let (file, _) = download(&mut c, id).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.header("content-type"), "text/csv; charset=utf-8");
    let today = stevedore::web::format_day(stevedore::now());
    assert!(file.header("content-disposition").contains(&format!("locations-{today}.csv")));
    let template = c.get("/locations/template.csv").await.body;
    assert_eq!(file.body.lines().next(), template.lines().next(), "the importer template's header");
    assert_eq!(file.body.lines().count(), source.len() + 1);

    // the exported file re-imports into another org as the same records
    let token = c.get("/").await.csrf();
    let globex = app.org_id("globex").await.to_string();
    let r = c.post_form("/switch-org", &[("csrf_token", token.as_str()), ("org_id", globex.as_str())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // phone numbers such as +1 503-555-… were written with the text marker ('+1 …)
    assert!(file.body.contains(",'+1 503-555-"), "{}", file.body);
    import_file(&app, &mut c, "locations", ("l.csv", file.body.as_bytes())).await;
    assert_eq!(records(&app, "globex", "locations").await, source, "round trip");
}

#[actix_web::test]
async fn formula_cells_are_neutralized_and_several_entities_are_zipped() {
    let (app, mut c) = app().await;
    app.add_record("acme", "locations", &[("code", "LOC-1"), ("name", "=HYPERLINK(\"x\")"), ("kind", "clinic")]).await;
    app.add_record("acme", "locations", &[("code", "LOC-2"), ("name", "-cmd"), ("kind", "office"), ("city", "@SUM")])
        .await;
    app.add_record(
        "acme",
        "staff",
        &[
            ("employee_id", "E-1"),
            ("first_name", "Ava"),
            ("last_name", "+Nguyen"),
            ("email", "ava@x.test"),
            ("role", "nurse"),
            ("home_location", "LOC-1"),
        ],
    )
    .await;
    let fields =
        [("export_type", "entity_data"), ("format", "csv"), ("entity_types", "locations"), ("entity_types", "staff")];
    assert_eq!(request(&mut c, &fields).await.status, StatusCode::SEE_OTHER);
    app.drain().await;
    let id = first_id(&c.get("/settings/exports").await.body, "export-");
    let (file, _) = download(&mut c, id).await;
    assert_eq!(file.header("content-type"), "application/zip");
    assert!(file.header("content-disposition").contains("entities-"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(file.bytes.clone())).unwrap();
    assert_eq!(zip.len(), 2);

    let mut locations = String::new();
    zip.by_name("locations.csv").unwrap().read_to_string(&mut locations).unwrap();
    assert!(locations.contains("LOC-1,\"'=HYPERLINK(\"\"x\"\")\""), "{locations}");
    assert!(locations.contains("LOC-2,'-cmd") && locations.contains("'@SUM"), "{locations}");
    let mut staff = String::new();
    zip.by_name("staff.csv").unwrap().read_to_string(&mut staff).unwrap();
    assert!(staff.contains("'+Nguyen"), "{staff}");
}

#[actix_web::test]
async fn json_lines_import_history_and_audit_log() {
    let (app, mut c) = app().await;
    import_file(&app, &mut c, "locations", ("l.csv", b"code,name,kind\nLOC-1,Main,clinic\nLOC-2,North,office\n")).await;
    request(&mut c, &[("export_type", "entity_data"), ("format", "json"), ("entity_types", "locations")]).await;
    app.drain().await;
    let id = first_id(&c.get("/settings/exports").await.body, "export-");
    let (file, _) = download(&mut c, id).await;
    assert_eq!(file.header("content-type"), "application/x-ndjson");
    let docs: Vec<serde_json::Value> = file.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["code"], "LOC-1");
    assert_eq!(docs[1]["kind"], "office");

    request(&mut c, &[("export_type", "import_history"), ("format", "csv")]).await;
    app.drain().await;
    let id = first_id(&c.get("/settings/exports").await.body, "export-");
    let (file, _) = download(&mut c, id).await;
    let mut lines = file.body.lines();
    assert_eq!(
        lines.next(),
        Some("id,entity,name,file,action,status,total_rows,created,updated,deleted,failed,created_by,created_at")
    );
    assert!(lines.next().unwrap().contains(",locations,,l.csv,merge,completed,2,2,0,0,0,ada@acme.test,"));

    request(&mut c, &[("export_type", "audit_log"), ("format", "csv")]).await;
    app.drain().await;
    let id = first_id(&c.get("/settings/exports").await.body, "export-");
    let (file, _) = download(&mut c, id).await;
    assert!(file.body.starts_with("id,at,who,action,target,detail,address\n"));
    assert!(file.body.contains("import_started") && file.body.contains("export_requested"), "{}", file.body);
    assert!(file.body.contains("Entity data, JSON: Locations"), "entity types by their label: {}", file.body);
}

#[actix_web::test]
async fn invalid_choices_are_explained_in_the_dialog() {
    let (_app, mut c) = app().await;
    for (fields, message) in [
        (vec![("export_type", "entity_data"), ("format", "csv")], "Choose at least one entity type to export."),
        (
            vec![("export_type", "entity_data"), ("format", "pdf"), ("entity_types", "locations")],
            "Choose a format: CSV, XLSX or JSON.",
        ),
        (
            vec![("export_type", "entity_data"), ("format", "csv"), ("entity_types", "planets")],
            "\"planets\" is not an entity type.",
        ),
        (
            vec![
                ("export_type", "audit_log"),
                ("format", "csv"),
                ("date_from", "2026-05-02"),
                ("date_to", "2026-05-01"),
            ],
            "The start of the date range is after its end.",
        ),
        (
            vec![("export_type", "audit_log"), ("format", "csv"), ("date_from", "May 1")],
            "\"May 1\" is not a date (expected YYYY-MM-DD).",
        ),
    ] {
        let r = request(&mut c, &fields).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        let body = r.body.replace("&#34;", "\"");
        assert!(body.contains(message), "{message}: {body}");
        assert_eq!(count(&body, "dialog#new-export[open][data-modal]"), 1);
    }
    assert!(c.get("/settings/exports").await.body.contains("No exports yet"), "nothing was requested");
}

#[actix_web::test]
async fn links_expire_cannot_be_altered_and_deleting_keeps_the_records() {
    let (app, mut c) = app().await;
    import_file(&app, &mut c, "locations", ("l.csv", b"code,name,kind\nLOC-1,Main,clinic\n")).await;
    request(&mut c, &[("export_type", "entity_data"), ("format", "csv"), ("entity_types", "locations")]).await;
    app.drain().await;
    let id = first_id(&c.get("/settings/exports").await.body, "export-");
    let (ok, link) = download(&mut c, id).await;
    assert_eq!(ok.status, StatusCode::OK);
    // the link works without a session: it is the signature that grants it
    let mut stranger = Client::new(&app.base);
    assert_eq!(stranger.get(&link).await.status, StatusCode::OK);
    // altered: another expiry, another signature, another export
    let expires: i64 = link.split("expires=").nth(1).unwrap().split('&').next().unwrap().parse().unwrap();
    let later = link.replace(&format!("expires={expires}"), &format!("expires={}", expires + 3600));
    let sig = link.split("sig=").nth(1).unwrap();
    let flipped = link.replace(sig, &format!("{}{}", if sig.starts_with('0') { "1" } else { "0" }, &sig[1..]));
    let twice = format!("{link}&sig={sig}");
    let no_number = link.replace(&format!("expires={expires}"), "expires=soon");
    for bad in
        [later, flipped, link.replace(&format!("/exports/{id}/"), &format!("/exports/{}/", id + 1)), twice, no_number]
    {
        let r = stranger.get(&bad).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{bad}");
        assert!(r.body.contains("Go back to Data Exports and click Download again for a fresh link."));
    }
    // a genuine link past its hour
    let key_hex = std::fs::read_to_string(app._data_dir.path().join("session.key")).unwrap();
    let key = stevedore::domain::exports::link_key(&hex::decode(key_hex.trim()).unwrap());
    let org = app.org_id("acme").await;
    let path = {
        let o = stevedore::domain::ids::OrgId::new(org);
        stevedore::store::exports::get(&app.db, o, id).await.unwrap().unwrap().file_path
    };
    let past = stevedore::now() - 1;
    let old_sig = stevedore::domain::exports::sign(&key, &path, org, past);
    assert_eq!(
        stranger.get(&format!("/exports/{id}/file?expires={past}&sig={old_sig}")).await.status,
        StatusCode::FORBIDDEN
    );
    let fresh = stevedore::now() + 60;
    let fresh_sig = stevedore::domain::exports::sign(&key, &path, org, fresh);
    assert_eq!(
        stranger.get(&format!("/exports/{id}/file?expires={fresh}&sig={fresh_sig}")).await.status,
        StatusCode::OK
    );

    // delete: the entry and its file go, the records stay
    let before = records(&app, "acme", "locations").await;
    let r = c.submit("/settings/exports", &format!("/settings/exports/{id}/delete"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(c.get("/settings/exports").await.body.contains(&format!("Export #{id} deleted.")));
    assert!(!std::path::Path::new(&path).exists());
    assert_eq!(
        stranger.get(&format!("/exports/{id}/file?expires={fresh}&sig={fresh_sig}")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(records(&app, "acme", "locations").await, before);
}

#[actix_web::test]
async fn viewing_and_requesting_need_their_permissions_and_stay_in_their_org() {
    let (app, mut c) = app().await;
    app.user("acme", "vic@acme.test", "viewer").await;
    app.user("globex", "gus@globex.test", "owner").await;
    request(&mut c, &[("export_type", "audit_log"), ("format", "csv")]).await;
    app.drain().await;
    let id = first_id(&c.get("/settings/exports").await.body, "export-");

    let mut vic = app.signed_in("vic@acme.test").await;
    let page = vic.get("/settings/exports").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("New Export") && page.body.contains("Download"), "a viewer sees and downloads");
    let token = page.csrf();
    let r = vic
        .post_form(
            "/settings/exports",
            &[("csrf_token", token.as_str()), ("export_type", "audit_log"), ("format", "csv")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("pf.export_requests.create"));
    let r = vic.post_form(&format!("/settings/exports/{id}/delete"), &[("csrf_token", token.as_str())]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let mut gus = app.signed_in("gus@globex.test").await;
    assert!(gus.get("/settings/exports").await.body.contains("No exports yet"), "another org's exports are not listed");
    assert_eq!(gus.get(&format!("/settings/exports/{id}/download")).await.status, StatusCode::NOT_FOUND);
    let token = gus.get("/").await.csrf();
    let r = gus.post_form(&format!("/settings/exports/{id}/delete"), &[("csrf_token", token.as_str())]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(count(&c.get("/settings/exports").await.body, &format!("#export-{id}")), 1);
}

#[actix_web::test]
async fn a_completed_export_expires_after_its_retention_and_offers_no_download() {
    let (app, mut c) = app().await;
    request(&mut c, &[("export_type", "audit_log"), ("format", "csv")]).await;
    app.drain().await;
    let id = first_id(&c.get("/settings/exports").await.body, "export-");
    let (ok, link) = download(&mut c, id).await;
    assert_eq!(ok.status, StatusCode::OK);
    let org = stevedore::domain::ids::OrgId::new(app.org_id("acme").await);
    let path = stevedore::store::exports::get(&app.db, org, id).await.unwrap().unwrap().file_path;
    // eight days later
    app.backdate_export(id, 8 * 86_400).await;
    app.maintain().await;
    let page = c.get("/settings/exports").await;
    assert_eq!(texts(&page.body, "#exports .badge"), ["Expired"], "{}", page.body);
    assert!(!page.body.contains(&format!("/settings/exports/{id}/download")), "no download offered");
    assert!(!std::path::Path::new(&path).exists(), "the file is deleted");
    assert_eq!(c.get(&link).await.status, StatusCode::FORBIDDEN, "an earlier link no longer works");
    assert_eq!(c.get(&format!("/settings/exports/{id}/download")).await.status, StatusCode::CONFLICT);
}

#[actix_web::test]
async fn an_xlsx_export_is_one_workbook_with_a_sheet_per_entity() {
    use calamine::{Data, Reader, Xlsx};
    let (app, mut c) = app().await;
    import_file(
        &app,
        &mut c,
        "locations",
        ("l.csv", b"code,name,kind,capacity,active\nLOC-1,Main,clinic,40,true\nLOC-2,=1+1,office,,\n"),
    )
    .await;
    app.add_record(
        "acme",
        "staff",
        &[
            ("employee_id", "E-1"),
            ("first_name", "Ava"),
            ("last_name", "Nguyen"),
            ("email", "ava@x.test"),
            ("role", "nurse"),
            ("home_location", "LOC-1"),
        ],
    )
    .await;
    let fields =
        [("export_type", "entity_data"), ("format", "xlsx"), ("entity_types", "locations"), ("entity_types", "staff")];
    assert_eq!(request(&mut c, &fields).await.status, StatusCode::SEE_OTHER);
    app.drain().await;
    let page = c.get("/settings/exports").await;
    assert_eq!(texts(&page.body, "#exports .badge"), ["Completed"], "{}", page.body);
    assert!(texts(&page.body, "#exports td").iter().any(|c| c == "XLSX"), "{}", page.body);
    let id = first_id(&page.body, "export-");
    let (file, _) = download(&mut c, id).await;
    assert_eq!(file.header("content-type"), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    assert!(file.header("content-disposition").contains(".xlsx"));
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(file.bytes.clone())).unwrap();
    assert_eq!(book.sheet_names(), ["Locations", "Staff"]);
    let sheet = book.worksheet_range("Locations").unwrap();
    let rows: Vec<Vec<Data>> = sheet.rows().map(|r| r.to_vec()).collect();
    let template = c.get("/locations/template.csv").await.body;
    let header: Vec<String> = rows[0].iter().map(|d| d.to_string()).collect();
    assert_eq!(header.join(","), template.lines().next().unwrap(), "the importer template's header");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][0], Data::String("LOC-1".into()));
    let capacity = header.iter().position(|h| h == "capacity").unwrap();
    let active = header.iter().position(|h| h == "active").unwrap();
    assert_eq!(rows[1][capacity], Data::Float(40.0), "numbers are numbers");
    assert_eq!(rows[1][active], Data::Bool(true));
    assert_eq!(rows[2][1], Data::String("=1+1".into()), "a formula-like name is its text, not a formula");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(file.bytes.clone())).unwrap();
    let mut styles = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("xl/styles.xml").unwrap(), &mut styles).unwrap();
    assert!(styles.contains("quotePrefix=\"1\""), "shown as text by Excel's quote prefix: {styles}");
    let mut sheet_xml = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("xl/worksheets/sheet1.xml").unwrap(), &mut sheet_xml).unwrap();
    assert!(!sheet_xml.contains("<f>"), "no formula anywhere: {sheet_xml}");
    let staff = book.worksheet_range("Staff").unwrap();
    assert_eq!(staff.rows().count(), 2);
}

#[actix_web::test]
async fn an_export_whose_worker_died_restarts_cleanly() {
    let (app, mut c) = app().await;
    import_file(&app, &mut c, "locations", ("l.csv", b"code,name,kind\nLOC-1,Main,clinic\nLOC-2,North,office\n")).await;
    request(&mut c, &[("export_type", "entity_data"), ("format", "csv"), ("entity_types", "locations")]).await;
    let id = first_id(&c.get("/settings/exports").await.body, "export-");
    let org = stevedore::domain::ids::OrgId::new(app.org_id("acme").await);
    let path = stevedore::store::exports::get(&app.db, org, id).await.unwrap().unwrap().file_path;
    // as a worker killed part-way leaves it: processing, with half a file beside the real one
    assert!(stevedore::store::exports::start(&app.db, id).await.unwrap());
    stevedore::store::exports::progress(&app.db, id, 1).await.unwrap();
    std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
    std::fs::write(format!("{path}.part"), "code,name\nLOC-1,half a row").unwrap();
    let page = c.get("/settings/exports").await;
    assert_eq!(texts(&page.body, "#exports .badge"), ["Processing"], "{}", page.body);
    assert_eq!(count(&page.body, "a[href$=\"/download\"]"), 0, "no download while processing");
    // the queued job (taken over once the lease ran out) starts the file again
    app.drain().await;
    let page = c.get("/settings/exports").await;
    assert_eq!(texts(&page.body, "#exports .badge"), ["Completed"], "{}", page.body);
    let (file, _) = download(&mut c, id).await;
    assert_eq!(file.body.lines().count(), 3, "{}", file.body);
    assert!(!file.body.contains("half a row"));
    assert!(!std::path::Path::new(&format!("{path}.part")).exists());
}

#[actix_web::test]
async fn htmx_refreshes_the_list_alone_until_nothing_is_in_progress() {
    let (app, mut c) = app().await;
    let r = request(&mut c, &[("export_type", "audit_log"), ("format", "csv")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = c.get("/settings/exports").await;
    let id = first_id(&page.body, "export-");
    assert!(page.body.contains("<script src=\"/static/htmx-2.0.11.min.js\" defer></script>"), "{}", page.body);
    assert!(page.body.contains(r#"hx-get="/settings/exports" hx-trigger="every 3s" hx-swap="outerHTML""#));

    // while the export is pending, htmx gets the list and the Refresh button, not the page
    let (status, vary, partial) = c.htmx_get("/settings/exports").await;
    assert_eq!(status, StatusCode::OK);
    assert!(vary.contains("HX-Request"), "{vary}");
    assert!(!partial.contains("<html") && !partial.contains("sidebar") && !partial.contains("id=\"new-export\""));
    assert!(partial.trim_start().starts_with("<section class=\"card card-flush\" id=\"exports\""), "{partial}");
    assert!(partial.contains(&format!("id=\"export-{id}\"")) && partial.contains(">Pending<"), "{partial}");
    assert!(partial.contains("hx-trigger=\"every 3s\""), "still polling: {partial}");
    assert!(partial.contains("id=\"exports-refresh\" hx-swap-oob=\"true\"><a "), "{partial}");
    assert!(partial.contains(&format!("id=\"delete-{id}\"")), "a row's Delete dialog comes with it");

    // once it is done, the list stops asking, and the Refresh button goes
    app.drain().await;
    let (_, _, partial) = c.htmx_get("/settings/exports").await;
    assert!(partial.contains(">Completed<") && !partial.contains("hx-trigger") && !partial.contains("hx-get"));
    assert!(partial.contains("id=\"exports-refresh\" hx-swap-oob=\"true\"></span>"), "{partial}");
    let page = c.get("/settings/exports").await.body;
    assert!(page.contains(">Completed<") && !page.contains("hx-trigger"), "a reload shows the same");

    // a refresh leaves the one-shot message for the page
    let r = c.submit("/settings/exports", &format!("/settings/exports/{id}/delete"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let (_, _, partial) = c.htmx_get("/settings/exports").await;
    assert!(partial.contains("No exports yet") && !partial.contains("deleted."));
    assert!(c.get("/settings/exports").await.body.contains(&format!("Export #{id} deleted.")));
}

#[actix_web::test]
async fn htmx_itself_is_served_by_the_app() {
    let (app, _) = app().await;
    let js = app.client().get("/static/htmx-2.0.11.min.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.header("content-type"), "text/javascript; charset=utf-8");
    assert!(js.body.starts_with("var htmx=function(){"), "the minified release");
    assert!(js.body.contains("\"2.0.11\""), "the version its name says");
}

#[actix_web::test]
async fn an_export_that_keeps_failing_says_so_in_plain_words_not_the_database_error() {
    let (app, mut c) = app().await;
    import_file(&app, &mut c, "locations", ("l.csv", b"code,name,kind\nLOC-1,Main,clinic\n")).await;
    request(&mut c, &[("export_type", "entity_data"), ("format", "csv"), ("entity_types", "locations")]).await;
    // the job's last attempt, and the records unreadable (a table gone missing)
    app.exec("UPDATE jobs SET attempts = max_attempts - 1 WHERE kind = 'export.build'", &[]).await;
    app.exec("ALTER TABLE records RENAME TO records_away", &[]).await;
    app.drain().await;
    app.exec("ALTER TABLE records_away RENAME TO records", &[]).await;
    let page = c.get("/settings/exports").await;
    assert_eq!(texts(&page.body, "#exports .badge"), ["Failed"], "{}", page.body);
    assert!(page.body.contains("a database or storage error kept interrupting it"), "{}", page.body);
    for raw in ["no such table", "does not exist", "reading records to export", "error returned from database"] {
        assert!(!page.body.contains(raw), "no database error on the page ({raw}): {}", page.body);
    }
}
