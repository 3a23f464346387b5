//! `stevedore bench grid --rows N`: the grid of rows left out with N of them, over HTTP
//! against the real app. A generated file whose every row has a bad country is validated
//! (the jobs called directly); then a signed-in client reads the grid's first page, a deep
//! page and a filtered page, saves rows (each checked again at once), and replaces the bad
//! value in every row in one go. Prints p50/p99 per request and the replace's seconds.

use std::time::Instant;

use super::client::{Browser, percentile};
use super::data::generate;
use super::{Input, LoadSettings, in_temp_dir, serve_with_load, setup};
use crate::domain::imports::Action;
use crate::domain::permissions::Role;
use crate::store;

const EMAIL: &str = "grid-bench@bench.test";
const PASSWORD: &str = "correct horse battery staple";

/// p50 and p99 of `ms`, printed as `name` and kept in `json`.
fn report(json: &mut serde_json::Value, name: &str, mut ms: Vec<f64>, path: &str) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
    println!("{name:<22} p50 {p50:>6.1} ms  p99 {p99:>6.1} ms  ({path})");
    json[name.replace(' ', "_")] =
        serde_json::json!({ "p50_ms": (p50 * 10.0).round() / 10.0, "p99_ms": (p99 * 10.0).round() / 10.0 });
}

pub async fn run(rows: usize, requests: usize, app: crate::config::Settings) -> anyhow::Result<()> {
    in_temp_dir(|dir| async move {
        let file = dir.join("contacts.csv");
        generate(&file, rows, 0, 4)?;
        let input = Input::default();
        let b = setup(&dir, 500, None, &input).await?;
        let (imp, _) = b.validate(&file, Action::Merge).await?;
        anyhow::ensure!(imp.validated.invalid_rows == rows as i64, "every row is left out");
        let hash = crate::auth::password::hash(PASSWORD.to_string()).await?;
        let user = store::accounts::create_user(&b.db, EMAIL, "Bench", &hash, false).await?;
        store::accounts::upsert_membership(&b.db, b.org, user, Role::Owner).await?;
        store::accounts::set_last_org(&b.db, user, b.org).await?;
        let serving = serve_with_load(&dir, None, &input, &b, LoadSettings { clients: 0, app }).await?;
        let result = measure(&serving.base, imp.id, rows, requests).await;
        let _ = serving.load.finish().await;
        serving.server.abort();
        result
    })
    .await
}

async fn measure(base: &str, id: i64, rows: usize, requests: usize) -> anyhow::Result<()> {
    let mut c = Browser::signed_in(base, EMAIL, PASSWORD).await?;
    let grid = format!("/settings/imports/{id}/rows");
    let last = rows.div_ceil(50);
    let views = [
        ("first page", grid.clone()),
        ("last page", format!("{grid}?page={last}")),
        ("filtered, middle page", format!("{grid}?field=country&page={}", last / 2 + 1)),
    ];
    let mut json = serde_json::json!({ "rows_left_out": rows, "requests_per_view": requests });
    for (name, path) in views {
        let mut ms = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            let (status, _) = c.get(&path).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(status == 200, "{path} answered {status}");
        }
        report(&mut json, name, ms, &path);
    }
    // a row saved and checked again, as the grid's script does it (country is column 7)
    c.get(&grid).await?;
    let mut ms = Vec::with_capacity(requests);
    for i in 0..requests {
        let row = 2 + (i * 7919) % rows;
        let value = if i % 2 == 0 { "US" } else { "DE" };
        let t = Instant::now();
        let status = c.post_htmx(&format!("{grid}/{row}"), &[("cell.7", value)]).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status == 200, "saving row {row} answered {status}");
    }
    report(&mut json, "save and check a row", ms, &format!("{grid}/{{row}}"));
    let t = Instant::now();
    let status = c.post_form(&format!("{grid}/replace"), &[("column", "7"), ("from", "XX"), ("to", "GB")]).await?;
    anyhow::ensure!(status == 303, "the replace answered {status}");
    let replace_s = t.elapsed().as_secs_f64();
    println!("replace in every row   {replace_s:.2} s ({:.0} rows/s)", rows as f64 / replace_s);
    json["replace_s"] = serde_json::json!((replace_s * 100.0).round() / 100.0);
    println!("{json}");
    Ok(())
}
