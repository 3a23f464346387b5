//! The JSON API (issue 13): API keys on their settings page, and `/api/v1` driven with them
//! the way an integrator does, over HTTP.

use awc::http::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const LOCATIONS: &str =
    "code,name,kind,capacity\nLOC-1,Main Clinic,clinic,40\nLOC-2,North,clinic,ten\nLOC-3,Depot,office,5\n";

/// Creates a key on the settings page as `c`'s user; the secret the page shows once.
pub(crate) async fn create_key(c: &mut Client, name: &str, permissions: &[&str], expiry: &str) -> String {
    let mut fields = vec![("name", name), ("expires_in_days", expiry)];
    fields.extend(permissions.iter().map(|p| ("permissions", *p)));
    let r = c.submit("/settings/api-keys", "/settings/api-keys", &fields).await;
    assert_eq!(r.see_other(), "/settings/api-keys");
    let page = c.get("/settings/api-keys").await;
    let secret = text(&page.body, "code.secret");
    assert!(secret.starts_with("sv_live_"), "the secret is shown: {}", page.body);
    let again = c.get("/settings/api-keys").await;
    assert!(!again.body.contains(&secret), "the secret is shown only once");
    secret
}

async fn api(c: &mut Client, path: &str, key: &str) -> (Resp, Value) {
    let r = c.get_with(path, &[("authorization", &format!("Bearer {key}"))]).await;
    let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r, v)
}

fn assert_error(r: &Resp, v: &Value, status: StatusCode, kind: &str, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(v["error"]["type"], kind, "{}", r.body);
    assert_eq!(v["error"]["code"], code, "{}", r.body);
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
    assert!(v["error"].get("param").is_some(), "param is always there (null or a name): {}", r.body);
    assert!(r.header("content-type").starts_with("application/json"), "{}", r.header("content-type"));
    assert!(!r.header("x-request-id").is_empty(), "every answer has a request id");
}

