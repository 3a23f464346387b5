//! The mapping step fixes instead of rejecting: column formats proposed from the values
//! (asked when day and month could swap), enum values mapped to allowed ones, synonyms, and
//! the mapping an org confirmed proposed again for the same headers; also through the API.

use serde_json::{Value, json};

use crate::api_v1::{create_key, post_json, put_file};
use crate::helpers::*;

fn unquoted(body: &str) -> String {
    body.replace("&#34;", "\"").replace("&#39;", "'").replace("&quot;", "\"")
}

#[actix_web::test]
async fn a_yyyy_mm_dd_file_imports_once_its_format_is_chosen() {
    let (app, mut c) = app().await;
    let csv = "code,name,kind,opened_on\nLOC-1,North,clinic,2012/01/31\nLOC-2,South,office,2012/12/05\n";
    let id = id_in(&c.upload("locations", ("weather.csv", csv.as_bytes()), &[]).await.see_other());
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(text(&page.body, "#fmt-hint-opened_on"), "Dates in this column look like 2012/01/31 (YYYY/MM/DD).");
    assert_eq!(attrs(&page.body, "#fmt-opened_on option[selected]", "value"), vec!["YYYY/MM/DD"], "proposed");

    // ISO chosen instead: every row is left out, saying what was expected
    c.submit_mapping(id, &[("fmt.opened_on", "YYYY-MM-DD")]).await.see_other();
    app.drain().await;
    let body = unquoted(&c.get(&format!("/settings/imports/{id}")).await.body);
    assert!(body.contains("row 2, opened_on: \"2012/01/31\" is not a date (expected YYYY-MM-DD)"), "{body}");

    // the proposed format: every row is valid, stored as ISO
    c.submit_mapping(id, &[("fmt.opened_on", "YYYY/MM/DD")]).await.see_other();
    app.drain().await;
    let imp = app.scalar("SELECT valid_rows FROM imports WHERE id = $1", &[id]).await;
    assert_eq!(imp, 2);
    start_import(&app, &mut c, id, &[]).await.see_other();
    let stored = app.text("SELECT data FROM records WHERE record_key = 'LOC-1'", &[]).await;
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["opened_on"], "2012-01-31");
    // the activity says which format was confirmed
    let body = c.get(&format!("/settings/imports/{id}")).await.body;
    assert!(body.contains("Opened on ← opened_on (YYYY/MM/DD)"), "{body}");
}

#[actix_web::test]
async fn day_and_month_order_is_asked_not_guessed() {
    let (app, mut c) = app().await;
    let csv = "code,name,kind,opened_on\nLOC-1,North,clinic,03/04/2024\nLOC-2,South,office,01/02/2024\n";
    let id = id_in(&c.upload("locations", ("l.csv", csv.as_bytes()), &[]).await.see_other());
    let page = c.get(&format!("/settings/imports/{id}")).await;
    let hint = text(&page.body, "#fmt-hint-opened_on");
    assert_eq!(hint, "Dates in this column, like 03/04/2024, could be DD/MM/YYYY or MM/DD/YYYY: choose which.");
    assert_eq!(attrs(&page.body, "#fmt-opened_on option[selected]", "value"), vec![""], "nothing chosen");

    // validating without choosing is refused, naming the column and the readings
    let r = c.confirm_mapping(id).await;
    assert_eq!(r.status, 422);
    let body = unquoted(&r.body);
    assert!(
        body.contains("The column \"opened_on\" has values like 03/04/2024 that could be DD/MM/YYYY or MM/DD/YYYY: choose its format for Opened on."),
        "{body}"
    );
    let waiting = app.scalar("SELECT COUNT(*) FROM imports WHERE id = $1 AND stage = 'mapping'", &[id]).await;
    assert_eq!(waiting, 1, "still at its mapping: nothing was validated");

    c.submit_mapping(id, &[("fmt.opened_on", "DD/MM/YYYY")]).await.see_other();
    app.drain().await;
    start_import(&app, &mut c, id, &[]).await.see_other();
    let stored: Value =
        serde_json::from_str(&app.text("SELECT data FROM records WHERE record_key = 'LOC-1'", &[]).await).unwrap();
    assert_eq!(stored["opened_on"], "2024-04-03", "day first, as chosen");
}

