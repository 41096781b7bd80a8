//! Server configuration: HCL file format, defaults, validation.
//!
//! The file format is a superset of the original Cycast `config.hcl`: every key the
//! original accepted still loads, so an existing file keeps working unchanged.
//!
//! By job: this file holds the schema, its defaults and the lookups the server uses;
//! [`eval`] turns HCL text into values and locates errors, `validate` checks values
//! deserialization cannot, and `print` writes the redacted effective config.

mod auth;
mod eval;
mod print;
mod validate;

pub use validate::{check_mount_name, MountNameRule};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::IntoDeserializer;
use serde::{Deserialize, Serialize};

use eval::{evaluate, one_line, Where};
pub mod hls;
pub mod silence;
pub mod tls;
pub use auth::{redact_url, AuthConfig, OnError};
pub use silence::{SilenceConfig, SilenceSettings};
pub use tls::TlsConfig;

/// The shipped default configuration, embedded so the server runs without a file.
pub const DEFAULT_CONFIG_HCL: &str = include_str!("../../config.hcl");

/// The built-in source password. Everybody knows it, so it is only safe on loopback.
pub const DEFAULT_SOURCE_PASSWORD: &str = "hackme";

const MIB: usize = 1024 * 1024;

/// Complete server configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Network endpoints, credentials and executor layout.
    pub server: ServerConfig,
    /// Per-mount ring buffer sizing.
    pub buffer: BufferConfig,
    /// Per-listener limits and slow-listener handling.
    pub limits: LimitsConfig,
    /// How source audio is cut into chunks for listeners.
    pub broadcaster: BroadcasterConfig,
    /// How shards send to their listeners.
    pub fanout: FanoutConfig,
    /// Fallback playlist played while no source is connected.
    pub playlist: PlaylistConfig,
    /// Station identity and ICY metadata settings.
    pub metadata: MetadataConfig,
    /// Miscellaneous settings kept from the original layout.
    pub advanced: AdvancedConfig,
    /// HLS output of MP3 and AAC mounts.
    pub hls: crate::config::hls::HlsConfig,
    /// Dead-air fallback defaults: when a silent live source counts as gone.
    pub silence: SilenceConfig,
    /// Extra mounts and per-mount settings, `mount "/name" { … }`; `server.mount_point` stays
    /// the default mount of old configs.
    pub mount: BTreeMap<String, MountConfig>,
    /// Mounts fed by pulling another server's stream, `relay "/local" { url = … }`.
    pub relay: BTreeMap<String, RelayConfig>,
    /// HTTPS port and its certificate; absent, only plain HTTP is served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Listener authentication by URL for every mount without its own `auth` block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Dotted keys and blocks the operator set explicitly (written in the file, or given on
    /// the command line or in the environment), e.g. `server` and `server.admin_password`.
    /// A reload uses it to tell a deliberate change from an empty or truncated file.
    #[serde(skip)]
    pub explicit: BTreeSet<String>,
}

/// `mount "/name" { ... }` block: every key is optional and falls back to the global one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MountConfig {
    /// Source user for this mount instead of `server.source_user`.
    pub source_user: Option<String>,
    /// Source password for this mount instead of `server.source_password`.
    pub source_password: Option<String>,
    /// Most listeners on this mount; 0 = only the server-wide limit applies.
    pub max_listeners: u32,
    /// Burst for new listeners of this mount instead of `limits.burst_size`.
    pub burst_size: Option<usize>,
    /// ICY interval for this mount instead of `metadata.icy_metaint`.
    pub icy_metaint: Option<usize>,
    /// ICY title encoding for this mount instead of `metadata.icy_charset`.
    pub icy_charset: Option<String>,
    /// Station name shown for this mount when its source gives none.
    pub station_name: Option<String>,
    /// Station description for this mount.
    pub station_description: Option<String>,
    /// Genre for this mount.
    pub station_genre: Option<String>,
    /// Station URL for this mount.
    pub station_url: Option<String>,
    /// Leave this mount out of public status pages and the station page.
    pub hidden: bool,
    /// Playlist this mount plays while no source feeds it; none: it has no playlist.
    pub playlist: Option<PlaylistConfig>,
    /// Where this mount's listeners go while it has neither source nor playlist.
    pub fallback_mount: Option<String>,
    /// Move listeners back from the fallback when this mount's source returns.
    pub fallback_override: bool,
    /// Seconds a listener of this mount may stay instead of `limits.max_listener_duration`
    /// (0 = no limit here), as Icecast-KH's per-mount limit.
    pub max_listener_duration: Option<u64>,
    /// Edges a new listener is sent to (302, in turn) when this mount is full, instead of
    /// `limits.redirect_when_full`; an empty list turns redirects off for this mount.
    pub redirect_when_full: Option<Vec<String>>,
    /// Records what this mount plays (live and playlist) to files named by this strftime
    /// pattern (local time), e.g. `/var/lib/cycast/%Y-%m-%d_%H-%M.mp3`: airchecks for legal
    /// logging. None: no recording.
    pub dump_file: Option<String>,
    /// MP3 file every new listener of this mount hears first (station ID, ad), before it
    /// joins the live stream; it must match the mount's sample rate and channels.
    pub intro: Option<String>,
    /// Minutes after which the recording goes on in a new file (fractions allowed);
    /// 0 = one file for as long as the server runs.
    pub dump_rotate: f64,
    /// HLS settings for this mount instead of the `hls` block's.
    pub hls: Option<crate::config::hls::HlsMountConfig>,
    /// Listener authentication by URL for this mount instead of the top-level `auth` block.
    pub auth: Option<AuthConfig>,
    /// Seconds of silence from a live MP3 source before this mount switches to its playlist
    /// or fallback mount, instead of `silence.seconds`; 0 = never here.
    pub silence_seconds: Option<f64>,
    /// Level (dBFS) below which this mount's live audio is silence, instead of `silence.db`.
    pub silence_db: Option<f64>,
}

