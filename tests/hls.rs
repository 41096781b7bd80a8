//! HLS output over loopback: the playlist, segments (ID3 timestamp tag, then whole frames),
//! cache validators, byte ranges, HEAD, Ogg mounts refused, and ffmpeg playing the playlist.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The playlist's silence keeps the default mount on air; 1 s segments keep the test short.
const CONFIG: &str = r#"
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
hls {
  segment_seconds = 1
  window = 4
}
"#;

/// Polls the playlist until it lists `count` segments; returns its response head and text.
fn playlist_with(server: &Server, count: usize) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (head, body) = server.get("/stream/index.m3u8");
        let text = String::from_utf8_lossy(&body).into_owned();
        if head.starts_with("HTTP/1.1 200") && segments(&text).len() >= count {
            return (head, text);
        }
        assert!(
            Instant::now() < deadline,
            "no playlist of {count}: {head}{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (EXTINF seconds, URI) of every listed segment.
fn segments(text: &str) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(inf) = line.strip_prefix("#EXTINF:") {
            let secs = inf.trim_end_matches(',').parse().unwrap();
            out.push((secs, lines.next().unwrap().to_string()));
        }
    }
    out
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn request(server: &Server, method: &str, path: &str, extra: &str) -> (String, Vec<u8>) {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
    split_head(&raw_exchange(
        server.listen,
        raw.as_bytes(),
        Duration::from_secs(10),
    ))
}

/// The PRIV timestamp of a segment body, checking the tag's layout on the way.
fn priv_timestamp(body: &[u8]) -> u64 {
    assert_eq!(
        &body[..5],
        b"ID3\x04\x00",
        "segment does not start with an ID3v2.4 tag"
    );
    assert_eq!(&body[10..14], b"PRIV");
    assert_eq!(&body[14..18], &[0, 0, 0, 53]);
    assert_eq!(
        &body[20..65],
        b"com.apple.streaming.transportStreamTimestamp\0"
    );
    u64::from_be_bytes(body[65..73].try_into().unwrap())
}

/// Length of the whole ID3 tag at the start of `body`.
fn tag_len(body: &[u8]) -> usize {
    10 + body[6..10].iter().fold(0usize, |n, b| n << 7 | *b as usize)
}

#[test]
fn playlist_and_segments_carry_timed_whole_frames() {
    let server = Server::start(CONFIG);
    let (head, text) = playlist_with(&server, 3);
    assert!(
        head.contains("Content-Type: application/vnd.apple.mpegurl"),
        "{head}"
    );
    assert_eq!(header(&head, "cache-control"), Some("max-age=1"));
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    for tag in [
        "#EXTM3U\n",
        "#EXT-X-VERSION:3\n",
        "#EXT-X-TARGETDURATION:1\n",
        "#EXT-X-MEDIA-SEQUENCE:",
        "#EXT-X-DISCONTINUITY-SEQUENCE:0\n",
        "#EXT-X-PROGRAM-DATE-TIME:",
    ] {
        assert!(text.contains(tag), "missing {tag:?} in\n{text}");
    }
    let listed = segments(&text);
    let mut stamps = Vec::new();
    for (secs, uri) in &listed {
        assert!(uri.ends_with(".mp3"), "{uri}");
        // Exact to the frames: a whole number of 1152-sample frames at 44.1 kHz.
        let frames = secs * 44_100.0 / 1152.0;
        assert!(
            (frames - frames.round()).abs() < 1e-3,
            "EXTINF {secs} is not whole frames"
        );
        assert!((1.0..1.1).contains(secs), "EXTINF {secs}");
        let (head, body) = server.get(&format!("/stream/{uri}"));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(
            header(&head, "cache-control"),
            Some("max-age=86400, immutable")
        );
        assert_eq!(header(&head, "content-type"), Some("audio/mpeg"));
        assert_eq!(
            header(&head, "content-length"),
            Some(body.len().to_string().as_str())
        );
        stamps.push(priv_timestamp(&body));
        let audio = &body[tag_len(&body)..];
        let offsets = walk_frames(audio).expect("segment audio is whole frames");
        assert_eq!(offsets.len() as f64, (secs * 44_100.0 / 1152.0).round());
    }
    // Consecutive timestamps step by the EXTINF durations (90 kHz, rounded down).
    for (i, pair) in stamps.windows(2).enumerate() {
        let step = (listed[i].0 * 90_000.0) as i64;
        assert!(
            ((pair[1] - pair[0]) as i64 - step).abs() <= 1,
            "{stamps:?} vs {listed:?}"
        );
    }
}

