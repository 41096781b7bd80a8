//! Server configuration: HCL file format, defaults, validation.
//!
//! The file format is a superset of the original Cycast `config.hcl`: every key the
//! original accepted still loads, so an existing file keeps working unchanged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hcl::edit::Span as _;
use hcl::eval::{Context, Evaluate};
use serde::de::IntoDeserializer;
use serde::{Deserialize, Serialize};

pub mod tls;
pub use tls::TlsConfig;

/// The shipped default configuration, embedded so the server runs without a file.
pub const DEFAULT_CONFIG_HCL: &str = include_str!("../config.hcl");

/// The built-in source password. Everybody knows it, so it is only safe on loopback.
pub const DEFAULT_SOURCE_PASSWORD: &str = "hackme";

const MIB: usize = 1024 * 1024;
const REDACTED: &str = "<redacted>";

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
    /// Extra mounts and per-mount settings, `mount "/name" { … }`; `server.mount_point` stays
    /// the default mount of old configs.
    pub mount: BTreeMap<String, MountConfig>,
    /// Mounts fed by pulling another server's stream, `relay "/local" { url = … }`.
    pub relay: BTreeMap<String, RelayConfig>,
    /// HTTPS port and its certificate; absent, only plain HTTP is served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
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
    /// Upstream stream to pull, `http://host:port/mount`.
    pub url: String,
    /// Pull only while the local mount has listeners.
    pub on_demand: bool,
    /// Take the upstream's ICY titles as the local title.
    pub relay_metadata: bool,
    /// First wait before reconnecting after the upstream fails, in seconds; doubles per failure.
    pub reconnect_min: f64,
    /// Longest wait between reconnects, in seconds.
    pub reconnect_max: f64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            on_demand: false,
            relay_metadata: true,
            reconnect_min: 1.0,
            reconnect_max: 30.0,
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

/// Smallest `limits.send_buffer`: below this the kernel rounds up anyway.
const SEND_BUFFER_MIN: usize = 8192;
/// Largest `limits.send_buffer` (the kernel also caps it at twice `net.core.wmem_max`).
const SEND_BUFFER_MAX: usize = 64 << 20;

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

/// Formats the " (file line N, column M)" suffix of an error.
struct Where<'a>(Option<&'a Path>, Option<usize>, Option<usize>);

impl fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        if let Some(p) = self.0 {
            out.push_str(&p.display().to_string());
        }
        if let Some(l) = self.1 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("line {l}"));
        }
        if let Some(c) = self.2 {
            out.push_str(&format!(", column {c}"));
        }
        if out.is_empty() {
            Ok(())
        } else {
            write!(f, " ({out})")
        }
    }
}

/// Keeps error messages on one line even if a library message spans several.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Byte offset to one-based line number.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Evaluated HCL body plus the line each dotted key was written on.
struct Evaluated {
    value: hcl::Value,
    lines: HashMap<String, usize>,
}

impl Evaluated {
    /// Line of `key`, or of its closest written ancestor (a missing key is reported at its block).
    fn line_for(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(&l) = self.lines.get(k) {
                return Some(l);
            }
            k = &k[..k.rfind('.')?];
        }
    }
}

