//! The console at scale: `/admin/listclients` pages and searches on the server (`offset`,
//! `limit`, `q`) and keeps Icecast's full list without them; `/api/stats` bounds its
//! listener rows unless asked for more.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

const CONFIG: &str = r#"
server {
  admin_user = "admin"
  admin_password = "adminpw"
}
limits {
  max_listeners = 1000
  slow_listener = "skip"
}
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
mount "/stream" {
}
mount "/other" {
}
"#;

/// admin:adminpw
const ADMIN_AUTH: &str = "Authorization: Basic YWRtaW46YWRtaW5wdw==\r\n";

/// Listeners in each of the three groups below.
const GROUP: usize = 100;

/// A listener on `mount` from the local address `from` with `agent` as its software. Only the
/// playlist's silence plays, and `slow_listener = "skip"` keeps an unread socket connected.
fn listen(server: SocketAddr, from: &str, mount: &str, agent: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {mount} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {agent}\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    stream
}

/// The status line and parsed body of an admin request.
fn admin(server: &Server, path_and_query: &str) -> (String, Value) {
    let answer = raw_exchange(
        server.listen,
        format!("GET {path_and_query} HTTP/1.0\r\n{ADMIN_AUTH}\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    let (head, body) = split_head(&answer);
    let json =
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path_and_query}: {e}: {head}"));
    (head.lines().next().unwrap_or_default().to_string(), json)
}

fn page(server: &Server, query: &str) -> Value {
    let (status, json) = admin(server, &format!("/admin/listclients.json?{query}"));
    assert!(status.contains(" 200 "), "{query}: {status} {json}");
    json["icestats"].clone()
}

/// Every row of a listclients answer, with the mount it is listed under.
fn rows(tree: &Value) -> Vec<(String, Value)> {
    tree["source"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            let mount = s["mount"].as_str().unwrap().to_string();
            s["listener"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |l| (mount.clone(), l))
        })
        .collect()
}

fn ids(tree: &Value) -> Vec<u64> {
    rows(tree)
        .iter()
        .map(|(_, l)| l["ID"].as_u64().unwrap())
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn listclients_pages_and_searches_and_api_stats_is_bounded() {
    let server = Server::start_with_args(CONFIG, &["--shards", "2"]);
    let mut listeners = Vec::new();
    for _ in 0..GROUP {
        listeners.push(listen(
            server.listen,
            "127.0.0.1",
            "/stream",
            "VLC/3.0.20 LibVLC/3.0.20",
        ));
        listeners.push(listen(
            server.listen,
            "127.0.0.2",
            "/stream",
            "foobar2000/2.1",
        ));
        listeners.push(listen(server.listen, "127.0.0.1", "/other", "Winamp/5.9"));
    }
    let everyone = 3 * GROUP;
    wait_until("every listener in the status snapshots", || {
        page(&server, "limit=1")["total"] == everyone
    });

    // Without paging parameters: Icecast's answer, every listener of the mount, no page fields.
    let full = page(&server, "mount=/stream");
    assert_eq!(full["source"][0]["Listeners"], 2 * GROUP);
    assert_eq!(rows(&full).len(), 2 * GROUP);
    assert!(full.get("total").is_none() && full.get("offset").is_none());
    let other = page(&server, "mount=/other");
    let all_ids: BTreeSet<u64> = ids(&full).into_iter().chain(ids(&other)).collect();
    assert_eq!(all_ids.len(), everyone);

    // Windows over every mount: disjoint, in id order, together everyone.
    let limit = 70;
    let mut seen = Vec::new();
    for offset in (0..everyone + limit).step_by(limit) {
        let tree = page(&server, &format!("offset={offset}&limit={limit}"));
        assert_eq!(tree["total"], everyone);
        assert_eq!(tree["offset"], offset);
        assert_eq!(tree["limit"], limit);
        // Counts stay whole whatever the page shows.
        let counts: Vec<(&str, u64)> = tree["source"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["mount"].as_str().unwrap(),
                    s["Listeners"].as_u64().unwrap(),
                )
            })
            .collect();
        assert!(
            counts.contains(&("/stream", 2 * GROUP as u64)),
            "{counts:?}"
        );
        assert!(counts.contains(&("/other", GROUP as u64)), "{counts:?}");
        let mut window = ids(&tree);
        assert_eq!(window.len(), limit.min(everyone.saturating_sub(offset)));
        window.sort_unstable();
        assert!(window
            .first()
            .is_none_or(|first| seen.last().is_none_or(|last| first > last)));
        seen.extend(window);
    }
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), all_ids);
    assert_eq!(seen.len(), everyone);

    // Search by agent, whatever the case.
    let vlc = page(&server, "q=libvlc&limit=1000");
    assert_eq!(vlc["total"], GROUP);
    assert_eq!(rows(&vlc).len(), GROUP);
    assert!(rows(&vlc)
        .iter()
        .all(|(m, l)| m == "/stream" && l["UserAgent"] == "VLC/3.0.20 LibVLC/3.0.20"));
    // By address.
    let second = page(&server, "q=127.0.0.2&limit=1000");
    assert_eq!(second["total"], GROUP);
    assert!(rows(&second)
        .iter()
        .all(|(_, l)| l["IP"] == "127.0.0.2" && l["UserAgent"] == "foobar2000/2.1"));
    // By mount, and within one mount.
    assert_eq!(page(&server, "q=%2FOTHER")["total"], GROUP);
    let none = page(&server, "mount=/stream&q=winamp");
    assert_eq!(none["total"], 0);
    assert!(rows(&none).is_empty());
    assert_eq!(none["source"][0]["Listeners"], 2 * GROUP);
    // A page size past the bound is cut to it; a bad number is refused.
    assert_eq!(page(&server, "limit=999999")["limit"], 1000);
    let (status, json) = admin(&server, "/admin/listclients.json?offset=-3");
    assert!(status.contains(" 400 "), "{status}");
    assert!(
        json["iceresponse"]["message"]
            .as_str()
            .unwrap()
            .contains("offset"),
        "{json}"
    );
    // The XML twin pages too.
    let answer = raw_exchange(
        server.listen,
        format!("GET /admin/listclients?mount=/other&limit=3 HTTP/1.0\r\n{ADMIN_AUTH}\r\n")
            .as_bytes(),
        Duration::from_secs(5),
    );
    let xml = String::from_utf8_lossy(&answer);
    assert!(xml.contains("<total>100</total>"), "{xml}");
    assert_eq!(xml.matches("<listener id=").count(), 3, "{xml}");

    // /api/stats: a bounded list by default, more on request, all with `listeners=all`.
    let stats = |query: &str| {
        let (head, body) = server.get(&format!("/api/stats{query}"));
        assert!(head.starts_with("HTTP/1.0 200"), "{query}: {head}");
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    let bounded = stats("");
    assert_eq!(bounded["listeners"].as_array().unwrap().len(), 250);
    assert_eq!(bounded["listeners_truncated"], true);
    assert_eq!(bounded["listeners_total"], everyone);
    assert_eq!(bounded["total_listeners"], everyone);
    let rowless = stats("?listeners=0");
    assert!(rowless["listeners"].as_array().unwrap().is_empty());
    assert_eq!(rowless["shards"].as_array().unwrap().len(), 2);
    let complete = stats("?listeners=all");
    assert_eq!(complete["listeners_truncated"], false);
    let listed: BTreeSet<u64> = complete["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, all_ids);
    let (head, _) = server.get("/api/stats?listeners=lots");
    assert!(head.starts_with("HTTP/1.0 400"), "{head}");
    drop(listeners);
}
