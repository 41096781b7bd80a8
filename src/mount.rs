//! Mounts: the named streams listeners ask for. Each has one ring (written by the ingest core)
//! and a description of what is on air, which shards read when a listener joins.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::ring::{Ring, RingWriter};

/// Identity of a mount, never reused for another one (a mount a source created can be removed
/// and its name created again later), so a late message about a removed mount touches nothing.
pub type MountId = usize;

/// Most mounts a server will create, configured plus created by sources on the fly.
pub const MAX_MOUNTS: usize = 64;

/// What a mount is currently playing, as announced by its source (or the configuration).
#[derive(Debug, Clone, Default)]
pub struct StreamInfo {
    /// Content-Type sent to listeners.
    pub content_type: String,
    /// An authenticated live source is connected (false: playlist or silence).
    pub live: bool,
    /// `icy-name` / `ice-name`.
    pub name: String,
    /// `icy-description` / `ice-description`.
    pub description: String,
    /// `icy-genre` / `ice-genre`.
    pub genre: String,
    /// `icy-url` / `ice-url`.
    pub url: String,
    /// Whether the source asked to be listed in directories (`ice-public`).
    pub public: bool,
    /// Nominal bitrate in kbps, from `ice-bitrate`, `ice-audio-info` or the frames.
    pub bitrate: Option<u32>,
    /// Raw `ice-audio-info` value, passed on in status pages.
    pub audio_info: String,
    /// Now playing, `Artist - Title`.
    pub title: String,
    /// Bumped on every title change, so shards notice a change with one integer compare.
    pub title_version: u64,
    /// The live source's User-Agent, for status pages.
    pub source_agent: String,
    /// The live source's address.
    pub source_addr: Option<std::net::SocketAddr>,
    /// When the current source (or playlist) started feeding the mount.
    pub since: Option<SystemTime>,
}

impl StreamInfo {
    /// Seconds the current source (or playlist) has been feeding the mount.
    pub fn connected_secs(&self) -> u64 {
        self.since
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map_or(0, |d| d.as_secs())
    }
}

/// One mount: the ring plus what is on it.
pub struct Mount {
    /// Unique id; shards find their listener lists and messages name mounts by it.
    pub id: MountId,
    /// Path listeners request, such as `/stream`.
    pub name: String,
    /// The audio; shards read it, only the ingest core writes it.
    pub ring: Arc<Ring>,
    /// Current stream description, replaced whole on every change so readers never lock.
    pub info: ArcSwap<StreamInfo>,
    /// Listeners on this mount across all shards; admission control reads it.
    pub listeners: AtomicU64,
    /// Most listeners seen at once.
    pub listener_peak: AtomicU64,
    /// Bytes received from sources (after framing).
    pub bytes_in: AtomicU64,
    /// Codec header pages (Ogg) a listener must get before joining mid-stream.
    pub stream_headers: ArcSwap<StreamHeaders>,
    /// Set when the mount is taken out of the table (or about to be): no listener may join.
    removed: AtomicBool,
}

/// Codec headers of the current stream and where they end in the ring.
#[derive(Debug, Default)]
pub struct StreamHeaders {
    /// The header pages, empty for formats without them.
    pub bytes: Vec<u8>,
    /// Stream offset just past the header pages in the ring: a listener joining at or before it
    /// gets them from the ring itself.
    pub ends_at: u64,
}

impl Mount {
    /// A snapshot of what the mount is playing.
    pub fn info(&self) -> Arc<StreamInfo> {
        self.info.load_full()
    }

    /// Sets the now-playing title (from the admin API, playlist tags or a relay).
    pub fn set_title(&self, title: &str) {
        self.info.rcu(|old| StreamInfo {
            title: title.to_string(),
            title_version: old.title_version + 1,
            ..StreamInfo::clone(old)
        });
    }

    /// Replaces the stream description (a source arrived or left), keeping the title and its
    /// version unless `title` is given.
    pub fn set_info(&self, info: StreamInfo, title: Option<&str>) {
        self.info.rcu(|old| StreamInfo {
            title: title.map_or_else(|| old.title.clone(), str::to_string),
            title_version: old.title_version + u64::from(title.is_some()),
            ..info.clone()
        });
    }

    /// Records new codec headers (an Ogg stream started), published up to `ends_at`.
    pub fn set_stream_headers(&self, bytes: Vec<u8>, ends_at: u64) {
        self.stream_headers
            .store(Arc::new(StreamHeaders { bytes, ends_at }));
    }

