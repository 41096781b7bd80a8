//! Real clients: ffmpeg as a source (PUT and legacy SOURCE) and as a decoding listener.
//! `make test` installs ffmpeg; run by hand without it, these tests say so and pass nothing.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const CONFIG: &str = r#"
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
"#;

fn demo_track() -> String {
    format!("{}/music/01-morning-tone.mp3", env!("CARGO_MANIFEST_DIR"))
}

/// Decodes `seconds` of the stream with ffmpeg; returns (PCM bytes, ffmpeg's error output).
fn decode(server: &Server, seconds: u32, icy: bool) -> (usize, String) {
    let url = format!("http://{}/stream", server.listen);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error"]);
    if !icy {
        cmd.args(["-icy", "0"]);
    }
    let out = cmd
        .args([
            "-i",
            &url,
            "-t",
            &seconds.to_string(),
            "-f",
            "s16le",
            "-ac",
            "2",
            "-ar",
            "44100",
            "-",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg listener failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.stdout.len(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ffmpeg_source(server: &Server, legacy: bool) -> std::process::Child {
    let url = format!("icecast://source:hackme@{}/stream", server.source);
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-nostdin",
        "-v",
        "error",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        &demo_track(),
        "-c",
        "copy",
        "-content_type",
        "audio/mpeg",
        "-ice_name",
        "ffmpeg test",
    ]);
    if legacy {
        cmd.args(["-legacy_icecast", "1"]);
    }
    cmd.args(["-f", "mp3", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg source")
}

fn check(legacy: bool) {
    if !have("ffmpeg") {
        eprintln!("ffmpeg is not installed (make test installs it): skipping");
        return;
    }
    let server = Server::start(CONFIG);
    let mut source = ffmpeg_source(&server, legacy);
    server.wait_stats(Duration::from_secs(10), "ffmpeg source on air", |s| {
        s["mounts"][0]["live"] == true
    });
    let status: serde_json::Value =
        serde_json::from_slice(&server.get("/status-json.xsl").1).unwrap();
    assert_eq!(status["icestats"]["source"]["server_name"], "ffmpeg test");
    let (pcm, errors) = decode(&server, 3, false);
    let _ = source.kill();
    let out = source.wait_with_output().unwrap();
    assert!(errors.trim().is_empty(), "decoder complained: {errors}");
    // 3 s of 44.1 kHz stereo 16-bit PCM.
    let expected = 3 * 44_100 * 4;
    assert!(
        pcm >= expected * 95 / 100,
        "decoded only {pcm} of {expected} bytes; source said: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ffmpeg_put_source_is_decoded_by_an_ffmpeg_listener() {
    check(false);
}

#[test]
fn ffmpeg_legacy_source_is_decoded_by_an_ffmpeg_listener() {
    check(true);
}

#[test]
fn ffprobe_reads_the_title_from_icy_metadata() {
    if !have("ffprobe") {
        eprintln!("ffprobe is not installed (make test installs it): skipping");
        return;
    }
    let server = Server::start(
        "server {\n  admin_password = \"adminpw\"\n}\nmetadata { icy_metaint = 8000 }\nplaylist { directory = \"/nonexistent/x\" }\n",
    );
    let mut source = ffmpeg_source(&server, false);
    server.wait_stats(Duration::from_secs(10), "ffmpeg source on air", |s| {
        s["mounts"][0]["live"] == true
    });
    let answer = raw_exchange(
        server.listen,
        b"GET /admin/metadata?mount=/stream&mode=updinfo&song=Artist%20-%20%E6%97%A5%E6%9C%AC%20%27q%27 HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.0 200"));
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format_tags=StreamTitle",
            "-of",
            "default=nw=1:nk=1",
        ])
        .arg(format!("http://{}/stream", server.listen))
        .stdin(Stdio::null())
        .output()
        .expect("run ffprobe");
    let _ = source.kill();
    let _ = source.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Artist - 日本 'q'"
    );
}
