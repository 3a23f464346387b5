//! Signing in and out, throttling, sessions, CSRF, redirects, hostile input.

use awc::http::StatusCode;

use crate::helpers::{PASSWORD, app, attrs, spawn_app, spawn_app_with, text};

#[actix_web::test]
async fn login_succeeds_and_shows_the_org() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.client();
    let r = c.login("ada@acme.test", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/");
    let home = c.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(text(&home.body, "main h1"), "Acme", "{}", home.body);
    assert!(home.body.contains("Owner"));
}

#[actix_web::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.client();
    let wrong = c.login("ada@acme.test", "not the password").await;
    let unknown = c.login("nobody@acme.test", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Incorrect email or password."));
    assert!(unknown.body.contains("Incorrect email or password."));
    // the email is kept in the form, the password is not
    assert_eq!(attrs(&wrong.body, "input[name=\"email\"]", "value"), ["ada@acme.test"]);
    assert!(!wrong.body.contains("not the password"));
    assert!(c.session_cookie().is_some());
    assert_eq!(c.get("/").await.status, StatusCode::SEE_OTHER, "no session after a failed login");
}

#[actix_web::test]
async fn five_failures_lock_the_account_even_for_the_right_password() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.client();
    for _ in 0..5 {
        assert_eq!(c.login("ada@acme.test", "guess").await.status, StatusCode::UNAUTHORIZED);
    }
    let locked = c.login("ada@acme.test", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.body.contains("Too many failed sign-in attempts"), "{}", locked.body);
    assert!(locked.body.contains("try again in 15 minutes"));
    // another account from the same address is not locked yet
    app.user("acme", "bob@acme.test", "viewer").await;
    assert_eq!(app.client().login("bob@acme.test", PASSWORD).await.status, StatusCode::SEE_OTHER);
}

