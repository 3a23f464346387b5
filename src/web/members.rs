//! `/settings/members`: the org's members and their roles (owners only).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::layout::{Layout, render};
use super::{Pagination, format_time};
use crate::auth::session::{AppSession, Flash};
use crate::auth::{Identity, password};
use crate::domain::account::Email;
use crate::domain::ids::UserId;
use crate::domain::permissions::{Permission, Role};
use crate::error::AppError;
use crate::state::AppState;
use crate::store;
use crate::store::accounts::{AddMember, MemberRow, MembershipChange};

const PER_PAGE: i64 = 25;

pub struct MemberView {
    pub user_id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub status: &'static str,
    pub status_variant: &'static str,
    pub joined: String,
    pub is_you: bool,
    pub permissions: Vec<Permission>,
}

impl MemberView {
    fn from_row(r: MemberRow, me: &Identity) -> Result<MemberView, AppError> {
        let role = Role::parse(&r.role).map_err(anyhow::Error::msg)?;
        let (status, status_variant) = if r.disabled {
            ("Disabled", "destructive")
        } else if r.must_change_password {
            ("Invited", "secondary")
        } else {
            ("Active", "success")
        };
        Ok(MemberView {
            user_id: r.user_id,
            email: r.email,
            name: r.name,
            role,
            status,
            status_variant,
            joined: format_time(r.created_at),
            is_you: r.user_id == me.user_id.get(),
            permissions: role.permissions().to_vec(),
        })
    }

    pub fn display_name(&self) -> &str {
        if self.name.trim().is_empty() { &self.email } else { &self.name }
    }
}

/// What the add-member dialog shows when it is re-rendered.
#[derive(Default)]
pub struct AddForm {
    pub email: String,
    pub name: String,
    pub role: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "members.html")]
pub struct MembersPage {
    pub l: Layout,
    pub members: Vec<MemberView>,
    pub pagination: Pagination,
    pub roles: Vec<Role>,
    pub add: AddForm,
    pub add_open: bool,
    /// The member whose sheet is open without JavaScript (`?member=ID`).
    pub open_member: Option<i64>,
    /// The member whose removal dialog is open without JavaScript (`?remove=ID`).
    pub open_remove: Option<i64>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    page: Option<i64>,
    member: Option<i64>,
    remove: Option<i64>,
    add: Option<u8>,
}

async fn page(
    req: &HttpRequest,
    id: &Identity,
    state: &AppState,
    q: &ListQuery,
    add: Option<AddForm>,
) -> Result<MembersPage, AppError> {
    let total = store::accounts::count_members(&state.db, id.org_id).await?;
    let pagination = Pagination::new(q.page, PER_PAGE, total, "/settings/members");
    let mut members = store::accounts::members(&state.db, id.org_id, PER_PAGE, pagination.offset())
        .await?
        .into_iter()
        .map(|r| MemberView::from_row(r, id))
        .collect::<Result<Vec<_>, _>>()?;
    // A member named in the address must belong to this org: anything else is a 404.
    for wanted in [q.member, q.remove].into_iter().flatten() {
        if !members.iter().any(|m| m.user_id == wanted) {
            let row =
                store::accounts::member(&state.db, id.org_id, UserId::new(wanted)).await?.ok_or(AppError::NotFound)?;
            members.push(MemberView::from_row(row, id)?);
        }
    }
    Ok(MembersPage {
        l: Layout::for_user(req, id, "Members", "members").await?,
        members,
        pagination,
        roles: Role::ALL.to_vec(),
        add_open: add.is_some() || q.add.is_some(),
        add: add.unwrap_or_else(|| AddForm { role: "viewer".into(), ..Default::default() }),
        open_member: q.member,
        open_remove: q.remove,
    })
}

impl MembersPage {
    pub fn sheet_open(&self, user_id: &i64) -> bool {
        self.open_member == Some(*user_id)
    }
    pub fn remove_open(&self, user_id: &i64) -> bool {
        self.open_remove == Some(*user_id)
    }
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn list(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::MembersManage)?;
    Ok(render(StatusCode::OK, &page(&req, &id, &state, &q, None).await?))
}

