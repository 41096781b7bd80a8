//! A shard: one executor, pinned to a core, that owns a slice of the listeners. Every shard
//! binds the listen port with SO_REUSEPORT, so the kernel spreads new connections across
//! shards and no lock is shared between them.
//!
//! [`listener`] answers a connection's request (the stream, status pages, admin API); a
//! listener of a mount with an `auth` block waits for its verdict ([`auth`]); one that gets
//! the stream is handed to [`fanout`], which feeds it from the ring whenever
//! the ingest core wakes this shard ([`icy`] interleaves metadata for players that ask).
//! A listener is counted by the [`admission::Admission`] it holds, from its admission until it
//! is dropped, so no departure path can forget the count. [`hls`] serves playlists and
//! segments, [`intro`] a mount's intro, [`redirect`] the edges of a full mount, all through
//! the plain or TLS connection [`crate::tls::Conn`].

pub mod admission;
pub mod auth;
pub mod fanout;
pub mod hls;
pub mod icy;
pub mod intro;
pub mod listener;
pub mod redirect;
#[allow(unsafe_code)]
pub mod sys;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use glommio::timer::sleep;
use glommio::{Latency, Shares};

use crate::control::{Control, IngestMessage, ShardMessage};
use crate::mount::MountId;
use crate::observability::access_log::AccessLog;
use crate::observability::metrics;
use crate::observability::stats::ShardStats;
use crate::state::Shared;
use fanout::Fanout;

/// How soon a waiting join must get the core during a fan-out pass.
const JOIN_LATENCY: Duration = Duration::from_millis(5);

/// Listeners served between chances to yield during a fan-out pass.
pub(crate) const FANOUT_SLICE: usize = 256;

/// How often a shard republishes its listener list and flushes its counters to metrics.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

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
    /// Operator actions go to the ingest core, which relays them to every shard.
    to_ingest: ConnectedSender<IngestMessage>,
    /// Where finished requests and listeners are logged, when the access log is on.
    pub access_log: Option<Rc<AccessLog>>,
    /// HLS players seen lately on this shard.
    pub hls_sessions: RefCell<hls::Sessions>,
    /// Playlists and newest segments this shard made once for all their requests.
    pub hls_cache: RefCell<hls::Cache>,
}

impl Control for ShardContext {
    fn kick(&self, id: u64) {
        self.send(IngestMessage::Broadcast(ShardMessage::Kick(id)));
    }

    fn kill_source(&self, mount: MountId) {
        self.send(IngestMessage::KillSource(mount));
    }

    fn move_clients(&self, from: MountId, to: MountId) {
        self.send(IngestMessage::Broadcast(ShardMessage::Move { from, to }));
    }

    fn skip(&self, mount: MountId) {
        self.send(IngestMessage::Skip(mount));
    }
}

impl ShardContext {
    fn send(&self, message: IngestMessage) {
        if self.to_ingest.try_send(message).is_err() {
            tracing::warn!(
                shard = self.id,
                ?message,
                "control queue to the ingest core is full; action dropped"
            );
        }
    }

    async fn on_message(&self, message: ShardMessage) {
        match message {
            ShardMessage::Published(mount) => {
                // Slices with a chance to yield between them: accepting joins must not wait
                // for a pass over thousands of listeners.
                let mut next = Some(0);
                while let Some(from) = next {
                    next = self
                        .fanout
                        .borrow_mut()
                        .on_publish_slice(mount, from, FANOUT_SLICE);
                    if next.is_some() {
                        glommio::yield_if_needed().await;
                    }
                }
            }
            ShardMessage::Kick(id) => {
                if self.fanout.borrow_mut().kick(id) {
                    tracing::info!(shard = self.id, id, "listener kicked");
                }
            }
            ShardMessage::Move { from, to } => self.fanout.borrow_mut().move_all(from, to),
        }
    }
}

