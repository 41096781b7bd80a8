//! The station page and the admin console in headless Chromium (Debian's, driven by
//! playwright-core through `tests/browser/driver.mjs`), against the real binary and a live MP3
//! source: the page follows title changes, its player plays the stream, and the console kicks
//! a listener, sets the title and skips a playlist track.
//!
//! `./scripts/install-browser-deps.sh` installs Chromium and playwright-core. Without them the
//! tests print a notice and pass, except under CI (`CI=true`) where they fail.
//! `CYCAST_UPDATE_SCREENSHOTS=1` also writes the screenshots to `docs/screenshots/`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{ffmpeg_live_source, http_get, raw_exchange, Listener, Server, Source, SOURCE_AUTH};
use cycast::ingest::mp3::parse_header;
use serde_json::{json, Value};

const ADMIN_PASSWORD: &str = "browser-secret";
/// `admin:browser-secret`.
const ADMIN_AUTH: &str = "Authorization: Basic YWRtaW46YnJvd3Nlci1zZWNyZXQ=\r\n";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn config(extra: &str) -> String {
    format!(
        "server {{\n  admin_password = \"{ADMIN_PASSWORD}\"\n}}\n\
         metadata {{\n  station_name = \"Cycast Test FM\"\n  station_description = \"Tones around the clock, live from the loopback\"\n  station_genre = \"Ambient\"\n}}\n\
         playlist {{\n  directory = \"{}\"\n  shuffle = false\n}}\n{extra}",
        manifest_dir().join("music").display()
    )
}

/// Whether the browser toolchain is installed; otherwise why not.
fn browser_missing() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} not found"));
    }
    if !common::have("node") {
        return Some("node not found".into());
    }
    let module = manifest_dir().join("tests/browser/node_modules/playwright-core/package.json");
    if !module.exists() {
        return Some(format!("{} not found", module.display()));
    }
    None
}