#[actix_web::test]
async fn enum_values_that_are_not_allowed_are_mapped_at_the_mapping_step() {
    let (app, mut c) = app().await;
    let csv = "code,name,kind\nLOC-1,North,Clinc\nLOC-2,South,Clinc\nLOC-3,East,Head office\nLOC-4,West,OFFICE\nLOC-5,Lake,Tele-health\n";
    let id = id_in(&c.upload("locations", ("l.csv", csv.as_bytes()), &[]).await.see_other());
    let page = c.get(&format!("/settings/imports/{id}")).await;
    let listed = texts(&page.body, "[data-values-for=kind] tbody tr");
    // most rows first; OFFICE matches office in any case and is not listed
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed[0].starts_with("Clinc 2 rows"), "{listed:?}");
    assert!(texts(&page.body, "[data-values-for=kind] .value-map-title")[0].contains("in the file"));
    // a value that plainly is an allowed one is preselected
    let tele = listed.iter().position(|l| l.starts_with("Tele-health")).unwrap();
    let selected = attrs(&page.body, &format!("select[name='vto.kind.{tele}'] option[selected]"), "value");
    assert_eq!(selected, vec!["telehealth"]);

    let clinc = listed.iter().position(|l| l.starts_with("Clinc")).unwrap();
    let name = format!("vto.kind.{clinc}");
    c.submit_mapping(id, &[(name.as_str(), "clinic")]).await.see_other();
    app.drain().await;
    let body = unquoted(&c.get(&format!("/settings/imports/{id}")).await.body);
    assert!(body.contains("row 4, kind: \"Head office\" is not one of the allowed values"), "{body}");
    assert!(!body.contains("\"Clinc\" is not one"), "mapped values are not errors");
    assert_eq!(app.scalar("SELECT valid_rows FROM imports WHERE id = $1", &[id]).await, 4);
    start_import(&app, &mut c, id, &[]).await.see_other();
    let kinds = app.text("SELECT data FROM records WHERE record_key = 'LOC-2'", &[]).await;
    assert!(kinds.contains("\"kind\":\"clinic\""), "{kinds}");
    let tele = app.text("SELECT data FROM records WHERE record_key = 'LOC-5'", &[]).await;
    assert!(tele.contains("\"kind\":\"telehealth\""), "{tele}");
}

#[actix_web::test]
async fn synonyms_match_and_the_confirmed_mapping_is_proposed_again_for_the_same_headers() {
    let (app, mut c) = app().await;
    // Site code and Type are synonyms of code and kind; Title is nobody's: chosen by hand
    let first = "Site code,Title,Type,Opening date\nLOC-1,North,clinic,31.01.2012\n";
    let id = id_in(&c.upload("locations", ("a.csv", first.as_bytes()), &[]).await.see_other());
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(attrs(&page.body, "#map-code option[selected]", "value"), vec!["Site code"]);
    assert_eq!(attrs(&page.body, "#map-kind option[selected]", "value"), vec!["Type"]);
    assert_eq!(attrs(&page.body, "#map-opened_on option[selected]", "value"), vec!["Opening date"]);
    assert!(attrs(&page.body, "#map-name option[selected]", "value").is_empty());
    assert_eq!(count(&page.body, "[data-remembered]"), 0, "nothing confirmed yet");
    c.submit_mapping(id, &[("map.name", "Title")]).await.see_other();
    app.drain().await;

    // the same headers in another order and spelling: proposed as confirmed, and said so
    let second = "TITLE,type,site-code,Opening Date\nSouth,office,LOC-2,01.02.2013\n";
    let id2 = id_in(&c.upload("locations", ("b.csv", second.as_bytes()), &[]).await.see_other());
    let page = c.get(&format!("/settings/imports/{id2}")).await;
    assert_eq!(attrs(&page.body, "#map-name option[selected]", "value"), vec!["TITLE"]);
    assert_eq!(attrs(&page.body, "#map-code option[selected]", "value"), vec!["site-code"]);
    assert_eq!(attrs(&page.body, "#fmt-opened_on option[selected]", "value"), vec!["DD.MM.YYYY"]);
    let note = text(&page.body, "[data-remembered]");
    assert!(note.contains(&format!("as they were confirmed for import {id} on")), "{note}");
    c.confirm_mapping(id2).await.see_other();
    app.drain().await;
    start_import(&app, &mut c, id2, &[]).await.see_other();
    let stored = app.text("SELECT data FROM records WHERE record_key = 'LOC-2'", &[]).await;
    assert!(stored.contains("\"opened_on\":\"2013-02-01\""), "{stored}");

    // another org does not get this org's mapping
    app.user("other", "b@other.test", "owner").await;
    let mut other = app.signed_in("b@other.test").await;
    let id3 = id_in(&other.upload("locations", ("b.csv", second.as_bytes()), &[]).await.see_other());
    let page = other.get(&format!("/settings/imports/{id3}")).await;
    assert!(attrs(&page.body, "#map-name option[selected]", "value").is_empty());
    assert_eq!(count(&page.body, "[data-remembered]"), 0);
}