/// Station fields of one mount, resolved against the global ones.
#[derive(Debug, Clone)]
pub struct Station {
    /// Station name.
    pub name: String,
    /// Station description.
    pub description: String,
    /// Genre.
    pub genre: String,
    /// Station URL.
    pub url: String,
}

/// `relay "/local" { ... }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Upstream stream to pull, `http[s]://[user:password@]host[:port]/mount`; credentials go
    /// to the upstream as Basic auth and are redacted wherever the URL is shown.
    pub url: String,
    /// Pull only while the local mount has listeners.
    pub on_demand: bool,
    /// Take the upstream's ICY titles as the local title.
    pub relay_metadata: bool,
    /// First wait before reconnecting after the upstream fails, in seconds; doubles per failure.
    pub reconnect_min: f64,
    /// Longest wait between reconnects, in seconds.
    pub reconnect_max: f64,
    /// PEM file of the certificate authorities an `https://` upstream is checked against,
    /// for a private CA; absent: the system's trusted roots.
    pub ca_file: Option<String>,
    /// Check an `https://` upstream's certificate. `false` is for lab setups only (anyone on
    /// the path could read and alter the stream) and is logged as a warning.
    pub tls_verify: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            on_demand: false,
            relay_metadata: true,
            reconnect_min: 1.0,
            reconnect_max: 30.0,
            ca_file: None,
            tls_verify: true,
        }
    }
}

/// `server { ... }` block.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// IP address both ports bind to.
    pub host: String,
    /// Port sources (encoders) connect to with SOURCE or PUT.
    pub source_port: u16,
    /// Port listeners, the web page and the APIs are served on.
    pub listen_port: u16,
    /// Username sources must authenticate with.
    pub source_user: String,
    /// Password sources must authenticate with.
    pub source_password: String,
    /// Mount path of the stream, e.g. `/stream`.
    pub mount_point: String,
    /// Number of listener shards (executors); 0 means one per online core.
    pub shards: usize,
    /// CPU index the ingest executor is pinned to.
    pub ingest_core: usize,
    /// Backlog passed to listen(2) for both sockets.
    pub listen_backlog: u32,
    /// Username for the admin API.
    pub admin_user: String,
    /// Password for the admin API; empty disables the admin API.
    pub admin_password: String,
    /// glommio io_memory per executor in KiB; kept small because RLIMIT_MEMLOCK usually is.
    pub io_memory_kib: usize,
    /// Addresses of reverse proxies whose `X-Forwarded-For` is believed for a listener's
    /// address (stats, logs, limits); empty trusts nobody.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            source_port: 8000,
            listen_port: 8001,
            source_user: "source".into(),
            source_password: DEFAULT_SOURCE_PASSWORD.into(),
            mount_point: "/stream".into(),
            shards: 0,
            ingest_core: 0,
            listen_backlog: 4096,
            admin_user: "admin".into(),
            admin_password: String::new(),
            io_memory_kib: 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `buffer { ... }` block.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// Ring buffer size per mount in MiB (1..=1000).
    pub size_mb: u32,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self { size_mb: 20 }
    }
}

/// What to do with a listener that falls more than `queue_size` bytes behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowListenerPolicy {
    /// Disconnect the listener.
    #[default]
    Drop,
    /// Skip the listener forward to recent audio, discarding the oldest data.
    Skip,
}

