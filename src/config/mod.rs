//! Settings, from command-line flags and `STEVEDORE_*` environment variables (flags win).
//! Everything is validated here, once, at start-up: a bad value stops the program with
//! one line naming the setting and why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use secrecy::{ExposeSecret, SecretSlice, SecretString};

mod values;

pub use values::*;

/// Options every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Directory for the SQLite database, the session key and stored files.
    #[arg(long, env = "STEVEDORE_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,

    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB. Default: SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Maximum database connections in the pool.
    #[arg(long, env = "STEVEDORE_DB_POOL_SIZE", default_value = "8", global = true)]
    pub db_pool_size: String,

    /// Log format: text or json.
    #[arg(long, env = "STEVEDORE_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
}

/// Options of the web server.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "STEVEDORE_BIND", default_value = "127.0.0.1:8080", global = true)]
    pub bind: String,

    /// Key for signing session cookies: at least 64 bytes as 128+ hex characters.
    /// Default: generated once and kept in DATA_DIR/session.key.
    #[arg(long, env = "STEVEDORE_SESSION_KEY", hide_env_values = true, global = true)]
    pub session_key: Option<String>,

    /// Largest accepted upload, e.g. 512MiB, 20MB, 1048576.
    #[arg(long, env = "STEVEDORE_UPLOAD_LIMIT", default_value = "512MiB", global = true)]
    pub upload_limit: String,

    /// Minutes without a request after which a session ends.
    #[arg(long, env = "STEVEDORE_IDLE_TIMEOUT_MINUTES", default_value = "30", global = true)]
    pub idle_timeout_minutes: String,

    /// Minutes after sign-in after which a session ends, however active.
    #[arg(long, env = "STEVEDORE_SESSION_LIFETIME_MINUTES", default_value = "480", global = true)]
    pub session_lifetime_minutes: String,

    /// Mark cookies Secure (set this when served over https).
    #[arg(long, env = "STEVEDORE_SECURE_COOKIES", default_value = "false", global = true)]
    pub secure_cookies: String,

    /// Take the client address from X-Forwarded-For (only behind a proxy you trust).
    #[arg(long, env = "STEVEDORE_TRUST_PROXY", default_value = "false", global = true)]
    pub trust_proxy: String,

    /// A directory of extra entity schema files (*.toml), loaded after the shipped ones.
    #[arg(long, env = "STEVEDORE_SCHEMA_DIR", global = true)]
    pub schema_dir: Option<PathBuf>,

    /// Background jobs run at once by this process (0: none; run `stevedore worker` instead).
    #[arg(long, env = "STEVEDORE_WORKERS", default_value = "2", global = true)]
    pub workers: String,

    /// Seconds a worker holds a job between heartbeats; a crashed worker's job is taken
    /// over this long after its last heartbeat.
    #[arg(long, env = "STEVEDORE_JOB_LEASE_SECS", default_value = "30", global = true)]
    pub job_lease_secs: String,

    /// Hours a validated import waits to be started before it expires and its staged rows
    /// are purged.
    #[arg(long, env = "STEVEDORE_IMPORT_TTL_HOURS", default_value = "24", global = true)]
    pub import_ttl_hours: String,

    /// Days an import's journal and original file are kept; after that maintenance purges
    /// them and the import can no longer be rolled back.
    #[arg(long, env = "STEVEDORE_IMPORT_RETENTION_DAYS", default_value = "90", global = true)]
    pub import_retention_days: String,

    /// Days the file of a completed export is kept; then the export shows as expired.
    #[arg(long, env = "STEVEDORE_EXPORT_RETENTION_DAYS", default_value = "7", global = true)]
    pub export_retention_days: String,

    /// The most columns an import's file may have (a wider header is refused at upload).
    #[arg(long, env = "STEVEDORE_MAX_COLUMNS", default_value = "1024", global = true)]
    pub max_columns: String,

    /// The most data rows an import's file may have.
    #[arg(long, env = "STEVEDORE_MAX_ROWS", default_value = "2000000", global = true)]
    pub max_rows: String,

    /// The most text one cell of an import's file may hold, in KiB (32, as in Excel).
    #[arg(long, env = "STEVEDORE_MAX_CELL_KIB", default_value = "32", global = true)]
    pub max_cell_kib: String,

    /// The most an uploaded workbook may inflate to, all its parts together, in MiB.
    #[arg(long, env = "STEVEDORE_MAX_XLSX_INFLATED_MIB", default_value = "2048", global = true)]
    pub max_xlsx_inflated_mib: String,

    /// The most a workbook's shared strings (read whole into memory) may inflate to, in MiB.
    #[arg(long, env = "STEVEDORE_MAX_XLSX_SHARED_STRINGS_MIB", default_value = "64", global = true)]
    pub max_xlsx_shared_strings_mib: String,

    /// Let imports fetch file and image URLs on private and local networks (refused by
    /// default: a URL in a CSV must not reach services behind the firewall).
    #[arg(long, env = "STEVEDORE_FETCH_PRIVATE_NETWORKS", default_value = "false", global = true)]
    pub fetch_private_networks: String,

    /// Record this instance's session key as the one every instance on the database signs
    /// with, replacing the one recorded (to change the key: every session ends). Without it
    /// an instance whose key is not the recorded one refuses to start.
    #[arg(long, env = "STEVEDORE_REPLACE_SESSION_KEY", default_value = "false", global = true)]
    pub replace_session_key: String,

    /// Requests one API key may make per minute (more are answered 429 Too Many Requests).
    #[arg(long, env = "STEVEDORE_API_RATE_LIMIT", default_value = "600", global = true)]
    pub api_rate_limit: String,

    /// The bearer token `/metrics` asks for (at least 16 characters); unset: `/metrics` is off.
    #[arg(long, env = "STEVEDORE_METRICS_TOKEN", hide_env_values = true, global = true)]
    pub metrics_token: Option<String>,

    /// A directory of extra marketplace bundle files (*.toml), loaded after the shipped ones.
    #[arg(long, env = "STEVEDORE_MARKETPLACE_DIR", global = true)]
    pub marketplace_dir: Option<PathBuf>,

    /// Keep finished export files in this S3-compatible bucket (downloads then go to the
    /// bucket's presigned URLs). Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "STEVEDORE_S3_BUCKET", global = true)]
    pub s3_bucket: Option<String>,

    /// The bucket's endpoint for S3-compatible services (MinIO, Ceph, R2...), e.g.
    /// http://127.0.0.1:9000. Default: AWS.
    #[arg(long, env = "STEVEDORE_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,

    /// The bucket's region.
    #[arg(long, env = "STEVEDORE_S3_REGION", default_value = "us-east-1", global = true)]
    pub s3_region: String,

    /// A key prefix for this installation's objects, e.g. stevedore/.
    #[arg(long, env = "STEVEDORE_S3_PREFIX", default_value = "", global = true)]
    pub s3_prefix: String,

    /// The bucket's access key id. Default: AWS_ACCESS_KEY_ID.
    #[arg(long, env = "STEVEDORE_S3_ACCESS_KEY_ID", global = true)]
    pub s3_access_key_id: Option<String>,

    /// The bucket's secret access key. Default: AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "STEVEDORE_S3_SECRET_ACCESS_KEY", hide_env_values = true, global = true)]
    pub s3_secret_access_key: Option<String>,
}

