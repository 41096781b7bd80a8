//! Running in production: SIGHUP reload under load, bad reloads, SIGTERM, proxies and the
//! access log.

mod common;

use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
server {
  admin_password = "adminpw"
  trusted_proxies = ["127.0.0.1"]
}
limits { burst_size = 16384 }
broadcaster { chunk_ms = 200 }
metadata { station_name = "Before" }
playlist { directory = "/nonexistent/cycast-test-music" }
advanced { access_log = "ACCESS_LOG" }
"#;

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let server = Server::start(&CONFIG.replace("ACCESS_LOG", log.to_str().unwrap()));
    // Keep the log's directory alive as long as the server.
    std::mem::forget(dir);
    server
}

fn config_path(server: &Server) -> std::path::PathBuf {
    server.path("cycast.hcl")
}

#[test]
fn reload_under_load_drops_nobody_and_applies_new_values() {
    let server = start();
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 20, 20.0);
    let mut listeners: Vec<Listener> = (0..20)
        .map(|_| Listener::connect(server.listen, "/stream"))
        .collect();
    server.wait_stats(Duration::from_secs(5), "20 listeners", |s| {
        s["total_listeners"] == 20
    });
    let text = std::fs::read_to_string(config_path(&server)).unwrap();
    let changed = text
        .replace("station_name = \"Before\"", "station_name = \"After\"")
        .replace(
            "admin_password = \"adminpw\"",
            "admin_password = \"newpw\"\n  source_password = \"newsource\"",
        );
    std::fs::write(config_path(&server), changed).unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("configuration reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload logged: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    source.send_frames(21, 40, 20.0);
    for l in &mut listeners {
        l.read_for(Duration::from_millis(50));
    }
    let stats = server.stats();
    assert_eq!(
        stats["total_listeners"], 20,
        "a listener was dropped by the reload: {stats}"
    );
    for shard in stats["shards"].as_array().unwrap() {
        assert_eq!(shard["disconnects"]["client_closed"], 0, "{stats}");
    }
    for l in &listeners {
        assert_exact_suffix(&l.body, 1, 60);
    }
    let api: serde_json::Value = serde_json::from_slice(&server.get("/api/status").1).unwrap();
    assert_eq!(api["station_name"], "After");
    assert_eq!(
        api["source_connected"], true,
        "the live source must survive the reload"
    );
    // New admin password in force, old one refused; new source password for new sources.
    let old = raw_exchange(
        server.listen,
        b"GET /admin/stats HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(String::from_utf8_lossy(&old).starts_with("HTTP/1.0 401"));
    let new = raw_exchange(
        server.listen,
        b"GET /admin/stats HTTP/1.0\r\nAuthorization: Basic YWRtaW46bmV3cHc=\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(String::from_utf8_lossy(&new).starts_with("HTTP/1.0 200"));
    let refused = raw_exchange(
        server.source,
        format!("SOURCE /other HTTP/1.0\r\n{SOURCE_AUTH}Content-Type: audio/mpeg\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(5),
    );
    assert!(
        String::from_utf8_lossy(&refused).starts_with("HTTP/1.0 401"),
        "old source password still accepted"
    );
}

#[test]
fn a_bad_reload_keeps_the_running_configuration() {
    let server = start();
    std::fs::write(
        config_path(&server),
        "metadata {\n  station_name = 42\n  bogus = 1\n}\n",
    )
    .unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("config reload failed") {
        assert!(
            Instant::now() < deadline,
            "no error logged: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let errors = server.log().lines().filter(|l| l.contains("ERROR")).count();
    assert_eq!(
        errors,
        1,
        "one clear error line expected:\n{}",
        server.log()
    );
    let api: serde_json::Value = serde_json::from_slice(&server.get("/api/status").1).unwrap();
    assert_eq!(api["station_name"], "Before");
    assert!(
        server.log().contains("metadata."),
        "the error names the key: {}",
        server.log()
    );
}

#[test]
fn sigterm_closes_listeners_cleanly_and_exits_in_bounded_time() {
    let mut server = start();
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 20, 20.0);
    let mut listeners: Vec<Listener> = (0..10)
        .map(|_| Listener::connect(server.listen, "/stream"))
        .collect();
    server.wait_stats(Duration::from_secs(5), "10 listeners", |s| {
        s["total_listeners"] == 10
    });
    let started = Instant::now();
    server.signal("TERM");
    for l in &mut listeners {
        assert!(
            l.closed_within(Duration::from_secs(5)),
            "listener not closed on shutdown"
        );
        // What arrived is whole frames: the response ended cleanly.
        walk_frames(&l.body).unwrap_or_else(|at| panic!("torn stream at {at}"));
    }
    let status = server
        .wait_exit(Duration::from_secs(8))
        .expect("server did not exit");
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn forwarded_for_is_honoured_only_from_trusted_proxies() {
    // Trusted: the test client connects from 127.0.0.1, which the config trusts.
    let server = start();
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 10, 50.0);
    let _proxied =
        Listener::connect_with(server.listen, "/stream", "X-Forwarded-For: 203.0.113.7\r\n");
    server.wait_stats(Duration::from_secs(5), "snapshot", |s| {
        s["listeners"].as_array().unwrap().len() == 1
    });
    let answer = raw_exchange(server.listen, b"GET /admin/listclients.json?mount=/stream HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n", Duration::from_secs(5));
    let (_, body) = split_head(&answer);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json["icestats"]["source"][0]["listener"][0]["IP"],
        "203.0.113.7"
    );

    // Untrusted: a server that trusts nobody shows the real peer.
    let plain = Server::start("playlist { directory = \"/nonexistent/x\" }\nserver {\n  admin_password = \"adminpw\"\n}\n");
    let mut source = Source::mp3(plain.source, "/stream");
    source.send_frames(1, 10, 50.0);
    let _spoofing =
        Listener::connect_with(plain.listen, "/stream", "X-Forwarded-For: 203.0.113.7\r\n");
    plain.wait_stats(Duration::from_secs(5), "snapshot", |s| {
        s["listeners"].as_array().unwrap().len() == 1
    });
    let answer = raw_exchange(plain.listen, b"GET /admin/listclients.json?mount=/stream HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n", Duration::from_secs(5));
    let (_, body) = split_head(&answer);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json["icestats"]["source"][0]["listener"][0]["IP"],
        "127.0.0.1"
    );
}

#[test]
fn access_log_has_combined_lines_without_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let server = Server::start(&CONFIG.replace("ACCESS_LOG", log.to_str().unwrap()));
    let _ = server.get("/status-json.xsl");
    let _ = raw_exchange(
        server.source,
        b"GET /admin.cgi?pass=hackme&mode=updinfo&song=x HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    );
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 10, 50.0);
    let mut listener = Listener::connect_with(
        server.listen,
        "/stream",
        "Referer: http://radio.test/\r\nX-Forwarded-For: 198.51.100.4\r\n",
    );
    listener.read_for(Duration::from_millis(200));
    drop(listener);
    source.send_frames(11, 20, 20.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "access log lines missing: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let status_line = text
        .lines()
        .find(|l| l.contains("/status-json.xsl"))
        .expect("status request logged");
    assert!(status_line.starts_with("127.0.0.1 - - ["), "{status_line}");
    assert!(
        status_line.contains("\"GET /status-json.xsl HTTP/1.1\" 200 "),
        "{status_line}"
    );
    let stream_line = text
        .lines()
        .find(|l| l.contains("/stream "))
        .expect("listener logged");
    assert!(
        stream_line.starts_with("198.51.100.4 - - ["),
        "{stream_line}"
    );
    assert!(
        stream_line.contains("\"http://radio.test/\" \"cycast-test\""),
        "{stream_line}"
    );
    assert!(!text.contains("hackme"));
}

#[test]
fn reload_switches_the_playlist_without_dropping_listeners() {
    let music = |name: &str| format!("{}/music/{name}", env!("CARGO_MANIFEST_DIR"));
    let dirs = tempfile::tempdir().unwrap();
    let (a, b) = (dirs.path().join("a"), dirs.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::copy(music("01-morning-tone.mp3"), a.join("one.mp3")).unwrap();
    std::fs::copy(music("02-second-signal.mp3"), b.join("two.mp3")).unwrap();
    let config = |dir: &std::path::Path| {
        format!(
            "server {{\n  admin_password = \"adminpw\"\n}}\nbroadcaster {{ chunk_ms = 200 }}\nplaylist {{\n  directory = \"{}\"\n}}\n",
            dir.display()
        )
    };
    let server = Server::start(&config(&a));
    let title = || -> String {
        let api: serde_json::Value = serde_json::from_slice(&server.get("/api/status").1).unwrap();
        api["metadata"]["title"].as_str().unwrap_or("").to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while title() != "Morning Tone" {
        assert!(
            Instant::now() < deadline,
            "first playlist never played: {:?}",
            title()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut listener = Listener::connect(server.listen, "/stream");
    std::fs::write(server.path("cycast.hcl"), config(&b)).unwrap();
    server.signal("HUP");
    // Skip ends the current track; the next one comes from the reloaded directory.
    let deadline = Instant::now() + Duration::from_secs(8);
    while title() != "Second Signal" {
        assert!(
            Instant::now() < deadline,
            "reloaded playlist never played: {:?}\n{}",
            title(),
            server.log()
        );
        let _ = raw_exchange(server.listen, b"GET /admin/skip?mount=/stream HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n", Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(300));
    }
    listener.read_for(Duration::from_millis(300));
    walk_frames(&listener.body).expect("the stream stayed whole across the reload");
    assert_eq!(server.stats()["total_listeners"], 1);
}

#[test]
fn bad_configs_exit_2_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("limits {\n  queue_sise = 5\n}\n", "limits.queue_sise"),
        ("buffer {\n  size_mb = \"big\"\n}\n", "buffer.size_mb"),
        ("buffer {\n  size_mb = 0\n}\n", "buffer.size_mb"),
        (
            "mount \"/a\" {\n  fallback_mount = \"/nowhere\"\n}\n",
            "fallback_mount",
        ),
    ];
    for (text, key) in cases {
        let path = dir.path().join("bad.hcl");
        std::fs::write(&path, text).unwrap();
        for flag in ["--config", "--check-config"] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_cycast"))
                .arg(flag)
                .arg(&path)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{flag} {text:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                stderr.trim().lines().count(),
                1,
                "one line expected: {stderr}"
            );
            assert!(stderr.contains(key) && stderr.contains("line"), "{stderr}");
        }
    }
    // The effective config prints without secrets and exits 0.
    let path = dir.path().join("good.hcl");
    std::fs::write(
        &path,
        "server {\n  source_password = \"s3cret\"\n  admin_password = \"adm1n\"\n}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cycast"))
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("listen_port = 8001") && !text.contains("s3cret") && !text.contains("adm1n"),
        "{text}"
    );
}
