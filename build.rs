//! Embeds the shipped entity schemas (`schemas/*.toml`) and marketplace bundles
//! (`marketplace/*.toml`) into the binary, so a new file is picked up by the next build
//! without any code change.

use std::fmt::Write;

/// `const NAME: &[(&str, &str)]` of the `*.toml` files in `dir`: (file name, contents).
fn embed(out: &mut String, dir: &str, name: &str, doc: &str) {
    println!("cargo:rerun-if-changed={dir}");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect()
        })
        .unwrap_or_default();
    files.sort();
    let _ = writeln!(out, "/// {doc}: (file name, contents).\npub const {name}: &[(&str, &str)] = &[");
    for p in &files {
        let file = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        let _ = writeln!(out, "    ({file:?}, include_str!({:?})),", abs.display().to_string());
        println!("cargo:rerun-if-changed={}", p.display());
    }
    out.push_str("];\n");
}

fn main() {
    // sqlx::migrate! embeds the migrations: a changed migration must rebuild the crate
    println!("cargo:rerun-if-changed=migrations");
    let mut out = String::new();
    embed(&mut out, "schemas", "SHIPPED_SCHEMAS", "The shipped schema files");
    embed(&mut out, "marketplace", "SHIPPED_BUNDLES", "The shipped marketplace bundle files");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("schemas.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        println!("cargo:warning=cannot write {}: {e}", dest.display());
    }
}
