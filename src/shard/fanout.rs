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
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

mod tls;

use super::admission::Admission;
use super::icy::{IcyCursor, IcyPlan, Piece, TitleBlock};
use super::sys::{Batch, Owner, Part, SendRing, Taskrun};
use crate::config::{FanoutEngine, SlowListenerPolicy};
use crate::icy::Charset;
use crate::logging::escape;
use crate::mount::{Mount, MountId, StreamHeaders};
use crate::observability::access_log::AccessLog;
use crate::observability::stats::{DisconnectReason, ListenerInfo, MountCounters, ShardStats};
use crate::ring::Ring;
use crate::state::Shared;

/// One connected listener, owned by exactly one shard.
pub struct Listener {
    /// Its place in the server's, mount's and shard's listener counts, given back when the
    /// listener is dropped.
    pub admission: Admission,
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
    /// Whether `headers` holds the mount's intro: until it is out the listener's audio
    /// position follows the live edge, so it joins there after the intro.
    pub in_intro: bool,
    /// When the listener's time is up (`max_listener_duration`, or a shorter limit from an
    /// auth backend): from then on it gets at most the rest of its chunk, then it is ended.
    pub deadline: Option<Instant>,
    /// The TLS session of a listener on the HTTPS port; its chunks are encrypted through it.
    pub tls: Option<Box<crate::tls::Session>>,
}

impl Listener {
    /// Accounts `n` bytes of audio the kernel took from a send aimed at `end`; `reached_end`
    /// says whether all of it went, so the cursor sits on a chunk boundary.
    fn took_audio(&mut self, n: usize, reached_end: bool, counters: &mut MountCounters) {
        if n == 0 {
            return;
        }
        if self.bytes_sent == 0 {
            counters.first_byte_times.push(self.connected_at.elapsed());
        }
        self.cursor += n as u64;
        self.bytes_sent += n as u64;
        self.aligned = reached_end;
    }
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
    /// The time of the current pass, read once for every listener's deadline.
    now: Instant,
    /// Plaintext of one TLS listener's send (audio with ICY blocks), reused for all of them.
    tls_plain: Vec<u8>,
    /// Its ciphertext, reused likewise.
    tls_cipher: Vec<u8>,
}

/// How a shard's sends reach the kernel.
enum Engine {
    /// One `send`/`writev` per listener.
    Send,
    /// Batches through the shard's io_uring.
    Uring(Box<SendRing>),
}

/// One send of an io_uring batch: what its completion needs to be taken in.
#[derive(Clone, Copy)]
struct Pending {
    /// The listener's index in its mount's list.
    index: usize,
    /// Codec header bytes at the front of the send's audio.
    headers: usize,
    /// Ring bytes after them.
    audio: usize,
    /// The ICY interleave of the send, for listeners with metadata.
    plan: Option<IcyPlan>,
}

