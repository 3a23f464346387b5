//! The marketplace (seed 001) over HTTP: browse the catalog, import a bundle in the
//! background, see it in Import History, roll it back through the dialog.

use awc::http::StatusCode;

use crate::helpers::{Client, Resp, TestApp, app, app_with, attrs, count, definition, first_id, text, texts};

const V1: &str = "/cl/marketplace/behavioral-health-essentials/1.0.0/import";
const V2: &str = "/cl/marketplace/behavioral-health-essentials/2.0.0/import";
const BUNDLE_PAGE: &str = "/cl/marketplace/behavioral-health-essentials";
/// The cards of Import History.
const CARDS: &str = "[id^=\"mp-import-\"]";

/// Every policy and form of the org: (entity, key, data, id).
async fn records(app: &TestApp, org: &str) -> Vec<(String, String, String, i64)> {
    let org = stevedore::domain::ids::OrgId::new(app.org_id(org).await);
    let mut out = vec![];
    for entity in ["policies", "forms"] {
        for r in stevedore::store::records::list(&app.db, org, entity, None, 10_000, 0).await.unwrap() {
            out.push((entity.to_string(), r.record_key, r.data, r.id));
        }
    }
    out
}

/// Imports through the bundle page's form and runs the job; the redirect's response.
async fn import(app: &TestApp, c: &mut Client, action: &str, fields: &[(&str, &str)]) -> Resp {
    let r = c.submit(BUNDLE_PAGE, action, fields).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    app.drain().await;
    r
}

async fn audit_actions(app: &TestApp, org: &str) -> Vec<String> {
    let org = stevedore::domain::ids::OrgId::new(app.org_id(org).await);
    let filter = stevedore::store::audit::AuditFilter::default();
    stevedore::store::audit::list(&app.db, org, &filter, 100, 0).await.unwrap().into_iter().map(|e| e.action).collect()
}

