//! The formats a column's values may be written in, chosen at the mapping step: dates in a
//! day, month and year order other than ISO (`2012/01/31`, `31.01.2012`, `01/31/12`), Excel
//! serial numbers, and decimals written with a decimal comma or thousands separators. A
//! value read with a format is stored canonical (ISO dates, `1234.5`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which part comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    Ymd,
    Dmy,
    Mdy,
}

/// How a date is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DateFormat {
    /// Three numbers separated by `sep`; `short_year`: the year in two digits.
    Parts { order: Order, sep: char, short_year: bool },
    /// Days since 1899-12-30, as spreadsheets store a date (with a fraction for the time).
    ExcelSerial,
}

/// How a decimal number is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecimalStyle {
    /// `1234.5`, `1,234.5`, `1 234.5`.
    Point,
    /// `1234,5`, `1.234,5`, `1 234,5`.
    Comma,
}

/// A column's format: how its values are read before the field's rules check them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellFormat {
    Date(DateFormat),
    Decimal(DecimalStyle),
}

pub const ISO: DateFormat = DateFormat::Parts { order: Order::Ymd, sep: '-', short_year: false };

impl DateFormat {
    /// Every format offered, ISO first.
    pub fn all() -> Vec<DateFormat> {
        let mut out = vec![];
        for (order, short_years) in
            [(Order::Ymd, [false].as_slice()), (Order::Dmy, &[false, true]), (Order::Mdy, &[false, true])]
        {
            for &short_year in short_years {
                for sep in ['-', '/', '.'] {
                    out.push(DateFormat::Parts { order, sep, short_year });
                }
            }
        }
        out.push(DateFormat::ExcelSerial);
        out
    }

    /// `YYYY-MM-DD`, `DD/MM/YY`, `excel_serial`.
    pub fn pattern(self) -> String {
        match self {
            DateFormat::ExcelSerial => "excel_serial".into(),
            DateFormat::Parts { order, sep, short_year } => {
                let y = if short_year { "YY" } else { "YYYY" };
                let parts = match order {
                    Order::Ymd => [y, "MM", "DD"],
                    Order::Dmy => ["DD", "MM", y],
                    Order::Mdy => ["MM", "DD", y],
                };
                parts.join(&sep.to_string())
            }
        }
    }

    /// How a person reads it: `YYYY/MM/DD`, `Excel serial number`.
    pub fn label(self) -> String {
        match self {
            DateFormat::ExcelSerial => "Excel serial number".into(),
            f if f == ISO => "YYYY-MM-DD (ISO)".into(),
            f => f.pattern(),
        }
    }

    /// The format a pattern names (as [`pattern`](Self::pattern) writes it).
    pub fn parse(pattern: &str) -> Option<DateFormat> {
        DateFormat::all().into_iter().find(|f| f.pattern().eq_ignore_ascii_case(pattern.trim()))
    }

    /// The pattern as an error message names it: `DD/MM/YYYY`, `an Excel serial number`.
    pub fn pattern_words(self) -> String {
        match self {
            DateFormat::ExcelSerial => "an Excel serial number, e.g. 40909".into(),
            f => f.pattern(),
        }
    }

    /// Reads a date written this way.
    pub fn date(self, s: &str) -> Option<time::Date> {
        match self {
            DateFormat::ExcelSerial => {
                let n: f64 = s.trim().parse().ok()?;
                excel_date(n.floor() as i64)
            }
            DateFormat::Parts { order, sep, short_year } => {
                let mut parts = s.split(sep);
                let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
                if parts.next().is_some() {
                    return None;
                }
                let (y, m, d) = match order {
                    Order::Ymd => (a, b, c),
                    Order::Dmy => (c, b, a),
                    Order::Mdy => (c, a, b),
                };
                let digits = |p: &str, lens: std::ops::RangeInclusive<usize>| {
                    (lens.contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<i32>().ok())?
                };
                let year = if short_year { two_digit_year(digits(y, 2..=2)?) } else { digits(y, 4..=4)? };
                let month = time::Month::try_from(u8::try_from(digits(m, 1..=2)?).ok()?).ok()?;
                let day = u8::try_from(digits(d, 1..=2)?).ok()?;
                time::Date::from_calendar_date(year, month, day).ok()
            }
        }
    }

