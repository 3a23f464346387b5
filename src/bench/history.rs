//! `stevedore bench history`: Import History's latency with many imports in the org, over
//! HTTP against the real app: the unfiltered list, each filter, and deep pages reached by
//! following Next, each requested many times by a signed-in client; prints p50/p99 per view.

use std::time::{Duration, Instant};

use super::client::{Browser, percentile};
use crate::domain::permissions::Role;
use crate::store::{self, Db};

const EMAIL: &str = "history-bench@bench.test";
const PASSWORD: &str = "correct horse battery staple";

/// The `Next` link of a page.
fn next_link(page: &str) -> Option<String> {
    let at = page.find("rel=\"next\"")?;
    let start = page[..at].rfind("href=\"")? + 6;
    Some(page[start..].split('"').next()?.replace("&amp;", "&").replace("&#38;", "&"))
}

/// Seeds `imports` imports into a new org of the app's database `db`, signs in to the app at
/// `base` and measures; prints a line per view and, last, one JSON object.
pub async fn run(db: &Db, base: &str, imports: i64, requests: usize) -> anyhow::Result<()> {
    let (org, _) = store::accounts::ensure_org(db, "history-bench", "History benchmark").await?;
    let hash = crate::auth::password::hash(PASSWORD.to_string()).await?;
    let user = store::accounts::create_user(db, EMAIL, "Bench", &hash, false).await?;
    store::accounts::upsert_membership(db, org, user, Role::Owner).await?;
    store::accounts::set_last_org(db, user, org).await?;
    let t = Instant::now();
    store::imports::insert_many_for_bench(db, org, user, imports, &["locations", "staff", "clients", "policies"])
        .await?;
    println!("stored {imports} imports in {:.2} s", t.elapsed().as_secs_f64());
    let mut b = Browser::signed_in(base, EMAIL, PASSWORD).await?;

    // a deep page: follow Next up to fifty times from the first page (page 51 of 4,000 at 100,000)
    let mut deep = "/settings/imports".to_string();
    for _ in 0..50 {
        let (_, page) = b.get(&deep).await?;
        match next_link(&page) {
            Some(n) => deep = n,
            None => break,
        }
    }
    let views = [
        ("unfiltered", "/settings/imports".to_string()),
        ("by status", "/settings/imports?stage=failed".to_string()),
        ("by entity type", "/settings/imports?entity=staff".to_string()),
        ("by both", "/settings/imports?stage=completed&entity=clients".to_string()),
        ("deep page", deep),
    ];
    let mut json = serde_json::json!({ "imports": imports, "requests_per_view": requests, "database": db.backend() });
    for (name, path) in views {
        let mut ms = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            let (status, _) = b.get(&path).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(status == 200, "{path} answered {status}");
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
        println!("{name:<15} p50 {p50:>6.1} ms  p99 {p99:>6.1} ms  ({path})");
        json[name.replace(' ', "_")] =
            serde_json::json!({ "p50_ms": (p50 * 10.0).round() / 10.0, "p99_ms": (p99 * 10.0).round() / 10.0 });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{json}");
    Ok(())
}
