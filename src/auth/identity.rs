//! The signed-in user in their current org. The `load_identity` middleware resolves the
//! session against the database on every request, so removing a member, disabling a
//! user or changing a role takes effect on the very next request of every session.

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use super::session::AppSession;
use crate::domain::ids::{OrgId, UserId};
use crate::domain::permissions::{Permission, Role};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{self, accounts::IdentityRow};

/// A signed-in user acting in one org.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub org_id: OrgId,
    pub org_slug: String,
    pub org_name: String,
    pub role: Role,
    pub must_change_password: bool,
}

impl Identity {
    pub fn can(&self, p: Permission) -> bool {
        self.role.grants(p)
    }

    /// Err(Forbidden) unless the role grants `p`.
    pub fn require(&self, p: Permission) -> Result<(), AppError> {
        if self.can(p) { Ok(()) } else { Err(AppError::Forbidden(p)) }
    }

    /// What to call the user on screen.
    pub fn display_name(&self) -> &str {
        if self.name.trim().is_empty() { &self.email } else { &self.name }
    }

    fn from_row(r: IdentityRow) -> anyhow::Result<Identity> {
        Ok(Identity {
            user_id: UserId::new(r.user_id),
            email: r.email,
            name: r.name,
            org_id: OrgId::new(r.org_id),
            org_slug: r.org_slug,
            org_name: r.org_name,
            role: Role::parse(&r.role).map_err(anyhow::Error::msg)?,
            must_change_password: r.must_change_password,
        })
    }
}

/// Why a session that named a user no longer signs anyone in.
#[derive(Debug, Clone, Copy)]
pub struct SessionEnded(pub &'static str);

enum Resolved {
    SignedIn(Identity),
    Ended(&'static str),
}

async fn resolve(state: &AppState, session: &AppSession, user: UserId) -> anyhow::Result<Resolved> {
    let lifetime = state.settings.session_lifetime.as_secs() as i64;
    match session.signed_in_at() {
        Some(at) if at + lifetime > crate::now() => {}
        _ => return Ok(Resolved::Ended("expired")),
    }
    let db = &state.db;
    let row = match session.org_id() {
        Some(org) => store::accounts::identity(db, org, user).await?,
        None => None,
    };
    let row = match row {
        Some(r) => Some(r),
        // No longer a member of the session's org: fall back to another org of theirs.
        None => match store::accounts::preferred_org(db, user).await? {
            Some(o) => {
                session.set_org(OrgId::new(o.id))?;
                store::accounts::identity(db, OrgId::new(o.id), user).await?
            }
            None => None,
        },
    };
    match row {
        Some(r) if r.disabled => Ok(Resolved::Ended("disabled")),
        Some(r) => Ok(Resolved::SignedIn(Identity::from_row(r)?)),
        None => Ok(Resolved::Ended("removed")),
    }
}

/// Middleware: puts the [`Identity`] (or a [`SessionEnded`]) into the request extensions.
pub async fn load_identity(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let session = AppSession::from_request_ref(req.request());
    if let (Some(state), Some(user)) = (state, session.user_id()) {
        match resolve(&state, &session, user).await {
            Ok(Resolved::SignedIn(id)) => {
                tracing::Span::current().record("user_id", id.user_id.get()).record("org_id", id.org_id.get());
                req.extensions_mut().insert(id);
            }
            Ok(Resolved::Ended(reason)) => {
                session.reset();
                req.extensions_mut().insert(SessionEnded(reason));
            }
            Err(e) => return Ok(req.error_response(AppError::Internal(e))),
        }
    }
    next.call(req).await
}

fn path_and_query(req: &HttpRequest) -> String {
    match req.uri().path_and_query() {
        Some(pq) => pq.as_str().to_string(),
        None => req.path().to_string(),
    }
}

fn signed_in(req: &HttpRequest) -> Result<Identity, AppError> {
    let ext = req.extensions();
    match ext.get::<Identity>() {
        Some(id) => Ok(id.clone()),
        None => {
            Err(AppError::Unauthenticated { next: path_and_query(req), reason: ext.get::<SessionEnded>().map(|s| s.0) })
        }
    }
}

/// Extractor for every page: signed in, with a password of their own.
impl FromRequest for Identity {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            signed_in(req)
                .and_then(|id| if id.must_change_password { Err(AppError::PasswordChangeRequired) } else { Ok(id) }),
        )
    }
}

/// Extractor for the few pages open to a user who must still replace a one-time password.
pub struct SignedIn(pub Identity);

impl FromRequest for SignedIn {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(signed_in(req).map(SignedIn))
    }
}
