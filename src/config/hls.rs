//! `hls { ... }` settings, server-wide and per mount.

use serde::{Deserialize, Serialize};

/// Highest bitrate the ring is sized for when checking it holds the HLS window (MP3's
/// largest; AAC streams of more are still served, but the oldest segments may be gone).
pub const SIZING_KBPS: u64 = 320;

/// `hls { ... }` block: HLS output of every MP3 and AAC mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    /// Serve `/<mount>/index.m3u8` and its segments; off keeps the listen port Icecast-only.
    pub enabled: bool,
    /// Target segment length in seconds: segments are cut at the first frame boundary past it.
    pub segment_seconds: u32,
    /// Segments listed in the playlist: a longer window lets players and caches ride out
    /// longer gaps, at the cost of latency for players that start at its beginning.
    pub window: u32,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            segment_seconds: 4,
            window: 6,
        }
    }
}

/// `mount "/name" { hls { ... } }`: every key falls back to the server-wide one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsMountConfig {
    /// `hls.enabled` for this mount.
    pub enabled: Option<bool>,
    /// `hls.segment_seconds` for this mount.
    pub segment_seconds: Option<u32>,
    /// `hls.window` for this mount.
    pub window: Option<u32>,
}

impl HlsConfig {
    /// The settings in force for a mount with the given overrides.
    pub fn for_mount(&self, own: Option<&HlsMountConfig>) -> HlsConfig {
        let own = own.cloned().unwrap_or_default();
        HlsConfig {
            enabled: own.enabled.unwrap_or(self.enabled),
            segment_seconds: own.segment_seconds.unwrap_or(self.segment_seconds),
            window: own.window.unwrap_or(self.window),
        }
    }

    /// Segments kept after the window: RFC 8216 §6.2.2 keeps a removed segment available for
    /// its own duration plus the longest playlist that held it, which the window plus one more
    /// segment covers (segments are never shorter than the target, except the last before a
    /// discontinuity, and retention is also checked by time, see `segment`).
    pub fn retained(&self) -> usize {
        2 * self.window as usize + 1
    }

    /// Ring bytes needed to keep every retained segment at [`SIZING_KBPS`], with one extra
    /// segment being written.
    pub fn ring_bytes_needed(&self) -> u64 {
        (self.retained() as u64 + 1) * (self.segment_seconds as u64 + 1) * SIZING_KBPS * 1000 / 8
    }

    /// Checks the settings of `key` (`hls` or `mount.<name>.hls`), and against a ring of
    /// `ring_bytes` when given; the error names the key at fault.
    pub fn check(&self, key: &str, ring_bytes: Option<usize>) -> Result<(), (String, String)> {
        if !(1..=60).contains(&self.segment_seconds) {
            return Err((
                format!("{key}.segment_seconds"),
                format!("must be between 1 and 60 (got {})", self.segment_seconds),
            ));
        }
        // RFC 8216 §6.2.2: a live playlist never holds less than three target durations.
        if !(3..=100).contains(&self.window) {
            return Err((
                format!("{key}.window"),
                format!("must be between 3 and 100 (got {})", self.window),
            ));
        }
        let needed = self.ring_bytes_needed();
        let Some(ring_bytes) = ring_bytes else {
            return Ok(());
        };
        if self.enabled && (ring_bytes as u64) < needed {
            return Err((
                format!("{key}.window"),
                format!(
                    "{} segments of {} s at {SIZING_KBPS} kbps need {needed} bytes of ring; buffer.size_mb gives {ring_bytes}",
                    self.retained(),
                    self.segment_seconds
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_overrides_fall_back_to_the_server_settings() {
        let server = HlsConfig::default();
        let own = HlsMountConfig {
            window: Some(10),
            ..Default::default()
        };
        let eff = server.for_mount(Some(&own));
        assert_eq!(
            (eff.enabled, eff.segment_seconds, eff.window),
            (true, 4, 10)
        );
        assert_eq!(server.for_mount(None), server);
    }

    #[test]
    fn the_ring_must_hold_the_retained_segments() {
        let c = HlsConfig::default();
        // 14 segments of up to 5 s at 40 kB/s.
        assert_eq!(c.ring_bytes_needed(), 14 * 5 * 40_000);
        assert!(c.check("hls", Some(20 << 20)).is_ok());
        let (key, msg) = c.check("hls", Some(1 << 20)).unwrap_err();
        assert_eq!(key, "hls.window");
        assert!(msg.contains("buffer.size_mb"), "{msg}");
        let off = HlsConfig {
            enabled: false,
            ..c.clone()
        };
        assert!(off.check("hls", Some(1 << 20)).is_ok());
        let short = HlsConfig { window: 2, ..c };
        assert_eq!(
            short.check("mount./a.hls", None).unwrap_err().0,
            "mount./a.hls.window"
        );
    }

    #[test]
    fn a_configured_window_is_checked_against_the_ring() {
        use super::super::Config;
        let small = "buffer {\n  size_mb = 2\n}\n";
        assert!(
            Config::from_hcl_str(small).is_ok(),
            "default HLS must not reject old configs"
        );
        let err = Config::from_hcl_str(&format!("{small}hls {{\n  window = 6\n}}\n")).unwrap_err();
        assert!(err.to_string().contains("hls.window"), "{err}");
        let err =
            Config::from_hcl_str("mount \"/a\" {\n  hls {\n    segment_seconds = 0\n  }\n}\n")
                .unwrap_err();
        assert!(
            err.to_string().contains("mount./a.hls.segment_seconds"),
            "{err}"
        );
    }
}
