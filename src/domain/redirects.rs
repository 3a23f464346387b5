//! Where a redirect may go: only to a path on this site.

/// `next` if it is a path on this site (`/…`, not `//…` or `/\…`), else None.
pub fn safe_next(next: &str) -> Option<String> {
    let n = next.trim();
    let local = n.starts_with('/')
        && !n.starts_with("//")
        && !n.starts_with("/\\")
        && !n.chars().any(|c| c.is_control() || c == '\\');
    local.then(|| n.to_string())
}

/// Where to send someone who must sign in first; `next` is kept only if it is a local path.
pub fn login_redirect(next: &str, reason: Option<&str>) -> String {
    let mut q = vec![];
    if let Some(n) = safe_next(next)
        && n != "/"
    {
        q.push(("next", n));
    }
    if let Some(r) = reason {
        q.push(("reason", r.to_string()));
    }
    if q.is_empty() {
        "/login".into()
    } else {
        format!("/login?{}", serde_urlencoded::to_string(q).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next("/settings/members?page=2"), Some("/settings/members?page=2".into()));
        for bad in
            ["https://evil.example", "//evil.example", "/\\evil.example", "javascript:alert(1)", "", "evil", "/a\nb"]
        {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn login_redirects_keep_local_next_only() {
        assert_eq!(login_redirect("/", None), "/login");
        assert_eq!(login_redirect("/settings/imports", None), "/login?next=%2Fsettings%2Fimports");
        assert_eq!(login_redirect("//evil.example", Some("expired")), "/login?reason=expired");
    }
}
