//! Fixing a file instead of rejecting it: at the mapping step a date column whose day and
//! month could swap is asked about (and its proposal follows the column picked) and an enum
//! value that is not allowed is mapped to one; a row still left out is fixed in the grid
//! with the keyboard; every row imports with canonical values.

use super::*;

/// Sets select `id` to `value` as a person picking it does (the change event bubbles).
async fn pick(c: &Client, id: &str, value: &str) {
    let script = "const s = document.getElementById(arguments[0]); s.value = arguments[1]; \
                  s.dispatchEvent(new Event('change', {bubbles: true})); return s.value;";
    let set = c.execute(script, vec![json!(id), json!(value)]).await.unwrap();
    assert_eq!(set.as_str(), Some(value), "{id} has the option {value}");
}

async fn value_of(c: &Client, id: &str) -> String {
    let v = c.execute("return document.getElementById(arguments[0]).value", vec![json!(id)]).await.unwrap();
    v.as_str().unwrap_or_default().to_string()
}

#[actix_web::test]
async fn fix_dates_and_an_enum_value_at_mapping_and_a_row_in_the_grid_then_import_every_row() {
    let profile = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = start_browser(profile.path()).await else { return };
    let app = spawn_app().await;
    app.user("acme-health", "ada@acme.test", "owner").await;
    let base = app.base.clone();
    let file = profile.path().join("sites.csv");
    let csv = "Site code,Title,Type,Opened,capacity\nLOC-1,North,Clinc,03/04/2024,4\nLOC-2,South,office,01/02/2024,9\n\
               LOC-3,East,Clinc,05/06/2023,many\n";
    std::fs::write(&file, csv).unwrap();

    sign_in(&c, &base, "/login", "ada@acme.test").await;
    c.goto(&format!("{base}/locations/importer")).await.unwrap();
    wait_text(&c, "main h1", |t| t == "Import locations").await;
    c.find(Locator::Css("input#file")).await.unwrap().send_keys(&file.display().to_string()).await.unwrap();
    c.find(Locator::Css("form[enctype='multipart/form-data'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // the dates could be day-first or month-first: asked, nothing chosen
    wait_text(&c, "#map-title", |t| t == "Column mapping").await;
    assert_eq!(value_of(&c, "map-opened_on").await, "Opened", "Opened is a synonym of opened_on");
    assert_eq!(value_of(&c, "fmt-opened_on").await, "");
    let asked = "Dates in this column, like 03/04/2024, could be DD/MM/YYYY or MM/DD/YYYY: choose which.";
    assert_eq!(text(&c, "#fmt-hint-opened_on").await, asked);
    // another column: its own proposal; back again: asked again
    pick(&c, "map-opened_on", "Site code").await;
    wait_text(&c, "#fmt-hint-opened_on", |t| t.contains("No format offered here reads values like \"LOC-1\"")).await;
    assert_eq!(value_of(&c, "fmt-opened_on").await, "YYYY-MM-DD");
    pick(&c, "map-opened_on", "Opened").await;
    wait_text(&c, "#fmt-hint-opened_on", |t| t == asked).await;
    assert_eq!(value_of(&c, "fmt-opened_on").await, "");
    pick(&c, "fmt-opened_on", "DD/MM/YYYY").await;

    // Clinc is not a kind: it is listed with its rows and mapped to clinic
    let listed = text(&c, "[data-values-for=kind] tbody").await;
    assert!(listed.contains("Clinc 2 rows"), "{listed}");
    pick(&c, "vto-kind-0", "clinic").await;
    // Title is nobody's synonym: chosen by hand
    pick(&c, "map-name", "Title").await;
    shot(&c, "mapping-formats-and-values").await;
    c.find(Locator::Css("form[action$='/mapping'] button[type=submit]")).await.unwrap().click().await.unwrap();

    wait_text_within(&c, "main", 60, |t| t.contains("Ready to import")).await;

    // row 4's capacity is no number: fixed in the grid, Enter saves it and it is checked at once
    c.find(Locator::Css("a[data-fix-rows]")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main h1", |t| t == "Fix rows left out").await;
    watch_htmx(&c).await;
    let problem = text(&c, "#grid-row-4 td.grid-error .grid-problem").await;
    assert!(problem.contains("capacity: \"many\" is not a whole number"), "{problem}");
    let cell = c.find(Locator::Css("#grid-row-4 input[name='cell.4']")).await.unwrap();
    cell.click().await.unwrap();
    let erase: String =
        std::iter::once(Key::End.to_string()).chain(std::iter::repeat_n(Key::Backspace.to_string(), 4)).collect();
    cell.send_keys(&format!("{erase}12{}", Key::Enter)).await.unwrap();
    wait_css(&c, "#grid-row-4.grid-fixed").await;
    assert!(same_page(&c).await, "saved without leaving the page");
    wait_text(&c, "[data-edited-count]", |t| t == "1 row").await;
    shot(&c, "grid-fixed-row").await;
    c.find(Locator::Css("[data-revalidate] button")).await.unwrap().click().await.unwrap();
    wait_text_within(&c, "main", 60, |t| t.contains("Ready to import")).await;
    c.find(Locator::Css("form[action$='/start'] button")).await.unwrap().click().await.unwrap();
    wait_text_within(&c, "main", 120, |t| t.contains("Import completed")).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM records WHERE entity = 'locations'", &[]).await, 3, "every row");
    let east = app.text("SELECT data FROM records WHERE record_key = 'LOC-3'", &[]).await;
    assert!(east.contains("\"capacity\":12"), "{east}");
    let stored = app.text("SELECT data FROM records WHERE record_key = 'LOC-1'", &[]).await;
    assert!(stored.contains("\"opened_on\":\"2024-04-03\"") && stored.contains("\"kind\":\"clinic\""), "{stored}");
    c.close().await.unwrap();
}
