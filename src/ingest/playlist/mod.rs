//! The fallback playlist: while no live source holds a configured mount, its files (or MP3
//! silence, when there are none) go on air through the mount's feed, exactly like a source's
//! frames, paced in real time.
//!
//! Frames come from the same header parser live ingest uses ([`Mp3Framer`]): pacing needs only
//! each frame's sample count and rate, and the parser already drops tags, Xing/Info frames and
//! garbage while passing audio through byte for byte. Decoding would cost far more and tell
//! nothing extra.
//!
//! Switching is cooperative on the single-threaded ingest core: the playlist checks the
//! mount's live flag right before every frame it pushes, so nothing of it follows the first
//! live frame; the release hook wakes it through a channel when the source leaves.
//!
//! This module is the player; which files there are is `scan`'s job (a directory or an
//! `.m3u` file), and in what order they play is `order`'s.

mod order;
mod scan;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::future;
use glommio::channels::local_channel::LocalReceiver;
use glommio::timer::sleep;

use super::id3::tag_title;
use super::mp3::{parse_header, silence_frame, FrameHeader, Mp3Framer};
use super::pacing::Pacer;
use super::IngestContext;
use crate::config::PlaylistConfig;
use crate::hls::segment::{Codec, FrameTiming};
use crate::logging::escape;
use crate::mount::{Mount, StreamInfo};
use order::Order;
pub use scan::parse_m3u;
use scan::Listing;

/// Bytes read from a file at a time; files are read in pieces so a large one never sits in
/// memory whole.
const READ_PIECE: usize = 256 * 1024;
/// Bytes read in one go without finding a frame before a file (or the rest of it) is given
/// up on, so a huge non-audio file cannot stall the ingest core.
const MAX_SEARCH: u64 = 16 * 1024 * 1024;
/// Released audio may fall this far behind real time (a stalled thread) before pacing
/// restarts from now instead of catching up in a burst.
const MAX_LAG: Duration = Duration::from_secs(2);
/// Silence format: the common MP3 broadcast format, which every player accepts.
const SILENCE_KBPS: u32 = 128;
/// Sample rate of the silence frames.
const SILENCE_RATE: u32 = 44100;

/// How often the playlist looks for reloaded settings.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Plays the playlist of `mount` whenever no live source holds it. Runs for the life of the
/// ingest core.
pub async fn run(ctx: Rc<IngestContext>, mount: Arc<Mount>, playlist: PlaylistConfig) {
    let wake = ctx.watch_release(mount.id);
    let skip = ctx.watch_skip(mount.id);
    let feed = match ctx.feed_for(&mount.name) {
        Ok(feed) => feed,
        Err(e) => {
            tracing::warn!(mount = %escape(&mount.name), "playlist not started: {e}");
            return;
        }
    };
    let chunk = Duration::from_millis(ctx.shared.config().broadcaster.chunk_ms);
    // One and a half chunks: each chunk is complete and published half a chunk before the
    // previous one has finished playing.
    let lead = chunk + chunk / 2;
    let mut player = Player::new(&playlist, &mount.name, lead, Instant::now());
    let mut settings = playlist;
    let mut checked = Instant::now();
    loop {
        // A reload may have changed the playlist settings; once a second is soon enough.
        if checked.elapsed() >= RELOAD_CHECK {
            checked = Instant::now();
            if let Some(reloaded) = ctx.shared.config().playlist_for(&mount.name) {
                if reloaded != settings {
                    player.reconfigure(&reloaded);
                    settings = reloaded;
                }
            }
        }
        if ctx.is_live(mount.id) {
            while ctx.is_live(mount.id) {
                // A skip while live has nothing to skip: it is consumed and dropped.
                future::or(signal(&wake), signal(&skip)).await;
            }
            player.resume(Instant::now());
            continue;
        }
        let now = Instant::now();
        let wait = player.pacer.wait(now);
        if !wait.is_zero() {
            let skipped = future::or(
                async {
                    sleep(wait).await;
                    false
                },
                async {
                    signal(&skip).await;
                    true
                },
            )
            .await;
            if skipped {
                player.skip();
            }
            continue;
        }
        // Nothing awaits from here to the push, so no source can claim the mount in between.
        let next = player.next_frame(now);
        let mut feed = feed.borrow_mut();
        if let Some(title) = next.announce {
            if !title.is_empty() {
                crate::observability::metrics::track_played(&mount.name);
            }
            let info = playlist_info(&feed.mount.info(), &next.header);
            feed.mount.set_info(info, Some(&title));
        }
        let (samples, rate) = (next.header.samples, next.header.sample_rate);
        let timing = FrameTiming {
            codec: Codec::Mp3,
            samples,
            sample_rate: rate,
            channels: next.header.channels,
        };
        feed.push_timed_frame(next.bytes, timing, next.header.duration_micros());
        drop(feed);
        player.pacer.advance(samples, rate);
    }
}

