//! Property tests over hostile input, through the entry points the app uses: random and
//! mutated CSV and XLSX bytes through `sniff` and `visit_rows` (as an upload and a
//! validation read them), random headers through the auto-mapping, random cells through a
//! schema's checks, random download-link queries and signatures through the link rules.
//! Each asserts no panic, a clear error when there is one, and bounded memory.
//!
//! `cargo test --test props` runs a few hundred cases per property; `PROPTEST_CASES=N` runs
//! more (`.ci/run` runs a bounded longer pass; the README gives a long one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use proptest::prelude::*;
use stevedore::files::{FileProblem, Limits, sniff, visit_rows};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() }
}

/// Small limits, so that every limit is met by some generated input.
fn limits() -> Limits {
    Limits {
        max_columns: 64,
        max_rows: 200,
        max_cell_bytes: 512,
        max_inflated_bytes: 4 * 1024 * 1024,
        max_shared_strings_bytes: 256 * 1024,
    }
}

/// Reads `bytes` as an upload and a validation would: the header, then every row. Returns
/// the rows read or the problem, after checking what any answer must be.
fn read_as_the_app_does(bytes: &[u8], name: &str) -> Result<usize, FileProblem> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
    let lim = limits();
    let info = sniff(&path, None, &lim)?;
    assert!(!info.headers.is_empty() && info.headers.len() <= lim.max_columns, "{:?}", info.headers);
    let mut rows = 0usize;
    visit_rows(&path, &info, &mut |n, cells| {
        assert!(n >= 2, "data rows are numbered after the header");
        assert!(cells.iter().all(|c| c.len() <= lim.max_cell_bytes), "no cell past the limit is handed on");
        rows += 1;
        Ok(true)
    })?;
    assert!(rows as u64 <= lim.max_rows);
    memory_stays_bounded();
    Ok(rows)
}

/// The process's peak memory, after any input, stays far below what a bomb would take.
fn memory_stays_bounded() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(kib < 512 * 1024, "peak RSS {} MiB", kib / 1024);
}

fn clear(problem: &FileProblem) {
    memory_stays_bounded();
    let text = problem.to_string();
    assert!(text.len() > 10 && !text.contains("panicked"), "{text}");
}

/// A valid CSV of the shipped locations entity, to mutate.
fn a_csv() -> Vec<u8> {
    let mut s = String::from("code,name,kind,capacity\n");
    for i in 0..30 {
        s.push_str(&format!("LOC-{i},\"Site {i}, North\",clinic,{i}\n"));
    }
    s.into_bytes()
}

/// A small valid workbook, to mutate.
fn a_workbook() -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in ["code", "name", "kind"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for r in 1..20u32 {
        sheet.write_string(r, 0, format!("LOC-{r}")).unwrap();
        sheet.write_string(r, 1, format!("Site {r}")).unwrap();
        sheet.write_number(r, 2, f64::from(r)).unwrap();
    }
    book.save_to_buffer().unwrap()
}

/// `base` with some bytes changed, some cut out and maybe an end cut off.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    (proptest::collection::vec((0..len, any::<u8>()), 0..12), proptest::collection::vec(0..len, 0..4), 0..=len)
        .prop_map(move |(flips, cuts, end)| {
            let mut b = base.clone();
            for (i, v) in flips {
                b[i] = v;
            }
            for i in cuts {
                if i < b.len() {
                    b.remove(i);
                }
            }
            b.truncate(end.max(1));
            b
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_are_read_or_refused_clearly(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Err(p) = read_as_the_app_does(&bytes, "random.csv") {
            clear(&p);
        }
    }

    #[test]
    fn csv_like_text_is_read_or_refused_clearly(text in "[a-z0-9,;\t\"\\n\\r ]{0,2000}") {
        if let Err(p) = read_as_the_app_does(text.as_bytes(), "text.csv") {
            clear(&p);
        }
    }

    #[test]
    fn mutated_csv_is_read_or_refused_clearly(bytes in mutated(a_csv())) {
        if let Err(p) = read_as_the_app_does(&bytes, "mutated.csv") {
            clear(&p);
        }
    }

    #[test]
    fn mutated_workbooks_are_read_or_refused_clearly(bytes in mutated(a_workbook())) {
        if let Err(p) = read_as_the_app_does(&bytes, "mutated.xlsx") {
            clear(&p);
        }
    }

    #[test]
    fn any_headers_map_each_field_and_column_at_most_once(
        headers in proptest::collection::vec("[ A-Za-z_\\-é0-9]{0,12}", 0..40)
    ) {
        use stevedore::domain::imports::mapping::{Target, auto_map};
        let schemas = stevedore::content::load_schemas(None).unwrap();
        let schema = schemas.get("locations").unwrap();
        let targets: Vec<Target> = schema.fields.iter().map(|f| Target { name: f.name(), label: &f.label, synonyms: &f.synonyms }).collect();
        let headers: Vec<String> = headers;
        let map = auto_map(&targets, &headers);
        let mut used = std::collections::HashSet::new();
        for (field, header) in &map {
            prop_assert!(schema.fields.iter().any(|f| f.name() == field));
            prop_assert!(headers.contains(header), "{header} is a column of the file");
            prop_assert!(used.insert(header.clone()), "{header} mapped twice");
        }
    }

    #[test]
    fn any_cells_are_stored_or_refused_with_the_field_named(
        cells in proptest::collection::vec("\\PC{0,40}", 9)
    ) {
        let schemas = stevedore::content::load_schemas(None).unwrap();
        let schema = schemas.get("locations").unwrap();
        let names: Vec<&str> = schema.fields.iter().map(|f| f.name()).collect();
        match schema.prepare(|f| names.iter().position(|n| *n == f).and_then(|i| cells.get(i)).map(String::as_str)) {
            Ok(r) => prop_assert!(!r.key.trim().is_empty(), "a stored record has its key"),
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                for p in problems {
                    prop_assert!(names.iter().any(|n| p.starts_with(&format!("{n}:"))), "{p}");
                }
            }
        }
    }

    #[test]
    fn download_links_hold_only_with_their_own_signature(
        query in "[a-z=&%0-9+]{0,60}",
        sig in "[0-9a-f]{0,70}",
        expires in any::<i64>(),
        flip in 0usize..64,
    ) {
        use stevedore::domain::exports::{link_query, sign, verify};
        // any query: a link or none, never a panic
        if let Some((_, s)) = link_query(&query) {
            prop_assert!(query.contains("sig="), "{s}");
        }
        let key = [7u8; 32];
        let now = 1_700_000_000;
        prop_assert!(!verify(&key, "/a/file.csv", 1, expires, &sig, now) || sig == sign(&key, "/a/file.csv", 1, expires));
        // a genuine link, one character changed, no longer holds
        let good = sign(&key, "/a/file.csv", 1, now + 60);
        prop_assert!(verify(&key, "/a/file.csv", 1, now + 60, &good, now));
        let mut bad: Vec<char> = good.chars().collect();
        let i = flip % bad.len();
        bad[i] = if bad[i] == '0' { '1' } else { '0' };
        let bad: String = bad.into_iter().collect();
        prop_assert!(!verify(&key, "/a/file.csv", 1, now + 60, &bad, now));
        prop_assert!(!verify(&key, "/a/file.csv", 2, now + 60, &good, now), "another org's file");
    }
}
