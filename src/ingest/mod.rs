//! The ingest core: one executor, pinned, that accepts sources on `source_port` (and over TLS
//! on `tls.source_port`), keeps what is on air for every mount, and is the only writer of the
//! mounts' rings.
//!
//! Data path here: [`source`] reads a source's socket and checks the protocol, [`format`]
//! picks a framer ([`mp3`] for MP3, [`adts`] for AAC, [`ogg`] for Ogg) that cuts the bytes
//! into whole audio frames (dropping tags and garbage; [`lockon`] holds the frame lock-on and
//! input buffer they share), [`feed`] gathers frames into frame-aligned chunks, publishes them
//! to the ring and wakes the shards. [`silence`] decodes live MP3 (the only `unsafe` here is
//! minimp3's decoder, in [`sys`]) to take a silent source off the air.

pub mod adts;
pub mod feed;
pub mod format;
pub mod id3;
pub mod lockon;
pub mod mp3;
pub mod ogg;
pub mod pacing;
pub mod playlist;
pub mod record;
pub mod relay;
pub mod silence;
pub mod source;
#[allow(unsafe_code)]
pub mod sys;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{SharedReceiver, SharedSender};
use glommio::timer::sleep;

use crate::control::{Control, IngestMessage, ShardMessage};
use crate::mount::{MountError, MountId, StreamInfo};
use crate::ring::RingWriter;
use crate::state::Shared;
use feed::{MountFeed, ShardWakers};

/// How often the ingest core looks for source-created mounts to remove.
const UNUSED_MOUNT_CHECK: Duration = Duration::from_millis(250);

/// State of the ingest core, shared by its tasks (single-threaded, hence `Rc`/`RefCell`).
pub struct IngestContext {
    /// Configuration, mounts and counters shared with the shards.
    pub shared: Arc<Shared>,
    /// The feed of every mount, by mount id.
    feeds: RefCell<HashMap<MountId, Rc<RefCell<MountFeed>>>>,
    /// Source-created mounts with neither source nor listener, and since when.
    unused_since: RefCell<HashMap<MountId, Instant>>,
    /// Mounts a live source holds right now; a second source gets 403.
    live: RefCell<HashSet<MountId>>,
    /// Wakes shards after a publish.
    wakers: Rc<ShardWakers>,
    /// Per mount with a playlist: wakes it when the live source lets go of the mount.
    on_release: RefCell<HashMap<MountId, LocalSender<()>>>,
    /// Per mount with a live source: tells the source task to disconnect (`killsource`).
    kill_switches: RefCell<HashMap<MountId, LocalSender<()>>>,
    /// Per mount with a playlist: tells it to end the current track (`skip`).
    skip_switches: RefCell<HashMap<MountId, LocalSender<()>>>,
}

impl IngestContext {
    fn new(shared: Arc<Shared>, writers: Vec<RingWriter>, wakers: ShardWakers) -> Self {
        let wakers = Rc::new(wakers);
        // The configured mounts, created in this order before the cores started.
        let feeds = shared
            .mounts
            .all()
            .iter()
            .zip(writers)
            .map(|(mount, writer)| {
                let feed = Self::make_feed(&shared, mount.clone(), writer, &wakers);
                (mount.id, Rc::new(RefCell::new(feed)))
            })
            .collect();
        Self {
            shared,
            feeds: RefCell::new(feeds),
            unused_since: RefCell::new(HashMap::new()),
            live: RefCell::new(HashSet::new()),
            wakers,
            on_release: RefCell::new(HashMap::new()),
            kill_switches: RefCell::new(HashMap::new()),
            skip_switches: RefCell::new(HashMap::new()),
        }
    }

    fn make_feed(
        shared: &Shared,
        mount: Arc<crate::mount::Mount>,
        writer: RingWriter,
        wakers: &Rc<ShardWakers>,
    ) -> MountFeed {
        let config = shared.config();
        let cfg = &config.broadcaster;
        let recording = config.mount.get(&mount.name).and_then(|m| {
            let pattern = m.dump_file.as_deref()?;
            let rotate = (m.dump_rotate > 0.0).then(|| from_minutes(m.dump_rotate));
            match record::Recorder::start(&mount.name, pattern, rotate) {
                Ok(recorder) => Some(recorder),
                Err(e) => {
                    let name = crate::logging::escape(&mount.name);
                    tracing::error!(mount = %name, "cannot start recording: {e}");
                    None
                }
            }
        });
        let hls = config.hls_for(&mount.name);
        let mut feed = MountFeed::new(
            mount,
            writer,
            cfg.chunk_size,
            Duration::from_millis(cfg.chunk_ms),
            wakers.clone(),
            hls,
        );
        if let Some(recorder) = recording {
            feed.record_to(recorder);
        }
        feed
    }