    /// Reads a date and time written this way: the date, then ` ` or `T`, `H:MM[:SS[.fff]]`,
    /// an optional `AM`/`PM` and an optional zone (`Z`, `+02:00`, `+0200`, `+02`). An Excel
    /// serial's fraction is the time of day. Canonical: `YYYY-MM-DDTHH:MM:SS[.fff][zone]`.
    pub fn datetime(self, s: &str) -> Option<String> {
        if self == DateFormat::ExcelSerial {
            let n: f64 = s.trim().parse().ok()?;
            let date = excel_date(n.floor() as i64)?;
            let secs = ((n - n.floor()) * 86_400.0).round() as i64;
            let secs = secs.min(86_399);
            return Some(format!("{date}T{:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60));
        }
        let split = s.find(['T', ' '])?;
        let (date, rest) = (&s[..split], s[split + 1..].trim());
        let date = self.date(date)?;
        Some(format!("{date}T{}", clock(rest)?))
    }
}

/// Two-digit years as POSIX reads them: 00–68 are 2000–2068, 69–99 are 1969–1999.
fn two_digit_year(yy: i32) -> i32 {
    if yy <= 68 { 2000 + yy } else { 1900 + yy }
}

fn excel_date(days: i64) -> Option<time::Date> {
    if !(1..=2_958_465).contains(&days) {
        return None;
    }
    let base = time::Date::from_calendar_date(1899, time::Month::December, 30).ok()?;
    base.checked_add(time::Duration::days(days))
}

/// `14:30`, `2:30:05 PM`, `14:30:00.5+02:00` → `14:30:00`, `14:30:05`, `14:30:00.5+02:00`.
fn clock(s: &str) -> Option<String> {
    let (s, zone) = match s.find(['Z', 'z', '+']).or_else(|| s.rfind('-')) {
        Some(i) => (s[..i].trim_end(), zone(&s[i..])?),
        None => (s, String::new()),
    };
    let lower = s.to_ascii_lowercase();
    let (s, meridiem) = match (lower.strip_suffix("am"), lower.strip_suffix("pm")) {
        (Some(t), _) => (t.trim_end().to_string(), Some(false)),
        (_, Some(t)) => (t.trim_end().to_string(), Some(true)),
        _ => (lower, None),
    };
    let parts: Vec<&str> = s.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (*h, *m, "00"),
        [h, m, sec] => (*h, *m, *sec),
        _ => return None,
    };
    let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let num = |v: &str, lens: std::ops::RangeInclusive<usize>, max: u32| {
        (lens.contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<u32>().ok().filter(|n| *n <= max))?
    };
    let mut hour = num(h, 1..=2, 23)?;
    let (min, secs) = (num(m, 2..=2, 59)?, num(whole, 2..=2, 59)?);
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(pm) = meridiem {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = match (pm, hour) {
            (false, 12) => 0,
            (true, 12) => 12,
            (true, h) => h + 12,
            (false, h) => h,
        };
    }
    let frac = if frac.is_empty() { String::new() } else { format!(".{frac}") };
    Some(format!("{hour:02}:{min:02}:{secs:02}{frac}{zone}"))
}

/// `Z`, `+02:00`, `+0200`, `+02` → `Z`, `+02:00`.
fn zone(s: &str) -> Option<String> {
    if s.eq_ignore_ascii_case("z") {
        return Some("Z".into());
    }
    let (sign, rest) = s.split_at(1);
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    let ok = |v: &str, max: u32| v.parse::<u32>().is_ok_and(|n| n <= max);
    let (h, m) = match digits.len() {
        2 => (&digits[..2], "00"),
        4 => (&digits[..2], &digits[2..]),
        _ => return None,
    };
    let colon_ok = !rest.contains(':') || rest.len() == 5 && &rest[2..3] == ":";
    (digits.bytes().all(|b| b.is_ascii_digit()) && ok(h, 23) && ok(m, 59) && colon_ok).then(|| format!("{sign}{h}:{m}"))
}

impl DecimalStyle {
    pub fn pattern(self) -> &'static str {
        match self {
            DecimalStyle::Point => "decimal_point",
            DecimalStyle::Comma => "decimal_comma",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            DecimalStyle::Point => "1,234.5 (decimal point)",
            DecimalStyle::Comma => "1.234,5 (decimal comma)",
        }
    }