/// An S3-compatible bucket for export files.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: String,
    /// Empty, or ending in "/".
    pub prefix: String,
    /// Credentials, when set here rather than in the standard AWS_* variables.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<secrecy::SecretString>,
}

impl S3Settings {
    /// The bucket of the settings, None when no bucket is set.
    pub fn from_args(s: &ServeArgs) -> Result<Option<S3Settings>, ConfigError> {
        let bucket = s.s3_bucket.as_deref().map(str::trim).unwrap_or_default();
        if bucket.is_empty() {
            return Ok(None);
        }
        let name_ok = (3..=63).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !name_ok {
            return Err(bad(
                "STEVEDORE_S3_BUCKET",
                format!("\"{bucket}\" is not a bucket name (3 to 63 lowercase letters, digits, dots and hyphens)"),
            ));
        }
        let endpoint = match s.s3_endpoint.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(e) if e.starts_with("http://") || e.starts_with("https://") => {
                Some(e.trim_end_matches('/').to_string())
            }
            Some(e) => return Err(bad("STEVEDORE_S3_ENDPOINT", format!("\"{e}\" is not an http:// or https:// URL"))),
        };
        let region = s.s3_region.trim().to_string();
        if region.is_empty() {
            return Err(bad("STEVEDORE_S3_REGION", "must not be empty"));
        }
        let mut prefix = s.s3_prefix.trim().trim_matches('/').to_string();
        if prefix.split('/').any(|p| p.is_empty() || p == "." || p == "..") && !prefix.is_empty() {
            return Err(bad(
                "STEVEDORE_S3_PREFIX",
                format!("\"{}\" is not a key prefix such as stevedore/", s.s3_prefix),
            ));
        }
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let set = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(String::from);
        Ok(Some(S3Settings {
            bucket: bucket.to_string(),
            endpoint,
            region,
            prefix,
            access_key_id: set(&s.s3_access_key_id),
            secret_access_key: set(&s.s3_secret_access_key).map(secrecy::SecretString::from),
        }))
    }
}

