//! `bench import --load N`: N people using the app over HTTP while the import runs, each
//! signed in as their own user: the sign-in page and form, then a few pages (Import
//! History, the running import's own page, the entity's record list, Data Exports) with a
//! short pause between them, then sign-out, over and over until the import is done. Every
//! request's latency and status is kept; the report gives p50/p99/max and the answers that
//! were not 2xx/3xx (which should be none).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use super::client::{Browser, percentile};
use crate::domain::ids::OrgId;
use crate::domain::permissions::Role;
use crate::store::{self, Db};

const PASSWORD: &str = "correct horse battery staple";
/// Pages a person reads between signing in and signing out.
const PAGES_PER_SESSION: usize = 8;
/// The pause between one answer and the next request.
const THINK: Duration = Duration::from_millis(100);

/// One request: what it was, how long it took, its status (0: no answer at all).
struct Sample {
    what: &'static str,
    ms: f64,
    status: u16,
}

/// The people at work, on a thread of their own (so a busy benchmark task does not delay
/// their clocks).
pub(super) struct Load {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Sample>>,
    clients: usize,
    started: Instant,
}

/// What the people saw.
pub(super) struct Report {
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers that were not 2xx/3xx, and requests with no answer.
    pub failures: usize,
}

/// Creates `clients` users (owners of `org`) and starts them on the app at `base`;
/// `import` holds the id of the import whose page they read (0 while there is none).
pub(super) async fn start(
    db: &Db,
    org: OrgId,
    base: &str,
    entity: &str,
    clients: usize,
    import: Arc<AtomicI64>,
) -> anyhow::Result<Load> {
    let hash = crate::auth::password::hash(PASSWORD.to_string()).await?;
    let mut emails = vec![];
    for i in 0..clients {
        let email = format!("load-{i}@bench.test");
        let user = store::accounts::create_user(db, &email, &format!("Load {i}"), &hash, false).await?;
        store::accounts::upsert_membership(db, org, user, Role::Owner).await?;
        store::accounts::set_last_org(db, user, org).await?;
        emails.push(email);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (base, entity, flag) = (base.to_string(), entity.to_string(), stop.clone());
    let thread = std::thread::Builder::new().name("bench-load".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "the load clients could not start");
                return vec![];
            }
        };
        rt.block_on(async move {
            let people = emails.into_iter().enumerate().map(|(i, email)| {
                let (base, entity, import, stop) = (base.clone(), entity.clone(), import.clone(), flag.clone());
                tokio::spawn(async move { person((i, clients), &base, &email, &entity, &import, &stop).await })
            });
            let mut all = vec![];
            for p in futures_util::future::join_all(people).await {
                all.extend(p.unwrap_or_default());
            }
            all
        })
    })?;
    Ok(Load { stop, thread, clients, started: Instant::now() })
}

impl Load {
    /// Stops the people and reports what they saw (also printed). Their last requests are
    /// awaited without blocking this thread: its runtime may drive the sockets of the
    /// app's database connections those requests wait on.
    pub(super) async fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64();
        let thread = self.thread;
        let samples = tokio::task::spawn_blocking(move || thread.join().unwrap_or_default()).await.unwrap_or_default();
        let failed: Vec<&Sample> = samples.iter().filter(|s| !(200..400).contains(&s.status)).collect();
        let mut ms: Vec<f64> = samples.iter().map(|s| s.ms).collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let r = Report {
            requests: samples.len(),
            p50_ms: percentile(&ms, 0.5),
            p99_ms: percentile(&ms, 0.99),
            max_ms: ms.last().copied().unwrap_or(0.0),
            failures: failed.len(),
        };
        println!(
            "load: {} people, {} requests in {seconds:.1} s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} not 2xx/3xx",
            self.clients, r.requests, r.p50_ms, r.p99_ms, r.max_ms, r.failures
        );
        for what in ["sign-in page", "sign in", "Import History", "import page", "records", "Data Exports", "sign out"]
        {
            let mut of: Vec<f64> = samples.iter().filter(|s| s.what == what).map(|s| s.ms).collect();
            if of.is_empty() {
                continue;
            }
            of.sort_by(|a, b| a.total_cmp(b));
            println!(
                "  {what:<15} {:>6} requests  p50 {:>7.1} ms  p99 {:>7.1} ms",
                of.len(),
                percentile(&of, 0.5),
                percentile(&of, 0.99)
            );
        }
        for s in failed.iter().take(10) {
            println!("  failed: {} answered {} after {:.0} ms", s.what, s.status, s.ms);
        }
        r
    }
}

/// One person: sign in, read pages, sign out, until `stop`.
async fn person(
    (i, of): (usize, usize),
    base: &str,
    email: &str,
    entity: &str,
    import: &AtomicI64,
    stop: &AtomicBool,
) -> Vec<Sample> {
    let mut out = vec![];
    let Ok(mut b) = Browser::new(base) else { return out };
    // people do not all start at the same instant: their first sign-ins are spread over about
    // one round of sign-in, pages and sign-out (twenty people signing in within the same
    // tenth of a second measured the hashing queue, not the app under an import)
    let spread = THINK * (PAGES_PER_SESSION as u32 + 4);
    tokio::time::sleep(spread.mul_f64(i as f64 / of.max(1) as f64)).await;
    let mut n = i;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let page = b.get("/login").await.map(|(s, _)| s).unwrap_or(0);
        out.push(Sample { what: "sign-in page", ms: ms(t), status: page });
        let t = Instant::now();
        let sent = b.post_form("/login", &[("email", email), ("password", PASSWORD)]).await.unwrap_or(0);
        out.push(Sample { what: "sign in", ms: ms(t), status: sent });
        if sent != 303 {
            tokio::time::sleep(THINK * 5).await;
            continue;
        }
        for page in 0..PAGES_PER_SESSION {
            // at least one page per session: signing out needs the signed-in page's token
            if page > 0 && stop.load(Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(THINK).await;
            n += 1;
            let id = import.load(Ordering::Relaxed);
            let (what, path) = match n % 4 {
                0 => ("Import History", "/settings/imports".to_string()),
                1 if id > 0 => ("import page", format!("/settings/imports/{id}")),
                1 | 2 => ("records", format!("/{entity}")),
                _ => ("Data Exports", "/settings/exports".to_string()),
            };
            let t = Instant::now();
            let status = b.get(&path).await.map(|(s, _)| s).unwrap_or(0);
            out.push(Sample { what, ms: ms(t), status });
        }
        tokio::time::sleep(THINK).await;
        let t = Instant::now();
        let status = b.post_form("/logout", &[]).await.unwrap_or(0);
        out.push(Sample { what: "sign out", ms: ms(t), status });
    }
    out
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