/// `limits { ... }` block.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Bytes of recent audio sent at once to a newly connected listener.
    pub burst_size: usize,
    /// A listener further behind the live edge than this many bytes is slow.
    pub queue_size: usize,
    /// What happens to a slow listener: `drop` or `skip`.
    pub slow_listener: SlowListenerPolicy,
    /// Maximum concurrent listeners; 0 = unlimited. Overrides `advanced.max_listeners` when non-zero.
    pub max_listeners: u32,
    /// Seconds a client has to send its complete request header.
    pub header_timeout: f64,
    /// Largest request header accepted, in bytes.
    pub max_header_bytes: usize,
    /// Kernel send buffer of each listener socket in bytes, as `ss -tm` shows it (`tb`);
    /// 0 = derived per mount by [`Config::send_buffer`]. Without a limit Linux grows it to
    /// megabytes, which a listener that never reads pins for minutes before it counts as slow.
    pub send_buffer: usize,
    /// Seconds a listener may stay connected before it is ended on a frame boundary, for
    /// stations that bound sessions (licensing, abandoned players); 0 = no limit.
    pub max_listener_duration: u64,
    /// Base URLs of edges (`http://edge1:8001`) a new listener is redirected to, in turn,
    /// when the server or its mount is full, instead of a 503: how a relay tree grows.
    pub redirect_when_full: Vec<String>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            burst_size: 65536,
            queue_size: 524_288,
            slow_listener: SlowListenerPolicy::Drop,
            max_listeners: 0,
            header_timeout: 5.0,
            max_header_bytes: 8192,
            send_buffer: 0,
            max_listener_duration: 0,
            redirect_when_full: Vec::new(),
        }
    }
}

/// How a shard hands listener sends to the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FanoutEngine {
    /// One batch of sends per slice of listeners through the shard's io_uring.
    #[default]
    #[serde(rename = "io_uring")]
    IoUring,
    /// One `send`/`writev` system call per listener per chunk.
    #[serde(rename = "send")]
    Send,
}

/// `fanout { ... }` block.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanoutConfig {
    /// `"io_uring"` or `"send"`; io_uring falls back to send when it cannot be set up.
    pub engine: FanoutEngine,
}

/// `broadcaster { ... }` block.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BroadcasterConfig {
    /// Maximum bytes per published chunk.
    pub chunk_size: usize,
    /// Target audio duration per published chunk in ms; listeners get one send per chunk,
    /// so this sets the number of sends per second.
    pub chunk_ms: u64,
    /// Legacy polling interval of the original; accepted and ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sleep_high: Option<f64>,
    /// Legacy polling interval of the original; accepted and ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sleep_medium: Option<f64>,
    /// Legacy polling interval of the original; accepted and ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sleep_low: Option<f64>,
}

impl Default for BroadcasterConfig {
    fn default() -> Self {
        Self {
            chunk_size: 16384,
            chunk_ms: 400,
            sleep_high: None,
            sleep_medium: None,
            sleep_low: None,
        }
    }
}

/// `playlist { ... }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlaylistConfig {
    /// Directory the fallback playlist is read from.
    pub directory: String,
    /// Play the files in random order instead of sorted by name.
    pub shuffle: bool,
    /// File name endings that are included in the playlist.
    pub extensions: Vec<String>,
    /// An `.m3u`/`.m3u8` playlist file to play instead of scanning `directory`; empty: unused.
    pub file: String,
    /// When the live source leaves: continue the interrupted track (true) or start the next.
    pub resume: bool,
    /// Seconds between checks for added or removed files.
    pub rescan_interval: f64,
}

impl Default for PlaylistConfig {
    fn default() -> Self {
        Self {
            directory: "./music".into(),
            shuffle: true,
            extensions: vec![".mp3".into(), ".ogg".into()],
            file: String::new(),
            resume: true,
            rescan_interval: 10.0,
        }
    }
}

/// `metadata { ... }` block.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    /// Station name, sent as `icy-name` and shown on the web page.
    pub station_name: String,
    /// Station description, sent as `icy-description`.
    pub station_description: String,
    /// Station genre, sent as `icy-genre` and shown on the web page.
    pub station_genre: String,
    /// Station home page, sent as `icy-url`.
    pub station_url: String,
    /// Interleave ICY metadata blocks for listeners that ask with `Icy-MetaData: 1`.
    pub enable_icy: bool,
    /// Audio bytes between ICY metadata blocks (advertised as `icy-metaint`).
    pub icy_metaint: usize,
    /// Encoding of ICY titles: "utf-8" (default) or "latin1" for old players.
    pub icy_charset: String,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            station_name: "Cycast Radio".into(),
            station_description: "High-performance internet radio".into(),
            station_genre: "Various".into(),
            station_url: "http://localhost:8001".into(),
            enable_icy: true,
            icy_metaint: 16000,
            icy_charset: "utf-8".into(),
        }
    }
}

