//! HTTP routes. Handlers parse the request, call the store or the domain, and render a
//! template; they hold no SQL and no business rules.

use actix_web::{HttpRequest, HttpResponse, web};

pub mod account;
pub mod api;
pub mod api_keys;
pub mod assets;
pub mod audit;
pub mod entities;
pub mod exports;
pub mod health;
pub mod home;
pub mod imports;
pub mod layout;
pub mod login;
pub mod marketplace;
pub mod members;
pub mod onboarding;
pub mod onboarding_workbook;

/// A redirect after a POST (or to another page): 303 See Other.
pub fn see_other(to: impl Into<String>) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((actix_web::http::header::LOCATION, to.into())).finish()
}

/// Whether htmx sent the request (it wants a partial, not the whole page).
pub fn is_htmx(req: &HttpRequest) -> bool {
    req.headers().contains_key("hx-request")
}

/// Every route of the app.
pub fn routes(cfg: &mut web::ServiceConfig) {
    api::routes(cfg);
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .route("/static/{file}", web::get().to(assets::serve))
        .route("/login", web::get().to(login::form))
        .route("/login", web::post().to(login::submit))
        .route("/logout", web::get().to(login::logout_page))
        .route("/logout", web::post().to(login::logout))
        .route("/", web::get().to(home::overview))
        .route("/switch-org", web::post().to(home::switch_org))
        .route("/account/password", web::get().to(account::form))
        .route("/account/password", web::post().to(account::submit))
        .route("/settings/imports", web::get().to(imports::history::history))
        .route("/settings/imports/upload", web::get().to(imports::upload::upload_form))
        .route("/settings/imports/upload", web::post().to(imports::upload::upload))
        .route("/settings/imports/onboarding", web::get().to(onboarding::page))
        .route("/settings/imports/onboarding/finish", web::post().to(onboarding::finish))
        .route("/settings/imports/onboarding/rollback", web::post().to(onboarding::rollback))
        .route("/settings/imports/onboarding/workbook", web::post().to(onboarding_workbook::upload))
        .route("/settings/imports/onboarding/validate", web::post().to(onboarding_workbook::validate_all))
        .route("/settings/imports/onboarding/import", web::post().to(onboarding_workbook::import_all))
        .route("/settings/imports/onboarding/{entity}/{what}", web::post().to(onboarding::skip))
        .route("/settings/imports/{id}", web::get().to(imports::detail::detail))
        .route("/settings/imports/{id}/mapping", web::post().to(imports::actions::save_mapping))
        .route("/settings/imports/{id}/rows", web::get().to(imports::grid::grid))
        .route("/settings/imports/{id}/rows/replace", web::post().to(imports::grid::replace))
        .route("/settings/imports/{id}/rows/skip", web::post().to(imports::grid::skip))
        .route("/settings/imports/{id}/rows/unskip", web::post().to(imports::grid::unskip))
        .route("/settings/imports/{id}/rows/{row}", web::post().to(imports::grid::save_row))
        .route("/settings/imports/{id}/revalidate", web::post().to(imports::grid::revalidate))
        .route("/settings/imports/{id}/start", web::post().to(imports::actions::start))
        .route("/settings/imports/{id}/pause", web::post().to(imports::actions::pause))
        .route("/settings/imports/{id}/discard", web::post().to(imports::actions::discard))
        .route("/settings/imports/{id}/resume", web::post().to(imports::actions::resume))
        .route("/settings/imports/{id}/rollback", web::post().to(imports::actions::rollback))
        .route("/settings/imports/{id}/original", web::get().to(imports::downloads::original))
        .route("/settings/imports/{id}/errors.csv", web::get().to(imports::downloads::errors_csv))
        .route("/settings/imports/{id}/errors.json", web::get().to(imports::downloads::errors_json))
        .route("/settings/audit", web::get().to(audit::list))
        .route("/settings/exports", web::get().to(exports::list))
        .route("/settings/exports", web::post().to(exports::create))
        .route("/settings/exports/{id}/download", web::get().to(exports::download))
        .route("/settings/exports/{id}/delete", web::post().to(exports::delete))
        .route("/exports/{id}/file", web::get().to(exports::file))
        .route("/cl/marketplace", web::get().to(marketplace::catalog))
        .route("/cl/marketplace/imports", web::get().to(marketplace::imports))
        .route("/cl/marketplace/imports/{id}/rollback", web::post().to(marketplace::rollback))
        .route("/cl/marketplace/{key}", web::get().to(marketplace::bundle))
        .route("/cl/marketplace/{key}/{version}/import", web::post().to(marketplace::import))
        .route("/settings/api-keys", web::get().to(api_keys::list))
        .route("/settings/api-keys", web::post().to(api_keys::create))
        .route("/settings/api-keys/{id}/revoke", web::post().to(api_keys::revoke))
        .route("/settings/members", web::get().to(members::list))
        .route("/settings/members", web::post().to(members::add))
        .route("/settings/members/{user_id}/role", web::post().to(members::change_role))
        .route("/settings/members/{user_id}/remove", web::post().to(members::remove))
        // Entity pages come last: their names are checked against the routes above.
        .route("/{entity}", web::get().to(entities::list))
        .route("/{entity}/template.csv", web::get().to(entities::template))
        .route("/{entity}/importer", web::get().to(imports::upload::entity_importer));
}

