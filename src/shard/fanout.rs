//! Fan-out: the hot path. When the ingest core publishes a chunk, the shard walks the mount's
//! listeners and gives each one a non-blocking send of everything it has not had yet.
//!
//! Per listener per chunk: one `send` (a `writev` when ICY metadata is interleaved), no
//! allocation, no lock. Bytes are first copied out of the shared ring into this shard's scratch
//! buffer and validated there (see `ring`), so a listener is never sent bytes the writer was
//! overwriting; listeners at the same position (nearly all of them: the live edge) share one
//! copy. Counters are plain integers here, flushed to the shared stats once per pass.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::icy::{Charset, IcyCursor, TitleBlock};
use crate::config::SlowListenerPolicy;
use crate::logging::escape;
use crate::mount::{Mount, MountId, StreamHeaders};
use crate::observability::access_log::AccessLog;
use crate::observability::stats::{DisconnectReason, ListenerInfo, ShardStats};
use crate::ring::Ring;
use crate::server::Shared;

/// One connected listener, owned by exactly one shard.
pub struct Listener {
    /// The connection, non-blocking, past its response headers.
    pub socket: TcpStream,
    /// Stream offset of the next audio byte this listener gets.
    pub cursor: u64,
    /// Whether `cursor` sits on a chunk (and so frame) boundary; a slow listener may only be
    /// moved to the live edge, or to another mount, from one.
    pub aligned: bool,
    /// ICY interleave state, for listeners that sent `Icy-MetaData: 1`.
    pub icy: Option<IcyCursor>,
    /// Codec headers (Ogg) still owed to this listener before audio, and how much went out.
    pub headers: Option<(Arc<StreamHeaders>, usize)>,
    /// Mount this listener is to be moved to once aligned (`/admin/moveclients`).
    pub move_to: Option<MountId>,
    /// Server-wide listener id (admin API `killclient`).
    pub id: u64,
    /// Client address.
    pub peer: SocketAddr,
    /// Client software, for status pages.
    pub user_agent: Box<str>,
    /// When the connection was accepted, for time to first byte and connected time.
    pub connected_at: Instant,
    /// Audio bytes delivered.
    pub bytes_sent: u64,
    /// Access log line parts (up to the status, and referer plus agent), when logging.
    pub log_line: Option<Box<(String, String)>>,
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

/// The listeners of one mount on this shard.
struct MountListeners {
    /// The mount's ring.
    ring: Arc<Ring>,
    /// The mount, for its shared listener count and title.
    mount: Arc<Mount>,
    /// Listeners in no particular order (removal swaps the last one in).
    listeners: Vec<Listener>,
    /// The mount's title as an ICY block, rebuilt when its version changes.
    title: TitleBlock,
    /// How this mount's titles are encoded.
    charset: Charset,
    /// Counters since start.
    counters: MountCounters,
    /// Live edge at the last housekeeping pass, to tell an idle mount.
    edge_at_last_check: u64,
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
    Move(MountId),
}

/// Everything needed to serve one listener: the copy buffer and limits.
struct Sender {
    /// The shard's copy buffer.
    scratch: Scratch,
    /// How far behind a listener may fall (`limits.queue_size`).
    queue_size: u64,
    /// What to do with a listener that falls further behind.
    slow_policy: SlowListenerPolicy,
}

/// All listeners of one shard, by mount.
pub struct Fanout {
    /// One entry per mount this shard has served, found by id (a few entries, searched once
    /// per pass, not per listener); a removed mount's entry goes once it has no listeners.
    mounts: Vec<MountListeners>,
    /// Serves listeners.
    sender: Sender,
    /// This shard's counters, read by status pages.
    stats: Arc<ShardStats>,
    /// Server-wide state: listener total for admission control.
    shared: Arc<Shared>,
    /// Where departures are logged, when the access log is on.
    access_log: Option<Rc<AccessLog>>,
}

impl Fanout {
    /// An empty fan-out for one shard.
    pub fn new(
        shared: Arc<Shared>,
        stats: Arc<ShardStats>,
        access_log: Option<Rc<AccessLog>>,
    ) -> Self {
        let config = shared.config();
        let limits = &config.limits;
        let queue_size = limits.queue_size as u64;
        Self {
            mounts: Vec::new(),
            sender: Sender {
                scratch: Scratch {
                    buf: vec![0; queue_size as usize],
                    mount: None,
                    start: 0,
                    end: 0,
                },
                queue_size,
                slow_policy: limits.slow_listener,
            },
            stats,
            access_log,
            shared,
        }
    }

