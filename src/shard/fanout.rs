//! Fan-out: the hot path. When the ingest core publishes a chunk, the shard walks the mount's
//! listeners and gives each one non-blocking send of everything it has not had yet.
//!
//! Per listener per chunk: one `send`, no allocation, no lock. Bytes are first copied out of
//! the shared ring into this shard's scratch buffer and validated there (see `ring`), so a
//! listener is never sent bytes the writer was overwriting; listeners at the same position
//! (nearly all of them: the live edge) share one copy.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::config::SlowListenerPolicy;
use crate::mount::{Mount, MountId};
use crate::observability::stats::{DisconnectReason, ShardStats};
use crate::ring::Ring;
use crate::server::Shared;

/// One connected listener, owned by exactly one shard.
pub struct Listener {
    /// The connection, non-blocking, past its response headers.
    pub socket: TcpStream,
    /// Stream offset of the next byte this listener gets.
    pub cursor: u64,
    /// Whether `cursor` sits on a chunk (and so frame) boundary; a slow listener may only be
    /// moved to the live edge from one.
    pub aligned: bool,
    /// Server-wide listener id (admin API `killclient`).
    pub id: u64,
    /// Client address.
    pub peer: SocketAddr,
    /// Client software, for status pages.
    pub user_agent: Box<str>,
    /// When the listener joined.
    pub connected_at: Instant,
    /// Audio bytes delivered.
    pub bytes_sent: u64,
}

/// The listeners of one mount on this shard.
struct MountListeners {
    /// The mount's ring.
    ring: Arc<Ring>,
    /// The mount, for its shared listener count.
    mount: Arc<Mount>,
    /// Listeners in no particular order (removal swaps the last one in).
    listeners: Vec<Listener>,
}

/// A validated copy of `[start, end)` of one mount's ring.
struct Scratch {
    /// The bytes; capacity `limits.queue_size`, never reallocated.
    buf: Vec<u8>,
    /// Which mount the copy is of.
    mount: Option<MountId>,
    /// First stream offset held.
    start: u64,
    /// One past the last offset held.
    end: u64,
}

/// Outcome of serving one listener.
enum Verdict {
    Keep,
    Remove(DisconnectReason),
}

/// Everything needed to serve one listener: the copy buffer, counters and limits.
struct Sender {
    /// The shard's copy buffer.
    scratch: Scratch,
    /// This shard's counters.
    stats: Arc<ShardStats>,
    /// How far behind a listener may fall (`limits.queue_size`).
    queue_size: u64,
    /// What to do with a listener that falls further behind.
    slow_policy: SlowListenerPolicy,
}

/// All listeners of one shard, by mount.
pub struct Fanout {
    /// Indexed by mount id; grows when a listener joins a mount created after start.
    mounts: Vec<Option<MountListeners>>,
    /// Serves listeners.
    sender: Sender,
    /// Server-wide state: listener total for admission control.
    shared: Arc<Shared>,
    /// Bytes of recent audio a new listener starts with (`limits.burst_size`).
    burst_size: u64,
}

impl Fanout {
    /// An empty fan-out for one shard.
    pub fn new(shared: Arc<Shared>, stats: Arc<ShardStats>) -> Self {
        let limits = &shared.config.limits;
        let queue_size = limits.queue_size as u64;
        let burst_size = limits.burst_size as u64;
        let slow_policy = limits.slow_listener;
        Self {
            mounts: Vec::new(),
            sender: Sender {
                scratch: Scratch {
                    buf: vec![0; queue_size as usize],
                    mount: None,
                    start: 0,
                    end: 0,
                },
                stats,
                queue_size,
                slow_policy,
            },
            shared,
            burst_size,
        }
    }

    /// Adds a listener at the burst position and sends its first bytes right away.
    pub fn join(&mut self, mount: &Arc<Mount>, mut listener: Listener) {
        let ring = &mount.ring;
        match ring.join_position(self.burst_size) {
            Some(start) => {
                listener.cursor = start;
                listener.aligned = true;
            }
            None => {
                // Nothing published yet: the first chunk published starts at the edge.
                listener.cursor = ring.committed();
                listener.aligned = true;
            }
        }
        ShardStats::add(&self.sender.stats.connects, 1);
        self.sender.stats.listeners.fetch_add(1, Ordering::Relaxed);
        let slot = slot(&mut self.mounts, mount);
        let edge = slot.ring.committed();
        match self.sender.serve(&mut listener, &slot.ring, edge, mount.id) {
            Verdict::Keep => slot.listeners.push(listener),
            Verdict::Remove(reason) => {
                let mount = slot.mount.clone();
                self.depart(&mount, listener, reason);
            }
        }
    }

