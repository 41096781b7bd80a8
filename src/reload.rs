//! SIGHUP: re-read the configuration and apply it without dropping a listener or the live
//! source. Passwords, station metadata, limits and playlist settings take effect at once (every
//! reader loads the current config when it next needs it); what is bound at start-up (addresses,
//! ports, shards, ring size, executor memory) keeps its old value until a restart, with one
//! warning naming the keys. An invalid file keeps the old configuration whole.

use std::sync::Arc;

use crate::config::Config;
use crate::server::{Reload, Shared};

/// Reloads the configuration into `shared`.
pub fn apply(shared: &Shared, reload: &Reload) {
    let Some(reload) = reload else {
        tracing::warn!("SIGHUP ignored: no configuration file was given (--config)");
        return;
    };
    let mut next = match reload() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("config reload failed, keeping the running configuration: {e}");
            return;
        }
    };
    let current = shared.config();
    let fixed = keep_startup_values(&current, &mut next);
    if !fixed.is_empty() {
        tracing::warn!(
            "config reload: {} only change on restart; keeping the running values",
            fixed.join(", ")
        );
    }
    shared.config.store(Arc::new(next));
    tracing::info!("configuration reloaded");
}

/// Copies the settings fixed at start-up from `current` into `next`; returns the keys that
/// differed.
fn keep_startup_values(current: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($field:ident . $key:ident),*) => {$(
            if current.$field.$key != next.$field.$key {
                changed.push(concat!(stringify!($field), ".", stringify!($key)));
                next.$field.$key = current.$field.$key.clone();
            }
        )*};
    }
    keep!(
        server.host,
        server.source_port,
        server.listen_port,
        server.shards,
        server.ingest_core,
        server.listen_backlog,
        server.io_memory_kib,
        server.mount_point,
        buffer.size_mb
    );
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_values_are_kept_and_named() {
        let current = Config::default();
        let mut next = Config::default();
        next.server.listen_port = 9999;
        next.server.source_password = "new".into();
        next.buffer.size_mb = 50;
        let changed = keep_startup_values(&current, &mut next);
        assert_eq!(changed, vec!["server.listen_port", "buffer.size_mb"]);
        assert_eq!(next.server.listen_port, current.server.listen_port);
        assert_eq!(next.buffer.size_mb, current.buffer.size_mb);
        assert_eq!(next.server.source_password, "new");
    }
}