    /// Adds a listener at the burst position and sends its first bytes right away.
    pub fn join(&mut self, mount: &Arc<Mount>, mut listener: Listener) {
        let ring = &mount.ring;
        let config = self.shared.config();
        // Before anything is published the first chunk will start at the edge.
        listener.cursor = ring
            .join_position(config.burst_size(&mount.name) as u64)
            .unwrap_or_else(|| ring.committed());
        listener.aligned = true;
        owe_headers(mount, &mut listener);
        self.stats.listeners.fetch_add(1, Ordering::Relaxed);
        ShardStats::add(&self.stats.connects, 1);
        let charset = Charset::from_name(&config.icy_charset(&mount.name));
        slot(&mut self.mounts, mount, charset).counters.connects += 1;
        self.admit(mount.id, listener);
    }

    /// Puts a listener into its mount's list after serving it once.
    fn admit(&mut self, mount: MountId, mut listener: Listener) {
        let Some(slot) = find(&mut self.mounts, mount) else {
            return;
        };
        slot.refresh_title();
        let edge = slot.ring.committed();
        let mut pass = Pass::default();
        let verdict = self.sender.serve(
            &mut listener,
            &slot.ring,
            &slot.title,
            mount,
            edge,
            &mut pass,
            &mut slot.counters,
        );
        pass.flush(&self.stats, &mut slot.counters);
        match verdict {
            Verdict::Keep => slot.listeners.push(listener),
            Verdict::Remove(reason) => self.depart(mount, listener, reason),
            Verdict::Move(to) => self.move_listener(mount, listener, to),
        }
    }

    /// New data on `mount`: serve every listener of it on this shard.
    pub fn on_publish(&mut self, mount: MountId) {
        let mut next = Some(0);
        while let Some(from) = next {
            next = self.on_publish_slice(mount, from, usize::MAX);
        }
    }

    /// Serves up to `count` listeners of `mount` from index `from`; returns where to continue,
    /// or `None` when every listener has been served. A large shard serves its listeners in
    /// slices and yields between them, so joins are accepted during a long pass.
    pub fn on_publish_slice(&mut self, mount: MountId, from: usize, count: usize) -> Option<usize> {
        let slot = find(&mut self.mounts, mount)?;
        slot.refresh_title();
        let edge = slot.ring.committed();
        let mut pass = Pass::default();
        // Departures are rare; this stays empty (unallocated) on an ordinary pass.
        let mut leaving = Vec::new();
        let MountListeners {
            ring,
            listeners,
            title,
            counters,
            ..
        } = slot;
        let mut i = from;
        let mut served = 0;
        while i < listeners.len() && served < count {
            served += 1;
            match self.sender.serve(
                &mut listeners[i],
                ring,
                title,
                mount,
                edge,
                &mut pass,
                counters,
            ) {
                Verdict::Keep => i += 1,
                // The last listener takes this place and is served next.
                other => leaving.push((listeners.swap_remove(i), other)),
            }
        }
        let more = (i < listeners.len()).then_some(i);
        pass.flush(&self.stats, counters);
        for (listener, verdict) in leaving {
            match verdict {
                Verdict::Remove(reason) => self.depart(mount, listener, reason),
                Verdict::Move(to) => self.move_listener(mount, listener, to),
                Verdict::Keep => {}
            }
        }
        more
    }