#[derive(Deserialize)]
pub struct AddMemberForm {
    email: String,
    #[serde(default)]
    name: String,
    role: String,
}

fn back(flash: Flash, session: &AppSession) -> Result<HttpResponse, AppError> {
    session.set_flash(&flash)?;
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, "/settings/members")).finish())
}

fn flash(kind: &str, text: impl Into<String>) -> Flash {
    Flash { kind: kind.into(), text: text.into(), secret: None }
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn add(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    form: web::Form<AddMemberForm>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::MembersManage)?;
    let form = form.into_inner();
    let invalid = |error: String| AddForm {
        email: form.email.clone(),
        name: form.name.clone(),
        role: form.role.clone(),
        error: Some(error),
    };
    let parsed = Email::parse(&form.email).and_then(|e| Role::parse(&form.role).map(|r| (e, r)));
    let (email, role) = match parsed {
        Ok(v) => v,
        Err(msg) => {
            let q = ListQuery { page: None, member: None, remove: None, add: None };
            let p = page(&req, &id, &state, &q, Some(invalid(msg))).await?;
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &p));
        }
    };
    let otp = password::one_time_password()?;
    let hash = password::hash(otp.clone()).await?;
    let name = form.name.trim();
    match store::accounts::add_member(&state.db, id.org_id, email.as_str(), name, role, &hash).await? {
        AddMember::Created(_) => {
            super::audit(&state, &req, &id, "member_added", email.as_str(), &format!("{}, new user", role.label()))
                .await?;
            back(
                Flash {
                    kind: "success".into(),
                    text: format!(
                        "{email} was added as {}. Share this one-time password with them; it is shown only once, and they choose their own password when they first sign in.",
                        role.label()
                    ),
                    secret: Some(otp),
                },
                &session,
            )
        }
        AddMember::AddedExisting(_) => {
            super::audit(
                &state,
                &req,
                &id,
                "member_added",
                email.as_str(),
                &format!("{}, existing user", role.label()),
            )
            .await?;
            back(
                flash(
                    "success",
                    format!(
                        "{email} already had an account and was added as {}. They sign in with their existing password.",
                        role.label()
                    ),
                ),
                &session,
            )
        }
        AddMember::AlreadyMember => {
            let q = ListQuery { page: None, member: None, remove: None, add: None };
            let msg =
                format!("{email} is already a member of this organization. Change their role from the member list.");
            let p = page(&req, &id, &state, &q, Some(invalid(msg))).await?;
            Ok(render(StatusCode::CONFLICT, &p))
        }
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

async fn apply_change(
    req: &HttpRequest,
    id: &Identity,
    state: &AppState,
    session: &AppSession,
    user: UserId,
    new: Option<Role>,
) -> Result<HttpResponse, AppError> {
    let member = store::accounts::member(&state.db, id.org_id, user).await?.ok_or(AppError::NotFound)?;
    match store::accounts::change_membership(&state.db, id.org_id, user, new).await? {
        MembershipChange::NotFound => Err(AppError::NotFound),
        MembershipChange::Refused(why) => back(flash("error", why.to_string()), session),
        MembershipChange::Done { previous } => match new {
            Some(role) => {
                super::audit(
                    state,
                    req,
                    id,
                    "role_changed",
                    &member.email,
                    &format!("{} → {}", previous.label(), role.label()),
                )
                .await?;
                back(flash("success", format!("{} is now {}.", member.email, role.label())), session)
            }
            None => {
                super::audit(state, req, id, "member_removed", &member.email, &format!("was {}", previous.label()))
                    .await?;
                back(flash("success", format!("{} was removed from {}.", member.email, id.org_name)), session)
            }
        },
    }
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn change_role(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::MembersManage)?;
    let role = Role::parse(&form.role).map_err(AppError::Validation)?;
    apply_change(&req, &id, &state, &session, UserId::new(path.into_inner()), Some(role)).await
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn remove(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::MembersManage)?;
    apply_change(&req, &id, &state, &session, UserId::new(path.into_inner()), None).await
}
