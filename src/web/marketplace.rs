//! The marketplace: `/cl/marketplace` (the catalog of content bundles, any member),
//! a bundle's page with Import (`cl.marketplace.import`), and `/cl/marketplace/imports`
//! (seed 001: the org's bundle imports, Roll back behind a confirmation dialog).

use std::collections::HashMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::layout::{Layout, render};
use super::{Pagination, format_time, is_htmx, see_other};
use crate::auth::Identity;
use crate::auth::session::{AppSession, Flash};
use crate::domain::imports::Stage;
use crate::domain::marketplace::Bundle;
use crate::domain::permissions::Permission;
use crate::domain::words::Grouped;
use crate::error::AppError;
use crate::jobs::marketplace as jobs;
use crate::state::AppState;
use crate::store::marketplace::{self as store, Begin, MarketplaceImport, Rollback, Since};

const PER_PAGE: i64 = 20;

/// A bundle card of the catalog.
pub struct Card {
    pub key: String,
    pub version: String,
    pub title: String,
    pub publisher: String,
    pub tags: Vec<String>,
    pub description: String,
    pub items: usize,
    /// Item counts per entity type label, e.g. "14 Policies · 10 Forms".
    pub makeup: String,
    pub versions: usize,
    /// The version of it this org holds (imported or being imported), if any.
    pub held: Option<String>,
}

impl Card {
    /// `held`: the org's (bundle key, version, status, imported at), newest first.
    fn new(state: &AppState, b: &Bundle, held: &[(String, String, String, i64)]) -> Card {
        Card {
            key: b.key.clone(),
            version: b.version.clone(),
            title: b.title.clone(),
            publisher: b.publisher.clone(),
            tags: b.tags.clone(),
            description: b.description.clone(),
            items: b.items.len(),
            makeup: makeup(state, b),
            versions: state.catalog.versions(&b.key).len(),
            held: held.iter().find(|h| h.0 == b.key).map(|h| h.1.clone()),
        }
    }
}

fn makeup(state: &AppState, b: &Bundle) -> String {
    // (plural label, singular label, count), in the bundle's order
    let mut counts: Vec<(String, String, usize)> = vec![];
    for i in &b.items {
        let (label, singular) = match state.schemas.get(&i.entity) {
            Some(s) => (s.label.clone(), s.singular.clone()),
            None => (i.entity.clone(), i.entity.clone()),
        };
        match counts.iter_mut().find(|(l, _, _)| *l == label) {
            Some((_, _, n)) => *n += 1,
            None => counts.push((label, singular, 1)),
        }
    }
    counts.iter().map(|(l, one, n)| n.count(one, l)).collect::<Vec<_>>().join(" · ")
}

#[derive(Template)]
#[template(path = "marketplace/catalog.html")]
pub struct CatalogPage {
    pub l: Layout,
    pub cards: Vec<Card>,
    pub tags: Vec<String>,
    pub q: String,
    pub tag: String,
    pub total: usize,
    pub can_import: bool,
}

#[derive(Deserialize)]
pub struct CatalogQuery {
    q: Option<String>,
    tag: Option<String>,
}

/// `/cl/marketplace`: the newest version of every bundle, searchable by text and tag.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn catalog(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    query: web::Query<CatalogQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.q.clone().unwrap_or_default().trim().to_string();
    let tag = query.tag.clone().unwrap_or_default().trim().to_string();
    let held = store::held(&state.db, id.org_id).await?;
    let cards = state.catalog.search(&q, &tag).into_iter().map(|b| Card::new(&state, b, &held)).collect();
    let page = CatalogPage {
        l: Layout::for_user(&req, &id, "Marketplace", "marketplace").await?,
        cards,
        tags: state.catalog.tags(),
        total: state.catalog.latest().len(),
        q,
        tag,
        can_import: id.can(Permission::MarketplaceImport),
    };
    Ok(render(StatusCode::OK, &page))
}

pub struct ItemView {
    pub entity: String,
    pub key: String,
    pub title: String,
    pub category: String,
    /// The org already has a record with this key (an import skips it).
    pub present: bool,
}

