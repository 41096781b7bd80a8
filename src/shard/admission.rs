//! A stream listener's place in the listener counts: the server's (`max_listeners`), its
//! mount's (the mount's `max_listeners`, status pages, relays on demand, mount removal) and,
//! once it is in the fan-out, its shard's (status pages). An [`Admission`] is the only way in
//! and its drop the only way out, so a listener is counted exactly as long as something holds
//! its admission: no path can forget a decrement or make one twice. The same holds for the
//! URL-auth backend's `listener_remove`, sent from the drop.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::auth::url::ListenerSession;
use crate::mount::Mount;
use crate::observability::stats::ShardStats;
use crate::state::Shared;

/// One admitted listener's place in the counts; dropping it gives the place back.
pub struct Admission {
    /// Server-wide state, for the server's listener total.
    shared: Arc<Shared>,
    /// The mount the listener is counted on; another one after a move.
    mount: Arc<Mount>,
    /// The shard counting the listener, once it reached that shard's fan-out.
    shard: Option<Arc<ShardStats>>,
    /// What the URL-auth backend was told of this listener and when it was accepted, so the
    /// backend hears `listener_remove` with the duration however the listener leaves.
    auth: Option<(Box<ListenerSession>, Instant)>,
}

impl Admission {
    /// Counts a listener of `mount` in, unless the server or the mount already has its
    /// `max_listeners` or the mount was removed.
    pub fn admit(shared: &Arc<Shared>, mount: &Arc<Mount>) -> Option<Admission> {
        let config = shared.config();
        let max = config.max_listeners() as u64;
        let before = shared.listeners.fetch_add(1, Ordering::Relaxed);
        if max != 0 && before >= max {
            shared.listeners.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let mount_max = config.mount.get(&mount.name).map_or(0, |m| m.max_listeners) as u64;
        if !mount.try_join(mount_max) {
            shared.listeners.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Admission {
            shared: shared.clone(),
            mount: mount.clone(),
            shard: None,
            auth: None,
        })
    }

    /// The mount the listener is counted on.
    pub fn mount(&self) -> &Arc<Mount> {
        &self.mount
    }

    /// Notes the backend's session of a listener accepted at `accepted`, so dropping the
    /// admission tells the backend it left.
    pub fn authenticated(&mut self, session: Option<Box<ListenerSession>>, accepted: Instant) {
        self.auth = session.map(|session| (session, accepted));
    }

    /// Counts the listener on `shard` as well, now that it is in that shard's fan-out.
    pub fn count_on(&mut self, shard: &Arc<ShardStats>) {
        shard.listeners.fetch_add(1, Ordering::Relaxed);
        if let Some(before) = self.shard.replace(shard.clone()) {
            before.listeners.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Moves the place to `dest`, beyond its `max_listeners` (an operator or a fallback chose
    /// the move, the listener did not). Returns `false`, and stays, when `dest` was removed.
    pub fn move_to(&mut self, dest: &Arc<Mount>) -> bool {
        if !dest.try_join(0) {
            return false;
        }
        std::mem::replace(&mut self.mount, dest.clone()).listener_left();
        true
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(shard) = &self.shard {
            shard.listeners.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared.listeners.fetch_sub(1, Ordering::Relaxed);
        self.mount.listener_left();
        if let Some((session, accepted)) = self.auth.take() {
            crate::auth::url::listener_left(
                &self.shared.config(),
                self.shared.listen_port,
                *session,
                accepted.elapsed(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::time::SystemTime;

    use arc_swap::ArcSwap;

    use super::*;
    use crate::config::Config;
    use crate::mount::{MountTable, StreamInfo};

    /// Server state with one shard, `max_listeners = 2`, `/a` limited to 1 listener, `/b` free.
    fn shared() -> (Arc<Shared>, Arc<Mount>, Arc<Mount>) {
        let config = Config::from_hcl_str(
            r#"
limits { max_listeners = 2 }
mount "/a" { max_listeners = 1 }
"#,
        )
        .unwrap();
        let mounts = MountTable::new(64 * 1024);
        let a = mounts.create("/a", StreamInfo::default()).unwrap().0;
        let b = mounts.create("/b", StreamInfo::default()).unwrap().0;
        let shared = Arc::new(Shared {
            config: ArcSwap::from_pointee(config),
            mounts,
            shards: vec![Arc::default()],
            listeners: AtomicU64::new(0),
            next_listener_id: AtomicU64::new(1),
            started: SystemTime::now(),
            listen_port: 0,
            source_port: 0,
            metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle(),
            shutting_down: AtomicBool::new(false),
            auth_failures: Default::default(),
            tls: None,
            tls_port: 0,
            control_plane: crate::state::ControlPlane::NONE,
        });
        (shared, a, b)
    }

    /// Server, `/a`, `/b` and shard counts.
    fn counts(shared: &Shared, a: &Mount, b: &Mount) -> [u64; 4] {
        [
            shared.listeners.load(Ordering::Relaxed),
            a.listeners.load(Ordering::Relaxed),
            b.listeners.load(Ordering::Relaxed),
            shared.shards[0].listeners.load(Ordering::Relaxed),
        ]
    }

    #[test]
    fn every_count_taken_is_given_back_once_whatever_happened_in_between() {
        let (shared, a, b) = shared();
        let shard = shared.shards[0].clone();
        let mut first = Admission::admit(&shared, &a).expect("room on /a");
        assert!(Admission::admit(&shared, &a).is_none(), "/a holds one");
        assert_eq!(
            counts(&shared, &a, &b),
            [1, 1, 0, 0],
            "a refusal counts nothing"
        );
        first.count_on(&shard);
        assert_eq!(counts(&shared, &a, &b), [1, 1, 0, 1]);
        assert!(first.move_to(&b));
        assert_eq!(counts(&shared, &a, &b), [1, 0, 1, 1]);
        // The move freed /a's place; the server is now full.
        let second = Admission::admit(&shared, &a).expect("room on /a again");
        assert!(Admission::admit(&shared, &b).is_none(), "server holds two");
        assert_eq!(counts(&shared, &a, &b), [2, 1, 1, 1]);
        drop(first);
        drop(second);
        assert_eq!(counts(&shared, &a, &b), [0, 0, 0, 0]);
    }

    #[test]
    fn a_move_to_a_removed_mount_keeps_the_place_where_it_was() {
        let (shared, a, b) = shared();
        assert!(shared.mounts.retire(&b));
        let mut admission = Admission::admit(&shared, &a).unwrap();
        assert!(!admission.move_to(&b));
        assert_eq!(admission.mount().id, a.id);
        assert_eq!(counts(&shared, &a, &b), [1, 1, 0, 0]);
        drop(admission);
        assert_eq!(counts(&shared, &a, &b), [0, 0, 0, 0]);
    }
}
