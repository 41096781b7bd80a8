//! HLS requests on the listen port: `GET`/`HEAD /<mount>/index.m3u8` and the segments it
//! lists. Responses are built for caches: short-lived playlists, immutable segments with names
//! that never repeat, validators and conditional GET, byte ranges.
//!
//! Players ask every shard for the same few objects, so each shard makes them once ([`Cache`]):
//! a mount's playlist response is rendered once per segment-list snapshot, and its newest
//! segment (the one every player fetches as soon as it is listed) is read out of the ring
//! once, validated, into a per-shard scratch that every request for it shares. Other segments
//! are the ID3 tag followed by the ring's bytes, copied piece by piece into a small buffer and
//! validated like the fan-out's reads. No torn byte is ever sent.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::DateTime;

use super::listener::CORS;
use crate::config::Config;
use crate::hls::playlist::{parse_segment_name, render};
use crate::hls::segment::{Segment, SegmentList};
use crate::http::{response, server_id, Request};
use crate::ingest::format::Format;
use crate::mount::{Mount, MountId};
use crate::ring::Ring;
use crate::tls::Conn;

/// Name of every mount's playlist.
const PLAYLIST: &str = "index.m3u8";

/// Audio bytes copied out of the ring per write.
const PIECE: usize = 16 * 1024;

/// An answered HLS request: the reply, and what it counts as when it serves content.
pub struct Answer {
    /// The response.
    pub reply: Reply,
    /// The mount and whether a playlist (else a segment) was served; `None` for errors.
    pub hit: Option<(Arc<Mount>, Kind)>,
}

/// What an HLS request fetched, for the request counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `index.m3u8`.
    Playlist,
    /// A segment.
    Segment,
}

impl Kind {
    /// The metric label.
    fn as_str(self) -> &'static str {
        match self {
            Kind::Playlist => "playlist",
            Kind::Segment => "segment",
        }
    }
}

/// What an HLS request gets.
pub enum Reply {
    /// A complete response.
    Whole(Vec<u8>),
    /// A head and `range` of a body this shard shares between requests.
    Shared {
        /// Response head.
        head: Rc<[u8]>,
        /// The whole body (a playlist, or a segment's tag and audio).
        body: Rc<Vec<u8>>,
        /// Body bytes to send, `[from, to)`.
        range: (usize, usize),
    },
    /// A segment (or part of one): the head, then `range` of the tag-plus-audio body.
    Segment {
        /// Response head.
        head: Vec<u8>,
        /// The mount's ring.
        ring: Arc<Ring>,
        /// The segment's tag.
        tag: Arc<[u8]>,
        /// Ring offset of the segment's audio.
        audio_start: u64,
        /// Body bytes to send, `[from, to)` over tag plus audio.
        range: (u64, u64),
    },
}

/// Path of `mount`'s playlist when it offers HLS now: HLS is on for it and it carries MP3 or
/// AAC. Pages and status APIs link it; `route` answers it.
pub fn playlist_path(cfg: &Config, mount: &Mount) -> Option<String> {
    let offered = cfg.hls_for(&mount.name).enabled
        && matches!(
            Format::from_content_type(&mount.info().content_type),
            Format::Mp3 | Format::Aac
        );
    offered.then(|| format!("{}/{PLAYLIST}", mount.name))
}