/// `advanced { ... }` block.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdvancedConfig {
    /// Maximum concurrent listeners; 0 = unlimited. `limits.max_listeners` wins when non-zero.
    pub max_listeners: u32,
    /// Seconds without data after which a source is considered gone.
    pub source_timeout: f64,
    /// Seconds a mount a source created (one not in this file) is kept after its source left
    /// and its last listener went; then it is removed and its ring freed.
    pub source_mount_grace: f64,
    /// Log at debug level.
    pub verbose_logging: bool,
    /// Serve `/api/stats`; when false it answers 403.
    pub enable_stats: bool,
    /// Path of an access log in combined log format, one line per finished listener or
    /// request; "-" writes it to standard error, empty turns it off.
    pub access_log: String,
    /// Path Prometheus scrapes on the listen port; empty turns `/metrics` off there.
    pub metrics_path: String,
    /// Separate port serving only the metrics (0 = none), to keep it off the public port.
    pub metrics_port: u16,
    /// Legacy web-framework switch of the original; accepted and ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flask_debug: Option<bool>,
    /// Legacy web-framework secret of the original; accepted and ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flask_secret_key: Option<String>,
}

impl Default for AdvancedConfig {
    fn default() -> Self {
        Self {
            max_listeners: 0,
            source_timeout: 10.0,
            source_mount_grace: 5.0,
            verbose_logging: false,
            enable_stats: true,
            access_log: String::new(),
            metrics_path: "/metrics".into(),
            metrics_port: 0,
            flask_debug: None,
            flask_secret_key: None,
        }
    }
}

/// A configuration problem. `Display` is always a single line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// File that was being read.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid HCL.
    #[error("config syntax error{}: {message}", Where(file.as_deref(), Some(*line), Some(*column)))]
    Syntax {
        /// File the text came from, when loaded from a file.
        file: Option<PathBuf>,
        /// One-based line of the error.
        line: usize,
        /// One-based column of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A key is unknown, has the wrong type, or has a value that is not allowed.
    #[error("config key `{key}`{}: {message}", Where(file.as_deref(), *line, None))]
    Invalid {
        /// Dotted path of the key, e.g. `limits.queue_size`.
        key: String,
        /// One-based line where the key appears, when known.
        line: Option<usize>,
        /// File the text came from, when loaded from a file.
        file: Option<PathBuf>,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            line: None,
            file: None,
            message: message.into(),
        }
    }

    /// Dotted key the error is about, if it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    fn with_file(mut self, path: &Path) -> Self {
        match &mut self {
            ConfigError::Syntax { file, .. } | ConfigError::Invalid { file, .. } => {
                *file = Some(path.to_path_buf());
            }
            ConfigError::Io { .. } => {}
        }
        self
    }
}

impl Config {
    /// Parses, evaluates (so `64 * 1024` works) and validates HCL config text.
    pub fn from_hcl_str(text: &str) -> Result<Config, ConfigError> {
        let ev = evaluate(text)?;
        let mut cfg: Config = serde_path_to_error::deserialize(
            ev.value.clone().into_deserializer(),
        )
        .map_err(|e| {
            let key = e.path().to_string();
            let message = one_line(&e.inner().to_string());
            ConfigError::Invalid {
                line: ev.line_for(&key),
                key,
                file: None,
                message,
            }
        })?;
        cfg.explicit = ev.lines.keys().cloned().collect();
        cfg.validate().map_err(|e| match e {
            ConfigError::Invalid {
                key,
                line: None,
                file,
                message,
            } => ConfigError::Invalid {
                line: ev.line_for(&key),
                key,
                file,
                message,
            },
            other => other,
        })?;
        Ok(cfg)
    }

