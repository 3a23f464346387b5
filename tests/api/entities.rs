//! Entity list pages, templates and schema loading.

use awc::http::StatusCode;

use crate::helpers::{TestApp, attrs, spawn_app, text, texts};

async fn add(app: &TestApp, org: &str, entity: &str, cells: &[(&str, &str)]) {
    app.add_record(org, entity, cells).await;
}

#[actix_web::test]
async fn every_shipped_entity_has_a_list_page_and_a_template() {
    let app = spawn_app().await;
    app.user("acme", "vic@acme.test", "viewer").await;
    let mut c = app.signed_in("vic@acme.test").await;
    let home = c.get("/").await;
    for (entity, label, first_columns) in [
        ("locations", "Locations", "code,name,kind,address,city,phone,capacity,opened_on,active"),
        ("staff", "Staff", "employee_id,first_name,last_name,email,role,home_location,"),
        (
            "clients",
            "Clients",
            "client_number,first_name,last_name,birth_date,email,phone,status,programs,location,primary_staff,care_team,",
        ),
        ("policies", "Policies", "policy_code,title,category,"),
        ("forms", "Forms", "form_code,title,category,"),
    ] {
        assert_eq!(texts(&home.body, &format!("nav a[href=\"/{entity}\"]")), [label], "nav links {entity}");
        let page = c.get(&format!("/{entity}")).await;
        assert_eq!(page.status, StatusCode::OK, "{entity}");
        assert_eq!(text(&page.body, "main h1"), label);
        assert!(page.body.contains(&format!("No {} yet", label.to_lowercase())), "{entity} empty state");
        assert!(page.body.contains("0 records"));
        // a viewer is offered the template, not Import
        let offered = texts(&page.body, ".empty-state .button");
        assert_eq!(offered, ["Download template"], "{entity}");
        let t = c.get(&format!("/{entity}/template.csv")).await;
        assert_eq!(t.status, StatusCode::OK);
        assert_eq!(t.header("content-type"), "text/csv; charset=utf-8");
        assert_eq!(t.header("content-disposition"), format!("attachment; filename=\"{entity}-template.csv\""));
        assert!(t.body.starts_with(first_columns), "{entity}: {}", t.body);
        assert_eq!(t.body.lines().count(), 1, "header row only");
        // the header is exactly the schema's field names
        let schemas = stevedore::content::load_schemas(None).unwrap();
        assert_eq!(t.body.trim_end(), schemas.get(entity).unwrap().header().join(","));
    }
    let nav = attrs(&home.body, "nav .nav-section a", "href");
    let pos = |e: &str| nav.iter().position(|h| *h == format!("/{e}")).unwrap_or_else(|| panic!("{e}: {nav:?}"));
    assert!(pos("locations") < pos("staff") && pos("staff") < pos("clients") && pos("clients") < pos("policies"));
    assert_eq!(c.get("/nonsense").await.status, StatusCode::NOT_FOUND);
    assert_eq!(c.get("/nonsense/template.csv").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.client().get("/locations").await.status, StatusCode::SEE_OTHER, "signed-in only");
    assert_eq!(app.client().get("/locations/template.csv").await.status, StatusCode::SEE_OTHER);
}

#[actix_web::test]
async fn records_are_listed_searched_paginated_and_scoped_to_the_org() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    app.user("globex", "hank@globex.test", "owner").await;
    for i in 1..=30 {
        let code = format!("LOC-{i:03}");
        let name = if i == 7 { "Riverside 100% Clinic".to_string() } else { format!("Clinic {i}") };
        add(&app, "acme", "locations", &[("code", &code), ("name", &name), ("kind", "clinic"), ("active", "TRUE")])
            .await;
    }
    add(&app, "globex", "locations", &[("code", "GLX-1"), ("name", "Globex Tower"), ("kind", "office")]).await;
    let mut c = app.signed_in("ada@acme.test").await;

    let p1 = c.get("/locations").await;
    assert!(p1.body.contains("30 records"));
    assert!(p1.body.contains("Showing 1–25 of 30"));
    assert!(p1.body.contains("LOC-001") && !p1.body.contains("LOC-026"));
    let cells = texts(&p1.body, "td");
    assert!(cells.iter().any(|c| c == "clinic"), "enum values shown");
    assert!(texts(&p1.body, "td > span.muted").iter().any(|c| c == "—"), "empty cells shown as a dash");
    assert!(!p1.body.contains("Globex Tower"), "another org's records are not listed");
    let p2 = c.get("/locations?page=2").await;
    assert!(p2.body.contains("LOC-026") && p2.body.contains("Showing 26–30 of 30"));

    let s = c.get("/locations?q=RIVERSIDE").await;
    assert!(s.body.contains("1 record<"), "{}", s.body);
    assert!(s.body.contains("Riverside 100% Clinic"));
    let pct = c.get("/locations?q=100%25").await;
    assert!(pct.body.contains("1 record<"), "% is matched literally");
    let under = c.get("/locations?q=_").await;
    assert!(under.body.contains("No locations match “_”"), "_ is matched literally");
    let none = c.get("/locations?q=Globex").await;
    assert!(none.body.contains("No locations match “Globex”"));
    assert!(none.body.contains("show all locations"));
}