    /// New data on `mount`: serve every listener of it on this shard.
    pub fn on_publish(&mut self, mount: MountId) {
        let Some(Some(slot)) = self.mounts.get_mut(mount) else {
            return;
        };
        let edge = slot.ring.committed();
        let mut i = 0;
        let mut departed = Vec::new();
        while i < slot.listeners.len() {
            let listener = &mut slot.listeners[i];
            match self.sender.serve(listener, &slot.ring, edge, mount) {
                Verdict::Keep => i += 1,
                Verdict::Remove(reason) => departed.push((slot.listeners.swap_remove(i), reason)),
            }
        }
        let mount_ref = slot.mount.clone();
        for (listener, reason) in departed {
            self.depart(&mount_ref, listener, reason);
        }
    }

    /// Listeners of `mount` on this shard.
    pub fn listeners(&self, mount: MountId) -> &[Listener] {
        match self.mounts.get(mount) {
            Some(Some(slot)) => &slot.listeners,
            _ => &[],
        }
    }

    fn depart(&mut self, mount: &Mount, listener: Listener, reason: DisconnectReason) {
        self.sender.stats.left(reason);
        mount.listener_left();
        self.shared.listeners.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(
            id = listener.id,
            peer = %listener.peer,
            mount = %mount.name,
            reason = reason.as_str(),
            bytes = listener.bytes_sent,
            "listener left"
        );
    }
}

/// The listener list of `mount`, created on its first listener.
fn slot<'a>(
    mounts: &'a mut Vec<Option<MountListeners>>,
    mount: &Arc<Mount>,
) -> &'a mut MountListeners {
    if mounts.len() <= mount.id {
        mounts.resize_with(mount.id + 1, || None);
    }
    mounts[mount.id].get_or_insert_with(|| MountListeners {
        ring: mount.ring.clone(),
        mount: mount.clone(),
        listeners: Vec::new(),
    })
}

impl Sender {
    /// Sends one listener what it is missing, with one system call.
    fn serve(
        &mut self,
        listener: &mut Listener,
        ring: &Ring,
        edge: u64,
        mount: MountId,
    ) -> Verdict {
        let stats = &self.stats;
        let mut end = edge;
        if edge.saturating_sub(listener.cursor) > self.queue_size {
            match self.slow_policy {
                SlowListenerPolicy::Drop => return Verdict::Remove(DisconnectReason::TooSlow),
                SlowListenerPolicy::Skip if listener.aligned => match ring.newest_chunk_start() {
                    Some(newest) => {
                        ShardStats::add(&stats.slow, 1);
                        listener.cursor = newest;
                    }
                    None => return Verdict::Remove(DisconnectReason::Lapped),
                },
                // Finish the current chunk first so the jump lands between frames.
                SlowListenerPolicy::Skip => match ring.chunk_boundary_after(listener.cursor) {
                    Some(boundary) => end = boundary,
                    None => return Verdict::Remove(DisconnectReason::Lapped),
                },
            }
        }
        if end <= listener.cursor {
            return Verdict::Keep;
        }
        let Ok(bytes) = self.scratch.view(ring, mount, listener.cursor, end) else {
            return Verdict::Remove(DisconnectReason::Lapped);
        };
        match (&listener.socket).write(bytes) {
            Ok(n) => {
                ShardStats::add(&stats.sends, 1);
                ShardStats::add(&stats.bytes_sent, n as u64);
                listener.cursor += n as u64;
                listener.bytes_sent += n as u64;
                listener.aligned = n == bytes.len();
                Verdict::Keep
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Verdict::Keep,
            Err(e) if e.kind() == ErrorKind::Interrupted => Verdict::Keep,
            Err(_) => Verdict::Remove(DisconnectReason::ClientClosed),
        }
    }
}

impl Scratch {
    /// Validated bytes `[from, to)` of `mount`'s ring, copied at most once per distinct range.
    fn view(
        &mut self,
        ring: &Ring,
        mount: MountId,
        from: u64,
        to: u64,
    ) -> Result<&[u8], crate::ring::Lapped> {
        let cached = self.mount == Some(mount) && self.start <= from && to <= self.end;
        if !cached {
            let len = (to - from) as usize;
            debug_assert!(len <= self.buf.len(), "range larger than the queue size");
            self.mount = None;
            ring.read(from, &mut self.buf[..len])?;
            self.mount = Some(mount);
            self.start = from;
            self.end = to;
        }
        let offset = (from - self.start) as usize;
        Ok(&self.buf[offset..offset + (to - from) as usize])
    }
}

impl Fanout {
    /// The shard's listeners for status pages.
    pub fn snapshot(&self) -> Vec<crate::observability::stats::ListenerInfo> {
        let now = Instant::now();
        self.mounts
            .iter()
            .flatten()
            .flat_map(|slot| {
                let edge = slot.ring.committed();
                slot.listeners
                    .iter()
                    .map(move |l| crate::observability::stats::ListenerInfo {
                        id: l.id,
                        mount: slot.mount.id,
                        peer: l.peer,
                        user_agent: l.user_agent.clone(),
                        connected_secs: now.duration_since(l.connected_at).as_secs(),
                        bytes_sent: l.bytes_sent,
                        lag: edge.saturating_sub(l.cursor),
                    })
            })
            .collect()
    }
}
