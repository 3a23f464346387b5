//! Domain rules, free of I/O: what a permission is, which role grants it, what a valid
//! email or org slug is, when a sign-in is throttled. Handlers ask; this module decides.

pub mod account;
pub mod api_keys;
pub mod entities;
pub mod exports;
pub mod ids;
pub mod imports;
pub mod jobs;
pub mod marketplace;
pub mod onboarding;
pub mod permissions;
pub mod rate_limit;
pub mod redirects;
pub mod secret;
pub mod throttle;
pub mod words;
