//! cycast-load against deliberately bad stream servers (it must see the faults) and against the
//! real cycast fed by its own source mode (it must see none).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{numbered_frames, Server};

/// Playing time of one test frame (1152 samples at 44.1 kHz).
const FRAME_TIME: Duration = Duration::from_micros(26_122);
/// Audio bytes between ICY blocks when the fake server interleaves metadata.
const METAINT: usize = 8192;

/// How a fake server misbehaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Valid frames at real time.
    None,
    /// 2 s of audio at real time, 3 s of nothing, then real time again.
    Stall,
    /// Garbage between every tenth frame and the next.
    Corrupt,
}

/// Starts a fake stream server on loopback; one thread per listener.
fn fake_server(fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            std::thread::spawn(move || {
                let _ = serve(conn, fault);
            });
        }
    });
    addr
}

/// Answers one listener and streams until it leaves.
fn serve(mut conn: TcpStream, fault: Fault) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Ok(());
        }
        request.push(byte[0]);
    }
    let icy = String::from_utf8_lossy(&request)
        .to_ascii_lowercase()
        .contains("icy-metadata: 1");
    let mut head = "HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\nicy-br:128\r\n".to_string();
    if icy {
        head.push_str(&format!("icy-metaint:{METAINT}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    let mut out = Interleaver {
        conn,
        icy,
        audio_since_block: 0,
        blocks: 0,
    };
    let start = Instant::now();
    let mut pause = Duration::ZERO;
    let mut frame = 0u32;
    loop {
        // Everything due by now goes out; then sleep 100 ms, like a server with a send tick.
        let due_until = start.elapsed();
        let mut batch = Vec::new();
        while FRAME_TIME * frame + pause <= due_until {
            if fault == Fault::Stall
                && pause.is_zero()
                && FRAME_TIME * frame >= Duration::from_secs(2)
            {
                pause = Duration::from_secs(3);
                continue;
            }
            batch.extend_from_slice(&numbered_frames(frame, 1));
            frame += 1;
            if fault == Fault::Corrupt && frame % 10 == 0 {
                batch.extend_from_slice(b"GARBAGE!GARBAGE!");
            }
        }
        out.write(&batch)?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes audio with ICY metadata blocks every `METAINT` bytes when asked for.
struct Interleaver {
    /// The listener.
    conn: TcpStream,
    /// Whether to interleave.
    icy: bool,
    /// Audio bytes written since the last block.
    audio_since_block: usize,
    /// Blocks written, to vary the titles and send some empty blocks.
    blocks: u32,
}

impl Interleaver {
    fn write(&mut self, mut audio: &[u8]) -> std::io::Result<()> {
        if !self.icy {
            return self.conn.write_all(audio);
        }
        let mut out = Vec::with_capacity(audio.len() + 64);
        while !audio.is_empty() {
            let n = (METAINT - self.audio_since_block).min(audio.len());
            out.extend_from_slice(&audio[..n]);
            audio = &audio[n..];
            self.audio_since_block += n;
            if self.audio_since_block == METAINT {
                self.audio_since_block = 0;
                self.blocks += 1;
                if self.blocks % 2 == 0 {
                    out.push(0);
                } else {
                    let text = format!("StreamTitle='Test - Song {}';", self.blocks);
                    let len = text.len().div_ceil(16);
                    out.push(len as u8);
                    out.extend_from_slice(text.as_bytes());
                    out.resize(out.len() + len * 16 - text.len(), 0);
                }
            }
        }
        self.conn.write_all(&out)
    }
}

/// Runs cycast-load with `args` and returns its JSON report.
fn load(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_cycast-load"))
        .args(args)
        .arg("--json")
        .stderr(Stdio::piped())
        .output()
        .expect("run cycast-load");
    assert!(
        out.status.success(),
        "cycast-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/stream")
}

#[test]
fn a_stalling_server_shows_stalls_and_underruns() {
    let addr = fake_server(Fault::Stall);
    let r = load(&[
        "--url",
        &url(addr),
        "--listeners",
        "3",
        "--ramp",
        "100",
        "--duration",
        "6.5",
        "--prebuffer",
        "1",
        "--verify-every",
        "1",
    ]);
    let q = &r["quality"];
    assert_eq!(r["connects"]["answered_200"], 3, "{r}");
    assert!(q["stalls"].as_u64().unwrap() >= 3, "{r}");
    assert!(q["underruns"].as_u64().unwrap() >= 3, "{r}");
    assert!(q["max_gap_ms"].as_f64().unwrap() >= 2500.0, "{r}");
    assert_eq!(q["resyncs"], 0, "{r}");
}

#[test]
fn a_corrupting_server_shows_resyncs() {
    let addr = fake_server(Fault::Corrupt);
    let r = load(&[
        "--url",
        &url(addr),
        "--listeners",
        "4",
        "--ramp",
        "100",
        "--duration",
        "3",
        "--prebuffer",
        "1",
        "--verify-every",
        "2",
    ]);
    let q = &r["quality"];
    assert_eq!(q["verified_listeners"], 2, "{r}");
    // About 100 frames each, garbage after every tenth.
    assert!(q["resyncs"].as_u64().unwrap() >= 2 * 5, "{r}");
    assert_eq!(q["underruns"], 0, "{r}");
}

#[test]
fn a_clean_real_time_server_shows_no_faults() {
    let addr = fake_server(Fault::None);
    let r = load(&[
        "--url",
        &url(addr),
        "--listeners",
        "5",
        "--ramp",
        "100",
        "--duration",
        "4",
        "--prebuffer",
        "1",
        "--verify-every",
        "1",
        "--icy",
        "--ttfb-samples",
    ]);
    let (c, q, t) = (&r["connects"], &r["quality"], &r["throughput"]);
    assert_eq!(c["answered_200"], 5, "{r}");
    assert_eq!(c["closed_early"], 0, "{r}");
    assert_eq!(q["players_started"], 5, "{r}");
    assert_eq!(q["underruns"], 0, "{r}");
    assert_eq!(q["resyncs"], 0, "{r}");
    assert_eq!(q["stalls"], 0, "{r}");
    assert!(q["frames_verified"].as_u64().unwrap() >= 5 * 100, "{r}");
    assert_eq!(q["icy_listeners"], 5, "{r}");
    assert!(q["icy_blocks"].as_u64().unwrap() >= 5 * 5, "{r}");
    assert_eq!(q["icy_errors"], 0, "{r}");
    assert_eq!(t["bitrate_kbps"], 128, "{r}");
    assert!(r["ttfb"]["p99_ms"].as_f64().unwrap() < 500.0, "{r}");
    // Every listener's own time to first byte, the summary's slowest among them.
    let samples: Vec<u64> = r["ttfb_samples_us"]
        .as_array()
        .unwrap_or_else(|| panic!("no ttfb_samples_us: {r}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(samples.len(), 5, "{r}");
    let slowest = *samples.iter().max().unwrap() as f64 / 1000.0;
    assert_eq!(Some(slowest), r["ttfb"]["max_ms"].as_f64(), "{r}");
}

#[test]
fn a_refusing_server_counts_refusals() {
    // A port with nothing listening: every connect is refused, and that is data, not an error.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = load(&[
        "--url",
        &url(addr),
        "--listeners",
        "3",
        "--ramp",
        "100",
        "--duration",
        "0.5",
    ]);
    assert_eq!(r["connects"]["attempted"], 3, "{r}");
    assert_eq!(r["connects"]["refused_connect"], 3, "{r}");
}

/// A `cycast-load source` process; killed on drop.
struct SourceProcess(Child);

impl Drop for SourceProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cycast_with_a_real_time_source_shows_no_faults() {
    let server = Server::start("playlist {\n  directory = \"/nonexistent\"\n}\n");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/music/01-morning-tone.mp3");
    let _source = SourceProcess(
        Command::new(env!("CARGO_BIN_EXE_cycast-load"))
            .args(["source", "--url"])
            .arg(format!("http://source:hackme@{}/stream", server.source))
            .args(["--file", file, "--loop", "--duration", "30"])
            .stderr(Stdio::null())
            .spawn()
            .expect("start the source"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("source connected") {
        assert!(
            Instant::now() < deadline,
            "no source; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = load(&[
        "--url",
        &url(server.listen),
        "--listeners",
        "200",
        "--ramp",
        "1000",
        "--duration",
        "5",
        "--prebuffer",
        "1",
        "--verify-every",
        "1",
    ]);
    let (c, q) = (&r["connects"], &r["quality"]);
    assert_eq!(c["attempted"], 200, "{r}");
    assert_eq!(c["answered_200"], 200, "{r}");
    assert_eq!(c["closed_early"], 0, "{r}");
    assert_eq!(c["no_audio"], 0, "{r}");
    assert_eq!(q["players_started"], 200, "{r}");
    assert_eq!(q["verified_listeners"], 200, "{r}");
    assert_eq!(q["resyncs"], 0, "{r}");
    assert_eq!(q["underruns"], 0, "{r}");
    assert_eq!(r["throughput"]["bitrate_kbps"], 128, "{r}");
}

/// A fake HLS origin whose playlist never moves on: three 1 s segments (target 1 s) whose
/// third timestamp is off by a second. It keeps connections open for more requests when
/// `keep_alive`, else closes each after one answer; it counts the connections it accepted.
/// Serves until the test process ends.
fn frozen_hls_server(keep_alive: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    use cycast::hls::id3::segment_tag;
    use cycast::ingest::mp3::silence_frame;
    let frame = silence_frame(128, 44100, true);
    // 38 frames of 1,152 samples: 0.992653 s, 89,338.8 ticks.
    let segment = |timestamp: u64| {
        let mut s = segment_tag(timestamp, "Frozen - Station");
        for _ in 0..38 {
            s.extend_from_slice(&frame);
        }
        s
    };
    let segments = [segment(0), segment(89_339), segment(2 * 89_339 + 90_000)];
    let playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n\
                    #EXTINF:0.992653,\n0.mp3\n#EXTINF:0.992653,\n1.mp3\n#EXTINF:0.992653,\n2.mp3\n";
    let segments = Arc::new(segments);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            counted.fetch_add(1, Ordering::Relaxed);
            let segments = segments.clone();
            std::thread::spawn(move || serve_frozen(conn, playlist, &segments, keep_alive));
        }
    });
    (addr, connections)
}

/// Answers requests on one connection of [`frozen_hls_server`].
fn serve_frozen(mut conn: TcpStream, playlist: &str, segments: &[Vec<u8>; 3], keep_alive: bool) {
    loop {
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte) {
                Ok(1) => request.push(byte[0]),
                _ => return,
            }
        }
        {
            let request = String::from_utf8_lossy(&request);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let body: &[u8] = match path {
                "/s/index.m3u8" => playlist.as_bytes(),
                "/s/0.mp3" => &segments[0],
                "/s/1.mp3" => &segments[1],
                "/s/2.mp3" => &segments[2],
                _ => b"",
            };
            let status = if body.is_empty() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let (version, connection) = if keep_alive {
                ("1.1", "keep-alive")
            } else {
                ("1.0", "close")
            };
            let _ = conn.write_all(
                format!(
                    "HTTP/{version} {status}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = conn.write_all(body);
        }
        if !keep_alive {
            return;
        }
    }
}

#[test]
fn hls_clients_see_a_frozen_playlist_and_a_timestamp_jump() {
    let (addr, connections) = frozen_hls_server(false);
    let r = load(&[
        "--hls",
        "--url",
        &format!("http://{addr}/s/index.m3u8"),
        "--listeners",
        "2",
        "--duration",
        "4",
        "--quiet",
    ]);
    assert_eq!(
        r["segments"], 6,
        "each client fetches the three segments once: {r}"
    );
    assert_eq!(r["bad_segments"], 0, "{r}");
    assert_eq!(r["extinf_mismatches"], 0, "{r}");
    assert_eq!(
        r["timestamp_breaks"], 2,
        "the third segment jumps by 1 s: {r}"
    );
    assert_eq!(
        r["clients_with_stalls"], 2,
        "the playlist never moves on: {r}"
    );
    // Three seconds of audio, four seconds of run: every modelled player runs dry.
    assert_eq!(r["underruns"], 2, "{r}");
    assert!(r["playlist_requests"].as_u64().unwrap() >= 4, "{r}");
    // An origin that closes after each answer gets a connection per request.
    let requests = r["playlist_requests"].as_u64().unwrap() + 6;
    assert_eq!(connections.load(Ordering::Relaxed) as u64, requests, "{r}");
}

#[test]
fn hls_clients_keep_their_connection_when_the_origin_allows_it() {
    let (addr, connections) = frozen_hls_server(true);
    let r = load(&[
        "--hls",
        "--url",
        &format!("http://{addr}/s/index.m3u8"),
        "--listeners",
        "2",
        "--duration",
        "3",
        "--quiet",
    ]);
    assert_eq!(r["segments"], 6, "{r}");
    assert_eq!(r["segment_errors"], 0, "{r}");
    assert_eq!(r["playlist_errors"], 0, "{r}");
    assert!(r["playlist_requests"].as_u64().unwrap() >= 4, "{r}");
    // Every reload and segment of a client went over its one connection.
    assert_eq!(connections.load(Ordering::Relaxed), 2, "{r}");
}

#[test]
fn hls_clients_of_cycast_with_a_real_time_source_see_no_faults() {
    let server = Server::start(
        "playlist {\n  directory = \"/nonexistent\"\n}\nhls {\n  segment_seconds = 1\n  window = 4\n}\n",
    );
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/music/01-morning-tone.mp3");
    let _source = SourceProcess(
        Command::new(env!("CARGO_BIN_EXE_cycast-load"))
            .args(["source", "--url"])
            .arg(format!("http://source:hackme@{}/stream", server.source))
            .args(["--file", file, "--loop", "--duration", "40"])
            .stderr(Stdio::null())
            .spawn()
            .expect("start the source"),
    );
    // Players start three segments from the live edge: wait until there are three.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (head, body) = common::http_get(server.listen, "/stream/index.m3u8");
        let segments = String::from_utf8_lossy(&body).matches("#EXTINF").count();
        if head.starts_with("HTTP/1.1 200") && segments >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no HLS playlist with three segments; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = load(&[
        "--hls",
        "--url",
        &format!("http://{}/stream/index.m3u8", server.listen),
        "--listeners",
        "5",
        "--duration",
        "10",
        "--quiet",
    ]);
    for field in [
        "playlist_errors",
        "segment_errors",
        "bad_segments",
        "timestamp_breaks",
        "extinf_mismatches",
        "stalls",
        "underruns",
    ] {
        assert_eq!(r[field], 0, "{field}: {r}");
    }
    assert_eq!(r["clients_playing"], 5, "{r}");
    // Three segments to start, then one a second for ten seconds.
    assert!(r["segments"].as_u64().unwrap() >= 5 * 8, "{r}");
    // Each client is its own session to the server.
    let stats = server.stats();
    assert_eq!(stats["mounts"][0]["hls_listeners"], 5, "{stats}");
}
