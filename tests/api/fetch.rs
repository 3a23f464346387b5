//! Seed 003's file upload step: file and image URLs in a CSV are fetched into storage,
//! once per URL, and a row whose file cannot be fetched is reported and left out. A file
//! server on 127.0.0.1 stands in for the internet; by default such a private address is
//! refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};

use crate::helpers::{Client, TestApp, app_with, start_import, stat, text, validated};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
const PDF: &[u8] = b"%PDF-1.4\n% a certificate\n";

/// Serves /photo.png, /cert.pdf and /moved (a redirect to /cert.pdf); anything else is 404.
/// Returns the base URL and the number of requests served.
async fn file_server() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        App::new().default_service(web::to(move |req: actix_web::HttpRequest| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                match req.path() {
                    "/photo.png" => HttpResponse::Ok().content_type("image/png").body(PNG),
                    "/cert.pdf" => HttpResponse::Ok().content_type("application/pdf").body(PDF),
                    "/moved" => HttpResponse::Found().insert_header(("Location", "/cert.pdf")).finish(),
                    _ => HttpResponse::NotFound().finish(),
                }
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    (format!("http://127.0.0.1:{port}"), hits)
}

/// The app (fetching from private networks when `private`) with location LOC-1, and the
/// owner signed in.
async fn with_location(private: bool) -> (TestApp, Client) {
    let (app, c) = app_with(|s| s.fetch_private_networks = private.to_string()).await;
    app.add_record("acme", "locations", &[("code", "LOC-1"), ("name", "Main"), ("kind", "clinic")]).await;
    (app, c)
}

const HEADER: &str = "employee_id,first_name,last_name,email,role,home_location,photo,certifications\n";

#[actix_web::test]
async fn file_urls_are_fetched_once_and_replaced_by_the_stored_files() {
    let (app, mut c) = with_location(true).await;
    let (files, hits) = file_server().await;
    let csv = format!(
        "{HEADER}\
         E-1,Ava,Nguyen,ava@x.test,nurse,LOC-1,{files}/photo.png,{files}/cert.pdf {files}/moved\n\
         E-2,Liam,Patel,liam@x.test,nurse,LOC-1,{files}/photo.png,\n\
         E-3,Mia,Khan,mia@x.test,nurse,LOC-1,{files}/cert.pdf,\n\
         E-4,Noa,Berg,noa@x.test,nurse,LOC-1,,{files}/gone.pdf\n"
    );
    let id = validated(&app, &mut c, "staff", ("staff.csv", csv.as_bytes()), &[]).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert_eq!(text(&page.body, ".page-header .badge"), "Ready", "{}", page.body);
    assert!(
        page.body.contains(&format!("row 4, photo: {files}/cert.pdf could not be fetched: it is not an image (PNG, JPEG, GIF or WebP) but application/pdf")),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!(
        "row 5, certifications: {files}/gone.pdf could not be fetched: the server answered 404 Not Found"
    )));
    // photo.png once, cert.pdf once, moved (redirect) + its target, gone.pdf: the cache
    // keeps the second photo.png from being fetched again
    assert_eq!(hits.load(Ordering::SeqCst), 5);
    start_import(&app, &mut c, id, &[]).await.see_other();
    let org = stevedore::domain::ids::OrgId::new(app.org_id("acme").await);
    let stored = stevedore::store::records::list(&app.db, org, "staff", None, 10, 0).await.unwrap();
    let keys: Vec<&str> = stored.iter().map(|r| r.record_key.as_str()).collect();
    assert_eq!(keys, ["E-1", "E-2"], "the rows with unfetchable files were left out");
    let data: serde_json::Value = serde_json::from_str(&stored[0].data).unwrap();
    let photo = &data["photo"][0];
    assert_eq!(photo["name"], "photo.png");
    assert_eq!(photo["url"], format!("{files}/photo.png"));
    assert_eq!(photo["content_type"], "image/png");
    assert_eq!(photo["size"], PNG.len());
    let md5 = photo["md5"].as_str().unwrap();
    assert_eq!(md5, hex::encode(<md5::Md5 as md5::Digest>::digest(PNG)));
    let certs = data["certifications"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[1]["name"], "cert.pdf", "the redirect's target names the file");
    // the file itself is in storage, byte for byte
    let stored_file = walk(app._data_dir.path()).into_iter().find(|p| p.ends_with(md5)).expect("stored photo");
    assert_eq!(std::fs::read(stored_file).unwrap(), PNG);
    // tables show a stored file by its name
    assert_eq!(stevedore::domain::entities::display_value(&data["photo"]), "photo.png");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[actix_web::test]
async fn private_addresses_are_refused_by_default() {
    let (app, mut c) = with_location(false).await;
    let (files, hits) = file_server().await;
    let csv = format!(
        "{HEADER}E-1,Ava,Nguyen,ava@x.test,nurse,LOC-1,{files}/photo.png,\n\
         E-2,Liam,Patel,liam@x.test,nurse,LOC-1,http://localhost:{}/photo.png,\n\
         E-3,Mia,Khan,mia@x.test,nurse,LOC-1,,\n\
         E-4,Noa,Berg,noa@x.test,nurse,LOC-1,http://[::127.0.0.1]:{port}/photo.png,\n\
         E-5,Oli,Rao,oli@x.test,nurse,LOC-1,http://[64:ff9b::7f00:1]:{port}/photo.png,\n\
         E-6,Pat,Lee,pat@x.test,nurse,LOC-1,HTTP://127.0.0.1:{port}/photo.png,\n",
        files.rsplit(':').next().unwrap(),
        port = files.rsplit(':').next().unwrap()
    );
    let id = validated(&app, &mut c, "staff", ("staff.csv", csv.as_bytes()), &[]).await;
    let page = c.get(&format!("/settings/imports/{id}")).await;
    assert!(page.body.contains(&format!(
        "row 2, photo: {files}/photo.png could not be fetched: it points to 127.0.0.1, a private or local network address, which is never fetched"
    )), "{}", page.body);
    assert!(page.body.contains("row 3, photo: http://localhost:"), "{}", page.body);
    assert!(page.body.contains("a private or local network address, which is never fetched"));
    // IPv6 forms that carry a loopback IPv4 address, and a scheme in capitals: refused as
    // private addresses, not as "not an http(s) URL"
    for row in [5, 6, 7] {
        let line = page.body.split(&format!("row {row}, photo: ")).nth(1).unwrap_or_default();
        assert!(line.starts_with("http") || line.starts_with("HTTP"), "row {row}: {}", page.body);
        assert!(
            line.split("</").next().unwrap().contains("a private or local network address, which is never fetched"),
            "row {row}: {line}"
        );
    }
    assert!(!page.body.contains("is not an http(s) URL"), "{}", page.body);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing on the private network was asked");
    assert_eq!(stat(&page.body, "Valid"), 1);
}
