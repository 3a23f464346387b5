//! Browser tests in headless Chromium (Debian's `chromium` and `chromium-driver`).
//! The main paths a person clicks through: sign in, see the navigation, add a member in
//! the dialog, manage them in the side sheet, confirm a removal, sign out, and meet the
//! lock on a page their role does not open. Screenshots go to `target/tmp/screenshots`.
//!
//! Without chromedriver the test says so and passes, unless `STEVEDORE_REQUIRE_BROWSER=1`
//! (set by `.ci/run`), when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
mod mapping;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use helpers::{PASSWORD, spawn_app, spawn_app_with};
use serde_json::json;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(env: &str, default: &str) -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.to_string()));
    p.exists().then_some(p)
}

/// Starts chromedriver on a free port; None when Chromium or its driver is missing.
async fn start_browser(profile: &std::path::Path) -> Option<(Driver, Client)> {
    start_browser_with_downloads(profile, profile).await
}

/// As [`start_browser`], with downloads saved to `downloads`.
async fn start_browser_with_downloads(
    profile: &std::path::Path,
    downloads: &std::path::Path,
) -> Option<(Driver, Client)> {
    let (Some(driver), Some(chromium)) =
        (find("CHROMEDRIVER", "/usr/bin/chromedriver"), find("CHROMIUM", "/usr/bin/chromium"))
    else {
        if std::env::var("STEVEDORE_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("chromium and chromedriver are required (STEVEDORE_REQUIRE_BROWSER=1) but were not found");
        }
        eprintln!("browser test skipped: chromium/chromedriver not installed (bash .ci/run installs them)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let guard = Driver(child);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1280,860", format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": { "download.default_directory": downloads, "download.prompt_for_download": false }
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return Some((guard, c)),
            Err(e) if Instant::now() > deadline => panic!("cannot start a Chromium session: {e}"),
            Err(_) => actix_web::rt::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn shot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn wait_css(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

async fn text(c: &Client, css: &str) -> String {
    wait_text(c, css, |_| true).await
}

/// Polls until the element's text satisfies `ok`: after a click that navigates, the old
/// page (or a stale element of it) may still answer for a moment.
async fn wait_text(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    wait_text_within(c, css, 10, ok).await
}

/// [`wait_text`] for background work whose length depends on the machine and the database
/// (an import of hundreds of two-row chunks): a generous deadline, not a timing check.
async fn wait_text_within(c: &Client, css: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await
            && let Ok(t) = el.text().await
        {
            if ok(&t) {
                return t;
            }
            last = t;
        }
        if Instant::now() > deadline {
            panic!("{css}: text never matched; last seen: {last:?}");
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first file with this extension to appear in `dir` (a finished download).
async fn wait_download(dir: &std::path::Path, ext: &str) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == ext));
        if let Some(p) = found {
            return p;
        }
        assert!(Instant::now() < deadline, "no download");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resizes the window and waits until the page has been laid out at the new width (on a busy
/// machine the resize reaches the page after the command has answered).
async fn resize(c: &Client, w: u32, h: u32) {
    c.set_window_size(w, h).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inner = c.execute("return window.innerWidth", vec![]).await.unwrap().as_u64().unwrap_or(0);
        if inner <= u64::from(w) && inner + 40 >= u64::from(w) {
            return;
        }
        assert!(Instant::now() < deadline, "the window stayed {inner} px wide, asked for {w}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn eval_bool(c: &Client, script: &str) -> bool {
    c.execute(script, vec![]).await.unwrap().as_bool().unwrap_or(false)
}

/// Counts htmx's requests from now on (`window.__polls`; one app.js holds back counts too) and
/// its swaps (`window.__swaps`); a full page load resets both, with `window.__marker`.
async fn watch_htmx(c: &Client) {
    let script = "window.__marker = 'same page'; window.__polls = 0; window.__swaps = 0;\
        document.body.addEventListener('htmx:beforeRequest', function () { window.__polls++; });\
        document.body.addEventListener('htmx:afterSwap', function () { window.__swaps++; });";
    c.execute(script, vec![]).await.unwrap();
}

/// Waits until `window[name]` is at least `n`.
async fn wait_count(c: &Client, name: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = c.execute(&format!("return window.{name} || 0"), vec![]).await.unwrap().as_i64().unwrap_or(0);
        if v >= n {
            return;
        }
        assert!(Instant::now() < deadline, "window.{name} stayed at {v}, expected {n}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn same_page(c: &Client) -> bool {
    c.execute("return window.__marker", vec![]).await.unwrap().as_str() == Some("same page")
}

async fn sign_in(c: &Client, base: &str, path: &str, email: &str) {
    c.goto(&format!("{base}{path}")).await.unwrap();
    wait_css(c, "input#email").await.send_keys(email).await.unwrap();
    c.find(Locator::Css("input#password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_css(c, "nav.sidebar").await;
}

#[actix_web::test]
async fn sign_in_manage_members_and_meet_the_lock() {
    let profile = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = start_browser(profile.path()).await else {
        return;
    };
    let app = spawn_app().await;
    app.user("acme-health", "ada@acme.test", "owner").await;
    app.user("acme-health", "vic@acme.test", "viewer").await;
    let base = app.base.clone();

    // A page behind sign-in sends us to the form, then back to it.
    c.goto(&format!("{base}/settings/members")).await.unwrap();
    wait_css(&c, "input#email").await;
    assert!(c.current_url().await.unwrap().as_str().contains("/login?next=%2Fsettings%2Fmembers"));
    shot(&c, "login").await;
    wait_css(&c, "input#email").await.send_keys("ada@acme.test").await.unwrap();
    c.find(Locator::Css("input#password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main h1", |t| t == "Members").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/settings/members"));
    let nav = text(&c, "nav.sidebar").await;
    assert!(nav.contains("Overview") && nav.contains("Members"), "{nav}");
    shot(&c, "members").await;

    // Add a member through the dialog.
    c.find(Locator::Css("[data-open=add-member]")).await.unwrap().click().await.unwrap();
    assert!(
        eval_bool(&c, "return document.getElementById('add-member').matches(':modal')").await,
        "dialog opens as a modal"
    );
    shot(&c, "members-add-dialog").await;
    c.find(Locator::Css("#add-email")).await.unwrap().send_keys("cleo@acme.test").await.unwrap();
    c.find(Locator::Css("#add-name")).await.unwrap().send_keys("Cleo Nguyen").await.unwrap();
    c.find(Locator::Css("#add-role")).await.unwrap().select_by_value("importer").await.unwrap();
    c.find(Locator::Css("#add-member button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&c, ".alert-success", |t| t.contains("cleo@acme.test was added as Importer")).await;
    assert_eq!(text(&c, "[data-secret]").await.len(), 19);
    shot(&c, "members-added").await;

    // Manage her in the side sheet: change the role.
    let cleo = app.user_id("cleo@acme.test").await;
    c.find(Locator::Css(&format!("[data-open=member-{cleo}]"))).await.unwrap().click().await.unwrap();
    assert!(eval_bool(&c, &format!("return document.getElementById('member-{cleo}').matches(':modal')")).await);
    shot(&c, "members-sheet").await;
    c.find(Locator::Css(&format!("#role-{cleo}"))).await.unwrap().select_by_value("exporter").await.unwrap();
    c.find(Locator::Css(&format!("#member-{cleo} form button[type=submit]"))).await.unwrap().click().await.unwrap();
    wait_text(&c, ".alert-success", |t| t.contains("cleo@acme.test is now Exporter.")).await;
    assert_eq!(app.role_of("acme-health", "cleo@acme.test").await.as_deref(), Some("exporter"));

    // Remove her: the confirmation dialog closes with Escape, then confirms.
    c.find(Locator::Css(&format!("[data-open=member-{cleo}]"))).await.unwrap().click().await.unwrap();
    c.find(Locator::Css(&format!("[data-open=remove-{cleo}]"))).await.unwrap().click().await.unwrap();
    let dialog = format!("remove-{cleo}");
    assert!(eval_bool(&c, &format!("return document.getElementById('{dialog}').matches(':modal')")).await);
    assert!(text(&c, &format!("#{dialog} h2")).await.contains("Remove cleo@acme.test?"));
    shot(&c, "members-remove-dialog").await;
    c.active_element().await.unwrap().send_keys(&Key::Escape.to_string()).await.unwrap();
    assert!(
        eval_bool(&c, &format!("return !document.getElementById('{dialog}').open")).await,
        "Escape closes the dialog"
    );
    assert_eq!(
        app.role_of("acme-health", "cleo@acme.test").await.as_deref(),
        Some("exporter"),
        "cancel changes nothing"
    );
    c.execute(&format!("document.getElementById('{dialog}').showModal()"), vec![]).await.unwrap();
    c.find(Locator::Css(&format!("#{dialog} button[type=submit]"))).await.unwrap().click().await.unwrap();
    wait_text(&c, ".alert-success", |t| t.contains("cleo@acme.test was removed from Acme Health.")).await;
    assert_eq!(app.role_of("acme-health", "cleo@acme.test").await, None);

    // An entity list: from the navigation, search, and the actions menu with the template.
    for (code, name, city) in [
        ("LOC-001", "Riverside Clinic", "Portland"),
        ("LOC-002", "Hillcrest Office", "Salem"),
        ("LOC-003", "Lakeside House", "Eugene"),
    ] {
        app.add_record(
            "acme-health",
            "locations",
            &[("code", code), ("name", name), ("kind", "clinic"), ("city", city), ("capacity", "40")],
        )
        .await;
    }
    c.find(Locator::Css("nav.sidebar a[href='/locations']")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main h1", |t| t == "Locations").await;
    wait_text(&c, ".toolbar-count", |t| t == "3 records").await;
    shot(&c, "locations").await;
    c.find(Locator::Css("input#q")).await.unwrap().send_keys("hill").await.unwrap();
    c.find(Locator::Css(".toolbar button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&c, ".toolbar-count", |t| t == "1 record").await;
    assert!(text(&c, "table.table tbody").await.contains("Hillcrest Office"));
    c.find(Locator::Css(".actions-menu summary")).await.unwrap().click().await.unwrap();
    let link = c.find(Locator::Css(".actions-menu a[href$='template.csv']")).await.unwrap();
    assert!(link.is_displayed().await.unwrap());
    assert_eq!(link.text().await.unwrap(), "Download template");
    assert_eq!(link.attr("href").await.unwrap().as_deref(), Some("/locations/template.csv"));
    shot(&c, "locations-actions").await;

    // Sign out from the user menu.
    c.find(Locator::Css(".user-menu summary")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css(".user-menu button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&c, ".alert-info", |t| t.contains("You have been signed out.")).await;

    // A viewer sees no Members link, and the page itself shows the lock.
    sign_in(&c, &base, "/login", "vic@acme.test").await;
    let nav = text(&c, "nav.sidebar").await;
    assert!(!nav.contains("Members"), "{nav}");
    shot(&c, "overview").await;
    c.goto(&format!("{base}/settings/members")).await.unwrap();
    wait_text(&c, "main h1", |t| t == "Access denied").await;
    assert!(c.find(Locator::Css(".state-icon-lock svg")).await.is_ok(), "lock icon shown");
    wait_text(&c, "main", |t| t.contains("pf.members.manage")).await;
    shot(&c, "access-denied").await;

    // The same page on a phone-sized screen: navigation behind the menu button.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(!c.find(Locator::Css("nav.sidebar")).await.unwrap().is_displayed().await.unwrap());
    c.find(Locator::Css("[data-nav-toggle]")).await.unwrap().click().await.unwrap();
    assert!(c.find(Locator::Css("nav.sidebar")).await.unwrap().is_displayed().await.unwrap());
    shot(&c, "overview-phone").await;
    c.close().await.unwrap();
}

#[actix_web::test]
async fn upload_map_validate_and_import_with_progress_then_download_the_error_rows() {
    let profile = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = start_browser_with_downloads(profile.path(), downloads.path()).await else { return };
    let app = spawn_app().await;
    app.user("acme-health", "ada@acme.test", "owner").await;
    let base = app.base.clone();
    let mut csv = String::from("Location Code,Name,Kind,City\n");
    for i in 0..400 {
        csv.push_str(&format!("LOC-{i:04},Site {i},clinic,Portland\n"));
    }
    csv.push_str("LOC-BAD,,spaceship,Salem\n");
    let file = profile.path().join("sites.csv");
    std::fs::write(&file, &csv).unwrap();

    sign_in(&c, &base, "/login", "ada@acme.test").await;
    c.find(Locator::Css("nav.sidebar a[href='/locations']")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main h1", |t| t == "Locations").await;
    c.find(Locator::Css(".actions-menu summary")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css(".actions-menu a[href='/locations/importer']")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main h1", |t| t == "Import locations").await;
    c.find(Locator::Css("input#file")).await.unwrap().send_keys(&file.display().to_string()).await.unwrap();
    c.find(Locator::Css("details.advanced summary")).await.unwrap().click().await.unwrap();
    let chunk = c.find(Locator::Css("input#chunk_size")).await.unwrap();
    chunk.clear().await.unwrap();
    chunk.send_keys("2").await.unwrap();
    shot(&c, "import-upload").await;
    c.find(Locator::Css("form[enctype='multipart/form-data'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // the mapping step: headers matched to fields by name and label
    wait_text(&c, "#map-title", |t| t == "Column mapping").await;
    let chosen = c.execute("return document.getElementById('map-code').value", vec![]).await.unwrap();
    assert_eq!(chosen.as_str(), Some("Location Code"));
    // a few values of the chosen column beside it; the warning follows the choices
    assert_eq!(text(&c, "#sample-code").await, "LOC-0000 · LOC-0001 · LOC-0002");
    let warning = c.find(Locator::Css("[data-required-warning]")).await.unwrap();
    assert!(!warning.is_displayed().await.unwrap(), "every required field has a column");
    c.execute(
        "const s = document.getElementById('map-name'); s.value = ''; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![],
    )
    .await
    .unwrap();
    assert!(warning.is_displayed().await.unwrap(), "a required field left without a column is said at once");
    assert_eq!(
        text(&c, "[data-required-text]").await,
        "Choose a column for Name: the file cannot be validated without it."
    );
    assert_eq!(text(&c, "#sample-name").await, "", "no column, no values");
    c.find(Locator::Css("#map-name option[value='Name']")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#sample-name", |t| t == "Site 0 · Site 1 · Site 2").await;
    assert!(!warning.is_displayed().await.unwrap());
    shot(&c, "import-mapping").await;
    c.find(Locator::Css("form[action$='/mapping'] button[type=submit]")).await.unwrap().click().await.unwrap();

    // validation runs in the background; the sheet updates itself through htmx until ready
    wait_text(&c, "main", |t| t.contains("Validating") || t.contains("Ready to import")).await;
    watch_htmx(&c).await;
    wait_text(&c, "#ready-title", |t| t == "Ready to import").await;
    assert!(same_page(&c).await, "the sheet turned ready without a page reload");
    assert!(text(&c, "main").await.contains("row 402, name: is required but empty"));
    shot(&c, "import-ready").await;
    c.find(Locator::Css("form[action$='/start'] button")).await.unwrap().click().await.unwrap();

    // importing: the progress bar, Pause, Resume
    let pause =
        c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("form[action$='/pause'] button")).await;
    if let Ok(p) = pause {
        let _ = p.click().await;
        let state = wait_text(&c, "main", |t| t.contains("Resume") || t.contains("Import completed")).await;
        if state.contains("Resume") {
            let v = c.execute("return document.getElementById('import-progress').value", vec![]).await.unwrap();
            assert!(v.as_f64().unwrap_or(0.0) < 400.0, "paused part-way");
            shot(&c, "import-paused").await;
            c.find(Locator::Css("form[action$='/resume'] button")).await.unwrap().click().await.unwrap();
        }
    }
    // "Importing…" is the running sheet's heading (a paused one reads "Paused")
    wait_text_within(&c, "main", 120, |t| t.contains("Importing…") || t.contains("Import completed")).await;
    watch_htmx(&c).await;
    wait_text_within(&c, "main", 120, |t| t.contains("Import completed")).await;
    assert!(same_page(&c).await, "the progress ran to completed without a page reload");
    assert!(!eval_bool(&c, "return !!document.querySelector('meta[http-equiv=refresh]')").await);
    shot(&c, "import-completed").await;

    // the error rows download, ready to fix and re-upload
    c.find(Locator::Css("a[href$='/errors.csv']")).await.unwrap().click().await.unwrap();
    let downloaded = wait_download(downloads.path(), "csv").await;
    let body = std::fs::read_to_string(&downloaded).unwrap();
    assert!(body.starts_with("Location Code,Name,Kind,City,error"), "{body}");
    assert!(body.contains("LOC-BAD"));

    // Import History lists it
    c.goto(&format!("{base}/settings/imports")).await.unwrap();
    wait_text(&c, "main h1", |t| t == "Import History").await;
    assert!(text(&c, "table").await.contains("Completed"));
    shot(&c, "import-history").await;
    c.close().await.unwrap();
}

#[actix_web::test]
async fn overwrite_with_its_confirmation_then_roll_back_through_the_dialog() {
    let profile = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = start_browser(profile.path()).await else { return };
    let app = spawn_app().await;
    app.user("acme-health", "ada@acme.test", "owner").await;
    for (code, name) in [("LOC-1", "Main"), ("LOC-2", "North"), ("LOC-3", "East")] {
        app.add_record("acme-health", "locations", &[("code", code), ("name", name), ("kind", "clinic")]).await;
    }
    let base = app.base.clone();
    let file = profile.path().join("locations.csv");
    std::fs::write(&file, "code,name,kind\nLOC-1,Main Campus,clinic\nLOC-4,Lake,office\n").unwrap();

    sign_in(&c, &base, "/settings/imports/upload", "ada@acme.test").await;
    wait_text(&c, "main h1", |t| t == "Upload").await;
    c.find(Locator::Css("select#resource option[value='locations']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("input#file")).await.unwrap().send_keys(&file.display().to_string()).await.unwrap();
    c.find(Locator::Css("input[name=action][value=overwrite]")).await.unwrap().click().await.unwrap();
    shot(&c, "overwrite-upload").await;
    c.find(Locator::Css("form[enctype='multipart/form-data'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#map-title", |t| t == "Column mapping").await;
    c.find(Locator::Css("form[action$='/mapping'] button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#ready-title", |t| t == "Ready to import").await;
    assert!(text(&c, "main").await.contains("2 Locations records that this file does not contain will be removed"));

    // Import opens the confirmation naming the number; Cancel changes nothing
    c.find(Locator::Css("a[data-open='confirm-overwrite']")).await.unwrap().click().await.unwrap();
    assert_eq!(text(&c, "#confirm-overwrite-title").await, "Remove 2 records?");
    assert!(eval_bool(&c, "return document.getElementById('confirm-overwrite').open").await);
    shot(&c, "overwrite-confirm").await;
    c.find(Locator::Css("#confirm-overwrite [data-close]")).await.unwrap().click().await.unwrap();
    assert!(!eval_bool(&c, "return document.getElementById('confirm-overwrite').open").await);
    c.find(Locator::Css("a[data-open='confirm-overwrite']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#confirm-overwrite button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main", |t| t.contains("Import completed")).await;
    assert!(text(&c, "main").await.contains("2 removed"));
    shot(&c, "overwrite-completed").await;

    // Roll back from Import History: the dialog names what is undone
    c.goto(&format!("{base}/settings/imports")).await.unwrap();
    wait_text(&c, "main h1", |t| t == "Import History").await;
    c.find(Locator::Css("a[href$='?rollback=1']")).await.unwrap().click().await.unwrap();
    let title = wait_text(&c, "#rollback-dialog-title", |t| t.starts_with("Roll back the import of")).await;
    assert!(title.ends_with('?'));
    let desc = text(&c, "#rollback-dialog-desc").await;
    assert!(desc.contains("1 created record is removed"), "{desc}");
    assert!(desc.contains("1 updated record gets its earlier values back"));
    assert!(desc.contains("2 deleted records are re-created"));
    shot(&c, "rollback-dialog").await;
    c.find(Locator::Css("#rollback-dialog button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main", |t| t.contains("Rolled back")).await;
    assert!(text(&c, "main").await.contains("4 changes undone"));
    shot(&c, "rolled-back").await;
    c.goto(&format!("{base}/locations")).await.unwrap();
    let list = wait_text(&c, "main", |t| t.contains("3 records")).await;
    assert!(list.contains("North") && list.contains("East") && !list.contains("Lake") && !list.contains("Main Campus"));

    // the owner's audit log, reached from the navigation
    c.find(Locator::Css("nav.sidebar a[href='/settings/audit']")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main h1", |t| t == "Audit log").await;
    let log = text(&c, "main table").await;
    assert!(log.contains("Rollback completed") && log.contains("Asked for a rollback"), "{log}");
    shot(&c, "audit-log").await;
    c.close().await.unwrap();
}

#[actix_web::test]
async fn request_an_export_watch_it_complete_without_reloading_and_download_it() {
    let profile = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = start_browser_with_downloads(profile.path(), downloads.path()).await else { return };
    // no background workers: the test runs the job when it wants the export done
    let app = spawn_app_with(|s| s.workers = "0".into()).await;
    app.user("acme-health", "ada@acme.test", "owner").await;
    for (code, name) in [("LOC-1", "Main"), ("LOC-2", "North")] {
        app.add_record("acme-health", "locations", &[("code", code), ("name", name), ("kind", "clinic")]).await;
    }
    let base = app.base.clone();
    sign_in(&c, &base, "/login", "ada@acme.test").await;
    c.find(Locator::Css("nav.sidebar a[href='/settings/exports']")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main h1", |t| t == "Data Exports").await;
    assert!(text(&c, "main").await.contains("No exports yet"));
    // htmx is loaded from the app, with its inline indicator style turned off (the CSP forbids it)
    assert!(eval_bool(&c, "return window.htmx && htmx.version === '2.0.11'").await, "htmx 2.0.11 loaded");
    assert!(eval_bool(&c, "return document.querySelectorAll('style').length === 0").await, "no inline style");
    assert!(!eval_bool(&c, "return htmx.config.allowEval || htmx.config.includeIndicatorStyles").await);

    c.find(Locator::Css("a[data-open='new-export']")).await.unwrap().click().await.unwrap();
    assert!(eval_bool(&c, "return document.getElementById('new-export').open").await);
    c.find(Locator::Css("#new-export input[name=entity_types][value=locations]")).await.unwrap().click().await.unwrap();
    shot(&c, "export-new").await;
    c.find(Locator::Css("#new-export button[type=submit]")).await.unwrap().click().await.unwrap();
    // the list after the redirect has the new row, pending, and htmx polls it
    let row = wait_text(&c, "#exports tbody tr", |t| t.contains("Pending")).await;
    assert!(row.contains("Entity data"), "{row}");
    assert!(eval_bool(&c, "return document.getElementById('exports').getAttribute('hx-trigger') === 'every 3s'").await);
    assert!(c.find(Locator::Css("#exports-refresh a")).await.is_ok(), "Refresh while pending");
    let new_export_at = async |c: &Client| {
        let mut at = vec![];
        for (w, h) in [(390u32, 844u32), (1280, 860)] {
            resize(c, w, h).await;
            let js = "const r = document.querySelector(\"a[data-open='new-export']\").getBoundingClientRect(); \
                      return Math.round(r.left) + ',' + Math.round(r.top)";
            at.push(c.execute(js, vec![]).await.unwrap().as_str().unwrap_or_default().to_string());
        }
        at
    };
    let while_pending = new_export_at(&c).await;
    watch_htmx(&c).await;

    // New Export open while the list refreshes: the dialog is outside the swapped section
    c.find(Locator::Css("a[data-open='new-export']")).await.unwrap().click().await.unwrap();
    app.drain().await;
    let row = wait_text(&c, "#exports tbody tr", |t| t.contains("Completed")).await;
    assert!(row.contains("Entity data") && row.contains("CSV") && row.contains("Locations"), "{row}");
    assert!(same_page(&c).await, "completed without a reload");
    wait_count(&c, "__swaps", 1).await;
    assert!(
        eval_bool(&c, "return document.getElementById('new-export').matches(':modal')").await,
        "the open dialog survives the refresh"
    );
    c.find(Locator::Css("#new-export [data-close]")).await.unwrap().click().await.unwrap();
    // nothing in progress: the polling and the Refresh button are gone, as a reload would show
    assert!(!eval_bool(&c, "return document.getElementById('exports').hasAttribute('hx-trigger')").await);
    assert!(c.find(Locator::Css("#exports-refresh a")).await.is_err(), "no Refresh once done");
    assert_eq!(new_export_at(&c).await, while_pending, "New Export stays where it was when Refresh goes");
    shot(&c, "export-completed").await;

    let href =
        c.find(Locator::Css("#exports a[href$='/download']")).await.unwrap().attr("href").await.unwrap().unwrap();
    c.goto(&format!("{base}{href}")).await.unwrap();
    let downloaded = wait_download(downloads.path(), "csv").await;
    assert!(downloaded.file_name().unwrap().to_string_lossy().starts_with("locations-"));
    let body = std::fs::read_to_string(&downloaded).unwrap();
    assert!(body.starts_with("code,name,kind,") && body.contains("LOC-2,North,clinic"), "{body}");
    c.close().await.unwrap();
}

#[actix_web::test]
async fn import_a_bundle_see_it_in_the_history_and_roll_it_back() {
    let profile = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = start_browser(profile.path()).await else { return };
    // no background workers: the test runs the import when it wants it done
    let app = spawn_app_with(|s| s.workers = "0".into()).await;
    app.user("acme-health", "ada@acme.test", "owner").await;
    app.add_record("acme-health", "policies", &[("policy_code", "KEEP-1"), ("title", "Our own"), ("category", "hr")])
        .await;
    let base = app.base.clone();
    sign_in(&c, &base, "/login", "ada@acme.test").await;

    c.find(Locator::Css("nav.sidebar a[href='/cl/marketplace/imports']")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main", |t| t.contains("No imports yet — Browse the marketplace")).await;
    shot(&c, "marketplace-imports-empty").await;

    // the catalog from the navigation: cards, then a search by accreditation tag
    c.find(Locator::Css("nav.sidebar a[href='/cl/marketplace']")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main h1", |t| t == "Marketplace").await;
    assert_eq!(c.find_all(Locator::Css(".bundle-card")).await.unwrap().len(), 3);
    shot(&c, "marketplace").await;
    c.find(Locator::Css("#bundle-infection-control-toolkit .badge[href*='tag=OSHA']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, ".toolbar-count", |t| t.starts_with("1 of 3")).await;

    // open a bundle and import it
    c.find(Locator::Css("#bundle-infection-control-toolkit h2 a")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main h1", |t| t.starts_with("Infection Control Toolkit")).await;
    shot(&c, "marketplace-bundle").await;
    c.find(Locator::Css("main form[action$='/import'] button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main h1", |t| t == "Import History").await;
    wait_text(&c, ".import-card", |t| t.contains("In Progress")).await;
    assert!(c.find(Locator::Css("#marketplace-imports[hx-trigger='every 3s']")).await.is_ok(), "htmx polls");
    assert!(c.find(Locator::Css("#marketplace-imports-refresh a")).await.is_ok(), "Refresh while it runs");
    watch_htmx(&c).await;
    app.drain().await;
    // the card turns Completed by itself (htmx polls while an import runs), then the polling stops
    let card = wait_text(&c, ".import-card", |t| t.contains("Completed")).await;
    assert!(same_page(&c).await, "completed without a reload");
    assert!(c.find(Locator::Css("#marketplace-imports[hx-trigger]")).await.is_err(), "no more polling");
    assert!(c.find(Locator::Css("#marketplace-imports-refresh a")).await.is_err(), "no Refresh once done");
    assert!(card.contains("infection-control-toolkit") && card.contains("v1.0.0") && card.contains("27"), "{card}");
    shot(&c, "marketplace-imports").await;
    let org = stevedore::domain::ids::OrgId::new(app.org_id("acme-health").await);
    assert_eq!(stevedore::store::records::count(&app.db, org, "policies", None).await.unwrap(), 1 + 15);

    // Roll back: the dialog names the count and the date; Cancel first, then confirm
    c.find(Locator::Css(".import-card a[data-open^='rollback-']")).await.unwrap().click().await.unwrap();
    let dialog = wait_text(&c, "dialog[open]", |t| t.contains("irreversible")).await;
    assert!(dialog.contains("deletes the 27 items this import created on"), "{dialog}");
    shot(&c, "marketplace-rollback-dialog").await;
    c.find(Locator::Css("dialog[open] [data-close]")).await.unwrap().click().await.unwrap();
    assert!(text(&c, ".import-card").await.contains("Completed"), "Cancel changes nothing");
    c.find(Locator::Css(".import-card a[data-open^='rollback-']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("dialog[open] button[type=submit]")).await.unwrap().click().await.unwrap();
    let card = wait_text(&c, ".import-card", |t| t.contains("Rolled Back")).await;
    assert!(!card.contains("Roll back"), "no second Roll back: {card}");
    assert!(text(&c, "main").await.contains("27 items deleted"));
    shot(&c, "marketplace-rolled-back").await;
    c.goto(&format!("{base}/settings/audit")).await.unwrap();
    let log = wait_text(&c, "main table", |t| t.contains("Rolled back a bundle import")).await;
    assert!(log.contains("Bundle import completed") && log.contains("Imported a bundle"), "{log}");
    let link = c.find(Locator::Css("main table a[href^='/cl/marketplace/imports#mp-import-']")).await.unwrap();
    assert!(link.text().await.unwrap().starts_with("marketplace import "));
    assert_eq!(stevedore::store::records::count(&app.db, org, "policies", None).await.unwrap(), 1, "ours stays");

    // An open Roll back dialog lives in the refreshed section: while it is open, the refresh
    // waits, so the dialog stays; once it closes, the list catches up without a reload.
    for key in ["privacy-hipaa-foundations", "behavioral-health-essentials"] {
        c.goto(&format!("{base}/cl/marketplace/{key}")).await.unwrap();
        c.find(Locator::Css("main form[action$='/import'] button[type=submit]")).await.unwrap().click().await.unwrap();
        wait_text(&c, "main h1", |t| t == "Import History").await;
        if key == "privacy-hipaa-foundations" {
            app.drain().await;
        }
    }
    c.goto(&format!("{base}/cl/marketplace/imports")).await.unwrap();
    let running = wait_text(&c, ".import-card", |t| t.contains("In Progress")).await;
    assert!(running.contains("behavioral-health-essentials"), "{running}");
    watch_htmx(&c).await;
    c.find(Locator::Css(".import-card a[data-open^='rollback-']")).await.unwrap().click().await.unwrap();
    let dialog = wait_text(&c, "dialog[open]", |t| t.contains("irreversible")).await;
    assert!(dialog.contains("Roll back Privacy and HIPAA Foundations v"), "{dialog}");
    app.drain().await;
    wait_count(&c, "__polls", 2).await;
    assert!(eval_bool(&c, "return document.querySelector('dialog[open]').matches(':modal')").await, "still open");
    assert!(eval_bool(&c, "return window.__swaps === 0").await, "the refresh waited");
    assert!(text(&c, ".import-card").await.contains("In Progress"), "held while the dialog is open");
    shot(&c, "marketplace-rollback-dialog-held").await;
    c.find(Locator::Css("dialog[open] [data-close]")).await.unwrap().click().await.unwrap();
    wait_text(&c, ".import-card", |t| t.contains("Completed")).await;
    assert!(same_page(&c).await, "caught up without a reload");
    assert!(c.find(Locator::Css("#marketplace-imports[hx-trigger]")).await.is_err(), "no more polling");
    c.close().await.unwrap();
}

/// What overflows the viewport on the current page: the page's own width past the window,
/// and any open dialog or menu panel reaching outside it; empty when everything fits. (The
/// grid of rows left out, `.grid-wrap`, scrolls sideways by design: a row has a cell per
/// field, its first column stays put.)
async fn overflow(c: &Client) -> String {
    let script = "const w = window.innerWidth, out = [];\
        const sw = document.documentElement.scrollWidth;\
        if (sw > w) {\
          out.push('page ' + sw + ' px wide at ' + w);\
          for (const e of document.querySelectorAll('main *')) {\
            const r = e.getBoundingClientRect();\
            if (r.right > w + 1 && r.width > 0 && getComputedStyle(e).position !== 'absolute') {\
              let p = e.parentElement, clipped = false;\
              while (p) { const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'hidden' || o === 'scroll') { clipped = true; break; } p = p.parentElement; }\
              if (!clipped) { out.push(e.tagName.toLowerCase() + (e.className ? '.' + String(e.className).split(' ').join('.') : '') + ' right=' + Math.round(r.right)); if (out.length > 6) break; }\
            }\
          }\
        }\
        for (const e of document.querySelectorAll('main .table-wrap')) {\
          if (e.scrollWidth > e.clientWidth + 1) out.push('a table scrolls sideways: ' + e.scrollWidth + ' px in ' + e.clientWidth);\
        }\
        for (const e of document.querySelectorAll('dialog[open], details[open] > .menu-panel, .sidebar.open')) {\
          const r = e.getBoundingClientRect();\
          if (r.left < -1 || r.right > w + 1) out.push(e.tagName.toLowerCase() + '#' + e.id + '.' + e.className + ' spans ' + Math.round(r.left) + '..' + Math.round(r.right) + ' of ' + w);\
        }\
        return out.join('; ');";
    c.execute(script, vec![]).await.unwrap().as_str().unwrap_or_default().to_string()
}

/// axe-core, vendored unmodified from the npm registry (MPL-2.0, its licence beside it).
const AXE: &str = include_str!("vendor/axe-core-4.14.1.min.js");

/// The serious and critical accessibility violations axe-core finds on the current page.
async fn axe_violations(c: &Client) -> Vec<String> {
    c.execute(&format!("{AXE}\nreturn true;"), vec![]).await.unwrap();
    let run = "const done = arguments[arguments.length - 1];\
        axe.run(document, { resultTypes: ['violations'] }).then(function (r) {\
          done(r.violations.filter(function (v) { return v.impact === 'serious' || v.impact === 'critical'; })\
            .map(function (v) { const n = v.nodes[0]; const why = (n.any[0] || n.all[0] || n.none[0] || {}).message || ''; return v.id + ' (' + v.impact + '): ' + v.help + ' — ' + v.nodes.length + ' element(s), e.g. ' + n.target.join(' ') + ': ' + why; }));\
        }).catch(function (e) { done(['axe did not run: ' + e]); });";
    let found = c.execute_async(run, vec![]).await.unwrap();
    found.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

#[actix_web::test]
async fn every_page_fits_a_phone_and_a_laptop_with_its_dialogs_and_menus() {
    let profile = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = start_browser(profile.path()).await else { return };
    let app = spawn_app_with(|s| s.workers = "0".into()).await;
    app.user("acme-health", "ada@acme.test", "owner").await;
    app.user("acme-health", "vic@acme.test", "viewer").await;
    // an import with rows left out, one waiting at Ready, a bundle import, an export, an API key
    let mut h = app.signed_in("ada@acme.test").await;
    let mut csv = String::from("code,name,kind,capacity,opened_on\n");
    for i in 1..=40 {
        csv += &format!("LOC-{i:04},A rather long location name for row {i},clinic,{i},2021-01-{:02}\n", i % 28 + 1);
    }
    csv += "LOC-BAD,,spaceship,many,notadate\n";
    let done =
        helpers::import_file(&app, &mut h, "locations", ("locations-with-a-long-file-name.csv", csv.as_bytes())).await;
    let ready = helpers::validated(&app, &mut h, "locations", ("again.csv", csv.as_bytes()), &[]).await;
    let bundle = "/cl/marketplace/infection-control-toolkit";
    h.submit(bundle, &format!("{bundle}/1.0.0/import"), &[]).await.see_other();
    let export = [("export_type", "entity_data"), ("entity_types", "locations"), ("format", "csv")];
    h.submit("/settings/exports", "/settings/exports", &export).await.see_other();
    let audit =
        [("export_type", "audit_log"), ("format", "xlsx"), ("date_from", "2026-01-01"), ("date_to", "2026-12-31")];
    h.submit("/settings/exports", "/settings/exports", &audit).await.see_other();
    let key =
        [("name", "Nightly sync from the HR system"), ("permissions", "pf.import.upload"), ("expires_in_days", "90")];
    h.submit("/settings/api-keys", "/settings/api-keys", &key).await.see_other();
    app.drain().await;
    // one waiting at its mapping (a required field without a column), one queued to validate
    let long = "a-file-whose-name-goes-on-and-on-for-quite-a-while-exported-2026-11-30.csv";
    let waiting = h.upload("locations", (long, b"Location Code,Title,Kind\nLOC-1,Main,clinic\n"), &[]).await;
    let mapping = helpers::id_in(&waiting.see_other());
    let queued = h.upload_mapped("locations", ("queued.csv", csv.as_bytes()), &[]).await;
    // the onboarding with a step on its way and one skipped
    let forms = b"form_code,title,category\nF-1,Intake,intake\n";
    h.upload("forms", ("forms.csv", forms), &[("onboarding", "1")]).await.see_other();
    let onboarding = "/settings/imports/onboarding";
    h.submit(onboarding, &format!("{onboarding}/policies/skip"), &[]).await.see_other();
    let ada = app.user_id("ada@acme.test").await;
    let vic = app.user_id("vic@acme.test").await;
    let key = app.scalar("SELECT COALESCE(MAX(id), 0) FROM api_keys", &[]).await;

    let base = app.base.clone();
    let owner_pages = vec![
        "/".to_string(),
        "/locations".into(),
        "/locations/importer".into(),
        "/settings/imports".into(),
        "/settings/imports/upload".into(),
        "/settings/imports/onboarding".into(),
        format!("/settings/imports/{done}"),
        format!("/settings/imports/{done}?rollback=1"),
        format!("/settings/imports/{ready}"),
        format!("/settings/imports/{ready}?discard=1"),
        format!("/settings/imports/{ready}/rows"),
        format!("/settings/imports/{done}/rows"),
        format!("/settings/imports/{mapping}"),
        format!("/settings/imports/{queued}"),
        "/settings/exports".into(),
        "/settings/exports?new=1".into(),
        "/settings/members".into(),
        "/settings/members?add=1".into(),
        format!("/settings/members?member={vic}"),
        format!("/settings/members?remove={vic}"),
        "/settings/api-keys".into(),
        "/settings/api-keys?new=1".into(),
        format!("/settings/api-keys?revoke={key}"),
        "/settings/audit".into(),
        "/cl/marketplace".into(),
        "/cl/marketplace/infection-control-toolkit".into(),
        "/cl/marketplace/imports".into(),
        "/api/docs".into(),
        "/account/password".into(),
    ];
    let viewer_pages = ["/", "/locations", "/settings/exports", "/cl/marketplace", "/settings/imports"];
    let mut problems = vec![];
    for (email, pages) in [
        ("ada@acme.test", owner_pages.clone()),
        ("vic@acme.test", viewer_pages.iter().map(|p| p.to_string()).collect()),
    ] {
        sign_in(&c, &base, "/login", email).await;
        for (w, h) in [(390u32, 844u32), (1280, 860)] {
            c.set_window_size(w, h).await.unwrap();
            for page in &pages {
                c.goto(&format!("{base}{page}")).await.unwrap();
                wait_css(&c, "main").await;
                let who = email.split('@').next().unwrap();
                let name = format!("fit-{who}-{w}-{}", page.trim_matches('/').replace(['/', '?', '='], "-"));
                shot(&c, &name).await;
                let o = overflow(&c).await;
                if !o.is_empty() {
                    problems.push(format!("{who} {page} at {w} px: {o}"));
                }
                for v in axe_violations(&c).await {
                    problems.push(format!("{who} {page} at {w} px: {v}"));
                }
                // no raw JSON or internal code words in what a person reads (the API docs
                // are about exactly those)
                if !page.starts_with("/api/") {
                    let seen = c.execute("return document.querySelector('main').innerText", vec![]).await.unwrap();
                    let seen = seen.as_str().unwrap_or_default();
                    for raw in [
                        "{\"",
                        "not_started",
                        "ignore_all",
                        "use_first",
                        "in_progress",
                        "rolled_back",
                        "timed_out",
                        "entity_data",
                    ] {
                        if seen.contains(raw) {
                            problems.push(format!("{who} {page} at {w} px: shows the raw text {raw:?}"));
                        }
                    }
                }
            }
            // the entity page's Actions menu opens inside the screen
            if email == "ada@acme.test" {
                c.goto(&format!("{base}/locations")).await.unwrap();
                c.find(Locator::Css("main details.menu > summary")).await.unwrap().click().await.unwrap();
                let o = overflow(&c).await;
                if !o.is_empty() {
                    problems.push(format!("/locations Actions menu at {w} px: {o}"));
                }
                shot(&c, &format!("fit-actions-menu-{w}")).await;
            }
            if email == "ada@acme.test" {
                // a long name is cut in the list, whole in its title
                c.goto(&format!("{base}/settings/imports")).await.unwrap();
                let cut = format!(
                    "const a = document.querySelector('a.truncate[title=\"{long}\"]'); \
                     return !!a && a.scrollHeight > a.clientHeight && a.textContent === a.title"
                );
                assert!(
                    eval_bool(&c, &cut).await,
                    "the long file name is truncated at {w} px with its whole text kept"
                );
            }
            if email == "ada@acme.test" && w == 1280 {
                // the first Tab reaches the skip link, which moves the focus to the page's content
                c.goto(&format!("{base}/settings/imports")).await.unwrap();
                c.active_element().await.unwrap().send_keys(&Key::Tab.to_string()).await.unwrap();
                assert!(eval_bool(&c, "return document.activeElement.matches('a.skip-link')").await, "skip link first");
                shot(&c, "fit-skip-link-1280").await;
                c.active_element().await.unwrap().send_keys(&Key::Enter.to_string()).await.unwrap();
                assert!(
                    eval_bool(&c, "return document.activeElement.id === 'main'").await,
                    "the focus is on the content"
                );

                // the Actions menu by keyboard: arrows open it and move through its items
                c.goto(&format!("{base}/locations")).await.unwrap();
                c.execute("document.querySelector('main details.menu > summary').focus()", vec![]).await.unwrap();
                let focused = "return document.activeElement.textContent.trim()";
                let client = &c;
                let key = |k: Key| async move {
                    client.active_element().await.unwrap().send_keys(&k.to_string()).await.unwrap();
                    client.execute(focused, vec![]).await.unwrap().as_str().unwrap_or_default().to_string()
                };
                assert_eq!(key(Key::Down).await, "Import", "Down opens the menu at its first item");
                assert_eq!(key(Key::Down).await, "Download template");
                assert_eq!(key(Key::Down).await, "Import", "and wraps");
                assert_eq!(key(Key::End).await, "Download template");
                assert_eq!(key(Key::Up).await, "Import");
                key(Key::Escape).await;
                assert!(
                    eval_bool(&c, "return !document.querySelector('main details.menu').open").await,
                    "Escape closes"
                );
                assert!(
                    eval_bool(&c, "return document.activeElement.matches('main details.menu > summary')").await,
                    "the focus is back on the button"
                );
            }
            if email == "ada@acme.test" && w == 390 {
                // the navigation drawer: a backdrop, a close button, Escape, a click outside
                let shown = "return getComputedStyle(document.getElementById('sidebar')).display !== 'none' \
                    && !document.querySelector('.nav-backdrop').hidden";
                let toggle = "header [data-nav-toggle]";
                c.find(Locator::Css(toggle)).await.unwrap().click().await.unwrap();
                assert!(eval_bool(&c, shown).await, "the drawer and its backdrop show");
                assert_eq!(overflow(&c).await, "");
                shot(&c, "fit-nav-drawer-390").await;
                c.active_element().await.unwrap().send_keys(&Key::Escape.to_string()).await.unwrap();
                assert!(!eval_bool(&c, shown).await, "Escape closes it");
                assert!(
                    eval_bool(&c, "return document.activeElement.matches('[data-nav-toggle]')").await,
                    "the focus goes back to the toggle"
                );
                c.find(Locator::Css(toggle)).await.unwrap().click().await.unwrap();
                c.find(Locator::Css("#sidebar [data-nav-close]")).await.unwrap().click().await.unwrap();
                assert!(!eval_bool(&c, shown).await, "the close button closes it");
                c.find(Locator::Css(toggle)).await.unwrap().click().await.unwrap();
                c.execute("document.querySelector('.nav-backdrop').click()", vec![]).await.unwrap();
                assert!(!eval_bool(&c, shown).await, "a click on the backdrop closes it");
            }
        }
        c.set_window_size(1280, 860).await.unwrap();
        c.goto(&format!("{base}/")).await.unwrap();
        c.find(Locator::Css("form[action='/logout'] button")).await.unwrap().click().await.ok();
        let _ = c.goto(&format!("{base}/logout")).await;
        c.delete_all_cookies().await.unwrap();
    }
    assert!(
        problems.is_empty(),
        "pages wider than the screen or with accessibility violations:\n{}",
        problems.join("\n")
    );
    assert!(ada > 0);
    c.close().await.unwrap();
}

#[actix_web::test]
async fn onboarding_walks_the_steps_in_order_skips_one_and_uploads_the_first() {
    let profile = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = start_browser(profile.path()).await else { return };
    let app = spawn_app().await;
    app.user("acme-health", "ada@acme.test", "owner").await;
    let base = app.base.clone();
    let file = profile.path().join("sites.csv");
    std::fs::write(&file, "code,name,kind\nLOC-1,Main,clinic\nLOC-2,North,office\n").unwrap();

    sign_in(&c, &base, "/login", "ada@acme.test").await;
    // an org with no records is offered the onboarding on its overview
    c.find(Locator::Css("a[href='/settings/imports/onboarding']")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main h1", |t| t == "Onboarding").await;
    let order = c
        .execute("return Array.from(document.querySelectorAll('ol.steps > li h2')).map(h => h.lastChild.textContent).join(',')", vec![])
        .await
        .unwrap();
    assert_eq!(order.as_str(), Some("Locations,Staff,Clients,Policies,Forms"), "references first");
    assert!(text(&c, "#step-staff").await.contains("Import Locations first, or skip it"));
    shot(&c, "onboarding").await;

    // skip Locations: Staff may go
    c.find(Locator::Css("#step-locations form[action$='/skip'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#step-locations .step-head .badge", |t| t == "Skipped").await;
    assert!(c.find(Locator::Css("#step-staff form.step-upload")).await.is_ok(), "Staff waits for nothing now");
    // take it up again and upload its file from the step
    c.find(Locator::Css("#step-locations form[action$='/resume'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#step-locations .step-head .badge", |t| t == "Not started").await;
    c.find(Locator::Css("#file-locations")).await.unwrap().send_keys(&file.display().to_string()).await.unwrap();
    c.find(Locator::Css("#step-locations form.step-upload button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#map-title", |t| t == "Column mapping").await;
    assert!(text(&c, ".breadcrumb").await.contains("Onboarding"), "the import leads back to the onboarding");
    c.find(Locator::Css("form[action$='/mapping'] button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text_within(&c, "#ready-title", 60, |t| t == "Ready to import").await;
    c.find(Locator::Css("form[action$='/start'] button")).await.unwrap().click().await.unwrap();
    wait_text_within(&c, "main", 60, |t| t.contains("Back to the onboarding")).await;
    c.find(Locator::LinkText("Back to the onboarding")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#step-locations .step-head .badge", |t| t == "Completed").await;
    assert!(text(&c, "#onboarding-steps").await.contains("1 of 5 steps done · 2 records imported so far"));
    shot(&c, "onboarding-one-done").await;
    // skip the rest, then finish: the summary stays
    for step in ["staff", "clients", "policies", "forms"] {
        let skip = format!("#step-{step} form[action$='/skip'] button");
        c.find(Locator::Css(&skip)).await.unwrap().click().await.unwrap();
        wait_text(&c, &format!("#step-{step} .step-head .badge"), |t| t == "Skipped").await;
    }
    c.find(Locator::Css("#onboarding-summary form[action$='/finish'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#onboarding-summary .card-header", |t| t.contains("Finished by ada@acme.test")).await;
    assert!(text(&c, "main").await.contains("Onboarding finished: 5 steps: 2 records created, 0 updated; 4 skipped."));
    shot(&c, "onboarding-finished").await;

    // roll the whole onboarding back through its dialog; the page follows without a reload
    c.find(Locator::Css("a[data-open='onboarding-rollback']")).await.unwrap().click().await.unwrap();
    assert!(eval_bool(&c, "return document.getElementById('onboarding-rollback').open").await);
    assert!(text(&c, "#onboarding-rollback-desc").await.contains("2 created records removed"));
    shot(&c, "onboarding-rollback-dialog").await;
    c.find(Locator::Css("#onboarding-rollback button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text_within(&c, "#step-locations .step-head .badge", 60, |t| t == "Not started").await;
    wait_text_within(&c, "#onboarding-steps", 60, |t| !t.contains("Rolling back the onboarding…")).await;
    assert!(text(&c, "#onboarding-steps").await.contains("0 records imported so far"));
    c.close().await.unwrap();
}

#[actix_web::test]
async fn onboarding_takes_one_workbook_for_every_step() {
    use rust_xlsxwriter::Workbook;
    let profile = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = start_browser(profile.path()).await else { return };
    let app = spawn_app().await;
    app.user("acme-health", "ada@acme.test", "owner").await;
    let base = app.base.clone();
    let path = profile.path().join("organization.xlsx");
    let mut wb = Workbook::new();
    for (sheet, header, row) in [
        ("Locations", ["code", "name", "kind"], ["LOC-1", "Main", "clinic"]),
        ("Forms", ["form_code", "title", "category"], ["F-1", "Intake", "intake"]),
    ] {
        let ws = wb.add_worksheet().set_name(sheet).unwrap();
        for (col, (h, v)) in header.iter().zip(row).enumerate() {
            ws.write_string(0, col as u16, *h).unwrap();
            ws.write_string(1, col as u16, v).unwrap();
        }
    }
    wb.add_worksheet().set_name("Read me").unwrap();
    wb.save(&path).unwrap();

    sign_in(&c, &base, "/login", "ada@acme.test").await;
    c.goto(&format!("{base}/settings/imports/onboarding")).await.unwrap();
    wait_text(&c, "main h1", |t| t == "Onboarding").await;
    assert!(eval_bool(&c, "return document.querySelector('details.workbook').open").await, "open before any step");
    c.find(Locator::Css("#workbook")).await.unwrap().send_keys(&path.display().to_string()).await.unwrap();
    c.find(Locator::Css("details.workbook button[type=submit]")).await.unwrap().click().await.unwrap();
    let said = wait_text(&c, "main .alert", |t| t.contains("organization.xlsx")).await;
    assert!(said.contains("2 imports created (Locations, Forms)"), "{said}");
    assert!(said.contains("ignored: Read me"), "{said}");
    assert_eq!(text(&c, "#step-locations .step-head .badge").await, "In progress");
    assert_eq!(text(&c, "#step-forms .step-head .badge").await, "In progress");
    shot(&c, "onboarding-workbook").await;
    c.find(Locator::Css("#step-locations .step-body a[href^='/settings/imports/']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#map-title", |t| t == "Column mapping").await;
    assert_eq!(text(&c, "#sample-code").await, "LOC-1", "the sheet's own values");

    // validate every sheet, preview them together, import them with one click
    c.goto(&format!("{base}/settings/imports/onboarding")).await.unwrap();
    c.find(Locator::Css("#workbook-preview form[action$='/validate'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main .alert", |t| t.contains("Validating Locations, then Forms")).await;
    watch_htmx(&c).await;
    wait_text_within(&c, "#workbook-preview", 60, |t| t.contains("Import all")).await;
    let preview = text(&c, "#workbook-preview tbody").await;
    assert!(preview.contains("Ready"), "{preview}");
    shot(&c, "onboarding-workbook-preview").await;
    c.find(Locator::Css("#workbook-preview form[action$='/import'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main .alert", |t| t.contains("Importing Locations, then Forms")).await;
    watch_htmx(&c).await;
    // steps that do not refer to each other (forms, locations) import side by side and may
    // finish in either order
    wait_text_within(&c, "#step-forms .step-head .badge", 60, |t| t == "Completed").await;
    wait_text_within(&c, "#step-locations .step-head .badge", 60, |t| t == "Completed").await;
    assert!(same_page(&c).await, "the steps completed without a reload");
    // and roll it all back
    c.find(Locator::Css("a[data-open='onboarding-rollback']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#onboarding-rollback button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text_within(&c, "#step-locations .step-head .badge", 60, |t| t == "Not started").await;
    wait_text_within(&c, "#step-forms .step-head .badge", 60, |t| t == "Not started").await;
    c.close().await.unwrap();
}