/// Answers `request` if it is for a mount's playlist or segment; `None` for other paths.
pub fn route(
    ctx: &super::ShardContext,
    cfg: &Config,
    request: &Request,
    head_only: bool,
) -> Option<Answer> {
    let (mount_path, name) = request.path.rsplit_once('/')?;
    let segment_name = parse_segment_name(name);
    if name != PLAYLIST && segment_name.is_none() {
        return None;
    }
    let mount = ctx.shared.mounts.find(mount_path)?;
    if !cfg.hls_for(&mount.name).enabled {
        return None;
    }
    let not_found = |why: &str| {
        Some(Answer {
            reply: Reply::Whole(response(404, "Not Found", &[], why)),
            hit: None,
        })
    };
    let list = mount.hls.load();
    if name == PLAYLIST {
        if !matches!(
            Format::from_content_type(&mount.info().content_type),
            Format::Mp3 | Format::Aac
        ) && !mount.info().content_type.is_empty()
        {
            return not_found(
                "HLS is offered for MP3 and AAC (ADTS) mounts only; this mount carries another format\n",
            );
        }
        let playlist = ctx.hls_cache.borrow_mut().playlist(&mount, &list);
        return Some(match playlist {
            Some(playlist) => Answer {
                reply: playlist_reply(&playlist, request, head_only),
                hit: Some((mount, Kind::Playlist)),
            },
            None => Answer {
                reply: Reply::Whole(response(
                    404,
                    "Not Found",
                    &[("Cache-Control", "max-age=1")],
                    "No HLS segment is ready yet\n",
                )),
                hit: None,
            },
        });
    }
    let (epoch, sequence, ext) = segment_name?;
    let segment = list
        .find(sequence)
        .filter(|s| epoch == list.epoch && ext == s.codec.extension())
        .filter(|s| s.start >= mount.ring.oldest_valid());
    match segment {
        Some(segment) => {
            let shared = (list.segments.back().map(|s| s.sequence) == Some(sequence))
                .then(|| {
                    ctx.hls_cache
                        .borrow_mut()
                        .newest_segment(&mount, &list, segment)
                })
                .flatten();
            Some(Answer {
                reply: segment_reply(&mount, &list, segment, shared, request, head_only),
                hit: Some((mount.clone(), Kind::Segment)),
            })
        }
        None => not_found("This segment is not (or no longer) available\n"),
    }
}

/// A mount's playlist response as this shard made it for one segment-list snapshot.
struct CachedPlaylist {
    /// The snapshot it was rendered from (compared by address).
    list: Arc<SegmentList>,
    /// The first segment it lists (segments the ring no longer holds are left out).
    first: u64,
    /// Its `ETag`.
    etag: String,
    /// Its `Last-Modified`, Unix milliseconds.
    modified_ms: i64,
    /// The `200 OK` head.
    head: Rc<[u8]>,
    /// The playlist text.
    body: Rc<Vec<u8>>,
}

/// A mount's newest segment as this shard read it out of the ring.
struct CachedSegment {
    /// Epoch of the list it belongs to.
    epoch: i64,
    /// Its sequence number.
    sequence: u64,
    /// Its tag and validated audio; the buffer is reused for the next segment once no
    /// response holds it.
    body: Rc<Vec<u8>>,
}

/// This shard's ready-made HLS answers: per mount, one playlist and one segment at most.
#[derive(Default)]
pub struct Cache {
    /// Playlist responses by mount.
    playlists: HashMap<MountId, Rc<CachedPlaylist>>,
    /// Newest segments by mount.
    segments: HashMap<MountId, CachedSegment>,
}

impl Cache {
    /// `mount`'s playlist for snapshot `list`, rendered when the snapshot (or the first
    /// segment the ring still holds) changed since the last request; `None` when no segment
    /// can be listed.
    fn playlist(&mut self, mount: &Mount, list: &Arc<SegmentList>) -> Option<Rc<CachedPlaylist>> {
        let oldest = mount.ring.oldest_valid();
        let first = list.window().find(|s| s.start >= oldest)?.sequence;
        if let Some(cached) = self.playlists.get(&mount.id) {
            if Arc::ptr_eq(&cached.list, list) && cached.first == first {
                return Some(cached.clone());
            }
        }
        let text = render(list, oldest)?;
        let newest = list.segments.back();
        let modified_ms = newest.map_or(list.epoch, |s| s.finished_ms);
        let etag = format!(
            "\"{}-{}-{}\"",
            list.epoch,
            first,
            newest.map_or(0, |s| s.sequence)
        );
        let mut head = head("200 OK", PLAYLIST_TYPE, PLAYLIST_CACHE, &etag, modified_ms);
        head.push_str(&format!("Content-Length: {}\r\n\r\n", text.len()));
        let cached = Rc::new(CachedPlaylist {
            list: list.clone(),
            first,
            etag,
            modified_ms,
            head: head.into_bytes().into(),
            body: Rc::new(text.into_bytes()),
        });
        self.playlists.insert(mount.id, cached.clone());
        Some(cached)
    }