/// A setting that cannot be used, with which one and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {why}")]
pub struct ConfigError {
    pub name: &'static str,
    pub why: String,
}

fn bad(name: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError { name, why: why.into() }
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone)]
pub struct DbSettings {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub pool_size: u32,
    pub json_logs: bool,
}

/// Settings of `serve`.
#[derive(Clone)]
pub struct Settings {
    pub db: DbSettings,
    pub bind: SocketAddr,
    pub session_key: Option<SecretSlice<u8>>,
    pub upload_limit: u64,
    pub idle_timeout: Duration,
    pub session_lifetime: Duration,
    pub secure_cookies: bool,
    pub trust_proxy: bool,
    pub schema_dir: Option<PathBuf>,
    pub marketplace_dir: Option<PathBuf>,
    pub workers: usize,
    pub job_lease_secs: i64,
    pub import_ttl_secs: i64,
    pub import_retention_secs: i64,
    pub export_retention_secs: i64,
    pub fetch_private_networks: bool,
    /// Whether this instance's key replaces the one the database records.
    pub replace_session_key: bool,
    pub file_limits: crate::files::Limits,
    /// Requests one API key may make per minute.
    pub api_rate_limit: u32,
    pub s3: Option<S3Settings>,
    /// The bearer token of `/metrics` (None: off).
    pub metrics_token: Option<SecretString>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("db", &self.db)
            .field("bind", &self.bind)
            .field("session_key", &self.session_key.as_ref().map(|_| "[redacted]"))
            .field("upload_limit", &self.upload_limit)
            .finish_non_exhaustive()
    }
}

impl DbSettings {
    pub fn from_args(a: &CommonArgs) -> Result<DbSettings, ConfigError> {
        let pool_size: u32 = a.db_pool_size.trim().parse().ok().filter(|n| (1..=256).contains(n)).ok_or_else(|| {
            bad("STEVEDORE_DB_POOL_SIZE", format!("\"{}\" is not a number from 1 to 256", a.db_pool_size))
        })?;
        let json_logs = match a.log_format.trim() {
            "text" => false,
            "json" => true,
            other => {
                return Err(bad("STEVEDORE_LOG_FORMAT", format!("\"{other}\" is not text or json")));
            }
        };
        let database_url = match &a.database_url {
            Some(u) if !u.trim().is_empty() => {
                let u = u.trim().to_string();
                if !(u.starts_with("sqlite:") || u.starts_with("postgres:") || u.starts_with("postgresql:")) {
                    return Err(bad("DATABASE_URL", "must start with sqlite:// or postgres://"));
                }
                u
            }
            _ => format!("sqlite://{}", a.data_dir.join("stevedore.db").display()),
        };
        Ok(DbSettings { data_dir: a.data_dir.clone(), database_url, pool_size, json_logs })
    }

