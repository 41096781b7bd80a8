//! The ingest core: one executor, pinned, that accepts sources on `source_port`, keeps what is
//! on air for every mount, and is the only writer of the mounts' rings.
//!
//! Data path here: [`source`] reads a source's socket and checks the protocol, [`frames`]
//! cuts the bytes into whole audio frames (dropping tags and garbage), [`feed`] gathers frames
//! into frame-aligned chunks, publishes them to the ring and wakes the shards.

pub mod feed;
pub mod frames;
pub mod source;

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::shared_channel::SharedSender;
use glommio::timer::sleep;

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
        }
    }

    fn make_feed(
        shared: &Shared,
        mount: Arc<crate::mount::Mount>,
        writer: RingWriter,
        wakers: &Rc<ShardWakers>,
    ) -> MountFeed {
        let cfg = &shared.config.broadcaster;
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
    }
}

/// Runs the ingest core: accepts sources until the process ends.
pub async fn serve(
    shared: Arc<Shared>,
    socket: socket2::Socket,
    writers: Vec<RingWriter>,
    senders: Vec<SharedSender<MountId>>,
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
    let listener = crate::sys::glommio_listener(socket);
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(source::handle(ctx.clone(), stream)).detach();
            }
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning on accept.
                tracing::warn!("source accept failed: {e}; retrying in 100 ms");
                sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
