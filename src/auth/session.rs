//! Sessions. The cookie carries only a random 256-bit key; the state lives in the
//! `sessions` table under the key's SHA-256, so a leaked table opens no session, and
//! deleting rows ends sessions everywhere at once. [`AppSession`] is the typed view
//! handlers use: user, org, CSRF token, sign-in time, and a one-shot flash message.

use std::collections::HashMap;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_session::{Session, SessionExt};
use actix_web::cookie::time::Duration;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::ids::{OrgId, UserId};
use crate::store::{self, Db};

type SessionState = HashMap<String, String>;

/// The session store backed by the app's own database.
#[derive(Clone)]
pub struct DbSessionStore {
    db: Db,
}

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn row_id(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn user_of(state: &SessionState) -> Option<i64> {
    state.get(KEY_USER).and_then(|v| v.parse().ok())
}

fn expiry(ttl: &Duration) -> i64 {
    crate::now() + ttl.whole_seconds()
}

impl SessionStore for DbSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        let Some(text) = store::sessions::load(&self.db, &row_id(session_key.as_ref()), crate::now())
            .await
            .map_err(LoadError::Other)?
        else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| LoadError::Deserialization(e.into()))
    }

    async fn save(&self, state: SessionState, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let text = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let key = crate::random_token(32).map_err(SaveError::Other)?;
        let (row, user, expires) = (row_id(&key), user_of(&state), expiry(ttl));
        store::retry_busy(|| store::sessions::insert(&self.db, &row, user, &text, expires))
            .await
            .map_err(SaveError::Other)?;
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(&self, key: SessionKey, state: SessionState, ttl: &Duration) -> Result<SessionKey, UpdateError> {
        let text = serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let (row, user, expires, now) = (row_id(key.as_ref()), user_of(&state), expiry(ttl), crate::now());
        let found = store::retry_busy(|| store::sessions::update(&self.db, &row, user, &text, expires, now))
            .await
            .map_err(UpdateError::Other)?;
        if found {
            return Ok(key);
        }
        // The row expired or was deleted meanwhile (sign-out, password change, disabled
        // user): start a new, empty session. Carrying the state over would sign a copied
        // cookie back in under a fresh key.
        self.save(SessionState::new(), ttl).await.map_err(|e| match e {
            SaveError::Serialization(e) => UpdateError::Serialization(e),
            SaveError::Other(e) => UpdateError::Other(e),
        })
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        // the expiry may lag the idle timeout by a tenth of it (a minute at most), so most
        // requests extend the session without writing
        let slack = (ttl.whole_seconds() / 10).clamp(0, 60);
        let (row, expires) = (row_id(key.as_ref()), expiry(ttl));
        store::retry_busy(|| store::sessions::touch(&self.db, &row, expires, slack)).await
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let row = row_id(key.as_ref());
        store::retry_busy(|| store::sessions::delete(&self.db, &row)).await
    }
}

const KEY_USER: &str = "uid";
const KEY_ORG: &str = "org";
const KEY_CSRF: &str = "csrf";
const KEY_AUTH_AT: &str = "auth_at";
const KEY_FLASH: &str = "flash";

/// A message shown once on the next page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flash {
    /// `success`, `info` or `error`.
    pub kind: String,
    pub text: String,
    /// A secret shown once (a one-time password), rendered in a monospace box.
    #[serde(default)]
    pub secret: Option<String>,
}

/// The typed session.
pub struct AppSession(Session);

impl AppSession {
    pub fn from_request_ref(req: &HttpRequest) -> Self {
        AppSession(req.get_session())
    }

    pub fn user_id(&self) -> Option<UserId> {
        self.0.get::<i64>(KEY_USER).ok().flatten().map(UserId::new)
    }

    pub fn org_id(&self) -> Option<OrgId> {
        self.0.get::<i64>(KEY_ORG).ok().flatten().map(OrgId::new)
    }

    pub fn signed_in_at(&self) -> Option<i64> {
        self.0.get::<i64>(KEY_AUTH_AT).ok().flatten()
    }

    /// The session's CSRF token, created on first use.
    pub fn csrf_token(&self) -> anyhow::Result<String> {
        if let Ok(Some(t)) = self.0.get::<String>(KEY_CSRF) {
            return Ok(t);
        }
        let t = crate::random_token(32)?;
        self.0.insert(KEY_CSRF, &t)?;
        Ok(t)
    }

    /// The token if the session has one, without creating it.
    pub fn existing_csrf_token(&self) -> Option<String> {
        self.0.get::<String>(KEY_CSRF).ok().flatten()
    }

    /// Signs in: a new session key (no fixation), a fresh CSRF token, nothing carried over.
    pub fn sign_in(&self, user: UserId, org: OrgId) -> anyhow::Result<()> {
        self.0.clear();
        self.0.renew();
        self.0.insert(KEY_USER, user.get())?;
        self.0.insert(KEY_ORG, org.get())?;
        self.0.insert(KEY_AUTH_AT, crate::now())?;
        self.0.insert(KEY_CSRF, crate::random_token(32)?)?;
        Ok(())
    }

    pub fn set_org(&self, org: OrgId) -> anyhow::Result<()> {
        self.0.insert(KEY_ORG, org.get())?;
        Ok(())
    }

    /// Ends the session: the row is deleted and the cookie cleared.
    pub fn sign_out(&self) {
        self.0.purge();
    }

    /// Drops a session that no longer signs anyone in, keeping a fresh anonymous one (with
    /// a new key) so the sign-in form shown next has a CSRF token that is really stored.
    pub fn reset(&self) {
        self.0.clear();
        self.0.renew();
    }

    pub fn set_flash(&self, flash: &Flash) -> anyhow::Result<()> {
        self.0.insert(KEY_FLASH, flash)?;
        Ok(())
    }

    pub fn take_flash(&self) -> Option<Flash> {
        // actix-session marks the session changed by any remove, present or not: a page with
        // no message to show must not cost a session write
        if !self.0.contains_key(KEY_FLASH) {
            return None;
        }
        self.0.remove_as::<Flash>(KEY_FLASH).and_then(Result::ok)
    }
}

impl FromRequest for AppSession {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(AppSession::from_request_ref(req)))
    }
}