    /// Creates the data directory when missing.
    pub fn ensure_data_dir(&self) -> Result<(), ConfigError> {
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|e| bad("STEVEDORE_DATA_DIR", format!("cannot create {}: {e}", self.data_dir.display())))
    }
}

/// The limits of an import's file: `STEVEDORE_MAX_COLUMNS` (1 to 16,384, a spreadsheet's
/// widest), `STEVEDORE_MAX_ROWS`, `STEVEDORE_MAX_CELL_KIB`, `STEVEDORE_MAX_XLSX_INFLATED_MIB`
/// and `STEVEDORE_MAX_XLSX_SHARED_STRINGS_MIB`.
pub fn file_limits(s: &ServeArgs) -> Result<crate::files::Limits, ConfigError> {
    fn number(raw: &str, name: &'static str, range: std::ops::RangeInclusive<u64>) -> Result<u64, ConfigError> {
        match raw.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(bad(name, format!("\"{raw}\" is not a number from {} to {}", range.start(), range.end()))),
        }
    }
    const MIB: u64 = 1024 * 1024;
    Ok(crate::files::Limits {
        max_columns: number(&s.max_columns, "STEVEDORE_MAX_COLUMNS", 1..=16_384)? as usize,
        max_rows: number(&s.max_rows, "STEVEDORE_MAX_ROWS", 1..=1_000_000_000)?,
        max_cell_bytes: number(&s.max_cell_kib, "STEVEDORE_MAX_CELL_KIB", 1..=1024)? as usize * 1024,
        max_inflated_bytes: number(&s.max_xlsx_inflated_mib, "STEVEDORE_MAX_XLSX_INFLATED_MIB", 1..=65_536)? * MIB,
        max_shared_strings_bytes: number(
            &s.max_xlsx_shared_strings_mib,
            "STEVEDORE_MAX_XLSX_SHARED_STRINGS_MIB",
            1..=4096,
        )? * MIB,
    })
}

impl Settings {
    pub fn from_args(common: &CommonArgs, s: &ServeArgs) -> Result<Settings, ConfigError> {
        let db = DbSettings::from_args(common)?;
        let bind: SocketAddr = s.bind.trim().parse().map_err(|_| {
            bad("STEVEDORE_BIND", format!("\"{}\" is not an address:port such as 127.0.0.1:8080", s.bind))
        })?;
        let session_key = match &s.session_key {
            Some(k) if !k.trim().is_empty() => {
                Some(parse_session_key(k).map_err(|why| bad("STEVEDORE_SESSION_KEY", why))?)
            }
            _ => None,
        };
        let upload_limit = parse_size(&s.upload_limit).map_err(|why| bad("STEVEDORE_UPLOAD_LIMIT", why))?;
        let idle = parse_minutes(&s.idle_timeout_minutes).map_err(|why| bad("STEVEDORE_IDLE_TIMEOUT_MINUTES", why))?;
        let life =
            parse_minutes(&s.session_lifetime_minutes).map_err(|why| bad("STEVEDORE_SESSION_LIFETIME_MINUTES", why))?;
        if life < idle {
            return Err(bad("STEVEDORE_SESSION_LIFETIME_MINUTES", "must be at least STEVEDORE_IDLE_TIMEOUT_MINUTES"));
        }
        Ok(Settings {
            db,
            bind,
            session_key,
            upload_limit,
            idle_timeout: idle,
            session_lifetime: life,
            secure_cookies: parse_bool(&s.secure_cookies).map_err(|why| bad("STEVEDORE_SECURE_COOKIES", why))?,
            trust_proxy: parse_bool(&s.trust_proxy).map_err(|why| bad("STEVEDORE_TRUST_PROXY", why))?,
            schema_dir: s.schema_dir.clone(),
            marketplace_dir: s.marketplace_dir.clone(),
            workers: parse_workers(&s.workers).map_err(|why| bad("STEVEDORE_WORKERS", why))?,
            job_lease_secs: parse_lease(&s.job_lease_secs).map_err(|why| bad("STEVEDORE_JOB_LEASE_SECS", why))?,
            import_ttl_secs: parse_ttl_hours(&s.import_ttl_hours)
                .map_err(|why| bad("STEVEDORE_IMPORT_TTL_HOURS", why))?,
            import_retention_secs: parse_retention_days(&s.import_retention_days)
                .map_err(|why| bad("STEVEDORE_IMPORT_RETENTION_DAYS", why))?,
            export_retention_secs: parse_retention_days(&s.export_retention_days)
                .map_err(|why| bad("STEVEDORE_EXPORT_RETENTION_DAYS", why))?,
            fetch_private_networks: parse_bool(&s.fetch_private_networks)
                .map_err(|why| bad("STEVEDORE_FETCH_PRIVATE_NETWORKS", why))?,
            replace_session_key: parse_bool(&s.replace_session_key)
                .map_err(|why| bad("STEVEDORE_REPLACE_SESSION_KEY", why))?,
            file_limits: file_limits(s)?,
            api_rate_limit: match s.api_rate_limit.trim().parse::<u32>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                _ => {
                    return Err(bad(
                        "STEVEDORE_API_RATE_LIMIT",
                        format!("\"{}\" is not a number from 1 to 1000000", s.api_rate_limit),
                    ));
                }
            },
            s3: S3Settings::from_args(s)?,
            metrics_token: match s.metrics_token.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(t) if t.chars().count() >= 16 => Some(SecretString::from(t.to_string())),
                Some(_) => return Err(bad("STEVEDORE_METRICS_TOKEN", "must be at least 16 characters")),
            },
        })
    }

    /// The session-cookie signing key: the configured one, else DATA_DIR/session.key
    /// (created with 64 random bytes on first start, readable by the owner only).
    pub fn load_or_create_session_key(&self) -> Result<SecretSlice<u8>, ConfigError> {
        if let Some(k) = &self.session_key {
            return Ok(SecretSlice::from(k.expose_secret().to_vec()));
        }
        let path = self.db.data_dir.join("session.key");
        key_file(&path).map_err(|why| bad("STEVEDORE_SESSION_KEY", why))
    }
}

