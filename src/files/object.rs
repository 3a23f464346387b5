//! Where every file is kept: the data directory (the default), or an S3-compatible bucket
//! when one is configured, so that any instance can read what another received.
//!
//! A file is named by its *key* below `DATA_DIR/files` (`imports/7/x.csv`; rows stored
//! before keys held whole paths, which still read). With a bucket, a file is written locally
//! first (an upload streamed in and hashed, an export built), then streamed to the bucket in
//! parts, so nothing half-written is ever there; the local copy goes once it has been read.
//! A job on any instance reads a file through [`FileStore::open`]: the local file when this
//! instance has it, else a scratch copy streamed from the bucket and removed after the job.
//! Downloads of a bucket's file go to the bucket's own presigned URL.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::{Method, Signer};
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, WriteMultipart};
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::S3Settings;

/// Bytes per uploaded part (S3's minimum for all but the last is 5 MiB).
const PART: usize = 8 << 20;
/// Parts uploading at once; with one more being filled this bounds memory at ~24 MiB.
const PARTS_IN_FLIGHT: usize = 2;

/// The store of every file: the data directory's `files`, and the bucket when configured.
#[derive(Clone, Debug)]
pub struct FileStore {
    root: PathBuf,
    bucket: Option<Arc<Bucket>>,
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
    pub fn from_settings(data_dir: &Path, s3: Option<&S3Settings>) -> anyhow::Result<FileStore> {
        let Some(s) = s3 else { return Ok(FileStore::local(data_dir)) };
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
        let bucket = Bucket { store, name: s.bucket.clone(), prefix: s.prefix.clone() };
        Ok(FileStore { root: data_dir.join("files"), bucket: Some(Arc::new(bucket)) })
    }

    /// Files in the data directory only.
    pub fn local(data_dir: &Path) -> FileStore {
        FileStore { root: data_dir.join("files"), bucket: None }
    }

    /// Whether files go to a bucket.
    pub fn shared(&self) -> bool {
        self.bucket.is_some()
    }

    /// A short description for logs: "local" or "s3://bucket/prefix".
    pub fn describe(&self) -> String {
        match &self.bucket {
            None => format!("local ({})", self.root.display()),
            Some(b) => format!("s3://{}/{}", b.name, b.prefix),
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
        let Some(b) = &self.bucket else { return Ok(None) };
        let object_key = format!("{}{key}", b.prefix);
        b.upload(local, &object_key, content_type, disposition).await?;
        if let Err(e) = tokio::fs::remove_file(local).await {
            tracing::warn!(error = %e, file = %local.display(), "removing an uploaded export's local copy failed");
        }
        Ok(Some(object_key))
    }

    /// The bucket and the path of a stored object.
    fn locate(&self, object_key: &str) -> anyhow::Result<(&Bucket, ObjectPath)> {
        let Some(b) = &self.bucket else {
            anyhow::bail!("the file is in an S3 bucket, but no bucket is configured (STEVEDORE_S3_BUCKET)")
        };
        Ok((b, object_path(object_key)?))
    }

    /// Where the file of `key` is on this instance's disk (a key that is a whole path, as
    /// rows stored before keys hold, is that path).
    pub fn path_of(&self, key: &str) -> PathBuf {
        let p = Path::new(key);
        if p.is_absolute() { p.to_path_buf() } else { self.root.join(p) }
    }

    /// The key of a file written below the store's directory (a file elsewhere is named by
    /// its whole path).
    pub fn key_of(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(rel) => rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"),
            Err(_) => path.to_string_lossy().into_owned(),
        }
    }

    /// The directory new files of `kind` (`imports/7`) are written to before they are kept.
    pub fn dir(&self, kind: &str) -> PathBuf {
        self.root.join(kind)
    }

    /// Keeps the file of `key`, written locally: with a bucket, streams it there in parts
    /// (with the type and download name it is served with) and leaves the local copy for
    /// [`FileStore::release`]; without one, the file already is where it is kept.
    pub async fn keep(&self, key: &str, content_type: &str, disposition: &str) -> anyhow::Result<()> {
        let Some(b) = &self.bucket else { return Ok(()) };
        b.upload(&self.path_of(key), &format!("{}{key}", b.prefix), content_type, disposition).await
    }

    /// Gives up this instance's copy of a kept file when the bucket has it (the receiving
    /// request is done with it); without a bucket the local file is the kept one.
    pub async fn release(&self, key: &str) {
        if self.bucket.is_some() && !Path::new(key).is_absolute() {
            remove_local(&self.path_of(key)).await;
        }
    }

