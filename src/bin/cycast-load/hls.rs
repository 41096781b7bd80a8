//! `--hls`: clients that play an HLS playlist the way players do, and check what they get.
//!
//! Each client reloads the playlist every target duration (half of it when nothing changed,
//! as RFC 8216 §6.3.4 asks), starts three segments from the live edge like hls.js and Safari,
//! and fetches every new segment. Each segment must start with an ID3 tag carrying the
//! `com.apple.streaming.transportStreamTimestamp` PRIV frame, followed by whole MP3 or ADTS
//! frames back to back; consecutive segments' timestamps must differ by the previous
//! segment's duration in 90 kHz ticks, and `#EXTINF` must match the frames.
//!
//! A stall is a reload that still shows no new segment more than 1.5 target durations after
//! the last new one appeared (or that fails). Underruns come from the same player model as
//! the stream listeners', fed with the segments' playing time as they arrive.
//!
//! Like browsers and AVPlayer, a client keeps its connection for its next request when the
//! server allows it (HTTP/1.1 keep-alive) and connects again when the server closed it. A
//! small pool of threads serves all clients from a queue ordered by when each is next due;
//! every request has a timeout.

use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::player::Player;
use super::report::{sample_server, ServerUsage};
use super::sys::clock_ticks_per_second;
use cycast::url::HttpUrl;

use super::ListenOptions;
use cycast::ingest::adts::parse_adts_header;
use cycast::ingest::mp3::parse_header;

/// Owner of the PRIV frame that carries a packed-audio segment's timestamp.
const TIMESTAMP_OWNER: &[u8] = b"com.apple.streaming.transportStreamTimestamp";
/// Timestamps are 33-bit.
const TIMESTAMP_MASK: u64 = 0x1_FFFF_FFFF;
/// Segments behind the live edge a client starts at, like hls.js and Safari.
const START_BEHIND: usize = 3;
/// Time allowed for one request (connect, send, whole answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A playlist or segment larger than this is not one.
const MAX_BODY: usize = 16 << 20;
/// Requesting threads at most.
const MAX_WORKERS: usize = 64;

/// One `#EXTINF` entry of a media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Media sequence number.
    pub sequence: u64,
    /// `#EXTINF` duration in seconds.
    pub duration: f64,
    /// Segment URI as written.
    pub uri: String,
    /// Preceded by `#EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
}

/// The parts of a live media playlist a player needs.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// `#EXT-X-TARGETDURATION` in seconds.
    pub target: u64,
    /// The segments, oldest first.
    pub entries: Vec<Entry>,
}

/// Parses a media playlist; the error says what is wrong.
pub fn parse_playlist(text: &str) -> Result<MediaPlaylist, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err("playlist does not start with #EXTM3U".into());
    }
    let mut target = None;
    let mut sequence = 0u64;
    let mut entries = Vec::new();
    let mut duration = None;
    let mut discontinuity = false;
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = Some(
                v.parse()
                    .map_err(|_| format!("bad target duration {v:?}"))?,
            );
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            sequence = v.parse().map_err(|_| format!("bad media sequence {v:?}"))?;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let v = v.split(',').next().unwrap_or("");
            let d: f64 = v.parse().map_err(|_| format!("bad #EXTINF {v:?}"))?;
            if !d.is_finite() || d <= 0.0 {
                return Err(format!("bad #EXTINF {v:?}"));
            }
            duration = Some(d);
        } else if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if !line.starts_with('#') {
            let duration = duration
                .take()
                .ok_or_else(|| format!("segment {line:?} without #EXTINF"))?;
            entries.push(Entry {
                sequence: sequence + entries.len() as u64,
                duration,
                uri: line.to_string(),
                discontinuity: std::mem::take(&mut discontinuity),
            });
        }
    }
    let target = target.ok_or("no #EXT-X-TARGETDURATION")?;
    if target == 0 {
        return Err("#EXT-X-TARGETDURATION is 0".into());
    }
    Ok(MediaPlaylist { target, entries })
}