#[actix_web::test]
async fn importing_then_rolling_back_leaves_the_records_exactly_as_before() {
    let (app, mut c) = app().await;
    // the org already has one of the bundle's policies (its own version) and one of its own
    app.add_record("acme", "policies", &[("policy_code", "BHE-POL-001"), ("title", "Our own"), ("category", "hr")])
        .await;
    app.add_record("acme", "forms", &[("form_code", "ACME-1"), ("title", "Acme form"), ("category", "intake")]).await;
    let before = records(&app, "acme").await;

    let catalog = c.get("/cl/marketplace").await;
    assert_eq!(catalog.status, StatusCode::OK);
    for title in ["Behavioral Health Essentials", "Infection Control Toolkit", "Privacy and HIPAA Foundations"] {
        assert!(catalog.body.contains(title), "{title} in the catalog");
    }
    assert!(catalog.body.contains("v2.0.0") && catalog.body.contains("2 versions"), "the newest version is shown");
    let found = c.get("/cl/marketplace?q=hand+hygiene").await.body;
    assert!(found.contains("Infection Control Toolkit") && !found.contains("Behavioral Health Essentials"));
    let tagged = c.get("/cl/marketplace?tag=OSHA").await.body;
    assert!(tagged.contains("Infection Control Toolkit") && !tagged.contains("Privacy and HIPAA"));
    assert!(c.get("/cl/marketplace?q=zzzz").await.body.contains("No bundles match"));

    let page = c.get(&format!("{BUNDLE_PAGE}?version=1.0.0")).await.body;
    assert!(page.contains("BHE-POL-001") && page.contains("Already present"), "{page}");
    assert_eq!(texts(&page, &format!("form[action=\"{V1}\"] button")), ["Import"], "Import button");

    let r = c.submit(BUNDLE_PAGE, V1, &[]).await;
    assert_eq!(r.location(), "/cl/marketplace/imports");
    let history = c.get("/cl/marketplace/imports").await.body;
    assert_eq!(texts(&history, ".import-card .badge.badge-secondary"), ["In Progress"], "{history}");
    app.drain().await;
    let history = c.get("/cl/marketplace/imports").await.body;
    assert_eq!(texts(&history, ".import-card .badge.badge-success"), ["Completed"], "{history}");
    assert!(history.contains("behavioral-health-essentials") && history.contains("v1.0.0"));
    // the card is titled by the bundle's title, its key beneath
    assert_eq!(text(&history, ".import-card h2"), "Behavioral Health Essentials v1.0.0");
    assert_eq!(definition(&history, ".import-card", "Imported items"), "23 (1 already present, skipped)");
    assert_eq!(text(&history, ".import-card dd .muted"), "(1 already present, skipped)");
    let id = first_id(&history, "mp-import-");

    let after = records(&app, "acme").await;
    assert_eq!(after.len(), before.len() + 23);
    let own = after.iter().find(|r| r.1 == "BHE-POL-001").unwrap();
    assert!(own.2.contains("Our own"), "a record the org had is never changed by the import");
    let imp =
        stevedore::store::marketplace::get(&app.db, stevedore::domain::ids::OrgId::new(app.org_id("acme").await), id)
            .await
            .unwrap()
            .unwrap();
    let snapshot = imp.snapshot();
    assert_eq!(snapshot.len(), 23, "the snapshot names exactly the rows created");
    assert!(snapshot.iter().all(|s| before.iter().all(|b| b.3 != s.id)));

    // the org edits one created item: the dialog lists it first
    app.exec("UPDATE records SET row_hash = 'edited', data = replace(data, 'Crisis', 'CRISIS') WHERE record_key = 'BHE-POL-003'", &[]).await;
    let history = c.get("/cl/marketplace/imports").await.body;
    let dialog = text(&history, &format!("dialog#rollback-{id}"));
    assert!(dialog.contains("deletes the 23 items this import created on"), "{dialog}");
    let date = definition(&history, &format!("#mp-import-{id}"), "Imported");
    assert!(dialog.contains(&format!("created on {date}.")), "the dialog names the import date: {dialog}");
    assert!(dialog.contains("irreversible"));
    let changed = format!("#rollback-{id} li");
    assert_eq!(texts(&history, &changed), ["BHE-POL-003 — edited since the import"], "{dialog}");
    assert_eq!(texts(&history, &format!("{changed} code")), ["BHE-POL-003"]);

    let r = c.submit("/cl/marketplace/imports", &format!("/cl/marketplace/imports/{id}/rollback"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let history = c.get("/cl/marketplace/imports").await.body;
    assert_eq!(texts(&history, ".import-card .badge.badge-outline"), ["Rolled Back"], "{history}");
    assert!(history.contains("23 items deleted"), "the flash says what happened");
    assert!(!history.contains(&format!("/cl/marketplace/imports/{id}/rollback\"")), "no second Roll back");
    assert_eq!(records(&app, "acme").await, before, "exactly as before the import");

    // a second tab's (or a double) submit changes nothing
    let token = c.get("/").await.csrf();
    let r = c.post_form(&format!("/cl/marketplace/imports/{id}/rollback"), &[("csrf_token", &token)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(c.get("/cl/marketplace/imports").await.body.contains("was already rolled back; nothing was changed"));
    assert_eq!(records(&app, "acme").await, before);
    let actions = audit_actions(&app, "acme").await;
    for a in ["marketplace_import_requested", "marketplace_imported", "marketplace_rolled_back"] {
        assert_eq!(actions.iter().filter(|x| *x == a).count(), 1, "{a} once in {actions:?}");
    }
}

#[actix_web::test]
async fn a_version_the_org_has_asks_first_and_skips_what_is_present() {
    let (app, mut c) = app().await;
    import(&app, &mut c, V1, &[]).await;
    let v1_records = records(&app, "acme").await;
    assert_eq!(v1_records.len(), 24);

    // again, unconfirmed: back to the bundle page with the confirmation open, nothing queued
    let r = c.submit(BUNDLE_PAGE, V1, &[]).await;
    assert_eq!(r.location(), format!("{BUNDLE_PAGE}?version=1.0.0&confirm=1"));
    let page = c.get(&r.location()).await.body;
    assert_eq!(count(&page, "dialog#confirm-import[open][data-modal]"), 1, "{page}");
    assert!(page.contains("Items already present are skipped"), "{page}");
    assert_eq!(count(&c.get("/cl/marketplace/imports").await.body, CARDS), 1);

    // confirmed: a second import that creates nothing
    import(&app, &mut c, V1, &[("confirm", "1")]).await;
    let history = c.get("/cl/marketplace/imports").await.body;
    assert_eq!(count(&history, CARDS), 2);
    assert_eq!(definition(&history, ".import-card", "Imported items"), "0 (24 already present, skipped)", "{history}");
    assert_eq!(records(&app, "acme").await, v1_records);

    // version 2 brings only what version 1 lacked; rolling it back keeps version 1's items
    import(&app, &mut c, V2, &[]).await;
    let v2 = records(&app, "acme").await;
    assert_eq!(v2.len(), 24 + 7, "v2's new items");
    let id = first_id(&c.get("/cl/marketplace/imports").await.body, "mp-import-");
    c.submit("/cl/marketplace/imports", &format!("/cl/marketplace/imports/{id}/rollback"), &[]).await;
    assert_eq!(records(&app, "acme").await, v1_records, "rows that existed before are never deleted");
}

#[actix_web::test]
async fn a_double_submit_starts_one_import() {
    let (app, mut c) = app().await;
    let token = c.get(BUNDLE_PAGE).await.csrf();
    let first = c.post_form(V1, &[("csrf_token", &token)]).await;
    let second = c.post_form(V1, &[("csrf_token", &token)]).await;
    assert_eq!((first.status, second.status), (StatusCode::SEE_OTHER, StatusCode::SEE_OTHER));
    let history = c.get("/cl/marketplace/imports").await.body;
    assert_eq!(count(&history, CARDS), 1, "{history}");
    assert!(history.contains("is already being imported"));
    app.drain().await;
    assert_eq!(records(&app, "acme").await.len(), 24, "once");
}

#[actix_web::test]
async fn permission_and_tenancy() {
    let (app, mut owner) = app().await;
    app.user("acme", "vic@acme.test", "viewer").await;
    app.user("globex", "gus@globex.test", "owner").await;
    import(&app, &mut owner, V1, &[]).await;
    let id = first_id(&owner.get("/cl/marketplace/imports").await.body, "mp-import-");
    let before = records(&app, "acme").await;

    let mut viewer = app.signed_in("vic@acme.test").await;
    let catalog = viewer.get("/cl/marketplace").await;
    assert_eq!(catalog.status, StatusCode::OK, "any member browses");
    assert!(!catalog.body.contains("View and import"));
    assert_eq!(count(&viewer.get(BUNDLE_PAGE).await.body, &format!("form[action=\"{V2}\"]")), 0, "no Import button");
    // instead, a line naming the permission; and no link to a history the viewer may not open
    assert!(text(&catalog.body, ".permission-hint").contains("cl.marketplace.import"));
    let bundle = viewer.get(&format!("{BUNDLE_PAGE}?version=1.0.0")).await.body;
    assert!(text(&bundle, ".permission-hint").contains("Marketplace imports"), "{bundle}");
    assert!(bundle.contains("This organization imported version 1.0.0"), "{bundle}");
    assert_eq!(count(&bundle, "a[href='/cl/marketplace/imports']"), 0, "{bundle}");
    let token = viewer.get("/").await.csrf();
    assert_eq!(viewer.post_form(V2, &[("csrf_token", &token)]).await.status, StatusCode::FORBIDDEN);
    let history = viewer.get("/cl/marketplace/imports").await;
    assert_eq!(history.status, StatusCode::FORBIDDEN);
    assert!(history.body.contains("cl.marketplace.import"), "the lock names the permission");
    let rollback = format!("/cl/marketplace/imports/{id}/rollback");
    assert_eq!(viewer.post_form(&rollback, &[("csrf_token", &token)]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(records(&app, "acme").await, before, "nothing changed");

    let mut other = app.signed_in("gus@globex.test").await;
    let token = other.get("/").await.csrf();
    assert_eq!(other.post_form(&rollback, &[("csrf_token", &token)]).await.status, StatusCode::NOT_FOUND);
    assert!(other.get("/cl/marketplace/imports").await.body.contains("No imports yet"), "scoped to the org");
    assert_eq!(records(&app, "acme").await, before);
    assert_eq!(owner.get("/cl/marketplace/no-such-bundle").await.status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn empty_and_error_states() {
    let (app, mut c) = app().await;
    let page = c.get("/cl/marketplace/imports").await;
    let verbatim =
        "No imports yet</strong> — Browse the marketplace to find and import accreditation-aligned content bundles.";
    assert!(page.body.contains(verbatim), "{}", page.body);
    assert_eq!(attrs(&page.body, ".empty-state a", "href"), ["/cl/marketplace"]);

    // the history cannot be read: a destructive alert, no SQL or internals
    app.exec("ALTER TABLE cl_marketplace_imports RENAME TO cl_marketplace_imports_gone", &[]).await;
    let page = c.get("/cl/marketplace/imports").await;
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(text(&page.body, "[role=\"alert\"].alert-error .alert-title"), "Error Loading Import History");
    assert!(page.body.contains("could not be loaded"));
    for leak in ["cl_marketplace_imports", "SELECT", "no such table", "relation", "sqlx", ".rs"] {
        assert!(!page.body.contains(leak), "the message leaks {leak:?}");
    }
}

#[actix_web::test]
async fn a_bad_bundle_file_is_left_out_and_the_app_starts() {
    let dir = tempfile::tempdir().unwrap();
    let good = include_str!("../../marketplace/infection-control-toolkit-1.0.0.toml")
        .replace("key = \"infection-control-toolkit\"", "key = \"extra-toolkit\"")
        .replace("title = \"Infection Control Toolkit\"", "title = \"Extra Toolkit\"");
    std::fs::write(dir.path().join("extra-toolkit-1.0.0.toml"), good).unwrap();
    std::fs::write(
        dir.path().join("broken-1.0.0.toml"),
        "key = \"broken\"\nversion = \"1.0.0\"\ntitle = \"Broken Bundle\"\n",
    )
    .unwrap();
    let path = dir.path().to_path_buf();
    let (_app, mut c) = app_with(move |s| s.marketplace_dir = Some(path)).await;
    let catalog = c.get("/cl/marketplace").await.body;
    assert!(catalog.contains("Extra Toolkit") && catalog.contains("Infection Control Toolkit"));
    assert!(!catalog.contains("Broken Bundle"));
}

#[actix_web::test]
async fn htmx_refreshes_the_history_alone_until_no_import_runs() {
    let (app, mut c) = app().await;
    let r = c.submit(BUNDLE_PAGE, V1, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = c.get("/cl/marketplace/imports").await.body;
    let id = first_id(&page, "mp-import-");
    assert!(page.contains(r#"hx-get="/cl/marketplace/imports" hx-trigger="every 3s" hx-swap="outerHTML""#));

    // while the import runs, htmx gets the cards and the Refresh button, not the page
    let (status, vary, partial) = c.htmx_get("/cl/marketplace/imports").await;
    assert_eq!(status, StatusCode::OK);
    assert!(vary.contains("HX-Request"), "{vary}");
    assert!(!partial.contains("<html") && !partial.contains("sidebar") && !partial.contains("<h1"), "{partial}");
    assert!(partial.trim_start().starts_with("<section id=\"marketplace-imports\""), "{partial}");
    assert!(partial.contains(&format!("id=\"mp-import-{id}\"")) && partial.contains(">In Progress<"), "{partial}");
    assert!(partial.contains("hx-trigger=\"every 3s\""), "still polling: {partial}");
    assert!(partial.contains("id=\"marketplace-imports-refresh\" hx-swap-oob=\"true\"><a "), "{partial}");

    // once it is done, the history stops asking; the card brings its Roll back dialog
    app.drain().await;
    let (_, _, partial) = c.htmx_get("/cl/marketplace/imports").await;
    assert!(partial.contains(">Completed<") && !partial.contains("hx-trigger") && !partial.contains("hx-get"));
    assert!(partial.contains("id=\"marketplace-imports-refresh\" hx-swap-oob=\"true\"></span>"), "{partial}");
    assert!(partial.contains(&format!("<dialog class=\"dialog\" id=\"rollback-{id}\"")), "{partial}");
    let page = c.get("/cl/marketplace/imports").await.body;
    assert!(page.contains(">Completed<") && !page.contains("hx-trigger"), "a reload shows the same");

    // the dialog's form, as swapped in, rolls back
    let marker = "name=\"csrf_token\" value=\"";
    let at = partial.find(marker).unwrap() + marker.len();
    let token = partial[at..].split('"').next().unwrap();
    let r = c.post_form(&format!("/cl/marketplace/imports/{id}/rollback"), &[("csrf_token", token)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(c.get("/cl/marketplace/imports").await.body.contains("items deleted"));
}
