//! Sign-in throttling: how many recent failures lock an account or a client address.

/// The window in which failures are counted, in seconds.
pub const WINDOW_SECS: i64 = 15 * 60;
/// Failures for one email within the window that lock it.
pub const MAX_PER_ACCOUNT: i64 = 5;
/// Failures from one client address within the window that lock it.
pub const MAX_PER_ADDRESS: i64 = 20;

/// Recent failures, as counted by the store within [`WINDOW_SECS`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RecentFailures {
    pub account: i64,
    pub address: i64,
    /// When the oldest failure that still counts happened (epoch seconds).
    pub oldest_account_failure: Option<i64>,
    pub oldest_address_failure: Option<i64>,
}

/// Whether a sign-in may be attempted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused; retry in this many minutes (at least one).
    Locked {
        retry_in_minutes: i64,
    },
}

pub fn decide(f: RecentFailures, now: i64) -> Decision {
    let mut until: Option<i64> = None;
    if f.account >= MAX_PER_ACCOUNT {
        until = f.oldest_account_failure.map(|t| t + WINDOW_SECS);
    }
    if f.address >= MAX_PER_ADDRESS {
        let t = f.oldest_address_failure.map(|t| t + WINDOW_SECS);
        until = until.max(t);
    }
    match until {
        Some(u) if u > now => Decision::Locked { retry_in_minutes: ((u - now) + 59) / 60 },
        Some(_) => Decision::Allow,
        None if f.account >= MAX_PER_ACCOUNT || f.address >= MAX_PER_ADDRESS => {
            Decision::Locked { retry_in_minutes: WINDOW_SECS / 60 }
        }
        None => Decision::Allow,
    }
}

/// The message shown when locked.
pub fn locked_message(retry_in_minutes: i64) -> String {
    let unit = if retry_in_minutes == 1 { "minute" } else { "minutes" };
    format!(
        "Too many failed sign-in attempts. For your security, sign-in is paused: try again in {retry_in_minutes} {unit}."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_the_limits_is_allowed() {
        let f = RecentFailures { account: 4, address: 19, ..Default::default() };
        assert_eq!(decide(f, 1000), Decision::Allow);
    }

    #[test]
    fn account_limit_locks_until_the_oldest_failure_ages_out() {
        let f = RecentFailures { account: 5, oldest_account_failure: Some(1000), ..Default::default() };
        assert_eq!(decide(f, 1000), Decision::Locked { retry_in_minutes: 15 });
        assert_eq!(decide(f, 1000 + WINDOW_SECS - 30), Decision::Locked { retry_in_minutes: 1 });
        assert_eq!(decide(f, 1000 + WINDOW_SECS), Decision::Allow);
    }

    #[test]
    fn address_limit_locks_too() {
        let f = RecentFailures { address: 20, oldest_address_failure: Some(0), ..Default::default() };
        assert!(matches!(decide(f, 60), Decision::Locked { retry_in_minutes: 14 }));
    }

    #[test]
    fn message_names_the_wait() {
        assert!(locked_message(1).contains("1 minute."));
        assert!(locked_message(7).contains("7 minutes."));
    }
}
