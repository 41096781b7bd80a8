//! The ingest core: one executor, pinned, that accepts sources on `source_port`, keeps what is
//! on air for every mount, and is the only writer of the mounts' rings.
//!
//! Data path here: [`source`] reads a source's socket and checks the protocol, [`format`]
//! picks a framer ([`frames`] for MP3, [`adts`] for AAC, [`ogg`] for Ogg) that cuts the bytes
//! into whole audio frames (dropping tags and garbage), [`feed`] gathers frames
//! into frame-aligned chunks, publishes them to the ring and wakes the shards.

pub mod adts;
pub mod feed;
pub mod format;
pub mod frames;
pub mod ogg;
pub mod pacing;
pub mod playlist;
pub mod relay;
pub mod source;
pub mod sync;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{SharedReceiver, SharedSender};
use glommio::timer::sleep;

use crate::control::{Control, IngestMessage, ShardMessage};
use crate::mount::{MountError, MountId, StreamInfo};
use crate::ring::RingWriter;
use crate::server::Shared;
use feed::{MountFeed, ShardWakers};

/// State of the ingest core, shared by its tasks (single-threaded, hence `Rc`/`RefCell`).
pub struct IngestContext {
    /// Configuration, mounts and counters shared with the shards.
    pub shared: Arc<Shared>,
    /// The feed of every mount, indexed by mount id.
    feeds: RefCell<Vec<Rc<RefCell<MountFeed>>>>,
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
        let feeds = writers
            .into_iter()
            .enumerate()
            .map(|(id, writer)| {
                let mount = shared
                    .mounts
                    .get(id)
                    .expect("a writer for every configured mount");
                Rc::new(RefCell::new(Self::make_feed(
                    &shared, mount, writer, &wakers,
                )))
            })
            .collect();
        Self {
            shared,
            feeds: RefCell::new(feeds),
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
        MountFeed::new(
            mount,
            writer,
            cfg.chunk_size,
            Duration::from_millis(cfg.chunk_ms),
            wakers.clone(),
        )
    }

    /// The feed of mount `name`, creating the mount when a source is the first to use it
    /// (as Icecast does).
    pub fn feed_for(&self, name: &str) -> Result<Rc<RefCell<MountFeed>>, MountError> {
        if let Some(mount) = self.shared.mounts.find(name) {
            return Ok(self.feeds.borrow()[mount.id].clone());
        }
        let (mount, writer) = self.shared.mounts.create(name, StreamInfo::default())?;
        let feed = Rc::new(RefCell::new(Self::make_feed(
            &self.shared,
            mount,
            writer,
            &self.wakers,
        )));
        self.feeds.borrow_mut().push(feed.clone());
        Ok(feed)
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

/// Runs the ingest core: accepts sources until the process ends.
pub async fn serve(
    shared: Arc<Shared>,
    socket: socket2::Socket,
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
    let shared = ctx.shared.clone();
    // Returning ends the ingest executor: sources are closed with their tasks.
    futures_lite::future::or(accepting, shared.shutdown_requested()).await;
}
