//! Fixing the rows left out in the grid (`/settings/imports/{id}/rows`): a row's cells are
//! saved as edits and checked again at once, fixed rows join the import when it is
//! validated again, the error download and the activity follow, the file never changes.

use crate::helpers::*;

const FILE: &str = "code,name,kind,capacity\n\
LOC-1,North,clinic,10\n\
LOC-2,,clinic,5\n\
LOC-3,East,spaceship,7\n\
LOC-4,West,office,many\n";

fn unquoted(body: &str) -> String {
    body.replace("&#34;", "\"").replace("&#39;", "'").replace("&quot;", "\"")
}

/// A row the grid's script swaps in, in a table to be read as a page would.
fn table(row: &str) -> String {
    format!("<table><tbody>{row}</tbody></table>")
}

/// Saves row `row`'s cells (`cell.<column index>`) as the grid's script does; the response.
async fn save(c: &mut Client, id: i64, row: i64, cells: &[(&str, &str)]) -> Resp {
    let page = c.get(&format!("/settings/imports/{id}/rows")).await;
    let mut form = vec![("csrf_token", page.csrf())];
    form.extend(cells.iter().map(|(k, v)| (*k, v.to_string())));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    c.post_form_with(&format!("/settings/imports/{id}/rows/{row}"), &form, &[("HX-Request", "true")]).await
}

