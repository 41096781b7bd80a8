//! A shard: one executor, pinned to a core, that owns a slice of the listeners. Every shard
//! binds the listen port with SO_REUSEPORT, so the kernel spreads new connections across
//! shards and no lock is shared between them.
//!
//! [`listener`] answers a connection's request (the stream, status pages, CORS); a listener
//! that gets the stream is handed to [`fanout`], which feeds it from the ring whenever the
//! ingest core wakes this shard.

pub mod fanout;
pub mod listener;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::shared_channel::SharedReceiver;
use glommio::timer::sleep;

use crate::mount::MountId;
use crate::observability::stats::ShardStats;
use crate::server::Shared;
use fanout::Fanout;

/// How often a shard republishes its listener list for status pages.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// State of one shard, shared by its tasks (single-threaded, hence `Rc`/`RefCell`).
pub struct ShardContext {
    /// Index of this shard, for stats labels.
    pub id: usize,
    /// Configuration, mounts and counters shared with the other cores.
    pub shared: Arc<Shared>,
    /// This shard's listeners.
    pub fanout: RefCell<Fanout>,
    /// This shard's counters (also reachable through `shared.shards[id]`).
    pub stats: Arc<ShardStats>,
}

/// Runs one shard: wakes on publishes and accepts listeners until the process ends.
pub async fn serve(
    id: usize,
    shared: Arc<Shared>,
    socket: socket2::Socket,
    wake: SharedReceiver<MountId>,
) {
    let stats = shared.shards[id].clone();
    let ctx = Rc::new(ShardContext {
        id,
        fanout: RefCell::new(Fanout::new(shared.clone(), stats.clone())),
        shared,
        stats,
    });
    let listener = crate::sys::glommio_listener(socket);
    let wake = wake.connect().await;
    let fanout_ctx = ctx.clone();
    glommio::spawn_local(async move {
        while let Some(mount) = wake.recv().await {
            fanout_ctx.fanout.borrow_mut().on_publish(mount);
        }
    })
    .detach();
    let snapshot_ctx = ctx.clone();
    glommio::spawn_local(async move {
        loop {
            let listeners = snapshot_ctx.fanout.borrow().snapshot();
            snapshot_ctx.stats.snapshot.store(Arc::new(listeners));
            sleep(SNAPSHOT_INTERVAL).await;
        }
    })
    .detach();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(listener::handle(ctx.clone(), stream)).detach();
            }
            Err(e) => {
                // Out of descriptors: keep serving the listeners we have and try again shortly
                // instead of spinning on a failing accept.
                tracing::warn!(shard = id, "accept failed: {e}; retrying in 100 ms");
                sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