#[derive(Template)]
#[template(path = "marketplace/bundle.html")]
pub struct BundlePage {
    pub l: Layout,
    pub b: Card,
    pub released_on: String,
    /// `(version, released on, is this one)`, newest first.
    pub versions: Vec<(String, String, bool)>,
    pub items: Vec<ItemView>,
    pub present: usize,
    pub can_import: bool,
    /// When the org already imported this version: when, for the confirmation.
    pub imported_at: Option<String>,
    /// An import of this version is running.
    pub running: bool,
    pub confirm_open: bool,
}

#[derive(Deserialize)]
pub struct BundleQuery {
    version: Option<String>,
    confirm: Option<String>,
}

/// For each item of the bundle: whether the org already has it.
async fn present_keys(state: &AppState, id: &Identity, b: &Bundle) -> Result<Vec<bool>, AppError> {
    let pairs: Vec<(&str, &str)> = b.items.iter().map(|i| (i.entity.as_str(), i.key.as_str())).collect();
    let found = crate::store::records::existing_keys(&state.db, id.org_id, &pairs).await?;
    Ok(b.items.iter().map(|i| found.contains(&(i.entity.clone(), i.key.clone()))).collect())
}

/// A bundle version's page: its items, the versions, Import.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn bundle(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<BundleQuery>,
) -> Result<HttpResponse, AppError> {
    let key = path.into_inner();
    let versions = state.catalog.versions(&key);
    let b = match query.version.as_deref() {
        Some(v) => state.catalog.get(&key, v),
        None => versions.first().copied(),
    }
    .ok_or(AppError::NotFound)?;
    let held = store::held(&state.db, id.org_id).await?;
    let this = held.iter().find(|h| h.0 == b.key && h.1 == b.version);
    let present = present_keys(&state, &id, b).await?;
    let items: Vec<ItemView> = b
        .items
        .iter()
        .zip(&present)
        .map(|(i, p)| {
            let data: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&i.record.data).unwrap_or_default();
            ItemView {
                entity: state.schemas.get(&i.entity).map(|s| s.singular.clone()).unwrap_or_else(|| i.entity.clone()),
                key: i.key.clone(),
                title: i.title.clone(),
                category: data.get("category").and_then(|c| c.as_str()).unwrap_or_default().to_string(),
                present: *p,
            }
        })
        .collect();
    let page = BundlePage {
        l: Layout::for_user(&req, &id, b.title.clone(), "marketplace").await?,
        released_on: b.released_on.clone(),
        versions: versions.iter().map(|v| (v.version.clone(), v.released_on.clone(), v.version == b.version)).collect(),
        present: items.iter().filter(|i| i.present).count(),
        items,
        can_import: id.can(Permission::MarketplaceImport),
        imported_at: this.filter(|h| h.2 == "completed").map(|h| format_time(h.3)),
        running: this.is_some_and(|h| h.2 == "in_progress"),
        confirm_open: query.confirm.is_some(),
        b: Card::new(&state, b, &held),
    };
    Ok(render(StatusCode::OK, &page))
}

/// Import: starts the background import of a bundle version. A version the org already
/// holds needs `confirm=1` (the dialog says items already present are skipped).
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn import(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::MarketplaceImport)?;
    let (key, version) = path.into_inner();
    let b = state.catalog.get(&key, &version).ok_or(AppError::NotFound)?;
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let confirmed = form.get("confirm").is_some_and(|v| v == "1");
    let back = format!("/cl/marketplace/{}?version={}", b.key, b.version);
    let held = store::held(&state.db, id.org_id).await?;
    if !confirmed && held.iter().any(|h| h.0 == b.key && h.1 == b.version && h.2 == "completed") {
        return Ok(see_other(format!("{back}&confirm=1")));
    }
    match store::begin(&state.db, id.org_id, &b.key, &b.version, &b.title, id.user_id, &id.email).await? {
        Begin::Started(import_id) => {
            jobs::enqueue(&state.db, id.org_id, import_id).await?;
            let target = format!("marketplace import {import_id}");
            let detail = format!("{} {} ({})", b.key, b.version, b.items.len().count("item", "items"));
            super::audit(&state, &req, &id, "marketplace_import_requested", &target, &detail).await?;
            let text = format!("Importing {} {}: its items appear in Import History when done.", b.title, b.version);
            session.set_flash(&Flash { kind: "success".into(), text, secret: None })?;
        }
        Begin::AlreadyRunning(_) => {
            let text = format!("{} {} is already being imported.", b.title, b.version);
            session.set_flash(&Flash { kind: "info".into(), text, secret: None })?;
        }
    }
    Ok(see_other("/cl/marketplace/imports"))
}