    /// The shared copy of `segment`, `mount`'s newest: read out of the ring and validated on
    /// the first request for it; `None` when the ring overwrote it meanwhile.
    fn newest_segment(
        &mut self,
        mount: &Mount,
        list: &SegmentList,
        segment: &Segment,
    ) -> Option<Rc<Vec<u8>>> {
        if let Some(cached) = self.segments.get(&mount.id) {
            if cached.epoch == list.epoch && cached.sequence == segment.sequence {
                return Some(cached.body.clone());
            }
        }
        // Reuse the previous segment's buffer unless a response still sends from it.
        let mut body = self
            .segments
            .remove(&mount.id)
            .and_then(|old| Rc::try_unwrap(old.body).ok())
            .unwrap_or_default();
        body.clear();
        body.extend_from_slice(&segment.tag);
        let tag_len = body.len();
        body.resize(segment.body_len() as usize, 0);
        mount.ring.read(segment.start, &mut body[tag_len..]).ok()?;
        let body = Rc::new(body);
        self.segments.insert(
            mount.id,
            CachedSegment {
                epoch: list.epoch,
                sequence: segment.sequence,
                body: body.clone(),
            },
        );
        Some(body)
    }

    /// Forgets mounts that no longer exist.
    fn retain(&mut self, mounts: &crate::mount::MountTable) {
        self.playlists.retain(|id, _| mounts.get(*id).is_some());
        self.segments.retain(|id, _| mounts.get(*id).is_some());
    }
}

/// Content-Type of playlists.
const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Playlists change every segment; caches keep them a second.
const PLAYLIST_CACHE: &str = "max-age=1";
/// Segments never change under their name.
const SEGMENT_CACHE: &str = "max-age=86400, immutable";

/// An HTTP date (`Last-Modified`).
fn http_date(unix_ms: i64) -> String {
    DateTime::from_timestamp(unix_ms.div_euclid(1000), 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Whether the client's cached copy (by `If-None-Match`, else `If-Modified-Since`) is current.
fn not_modified(request: &Request, etag: &str, modified_ms: i64) -> bool {
    if let Some(tags) = request.header("if-none-match") {
        return tags
            .split(',')
            .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == etag);
    }
    request
        .header("if-modified-since")
        .and_then(|v| DateTime::parse_from_rfc2822(v.trim()).ok())
        .is_some_and(|since| modified_ms.div_euclid(1000) <= since.timestamp())
}

/// Head of a 200/206/304 HLS response.
fn head(status: &str, content_type: &str, cache: &str, etag: &str, modified_ms: i64) -> String {
    format!(
        "HTTP/1.1 {status}\r\nServer: {}\r\nContent-Type: {content_type}\r\nCache-Control: {cache}\r\n\
ETag: {etag}\r\nLast-Modified: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n{CORS}",
        server_id(),
        http_date(modified_ms),
    )
}

fn playlist_reply(playlist: &CachedPlaylist, request: &Request, head_only: bool) -> Reply {
    let (etag, modified) = (&playlist.etag, playlist.modified_ms);
    if not_modified(request, etag, modified) {
        let mut answer = head(
            "304 Not Modified",
            PLAYLIST_TYPE,
            PLAYLIST_CACHE,
            etag,
            modified,
        );
        answer.push_str("\r\n");
        return Reply::Whole(answer.into_bytes());
    }
    let len = if head_only { 0 } else { playlist.body.len() };
    Reply::Shared {
        head: playlist.head.clone(),
        body: playlist.body.clone(),
        range: (0, len),
    }
}

/// A segment's `ETag`.
fn segment_etag(list: &SegmentList, segment: &Segment) -> String {
    format!("\"{}-{}\"", list.epoch, segment.sequence)
}

/// A requested byte range: `Ok(None)` for the whole body, `Err` when it cannot be satisfied.
fn byte_range(request: &Request, len: u64, etag: &str) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = request.header("range") else {
        return Ok(None);
    };
    // A range against another version of the segment is ignored (there is only one).
    if request.header("if-range").is_some_and(|v| v.trim() != etag) {
        return Ok(None);
    }
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    // Several ranges are answered with the whole body, which RFC 9110 allows.
    if set.contains(',') {
        return Ok(None);
    }
    let (first, last) = set.split_once('-').ok_or(())?;
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| ());
    let (from, to) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, false) => {
            let suffix = number(last)?.min(len);
            if suffix == 0 {
                return Err(());
            }
            (len - suffix, len)
        }
        (false, true) => (number(first)?, len),
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            if b < a {
                return Err(());
            }
            (a, b.saturating_add(1).min(len))
        }
        (true, true) => return Err(()),
    };
    if from >= len {
        return Err(());
    }
    Ok(Some((from, to)))
}