/// What one segment holds, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFacts {
    /// 90 kHz timestamp of its first sample, from the PRIV frame.
    pub timestamp: u64,
    /// Audio frames.
    pub frames: u64,
    /// Samples per channel in all its frames.
    pub samples: u64,
    /// Sample rate of its frames.
    pub sample_rate: u32,
}

impl SegmentFacts {
    /// Playing time in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples as f64 / self.sample_rate as f64
    }
}

fn syncsafe(b: &[u8]) -> usize {
    b.iter().fold(0, |acc, &x| acc << 7 | (x & 0x7F) as usize)
}

/// The timestamp PRIV frame of the ID3 tag at the start of `segment`, and the tag's length.
pub fn segment_timestamp(segment: &[u8]) -> Result<(u64, usize), String> {
    if segment.len() < 10 || &segment[..3] != b"ID3" {
        return Err("segment does not start with an ID3 tag".into());
    }
    let version = segment[3];
    let tag_len = 10 + syncsafe(&segment[6..10]);
    let tag = segment
        .get(10..tag_len)
        .ok_or("ID3 tag longer than the segment")?;
    let mut pos = 0;
    while pos + 10 <= tag.len() && tag[pos] != 0 {
        let size = if version >= 4 {
            syncsafe(&tag[pos + 4..pos + 8])
        } else {
            u32::from_be_bytes(tag[pos + 4..pos + 8].try_into().unwrap()) as usize
        };
        let body = tag
            .get(pos + 10..pos + 10 + size)
            .ok_or("ID3 frame longer than its tag")?;
        if &tag[pos..pos + 4] == b"PRIV" && body.starts_with(TIMESTAMP_OWNER) {
            let value = body
                .get(TIMESTAMP_OWNER.len()..)
                .filter(|v| v.len() == 9 && v[0] == 0)
                .ok_or("timestamp PRIV frame is not 8 bytes")?;
            let ts = u64::from_be_bytes(value[1..].try_into().unwrap());
            if ts > TIMESTAMP_MASK {
                return Err(format!("timestamp {ts} is wider than 33 bits"));
            }
            return Ok((ts, tag_len));
        }
        pos += 10 + size;
    }
    Err("no com.apple.streaming.transportStreamTimestamp PRIV frame".into())
}

/// Checks a whole segment: the timestamp tag, then MP3 or ADTS frames from its first audio
/// byte to its last, back to back.
pub fn check_segment(segment: &[u8]) -> Result<SegmentFacts, String> {
    let (timestamp, mut pos) = segment_timestamp(segment)?;
    let mut facts = SegmentFacts {
        timestamp,
        frames: 0,
        samples: 0,
        sample_rate: 0,
    };
    while pos < segment.len() {
        let rest = &segment[pos..];
        let (len, samples, rate) = if let Some(h) = parse_header(rest) {
            (h.frame_len, h.samples, h.sample_rate)
        } else if let Some(h) = parse_adts_header(rest) {
            (h.frame_len, h.samples, h.sample_rate)
        } else {
            return Err(format!(
                "no frame header at byte {pos} (after {} frames)",
                facts.frames
            ));
        };
        if len == 0 || pos + len > segment.len() {
            return Err(format!("the frame at byte {pos} is cut short"));
        }
        if facts.sample_rate != 0 && facts.sample_rate != rate {
            return Err(format!(
                "sample rate changes from {} to {rate} inside a segment",
                facts.sample_rate
            ));
        }
        facts.sample_rate = rate;
        facts.frames += 1;
        facts.samples += samples as u64;
        pos += len;
    }
    if facts.frames == 0 {
        return Err("segment holds no audio frame".into());
    }
    Ok(facts)
}