pub struct ImportView {
    pub id: i64,
    pub bundle_key: String,
    pub version: String,
    pub title: String,
    pub items: i64,
    pub skipped: i64,
    pub at: String,
    pub by: String,
    pub status: String,
    pub label: &'static str,
    pub badge: &'static str,
    pub reason: String,
    pub rolled_back: String,
    /// `(item, what happened)` of records the org changed since the import.
    pub changed: Vec<(String, &'static str)>,
}

/// A bundle import's status and its badge: the same variants as an import's (docs/ui.md).
fn badge(status: &str) -> (&'static str, &'static str) {
    match status {
        "completed" => ("Completed", Stage::Completed.badge()),
        "in_progress" => ("In Progress", "secondary"),
        "rolled_back" => ("Rolled Back", Stage::RolledBack.badge()),
        _ => ("Failed", Stage::Failed.badge()),
    }
}

/// The org's bundle imports, as the page and its refresh (htmx) show them.
pub struct ImportsView {
    pub rows: Vec<ImportView>,
    pub pagination: Pagination,
    pub can_roll_back: bool,
    /// Some import is in progress: the list refreshes itself.
    pub any_running: bool,
    /// This page of the history, where it refreshes from.
    pub url: String,
    /// For the Roll back dialogs' forms.
    pub csrf: String,
}

/// `/cl/marketplace/imports`: the frame and the history, or the error state.
#[derive(Template)]
#[template(path = "marketplace/imports.html")]
pub struct ImportsPage {
    pub l: Layout,
    pub v: ImportsView,
    /// "Error Loading Import History": the sanitized message.
    pub load_error: Option<String>,
}

/// The history alone, for htmx's refresh (and the Refresh button's state beside it).
#[derive(Template)]
#[template(path = "marketplace/imports_rows_partial.html")]
pub struct ImportsRows {
    pub v: ImportsView,
}

#[derive(Deserialize)]
pub struct ImportsQuery {
    page: Option<i64>,
}

async fn load_imports(
    state: &AppState,
    id: &Identity,
    page: Option<i64>,
) -> anyhow::Result<(Vec<MarketplaceImport>, Pagination, Vec<Vec<(String, &'static str)>>)> {
    let total = store::count(&state.db, id.org_id).await?;
    let pagination = Pagination::new(page, PER_PAGE, total, "/cl/marketplace/imports");
    let rows = store::list(&state.db, id.org_id, PER_PAGE, pagination.offset()).await?;
    let mut changed = Vec::with_capacity(rows.len());
    for r in &rows {
        let list = if r.status == "completed" {
            store::changed_since(&state.db, id.org_id, &r.snapshot())
                .await?
                .into_iter()
                .map(|(row, since)| {
                    let what = match since {
                        Since::Edited => "edited since the import",
                        Since::Gone => "already deleted",
                    };
                    (row.key, what)
                })
                .collect()
        } else {
            vec![]
        };
        changed.push(list);
    }
    Ok((rows, pagination, changed))
}

fn import_view(r: MarketplaceImport, changed: Vec<(String, &'static str)>) -> ImportView {
    let (label, badge) = badge(&r.status);
    ImportView {
        id: r.id,
        bundle_key: r.bundle_key,
        version: r.bundle_version,
        title: r.bundle_title,
        items: r.item_count,
        skipped: r.skipped_count,
        at: format_time(r.imported_at),
        by: r.imported_by_label,
        label,
        badge,
        reason: r.reason,
        rolled_back: match (r.rolled_back_at, r.rolled_back_by_label) {
            (Some(at), Some(by)) => format!("Rolled back {} by {by}", format_time(at)),
            (Some(at), None) => format!("Rolled back {}", format_time(at)),
            _ => String::new(),
        },
        status: r.status,
        changed,
    }
}

/// `/cl/marketplace/imports`: the org's bundle imports, most recent first; to htmx, the
/// list alone.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get()))]
pub async fn imports(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    query: web::Query<ImportsQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::MarketplaceImport)?;
    let loaded = load_imports(&state, &id, query.page).await;
    if let Err(e) = &loaded {
        // the details go to the log; the page says what happened and what to do
        tracing::error!(error = format!("{e:#}"), "loading the marketplace import history failed");
    }
    let (rows, pagination, load_error) = match loaded {
        Ok((rows, pagination, changed)) => {
            (rows.into_iter().zip(changed).map(|(r, c)| import_view(r, c)).collect(), pagination, None)
        }
        Err(_) => {
            let message = "The import history could not be loaded. Try again in a moment; if it keeps happening, \
                           tell your administrator."
                .to_string();
            (vec![], Pagination::new(None, PER_PAGE, 0, "/cl/marketplace/imports"), Some(message))
        }
    };
    let status = if load_error.is_some() { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    let v = ImportsView {
        any_running: rows.iter().any(|r| r.status == "in_progress"),
        rows,
        url: if pagination.page > 1 { pagination.href(pagination.page) } else { pagination.base.clone() },
        pagination,
        can_roll_back: id.can(Permission::MarketplaceImport),
        csrf: AppSession::from_request_ref(&req).csrf_token()?,
    };
    let mut res = if is_htmx(&req) {
        // htmx leaves the list as it is on an error status and asks again on its next turn
        if load_error.is_some() {
            HttpResponse::InternalServerError().finish()
        } else {
            render(status, &ImportsRows { v })
        }
    } else {
        let l = Layout::for_user(&req, &id, "Import History", "marketplace-imports").await?;
        render(status, &ImportsPage { l, v, load_error })
    };
    res.headers_mut().insert(header::VARY, header::HeaderValue::from_static("HX-Request"));
    Ok(res)
}

/// Roll back: deletes exactly the records the import created, once.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), import_id = *path))]
pub async fn rollback(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::MarketplaceImport)?;
    let import_id = path.into_inner();
    let imp = store::get(&state.db, id.org_id, import_id).await?.ok_or(AppError::NotFound)?;
    let (kind, text) = match store::rollback(&state.db, id.org_id, imp.id, &id.email).await? {
        Some(Rollback::Done(deleted)) => {
            let detail =
                format!("{} {}: {} deleted", imp.bundle_key, imp.bundle_version, deleted.count("item", "items"));
            super::audit(
                &state,
                &req,
                &id,
                "marketplace_rolled_back",
                &format!("marketplace import {}", imp.id),
                &detail,
            )
            .await?;
            let items = deleted.count("item", "items");
            ("success", format!("Rolled back {} {}: {items} deleted.", imp.bundle_title, imp.bundle_version))
        }
        Some(Rollback::AlreadyRolledBack) => (
            "info",
            format!("{} {} was already rolled back; nothing was changed.", imp.bundle_title, imp.bundle_version),
        ),
        Some(Rollback::NotCompleted(status)) => (
            "info",
            format!(
                "{} {} is {}; only a completed import can be rolled back.",
                imp.bundle_title,
                imp.bundle_version,
                badge(&status).0.to_lowercase()
            ),
        ),
        None => return Err(AppError::NotFound),
    };
    session.set_flash(&Flash { kind: kind.into(), text, secret: None })?;
    Ok(see_other("/cl/marketplace/imports"))
}

#[cfg(test)]
mod tests {
    use super::badge;
    use crate::domain::exports::Status as Export;
    use crate::domain::imports::Stage;

    #[test]
    fn a_status_has_one_badge_on_every_page() {
        for (status, stage, export) in [
            ("completed", Stage::Completed, Some(Export::Completed)),
            ("failed", Stage::Failed, Some(Export::Failed)),
            ("rolled_back", Stage::RolledBack, None),
        ] {
            let (label, variant) = badge(status);
            assert_eq!((label, variant), (stage.label(), stage.badge()), "{status}");
            if let Some(e) = export {
                assert_eq!((e.label(), e.badge()), (label, variant), "{status}");
            }
        }
        assert_eq!(Stage::Expired.badge(), Export::Expired.badge());
    }
}