/// Completes on the next message; never if the sender is gone (so callers cannot spin).
async fn signal(rx: &LocalReceiver<()>) {
    if rx.recv().await.is_none() {
        future::pending::<()>().await;
    }
}

/// One frame to put on air.
struct Next<'a> {
    /// Its header, for pacing.
    header: FrameHeader,
    /// The whole frame.
    bytes: &'a [u8],
    /// A title to announce first: a track (or silence) starts, or the playlist is back on air.
    announce: Option<String>,
}

/// The playlist state of one mount: what to play, what is playing, and when.
struct Player {
    /// Mount path, for log lines.
    mount: String,
    /// Where the list of files comes from.
    listing: Listing,
    /// Lower-cased file name endings a directory scan accepts.
    extensions: Vec<String>,
    /// `playlist.resume`: continue the interrupted track after a live source leaves.
    resume: bool,
    /// Time between rescans of the listing.
    rescan_every: Duration,
    /// When the listing was last read; `None` before the first scan.
    last_scan: Option<Instant>,
    /// Play order over the listing.
    order: Order,
    /// The file being played.
    track: Option<Track>,
    /// Files that yielded no audio, with the stamp they had then: each is warned about once
    /// and skipped until it changes.
    bad: HashMap<PathBuf, Option<Stamp>>,
    /// Why the last scan found nothing at all (missing directory, unreadable .m3u).
    scan_error: Option<String>,
    /// Real-time schedule of everything this player releases.
    pacer: Pacer,
    /// The silence frame sent when there is nothing to play.
    silence: Vec<u8>,
    /// Header of [`silence`](Self::silence).
    silence_header: FrameHeader,
    /// Silence is on air (entered with one warning, left when a track starts).
    silent: bool,
    /// The mount's description must be stored with the next frame.
    announce: bool,
}

impl Player {
    fn new(cfg: &PlaylistConfig, mount: &str, lead: Duration, now: Instant) -> Self {
        let listing = Listing::from_config(cfg);
        let silence = silence_frame(SILENCE_KBPS, SILENCE_RATE, true);
        let silence_header = parse_header(&silence).expect("silence frames are valid");
        Self {
            mount: mount.to_string(),
            order: Order::new(cfg.shuffle, matches!(listing, Listing::Directory(_))),
            listing,
            extensions: cfg.extensions.iter().map(|e| e.to_lowercase()).collect(),
            resume: cfg.resume,
            rescan_every: Duration::try_from_secs_f64(cfg.rescan_interval)
                .unwrap_or(Duration::from_secs(10)),
            last_scan: None,
            track: None,
            bad: HashMap::new(),
            scan_error: None,
            pacer: Pacer::new(now, lead, MAX_LAG),
            silence,
            silence_header,
            silent: false,
            announce: true,
        }
    }

    /// Takes up playlist settings changed by a configuration reload. The track on air plays
    /// on; the new listing is read before the next one.
    fn reconfigure(&mut self, cfg: &PlaylistConfig) {
        self.listing = Listing::from_config(cfg);
        self.order = Order::new(cfg.shuffle, matches!(self.listing, Listing::Directory(_)));
        self.extensions = cfg.extensions.iter().map(|e| e.to_lowercase()).collect();
        self.resume = cfg.resume;
        self.rescan_every =
            Duration::try_from_secs_f64(cfg.rescan_interval).unwrap_or(Duration::from_secs(10));
        self.last_scan = None;
        self.bad.clear();
        tracing::info!(mount = %self.mount, playlist = %self.listing, "playlist settings reloaded");
    }

    /// A live source has left: start the clock over (its air time is not owed) and either
    /// continue the interrupted track or move on.
    fn resume(&mut self, now: Instant) {
        self.pacer.restart(now);
        if !self.resume {
            self.track = None;
        }
        // The source replaced the mount's description.
        self.announce = true;
    }

