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
    /// Codec header pages (Ogg) of each chain link still in the ring, oldest first: a listener
    /// joining mid-stream must first get those of the link its first page belongs to.
    pub stream_headers: ArcSwap<Vec<Arc<StreamHeaders>>>,
    /// HLS segments cut from the ring, written by the mount's feed.
    pub hls: crate::hls::segment::SegmentLog,
    /// A live source is connected but has been silent for `silence_seconds`: its mount is on
    /// its playlist or fallback (dead air), shown in status pages and metrics.
    pub silent: AtomicBool,
    /// Set when the mount is taken out of the table (or about to be): no listener may join.
    removed: AtomicBool,
}

/// Most chain links whose headers are kept; older ones go even if the ring still holds some of
/// their audio (a source sending a link every few pages gets no replay for the oldest).
const MAX_LINKS: usize = 64;

/// Codec headers of one chain link and where the link sits in the ring.
#[derive(Debug, Default)]
pub struct StreamHeaders {
    /// The header pages, empty for formats without them (or until the link's are complete).
    pub bytes: Vec<u8>,
    /// Stream offset of the link's first page, a chunk start.
    pub starts_at: u64,
    /// Stream offset just past the header pages in the ring; `None` while they are still
    /// arriving.
    pub ends_at: Option<u64>,
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

    /// Records that a new chain link (an Ogg stream) starts at stream offset `starts_at`, a
    /// chunk start; its headers follow with [`set_stream_headers`](Self::set_stream_headers).
    /// Links no position in the ring belongs to any more are forgotten.
    pub fn begin_stream_link(&self, starts_at: u64) {
        let oldest = self.ring.oldest_valid();
        self.stream_headers.rcu(|links| {
            // A link is still needed while the one after it starts inside the ring.
            let keep_from = links
                .windows(2)
                .position(|w| w[1].starts_at > oldest)
                .unwrap_or(links.len().saturating_sub(1))
                .max((links.len() + 1).saturating_sub(MAX_LINKS));
            let mut next: Vec<_> = links[keep_from.min(links.len())..].to_vec();
            next.push(Arc::new(StreamHeaders {
                bytes: Vec::new(),
                starts_at,
                ends_at: None,
            }));
            next
        });
    }

    /// Records the complete header pages of the newest chain link, published up to `ends_at`
    /// (a link begun without [`begin_stream_link`](Self::begin_stream_link), e.g. a source
    /// joined mid-stream, is taken to start there).
    pub fn set_stream_headers(&self, bytes: Vec<u8>, ends_at: u64) {
        self.stream_headers.rcu(|links| {
            let mut next = Vec::clone(links);
            let starts_at = match next.last() {
                Some(last) if last.ends_at.is_none() => last.starts_at,
                _ => ends_at,
            };
            if next.last().is_some_and(|last| last.ends_at.is_none()) {
                next.pop();
            }
            next.push(Arc::new(StreamHeaders {
                bytes: bytes.clone(),
                starts_at,
                ends_at: Some(ends_at),
            }));
            next
        });
    }

    /// Forgets all codec headers (a source of a format without them went on air).
    pub fn clear_stream_headers(&self) {
        self.stream_headers.store(Arc::new(Vec::new()));
    }

    /// Where a listener whose first byte would be at `cursor` (a chunk start) starts, and the
    /// codec headers it must get first: those of the chain link `cursor` falls in, unless the
    /// ring itself gives them from there. A cursor inside a link's header pages moves past
    /// them when they are complete (and they are owed), else back to the link's start.
    pub fn join_headers(&self, cursor: u64) -> (u64, Option<Arc<StreamHeaders>>) {
        let links = self.stream_headers.load();
        let Some(link) = links.iter().rev().find(|l| l.starts_at <= cursor) else {
            return (cursor, None);
        };
        match link.ends_at {
            _ if cursor == link.starts_at => (cursor, None),
            None => (link.starts_at, None),
            Some(end) => {
                let owed = (!link.bytes.is_empty()).then(|| link.clone());
                (cursor.max(end), owed)
            }
        }
    }

    /// Counts a listener in unless the mount already has `max` (0 = no limit) or has been
    /// removed. Sequentially consistent with [`MountTable::retire`]: either the join sees the
    /// removal, or the removal sees the listener and is called off. Only
    /// [`crate::shard::admission::Admission`] counts listeners, so each join has one leave.
    pub(crate) fn try_join(&self, max: u64) -> bool {
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

    /// Counts a departed listener (an [`crate::shard::admission::Admission`] dropped or moved).
    pub(crate) fn listener_left(&self) {
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
            stream_headers: ArcSwap::from_pointee(Vec::new()),
            hls: Default::default(),
            silent: AtomicBool::new(false),
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