#[actix_web::test]
async fn the_api_takes_formats_and_value_mappings_in_column_mapping() {
    let (app, mut c) = app().await;
    let key = create_key(&mut c, "k", &["pf.import.upload"], "30").await;
    let mut api = app.client();
    let refused = [
        (
            json!({"opened_on": {"column": "Opened", "format": "YYYY/DD/MM"}}),
            "opened_on: \"YYYY/DD/MM\" is not a format",
        ),
        (
            json!({"opened_on": {"column": "Opened", "format": "dd/mm/yyyy"}}),
            "opened_on: \"dd/mm/yyyy\" is not a format",
        ),
        (
            json!({"kind": {"column": "kind", "values": {"Clinc": "hospital"}}}),
            "\"hospital\", which is not one of the allowed values",
        ),
        (
            json!({"name": {"column": "name", "format": "decimal_comma"}}),
            "name is a text field; the format decimal_comma is not for it",
        ),
        (
            json!({"name": {"column": "name", "values": {}}}),
            "name is not an enum field; only enum values can be mapped.",
        ),
    ];
    for (mapping, says) in refused {
        let body = json!({"resource": "locations", "column_mapping": mapping}).to_string();
        let (r, v) = post_json(&mut api, "/api/v1/imports", &key, &body, &[]).await;
        assert_eq!(r.status, 400, "{}", r.body);
        let said = r.body.replace("\\\"", "\"");
        assert!(said.contains(says), "{says}: {said} {v}");
    }
    let body = json!({
        "resource": "locations",
        "column_mapping": {
            "code": "code", "name": "name",
            "kind": {"column": "kind", "format": null, "values": {"Clinc": "clinic"}},
            "opened_on": {"column": "Opened", "format": "DD.MM.YYYY"}
        }
    })
    .to_string();
    let (r, made) = post_json(&mut api, "/api/v1/imports", &key, &body, &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(made["column_options"]["opened_on"]["format"], "DD.MM.YYYY");
    assert_eq!(made["column_options"]["kind"]["values"]["Clinc"], "clinic");
    assert_eq!(made["column_mapping"]["opened_on"], "Opened");
    let url = made["_upload_url"].as_str().unwrap().to_string();
    let (put, _) = put_file(&mut api, &url, "text/csv", b"code,name,kind,Opened\nLOC-1,North,Clinc,31.01.2012\n").await;
    assert!(put.status.is_success(), "{}", put.body);
    app.drain().await;
    let stored = app.text("SELECT data FROM records WHERE record_key = 'LOC-1'", &[]).await;
    assert!(stored.contains("\"opened_on\":\"2012-01-31\"") && stored.contains("\"kind\":\"clinic\""), "{stored}");
}

#[actix_web::test]
async fn excel_serial_dates_in_a_spreadsheet_are_proposed_and_read() {
    use rust_xlsxwriter::Workbook;
    let (app, mut c) = app().await;
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    for (col, h) in ["code", "name", "kind", "opened_on"].iter().enumerate() {
        ws.write_string(0, col as u16, *h).unwrap();
    }
    // dates kept as plain numbers, as a sheet without a date format keeps them
    for (row, (code, serial)) in [("LOC-1", 40909.0), ("LOC-2", 45292.0)].iter().enumerate() {
        let r = row as u32 + 1;
        ws.write_string(r, 0, *code).unwrap();
        ws.write_string(r, 1, "Site").unwrap();
        ws.write_string(r, 2, "clinic").unwrap();
        ws.write_number(r, 3, *serial).unwrap();
    }
    let bytes = wb.save_to_buffer().unwrap();
    let id = id_in(&c.upload("locations", ("sites.xlsx", &bytes), &[]).await.see_other());
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(attrs(&page.body, "#fmt-opened_on option[selected]", "value"), vec!["excel_serial"]);
    assert_eq!(text(&page.body, "#fmt-hint-opened_on"), "Dates in this column look like 40909 (Excel serial number).");
    c.confirm_mapping(id).await.see_other();
    app.drain().await;
    start_import(&app, &mut c, id, &[]).await.see_other();
    let stored = app.text("SELECT data FROM records WHERE record_key = 'LOC-2'", &[]).await;
    assert!(stored.contains("\"opened_on\":\"2024-01-01\""), "{stored}");

    // the same numbers in a CSV are not taken for dates
    let csv = "code,name,kind,opened_on\nLOC-3,Site,clinic,40909\n";
    let id = id_in(&c.upload("locations", ("sites.csv", csv.as_bytes()), &[]).await.see_other());
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(count(&page.body, "#fmt-opened_on option[value=excel_serial]"), 0);
    assert!(text(&page.body, "#fmt-hint-opened_on").starts_with("No format offered here reads values like \"40909\""));
}
