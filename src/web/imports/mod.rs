//! Imports, one file a page or concern: [`history`] (`/settings/imports`, Import History),
//! [`upload`] (`/settings/imports/upload` and `/{entity}/importer`), [`detail`]
//! (`/settings/imports/{id}`: mapping, validation preview, progress, phases, rows left out,
//! rollback), [`actions`] (the POSTs: mapping, start, pause, resume, roll back),
//! [`grid`] (`/settings/imports/{id}/rows`: fixing the rows left out) and [`downloads`]
//! (the original file and the rows left out).

pub mod actions;
pub mod detail;
pub mod downloads;
pub mod grid;
pub mod history;
pub mod mapping_view;
pub mod upload;

use std::sync::Arc;

use crate::auth::Identity;
use crate::domain::entities::EntitySchema;
use crate::domain::imports::Import;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::imports as store;

/// Rows per page of Import History and of the rows left out.
const PER_PAGE: i64 = 25;

fn schema_of(state: &AppState, name: &str) -> Result<Arc<EntitySchema>, AppError> {
    state.schemas.get(name).cloned().ok_or(AppError::NotFound)
}

/// The entity type's label (its name when the schema is gone).
fn label_of(state: &AppState, entity: &str) -> String {
    state.schemas.get(entity).map(|s| s.label.clone()).unwrap_or_else(|| entity.to_string())
}

/// The import, if it is the signed-in org's; 404 otherwise (another org's looks missing).
async fn load(state: &AppState, id: &Identity, import_id: i64) -> Result<Import, AppError> {
    store::get(&state.db, id.org_id, import_id).await?.ok_or(AppError::NotFound)
}

/// The import's page.
fn page_of(imp: &Import) -> String {
    format!("/settings/imports/{}", imp.id)
}

/// The audit target naming an import.
fn target_of(imp: &Import) -> String {
    format!("import {}", imp.id)
}