/// Conditional GETs, byte ranges and HEAD of the segment at `path`.
fn check_segment_validators_ranges_and_head(server: &Server, path: &str) {
    let (head, full) = server.get(path);
    let etag = header(&head, "etag").unwrap().to_string();
    let modified = header(&head, "last-modified").unwrap().to_string();
    let (h, b) = request(server, "GET", path, &format!("If-None-Match: {etag}\r\n"));
    assert!(h.starts_with("HTTP/1.1 304") && b.is_empty(), "{h}");
    let (h, _) = request(
        server,
        "GET",
        path,
        &format!("If-Modified-Since: {modified}\r\n"),
    );
    assert!(h.starts_with("HTTP/1.1 304"), "{h}");
    let (h, b) = request(server, "GET", path, "If-None-Match: \"other\"\r\n");
    assert!(h.starts_with("HTTP/1.1 200") && b == full, "{h}");

    let (h, b) = request(server, "GET", path, "Range: bytes=0-9\r\n");
    assert!(h.starts_with("HTTP/1.1 206"), "{h}");
    assert_eq!(
        header(&h, "content-range"),
        Some(format!("bytes 0-9/{}", full.len()).as_str())
    );
    assert_eq!(b, &full[..10]);
    // A range across the tag's end and one of the tail come from the tag and the ring alike.
    let (h, b) = request(server, "GET", path, "Range: bytes=70-199\r\n");
    assert!(h.starts_with("HTTP/1.1 206"), "{h}");
    assert_eq!(b, &full[70..200]);
    let (h, b) = request(server, "GET", path, "Range: bytes=-100\r\n");
    assert!(h.starts_with("HTTP/1.1 206"), "{h}");
    assert_eq!(b, &full[full.len() - 100..]);
    let (h, _) = request(
        server,
        "GET",
        path,
        &format!("Range: bytes={}-\r\n", full.len()),
    );
    assert!(h.starts_with("HTTP/1.1 416"), "{h}");
    assert_eq!(
        header(&h, "content-range"),
        Some(format!("bytes */{}", full.len()).as_str())
    );

    let (h, b) = request(server, "HEAD", path, "");
    assert!(h.starts_with("HTTP/1.1 200") && b.is_empty(), "{h}");
    assert_eq!(
        header(&h, "content-length"),
        Some(full.len().to_string().as_str())
    );
}

#[test]
fn segments_answer_validators_ranges_and_head() {
    let server = Server::start(CONFIG);
    let (head, text) = playlist_with(&server, 2);
    let etag = header(&head, "etag").unwrap().to_string();
    let (again, body) = request(
        &server,
        "GET",
        "/stream/index.m3u8",
        &format!("If-None-Match: {etag}\r\n"),
    );
    // The playlist may have moved on meanwhile; then it comes whole with a new tag.
    if header(&again, "etag") == Some(etag.as_str()) {
        assert!(again.starts_with("HTTP/1.1 304"), "{again}");
        assert!(body.is_empty());
    }
    // The oldest listed segment goes out from the ring; the newest from the copy each shard
    // shares between its requests. Both answer alike.
    let listed = segments(&text);
    for (_, uri) in [listed.first().unwrap(), listed.last().unwrap()] {
        check_segment_validators_ranges_and_head(&server, &format!("/stream/{uri}"));
    }
    let uri = &listed[0].1;

    // Names that never were, or of another server run, are not found.
    let (epoch, rest) = uri.split_once('-').unwrap();
    let other = format!("/stream/{}-{rest}", epoch.parse::<u64>().unwrap() + 1);
    assert!(server.get(&other).0.starts_with("HTTP/1.0 404"));
    assert!(server
        .get("/stream/1-99999999.mp3")
        .0
        .starts_with("HTTP/1.0 404"));
    assert!(server
        .get("/nomount/index.m3u8")
        .0
        .starts_with("HTTP/1.0 404"));
}