/// Whether `next` follows `prev` in time: its timestamp is `prev`'s plus `prev`'s samples in
/// 90 kHz ticks (the server rounds the cumulative count, so one tick either way), modulo 2^33.
pub fn timestamps_chain(prev: &SegmentFacts, next: &SegmentFacts) -> bool {
    let expected = prev.samples as f64 * 90_000.0 / prev.sample_rate as f64;
    let delta = next.timestamp.wrapping_sub(prev.timestamp) & TIMESTAMP_MASK;
    (delta as f64 - expected).abs() <= 1.0
}

/// Totals of an `--hls` run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HlsReport {
    /// Playlist URL.
    pub url: String,
    /// Clients run.
    pub clients: u32,
    /// Run length in seconds.
    pub duration_s: f64,
    /// Playlist requests answered 200.
    pub playlist_requests: u64,
    /// Playlist requests that failed or were not a valid playlist.
    pub playlist_errors: u64,
    /// Segments fetched and checked.
    pub segments: u64,
    /// Segment requests that failed (connect, status, timeout).
    pub segment_errors: u64,
    /// Segment bytes received.
    pub bytes: u64,
    /// Segments without a valid timestamp tag, or whose frames do not chain.
    pub bad_segments: u64,
    /// Consecutive segments whose timestamps differ by other than the first one's duration.
    pub timestamp_breaks: u64,
    /// Segments whose `#EXTINF` is off their frames' duration by more than a millisecond.
    pub extinf_mismatches: u64,
    /// Reloads that found no new segment 1.5 target durations after the last one.
    pub stalls: u64,
    /// Clients that saw at least one stall.
    pub clients_with_stalls: u64,
    /// Modelled player underruns.
    pub underruns: u64,
    /// Time the modelled players spent rebuffering, summed, in seconds.
    pub rebuffer_s: f64,
    /// Clients whose modelled player started.
    pub clients_playing: u64,
    /// The server's CPU and memory from the end of the ramp to the end of the run, with
    /// `--pid` (per GB of segment bytes fetched meanwhile).
    pub server: Option<ServerUsage>,
    /// The first few problems seen, for the operator.
    pub first_errors: Vec<String>,
}

impl HlsReport {
    /// A short text table.
    pub fn text(&self) -> String {
        let mut out = format!(
            "cycast-load --hls {url}: {clients} clients, {d:.1} s\n\
             playlists  {pl} fetched, {ple} failed\n\
             segments   {s} fetched ({mb:.1} MB), {se} failed, {bad} bad, {tb} timestamp breaks, {em} EXTINF mismatches\n\
             playback   {playing} playing, {st} stalls on {sc} clients, {u} underruns, {rb:.1} s rebuffering\n",
            url = self.url,
            clients = self.clients,
            d = self.duration_s,
            pl = self.playlist_requests,
            ple = self.playlist_errors,
            s = self.segments,
            mb = self.bytes as f64 / 1e6,
            se = self.segment_errors,
            bad = self.bad_segments,
            tb = self.timestamp_breaks,
            em = self.extinf_mismatches,
            playing = self.clients_playing,
            st = self.stalls,
            sc = self.clients_with_stalls,
            u = self.underruns,
            rb = self.rebuffer_s,
        );
        if let Some(u) = &self.server {
            out.push_str(&format!(
                "server     pid {}: {:.2} CPU s ({:.1}% of a core), {} CPU s/GB, RSS {:.1} -> {:.1} MB\n",
                u.pid,
                u.cpu_seconds,
                u.cpu_share * 100.0,
                u.cpu_seconds_per_gb
                    .map_or("-".to_string(), |c| format!("{c:.2}")),
                u.rss_start_mb,
                u.rss_end_mb,
            ));
        }
        for e in &self.first_errors {
            out.push_str(&format!("  {e}\n"));
        }
        out
    }
}

/// Problems listed in the report at most.
const ERRORS_KEPT: usize = 10;

