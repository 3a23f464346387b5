//! Fetching the files that file and image fields name by URL into storage (seed 003's
//! file upload step).
//!
//! Only public addresses are fetched unless private networks are allowed: a URL whose host
//! is, or resolves to, a loopback, private, link-local or otherwise non-public address is
//! refused, at every redirect too. The check sits in the resolver the client connects
//! through, so a name cannot resolve to one address for the check and another for the
//! connection. Bodies stream to disk with a size cap, hashed on the way.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;

/// The largest file fetched.
pub const MAX_BYTES: u64 = 25 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;

/// A fetched file, stored under its MD5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub md5: String,
    pub path: PathBuf,
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            // every form that carries an IPv4 address is judged by that address
            if let Some(v4) = embedded_ipv4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
                || (s[0] == 0x2001 && s[1] == 0) // Teredo: a tunnel to an IPv4 address
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)) // local-use NAT64 (RFC 8215)
        }
    }
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, deprecated but still routed by some stacks), NAT64's well-known prefix
/// (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::`).
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let (s, o) = (v6.segments(), v6.octets());
    let last = std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        Some(v4)
    } else if (s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback()) || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(last)
    } else if s[0] == 0x2002 {
        Some(std::net::Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else {
        None
    }
}

/// The resolver error that names a refused address.
#[derive(Debug)]
struct PrivateAddress(IpAddr);

impl std::fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a public address", self.0)
    }
}

impl StdError for PrivateAddress {}

/// Resolves names like the system does, refusing any name with a non-public address.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(Box::new(PrivateAddress(bad.ip())) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why a URL may not be fetched before asking anyone: its scheme, or a literal address.
fn refuse_url(url: &reqwest::Url, allow_private: bool) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!("only http and https are fetched, not {}", url.scheme()));
    }
    let Some(host) = url.host_str() else {
        return Some("it has no host".into());
    };
    // a literal address; names are checked by the resolver
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok()?;
    (!allow_private && !is_public(ip)).then(|| private_message(ip))
}

fn private_message(ip: IpAddr) -> String {
    format!("it points to {ip}, a private or local network address, which is never fetched")
}

/// Downloads files by URL.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    allow_private: bool,
}

impl Fetcher {
    /// A fetcher; `allow_private` lets it reach private networks (for tests and closed
    /// installations).
    pub fn new(allow_private: bool) -> anyhow::Result<Fetcher> {
        // the process-wide TLS provider; a second install is refused harmlessly
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match refuse_url(attempt.url(), allow_private) {
                Some(why) => attempt.error(why),
                None => attempt.follow(),
            }
        });
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .redirect(policy)
            .user_agent(concat!("stevedore-importer/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Fetcher { client: builder.build()?, allow_private })
    }

    /// Fetches `url` into `dir` (as `dir/<md5>`); `image` asks for an image. The error is
    /// a plain sentence for the row's message.
    pub async fn fetch(&self, url: &str, dir: &Path, image: bool) -> Result<Fetched, String> {
        let parsed = reqwest::Url::parse(url).map_err(|_| "it is not a valid URL".to_string())?;
        if let Some(why) = refuse_url(&parsed, self.allow_private) {
            return Err(why);
        }
        let mut resp = self.client.get(parsed).send().await.map_err(|e| describe(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        if resp.content_length().is_some_and(|n| n > MAX_BYTES) {
            return Err(too_large());
        }
        let header_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        let name = file_name(resp.url());
        tokio::fs::create_dir_all(dir).await.map_err(|e| storage(&e))?;
        let tmp = dir.join(format!(".part-{}", crate::random_token(8).map_err(|e| e.to_string())?));
        let result = async {
            let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| storage(&e))?;
            let (mut h, mut size, mut head) = (Md5::new(), 0u64, Vec::<u8>::new());
            while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
                size += chunk.len() as u64;
                if size > MAX_BYTES {
                    return Err(too_large());
                }
                if head.len() < 16 {
                    head.extend(chunk.iter().take(16 - head.len()));
                }
                h.update(&chunk);
                out.write_all(&chunk).await.map_err(|e| storage(&e))?;
            }
            out.flush().await.map_err(|e| storage(&e))?;
            Ok((hex::encode(h.finalize()), size, head))
        }
        .await;
        let (md5, size, head) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let sniffed = sniff_image(&head);
        let content_type = match (sniffed, header_type) {
            (Some(t), _) => t.to_string(),
            (None, Some(t)) => t,
            (None, None) => "application/octet-stream".into(),
        };
        if image && sniffed.is_none() {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(format!("it is not an image (PNG, JPEG, GIF or WebP) but {content_type}"));
        }
        let path = dir.join(&md5);
        tokio::fs::rename(&tmp, &path).await.map_err(|e| storage(&e))?;
        Ok(Fetched { name, content_type, size: size as i64, md5, path })
    }
}

fn too_large() -> String {
    format!("it is larger than {} MiB", MAX_BYTES / 1024 / 1024)
}

fn storage(e: &std::io::Error) -> String {
    tracing::warn!(error = %e, "storing a fetched file failed");
    "it could not be stored (a storage error; see the server log)".into()
}

/// A plain sentence for a failed request, naming a refused private address.
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(p) = s.downcast_ref::<PrivateAddress>() {
            return private_message(p.0);
        }
        source = s.source();
    }
    if e.is_timeout() {
        "the server did not answer in time".into()
    } else if e.is_redirect() {
        format!("its redirects could not be followed ({})", e.source().map(|s| s.to_string()).unwrap_or_default())
    } else if e.is_connect() {
        "the server could not be reached".into()
    } else {
        "the download failed".into()
    }
}

/// The last path segment of the URL, or "file".
fn file_name(url: &reqwest::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "file".into())
}

/// The image type by the file's first bytes.
fn sniff_image(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::7f00:1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2001:0:4136:e378::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in
            ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:1.1.1.1", "64:ff9b::808:808", "2002:808:808::1"]
        {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn literal_private_hosts_and_other_schemes_are_refused_before_asking() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(refuse_url(&url("http://127.0.0.1:8080/a.png"), false).unwrap().contains("127.0.0.1, a private"));
        assert!(refuse_url(&url("http://[::1]/a.png"), false).is_some());
        assert!(refuse_url(&url("http://169.254.169.254/latest/meta-data"), false).is_some());
        assert_eq!(refuse_url(&url("http://127.0.0.1/a.png"), true), None);
        assert_eq!(refuse_url(&url("https://example.com/a.png"), false), None);
        assert!(refuse_url(&url("ftp://example.com/a"), true).unwrap().contains("not ftp"));
        assert!(refuse_url(&url("http://[::127.0.0.1]/a.png"), false).is_some());
        assert!(refuse_url(&url("http://[64:ff9b::7f00:1]/a.png"), false).is_some());
        assert_eq!(refuse_url(&url("HTTPS://example.com/a.png"), false), None, "schemes in any case");
    }

    #[test]
    fn images_are_known_by_their_first_bytes() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n\0\0"), Some("image/png"));
        assert_eq!(sniff_image(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"GIF89a..."), Some("image/gif"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"%PDF-1.7"), None);
        assert_eq!(file_name(&reqwest::Url::parse("https://x.test/docs/cert.pdf?v=2").unwrap()), "cert.pdf");
        assert_eq!(file_name(&reqwest::Url::parse("https://x.test/").unwrap()), "file");
    }
}
