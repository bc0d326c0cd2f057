//! How the CLI waits for the platform: quick first looks, then steadier ones.
//!
//! Most waits (a job, a package, a build, an instance) end within a second on
//! a local platform, so a fixed half-second poll would add up to most of a
//! push. The first look comes after 50 ms and the interval doubles up to
//! half a second, which keeps a long wait from hammering the API.

use std::time::Duration;

/// The first interval.
const FIRST: Duration = Duration::from_millis(50);
/// The longest interval.
const MAX: Duration = Duration::from_millis(500);

/// An interval that doubles from 50 ms to 500 ms.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// A new back-off starting at the first interval.
    pub fn new() -> Self {
        Self::default()
    }

    /// The interval to wait now; each call doubles the next one, up to the maximum.
    pub fn next_interval(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(MAX);
        now
    }

    /// Sleeps for the next interval.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_interval()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_half_a_second() {
        let mut backoff = Backoff::new();
        let waits: Vec<u128> = (0..7)
            .map(|_| backoff.next_interval().as_millis())
            .collect();
        assert_eq!(waits, vec![50, 100, 200, 400, 500, 500, 500]);
    }
}