/// One client between requests.
struct Client {
    /// Number, in its user agent so the server counts each client as a session.
    id: u32,
    /// Next segment to fetch; `None` before the first playlist.
    next: Option<u64>,
    /// The last segment fetched, to chain the next one's timestamp to.
    prev: Option<SegmentFacts>,
    /// When a new segment was last seen in the playlist (or the client started).
    last_new: Instant,
    /// Whether the current wait for a new segment already counted as a stall.
    stalled: bool,
    /// Stalls seen.
    stalls: u64,
    /// The modelled player, fed one "byte" per millisecond of audio (see [`MS_KBPS`]).
    player: Player,
    /// The connection the server kept open after the last answer.
    conn: Option<TcpStream>,
}

/// The player model converts bytes to time at a bitrate; at 8 kbps one byte is one
/// millisecond, so segments feed it their playing time.
const MS_KBPS: u32 = 8;

/// What all workers share.
struct Shared {
    /// Clients by id.
    clients: Vec<Mutex<Client>>,
    /// (due time, client) of clients waiting for their next reload; earliest first.
    queue: Mutex<BinaryHeap<std::cmp::Reverse<(Instant, u32)>>>,
    /// Signalled when the queue changes.
    wake: Condvar,
    /// Totals.
    report: Mutex<HlsReport>,
    /// The playlist URL.
    url: HttpUrl,
    /// Its address.
    addr: SocketAddr,
    /// End of the run.
    end: Instant,
}

impl Shared {
    fn error(&self, what: String) {
        let mut r = self.report.lock().unwrap();
        if r.first_errors.len() < ERRORS_KEPT {
            r.first_errors.push(what);
        }
    }
}

/// Runs `opts.listeners` HLS clients against the playlist at `opts.url`.
pub fn run(opts: &ListenOptions) -> Result<HlsReport, String> {
    let url = HttpUrl::parse(&opts.url).map_err(|e| format!("--url: {e}"))?;
    let addr = super::resolve_ipv4(&url)?;
    if opts.listeners == 0 {
        return Err("--listeners must be at least 1".into());
    }
    if !opts.ramp.is_finite() || opts.ramp <= 0.0 {
        return Err("--ramp must be positive".into());
    }
    if !opts.duration.is_finite() || opts.duration <= 0.0 || opts.duration > 86_400.0 {
        return Err("--duration must be positive (and at most a day)".into());
    }
    if !opts.prebuffer.is_finite() || opts.prebuffer < 0.0 {
        return Err("--prebuffer must not be negative".into());
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(opts.duration);
    let clients: Vec<Mutex<Client>> = (0..opts.listeners)
        .map(|id| {
            let mut player = Player::new(Duration::from_secs_f64(opts.prebuffer));
            player.set_bitrate(MS_KBPS);
            Mutex::new(Client {
                id,
                next: None,
                prev: None,
                last_new: start,
                stalled: false,
                stalls: 0,
                player,
                conn: None,
            })
        })
        .collect();
    let queue = (0..opts.listeners)
        .map(|id| {
            let due = start + Duration::from_secs_f64(id as f64 / opts.ramp);
            std::cmp::Reverse((due, id))
        })
        .collect();
    let shared = Arc::new(Shared {
        clients,
        queue: Mutex::new(queue),
        wake: Condvar::new(),
        report: Mutex::new(HlsReport {
            url: opts.url.clone(),
            clients: opts.listeners,
            ..Default::default()
        }),
        url,
        addr,
        end,
    });
    let workers = (opts.listeners as usize / 8).clamp(2, MAX_WORKERS);
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let shared = shared.clone();
            std::thread::spawn(move || worker(&shared))
        })
        .collect();
    // The server is measured once every client has started (the steady phase).
    let ticks = clock_ticks_per_second();
    let steady_from = (start + Duration::from_secs_f64(opts.listeners as f64 / opts.ramp)).min(end);
    let mut server_start = None;
    let mut last_progress = Instant::now();
    while Instant::now() < end {
        std::thread::sleep(
            Duration::from_millis(200).min(end.saturating_duration_since(Instant::now())),
        );
        if let (Some(pid), None) = (opts.pid, &server_start) {
            if Instant::now() >= steady_from {
                let bytes = shared.report.lock().unwrap().bytes;
                server_start =
                    sample_server(pid, &opts.also_pid, ticks).map(|s| (s, Instant::now(), bytes));
            }
        }
        if !opts.quiet && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let r = shared.report.lock().unwrap();
            eprint!(
                "\r{:5.0} s  playlists {}  segments {}  stalls {}  errors {}   ",
                start.elapsed().as_secs_f64(),
                r.playlist_requests,
                r.segments,
                r.stalls,
                r.playlist_errors + r.segment_errors + r.bad_segments
            );
        }
    }
    shared.wake.notify_all();
    for t in threads {
        let _ = t.join();
    }
    if !opts.quiet {
        eprintln!();
    }
    let now = Instant::now();
    let mut report = shared.report.lock().unwrap().clone();
    report.duration_s = (now - start).as_secs_f64();
    if let Some(pid) = opts.pid {
        match (server_start, sample_server(pid, &opts.also_pid, ticks)) {
            (Some((a, at, bytes)), Some(b)) => {
                let secs = (now - at).as_secs_f64();
                report.server = Some(ServerUsage::between(pid, a, b, secs, report.bytes - bytes));
            }
            _ => eprintln!(
                "cycast-load: could not read /proc/{pid} at both ends of the steady phase"
            ),
        }
    }
    for client in &shared.clients {
        let mut c = client.lock().unwrap();
        c.player.finish(now);
        report.underruns += c.player.underruns as u64;
        report.rebuffer_s += c.player.rebuffer.as_secs_f64();
        report.clients_playing += c.player.started() as u64;
        report.clients_with_stalls += (c.stalls > 0) as u64;
    }
    Ok(report)
}

