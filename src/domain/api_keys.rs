//! API keys: what a key looks like, what it may carry, when it stops working, and how a
//! request presents it. Only the SHA-256 of a key is stored: a key is 32 random bytes, so a
//! fast hash is as strong as a slow one and every API request can afford it.

use sha2::{Digest, Sha256};

use super::permissions::{Permission, Role};

/// What every key starts with, so a leaked key is recognizable (secret scanners, logs).
pub const KEY_PREFIX: &str = "sv_live_";

/// How many characters of a key are kept and shown, the prefix included.
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 6;

/// The permissions a key may carry: the API's, never the right to manage members or keys.
pub const GRANTABLE: [Permission; 4] = [
    Permission::ImportUpload,
    Permission::ExportRequestsView,
    Permission::ExportRequestsCreate,
    Permission::MarketplaceImport,
];

/// The expiry choices of the create form, in days (None: never).
pub const EXPIRY_CHOICES: [(Option<i64>, &str); 4] =
    [(Some(30), "30 days"), (Some(90), "90 days"), (Some(365), "1 year"), (None, "Never")];

/// A new key: the secret shown once, what is kept of it (prefix and hash).
pub struct NewSecret {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

/// Makes a new key from 32 random bytes.
pub fn generate() -> anyhow::Result<NewSecret> {
    let secret = format!("{KEY_PREFIX}{}", crate::random_token(32)?);
    Ok(NewSecret { prefix: secret[..SHOWN_CHARS].to_string(), hash: hash(&secret), secret })
}

/// The stored form of a key: its SHA-256, hex.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Why a request's key is not accepted (each answered 401 with its own message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No `Authorization` header.
    Missing,
    /// A header that is not `Bearer <key>`.
    NotBearer,
    /// A key in the address, where logs and browser history keep it.
    InQuery,
    /// No such key.
    Unknown,
    Revoked,
    Expired,
}

impl KeyRefusal {
    pub fn message(self) -> &'static str {
        match self {
            KeyRefusal::Missing => {
                "No API key was sent. Send it in the Authorization header: \"Authorization: Bearer sv_live_...\"."
            }
            KeyRefusal::NotBearer => "The Authorization header must be \"Bearer \" followed by an API key.",
            KeyRefusal::InQuery => {
                "API keys are accepted only in the Authorization header, never in the address: revoke this key, since \
                 addresses end up in logs, and send the new one as \"Authorization: Bearer ...\"."
            }
            KeyRefusal::Unknown => "This API key is not valid.",
            KeyRefusal::Revoked => "This API key was revoked.",
            KeyRefusal::Expired => "This API key has expired.",
        }
    }

    /// The error's machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            KeyRefusal::Missing => "api_key_missing",
            KeyRefusal::NotBearer => "authorization_invalid",
            KeyRefusal::InQuery => "api_key_in_query",
            KeyRefusal::Unknown => "api_key_invalid",
            KeyRefusal::Revoked => "api_key_revoked",
            KeyRefusal::Expired => "api_key_expired",
        }
    }
}

/// Query parameters a client might put a key in.
const KEY_PARAMS: [&str; 5] = ["api_key", "apikey", "key", "access_token", "token"];

/// The key a request presents: `authorization` is its header (None when absent), `query`
/// its query string. A key-like parameter in the query refuses the request whatever the
/// header says.
pub fn presented<'a>(authorization: Option<&'a str>, query: &str) -> Result<&'a str, KeyRefusal> {
    let in_query = query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or("");
        KEY_PARAMS.iter().any(|k| name.eq_ignore_ascii_case(k)) || pair.contains(KEY_PREFIX)
    });
    if in_query {
        return Err(KeyRefusal::InQuery);
    }
    let header = authorization.ok_or(KeyRefusal::Missing)?.trim();
    let (scheme, key) = header.split_once(' ').ok_or(KeyRefusal::NotBearer)?;
    let key = key.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() {
        return Err(KeyRefusal::NotBearer);
    }
    Ok(key)
}

/// Whether a stored key still works at `now`.
pub fn check_active(revoked_at: Option<i64>, expires_at: Option<i64>, now: i64) -> Result<(), KeyRefusal> {
    if revoked_at.is_some() {
        Err(KeyRefusal::Revoked)
    } else if expires_at.is_some_and(|at| at <= now) {
        Err(KeyRefusal::Expired)
    } else {
        Ok(())
    }
}

/// The permission names a key is stored with, parsed (unknown names are dropped: a name
/// the app no longer knows grants nothing).
pub fn parse_permissions(stored: &str) -> Vec<Permission> {
    stored.split_whitespace().filter_map(|n| GRANTABLE.iter().copied().find(|p| p.as_str() == n)).collect()
}

pub fn format_permissions(ps: &[Permission]) -> String {
    ps.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" ")
}

