//! Embeds the shipped entity schemas (`schemas/*.toml`) into the binary, so a new schema
//! file is picked up by the next build without any code change.

use std::fmt::Write;

fn main() {
    println!("cargo:rerun-if-changed=schemas");
    // sqlx::migrate! embeds the migrations: a changed migration must rebuild the crate
    println!("cargo:rerun-if-changed=migrations");
    let dir = std::path::Path::new("schemas");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::from(
        "/// The shipped schema files: (file name, contents).\npub const SHIPPED_SCHEMAS: &[(&str, &str)] = &[\n",
    );
    for p in &files {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        let _ = writeln!(out, "    ({name:?}, include_str!({:?})),", abs.display().to_string());
        println!("cargo:rerun-if-changed={}", p.display());
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("schemas.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        println!("cargo:warning=cannot write {}: {e}", dest.display());
    }
}
