//! The dead-air fallback over loopback against the real binary: a live MP3 source that goes
//! silent for `silence_seconds` is replaced by the playlist (or its fallback mount) while it
//! stays connected, and comes back when it sends sound again; `silence_seconds = 0` never
//! switches. The status field and the metric follow.
//!
//! The live audio is ffmpeg's: a 440 Hz tone at 96 kbps, digital silence from 2 s to 6 s,
//! the tone again to 10 s. The playlist is the bundled demo track at 128 kbps, so in what a
//! listener receives the bitrate of each frame tells who was on air.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use cycast::ingest::mp3::{parse_header, FrameHeader};

/// Chunk duration of the servers here, so switches show up quickly.
const CHUNK_MS: u64 = 100;
/// Bitrate of the live source; the playlist's demo track is 128 kbps.
const LIVE_KBPS: u32 = 96;
/// Bitrate of the playlist.
const PLAYLIST_KBPS: u32 = 128;
/// `silence_seconds` in these tests.
const SILENCE_SECONDS: f64 = 2.0;
/// `silence_db` (the default).
const SILENCE_DB: f64 = -50.0;

/// A server config: one shard, 100 ms chunks, the demo track as playlist, dead air after 2 s,
/// the admin API on (password `pw`), and `extra` blocks.
fn config(music: &Path, extra: &str) -> String {
    format!(
        "server {{\n  shards = 1\n  admin_password = \"pw\"\n}}\n\
         broadcaster {{\n  chunk_ms = {CHUNK_MS}\n}}\n\
         playlist {{\n  directory = \"{}\"\n  shuffle = false\n}}\n\
         silence {{\n  seconds = {SILENCE_SECONDS}\n}}\n{extra}",
        music.display()
    )
}

/// A directory holding the bundled demo track.
fn music_dir() -> tempfile::TempDir {
    let music = tempfile::tempdir().unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("music/01-morning-tone.mp3");
    std::fs::copy(&demo, music.path().join("demo.mp3")).unwrap();
    music
}

/// Tone 0-2 s, digital silence 2-6 s, tone 6-10 s: MP3, 96 kbps stereo 44.1 kHz, no tags.
fn tone_silence_tone(dir: &Path) -> Vec<u8> {
    tone_then_silence_until(dir, 6, 10)
}

/// Tone until 2 s, digital silence until `silence_end` s, tone until `total` s.
fn tone_then_silence_until(dir: &Path, silence_end: u32, total: u32) -> Vec<u8> {
    let path = dir.join("live.mp3");
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:sample_rate=44100:duration={total},volume=volume=0:enable=between(t\\,2\\,{silence_end})"))
        .args(["-ac", "2", "-c:a", "libmp3lame", "-b:a", "96k"])
        .args(["-write_xing", "0", "-id3v2_version", "0", "-f", "mp3"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    std::fs::read(&path).unwrap()
}

/// The frames of `bytes` (which starts on a frame) with their headers.
fn frames_of(bytes: &[u8]) -> Vec<(usize, FrameHeader)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(h) = bytes.get(at..).and_then(parse_header) {
        if at + h.frame_len > bytes.len() {
            break;
        }
        frames.push((at, h));
        at += h.frame_len;
    }
    frames
}

/// Runs of consecutive frames with the same bitrate: (bitrate, first index, frame count).
fn bitrate_runs(frames: &[(usize, FrameHeader)]) -> Vec<(u32, usize, usize)> {
    let mut runs: Vec<(u32, usize, usize)> = Vec::new();
    for (i, (_, h)) in frames.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if run.0 == h.bitrate_kbps => run.2 += 1,
            _ => runs.push((h.bitrate_kbps, i, 1)),
        }
    }
    runs
}

/// Level of every frame of `bytes` in dBFS RMS, decoded in order with minimp3 (the first
/// frame or two of a cut-in stream may decode short of its bit reservoir).
fn frame_levels(bytes: &[u8]) -> Vec<f64> {
    let mut decoder = minimp3::Decoder::new(bytes);
    let mut levels = Vec::new();
    while let Ok(frame) = decoder.next_frame() {
        let n = frame.data.len().max(1) as f64;
        let sum: f64 = frame.data.iter().map(|&s| f64::from(s).powi(2)).sum();
        levels.push(10.0 * (sum / n / (32768.0 * 32768.0)).log10());
    }
    levels
}

