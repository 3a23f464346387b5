//! Where finished export files are kept: the data directory (the default), or an
//! S3-compatible bucket when one is configured. A file is always written to the data
//! directory first (so a build that dies leaves nothing half-written in the bucket), then
//! streamed to the bucket in parts and removed locally. Downloads of a bucket's file go
//! to the bucket's own presigned URL.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::{Method, Signer};
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, WriteMultipart};
use secrecy::ExposeSecret;
use tokio::io::AsyncReadExt;

use crate::config::S3Settings;

/// Bytes per uploaded part (S3's minimum for all but the last is 5 MiB).
const PART: usize = 8 << 20;
/// Parts uploading at once; with one more being filled this bounds memory at ~24 MiB.
const PARTS_IN_FLIGHT: usize = 2;

/// The store of finished export files.
#[derive(Clone, Debug, Default)]
pub enum FileStore {
    /// Files stay in the data directory and download through the app's signed links.
    #[default]
    Local,
    S3(Arc<Bucket>),
}

#[derive(Debug)]
pub struct Bucket {
    store: AmazonS3,
    name: String,
    prefix: String,
}

impl FileStore {
    /// Removes an export's file wherever it is: the bucket object, the local file and a
    /// half-written `.part` beside it. A file already gone is fine; anything else is logged.
    pub async fn discard(&self, file_path: &str, object_key: Option<&str>) {
        if let Some(key) = object_key
            && let Err(e) = self.remove(key).await
        {
            tracing::warn!(error = format!("{e:#}"), key, "removing an export object failed");
        }
        for p in [file_path.to_string(), format!("{file_path}.part")] {
            if let Err(e) = tokio::fs::remove_file(&p).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, file = p, "removing an export file failed");
            }
        }
    }

    /// The bucket of the settings, or local storage without one. Credentials not set in
    /// the settings come from the standard `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
    /// and `AWS_SESSION_TOKEN`.
    pub fn from_settings(s3: Option<&S3Settings>) -> anyhow::Result<FileStore> {
        let Some(s) = s3 else { return Ok(FileStore::Local) };
        // reqwest is built without a default TLS provider: make ring the process's
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&s.bucket).with_region(&s.region);
        if let Some(id) = &s.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &s.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose_secret());
        }
        if let Some(endpoint) = &s.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().with_context(|| format!("configuring the S3 bucket {}", s.bucket))?;
        Ok(FileStore::S3(Arc::new(Bucket { store, name: s.bucket.clone(), prefix: s.prefix.clone() })))
    }

    /// A short description for logs: "local" or "s3://bucket/prefix".
    pub fn describe(&self) -> String {
        match self {
            FileStore::Local => "local".into(),
            FileStore::S3(b) => format!("s3://{}/{}", b.name, b.prefix),
        }
    }

    /// Moves a finished file into the bucket under `key` (below the configured prefix) with
    /// the content type and download name it is served with; removes the local file. The
    /// object key, or None when files stay local.
    pub async fn publish(
        &self,
        local: &Path,
        key: &str,
        content_type: &str,
        disposition: &str,
    ) -> anyhow::Result<Option<String>> {
        let FileStore::S3(b) = self else { return Ok(None) };
        let object_key = format!("{}{key}", b.prefix);
        let location = object_path(&object_key)?;
        let attributes = Attributes::from_iter([
            (Attribute::ContentType, content_type.to_string()),
            (Attribute::ContentDisposition, disposition.to_string()),
        ]);
        let opts = PutMultipartOptions { attributes, ..Default::default() };
        let upload = b.store.put_multipart_opts(&location, opts).await.context("starting the upload")?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut file = tokio::fs::File::open(local).await.with_context(|| format!("opening {}", local.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e).with_context(|| format!("reading {}", local.display()));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(e).context("uploading a part");
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.context("finishing the upload")?;
        if let Err(e) = tokio::fs::remove_file(local).await {
            tracing::warn!(error = %e, file = %local.display(), "removing an uploaded export's local copy failed");
        }
        Ok(Some(object_key))
    }

    /// The bucket and the path of a stored object.
    fn locate(&self, object_key: &str) -> anyhow::Result<(&Bucket, ObjectPath)> {
        let FileStore::S3(b) = self else {
            anyhow::bail!("the file is in an S3 bucket, but no bucket is configured (STEVEDORE_S3_BUCKET)")
        };
        Ok((b, object_path(object_key)?))
    }

    /// Removes an object; one already gone is fine.
    pub async fn remove(&self, object_key: &str) -> anyhow::Result<()> {
        let (b, location) = self.locate(object_key)?;
        match b.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).context("deleting the object"),
        }
    }

    /// Whether files can be kept: the data directory takes (and gives up) a file, and the
    /// bucket, when one is configured, answers (an object that is not there is an answer).
    pub async fn check(&self, data_dir: &Path) -> anyhow::Result<()> {
        let probe = data_dir.join(format!(".readyz-{}", std::process::id()));
        tokio::fs::write(&probe, b"ok").await.with_context(|| format!("writing in {}", data_dir.display()))?;
        let _ = tokio::fs::remove_file(&probe).await;
        if let FileStore::S3(b) = self {
            let location = object_path(&format!("{}.readyz", b.prefix))?;
            match b.store.head(&location).await {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e).context("asking the bucket"),
            }
        }
        Ok(())
    }

    /// The bucket's own URL for one GET of the object, valid for `secs`.
    pub async fn presigned(&self, object_key: &str, secs: u64) -> anyhow::Result<String> {
        let (b, location) = self.locate(object_key)?;
        let url = b
            .store
            .signed_url(Method::GET, &location, Duration::from_secs(secs))
            .await
            .context("signing the download URL")?;
        Ok(url.to_string())
    }
}

fn object_path(key: &str) -> anyhow::Result<ObjectPath> {
    ObjectPath::parse(key).with_context(|| format!("\"{key}\" is not an object key"))
}
