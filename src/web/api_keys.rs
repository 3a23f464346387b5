//! `/settings/api-keys`: an org's keys for the JSON API (owners only, `pf.members.manage`).
//! A new key's secret is shown once, in the page's message; only its hash is kept. Revoking
//! takes effect on the key's next request.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::layout::{Layout, render};
use super::{format_time, see_other};
use crate::auth::Identity;
use crate::auth::session::{AppSession, Flash};
use crate::domain::api_keys::{self, EXPIRY_CHOICES, GRANTABLE};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::state::AppState;
use crate::store;
use crate::store::api_keys::{ApiKeyRow, NewApiKey};

pub struct KeyView {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub permissions: Vec<Permission>,
    pub created_by: String,
    pub created_at: String,
    pub expires: String,
    pub last_used: String,
    pub last_used_from: String,
    pub status: &'static str,
    pub status_variant: &'static str,
    pub active: bool,
}

impl KeyView {
    fn from_row(r: ApiKeyRow, now: i64) -> KeyView {
        let (status, status_variant) = match api_keys::check_active(r.revoked_at, r.expires_at, now) {
            Ok(()) => ("Active", "success"),
            Err(api_keys::KeyRefusal::Revoked) => ("Revoked", "outline"),
            Err(_) => ("Expired", "outline"),
        };
        KeyView {
            id: r.id,
            name: r.name,
            prefix: format!("{}…", r.prefix),
            permissions: api_keys::parse_permissions(&r.permissions),
            created_by: r.created_by_label,
            created_at: format_time(r.created_at),
            expires: r.expires_at.map(format_time).unwrap_or_else(|| "Never".into()),
            last_used: r.last_used_at.map(format_time).unwrap_or_else(|| "Never used".into()),
            last_used_from: r.last_used_from,
            status,
            status_variant,
            active: status == "Active",
        }
    }
}

/// A permission the create form offers, and whether it is ticked.
pub struct PermissionChoice {
    pub label: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub checked: bool,
}

/// What the create dialog shows when it is re-rendered.
pub struct CreateForm {
    pub name: String,
    pub expiry: String,
    pub permissions: Vec<PermissionChoice>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
pub struct ApiKeysPage {
    pub l: Layout,
    pub keys: Vec<KeyView>,
    pub form: CreateForm,
    pub expiry_choices: Vec<(String, &'static str)>,
    pub create_open: bool,
    /// The key whose revoke dialog is open without JavaScript (`?revoke=ID`).
    pub open_revoke: Option<i64>,
}

impl ApiKeysPage {
    pub fn revoke_open(&self, id: &i64) -> bool {
        self.open_revoke == Some(*id)
    }
}

/// The permissions the creator may give a key, ticked as `ticked` says.
fn choices(id: &Identity, ticked: &[String]) -> Vec<PermissionChoice> {
    GRANTABLE
        .iter()
        .filter(|p| id.can(**p))
        .map(|p| PermissionChoice {
            label: p.label(),
            name: p.as_str(),
            description: p.description(),
            checked: ticked.iter().any(|t| t == p.as_str()),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct ListQuery {
    new: Option<u8>,
    revoke: Option<i64>,
}

async fn page(
    req: &HttpRequest,
    id: &Identity,
    state: &AppState,
    form: Option<CreateForm>,
    open_revoke: Option<i64>,
    create_open: bool,
) -> Result<ApiKeysPage, AppError> {
    let now = crate::now();
    let keys: Vec<KeyView> =
        store::api_keys::list(&state.db, id.org_id).await?.into_iter().map(|r| KeyView::from_row(r, now)).collect();
    if let Some(k) = open_revoke
        && !keys.iter().any(|v| v.id == k && v.active)
    {
        return Err(AppError::NotFound);
    }
    Ok(ApiKeysPage {
        l: Layout::for_user(req, id, "API keys", "api-keys").await?,
        keys,
        create_open: create_open || form.is_some(),
        form: form.unwrap_or_else(|| CreateForm {
            name: String::new(),
            expiry: "90".into(),
            permissions: choices(id, &[Permission::ImportUpload.as_str().to_string()]),
            error: None,
        }),
        expiry_choices: EXPIRY_CHOICES
            .iter()
            .map(|(d, label)| (d.map(|n| n.to_string()).unwrap_or_else(|| "never".into()), *label))
            .collect(),
        open_revoke,
    })
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn list(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::MembersManage)?;
    let p = page(&req, &id, &state, None, q.revoke, q.new.is_some()).await?;
    Ok(render(StatusCode::OK, &p))
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn create(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::MembersManage)?;
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let ticked: Vec<String> = form.iter().filter(|(k, _)| k == "permissions").map(|(_, v)| v.clone()).collect();
    let (name, expiry) = (field("name"), field("expires_in_days"));
    let (name, permissions, days) = match api_keys::check_new_key(id.role, &name, &ticked, &expiry) {
        Ok(v) => v,
        Err(error) => {
            let form = CreateForm { name, expiry, permissions: choices(&id, &ticked), error: Some(error) };
            let p = page(&req, &id, &state, Some(form), None, true).await?;
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &p));
        }
    };
    let secret = api_keys::generate()?;
    let expires_at = days.map(|d| crate::now() + d * 86_400);
    let stored = api_keys::format_permissions(&permissions);
    let key_id = store::api_keys::create(
        &state.db,
        id.org_id,
        &NewApiKey {
            name: &name,
            prefix: &secret.prefix,
            hash: &secret.hash,
            permissions: &stored,
            created_by: Some(id.user_id),
            created_by_label: &id.email,
            expires_at,
        },
    )
    .await?;
    let granted: Vec<&str> = permissions.iter().map(|p| p.label()).collect();
    let detail = format!(
        "{name} ({}…): {}; expires {}",
        secret.prefix,
        granted.join(", "),
        expires_at.map(format_time).unwrap_or_else(|| "never".into())
    );
    super::audit(&state, &req, &id, "api_key_created", &format!("api key {key_id}"), &detail).await?;
    session.set_flash(&Flash {
        kind: "success".into(),
        text: format!(
            "The key \"{name}\" was created. Copy it now: it is shown only this once, and only its hash is kept. \
             Send it as \"Authorization: Bearer <key>\"."
        ),
        secret: Some(secret.secret),
    })?;
    Ok(see_other("/settings/api-keys"))
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn revoke(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::MembersManage)?;
    let key_id = path.into_inner();
    let key = store::api_keys::get(&state.db, id.org_id, key_id).await?.ok_or(AppError::NotFound)?;
    let revoked = store::api_keys::revoke(&state.db, id.org_id, key_id, &id.email).await?;
    state.api_keys.forget();
    let text = if revoked {
        let detail = format!("{} ({}…)", key.name, key.prefix);
        super::audit(&state, &req, &id, "api_key_revoked", &format!("api key {key_id}"), &detail).await?;
        format!("The key \"{}\" was revoked; requests with it are refused from now on.", key.name)
    } else {
        format!("The key \"{}\" was already revoked.", key.name)
    };
    session.set_flash(&Flash { kind: "success".into(), text, secret: None })?;
    Ok(see_other("/settings/api-keys"))
}
