//! Per-shard counters. Each shard is the only writer of its own `ShardStats` (plain stores and
//! uncontended adds on a cache line no other core writes); status pages on any core read them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::mount::MountId;

/// A listener as status pages show it; each shard republishes its list about once a second.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// Server-wide id.
    pub id: u64,
    /// Mount it listens to.
    pub mount: MountId,
    /// Client address.
    pub peer: SocketAddr,
    /// Client software.
    pub user_agent: Box<str>,
    /// Seconds since it joined.
    pub connected_secs: u64,
    /// Audio bytes delivered.
    pub bytes_sent: u64,
    /// Bytes it is behind the live edge.
    pub lag: u64,
}

/// Why a listener left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed or reset the connection.
    ClientClosed = 0,
    /// The listener fell more than `limits.queue_size` behind.
    TooSlow,
    /// The listener fell so far behind that the ring overwrote its position.
    Lapped,
    /// An operator removed it.
    Kicked,
    /// Its time was up (`max_listener_duration`, or a limit an auth backend set).
    TimeLimit,
}

impl DisconnectReason {
    /// Number of reasons, for per-reason counter arrays indexed by `reason as usize`.
    pub const COUNT: usize = 5;

    /// Every reason, in index order.
    pub const ALL: [DisconnectReason; Self::COUNT] = [
        DisconnectReason::ClientClosed,
        DisconnectReason::TooSlow,
        DisconnectReason::Lapped,
        DisconnectReason::Kicked,
        DisconnectReason::TimeLimit,
    ];

    /// Label value used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientClosed => "client_closed",
            DisconnectReason::TooSlow => "too_slow",
            DisconnectReason::Lapped => "lapped",
            DisconnectReason::Kicked => "kicked",
            DisconnectReason::TimeLimit => "time_limit",
        }
    }
}

/// Counters of one shard.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Listeners connected to this shard now.
    pub listeners: AtomicU64,
    /// Listeners accepted since start.
    pub connects: AtomicU64,
    /// Audio bytes written to listener sockets.
    pub bytes_sent: AtomicU64,
    /// Sends (system calls) made to listeners; the cost driver of the server.
    pub sends: AtomicU64,
    /// Departures by client close.
    pub closed: AtomicU64,
    /// Departures by falling behind (`slow_listener = "drop"`).
    pub slow: AtomicU64,
    /// Slow listeners moved to the live edge instead (`slow_listener = "skip"`).
    pub skipped: AtomicU64,
    /// Departures by being lapped.
    pub lapped: AtomicU64,
    /// Departures by operator action.
    pub kicked: AtomicU64,
    /// Departures by a time limit.
    pub time_limited: AtomicU64,
    /// The shard's listeners as of its last snapshot.
    pub snapshot: ArcSwap<Vec<ListenerInfo>>,
    /// HLS sessions this shard saw recently, per mount, as hashes of their identity, so the
    /// same player reaching two shards counts once.
    pub hls_sessions: ArcSwap<Vec<(MountId, Vec<u64>)>>,
}

/// HLS listeners of `mount`: the distinct sessions every shard saw lately.
pub fn hls_listeners(shards: &[Arc<ShardStats>], mount: MountId) -> usize {
    let mut all: Vec<u64> = shards
        .iter()
        .flat_map(|s| {
            s.hls_sessions
                .load()
                .iter()
                .filter(|(m, _)| *m == mount)
                .flat_map(|(_, keys)| keys.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort_unstable();
    all.dedup();
    all.len()
}

impl ShardStats {
    /// Adds `n` to a counter this shard owns.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a departure's reason; the listener count itself follows the listener's
    /// admission (`shard::admission`).
    pub fn left(&self, reason: DisconnectReason) {
        let counter = match reason {
            DisconnectReason::ClientClosed => &self.closed,
            DisconnectReason::TooSlow => &self.slow,
            DisconnectReason::Lapped => &self.lapped,
            DisconnectReason::Kicked => &self.kicked,
            DisconnectReason::TimeLimit => &self.time_limited,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Counters of one mount on this shard, flushed to metrics about once a second.
#[derive(Debug, Default, Clone)]
pub struct MountCounters {
    /// Audio bytes sent.
    pub bytes_sent: u64,
    /// Send system calls made.
    pub sends: u64,
    /// Listeners joined.
    pub connects: u64,
    /// Slow listeners moved to the live edge (`slow_listener = "skip"`).
    pub skips: u64,
    /// Departures, indexed by `DisconnectReason as usize`.
    pub disconnects: [u64; DisconnectReason::COUNT],
    /// Times to first audio byte since the last flush, drained by the flush.
    pub first_byte_times: Vec<Duration>,
}