/// Takes due clients off the queue and reloads them until the run ends.
fn worker(shared: &Shared) {
    loop {
        let id = {
            let mut queue = shared.queue.lock().unwrap();
            loop {
                let now = Instant::now();
                if now >= shared.end {
                    return;
                }
                match queue.peek() {
                    Some(std::cmp::Reverse((due, id))) if *due <= now => {
                        let id = *id;
                        queue.pop();
                        break id;
                    }
                    Some(std::cmp::Reverse((due, _))) => {
                        let wait = (*due).min(shared.end) - now;
                        queue = shared.wake.wait_timeout(queue, wait).unwrap().0;
                    }
                    None => {
                        queue = shared.wake.wait_timeout(queue, shared.end - now).unwrap().0;
                    }
                }
            }
        };
        let next = reload(shared, &mut shared.clients[id as usize].lock().unwrap());
        shared
            .queue
            .lock()
            .unwrap()
            .push(std::cmp::Reverse((next, id)));
        shared.wake.notify_one();
    }
}

/// One reload: fetch the playlist, then every new segment. Returns when to reload next.
fn reload(shared: &Shared, client: &mut Client) -> Instant {
    let agent = format!(
        "cycast-load/{} hls-{}",
        env!("CARGO_PKG_VERSION"),
        client.id
    );
    let started = Instant::now();
    let fallback_target = Duration::from_secs(1);
    let path = &shared.url.path;
    let playlist = get(shared, &mut client.conn, path, &agent).and_then(|body| {
        let text = String::from_utf8(body).map_err(|_| "playlist is not UTF-8".to_string())?;
        parse_playlist(&text)
    });
    let playlist = match playlist {
        Ok(p) => {
            shared.report.lock().unwrap().playlist_requests += 1;
            p
        }
        Err(e) => {
            shared.report.lock().unwrap().playlist_errors += 1;
            shared.error(format!("client {}: playlist: {e}", client.id));
            note_stall(shared, client, started, None);
            return Instant::now() + fallback_target;
        }
    };
    let target = Duration::from_secs(playlist.target);
    let first_new = match client.next {
        Some(next) => next,
        None => {
            let start = playlist.entries.len().saturating_sub(START_BEHIND);
            playlist.entries.get(start).map_or(0, |e| e.sequence)
        }
    };
    let new: Vec<&Entry> = playlist
        .entries
        .iter()
        .filter(|e| e.sequence >= first_new)
        .collect();
    if new.is_empty() {
        note_stall(shared, client, started, Some(target));
        // RFC 8216 §6.3.4: an unchanged playlist is reloaded after half the target duration.
        return started + target / 2;
    }
    client.last_new = started;
    client.stalled = false;
    if client
        .next
        .is_some_and(|next| new[0].sequence != next && Instant::now() < shared.end)
    {
        // The segments between fell out of the window before this reload saw them.
        shared.error(format!(
            "client {}: segments {}..{} left the playlist unseen",
            client.id,
            client.next.unwrap_or(0),
            new[0].sequence
        ));
        client.prev = None;
    }
    for entry in new {
        if Instant::now() >= shared.end {
            break;
        }
        if entry.discontinuity {
            client.prev = None;
        }
        fetch_segment(shared, client, entry, &agent);
        client.next = Some(entry.sequence + 1);
    }
    started + target
}

