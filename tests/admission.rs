//! Listener counting over every way a listener can leave: the server, mount and shard counts
//! go back to zero, and the full `max_listeners` can be admitted again afterwards.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
server {
  admin_user = "admin"
  admin_password = "adminpw"
}
limits {
  max_listeners = 3
  burst_size = 16384
}
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
"#;

const ADMIN_AUTH: &str = "Authorization: Basic YWRtaW46YWRtaW5wdw==\r\n"; // admin:adminpw

/// The listen-port answer to an admin request, as text.
fn admin(server: &Server, path_and_query: &str) -> String {
    let answer = raw_exchange(
        server.listen,
        format!("GET {path_and_query} HTTP/1.0\r\n{ADMIN_AUTH}\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// `/admin/stats.json` parsed.
fn admin_stats(server: &Server) -> serde_json::Value {
    let answer = admin(server, "/admin/stats.json");
    let (_, body) = split_head(answer.as_bytes());
    serde_json::from_slice(&body).expect("admin stats json")
}

/// Every listener count the server shows: its total (admission), each mount's, and the sum of
/// its shards'.
fn counts(server: &Server) -> (u64, Vec<(String, u64)>, u64) {
    let stats = admin_stats(server);
    let total = stats["icestats"]["listeners"].as_u64().unwrap();
    let mounts = stats["icestats"]["source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mount"].as_str().unwrap().to_string(),
                m["listeners"].as_u64().unwrap(),
            )
        })
        .collect();
    let shards = server.stats()["total_listeners"].as_u64().unwrap();
    (total, mounts, shards)
}

/// Waits until every count is zero; panics with the counts after `timeout`.
fn wait_all_counted_out(server: &Server, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (total, mounts, shards) = counts(server);
        if total == 0 && shards == 0 && mounts.iter().all(|(_, n)| *n == 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{when}: counts did not return to zero: server {total}, mounts {mounts:?}, shards {shards}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ids of the listeners of `mount`, once the status snapshots show `expected` of them.
fn listener_ids(server: &Server, mount: &str, expected: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = admin(server, &format!("/admin/listclients.json?mount={mount}"));
        let (_, body) = split_head(answer.as_bytes());
        let json: serde_json::Value = serde_json::from_slice(&body).expect("listclients json");
        let ids: Vec<u64> = json["icestats"]["source"][0]["listener"]
            .as_array()
            .map(|l| l.iter().map(|l| l["ID"].as_u64().unwrap()).collect())
            .unwrap_or_default();
        if ids.len() == expected {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "{mount}: expected {expected} listeners, saw {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A stream request whose connection is reset right after it is sent: the server finds it
/// gone while reading the request, writing the response head, or in the fan-out.
fn reset_during_head(server: &Server, mount: &str) {
    let mut stream = TcpStream::connect(server.listen).unwrap();
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    let _ = write!(stream, "GET {mount} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    drop(stream);
}

/// Admits listeners to `mount` until the server is full; asserts exactly `max` got in.
fn fill(server: &Server, mount: &str, max: usize) -> Vec<Listener> {
    let admitted: Vec<Listener> = (0..max)
        .map(|_| Listener::connect(server.listen, mount))
        .collect();
    for l in &admitted {
        assert!(l.head.starts_with("HTTP/1.0 200"), "{}", l.head);
    }
    let refused = Listener::connect(server.listen, mount);
    assert!(
        refused.head.starts_with("HTTP/1.0 503"),
        "listener {} over max_listeners = {max}: {}",
        max + 1,
        refused.head
    );
    admitted
}

#[test]
fn every_departure_gives_its_place_back() {
    let server = Server::start(CONFIG);
    let mut a = Source::mp3(server.source, "/a");
    let mut b = Source::mp3(server.source, "/b");
    a.send_frames(1, 10, 50.0);
    b.send_frames(1, 10, 50.0);
    let mut frame = 11;
    for round in 0..3 {
        let mut listeners = fill(&server, "/a", 3);

        // Kicked on its mount.
        let ids = listener_ids(&server, "/a", 3);
        let answer = admin(
            &server,
            &format!("/admin/killclient?mount=/a&id={}", ids[0]),
        );
        assert!(answer.contains("removed"), "{answer}");

        // The others moved to /b, one of them then kicked there.
        a.send_frames(frame, 5, 50.0);
        let answer = admin(&server, "/admin/moveclients?mount=/a&destination=/b");
        assert!(answer.contains("Clients moved"), "{answer}");
        b.send_frames(frame, 5, 50.0);
        frame += 5;
        let moved = listener_ids(&server, "/b", 2);
        let answer = admin(
            &server,
            &format!("/admin/killclient?mount=/b&id={}", moved[0]),
        );
        assert!(answer.contains("removed"), "{answer}");
        b.send_frames(frame, 5, 50.0);
        frame += 5;
        let closed = listeners
            .iter_mut()
            .filter_map(|l| l.closed_within(Duration::from_secs(2)).then_some(()))
            .count();
        assert_eq!(closed, 2, "round {round}: the two kicked listeners close");

        // The last one hangs up; then requests reset before or during their response head.
        drop(listeners);
        for _ in 0..5 {
            reset_during_head(&server, "/a");
            reset_during_head(&server, "/b");
        }
        a.send_frames(frame, 5, 50.0);
        b.send_frames(frame, 5, 50.0);
        frame += 5;
        wait_all_counted_out(&server, &format!("round {round}"));
    }
    // As many listeners as ever fit again, on either mount.
    let again = fill(&server, "/b", 3);
    let (total, _, _) = counts(&server);
    assert_eq!(total, 3);
    drop(again);
    wait_all_counted_out(&server, "the end");
}
