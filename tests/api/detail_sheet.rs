//! The import detail sheet keeps itself up to date through htmx: while background work
//! changes the import the sheet carries a polling trigger, an htmx request gets the sheet
//! alone (no page frame), and once nothing runs the sheet it returns stops the polling.
//! Without JavaScript the page shows the same state on reload.

use awc::http::StatusCode;

use crate::helpers::{Client, spawn_app_with};

const LOCATIONS: &str = "code,name,kind\nHQ,Head office,clinic\nNORTH,North clinic,clinic\n";
const MAPPING: [(&str, &str); 3] = [("code", "code"), ("name", "name"), ("kind", "kind")];

/// GETs `path` as htmx does (with `HX-Request`), with the client's cookies.
async fn htmx_get(c: &Client, path: &str) -> (StatusCode, String) {
    let cookies: Vec<String> = c.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut res = awc::Client::default()
        .get(format!("{}{path}", c.base))
        .insert_header(("cookie", cookies.join("; ")))
        .insert_header(("hx-request", "true"))
        .send()
        .await
        .unwrap();
    let body = res.body().await.unwrap();
    (res.status(), String::from_utf8_lossy(&body).into_owned())
}

fn sheet(body: &str) -> scraper::Html {
    scraper::Html::parse_fragment(body)
}

fn sheet_attr(body: &str, attr: &str) -> Option<String> {
    let doc = sheet(body);
    let sel = scraper::Selector::parse("#import-sheet").unwrap();
    let el = doc.select(&sel).next().expect("the response holds the sheet");
    el.value().attr(attr).map(str::to_string)
}

#[actix_web::test]
async fn the_sheet_polls_while_work_runs_and_htmx_gets_it_alone() {
    let app = spawn_app_with(|s| s.workers = "0".into()).await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.signed_in("ada@acme.test").await;
    let id = c.upload_mapped(&[("resource", "locations")], ("l.csv", LOCATIONS.as_bytes()), &MAPPING).await;
    let path = format!("/settings/imports/{id}");

    // validating: the full page holds the polling sheet inside the frame
    let page = c.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<html") && page.body.contains("Validating"));
    assert_eq!(sheet_attr(&page.body, "hx-get").as_deref(), Some(path.as_str()));
    assert_eq!(sheet_attr(&page.body, "hx-trigger").as_deref(), Some("every 2s"));
    assert!(!page.body.contains("http-equiv=\"refresh\""), "no meta refresh any more");

    // htmx gets the sheet alone, still polling
    let (status, partial) = htmx_get(&c, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!partial.contains("<html") && !partial.contains("<nav"), "no page frame in the partial");
    assert!(partial.trim_start().starts_with("<div id=\"import-sheet\""), "{}", &partial[..80.min(partial.len())]);
    assert_eq!(sheet_attr(&partial, "hx-trigger").as_deref(), Some("every 2s"));

    // ready: nothing runs, so the sheet it returns stops the polling
    app.drain().await;
    let (_, partial) = htmx_get(&c, &path).await;
    assert!(partial.contains("Ready to import"), "the partial shows the new state");
    assert_eq!(sheet_attr(&partial, "hx-trigger"), None, "polling stops once nothing runs");
    assert_eq!(sheet_attr(&partial, "hx-get"), None);

    // importing polls again until completed
    let r = c.submit(&path, &format!("{path}/start"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (_, partial) = htmx_get(&c, &path).await;
    assert!(partial.contains("Importing"), "{partial}");
    assert_eq!(sheet_attr(&partial, "hx-trigger").as_deref(), Some("every 2s"));
    app.drain().await;
    let (_, partial) = htmx_get(&c, &path).await;
    assert!(partial.contains("Import completed: 2 created"), "{partial}");
    assert_eq!(sheet_attr(&partial, "hx-trigger"), None);
    // without JavaScript a reload shows the same state
    assert!(c.get(&path).await.body.contains("Import completed: 2 created"));
}

#[actix_web::test]
async fn another_orgs_sheet_is_not_found_for_htmx_either() {
    let app = spawn_app_with(|s| s.workers = "0".into()).await;
    app.user("acme", "ada@acme.test", "owner").await;
    app.user("umbrella", "eve@umbrella.test", "owner").await;
    let mut ada = app.signed_in("ada@acme.test").await;
    let id = ada.upload_mapped(&[("resource", "locations")], ("l.csv", LOCATIONS.as_bytes()), &MAPPING).await;
    let eve = app.signed_in("eve@umbrella.test").await;
    let (status, body) = htmx_get(&eve, &format!("/settings/imports/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.contains("Head office"));
}