/// A reload without a new segment: a stall once 1.5 target durations have passed since the
/// last one (every failed reload past that point is part of the same stall).
fn note_stall(shared: &Shared, client: &mut Client, now: Instant, target: Option<Duration>) {
    let limit = target.map_or(Duration::from_secs(6), |t| t * 3 / 2);
    if now.saturating_duration_since(client.last_new) > limit && !client.stalled {
        client.stalled = true;
        client.stalls += 1;
        shared.report.lock().unwrap().stalls += 1;
        shared.error(format!(
            "client {}: no new segment for {:.1} s",
            client.id,
            now.saturating_duration_since(client.last_new).as_secs_f64()
        ));
    }
}

/// Fetches and checks one segment, and feeds its playing time to the player model.
fn fetch_segment(shared: &Shared, client: &mut Client, entry: &Entry, agent: &str) {
    let body = match resolve(&shared.url, &entry.uri)
        .and_then(|path| get(shared, &mut client.conn, &path, agent))
    {
        Ok(b) => b,
        Err(e) => {
            shared.report.lock().unwrap().segment_errors += 1;
            shared.error(format!("client {}: segment {}: {e}", client.id, entry.uri));
            client.prev = None;
            return;
        }
    };
    let now = Instant::now();
    let mut report = shared.report.lock().unwrap();
    report.segments += 1;
    report.bytes += body.len() as u64;
    let facts = match check_segment(&body) {
        Ok(f) => f,
        Err(e) => {
            report.bad_segments += 1;
            drop(report);
            shared.error(format!("client {}: segment {}: {e}", client.id, entry.uri));
            client.prev = None;
            return;
        }
    };
    let mut problems = Vec::new();
    if (facts.seconds() - entry.duration).abs() > 0.001 {
        report.extinf_mismatches += 1;
        problems.push(format!(
            "#EXTINF {} but its frames last {:.6} s",
            entry.duration,
            facts.seconds()
        ));
    }
    if let Some(prev) = &client.prev {
        if !timestamps_chain(prev, &facts) {
            report.timestamp_breaks += 1;
            problems.push(format!(
                "timestamp {} does not follow {} + {} samples at {} Hz",
                facts.timestamp, prev.timestamp, prev.samples, prev.sample_rate
            ));
        }
    }
    drop(report);
    for p in problems {
        shared.error(format!("client {}: segment {}: {p}", client.id, entry.uri));
    }
    client.prev = Some(facts);
    let ms = facts.samples * 1000 / facts.sample_rate as u64;
    client.player.on_audio(now, ms as usize);
}

