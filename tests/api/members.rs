//! Authorization through the Members page: permissions, tenancy, roles taking effect at
//! once, the last owner, adding people with one-time passwords.

use awc::http::StatusCode;

use crate::helpers::{PASSWORD, attrs, count, html_of, spawn_app, text, texts};

#[actix_web::test]
async fn members_page_lists_members_for_owners() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    app.user("acme", "bob@acme.test", "viewer").await;
    let mut c = app.signed_in("ada@acme.test").await;
    let r = c.get("/settings/members").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("bob@acme.test"));
    assert!(r.body.contains("Viewer"));
    assert!(r.body.contains("Showing 1–2 of 2"));
    assert_eq!(attrs(&r.body, "nav a[aria-current=\"page\"]", "href"), ["/settings/members"], "nav marks the page");
}

#[actix_web::test]
async fn without_members_permission_the_page_and_its_actions_are_denied() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    for role in ["importer", "exporter", "viewer"] {
        let email = format!("{role}@acme.test");
        app.user("acme", &email, role).await;
        let mut c = app.signed_in(&email).await;
        let home = c.get("/").await;
        assert!(!home.body.contains("href=\"/settings/members\""), "{role} must not see the Members link");
        let r = c.get("/settings/members").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}");
        assert!(r.body.contains("Access denied"));
        assert_eq!(count(&r.body, ".state-icon.state-icon-lock"), 1, "the lock icon is shown");
        assert!(texts(&r.body, "main code").iter().any(|c| c == "pf.members.manage"), "the permission is named");
        assert_eq!(count(&r.body, "nav[aria-label=\"Main\"]"), 1, "the denied page keeps the navigation");
        let ada = app.user_id("ada@acme.test").await.to_string();
        let token = home.csrf();
        for (path, fields) in [
            ("/settings/members".to_string(), vec![("email", "x@acme.test"), ("role", "owner")]),
            (format!("/settings/members/{ada}/role"), vec![("role", "viewer")]),
            (format!("/settings/members/{ada}/remove"), vec![]),
        ] {
            let mut f = fields.clone();
            f.push(("csrf_token", &token));
            assert_eq!(c.post_form(&path, &f).await.status, StatusCode::FORBIDDEN, "{role} {path}");
        }
        assert_eq!(app.role_of("acme", "ada@acme.test").await.as_deref(), Some("owner"));
    }
    assert!(stevedore::store::accounts::user_by_email(&app.db, "x@acme.test").await.unwrap().is_none());
}

