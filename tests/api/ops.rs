//! Health check, security headers, error pages, the demo login.

use awc::http::StatusCode;

use crate::helpers::{app_with, import_file, spawn_app};

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

#[actix_web::test]
async fn readyz_checks_the_database_the_files_and_the_migrations() {
    let app = spawn_app().await;
    let r = app.client().get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v, serde_json::json!({"status": "ready", "database": "ok", "storage": "ok", "migrations": "current"}));
    // a database a migration behind this build is not ready, and says so
    app.exec("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)", &[]).await;
    let r = app.client().get("/readyz").await;
    assert_eq!(r.status, 503);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], "not_ready");
    assert!(v["migrations"].as_str().unwrap().starts_with("behind: "), "{v}");
    assert_eq!(v["database"], "ok");
}

#[actix_web::test]
async fn metrics_need_the_configured_token_and_count_requests_jobs_and_rows() {
    let token = "metrics-token-for-the-test-0123";
    let (app, mut c) = app_with(|s| s.metrics_token = Some(token.into())).await;
    let mut anon = app.client();
    let r = anon.get("/metrics").await;
    assert_eq!((r.status.as_u16(), r.header("www-authenticate")), (401, "Bearer".to_string()));
    let r = anon.get_with("/metrics", &[("authorization", "Bearer wrong-token-of-some-length")]).await;
    assert_eq!(r.status, 401);
    let file = "code,name,kind\nLOC-1,North,clinic\nLOC-2,South,office\n";
    import_file(&app, &mut c, "locations", ("sites.csv", file.as_bytes())).await;
    let r = anon.get_with("/metrics", &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/plain; version=0.0.4"));
    // counted by the route's pattern, not its path
    let page = "stevedore_http_requests_total{method=\"GET\",route=\"/settings/imports/{id}\",status=\"200\"} ";
    assert!(r.body.contains(page), "{}", r.body);
    assert!(!r.body.contains("route=\"/settings/imports/1\""));
    assert!(r.body.contains("stevedore_http_request_duration_seconds_bucket{method=\"POST\",route=\"/settings/imports/{id}/start\",le=\"+Inf\"} "));
    assert!(r.body.contains("# TYPE stevedore_jobs gauge"));
    let rows: u64 = r
        .body
        .lines()
        .find_map(|l| l.strip_prefix("stevedore_import_rows_processed_total "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(rows >= 2, "the import's rows are counted: {rows}");
    assert!(r.body.lines().any(|l| l.starts_with("stevedore_export_bytes_written_total ")));
}

#[actix_web::test]
async fn metrics_are_off_without_a_token() {
    let app = spawn_app().await;
    assert_eq!(app.client().get("/metrics").await.status, 404);
}