#[actix_web::test]
async fn owners_create_list_and_revoke_keys_and_only_owners_may() {
    let (app, mut c) = app().await;
    let empty = c.get("/settings/api-keys").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains("No API keys yet"), "{}", empty.body);

    // bad input keeps the dialog open with the reason, and creates nothing
    let r = c.submit("/settings/api-keys", "/settings/api-keys", &[("name", "Sync"), ("expires_in_days", "90")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Choose at least one permission"), "{}", r.body);
    let r = c
        .submit(
            "/settings/api-keys",
            "/settings/api-keys",
            &[("name", "Sync"), ("permissions", "pf.members.manage"), ("expires_in_days", "90")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("not a permission an API key can carry"), "{}", r.body);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM api_keys WHERE id > $1", &[0]).await, 0);

    let secret = create_key(&mut c, "Warehouse sync", &["pf.import.upload", "pf.export_requests.view"], "90").await;
    let page = c.get("/settings/api-keys").await;
    let row = text(&page.body, "#api-keys tbody tr");
    assert!(row.contains("Warehouse sync") && row.contains(&secret[..14]), "{row}");
    assert!(row.contains("pf.import.upload") && row.contains("pf.export_requests.view"), "{row}");
    assert!(row.contains(OWNER) && row.contains("Never used") && row.contains("Active"), "{row}");
    let stored: i64 =
        app.scalar("SELECT COUNT(*) FROM api_keys WHERE length(secret_hash) = 64 AND id > $1", &[0]).await;
    assert_eq!(stored, 1, "only a hash is kept");

    // used: the list says when and from where
    let mut api_client = app.client();
    let (r, _) = api(&mut api_client, "/api/v1/imports", &secret).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let page = c.get("/settings/api-keys").await;
    let row = text(&page.body, "#api-keys tbody tr");
    assert!(!row.contains("Never used") && row.contains("from 127.0.0.1"), "{row}");

    // revoke behind its dialog (no script: ?revoke=ID opens it)
    let key_id = attrs(&page.body, "#api-keys tbody tr", "data-key")[0].clone();
    let dialog = c.get(&format!("/settings/api-keys?revoke={key_id}")).await;
    assert!(html_of(&dialog.body, &format!("#revoke-{key_id}")).contains(" open"), "the dialog is open");
    let r = c.submit("/settings/api-keys", &format!("/settings/api-keys/{key_id}/revoke"), &[]).await;
    assert_eq!(r.see_other(), "/settings/api-keys");
    let page = c.get("/settings/api-keys").await;
    assert!(text(&page.body, "#api-keys tbody tr").contains("Revoked"));
    let (r, v) = api(&mut api_client, "/api/v1/imports", &secret).await;
    assert_error(&r, &v, StatusCode::UNAUTHORIZED, "authentication_error", "api_key_revoked");
    let audit = c.get("/settings/audit").await;
    let audit = text(&audit.body, "main");
    assert!(audit.contains("api key created") && audit.contains("api key revoked"), "audit events: {audit}");

    // a key of another org cannot be revoked from here (404), and non-owners see no page
    assert_eq!(
        c.submit("/settings/api-keys", "/settings/api-keys/999/revoke", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    app.user("acme", "ivy@acme.test", "importer").await;
    let mut importer = app.signed_in("ivy@acme.test").await;
    assert_eq!(importer.get("/settings/api-keys").await.status, StatusCode::FORBIDDEN);
    assert!(!importer.get("/").await.body.contains("/settings/api-keys"), "no link to a page they cannot open");
}

#[actix_web::test]
async fn only_a_valid_bearer_key_opens_the_api() {
    let (app, mut c) = app().await;
    let secret = create_key(&mut c, "k", &["pf.import.upload"], "30").await;
    let mut anon = app.client();
    let r = anon.get("/api/v1/imports").await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_error(&r, &v, StatusCode::UNAUTHORIZED, "authentication_error", "api_key_missing");
    assert!(r.header("www-authenticate").starts_with("Bearer"));

    // a signed-in browser session is not a key
    let r = c.get("/api/v1/imports").await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_error(&r, &v, StatusCode::UNAUTHORIZED, "authentication_error", "api_key_missing");

    // a key in the address is refused even with a good header
    let (r, v) = api(&mut anon, &format!("/api/v1/imports?api_key={secret}"), &secret).await;
    assert_error(&r, &v, StatusCode::UNAUTHORIZED, "authentication_error", "api_key_in_query");
    let r = anon.get_with("/api/v1/imports", &[("authorization", &format!("Basic {secret}"))]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let (r, v) = api(&mut anon, "/api/v1/imports", "sv_live_0000").await;
    assert_error(&r, &v, StatusCode::UNAUTHORIZED, "authentication_error", "api_key_invalid");

    // a key past its expiry is refused (the time is the key's own and never changes, so a
    // key the app remembers expires on time too: here one whose time is moved into the past
    // before its first use stands in for a month going by)
    let (r, _) = api(&mut anon, "/api/v1/imports", &secret).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let expiring = create_key(&mut c, "expiring", &["pf.import.upload"], "30").await;
    app.exec("UPDATE api_keys SET expires_at = $1 WHERE name = 'expiring'", &[stevedore::now() - 1]).await;
    let (r, v) = api(&mut anon, "/api/v1/imports", &expiring).await;
    assert_error(&r, &v, StatusCode::UNAUTHORIZED, "authentication_error", "api_key_expired");
    let (r, _) = api(&mut anon, "/api/v1/imports", &secret).await;
    assert_eq!(r.status, StatusCode::OK, "the other key still works: {}", r.body);

    // a key without the permission: 403 naming it
    let export_only = create_key(&mut c, "exports", &["pf.export_requests.view"], "never").await;
    for path in ["/api/v1/imports", "/api/v1/imports/1", "/api/v1/resources", "/api/v1/resources/locations"] {
        let (r, v) = api(&mut anon, path, &export_only).await;
        assert_error(&r, &v, StatusCode::FORBIDDEN, "permission_error", "permission_missing");
        assert_eq!(v["error"]["param"], "pf.import.upload", "{path}");
    }

    // unknown endpoints answer in the same shape
    let (r, v) = api(&mut anon, "/api/v1/nothing-here", &export_only).await;
    assert_error(&r, &v, StatusCode::NOT_FOUND, "invalid_request_error", "route_missing");
    let r =
        anon.send("DELETE", "/api/v1/imports", &[("authorization", &format!("Bearer {export_only}"))], vec![]).await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_error(&r, &v, StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", "method_not_allowed");
    assert_eq!(r.header("allow"), "GET, POST");
    let r = anon.get("/api/v2/imports").await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_error(&r, &v, StatusCode::NOT_FOUND, "not_found_error", "resource_missing");
}

#[actix_web::test]
async fn an_import_reads_as_seed_004s_object_with_working_signed_links() {
    let (app, mut c) = app().await;
    let key = create_key(&mut c, "reader", &["pf.import.upload"], "90").await;
    let id = import_file(&app, &mut c, "locations", ("locations.csv", LOCATIONS.as_bytes())).await;
    let mut client = app.client();
    let (r, v) = api(&mut client, &format!("/api/v1/imports/{id}"), &key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(v["object"], "import");
    assert_eq!(v["id"], id.to_string());
    assert_eq!(v["organization_id"], app.org_id("acme").await.to_string());
    assert_eq!(v["resource"], "locations");
    assert_eq!(v["action"], "merge");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["duplicate_handling"], "ignore_all");
    assert_eq!(v["created_by"], format!("user_{}", app.user_id(OWNER).await));
    assert_eq!(v["column_mapping"]["code"], "code");
    assert_eq!(v["has_upload_file"], true);
    assert_eq!(v["has_errors_file"], true);
    assert_eq!(v["checksum"].as_str().map(str::len), Some(32));
    let stats = &v["stats"];
    assert_eq!(
        (stats["rows"].as_i64(), stats["created"].as_i64(), stats["invalid"].as_i64()),
        (Some(3), Some(2), Some(1))
    );
    let phases = v["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["prevalidation", "preparsing", "transforming", "parsing", "validation", "processing", "cleanup"]
    );
    let parsing = &phases[3];
    assert_eq!((parsing["status"].as_str(), parsing["issues"].as_i64()), (Some("completed"), Some(1)));
    assert!(parsing["finished_at"].as_i64() >= parsing["started_at"].as_i64());
    assert_eq!(v["_upload_url"], Value::Null);

    // the error links serve the rows the UI's downloads do, with no key
    let ui_errors = c.get(&format!("/settings/imports/{id}/errors.csv")).await.body;
    let mut anon = app.client();
    let link = v["_errors_csv_url"].as_str().unwrap();
    let r = anon.get(link).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, ui_errors);
    assert!(r.body.contains("LOC-2") && r.body.contains("capacity"), "{}", r.body);
    let json = anon.get(v["_errors_json_url"].as_str().unwrap()).await;
    let rows: Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(rows[0]["values"]["code"], "LOC-2");
    let original = anon.get(v["_upload_csv_url"].as_str().unwrap()).await;
    assert_eq!(original.body, LOCATIONS, "the CSV comes back as uploaded");
    let as_json = anon.get(v["_upload_json_url"].as_str().unwrap()).await;
    let rows: Value = serde_json::from_str(&as_json.body).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(3));
    assert_eq!(rows[2]["kind"], "office");

    // a link changed in any way opens nothing
    let tampered = link.replace("errors.csv", "upload.csv");
    let r = anon.get(&tampered).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("link_invalid"));
    let expired = link.replace("expires=", "expires=1");
    assert_eq!(anon.get(&expired).await.status, StatusCode::FORBIDDEN);

    // another org's import is not there; neither is nonsense
    app.user("globex", "gus@globex.test", "owner").await;
    let mut gus = app.signed_in("gus@globex.test").await;
    let other_key = create_key(&mut gus, "globex", &["pf.import.upload"], "90").await;
    let (r, v) = api(&mut client, &format!("/api/v1/imports/{id}"), &other_key).await;
    assert_error(&r, &v, StatusCode::NOT_FOUND, "not_found_error", "resource_missing");
    let (r, _) = api(&mut client, "/api/v1/imports/abc", &key).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let (r, v) = api(&mut client, &format!("/api/v1/imports/{id}?expand=x"), &key).await;
    assert_error(&r, &v, StatusCode::BAD_REQUEST, "invalid_request_error", "parameter_invalid");
    assert_eq!(v["error"]["param"], "expand");
}

#[actix_web::test]
async fn the_list_pages_every_import_exactly_once_while_new_ones_arrive() {
    let (app, mut c) = app().await;
    let key = create_key(&mut c, "lister", &["pf.import.upload"], "90").await;
    let mut ids = vec![];
    for n in 0..5 {
        let file = format!("code,name,kind\nL{n},Place {n},clinic\n");
        ids.push(validated(&app, &mut c, "locations", ("l.csv", file.as_bytes()), &[]).await);
    }
    let mut client = app.client();
    let mut seen: Vec<i64> = vec![];
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/imports?limit=2&starting_after={a}"),
            None => "/api/v1/imports?limit=2".into(),
        };
        let (r, v) = api(&mut client, &path, &key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(v["object"], "list");
        let page: Vec<i64> =
            v["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().parse().unwrap()).collect();
        assert!(page.len() <= 2);
        seen.extend(&page);
        // someone uploads meanwhile: it is newer than every page still to come
        let file = "code,name,kind\nNEW,New place,clinic\n";
        validated(&app, &mut c, "locations", ("new.csv", file.as_bytes()), &[]).await;
        if v["has_more"] != true {
            break;
        }
        after = Some(page.last().unwrap().to_string());
    }
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(seen, want, "newest first, each once, none of those created meanwhile");

    // back from the last page with ending_before
    let (_, v) = api(&mut client, &format!("/api/v1/imports?limit=2&ending_before={}", ids[0]), &key).await;
    let page: Vec<i64> =
        v["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(page, [ids[2], ids[1]]);
    assert_eq!(v["has_more"], true);

    // between two imports; an id that is not there is a 404
    let (_, v) =
        api(&mut client, &format!("/api/v1/imports?starting_after={}&ending_before={}", ids[4], ids[0]), &key).await;
    let page: Vec<i64> =
        v["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(page, [ids[3], ids[2], ids[1]]);
    let (r, v) = api(&mut client, "/api/v1/imports?starting_after=999999", &key).await;
    assert_error(&r, &v, StatusCode::NOT_FOUND, "not_found_error", "resource_missing");
    assert_eq!(v["error"]["param"], "starting_after");

    // filters
    let (_, v) = api(&mut client, "/api/v1/imports?status=queued&limit=100", &key).await;
    assert!(v["data"].as_array().unwrap().iter().all(|i| i["status"] == "queued"));
    assert_eq!(v["data"].as_array().unwrap().len(), 8, "five, and one uploaded after each of three pages");
    let (_, v) = api(&mut client, "/api/v1/imports?status=completed", &key).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 0);
    let (_, v) = api(&mut client, "/api/v1/imports?resource=staff", &key).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 0);
    let later = stevedore::now() + 60;
    let (_, v) = api(&mut client, &format!("/api/v1/imports?created_after={later}"), &key).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 0);
    let (_, v) = api(&mut client, &format!("/api/v1/imports?created_before={later}&limit=3"), &key).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    for (query, param) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("resource=nope", "resource"),
        ("limit=1&limit=2", "limit"),
    ] {
        let (r, v) = api(&mut client, &format!("/api/v1/imports?{query}"), &key).await;
        assert_error(&r, &v, StatusCode::BAD_REQUEST, "invalid_request_error", "parameter_invalid");
        assert_eq!(v["error"]["param"], param, "{query}");
    }
}

#[actix_web::test]
async fn resources_describe_their_fields_and_a_row_schema() {
    let (app, mut c) = app().await;
    let key = create_key(&mut c, "schema reader", &["pf.import.upload"], "90").await;
    let mut client = app.client();
    let (r, v) = api(&mut client, "/api/v1/resources", &key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let names: Vec<&str> = v["data"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"locations") && names.contains(&"staff"), "{names:?}");
    let (_, loc) = api(&mut client, "/api/v1/resources/locations", &key).await;
    assert_eq!(loc["object"], "resource");
    assert_eq!(loc["key"], "code");
    let code = loc["fields"].as_array().unwrap().iter().find(|f| f["name"] == "code").unwrap();
    assert_eq!((code["required"].as_bool(), code["key"].as_bool()), (Some(true), Some(true)));
    let kind = loc["fields"].as_array().unwrap().iter().find(|f| f["name"] == "kind").unwrap();
    assert_eq!(kind["type"], "enum");
    assert!(kind["allowed_values"].as_array().unwrap().iter().any(|a| a == "clinic"));
    let schema = &loc["row_schema"];
    assert_eq!(schema["type"], "object");
    assert!(schema["required"].as_array().unwrap().iter().any(|r| r == "code"));
    assert!(schema["properties"]["capacity"].is_object());
    let (r, v) = api(&mut client, "/api/v1/resources/unicorns", &key).await;
    assert_error(&r, &v, StatusCode::NOT_FOUND, "not_found_error", "resource_missing");
}

#[actix_web::test]
async fn a_key_past_its_rate_limit_waits_and_is_told_how_long() {
    let (app, mut c) = app_with(|s| s.api_rate_limit = "3".into()).await;
    let key = create_key(&mut c, "busy", &["pf.import.upload"], "90").await;
    let other = create_key(&mut c, "calm", &["pf.import.upload"], "90").await;
    let mut client = app.client();
    for left in [2, 1, 0] {
        let (r, _) = api(&mut client, "/api/v1/resources", &key).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("ratelimit-policy"), "\"default\";q=3;w=60");
        assert!(r.header("ratelimit").starts_with(&format!("\"default\";r={left};t=")), "{}", r.header("ratelimit"));
    }
    let (r, v) = api(&mut client, "/api/v1/resources", &key).await;
    assert_error(&r, &v, StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "rate_limited");
    let wait: i64 = r.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(r.header("ratelimit").starts_with("\"default\";r=0;"));
    let (r, _) = api(&mut client, "/api/v1/resources", &other).await;
    assert_eq!(r.status, StatusCode::OK, "each key has its own limit");
}

