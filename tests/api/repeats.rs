//! Repeated rows and shared keys far apart in a file of many batches: prevalidation's
//! threads stage the batches in no set order and note the values that may repeat, and the
//! phases then look only at those rows; every copy must still be found, whichever copy a
//! thread met first, and rows that merely look alike must not be.

use crate::helpers::{Client, app, start_import, stat, validated};

/// 12,000 locations (rows 2 to 12,001), then: row 12,002 repeats row 5 exactly (with other
/// spacing, which a repeat ignores), row 12,003 repeats row 11,999, row 12,004 uses row 9's
/// code with another name, and row 12,005 repeats row 12,004.
fn file() -> String {
    let mut csv = String::from("code,name,kind\n");
    for i in 0..12_000 {
        csv.push_str(&format!("LOC-{i},Site {i},clinic\n"));
    }
    csv.push_str(" LOC-3 ,Site 3,clinic\n");
    csv.push_str("LOC-11997,Site 11997,clinic\n");
    csv.push_str("LOC-7,Another site,clinic\n");
    csv.push_str("LOC-7,Another site,clinic\n");
    csv
}

/// The import's issues from its errors download, (row, error) in row order.
async fn issues_of(c: &mut Client, id: i64) -> Vec<(i64, String)> {
    let errors = c.get(&format!("/settings/imports/{id}/errors.json")).await;
    let v: serde_json::Value = serde_json::from_str(&errors.body).unwrap();
    let mut issues: Vec<(i64, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_i64().unwrap(), e["error"].as_str().unwrap_or_default().to_string()))
        .collect();
    issues.sort();
    issues
}

#[actix_web::test]
async fn copies_far_apart_are_found_whichever_thread_met_them_first() {
    let (app, mut c) = app().await;
    let csv = file();

    // ignore all: every copy of a repeated row is left out
    let id = validated(&app, &mut c, "locations", ("far.csv", csv.as_bytes()), &[]).await;
    let issues = issues_of(&mut c, id).await;
    let rows: Vec<i64> = issues.iter().map(|(r, _)| *r).collect();
    assert_eq!(rows, [5, 11_999, 12_002, 12_003, 12_004, 12_005], "{issues:?}");
    let says = |row: i64, text: &str| {
        let (_, message) = issues.iter().find(|(r, _)| *r == row).unwrap();
        assert!(message.contains(text), "row {row}: {message}");
    };
    says(5, "row 5 appears 2 times in the file; every copy is left out");
    says(12_002, "row 12002 repeats row 5");
    says(12_003, "row 12003 repeats row 11999");
    says(12_004, "row 12004 appears 2 times in the file");
    says(12_005, "row 12005 repeats row 12004");
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(stat(&page.body, "To create"), 11_998, "{}", page.body);

    // use first: the first copy is imported, and a key used again with other values is a
    // conflict with the row that came first
    let id =
        validated(&app, &mut c, "locations", ("far.csv", csv.as_bytes()), &[("duplicate_handling", "use_first")]).await;
    let issues = issues_of(&mut c, id).await;
    assert_eq!(issues.len(), 4, "{issues:?}");
    assert!(issues[0].1.contains("row 12002 repeats row 5; only the first copy is imported"), "{issues:?}");
    assert!(issues[1].1.contains("row 12003 repeats row 11999"), "{issues:?}");
    assert!(
        issues[2]
            .1
            .contains("row 12004, code: \"LOC-7\" is also in row 9 with other values: row 9 is the one imported"),
        "{issues:?}"
    );
    assert!(issues[3].1.contains("row 12005 repeats row 12004"), "{issues:?}");
    assert_eq!(stat(&c.get(&format!("/settings/imports/{id}")).await.body, "To create"), 12_000);
    start_import(&app, &mut c, id, &[]).await.see_other();
    let done = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(stat(&done.body, "Created"), 12_000, "{}", done.body);
}
