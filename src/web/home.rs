//! `/`: the overview of the current org, and switching org.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::Grouped;
use super::layout::{Layout, render};
use crate::auth::Identity;
use crate::auth::session::AppSession;
use crate::domain::ids::OrgId;
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::state::AppState;
use crate::store;

pub struct PermissionLine {
    pub label: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub granted: bool,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct OverviewPage {
    pub l: Layout,
    pub org_name: String,
    pub org_slug: String,
    pub role_label: &'static str,
    pub member_count: i64,
    pub permissions: Vec<PermissionLine>,
    pub can_manage_members: bool,
    /// The org has no records yet and the person may import: the onboarding is offered.
    pub offer_onboarding: bool,
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn overview(req: HttpRequest, id: Identity, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let member_count = store::accounts::count_members(&state.db, id.org_id).await?;
    let permissions = Permission::ALL
        .iter()
        .map(|p| PermissionLine {
            label: p.label(),
            name: p.as_str(),
            description: p.description(),
            granted: id.can(*p),
        })
        .collect();
    let mut offer_onboarding = id.can(Permission::ImportUpload);
    for s in state.schemas.all() {
        if !offer_onboarding {
            break;
        }
        offer_onboarding = !store::records::any(&state.db, id.org_id, &s.name).await?;
    }
    let page = OverviewPage {
        l: Layout::for_user(&req, &id, "Overview", "overview").await?,
        org_name: id.org_name.clone(),
        org_slug: id.org_slug.clone(),
        role_label: id.role.label(),
        member_count,
        permissions,
        can_manage_members: id.can(Permission::MembersManage),
        offer_onboarding,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct SwitchForm {
    org_id: i64,
}

/// Makes another of the user's orgs the current one. An org they do not belong to is a 404.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn switch_org(
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    form: web::Form<SwitchForm>,
) -> Result<HttpResponse, AppError> {
    let org = OrgId::new(form.org_id);
    if store::accounts::identity(&state.db, org, id.user_id).await?.is_none() {
        return Err(AppError::NotFound);
    }
    session.set_org(org)?;
    store::accounts::set_last_org(&state.db, id.user_id, org).await?;
    tracing::info!(org_id = org.get(), "switched organization");
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, "/")).finish())
}