    /// The feed of mount `name`, creating the mount when a source is the first to use it
    /// (as Icecast does).
    pub fn feed_for(&self, name: &str) -> Result<Rc<RefCell<MountFeed>>, MountError> {
        if let Some(feed) = self
            .shared
            .mounts
            .find(name)
            .and_then(|mount| self.feeds.borrow().get(&mount.id).cloned())
        {
            return Ok(feed);
        }
        let (mount, writer) = self.shared.mounts.create(name, StreamInfo::default())?;
        let id = mount.id;
        let feed = Rc::new(RefCell::new(Self::make_feed(
            &self.shared,
            mount,
            writer,
            &self.wakers,
        )));
        self.feeds.borrow_mut().insert(id, feed.clone());
        Ok(feed)
    }

    /// Removes the mounts sources created (not in the configuration) that have had neither a
    /// source nor a listener for `advanced.source_mount_grace`, as Icecast drops them. Their
    /// feed and ring writer go here; shards drop their references once they notice, and the
    /// ring is unmapped with the last one.
    fn remove_unused_mounts(&self) {
        let config = self.shared.config();
        let grace = config.source_mount_grace();
        let now = Instant::now();
        let mut unused_since = self.unused_since.borrow_mut();
        for mount in self.shared.mounts.all().iter() {
            let unused = !config.is_configured(&mount.name)
                && !self.is_live(mount.id)
                && mount.listeners.load(std::sync::atomic::Ordering::SeqCst) == 0;
            if !unused {
                unused_since.remove(&mount.id);
                continue;
            }
            let since = *unused_since.entry(mount.id).or_insert(now);
            if now.duration_since(since) < grace {
                continue;
            }
            // A listener may have joined since the count was read: then it stays.
            if !self.shared.mounts.retire(mount) {
                unused_since.remove(&mount.id);
                continue;
            }
            unused_since.remove(&mount.id);
            self.feeds.borrow_mut().remove(&mount.id);
            self.kill_switches.borrow_mut().remove(&mount.id);
            self.skip_switches.borrow_mut().remove(&mount.id);
            self.on_release.borrow_mut().remove(&mount.id);
            // Its series show it off the air rather than as last seen.
            crate::observability::metrics::flush_ingest(std::slice::from_ref(mount));
            tracing::info!(mount = %mount.name, "mount removed: its source left and nobody listens");
        }
    }

    /// Marks `mount` as held by a live source; false if another source holds it.
    pub fn claim(&self, mount: MountId) -> bool {
        self.live.borrow_mut().insert(mount)
    }

    /// Releases a mount claimed with [`claim`](Self::claim).
    pub fn release(&self, mount: MountId) {
        self.live.borrow_mut().remove(&mount);
        if let Some(wake) = self.on_release.borrow().get(&mount) {
            // Full means a wake-up is already queued; one is enough.
            let _ = wake.try_send(());
        }
    }

    /// Whether a live source holds `mount` right now.
    pub fn is_live(&self, mount: MountId) -> bool {
        self.live.borrow().contains(&mount)
    }

    /// A receiver that gets a message when an operator kills `mount`'s live source.
    pub fn watch_kill(&self, mount: MountId) -> LocalReceiver<()> {
        let (tx, rx) = local_channel::new_bounded(1);
        self.kill_switches.borrow_mut().insert(mount, tx);
        rx
    }

    /// A receiver that gets a message when an operator skips `mount`'s playlist track.
    pub fn watch_skip(&self, mount: MountId) -> LocalReceiver<()> {
        let (tx, rx) = local_channel::new_bounded(1);
        self.skip_switches.borrow_mut().insert(mount, tx);
        rx
    }