#[actix_web::test]
async fn keys_contents_and_unique_fields_are_enforced_by_the_database() {
    use stevedore::store::records::{InsertError, NewRecord, insert};
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    app.user("globex", "hank@globex.test", "owner").await;
    add(&app, "acme", "locations", &[("code", "LOC-1"), ("name", "Main"), ("kind", "clinic")]).await;
    let schemas = stevedore::content::load_schemas(None).unwrap();
    let staff = schemas.get("staff").unwrap();
    let row = |id: &'static str, email: &'static str| {
        let cells = [
            ("employee_id", id),
            ("first_name", "Ann"),
            ("last_name", "Lee"),
            ("email", email),
            ("role", "nurse"),
            ("home_location", "LOC-1"),
        ];
        staff.prepare(move |f| cells.iter().find(|(n, _)| *n == f).map(|(_, v)| *v)).unwrap()
    };
    let try_insert = |org: &'static str, r: stevedore::domain::entities::PreparedRecord| {
        let app = &app;
        async move {
            let org = stevedore::domain::ids::OrgId::new(app.org_id(org).await);
            insert(&app.db, org, "staff", &NewRecord::from(&r)).await.unwrap()
        }
    };
    assert!(try_insert("acme", row("EMP-1", "ann@acme.test")).await.is_ok());
    assert_eq!(try_insert("acme", row("EMP-1", "other@acme.test")).await, Err(InsertError::DuplicateKey));
    assert_eq!(
        try_insert("acme", row("EMP-2", "ANN@acme.test")).await,
        Err(InsertError::DuplicateValue { field: "email".into(), value: "ann@acme.test".into() }),
        "unique values compare case-insensitively"
    );
    let mut c = app.signed_in("ada@acme.test").await;
    assert!(c.get("/staff").await.body.contains("1 record<"), "the refused record left nothing behind");
    // another org may use the same key and email
    assert!(try_insert("globex", row("EMP-1", "ann@acme.test")).await.is_ok());
    // the same content again is refused by its key
    assert_eq!(try_insert("globex", row("EMP-1", "ann@acme.test")).await, Err(InsertError::DuplicateKey));
}

/// On PostgreSQL the organization a record names is checked once per statement (a trigger)
/// rather than by a foreign key row by row; SQLite keeps the key. Both refuse and cascade alike.
#[actix_web::test]
async fn a_record_names_an_existing_organization_and_goes_with_it() {
    let app = spawn_app().await;
    app.user("acme", "ada@acme.test", "owner").await;
    add(&app, "acme", "locations", &[("code", "LOC-1"), ("name", "Main"), ("kind", "clinic")]).await;
    let acme = app.org_id("acme").await;
    let (nowhere, count) = (acme + 1000, "SELECT COUNT(*) FROM records WHERE org_id = $1");
    let insert = "INSERT INTO records (org_id, entity, record_key, data, row_hash, search_text, created_at, updated_at)
                  VALUES ($1, 'locations', 'LOC-2', '{}', 'h2', '', 0, 0), ($2, 'locations', 'LOC-3', '{}', 'h3', '', 0, 0)";
    let refused = |r: Result<(), String>| r.expect_err("refused").to_lowercase().contains("foreign key");
    assert!(
        refused(app.try_exec(insert, &[acme, nowhere]).await),
        "one row naming no organization refuses the statement"
    );
    assert_eq!(app.scalar(count, &[acme]).await, 1, "and stores none of its rows");
    app.try_exec(insert, &[acme, acme]).await.unwrap();
    assert_eq!(app.scalar(count, &[acme]).await, 3);
    let moved = "UPDATE records SET org_id = $1 WHERE org_id = $2 AND record_key = 'LOC-2'";
    assert!(refused(app.try_exec(moved, &[nowhere, acme]).await), "a record cannot move to no organization");
    let renumbered = "UPDATE organizations SET id = $1 WHERE id = $2";
    assert!(refused(app.try_exec(renumbered, &[nowhere, acme]).await), "nor its organization change id under it");
    let (initech, _) = stevedore::store::accounts::ensure_org(&app.db, "initech", "Initech").await.unwrap();
    app.add_record("initech", "locations", &[("code", "LOC-1"), ("name", "Lab"), ("kind", "clinic")]).await;
    assert_eq!(app.scalar(count, &[initech.get()]).await, 1);
    app.try_exec("DELETE FROM organizations WHERE id = $1", &[initech.get()]).await.unwrap();
    assert_eq!(app.scalar(count, &[initech.get()]).await, 0, "deleting an organization deletes its records");
    assert_eq!(app.scalar(count, &[acme]).await, 3, "and only its");
}

