//! State shared by every core, and the SIGHUP re-read hook: the layer below the executors
//! (`ingest`, `shard`), the HTTP control plane and `reload`, so none of them imports the
//! top-level wiring in `server`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::control::Control;
use crate::http::Request;
use crate::mount::MountTable;
use crate::observability::stats::ShardStats;

/// State every core can read. Written only through atomics and swaps, never locked.
pub struct Shared {
    /// The configuration in force; SIGHUP swaps in a new one (see `reload`).
    pub config: ArcSwap<Config>,
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
    /// Renders Prometheus scrapes.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Set on SIGTERM/SIGINT: every core stops accepting and closes its connections.
    pub shutting_down: AtomicBool,
    /// Failed logins on either port, counted server-wide to slow down guessing.
    pub auth_failures: crate::auth::FailureTracker,
    /// The HTTPS certificates, when a `tls` block is configured (SIGHUP reloads them).
    pub tls: Option<crate::tls::Certificates>,
    /// The HTTPS port actually bound, 0 without TLS.
    pub tls_port: u16,
    /// The HTTP control plane's entry points, given by the wiring (`server`) so the ports
    /// that answer its requests need not import the layer above them.
    pub control_plane: ControlPlane,
}

/// Answers one request of the HTTP control plane: the whole response, or `None` when the
/// path is not the handler's.
pub type Handler = fn(&Shared, &Request, &dyn Control) -> Option<Vec<u8>>;

/// What the listen port and the source port hand to the control plane above them.
#[derive(Clone, Copy)]
pub struct ControlPlane {
    /// Pages, status documents and the admin API, as served on the listen port.
    pub pages: Handler,
    /// The admin API alone: the source port answers it for DJ software's title updates.
    pub admin: Handler,
}

impl ControlPlane {
    /// No control plane: every request is left to the port's own answers (unit tests).
    pub const NONE: ControlPlane = ControlPlane {
        pages: |_, _, _| None,
        admin: |_, _, _| None,
    };
}

impl Shared {
    /// The configuration in force now. Callers hold it for one request or pass, so a reload
    /// applies from the next one.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Resolves when shutdown has been requested. Checked every 100 ms: this is housekeeping,
    /// not the data path, and it keeps signal handling on the main thread.
    pub async fn shutdown_requested(&self) {
        while !self.shutting_down.load(Ordering::Acquire) {
            glommio::timer::sleep(SHUTDOWN_POLL).await;
        }
    }
}

/// Said in the log at start and on the status pages while the built-in source password is in
/// force beyond loopback. A warning, not a refusal: `make run` and a first `cycast` on a LAN
/// must work out of the box, as Icecast's do.
pub const DEFAULT_PASSWORD_WARNING: &str = "the source password is the built-in default and the server listens beyond loopback: anyone who can reach the source port can take the stream over; set server.source_password or CYCAST_SOURCE_PASSWORD";

/// How often executors look at the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Re-reads the configuration for SIGHUP (the file named on the command line, with its
/// overrides); `None` when there is no file to re-read.
pub type Reload = Option<Box<dyn Fn() -> Result<Config, crate::config::ConfigError>>>;