/// Turns HCL text into a plain value tree, evaluating every expression.
///
/// Each attribute is evaluated on its own so an evaluation error can name its key and line,
/// which evaluating the whole body at once cannot.
fn evaluate(text: &str) -> Result<Evaluated, ConfigError> {
    let body = hcl::edit::parser::parse_body(text).map_err(|e| ConfigError::Syntax {
        file: None,
        line: e.location().line(),
        column: e.location().column(),
        message: one_line(e.message()),
    })?;
    let ctx = Context::new();
    let mut lines = HashMap::new();
    let map = eval_body(text, &body, "", &ctx, &mut lines)?;
    Ok(Evaluated {
        value: hcl::Value::Object(map),
        lines,
    })
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn eval_body(
    text: &str,
    body: &hcl::edit::structure::Body,
    prefix: &str,
    ctx: &Context,
    lines: &mut HashMap<String, usize>,
) -> Result<hcl::Map<String, hcl::Value>, ConfigError> {
    use hcl::edit::structure::Structure;
    let mut map = hcl::Map::new();
    for structure in body.iter() {
        match structure {
            Structure::Attribute(attr) => {
                let name = attr.key.as_str();
                let key = join(prefix, name);
                let line = attr
                    .key
                    .span()
                    .or(attr.span())
                    .map(|s| line_of(text, s.start));
                let err = |message: String| ConfigError::Invalid {
                    key: key.clone(),
                    line,
                    file: None,
                    message,
                };
                if map.contains_key(name) {
                    return Err(err("is set more than once".into()));
                }
                let expr = hcl::Expression::from(attr.value.clone());
                // hcl-rs panics on some arithmetic (integer overflow): a config file must get
                // an error naming its key, never crash the server.
                let evaluated =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| expr.evaluate(ctx)))
                        .map_err(|_| {
                        err("expression cannot be evaluated (arithmetic overflow?)".into())
                    })?;
                let value = evaluated.map_err(|e| err(one_line(&e.to_string())))?;
                if let Some(l) = line {
                    lines.insert(key.clone(), l);
                }
                map.insert(name.to_string(), value);
            }
            Structure::Block(block) => {
                let name = block.ident.as_str();
                let mut key = join(prefix, name);
                let line = block.span().map(|s| line_of(text, s.start));
                // Labels nest like HCL's JSON mapping: `a "b" { }` becomes a.b.
                let mut path: Vec<String> = vec![name.to_string()];
                for label in &block.labels {
                    key = join(&key, label.as_str());
                    path.push(label.as_str().to_string());
                }
                if let Some(l) = line {
                    lines.insert(key.clone(), l);
                }
                let inner = eval_body(text, &block.body, &key, ctx, lines)?;
                let mut slot = &mut map;
                let last = path.pop().expect("block has an ident");
                for seg in &path {
                    let entry = slot
                        .entry(seg.clone())
                        .or_insert_with(|| hcl::Value::Object(hcl::Map::new()));
                    slot = match entry {
                        hcl::Value::Object(m) => m,
                        _ => {
                            return Err(ConfigError::Invalid {
                                key: key.clone(),
                                line,
                                file: None,
                                message: "is set more than once".into(),
                            })
                        }
                    };
                }
                if slot.contains_key(&last) {
                    return Err(ConfigError::Invalid {
                        key,
                        line,
                        file: None,
                        message: "block appears more than once".into(),
                    });
                }
                slot.insert(last, hcl::Value::Object(inner));
            }
        }
    }
    Ok(map)
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

    /// The playlist mount `name` plays: its own block's, or for the default mount the global one.
    pub fn playlist_for(&self, name: &str) -> Option<PlaylistConfig> {
        match self.mount.get(name).and_then(|m| m.playlist.clone()) {
            Some(p) => Some(p),
            None if name == self.server.mount_point => Some(self.playlist.clone()),
            None => None,
        }
    }

    /// Checks the mount and relay blocks.
    fn validate_mounts(&self) -> Result<(), ConfigError> {
        let bad = |key: String, msg: String| Err(ConfigError::invalid(&key, msg));
        let names = self.mount_names();
        for (name, m) in &self.mount {
            let key = format!("mount.{name}");
            if let Err(msg) = check_mount_name(name, MountNameRule::Strict) {
                return bad(key, msg);
            }
            if let Some(charset) = &m.icy_charset {
                if !matches!(
                    charset.to_ascii_lowercase().as_str(),
                    "utf-8" | "utf8" | "latin1" | "latin-1" | "iso-8859-1"
                ) {
                    return bad(
                        format!("{key}.icy_charset"),
                        format!("{charset:?} is not \"utf-8\" or \"latin1\""),
                    );
                }
            }
            if let Some(metaint) = m.icy_metaint {
                if !(1..=65535).contains(&metaint) {
                    return bad(
                        format!("{key}.icy_metaint"),
                        format!("must be between 1 and 65535 (got {metaint})"),
                    );
                }
            }
            if let Some(burst) = m.burst_size {
                if burst > self.limits.queue_size {
                    return bad(
                        format!("{key}.burst_size"),
                        "must not exceed limits.queue_size".into(),
                    );
                }
            }
            if let Some(fallback) = &m.fallback_mount {
                if !names.contains(fallback) {
                    return bad(
                        format!("{key}.fallback_mount"),
                        format!("{fallback:?} is not a configured mount"),
                    );
                }
                // Follow the chain: it must end, not loop.
                let mut seen = vec![name.clone()];
                let mut next = Some(fallback.clone());
                while let Some(current) = next {
                    if seen.contains(&current) {
                        return bad(
                            format!("{key}.fallback_mount"),
                            format!("fallback chain loops back to {current}"),
                        );
                    }
                    next = self
                        .mount
                        .get(&current)
                        .and_then(|m| m.fallback_mount.clone());
                    seen.push(current);
                }
            }
        }
        for (name, r) in &self.relay {
            let key = format!("relay.{name}");
            if let Err(msg) = check_mount_name(name, MountNameRule::Strict) {
                return bad(key, msg);
            }
            if !r.url.starts_with("http://") || r.url.len() <= "http://".len() {
                return bad(
                    format!("{key}.url"),
                    format!("{:?} is not an http:// URL", r.url),
                );
            }
            if r.reconnect_min <= 0.0 || r.reconnect_max < r.reconnect_min {
                return bad(
                    format!("{key}.reconnect_min"),
                    "needs 0 < reconnect_min <= reconnect_max".into(),
                );
            }
        }
        Ok(())
    }

    /// Checks every value that deserialization alone cannot; the first problem is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_mounts()?;
        if let Some(tls) = &self.tls {
            tls.validate(self.server.listen_port, self.server.source_port)?;
        }
        let bad = |key: &str, msg: String| Err(ConfigError::invalid(key, msg));
        let s = &self.server;

        for proxy in &s.trusted_proxies {
            if proxy.parse::<IpAddr>().is_err() {
                return bad(
                    "server.trusted_proxies",
                    format!("{proxy:?} is not an IP address"),
                );
            }
        }
        if !matches!(
            self.metadata.icy_charset.to_ascii_lowercase().as_str(),
            "utf-8" | "utf8" | "latin1" | "latin-1" | "iso-8859-1"
        ) {
            return bad(
                "metadata.icy_charset",
                format!(
                    "{:?} is not \"utf-8\" or \"latin1\"",
                    self.metadata.icy_charset
                ),
            );
        }
        let path = &self.advanced.metrics_path;
        if !path.is_empty() && (!path.starts_with('/') || path.contains(['?', ' '])) {
            return bad(
                "advanced.metrics_path",
                format!("{path:?} must be empty or a path starting with '/'"),
            );
        }
        if self.advanced.metrics_port != 0
            && (self.advanced.metrics_port == s.listen_port
                || self.advanced.metrics_port == s.source_port)
        {
            return bad(
                "advanced.metrics_port",
                "must differ from the listen and source ports".into(),
            );
        }
        if s.host.parse::<IpAddr>().is_err() {
            return bad("server.host", format!("{:?} is not an IP address", s.host));
        }
        // Port 0 asks the kernel for a free port (tests, side-by-side benchmarks).
        if s.listen_port != 0 && s.listen_port == s.source_port {
            return bad(
                "server.listen_port",
                format!(
                    "must differ from server.source_port (both are {})",
                    s.source_port
                ),
            );
        }
        // Basic auth splits user from password at the first ':'.
        for (key, user) in [
            ("server.source_user", &s.source_user),
            ("server.admin_user", &s.admin_user),
        ] {
            if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
                return bad(
                    key,
                    "must be non-empty without ':' or control characters".into(),
                );
            }
        }
        if s.source_password.is_empty() {
            return bad("server.source_password", "must not be empty".into());
        }
        if let Err(msg) = check_mount_name(&s.mount_point, MountNameRule::DefaultMount) {
            return bad("server.mount_point", msg);
        }
        if s.listen_backlog < 1 {
            return bad("server.listen_backlog", "must be at least 1".into());
        }
        if s.io_memory_kib < 64 {
            return bad(
                "server.io_memory_kib",
                format!("must be at least 64 (got {})", s.io_memory_kib),
            );
        }

        let size = self.buffer.size_mb;
        if !(1..=1000).contains(&size) {
            return bad(
                "buffer.size_mb",
                format!("must be between 1 and 1000 (got {size})"),
            );
        }

        let l = &self.limits;
        if l.queue_size < 16384 {
            return bad(
                "limits.queue_size",
                format!("must be at least 16384 (got {})", l.queue_size),
            );
        }
        let half_ring = self.ring_bytes() / 2;
        if l.queue_size > half_ring {
            return bad(
                "limits.queue_size",
                format!(
                    "must be at most half the ring buffer ({half_ring} bytes with buffer.size_mb = {size}) (got {})",
                    l.queue_size
                ),
            );
        }
        if l.burst_size > l.queue_size {
            return bad(
                "limits.burst_size",
                format!(
                    "must not exceed limits.queue_size = {} (got {})",
                    l.queue_size, l.burst_size
                ),
            );
        }
        if !(l.header_timeout.is_finite() && l.header_timeout > 0.0) {
            return bad(
                "limits.header_timeout",
                format!(
                    "must be a positive number of seconds (got {})",
                    l.header_timeout
                ),
            );
        }
        if !(1024..=65536).contains(&l.max_header_bytes) {
            return bad(
                "limits.max_header_bytes",
                format!(
                    "must be between 1024 and 65536 (got {})",
                    l.max_header_bytes
                ),
            );
        }

        if l.send_buffer != 0 && !(SEND_BUFFER_MIN..=SEND_BUFFER_MAX).contains(&l.send_buffer) {
            return bad(
                "limits.send_buffer",
                format!(
                    "must be 0 (derived) or between {SEND_BUFFER_MIN} and {SEND_BUFFER_MAX} (got {})",
                    l.send_buffer
                ),
            );
        }

        let b = &self.broadcaster;
        if b.chunk_size < 1024 {
            return bad(
                "broadcaster.chunk_size",
                format!("must be at least 1024 (got {})", b.chunk_size),
            );
        }
        if b.chunk_size > l.queue_size {
            return bad(
                "broadcaster.chunk_size",
                format!(
                    "must not exceed limits.queue_size = {} (got {})",
                    l.queue_size, b.chunk_size
                ),
            );
        }
        if !(20..=5000).contains(&b.chunk_ms) {
            return bad(
                "broadcaster.chunk_ms",
                format!("must be between 20 and 5000 (got {})", b.chunk_ms),
            );
        }

        if let Some(i) = self.playlist.extensions.iter().position(|e| e.is_empty()) {
            return bad(
                "playlist.extensions",
                format!("entry {i} is empty and would match every file"),
            );
        }
        let ri = self.playlist.rescan_interval;
        // Each check walks the whole directory; more often than this is waste.
        if !(ri.is_finite() && ri >= 0.1) {
            return bad(
                "playlist.rescan_interval",
                format!("must be at least 0.1 seconds (got {ri})"),
            );
        }

        let md = &self.metadata;
        if !(1..=65535).contains(&md.icy_metaint) {
            return bad(
                "metadata.icy_metaint",
                format!("must be between 1 and 65535 (got {})", md.icy_metaint),
            );
        }
        // These go into HTTP response headers verbatim.
        for (key, v) in [
            ("metadata.station_name", &md.station_name),
            ("metadata.station_description", &md.station_description),
            ("metadata.station_genre", &md.station_genre),
            ("metadata.station_url", &md.station_url),
        ] {
            if v.chars().any(char::is_control) {
                return bad(
                    key,
                    "must not contain control characters such as newlines".into(),
                );
            }
        }

        let grace = self.advanced.source_mount_grace;
        if !(grace.is_finite() && grace >= 0.0) {
            return bad(
                "advanced.source_mount_grace",
                format!("must be zero or a positive number of seconds (got {grace})"),
            );
        }
        let st = self.advanced.source_timeout;
        if !(st.is_finite() && st > 0.0) {
            return bad(
                "advanced.source_timeout",
                format!("must be a positive number of seconds (got {st})"),
            );
        }
        Ok(())
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

    /// The effective config as HCL, with every password and secret replaced by `<redacted>`.
    /// An empty admin password stays `""` so it is visible that the admin API is off.
    pub fn to_redacted_hcl(&self) -> String {
        let mut c = self.clone();
        c.server.source_password = REDACTED.into();
        if !c.server.admin_password.is_empty() {
            c.server.admin_password = REDACTED.into();
        }
        if c.advanced.flask_secret_key.is_some() {
            c.advanced.flask_secret_key = Some(REDACTED.into());
        }
        for mount in c.mount.values_mut() {
            if mount.source_password.is_some() {
                mount.source_password = Some(REDACTED.into());
            }
        }
        let mut body = hcl::Body::builder();
        // One block per section, matching the layout of config.hcl.
        let sections = [
            ("server", hcl::to_value(&c.server)),
            ("buffer", hcl::to_value(&c.buffer)),
            ("limits", hcl::to_value(&c.limits)),
            ("broadcaster", hcl::to_value(&c.broadcaster)),
            ("fanout", hcl::to_value(&c.fanout)),
            ("playlist", hcl::to_value(&c.playlist)),
            ("metadata", hcl::to_value(&c.metadata)),
            ("advanced", hcl::to_value(&c.advanced)),
        ];
        for (name, value) in sections {
            let mut block = hcl::Block::builder(name);
            if let Ok(hcl::Value::Object(fields)) = value {
                for (k, v) in fields {
                    block = block.add_attribute((k, v));
                }
            }
            body = body.add_block(block.build());
        }
        // Labeled blocks: `mount "/name" { … }` and `relay "/name" { … }`.
        let labeled = c
            .mount
            .iter()
            .map(|(name, m)| ("mount", name, hcl::to_value(m)))
            .chain(
                c.relay
                    .iter()
                    .map(|(name, r)| ("relay", name, hcl::to_value(r))),
            );
        for (kind, name, value) in labeled {
            let mut block = hcl::Block::builder(kind).add_label(name.as_str());
            if let Ok(hcl::Value::Object(fields)) = value {
                for (k, v) in fields {
                    match v {
                        hcl::Value::Null => {}
                        hcl::Value::Object(inner) => {
                            let mut nested = hcl::Block::builder(k);
                            for (ik, iv) in inner {
                                nested = nested.add_attribute((ik, iv));
                            }
                            block = block.add_block(nested.build());
                        }
                        v => block = block.add_attribute((k, v)),
                    }
                }
            }
            body = body.add_block(block.build());
        }
        hcl::format::to_string(&body.build()).unwrap_or_default()
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

/// Which mount-name rule applies. There are two and they differ; this step keeps each
/// caller's behaviour as it was (merging them would change which names are accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountNameRule {
    /// `mount` and `relay` blocks, and SOURCE/PUT paths: 2 to 256 printable ASCII bytes
    /// after a leading '/', without '?', '#' or '%'.
    Strict,
    /// `server.mount_point`: a leading '/' and at least 2 characters, no whitespace, control
    /// characters, '?' or '#' ('%' and non-ASCII allowed, no length cap), and not `/api` or
    /// `/admin` or below them.
    DefaultMount,
}