    /// Disconnects the listener with `id` if this shard has it.
    pub fn kick(&mut self, id: u64) -> bool {
        for slot in self.mounts.iter_mut() {
            if let Some(i) = slot.listeners.iter().position(|l| l.id == id) {
                let listener = slot.listeners.swap_remove(i);
                let mount = slot.mount.id;
                self.depart(mount, listener, DisconnectReason::Kicked);
                return true;
            }
        }
        false
    }

    /// Moves every listener of `from` to `to`: at once for those on a frame boundary, the
    /// others when their current chunk is complete, so nobody gets a cut frame.
    pub fn move_all(&mut self, from: MountId, to: MountId) {
        if from == to || self.shared.mounts.get(to).is_none() {
            return;
        }
        let Some(slot) = find(&mut self.mounts, from) else {
            return;
        };
        let mut moving = Vec::new();
        let mut i = 0;
        while i < slot.listeners.len() {
            if slot.listeners[i].aligned {
                moving.push(slot.listeners.swap_remove(i));
            } else {
                slot.listeners[i].move_to = Some(to);
                i += 1;
            }
        }
        for listener in moving {
            self.move_listener(from, listener, to);
        }
    }

    fn move_listener(&mut self, from: MountId, mut listener: Listener, to: MountId) {
        // A destination removed meanwhile takes nobody (see `MountTable::retire`).
        let Some(dest) = self.shared.mounts.get(to).filter(|d| d.try_join(0)) else {
            return self.depart(from, listener, DisconnectReason::Kicked);
        };
        if let Some(source) = find(&mut self.mounts, from) {
            source.mount.listener_left();
        }
        listener.move_to = None;
        // The live edge: no second burst, and never audio the destination played before.
        listener.cursor = dest.ring.committed();
        listener.aligned = true;
        owe_headers(&dest, &mut listener);
        if let Some(icy) = listener.icy.as_mut() {
            icy.forget_title();
        }
        let charset = Charset::from_name(&self.shared.config().icy_charset(&dest.name));
        slot(&mut self.mounts, &dest, charset);
        self.admit(to, listener);
    }

    /// Takes up limits changed by a configuration reload.
    pub fn apply_config(&mut self, config: &crate::config::Config) {
        let limits = &config.limits;
        self.sender.slow_policy = limits.slow_listener;
        self.sender.queue_size = limits.queue_size as u64;
        if self.sender.scratch.buf.len() < limits.queue_size {
            self.sender.scratch.buf.resize(limits.queue_size, 0);
        }
        for slot in self.mounts.iter_mut() {
            slot.charset = Charset::from_name(&config.icy_charset(&slot.mount.name));
        }
    }

    /// Ends every listener's response (FIN after the bytes already sent) for shutdown;
    /// returns how many there were.
    pub fn close_all(&mut self) -> usize {
        let mut closed = 0;
        for slot in self.mounts.iter_mut() {
            for listener in slot.listeners.drain(..) {
                let _ = listener.socket.shutdown(std::net::Shutdown::Write);
                slot.mount.listener_left();
                self.stats.listeners.fetch_sub(1, Ordering::Relaxed);
                self.shared.listeners.fetch_sub(1, Ordering::Relaxed);
                closed += 1;
            }
        }
        closed
    }

    /// Finds listeners that hung up on a mount nothing is being published to: sends would
    /// notice, but an idle mount makes none. Runs from the shard's once-a-second housekeeping,
    /// one peek per listener of an idle mount only.
    pub fn reap_idle(&mut self) {
        let mut gone = Vec::new();
        for slot in self.mounts.iter_mut() {
            let edge = slot.ring.committed();
            let idle = edge == slot.edge_at_last_check;
            slot.edge_at_last_check = edge;
            if !idle {
                continue;
            }
            let mut i = 0;
            while i < slot.listeners.len() {
                let mut probe = [0u8; 1];
                match slot.listeners[i].socket.peek(&mut probe) {
                    Ok(0) => gone.push((slot.mount.id, slot.listeners.swap_remove(i))),
                    Err(e)
                        if e.kind() != ErrorKind::WouldBlock
                            && e.kind() != ErrorKind::Interrupted =>
                    {
                        gone.push((slot.mount.id, slot.listeners.swap_remove(i)))
                    }
                    _ => i += 1,
                }
            }
        }
        for (mount, listener) in gone {
            self.depart(mount, listener, DisconnectReason::ClientClosed);
        }
    }

