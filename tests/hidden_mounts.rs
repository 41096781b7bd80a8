//! `hidden` mounts stay out of every public view on the listen port (status pages,
//! `/api/stats`, `/metrics`); admin views and the separate metrics port show them.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
server {
  admin_password = "adminpw"
}
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
mount "/open" {
}
mount "/secret" {
  hidden = true
}
advanced { metrics_port = METRICS_PORT }
"#;

/// admin:adminpw
const ADMIN_AUTH: &str = "Authorization: Basic YWRtaW46YWRtaW5wdw==\r\n";

/// A port nothing listens on right now, for the metrics port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server with a listener and a source on both the public and the hidden mount.
fn start() -> (Server, u16, Vec<Source>, Vec<Listener>) {
    let port = free_port();
    let server = Server::start(&CONFIG.replace("METRICS_PORT", &port.to_string()));
    let mut sources = Vec::new();
    let mut listeners = Vec::new();
    for mount in ["/open", "/secret"] {
        let mut source = Source::mp3(server.source, mount);
        source.send_frames(1, 10, 50.0);
        sources.push(source);
        let listener = Listener::connect(server.listen, mount);
        assert!(
            listener.head.starts_with("HTTP/1.0 200"),
            "{}",
            listener.head
        );
        listeners.push(listener);
    }
    // Both listeners are in the shards' published lists once the stats show them.
    server.wait_stats(Duration::from_secs(5), "two listeners listed", |s| {
        s["total_listeners"] == 2
            && s["listeners"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l["mount"] == "/open"))
    });
    (server, port, sources, listeners)
}

#[test]
fn api_stats_leaves_hidden_mounts_and_their_listeners_out() {
    let (server, _, _sources, _listeners) = start();
    // Give the hidden listener's shard its snapshot too.
    std::thread::sleep(Duration::from_millis(1200));
    let stats = server.stats();
    let text = stats.to_string();
    assert!(!text.contains("/secret"), "hidden mount leaked: {stats}");
    assert!(
        stats["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mount"] == "/open"),
        "{stats}"
    );
    // The admin view still shows it, with its listener.
    let admin = raw_exchange(
        server.listen,
        format!("GET /admin/listclients.json?mount=/secret HTTP/1.0\r\n{ADMIN_AUTH}\r\n")
            .as_bytes(),
        Duration::from_secs(5),
    );
    let (head, body) = split_head(&admin);
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let admin: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(admin["icestats"]["source"][0]["Listeners"], 1, "{admin}");
}

#[test]
fn public_metrics_leave_hidden_mounts_out_and_the_metrics_port_shows_them() {
    let (server, port, _sources, _listeners) = start();
    let metrics_port = SocketAddr::from(([127, 0, 0, 1], port));
    // Wait for a flush that has both mounts' listener series.
    let deadline = Instant::now() + Duration::from_secs(5);
    let private = loop {
        let text = String::from_utf8_lossy(&http_get(metrics_port, "/metrics").1).into_owned();
        let has = |mount: &str| {
            text.lines().any(|l| {
                l.starts_with("cycast_listeners{") && l.contains(&format!("mount=\"{mount}\""))
            })
        };
        if has("/open") && has("/secret") {
            break text;
        }
        assert!(Instant::now() < deadline, "metrics never flushed:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(private.contains("cycast_source_connected{mount=\"/secret\"}"));
    let (head, public) = server.get("/metrics");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let public = String::from_utf8_lossy(&public);
    assert!(
        public.contains("mount=\"/open\""),
        "public metrics lost the open mount:\n{public}"
    );
    assert!(
        !public.contains("/secret"),
        "hidden mount on the public port:\n{public}"
    );
}