/// Starts the browser, or returns `None` (after a notice) when it is not installed outside CI.
fn browser(options: Value) -> Option<Browser> {
    if let Some(why) = browser_missing() {
        let msg = format!(
            "browser tests need Chromium and playwright-core ({why}): run ./scripts/install-browser-deps.sh"
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    Some(Browser::launch(options))
}

/// One Chromium with a fresh profile, driven over JSON lines.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch(mut options: Value) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        options["userDataDir"] = json!(profile.path());
        let mut child = Command::new("node")
            .arg(manifest_dir().join("tests/browser/driver.mjs"))
            .arg(options.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut browser = Browser {
            child,
            stdin,
            stdout,
            _profile: profile,
        };
        browser.answer().expect("Chromium did not start");
        browser
    }

    fn answer(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("driver output");
        assert!(!line.is_empty(), "the browser driver exited");
        let reply: Value = serde_json::from_str(&line).expect("driver reply");
        if reply["ok"] == true {
            Ok(reply["value"].clone())
        } else {
            Err(reply["error"].as_str().unwrap_or_default().to_string())
        }
    }

    fn try_call(&mut self, command: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{command}").expect("driver input");
        self.answer()
    }

    fn call(&mut self, command: Value) -> Value {
        let what = command.to_string();
        self.try_call(command)
            .unwrap_or_else(|e| panic!("browser command {what} failed: {e}"))
    }

    fn open(&mut self, url: &str) -> Value {
        self.call(json!({"cmd": "open", "url": url}))
    }

    fn eval(&mut self, js: &str) -> Value {
        self.call(json!({"cmd": "eval", "js": js}))
    }

    /// Waits until `js` is truthy in the page; panics with `what` and the page's state after
    /// `timeout`.
    fn wait_for(&mut self, js: &str, timeout: Duration, what: &str) -> Value {
        let command = json!({"cmd": "waitFor", "js": js, "timeout": timeout.as_millis() as u64});
        match self.try_call(command) {
            Ok(v) => v,
            Err(e) => {
                let body = self.eval("document.body.innerText");
                panic!(
                    "timed out waiting for {what}: {e}\npage text:\n{}",
                    body.as_str().unwrap_or_default()
                )
            }
        }
    }

    fn text(&mut self, selector: &str) -> String {
        let js = format!(
            "document.querySelector({})?.textContent ?? null",
            json!(selector)
        );
        self.eval(&js)
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    fn screenshot(&mut self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        self.call(json!({"cmd": "screenshot", "path": path, "fullPage": true}));
        if std::env::var("CYCAST_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let docs = manifest_dir().join("docs/screenshots");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::copy(&path, docs.join(name)).unwrap();
        }
    }

    /// Nothing failed in the page (a blocked request or a script error shows up here) and it
    /// asked nobody but the server.
    fn assert_clean(&mut self, origin: &str) {
        let errors = self.call(json!({"cmd": "errors"}));
        assert_eq!(errors, json!([]), "errors in the page");
        let requests = self.call(json!({"cmd": "requests"}));
        for url in requests.as_array().unwrap() {
            let url = url.as_str().unwrap();
            assert!(url.starts_with(origin), "request to another origin: {url}");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "close"}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A live source looping a real MP3 file at real time from a thread, as a DJ's encoder would.
struct LiveSource {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LiveSource {
    fn start(addr: SocketAddr, mount: &str, title: &str) -> LiveSource {
        let file = std::fs::read(manifest_dir().join("music/01-morning-tone.mp3")).unwrap();
        let frames = mp3_frames(&file);
        assert!(!frames.is_empty(), "no MP3 frames in the demo track");
        let mut source = Source::connect(
            addr,
            &format!(
                "SOURCE {mount} HTTP/1.0\r\n{SOURCE_AUTH}Content-Type: audio/mpeg\r\nUser-Agent: butt/1.42.0 (browser test)\r\n\
                 ice-name: Cycast Test FM\r\nice-bitrate: 128\r\nice-public: 1\r\n\r\n"
            ),
        );
        assert!(
            source.response.starts_with("HTTP/1.0 200"),
            "source refused: {}",
            source.response
        );
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut played = Duration::ZERO;
            'outer: loop {
                for (frame, length) in &frames {
                    if stopped.load(Ordering::Relaxed) || source.stream.write_all(frame).is_err() {
                        break 'outer;
                    }
                    played += *length;
                    // Half a second ahead of real time, like an encoder's buffer.
                    if let Some(wait) = (start + played)
                        .checked_duration_since(Instant::now() + Duration::from_millis(500))
                    {
                        std::thread::sleep(wait);
                    }
                }
            }
        });
        let live = LiveSource {
            stop,
            thread: Some(thread),
        };
        set_title(addr, mount, title);
        live
    }
}

impl Drop for LiveSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The MP3 frames of `file` (tags skipped), each with its play time.
fn mp3_frames(file: &[u8]) -> Vec<(Vec<u8>, Duration)> {
    let mut pos = 0;
    if file.starts_with(b"ID3") && file.len() > 10 {
        let size = file[6..10]
            .iter()
            .fold(0usize, |acc, b| acc << 7 | (*b as usize & 0x7F));
        pos = 10 + size;
    }
    let mut frames = Vec::new();
    while pos + 4 <= file.len() {
        match parse_header(&file[pos..]) {
            Some(h) if pos + h.frame_len <= file.len() => {
                let length =
                    Duration::from_secs_f64(f64::from(h.samples) / f64::from(h.sample_rate));
                frames.push((file[pos..pos + h.frame_len].to_vec(), length));
                pos += h.frame_len;
            }
            _ => pos += 1,
        }
    }
    frames
}

/// Sets a mount's title through the admin API (on the source port, as DJ software does).
fn set_title(addr: SocketAddr, mount: &str, song: &str) {
    let query: String = song
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let answer = raw_exchange(
        addr,
        format!("GET /admin/metadata?mount={mount}&mode=updinfo&song={query} HTTP/1.0\r\n{SOURCE_AUTH}\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.0 200"),
        "metadata update refused: {answer}"
    );
}

/// An admin API GET on the listen port; the JSON body.
fn admin_json(server: &Server, path: &str) -> Value {
    let answer = raw_exchange(
        server.listen,
        format!("GET {path} HTTP/1.0\r\n{ADMIN_AUTH}\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    let (head, body) = common::split_head(&answer);
    assert!(head.starts_with("HTTP/1.0 200"), "{path}: {head}");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn listener_ids(server: &Server, mount: &str) -> Vec<u64> {
    let list = admin_json(server, &format!("/admin/listclients.json?mount={mount}"));
    list["icestats"]["source"][0]["listener"]
        .as_array()
        .map(|ls| ls.iter().filter_map(|l| l["ID"].as_u64()).collect())
        .unwrap_or_default()
}

fn wait_until(timeout: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn origin(server: &Server) -> String {
    format!("http://{}", server.listen)
}

#[test]
fn station_page_follows_the_title_and_plays_the_stream() {
    let Some(mut browser) = browser(json!({"colorScheme": "light"})) else {
        return;
    };
    let server = Server::start(&config(""));
    let _live = LiveSource::start(server.source, "/stream", "Morning Tone Band - First Light");
    let origin = origin(&server);

    assert_eq!(browser.open(&format!("{origin}/")), json!(200));
    assert_eq!(browser.text("#station-name"), "Cycast Test FM");
    assert_eq!(
        browser.text("#station-description"),
        "Tones around the clock, live from the loopback"
    );
    assert_eq!(
        browser.text("#now-title"),
        "First Light",
        "rendered by the server"
    );
    assert_eq!(browser.text("#now-artist"), "Morning Tone Band");
    assert_eq!(browser.text("#mode-label"), "Live DJ");
    browser.wait_for(
        "document.getElementById('connection').textContent === 'Online'",
        Duration::from_secs(5),
        "the first status poll",
    );

    // A title change reaches the page by itself.
    set_title(server.source, "/stream", "Second Artist - Evening Signal");
    let changed = Instant::now();
    browser.wait_for(
        "document.getElementById('now-title').textContent === 'Evening Signal' && \
         document.getElementById('now-artist').textContent === 'Second Artist'",
        Duration::from_secs(5),
        "the new title on the page",
    );
    let took = changed.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the title took {took:?} to appear"
    );
    assert_eq!(
        browser.text(".player[data-mount=\"/stream\"] [data-field=\"title\"]"),
        "Second Artist - Evening Signal"
    );

    // The player points at the HLS playlist where the browser claims to play HLS, else at
    // the stream, and plays.
    let player = "document.querySelector('audio[data-mount=\"/stream\"]')";
    assert_eq!(
        browser.eval(&format!("{player}.dataset.hls")),
        json!("/stream/index.m3u8")
    );
    let native_hls = browser.eval(&format!(
        "!!{player}.canPlayType('application/vnd.apple.mpegurl')"
    )) == json!(true);
    let src = browser.eval(&format!("{player}.src"));
    if native_hls {
        assert_eq!(src, json!(format!("{origin}/stream/index.m3u8")));
    } else {
        assert_eq!(src, json!(format!("{origin}/stream")));
    }
    // A browser that claims HLS but cannot read packed audio rejects this first play; the
    // page then falls back to the stream and plays that. (Played once the first segment is
    // out, so the browser gets a playlist rather than a 404.)
    wait_until(Duration::from_secs(15), "the first HLS segment", || {
        http_get(server.listen, "/stream/index.m3u8")
            .0
            .starts_with("HTTP/1.1 200")
    });
    browser.eval(&format!("{player}.play().then(() => true, () => false)"));
    let first = browser.wait_for(
        "(() => { const a = document.querySelector('audio[data-mount=\"/stream\"]'); \
         return a.currentTime > 0.5 && !a.paused && a.currentTime; })()",
        Duration::from_secs(15),
        "the audio element to start playing",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let later = browser.eval("document.querySelector('audio[data-mount=\"/stream\"]').currentTime");
    assert!(
        later.as_f64().unwrap() > first.as_f64().unwrap() + 0.5,
        "currentTime does not advance: {first} then {later}"
    );
    let error = browser
        .eval("document.querySelector('audio[data-mount=\"/stream\"]').error?.message ?? null");
    assert_eq!(error, Value::Null);
    let fell_back = browser.eval(&format!("{player}.dataset.hlsFailed === '1'")) == json!(true);
    assert!(
        native_hls || !fell_back,
        "fell back from HLS it never tried"
    );
    eprintln!(
        "station page player: claims native HLS {native_hls}, fell back to the stream {fell_back}"
    );
    let playing = browser.eval(&format!("{player}.src"));
    if native_hls && !fell_back {
        assert_eq!(playing, json!(format!("{origin}/stream/index.m3u8")));
    } else {
        assert_eq!(playing, json!(format!("{origin}/stream")));
    }

    // The player counts as a listener (an HLS session or a stream connection), and the page
    // shows it. A failed HLS try counts as a session until it lapses (twice the 4 s target).
    let hls_player = native_hls && !fell_back;
    server.wait_stats(Duration::from_secs(12), "the browser's listener", |s| {
        s["total_listeners"] == if hls_player { 0 } else { 1 }
            && s["mounts"][0]["hls_listeners"] == if hls_player { 1 } else { 0 }
    });
    browser.wait_for(
        "document.getElementById('listeners').textContent === '1'",
        Duration::from_secs(5),
        "the listener count",
    );
    browser.wait_for(
        "/\\d+m \\d\\ds/.test(document.getElementById('uptime').textContent)",
        Duration::from_secs(3),
        "the uptime",
    );

    // A mount that appears later gets its own player without a reload.
    let _second = LiveSource::start(server.source, "/lounge", "Night Owls - Slow Tones");
    browser.wait_for(
        "document.querySelector('.player[data-mount=\"/lounge\"] [data-field=\"title\"]')?.textContent === 'Night Owls - Slow Tones'",
        Duration::from_secs(5),
        "a player for the new mount",
    );
    let lounge = "document.querySelector('audio[data-mount=\"/lounge\"]')";
    assert_eq!(
        browser.eval(&format!("{lounge}.dataset.hls")),
        json!("/lounge/index.m3u8")
    );
    let src = browser.eval(&format!("{lounge}.src"));
    if native_hls {
        assert_eq!(src, json!(format!("{origin}/lounge/index.m3u8")));
    } else {
        assert_eq!(src, json!(format!("{origin}/lounge")));
    }
    std::thread::sleep(Duration::from_secs(1));

    browser.screenshot("station-light.png");
    browser.call(json!({"cmd": "colorScheme", "value": "dark"}));
    let background = browser.eval("getComputedStyle(document.body).backgroundColor");
    assert_eq!(background, json!("rgb(15, 17, 21)"), "dark scheme colours");
    browser.screenshot("station-dark.png");
    browser.assert_clean(&origin);
}

/// The station page's player as Safari and iOS see it: a browser that claims HLS
/// (`canPlayType` of the playlist type, simulated here because no WebKit runs on this
/// machine) gets the mount's playlist, one that does not gets the Icecast stream, for the
/// mounts rendered with the page and for one that appears later.
#[test]
fn station_page_picks_hls_exactly_when_the_browser_claims_it() {
    let Some(mut browser) = browser(json!({"colorScheme": "light"})) else {
        return;
    };
    let server = Server::start(&config(""));
    let _live = LiveSource::start(server.source, "/stream", "Morning Tone Band - First Light");
    let origin = origin(&server);
    // `?claims-hls` answers "maybe" for the playlist type, `?no-hls` answers "".
    browser.call(json!({"cmd": "initScript", "js": "(() => {\
        const own = HTMLMediaElement.prototype.canPlayType;\
        HTMLMediaElement.prototype.canPlayType = function (type) {\
          if (type !== 'application/vnd.apple.mpegurl') return own.call(this, type);\
          if (location.search === '?claims-hls') return 'maybe';\
          if (location.search === '?no-hls') return '';\
          return own.call(this, type);\
        };\
      })()"}));
    let src = |browser: &mut Browser, mount: &str| {
        browser.eval(&format!(
            "document.querySelector('audio[data-mount=\"{mount}\"]')?.getAttribute('src') ?? null"
        ))
    };
    let mut second = None;
    for (hash, claims) in [("?no-hls", false), ("?claims-hls", true)] {
        assert_eq!(browser.open(&format!("{origin}/{hash}")), json!(200));
        let expected = |mount: &str| {
            json!(if claims {
                format!("{mount}/index.m3u8")
            } else {
                mount.to_string()
            })
        };
        assert_eq!(src(&mut browser, "/stream"), expected("/stream"), "{hash}");
        // A mount that appears while the page is open gets the same choice.
        let mount = format!("/later{}", u8::from(claims));
        second = Some(LiveSource::start(
            server.source,
            &mount,
            "Night Owls - Slow Tones",
        ));
        browser.wait_for(
            &format!("document.querySelector('audio[data-mount=\"{mount}\"]')"),
            Duration::from_secs(5),
            "a player for the new mount",
        );
        assert_eq!(src(&mut browser, &mount), expected(&mount), "{hash}");
    }
    drop(second);
    browser.assert_clean(&origin);
}

/// hls.js from npm (test-only, installed beside playwright-core), or why it is missing.
fn hls_js() -> Result<PathBuf, String> {
    let path = manifest_dir().join("tests/browser/node_modules/hls.js/dist/hls.min.js");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} not found", path.display()))
    }
}

#[test]
fn hls_js_plays_the_playlist_and_reports_the_id3_title() {
    let hls_js = match hls_js() {
        Ok(path) => path,
        Err(why) => {
            let msg = format!(
                "the hls.js test needs hls.js ({why}): run ./scripts/install-browser-deps.sh"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return;
        }
    };
    let Some(mut browser) = browser(json!({})) else {
        return;
    };
    let server = Server::start(&config("hls {\n  segment_seconds = 2\n}\n"));
    let live = LiveSource::start(server.source, "/stream", "Morning Tone Band - First Light");
    let origin = origin(&server);
    wait_until(Duration::from_secs(15), "the first HLS segment", || {
        http_get(server.listen, "/stream/index.m3u8")
            .0
            .starts_with("HTTP/1.1 200")
    });

    // The test page and hls.js come from the browser itself, on the server's origin.
    let page = manifest_dir().join("tests/browser/hls-player.html");
    browser.call(json!({"cmd": "route", "urlPath": "/test-hls/player.html", "path": page, "contentType": "text/html; charset=utf-8"}));
    browser.call(json!({"cmd": "route", "urlPath": "/test-hls/hls.js", "path": hls_js, "contentType": "text/javascript"}));
    assert_eq!(
        browser.open(&format!(
            "{origin}/test-hls/player.html?src=/stream/index.m3u8"
        )),
        json!(200)
    );
    assert_eq!(
        browser.eval("report.supported"),
        json!(true),
        "hls.js finds no MediaSource"
    );
    browser.eval("audio.play().then(() => true)");
    let first = browser.wait_for(
        "audio.currentTime > 0.5 && !audio.paused && audio.currentTime",
        Duration::from_secs(20),
        "hls.js to start playing",
    );
    browser.wait_for(
        &format!("audio.currentTime > {} + 1", first.as_f64().unwrap()),
        Duration::from_secs(10),
        "currentTime to advance",
    );

    // The title of the segments' ID3 tags, through hls.js's metadata event.
    let has_title = |title: &str, artist: &str| {
        format!(
            "report.metadata.some(m => m.TIT2 === {} && m.TPE1 === {})",
            json!(title),
            json!(artist)
        )
    };
    browser.wait_for(
        &has_title("First Light", "Morning Tone Band"),
        Duration::from_secs(10),
        "the first title in hls.js's metadata",
    );
    set_title(server.source, "/stream", "Second Artist - Evening Signal");
    browser.wait_for(
        &has_title("Evening Signal", "Second Artist"),
        Duration::from_secs(20),
        "the new title in hls.js's metadata",
    );
    // Each segment's tag sits at its start: a later segment's tag has a later timestamp.
    let metadata = browser.eval("report.metadata");
    let tags: Vec<(u64, f64)> = metadata
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["sn"].as_u64().unwrap(), m["pts"].as_f64().unwrap()))
        .collect();
    assert!(
        tags.windows(2).all(|w| w[1].0 <= w[0].0 || w[0].1 < w[1].1),
        "metadata timestamps out of order: {metadata}"
    );

    // Across discontinuities: the live source leaves for one at 48 kHz, which plays 4 s and
    // leaves for the playlist's 44.1 kHz tracks. hls.js plays into the segments after both.
    if common::have("ffmpeg") {
        drop(live);
        ffmpeg_live_source(server.source, 4, 48_000);
        let crossed = browser.wait_for(
            "report.cc >= 2 && audio.currentTime",
            Duration::from_secs(30),
            "hls.js to play past both discontinuities",
        );
        browser.wait_for(
            &format!("audio.currentTime > {} + 1", crossed.as_f64().unwrap()),
            Duration::from_secs(10),
            "currentTime to advance after the discontinuities",
        );
        let text =
            String::from_utf8_lossy(&http_get(server.listen, "/stream/index.m3u8").1).into_owned();
        assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    } else {
        eprintln!("ffmpeg not installed; hls.js is not played across a discontinuity");
    }
    let fatal = browser.eval("report.errors.filter(e => e.startsWith('fatal'))");
    assert_eq!(fatal, json!([]), "hls.js gave up");
    assert!(
        browser.eval("audio.error") == Value::Null,
        "the audio element failed"
    );

    // The player is an HLS session, not a stream connection.
    server.wait_stats(Duration::from_secs(5), "the HLS session", |s| {
        s["total_listeners"] == 0 && s["mounts"][0]["hls_listeners"] == 1
    });
    browser.assert_clean(&origin);
}

#[test]
fn console_lists_and_kicks_a_listener_and_sets_the_title() {
    let Some(mut browser) = browser(json!({
        "colorScheme": "dark",
        "credentials": {"username": "admin", "password": ADMIN_PASSWORD},
    })) else {
        return;
    };
    let server = Server::start_with_args(&config(""), &["--shards", "2"]);
    let _live = LiveSource::start(server.source, "/stream", "Morning Tone Band - First Light");
    let origin = origin(&server);
    // The first listener alone, so its id is known: the API lists ids by shard, not by age.
    let mut listeners = vec![Listener::connect(server.listen, "/stream")];
    wait_until(Duration::from_secs(5), "the first listener", || {
        listener_ids(&server, "/stream").len() == 1
    });
    let victim = listener_ids(&server, "/stream")[0];
    listeners.extend((0..2).map(|_| Listener::connect(server.listen, "/stream")));
    wait_until(Duration::from_secs(5), "three listeners", || {
        listener_ids(&server, "/stream").len() == 3
    });

    assert_eq!(browser.open(&format!("{origin}/admin/")), json!(200));
    // The mount with its live source.
    browser.wait_for(
        "document.querySelector('.mount[data-mount=\"/stream\"] [data-field=\"agent\"]')?.textContent === 'butt/1.42.0 (browser test)'",
        Duration::from_secs(5),
        "the source's client software",
    );
    let card = ".mount[data-mount=\"/stream\"]";
    assert_eq!(
        browser.text(&format!("{card} [data-field=\"ip\"]")),
        "127.0.0.1"
    );
    assert_eq!(
        browser.text(&format!("{card} [data-field=\"bitrate\"]")),
        "128 kbps"
    );
    assert_eq!(
        browser.text(&format!("{card} [data-field=\"mode\"]")),
        "Live DJ"
    );
    assert!(browser
        .text(&format!("{card} [data-field=\"since\"]"))
        .contains('('));
    // Every listener, with its address and software.
    browser.wait_for(
        "document.querySelectorAll('#listeners tr[data-id]').length === 3",
        Duration::from_secs(5),
        "three listener rows",
    );
    let row = format!("#listeners tr[data-id=\"{victim}\"]");
    let cells = browser.eval(&format!(
        "[...document.querySelector({}).cells].map(c => c.textContent)",
        json!(row)
    ));
    assert_eq!(cells[0], json!(victim.to_string()));
    assert_eq!(cells[1], json!("/stream"));
    assert_eq!(cells[2], json!("127.0.0.1"));
    assert_eq!(cells[3], json!("cycast-test"));
    assert_eq!(browser.text("#page-range"), "1–3 of 3");
    assert_eq!(browser.text("#listener-count"), "(3)");

    // The search runs on the server: nothing matches, then the agent in other case does.
    browser.call(json!({"cmd": "fill", "selector": "#listener-search", "value": "no such player"}));
    browser.wait_for(
        "document.querySelectorAll('#listeners tr[data-id]').length === 0 && \
         !document.querySelector('#listeners tr.empty').hidden && \
         document.getElementById('page-range').textContent === '0 of 0 matching'",
        Duration::from_secs(5),
        "no rows for a search nobody matches",
    );
    assert_eq!(browser.text("#listener-count"), "(0 of 3)");
    browser.call(json!({"cmd": "fill", "selector": "#listener-search", "value": "CYCAST-TEST"}));
    browser.wait_for(
        "document.querySelectorAll('#listeners tr[data-id]').length === 3",
        Duration::from_secs(5),
        "the rows matching the agent",
    );
    browser.call(json!({"cmd": "fill", "selector": "#listener-search", "value": ""}));
    browser.wait_for(
        "document.getElementById('page-range').textContent === '1–3 of 3'",
        Duration::from_secs(5),
        "every row again",
    );
    assert_eq!(
        browser.eval("[document.getElementById('page-prev').disabled, document.getElementById('page-next').disabled]"),
        json!([true, true])
    );

    // Charts fill from /api/stats: one line per shard in each.
    browser.wait_for(
        "document.querySelectorAll('#chart-listeners polyline').length === 2 && \
         document.querySelectorAll('#chart-bandwidth polyline').length === 2",
        Duration::from_secs(8),
        "a line per shard in both charts",
    );
    std::thread::sleep(Duration::from_secs(4));
    browser.screenshot("admin-dark.png");
    browser.call(json!({"cmd": "colorScheme", "value": "light"}));
    browser.screenshot("admin-light.png");

    // Kick: the row goes, the API forgets the listener and its socket closes.
    browser
        .call(json!({"cmd": "click", "selector": format!("{row} button[data-action=\"kick\"]")}));
    browser.wait_for(
        &format!("!document.querySelector({}) && document.querySelectorAll('#listeners tr[data-id]').length === 2", json!(row)),
        Duration::from_secs(5),
        "the kicked listener's row to go",
    );
    assert!(
        browser
            .text("#notice")
            .contains(&format!("Client {victim} removed")),
        "notice: {}",
        browser.text("#notice")
    );
    wait_until(
        Duration::from_secs(5),
        "the listener to leave listclients",
        || !listener_ids(&server, "/stream").contains(&victim),
    );
    assert!(
        listeners[0].closed_within(Duration::from_secs(5)),
        "the kicked listener's socket stays open"
    );
    for other in &mut listeners[1..] {
        assert!(
            other.read_for(Duration::from_millis(1000)) > 0,
            "another listener stopped receiving"
        );
    }
    assert_eq!(listener_ids(&server, "/stream").len(), 2);

    // The title form.
    browser.call(json!({"cmd": "fill", "selector": format!("{card} input[name=\"song\"]"), "value": "Console Artist - Typed Title & More"}));
    browser.call(
        json!({"cmd": "press", "selector": format!("{card} input[name=\"song\"]"), "key": "Enter"}),
    );
    wait_until(Duration::from_secs(5), "the title from the console", || {
        let (_, body) = http_get(server.listen, "/api/status");
        let status: Value = serde_json::from_slice(&body).unwrap();
        status["metadata"]["title"] == "Typed Title & More"
            && status["metadata"]["artist"] == "Console Artist"
    });
    browser.wait_for(
        &format!(
            "document.querySelector({}).textContent === 'Console Artist - Typed Title & More'",
            json!(format!("{card} [data-field=\"title\"]"))
        ),
        Duration::from_secs(5),
        "the new title in the mount card",
    );

    // Kill source: the mount falls back to the playlist.
    browser.call(
        json!({"cmd": "click", "selector": format!("{card} button[data-action=\"killsource\"]")}),
    );
    browser.wait_for(
        &format!(
            "document.querySelector({}).textContent === 'AutoDJ'",
            json!(format!("{card} [data-field=\"mode\"]"))
        ),
        Duration::from_secs(8),
        "the mount to fall back to AutoDJ",
    );
    browser.assert_clean(&origin);
}

#[test]
fn console_skips_to_the_next_playlist_track() {
    let Some(mut browser) = browser(json!({
        "credentials": {"username": "admin", "password": ADMIN_PASSWORD},
    })) else {
        return;
    };
    let server = Server::start(&config(""));
    let origin = origin(&server);
    let title = |server: &Server| {
        let (_, body) = http_get(server.listen, "/api/status");
        let status: Value = serde_json::from_slice(&body).unwrap();
        status["metadata"]["title"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    wait_until(
        Duration::from_secs(10),
        "the playlist's first title",
        || !title(&server).is_empty(),
    );
    let first = title(&server);

    assert_eq!(browser.open(&format!("{origin}/admin")), json!(200));
    let card = ".mount[data-mount=\"/stream\"]";
    browser.wait_for(
        &format!(
            "document.querySelector({})?.textContent === 'Playlist (AutoDJ)'",
            json!(format!("{card} [data-field=\"agent\"]"))
        ),
        Duration::from_secs(5),
        "the playlist mount",
    );
    let kill_disabled = browser.eval(&format!(
        "document.querySelector({}).disabled",
        json!(format!("{card} button[data-action=\"killsource\"]"))
    ));
    assert_eq!(kill_disabled, json!(true), "no live source to kill");
    browser
        .call(json!({"cmd": "click", "selector": format!("{card} button[data-action=\"skip\"]")}));
    wait_until(Duration::from_secs(5), "the next track", || {
        title(&server) != first
    });
    let next = title(&server);
    browser.wait_for(
        &format!(
            "document.querySelector({}).textContent.endsWith({})",
            json!(format!("{card} [data-field=\"title\"]")),
            json!(next)
        ),
        Duration::from_secs(5),
        "the next track's title in the console",
    );
    browser.assert_clean(&origin);
}

/// The console and its assets over plain HTTP, no browser needed.
#[test]
fn console_needs_the_admin_credentials() {
    let server = Server::start(&config(""));
    let get = |head: &str| {
        let answer = raw_exchange(server.listen, head.as_bytes(), Duration::from_secs(5));
        common::split_head(&answer)
    };
    for path in ["/admin/", "/admin"] {
        let (head, _) = get(&format!("GET {path} HTTP/1.0\r\n\r\n"));
        assert!(head.starts_with("HTTP/1.0 401"), "{head}");
        assert!(
            head.contains("WWW-Authenticate: Basic realm=\"Icecast2 Server\""),
            "{head}"
        );
        // admin:wrong
        let (head, _) = get(&format!(
            "GET {path} HTTP/1.0\r\nAuthorization: Basic YWRtaW46d3Jvbmc=\r\n\r\n"
        ));
        assert!(head.starts_with("HTTP/1.0 401"), "{head}");
        let (head, body) = get(&format!("GET {path} HTTP/1.0\r\n{ADMIN_AUTH}\r\n"));
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        assert!(head.contains("Content-Type: text/html"), "{head}");
        assert!(head.contains("X-Frame-Options: DENY"), "{head}");
        assert!(String::from_utf8_lossy(&body).contains("Admin · Cycast Test FM"));
    }
    // The source password is not an admin password.
    let (head, _) = get(&format!("GET /admin/ HTTP/1.0\r\n{SOURCE_AUTH}\r\n"));
    assert!(head.starts_with("HTTP/1.0 401"), "{head}");

    // The page and every asset it names are served, and a HEAD gets no body.
    let (head, body) = http_get(server.listen, "/");
    assert!(
        head.starts_with("HTTP/1.0 200") && head.contains("Content-Security-Policy"),
        "{head}"
    );
    let page = String::from_utf8_lossy(&body);
    for asset in ["/web/style.css", "/web/station.js", "/web/icon.svg"] {
        assert!(page.contains(asset), "the page does not use {asset}");
        let (head, body) = http_get(server.listen, asset);
        assert!(
            head.starts_with("HTTP/1.0 200") && !body.is_empty(),
            "{asset}: {head}"
        );
    }
    let (head, body) = http_get(server.listen, "/web/admin.js");
    assert!(
        head.contains("text/javascript") && !body.is_empty(),
        "{head}"
    );
    let answer = raw_exchange(
        server.listen,
        b"HEAD / HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    );
    let (head, body) = common::split_head(&answer);
    assert!(
        head.starts_with("HTTP/1.0 200") && body.is_empty(),
        "{head}"
    );

    // No admin password: the console is off rather than open.
    let open = Server::start("playlist {\n  directory = \"/nonexistent\"\n}\n");
    let (head, _) = http_get(open.listen, "/admin/");
    assert!(head.starts_with("HTTP/1.0 403"), "{head}");
}

/// A self-signed certificate for `localhost` written to `dir`, and its Chromium pin: the
/// base64 SHA-256 of its SubjectPublicKeyInfo, for `--ignore-certificate-errors-spki-list`,
/// which trusts this key alone rather than switching certificate checks off.
fn localhost_certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    use base64::Engine;
    use rcgen::PublicKeyData;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let rustls::SupportedCipherSuite::Tls13(suite) =
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
    else {
        unreachable!("a TLS 1.3 suite")
    };
    let spki = certified.signing_key.subject_public_key_info();
    let digest = suite.common.hash_provider.hash(&spki);
    let pin = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    (cert, key, pin)
}

#[test]
fn station_page_over_https_plays_the_stream_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pin) = localhost_certificate(dir.path());
    let Some(mut browser) = browser(json!({"args": [
        format!("--ignore-certificate-errors-spki-list={pin}"),
        "--host-resolver-rules=MAP localhost 127.0.0.1",
    ]})) else {
        return;
    };
    let server = Server::start(&config(&format!(
        "tls {{\n  port = 0\n  certificate = \"{}\"\n  key = \"{}\"\n}}\n",
        cert.display(),
        key.display()
    )));
    let _live = LiveSource::start(server.source, "/stream", "Morning Tone Band - First Light");
    let https = server.logged_addr("https=");
    let origin = format!("https://localhost:{}", https.port());

    assert_eq!(browser.open(&format!("{origin}/")), json!(200));
    assert_eq!(
        browser.eval("location.protocol + ' ' + window.isSecureContext"),
        json!("https: true")
    );
    assert_eq!(browser.text("#now-title"), "First Light");
    browser.wait_for(
        "document.getElementById('connection').textContent === 'Online'",
        Duration::from_secs(5),
        "the first status poll over HTTPS",
    );

    // The page's own player, pointed at the stream on the same HTTPS origin (the HLS choice
    // is the plain-port test's subject).
    let player = "document.querySelector('audio[data-mount=\"/stream\"]')";
    browser.eval(&format!(
        "(() => {{ const a = {player}; a.src = '/stream'; a.load(); return true; }})()"
    ));
    browser.eval(&format!("{player}.play().then(() => true, () => false)"));
    let first = browser.wait_for(
        &format!("(() => {{ const a = {player}; return a.currentTime > 0.5 && !a.paused && a.currentTime; }})()"),
        Duration::from_secs(15),
        "the audio element to start playing over HTTPS",
    );
    browser.wait_for(
        &format!("{player}.currentTime > {} + 1", first.as_f64().unwrap()),
        Duration::from_secs(10),
        "currentTime to advance",
    );
    assert_eq!(
        browser.eval(&format!("{player}.currentSrc")),
        json!(format!("{origin}/stream"))
    );
    assert_eq!(
        browser.eval(&format!("{player}.error?.message ?? null")),
        Value::Null
    );
    // The server counts it as a stream listener, connected to the HTTPS port.
    server.wait_stats(Duration::from_secs(5), "the browser's listener", |s| {
        s["total_listeners"] == 1
    });
    let list = admin_json(&server, "/admin/listclients.json?mount=/stream");
    let listeners = list["icestats"]["source"][0]["listener"]
        .as_array()
        .unwrap();
    assert_eq!(listeners.len(), 1, "{list}");
    // Every request of the page went to the HTTPS origin, and nothing was blocked.
    browser.assert_clean(&origin);
}