    /// Reads and parses a config file; errors name the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_hcl_str(&text).map_err(|e| e.with_file(path))
    }

    /// Every mount the configuration names: the default mount, mount blocks, relays.
    pub fn mount_names(&self) -> Vec<String> {
        let mut names = vec![self.server.mount_point.clone()];
        for name in self.mount.keys().chain(self.relay.keys()) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// Whether mount `name` is configured `hidden`: public pages, `/api/stats` and the
    /// listen port's `/metrics` leave it out; admin views and the metrics port show it.
    pub fn is_hidden(&self, name: &str) -> bool {
        self.mount.get(name).is_some_and(|m| m.hidden)
    }

    /// Station fields for mount `name`: its block's, else the global `metadata` ones.
    pub fn station(&self, name: &str) -> Station {
        let m = self.mount.get(name);
        let pick =
            |own: Option<&String>, global: &str| own.map_or(global, String::as_str).to_string();
        let md = &self.metadata;
        Station {
            name: pick(m.and_then(|m| m.station_name.as_ref()), &md.station_name),
            description: pick(
                m.and_then(|m| m.station_description.as_ref()),
                &md.station_description,
            ),
            genre: pick(m.and_then(|m| m.station_genre.as_ref()), &md.station_genre),
            url: pick(m.and_then(|m| m.station_url.as_ref()), &md.station_url),
        }
    }

    /// ICY interval of mount `name`.
    pub fn icy_metaint(&self, name: &str) -> usize {
        self.mount
            .get(name)
            .and_then(|m| m.icy_metaint)
            .unwrap_or(self.metadata.icy_metaint)
    }

    /// ICY title encoding of mount `name`, lower-cased.
    pub fn icy_charset(&self, name: &str) -> String {
        self.mount
            .get(name)
            .and_then(|m| m.icy_charset.clone())
            .unwrap_or_else(|| self.metadata.icy_charset.clone())
            .to_ascii_lowercase()
    }

    /// User and password a source of mount `name` logs in with: the mount block's own when it
    /// sets them, else the server-wide ones. Streaming and title updates both ask here.
    pub fn source_credentials(&self, name: &str) -> (&str, &str) {
        let mount = self.mount.get(name);
        (
            mount
                .and_then(|m| m.source_user.as_deref())
                .unwrap_or(&self.server.source_user),
            mount
                .and_then(|m| m.source_password.as_deref())
                .unwrap_or(&self.server.source_password),
        )
    }

    /// Burst for new listeners of mount `name`.
    pub fn burst_size(&self, name: &str) -> usize {
        self.mount
            .get(name)
            .and_then(|m| m.burst_size)
            .unwrap_or(self.limits.burst_size)
    }

    /// Kernel send buffer for a listener of mount `name` streaming at `bitrate_kbps`:
    /// `limits.send_buffer`, or when 0 the larger of the mount's burst (so it goes out in one
    /// send) and two seconds of audio (128 kbps when the rate is unknown), within 16 KiB and
    /// `limits.queue_size`. A stalled listener then fills it in seconds and from there on its
    /// lag grows, so it is dropped after about `queue_size` more bytes.
    pub fn send_buffer(&self, name: &str, bitrate_kbps: Option<u32>) -> usize {
        if self.limits.send_buffer != 0 {
            return self.limits.send_buffer;
        }
        let bytes_per_sec = bitrate_kbps.filter(|&k| k > 0).unwrap_or(128) as usize * 125;
        self.burst_size(name)
            .max(2 * bytes_per_sec)
            .clamp(16384, self.limits.queue_size.max(16384))
    }

    /// How long a listener of mount `name` may stay: its block's limit, else the server-wide
    /// one; `None` when there is no limit.
    pub fn max_listener_duration(&self, name: &str) -> Option<Duration> {
        let secs = self
            .mount
            .get(name)
            .and_then(|m| m.max_listener_duration)
            .unwrap_or(self.limits.max_listener_duration);
        (secs != 0).then(|| Duration::from_secs(secs))
    }

    /// Edges a full mount `name` redirects new listeners to: its block's list, else the
    /// server-wide one.
    pub fn redirect_when_full(&self, name: &str) -> &[String] {
        self.mount
            .get(name)
            .and_then(|m| m.redirect_when_full.as_deref())
            .unwrap_or(&self.limits.redirect_when_full)
    }

    /// HLS settings in force for mount `name`.
    pub fn hls_for(&self, name: &str) -> crate::config::hls::HlsConfig {
        self.hls
            .for_mount(self.mount.get(name).and_then(|m| m.hls.as_ref()))
    }

    /// The playlist mount `name` plays: its own block's, or for the default mount the global one.
    pub fn playlist_for(&self, name: &str) -> Option<PlaylistConfig> {
        match self.mount.get(name).and_then(|m| m.playlist.clone()) {
            Some(p) => Some(p),
            None if name == self.server.mount_point => Some(self.playlist.clone()),
            None => None,
        }
    }

    /// Dotted names of legacy keys present in the config, so the caller can warn once.
    pub fn legacy_keys_in_use(&self) -> Vec<&'static str> {
        let b = &self.broadcaster;
        let a = &self.advanced;
        [
            ("broadcaster.sleep_high", b.sleep_high.is_some()),
            ("broadcaster.sleep_medium", b.sleep_medium.is_some()),
            ("broadcaster.sleep_low", b.sleep_low.is_some()),
            ("advanced.flask_debug", a.flask_debug.is_some()),
            ("advanced.flask_secret_key", a.flask_secret_key.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }

    /// Effective listener cap: `limits.max_listeners` if non-zero, else `advanced.max_listeners`; 0 = unlimited.
    pub fn max_listeners(&self) -> u32 {
        if self.limits.max_listeners != 0 {
            self.limits.max_listeners
        } else {
            self.advanced.max_listeners
        }
    }

    /// Whether a source password in force is the built-in default while the server listens on
    /// more than loopback: anyone who can reach the source port can take the stream over.
    pub fn default_source_password_exposed(&self) -> bool {
        let loopback = self
            .server
            .host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
        let default_in_use = self.server.source_password == DEFAULT_SOURCE_PASSWORD
            || self
                .mount
                .values()
                .any(|m| m.source_password.as_deref() == Some(DEFAULT_SOURCE_PASSWORD));
        default_in_use && !loopback
    }

    /// Ring buffer size per mount in bytes.
    pub fn ring_bytes(&self) -> usize {
        self.buffer.size_mb as usize * MIB
    }

    /// Time a client has to send its request header.
    pub fn header_timeout(&self) -> Duration {
        secs(self.limits.header_timeout)
    }

    /// How long a source-created mount outlives its source and last listener.
    pub fn source_mount_grace(&self) -> Duration {
        secs(self.advanced.source_mount_grace)
    }

    /// Whether the configuration names mount `name` (default mount, mount block or relay);
    /// other mounts exist only while a source feeds them or a listener stays.
    pub fn is_configured(&self, name: &str) -> bool {
        name == self.server.mount_point
            || self.mount.contains_key(name)
            || self.relay.contains_key(name)
    }

    /// Time without data after which a source is dropped.
    pub fn source_timeout(&self) -> Duration {
        secs(self.advanced.source_timeout)
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::print::REDACTED;
    use super::*;

    const ORIGINAL: &str = r#"
# Cycast configuration
server {
  host = "0.0.0.0"
  source_port = 8000
  listen_port = 8001
  source_password = "hackme"
  mount_point = "/stream"
}

buffer {
  size_mb = 20
}

playlist {
  directory = "./music"
  shuffle = true
  extensions = [".mp3", ".ogg"]
}

broadcaster {
  chunk_size = 16384
  sleep_high = 0.0005
  sleep_medium = 0.001
  sleep_low = 0.002
}

metadata {
  station_name = "Cycast Radio"
  station_description = "High-performance internet radio"
  station_genre = "Various"
  station_url = "http://localhost:8001"
  enable_icy = true
  icy_metaint = 16000
}

advanced {
  max_listeners = 0
  source_timeout = 10.0
  verbose_logging = false
  enable_stats = true
  flask_debug = false
  flask_secret_key = "change-me-in-production"
}
"#;

    /// The one-line error `text` is refused with (the config tests of every block use it).
    pub(super) fn err(text: &str) -> String {
        let e = Config::from_hcl_str(text).expect_err("config should be rejected");
        let s = e.to_string();
        assert!(!s.contains('\n'), "error must be one line: {s:?}");
        s
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.server.source_port, 8000);
        assert_eq!(c.limits.slow_listener, SlowListenerPolicy::Drop);
        assert_eq!(c.broadcaster.chunk_ms, 400);
        assert_eq!(c.ring_bytes(), 20 * MIB);
        assert_eq!(c.header_timeout(), Duration::from_secs(5));
        assert_eq!(c.source_timeout(), Duration::from_secs(10));
        assert!(c.legacy_keys_in_use().is_empty());
    }

    #[test]
    fn embedded_default_equals_default() {
        let parsed = Config::from_hcl_str(DEFAULT_CONFIG_HCL).unwrap();
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::to_value(Config::default()).unwrap()
        );
    }

    #[test]
    fn empty_text_gives_defaults() {
        let parsed = Config::from_hcl_str("").unwrap();
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::to_value(Config::default()).unwrap()
        );
    }

    #[test]
    fn original_config_loads_and_reports_legacy_keys() {
        let c = Config::from_hcl_str(ORIGINAL).unwrap();
        assert_eq!(c.broadcaster.sleep_high, Some(0.0005));
        assert_eq!(
            c.advanced.flask_secret_key.as_deref(),
            Some("change-me-in-production")
        );
        assert_eq!(
            c.legacy_keys_in_use(),
            vec![
                "broadcaster.sleep_high",
                "broadcaster.sleep_medium",
                "broadcaster.sleep_low",
                "advanced.flask_debug",
                "advanced.flask_secret_key",
            ]
        );
    }

    #[test]
    fn arithmetic_is_evaluated() {
        let c = Config::from_hcl_str(
            "limits {\n  queue_size = 64 * 1024\n  burst_size = 32 * 1024\n}\n",
        )
        .unwrap();
        assert_eq!(c.limits.queue_size, 65536);
        assert_eq!(c.limits.burst_size, 32768);
    }

    #[test]
    fn send_buffer_is_derived_from_burst_bitrate_and_queue() {
        let c = Config::default();
        // The burst (64 KiB) outweighs 2 s at 128 kbps; 320 kbps needs 80 kB.
        assert_eq!(c.send_buffer("/stream", None), 65536);
        assert_eq!(c.send_buffer("/stream", Some(320)), 80_000);
        // Never above the queue, never below 16 KiB.
        assert_eq!(c.send_buffer("/stream", Some(100_000)), c.limits.queue_size);
        let small = Config::from_hcl_str("limits {\n  burst_size = 0\n}\n").unwrap();
        assert_eq!(small.send_buffer("/stream", Some(32)), 16384);
        let set = Config::from_hcl_str("limits {\n  send_buffer = 40000\n}\n").unwrap();
        assert_eq!(set.send_buffer("/stream", Some(320)), 40000);
        assert!(err("limits {\n  send_buffer = 100\n}\n").contains("limits.send_buffer"));
    }

    #[test]
    fn integer_accepted_for_seconds() {
        let c = Config::from_hcl_str("advanced {\n  source_timeout = 3\n}\n").unwrap();
        assert_eq!(c.source_timeout(), Duration::from_secs(3));
    }

    #[test]
    fn typo_names_dotted_key_and_line() {
        let s = err("limits {\n  burst_size = 1024\n  queue_sise = 65536\n}\n");
        assert!(s.contains("limits.queue_sise"), "{s}");
        assert!(s.contains("line 3"), "{s}");
        let s = err("servre {\n}\n");
        assert!(s.contains("servre"), "{s}");
    }

    #[test]
    fn wrong_type_names_key() {
        let s = err("server {\n  source_port = \"eight thousand\"\n}\n");
        assert!(s.contains("server.source_port"), "{s}");
        assert!(s.contains("line 2"), "{s}");
        let s = err("limits {\n  slow_listener = \"kick\"\n}\n");
        assert!(s.contains("limits.slow_listener"), "{s}");
        let s = err("fanout {\n  engine = \"epoll\"\n}\n");
        assert!(s.contains("fanout.engine"), "{s}");
    }

    #[test]
    fn bad_values_name_key() {
        let s = err("buffer {\n  size_mb = 0\n}\n");
        assert!(s.contains("buffer.size_mb") && s.contains("line 2"), "{s}");
        let s = err("server {\n  mount_point = \"stream\"\n}\n");
        assert!(s.contains("server.mount_point"), "{s}");
        assert!(err("server {\n  listen_port = 8000\n}\n").contains("server.listen_port"));
        assert!(err("server {\n  host = \"localhost\"\n}\n").contains("server.host"));
        assert!(err("limits {\n  burst_size = 600000\n}\n").contains("limits.burst_size"));
        assert!(
            err("buffer {\n  size_mb = 1\n}\nlimits {\n  queue_size = 1048576\n}\n")
                .contains("limits.queue_size")
        );
        assert!(err("broadcaster {\n  chunk_ms = 5\n}\n").contains("broadcaster.chunk_ms"));
        assert!(err("metadata {\n  icy_metaint = 70000\n}\n").contains("metadata.icy_metaint"));
        assert!(err("advanced {\n  source_timeout = 0\n}\n").contains("advanced.source_timeout"));
        assert!(err("advanced {\n  source_mount_grace = -1\n}\n")
            .contains("advanced.source_mount_grace"));
        assert!(err("limits {\n  header_timeout = -1\n}\n").contains("limits.header_timeout"));
    }

    #[test]
    fn a_bad_relay_url_is_named_without_its_password() {
        for url in [
            "ftp://u:s3cr3t@origin/m",
            "http://u:s3cr3t@origin:x/m",
            "http://u:s3cr3t@/m",
        ] {
            let s = err(&format!("relay \"/r\" {{\n  url = \"{url}\"\n}}\n"));
            assert!(s.contains("relay./r.url"), "{s}");
            assert!(!s.contains("s3cr3t"), "{s}");
        }
        assert!(Config::from_hcl_str(
            "relay \"/r\" {\n  url = \"http://u:p%40ss@[::1]:8000/m\"\n}\nrelay \"/s\" {\n  url = \"https://u:p@origin/m\"\n}\n"
        )
        .is_ok());
    }

    #[test]
    fn syntax_and_eval_errors_are_one_line() {
        let s = err("server {\n  host = \n}\n");
        assert!(s.contains("line 2"), "{s}");
        let s = err("limits {\n  queue_size = nope * 2\n}\n");
        assert!(s.contains("limits.queue_size"), "{s}");
        let s = err("buffer {\n  size_mb = 1\n}\nbuffer {\n  size_mb = 2\n}\n");
        assert!(s.contains("buffer"), "{s}");
    }

    #[test]
    fn playlist_keys() {
        let d = Config::default().playlist;
        assert!(d.resume && d.file.is_empty());
        assert_eq!(d.rescan_interval, 10.0);
        let c = Config::from_hcl_str(
            "playlist {\n  file = \"/srv/radio.m3u\"\n  resume = false\n  rescan_interval = 2\n}\n",
        )
        .unwrap();
        assert_eq!(c.playlist.file, "/srv/radio.m3u");
        assert!(!c.playlist.resume);
        assert_eq!(c.playlist.rescan_interval, 2.0);
        let s = err("playlist {\n  rescan_interval = 0\n}\n");
        assert!(s.contains("playlist.rescan_interval"), "{s}");
        let s = err("playlist {\n  extensions = [\"\"]\n}\n");
        assert!(s.contains("playlist.extensions"), "{s}");
    }

    #[test]
    fn load_names_file() {
        let missing = Path::new("/nonexistent/cycast.hcl");
        let s = Config::load(missing).unwrap_err().to_string();
        assert!(s.contains("/nonexistent/cycast.hcl"), "{s}");
    }

    #[test]
    fn max_listeners_precedence() {
        let mut c = Config::default();
        c.advanced.max_listeners = 100;
        assert_eq!(c.max_listeners(), 100);
        c.limits.max_listeners = 7;
        assert_eq!(c.max_listeners(), 7);
    }

    #[test]
    fn max_listener_duration_precedence() {
        let c = Config::from_hcl_str(
            "limits { max_listener_duration = 60 }\nmount \"/a\" { max_listener_duration = 5 }\nmount \"/b\" { max_listener_duration = 0 }",
        )
        .unwrap();
        assert_eq!(c.max_listener_duration("/a"), Some(Duration::from_secs(5)));
        assert_eq!(c.max_listener_duration("/b"), None);
        assert_eq!(
            c.max_listener_duration("/stream"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(Config::default().max_listener_duration("/stream"), None);
    }

    #[test]
    fn redirect_edges_are_checked_and_the_mount_list_wins() {
        for bad in [
            "edge1:8001",
            "http://",
            "http://a b",
            "http://e/?x",
            "ftp://e",
        ] {
            let e = err(&format!("limits {{ redirect_when_full = [\"{bad}\"] }}"));
            assert!(e.contains("limits.redirect_when_full"), "{e}");
            let e = err(&format!(
                "mount \"/m\" {{ redirect_when_full = [\"{bad}\"] }}"
            ));
            assert!(e.contains("mount./m.redirect_when_full"), "{e}");
        }
        let c = Config::from_hcl_str(
            "limits { redirect_when_full = [\"http://a:1\"] }\nmount \"/m\" { redirect_when_full = [] }",
        )
        .unwrap();
        assert_eq!(c.redirect_when_full("/stream"), ["http://a:1"]);
        assert!(c.redirect_when_full("/m").is_empty());
    }

    #[test]
    fn dump_keys_are_checked() {
        let e = err("mount \"/m\" { dump_file = \"/x/%Q.mp3\" }");
        assert!(e.contains("mount./m.dump_file"), "{e}");
        let e = err("mount \"/m\" { dump_file = \"\" }");
        assert!(e.contains("mount./m.dump_file"), "{e}");
        let e = err("mount \"/m\" { dump_rotate = -1 }");
        assert!(e.contains("mount./m.dump_rotate"), "{e}");
        let c = Config::from_hcl_str(
            "mount \"/m\" {\n dump_file = \"/r/%Y-%m-%d_%H-%M.mp3\"\n dump_rotate = 0.5\n}",
        )
        .unwrap();
        assert_eq!(c.mount["/m"].dump_rotate, 0.5);
    }

    #[test]
    fn redacted_output_hides_secrets_and_round_trips() {
        let text = ORIGINAL
            .replace("\"hackme\"", "\"s3cr3t-src\"")
            .replace("server {", "server {\n  admin_password = \"s3cr3t-adm\"")
            + "relay \"/edge\" {\n  url = \"http://relay:s3cr3t-up@origin:8001/stream\"\n}\n";
        let c = Config::from_hcl_str(&text).unwrap();
        let out = c.to_redacted_hcl();
        assert!(out.contains("http://relay:***@origin:8001/stream"), "{out}");
        for secret in [
            "s3cr3t-src",
            "s3cr3t-adm",
            "change-me-in-production",
            "s3cr3t-up",
        ] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        assert!(out.contains(REDACTED));
        let back = Config::from_hcl_str(&out).unwrap();
        assert_eq!(back.server.source_password, REDACTED);
        assert_eq!(back.limits.queue_size, c.limits.queue_size);

        let d = Config::default().to_redacted_hcl();
        assert!(d.contains("admin_password = \"\""), "{d}");
        assert!(!d.contains("hackme"), "{d}");
    }
}