/// A segment's answer; `shared` is this shard's copy of its tag and audio when it is the
/// mount's newest.
fn segment_reply(
    mount: &Mount,
    list: &SegmentList,
    segment: &Segment,
    shared: Option<Rc<Vec<u8>>>,
    request: &Request,
    head_only: bool,
) -> Reply {
    let etag = segment_etag(list, segment);
    let content_type = segment.codec.content_type();
    let modified = segment.finished_ms;
    if not_modified(request, &etag, modified) {
        let mut answer = head(
            "304 Not Modified",
            content_type,
            SEGMENT_CACHE,
            &etag,
            modified,
        );
        answer.push_str("\r\n");
        return Reply::Whole(answer.into_bytes());
    }
    let len = segment.body_len();
    let (status, range) = match byte_range(request, len, &etag) {
        Ok(None) => ("200 OK", (0, len)),
        Ok(Some(range)) => ("206 Partial Content", range),
        Err(()) => {
            let answer = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nServer: {}\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n{CORS}\r\n",
                server_id()
            );
            return Reply::Whole(answer.into_bytes());
        }
    };
    let mut answer = head(status, content_type, SEGMENT_CACHE, &etag, modified);
    if range != (0, len) {
        answer.push_str(&format!(
            "Content-Range: bytes {}-{}/{len}\r\n",
            range.0,
            range.1 - 1
        ));
    }
    answer.push_str(&format!("Content-Length: {}\r\n\r\n", range.1 - range.0));
    if head_only {
        return Reply::Whole(answer.into_bytes());
    }
    if let Some(body) = shared {
        return Reply::Shared {
            head: answer.into_bytes().into(),
            body,
            range: (range.0 as usize, range.1 as usize),
        };
    }
    Reply::Segment {
        head: answer.into_bytes(),
        ring: mount.ring.clone(),
        tag: segment.tag.clone(),
        audio_start: segment.start,
        range,
    }
}

/// Sends `reply`; returns the bytes sent (head and body). A segment whose audio the writer
/// overwrites while it goes out is cut short (the connection closes before its announced
/// length).
pub async fn send(stream: &mut Conn, reply: Reply) -> u64 {
    match reply {
        Reply::Whole(answer) => {
            let _ = stream.write_all(&answer).await;
            answer.len() as u64
        }
        Reply::Shared {
            head,
            body,
            range: (from, to),
        } => {
            if stream.write_all(&head).await.is_err() {
                return 0;
            }
            let part = &body[from..to];
            if !part.is_empty() && stream.write_all(part).await.is_err() {
                return head.len() as u64;
            }
            (head.len() + part.len()) as u64
        }
        Reply::Segment {
            head,
            ring,
            tag,
            audio_start,
            range: (from, to),
        } => {
            if stream.write_all(&head).await.is_err() {
                return 0;
            }
            let tag_len = tag.len() as u64;
            let mut sent = head.len() as u64;
            if from < tag_len {
                let part = &tag[from as usize..to.min(tag_len) as usize];
                if stream.write_all(part).await.is_err() {
                    return sent;
                }
                sent += part.len() as u64;
            }
            let mut pos = audio_start + from.max(tag_len) - tag_len;
            let end = audio_start + to.saturating_sub(tag_len);
            let mut buf = vec![0u8; PIECE.min(end.saturating_sub(pos) as usize)];
            while pos < end {
                let n = PIECE.min((end - pos) as usize);
                if ring.read(pos, &mut buf[..n]).is_err()
                    || stream.write_all(&buf[..n]).await.is_err()
                {
                    break;
                }
                pos += n as u64;
                sent += n as u64;
            }
            sent
        }
    }
}