#[actix_web::test]
async fn rows_left_out_are_fixed_in_the_grid_and_join_the_import_once_validated_again() {
    let (app, mut c) = app().await;
    let id = validated(&app, &mut c, "locations", ("sites.csv", FILE.as_bytes()), &[]).await;
    assert_eq!(app.scalar("SELECT invalid_rows FROM imports WHERE id = $1", &[id]).await, 3);
    let sheet = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(attrs(&sheet.body, "a[data-fix-rows]", "href"), vec![format!("/settings/imports/{id}/rows")]);

    // the grid: a row per row left out, the bad cell marked with its message
    let grid = c.get(&format!("/settings/imports/{id}/rows")).await;
    assert_eq!(grid.status, 200);
    assert_eq!(attrs(&grid.body, "tr[data-row]", "data-row"), vec!["3", "4", "5"]);
    let kind = unquoted(&text(&grid.body, "#grid-row-4 td.grid-error .grid-problem"));
    assert_eq!(kind, "kind: \"spaceship\" is not one of the allowed values (clinic, office, residential, telehealth)");
    assert_eq!(attrs(&grid.body, "#grid-row-4 td.grid-error input", "name"), vec!["cell.2"]);

    // fixed cells come back checked: fixed, or what is still wrong
    let r = save(&mut c, id, 3, &[("cell.1", "South")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(count(&table(&r.body), "tr.grid-fixed"), 1, "{}", r.body);
    assert_eq!(r.header("x-edited-rows"), "1");
    save(&mut c, id, 4, &[("cell.2", "office")]).await;
    let r = save(&mut c, id, 5, &[("cell.3", "lots")]).await;
    assert_eq!(count(&table(&r.body), "tr.grid-fixed"), 0);
    assert!(unquoted(&r.body).contains("capacity: \"lots\" is not a whole number"), "{}", r.body);
    assert_eq!(r.header("x-edited-rows"), "3");
    // a reload shows the same
    let grid = c.get(&format!("/settings/imports/{id}/rows")).await;
    assert_eq!(count(&grid.body, "tr.grid-fixed"), 2);
    assert_eq!(attrs(&grid.body, "#grid-row-3 input[name='cell.1']", "value"), vec!["South"]);
    // a filter by field
    let only = c.get(&format!("/settings/imports/{id}/rows?field=capacity")).await;
    assert_eq!(attrs(&only.body, "tr[data-row]", "data-row"), vec!["5"]);
    // counts change once validated again, not before
    assert_eq!(app.scalar("SELECT valid_rows FROM imports WHERE id = $1", &[id]).await, 1);
    let r = c.submit(&format!("/settings/imports/{id}/rows"), &format!("/settings/imports/{id}/revalidate"), &[]).await;
    assert_eq!(r.see_other(), format!("/settings/imports/{id}"));
    app.drain().await;
    assert_eq!(app.scalar("SELECT valid_rows FROM imports WHERE id = $1", &[id]).await, 3);
    assert_eq!(app.scalar("SELECT invalid_rows FROM imports WHERE id = $1", &[id]).await, 1);
    let grid = c.get(&format!("/settings/imports/{id}/rows")).await;
    assert_eq!(attrs(&grid.body, "tr[data-row]", "data-row"), vec!["5"]);
    assert_eq!(attrs(&grid.body, "#grid-row-5 input[name='cell.3']", "value"), vec!["lots"], "as edited");

    // the error download holds what is still wrong, as it now reads
    let errors = c.get(&format!("/settings/imports/{id}/errors.csv")).await;
    assert!(errors.body.contains("LOC-4,West,office,lots,"), "{}", errors.body);
    assert!(!errors.body.contains("LOC-2") && !errors.body.contains("LOC-3"), "{}", errors.body);
    // the original file is never changed
    assert_eq!(c.get(&format!("/settings/imports/{id}/original")).await.body, FILE);

    start_import(&app, &mut c, id, &[]).await.see_other();
    let south = app.text("SELECT data FROM records WHERE record_key = 'LOC-2'", &[]).await;
    assert!(south.contains("\"name\":\"South\""), "{south}");
    let east = app.text("SELECT data FROM records WHERE record_key = 'LOC-3'", &[]).await;
    assert!(east.contains("\"kind\":\"office\""), "{east}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM records WHERE record_key = 'LOC-4'", &[]).await, 0);

    // every edit kept, and in the activity
    assert_eq!(app.scalar("SELECT COUNT(*) FROM import_edits WHERE import_id = $1", &[id]).await, 3);
    let sheet = unquoted(&c.get(&format!("/settings/imports/{id}")).await.body);
    assert!(sheet.contains("Fixed a row left out"), "{sheet}");
    assert!(sheet.contains("row 4: kind \"spaceship\" → \"office\""), "{sheet}");
    assert!(sheet.contains("Validated again"), "{sheet}");
}

#[actix_web::test]
async fn the_grid_takes_edits_only_while_the_import_waits_and_only_of_its_fields() {
    let (app, mut c) = app().await;
    let id = validated(&app, &mut c, "locations", ("sites.csv", FILE.as_bytes()), &[]).await;
    let r = save(&mut c, id, 3, &[("cell.9", "x")]).await;
    assert_eq!(r.status, 422, "a column that is none of the row's fields");
    let r = save(&mut c, id, 2, &[("cell.1", "x")]).await;
    assert_eq!(r.status, 404, "row 2 was not left out");
    // another org's import is not found
    app.user("other", "b@other.test", "owner").await;
    let mut other = app.signed_in("b@other.test").await;
    assert_eq!(other.get(&format!("/settings/imports/{id}/rows")).await.status, 404);
    // once started, nothing changes
    start_import(&app, &mut c, id, &[]).await.see_other();
    let grid = c.get(&format!("/settings/imports/{id}/rows")).await;
    assert_eq!(count(&grid.body, "input[readonly]"), count(&grid.body, "tr[data-row] input[form]"));
    assert_eq!(count(&grid.body, "input[readonly]"), 12);
    let r = save(&mut c, id, 3, &[("cell.1", "South")]).await;
    assert_eq!(r.status, 409);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM import_edits WHERE import_id = $1", &[id]).await, 0);
}

#[actix_web::test]
async fn the_grid_pages_through_many_rows_left_out() {
    let (app, mut c) = app().await;
    let mut csv = String::from("code,name,kind\n");
    for i in 0..120 {
        csv.push_str(&format!("LOC-{i},Site {i},spaceship\n"));
    }
    let id = validated(&app, &mut c, "locations", ("many.csv", csv.as_bytes()), &[]).await;
    let first = c.get(&format!("/settings/imports/{id}/rows")).await;
    assert_eq!(count(&first.body, "tr[data-row]"), 50);
    assert!(text(&first.body, "nav.pagination").contains("Showing 1–50 of 120"));
    let last = c.get(&format!("/settings/imports/{id}/rows?page=3")).await;
    let rows = attrs(&last.body, "tr[data-row]", "data-row");
    assert_eq!((rows.len(), rows.first().map(String::as_str)), (20, Some("102")));
}

#[actix_web::test]
async fn a_value_is_replaced_in_every_row_left_out_at_once() {
    let (app, mut c) = app().await;
    let mut csv = String::from("code,name,kind\n");
    for i in 0..1500 {
        let kind = if i % 3 == 0 { "office" } else { "spaceship" };
        csv.push_str(&format!("LOC-{i},Site {i},{kind}\n"));
    }
    csv.push_str("LOC-X,,clinic\n");
    let id = validated(&app, &mut c, "locations", ("many.csv", csv.as_bytes()), &[]).await;
    assert_eq!(app.scalar("SELECT invalid_rows FROM imports WHERE id = $1", &[id]).await, 1001);
    let grid = format!("/settings/imports/{id}/rows");
    let replace = format!("/settings/imports/{id}/rows/replace");

    let r = c.submit(&grid, &replace, &[("column", "2"), ("from", "rocket"), ("to", "clinic")]).await;
    assert_eq!(r.see_other(), grid);
    let page = unquoted(&c.get(&grid).await.body);
    assert!(page.contains("No row left out has \"rocket\" in Kind; nothing was changed."), "{page}");

    let r = c.submit(&grid, &replace, &[("column", "2"), ("from", " spaceship "), ("to", "clinic")]).await;
    assert_eq!(r.see_other(), grid);
    let page = unquoted(&c.get(&grid).await.body);
    assert!(page.contains("Replaced \"spaceship\" with \"clinic\" in Kind of 1,000 rows."), "{page}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM import_edits WHERE import_id = $1", &[id]).await, 1000);
    // an empty cell filled in the same way
    c.submit(&grid, &replace, &[("column", "1"), ("from", ""), ("to", "Lake")]).await.see_other();
    // a column that is not one of the fields is refused
    let r = c.submit(&grid, &replace, &[("column", "7"), ("from", "a"), ("to", "b")]).await;
    assert_eq!(r.status, 422);

    c.submit(&grid, &format!("/settings/imports/{id}/revalidate"), &[]).await.see_other();
    app.drain().await;
    assert_eq!(app.scalar("SELECT invalid_rows FROM imports WHERE id = $1", &[id]).await, 0);
    assert_eq!(app.scalar("SELECT valid_rows FROM imports WHERE id = $1", &[id]).await, 1501);
    let sheet = unquoted(&c.get(&format!("/settings/imports/{id}")).await.body);
    assert!(sheet.contains("kind: \"spaceship\" → \"clinic\" in 1,000 rows"), "{sheet}");
}

