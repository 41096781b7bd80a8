//! Value checks deserialization cannot do, and the mount-name rule.

use std::net::IpAddr;

use super::{Config, ConfigError};

/// Smallest `limits.send_buffer`: below this the kernel rounds up anyway.
const SEND_BUFFER_MIN: usize = 8192;
/// Largest `limits.send_buffer` (the kernel also caps it at twice `net.core.wmem_max`).
const SEND_BUFFER_MAX: usize = 64 << 20;

impl Config {
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
                if crate::icy::Charset::from_name(charset).is_none() {
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
            if let Err(msg) = check_edges(m.redirect_when_full.as_deref().unwrap_or_default()) {
                return bad(format!("{key}.redirect_when_full"), msg);
            }
            if let Some(Err(msg)) = m.dump_file.as_deref().map(check_dump_pattern) {
                return bad(format!("{key}.dump_file"), msg);
            }
            if !(m.dump_rotate.is_finite() && m.dump_rotate >= 0.0) {
                return bad(
                    format!("{key}.dump_rotate"),
                    format!(
                        "must be zero or a positive number of minutes (got {})",
                        m.dump_rotate
                    ),
                );
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
            // The error names the part at fault, never the URL: it may hold a password.
            if let Err(e) = crate::url::HttpUrl::parse(&r.url) {
                return bad(format!("{key}.url"), e.to_string());
            }
            if r.ca_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
                return bad(
                    format!("{key}.ca_file"),
                    "a PEM file path is required".into(),
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
        self.validate_auth()?;
        self.validate_silence()?;
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
        if crate::icy::Charset::from_name(&self.metadata.icy_charset).is_none() {
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

        if let Err(msg) = check_edges(&l.redirect_when_full) {
            return bad("limits.redirect_when_full", msg);
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
        self.validate_hls()
    }

    /// Checks the `hls` block and each mount's own.
    fn validate_hls(&self) -> Result<(), ConfigError> {
        // The ring is checked against the window where the operator set HLS up; a default
        // HLS on a ring sized before it existed serves what the ring holds.
        let ring = self.ring_bytes();
        let set_up = self
            .explicit
            .iter()
            .any(|k| k == "hls" || k.starts_with("hls."));
        let own = self.mount.iter().filter_map(|(name, m)| {
            let hls = m.hls.as_ref()?;
            Some((
                format!("mount.{name}.hls"),
                self.hls.for_mount(Some(hls)),
                true,
            ))
        });
        std::iter::once(("hls".to_string(), self.hls.clone(), set_up))
            .chain(own)
            .try_for_each(|(key, hls, sized)| hls.check(&key, sized.then_some(ring)))
            .map_err(|(key, msg)| ConfigError::invalid(&key, msg))
    }
}

/// Checks `redirect_when_full` entries: `http://` or `https://` base URLs with a host and
/// nothing a `Location` header could not carry.
fn check_edges(edges: &[String]) -> Result<(), String> {
    for edge in edges {
        let host = edge
            .strip_prefix("http://")
            .or_else(|| edge.strip_prefix("https://"))
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("");
        if host.is_empty() || edge.contains(|c: char| c.is_control() || " ?#".contains(c)) {
            return Err(format!("{edge:?} is not an http:// or https:// base URL"));
        }
    }
    Ok(())
}

/// Checks a `dump_file` pattern: not empty, and only strftime specifiers chrono knows (an
/// unknown one would fail at the first file).
fn check_dump_pattern(pattern: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if pattern.is_empty() {
        return Err("must not be empty".into());
    }
    if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
        return Err(format!("{pattern:?} has an unknown strftime specifier"));
    }
    Ok(())
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
