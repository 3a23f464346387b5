//! The value formats settings are written in (sizes, durations, booleans, keys), each
//! parsed into its type with a message saying what was expected.

use std::time::Duration;

use secrecy::SecretSlice;

/// A hex key of at least 64 bytes.
pub fn parse_session_key(raw: &str) -> Result<SecretSlice<u8>, String> {
    let bytes = hex::decode(raw.trim()).map_err(|_| "must be hexadecimal (128 or more hex characters)".to_string())?;
    if bytes.len() < 64 {
        return Err(format!("must be at least 64 bytes (128 hex characters); got {} bytes", bytes.len()));
    }
    Ok(SecretSlice::from(bytes))
}

/// Parses `512MiB`, `20MB`, `1g`, `1048576` into bytes.
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("\"{raw}\" is not a size such as 512MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => {
            return Err(format!("\"{raw}\" has an unknown unit (use B, KB, KiB, MB, MiB, GB or GiB)"));
        }
    };
    let bytes = n.checked_mul(mult).ok_or_else(|| format!("\"{raw}\" is too large"))?;
    if bytes < 1024 {
        return Err(format!("\"{raw}\" is smaller than 1 KiB"));
    }
    Ok(bytes)
}

pub fn parse_minutes(raw: &str) -> Result<Duration, String> {
    match raw.trim().parse::<u64>() {
        Ok(n) if (1..=60 * 24 * 30).contains(&n) => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("\"{raw}\" is not a whole number of minutes from 1 to 43200")),
    }
}

/// A job lease: 2 to 3600 seconds.
pub fn parse_lease(raw: &str) -> Result<i64, String> {
    match raw.trim().parse::<i64>() {
        Ok(n) if (2..=3600).contains(&n) => Ok(n),
        _ => Err(format!("\"{raw}\" is not a number of seconds from 2 to 3600")),
    }
}

/// A time to live in hours (1 to 8760, a year), as seconds.
pub fn parse_ttl_hours(raw: &str) -> Result<i64, String> {
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=8760).contains(&n) => Ok(n * 3600),
        _ => Err(format!("\"{raw}\" is not a number of hours from 1 to 8760")),
    }
}

/// A retention in days (1 to 3650), as seconds.
pub fn parse_retention_days(raw: &str) -> Result<i64, String> {
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=3650).contains(&n) => Ok(n * 86_400),
        _ => Err(format!("\"{raw}\" is not a number of days from 1 to 3650")),
    }
}

/// A number of concurrent jobs, 0 to 64.
pub fn parse_workers(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(n) if n <= 64 => Ok(n),
        _ => Err(format!("\"{raw}\" is not a number from 0 to 64")),
    }
}

pub fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("\"{raw}\" is not true or false")),
    }
}

/// Human-readable size: `512 MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v.fract() == 0.0 { format!("{} {}", v as u64, UNITS[u]) } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("20MB"), Ok(20_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("12XB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("10").is_err());
        assert_eq!(format_size(512 << 20), "512 MiB");
        assert_eq!(format_size(1536), "1.5 KiB");
    }

    #[test]
    fn session_keys_must_be_long_hex() {
        assert!(parse_session_key(&"ab".repeat(64)).is_ok());
        assert!(parse_session_key(&"ab".repeat(32)).unwrap_err().contains("at least 64 bytes"));
        assert!(parse_session_key("not hex").is_err());
    }
}
