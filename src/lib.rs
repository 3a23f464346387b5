//! Stevedore: the import and export console of a multi-tenant platform.
//!
//! A code tour, outside in:
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Authentication and authorization: passwords, sessions, CSRF, the signed-in identity.
pub mod auth;
/// `stevedore bench import`: the import pipeline timed on generated data.
pub mod bench;
/// Command line: `serve` (default), `migrate`, `user`, `worker`, `bench`.
pub mod cli;
/// Settings from flags and environment, validated at start-up.
pub mod config;
/// The entity schemas and marketplace bundles: compiled in, plus operators' folders.
pub mod content;
/// Rules with no I/O: permissions, roles, emails, slugs, throttling.
pub mod domain;
/// The one error type every handler returns, and how it is shown.
pub mod error;
/// Uploaded files: CSV and XLSX recognized and read row by row.
pub mod files;
/// Background jobs: the worker, the queue, one module per job kind.
pub mod jobs;
/// What `/metrics` reports: request, job, import and export figures.
pub mod metrics;
/// Building and running the HTTP server.
pub mod startup;
/// `AppState`: what every handler can reach.
pub mod state;
/// Every SQL statement, over SQLite or PostgreSQL.
pub mod store;
/// Logging: subscriber set-up and the per-request span.
pub mod telemetry;
/// One module per page, plus static files and the health check.
pub mod web;

/// Seconds since the Unix epoch, the one clock the app stores.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A fresh random token of `bytes` random bytes from the operating system, hex encoded.
pub fn random_token(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("operating system random source: {e}"))?;
    Ok(hex::encode(buf))
}