/// Checks a mount name against `rule`; the error says what is wrong, for the operator.
/// The one place mount names are judged (config validation and the source port both call it).
pub fn check_mount_name(m: &str, rule: MountNameRule) -> Result<(), String> {
    if rule == MountNameRule::Strict {
        let ok = m.len() > 1
            && m.len() <= 256
            && m.starts_with('/')
            && m.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#' && b != b'%');
        if ok {
            return Ok(());
        }
        return Err("mount names start with '/' and have no spaces, '?', '#' or '%'".into());
    }
    if !m.starts_with('/') {
        return Err(format!("{m:?} must start with '/'"));
    }
    if m.len() < 2 {
        return Err("must name a path, not just '/'".into());
    }
    if m.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!(
            "{m:?} must not contain spaces, '?', '#' or control characters"
        ));
    }
    // The listen port also serves the web page and APIs under these paths.
    for reserved in ["/api", "/admin"] {
        if m == reserved || m.starts_with(&format!("{reserved}/")) {
            return Err(format!("{m:?} clashes with the reserved {reserved} path"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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

    fn err(text: &str) -> String {
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
    fn redacted_output_hides_secrets_and_round_trips() {
        let text = ORIGINAL
            .replace("\"hackme\"", "\"s3cr3t-src\"")
            .replace("server {", "server {\n  admin_password = \"s3cr3t-adm\"");
        let c = Config::from_hcl_str(&text).unwrap();
        let out = c.to_redacted_hcl();
        for secret in ["s3cr3t-src", "s3cr3t-adm", "change-me-in-production"] {
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
