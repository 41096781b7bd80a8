//! SIGHUP: re-read the configuration and apply it without dropping a listener or the live
//! source. Passwords, station metadata, limits and playlist settings take effect at once (every
//! reader loads the current config when it next needs it); what is bound at start-up (addresses,
//! ports, shards, ring size, executor memory) keeps its old value until a restart, with one
//! warning naming the keys. An invalid file keeps the old configuration whole.
//!
//! Every key is optional, so an empty or truncated file is valid HCL that means "all defaults":
//! admin API off, the well-known source password. A reload therefore refuses a file without a
//! `server` block, or one that would turn the admin API off or bring back the built-in source
//! password, unless the file (or the command line) sets that key explicitly, e.g.
//! `admin_password = ""` to turn the admin API off on purpose.

use std::sync::Arc;

use crate::config::{Config, DEFAULT_SOURCE_PASSWORD};
use crate::state::{Reload, Shared};

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
    if let Some(why) = refusal(&current, &next) {
        tracing::error!("config reload refused, keeping the running configuration: {why}");
        return;
    }
    let fixed = keep_startup_values(&current, &mut next);
    if !fixed.is_empty() {
        tracing::warn!(
            "config reload: {} only change on restart; keeping the running values",
            fixed.join(", ")
        );
    }
    if next.default_source_password_exposed() && !current.default_source_password_exposed() {
        tracing::warn!("{}", crate::state::DEFAULT_PASSWORD_WARNING);
    }
    crate::shard::intro::load(&next);
    if let (Some(certificates), Some(tls)) = (&shared.tls, &next.tls) {
        certificates.reload(tls);
    }
    shared.config.store(Arc::new(next));
    tracing::info!("configuration reloaded");
}

/// Why `next` must not replace `current` although it is valid: it looks like an empty or
/// truncated file rather than an intended change. `None` when it may be applied.
fn refusal(current: &Config, next: &Config) -> Option<&'static str> {
    let explicit = |key: &str| next.explicit.contains(key);
    if !explicit("server") {
        return Some("the file has no server block (empty or truncated?); write `server {}` if that is meant");
    }
    if !current.server.admin_password.is_empty()
        && next.server.admin_password.is_empty()
        && !explicit("server.admin_password")
    {
        return Some(
            "it would turn the admin API off (no server.admin_password); \
             write admin_password = \"\" to do that on purpose",
        );
    }
    if current.server.source_password != DEFAULT_SOURCE_PASSWORD
        && next.server.source_password == DEFAULT_SOURCE_PASSWORD
        && !explicit("server.source_password")
    {
        return Some(
            "it would bring back the built-in source password (no server.source_password); \
             set it explicitly to do that on purpose",
        );
    }
    None
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
    if let (Some(now), Some(next)) = (&current.tls, &mut next.tls) {
        if now.port != next.port {
            changed.push("tls.port");
            next.port = now.port;
        }
        if now.source_port != next.source_port {
            changed.push("tls.source_port");
            next.source_port = now.source_port;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Config {
        Config::from_hcl_str(
            "server {\n  admin_password = \"adm\"\n  source_password = \"src\"\n}\n",
        )
        .unwrap()
    }

    #[test]
    fn empty_and_partial_files_are_refused() {
        let current = running();
        let empty = Config::from_hcl_str("").unwrap();
        assert!(refusal(&current, &empty)
            .unwrap()
            .contains("no server block"));
        let partial = Config::from_hcl_str("metadata {\n  station_name = \"x\"\n}\n").unwrap();
        assert!(refusal(&current, &partial).is_some());
        let no_admin = Config::from_hcl_str("server {\n  source_password = \"src\"\n}\n").unwrap();
        assert!(refusal(&current, &no_admin)
            .unwrap()
            .contains("admin API off"));
        let no_source = Config::from_hcl_str("server {\n  admin_password = \"adm\"\n}\n").unwrap();
        assert!(refusal(&current, &no_source)
            .unwrap()
            .contains("built-in source password"));
    }

    #[test]
    fn explicit_values_are_applied() {
        let current = running();
        let off = Config::from_hcl_str(
            "server {\n  admin_password = \"\"\n  source_password = \"hackme\"\n}\n",
        )
        .unwrap();
        assert_eq!(refusal(&current, &off), None);
        let same = running();
        assert_eq!(refusal(&current, &same), None);
        // A running server already on the defaults may reload a file that keeps them.
        let defaults = Config::from_hcl_str("server {\n}\n").unwrap();
        assert_eq!(refusal(&defaults, &defaults), None);
    }

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
