//! Diego's crash restart schedule.
//!
//! The first three crashes of an instance restart it at once; after that the
//! wait doubles from 30 s (30 s, 1 min, 2 min, 4 min, 8 min) up to 16 min.
//! After 200 crashes the instance stays `CRASHED`. The count starts over once
//! an instance has run for five minutes.

use std::time::Duration;

/// Crashes that restart at once.
pub const IMMEDIATE_RESTARTS: u32 = 3;
/// The first back-off wait.
pub const MIN_BACKOFF: Duration = Duration::from_secs(30);
/// The longest back-off wait.
pub const MAX_BACKOFF: Duration = Duration::from_secs(16 * 60);
/// After this many crashes an instance is not restarted again.
pub const MAX_RESTARTS: u32 = 200;
/// An instance that ran this long has its crash count reset.
pub const STABLE_AFTER: Duration = Duration::from_secs(5 * 60);

/// What to do after the `crashes`-th crash (counting from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Start a new instance now.
    Now,
    /// Start a new instance after this wait.
    After(Duration),
    /// Leave the instance `CRASHED`.
    Never,
}

/// The restart decision after `crashes` crashes in a row.
pub fn restart_after(crashes: u32) -> Restart {
    if crashes <= IMMEDIATE_RESTARTS {
        return Restart::Now;
    }
    if crashes >= MAX_RESTARTS {
        return Restart::Never;
    }
    // 4th crash → 30 s, 5th → 60 s, …; the shift is bounded so it cannot overflow.
    let doublings = (crashes - IMMEDIATE_RESTARTS - 1).min(16);
    let wait = MIN_BACKOFF.saturating_mul(1u32 << doublings);
    Restart::After(wait.min(MAX_BACKOFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_diegos_schedule() {
        let minutes = |m: u64| Restart::After(Duration::from_secs(m * 60));
        let table = [
            (1, Restart::Now),
            (2, Restart::Now),
            (3, Restart::Now),
            (4, Restart::After(Duration::from_secs(30))),
            (5, minutes(1)),
            (6, minutes(2)),
            (7, minutes(4)),
            (8, minutes(8)),
            (9, minutes(16)),
            (10, minutes(16)),
            (199, minutes(16)),
            (200, Restart::Never),
            (1000, Restart::Never),
        ];
        for (crashes, expected) in table {
            assert_eq!(restart_after(crashes), expected, "after crash {crashes}");
        }
    }
}
