//! Files fetched from the URLs that file and image fields name, remembered per org and URL
//! so each is fetched once.

use anyhow::Context;

use super::Db;
use crate::domain::ids::OrgId;
use crate::files::fetch::Fetched;
use crate::{on_pool, on_writer};

/// The file fetched from `url` for the org earlier, if any.
pub async fn fetched_file(db: &Db, org: OrgId, url: &str) -> anyhow::Result<Option<Fetched>> {
    let row = on_pool!(db, p => sqlx::query_as::<_, (String, String, i64, String, String)>(
        "SELECT name, content_type, size, md5, path FROM fetched_files WHERE org_id = $1 AND source_url = $2",
    )
    .bind(org.get())
    .bind(url)
    .fetch_optional(p)
    .await)
    .context("looking up a fetched file")?;
    Ok(row.map(|(name, content_type, size, md5, path)| Fetched { name, content_type, size, md5, path: path.into() }))
}

/// Remembers a fetched file (the first fetch of a URL wins).
pub async fn add_fetched_file(db: &Db, org: OrgId, url: &str, f: &Fetched) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "INSERT INTO fetched_files (org_id, source_url, name, content_type, size, md5, path, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (org_id, source_url) DO NOTHING",
    )
    .bind(org.get())
    .bind(url)
    .bind(&f.name)
    .bind(&f.content_type)
    .bind(f.size)
    .bind(&f.md5)
    .bind(f.path.to_string_lossy().as_ref())
    .bind(crate::now())
    .execute(p)
    .await
    .map(|_| ()))
    .context("remembering a fetched file")
}
