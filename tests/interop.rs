//! Real clients against the real server, no mocks: libshout's `shout`, ezstream and Liquidsoap as
//! sources (with their title updates reaching ICY listeners), curl as a listener, and a real
//! Prometheus server scraping `/metrics`. ffmpeg and ffprobe are covered in tests/ffmpeg.rs.
//!
//! `scripts/install-interop-deps.sh` installs the programs. Without one, its test prints
//! `SKIPPED` and passes, except under `CI=true`, where a missing program is a failure.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const INSTALL: &str = "install with scripts/install-interop-deps.sh";

/// No playlist: whatever a mount plays came from the source under test.
const LIVE_ONLY: &str = r#"
broadcaster { chunk_ms = 200 }
metadata { icy_metaint = 8000 }
playlist { directory = "/nonexistent/cycast-interop" }
"#;

fn music_dir() -> String {
    format!("{}/music", env!("CARGO_MANIFEST_DIR"))
}

fn demo_track() -> String {
    format!("{}/01-morning-tone.mp3", music_dir())
}

/// The demo playlist as the source, for tests about listeners and metrics.
fn playlist_config() -> String {
    format!(
        "broadcaster {{ chunk_ms = 200 }}\nmetadata {{ icy_metaint = 8000 }}\nplaylist {{ directory = \"{}\" }}\n",
        music_dir()
    )
}

/// Whether `program` can run. Missing programs skip the test locally but fail it in CI, where
/// the install script has run and a skip would hide a broken install.
fn need(program: &str) -> bool {
    if have(program) {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{program} is missing under CI=true ({INSTALL})"
    );
    eprintln!("SKIPPED: {program} is not installed ({INSTALL})");
    false
}

/// A child process killed when the test ends, passed or not, so no client outlives its test.
struct Running {
    child: Child,
    what: &'static str,
}

impl Running {
    fn spawn(what: &'static str, command: &mut Command) -> Running {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        Running { child, what }
    }

