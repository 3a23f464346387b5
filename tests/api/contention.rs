//! People using the app while a long validation runs: SQLite has one writer, which the
//! import's staging, its set-based phases, sign-ins and sessions all need. Every answer must
//! be a page or a redirect, never a server error, on both backends.

use std::cell::Cell;

use stevedore::domain::ids::OrgId;
use stevedore::domain::imports::Stage;

use crate::helpers::{PASSWORD, app};

const ROWS: usize = 40_000;

#[actix_web::test]
async fn pages_and_sign_ins_during_a_long_validation_never_fail() {
    let (app, mut ada) = app().await;
    let people = ["pia@acme.test", "raj@acme.test", "sol@acme.test"];
    for email in people {
        app.user("acme", email, "owner").await;
    }
    let mut clients = vec![];
    for email in people {
        clients.push((email, app.signed_in(email).await));
    }
    // every tenth row repeats a code (left out in the transforming phase), so the set-based
    // phases write issues too, not only the staging
    let mut csv = String::from("code,name,kind\n");
    for i in 0..ROWS {
        let code = if i % 10 == 9 { i - 1 } else { i };
        csv.push_str(&format!("LOC-{code},Clinic {i},clinic\n"));
    }
    let id = ada.upload_mapped("locations", ("big.csv", csv.as_bytes()), &[]).await;
    let org = OrgId::new(app.org_id("acme").await);

    let done = Cell::new(false);
    let work = async {
        app.drain().await;
        done.set(true);
    };
    let browse = async {
        let (mut answers, mut during) = (vec![], 0usize);
        while !done.get() {
            for (email, c) in clients.iter_mut() {
                let validating =
                    stevedore::store::imports::get(&app.db, org, id).await.unwrap().unwrap().stage == Stage::Validating;
                let out = c.submit("/", "/logout", &[]).await.status;
                let signed_in = c.login(email, PASSWORD).await.status;
                let history = c.get("/settings/imports").await.status;
                let page = c.get(&format!("/settings/imports/{id}")).await.status;
                let records = c.get("/locations").await.status;
                answers.extend([("sign out", out), ("sign in", signed_in), ("history", history), ("import", page)]);
                answers.push(("records", records));
                if validating {
                    during += 1;
                }
            }
        }
        (answers, during)
    };
    let ((), (answers, during)) = futures_util::join!(work, browse);

    let failed: Vec<_> = answers.iter().filter(|(_, s)| s.as_u16() >= 400).collect();
    assert!(failed.is_empty(), "{} of {} answers failed: {failed:?}", failed.len(), answers.len());
    assert!(during >= 3, "only {during} rounds of requests overlapped the validation");
    let imp = stevedore::store::imports::get(&app.db, org, id).await.unwrap().unwrap();
    assert_eq!(imp.stage, Stage::Ready, "{}", imp.reason);
    assert_eq!(imp.validated.total_rows, ROWS as i64);
    assert_eq!(imp.validated.valid_rows, (ROWS - ROWS / 10) as i64);
}