    /// An operator asked for the next track: it starts with the next frame, on schedule.
    fn skip(&mut self) {
        if let Some(track) = self.track.take() {
            tracing::info!(mount = %self.mount, file = %track.path.display(), "playlist: track skipped");
        }
    }

    /// The frame due now: from the current track, the next playable one, or silence.
    fn next_frame(&mut self, now: Instant) -> Next<'_> {
        if self.advance_track(now) {
            self.silent = false;
            let track = self.track.as_ref().expect("advance_track keeps the track");
            let announce = std::mem::take(&mut self.announce).then(|| {
                tracing::info!(mount = %self.mount, title = %escape(&track.title), file = %track.path.display(), "playlist: now playing");
                track.title.clone()
            });
            return Next {
                header: track.header,
                bytes: &track.frame,
                announce,
            };
        }
        if !self.silent {
            self.silent = true;
            self.announce = true;
            let why = self.scan_error.as_deref().unwrap_or("no playable files");
            tracing::warn!(mount = %self.mount, "playlist {}: {why}; sending silence until a source connects or files appear", self.listing);
        }
        let announce = std::mem::take(&mut self.announce).then(String::new);
        Next {
            header: self.silence_header,
            bytes: &self.silence,
            announce,
        }
    }

    /// Makes the current track hold its next frame, moving through the list as tracks end or
    /// turn out unplayable. False: nothing to play (silence).
    fn advance_track(&mut self, now: Instant) -> bool {
        // Silence retries the list only when a rescan is due, not for every frame.
        if self.track.is_none() && self.silent && !self.rescan_due(now) {
            return false;
        }
        // Each failed file is marked bad and skipped, so this ends; the bound is a backstop.
        for _ in 0..self.order.len() + 2 {
            if self.track.is_none() && !self.start_track(now) {
                return false;
            }
            let track = self.track.as_mut().expect("started above");
            match track.next_frame() {
                Ok(true) => return true,
                Ok(false) if track.frames > 0 => {}
                Ok(false) => {
                    let path = track.path.clone();
                    self.mark_bad(&path, "no MPEG audio frames (only MP3 is played)");
                }
                Err(e) => {
                    let path = track.path.clone();
                    self.mark_bad(&path, &e.to_string());
                }
            }
            self.track = None;
        }
        false
    }

    /// Opens the next playable file. False when there is none.
    fn start_track(&mut self, now: Instant) -> bool {
        if self.rescan_due(now) {
            self.rescan(now);
        }
        loop {
            let bad = &self.bad;
            let Some(path) = self.order.next(|p| is_known_bad(bad, p)) else {
                return false;
            };
            match Track::open(&path) {
                Ok(track) => {
                    self.track = Some(track);
                    self.announce = true;
                    return true;
                }
                Err(e) => self.mark_bad(&path, &e.to_string()),
            }
        }
    }

    fn rescan_due(&self, now: Instant) -> bool {
        self.last_scan.map_or(true, |at| {
            now.saturating_duration_since(at) >= self.rescan_every
        })
    }

    /// Reads the listing again and updates the play order if it changed.
    fn rescan(&mut self, now: Instant) {
        self.last_scan = Some(now);
        let entries = match self.listing.scan(&self.extensions) {
            Ok(entries) => {
                self.scan_error = None;
                entries
            }
            Err(e) => {
                self.scan_error = Some(e.to_string());
                Vec::new()
            }
        };
        if self.order.set_entries(entries) {
            let files = self.order.len();
            tracing::info!(mount = %self.mount, "playlist {}: {files} files", self.listing);
            let current: HashSet<&PathBuf> = self.order.entries.iter().collect();
            self.bad.retain(|path, _| current.contains(path));
        }
    }

    /// Remembers an unplayable file and warns once about it (again only if it changes).
    fn mark_bad(&mut self, path: &Path, why: &str) {
        let stamp = Stamp::of(path);
        if self.bad.get(path) != Some(&stamp) {
            tracing::warn!(mount = %self.mount, "playlist: skipping {}: {why}", path.display());
            self.bad.insert(path.to_path_buf(), stamp);
        }
    }
}