#[actix_web::test]
async fn the_openapi_document_and_its_reference_page_are_served() {
    let (app, _) = app().await;
    let mut anon = app.client();
    let r = anon.get("/api/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc: Value = serde_json::from_str(&r.body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/api/v1/imports/{id}"]["get"].is_object());
    let page = anon.get("/api/docs").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("/api/v1/imports/{id}") && page.body.contains("ImportObject"), "{}", page.body);
    assert!(page.header("content-security-policy").contains("default-src"), "the app's CSP as everywhere");
}

/// POSTs JSON with the key (and more headers); the response and its JSON.
pub(crate) async fn post_json(
    c: &mut Client,
    path: &str,
    key: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (Resp, Value) {
    let auth = format!("Bearer {key}");
    let mut all = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
    all.extend_from_slice(headers);
    let r = c.send("POST", path, &all, body.as_bytes().to_vec()).await;
    let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r, v)
}

/// PUTs a file to an upload URL (no key: the URL is signed).
pub(crate) async fn put_file(c: &mut Client, url: &str, content_type: &str, body: &[u8]) -> (Resp, Value) {
    let r = c.send("PUT", url, &[("content-type", content_type)], body.to_vec()).await;
    let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r, v)
}

async fn get_import(c: &mut Client, key: &str, id: &str) -> Value {
    let (r, v) = api(c, &format!("/api/v1/imports/{id}"), key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    v
}

#[actix_web::test]
async fn an_integrator_creates_uploads_and_the_import_runs_to_completed() {
    let (app, mut c) = app().await;
    let key = create_key(&mut c, "integrator", &["pf.import.upload"], "90").await;
    let mut client = app.client();
    let body = r#"{"resource": "locations", "name": "Nightly sync"}"#;
    let (r, created) = post_json(&mut client, "/api/v1/imports", &key, body, &[("idempotency-key", "nightly-1")]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(created["status"], "requested");
    assert_eq!(created["upload_mode"], "async");
    assert_eq!(created["name"], "Nightly sync");
    assert_eq!(created["has_upload_file"], false);
    let key_id = app.scalar("SELECT MAX(id) FROM api_keys WHERE id > $1", &[0]).await;
    assert_eq!(created["created_by"], format!("key_{key_id}"));
    let id = created["id"].as_str().unwrap().to_string();
    let url = created["_upload_url"].as_str().unwrap().to_string();
    // people see it too, waiting for its file
    let history = c.get("/settings/imports").await;
    assert!(text(&history.body, "main").contains("Awaiting file"), "{}", history.body);
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(text(&page.body, "main").contains("Awaiting file"), "{}", page.body);

    // the same request again is the same answer, not a second import
    let (again, replayed) =
        post_json(&mut client, "/api/v1/imports", &key, body, &[("idempotency-key", "nightly-1")]).await;
    assert_eq!((again.status, replayed["id"].clone()), (StatusCode::CREATED, created["id"].clone()));
    assert_eq!(again.header("idempotent-replayed"), "true");
    let other = r#"{"resource": "staff"}"#;
    let (r, v) = post_json(&mut client, "/api/v1/imports", &key, other, &[("idempotency-key", "nightly-1")]).await;
    assert_error(&r, &v, StatusCode::CONFLICT, "conflict_error", "idempotency_key_reused");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM imports WHERE id > $1", &[0]).await, 1);

    // the file, streamed to the signed URL
    let (r, v) = put_file(&mut client, &url, "text/csv", LOCATIONS.as_bytes()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(v["status"], "processing");
    assert_eq!(v["checksum"], hex::encode(<md5::Md5 as md5::Digest>::digest(LOCATIONS)));
    assert_eq!(v["column_mapping"]["capacity"], "capacity", "matched by name");
    let (r, v) = put_file(&mut client, &url, "text/csv", LOCATIONS.as_bytes()).await;
    assert_error(&r, &v, StatusCode::CONFLICT, "conflict_error", "upload_used");

    // no person in the loop: validated, started and processed by the jobs
    app.drain().await;
    let done = get_import(&mut client, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!((done["stats"]["created"].as_i64(), done["stats"]["invalid"].as_i64()), (Some(2), Some(1)));
    assert_eq!(done["updated_by"], format!("key_{key_id}"));
    let audit = text(&c.get("/settings/audit").await.body, "main");
    assert!(audit.contains("API key \"integrator\" import created import 1"), "audit names the key: {audit}");

    // roll back through the API; a second time is refused with the reason
    let (r, v) = post_json(&mut client, &format!("/api/v1/imports/{id}/rollback"), &key, "", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(v["id"], id);
    let (r, v) = post_json(&mut client, &format!("/api/v1/imports/{id}/rollback"), &key, "", &[]).await;
    assert_error(&r, &v, StatusCode::CONFLICT, "conflict_error", "import_state");
    app.drain().await;
    let rolled = get_import(&mut client, &key, &id).await;
    assert!(rolled["rolled_back_at"].is_i64(), "{rolled}");
    assert_eq!(rolled["stats"]["rolled_back"], 2);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM records WHERE id > $1", &[0]).await, 0);
}

#[actix_web::test]
async fn json_and_json_lines_uploads_import_like_csv_and_bad_ones_name_the_element() {
    let (app, mut c) = app().await;
    let key = create_key(&mut c, "json", &["pf.import.upload"], "90").await;
    let mut client = app.client();
    let uploads = [
        (
            "application/json",
            r#"[{"code":"J-1","name":"One","kind":"clinic","capacity":12},{"code":"J-2","name":"Two","kind":"office"}]"#,
        ),
        (
            "application/x-ndjson",
            "{\"code\":\"L-1\",\"name\":\"Line\",\"kind\":\"clinic\"}\n\n{\"code\":\"L-2\",\"name\":\"Line two\",\"kind\":\"office\"}\n",
        ),
    ];
    for (ct, file) in uploads {
        let (_, created) = post_json(&mut client, "/api/v1/imports", &key, r#"{"resource":"locations"}"#, &[]).await;
        let (r, _) = put_file(&mut client, created["_upload_url"].as_str().unwrap(), ct, file.as_bytes()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{ct}: {}", r.body);
        app.drain().await;
        let done = get_import(&mut client, &key, created["id"].as_str().unwrap()).await;
        assert_eq!(
            (done["status"].as_str(), done["stats"]["created"].as_i64()),
            (Some("completed"), Some(2)),
            "{ct}: {done}"
        );
        let csv = client.get(done["_upload_csv_url"].as_str().unwrap()).await;
        assert!(csv.body.starts_with("capacity,code,kind,name\n") || csv.body.starts_with("code,"), "{}", csv.body);
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM records WHERE id > $1", &[0]).await, 4);

    let (_, created) = post_json(&mut client, "/api/v1/imports", &key, r#"{"resource":"locations"}"#, &[]).await;
    let url = created["_upload_url"].as_str().unwrap().to_string();
    let (r, v) = put_file(&mut client, &url, "application/json", br#"[{"code":"A"},{"code":"B","extra":1}]"#).await;
    assert_error(&r, &v, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", "file_unreadable");
    assert!(v["error"]["message"].as_str().unwrap().contains("element 2 has the field \"extra\""), "{v}");
    let (r, v) = put_file(&mut client, &url, "text/plain", b"code\nA\n").await;
    assert_error(&r, &v, StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request_error", "unsupported_media_type");
    let (r, v) = put_file(&mut client, &url, "text/csv", b"code,title\nA,x\n").await;
    assert_error(&r, &v, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", "file_unreadable");
    assert!(v["error"]["message"].as_str().unwrap().contains("name, kind"), "names the unfilled fields: {v}");
    // refused uploads leave the import waiting for a good one
    let still = get_import(&mut client, &key, created["id"].as_str().unwrap()).await;
    assert_eq!(still["status"], "requested");
    // an import never given its file expires after the import time to live
    let (_, stale) = post_json(&mut client, "/api/v1/imports", &key, r#"{"resource":"locations"}"#, &[]).await;
    let stale_id: i64 = stale["id"].as_str().unwrap().parse().unwrap();
    app.exec("UPDATE imports SET created_at = created_at - 172800 WHERE id = $1", &[stale_id]).await;
    app.maintain().await;
    let expired = get_import(&mut client, &key, &stale_id.to_string()).await;
    assert_eq!(expired["status"], "expired", "{expired}");
    assert!(expired["reason"].as_str().unwrap().contains("no file was uploaded"), "{expired}");
    let (r, v) = put_file(&mut client, stale["_upload_url"].as_str().unwrap(), "text/csv", LOCATIONS.as_bytes()).await;
    assert_error(&r, &v, StatusCode::CONFLICT, "conflict_error", "import_state");
    assert_eq!(
        get_import(&mut client, &key, created["id"].as_str().unwrap()).await["status"],
        "requested",
        "a fresh one waits"
    );

    let tampered = url.replace("sig=", "sig=0");
    let (r, v) = put_file(&mut client, &tampered, "text/csv", LOCATIONS.as_bytes()).await;
    assert_error(&r, &v, StatusCode::FORBIDDEN, "permission_error", "link_invalid");
}

#[actix_web::test]
async fn review_mode_waits_for_start_and_pause_resume_cancel_answer_the_model_or_409() {
    let (app, mut c) = app().await;
    let key = create_key(&mut c, "careful", &["pf.import.upload"], "90").await;
    let mut client = app.client();
    let body = r#"{"resource":"locations","review":true,"column_mapping":{"code":"code","name":"name","kind":"kind"}}"#;
    let (_, created) = post_json(&mut client, "/api/v1/imports", &key, body, &[]).await;
    let id = created["id"].as_str().unwrap().to_string();
    let (r, v) = post_json(&mut client, &format!("/api/v1/imports/{id}/start"), &key, "", &[]).await;
    assert_error(&r, &v, StatusCode::CONFLICT, "conflict_error", "import_state");
    put_file(&mut client, created["_upload_url"].as_str().unwrap(), "text/csv", LOCATIONS.as_bytes()).await;
    app.drain().await;
    let queued = get_import(&mut client, &key, &id).await;
    assert_eq!(queued["status"], "queued", "waits for start: {queued}");
    assert!(queued["column_mapping"].get("capacity").is_none(), "the mapping asked for, not a guess");

    let (r, v) = post_json(&mut client, &format!("/api/v1/imports/{id}/pause"), &key, "", &[]).await;
    assert_error(&r, &v, StatusCode::CONFLICT, "conflict_error", "import_state");
    let (r, v) = post_json(&mut client, &format!("/api/v1/imports/{id}/start"), &key, "", &[]).await;
    assert_eq!((r.status, v["status"].as_str()), (StatusCode::OK, Some("processing")), "{}", r.body);
    let (r, v) = post_json(&mut client, &format!("/api/v1/imports/{id}/pause"), &key, "", &[]).await;
    assert_eq!((r.status, v["paused"].as_bool()), (StatusCode::OK, Some(true)), "{}", r.body);
    let (r, v) = post_json(&mut client, &format!("/api/v1/imports/{id}/resume"), &key, "", &[]).await;
    assert_eq!((r.status, v["paused"].as_bool()), (StatusCode::OK, Some(false)), "{}", r.body);
    app.drain().await;
    assert_eq!(get_import(&mut client, &key, &id).await["status"], "completed");
    let (r, v) = post_json(&mut client, &format!("/api/v1/imports/{id}/cancel"), &key, "", &[]).await;
    assert_error(&r, &v, StatusCode::CONFLICT, "conflict_error", "import_state");

    // an overwrite that would remove records waits for their number, as the page asks for it
    let overwrite = r#"{"resource":"locations","action":"overwrite"}"#;
    let (_, ow) = post_json(&mut client, "/api/v1/imports", &key, overwrite, &[]).await;
    let ow_id = ow["id"].as_str().unwrap().to_string();
    let only_first = "code,name,kind\nLOC-1,Main Clinic,clinic\n";
    put_file(&mut client, ow["_upload_url"].as_str().unwrap(), "text/csv", only_first.as_bytes()).await;
    app.drain().await;
    let waiting = get_import(&mut client, &key, &ow_id).await;
    assert_eq!(
        (waiting["status"].as_str(), waiting["stats"]["to_delete"].as_i64()),
        (Some("queued"), Some(2)),
        "{waiting}"
    );
    let (r, v) = post_json(&mut client, &format!("/api/v1/imports/{ow_id}/start"), &key, "", &[]).await;
    assert_error(&r, &v, StatusCode::CONFLICT, "conflict_error", "import_state");
    assert_eq!(v["error"]["param"], "confirm_removals");
    let confirm = r#"{"confirm_removals": 2}"#;
    let (r, _) = post_json(&mut client, &format!("/api/v1/imports/{ow_id}/start"), &key, confirm, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.drain().await;
    let done = get_import(&mut client, &key, &ow_id).await;
    assert_eq!((done["status"].as_str(), done["stats"]["deleted"].as_i64()), (Some("completed"), Some(2)), "{done}");

    // a queued import cancelled: failed, and the reason says so
    let (_, second) =
        post_json(&mut client, "/api/v1/imports", &key, r#"{"resource":"locations","review":true}"#, &[]).await;
    let id2 = second["id"].as_str().unwrap().to_string();
    put_file(&mut client, second["_upload_url"].as_str().unwrap(), "text/csv", LOCATIONS.as_bytes()).await;
    app.drain().await;
    let (r, v) = post_json(&mut client, &format!("/api/v1/imports/{id2}/cancel"), &key, "", &[]).await;
    assert_eq!((r.status, v["status"].as_str()), (StatusCode::OK, Some("failed")), "{}", r.body);
    assert!(v["reason"].as_str().unwrap().contains("Cancelled through the API by API key \"careful\""), "{v}");

    // bad bodies and other orgs' imports
    let (r, v) =
        post_json(&mut client, "/api/v1/imports", &key, r#"{"resource":"locations","colour":"red"}"#, &[]).await;
    assert_error(&r, &v, StatusCode::BAD_REQUEST, "invalid_request_error", "body_invalid");
    assert_eq!(v["error"]["param"], "colour");
    for (body, param) in [
        (r#"{"resource":"unicorns"}"#, "resource"),
        (r#"{"resource":"locations","action":"upsert"}"#, "action"),
        (r#"{"resource":"locations","upload_mode":"later"}"#, "upload_mode"),
        // exactly as documented: neither empty nor padded
        (r#"{"resource":"locations","duplicate_handling":""}"#, "duplicate_handling"),
        (r#"{"resource":"locations","action":" merge"}"#, "action"),
        (r#"{"resource":"locations","column_mapping":{"colour":"c"}}"#, "column_mapping"),
        (r#"{"resource":"locations","chunk_size":0}"#, "chunk_size"),
    ] {
        let (r, v) = post_json(&mut client, "/api/v1/imports", &key, body, &[]).await;
        assert_error(&r, &v, StatusCode::BAD_REQUEST, "invalid_request_error", "parameter_invalid");
        assert_eq!(v["error"]["param"], param, "{body}");
    }
    let r = client
        .send(
            "POST",
            "/api/v1/imports",
            &[("authorization", &format!("Bearer {key}")), ("content-type", "text/plain")],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let view_only = create_key(&mut c, "viewer", &["pf.export_requests.view"], "90").await;
    let (r, v) = post_json(&mut client, "/api/v1/imports", &view_only, r#"{"resource":"locations"}"#, &[]).await;
    assert_error(&r, &v, StatusCode::FORBIDDEN, "permission_error", "permission_missing");
    app.user("globex", "gus@globex.test", "owner").await;
    let mut gus = app.signed_in("gus@globex.test").await;
    let other = create_key(&mut gus, "globex", &["pf.import.upload"], "90").await;
    let (r, v) = post_json(&mut client, &format!("/api/v1/imports/{id}/rollback"), &other, "", &[]).await;
    assert_error(&r, &v, StatusCode::NOT_FOUND, "not_found_error", "resource_missing");
}

#[actix_web::test]
async fn a_sync_upload_answers_after_validation_with_the_problems_inline() {
    // a real worker runs the jobs, as in production
    let (app, mut c) = app_with(|s| s.workers = "1".into()).await;
    let key = create_key(&mut c, "sync", &["pf.import.upload"], "90").await;
    let mut client = app.client();
    let body = r#"{"resource":"locations","upload_mode":"sync","review":true}"#;
    let (_, created) = post_json(&mut client, "/api/v1/imports", &key, body, &[]).await;
    assert_eq!(created["upload_mode"], "sync");
    let (r, v) =
        put_file(&mut client, created["_upload_url"].as_str().unwrap(), "text/csv", LOCATIONS.as_bytes()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(v["status"], "queued");
    assert_eq!(v["phases"][0]["mode"], "sync");
    assert_eq!(v["phases"][2]["mode"], "async");
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["row"], 3);
    assert_eq!(problems[0]["field"], "capacity");
    assert_eq!(problems[0]["value"], "ten");
    let errors = client.get(v["_errors_csv_url"].as_str().unwrap()).await;
    assert!(errors.body.contains("LOC-2,North,clinic,ten"), "{}", errors.body);
}

#[actix_web::test]
async fn the_curl_walk_through_in_the_docs_runs() {
    let (app, _) = app_with(|s| s.workers = "1".into()).await;
    let key = stevedore::cli::create_api_key(&app.db, "acme", "Walk-through", "pf.import.upload", None).await.unwrap();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let script =
        doc.split("```sh\n").nth(1).and_then(|rest| rest.split("```").next()).expect("a sh block in docs/api.md");
    for tool in ["curl", "jq"] {
        let found = std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
        assert!(found.status.success(), "the walk-through needs {tool} (.ci/run installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let (script, cwd, base) = (script.to_string(), dir.path().to_path_buf(), app.base.clone());
    // the app serves on this thread: the script runs on another
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(cwd)
            .env("BASE", base)
            .env("KEY", key)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the walk-through failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("capacity"), "step 2 lists the fields: {stdout}");
    assert!(stdout.contains("\"field\":\"capacity\"") && stdout.contains("\"value\":\"many\""), "step 4: {stdout}");
    assert!(stdout.contains("{\"status\":\"completed\",\"stats\""), "step 5: {stdout}");
    assert!(stdout.contains("WT-2,Second site,office,many"), "step 6: {stdout}");
    assert!(stdout.trim_end().ends_with("completed"), "step 7 answers the model: {stdout}");
}