    /// The file of `key`, readable on this instance's disk: the local file when there is
    /// one, else a scratch copy streamed from the bucket, removed when the last clone of
    /// the returned value goes.
    pub async fn open(&self, key: &str) -> Result<Arc<LocalCopy>, OpenError> {
        let path = self.path_of(key);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(Arc::new(LocalCopy { path, scratch: false }));
        }
        let Some(b) = self.bucket.as_ref().filter(|_| !Path::new(key).is_absolute()) else {
            return Err(OpenError::Missing(format!(
                "the file is not in this process's data directory ({}); processes that do not share one \
                 need a bucket (STEVEDORE_S3_BUCKET)",
                path.display()
            )));
        };
        let dir = self.root.join(SCRATCH);
        tokio::fs::create_dir_all(&dir).await.with_context(|| format!("creating {}", dir.display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let copy = LocalCopy { path: dir.join(format!("{}-{name}", crate::random_token(8)?)), scratch: true };
        b.download(&format!("{}{key}", b.prefix), &copy.path).await?;
        Ok(Arc::new(copy))
    }

    /// Removes a kept file wherever it is: the bucket's object and the local file.
    pub async fn remove_file(&self, key: &str) {
        if let Some(b) = &self.bucket
            && !Path::new(key).is_absolute()
            && let Err(e) = self.remove(&format!("{}{key}", b.prefix)).await
        {
            tracing::warn!(error = format!("{e:#}"), key, "removing an object failed");
        }
        remove_local(&self.path_of(key)).await;
    }

    /// The bucket's presigned URL for one GET of a kept file, valid for `secs`; None when
    /// the file is on this disk (kept before a bucket was configured, or no bucket is): the
    /// app streams it then.
    pub async fn presigned_file(&self, key: &str, secs: u64) -> anyhow::Result<Option<String>> {
        match &self.bucket {
            Some(b)
                if !Path::new(key).is_absolute()
                    && !tokio::fs::try_exists(self.path_of(key)).await.unwrap_or(false) =>
            {
                Ok(Some(self.presigned(&format!("{}{key}", b.prefix), secs).await?))
            }
            _ => Ok(None),
        }
    }

    /// Removes scratch copies older than a day (left by a process that was killed).
    pub async fn sweep_scratch(&self) {
        let Ok(mut dir) = tokio::fs::read_dir(self.root.join(SCRATCH)).await else { return };
        let day = Duration::from_secs(86_400);
        while let Ok(Some(e)) = dir.next_entry().await {
            let old = e.metadata().await.ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            if old.is_some_and(|age| age > day) {
                remove_local(&e.path()).await;
            }
        }
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
        if let Some(b) = &self.bucket {
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

/// Why a kept file cannot be read here.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// It is nowhere this process can read it: trying again will not find it either.
    #[error("{0}")]
    Missing(String),
    /// The bucket or the disk failed this time.
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

/// Where scratch copies of the bucket's files go, below the store's directory.
const SCRATCH: &str = ".scratch";

/// A file readable on this instance's disk for as long as this lives.
#[derive(Debug)]
pub struct LocalCopy {
    pub path: PathBuf,
    scratch: bool,
}

impl Drop for LocalCopy {
    fn drop(&mut self) {
        if self.scratch
            && let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, file = %self.path.display(), "removing a scratch copy failed");
        }
    }
}

async fn remove_local(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, file = %path.display(), "removing a local file failed");
    }
}

impl Bucket {
    /// Streams a local file to the object `object_key` in parts, with the type and download
    /// name it is served with; memory stays at a few parts.
    async fn upload(
        &self,
        local: &Path,
        object_key: &str,
        content_type: &str,
        disposition: &str,
    ) -> anyhow::Result<()> {
        let location = object_path(object_key)?;
        let attributes = Attributes::from_iter([
            (Attribute::ContentType, content_type.to_string()),
            (Attribute::ContentDisposition, disposition.to_string()),
        ]);
        let opts = PutMultipartOptions { attributes, ..Default::default() };
        let upload = self.store.put_multipart_opts(&location, opts).await.context("starting the upload")?;
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
        Ok(())
    }

    /// Streams the object `object_key` into a new local file `to` (removed again when the
    /// download fails).
    async fn download(&self, object_key: &str, to: &Path) -> Result<(), OpenError> {
        let location = object_path(object_key)?;
        let got = match self.store.get(&location).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(OpenError::Missing(format!("the file is not in the bucket (object {object_key})")));
            }
            Err(e) => return Err(anyhow::Error::from(e).context(format!("reading the object {object_key}")).into()),
        };
        let result = async {
            let mut stream = got.into_stream();
            let mut out = tokio::fs::File::create(to).await.with_context(|| format!("creating {}", to.display()))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.with_context(|| format!("reading the object {object_key}"))?;
                out.write_all(&chunk).await.with_context(|| format!("writing {}", to.display()))?;
            }
            out.flush().await.with_context(|| format!("writing {}", to.display()))?;
            anyhow::Ok(())
        }
        .await;
        if result.is_err() {
            remove_local(to).await;
        }
        Ok(result?)
    }
}

fn object_path(key: &str) -> anyhow::Result<ObjectPath> {
    ObjectPath::parse(key).with_context(|| format!("\"{key}\" is not an object key"))
}
