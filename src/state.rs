//! What every handler can reach: the database, settings, schemas, files and catalog.
//! Built once by [`crate::startup::App::build`] and shared through `web::Data`.

use crate::config::Settings;
use crate::domain::entities::Schemas;
use crate::domain::marketplace::Catalog;
use crate::files::object::FileStore;
use crate::store::Db;

/// What every handler can reach.
pub struct AppState {
    pub db: Db,
    pub settings: Settings,
    pub schemas: Schemas,
    /// Signs download links (derived from the session key, so every instance agrees).
    pub link_key: [u8; 32],
    /// Where every file is kept: uploads, fetched files, exports.
    pub files: FileStore,
    /// The marketplace's content bundles.
    pub catalog: std::sync::Arc<Catalog>,
    /// Each API key's requests in the current minute.
    pub rate_limits: crate::web::api::RateLimits,
    /// The API's OpenAPI document, for the loaded resources.
    pub api_doc: serde_json::Value,
    /// Counts of entities with many records, remembered for a moment.
    pub record_counts: crate::store::records::CountMemo,
    /// The API keys requests presented lately (SQLite only).
    pub api_keys: crate::store::api_keys::KeyMemo,
}
