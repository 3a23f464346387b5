//! A signed-in client of the running app for the benchmarks that measure it over HTTP:
//! cookies kept by hand (only the session cookie matters), CSRF tokens read off the pages.

/// One person's browser: an HTTP client and the session cookie it carries.
pub(super) struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
    /// The CSRF token of the last page read that had one.
    token: String,
}

impl Browser {
    /// A client of the app at `base`, not signed in.
    pub(super) fn new(base: &str) -> anyhow::Result<Browser> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Browser { http, base: base.to_string(), cookie: String::new(), token: String::new() })
    }

    /// A client signed in as `email`.
    pub(super) async fn signed_in(base: &str, email: &str, password: &str) -> anyhow::Result<Browser> {
        let mut b = Browser::new(base)?;
        let (_, sent) = b.sign_in(email, password).await?;
        anyhow::ensure!(sent == 303, "signing in answered {sent}");
        Ok(b)
    }

    /// GETs `path`: the status and the body.
    pub(super) async fn get(&mut self, path: &str) -> anyhow::Result<(u16, String)> {
        let res = self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await?;
        self.keep_cookie(&res);
        let status = res.status().as_u16();
        let body = res.text().await?;
        if let Some(t) = csrf_token(&body) {
            self.token = t;
        }
        Ok((status, body))
    }

    /// GETs `path` of the JSON API with `key` (no cookie): the status.
    pub(super) async fn get_api(&self, path: &str, key: &str) -> anyhow::Result<u16> {
        let res = self.http.get(format!("{}{path}", self.base)).bearer_auth(key).send().await?;
        let status = res.status().as_u16();
        let _ = res.bytes().await?;
        Ok(status)
    }

    /// POSTs a form with the CSRF token of the last page read: the status.
    pub(super) async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> anyhow::Result<u16> {
        self.post(path, fields, false).await
    }

    /// [`post_form`](Self::post_form) as the page's script sends it (`HX-Request`).
    pub(super) async fn post_htmx(&mut self, path: &str, fields: &[(&str, &str)]) -> anyhow::Result<u16> {
        self.post(path, fields, true).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)], htmx: bool) -> anyhow::Result<u16> {
        let token = self.token.clone();
        let mut all = fields.to_vec();
        all.push(("csrf_token", &token));
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded");
        if htmx {
            req = req.header("hx-request", "true");
        }
        let res = req.body(serde_urlencoded::to_string(&all)?).send().await?;
        self.keep_cookie(&res);
        let status = res.status().as_u16();
        let _ = res.bytes().await?;
        Ok(status)
    }

    /// The sign-in page, then the form sent: each request's status.
    pub(super) async fn sign_in(&mut self, email: &str, password: &str) -> anyhow::Result<(u16, u16)> {
        self.cookie.clear();
        let (page, _) = self.get("/login").await?;
        anyhow::ensure!(!self.token.is_empty(), "the sign-in form has no CSRF token");
        let sent = self.post_form("/login", &[("email", email), ("password", password)]).await?;
        Ok((page, sent))
    }

    fn keep_cookie(&mut self, res: &reqwest::Response) {
        let set = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("stevedore_session="))
            .and_then(|v| v.split(';').next());
        match set {
            // signing out removes the cookie
            Some("stevedore_session=") => self.cookie.clear(),
            Some(c) => self.cookie = c.to_string(),
            None => {}
        }
    }
}

/// The value of the first `csrf_token` field of a page.
fn csrf_token(page: &str) -> Option<String> {
    let at = page.find("name=\"csrf_token\"")?;
    let rest = &page[at..];
    let v = rest.find("value=\"")? + 7;
    Some(rest[v..].split('"').next()?.to_string())
}

/// The `p` quantile (0 to 1) of sorted figures.
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_csrf_token_of_a_form() {
        let page = r#"<form><input type="hidden" name="csrf_token" value="abc123"></form>"#;
        assert_eq!(csrf_token(page).as_deref(), Some("abc123"));
        assert_eq!(csrf_token("<p>no form</p>"), None);
    }

    #[test]
    fn percentiles_of_sorted_figures() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