/// The client's address: the peer, or, behind a trusted proxy, the right-most
/// `X-Forwarded-For` entry (the one that proxy appended; entries to its left are whatever
/// the client sent and cannot be trusted).
pub fn client_address(req: &HttpRequest, trust_proxy: bool) -> String {
    if trust_proxy
        && let Some(hop) = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|h| !h.is_empty())
    {
        return hop.to_string();
    }
    req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

/// Records in the org's audit log that the signed-in user did `action` to `target`, from
/// the request's client address.
/// A file's bytes as a response body, 64 KiB at a time (never the whole file in memory).
pub fn file_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<actix_web::web::Bytes, std::io::Error>> {
    futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(actix_web::web::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
}

pub async fn audit(
    state: &crate::state::AppState,
    req: &HttpRequest,
    id: &crate::auth::Identity,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), crate::error::AppError> {
    let address = client_address(req, state.settings.trust_proxy);
    let event = crate::store::audit::AuditEvent {
        actor: Some(id.user_id),
        actor_label: &id.email,
        action,
        target,
        detail,
        address: &address,
    };
    crate::store::audit::record(&state.db, Some(id.org_id), &event).await?;
    Ok(())
}

pub use crate::domain::words::Grouped;

/// Page numbers for a paginated table.
#[derive(Debug, Clone)]
pub struct Pagination {
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
    pub base: String,
    /// Previous and next links given by a cursor-paged list (else `?page=` links).
    links: Option<(Option<String>, Option<String>)>,
}

impl Pagination {
    pub fn total_grouped(&self) -> String {
        self.total.grouped()
    }

    pub fn pages_grouped(&self) -> String {
        self.pages().grouped()
    }

    pub fn page_grouped(&self) -> String {
        self.page.grouped()
    }

    /// "1,001–1,025": the items this page shows, as people read numbers.
    pub fn range_grouped(&self) -> String {
        format!("{}–{}", self.first_item().grouped(), self.last_item().grouped())
    }

    pub fn new(page: Option<i64>, per_page: i64, total: i64, base: &str) -> Self {
        let pages = ((total + per_page - 1) / per_page).max(1);
        let page = page.unwrap_or(1).clamp(1, pages);
        Pagination { page, per_page, total, base: base.to_string(), links: None }
    }

    /// A page of a list read from a cursor: page `page` (for the counts shown), with the
    /// previous and next pages' links (None where there is none).
    pub fn keyset(page: i64, per_page: i64, total: i64, prev: Option<String>, next: Option<String>) -> Self {
        let mut p = Pagination::new(Some(page), per_page, total, "");
        p.links = Some((prev, next));
        p
    }

    /// The previous page's link, if there is one.
    pub fn prev_link(&self) -> Option<String> {
        match &self.links {
            Some((prev, _)) => prev.clone(),
            None => self.has_prev().then(|| self.href(self.page - 1)),
        }
    }

    /// The next page's link, if there is one.
    pub fn next_link(&self) -> Option<String> {
        match &self.links {
            Some((_, next)) => next.clone(),
            None => self.has_next().then(|| self.href(self.page + 1)),
        }
    }
    pub fn pages(&self) -> i64 {
        ((self.total + self.per_page - 1) / self.per_page).max(1)
    }
    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.per_page
    }
    pub fn first_item(&self) -> i64 {
        if self.total == 0 { 0 } else { self.offset() + 1 }
    }
    pub fn last_item(&self) -> i64 {
        (self.offset() + self.per_page).min(self.total)
    }
    pub fn has_prev(&self) -> bool {
        self.page > 1
    }
    pub fn has_next(&self) -> bool {
        self.page < self.pages()
    }
    pub fn href(&self, page: i64) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}page={page}", self.base)
    }
}

/// Formats epoch seconds for people: `2026-11-25 09:41 UTC`.
/// The day of a moment, `2026-11-30` (UTC).
pub fn format_day(epoch: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| epoch.to_string())
}

pub fn format_time(epoch: i64) -> String {
    // no-break spaces: a time never wraps across lines
    let fmt = time::macros::format_description!("[year]-[month]-[day]\u{a0}[hour]:[minute]\u{a0}UTC");
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| epoch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_clamps_and_counts() {
        let p = Pagination::new(Some(9), 25, 60, "/x");
        assert_eq!((p.page, p.pages(), p.offset(), p.first_item(), p.last_item()), (3, 3, 50, 51, 60));
        assert!(p.has_prev() && !p.has_next());
        assert_eq!(p.href(2), "/x?page=2");
        let empty = Pagination::new(None, 25, 0, "/x?q=a");
        assert_eq!((empty.page, empty.first_item(), empty.href(1).as_str()), (1, 0, "/x?q=a&page=1"));
    }

    #[test]
    fn behind_a_proxy_only_the_hop_it_appended_counts() {
        let peer: std::net::SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let req = actix_web::test::TestRequest::default()
            .peer_addr(peer)
            .insert_header(("x-forwarded-for", "6.6.6.6, 203.0.113.9"))
            .insert_header(("forwarded", "for=7.7.7.7"))
            .to_http_request();
        assert_eq!(client_address(&req, true), "203.0.113.9");
        assert_eq!(client_address(&req, false), "10.0.0.5");
        let bare = actix_web::test::TestRequest::default().peer_addr(peer).to_http_request();
        assert_eq!(client_address(&bare, true), "10.0.0.5");
    }

    #[test]
    fn times_are_readable_and_never_wrap() {
        assert_eq!(format_time(0), "1970-01-01\u{a0}00:00\u{a0}UTC", "no-break spaces");
        assert_eq!(format_day(86_400 * 365), "1971-01-01");
    }
}