/// Recently seen HLS sessions of one shard: players hold no connection, so a session is an
/// address plus user agent (or the `sid` a page adds to its URLs) seen within twice the
/// target duration.
#[derive(Default)]
pub struct Sessions {
    /// When each (mount, session hash) was last seen.
    seen: HashMap<(MountId, u64), Instant>,
}

impl Sessions {
    /// Notes a request of `mount` from `client`.
    fn record(&mut self, mount: MountId, client: IpAddr, request: &Request) {
        let mut hasher = DefaultHasher::new();
        match request.query_param("sid") {
            Some(sid) => ("sid", sid).hash(&mut hasher),
            None => (client, request.header("user-agent").unwrap_or("")).hash(&mut hasher),
        }
        self.seen.insert((mount, hasher.finish()), Instant::now());
    }

    /// Forgets sessions not seen within twice their mount's target duration and returns the
    /// rest by mount.
    fn current(
        &mut self,
        cfg: &Config,
        mounts: &crate::mount::MountTable,
    ) -> Vec<(MountId, Vec<u64>)> {
        let now = Instant::now();
        let ttl = |id: MountId| {
            let target = mounts
                .get(id)
                .map_or(1, |m| cfg.hls_for(&m.name).segment_seconds);
            Duration::from_secs(2 * target as u64)
        };
        self.seen.retain(|(mount, _), at| now - *at <= ttl(*mount));
        let mut by_mount: Vec<(MountId, Vec<u64>)> = Vec::new();
        for (mount, key) in self.seen.keys() {
            match by_mount.iter_mut().find(|(m, _)| m == mount) {
                Some((_, keys)) => keys.push(*key),
                None => by_mount.push((*mount, vec![*key])),
            }
        }
        by_mount
    }
}

/// Sends an HLS answer and counts it: requests and bytes per shard and mount, and the session.
pub async fn respond(
    ctx: &super::ShardContext,
    stream: &mut Conn,
    answer: Answer,
    request: &Request,
    client: IpAddr,
) {
    let sent = send(stream, answer.reply).await;
    let Some((mount, kind)) = answer.hit else {
        return;
    };
    ctx.hls_sessions
        .borrow_mut()
        .record(mount.id, client, request);
    let labels = [("shard", ctx.id.to_string()), ("mount", mount.name.clone())];
    metrics::counter!("cycast_hls_bytes_sent_total", &labels).increment(sent);
    let [shard, mount] = labels;
    let labels = [shard, mount, ("kind", kind.as_str().to_string())];
    metrics::counter!("cycast_hls_requests_total", &labels).increment(1);
}

