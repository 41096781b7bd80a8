//! Slowing down password guessing: after a few failed logins from one address, each further
//! `401` to that address is delayed, doubling up to a cap. One table counts the failures of the
//! whole server (every shard and the source port), so spreading guesses over connections,
//! cores or ports gains nothing. It is a fixed array of atomics: no lock, no allocation, and no
//! cache line any core owns.
//!
//! Listener authentication by a station's backend is in [`url`], by local accounts in
//! [`users`].

pub mod url;
pub mod users;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Failures from one address tolerated before answers are delayed.
pub const FREE_FAILURES: u32 = 3;
/// First delay once the free failures are used up.
const BASE_DELAY: Duration = Duration::from_millis(250);
/// Longest delay.
const MAX_DELAY: Duration = Duration::from_secs(8);
/// A quiet address is forgotten after this many seconds.
const FORGET_AFTER_SECS: u32 = 60;
/// Slots in the table. Addresses that hash to the same slot are throttled together: with a
/// seeded hash nobody can aim a collision at a chosen address, and the only cost of one is an
/// innocent address being slowed down, never a guesser being let off.
const SLOTS: usize = 4096;

/// Recent authentication failures by address, for the whole server.
pub struct FailureTracker {
    /// Per slot: the failure count in the low 32 bits, and in the high 32 bits when the last
    /// one happened, in seconds since `epoch`.
    slots: Box<[AtomicU64]>,
    /// Seeds the address hash, fresh each run.
    hasher: RandomState,
    /// Time zero of the stored times.
    epoch: Instant,
}

impl Default for FailureTracker {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }
}

impl FailureTracker {
    /// Records a failure from `ip` and returns how long to wait before answering it.
    pub fn failed(&self, ip: IpAddr, port: &'static str) -> Duration {
        let now = self.now_secs();
        let slot = self.slot(ip);
        let next = |packed: u64| {
            let (count, last) = ((packed & 0xFFFF_FFFF) as u32, (packed >> 32) as u32);
            let count = if now.saturating_sub(last) >= FORGET_AFTER_SECS {
                0
            } else {
                count
            };
            Some(u64::from(now) << 32 | u64::from(count.saturating_add(1)))
        };
        // The closure always answers Some: both arms carry the value stored.
        let stored = match slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, next) {
            Ok(previous) | Err(previous) => next(previous).unwrap_or_default(),
        };
        let count = (stored & 0xFFFF_FFFF) as u32;
        metrics::counter!("cycast_auth_failures_total", "port" => port).increment(1);
        if count == FREE_FAILURES + 1 {
            tracing::warn!(%ip, port, "repeated authentication failures; answers to this address are now delayed");
        }
        delay_for(count)
    }

    /// Forgets `ip` after a successful login.
    pub fn succeeded(&self, ip: IpAddr) {
        self.slot(ip).store(0, Ordering::Release);
    }

    fn slot(&self, ip: IpAddr) -> &AtomicU64 {
        &self.slots[self.hasher.hash_one(ip) as usize % SLOTS]
    }

    fn now_secs(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
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
        // Counted across threads, as the shards and the ingest core do.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let tracker = std::sync::Arc::new(tracker);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let tracker = tracker.clone();
                std::thread::spawn(move || tracker.failed(other, "test"))
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), Duration::ZERO);
        }
        assert!(tracker.failed(other, "test") > Duration::ZERO);
        assert!(is_unauthorized(b"HTTP/1.0 401 Authentication Required\r\n"));
    }
}
