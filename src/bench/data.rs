//! The benchmark's data: a 12-column contacts schema and a generator of files of any size
//! (some rows repeated, some values bad), and the process's peak memory.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// The benchmark's entity: 12 columns, like a contacts export.
pub(super) const CONTACTS: &str = r#"
entity = "bench_contacts"
label = "Contacts (benchmark)"
singular = "Contact"
key = "contact_id"
display = "last_name"

[[fields]]
name = "contact_id"
type = "text"
required = true
[[fields]]
name = "first_name"
type = "text"
required = true
max_length = 100
[[fields]]
name = "last_name"
type = "text"
required = true
max_length = 100
[[fields]]
name = "email"
type = "text"
pattern = "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$"
pattern_hint = "an email address"
[[fields]]
name = "phone"
type = "text"
max_length = 32
[[fields]]
name = "birth_date"
type = "date"
[[fields]]
name = "city"
type = "text"
[[fields]]
name = "country"
type = "enum"
values = ["US", "CA", "GB", "DE", "FR", "ES", "IT", "NL"]
[[fields]]
name = "status"
type = "enum"
values = ["active", "inactive", "lead"]
[[fields]]
name = "score"
type = "integer"
min = 0
max = 100
[[fields]]
name = "balance"
type = "decimal"
[[fields]]
name = "subscribed"
type = "boolean"
"#;

/// Peak resident memory of this process, in MiB (Linux).
pub(super) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Writes `rows` contacts: about 2% repeat an earlier row, 1% have a bad date or country.
/// With `variant` 4 (the grid benchmark's file), every row has a bad country and none
/// repeats.
/// With `variant` 2 (the merge file), row `i` is contact `i` with another city when `i` is
/// even, and the new contact `offset + i` when odd.
pub(super) fn generate(path: &PathBuf, rows: usize, offset: usize, variant: usize) -> anyhow::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(w, "contact_id,first_name,last_name,email,phone,birth_date,city,country,status,score,balance,subscribed")?;
    const FIRST: [&str; 8] = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John"];
    const LAST: [&str; 8] = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus"];
    const CITY: [&str; 6] = ["Portland", "Toronto", "London", "Berlin", "Paris", "Madrid"];
    const COUNTRY: [&str; 6] = ["US", "CA", "GB", "DE", "FR", "ES"];
    const STATUS: [&str; 3] = ["active", "inactive", "lead"];
    for i in 0..rows {
        let (n, moved) = match variant {
            // every even row: an earlier contact who moved; every odd row: a new contact
            2 if i % 2 == 0 => (i, 1),
            2 => (offset + i, 0),
            3 | 4 => (i, 0),
            // every 50th row repeats the one before it (a duplicate in the file)
            _ if i % 50 == 49 => (i - 1, 0),
            _ => (i, 0),
        };
        // variant 3 (the export benchmark's records) has no bad rows
        let bad_date = variant != 3 && variant != 4 && n % 100 == 7;
        let bad_country = variant == 4 || variant != 3 && n % 100 == 13;
        writeln!(
            w,
            "C{n:08},{},{},user{n}@example.com,+1 555 {:04},{},{},{},{},{},{}.{:02},{}",
            FIRST[n % 8],
            LAST[(n / 8) % 8],
            n % 10_000,
            if bad_date {
                "1990-13-45".to_string()
            } else {
                format!("19{:02}-{:02}-{:02}", 40 + n % 60, 1 + n % 12, 1 + n % 28)
            },
            CITY[(n + moved) % 6],
            if bad_country { "XX" } else { COUNTRY[n % 6] },
            STATUS[n % 3],
            n % 101,
            n % 5000,
            n % 100,
            n % 2 == 0
        )?;
    }
    w.flush()?;
    Ok(())
}