/// The request path of a segment URI, relative to the playlist's URL.
fn resolve(playlist: &HttpUrl, uri: &str) -> Result<String, String> {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        let u = HttpUrl::parse(uri).map_err(|e| format!("{uri}: {e}"))?;
        if u.host != playlist.host || u.port != playlist.port {
            return Err(format!("{uri}: segments on another host are not followed"));
        }
        return Ok(u.path);
    }
    if uri.starts_with('/') {
        return Ok(uri.to_string());
    }
    let path = playlist.path.split('?').next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Ok(format!("{dir}{uri}"))
}

/// A GET of `path` on the playlist's server, on the connection `conn` kept open if there is
/// one: the body of a 200 answer, else what went wrong. The connection is kept when the
/// answer allows it; a kept one the server has closed meanwhile is replaced once.
fn get(
    shared: &Shared,
    conn: &mut Option<TcpStream>,
    path: &str,
    agent: &str,
) -> Result<Vec<u8>, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {agent}\r\nAccept: */*\r\n\r\n",
        shared.url.host_header()
    );
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    if let Some(mut stream) = conn.take() {
        match exchange(&mut stream, request.as_bytes(), deadline) {
            Ok((body, keep)) => {
                if keep {
                    *conn = Some(stream);
                }
                return body;
            }
            // Closed before any answer: the server ended the idle connection.
            Err(None) => {}
            Err(Some(e)) => return Err(e),
        }
    }
    let mut stream = TcpStream::connect_timeout(&shared.addr, REQUEST_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    match exchange(&mut stream, request.as_bytes(), deadline) {
        Ok((body, keep)) => {
            if keep {
                *conn = Some(stream);
            }
            body
        }
        Err(e) => Err(e.unwrap_or_else(|| "closed before answering".into())),
    }
}

/// One answer: the 200 body (or what went wrong with it) and whether the connection may carry
/// the next request.
type Exchanged = (Result<Vec<u8>, String>, bool);

/// Sends `request` and reads one answer by `deadline`: its 200 body (or what went wrong with
/// it) and whether the connection may carry the next request. `Err(None)` when the
/// connection failed before any byte of an answer came, `Err(Some(..))` for other failures.
fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    deadline: Instant,
) -> Result<Exchanged, Option<String>> {
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|_| stream.write_all(request))
        .map_err(|_| None)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let mut head: Option<(usize, String)> = None;
    let mut length = None;
    loop {
        if let (Some((end, _)), Some(len)) = (&head, length) {
            if answer.len() >= end + 4 + len {
                break;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Some("timed out".into()));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| Some(format!("receive: {e}")))?;
        match stream.read(&mut buf) {
            Ok(0) if answer.is_empty() => return Err(None),
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() > MAX_BODY {
                    return Err(Some("answer too large".into()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) if answer.is_empty() => return Err(None),
            Err(e) => return Err(Some(format!("receive: {e}"))),
        }
        if head.is_none() {
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&answer[..end]).into_owned();
                length = header_value(&text, "content-length").and_then(|v| v.parse().ok());
                head = Some((end, text));
            }
        }
    }
    let (end, head) = head.ok_or_else(|| Some("no complete answer head".to_string()))?;
    let body = answer[end + 4..].to_vec();
    let keep = length == Some(body.len())
        && head.starts_with("HTTP/1.1")
        && !header_value(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Ok((Err(format!("answered {status:?}")), false));
    }
    if let Some(length) = length {
        if length != body.len() {
            return Ok((
                Err(format!(
                    "Content-Length {length} but {} bytes came",
                    body.len()
                )),
                false,
            ));
        }
    }
    Ok((Ok(body), keep))
}

/// The value of header `name` in a response head.
fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cycast::hls::id3::segment_tag;
    use cycast::ingest::mp3::silence_frame;

    fn segment(timestamp: u64, frames: usize) -> Vec<u8> {
        let mut out = segment_tag(timestamp, "Artist - Title");
        for _ in 0..frames {
            out.extend_from_slice(&silence_frame(128, 44100, true));
        }
        out
    }

    #[test]
    fn playlists_parse_with_sequence_numbers_and_discontinuities() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7\n\
                    #EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n#EXTINF:4.022857,\na-7.mp3\n\
                    #EXT-X-DISCONTINUITY\n#EXTINF:3.5,\na-8.mp3\n";
        let p = parse_playlist(text).unwrap();
        assert_eq!(p.target, 4);
        assert_eq!(p.entries.len(), 2);
        assert_eq!(
            (p.entries[0].sequence, p.entries[0].discontinuity),
            (7, false)
        );
        assert_eq!(
            (
                p.entries[1].sequence,
                p.entries[1].discontinuity,
                p.entries[1].uri.as_str()
            ),
            (8, true, "a-8.mp3")
        );
        assert!(parse_playlist("#EXTINF:4,\nx.mp3\n").is_err());
        assert!(parse_playlist("#EXTM3U\n#EXTINF:4,\nx.mp3\n").is_err());
        assert!(parse_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:4\nx.mp3\n").is_err());
        assert!(parse_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:nan,\nx\n").is_err());
    }

    #[test]
    fn a_segment_from_the_servers_tag_checks_out() {
        let seg = segment(0x1_2345_6789, 10);
        let facts = check_segment(&seg).unwrap();
        assert_eq!(facts.timestamp, 0x1_2345_6789);
        assert_eq!(
            (facts.frames, facts.samples, facts.sample_rate),
            (10, 11_520, 44_100)
        );
    }

    #[test]
    fn broken_segments_are_refused_with_a_reason() {
        let seg = segment(0, 3);
        assert!(check_segment(&seg[..seg.len() - 1])
            .unwrap_err()
            .contains("cut short"));
        let tag_len = segment_timestamp(&seg).unwrap().1;
        let mut garbage = seg.clone();
        garbage[tag_len + 417] ^= 0xFF;
        assert!(check_segment(&garbage)
            .unwrap_err()
            .contains("no frame header"));
        assert!(check_segment(&seg[tag_len..]).unwrap_err().contains("ID3"));
        assert!(check_segment(&seg[..tag_len])
            .unwrap_err()
            .contains("no audio"));
        let mut other_owner = seg.clone();
        other_owner[20] = b'x';
        assert!(check_segment(&other_owner).unwrap_err().contains("PRIV"));
    }

    #[test]
    fn timestamps_chain_by_the_sample_count_across_the_33_bit_wrap() {
        let prev = SegmentFacts {
            timestamp: TIMESTAMP_MASK - 1000,
            frames: 10,
            samples: 11_520,
            sample_rate: 44_100,
        };
        // 11,520 samples at 44.1 kHz are 23,510.2 ticks.
        let mut next = SegmentFacts {
            timestamp: (TIMESTAMP_MASK - 1000 + 23_510) & TIMESTAMP_MASK,
            ..prev
        };
        assert!(timestamps_chain(&prev, &next));
        next.timestamp = (TIMESTAMP_MASK - 1000 + 23_511) & TIMESTAMP_MASK;
        assert!(timestamps_chain(&prev, &next));
        next.timestamp = (TIMESTAMP_MASK - 1000 + 23_600) & TIMESTAMP_MASK;
        assert!(!timestamps_chain(&prev, &next));
    }

    #[test]
    fn segment_uris_resolve_against_the_playlist() {
        let url = HttpUrl::parse("http://127.0.0.1:8000/live/stream/index.m3u8?x=1").unwrap();
        assert_eq!(resolve(&url, "1-2.mp3").unwrap(), "/live/stream/1-2.mp3");
        assert_eq!(resolve(&url, "/other/3.aac").unwrap(), "/other/3.aac");
        assert_eq!(
            resolve(&url, "http://127.0.0.1:8000/s/4.mp3").unwrap(),
            "/s/4.mp3"
        );
        assert!(resolve(&url, "http://elsewhere:8000/s/4.mp3").is_err());
    }
}
