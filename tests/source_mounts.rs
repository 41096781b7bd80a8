//! Mounts a source created (not in the configuration) go away once their source has left and
//! their last listener has gone, after `advanced.source_mount_grace`; meanwhile new listeners
//! get 404. Configured mounts stay.

mod common;

use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
mount "/kept" {
}
advanced { source_mount_grace = 0.5 }
"#;

/// Mount names `/status-json.xsl` lists.
fn listed(server: &Server) -> Vec<String> {
    let status: serde_json::Value =
        serde_json::from_slice(&server.get("/status-json.xsl").1).unwrap();
    match &status["icestats"]["source"] {
        serde_json::Value::Array(sources) => sources
            .iter()
            .map(|s| s["mount"].as_str().unwrap().to_string())
            .collect(),
        serde_json::Value::Null => Vec::new(),
        one => vec![one["mount"].as_str().unwrap().to_string()],
    }
}

fn wait_until(what: &str, server: &Server, timeout: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_line(server: &Server, path: &str) -> String {
    server.get(path).0.lines().next().unwrap_or("").to_string()
}

#[test]
fn a_source_created_mount_is_removed_after_its_source_leaves() {
    let server = Server::start(CONFIG);
    let mut source = Source::mp3(server.source, "/made");
    source.send_frames(1, 20, 50.0);
    let mut listener = Listener::connect(server.listen, "/made");
    assert!(
        listener.head.starts_with("HTTP/1.0 200"),
        "{}",
        listener.head
    );
    listener.read_at_least(FRAME_LEN, Duration::from_secs(5));
    drop(listener);
    assert!(listed(&server).contains(&"/made".to_string()));
    drop(source);

    wait_until(
        "the mount to be removed",
        &server,
        Duration::from_secs(10),
        || !listed(&server).contains(&"/made".to_string()),
    );
    assert!(server.log().contains("mount removed"), "{}", server.log());
    assert!(
        status_line(&server, "/made").starts_with("HTTP/1.0 404"),
        "a removed mount still answers"
    );
    assert!(!server.stats()["mounts"].to_string().contains("/made"));
    // A configured mount nothing feeds keeps today's behaviour.
    let kept = Listener::connect(server.listen, "/kept");
    assert!(kept.head.starts_with("HTTP/1.0 200"), "{}", kept.head);

    // The name can be created again, with fresh audio.
    let mut again = Source::mp3(server.source, "/made");
    again.send_frames(100, 20, 50.0);
    let mut listener = Listener::connect(server.listen, "/made");
    assert!(
        listener.head.starts_with("HTTP/1.0 200"),
        "{}",
        listener.head
    );
    listener.read_at_least(4 * FRAME_LEN, Duration::from_secs(5));
    let first = assert_exact_suffix(&listener.body, 100, 20);
    assert!(first >= 100, "old audio replayed");
}

#[test]
fn a_listener_keeps_a_sourceless_mount_until_it_leaves() {
    let server = Server::start(CONFIG);
    let mut source = Source::mp3(server.source, "/made");
    source.send_frames(1, 20, 50.0);
    let mut listener = Listener::connect(server.listen, "/made");
    assert!(
        listener.head.starts_with("HTTP/1.0 200"),
        "{}",
        listener.head
    );
    listener.read_at_least(FRAME_LEN, Duration::from_secs(5));
    drop(source);
    wait_until(
        "the source to leave",
        &server,
        Duration::from_secs(5),
        || server.log().contains("source disconnected"),
    );
    // Well past the grace: the listener still holds the mount, but nobody new gets in.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(listed(&server).contains(&"/made".to_string()));
    assert!(!server.log().contains("mount removed"));
    assert!(
        status_line(&server, "/made").starts_with("HTTP/1.0 404"),
        "a new listener of a mount without source must get 404"
    );
    assert!(!listener.closed_within(Duration::from_millis(100)));
    drop(listener);
    wait_until(
        "the mount to be removed",
        &server,
        Duration::from_secs(10),
        || !listed(&server).contains(&"/made".to_string()),
    );
}