fn key_file(path: &Path) -> Result<SecretSlice<u8>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_session_key(&text).map_err(|why| format!("{}: {why}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hex_key = crate::random_token(64).map_err(|e| e.to_string())?;
            write_private(path, &hex_key).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            parse_session_key(&hex_key)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args() -> ServeArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Cli::parse_from(["stevedore"]).serve
    }

    #[test]
    fn an_s3_bucket_is_optional_and_checked() {
        let mut a = serve_args();
        assert!(S3Settings::from_args(&a).unwrap().is_none(), "no bucket: local files");
        a.s3_bucket = Some("stevedore-exports".into());
        a.s3_endpoint = Some("http://127.0.0.1:9000/".into());
        a.s3_prefix = "/prod/eu/".into();
        let s = S3Settings::from_args(&a).unwrap().unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.prefix, "prod/eu/");
        assert_eq!(s.region, "us-east-1");
        a.s3_prefix = "a//b".into();
        assert_eq!(S3Settings::from_args(&a).unwrap_err().name, "STEVEDORE_S3_PREFIX");
        a.s3_prefix = String::new();
        a.s3_endpoint = Some("127.0.0.1:9000".into());
        assert_eq!(S3Settings::from_args(&a).unwrap_err().name, "STEVEDORE_S3_ENDPOINT");
        a.s3_bucket = Some("My_Bucket".into());
        assert_eq!(S3Settings::from_args(&a).unwrap_err().name, "STEVEDORE_S3_BUCKET");
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let common = CommonArgs {
            data_dir: "d".into(),
            database_url: Some("mysql://x".into()),
            db_pool_size: "8".into(),
            log_format: "text".into(),
        };
        let e = DbSettings::from_args(&common).unwrap_err();
        assert_eq!(e.name, "DATABASE_URL");
        let ok = CommonArgs { database_url: None, ..common };
        assert_eq!(DbSettings::from_args(&ok).unwrap().database_url, "sqlite://d/stevedore.db");
    }
}