/// Runs one shard: wakes on messages from the ingest core and accepts listeners until the
/// process ends.
pub async fn serve(
    id: usize,
    shared: Arc<Shared>,
    socket: socket2::Socket,
    tls_socket: Option<socket2::Socket>,
    metrics_socket: Option<socket2::Socket>,
    wake: SharedReceiver<ShardMessage>,
    to_ingest: SharedSender<IngestMessage>,
) {
    let stats = shared.shards[id].clone();
    let listener = crate::sys::glommio_listener(socket);
    let wake = wake.connect().await;
    let to_ingest = to_ingest.connect().await;
    let access_log = match AccessLog::open(&shared.config().advanced.access_log) {
        Ok(log) => log.map(Rc::new),
        Err(e) => {
            tracing::error!(
                shard = id,
                "cannot open the access log: {e}; continuing without it"
            );
            None
        }
    };
    let ctx = Rc::new(ShardContext {
        id,
        access_log: access_log.clone(),
        fanout: RefCell::new(Fanout::new(shared.clone(), stats.clone(), access_log)),
        shared,
        stats,
        to_ingest,
        hls_sessions: RefCell::default(),
        hls_cache: RefCell::default(),
    });
    // Joins are latency-sensitive, fan-out passes are throughput work: separate task queues let
    // the scheduler preempt a long pass (at its slice boundaries) to accept and answer joins.
    let executor = glommio::executor();
    let joins =
        executor.create_task_queue(Shares::default(), Latency::Matters(JOIN_LATENCY), "joins");
    let fanout_queue =
        executor.create_task_queue(Shares::default(), Latency::NotImportant, "fanout");
    let wake_ctx = ctx.clone();
    let wake_task = async move {
        while let Some(message) = wake.recv().await {
            wake_ctx.on_message(message).await;
        }
    };
    glommio::spawn_local_into(wake_task, fanout_queue)
        .expect("fanout queue exists")
        .detach();
    let flush_ctx = ctx.clone();
    glommio::spawn_local(async move {
        loop {
            let (listeners, counters, submits) = {
                let mut fanout = flush_ctx.fanout.borrow_mut();
                fanout.apply_config(&flush_ctx.shared.config());
                fanout.reap_idle();
                let taken = (
                    fanout.snapshot(),
                    fanout.take_counters(),
                    fanout.uring_submits(),
                );
                fanout.forget_removed();
                taken
            };
            metrics::flush_shard(flush_ctx.id, &counters, &listeners);
            metrics::flush_engine(flush_ctx.id, submits);
            hls::flush(&flush_ctx);
            if let (0, Some(tls)) = (flush_ctx.id, &flush_ctx.shared.tls) {
                ::metrics::gauge!("cycast_tls_certificate_expiry_seconds")
                    .set(tls.expires_in() as f64);
            }
            flush_ctx.stats.snapshot.store(Arc::new(listeners));
            sleep(FLUSH_INTERVAL).await;
        }
    })
    .detach();
    if let Some(socket) = metrics_socket {
        glommio::spawn_local(serve_metrics(ctx.clone(), socket)).detach();
    }
    let accept_ctx = ctx.clone();
    let accepting = async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    glommio::spawn_local(listener::handle(accept_ctx.clone(), stream)).detach();
                }
                Err(e) => {
                    // Out of descriptors: keep serving the listeners we have and try again
                    // shortly instead of spinning on a failing accept.
                    tracing::warn!(shard = id, "accept failed: {e}; retrying in 100 ms");
                    sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    let accept_task = glommio::spawn_local_into(accepting, joins).expect("joins queue exists");
    let tls_task = tls_socket.map(|socket| {
        let tls_listener = crate::sys::glommio_listener(socket);
        let tls_ctx = ctx.clone();
        let accepting = async move {
            loop {
                match tls_listener.accept().await {
                    Ok(stream) => {
                        glommio::spawn_local(listener::handle_tls(tls_ctx.clone(), stream))
                            .detach();
                    }
                    Err(e) => {
                        tracing::warn!(shard = id, "accept failed: {e}; retrying in 100 ms");
                        sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        };
        glommio::spawn_local_into(accepting, joins).expect("joins queue exists")
    });
    ctx.shared.shutdown_requested().await;
    drop(accept_task);
    drop(tls_task);
    // Returning ends this executor; the listen socket closes with it.
    let closed = ctx.fanout.borrow_mut().close_all();
    tracing::debug!(shard = id, listeners = closed, "shard stopped");
}

/// The separate metrics port: only the scrape, so the public port need not expose it.
async fn serve_metrics(ctx: Rc<ShardContext>, socket: socket2::Socket) {
    let listener = crate::sys::glommio_listener(socket);
    loop {
        let Ok(mut stream) = listener.accept().await else {
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            use futures_lite::AsyncWriteExt;
            let cfg = ctx.shared.config();
            let Some(request) = crate::http::read_or_reject(&mut stream, &cfg).await else {
                return;
            };
            let answer = if request.path == "/"
                || request.path == cfg.advanced.metrics_path
                || request.path == "/metrics"
            {
                metrics::scrape(&ctx.shared.metrics)
            } else {
                crate::http::response(404, "Not Found", &[], "Only the metrics are served here\n")
            };
            let _ = stream.write_all(&answer).await;
        })
        .detach();
    }
}
