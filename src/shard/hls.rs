//! HLS requests on the listen port: `GET`/`HEAD /<mount>/index.m3u8` and the segments it
//! lists. Playlists are rendered from the mount's segment list; a segment is its ID3 tag
//! followed by the ring's bytes, copied piece by piece into a small buffer and validated like
//! the fan-out's reads, so no per-segment copy of the audio is made and no torn byte is sent.
//! Responses are built for caches: short-lived playlists, immutable segments with names that
//! never repeat, validators and conditional GET, byte ranges.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
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
    mounts: &crate::mount::MountTable,
    cfg: &Config,
    request: &Request,
    head_only: bool,
) -> Option<Answer> {
    let (mount_path, name) = request.path.rsplit_once('/')?;
    let segment_name = parse_segment_name(name);
    if name != PLAYLIST && segment_name.is_none() {
        return None;
    }
    let mount = mounts.find(mount_path)?;
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
        return Some(match render(&list, mount.ring.oldest_valid()) {
            Some(text) => Answer {
                reply: playlist_reply(&list, &text, request, head_only),
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
        Some(segment) => Some(Answer {
            reply: segment_reply(&mount, segment, request, head_only),
            hit: Some((mount.clone(), Kind::Segment)),
        }),
        None => not_found("This segment is not (or no longer) available\n"),
    }
}

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

fn playlist_reply(list: &SegmentList, text: &str, request: &Request, head_only: bool) -> Reply {
    let newest = list.segments.back();
    let modified = newest.map_or(list.epoch, |s| s.finished_ms);
    let etag = format!(
        "\"{}-{}-{}\"",
        list.epoch,
        list.window().next().map_or(0, |s| s.sequence),
        newest.map_or(0, |s| s.sequence)
    );
    let content_type = "application/vnd.apple.mpegurl";
    let cache = "max-age=1";
    if not_modified(request, &etag, modified) {
        let mut answer = head("304 Not Modified", content_type, cache, &etag, modified);
        answer.push_str("\r\n");
        return Reply::Whole(answer.into_bytes());
    }
    let mut answer = head("200 OK", content_type, cache, &etag, modified);
    answer.push_str(&format!("Content-Length: {}\r\n\r\n", text.len()));
    if !head_only {
        answer.push_str(text);
    }
    Reply::Whole(answer.into_bytes())
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

fn segment_reply(mount: &Mount, segment: &Segment, request: &Request, head_only: bool) -> Reply {
    let list_epoch = mount.hls.load().epoch;
    let etag = format!("\"{}-{}\"", list_epoch, segment.sequence);
    let content_type = segment.codec.content_type();
    let cache = "max-age=86400, immutable";
    let modified = segment.finished_ms;
    if not_modified(request, &etag, modified) {
        let mut answer = head("304 Not Modified", content_type, cache, &etag, modified);
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
    let mut answer = head(status, content_type, cache, &etag, modified);
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
    Reply::Segment {
        head: answer.into_bytes(),
        ring: mount.ring.clone(),
        tag: segment.tag.clone(),
        audio_start: segment.start,
        range,
    }
}

/// Sends `reply`; returns the bytes sent. A segment whose audio the writer overwrites
/// while it goes out is cut short (the connection closes before its announced length).
pub async fn send(stream: &mut Conn, reply: Reply) -> u64 {
    match reply {
        Reply::Whole(answer) => {
            let _ = stream.write_all(&answer).await;
            answer.len() as u64
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
            let mut sent = 0;
            if from < tag_len {
                let part = &tag[from as usize..to.min(tag_len) as usize];
                if stream.write_all(part).await.is_err() {
                    return 0;
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