#[test]
fn ogg_mounts_have_no_hls() {
    let server = Server::start(CONFIG);
    let _source = Source::connect(
        server.source,
        &format!(
            "PUT /radio.ogg HTTP/1.1\r\nHost: x\r\n{SOURCE_AUTH}Content-Type: audio/ogg\r\n\r\n"
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (head, body) = server.get("/radio.ogg/index.m3u8");
        let body = String::from_utf8_lossy(&body);
        if body.contains("MP3 and AAC") {
            assert!(head.starts_with("HTTP/1.0 404"), "{head}");
            break;
        }
        assert!(Instant::now() < deadline, "no clear 404: {head}{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Neither the status nor the station page offers a playlist for it.
    let (_, body) = server.get("/status-json.xsl");
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let sources = match &status["icestats"]["source"] {
        serde_json::Value::Array(all) => all.clone(),
        one => vec![one.clone()],
    };
    let ogg = sources
        .iter()
        .find(|s| s["mount"] == "/radio.ogg")
        .unwrap_or_else(|| panic!("no /radio.ogg in {status}"));
    assert_eq!(ogg["hls_url"], serde_json::Value::Null, "{ogg}");
    let (_, page) = server.get("/");
    assert!(
        !String::from_utf8_lossy(&page).contains("data-hls=\"/radio.ogg/"),
        "the station page offers HLS for an Ogg mount"
    );
}

#[test]
fn ffmpeg_plays_the_playlist_without_errors() {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("ffmpeg not installed; skipping");
        return;
    }
    let server = Server::start(CONFIG);
    playlist_with(&server, 3);
    let url = format!("http://{}/stream/index.m3u8", server.listen);
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-i", &url, "-t", "6", "-f", "s16le", "-",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {errors}");
    assert!(errors.trim().is_empty(), "ffmpeg reported: {errors}");
    // 6 s of 16-bit stereo at 44.1 kHz, give or take a frame.
    assert!(
        out.stdout.len() > 5 * 44_100 * 4,
        "decoded only {} bytes",
        out.stdout.len()
    );
}

#[test]
fn hls_players_are_counted_as_sessions_and_in_metrics() {
    // 4 s segments: a session lasts 8 s, ample for the checks below.
    let config = CONFIG.replace("segment_seconds = 1", "segment_seconds = 4")
        + "server {\n  admin_password = \"adminpw\"\n}\n";
    let server = Server::start(&config);
    let (_, text) = playlist_with(&server, 1);
    let segment = format!("/stream/{}", segments(&text)[0].1);
    // The harness's polls above (no user agent) are one player; two more by user agent
    // (one fetching twice and a segment), one by `sid`.
    for (path, agent) in [
        ("/stream/index.m3u8", "player-a"),
        ("/stream/index.m3u8", "player-a"),
        (segment.as_str(), "player-a"),
        ("/stream/index.m3u8", "player-b"),
        ("/stream/index.m3u8?sid=page-1", "player-a"),
    ] {
        let (head, _) = request(&server, "GET", path, &format!("User-Agent: {agent}\r\n"));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    // Shards publish their sessions once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = server.get("/api/status");
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if status["hls_listeners"] == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sessions never reached 4: {status}\n{}",
            String::from_utf8_lossy(&server.get("/metrics").1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, body) = server.get("/status-json.xsl");
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["icestats"]["source"]["hls_listeners"], 4, "{status}");
    assert_eq!(
        status["icestats"]["source"]["hls_url"],
        format!("http://{}/stream/index.m3u8", server.listen),
        "{status}"
    );
    assert_eq!(server.stats()["mounts"][0]["hls_listeners"], 4);
    // The station page's player knows the playlist, for browsers that play HLS.
    let (_, page) = server.get("/");
    assert!(
        String::from_utf8_lossy(&page).contains("data-hls=\"/stream/index.m3u8\""),
        "no HLS playlist on the station page"
    );
    // The admin console's source cards read it from here.
    let (_, body) = request(
        &server,
        "GET",
        "/admin/stats.json",
        "Authorization: Basic YWRtaW46YWRtaW5wdw==\r\n",
    );
    let admin: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        admin["icestats"]["source"][0]["hls_listeners"], 4,
        "{admin}"
    );
    let (_, body) = server.get("/metrics");
    let metrics = String::from_utf8_lossy(&body);
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix) && l.contains("mount=\"/stream\""))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .to_string()
    };
    assert!(line("cycast_hls_requests_total").contains("kind="));
    let playlists: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("cycast_hls_requests_total") && l.contains("kind=\"playlist\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    // Four here plus the polls that waited for the first segment.
    assert!(playlists >= 4.0, "{metrics}");
    line("cycast_hls_bytes_sent_total");
    line("cycast_hls_sessions");
}

