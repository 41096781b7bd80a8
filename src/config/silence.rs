//! `silence { ... }` block: server-wide defaults of the dead-air fallback, which a `mount`
//! block's `silence_seconds` and `silence_db` override. A live MP3 source quieter than the
//! threshold for long enough is treated as gone (a DJ whose microphone died): its mount plays
//! its playlist or fallback mount until sound returns.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError};

/// Longest `silence_seconds` accepted: a day; beyond that the feature is better turned off.
const MAX_SECONDS: f64 = 86_400.0;
/// Quietest `silence_db` accepted: below 16-bit audio's noise floor nothing is ever quieter.
const MIN_DB: f64 = -120.0;

/// `silence { ... }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SilenceConfig {
    /// Seconds a live MP3 source may stay below `db` before its mount switches to its
    /// playlist or fallback mount, so listeners do not sit through dead air; 0 turns the
    /// detector (and its decoding) off.
    pub seconds: f64,
    /// Level in dBFS (RMS of each decoded frame) below which audio counts as silence: low
    /// enough that quiet music and speech pauses stay above it.
    pub db: f64,
}

impl Default for SilenceConfig {
    fn default() -> Self {
        Self {
            seconds: 15.0,
            db: -50.0,
        }
    }
}

/// The dead-air settings in force for one mount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SilenceSettings {
    /// How long a source must stay silent before it is taken off the air.
    pub after: Duration,
    /// Level (dBFS) below which a frame is silent.
    pub threshold_db: f64,
}

impl Config {
    /// Dead-air settings of mount `name`: its block's keys, else the `silence` block's;
    /// `None` when the detector is off there (`silence_seconds = 0`).
    pub fn silence_for(&self, name: &str) -> Option<SilenceSettings> {
        let mount = self.mount.get(name);
        let seconds = mount
            .and_then(|m| m.silence_seconds)
            .unwrap_or(self.silence.seconds);
        let threshold_db = mount.and_then(|m| m.silence_db).unwrap_or(self.silence.db);
        (seconds > 0.0).then(|| SilenceSettings {
            after: Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX),
            threshold_db,
        })
    }

    /// Checks the `silence` block and the mount blocks' `silence_*` keys.
    pub(super) fn validate_silence(&self) -> Result<(), ConfigError> {
        check_seconds("silence.seconds", self.silence.seconds)?;
        check_db("silence.db", self.silence.db)?;
        for (name, m) in &self.mount {
            if let Some(seconds) = m.silence_seconds {
                check_seconds(&format!("mount.{name}.silence_seconds"), seconds)?;
            }
            if let Some(db) = m.silence_db {
                check_db(&format!("mount.{name}.silence_db"), db)?;
            }
        }
        Ok(())
    }
}

fn check_seconds(key: &str, seconds: f64) -> Result<(), ConfigError> {
    if seconds.is_finite() && (0.0..=MAX_SECONDS).contains(&seconds) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key,
        format!("must be between 0 (off) and {MAX_SECONDS} seconds (got {seconds})"),
    ))
}

fn check_db(key: &str, db: f64) -> Result<(), ConfigError> {
    if db.is_finite() && (MIN_DB..0.0).contains(&db) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key,
        format!("must be a level in dBFS from {MIN_DB} up to (not including) 0 (got {db})"),
    ))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::err;
    use std::time::Duration;

    use crate::config::Config;

    #[test]
    fn defaults_and_mount_overrides() {
        let c = Config::default();
        let s = c.silence_for("/stream").unwrap();
        assert_eq!((s.after, s.threshold_db), (Duration::from_secs(15), -50.0));
        let c = Config::from_hcl_str(
            "silence {\n  seconds = 2.5\n  db = -60\n}\n\
             mount \"/off\" {\n  silence_seconds = 0\n}\n\
             mount \"/own\" {\n  silence_seconds = 30\n  silence_db = -40\n}\n",
        )
        .unwrap();
        let s = c.silence_for("/stream").unwrap();
        assert_eq!(
            (s.after, s.threshold_db),
            (Duration::from_millis(2500), -60.0)
        );
        assert_eq!(c.silence_for("/off"), None);
        let s = c.silence_for("/own").unwrap();
        assert_eq!((s.after, s.threshold_db), (Duration::from_secs(30), -40.0));
        let off = Config::from_hcl_str("silence {\n  seconds = 0\n}\n").unwrap();
        assert_eq!(off.silence_for("/stream"), None);
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(err("silence {\n  seconds = -1\n}\n").contains("silence.seconds"));
        assert!(err("silence {\n  seconds = 100000\n}\n").contains("silence.seconds"));
        assert!(err("silence {\n  db = 0\n}\n").contains("silence.db"));
        assert!(err("silence {\n  db = -200\n}\n").contains("silence.db"));
        assert!(err("silence {\n  level = -40\n}\n").contains("silence.level"));
        let e = err("mount \"/m\" {\n  silence_seconds = -2\n}\n");
        assert!(e.contains("mount./m.silence_seconds"), "{e}");
        let e = err("mount \"/m\" {\n  silence_db = 3\n}\n");
        assert!(e.contains("mount./m.silence_db"), "{e}");
    }
}
