//! Slowing down password guessing: after a few failed logins from one address, each further
//! `401` to that address is delayed, doubling up to a cap. Each core keeps its own table (no
//! shared lock); a guesser spread over shards is still slowed on every one of them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures from one address tolerated before answers are delayed.
const FREE_FAILURES: u32 = 3;
/// First delay once the free failures are used up.
const BASE_DELAY: Duration = Duration::from_millis(250);
/// Longest delay.
const MAX_DELAY: Duration = Duration::from_secs(8);
/// A quiet address is forgotten after this long.
const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Addresses remembered at most; the oldest are pruned beyond it.
const MAX_TRACKED: usize = 10_000;

/// Recent authentication failures by address, for one core.
#[derive(Default)]
pub struct FailureTracker {
    /// Failures in the current window and when the last one happened.
    failures: RefCell<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureTracker {
    /// Records a failure from `ip` and returns how long to wait before answering it.
    pub fn failed(&self, ip: IpAddr, port: &'static str) -> Duration {
        let now = Instant::now();
        let mut failures = self.failures.borrow_mut();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
        }
        let entry = failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.1 = now;
        let count = entry.0;
        metrics::counter!("cycast_auth_failures_total", "port" => port).increment(1);
        let delay = delay_for(count);
        if count == FREE_FAILURES + 1 {
            tracing::warn!(%ip, port, "repeated authentication failures; answers to this address are now delayed");
        }
        delay
    }

    /// Forgets `ip` after a successful login.
    pub fn succeeded(&self, ip: IpAddr) {
        self.failures.borrow_mut().remove(&ip);
    }
}

/// Delay before answering the `count`-th failure in a window.
fn delay_for(count: u32) -> Duration {
    if count <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (count - FREE_FAILURES - 1).min(16);
    (BASE_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
}

/// Whether a response is a `401`.
pub fn is_unauthorized(response: &[u8]) -> bool {
    response.get(9..12) == Some(b"401")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_failures_and_double_to_a_cap() {
        let delays: Vec<Duration> = (1..=10).map(delay_for).collect();
        assert_eq!(&delays[..3], &[Duration::ZERO; 3]);
        assert_eq!(delays[3], Duration::from_millis(250));
        assert_eq!(delays[4], Duration::from_millis(500));
        assert_eq!(delays[9], MAX_DELAY);
        let tracker = FailureTracker::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(tracker.failed(ip, "test"), Duration::ZERO);
        }
        assert!(tracker.failed(ip, "test") > Duration::ZERO);
        tracker.succeeded(ip);
        assert_eq!(tracker.failed(ip, "test"), Duration::ZERO);
        assert!(is_unauthorized(b"HTTP/1.0 401 Authentication Required\r\n"));
    }
}
