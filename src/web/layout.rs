//! The page frame every template extends: header (org switcher, user menu), navigation
//! (only the pages the user may open), the one-shot flash message, and the error pages.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use askama::Template;

use crate::auth::Identity;
use crate::auth::session::{AppSession, Flash};
use crate::domain::entities::Schemas;
use crate::domain::ids::OrgId;
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::state::AppState;
use crate::store;
use crate::telemetry::RequestId;

pub use super::assets::ASSET_VERSION;

pub struct NavItem {
    pub key: String,
    pub href: String,
    pub label: String,
}

fn item(key: &str, href: &str, label: &str) -> NavItem {
    NavItem { key: key.into(), href: href.into(), label: label.into() }
}

pub struct NavSection {
    pub title: &'static str,
    pub items: Vec<NavItem>,
}

pub struct OrgChoice {
    pub id: i64,
    pub name: String,
}

/// The signed-in part of the frame.
pub struct UserFrame {
    pub display_name: String,
    pub initials: String,
    pub email: String,
    pub role_label: &'static str,
    pub org_id: OrgId,
    pub org_name: String,
    pub orgs: Vec<OrgChoice>,
    pub nav: Vec<NavSection>,
}

impl UserFrame {
    pub fn org_selected(&self, id: &i64) -> bool {
        self.org_id.get() == *id
    }
}

/// What every page template gets as `l`.
pub struct Layout {
    pub title: String,
    pub active: String,
    pub csrf: String,
    pub user: Option<UserFrame>,
    pub flash: Option<Flash>,
}

/// The navigation for a member: a link only where a page has landed and they may open it.
pub fn navigation(id: &Identity, schemas: &Schemas) -> Vec<NavSection> {
    let mut out = vec![NavSection { title: "", items: vec![item("overview", "/", "Overview")] }];
    let data: Vec<NavItem> = schemas.all().iter().map(|s| item(&s.name, &format!("/{}", s.name), &s.label)).collect();
    if !data.is_empty() {
        out.push(NavSection { title: "Data", items: data });
    }
    let mut marketplace = vec![item("marketplace", "/cl/marketplace", "Catalog")];
    if id.can(Permission::MarketplaceImport) {
        marketplace.push(item("marketplace-imports", "/cl/marketplace/imports", "Import History"));
    }
    out.push(NavSection { title: "Marketplace", items: marketplace });
    let mut settings = vec![];
    if id.can(Permission::ImportUpload) {
        settings.push(item("imports", "/settings/imports", "Imports"));
    }
    if id.can(Permission::ExportRequestsView) {
        settings.push(item("exports", "/settings/exports", "Exports"));
    }
    if id.can(Permission::MembersManage) {
        settings.push(item("members", "/settings/members", "Members"));
        settings.push(item("api-keys", "/settings/api-keys", "API keys"));
        settings.push(item("audit", "/settings/audit", "Audit log"));
    }
    if !settings.is_empty() {
        out.push(NavSection { title: "Settings", items: settings });
    }
    out
}

fn initials(name: &str) -> String {
    let s: String = name
        .split(|c: char| c.is_whitespace() || c == '.' || c == '@')
        .filter(|w| !w.is_empty())
        .take(2)
        .filter_map(|w| w.chars().next())
        .collect();
    s.to_uppercase()
}

impl Layout {
    /// The frame for a signed-in page.
    pub async fn for_user(
        req: &HttpRequest,
        id: &Identity,
        title: impl Into<String>,
        active: &str,
    ) -> Result<Layout, AppError> {
        let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| anyhow::anyhow!("app state missing"))?;
        let orgs = store::accounts::orgs_of_user(&state.db, id.user_id).await?;
        let session = AppSession::from_request_ref(req);
        Ok(Layout {
            title: title.into(),
            active: active.to_string(),
            csrf: session.csrf_token()?,
            user: Some(UserFrame {
                display_name: id.display_name().to_string(),
                initials: initials(id.display_name()),
                email: id.email.clone(),
                role_label: id.role.label(),
                org_id: id.org_id,
                org_name: id.org_name.clone(),
                orgs: orgs.into_iter().map(|o| OrgChoice { id: o.id, name: o.name }).collect(),
                nav: navigation(id, &state.schemas),
            }),
            flash: session.take_flash(),
        })
    }

    /// The frame for a page without a signed-in user (sign-in, bare errors).
    pub fn anonymous(req: &HttpRequest, title: impl Into<String>) -> Result<Layout, AppError> {
        let session = AppSession::from_request_ref(req);
        Ok(Layout {
            title: title.into(),
            active: String::new(),
            csrf: session.csrf_token()?,
            user: None,
            flash: session.take_flash(),
        })
    }
}

/// Renders a template with a status; a rendering failure becomes a plain 500.
pub fn render<T: Template>(status: StatusCode, t: &T) -> HttpResponse {
    match t.render() {
        Ok(html) => HttpResponse::build(status).content_type("text/html; charset=utf-8").body(html),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            HttpResponse::InternalServerError().content_type("text/plain; charset=utf-8").body("Internal error")
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub l: Layout,
    pub status: u16,
    pub heading: String,
    pub message: String,
    pub permission: Option<Permission>,
    pub request_id: Option<String>,
}

fn wants_json(req: &HttpRequest) -> bool {
    req.path().starts_with("/api/") || matches!(req.path(), "/healthz" | "/readyz" | "/metrics")
}

/// Middleware: page errors become full pages in the frame (with the lock for 403, the
/// request id for 500); API errors become `{"error": …}`.
pub async fn error_pages(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let Some(err) = res.response().error().and_then(|e| e.as_error::<AppError>()) else {
        return Ok(res);
    };
    let status = err.status_code();
    if status.is_redirection() {
        return Ok(res);
    }
    let api = res.request().path().starts_with("/api/").then(|| crate::web::api::error_response(err));
    let (heading, message) = err.title_and_message();
    let permission = err.permission();
    let (req, original) = res.into_parts();
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    if let Some(resp) = api {
        log_internal(&original);
        return Ok(ServiceResponse::new(req, resp));
    }
    if wants_json(&req) {
        let body = serde_json::json!({ "error": heading, "message": message, "request_id": request_id });
        let resp = HttpResponse::build(status).json(body);
        log_internal(&original);
        return Ok(ServiceResponse::new(req, resp));
    }
    let identity = req.extensions().get::<Identity>().cloned();
    let layout = match &identity {
        Some(id) => Layout::for_user(&req, id, heading.clone(), "").await.ok(),
        None => None,
    };
    let l = match layout {
        Some(l) => l,
        None => Layout { title: heading.clone(), active: String::new(), csrf: String::new(), user: None, flash: None },
    };
    let page = ErrorPage {
        l,
        status: status.as_u16(),
        heading,
        message,
        permission,
        request_id: if status.is_server_error() { request_id } else { None },
    };
    let resp = render(status, &page);
    log_internal(&original);
    Ok(ServiceResponse::new(req, resp))
}

/// The re-rendered response drops the error, so log an internal one's cause here.
fn log_internal(original: &HttpResponse) {
    if let Some(e) = original.error()
        && let Some(app) = e.as_error::<AppError>()
        && let AppError::Internal(inner) = app
    {
        tracing::error!(error = ?inner, "internal error");
    }
}

/// Default service: an unknown path is a 404 page.
pub async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound)
}