    /// Lets go of mounts the ingest core removed once their last listener here left, so their
    /// rings are freed when the last reference goes (called after `take_counters`, so the
    /// final counts are published first).
    pub fn forget_removed(&mut self) {
        self.mounts
            .retain(|slot| !(slot.listeners.is_empty() && slot.mount.is_removed()));
    }

    /// The shard's listeners for status pages.
    pub fn snapshot(&self) -> Vec<ListenerInfo> {
        let now = Instant::now();
        self.mounts
            .iter()
            .flat_map(|slot| {
                let edge = slot.ring.committed();
                slot.listeners.iter().map(move |l| ListenerInfo {
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

    /// Per-mount counters of this shard with each mount's current listener count; the
    /// first-byte times collected since the last call are drained.
    pub fn take_counters(&mut self) -> Vec<(Arc<Mount>, usize, MountCounters)> {
        self.mounts
            .iter_mut()
            .map(|slot| {
                let counters = MountCounters {
                    first_byte_times: std::mem::take(&mut slot.counters.first_byte_times),
                    ..slot.counters.clone()
                };
                (slot.mount.clone(), slot.listeners.len(), counters)
            })
            .collect()
    }

    fn depart(&mut self, mount: MountId, listener: Listener, reason: DisconnectReason) {
        self.stats.left(reason);
        if let (Some(log), Some(line)) = (&self.access_log, &listener.log_line) {
            log.write(
                &line.0,
                200,
                listener.bytes_sent,
                &line.1,
                Some(listener.connected_at.elapsed()),
            );
        }
        self.shared.listeners.fetch_sub(1, Ordering::Relaxed);
        if let Some(slot) = find(&mut self.mounts, mount) {
            slot.counters.disconnects[reason as usize] += 1;
            slot.mount.listener_left();
            tracing::debug!(
                id = listener.id,
                peer = %listener.peer,
                mount = %escape(&slot.mount.name),
                reason = reason.as_str(),
                bytes = listener.bytes_sent,
                "listener left"
            );
        }
    }
}

/// Totals of one pass over a mount's listeners, flushed once at its end.
#[derive(Default)]
struct Pass {
    sends: u64,
    bytes: u64,
    skips: u64,
}

impl Pass {
    fn flush(&self, stats: &ShardStats, counters: &mut MountCounters) {
        if self.skips > 0 {
            counters.skips += self.skips;
            ShardStats::add(&stats.skipped, self.skips);
        }
        if self.sends > 0 {
            counters.sends += self.sends;
            counters.bytes_sent += self.bytes;
            ShardStats::add(&stats.sends, self.sends);
            ShardStats::add(&stats.bytes_sent, self.bytes);
        }
    }
}

impl MountListeners {
    /// Rebuilds the ICY title block when the mount's title changed.
    fn refresh_title(&mut self) {
        let info = self.mount.info.load();
        if info.title_version != self.title.version {
            self.title = TitleBlock::new(&info.title, info.title_version, self.charset);
        }
    }
}

/// Sets where a listener starting at `listener.cursor` really starts and the codec headers it
/// needs first: those of the chain link its first page belongs to (see
/// [`Mount::join_headers`]).
fn owe_headers(mount: &Mount, listener: &mut Listener) {
    let (cursor, headers) = mount.join_headers(listener.cursor);
    listener.cursor = cursor;
    listener.headers = headers.map(|h| (h, 0));
}

/// The listener list of mount `id` on this shard, if it has one.
fn find(mounts: &mut [MountListeners], id: MountId) -> Option<&mut MountListeners> {
    mounts.iter_mut().find(|slot| slot.mount.id == id)
}

/// The listener list of `mount`, created on its first listener.
fn slot<'a>(
    mounts: &'a mut Vec<MountListeners>,
    mount: &Arc<Mount>,
    charset: Charset,
) -> &'a mut MountListeners {
    let at = match mounts.iter().position(|slot| slot.mount.id == mount.id) {
        Some(at) => at,
        None => {
            let info = mount.info.load();
            mounts.push(MountListeners {
                ring: mount.ring.clone(),
                mount: mount.clone(),
                listeners: Vec::new(),
                title: TitleBlock::new(&info.title, info.title_version, charset),
                charset,
                counters: MountCounters::default(),
                edge_at_last_check: 0,
            });
            mounts.len() - 1
        }
    };
    &mut mounts[at]
}

impl Sender {
    /// Sends one listener what it is missing, with one system call.
    #[allow(clippy::too_many_arguments)]
    fn serve(
        &mut self,
        listener: &mut Listener,
        ring: &Ring,
        title: &TitleBlock,
        mount: MountId,
        edge: u64,
        pass: &mut Pass,
        counters: &mut MountCounters,
    ) -> Verdict {
        if let (Some(to), true) = (listener.move_to, listener.aligned) {
            return Verdict::Move(to);
        }
        let mut end = edge;
        if edge.saturating_sub(listener.cursor) > self.queue_size {
            match self.slow_policy {
                SlowListenerPolicy::Drop => return Verdict::Remove(DisconnectReason::TooSlow),
                SlowListenerPolicy::Skip if listener.aligned => match ring.newest_chunk_start() {
                    Some(newest) => {
                        pass.skips += 1;
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
        if listener.move_to.is_some() {
            // Stop at the end of the current chunk, where the move can happen.
            if let Some(boundary) = ring.chunk_boundary_after(listener.cursor) {
                end = end.min(boundary);
            }
        }
        if end <= listener.cursor {
            return Verdict::Keep;
        }
        if let Some((headers, sent)) = listener.headers.as_mut() {
            // Once per listener: the codec headers go out before any audio.
            let rest = &headers.bytes[*sent..];
            let written = match listener.icy.as_mut() {
                Some(icy) => icy.send(&listener.socket, rest, title),
                None => (&listener.socket).write(rest),
            };
            match written {
                Ok(n) if n == rest.len() => listener.headers = None,
                Ok(n) => {
                    *sent += n;
                    return Verdict::Keep;
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    return Verdict::Keep
                }
                Err(_) => return Verdict::Remove(DisconnectReason::ClientClosed),
            }
        }
        let Ok(bytes) = self.scratch.view(ring, mount, listener.cursor, end) else {
            return Verdict::Remove(DisconnectReason::Lapped);
        };
        let sent = match listener.icy.as_mut() {
            Some(icy) => icy.send(&listener.socket, bytes, title),
            None => (&listener.socket).write(bytes),
        };
        match sent {
            Ok(n) => {
                pass.sends += 1;
                pass.bytes += n as u64;
                if listener.bytes_sent == 0 && n > 0 {
                    counters
                        .first_byte_times
                        .push(listener.connected_at.elapsed());
                }
                listener.cursor += n as u64;
                listener.bytes_sent += n as u64;
                // `end` is always a chunk boundary: the live edge, or the boundary a skip or a
                // move stops at.
                listener.aligned = n == bytes.len();
                Verdict::Keep
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                Verdict::Keep
            }
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
            if len > self.buf.len() {
                // Only a unit larger than the queue (a big Ogg page with a tiny queue_size)
                // gets here; grow once rather than fail.
                self.buf.resize(len, 0);
            }
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
