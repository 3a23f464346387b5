//! `/settings/audit`: the org's audit log for owners, filterable by action, person and
//! target; and the words each recorded action is shown with.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::layout::{Layout, render};
use super::{Pagination, format_time};
use crate::auth::Identity;
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::audit::{self, AuditFilter, AuditRow};

const PER_PAGE: i64 = 50;

/// How a recorded action reads on screen.
pub fn action_label(action: &str) -> String {
    let known = match action {
        "signed_in" => "Signed in",
        "password_changed" => "Changed password",
        "member_added" => "Added a member",
        "member_removed" => "Removed a member",
        "role_changed" => "Changed a role",
        "import_uploaded" => "Uploaded a file",
        "import_mapping_confirmed" => "Confirmed the column mapping",
        "import_row_edited" => "Fixed a row left out",
        "import_rows_replaced" => "Replaced a value in rows left out",
        "import_revalidated" => "Validated again",
        "import_rows_skipped" => "Skipped rows left out",
        "import_rows_unskipped" => "Put skipped rows back",
        "import_started" => "Started the import",
        "import_paused" => "Paused the import",
        "import_resumed" => "Resumed the import",
        "import_discarded" => "Discarded the import",
        "onboarding_step_skipped" => "Skipped an onboarding step",
        "onboarding_step_resumed" => "Took up an onboarding step again",
        "onboarding_step_done" => "Onboarding step done",
        "onboarding_finished" => "Finished the onboarding",
        "onboarding_rollback_requested" => "Asked to roll back the onboarding",
        "onboarding_rolled_back" => "Onboarding rolled back",
        "onboarding_import_all" => "Imported the onboarding workbook",
        "import_cancelled" => "Cancelled the import",
        "import_completed" => "Import completed",
        "import_failed" => "Import failed",
        "import_file_downloaded" => "Downloaded an import file",
        "import_rollback_requested" => "Asked for a rollback",
        "import_rolled_back" => "Rollback completed",
        "export_requested" => "Requested an export",
        "export_downloaded" => "Downloaded an export",
        "export_deleted" => "Deleted an export",
        "marketplace_import_requested" => "Imported a bundle",
        "marketplace_imported" => "Bundle import completed",
        "marketplace_import_failed" => "Bundle import failed",
        "marketplace_rolled_back" => "Rolled back a bundle import",
        other => return other.replace('_', " "),
    };
    known.to_string()
}

/// One event as a row.
pub struct EventView {
    pub at: String,
    pub who: String,
    pub action: String,
    pub target: String,
    /// The target's page, when it has one.
    pub href: Option<String>,
    pub detail: String,
    pub address: String,
}

impl EventView {
    pub fn new(e: AuditRow) -> EventView {
        let id_after = |prefix: &str| e.target.strip_prefix(prefix).filter(|id| id.parse::<i64>().is_ok());
        let href = id_after("import ")
            .map(|id| format!("/settings/imports/{id}"))
            .or_else(|| id_after("export ").map(|id| format!("/settings/exports#export-{id}")))
            .or_else(|| id_after("marketplace import ").map(|id| format!("/cl/marketplace/imports#mp-import-{id}")));
        EventView {
            at: format_time(e.at),
            who: e.actor_label,
            action: action_label(&e.action),
            target: e.target,
            href,
            detail: e.detail,
            address: e.address,
        }
    }
}

/// The kinds of target the log can be narrowed to: (value, label, `LIKE` pattern).
const TARGET_KINDS: [(&str, &str, &str); 6] = [
    ("imports", "Imports", "import %"),
    ("onboarding", "Onboarding", "onboarding%"),
    ("exports", "Exports", "export %"),
    ("bundles", "Bundle imports", "marketplace import %"),
    ("api_keys", "API keys", "api key %"),
    ("members", "Members", "%@%"),
];

/// People (and keys) offered by the filter at most.
const ACTORS_OFFERED: i64 = 200;

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub l: Layout,
    pub events: Vec<EventView>,
    pub actions: Vec<(String, String)>,
    pub actors: Vec<String>,
    pub kinds: Vec<(&'static str, &'static str)>,
    pub action: String,
    pub actor: String,
    pub target: String,
    pub kind: String,
    pub filtered: bool,
    pub pagination: Pagination,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    page: Option<i64>,
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    kind: Option<String>,
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn list(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::MembersManage)?;
    let q = q.into_inner();
    let (action, actor, target) = (
        q.action.unwrap_or_default().trim().to_string(),
        q.actor.unwrap_or_default().trim().to_string(),
        q.target.unwrap_or_default().trim().to_string(),
    );
    // an unknown kind is no filter, not an error
    let (kind, pattern) = TARGET_KINDS
        .iter()
        .find(|(v, _, _)| Some(*v) == q.kind.as_deref())
        .map(|(v, _, p)| (v.to_string(), *p))
        .unwrap_or_default();
    let filter = AuditFilter { action: &action, actor: &actor, target: &target, kind: pattern };
    let total = audit::count(&state.db, id.org_id, &filter).await?;
    let base = format!(
        "/settings/audit?{}",
        serde_urlencoded::to_string([("action", &action), ("actor", &actor), ("target", &target), ("kind", &kind)])
            .unwrap_or_default()
    );
    let pagination = Pagination::new(q.page, PER_PAGE, total, &base);
    let events = audit::list(&state.db, id.org_id, &filter, PER_PAGE, pagination.offset())
        .await?
        .into_iter()
        .map(EventView::new)
        .collect();
    let actions =
        audit::actions(&state.db, id.org_id).await?.into_iter().map(|a| (action_label(&a), a)).collect::<Vec<_>>();
    let page = AuditPage {
        l: Layout::for_user(&req, &id, "Audit log", "audit").await?,
        events,
        actions,
        actors: audit::actors(&state.db, id.org_id, ACTORS_OFFERED).await?,
        kinds: TARGET_KINDS.iter().map(|(v, l, _)| (*v, *l)).collect(),
        filtered: !(action.is_empty() && actor.is_empty() && target.is_empty() && kind.is_empty()),
        kind,
        action,
        actor,
        target,
        pagination,
    };
    Ok(render(StatusCode::OK, &page))
}
