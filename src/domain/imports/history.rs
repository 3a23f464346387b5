//! Import History reads a page at a time from a cursor, the (created_at, id) of the row it
//! continues from, so a deep page costs what the first one does (no OFFSET that reads and
//! skips every row before it). In URLs a cursor is `<created_at>.<id>`.

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// The newest imports.
    First,
    /// The imports older than this (created_at, id): the next page.
    Before(i64, i64),
    /// The imports newer than this (created_at, id): the previous page.
    After(i64, i64),
}

impl Cursor {
    /// From the `before` and `after` query values; anything unreadable is the first page.
    pub fn from_query(before: Option<&str>, after: Option<&str>) -> Cursor {
        match (before.and_then(parse), after.and_then(parse)) {
            (Some((at, id)), _) => Cursor::Before(at, id),
            (None, Some((at, id))) => Cursor::After(at, id),
            (None, None) => Cursor::First,
        }
    }

    /// Whether rows are read oldest first (and then reversed to show newest first).
    pub fn reads_ascending(self) -> bool {
        matches!(self, Cursor::After(..))
    }
}

/// `<created_at>.<id>` of a row.
pub fn token(created_at: i64, id: i64) -> String {
    format!("{created_at}.{id}")
}

fn parse(s: &str) -> Option<(i64, i64)> {
    let (at, id) = s.trim().split_once('.')?;
    Some((at.parse().ok()?, id.parse().ok()?))
}

/// What a page read from `cursor` links to, given whether the read found rows beyond the
/// page in its direction: (a previous page exists, a next page exists).
pub fn neighbours(cursor: Cursor, more: bool) -> (bool, bool) {
    match cursor {
        Cursor::First => (false, more),
        // we came from newer rows, so there is a previous page
        Cursor::Before(..) => (true, more),
        // we came from older rows, so there is a next page
        Cursor::After(..) => (more, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_start_over() {
        assert_eq!(Cursor::from_query(Some(&token(1700, 42)), None), Cursor::Before(1700, 42));
        assert_eq!(Cursor::from_query(None, Some("1700.42")), Cursor::After(1700, 42));
        assert_eq!(Cursor::from_query(Some("1700.42"), Some("1.2")), Cursor::Before(1700, 42), "before wins");
        for bad in ["", "1700", "x.1", "1.y", "1.2.3", "'; DROP TABLE imports"] {
            assert_eq!(Cursor::from_query(Some(bad), None), Cursor::First, "{bad:?}");
        }
        assert!(Cursor::After(1, 1).reads_ascending() && !Cursor::Before(1, 1).reads_ascending());
    }

    #[test]
    fn links_follow_the_direction_of_travel() {
        assert_eq!(neighbours(Cursor::First, true), (false, true));
        assert_eq!(neighbours(Cursor::First, false), (false, false));
        assert_eq!(neighbours(Cursor::Before(1, 1), false), (true, false), "the last page");
        assert_eq!(neighbours(Cursor::After(1, 1), false), (false, true), "back at the newest");
        assert_eq!(neighbours(Cursor::After(1, 1), true), (true, true));
    }
}