/// The mount's description while the playlist (or its silence) is on air: the format of what
/// plays now; the stream's name and description stay as they were (the station's, or those the
/// last source announced, as the source's departure left them).
fn playlist_info(current: &StreamInfo, header: &FrameHeader) -> StreamInfo {
    StreamInfo {
        content_type: "audio/mpeg".into(),
        live: false,
        bitrate: Some(header.bitrate_kbps),
        audio_info: format!(
            "ice-samplerate={};ice-bitrate={};ice-channels={}",
            header.sample_rate, header.bitrate_kbps, header.channels
        ),
        source_agent: String::new(),
        source_addr: None,
        since: Some(SystemTime::now()),
        ..current.clone()
    }
}

/// Size and modification time of a file: a changed stamp means a bad file may be fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    /// File length in bytes.
    len: u64,
    /// Last modification.
    modified: Option<SystemTime>,
}

impl Stamp {
    /// The file's stamp, `None` if it cannot be read.
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

fn is_known_bad(bad: &HashMap<PathBuf, Option<Stamp>>, path: &Path) -> bool {
    bad.get(path).is_some_and(|stamp| *stamp == Stamp::of(path))
}

/// One file being played, read in pieces.
struct Track {
    /// The file's path, for logs and warnings.
    path: PathBuf,
    /// Open handle; positional reads, so nothing else tracks a cursor.
    file: File,
    /// Next byte of the file to read.
    offset: u64,
    /// End of file reached and the framer told so.
    eof: bool,
    /// Cuts the bytes into frames, dropping tags, Xing/Info frames and garbage.
    framer: Mp3Framer,
    /// Read buffer, reused for every piece.
    buf: Vec<u8>,
    /// Header of [`frame`](Self::frame) (a placeholder until the first frame is read).
    header: FrameHeader,
    /// The frame to put on air next, copied out of the framer.
    frame: Vec<u8>,
    /// Frames produced so far; zero at the end means the file is not MP3 audio.
    frames: u64,
    /// `Artist - Title` from the tags, else the file name without extension.
    title: String,
}

impl Track {
    /// Opens `path`, reads its title and the first piece of audio.
    fn open(path: &Path) -> io::Result<Track> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut buf = vec![0u8; READ_PIECE];
        let head = read_full_at(&file, &mut buf, 0)?;
        // The title needs the ID3v2 tag at the start and the ID3v1 tag in the last 128 bytes.
        let title = if len > (head + 128) as u64 {
            let mut sample = buf[..head].to_vec();
            let mut tail = [0u8; 128];
            let n = read_full_at(&file, &mut tail, len - 128)?;
            sample.extend_from_slice(&tail[..n]);
            tag_title(&sample)
        } else {
            tag_title(&buf[..head])
        }
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| {
            path.file_stem()
                .unwrap_or(path.as_os_str())
                .to_string_lossy()
                .into_owned()
        });
        let mut framer = Mp3Framer::new();
        framer.push(&buf[..head]);
        Ok(Track {
            path: path.to_path_buf(),
            file,
            offset: head as u64,
            eof: false,
            framer,
            buf,
            header: parse_header(&silence_frame(SILENCE_KBPS, SILENCE_RATE, true))
                .expect("silence frames are valid"),
            frame: Vec::new(),
            frames: 0,
            title,
        })
    }

    /// Puts the next frame into `frame`/`header`. False at the end of the audio.
    fn next_frame(&mut self) -> io::Result<bool> {
        let mut searched = 0u64;
        loop {
            if let Some((header, bytes)) = self.framer.next_frame() {
                self.header = header;
                self.frame.clear();
                self.frame.extend_from_slice(bytes);
                self.frames += 1;
                return Ok(true);
            }
            if self.eof || searched >= MAX_SEARCH {
                return Ok(false);
            }
            let n = read_full_at(&self.file, &mut self.buf, self.offset)?;
            if n == 0 {
                self.eof = true;
                self.framer.finish();
                continue;
            }
            self.offset += n as u64;
            searched += n as u64;
            self.framer.push(&self.buf[..n]);
        }
    }
}

