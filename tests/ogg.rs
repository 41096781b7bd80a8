//! Chained Ogg streams (one link per track, as ices2 sends them): listeners joining around a
//! track change get a stream that decodes, and each link's tags become the mount's title.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
server {
  admin_password = "adminpw"
}
limits { burst_size = 16384 }
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
"#;

/// `seconds` of a `freq` Hz tone encoded by ffmpeg with `codec` into Ogg bytes, tagged with
/// `tags` (`key=value`).
fn encode(freq: u32, seconds: u32, codec: &[&str], tags: &[&str]) -> Vec<u8> {
    let mut command = std::process::Command::new("ffmpeg");
    command
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency={freq}:sample_rate=48000:duration={seconds}"
        ))
        .args(codec);
    for tag in tags {
        command.args(["-metadata", tag]);
    }
    let out = command
        .args(["-f", "ogg", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const VORBIS: &[&str] = &["-c:a", "libvorbis", "-q:a", "2"];
const OPUS: &[&str] = &["-c:a", "libopus", "-b:a", "48k"];

/// An Ogg source on `mount`.
fn ogg_source(server: &Server, mount: &str) -> Source {
    let source = Source::connect(
        server.source,
        &format!("SOURCE {mount} HTTP/1.0\r\n{SOURCE_AUTH}Content-Type: audio/ogg\r\n\r\n"),
    );
    assert!(
        source.response.starts_with("HTTP/1.0 200"),
        "{}",
        source.response
    );
    source
}

/// What ffmpeg says decoding `capture` (empty when it decodes cleanly).
fn decode_errors(server: &Server, name: &str, capture: &[u8]) -> String {
    let path = server.path(name);
    std::fs::write(&path, capture).unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() {
        errors
    } else {
        format!("exit {}: {errors}", out.status)
    }
}

#[test]
fn listeners_joining_around_a_chain_link_get_a_decodable_stream() {
    if !have("ffmpeg") {
        eprintln!("ffmpeg is not installed (make test installs it): skipping");
        return;
    }
    let first = encode(440, 4, VORBIS, &["title=First"]);
    // Long enough (about 22 KB) that the last joins start inside it, past the 16 KB burst.
    let second = encode(660, 8, VORBIS, &["title=Second"]);
    let server = Server::start(CONFIG);
    let mut source = ogg_source(&server, "/chain.ogg");
    source.stream.write_all(&first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Join before the link, then at offsets into it, from inside its header pages (the first
    // 100 bytes) to past the burst (16 KB): the early ones start in the first link's audio.
    let mut listeners = vec![(0, Listener::connect(server.listen, "/chain.ogg"))];
    let mut sent = 0;
    let n = second.len();
    for cut in [
        100,
        n / 8,
        n / 4,
        3 * n / 8,
        n / 2,
        5 * n / 8,
        3 * n / 4,
        7 * n / 8,
        n,
    ] {
        source.stream.write_all(&second[sent..cut]).unwrap();
        sent = cut;
        std::thread::sleep(Duration::from_millis(300));
        listeners.push((cut, Listener::connect(server.listen, "/chain.ogg")));
    }
    let mut failures = Vec::new();
    for (cut, mut listener) in listeners {
        assert!(
            listener.head.starts_with("HTTP/1.0 200"),
            "{}",
            listener.head
        );
        listener.read_for(Duration::from_millis(300));
        assert!(
            listener.body.starts_with(b"OggS"),
            "join at {cut}: not a page"
        );
        let errors = decode_errors(&server, &format!("join-{cut}.ogg"), &listener.body);
        if !errors.is_empty() {
            failures.push(format!("join {cut} bytes into the second link: {errors}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The title `/status-json.xsl` shows for `mount`.
fn status_title(server: &Server, mount: &str) -> String {
    let status: serde_json::Value =
        serde_json::from_slice(&server.get("/status-json.xsl").1).unwrap();
    let sources = &status["icestats"]["source"];
    let list = match sources {
        serde_json::Value::Array(list) => list.clone(),
        one => vec![one.clone()],
    };
    list.iter()
        .find(|s| s["listenurl"].as_str().is_some_and(|u| u.ends_with(mount)))
        .and_then(|s| s["title"].as_str())
        .unwrap_or("")
        .to_string()
}

/// Waits until `mount`'s title is `want`, or panics after 10 s.
fn wait_title(server: &Server, mount: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let title = status_title(server, mount);
        if title == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{mount}: title {title:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn titles_come_from_each_links_comments_and_an_update_overrides_them() {
    if !have("ffmpeg") {
        eprintln!("ffmpeg is not installed (make test installs it): skipping");
        return;
    }
    let first = encode(440, 2, VORBIS, &["title=First Song", "artist=The Band"]);
    let second = encode(660, 2, VORBIS, &["title=Second Song", "artist=Other Band"]);
    let opus = encode(550, 2, OPUS, &["title=Opus Song", "artist=Opus Band"]);
    let server = Server::start(CONFIG);

    let mut source = ogg_source(&server, "/tags.ogg");
    source.stream.write_all(&first).unwrap();
    wait_title(&server, "/tags.ogg", "The Band - First Song");

    // An operator's update wins over the link's tags...
    let answer = raw_exchange(
        server.listen,
        b"GET /admin/metadata?mount=/tags.ogg&mode=updinfo&song=Live%20Announcement HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.0 200"));
    wait_title(&server, "/tags.ogg", "Live Announcement");

    // ...until the next link brings its own.
    source.stream.write_all(&second).unwrap();
    wait_title(&server, "/tags.ogg", "Other Band - Second Song");

    // OpusTags too.
    let mut opus_source = ogg_source(&server, "/opus.ogg");
    opus_source.stream.write_all(&opus).unwrap();
    wait_title(&server, "/opus.ogg", "Opus Band - Opus Song");
}