/// What the create form asked for, checked: a name, at least one permission, each one the
/// creator holds and a key may carry, and an expiry from the choices.
pub fn check_new_key(
    creator: Role,
    name: &str,
    permissions: &[String],
    expiry_days: &str,
) -> Result<(String, Vec<Permission>, Option<i64>), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("Give the key a name, such as the system that will use it.".into());
    }
    if name.chars().count() > 100 {
        return Err("A key's name can be at most 100 characters.".into());
    }
    let mut granted = vec![];
    for p in permissions {
        let Some(perm) = GRANTABLE.iter().copied().find(|g| g.as_str() == p) else {
            return Err(format!("\"{p}\" is not a permission an API key can carry."));
        };
        if !creator.grants(perm) {
            return Err(format!("You can give a key only permissions you hold yourself; you do not hold {p}."));
        }
        if !granted.contains(&perm) {
            granted.push(perm);
        }
    }
    if granted.is_empty() {
        return Err("Choose at least one permission for the key.".into());
    }
    granted.sort_by_key(|p| GRANTABLE.iter().position(|g| g == p));
    let days = match expiry_days.trim() {
        "" | "never" => None,
        d => match d.parse::<i64>() {
            Ok(n) if EXPIRY_CHOICES.iter().any(|(c, _)| *c == Some(n)) => Some(n),
            _ => return Err(format!("\"{d}\" is not one of the expiry choices.")),
        },
    };
    Ok((name.to_string(), granted, days))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_kept_only_as_a_hash() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert!(a.secret.starts_with("sv_live_") && a.secret.len() == 8 + 64, "{}", a.secret);
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(&a.prefix) && a.prefix.len() == 14);
        assert_eq!(a.hash, hash(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.secret[8..]));
    }

    #[test]
    fn only_a_bearer_header_presents_a_key() {
        assert_eq!(presented(Some("Bearer sv_live_abc"), ""), Ok("sv_live_abc"));
        assert_eq!(presented(Some("bearer   sv_live_abc "), "limit=5"), Ok("sv_live_abc"));
        assert_eq!(presented(None, ""), Err(KeyRefusal::Missing));
        assert_eq!(presented(Some("Basic dXNlcg=="), ""), Err(KeyRefusal::NotBearer));
        assert_eq!(presented(Some("Bearer "), ""), Err(KeyRefusal::NotBearer));
        assert_eq!(presented(Some("sv_live_abc"), ""), Err(KeyRefusal::NotBearer));
        assert_eq!(presented(Some("Bearer sv_live_abc"), "api_key=sv_live_abc"), Err(KeyRefusal::InQuery));
        assert_eq!(presented(None, "limit=5&ACCESS_TOKEN=x"), Err(KeyRefusal::InQuery));
        assert_eq!(presented(None, "q=sv_live_123"), Err(KeyRefusal::InQuery));
    }

    #[test]
    fn revoked_and_expired_keys_stop_at_once() {
        assert_eq!(check_active(None, None, 100), Ok(()));
        assert_eq!(check_active(None, Some(101), 100), Ok(()));
        assert_eq!(check_active(None, Some(100), 100), Err(KeyRefusal::Expired));
        assert_eq!(check_active(Some(50), Some(500), 100), Err(KeyRefusal::Revoked));
    }

    #[test]
    fn a_key_carries_a_subset_of_its_creators_permissions() {
        let ok = check_new_key(
            Role::Owner,
            " CRM sync ",
            &["pf.export_requests.view".into(), "pf.import.upload".into()],
            "90",
        )
        .unwrap();
        assert_eq!(ok.0, "CRM sync");
        assert_eq!(ok.1, vec![Permission::ImportUpload, Permission::ExportRequestsView], "in the usual order");
        assert_eq!(ok.2, Some(90));
        let never = check_new_key(Role::Importer, "x", &["pf.import.upload".into()], "never").unwrap();
        assert_eq!(never.2, None);
        let e = check_new_key(Role::Importer, "x", &["pf.export_requests.create".into()], "").unwrap_err();
        assert!(e.contains("you do not hold pf.export_requests.create"), "{e}");
        let e = check_new_key(Role::Owner, "x", &["pf.members.manage".into()], "").unwrap_err();
        assert!(e.contains("not a permission an API key can carry"), "{e}");
        assert!(check_new_key(Role::Owner, "x", &[], "").unwrap_err().contains("at least one permission"));
        assert!(check_new_key(Role::Owner, "  ", &["pf.import.upload".into()], "").unwrap_err().contains("name"));
        assert!(check_new_key(Role::Owner, "x", &["pf.import.upload".into()], "7").unwrap_err().contains("expiry"));
    }

    #[test]
    fn stored_permissions_round_trip_and_unknown_names_grant_nothing() {
        let ps = [Permission::ImportUpload, Permission::MarketplaceImport];
        assert_eq!(parse_permissions(&format_permissions(&ps)), ps);
        assert_eq!(parse_permissions("pf.members.manage pf.import.upload bogus"), [Permission::ImportUpload]);
    }
}