    /// A receiver that gets a message each time `mount` is released.
    pub fn watch_release(&self, mount: MountId) -> LocalReceiver<()> {
        let (tx, rx) = local_channel::new_bounded(1);
        self.on_release.borrow_mut().insert(mount, tx);
        rx
    }
}

impl IngestContext {
    /// Carries out an operator action a shard passed on.
    fn on_message(&self, message: IngestMessage) {
        match message {
            IngestMessage::Broadcast(message) => self.wakers.broadcast(message),
            IngestMessage::KillSource(mount) => self.kill_source(mount),
            IngestMessage::Skip(mount) => self.skip(mount),
        }
    }
}

impl Control for IngestContext {
    fn kick(&self, id: u64) {
        self.wakers.broadcast(ShardMessage::Kick(id));
    }

    fn kill_source(&self, mount: MountId) {
        if let Some(kill) = self.kill_switches.borrow().get(&mount) {
            let _ = kill.try_send(());
        }
    }

    fn move_clients(&self, from: MountId, to: MountId) {
        self.wakers.broadcast(ShardMessage::Move { from, to });
    }

    fn skip(&self, mount: MountId) {
        if let Some(skip) = self.skip_switches.borrow().get(&mount) {
            let _ = skip.try_send(());
        }
    }
}

/// `minutes` (finite and positive, as validated) as a duration.
fn from_minutes(minutes: f64) -> Duration {
    Duration::try_from_secs_f64(minutes * 60.0).unwrap_or(Duration::MAX)
}

/// Runs the ingest core: accepts sources until the process ends.
pub async fn serve(
    shared: Arc<Shared>,
    socket: socket2::Socket,
    tls_socket: Option<socket2::Socket>,
    writers: Vec<RingWriter>,
    senders: Vec<SharedSender<ShardMessage>>,
    from_shards: Vec<SharedReceiver<IngestMessage>>,
) {
    let mut connected = Vec::with_capacity(senders.len());
    for sender in senders {
        connected.push(sender.connect().await);
    }
    let ctx = Rc::new(IngestContext::new(
        shared,
        writers,
        ShardWakers::new(connected),
    ));
    for receiver in from_shards {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            let receiver = receiver.connect().await;
            while let Some(message) = receiver.recv().await {
                ctx.on_message(message);
            }
        })
        .detach();
    }
    let metrics_ctx = ctx.clone();
    glommio::spawn_local(async move {
        loop {
            crate::observability::metrics::flush_ingest(&metrics_ctx.shared.mounts.all());
            sleep(Duration::from_secs(1)).await;
        }
    })
    .detach();
    let housekeeping_ctx = ctx.clone();
    glommio::spawn_local(async move {
        loop {
            housekeeping_ctx.remove_unused_mounts();
            sleep(UNUSED_MOUNT_CHECK).await;
        }
    })
    .detach();
    // Configured mounts fall back to the playlist whenever no source holds them.
    for mount in ctx.shared.mounts.all().iter() {
        if let Some(relay) = ctx.shared.config().relay.get(&mount.name).cloned() {
            glommio::spawn_local(relay::run(ctx.clone(), mount.clone(), relay)).detach();
        }
        if let Some(playlist) = ctx.shared.config().playlist_for(&mount.name) {
            glommio::spawn_local(playlist::run(ctx.clone(), mount.clone(), playlist)).detach();
        }
    }
    let listener = crate::sys::glommio_listener(socket);
    let accept_ctx = ctx.clone();
    let accepting = async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    glommio::spawn_local(source::handle(accept_ctx.clone(), stream)).detach();
                }
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning on accept.
                    tracing::warn!("source accept failed: {e}; retrying in 100 ms");
                    sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    let tls_ctx = ctx.clone();
    let accepting_tls = async move {
        let Some(socket) = tls_socket else {
            return futures_lite::future::pending().await;
        };
        let listener = crate::sys::glommio_listener(socket);
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    glommio::spawn_local(source::handle_tls(tls_ctx.clone(), stream)).detach();
                }
                Err(e) => {
                    tracing::warn!("TLS source accept failed: {e}; retrying in 100 ms");
                    sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    let shared = ctx.shared.clone();
    // Returning ends the ingest executor: sources are closed with their tasks.
    futures_lite::future::or(
        futures_lite::future::or(accepting, accepting_tls),
        shared.shutdown_requested(),
    )
    .await;
}
