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
/// gone before admitting it or once it is in the fan-out (a reset while the head is being
/// written has its own test).
fn reset_after_request(server: &Server, mount: &str) {
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

        // The last one hangs up; then requests reset right after they are sent.
        drop(listeners);
        for _ in 0..5 {
            reset_after_request(&server, "/a");
            reset_after_request(&server, "/b");
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

#[test]
fn a_listener_reset_while_its_response_head_is_stuck_is_counted_out() {
    // A response head far larger than the socket buffers, so it cannot all go out to a client
    // that does not read.
    let description = "x".repeat(8 << 20);
    let server = Server::start(&format!(
        "{CONFIG}mount \"/big\" {{\n  station_description = \"{description}\"\n}}\n"
    ));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.listen.into()).unwrap();
    let mut stream = TcpStream::from(socket);
    write!(stream, "GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    // Admitted, still writing its head: counted on the server and the mount, not yet on a shard.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (total, mounts, shards) = counts(&server);
        let big = mounts.iter().find(|(m, _)| m == "/big").map(|(_, n)| *n);
        if (total, big, shards) == (1, Some(1), 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stuck head not counted: server {total}, mounts {mounts:?}, shards {shards}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
    wait_all_counted_out(&server, "after the reset");
    drop(fill(&server, "/stream", 3));
    wait_all_counted_out(&server, "the end");
}