/// Sum of a counter's samples with `label` over the shards.
fn counter_sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// nginx, run in the foreground from a temporary prefix; stopped on drop.
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so the master stops its workers and cache processes: a killed master
        // leaves them running (and holding whatever descriptors they inherited).
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn many_players_through_the_nginx_cache_reach_cycast_once_per_object() {
    let Ok(nginx) = which("nginx") else {
        eprintln!("nginx not installed; skipping");
        return;
    };
    let server = Server::start(CONFIG);
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::create_dir_all(dir.path().join("snippets")).unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    std::fs::copy(
        format!("{root}/deploy/nginx/snippets/cycast-hls-cache.conf"),
        dir.path().join("snippets/cycast-hls-cache.conf"),
    )
    .unwrap();
    let site = std::fs::read_to_string(format!("{root}/deploy/nginx/hls-cdn.conf"))
        .unwrap()
        .replace("/etc/nginx/snippets", &format!("{d}/snippets"))
        .replace("/var/cache/nginx/cycast-hls", &format!("{d}/cache"))
        .replace("127.0.0.1:8001", &server.listen.to_string())
        .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"))
        .replace("listen [::]:8080;", "");
    std::fs::write(dir.path().join("site.conf"), site).unwrap();
    let main = format!(
        "daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  \
         access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  \
         include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
    let nginx = Nginx(
        Command::new(nginx)
            .args(["-p", &d, "-e", &format!("{d}/error.log"), "-c"])
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx"),
    );
    let edge: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(edge).is_ok() {
            let (head, body) = http_get(edge, "/stream/index.m3u8");
            if head.contains(" 200 ") && segments(&String::from_utf8_lossy(&body)).len() >= 2 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "nginx edge never served the playlist"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // 30 players poll the playlist four times a segment and fetch every new segment.
    let players: Vec<_> = (0..30)
        .map(|_| {
            std::thread::spawn(move || {
                let mut fetched = std::collections::HashSet::new();
                let (mut playlists, mut segs) = (0u32, 0u32);
                let end = Instant::now() + Duration::from_secs(4);
                while Instant::now() < end {
                    let (head, body) = http_get(edge, "/stream/index.m3u8");
                    assert!(head.contains(" 200 "), "{head}");
                    playlists += 1;
                    for (_, uri) in segments(&String::from_utf8_lossy(&body)) {
                        if fetched.insert(uri.clone()) {
                            let (head, body) = http_get(edge, &format!("/stream/{uri}"));
                            assert!(head.contains(" 200 "), "{head}");
                            priv_timestamp(&body);
                            segs += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                (playlists, segs, fetched)
            })
        })
        .collect();
    let (mut playlists, mut segs, mut distinct) = (0, 0, std::collections::HashSet::new());
    for p in players {
        let (pl, sg, f) = p.join().unwrap();
        playlists += pl;
        segs += sg;
        distinct.extend(f);
    }
    let (_, body) = server.get("/metrics");
    let metrics = String::from_utf8_lossy(&body);
    let origin_playlists = counter_sum(&metrics, "cycast_hls_requests_total", "kind=\"playlist\"");
    let origin_segments = counter_sum(&metrics, "cycast_hls_requests_total", "kind=\"segment\"");
    eprintln!(
        "through nginx: {playlists} playlists and {segs} segments served to 30 players; \
         cycast saw {origin_playlists} playlist and {origin_segments} segment requests"
    );
    // Every distinct segment reached cycast about once, however many players took it.
    assert!(
        origin_segments <= distinct.len() as f64 + 2.0,
        "{origin_segments} origin segment requests for {} segments ({segs} served)",
        distinct.len()
    );
    assert!(
        segs as f64 >= 20.0 * origin_segments,
        "{segs} vs {origin_segments}"
    );
    // The playlist reached cycast about once per second of the test (it lives 1 s).
    assert!(
        origin_playlists <= 30.0 && (playlists as f64) >= 8.0 * origin_playlists,
        "{origin_playlists} origin playlist requests for {playlists} served"
    );
    // Stopping the edge stops all of it: no worker outlives the test.
    let master = nginx.0.id().to_string();
    let helpers = Command::new("pgrep")
        .args(["-P", &master])
        .output()
        .unwrap();
    let helpers: Vec<String> = String::from_utf8_lossy(&helpers.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(!helpers.is_empty(), "nginx {master} has no workers");
    drop(nginx);
    let deadline = Instant::now() + Duration::from_secs(5);
    while helpers
        .iter()
        .any(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "nginx processes {helpers:?} outlived their master"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Path of an installed program.
fn which(program: &str) -> Result<String, ()> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map_err(|_| ())?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if path.is_empty() {
        Err(())
    } else {
        Ok(path)
    }
}

/// What two ffmpeg players printed (`-v error`) while a title changed and a live source at
/// `rate` took over from the playlist's 44.1 kHz silence for 3 s and left again: one reading
/// the HLS playlist, one the Icecast stream, side by side.
struct SwitchRun {
    server: Server,
    hls: String,
    plain: String,
}

fn play_across_a_live_switch(rate: u32) -> Option<SwitchRun> {
    if !have("ffmpeg") {
        eprintln!("ffmpeg not installed; skipping");
        return None;
    }
    let config = CONFIG.replace("window = 4", "window = 12")
        + "server {\n  admin_password = \"adminpw\"\n}\n";
    let server = Server::start(&config);
    playlist_with(&server, 2);
    let player = |path: &str| {
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(format!("http://{}{path}", server.listen))
            .args(["-t", "8", "-f", "null", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ffmpeg player")
    };
    let hls = player("/stream/index.m3u8");
    let plain = player("/stream");
    let (head, _) = request(
        &server,
        "GET",
        "/admin/metadata?mount=/stream&mode=updinfo&song=Some%20Band%20-%20New%20Song",
        "Authorization: Basic YWRtaW46YWRtaW5wdw==\r\n",
    );
    assert!(head.contains(" 200 "), "{head}");
    ffmpeg_live_source(server.source, 3, rate);
    let finish = |child: std::process::Child, what: &str| {
        let out = child.wait_with_output().unwrap();
        let errors = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "{what} player {}: {errors}",
            out.status
        );
        errors
    };
    let hls = finish(hls, "HLS");
    let plain = finish(plain, "stream");
    let run = SwitchRun { server, hls, plain };
    assert_only_dts_order_complaints(&run, rate);
    Some(run)
}

/// FFmpeg's muxer complaint about packet order, which ffmpeg prints for the plain Icecast
/// stream too at a sample-rate change (its decoder-side rate change sets output times back),
/// and for HLS when its raw MP3 demuxer applies a segment's PRIV timestamp a frame early
/// (the tag takes effect when a 1,024-byte read crosses into the segment).
const DTS_ORDER: &str = "non monotonically increasing dts";

/// Asserts the HLS player printed nothing but [`DTS_ORDER`] lines and reports the counts.
fn assert_only_dts_order_complaints(run: &SwitchRun, rate: u32) {
    let other: Vec<_> = run.hls.lines().filter(|l| !l.contains(DTS_ORDER)).collect();
    assert!(other.is_empty(), "HLS player at {rate} Hz: {}", run.hls);
    let other: Vec<_> = run
        .plain
        .lines()
        .filter(|l| !l.contains(DTS_ORDER))
        .collect();
    assert!(
        other.is_empty(),
        "stream player at {rate} Hz: {}",
        run.plain
    );
    eprintln!(
        "live source at {rate} Hz: dts-order lines from ffmpeg, HLS {} / Icecast stream {}",
        run.hls.matches(DTS_ORDER).count(),
        run.plain.matches(DTS_ORDER).count()
    );
}

#[test]
fn a_live_source_of_another_rate_is_bracketed_by_discontinuities_and_ffmpeg_plays_across() {
    let Some(run) = play_across_a_live_switch(48_000) else {
        return;
    };
    let server = &run.server;
    // The playlist marks the switch to 48 kHz and the one back to the silence at 44.1 kHz.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = server.get("/stream/index.m3u8");
        let text = String::from_utf8_lossy(&body).into_owned();
        let marks = text.matches("#EXT-X-DISCONTINUITY\n").count();
        let after_last = text.rsplit("#EXT-X-DISCONTINUITY\n").next().unwrap_or("");
        if marks >= 2 && segments(after_last).len() >= 2 {
            // Each side of a mark has its own rate: whole 48 kHz frames between the marks.
            let between = text.split("#EXT-X-DISCONTINUITY\n").nth(1).unwrap();
            for (secs, _) in segments(between) {
                let frames = secs * 48_000.0 / 1152.0;
                assert!(
                    (frames - frames.round()).abs() < 1e-3,
                    "{secs} s is not 48 kHz frames"
                );
            }
            assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no discontinuities around the live part:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ffmpeg_plays_across_a_title_change_and_a_live_source_at_the_same_rate() {
    let Some(run) = play_across_a_live_switch(44_100) else {
        return;
    };
    // The PRIV timestamps run on across the handover: every listed segment's tag is its
    // predecessor's plus the predecessor's EXTINF (90 kHz, within a tick of rounding).
    let (_, text) = playlist_with(&run.server, 8);
    let listed = segments(&text);
    let stamps: Vec<u64> = listed
        .iter()
        .map(|(_, uri)| priv_timestamp(&run.server.get(&format!("/stream/{uri}")).1))
        .collect();
    for (i, pair) in stamps.windows(2).enumerate() {
        let step = (listed[i].0 * 90_000.0) as i64;
        assert!(
            ((pair[1] - pair[0]) as i64 - step).abs() <= 1,
            "{stamps:?} vs {listed:?}"
        );
    }
}

#[test]
fn ffprobe_reads_the_priv_timestamp() {
    if !have("ffprobe") {
        eprintln!("ffprobe not installed; skipping");
        return;
    }
    let server = Server::start(CONFIG);
    playlist_with(&server, 3);
    let url = format!("http://{}/stream/index.m3u8", server.listen);
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=start_time",
            "-of",
            "csv=p=0",
            &url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // The silence's segments are 39 frames of 1152 samples at 44.1 kHz, so the segment ffprobe
    // starts at (never the first: it joins near the live edge) begins at a whole number of
    // them; without the PRIV frame an MP3 stream starts at 0.
    let segment = 39.0 * 1152.0 / 44_100.0;
    let k = (start / segment).round();
    assert!(
        k >= 1.0 && (start - k * segment).abs() < 2e-5,
        "start_time {start}"
    );
}

#[test]
fn a_new_title_reaches_the_tag_of_the_next_segment() {
    let config = CONFIG.to_string() + "server {\n  admin_password = \"adminpw\"\n}\n";
    let server = Server::start(&config);
    playlist_with(&server, 1);
    let (head, _) = request(
        &server,
        "GET",
        "/admin/metadata?mount=/stream&mode=updinfo&song=Some%20Band%20-%20New%20Song",
        "Authorization: Basic YWRtaW46YWRtaW5wdw==\r\n",
    );
    assert!(head.contains(" 200 "), "{head}");
    // A segment that opens after the change carries the title; none carries half of it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, text) = playlist_with(&server, 1);
        let (_, uri) = segments(&text).pop().unwrap();
        let (_, body) = server.get(&format!("/stream/{uri}"));
        priv_timestamp(&body);
        let tag = &body[..tag_len(&body)];
        let has = |bytes: &[u8]| tag.windows(bytes.len()).any(|w| w == bytes);
        if has(b"TIT2") {
            assert!(
                has(b"\x03New Song") && has(b"TPE1") && has(b"\x03Some Band"),
                "{tag:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the title never reached a segment tag"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
