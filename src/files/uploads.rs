//! Receiving an upload: the multipart body streamed to storage while its MD5 is computed
//! (never the whole file in memory), with its text fields beside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use actix_multipart::Multipart;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;

/// Text fields longer than this are refused.
const FIELD_LIMIT: usize = 64 * 1024;

/// The uploaded file as stored.
#[derive(Debug, Clone)]
pub struct StoredUpload {
    /// The name it was sent with.
    pub original: String,
    pub path: PathBuf,
    pub size: i64,
    /// MD5 of its bytes, hex.
    pub checksum: String,
}

/// An upload's text fields and where its file went.
#[derive(Debug, Default)]
pub struct Received {
    pub fields: BTreeMap<String, String>,
    pub file: Option<StoredUpload>,
}

impl Received {
    /// A text field, trimmed; None when absent or blank.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// Removes the stored file (the upload was refused).
    pub fn discard(&self) {
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(&f.path);
        }
    }
}

#[derive(Debug)]
pub enum UploadError {
    /// Past the size limit; nothing was kept.
    TooLarge,
    /// The request itself was bad: the message says how.
    Bad(String),
    Internal(anyhow::Error),
}

/// Streams the multipart body: text fields into a map, the `file` field to a new file in
/// `dir` (a random name with the original's extension) while hashing it. Past `limit`
/// bytes the file is removed and `TooLarge` returned.
pub async fn receive(mut payload: Multipart, dir: &Path, limit: u64) -> Result<Received, UploadError> {
    let internal = |e: std::io::Error| UploadError::Internal(e.into());
    tokio::fs::create_dir_all(dir).await.map_err(internal)?;
    let mut out = Received::default();
    while let Some(field) = payload.next().await {
        let mut field = field.map_err(|e| UploadError::Bad(format!("The upload could not be read: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.content_disposition().and_then(|cd| cd.get_filename()).map(str::to_string);
        match (name.as_str(), file_name) {
            ("file", Some(original)) if !original.is_empty() => {
                let path = dir.join(stored_name(&original).map_err(UploadError::Internal)?);
                let mut f = tokio::fs::File::create(&path).await.map_err(internal)?;
                let mut md5 = Md5::new();
                let mut size: u64 = 0;
                while let Some(chunk) = field.next().await {
                    let chunk = match chunk {
                        Ok(c) => c,
                        Err(e) => {
                            drop(f);
                            let _ = tokio::fs::remove_file(&path).await;
                            return Err(UploadError::Bad(format!("The upload was interrupted: {e}")));
                        }
                    };
                    size += chunk.len() as u64;
                    if size > limit {
                        drop(f);
                        let _ = tokio::fs::remove_file(&path).await;
                        return Err(UploadError::TooLarge);
                    }
                    md5.update(&chunk);
                    f.write_all(&chunk).await.map_err(internal)?;
                }
                f.flush().await.map_err(internal)?;
                let checksum = hex::encode(md5.finalize());
                out.file = Some(StoredUpload { original, path, size: size as i64, checksum });
            }
            _ => {
                let mut text = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| UploadError::Bad(format!("The upload could not be read: {e}")))?;
                    if text.len() + chunk.len() > FIELD_LIMIT {
                        out.discard();
                        return Err(UploadError::Bad(format!("The field \"{name}\" is too long.")));
                    }
                    text.extend_from_slice(&chunk);
                }
                out.fields.insert(name, String::from_utf8_lossy(&text).into_owned());
            }
        }
    }
    Ok(out)
}

/// A fresh random file name keeping the original's extension (lower case, at most eight
/// letters or digits; `bin` without one).
fn stored_name(original: &str) -> anyhow::Result<String> {
    let token = crate::random_token(12)?;
    let ext = Path::new(original).extension().and_then(|e| e.to_str()).unwrap_or("bin").to_ascii_lowercase();
    let ext: String = ext.chars().filter(|c| c.is_ascii_alphanumeric()).take(8).collect();
    Ok(format!("{token}.{}", if ext.is_empty() { "bin" } else { &ext }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_are_random_and_keep_a_safe_extension() {
        let a = stored_name("Contacts.CSV").unwrap();
        let b = stored_name("Contacts.CSV").unwrap();
        assert!(a.ends_with(".csv") && a != b, "{a} {b}");
        assert!(stored_name("../../etc/passwd").unwrap().ends_with(".bin"));
        assert!(stored_name("x.x$l/sx").unwrap().ends_with(".bin"), "no extension after the slash");
        assert!(stored_name("book.xlsx\u{0}evil").unwrap().ends_with(".xlsxevil"));
    }
}
