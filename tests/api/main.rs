//! Black-box tests: the real app over HTTP on a random port, a fresh database each.
//! SQLite by default; PostgreSQL when `TEST_DATABASE_URL=postgres://…` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod actions;
mod api_v1;
mod auth;
mod cli;
mod cluster;
mod contention;
mod crash;
mod detail_sheet;
mod entities;
mod exports;
mod fetch;
mod files;
mod formats;
mod grid;
mod imports;
mod jobs;
mod marketplace;
mod members;
mod onboarding;
mod ops;
mod repeats;
mod retry;
mod s3;