    /// How an error message shows the style.
    pub fn example(self) -> &'static str {
        match self {
            DecimalStyle::Point => "1,234.5",
            DecimalStyle::Comma => "1.234,5",
        }
    }

    fn marks(self) -> (char, &'static [char]) {
        match self {
            DecimalStyle::Point => ('.', &[',', ' ', '\u{a0}', '\u{202f}', '\'']),
            DecimalStyle::Comma => (',', &['.', ' ', '\u{a0}', '\u{202f}']),
        }
    }

    /// `1.234,5` → `1234.5`: thousands separators only between groups of three digits.
    pub fn canonical(self, s: &str) -> Option<String> {
        let (point, thousands) = self.marks();
        let (sign, body) = match s.strip_prefix('-') {
            Some(b) => ("-", b),
            None => ("", s),
        };
        let (int, frac) = match body.split_once(point) {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        let groups: Vec<&str> = int.split(|c| thousands.contains(&c)).collect();
        let grouped = groups.len() > 1;
        let groups_ok = groups.iter().enumerate().all(|(i, g)| {
            g.bytes().all(|b| b.is_ascii_digit())
                && if i == 0 { (1..=if grouped { 3 } else { usize::MAX }).contains(&g.len()) } else { g.len() == 3 }
        });
        let frac_ok = frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
        if !groups_ok || !frac_ok {
            return None;
        }
        let mut out = format!("{sign}{}", groups.concat());
        if let Some(f) = frac {
            out.push('.');
            out.push_str(f);
        }
        Some(out)
    }
}

impl CellFormat {
    /// `DD/MM/YYYY`, `excel_serial`, `decimal_comma`.
    pub fn pattern(self) -> String {
        match self {
            CellFormat::Date(d) => d.pattern(),
            CellFormat::Decimal(d) => d.pattern().into(),
        }
    }

    pub fn label(self) -> String {
        match self {
            CellFormat::Date(d) => d.label(),
            CellFormat::Decimal(d) => d.label().into(),
        }
    }

    pub fn parse(pattern: &str) -> Option<CellFormat> {
        match pattern.trim() {
            "decimal_point" => Some(CellFormat::Decimal(DecimalStyle::Point)),
            "decimal_comma" => Some(CellFormat::Decimal(DecimalStyle::Comma)),
            p => DateFormat::parse(p).map(CellFormat::Date),
        }
    }
}

impl Serialize for CellFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.pattern())
    }
}