    /// Counts a listener in unless the mount already has `max` (0 = no limit) or has been
    /// removed. Sequentially consistent with [`MountTable::retire`]: either the join sees the
    /// removal, or the removal sees the listener and is called off.
    pub fn try_join(&self, max: u64) -> bool {
        let now = self.listeners.fetch_add(1, Ordering::SeqCst) + 1;
        if (max != 0 && now > max) || self.removed.load(Ordering::SeqCst) {
            self.listeners.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        self.listener_peak.fetch_max(now, Ordering::Relaxed);
        true
    }

    /// Whether the mount has been removed from the table.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// Counts a departed listener.
    pub fn listener_left(&self) {
        self.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

/// All mounts: readers on any core see a consistent list without locking. Only the ingest
/// core changes it (and the start-up code before the cores run).
pub struct MountTable {
    /// The list; replaced whole when the ingest core adds or removes a mount.
    mounts: ArcSwap<Vec<Arc<Mount>>>,
    /// Ring size for new mounts.
    ring_bytes: usize,
    /// Id of the next mount created.
    next_id: AtomicUsize,
}

/// Why a mount could not be created.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The table is full.
    #[error("too many mounts (at most {MAX_MOUNTS})")]
    TooMany,
    /// The ring could not be mapped.
    #[error("cannot map a {bytes}-byte ring: {source}")]
    Map {
        /// Requested ring size.
        bytes: usize,
        /// The mapping error.
        source: std::io::Error,
    },
}

impl MountTable {
    /// An empty table whose mounts get rings of `ring_bytes`.
    pub fn new(ring_bytes: usize) -> Self {
        Self {
            mounts: ArcSwap::from_pointee(Vec::new()),
            ring_bytes,
            next_id: AtomicUsize::new(0),
        }
    }

    /// Looks a mount up by path.
    pub fn find(&self, name: &str) -> Option<Arc<Mount>> {
        self.mounts.load().iter().find(|m| m.name == name).cloned()
    }

    /// Looks a mount up by id; `None` once it has been removed.
    pub fn get(&self, id: MountId) -> Option<Arc<Mount>> {
        self.mounts.load().iter().find(|m| m.id == id).cloned()
    }

    /// The mount a listener of `mount` is served: itself while something feeds it, else the
    /// first mount of its fallback chain that has a source or a playlist (or the chain's end).
    pub fn on_air(&self, config: &Config, mount: Arc<Mount>) -> Arc<Mount> {
        let mut current = mount;
        for _ in 0..MAX_MOUNTS {
            if current.info().live || config.playlist_for(&current.name).is_some() {
                break;
            }
            let Some(next) = self.fallback_of(config, &current) else {
                break;
            };
            current = next;
        }
        current
    }

    /// The configured fallback of `mount`.
    pub fn fallback_of(&self, config: &Config, mount: &Mount) -> Option<Arc<Mount>> {
        let name = config.mount.get(&mount.name)?.fallback_mount.as_deref()?;
        self.find(name)
    }

    /// Mounts public pages list: all but those configured `hidden`.
    pub fn public(&self, config: &Config) -> Vec<Arc<Mount>> {
        self.all()
            .iter()
            .filter(|m| !config.is_hidden(&m.name))
            .cloned()
            .collect()
    }

    /// Every mount, in creation order.
    pub fn all(&self) -> Arc<Vec<Arc<Mount>>> {
        self.mounts.load_full()
    }

    /// Creates a mount. Only the ingest core calls this, so the append cannot race.
    pub fn create(
        &self,
        name: &str,
        info: StreamInfo,
    ) -> Result<(Arc<Mount>, RingWriter), MountError> {
        let current = self.mounts.load_full();
        if current.len() >= MAX_MOUNTS {
            return Err(MountError::TooMany);
        }
        let (ring, writer) = Ring::new(self.ring_bytes).map_err(|source| MountError::Map {
            bytes: self.ring_bytes,
            source,
        })?;
        let mount = Arc::new(Mount {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            name: name.to_string(),
            ring,
            info: ArcSwap::from_pointee(info),
            listeners: AtomicU64::new(0),
            listener_peak: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            stream_headers: ArcSwap::from_pointee(StreamHeaders::default()),
            removed: AtomicBool::new(false),
        });
        let mut next = Vec::clone(&current);
        next.push(mount.clone());
        self.mounts.store(Arc::new(next));
        Ok((mount, writer))
    }

    /// Takes `mount` out of the table unless a listener holds it; returns whether it was
    /// removed. Only the ingest core calls this. Shards that still hold the mount keep its
    /// ring alive through their `Arc`s until they let go, and no listener can join it any more.
    pub fn retire(&self, mount: &Mount) -> bool {
        mount.removed.store(true, Ordering::SeqCst);
        if mount.listeners.load(Ordering::SeqCst) != 0 {
            mount.removed.store(false, Ordering::SeqCst);
            return false;
        }
        let current = self.mounts.load_full();
        let next: Vec<Arc<Mount>> = current
            .iter()
            .filter(|m| m.id != mount.id)
            .cloned()
            .collect();
        self.mounts.store(Arc::new(next));
        true
    }
}

/// Whether `path` is acceptable as a mount name: absolute, printable, no query or spaces.
pub fn valid_mount_name(path: &str) -> bool {
    path.len() > 1
        && path.len() <= 256
        && path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#' && b != b'%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_mount_is_gone_takes_no_listener_and_frees_its_ring() {
        let table = MountTable::new(64 * 1024);
        let (kept, _) = table.create("/kept", StreamInfo::default()).unwrap();
        let (mount, writer) = table.create("/gone", StreamInfo::default()).unwrap();
        assert!(mount.try_join(0));
        assert!(!table.retire(&mount), "a listener keeps the mount");
        assert!(table.find("/gone").is_some() && !mount.is_removed());
        mount.listener_left();
        assert!(table.retire(&mount));
        assert!(table.find("/gone").is_none() && table.get(mount.id).is_none());
        assert!(!mount.try_join(0), "no listener joins a removed mount");
        assert_eq!(mount.listeners.load(Ordering::SeqCst), 0);
        // The ring lives while anyone holds the mount, and no longer.
        let ring = Arc::downgrade(&mount.ring);
        drop(writer);
        assert!(ring.upgrade().is_some());
        drop(mount);
        assert!(ring.upgrade().is_none(), "ring memory not freed");
        // Ids are never reused: the name comes back as a new mount.
        let (again, _) = table.create("/gone", StreamInfo::default()).unwrap();
        assert!(again.id > kept.id + 1);
        assert_eq!(table.get(kept.id).unwrap().name, "/kept");
    }
}