/// A listener whose bytes a thread records.
struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    fn start(server: &Server, mount: &str) -> Capture {
        let listener = Listener::connect(server.listen, mount);
        assert!(
            listener.head.starts_with("HTTP/1.0 200"),
            "{}",
            listener.head
        );
        let bytes = Arc::new(Mutex::new(listener.body));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bytes.clone(), stop.clone());
        let mut stream = listener.stream;
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !s.load(Ordering::Relaxed) {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => b.lock().unwrap().extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
        });
        Capture {
            bytes,
            stop,
            thread: Some(thread),
        }
    }

    fn len(&self) -> usize {
        self.bytes.lock().unwrap().len()
    }

    /// Stops recording and returns everything received.
    fn finish(mut self) -> Vec<u8> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.bytes.lock().unwrap())
    }
}

/// A source streaming `audio` in real time to `mount` from a thread; after the last frame it
/// stays connected until [`LiveSource::hang_up`], which also cuts the sending short.
struct LiveSource {
    /// Tells the thread to close the connection.
    hang_up: mpsc::Sender<()>,
    /// Reports that every frame has been written.
    sent: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl LiveSource {
    fn start(server: &Server, mount: &str, audio: Vec<u8>) -> LiveSource {
        let mut source = Source::mp3(server.source, mount);
        let (hang_up, hung_up) = mpsc::channel();
        let (done, sent) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut audio_time = Duration::ZERO;
            for (at, h) in frames_of(&audio) {
                if hung_up.try_recv().is_ok() {
                    return;
                }
                source
                    .stream
                    .write_all(&audio[at..at + h.frame_len])
                    .expect("the server kept the source connected");
                audio_time += Duration::from_micros(h.duration_micros());
                sleep((start + audio_time).saturating_duration_since(Instant::now()));
            }
            let _ = done.send(());
            let _ = hung_up.recv_timeout(Duration::from_secs(30));
        });
        LiveSource {
            hang_up,
            sent,
            thread: Some(thread),
        }
    }

    /// Waits until the whole file has been written.
    fn wait_sent(&self) {
        self.sent
            .recv_timeout(Duration::from_secs(30))
            .expect("the source finished sending");
    }

    fn hang_up(mut self) {
        let _ = self.hang_up.send(());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// The `status-json.xsl` entry of `mount`.
fn source_status(server: &Server, mount: &str) -> serde_json::Value {
    let (_, body) = server.get("/status-json.xsl");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("status json");
    let source = &json["icestats"]["source"];
    let list = match source {
        serde_json::Value::Array(list) => list.clone(),
        one => vec![one.clone()],
    };
    list.into_iter()
        .find(|s| s["mount"] == mount)
        .unwrap_or_else(|| panic!("{mount} not in {json}"))
}

/// Polls `mount`'s status entry until `pred` holds; panics with the entry after `timeout`.
fn wait_status(
    server: &Server,
    mount: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let status = source_status(server, mount);
        if pred(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status}"
        );
        sleep(Duration::from_millis(25));
    }
}

