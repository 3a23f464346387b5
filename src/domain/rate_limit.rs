//! Per-key request limits of the JSON API: a fixed window of `window` seconds in which a key
//! may make `limit` requests; the decision also gives what the `RateLimit` headers say.

/// One key's current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub started: i64,
    pub used: u32,
}

/// What one request was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests left in the window after this one.
    pub remaining: u32,
    /// Seconds until the window starts over (at least 1).
    pub reset_secs: i64,
}

/// Counts a request at `now` against `w` (None: the key's first request).
pub fn take(w: Option<Window>, now: i64, limit: u32, window: i64) -> (Window, Decision) {
    let mut w = match w {
        Some(w) if now < w.started + window && now >= w.started => w,
        _ => Window { started: now, used: 0 },
    };
    let reset_secs = (w.started + window - now).max(1);
    if w.used >= limit {
        return (w, Decision { allowed: false, remaining: 0, reset_secs });
    }
    w.used += 1;
    (w, Decision { allowed: true, remaining: limit - w.used, reset_secs })
}

/// What a request is told when a shared counter says its window began at `started` and
/// holds `requests` requests, this one included (past the limit it is refused).
pub fn counted(started: i64, requests: i64, now: i64, limit: u32, window: i64) -> Decision {
    let reset_secs = (started + window - now).clamp(1, window.max(1));
    let used = requests.max(0);
    if used > i64::from(limit) {
        return Decision { allowed: false, remaining: 0, reset_secs };
    }
    Decision { allowed: true, remaining: (i64::from(limit) - used) as u32, reset_secs }
}

/// The IETF `RateLimit-Policy` header's value.
pub fn policy_header(limit: u32, window: i64) -> String {
    format!("\"default\";q={limit};w={window}")
}

/// The IETF `RateLimit` header's value.
pub fn state_header(d: &Decision) -> String {
    format!("\"default\";r={};t={}", d.remaining, d.reset_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_count_allows_the_limit_then_refuses_until_the_window_ends() {
        assert_eq!(counted(1000, 1, 1000, 3, 60), Decision { allowed: true, remaining: 2, reset_secs: 60 });
        assert_eq!(counted(1000, 3, 1030, 3, 60), Decision { allowed: true, remaining: 0, reset_secs: 30 });
        assert_eq!(counted(1000, 4, 1059, 3, 60), Decision { allowed: false, remaining: 0, reset_secs: 1 });
        // another instance's clock a little ahead never says more than a window
        assert_eq!(counted(1100, 2, 1000, 3, 60).reset_secs, 60);
    }

    #[test]
    fn a_key_gets_its_limit_per_window_then_waits_for_the_next() {
        let (mut w, d) = take(None, 1000, 3, 60);
        assert_eq!(d, Decision { allowed: true, remaining: 2, reset_secs: 60 });
        for left in [1, 0] {
            let (nw, d) = take(Some(w), 1010, 3, 60);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            w = nw;
        }
        let (w, d) = take(Some(w), 1059, 3, 60);
        assert_eq!(d, Decision { allowed: false, remaining: 0, reset_secs: 1 });
        let (_, d) = take(Some(w), 1060, 3, 60);
        assert_eq!(d, Decision { allowed: true, remaining: 2, reset_secs: 60 }, "a new window");
    }

    #[test]
    fn headers_follow_the_ietf_draft() {
        assert_eq!(policy_header(600, 60), "\"default\";q=600;w=60");
        let d = Decision { allowed: true, remaining: 41, reset_secs: 17 };
        assert_eq!(state_header(&d), "\"default\";r=41;t=17");
    }

    #[test]
    fn a_clock_that_went_back_starts_a_new_window() {
        let (w, _) = take(None, 1000, 1, 60);
        let (_, d) = take(Some(w), 900, 1, 60);
        assert!(d.allowed);
    }
}
