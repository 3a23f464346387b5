//! The content the app is configured with: the entity schemas and marketplace bundles
//! compiled into the binary (`build.rs` embeds `schemas/*.toml` and `marketplace/*.toml`),
//! plus the operators' extra folders, validated when loaded.

use anyhow::Context;

use crate::domain::entities::Schemas;
use crate::domain::marketplace::{Catalog, Problem};

include!(concat!(env!("OUT_DIR"), "/schemas.rs"));

/// The `*.toml` files in `dir`, sorted.
fn toml_files(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// The shipped entity schemas plus any `*.toml` in `extra_dir`; the first bad file stops
/// start-up with its name, line and the problem.
pub fn load_schemas(extra_dir: Option<&std::path::Path>) -> anyhow::Result<Schemas> {
    let mut files: Vec<(String, String)> =
        SHIPPED_SCHEMAS.iter().map(|(name, text)| (format!("schemas/{name}"), (*text).to_string())).collect();
    if let Some(dir) = extra_dir {
        let paths = toml_files(dir)
            .with_context(|| format!("invalid setting STEVEDORE_SCHEMA_DIR: cannot read {}", dir.display()))?;
        for p in paths {
            let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
            files.push((p.display().to_string(), text));
        }
    }
    Schemas::load(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
        .map_err(|e| anyhow::anyhow!("invalid entity schema {e}"))
}

/// The marketplace catalog: the shipped bundles, then any in `extra_dir`. A bundle file that
/// cannot be read or fails validation is reported in the log (file and reason) and left out;
/// the app starts with the rest.
pub fn load_catalog(schemas: &Schemas, extra_dir: Option<&std::path::Path>) -> Catalog {
    let mut files: Vec<(String, String)> =
        SHIPPED_BUNDLES.iter().map(|(name, text)| (format!("marketplace/{name}"), (*text).to_string())).collect();
    let mut unreadable = vec![];
    if let Some(dir) = extra_dir {
        match toml_files(dir) {
            Ok(paths) => {
                for p in paths {
                    match std::fs::read_to_string(&p) {
                        Ok(text) => files.push((p.display().to_string(), text)),
                        Err(e) => unreadable.push(Problem { file: p.display().to_string(), reason: e.to_string() }),
                    }
                }
            }
            Err(e) => unreadable.push(Problem { file: dir.display().to_string(), reason: e.to_string() }),
        }
    }
    let (catalog, problems) = Catalog::load(files.iter().map(|(n, t)| (n.as_str(), t.as_str())), schemas);
    for p in unreadable.iter().chain(&problems) {
        tracing::warn!(file = %p.file, reason = %p.reason, "marketplace bundle left out");
    }
    catalog
}
