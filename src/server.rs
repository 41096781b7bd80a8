//! Starting the server: bind every socket up front (so a taken port is one clear error before
//! anything runs), create the configured mounts, then start the ingest executor and one shard
//! executor per core, each pinned, and wire the ingest core's wake-ups to every shard.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::mount::{MountError, MountTable, StreamInfo};
use crate::observability::stats::ShardStats;
use crate::state::{Reload, Shared, DEFAULT_PASSWORD_WARNING};

/// Wake-ups that may queue per shard before the ingest core stops adding more (a shard that
/// far behind reads to the live edge anyway).
const WAKE_QUEUE: usize = 1024;

/// Operator actions that may queue from one shard to the ingest core.
const CONTROL_QUEUE: usize = 64;

/// How long shutdown may take before the process exits regardless.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    /// The TLS certificate or key could not be loaded.
    #[error("{0}")]
    Tls(crate::config::ConfigError),
    /// A configured mount could not be created.
    #[error("cannot create mount: {0}")]
    Mount(#[from] MountError),
    /// The configured CPU does not exist or is not ours to use.
    #[error("server.ingest_core = {0} is not an online CPU this process may use (have {1:?})")]
    NoSuchCore(usize, Vec<usize>),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The metrics recorder could not be installed.
    #[error("cannot set up metrics: {0}")]
    Metrics(String),
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

/// Runs the server until SIGTERM or SIGINT, then shuts down within a bounded time.
pub fn run(config: Config, reload: Reload) -> Result<(), StartError> {
    // Before anything can announce readiness: a SIGHUP sent right after must not kill us.
    let signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(StartError::Signals)?;
    // Every listener is a descriptor: take all the kernel allows this process.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < 4096 => tracing::warn!("only {limit} file descriptors allowed: raise LimitNOFILE / ulimit -n for more listeners"),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the file descriptor limit: {e}"),
    }
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

    // Certificates first: a bad pair is one clear line before any port is taken.
    let tls = match &config.tls {
        Some(tls) => Some(crate::tls::Certificates::load(tls).map_err(StartError::Tls)?),
        None => None,
    };
    let mut tls_sockets = Vec::new();
    let mut tls_port = config.tls.as_ref().map_or(0, |t| t.port);
    if tls.is_some() {
        for _ in 0..shard_count {
            let socket = bind("HTTPS listeners", SocketAddr::new(host, tls_port), backlog)?;
            tls_port = local_port(&socket);
            tls_sockets.push(Some(socket));
        }
    } else {
        tls_sockets.resize_with(shard_count, || None);
    }

    let tls_source_socket = match (&tls, config.tls.as_ref().and_then(|t| t.source_port)) {
        (Some(_), Some(port)) => Some(bind("TLS sources", SocketAddr::new(host, port), backlog)?),
        _ => None,
    };
    let tls_source_port = tls_source_socket.as_ref().map(local_port);

    let metrics_socket = match config.advanced.metrics_port {
        0 => None,
        port => Some(bind("metrics", SocketAddr::new(host, port), backlog)?),
    };
    let mut metrics_socket = metrics_socket;

    let mounts = MountTable::new(config.ring_bytes());
    let mut writers = Vec::new();
    for name in config.mount_names() {
        let info = StreamInfo {
            content_type: "audio/mpeg".into(),
            ..StreamInfo::default()
        };
        writers.push(mounts.create(&name, info)?.1);
    }

    let io_memory = config.server.io_memory_kib * 1024;
    let ingest_core = config.server.ingest_core;
    let metrics = crate::observability::metrics::install().map_err(StartError::Metrics)?;
    crate::shard::intro::load(&config);
    let shared = Arc::new(Shared {
        metrics,
        shutting_down: AtomicBool::new(false),
        auth_failures: Default::default(),
        mounts,
        shards: (0..shard_count)
            .map(|_| Arc::new(ShardStats::default()))
            .collect(),
        listeners: AtomicU64::new(0),
        next_listener_id: AtomicU64::new(1),
        started: SystemTime::now(),
        listen_port,
        source_port,
        tls,
        tls_port,
        control_plane: crate::api::CONTROL_PLANE,
        config: ArcSwap::from_pointee(config),
    });

    let (senders, receivers): (Vec<_>, Vec<_>) = (0..shard_count)
        .map(|_| shared_channel::new_bounded(WAKE_QUEUE))
        .unzip();
    let (to_ingest, from_shards): (Vec<_>, Vec<_>) = (0..shard_count)
        .map(|_| shared_channel::new_bounded(CONTROL_QUEUE))
        .unzip();
    let mut handles = Vec::with_capacity(shard_count + 1);
    let ingest_shared = shared.clone();
    handles.push(
        LocalExecutorBuilder::new(Placement::Fixed(ingest_core))
            .name("cycast-ingest")
            .io_memory(io_memory)
            .spawn(move || {
                crate::ingest::serve(
                    ingest_shared,
                    source_socket,
                    tls_source_socket,
                    writers,
                    senders,
                    from_shards,
                )
            })
            .map_err(|e| StartError::Executor {
                what: "ingest".into(),
                cpu: ingest_core,
                message: e.to_string(),
            })?,
    );
    let mut layout = Vec::with_capacity(shard_count);
    let shard_channels = receivers.into_iter().zip(to_ingest);
    let sockets = listen_sockets.into_iter().zip(tls_sockets);
    for (id, ((socket, tls_socket), (receiver, to_ingest))) in
        sockets.zip(shard_channels).enumerate()
    {
        let cpu = cpus[id % cpus.len()];
        let shard_shared = shared.clone();
        // The first shard also answers the separate metrics port, if there is one.
        let metrics_socket = metrics_socket.take();
        handles.push(
            LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .name(&format!("cycast-shard{id}"))
                .io_memory(io_memory)
                .spawn(move || {
                    crate::shard::serve(
                        id,
                        shard_shared,
                        socket,
                        tls_socket,
                        metrics_socket,
                        receiver,
                        to_ingest,
                    )
                })
                .map_err(|e| StartError::Executor {
                    what: format!("shard {id}"),
                    cpu,
                    message: e.to_string(),
                })?,
        );
        layout.push(format!("shard{id}@cpu{cpu}"));
    }
    // Before the readiness line, so whoever waits for that line has seen this too.
    if shared.config().default_source_password_exposed() {
        tracing::warn!("{DEFAULT_PASSWORD_WARNING}");
    }
    if shared.tls.is_some() {
        tracing::info!(https = %SocketAddr::new(host, tls_port), "serving HTTPS");
    }
    if let Some(port) = tls_source_port {
        tracing::info!(tls_sources = %SocketAddr::new(host, port), "accepting sources over TLS");
    }
    tracing::info!(
        listeners = %SocketAddr::new(host, listen_port),
        sources = %SocketAddr::new(host, source_port),
        shards = shard_count,
        layout = %format!("ingest@cpu{ingest_core} {}", layout.join(" ")),
        mount = %shared.config().server.mount_point,
        "cycast {} listening", env!("CARGO_PKG_VERSION"),
    );
    wait_for_signals(signals, &shared, reload);
    // Bounded: a core stuck on a peer must not keep the process alive.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for handle in handles {
            let _ = handle.join();
        }
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(SHUTDOWN_GRACE) {
        Ok(()) => tracing::info!("stopped"),
        Err(_) => tracing::warn!("cores did not stop within {SHUTDOWN_GRACE:?}; exiting anyway"),
    }
    Ok(())
}

/// Blocks until SIGTERM or SIGINT; SIGHUP reloads the configuration in between.
fn wait_for_signals(mut signals: Signals, shared: &Shared, reload: Reload) {
    for signal in signals.forever() {
        if signal == SIGHUP {
            crate::reload::apply(shared, &reload);
            continue;
        }
        tracing::info!("shutting down: closing listeners and sources");
        shared.shutting_down.store(true, Ordering::Release);
        return;
    }
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
