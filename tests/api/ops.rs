//! Health check, security headers, error pages, the demo login.

use awc::http::StatusCode;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn healthz_reports_the_database() {
    let app = spawn_app().await;
    let r = app.client().get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["database"], if std::env::var("TEST_DATABASE_URL").is_ok() { "postgres" } else { "sqlite" });
}

#[actix_web::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in ["/login", "/healthz", "/static/app.css", "/nope"] {
        let r = app.client().get(path).await;
        let csp = r.header("content-security-policy");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.header("x-content-type-options"), "nosniff");
        assert_eq!(r.header("referrer-policy"), "same-origin");
        assert_eq!(r.header("x-request-id").len(), 16);
    }
    let css = app.client().get("/static/app.css").await;
    assert_eq!(css.header("content-type"), "text/css; charset=utf-8");
    assert!(css.header("cache-control").contains("max-age"));
    assert!(app.client().get("/login").await.header("cache-control").contains("no-store"));
}

#[actix_web::test]
async fn unknown_pages_get_a_404_page() {
    let app = spawn_app().await;
    let r = app.client().get("/no/such/page").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("Page not found"));
    assert_eq!(app.client().get("/static/nope.js").await.status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn the_first_start_creates_a_demo_owner_with_a_one_time_password() {
    let app = spawn_app().await;
    let otp = app.demo_password.clone().expect("a demo login on a fresh database");
    let mut c = app.client();
    assert_eq!(c.login("admin@example.com", &otp).await.status, StatusCode::SEE_OTHER);
    assert_eq!(c.get("/").await.location(), "/account/password");
    // a second start on the same database creates nothing
    assert!(stevedore::startup::create_demo_org(&app.db).await.unwrap().is_none());
}