/// The value of `cycast_source_silent` for `mount` in a scrape.
fn silent_metric(server: &Server, mount: &str) -> Option<f64> {
    let (_, body) = server.get("/metrics");
    let text = String::from_utf8_lossy(&body).into_owned();
    let series = format!("cycast_source_silent{{mount=\"{mount}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the metric reads `value` (the ingest core publishes it once a second).
fn wait_metric(server: &Server, mount: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while silent_metric(server, mount) != Some(value) {
        assert!(
            Instant::now() < deadline,
            "cycast_source_silent{{mount=\"{mount}\"}} never became {value}: {:?}",
            silent_metric(server, mount)
        );
        sleep(Duration::from_millis(50));
    }
}

/// `/admin/stats.json`'s entry for `mount`.
fn admin_stats(server: &Server, mount: &str) -> serde_json::Value {
    let request = "GET /admin/stats.json HTTP/1.1\r\nHost: localhost\r\n\
                   Authorization: Basic YWRtaW46cHc=\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(server.listen, request.as_bytes(), Duration::from_secs(5));
    let (head, body) = split_head(&answer);
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_slice(&body).expect("admin stats json");
    json["icestats"]["source"]
        .as_array()
        .and_then(|list| list.iter().find(|s| s["mount"] == mount).cloned())
        .unwrap_or_else(|| panic!("{mount} not in {json}"))
}

/// Number of frames of `levels` at its end below the threshold.
fn quiet_tail(levels: &[f64]) -> usize {
    levels.iter().rev().take_while(|&&l| l < SILENCE_DB).count()
}

fn ffmpeg_or_skip() -> bool {
    if have("ffmpeg") {
        return true;
    }
    eprintln!("ffmpeg not found: skipping (CI installs it)");
    false
}

#[test]
fn a_silent_source_gives_way_to_the_playlist_and_comes_back_with_sound() {
    if !ffmpeg_or_skip() {
        return;
    }
    let music = music_dir();
    let work = tempfile::tempdir().unwrap();
    let live = tone_silence_tone(work.path());
    let server = Server::start(&config(music.path(), ""));
    let capture = Capture::start(&server, "/stream");
    let deadline = Instant::now() + Duration::from_secs(5);
    while capture.len() == 0 {
        assert!(Instant::now() < deadline, "the playlist never played");
        sleep(Duration::from_millis(20));
    }
    let source = LiveSource::start(&server, "/stream", live);
    let timeout = Duration::from_secs(15);
    wait_status(&server, "/stream", timeout, "the source on air", |s| {
        s["live"] == true && s["silent"] == false
    });
    wait_metric(&server, "/stream", 0.0);

    // Silence from 2 s; after 2 s of it the playlist is on air and the source still there.
    let dead = wait_status(&server, "/stream", timeout, "dead air", |s| {
        s["silent"] == true
    });
    assert_eq!(dead["live"], false, "{dead}");
    wait_metric(&server, "/stream", 1.0);
    assert_eq!(admin_stats(&server, "/stream")["silent"], true);

    // The tone again from 6 s; after a second of it the source is back.
    let back = wait_status(&server, "/stream", timeout, "the source back", |s| {
        s["silent"] == false && s["live"] == true
    });
    assert_eq!(back["live"], true, "{back}");
    wait_metric(&server, "/stream", 0.0);
    assert_eq!(admin_stats(&server, "/stream")["silent"], false);

    source.wait_sent();
    // Let the last live chunk reach the listener before the source leaves.
    sleep(Duration::from_millis(3 * CHUNK_MS));
    let log = server.wait_log("dead air");
    assert!(!log.contains("source disconnected"), "{log}");
    assert!(log.contains("dead air"), "{log}");
    let bytes = capture.finish();
    source.hang_up();

    let frames = frames_of(&bytes);
    let runs = bitrate_runs(&frames);
    let order: Vec<u32> = runs.iter().map(|r| r.0).collect();
    assert_eq!(
        order,
        [PLAYLIST_KBPS, LIVE_KBPS, PLAYLIST_KBPS, LIVE_KBPS],
        "playlist, live, playlist through the dead air, live again"
    );
    let run_bytes = |run: &(u32, usize, usize)| {
        let start = frames[run.1].0;
        let (end_at, end_h) = frames[run.1 + run.2 - 1];
        &bytes[start..end_at + end_h.frame_len]
    };
    // The dead air listeners sat through: `silence_seconds` of it, give or take a chunk.
    let first_live = frame_levels(run_bytes(&runs[1]));
    let aired = quiet_tail(&first_live) as f64 * 1152.0 / 44100.0;
    let chunk = CHUNK_MS as f64 / 1000.0;
    assert!(
        (SILENCE_SECONDS - chunk..=SILENCE_SECONDS + chunk).contains(&aired),
        "{aired} s of dead air went out"
    );
    // After the switch back, only the tone: none of the held silence was published.
    let second_live = frame_levels(run_bytes(&runs[3]));
    assert!(second_live.len() > 20, "{second_live:?}");
    assert!(
        second_live[2..].iter().all(|&l| l > SILENCE_DB),
        "silent frames after the return: {second_live:?}"
    );
}

#[test]
fn silence_seconds_zero_never_switches() {
    if !ffmpeg_or_skip() {
        return;
    }
    let music = music_dir();
    let work = tempfile::tempdir().unwrap();
    let live = tone_silence_tone(work.path());
    let server = Server::start(&config(
        music.path(),
        "mount \"/stream\" {\n  silence_seconds = 0\n}\n",
    ));
    let capture = Capture::start(&server, "/stream");
    let source = LiveSource::start(&server, "/stream", live);
    wait_status(
        &server,
        "/stream",
        Duration::from_secs(15),
        "the source on air",
        |s| s["live"] == true,
    );
    // Through the whole file, silence included, the source stays on air.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = source_status(&server, "/stream");
        assert!(
            status["live"] == true && status["silent"] == false,
            "{status}"
        );
        if source.sent.try_recv().is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the source never finished");
        sleep(Duration::from_millis(50));
    }
    assert_eq!(silent_metric(&server, "/stream"), Some(0.0));
    sleep(Duration::from_millis(3 * CHUNK_MS));
    let bytes = capture.finish();
    source.hang_up();
    let order: Vec<u32> = bitrate_runs(&frames_of(&bytes))
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        order,
        [PLAYLIST_KBPS, LIVE_KBPS],
        "playlist, then live only"
    );
    assert!(!server.log().contains("dead air"), "{}", server.log());
}