impl<'de> Deserialize<'de> for CellFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CellFormat::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("\"{s}\" is not a format")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(p: &str) -> DateFormat {
        DateFormat::parse(p).unwrap_or_else(|| panic!("{p}"))
    }

    fn date(p: &str, s: &str) -> Option<String> {
        f(p).date(s).map(|d| d.to_string())
    }

    #[test]
    fn every_pattern_reads_back_as_itself() {
        for format in DateFormat::all() {
            assert_eq!(DateFormat::parse(&format.pattern()), Some(format));
            assert_eq!(CellFormat::parse(&CellFormat::Date(format).pattern()), Some(CellFormat::Date(format)));
        }
        assert_eq!(DateFormat::all()[0], ISO);
        assert_eq!(DateFormat::parse("YYYY-DD-MM"), None);
    }

    #[test]
    fn dates_in_each_order() {
        assert_eq!(date("YYYY/MM/DD", "2012/01/31").as_deref(), Some("2012-01-31"));
        assert_eq!(date("DD/MM/YYYY", "31/01/2012").as_deref(), Some("2012-01-31"));
        assert_eq!(date("MM/DD/YYYY", "1/31/2012").as_deref(), Some("2012-01-31"), "one-digit months");
        assert_eq!(date("DD.MM.YYYY", "31.01.2012").as_deref(), Some("2012-01-31"));
        assert_eq!(date("DD-MM-YYYY", "31-01-2012").as_deref(), Some("2012-01-31"));
        assert_eq!(date("DD/MM/YYYY", "01/31/2012"), None, "no month 31");
        assert_eq!(date("DD/MM/YYYY", "29/02/2023"), None, "not a leap year");
        assert_eq!(date("YYYY/MM/DD", "2012-01-31"), None, "the separator is the format's");
        assert_eq!(date("YYYY/MM/DD", "12/01/31"), None, "four-digit year");
        assert_eq!(date("DD/MM/YYYY", "31/01/2012/1"), None);
    }

    #[test]
    fn two_digit_years_pivot_at_69() {
        assert_eq!(date("DD/MM/YY", "31/01/12").as_deref(), Some("2012-01-31"));
        assert_eq!(date("MM/DD/YY", "01/31/68").as_deref(), Some("2068-01-31"));
        assert_eq!(date("MM/DD/YY", "01/31/69").as_deref(), Some("1969-01-31"));
        assert_eq!(date("DD.MM.YY", "31.01.2012"), None);
    }

    #[test]
    fn excel_serials() {
        assert_eq!(date("excel_serial", "40909").as_deref(), Some("2012-01-01"));
        assert_eq!(date("excel_serial", "61").as_deref(), Some("1900-03-01"));
        assert_eq!(date("excel_serial", "0"), None);
        assert_eq!(date("excel_serial", "abc"), None);
        assert_eq!(f("excel_serial").datetime("40909.75").as_deref(), Some("2012-01-01T18:00:00"));
    }

    #[test]
    fn datetimes_with_or_without_seconds_and_zones() {
        let dmy = f("DD/MM/YYYY");
        assert_eq!(dmy.datetime("31/01/2012 14:30").as_deref(), Some("2012-01-31T14:30:00"));
        assert_eq!(dmy.datetime("31/01/2012 9:05:07").as_deref(), Some("2012-01-31T09:05:07"));
        assert_eq!(dmy.datetime("31/01/2012 2:30 PM").as_deref(), Some("2012-01-31T14:30:00"));
        assert_eq!(dmy.datetime("31/01/2012 12:00 am").as_deref(), Some("2012-01-31T00:00:00"));
        assert_eq!(dmy.datetime("31/01/2012 14:30:00.25+0200").as_deref(), Some("2012-01-31T14:30:00.25+02:00"));
        assert_eq!(dmy.datetime("31/01/2012 14:30Z").as_deref(), Some("2012-01-31T14:30:00Z"));
        assert_eq!(dmy.datetime("31/01/2012 14:30 -05").as_deref(), Some("2012-01-31T14:30:00-05:00"));
        assert_eq!(ISO.datetime("2012-01-31T14:30:00+02:00").as_deref(), Some("2012-01-31T14:30:00+02:00"));
        for bad in ["31/01/2012", "31/01/2012 25:00", "31/01/2012 13:00 PM", "31/01/2012 14:3", "31/01/2012 14:30+2"] {
            assert_eq!(dmy.datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn decimals_with_commas_and_thousands() {
        let (point, comma) = (DecimalStyle::Point, DecimalStyle::Comma);
        assert_eq!(comma.canonical("1.234,5").as_deref(), Some("1234.5"));
        assert_eq!(comma.canonical("-0,25").as_deref(), Some("-0.25"));
        assert_eq!(comma.canonical("1 234 567").as_deref(), Some("1234567"));
        assert_eq!(comma.canonical("12.34,5"), None, "groups of three");
        assert_eq!(comma.canonical("1,2,3"), None);
        assert_eq!(point.canonical("1,234.5").as_deref(), Some("1234.5"));
        assert_eq!(point.canonical("1234.5").as_deref(), Some("1234.5"));
        assert_eq!(point.canonical("1,23.5"), None);
        assert_eq!(point.canonical("1.5."), None);
        assert_eq!(point.canonical("abc"), None);
        assert_eq!(point.canonical("1,234,"), None);
    }
}