    /// Fails with `log` (the program's own output) if it has already exited.
    fn assert_running(&mut self, log: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited with {status}: {}",
                self.what,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Output of a program goes to a file, so a failure can show it without a pipe filling up.
fn log_file(server: &Server, name: &str) -> (std::path::PathBuf, Stdio, Stdio) {
    let path = server.path(name);
    let file = File::create(&path).unwrap();
    (path, file.try_clone().unwrap().into(), file.into())
}

fn wait_live(server: &Server, mount: &str, timeout: Duration) {
    server.wait_stats(timeout, &format!("{mount} on air"), |s| {
        s["mounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["mount"] == mount && m["live"] == true))
    });
}

/// The `/status-json.xsl` entry of `mount`.
fn status_source(server: &Server, mount: &str) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_slice(&server.get("/status-json.xsl").1).unwrap();
    let sources = &status["icestats"]["source"];
    let list = match sources.as_array() {
        Some(list) => list.clone(),
        None => vec![sources.clone()],
    };
    list.into_iter()
        .find(|s| s["mount"] == mount)
        .unwrap_or_else(|| panic!("{mount} not in /status-json.xsl: {status}"))
}

/// Asserts `audio` is whole MPEG audio frames from its first byte (a trailing partial frame is
/// the read cut off); returns the number of frames.
fn assert_frames(audio: &[u8], what: &str) -> usize {
    let frames = walk_frames(audio).unwrap_or_else(|at| {
        panic!(
            "{what}: not an MPEG frame at byte {at} of {}: {:02x?}",
            audio.len(),
            &audio[at..audio.len().min(at + 16)]
        )
    });
    assert!(frames.len() > 20, "{what}: only {} frames", frames.len());
    frames.len()
}

/// Splits an ICY stream (`metaint` audio bytes, then a length byte and that many 16-byte
/// blocks of metadata) into audio and the titles announced, in order.
#[derive(Default)]
struct Icy {
    metaint: usize,
    audio: Vec<u8>,
    titles: Vec<String>,
    until_meta: usize,
    meta: Option<(usize, Vec<u8>)>,
}

impl Icy {
    fn new(metaint: usize) -> Icy {
        Icy {
            metaint,
            until_meta: metaint,
            ..Icy::default()
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if let Some((len, block)) = &mut self.meta {
                let take = (*len - block.len()).min(bytes.len());
                block.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if block.len() == *len {
                    let text = String::from_utf8_lossy(block).into_owned();
                    if let Some(title) = text
                        .strip_prefix("StreamTitle='")
                        .and_then(|t| t.split("';").next())
                    {
                        self.titles.push(title.to_string());
                    }
                    self.meta = None;
                    self.until_meta = self.metaint;
                }
            } else if self.until_meta == 0 {
                self.meta = Some((bytes[0] as usize * 16, Vec::new()));
                bytes = &bytes[1..];
                if self.meta.as_ref().unwrap().0 == 0 {
                    self.meta = None;
                    self.until_meta = self.metaint;
                }
            } else {
                let take = self.until_meta.min(bytes.len());
                self.audio.extend_from_slice(&bytes[..take]);
                self.until_meta -= take;
                bytes = &bytes[take..];
            }
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// An ICY listener on `mount`: reads until a title satisfying `wanted` arrives; returns the
/// stream split into audio and titles.
fn await_title(
    server: &Server,
    mount: &str,
    timeout: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Icy {
    let mut listener = Listener::connect_with(server.listen, mount, "Icy-MetaData: 1\r\n");
    assert!(
        listener.head.starts_with("HTTP/1.0 200"),
        "{}",
        listener.head
    );
    let metaint: usize = header(&listener.head, "icy-metaint")
        .unwrap_or_else(|| panic!("no icy-metaint: {}", listener.head))
        .parse()
        .unwrap();
    let mut icy = Icy::new(metaint);
    icy.feed(&listener.body);
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 64 * 1024];
    while !icy.titles.iter().any(|t| wanted(t)) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no wanted title on {mount} within {timeout:?}; titles seen: {:?}",
            icy.titles
        );
        listener.stream.set_read_timeout(Some(left)).unwrap();
        match listener.stream.read(&mut buf) {
            Ok(0) => panic!("{mount} closed; titles seen: {:?}", icy.titles),
            Ok(n) => icy.feed(&buf[..n]),
            Err(_) => {}
        }
    }
    icy
}

/// Decodes `seconds` of `mount` with ffmpeg; returns the PCM byte count.
fn ffmpeg_decodes(server: &Server, mount: &str, seconds: u32) -> usize {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(format!("http://{}{mount}", server.listen))
        .args(["-t", &seconds.to_string(), "-f", "s16le", "-ac", "2", "-ar"])
        .args(["44100", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg listener on {mount}: {errors}"
    );
    let expected = seconds as usize * 44_100 * 4;
    assert!(
        out.stdout.len() >= expected * 95 / 100,
        "decoded {} of {expected} PCM bytes from {mount}",
        out.stdout.len()
    );
    out.stdout.len()
}

#[test]
fn libshout_http_source_is_decoded_and_listed_live() {
    if !need("shout") || !need("ffmpeg") {
        return;
    }
    let server = Server::start(LIVE_ONLY);
    let (log, out, err) = log_file(&server, "shout.log");
    let mut shout = Running::spawn(
        "shout",
        Command::new("shout")
            .args(["--host", "127.0.0.1", "--port"])
            .arg(server.source.port().to_string())
            .args(["--mount", "/shout", "--user", "source", "--pass", "hackme"])
            .args(["--proto", "http"])
            // shout checks --format against the usage given so far: usage must come first.
            .args(["--usage", "audio", "--format", "mp3"])
            .args([
                "--station-name",
                "libshout test",
                "--station-genre",
                "Interop",
            ])
            .stdin(File::open(demo_track()).unwrap())
            .stdout(out)
            .stderr(err),
    );
    wait_live(&server, "/shout", Duration::from_secs(10));
    shout.assert_running(&log);

    let status = status_source(&server, "/shout");
    assert_eq!(status["live"], true, "{status}");
    assert_eq!(status["server_name"], "libshout test", "{status}");
    assert_eq!(status["genre"], "Interop", "{status}");
    assert_eq!(status["server_type"], "audio/mpeg", "{status}");

    let mut raw = Listener::connect(server.listen, "/shout");
    assert!(raw.head.starts_with("HTTP/1.0 200"), "{}", raw.head);
    assert_eq!(header(&raw.head, "icy-name"), Some("libshout test"));
    raw.read_at_least(48 * 1024, Duration::from_secs(8));
    assert_frames(&raw.body, "raw listener of shout");
    ffmpeg_decodes(&server, "/shout", 2);
    shout.assert_running(&log);
}

/// libshout's ICY protocol is the Shoutcast v1 source login: it connects to the given port + 1
/// and sends the password alone on the first line, then `icy-*` lines and a blank line, and
/// expects `OK2`. Its first connection is a `!POKE` probe that should be refused.
#[test]
fn libshout_icy_source_is_accepted() {
    if !need("shout") {
        return;
    }
    let server = Server::start(LIVE_ONLY);
    let (log, out, err) = log_file(&server, "shout.log");
    let mut shout = Running::spawn(
        "shout",
        Command::new("shout")
            .args(["--host", "127.0.0.1", "--port"])
            .arg((server.source.port() - 1).to_string())
            .args(["--pass", "hackme", "--proto", "icy"])
            .args(["--usage", "audio", "--format", "mp3"])
            .args(["--station-name", "icy test"])
            .stdin(File::open(demo_track()).unwrap())
            .stdout(out)
            .stderr(err),
    );
    // ICY carries no mount: the stream goes to the default one.
    wait_live(&server, "/stream", Duration::from_secs(10));
    shout.assert_running(&log);
    let mut raw = Listener::connect(server.listen, "/stream");
    raw.read_at_least(32 * 1024, Duration::from_secs(8));
    assert_frames(&raw.body, "listener of an ICY source");
}

#[test]
fn ezstream_streams_the_demo_file_and_its_title_updates_reach_icy_listeners() {
    if !need("ezstream") {
        return;
    }
    let server = Server::start(LIVE_ONLY);
    // ezstream asks this program for the title every second, so rewriting the file is a title
    // change made while streaming.
    let title_file = server.path("title.txt");
    std::fs::write(&title_file, "Ezstream - First Title\n").unwrap();
    let program = server.path("meta.sh");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\n[ -z \"$1\" ] && cat '{}'\nexit 0\n",
            title_file.display()
        ),
    )
    .unwrap();
    set_mode(&program, 0o755);
    let config = server.path("ezstream.xml");
    std::fs::write(
        &config,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<ezstream>
  <servers><server>
    <protocol>HTTP</protocol>
    <hostname>127.0.0.1</hostname>
    <port>{port}</port>
    <user>source</user>
    <password>hackme</password>
    <tls>None</tls>
    <reconnect_attempts>1</reconnect_attempts>
  </server></servers>
  <streams><stream>
    <mountpoint>/ez</mountpoint>
    <format>MP3</format>
    <stream_name>ezstream test</stream_name>
  </stream></streams>
  <intakes><intake>
    <type>file</type>
    <filename>{file}</filename>
  </intake></intakes>
  <metadata>
    <program>{program}</program>
    <format_str>@s@</format_str>
    <refresh_interval>1</refresh_interval>
  </metadata>
</ezstream>
"#,
            port = server.source.port(),
            file = demo_track(),
            program = program.display(),
        ),
    )
    .unwrap();
    // ezstream refuses a configuration (it holds a password) that others can read.
    set_mode(&config, 0o600);
    let (log, out, err) = log_file(&server, "ezstream.log");
    let mut ezstream = Running::spawn(
        "ezstream",
        Command::new("ezstream")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
    );
    wait_live(&server, "/ez", Duration::from_secs(10));
    ezstream.assert_running(&log);
    assert_eq!(
        status_source(&server, "/ez")["server_name"],
        "ezstream test"
    );

    let icy = await_title(&server, "/ez", Duration::from_secs(8), |t| {
        t == "Ezstream - First Title"
    });
    assert_frames(&icy.audio, "ICY listener of ezstream");
    std::fs::write(&title_file, "Ezstream - Second Title\n").unwrap();
    await_title(&server, "/ez", Duration::from_secs(8), |t| {
        t == "Ezstream - Second Title"
    });
    assert_eq!(
        status_source(&server, "/ez")["title"],
        "Ezstream - Second Title"
    );
    ezstream.assert_running(&log);
}

#[test]
fn liquidsoap_output_icecast_is_heard_with_its_title() {
    if !need("liquidsoap") {
        return;
    }
    let server = Server::start(LIVE_ONLY);
    let script = server.path("radio.liq");
    std::fs::write(
        &script,
        format!(
            r#"settings.log.stdout.set(true)
settings.log.file.set(false)
settings.init.allow_root.set(true)
s = single("{file}")
s = map_metadata(fun (_) -> [("artist", "Liquidsoap"), ("title", "Interop Check")], s)
output.icecast(%mp3(bitrate=128, samplerate=44100), host="127.0.0.1", port={port},
  user="source", password="hackme", mount="/liq", name="liquidsoap test", mksafe(s))
"#,
            file = demo_track(),
            port = server.source.port(),
        ),
    )
    .unwrap();
    let (log, out, err) = log_file(&server, "liquidsoap.log");
    let started = Instant::now();
    let mut liquidsoap = Running::spawn(
        "liquidsoap",
        Command::new("liquidsoap")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
    );
    // Liquidsoap type-checks its standard library first: a few seconds on a small machine.
    let deadline = Instant::now() + Duration::from_secs(18);
    while !server.stats()["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["mount"] == "/liq" && m["live"] == true)
    {
        liquidsoap.assert_running(&log);
        assert!(
            Instant::now() < deadline,
            "liquidsoap never went live; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("liquidsoap on air {:?} after start", started.elapsed());
    assert_eq!(
        status_source(&server, "/liq")["server_name"],
        "liquidsoap test"
    );
    let icy = await_title(&server, "/liq", Duration::from_secs(8), |t| {
        t == "Liquidsoap - Interop Check"
    });
    assert_frames(&icy.audio, "ICY listener of liquidsoap");
    liquidsoap.assert_running(&log);
}

/// Runs curl with `args`; returns its exit code (28 is the `--max-time` cut of a stream).
fn curl(args: &[&str]) -> i32 {
    Command::new("curl")
        .args(args)
        .stdin(Stdio::null())
        .status()
        .expect("run curl")
        .code()
        .unwrap_or(-1)
}

#[test]
fn curl_listens_reads_headers_and_icy_metadata() {
    if !need("curl") {
        return;
    }
    let server = Server::start(&playlist_config());
    let url = format!("http://{}/stream", server.listen);

    let file = server.path("stream.mp3");
    let code = curl(&["-s", "--max-time", "3", &url, "-o", file.to_str().unwrap()]);
    assert!(code == 0 || code == 28, "curl exited {code}");
    let audio = std::fs::read(&file).unwrap();
    // About 3 s at 128 kb/s (the server has just started: there is little burst to send).
    assert!(audio.len() > 40 * 1024, "only {} bytes", audio.len());
    assert_frames(&audio, "curl download");

    let head = Command::new("curl")
        .args(["-s", "-I", "--max-time", "3", &url])
        .stdin(Stdio::null())
        .output()
        .expect("run curl -I");
    assert!(head.status.success(), "curl -I exited {}", head.status);
    let head = String::from_utf8_lossy(&head.stdout).into_owned();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert_eq!(header(&head, "content-type"), Some("audio/mpeg"), "{head}");
    for name in ["icy-name", "icy-br", "icy-genre", "icy-url", "icy-pub"] {
        assert!(header(&head, name).is_some(), "HEAD lacks {name}: {head}");
    }
    assert!(header(&head, "icy-metaint").is_none(), "{head}");
    assert!(header(&head, "transfer-encoding").is_none(), "{head}");

    let (headers, body) = (server.path("icy.head"), server.path("icy.body"));
    let code = curl(&[
        "-s",
        "--max-time",
        "3",
        "-H",
        "Icy-MetaData: 1",
        "-D",
        headers.to_str().unwrap(),
        "-o",
        body.to_str().unwrap(),
        &url,
    ]);
    assert!(code == 0 || code == 28, "curl exited {code}");
    let head = std::fs::read_to_string(&headers).unwrap();
    assert_eq!(header(&head, "icy-metaint"), Some("8000"), "{head}");
    let mut icy = Icy::new(8000);
    icy.feed(&std::fs::read(&body).unwrap());
    assert_frames(&icy.audio, "curl ICY download");
    assert!(
        icy.titles.iter().any(|t| t.starts_with("Cycast Demo - ")),
        "no playlist title in the ICY blocks curl saved: {:?}",
        icy.titles
    );

    let missing = format!("http://{}/no-such-mount", server.listen);
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &missing])
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
}

/// A loopback port nobody holds right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Percent-encodes a PromQL expression for a query string.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's answer to an instant query: (labels, value) per series, or None while it is not
/// answering yet.
fn prom_query(prometheus: SocketAddr, query: &str) -> Option<Vec<(serde_json::Value, f64)>> {
    let request = format!(
        "GET /api/v1/query?query={} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
        encode(query)
    );
    // Refused until Prometheus has started listening.
    let mut stream = TcpStream::connect(prometheus).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let (head, body) = split_head(&answer);
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
    assert_eq!(json["status"], "success", "{query}: {json}");
    Some(
        json["data"]["result"]
            .as_array()?
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), value)
            })
            .collect(),
    )
}