#[actix_web::test]
async fn twenty_failures_from_one_address_lock_that_address() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.client();
    for i in 0..20 {
        let r = c.login(&format!("guess{i}@acme.test"), "guess").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = c.login("ada@acme.test", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn session_id_changes_at_login_and_logout_invalidates_it() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.client();
    c.get("/login").await;
    let anonymous = c.session_cookie().expect("the sign-in form starts a session for its CSRF token");
    assert_eq!(c.login("ada@acme.test", PASSWORD).await.status, StatusCode::SEE_OTHER);
    let signed_in = c.session_cookie().unwrap();
    assert_ne!(anonymous, signed_in, "session must be renewed at login");

    // the pre-login session id does not carry the sign-in
    let mut fixated = app.client();
    fixated.cookies.insert("stevedore_session".into(), anonymous);
    assert_eq!(fixated.get("/").await.status, StatusCode::SEE_OTHER);

    // a copy of the cookie (another tab) sees the logout too
    let mut other_tab = app.client();
    other_tab.cookies = c.cookies.clone();
    assert_eq!(other_tab.get("/").await.status, StatusCode::OK);
    let out = c.submit("/", "/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login?reason=signed_out");
    let after = other_tab.get("/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(after.location().starts_with("/login"));
    let login = c.get("/login?reason=signed_out").await;
    assert!(login.body.contains("You have been signed out."));
}

#[actix_web::test]
async fn cookies_are_http_only_and_same_site_lax() {
    let app = spawn_app().await;
    let r = app.client().get("/login").await;
    let cookie = r.header("set-cookie");
    assert!(cookie.starts_with("stevedore_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"));
    assert!(cookie.contains("SameSite=Lax"));
    assert!(!cookie.contains("Secure"));
    let secure = spawn_app_with(|s| s.secure_cookies = "true".into()).await;
    assert!(secure.client().get("/login").await.header("set-cookie").contains("Secure"));
}

#[actix_web::test]
async fn an_idle_session_expires() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.signed_in("ada@acme.test").await;
    assert_eq!(c.get("/").await.status, StatusCode::OK);
    // as if 30 idle minutes had passed
    app.exec("UPDATE sessions SET expires_at = 0", &[]).await;
    assert_eq!(c.get("/").await.status, StatusCode::SEE_OTHER);
}

#[actix_web::test]
async fn a_session_past_its_lifetime_ends_with_a_message() {
    let app = spawn_app_with(|s| {
        s.idle_timeout_minutes = "1".into();
        s.session_lifetime_minutes = "1".into();
    })
    .await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.signed_in("ada@acme.test").await;
    assert_eq!(c.get("/").await.status, StatusCode::OK);
    // rewrite the stored sign-in time to two minutes ago
    let rewrite = "UPDATE sessions SET state = REPLACE(state, SUBSTR(state, INSTR(state, '\"auth_at\":\"') + 11, 10), '1000000000')";
    let rewrite_pg =
        "UPDATE sessions SET state = regexp_replace(state, '\"auth_at\":\"[0-9]+\"', '\"auth_at\":\"1000000000\"')";
    app.exec(if app.db.backend() == "postgres" { rewrite_pg } else { rewrite }, &[]).await;
    let r = c.get("/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login?reason=expired");
    let form = c.get(&r.location()).await;
    assert!(form.body.contains("Your session has expired."));
    // the form shown after an ended session carries a token that works
    let token = form.csrf();
    let again =
        c.post_form("/login", &[("email", "ada@acme.test"), ("password", PASSWORD), ("csrf_token", &token)]).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
    assert_eq!(c.get("/").await.status, StatusCode::OK);
}

#[actix_web::test]
async fn a_request_in_flight_cannot_revive_a_deleted_session() {
    use actix_session::storage::{SessionKey, SessionStore};
    use std::collections::HashMap;
    let app = spawn_app().await;
    let store = stevedore::auth::session::DbSessionStore::new(app.db.clone());
    let ttl = actix_web::cookie::time::Duration::minutes(30);
    let signed_in: HashMap<String, String> =
        [("uid".to_string(), "1".to_string()), ("org".to_string(), "1".to_string())].into_iter().collect();
    let key = store.save(signed_in.clone(), &ttl).await.unwrap();
    let key_text = key.as_ref().to_string();
    // sign-out or a password change elsewhere deletes the row …
    store.delete(&key).await.unwrap();
    // … while a request that loaded the state earlier finishes and saves it
    let new_key = store.update(SessionKey::try_from(key_text).unwrap(), signed_in, &ttl).await.unwrap();
    let state = store.load(&new_key).await.unwrap().unwrap();
    assert!(state.is_empty(), "the new session is anonymous, not signed in: {state:?}");
}

#[actix_web::test]
async fn guesses_right_after_a_success_count_even_in_the_same_second() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut guessers = vec![];
    for _ in 0..10 {
        let mut c = app.client();
        let token = c.get("/login").await.csrf();
        guessers.push((c, token));
    }
    // the real user signs in; ten guesses follow at once (attempts are ordered by arrival,
    // so the success forgives only what came before it, whatever the clock says)
    assert_eq!(app.client().login("ada@acme.test", PASSWORD).await.status, StatusCode::SEE_OTHER);
    let results = futures_util::future::join_all(guessers.iter_mut().map(|(c, token)| {
        let token = token.clone();
        async move {
            c.post_form("/login", &[("email", "ada@acme.test"), ("password", "guess"), ("csrf_token", &token)])
                .await
                .status
        }
    }))
    .await;
    let checked = results.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = results.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (5, 5), "five guesses checked, then the lock: {results:?}");
    for _ in 0..5 {
        assert_eq!(app.client().login("ada@acme.test", "guess").await.status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(app.client().login("ada@acme.test", PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn concurrent_guesses_cannot_exceed_the_limit() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut clients = vec![];
    for _ in 0..15 {
        let mut c = app.client();
        let token = c.get("/login").await.csrf();
        clients.push((c, token));
    }
    let results = futures_util::future::join_all(clients.iter_mut().map(|(c, token)| {
        let token = token.clone();
        async move {
            c.post_form("/login", &[("email", "ada@acme.test"), ("password", "guess"), ("csrf_token", &token)])
                .await
                .status
        }
    }))
    .await;
    let checked = results.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = results.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(checked + refused, 15, "{results:?}");
    assert!(checked <= 5, "at most 5 guesses were checked: {results:?}");
    // whatever the interleaving, exactly five guesses in all are checked before the lock
    let mut more = 0;
    loop {
        match app.client().login("ada@acme.test", "guess").await.status {
            StatusCode::UNAUTHORIZED => more += 1,
            StatusCode::TOO_MANY_REQUESTS => break,
            other => panic!("{other}"),
        }
        assert!(more <= 5, "never locked");
    }
    assert_eq!(checked + more, 5, "{checked} concurrent + {more} later");
    assert_eq!(app.client().login("ada@acme.test", PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn post_without_a_valid_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.signed_in("ada@acme.test").await;
    let fields = [("email", "eve@acme.test"), ("role", "owner")];
    let missing = c.post_form("/settings/members", &fields).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.body.contains("nothing was changed"), "{}", missing.body);
    let wrong = c
        .post_form("/settings/members", &[("email", "eve@acme.test"), ("role", "owner"), ("csrf_token", "forged")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let json = c.post_raw("/settings/members", "application/json", br#"{"email":"eve@acme.test"}"#.to_vec()).await;
    assert_eq!(json.status, StatusCode::FORBIDDEN);
    assert!(stevedore::store::accounts::user_by_email(&app.db, "eve@acme.test").await.unwrap().is_none());
    // logout without a token does not sign out
    assert_eq!(c.post_form("/logout", &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.get("/").await.status, StatusCode::OK);
    // and a login form without a token is refused too
    let mut anon = app.client();
    let r = anon.post_form("/login", &[("email", "ada@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn a_form_sent_from_another_site_is_refused_even_with_the_token() {
    let (app, mut c) = app().await;
    let token = c.get("/settings/members").await.csrf();
    let base = app.base.clone();
    let host = base.trim_start_matches("http://").to_string();
    let fields = [("email", "new@acme.test"), ("name", "New"), ("role", "viewer"), ("csrf_token", token.as_str())];
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", base.as_str()), ("sec-fetch-site", "cross-site")],
    ] {
        let r = c.post_form_with("/settings/members", &fields, &headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert!(r.body.contains("sent from another site, so nothing was changed"), "{}", r.body);
    }
    assert!(!c.get("/settings/members").await.body.contains("new@acme.test"), "nobody was added");
    let same = [("origin", base.as_str()), ("host", host.as_str())];
    let r = c.post_form_with("/settings/members", &fields, &same).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the app's own origin is fine: {}", r.body);
    assert!(c.get("/settings/members").await.body.contains("new@acme.test"));
}

#[actix_web::test]
async fn pages_redirect_to_login_with_a_local_next_only() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.client();
    let r = c.get("/settings/members?page=2").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login?next=%2Fsettings%2Fmembers%3Fpage%3D2");
    let form = c.get(&r.location()).await;
    assert_eq!(attrs(&form.body, "input[name=\"next\"]", "value"), ["/settings/members?page=2"]);

    let token = c.get("/login").await.csrf();
    let ok = c
        .post_form(
            "/login",
            &[
                ("email", "ada@acme.test"),
                ("password", PASSWORD),
                ("next", "/settings/members"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(ok.location(), "/settings/members");

    for evil in ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"] {
        let mut c = app.client();
        let token = c.get("/login").await.csrf();
        let r = c
            .post_form(
                "/login",
                &[("email", "ada@acme.test"), ("password", PASSWORD), ("next", evil), ("csrf_token", &token)],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.location(), "/", "next={evil}");
        let form = app.client().get(&format!("/login?next={}", evil.replace('/', "%2F"))).await;
        assert!(!form.body.contains("evil.example"), "the form must not carry {evil}");
    }
}

#[actix_web::test]
async fn malformed_cookies_and_oversize_bodies_get_4xx_not_500() {
    let app = spawn_app().await;
    for garbage in ["%%%", "a", &"x".repeat(3000), "two words", "eyJhbGciOi.invalid.sig"] {
        let mut c = app.client();
        c.cookies.insert("stevedore_session".into(), garbage.to_string());
        let r = c.get("/").await;
        assert!(r.status.is_redirection() || r.status.is_client_error(), "{garbage:?} -> {}", r.status);
        let r = c.get("/login").await;
        assert_eq!(r.status, StatusCode::OK, "{garbage:?}");
    }
    let mut c = app.client();
    let token = c.get("/login").await.csrf();
    let big = format!("csrf_token={token}&email=a%40b.test&password={}", "x".repeat(200_000));
    let r = c.post_raw("/login", "application/x-www-form-urlencoded", big.into_bytes()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.body.contains("larger than the limit of 64 KiB"), "{}", r.body);
    let r = c.post_raw("/login", "application/x-www-form-urlencoded", b"csrf_token=%zz&&&=".to_vec()).await;
    assert!(r.status.is_client_error(), "{}", r.status);
    let r = c.post_form("/login", &[("csrf_token", &token), ("email", "x@y.test")]).await;
    assert!(r.status.is_client_error(), "missing password field: {}", r.status);
}

#[actix_web::test]
async fn a_disabled_user_is_signed_out_at_the_next_request() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    app.user("acme", "bob@acme.test", "viewer").await;
    let mut bob = app.signed_in("bob@acme.test").await;
    assert_eq!(bob.get("/").await.status, StatusCode::OK);
    let id = stevedore::domain::ids::UserId::new(app.user_id("bob@acme.test").await);
    stevedore::store::accounts::set_disabled(&app.db, id, true).await.unwrap();
    assert_eq!(bob.get("/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(app.client().login("bob@acme.test", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn page_views_extend_the_session_without_writing_it_each_time() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.signed_in("ada@acme.test").await;
    assert_eq!(c.get("/").await.status, StatusCode::OK, "the first page after signing in");
    let expiry = "SELECT MAX(expires_at) FROM sessions";
    let signed_in = app.scalar(expiry, &[]).await;
    // mark the row: a request that wrote the expiry would overwrite the mark
    app.exec("UPDATE sessions SET expires_at = expires_at - 30", &[]).await;
    assert_eq!(c.get("/").await.status, StatusCode::OK);
    assert_eq!(app.scalar(expiry, &[]).await, signed_in - 30, "within the slack, a page view writes nothing");
    // once the expiry lags by more than a minute (of the 30-minute idle timeout), it moves
    app.exec("UPDATE sessions SET expires_at = expires_at - 100", &[]).await;
    assert_eq!(c.get("/").await.status, StatusCode::OK);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let moved = app.scalar(expiry, &[]).await;
    assert!(moved >= now + 30 * 60 - 5, "extended to the full idle timeout: {moved} vs now {now}");
}