#[test]
fn without_a_playlist_listeners_go_to_the_fallback_mount_and_come_back() {
    if !ffmpeg_or_skip() {
        return;
    }
    let music = music_dir();
    let work = tempfile::tempdir().unwrap();
    let live = tone_silence_tone(work.path());
    let server = Server::start(&config(
        music.path(),
        "mount \"/live\" {\n  fallback_mount = \"/stream\"\n  fallback_override = true\n}\n",
    ));
    let source = LiveSource::start(&server, "/live", live);
    let timeout = Duration::from_secs(15);
    wait_status(&server, "/live", timeout, "the source on air", |s| {
        s["live"] == true
    });
    let capture = Capture::start(&server, "/live");
    wait_status(&server, "/live", timeout, "dead air", |s| {
        s["silent"] == true
    });
    wait_metric(&server, "/live", 1.0);
    wait_status(&server, "/live", timeout, "the source back", |s| {
        s["silent"] == false && s["live"] == true
    });
    source.wait_sent();
    sleep(Duration::from_millis(3 * CHUNK_MS));
    let bytes = capture.finish();
    source.hang_up();
    let order: Vec<u32> = bitrate_runs(&frames_of(&bytes))
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        order,
        [LIVE_KBPS, PLAYLIST_KBPS, LIVE_KBPS],
        "live, the fallback mount's playlist through the dead air, live again"
    );
    let log = server.wait_log("listeners moved to the fallback");
    assert!(log.contains("listeners moved to the fallback"), "{log}");
}

#[test]
fn a_silent_source_can_still_be_killed() {
    if !ffmpeg_or_skip() {
        return;
    }
    let music = music_dir();
    let work = tempfile::tempdir().unwrap();
    let live = tone_silence_tone(work.path());
    let server = Server::start(&config(music.path(), ""));
    let mut source = Source::mp3(server.source, "/stream");
    let sender = std::thread::spawn(move || {
        let start = Instant::now();
        let mut audio_time = Duration::ZERO;
        for (at, h) in frames_of(&live) {
            if source
                .stream
                .write_all(&live[at..at + h.frame_len])
                .is_err()
            {
                return true;
            }
            audio_time += Duration::from_micros(h.duration_micros());
            sleep((start + audio_time).saturating_duration_since(Instant::now()));
        }
        // Whether the server closed the connection: a read sees the end.
        source
            .stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        matches!(source.stream.read(&mut [0u8; 1]), Ok(0) | Err(_))
    });
    let timeout = Duration::from_secs(15);
    wait_status(&server, "/stream", timeout, "dead air", |s| {
        s["silent"] == true
    });
    let request = "GET /admin/killsource?mount=/stream HTTP/1.1\r\nHost: localhost\r\n\
                   Authorization: Basic YWRtaW46cHc=\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(server.listen, request.as_bytes(), Duration::from_secs(5));
    let (head, body) = split_head(&answer);
    assert!(
        head.contains(" 200 "),
        "{head}{}",
        String::from_utf8_lossy(&body)
    );
    assert!(sender.join().unwrap(), "the source was not disconnected");
    wait_status(&server, "/stream", timeout, "the source gone", |s| {
        s["silent"] == false && s["live"] == false
    });
    server.wait_log("source removed by an operator");
    let log = server.wait_log("source disconnected");
    assert!(log.contains("source removed by an operator"), "{log}");
    assert!(log.contains("source disconnected"), "{log}");
}

#[test]
fn turning_the_detector_off_by_reload_puts_a_silent_source_back() {
    if !ffmpeg_or_skip() {
        return;
    }
    let music = music_dir();
    let work = tempfile::tempdir().unwrap();
    // Silence from 2 s to 30 s: only the reload can bring the source back within the wait.
    let live = tone_then_silence_until(work.path(), 30, 32);
    let server = Server::start(&config(music.path(), ""));
    let source = LiveSource::start(&server, "/stream", live);
    let timeout = Duration::from_secs(15);
    wait_status(&server, "/stream", timeout, "dead air", |s| {
        s["silent"] == true
    });
    let off = config(
        music.path(),
        "mount \"/stream\" {\n  silence_seconds = 0\n}\n",
    );
    std::fs::write(server.path("cycast.hcl"), off).unwrap();
    server.signal("HUP");
    let back = wait_status(&server, "/stream", timeout, "the source back", |s| {
        s["silent"] == false && s["live"] == true
    });
    assert_eq!(back["live"], true, "{back}");
    wait_metric(&server, "/stream", 0.0);
    source.hang_up();
}
