//! What `/metrics` reports, in Prometheus' text format: this process's requests by route and
//! status with latency histograms, the rows its import jobs wrote and the bytes its export
//! jobs wrote (counters since it started), and the job queue by kind and state (read from
//! the database at each scrape, so every instance reports the whole queue).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

/// Latency buckets, in seconds.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
struct Route {
    by_status: BTreeMap<u16, u64>,
    /// Requests at or under each bucket's bound (cumulative when printed).
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Registry {
    /// By (method, route pattern).
    routes: Mutex<BTreeMap<(String, String), Route>>,
    import_rows: AtomicU64,
    export_bytes: AtomicU64,
}

static METRICS: LazyLock<Registry> = LazyLock::new(Registry::default);

/// One answered request: its method, the route it matched (its pattern, e.g.
/// `/settings/imports/{id}`; `unmatched` for none), status and seconds.
pub fn observe_request(method: &str, route: &str, status: u16, secs: f64) {
    let Ok(mut routes) = METRICS.routes.lock() else { return };
    let r = routes.entry((method.to_string(), route.to_string())).or_default();
    *r.by_status.entry(status).or_default() += 1;
    if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
        r.buckets[i] += 1;
    }
    r.sum += secs;
    r.count += 1;
}

/// Rows an import chunk wrote (created, updated, deleted or failed).
pub fn add_import_rows(n: u64) {
    METRICS.import_rows.fetch_add(n, Ordering::Relaxed);
}

/// Bytes of a finished export file.
pub fn add_export_bytes(n: u64) {
    METRICS.export_bytes.fetch_add(n, Ordering::Relaxed);
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The text format, with `jobs` as (kind, state, how many).
pub fn render(jobs: &[(String, String, i64)]) -> String {
    let mut out = String::new();
    let routes = METRICS.routes.lock().map(|r| {
        r.iter()
            .map(|((m, p), r)| ((m.clone(), p.clone()), r.by_status.clone(), r.buckets, r.sum, r.count))
            .collect::<Vec<_>>()
    });
    let routes = routes.unwrap_or_default();
    let _ = writeln!(out, "# HELP stevedore_http_requests_total Requests answered, by method, route and status.");
    let _ = writeln!(out, "# TYPE stevedore_http_requests_total counter");
    for ((method, route), by_status, ..) in &routes {
        for (status, n) in by_status {
            let _ = writeln!(
                out,
                "stevedore_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                label(method),
                label(route)
            );
        }
    }
    let _ = writeln!(out, "# HELP stevedore_http_request_duration_seconds Time to answer, by method and route.");
    let _ = writeln!(out, "# TYPE stevedore_http_request_duration_seconds histogram");
    for ((method, route), _, buckets, sum, count) in &routes {
        let labels = format!("method=\"{}\",route=\"{}\"", label(method), label(route));
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(buckets) {
            cumulative += n;
            let _ =
                writeln!(out, "stevedore_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "stevedore_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "stevedore_http_request_duration_seconds_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "stevedore_http_request_duration_seconds_count{{{labels}}} {count}");
    }
    let _ = writeln!(out, "# HELP stevedore_jobs Jobs in the queue by kind and state (queued, running, failed).");
    let _ = writeln!(out, "# TYPE stevedore_jobs gauge");
    for (kind, state, n) in jobs {
        let _ = writeln!(out, "stevedore_jobs{{kind=\"{}\",state=\"{}\"}} {n}", label(kind), label(state));
    }
    let _ = writeln!(out, "# HELP stevedore_import_rows_processed_total Rows this process's import jobs wrote.");
    let _ = writeln!(out, "# TYPE stevedore_import_rows_processed_total counter");
    let _ = writeln!(out, "stevedore_import_rows_processed_total {}", METRICS.import_rows.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP stevedore_export_bytes_written_total Bytes of the export files this process wrote.");
    let _ = writeln!(out, "# TYPE stevedore_export_bytes_written_total counter");
    let _ = writeln!(out, "stevedore_export_bytes_written_total {}", METRICS.export_bytes.load(Ordering::Relaxed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_status_and_timed_in_cumulative_buckets() {
        observe_request("GET", "/metrics-test/{id}", 200, 0.003);
        observe_request("GET", "/metrics-test/{id}", 200, 0.2);
        observe_request("GET", "/metrics-test/{id}", 404, 20.0);
        let text = render(&[("import.validate".into(), "queued".into(), 2)]);
        let line = |l: &str| text.lines().any(|x| x == l);
        assert!(
            line("stevedore_http_requests_total{method=\"GET\",route=\"/metrics-test/{id}\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(line("stevedore_http_requests_total{method=\"GET\",route=\"/metrics-test/{id}\",status=\"404\"} 1"));
        let b = |le: &str, n: u64| {
            format!(
                "stevedore_http_request_duration_seconds_bucket{{method=\"GET\",route=\"/metrics-test/{{id}}\",le=\"{le}\"}} {n}"
            )
        };
        assert!(line(&b("0.005", 1)) && line(&b("0.25", 2)) && line(&b("10", 2)) && line(&b("+Inf", 3)), "{text}");
        assert!(line("stevedore_jobs{kind=\"import.validate\",state=\"queued\"} 2"));
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
