//! Numbers in words people read: counts in groups of three, nouns that agree with them.

/// A count as people read it: digits in groups of three (`6,000`). Templates call
/// `.grouped()` or `.count("row", "rows")` on a count (the trait must be in scope where the
/// template is defined).
pub trait Grouped {
    fn grouped(&self) -> String;

    /// The count with its noun, singular or plural as the count asks: `1 row`, `6,000 rows`.
    fn count(&self, one: &str, many: &str) -> String {
        let n = self.grouped();
        format!("{n} {}", if n == "1" { one } else { many })
    }
}

impl Grouped for i64 {
    fn grouped(&self) -> String {
        let digits = self.unsigned_abs().to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
        if *self < 0 {
            out.push('-');
        }
        for (i, d) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(d);
        }
        out
    }
}

impl Grouped for i32 {
    fn grouped(&self) -> String {
        i64::from(*self).grouped()
    }
}

impl Grouped for u64 {
    fn grouped(&self) -> String {
        i64::try_from(*self).unwrap_or(i64::MAX).grouped()
    }
}

impl Grouped for usize {
    fn grouped(&self) -> String {
        i64::try_from(*self).unwrap_or(i64::MAX).grouped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_in_groups_of_three() {
        let cases =
            [(0i64, "0"), (999, "999"), (1000, "1,000"), (6000, "6,000"), (1234567, "1,234,567"), (-45210, "-45,210")];
        for (n, want) in cases {
            assert_eq!(n.grouped(), want);
        }
        assert_eq!(1_000_000usize.grouped(), "1,000,000");
    }

    #[test]
    fn a_count_takes_the_noun_it_agrees_with() {
        assert_eq!(1i64.count("row", "rows"), "1 row");
        assert_eq!(0i64.count("row", "rows"), "0 rows");
        assert_eq!(6000i64.count("row", "rows"), "6,000 rows");
        assert_eq!(1usize.count("entry", "entries"), "1 entry");
        assert_eq!((-1i64).count("change", "changes"), "-1 changes");
    }
}