#[actix_web::test]
async fn ticked_rows_are_skipped_out_of_the_grid_and_can_be_put_back() {
    let (app, mut c) = app().await;
    let id = validated(&app, &mut c, "locations", ("sites.csv", FILE.as_bytes()), &[]).await;
    let grid = format!("/settings/imports/{id}/rows");
    let r = c.submit(&grid, &format!("{grid}/skip"), &[("row", "3"), ("row", "5"), ("row", "2")]).await;
    assert_eq!(r.see_other(), grid);
    let page = c.get(&grid).await;
    assert!(
        page.body.contains("Skipped 2 rows: they stay left out of the import and leave this list."),
        "row 2 was not left out"
    );
    assert_eq!(attrs(&page.body, "tr[data-row]", "data-row"), vec!["4"]);
    assert!(text(&page.body, ".toolbar-count").contains("2 rows skipped"));
    // validating again keeps them skipped, and left out
    c.submit(&grid, &format!("/settings/imports/{id}/revalidate"), &[]).await.see_other();
    app.drain().await;
    assert_eq!(attrs(&c.get(&grid).await.body, "tr[data-row]", "data-row"), vec!["4"]);
    assert_eq!(app.scalar("SELECT invalid_rows FROM imports WHERE id = $1", &[id]).await, 3);
    c.submit(&grid, &format!("{grid}/unskip"), &[]).await.see_other();
    assert_eq!(attrs(&c.get(&grid).await.body, "tr[data-row]", "data-row"), vec!["3", "4", "5"]);
    let sheet = c.get(&format!("/settings/imports/{id}")).await.body;
    assert!(sheet.contains("Skipped rows left out") && sheet.contains("rows 3, 5, 2"), "{sheet}");
}
