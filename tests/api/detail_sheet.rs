//! The import detail sheet keeps itself up to date through htmx: while background work
//! changes the import the sheet carries a polling trigger, an htmx request gets the sheet
//! alone (no page frame), and once nothing runs the sheet it returns stops the polling.
//! Without JavaScript the page shows the same state on reload.

use awc::http::StatusCode;

use crate::helpers::{app, attrs};

const LOCATIONS: &str = "code,name,kind\nHQ,Head office,clinic\nNORTH,North clinic,clinic\n";

/// An attribute of the sheet (`#import-sheet`), which the response must hold.
fn sheet_attr(body: &str, attr: &str) -> Option<String> {
    assert!(body.contains("id=\"import-sheet\""), "the response holds the sheet");
    attrs(body, "#import-sheet", attr).into_iter().next()
}

#[actix_web::test]
async fn the_sheet_polls_while_work_runs_and_htmx_gets_it_alone() {
    let (app, mut c) = app().await;
    let id = c.upload_mapped("locations", ("l.csv", LOCATIONS.as_bytes()), &[]).await;
    let path = format!("/settings/imports/{id}");

    // validating: the full page holds the polling sheet inside the frame
    let page = c.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<html") && page.body.contains("Validating"));
    assert_eq!(sheet_attr(&page.body, "hx-get").as_deref(), Some(path.as_str()));
    assert_eq!(sheet_attr(&page.body, "hx-trigger").as_deref(), Some("every 2s"));
    assert!(!page.body.contains("http-equiv=\"refresh\""), "no meta refresh any more");

    // htmx gets the sheet alone, still polling
    let (status, _, partial) = c.htmx_get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!partial.contains("<html") && !partial.contains("<nav"), "no page frame in the partial");
    assert!(partial.trim_start().starts_with("<div id=\"import-sheet\""), "{}", &partial[..80.min(partial.len())]);
    assert_eq!(sheet_attr(&partial, "hx-trigger").as_deref(), Some("every 2s"));

    // ready: nothing runs, so the sheet it returns stops the polling
    app.drain().await;
    let (_, _, partial) = c.htmx_get(&path).await;
    assert!(partial.contains("Ready to import"), "the partial shows the new state");
    assert_eq!(sheet_attr(&partial, "hx-trigger"), None, "polling stops once nothing runs");
    assert_eq!(sheet_attr(&partial, "hx-get"), None);

    // importing polls again until completed
    c.import_action(id, "start", &[]).await.see_other();
    let (_, _, partial) = c.htmx_get(&path).await;
    assert!(partial.contains("Importing"), "{partial}");
    assert_eq!(sheet_attr(&partial, "hx-trigger").as_deref(), Some("every 2s"));
    app.drain().await;
    let (_, _, partial) = c.htmx_get(&path).await;
    assert!(partial.contains("Import completed: 2 created"), "{partial}");
    assert_eq!(sheet_attr(&partial, "hx-trigger"), None);
    // without JavaScript a reload shows the same state
    assert!(c.get(&path).await.body.contains("Import completed: 2 created"));
}

#[actix_web::test]
async fn another_orgs_sheet_is_not_found_for_htmx_either() {
    let (app, mut ada) = app().await;
    app.user("umbrella", "eve@umbrella.test", "owner").await;
    let id = ada.upload_mapped("locations", ("l.csv", LOCATIONS.as_bytes()), &[]).await;
    let eve = app.signed_in("eve@umbrella.test").await;
    let (status, _, body) = eve.htmx_get(&format!("/settings/imports/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.contains("Head office"));
}