#[test]
fn a_bad_schema_file_stops_start_up_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    std::fs::write(
        schemas.join("vehicles.toml"),
        "entity = \"vehicles\"\nlabel = \"Vehicles\"\nsingular = \"Vehicle\"\nkey = \"plate\"\n\n[[fields]]\nname = \"plate\"\ntype = \"txt\"\nrequired = true\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .env("STEVEDORE_DATA_DIR", dir.path())
        .env("STEVEDORE_SCHEMA_DIR", &schemas)
        .env("STEVEDORE_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("vehicles.toml:8:"), "{err}");
    assert!(err.contains("txt"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[actix_web::test]
async fn an_extra_schema_file_adds_an_entity_type() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vehicles.toml"),
        "entity = \"vehicles\"\nlabel = \"Vehicles\"\nsingular = \"Vehicle\"\nkey = \"plate\"\n\n[[fields]]\nname = \"plate\"\ntype = \"text\"\nrequired = true\n\n[[fields]]\nname = \"garage\"\ntype = \"relationship_one\"\ntarget = \"locations\"\n",
    )
    .unwrap();
    let path = dir.path().to_path_buf();
    let app = crate::helpers::spawn_app_with(|s| s.schema_dir = Some(path)).await;
    app.user("acme", "ada@acme.test", "owner").await;
    let mut c = app.signed_in("ada@acme.test").await;
    assert_eq!(texts(&c.get("/").await.body, "nav a[href=\"/vehicles\"]"), ["Vehicles"]);
    assert_eq!(c.get("/vehicles/template.csv").await.body.trim_end(), "plate,garage");
}

#[test]
fn the_examples_are_valid_and_their_references_resolve_in_dependency_order() {
    use std::collections::{BTreeMap, BTreeSet};
    use stevedore::domain::entities::FieldKind;
    use stevedore::domain::imports::mapping::{Target, auto_map};
    let schemas = stevedore::content::load_schemas(None).unwrap();
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for schema in schemas.all() {
        let path = std::path::Path::new("examples").join(format!("{}.csv", schema.name));
        let info = stevedore::files::sniff(&path, None, &Default::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let targets: Vec<Target> =
            schema.fields.iter().map(|f| Target { name: f.name(), label: &f.label, synonyms: &f.synonyms }).collect();
        let mapping = auto_map(&targets, &info.headers);
        assert_eq!(mapping.len(), schema.fields.len(), "{}: every column maps by name", schema.name);
        let column: BTreeMap<&str, usize> = mapping
            .iter()
            .map(|(field, header)| (field.as_str(), info.headers.iter().position(|h| h == header).unwrap()))
            .collect();
        let mut seen = BTreeSet::new();
        let mut refs: Vec<(String, String)> = vec![];
        let mut count = 0;
        stevedore::files::visit_rows(&path, &info, &mut |n, cells| {
            let r = schema
                .prepare(|f| column.get(f).and_then(|i| cells.get(*i)).map(String::as_str))
                .unwrap_or_else(|e| panic!("{} row {n}: {e:?}", schema.name));
            assert!(seen.insert(r.key.clone()), "{} row {n}: key {} repeats", schema.name, r.key);
            for f in schema.fields.iter().filter(|f| f.kind().is_relationship()) {
                let raw = column.get(f.name()).and_then(|i| cells.get(*i)).cloned().unwrap_or_default();
                let many = f.kind() == FieldKind::RelationshipMany;
                for k in raw.split_whitespace().take(if many { usize::MAX } else { 1 }) {
                    refs.push((f.target.clone().unwrap(), k.to_string()));
                }
            }
            count += 1;
            Ok(true)
        })
        .unwrap();
        assert!(count >= 20, "{}: {count} rows, want 20 or more", schema.name);
        keys.insert(schema.name.clone(), seen);
        for (target, key) in refs {
            assert!(
                keys.get(&target).is_some_and(|k| k.contains(&key)),
                "{} refers to {target} {key}, not imported before it",
                schema.name
            );
        }
    }
}
