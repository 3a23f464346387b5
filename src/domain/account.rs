//! Account values that must be well formed before they reach storage: emails, org
//! slugs, new passwords.

use std::fmt;

/// A lower-cased, trimmed email address with one `@`, a local part and a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err("Enter an email address.".into());
        }
        if s.len() > 254 {
            return Err("That email address is longer than 254 characters.".into());
        }
        let valid = match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if !valid {
            return Err(format!("\"{}\" is not an email address (expected name@example.com).", raw.trim()));
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An organization's URL-safe short name: 2-40 of a-z, 0-9 and inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSlug(String);

impl OrgSlug {
    pub fn parse(raw: &str) -> Result<OrgSlug, String> {
        let s = raw.trim();
        let ok_chars = s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if s.len() < 2 || s.len() > 40 || !ok_chars || s.starts_with('-') || s.ends_with('-') {
            return Err(format!(
                "\"{s}\" is not an organization slug (2 to 40 lower-case letters, digits and inner hyphens)."
            ));
        }
        Ok(OrgSlug(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A display name made from the slug: `acme-health` becomes `Acme Health`.
    pub fn title(&self) -> String {
        self.0
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The shortest password we accept.
pub const MIN_PASSWORD_LEN: usize = 12;

/// A password a user chose: at least 12 characters, at most 256, not all the same.
pub fn check_new_password(pw: &str) -> Result<(), String> {
    let n = pw.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(format!("Use at least {MIN_PASSWORD_LEN} characters (this one has {n})."));
    }
    if n > 256 {
        return Err("Use at most 256 characters.".into());
    }
    let mut chars = pw.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return Err("Use more than one distinct character.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(Email::parse("  Ada@Example.COM ").map(|e| e.0), Ok("ada@example.com".into()));
    }

    #[test]
    fn bad_emails_are_refused_with_the_value() {
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com", "a@b@c.com", "a@.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse("ada").unwrap_err().contains("\"ada\""));
    }

    #[test]
    fn slugs() {
        assert!(OrgSlug::parse("acme-health").is_ok());
        for bad in ["A", "acme_health", "-acme", "acme-", "Acme", "a"] {
            assert!(OrgSlug::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(OrgSlug::parse("acme-health").unwrap().title(), "Acme Health");
    }

    #[test]
    fn passwords() {
        assert!(check_new_password("short").unwrap_err().contains("at least 12"));
        assert!(check_new_password("aaaaaaaaaaaaaaa").is_err());
        assert!(check_new_password("correct horse battery").is_ok());
    }
}