/// All listeners of one shard, by mount.
pub struct Fanout {
    /// One entry per mount this shard has served, found by id (a few entries, searched once
    /// per pass, not per listener); a removed mount's entry goes once it has no listeners.
    mounts: Vec<MountListeners>,
    /// Serves listeners.
    sender: Sender,
    /// The engine in use.
    engine: Engine,
    /// The engine the configuration asks for, to notice a reload that changes it.
    wanted: FanoutEngine,
    /// The sends of the io_uring batch in flight; capacity for a full batch, reused.
    pending: Vec<Pending>,
    /// `io_uring_enter` calls of rings this fan-out dropped (engine switches), so the metric
    /// never goes back.
    uring_submits_before: u64,
    /// This shard's counters, read by status pages.
    stats: Arc<ShardStats>,
    /// Server-wide state: configuration and the mount table.
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
        let engine = start_engine(config.fanout.engine);
        Self {
            mounts: Vec::new(),
            engine,
            wanted: config.fanout.engine,
            pending: Vec::with_capacity(super::FANOUT_SLICE),
            uring_submits_before: 0,
            sender: Sender {
                scratch: Scratch {
                    buf: vec![0; queue_size as usize],
                    mount: None,
                    start: 0,
                    end: 0,
                },
                queue_size,
                slow_policy: limits.slow_listener,
                now: Instant::now(),
                tls_plain: Vec::new(),
                tls_cipher: Vec::new(),
            },
            stats,
            access_log,
            shared,
        }
    }

    /// Adds a listener at the burst position of the mount it was admitted to and sends its
    /// first bytes right away.
    pub fn join(&mut self, mut listener: Listener) {
        let mount = listener.admission.mount().clone();
        let ring = &mount.ring;
        let config = self.shared.config();
        // Before anything is published the first chunk will start at the edge.
        listener.cursor = ring
            .join_position(config.burst_size(&mount.name) as u64)
            .unwrap_or_else(|| ring.committed());
        listener.aligned = true;
        owe_headers(&mount, &mut listener);
        if listener.headers.is_none() {
            if let Some(intro) = super::intro::for_listener(&mount.name, ring, listener.cursor) {
                listener.headers = Some((intro, 0));
                listener.in_intro = true;
            }
        }
        listener.admission.count_on(&self.stats);
        ShardStats::add(&self.stats.connects, 1);
        let charset = Charset::from_name(&config.icy_charset(&mount.name)).unwrap_or_default();
        slot(&mut self.mounts, &mount, charset).counters.connects += 1;
        if let Engine::Uring(ring) = &mut self.engine {
            ring.register(listener.socket.as_raw_fd());
        }
        self.admit(mount.id, listener);
    }

    /// Puts a listener into its mount's list and serves it once.
    fn admit(&mut self, mount: MountId, listener: Listener) {
        let Some(slot) = find(&mut self.mounts, mount) else {
            if let Engine::Uring(ring) = &mut self.engine {
                ring.unregister(listener.socket.as_raw_fd());
            }
            return;
        };
        slot.listeners.push(listener);
        let last = slot.listeners.len() - 1;
        self.on_publish_slice(mount, last, 1);
    }

    /// Serves up to `count` listeners of `mount` from index `from`; returns where to continue,
    /// or `None` when every listener has been served. A large shard serves its listeners in
    /// slices and yields between them, so joins are accepted during a long pass.
    pub fn on_publish_slice(&mut self, mount: MountId, from: usize, count: usize) -> Option<usize> {
        let slot = find(&mut self.mounts, mount)?;
        slot.refresh_title();
        let edge = slot.ring.committed();
        self.sender.now = Instant::now();
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
        let stop = from.saturating_add(count).min(listeners.len());
        let mut broken = None;
        let mut i = from;
        match &mut self.engine {
            Engine::Send => {
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
            }
            Engine::Uring(uring) => {
                let mut gone = Vec::new();
                let mut slice = UringSlice {
                    ring: uring,
                    sender: &mut self.sender,
                    pending: &mut self.pending,
                    listeners,
                    source: ring,
                    title,
                    mount,
                    edge,
                    pass: &mut pass,
                    counters,
                    gone: &mut gone,
                };
                if let Err(e) = slice.serve(from, stop) {
                    broken = Some(e);
                }
                // TLS listeners were left out of the batch: their bytes are sealed per
                // listener into the shard's one cipher buffer, which a batch could only point
                // into for one of them. Each still gets one send.
                for (index, listener) in listeners.iter_mut().enumerate().take(stop).skip(from) {
                    if listener.tls.is_none() {
                        continue;
                    }
                    let verdict = self
                        .sender
                        .serve(listener, ring, title, mount, edge, &mut pass, counters);
                    if !matches!(verdict, Verdict::Keep) {
                        gone.push((index, verdict));
                    }
                }
                i = stop;
                // Served listeners that leave make room for unserved ones, which are then
                // served next like after a departure in the send engine.
                gone.sort_unstable_by_key(|g| std::cmp::Reverse(g.0));
                for (index, verdict) in gone {
                    listeners.swap(index, i - 1);
                    leaving.push((listeners.swap_remove(i - 1), verdict));
                    i -= 1;
                }
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
        if let Some(e) = broken {
            tracing::warn!("io_uring submission failed: {e}; fan-out continues with send");
            self.set_engine(Engine::Send);
        }
        more
    }

    /// Puts `engine` in place; an io_uring gets every current listener's socket registered.
    fn set_engine(&mut self, engine: Engine) {
        if let Engine::Uring(old) = &self.engine {
            self.uring_submits_before += old.submits();
        }
        self.engine = engine;
        if let Engine::Uring(ring) = &mut self.engine {
            for slot in self.mounts.iter() {
                for listener in &slot.listeners {
                    ring.register(listener.socket.as_raw_fd());
                }
            }
        }
    }

    /// `io_uring_enter` calls this shard made.
    pub fn uring_submits(&self) -> u64 {
        self.uring_submits_before
            + match &self.engine {
                Engine::Uring(ring) => ring.submits(),
                Engine::Send => 0,
            }
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
            if slot.listeners[i].aligned && !slot.listeners[i].in_intro {
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
        let Some(dest) = self
            .shared
            .mounts
            .get(to)
            .filter(|dest| listener.admission.move_to(dest))
        else {
            return self.depart(from, listener, DisconnectReason::Kicked);
        };
        listener.move_to = None;
        // The live edge: no second burst, and never audio the destination played before.
        listener.cursor = dest.ring.committed();
        listener.aligned = true;
        owe_headers(&dest, &mut listener);
        if let Some(icy) = listener.icy.as_mut() {
            icy.forget_title();
        }
        let charset =
            Charset::from_name(&self.shared.config().icy_charset(&dest.name)).unwrap_or_default();
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
            slot.charset =
                Charset::from_name(&config.icy_charset(&slot.mount.name)).unwrap_or_default();
        }
        if config.fanout.engine != self.wanted {
            self.wanted = config.fanout.engine;
            let engine = start_engine(self.wanted);
            self.set_engine(engine);
        }
    }

    /// Ends every listener's response (FIN after the bytes already sent) for shutdown;
    /// returns how many there were. Each is counted out as it is dropped.
    pub fn close_all(&mut self) -> usize {
        let mut closed = 0;
        for slot in self.mounts.iter_mut() {
            for mut listener in slot.listeners.drain(..) {
                if let Some(tls) = listener.tls.as_mut() {
                    tls.close_notify(&listener.socket);
                }
                let _ = listener.socket.shutdown(std::net::Shutdown::Write);
                if let Engine::Uring(ring) = &mut self.engine {
                    ring.unregister(listener.socket.as_raw_fd());
                }
                closed += 1;
            }
        }
        closed
    }

    /// Finds listeners that hung up on a mount nothing is being published to: sends would
    /// notice, but an idle mount makes none. Runs from the shard's once-a-second housekeeping,
    /// one peek per listener of an idle mount only. Listeners of an idle mount whose time is
    /// up are ended here too, as no pass would reach them.
    pub fn reap_idle(&mut self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        let mut timed_out = Vec::new();
        for slot in self.mounts.iter_mut() {
            let edge = slot.ring.committed();
            let idle = edge == slot.edge_at_last_check;
            slot.edge_at_last_check = edge;
            if !idle {
                continue;
            }
            let mut i = 0;
            while i < slot.listeners.len() {
                let listener = &slot.listeners[i];
                if listener.deadline.is_some_and(|d| d <= now) && at_frame_boundary(listener) {
                    timed_out.push((slot.mount.id, slot.listeners.swap_remove(i)));
                    continue;
                }
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
        for (mount, listener) in timed_out {
            self.depart(mount, listener, DisconnectReason::TimeLimit);
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

    /// Ends a listener taken out of `mount`'s list; dropping it at the end counts it out.
    fn depart(&mut self, mount: MountId, listener: Listener, reason: DisconnectReason) {
        // The ring holds the socket open while it is registered.
        if let Engine::Uring(ring) = &mut self.engine {
            ring.unregister(listener.socket.as_raw_fd());
        }
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
        if let Some(slot) = find(&mut self.mounts, mount) {
            slot.counters.disconnects[reason as usize] += 1;
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

/// Whether ending `listener` now leaves its player whole frames: its audio stopped on a chunk
/// boundary, and no ICY metadata block or codec header is half sent.
fn at_frame_boundary(listener: &Listener) -> bool {
    listener.aligned
        && listener.headers.is_none()
        && !listener
            .icy
            .as_ref()
            .is_some_and(|icy| icy.partial_block().is_some())
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
    /// Decides what `listener` gets this pass: a verdict without sending (a move, a slow
    /// listener dropped, nothing new), or a send of `[cursor, end)` (after any codec headers
    /// it is owed). A slow listener on a frame boundary is skipped to the newest chunk here.
    fn prepare(
        &self,
        listener: &mut Listener,
        ring: &Ring,
        edge: u64,
        pass: &mut Pass,
    ) -> Result<u64, Verdict> {
        if listener.in_intro {
            if listener.headers.is_some() {
                // No audio went out yet: it starts from the newest chunk once the intro is
                // out, never from audio that aged while the intro played.
                if let Some(newest) = ring.newest_chunk_start() {
                    listener.cursor = listener.cursor.max(newest);
                }
            } else {
                listener.in_intro = false;
            }
        }
        if let (Some(to), true) = (listener.move_to, listener.aligned && !listener.in_intro) {
            return Err(Verdict::Move(to));
        }
        let mut end = edge;
        if edge.saturating_sub(listener.cursor) > self.queue_size {
            match self.slow_policy {
                SlowListenerPolicy::Drop => return Err(Verdict::Remove(DisconnectReason::TooSlow)),
                SlowListenerPolicy::Skip if listener.aligned => match ring.newest_chunk_start() {
                    Some(newest) => {
                        pass.skips += 1;
                        listener.cursor = newest;
                    }
                    None => return Err(Verdict::Remove(DisconnectReason::Lapped)),
                },
                // Finish the current chunk first so the jump lands between frames.
                SlowListenerPolicy::Skip => match ring.chunk_boundary_after(listener.cursor) {
                    Some(boundary) => end = boundary,
                    None => return Err(Verdict::Remove(DisconnectReason::Lapped)),
                },
            }
        }
        let time_up = listener.deadline.is_some_and(|d| d <= self.now);
        if time_up && at_frame_boundary(listener) {
            return Err(Verdict::Remove(DisconnectReason::TimeLimit));
        }
        if listener.move_to.is_some() || time_up {
            // Stop at the end of the current chunk, where the move or the cut can happen.
            if let Some(boundary) = ring.chunk_boundary_after(listener.cursor) {
                end = end.min(boundary);
            }
        }
        if end <= listener.cursor {
            return Err(Verdict::Keep);
        }
        Ok(end)
    }

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
        if listener.tls.is_some() {
            return self.serve_tls(listener, ring, title, mount, edge, pass, counters);
        }
        let end = match self.prepare(listener, ring, edge, pass) {
            Ok(end) => end,
            Err(verdict) => return verdict,
        };
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
                // `end` is always a chunk boundary: the live edge, or the boundary a skip or a
                // move stops at.
                listener.took_audio(n, n == bytes.len(), counters);
                Verdict::Keep
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                Verdict::Keep
            }
            Err(_) => Verdict::Remove(DisconnectReason::ClientClosed),
        }
    }
}

/// Set by the first shard that could not set up io_uring, so the fallback is logged once.
static FALLBACK_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The engine for `wanted`: io_uring unless it cannot be set up, then send, saying why once.
fn start_engine(wanted: FanoutEngine) -> Engine {
    if wanted == FanoutEngine::Send {
        return Engine::Send;
    }
    // Ring size and completion mode can be set for measurements; a size the kernel refuses
    // (0) makes setup fail for real, which is how the fallback is tested.
    let entries = std::env::var("CYCAST_URING_ENTRIES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(super::FANOUT_SLICE as u32);
    let taskrun = match std::env::var("CYCAST_URING_TASKRUN").as_deref() {
        Ok("coop") => Taskrun::Coop,
        _ => Taskrun::Defer,
    };
    match SendRing::new(entries, taskrun) {
        Ok(ring) => Engine::Uring(Box::new(ring)),
        Err(e) => {
            if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "fanout.engine = \"io_uring\" is not available ({e}); using \"send\""
                );
            }
            Engine::Send
        }
    }
}

/// One slice of a mount's listeners served through the shard's io_uring.
struct UringSlice<'s> {
    /// The shard's ring.
    ring: &'s mut SendRing,
    /// Limits and the validated copy.
    sender: &'s mut Sender,
    /// The sends of the batch in flight.
    pending: &'s mut Vec<Pending>,
    /// The mount's listeners.
    listeners: &'s mut [Listener],
    /// The mount's ring.
    source: &'s Ring,
    /// The mount's title block.
    title: &'s TitleBlock,
    /// The mount.
    mount: MountId,
    /// The live edge this pass serves up to.
    edge: u64,
    /// Totals of the pass.
    pass: &'s mut Pass,
    /// The mount's counters.
    counters: &'s mut MountCounters,
    /// Listeners of the slice that leave, by index, in no order.
    gone: &'s mut Vec<(usize, Verdict)>,
}

impl UringSlice<'_> {
    /// Serves listeners `[from, stop)`: every listener the shard's copy covers goes into one
    /// batch, handed to the kernel with one system call; the copy is only refilled once the
    /// batch that points into it has completed.
    fn serve(&mut self, from: usize, stop: usize) -> std::io::Result<()> {
        let mut i = from;
        // A listener already prepared whose range the last copy did not cover.
        let mut carried = None;
        while i < stop {
            let end = match carried.take() {
                Some(end) => end,
                None => match self.prepare(i) {
                    Some(end) => end,
                    None => {
                        i += 1;
                        continue;
                    }
                },
            };
            let (cursor, mount) = (self.listeners[i].cursor, self.mount);
            if self
                .sender
                .scratch
                .view(self.source, mount, cursor, end)
                .is_err()
            {
                self.gone
                    .push((i, Verdict::Remove(DisconnectReason::Lapped)));
                i += 1;
                continue;
            }
            self.pending.clear();
            let scratch = &self.sender.scratch;
            let mut batch = self.ring.batch();
            let mut next = Some(end);
            while let Some(end) = next.take() {
                let listener = &self.listeners[i];
                let Some(audio) = scratch.cached(mount, listener.cursor, end) else {
                    carried = Some(end);
                    break;
                };
                match queue(&mut batch, listener, audio, self.title) {
                    Some(mut pending) => {
                        pending.index = i;
                        self.pending.push(pending);
                    }
                    // Full: the next batch starts with this listener.
                    None if batch.is_full() => {
                        carried = Some(end);
                        break;
                    }
                    // Cannot happen (a send never has more parts than a batch takes); the
                    // listener waits for the next chunk rather than stall the pass.
                    None => {}
                }
                i += 1;
                // The next listener that needs a send; it joins the batch if the copy has it.
                while i < stop && !batch.is_full() {
                    let Some(end) = prepare_one(
                        self.sender,
                        &mut self.listeners[i],
                        self.source,
                        self.edge,
                        self.pass,
                        i,
                        self.gone,
                    ) else {
                        i += 1;
                        continue;
                    };
                    if scratch
                        .cached(mount, self.listeners[i].cursor, end)
                        .is_some()
                    {
                        next = Some(end);
                    } else {
                        carried = Some(end);
                    }
                    break;
                }
            }
            let flushed = batch.flush();
            for (op, pending) in self.pending.iter().enumerate() {
                let listener = &mut self.listeners[pending.index];
                let result = self.ring.result(op);
                match take_in(
                    listener,
                    pending,
                    result,
                    self.title,
                    self.pass,
                    self.counters,
                ) {
                    Verdict::Keep => {}
                    verdict => self.gone.push((pending.index, verdict)),
                }
            }
            self.pending.clear();
            flushed?;
        }
        Ok(())
    }

    /// Prepares listener `i`; see [`prepare_one`].
    fn prepare(&mut self, i: usize) -> Option<u64> {
        prepare_one(
            self.sender,
            &mut self.listeners[i],
            self.source,
            self.edge,
            self.pass,
            i,
            self.gone,
        )
    }
}

/// The end of what listener `i` is to be sent, or `None` when it gets nothing this pass (a
/// departure or move is noted in `gone`).
fn prepare_one(
    sender: &Sender,
    listener: &mut Listener,
    source: &Ring,
    edge: u64,
    pass: &mut Pass,
    i: usize,
    gone: &mut Vec<(usize, Verdict)>,
) -> Option<u64> {
    // Served after the batch, with a send each (see `on_publish_slice`).
    if listener.tls.is_some() {
        return None;
    }
    match sender.prepare(listener, source, edge, pass) {
        Ok(end) => Some(end),
        Err(Verdict::Keep) => None,
        Err(verdict) => {
            gone.push((i, verdict));
            None
        }
    }
}

/// Queues one listener's send: codec headers it is owed, then `audio`, with ICY blocks
/// interleaved for a listener that asked for them. Returns what its completion needs (the
/// index is the caller's to fill), or `None` when the batch had no room.
fn queue<'a>(
    batch: &mut Batch<'a>,
    listener: &Listener,
    audio: &'a [u8],
    title: &'a TitleBlock,
) -> Option<Pending> {
    /// Owner slots of a send.
    const BLOCK: usize = 0;
    const HEADERS: usize = 1;
    let fd = listener.socket.as_raw_fd();
    let (headers, sent) = match &listener.headers {
        Some((headers, sent)) => (Some(headers), *sent),
        None => (None, 0),
    };
    let owed = headers.map_or(0, |h| h.bytes.len().saturating_sub(sent));
    let owners = [
        listener
            .icy
            .as_ref()
            .and_then(|icy| icy.partial_block().cloned())
            .map(Owner::Block),
        headers.map(|h| Owner::Headers(h.clone())),
    ];
    // The audio a send carries is the owed headers followed by the ring's bytes; `[from, to)`
    // of it becomes at most two parts.
    let span = move |from: usize, to: usize| {
        let head = (from < owed).then(|| Part::Kept {
            owner: HEADERS,
            range: sent + from..sent + to.min(owed),
        });
        let tail = (to > owed).then(|| Part::Borrowed(&audio[from.max(owed) - owed..to - owed]));
        [head, tail]
    };
    let total = owed + audio.len();
    let plan = match &listener.icy {
        None => {
            batch.push(fd, owners, span(0, total).into_iter().flatten())?;
            None
        }
        Some(icy) => {
            let plan = icy.plan(total, title);
            let parts = plan.pieces().iter().flat_map(|&piece| match piece {
                Piece::Audio { offset, len } => span(offset, offset + len),
                Piece::Partial { from } => [
                    Some(Part::Kept {
                        owner: BLOCK,
                        range: from..icy.partial_block().map_or(from, |b| b.len()),
                    }),
                    None,
                ],
                Piece::Title => [Some(Part::Borrowed(&title.bytes[..])), None],
                Piece::Unchanged => [Some(Part::Borrowed(&super::icy::UNCHANGED[..])), None],
            });
            batch.push(fd, owners, parts.flatten())?;
            Some(plan)
        }
    };
    Some(Pending {
        index: 0,
        headers: owed,
        audio: audio.len(),
        plan,
    })
}

/// Takes in one completed send: the same outcomes as a `send` call in [`Sender::serve`].
fn take_in(
    listener: &mut Listener,
    pending: &Pending,
    result: i32,
    title: &TitleBlock,
    pass: &mut Pass,
    counters: &mut MountCounters,
) -> Verdict {
    if result == -libc::EAGAIN || result == -libc::EINTR {
        return Verdict::Keep;
    }
    let Ok(written) = usize::try_from(result) else {
        return Verdict::Remove(DisconnectReason::ClientClosed);
    };
    pass.sends += 1;
    let carried = match (listener.icy.as_mut(), &pending.plan) {
        (Some(icy), Some(plan)) => icy.commit(plan, written, title),
        _ => written,
    };
    let headers = carried.min(pending.headers);
    if headers > 0 {
        if let Some((_, sent)) = listener.headers.as_mut() {
            *sent += headers;
        }
        if headers == pending.headers {
            listener.headers = None;
        }
    }
    let n = carried - headers;
    pass.bytes += n as u64;
    listener.took_audio(n, n == pending.audio, counters);
    Verdict::Keep
}

impl Scratch {
    /// The bytes `[from, to)` of `mount` if the copy holds them.
    fn cached(&self, mount: MountId, from: u64, to: u64) -> Option<&[u8]> {
        if self.mount != Some(mount) || from < self.start || to > self.end {
            return None;
        }
        let offset = (from - self.start) as usize;
        Some(&self.buf[offset..offset + (to - from) as usize])
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