#[actix_web::test]
async fn another_orgs_member_is_answered_like_a_missing_one() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    app.user("globex", "hank@globex.test", "owner").await;
    app.user("globex", "gwen@globex.test", "viewer").await;
    let gwen = app.user_id("gwen@globex.test").await;
    let mut c = app.signed_in("ada@acme.test").await;

    let missing = c.get("/settings/members?member=999999").await;
    let foreign = c.get(&format!("/settings/members?member={gwen}")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    let main = |body: &str| html_of(body, "main");
    assert_eq!(main(&missing.body), main(&foreign.body), "the same page for both");
    let r = c.submit("/", &format!("/settings/members/{gwen}/role"), &[("role", "owner")]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = c.submit("/", &format!("/settings/members/{gwen}/remove"), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(app.role_of("globex", "gwen@globex.test").await.as_deref(), Some("viewer"));
    let r = c.submit("/", "/switch-org", &[("org_id", &app.org_id("globex").await.to_string())]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!c.get("/").await.body.contains("Globex"));
}

#[actix_web::test]
async fn a_role_change_applies_to_open_sessions_at_their_next_request() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    app.user("acme", "bob@acme.test", "viewer").await;
    let bob_id = app.user_id("bob@acme.test").await;
    let mut bob = app.signed_in("bob@acme.test").await;
    assert_eq!(bob.get("/settings/members").await.status, StatusCode::FORBIDDEN);

    let mut ada = app.signed_in("ada@acme.test").await;
    let r = ada.submit("/settings/members", &format!("/settings/members/{bob_id}/role"), &[("role", "owner")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(ada.get("/settings/members").await.body.contains("bob@acme.test is now Owner."));
    assert_eq!(bob.get("/settings/members").await.status, StatusCode::OK);

    let r = ada.submit("/settings/members", &format!("/settings/members/{bob_id}/role"), &[("role", "exporter")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(bob.get("/settings/members").await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.role_of("acme", "bob@acme.test").await.as_deref(), Some("exporter"));
    // the audit log says it in the roles' names
    let audit = ada.get("/settings/audit").await.body;
    assert!(audit.contains("Viewer → Owner") && audit.contains("Owner → Exporter"), "{audit}");

    let bad = ada.submit("/settings/members", &format!("/settings/members/{bob_id}/role"), &[("role", "admin")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("&#34;admin&#34; is not a role"), "{}", bad.body);
}

#[actix_web::test]
async fn removing_a_member_ends_their_access_at_once() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    app.user("acme", "bob@acme.test", "importer").await;
    let bob_id = app.user_id("bob@acme.test").await;
    let mut bob = app.signed_in("bob@acme.test").await;
    assert_eq!(bob.get("/").await.status, StatusCode::OK);
    let mut ada = app.signed_in("ada@acme.test").await;
    let r = ada.submit("/settings/members", &format!("/settings/members/{bob_id}/remove"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = ada.get("/settings/members").await;
    assert!(page.body.contains("bob@acme.test was removed from Acme."));
    assert!(!texts(&page.body, ".cell-title").iter().any(|t| t.starts_with("bob@acme.test")), "{}", page.body);
    let r = bob.get("/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login?reason=removed");
    assert_eq!(app.role_of("acme", "bob@acme.test").await, None);
}

#[actix_web::test]
async fn the_last_owner_can_be_neither_removed_nor_demoted() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let ada_id = app.user_id("ada@acme.test").await;
    let mut ada = app.signed_in("ada@acme.test").await;
    for (action, fields) in [("role", vec![("role", "viewer")]), ("remove", vec![])] {
        let r = ada.submit("/settings/members", &format!("/settings/members/{ada_id}/{action}"), &fields).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let page = ada.get("/settings/members").await;
        assert!(page.body.contains("An organization needs at least one owner"), "{action}");
        assert_eq!(app.role_of("acme", "ada@acme.test").await.as_deref(), Some("owner"));
    }
    // with a second owner, demoting the first works
    app.user("acme", "bob@acme.test", "owner").await;
    let r = ada.submit("/settings/members", &format!("/settings/members/{ada_id}/role"), &[("role", "viewer")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(app.role_of("acme", "ada@acme.test").await.as_deref(), Some("viewer"));
}

#[actix_web::test]
async fn adding_a_new_person_shows_a_one_time_password_once_and_forces_a_new_one() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut ada = app.signed_in("ada@acme.test").await;
    let r = ada
        .submit(
            "/settings/members",
            "/settings/members",
            &[("email", " Cleo@Acme.test "), ("name", "Cleo"), ("role", "importer")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = ada.get("/settings/members").await;
    assert!(page.body.contains("cleo@acme.test was added as Importer"));
    let otp = text(&page.body, "code.secret[data-secret]");
    assert_eq!(otp.len(), 19);
    assert!(!ada.get("/settings/members").await.body.contains(&otp), "shown only once");

    let mut cleo = app.client();
    let r = cleo.login("cleo@acme.test", &otp).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = cleo.get("/").await;
    assert_eq!(r.location(), "/account/password", "must choose a password first");
    let form = cleo.get("/account/password").await;
    assert!(form.body.contains("You signed in with a one-time password"));
    let weak = cleo
        .submit("/account/password", "/account/password", &[("current", &otp), ("new", "short"), ("confirm", "short")])
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(weak.body.contains("at least 12 characters"));
    let mismatch = cleo
        .submit(
            "/account/password",
            "/account/password",
            &[("current", &otp), ("new", "a brand new phrase"), ("confirm", "a brand new phrasE")],
        )
        .await;
    assert!(mismatch.body.contains("do not match"));
    let ok = cleo
        .submit(
            "/account/password",
            "/account/password",
            &[("current", &otp), ("new", "a brand new phrase"), ("confirm", "a brand new phrase")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let home = cleo.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("Your password has been changed."));
    assert_eq!(app.client().login("cleo@acme.test", &otp).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.client().login("cleo@acme.test", "a brand new phrase").await.status, StatusCode::SEE_OTHER);
}

#[actix_web::test]
async fn adding_an_existing_user_keeps_their_password_and_bad_input_is_explained() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    app.user("globex", "hank@globex.test", "owner").await;
    let mut ada = app.signed_in("ada@acme.test").await;
    let r = ada
        .submit("/settings/members", "/settings/members", &[("email", "hank@globex.test"), ("role", "viewer")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(ada.get("/settings/members").await.body.contains("already had an account"));
    let mut hank = app.signed_in("hank@globex.test").await;
    // hank now switches between his two orgs from the header
    let home = hank.get("/").await;
    assert!(count(&home.body, "[name=\"org_id\"]") > 0, "an org switcher");
    assert_eq!(text(&home.body, "main h1"), "Globex", "he still signs in to the org he last used");
    let r = hank.submit("/", "/switch-org", &[("org_id", &app.org_id("acme").await.to_string())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(text(&hank.get("/").await.body, "main h1"), "Acme");
    // and the next sign-in opens the org he switched to
    assert_eq!(text(&app.signed_in("hank@globex.test").await.get("/").await.body, "main h1"), "Acme");
    assert_eq!(hank.get("/settings/members").await.status, StatusCode::FORBIDDEN, "a viewer in acme");

    let bad = ada
        .submit(
            "/settings/members",
            "/settings/members",
            &[("email", "not-an-email"), ("name", "Kept Name"), ("role", "viewer")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("&#34;not-an-email&#34; is not an email address"), "{}", bad.body);
    assert!(
        attrs(&bad.body, "input[name=\"name\"]", "value").contains(&"Kept Name".to_string()),
        "what was typed is kept"
    );
    let dup =
        ada.submit("/settings/members", "/settings/members", &[("email", "hank@globex.test"), ("role", "owner")]).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert!(dup.body.contains("already a member"));
    assert_eq!(app.role_of("acme", "hank@globex.test").await.as_deref(), Some("viewer"));
    let _ = PASSWORD;
}

#[actix_web::test]
async fn concurrent_demotions_leave_exactly_one_owner_and_no_errors() {
    use stevedore::domain::ids::{OrgId, UserId};
    use stevedore::domain::permissions::Role;
    use stevedore::store::accounts::{MembershipChange, change_membership};
    let app = spawn_app().await;
    let emails = ["a@acme.test", "b@acme.test", "c@acme.test", "d@acme.test"];
    for e in emails {
        app.user("acme", e, "owner").await;
    }
    let org = OrgId::new(app.org_id("acme").await);
    let mut ids = vec![];
    for e in emails {
        ids.push(UserId::new(app.user_id(e).await));
    }
    let results =
        futures_util::future::join_all(ids.iter().map(|u| change_membership(&app.db, org, *u, Some(Role::Viewer))))
            .await;
    let results: Vec<MembershipChange> = results.into_iter().map(|r| r.expect("no database error")).collect();
    let done = results.iter().filter(|r| matches!(r, MembershipChange::Done { .. })).count();
    let refused = results.iter().filter(|r| matches!(r, MembershipChange::Refused(_))).count();
    assert_eq!((done, refused), (3, 1), "{results:?}");
    let mut owners = 0;
    for e in emails {
        owners += usize::from(app.role_of("acme", e).await.as_deref() == Some("owner"));
    }
    assert_eq!(owners, 1);
}

#[actix_web::test]
async fn the_same_new_person_added_to_two_orgs_at_once_gets_one_account() {
    use stevedore::domain::ids::OrgId;
    use stevedore::domain::permissions::Role;
    use stevedore::store::accounts::{AddMember, add_member};
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    app.user("globex", "hank@globex.test", "owner").await;
    let (acme, globex) = (OrgId::new(app.org_id("acme").await), OrgId::new(app.org_id("globex").await));
    let hash = stevedore::auth::password::hash_blocking("one time pass 123").unwrap();
    let (a, b) = futures_util::future::join(
        add_member(&app.db, acme, "new@person.test", "", Role::Viewer, &hash),
        add_member(&app.db, globex, "new@person.test", "", Role::Viewer, &hash),
    )
    .await;
    let (a, b) = (a.expect("no database error"), b.expect("no database error"));
    let created = [&a, &b].iter().filter(|r| matches!(r, AddMember::Created(_))).count();
    let joined = [&a, &b].iter().filter(|r| matches!(r, AddMember::AddedExisting(_))).count();
    assert_eq!((created, joined), (1, 1), "{a:?} {b:?}");
    assert_eq!(app.role_of("acme", "new@person.test").await.as_deref(), Some("viewer"));
    assert_eq!(app.role_of("globex", "new@person.test").await.as_deref(), Some("viewer"));
}
