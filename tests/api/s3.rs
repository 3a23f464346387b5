//! Exports kept in an S3-compatible bucket: a moto S3 server on 127.0.0.1 stands in for
//! the bucket. Built files move there, Download hands out the bucket's presigned URL, and
//! Delete and retention remove the object.
//!
//! Without moto (`pip install 'moto[server]'`) the test says so and passes, unless
//! `STEVEDORE_REQUIRE_S3=1` (set by `.ci/run`, which installs it), when it fails.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use awc::http::StatusCode;

use crate::helpers::{Client, TestApp, app_with, first_id, texts};

pub(crate) const BUCKET: &str = "stevedore-exports";

/// A moto S3 server, stopped when dropped.
pub(crate) struct S3Server {
    pub(crate) endpoint: String,
    child: Child,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// Starts moto on a free port with an empty bucket; None when moto is not installed.
    pub(crate) async fn start() -> Option<S3Server> {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let installed = Command::new(&python)
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            if std::env::var("STEVEDORE_REQUIRE_S3").is_ok_and(|v| v == "1") {
                panic!(
                    "moto's S3 server is required (STEVEDORE_REQUIRE_S3=1) but `{python} -c 'import moto.server'` failed"
                );
            }
            eprintln!("S3 test skipped: moto is not installed (pip install 'moto[server]'; bash .ci/run installs it)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto starts");
        let server = S3Server { endpoint: format!("http://127.0.0.1:{port}"), child };
        let http = awc::Client::default();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.put(format!("{}/{BUCKET}", server.endpoint)).send().await {
                assert!(r.status().is_success(), "creating the bucket: {}", r.status());
                return Some(server);
            }
            assert!(started.elapsed() < Duration::from_secs(30), "moto did not start within 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The keys in the bucket (moto lists without credentials).
    pub(crate) async fn keys(&self) -> Vec<String> {
        let mut r = awc::Client::default().get(format!("{}/{BUCKET}?list-type=2", self.endpoint)).send().await.unwrap();
        let xml = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
        xml.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(String::from).collect()
    }
}

/// The app with its exports in the bucket of `s3`, and the owner signed in.
async fn app(s3: &S3Server) -> (TestApp, Client) {
    let endpoint = s3.endpoint.clone();
    app_with(move |s| {
        s.s3_bucket = Some(BUCKET.into());
        s.s3_endpoint = Some(endpoint);
        s.s3_prefix = "ci/".into();
        s.s3_access_key_id = Some("AKIDSTEVEDORE".into());
        s.s3_secret_access_key = Some("s3cr3t-stays-on-the-server".into());
    })
    .await
}

async fn export_locations(app: &TestApp, c: &mut Client) -> i64 {
    let fields = [("export_type", "entity_data"), ("format", "csv"), ("entity_types", "locations")];
    let r = c.submit("/settings/exports", "/settings/exports", &fields).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    app.drain().await;
    let page = c.get("/settings/exports").await;
    assert_eq!(texts(&page.body, "#exports .badge"), ["Completed"], "{}", page.body);
    first_id(&page.body, "export-")
}

/// Checks a presigned GET URL the way S3 does (moto does not): the canonical request over
/// method, path, sorted query, host and UNSIGNED-PAYLOAD, signed with the key derived from the
/// secret, date, region and service; the date must be now.
fn sigv4_valid(url: &str, secret: &str, region: &str) -> bool {
    use hmac::{KeyInit, Mac};
    use sha2::{Digest, Sha256};
    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        m.update(data.as_bytes());
        m.finalize().into_bytes().to_vec()
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = vec![];
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
    fn encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    let rest = url.strip_prefix("http://").unwrap();
    let (host, rest) = rest.split_once('/').unwrap();
    let (path, query) = rest.split_once('?').unwrap();
    let mut params: Vec<(String, String)> =
        query.split('&').map(|p| p.split_once('=').unwrap()).map(|(k, v)| (decode(k), decode(v))).collect();
    let signature = params.iter().find(|(k, _)| k == "X-Amz-Signature").unwrap().1.clone();
    params.retain(|(k, _)| k != "X-Amz-Signature");
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    let amz_date = get("X-Amz-Date");
    let n = |a: usize, b: usize| amz_date[a..b].parse::<u32>().unwrap();
    let signed_at =
        time::Date::from_calendar_date(n(0, 4) as i32, time::Month::try_from(n(4, 6) as u8).unwrap(), n(6, 8) as u8)
            .unwrap()
            .with_hms(n(9, 11) as u8, n(11, 13) as u8, n(13, 15) as u8)
            .unwrap()
            .assume_utc()
            .unix_timestamp();
    assert!((stevedore::now() - signed_at).abs() < 120, "signed now: {amz_date}");
    let mut canonical: Vec<(String, String)> = params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    canonical.sort();
    let query = canonical.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let request = format!("GET\n/{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let day = &amz_date[..8];
    let scope = format!("{day}/{region}/s3/aws4_request");
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(request.as_bytes())));
    let key = ["aws4_request"]
        .iter()
        .fold(hmac(&hmac(&hmac(format!("AWS4{secret}").as_bytes(), day), region), "s3"), |k, part| hmac(&k, part));
    hex::encode(hmac(&key, &to_sign)) == signature
}

#[actix_web::test]
async fn exports_move_to_the_bucket_and_download_through_its_presigned_url() {
    let Some(s3) = S3Server::start().await else { return };
    let (app, mut c) = app(&s3).await;
    app.add_record("acme", "locations", &[("code", "LOC-1"), ("name", "North Clinic"), ("kind", "clinic")]).await;
    app.add_record("acme", "locations", &[("code", "LOC-2"), ("name", "=SUM(A1)"), ("kind", "office")]).await;
    let id = export_locations(&app, &mut c).await;

    let org = app.org_id("acme").await;
    let row =
        stevedore::store::exports::get(&app.db, stevedore::domain::ids::OrgId::new(org), id).await.unwrap().unwrap();
    let key = format!("ci/exports/{org}/{id}.csv");
    assert_eq!(row.object_key.as_deref(), Some(key.as_str()));
    assert_eq!(s3.keys().await, vec![key.clone()], "the file is in the bucket under the prefix");
    assert!(!std::path::Path::new(&row.file_path).exists(), "and no longer in the data directory");

    // Download: straight to the bucket, signed for an hour
    let r = c.get(&format!("/settings/exports/{id}/download")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let url = r.location();
    assert!(url.starts_with(&format!("{}/{BUCKET}/{key}?", s3.endpoint)), "{url}");
    assert!(url.contains("X-Amz-Expires=3600") && url.contains("X-Amz-Signature="), "{url}");
    assert!(url.contains("X-Amz-Credential=AKIDSTEVEDORE%2F") && !url.contains("s3cr3t"), "{url}");
    assert!(sigv4_valid(&url, "s3cr3t-stays-on-the-server", "us-east-1"), "a valid SigV4 signature: {url}");
    let forged = url.replace("X-Amz-Expires=3600", "X-Amz-Expires=86400");
    assert!(!sigv4_valid(&forged, "s3cr3t-stays-on-the-server", "us-east-1"), "a longer life breaks it");
    let mut file = awc::Client::default().get(&url).send().await.unwrap();
    assert_eq!(file.status(), StatusCode::OK);
    let header = |name: &str| file.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(header("content-type"), "text/csv; charset=utf-8");
    let today = stevedore::web::format_day(stevedore::now());
    assert!(
        header("content-disposition").contains(&format!("locations-{today}.csv")),
        "{}",
        header("content-disposition")
    );
    let body = String::from_utf8(file.body().await.unwrap().to_vec()).unwrap();
    let template = c.get("/locations/template.csv").await.body;
    assert_eq!(body.lines().next(), template.lines().next(), "the importer template's header");
    assert!(body.contains("LOC-1,North Clinic") && body.contains("LOC-2,'=SUM(A1)"), "{body}");

    let audit = c.get("/settings/audit").await;
    assert!(audit.body.contains("Downloaded an export"), "{}", audit.body);

    // Delete removes the object, never the records
    let r = c.submit("/settings/exports", &format!("/settings/exports/{id}/delete"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(s3.keys().await.is_empty(), "the object is deleted");
    let records = c.get("/locations").await.body;
    assert!(records.contains("LOC-1") && records.contains("LOC-2"), "records stay");

    // retention: an expired export's object goes too
    let id = export_locations(&app, &mut c).await;
    assert_eq!(s3.keys().await, vec![format!("ci/exports/{org}/{id}.csv")]);
    app.backdate_export(id, 8 * 86_400).await;
    app.maintain().await;
    assert_eq!(texts(&c.get("/settings/exports").await.body, "#exports .badge"), ["Expired"]);
    assert!(s3.keys().await.is_empty(), "the expired export's object is deleted");
}

#[actix_web::test]
async fn imports_keep_their_files_in_the_bucket_and_jobs_read_them_from_there() {
    let Some(s3) = S3Server::start().await else { return };
    let (app, mut c) = app(&s3).await;
    let csv = "code,name,kind\nLOC-1,North Clinic,clinic\nLOC-2,South Office,office\n";
    let id = c.upload_mapped("locations", ("sites.csv", csv.as_bytes()), &[]).await;
    let org = app.org_id("acme").await;
    let keys = s3.keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = keys[0].clone();
    assert!(key.starts_with(&format!("ci/imports/{org}/")) && key.ends_with(".csv"), "{key}");
    let local = app._data_dir.path().join("files").join(key.trim_start_matches("ci/"));
    assert!(
        !local.exists(),
        "the receiving request gave up its copy once the bucket had the file: {}",
        local.display()
    );

    // validation and the import read the file from the bucket
    app.drain().await;
    crate::helpers::start_import(&app, &mut c, id, &[]).await.see_other();
    let records = c.get("/locations").await.body;
    assert!(records.contains("LOC-1") && records.contains("South Office"), "{records}");
    let scratch = app._data_dir.path().join("files").join(".scratch");
    let left = std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "the jobs' scratch copies are gone");

    // the original downloads from the bucket's presigned URL, as it was uploaded
    let r = c.get(&format!("/settings/imports/{id}/original")).await;
    let url = r.see_other();
    assert!(url.starts_with(&format!("{}/{BUCKET}/{key}?", s3.endpoint)) && url.contains("X-Amz-Signature="), "{url}");
    let mut file = awc::Client::default().get(&url).send().await.unwrap();
    assert_eq!(file.status(), StatusCode::OK);
    let disposition = file.headers().get("content-disposition").unwrap().to_str().unwrap().to_string();
    assert!(disposition.contains("sites.csv"), "{disposition}");
    assert_eq!(String::from_utf8(file.body().await.unwrap().to_vec()).unwrap(), csv);

    // a file kept on this disk before the bucket was configured streams from here
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    std::fs::write(&local, csv).unwrap();
    let r = c.get(&format!("/settings/imports/{id}/original")).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, csv));

    // past the retention period the object goes with the journal (and the local file)
    app.exec("UPDATE imports SET created_at = created_at - 91 * 86400 WHERE id = $1", &[id]).await;
    app.maintain().await;
    assert!(s3.keys().await.is_empty(), "the original's object is deleted");
    assert!(!local.exists(), "and the local file");
}