/// Publishes this shard's current sessions for the status pages and metrics.
pub fn flush(ctx: &super::ShardContext) {
    let cfg = ctx.shared.config();
    ctx.hls_cache.borrow_mut().retain(&ctx.shared.mounts);
    let current = ctx
        .hls_sessions
        .borrow_mut()
        .current(&cfg, &ctx.shared.mounts);
    for mount in ctx.shared.mounts.all().iter() {
        let count = current
            .iter()
            .find(|(m, _)| *m == mount.id)
            .map_or(0, |(_, keys)| keys.len());
        let labels = [("shard", ctx.id.to_string()), ("mount", mount.name.clone())];
        metrics::gauge!("cycast_hls_sessions", &labels).set(count as f64);
    }
    ctx.stats.hls_sessions.store(Arc::new(current));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::hls::HlsConfig;
    use crate::hls::segment::{Codec, FrameTiming, SegmentWriter};
    use crate::mount::{MountTable, StreamInfo};
    use crate::ring::RingWriter;

    const FRAME: FrameTiming = FrameTiming {
        codec: Codec::Mp3,
        samples: 1152,
        sample_rate: 44_100,
        channels: 2,
    };

    /// Publishes one 4 s segment of 154 numbered 100-byte chunks (one frame each).
    fn segment(writer: &mut RingWriter, segments: &mut SegmentWriter, mount: &Mount, n: u8) {
        for i in 0..154u32 {
            let start = writer.ring().committed();
            if segments.must_cut_before(&FRAME) {
                segments.close(start, &mount.hls, 0);
            }
            if !segments.is_open() {
                segments.open(start, &FRAME, "A - B", 0);
            }
            segments.add(&FRAME);
            writer.publish(&[n.wrapping_add(i as u8); 100]);
        }
    }

    #[test]
    fn playlists_and_the_newest_segment_are_made_once_and_shared() {
        let mounts = MountTable::new(64 * 1024);
        let (mount, mut writer) = mounts.create("/s", StreamInfo::default()).unwrap();
        let mut segments = SegmentWriter::new(HlsConfig::default(), &mount.hls, 0);
        let mut cache = Cache::default();
        assert!(cache.playlist(&mount, &mount.hls.load()).is_none());
        segment(&mut writer, &mut segments, &mount, 0);
        segment(&mut writer, &mut segments, &mount, 1);
        // Segment 0 is done (segment 1's first frame closed it).
        let list = mount.hls.load();
        let first = cache.playlist(&mount, &list).unwrap();
        let again = cache.playlist(&mount, &list).unwrap();
        assert!(
            Rc::ptr_eq(&first, &again),
            "rendered twice for one snapshot"
        );
        assert_eq!(
            String::from_utf8_lossy(&first.body),
            render(&list, 0).unwrap()
        );
        let newest = list.segments.back().unwrap();
        let body = cache.newest_segment(&mount, &list, newest).unwrap();
        let mut expected = newest.tag.to_vec();
        let mut audio = vec![0; (newest.end - newest.start) as usize];
        mount.ring.read(newest.start, &mut audio).unwrap();
        expected.extend_from_slice(&audio);
        assert_eq!(*body, expected);
        // A whole GET of it goes out from that copy, announced at its length.
        let get = crate::http::parse_head(b"GET /s/x.mp3 HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        let Reply::Shared {
            head,
            body: sent,
            range,
        } = segment_reply(&mount, &list, newest, Some(body.clone()), &get, false)
        else {
            panic!("the newest segment was not sent from the shared copy");
        };
        assert!(Rc::ptr_eq(&sent, &body) && range == (0, expected.len()));
        assert!(String::from_utf8_lossy(&head)
            .contains(&format!("Content-Length: {}\r\n", expected.len())));
        drop(sent);
        let shared = cache.newest_segment(&mount, &list, newest).unwrap();
        assert!(Rc::ptr_eq(&body, &shared), "copied twice for one segment");
        let buffer = body.as_ptr();
        drop((body, shared));

        // The next segment: a new playlist, and the scratch buffer reused for its audio.
        segment(&mut writer, &mut segments, &mount, 2);
        let list = mount.hls.load();
        let next = cache.playlist(&mount, &list).unwrap();
        assert!(!Rc::ptr_eq(&first, &next));
        assert!(String::from_utf8_lossy(&next.body).ends_with("-1.mp3\n"));
        let newest = list.segments.back().unwrap();
        let body = cache.newest_segment(&mount, &list, newest).unwrap();
        assert_eq!(body.as_ptr(), buffer, "the scratch was not reused");
        assert_eq!(body[newest.tag.len()], 1);

        // A response still sending the old copy keeps it whole; the next gets a new buffer.
        segment(&mut writer, &mut segments, &mount, 3);
        let list = mount.hls.load();
        let newest = list.segments.back().unwrap();
        let fresh = cache.newest_segment(&mount, &list, newest).unwrap();
        assert!(!Rc::ptr_eq(&body, &fresh));
        assert_eq!(body[newest.tag.len()], 1);
        assert_eq!(fresh[newest.tag.len()], 2);

        // Once the ring has overwritten a segment, no copy of it is made.
        for n in 4..12 {
            segment(&mut writer, &mut segments, &mount, n);
        }
        let stale = list.segments.back().unwrap();
        assert!(stale.start < mount.ring.oldest_valid());
        let mut cache = Cache::default();
        assert!(cache.newest_segment(&mount, &list, stale).is_none());
        // Nor does a playlist list it.
        let text = cache.playlist(&mount, &mount.hls.load()).unwrap();
        assert!(!String::from_utf8_lossy(&text.body).contains(&format!("-{}.mp3", stale.sequence)));
    }
}