#[test]
fn prometheus_scrapes_per_shard_listener_counts() {
    if !need("prometheus") {
        return;
    }
    let server = Server::start_with_args(&playlist_config(), &["--shards", "2"]);
    let prometheus: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = server.path("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: cycast\n    metrics_path: /metrics\n\
             \x20   static_configs:\n      - targets: ['{}']\n",
            server.listen
        ),
    )
    .unwrap();
    let tsdb = server.path("tsdb");
    let (log, out, err) = log_file(&server, "prometheus.log");
    let mut prom = Running::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address={prometheus}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
    );

    let mut listeners: Vec<Listener> = (0..8)
        .map(|_| Listener::connect(server.listen, "/stream"))
        .collect();
    let mut expect = |listeners: &mut Vec<Listener>, what: &str| {
        for l in listeners.iter_mut() {
            l.read_for(Duration::from_millis(10));
        }
        let n = listeners.len();
        let stats = server.wait_stats(Duration::from_secs(5), what, |s| {
            s["total_listeners"] == n as u64
        });
        // What the server itself says each shard has; shards without listeners may have no
        // series at all.
        let per_shard: Vec<(String, f64)> = stats["shards"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["listeners"].as_u64().unwrap() > 0)
            .map(|s| (s["shard"].to_string(), s["listeners"].as_f64().unwrap()))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            prom.assert_running(&log);
            let total = prom_query(prometheus, "sum(cycast_listeners)");
            let by_shard = prom_query(prometheus, "sum by (shard) (cycast_listeners)");
            if let (Some(total), Some(by_shard)) = (&total, &by_shard) {
                let mut got: Vec<(String, f64)> = by_shard
                    .iter()
                    .filter(|(_, v)| *v > 0.0)
                    .map(|(m, v)| (m["shard"].as_str().unwrap().to_string(), *v))
                    .collect();
                got.sort_by(|a, b| a.0.cmp(&b.0));
                if total.first().map(|t| t.1) == Some(n as f64) && got == per_shard {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: Prometheus says sum {total:?}, by shard {by_shard:?}; cycast says \
                 {per_shard:?}; Prometheus log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    expect(&mut listeners, "8 listeners scraped");
    listeners.truncate(5);
    expect(&mut listeners, "3 listeners gone");

    let up = prom_query(prometheus, "up{job=\"cycast\"}").expect("prometheus answers");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].0["instance"], server.listen.to_string());
    assert_eq!(up[0].1, 1.0, "{up:?}");
    let series = prom_query(prometheus, "count by (shard) (cycast_listeners)").unwrap();
    assert!(!series.is_empty(), "no cycast_listeners series");
    for (labels, _) in &series {
        let shard = labels["shard"].as_str().unwrap();
        assert!(shard == "0" || shard == "1", "{labels}");
    }
}