/// Reads at `offset` until `buf` is full or the file ends; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed when dropped.
    pub(super) struct TempDir(
        /// The directory.
        pub(super) PathBuf,
    );

    impl TempDir {
        pub(super) fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "cycast-playlist-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        pub(super) fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(super) fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    fn frames(kbps: u32, count: usize) -> Vec<u8> {
        silence_frame(kbps, 44100, true).repeat(count)
    }

    #[test]
    fn track_reads_frames_title_and_ends() {
        let dir = TempDir::new("track");
        let mut bytes = Vec::new();
        // An ID3v2.3 tag with only a title, then audio larger than one read piece.
        let title = b"\x00Long Song";
        bytes.extend_from_slice(b"ID3\x03\x00\x00\x00\x00\x00");
        bytes.push((10 + title.len()) as u8);
        bytes.extend_from_slice(b"TIT2\x00\x00\x00");
        bytes.push(title.len() as u8);
        bytes.extend_from_slice(b"\x00\x00");
        bytes.extend_from_slice(title);
        let audio = frames(128, 1000);
        bytes.extend_from_slice(&audio);
        let path = dir.write("x.mp3", &bytes);
        let mut track = Track::open(&path).unwrap();
        assert_eq!(track.title, "Long Song");
        let mut out = Vec::new();
        while track.next_frame().unwrap() {
            out.extend_from_slice(&track.frame);
        }
        assert_eq!(out, audio);
        assert_eq!(track.frames, 1000);

        let untagged = dir.write("Plain Name.mp3", &frames(64, 3));
        assert_eq!(Track::open(&untagged).unwrap().title, "Plain Name");
        let text = dir.write("bad.mp3", &b"not audio at all\n".repeat(100));
        let mut bad = Track::open(&text).unwrap();
        assert!(!bad.next_frame().unwrap());
        assert_eq!(bad.frames, 0);
    }

    #[test]
    fn bad_files_are_skipped_once_and_silence_follows() {
        let dir = TempDir::new("player");
        dir.write("a.mp3", b"garbage");
        dir.write("b.mp3", b"");
        let cfg = PlaylistConfig {
            directory: dir.0.to_string_lossy().into_owned(),
            shuffle: false,
            ..PlaylistConfig::default()
        };
        let start = Instant::now();
        let mut player = Player::new(&cfg, "/t", Duration::from_millis(100), start);
        let next = player.next_frame(start);
        assert_eq!(next.header.bitrate_kbps, SILENCE_KBPS);
        assert!(next.announce.is_some());
        assert_eq!(player.bad.len(), 2);
        assert!(player.next_frame(start).announce.is_none());
        // A good file appears; the next rescan plays it.
        dir.write("c.mp3", &frames(64, 5));
        let later = start + Duration::from_secs(11);
        let next = player.next_frame(later);
        assert_eq!(next.header.bitrate_kbps, 64);
        assert_eq!(next.announce.unwrap(), "c");
        for _ in 0..4 {
            assert_eq!(player.next_frame(later).header.bitrate_kbps, 64);
        }
        // It loops; the bad files stay skipped.
        assert_eq!(player.next_frame(later).header.bitrate_kbps, 64);
        assert_eq!(player.bad.len(), 2);
    }

    #[test]
    fn skip_starts_the_next_track() {
        let dir = TempDir::new("skip");
        dir.write("a.mp3", &frames(64, 10));
        dir.write("b.mp3", &frames(96, 10));
        let cfg = PlaylistConfig {
            directory: dir.0.to_string_lossy().into_owned(),
            shuffle: false,
            ..PlaylistConfig::default()
        };
        let now = Instant::now();
        let mut player = Player::new(&cfg, "/t", Duration::from_millis(100), now);
        assert_eq!(player.next_frame(now).header.bitrate_kbps, 64);
        player.skip();
        let next = player.next_frame(now);
        assert_eq!(next.header.bitrate_kbps, 96);
        assert_eq!(next.announce.as_deref(), Some("b"));
    }

    #[test]
    fn resume_continues_or_moves_on() {
        let dir = TempDir::new("resume");
        dir.write("a.mp3", &frames(64, 10));
        dir.write("b.mp3", &frames(96, 10));
        for resume in [true, false] {
            let cfg = PlaylistConfig {
                directory: dir.0.to_string_lossy().into_owned(),
                shuffle: false,
                resume,
                ..PlaylistConfig::default()
            };
            let now = Instant::now();
            let mut player = Player::new(&cfg, "/t", Duration::from_millis(100), now);
            for _ in 0..3 {
                assert_eq!(player.next_frame(now).header.bitrate_kbps, 64);
            }
            player.resume(now);
            let next = player.next_frame(now);
            assert!(next.announce.is_some(), "title restored after live");
            let expect = if resume { 64 } else { 96 };
            assert_eq!(next.header.bitrate_kbps, expect);
        }
    }
}
