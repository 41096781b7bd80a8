//! Starting the server: bind every socket up front (so a taken port is one clear error before
//! anything runs), create the configured mounts, then start the ingest executor and one shard
//! executor per core, each pinned, and wire the ingest core's wake-ups to every shard.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::SystemTime;

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::mount::{MountError, MountTable, StreamInfo};
use crate::observability::stats::ShardStats;

/// Wake-ups that may queue per shard before the ingest core stops adding more (a shard that
/// far behind reads to the live edge anyway).
const WAKE_QUEUE: usize = 1024;

/// State every core can read. Written only through atomics and swaps, never locked.
pub struct Shared {
    /// The configuration in force.
    pub config: Config,
    /// All mounts and their rings.
    pub mounts: MountTable,
    /// Counters of each shard, indexed by shard id.
    pub shards: Vec<Arc<ShardStats>>,
    /// Listeners on the whole server, for `max_listeners` (touched on join and leave only).
    pub listeners: AtomicU64,
    /// Next listener id (unique server-wide, for the admin API).
    pub next_listener_id: AtomicU64,
    /// When the server started, for uptime.
    pub started: SystemTime,
    /// The listen port actually bound (differs from the config when it asked for port 0).
    pub listen_port: u16,
    /// The source port actually bound.
    pub source_port: u16,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A socket could not be set up.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// Which port: sources or listeners.
        what: &'static str,
        /// The address tried.
        addr: SocketAddr,
        /// The system error.
        source: std::io::Error,
    },
    /// A configured mount could not be created.
    #[error("cannot create mount: {0}")]
    Mount(#[from] MountError),
    /// The configured CPU does not exist or is not ours to use.
    #[error("server.ingest_core = {0} is not an online CPU this process may use (have {1:?})")]
    NoSuchCore(usize, Vec<usize>),
    /// An executor thread could not start.
    #[error("cannot start {what} executor on CPU {cpu}: {message}")]
    Executor {
        /// Ingest or shard N.
        what: String,
        /// The CPU it was pinned to.
        cpu: usize,
        /// glommio's reason.
        message: String,
    },
}

/// Runs the server until the process is stopped.
pub fn run(config: Config) -> Result<(), StartError> {
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let cpus = if cpus.is_empty() { vec![0] } else { cpus };
    if !cpus.contains(&config.server.ingest_core) {
        return Err(StartError::NoSuchCore(config.server.ingest_core, cpus));
    }
    let shard_count = if config.server.shards == 0 {
        cpus.len()
    } else {
        config.server.shards
    };
    let host: IpAddr = config.server.host.parse().expect("validated host");
    let backlog = config.server.listen_backlog as i32;

    let source_socket = bind(
        "sources",
        SocketAddr::new(host, config.server.source_port),
        backlog,
    )?;
    let source_port = local_port(&source_socket);
    let mut listen_sockets = Vec::with_capacity(shard_count);
    let mut listen_port = config.server.listen_port;
    for _ in 0..shard_count {
        let socket = bind("listeners", SocketAddr::new(host, listen_port), backlog)?;
        listen_port = local_port(&socket);
        listen_sockets.push(socket);
    }

    let mounts = MountTable::new(config.ring_bytes());
    let default_info = StreamInfo {
        content_type: "audio/mpeg".into(),
        ..StreamInfo::default()
    };
    let (_, writer) = mounts.create(&config.server.mount_point, default_info)?;
    let writers = vec![writer];

    let io_memory = config.server.io_memory_kib * 1024;
    let ingest_core = config.server.ingest_core;
    let shared = Arc::new(Shared {
        mounts,
        shards: (0..shard_count)
            .map(|_| Arc::new(ShardStats::default()))
            .collect(),
        listeners: AtomicU64::new(0),
        next_listener_id: AtomicU64::new(1),
        started: SystemTime::now(),
        listen_port,
        source_port,
        config,
    });

    let (senders, receivers): (Vec<_>, Vec<_>) = (0..shard_count)
        .map(|_| shared_channel::new_bounded(WAKE_QUEUE))
        .unzip();
    let mut handles = Vec::with_capacity(shard_count + 1);
    let ingest_shared = shared.clone();
    handles.push(
        LocalExecutorBuilder::new(Placement::Fixed(ingest_core))
            .name("cycast-ingest")
            .io_memory(io_memory)
            .spawn(move || crate::ingest::serve(ingest_shared, source_socket, writers, senders))
            .map_err(|e| StartError::Executor {
                what: "ingest".into(),
                cpu: ingest_core,
                message: e.to_string(),
            })?,
    );
    let mut layout = Vec::with_capacity(shard_count);
    for (id, (socket, receiver)) in listen_sockets.into_iter().zip(receivers).enumerate() {
        let cpu = cpus[id % cpus.len()];
        let shard_shared = shared.clone();
        handles.push(
            LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .name(&format!("cycast-shard{id}"))
                .io_memory(io_memory)
                .spawn(move || crate::shard::serve(id, shard_shared, socket, receiver))
                .map_err(|e| StartError::Executor {
                    what: format!("shard {id}"),
                    cpu,
                    message: e.to_string(),
                })?,
        );
        layout.push(format!("shard{id}@cpu{cpu}"));
    }
    tracing::info!(
        listeners = %SocketAddr::new(host, listen_port),
        sources = %SocketAddr::new(host, source_port),
        shards = shard_count,
        layout = %format!("ingest@cpu{ingest_core} {}", layout.join(" ")),
        mount = %shared.config.server.mount_point,
        "cycast {} listening", env!("CARGO_PKG_VERSION"),
    );
    for handle in handles {
        let _ = handle.join();
    }
    Ok(())
}

/// A listening TCP socket with SO_REUSEPORT (so every shard can bind the same port) and the
/// configured backlog (join storms must not queue in SYN retries).
fn bind(what: &'static str, addr: SocketAddr, backlog: i32) -> Result<Socket, StartError> {
    let fail = |source| StartError::Bind { what, addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_reuse_port(true).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(backlog).map_err(fail)?;
    Ok(socket)
}

fn local_port(socket: &Socket) -> u16 {
    socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .unwrap_or(0)
}
