//! The streaming engine over real sockets on loopback: byte-exact fan-out across shards, slow
//! listeners, and the Icecast source and listener protocol cases.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// A quiet server: small ring and queue so slow-listener cases trigger quickly, and no playlist
/// so only test sources feed the mount.
const BASE: &str = r#"
buffer { size_mb = 4 }
limits {
  queue_size = 131072
  burst_size = 16384
  header_timeout = 1.5
}
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
advanced { source_timeout = 1.5 }
"#;

fn server() -> Server {
    Server::start_with_args(BASE, &["--shards", "2"])
}

fn wait_for_frame(listener: &mut Listener, n: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut searched = 0;
    // Only the new bytes are searched, so a fast stream does not make the reader fall behind.
    while find_frame(&listener.body[searched..], n).is_none() {
        assert!(
            Instant::now() < deadline,
            "frame {n} never arrived ({} bytes read)",
            listener.body.len()
        );
        searched = listener.body.len().saturating_sub(FRAME_LEN);
        listener.read_for(Duration::from_millis(20));
    }
}

#[test]
fn every_listener_on_every_shard_gets_the_exact_source_bytes() {
    let server = server();
    let mut source = Source::mp3(server.source, "/stream");
    // Some audio before anyone listens, so joins start from the burst.
    source.send_frames(1, 60, 20.0);
    let mut listeners: Vec<Listener> = (0..16)
        .map(|_| Listener::connect(server.listen, "/stream"))
        .collect();
    for l in &listeners {
        assert!(l.head.starts_with("HTTP/1.0 200 OK\r\n"), "{}", l.head);
        assert!(l.head.contains("Content-Type: audio/mpeg\r\n"));
        assert!(l.head.contains("icy-name:Test Stream\r\n"), "{}", l.head);
        assert!(!l.head.to_ascii_lowercase().contains("content-length"));
        assert!(!l.head.to_ascii_lowercase().contains("chunked"));
    }
    let stats = server.wait_stats(Duration::from_secs(5), "16 listeners", |s| {
        s["total_listeners"] == 16
    });
    let busy_shards = stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["listeners"].as_u64() > Some(0))
        .count();
    assert_eq!(
        busy_shards, 2,
        "listeners should be spread over both shards: {stats}"
    );

    let sender = std::thread::spawn(move || {
        source.send_frames(61, 300, 10.0);
        source
    });
    for l in &mut listeners {
        wait_for_frame(l, 359, Duration::from_secs(20));
    }
    drop(sender.join().unwrap());
    for l in &listeners {
        let first = assert_exact_suffix(&l.body, 1, 360);
        // The burst (16 KiB) reaches back about 39 frames before the join.
        assert!(
            first <= 60,
            "listener started at frame {first}, after the join point"
        );
    }
}

#[test]
fn stalled_listener_is_dropped_while_others_keep_exact_data() {
    // A large queue gives the healthy reader, a test thread on a busy machine, ample slack.
    let server = Server::start_with_args(
        &BASE
            // The source runs at 200× real time: the healthy reader needs a socket buffer
            // of loopback size, not one sized for a real-time stream, to keep up.
            .replace(
                "queue_size = 131072",
                "queue_size = 1048576\n  send_buffer = 2097152",
            )
            .replace("size_mb = 4", "size_mb = 8"),
        &["--shards", "2"],
    );
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 10, 50.0);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.listen.into()).unwrap();
    let stalled = Listener::from_stream(socket.into(), "/stream", "");
    let mut healthy = Listener::connect(server.listen, "/stream");
    let reader = std::thread::spawn(move || {
        // The newest frame waits for its successor (proof it is whole), so wait for the one before.
        wait_for_frame(&mut healthy, 19_999, Duration::from_secs(60));
        healthy
    });
    // About 8.3 MB: far more than the queue (1 MiB) plus socket buffers.
    source.send_frames(11, 19_990, 200.0);
    let healthy = reader.join().unwrap();
    assert_exact_suffix(&healthy.body, 1, 20_000);
    let stats = server.wait_stats(Duration::from_secs(5), "a too_slow disconnect", |s| {
        s["shards"]
            .as_array()
            .unwrap()
            .iter()
            .any(|sh| sh["disconnects"]["too_slow"] == 1)
    });
    assert_eq!(stats["total_listeners"], 1, "{stats}");
    drop(stalled);
}

#[test]
fn stalled_listener_is_skipped_to_the_live_edge_on_a_frame_boundary() {
    let server = Server::start_with_args(
        &BASE.replace(
            "queue_size = 131072",
            "queue_size = 131072\n  slow_listener = \"skip\"",
        ),
        &["--shards", "2"],
    );
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 10, 50.0);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.listen.into()).unwrap();
    let mut stalled = Listener::from_stream(socket.into(), "/stream", "");
    // The listener stalls through the flood, then reads again: it is moved to the live edge
    // once its current chunk is complete, so the jump lands between frames.
    source.send_frames(11, 8_990, 2000.0);
    let sender = std::thread::spawn(move || {
        source.send_frames(9_001, 200, 20.0);
        source
    });
    wait_for_frame(&mut stalled, 9_150, Duration::from_secs(20));
    drop(sender.join().unwrap());
    let offsets = walk_frames(&stalled.body)
        .unwrap_or_else(|at| panic!("skipped listener got a torn frame at byte {at}"));
    let numbers: Vec<u32> = offsets
        .iter()
        .filter_map(|&o| frame_number(&stalled.body[o..]))
        .collect();
    assert!(
        numbers.windows(2).any(|w| w[1] > w[0] + 1),
        "no frames were skipped"
    );
    assert!(
        numbers.windows(2).all(|w| w[1] > w[0]),
        "frames out of order"
    );
    let stats = server.stats();
    let skips: u64 = stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["skipped"].as_u64().unwrap())
        .sum();
    assert!(skips >= 1, "no skip counted: {stats}");
    assert_eq!(
        stats["total_listeners"], 1,
        "skipped listener must stay connected: {stats}"
    );
}

#[test]
fn source_request_forms_are_accepted_and_their_audio_delivered() {
    let server = server();
    let forms = [
        format!("SOURCE /ice ICE/1.0\r\n{SOURCE_AUTH}Content-Type: audio/mpeg\r\n\r\n"),
        format!("SOURCE /http10 HTTP/1.0\r\n{SOURCE_AUTH}content-type: audio/mpeg\r\n\r\n"),
        format!("PUT /put HTTP/1.1\r\nHost: x\r\n{SOURCE_AUTH}Content-Type: audio/mpeg\r\nIce-Name: Put Stream\r\n\r\n"),
        // DarkIce: bare LF line ends, CRLF at the end of the block.
        format!("SOURCE /lf HTTP/1.0\n{}\ncontent-type: audio/mpeg\n\r\n", SOURCE_AUTH.trim_end()),
    ];
    for form in &forms {
        let mount = form.split_whitespace().nth(1).unwrap().to_string();
        let mut source = Source::connect(server.source, form);
        assert!(
            source.response.starts_with("HTTP/1.0 200 OK\r\n"),
            "{mount}: {}",
            source.response
        );
        source.send_frames(1, 20, 50.0);
        let mut listener = Listener::connect(server.listen, &mount);
        assert!(
            listener.head.starts_with("HTTP/1.0 200"),
            "{mount}: {}",
            listener.head
        );
        let sender = std::thread::spawn(move || {
            source.send_frames(21, 40, 20.0);
            source
        });
        wait_for_frame(&mut listener, 55, Duration::from_secs(10));
        drop(sender.join().unwrap());
        assert_exact_suffix(&listener.body, 1, 60);
    }
    let stats = server.stats();
    assert_eq!(stats["mounts"].as_array().unwrap().len(), 5, "{stats}");
}

#[test]
fn put_with_expect_continue_gets_100_then_200() {
    let server = server();
    let mut s = TcpStream::connect(server.source).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "PUT /stream HTTP/1.1\r\nHost: x\r\n{SOURCE_AUTH}Content-Type: audio/mpeg\r\nExpect: 100-continue\r\n\r\n").unwrap();
    let first = read_head(&mut s);
    assert!(first.starts_with("HTTP/1.1 100 Continue\r\n"), "{first}");
    let second = read_head(&mut s);
    assert!(second.starts_with("HTTP/1.0 200 OK\r\n"), "{second}");
}

#[test]
fn audio_in_the_same_packet_as_the_header_is_kept() {
    let server = server();
    let mut listener = Listener::connect(server.listen, "/stream");
    let mut packet =
        format!("SOURCE /stream HTTP/1.0\r\n{SOURCE_AUTH}Content-Type: audio/mpeg\r\n\r\n")
            .into_bytes();
    packet.extend_from_slice(&numbered_frames(1, 30));
    let mut s = TcpStream::connect(server.source).unwrap();
    s.write_all(&packet).unwrap();
    let mut source = Source {
        response: read_head(&mut s),
        stream: s,
    };
    assert!(
        source.response.starts_with("HTTP/1.0 200"),
        "{}",
        source.response
    );
    source.send_frames(31, 20, 20.0);
    wait_for_frame(&mut listener, 45, Duration::from_secs(10));
    assert_eq!(
        assert_exact_suffix(&listener.body, 1, 50),
        1,
        "the first frames, sent with the header, were lost"
    );
}

#[test]
fn wrong_or_missing_credentials_get_401_with_a_challenge() {
    let server = server();
    for auth in [
        "Authorization: Basic c291cmNlOndyb25n\r\n",
        "",
        "Authorization: Basic bm90LWJhc2U2NA==\r\n",
        "Authorization: Bearer x\r\n",
    ] {
        let answer = raw_exchange(
            server.source,
            format!("SOURCE /stream HTTP/1.0\r\n{auth}Content-Type: audio/mpeg\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.0 401"), "{auth:?}: {text}");
        assert!(
            text.contains("WWW-Authenticate: Basic realm=\"Icecast2 Server\""),
            "{text}"
        );
    }
    assert!(
        !server.log().contains("wrong"),
        "a presented password reached the log"
    );
}

#[test]
fn a_second_source_on_a_busy_mount_is_refused_and_the_first_keeps_streaming() {
    let server = server();
    let mut first = Source::mp3(server.source, "/stream");
    first.send_frames(1, 20, 50.0);
    let answer = raw_exchange(
        server.source,
        format!("SOURCE /stream HTTP/1.0\r\n{SOURCE_AUTH}Content-Type: audio/mpeg\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.0 403"), "{text}");
    assert!(text.ends_with("Mountpoint in use\n"), "{text}");
    let mut listener = Listener::connect(server.listen, "/stream");
    first.send_frames(21, 30, 20.0);
    wait_for_frame(&mut listener, 45, Duration::from_secs(10));
    assert_exact_suffix(&listener.body, 1, 50);
}

#[test]
fn put_without_content_type_is_refused() {
    let server = server();
    let answer = raw_exchange(
        server.source,
        format!("PUT /stream HTTP/1.1\r\n{SOURCE_AUTH}\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.0 403") && text.contains("No Content-type given"),
        "{text}"
    );
}

#[test]
fn header_timeout_and_oversized_headers_are_cut() {
    let server = server();
    for addr in [server.listen, server.source] {
        // Half a request, then nothing: cut at the 1.5 s header timeout.
        let started = Instant::now();
        let answer = raw_exchange(
            addr,
            b"GET /stream HTTP/1.1\r\nHost: x\r\n",
            Duration::from_secs(10),
        );
        let waited = started.elapsed();
        assert!(
            String::from_utf8_lossy(&answer).starts_with("HTTP/1.0 408"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        assert!(
            waited >= Duration::from_millis(1400) && waited < Duration::from_secs(8),
            "cut after {waited:?}"
        );

        let mut huge = b"GET /stream HTTP/1.1\r\n".to_vec();
        for i in 0..400 {
            huge.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(40)).as_bytes());
        }
        huge.extend_from_slice(b"\r\n");
        let answer = raw_exchange(addr, &huge, Duration::from_secs(5));
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.0 431") || text.starts_with("HTTP/1.0 400"),
            "{text}"
        );
    }
}

#[test]
fn malformed_requests_get_400() {
    let server = server();
    for addr in [server.listen, server.source] {
        let answer = raw_exchange(
            addr,
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n",
            Duration::from_secs(5),
        );
        assert!(
            String::from_utf8_lossy(&answer).starts_with("HTTP/1.0 400"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[test]
fn head_options_unknown_mount_and_status() {
    let server = server();
    let head = raw_exchange(
        server.listen,
        b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&head);
    assert!(
        text.starts_with("HTTP/1.0 200 OK\r\n") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
    assert!(text.contains("Content-Type: audio/mpeg"));

    let options = raw_exchange(
        server.listen,
        b"OPTIONS /stream HTTP/1.1\r\nHost: x\r\nOrigin: http://example.test\r\n\r\n",
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&options);
    assert!(text.starts_with("HTTP/1.0 204"), "{text}");
    assert!(
        text.contains("Access-Control-Allow-Origin: *")
            && text.contains("Access-Control-Allow-Methods: GET, OPTIONS, HEAD"),
        "{text}"
    );

    let (head, _) = server.get("/nope");
    assert!(head.starts_with("HTTP/1.0 404"), "{head}");

    let (head, body) = server.get("/status-json.xsl");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        status["icestats"]["source"]["listenurl"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next(),
        Some("stream")
    );
}

#[test]
fn a_full_server_answers_503() {
    let server = Server::start_with_args(
        &BASE.replace(
            "header_timeout = 1.5",
            "header_timeout = 1.5\n  max_listeners = 2",
        ),
        &["--shards", "2"],
    );
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 10, 50.0);
    let _a = Listener::connect(server.listen, "/stream");
    let _b = Listener::connect(server.listen, "/stream");
    let (head, body) = server.get("/stream");
    assert!(head.starts_with("HTTP/1.0 503"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("full"));
    drop(_a);
    // The freed place is noticed at the next send to the departed listener.
    source.send_frames(11, 20, 20.0);
    server.wait_stats(Duration::from_secs(5), "one listener left", |s| {
        s["total_listeners"] == 1
    });
    let c = Listener::connect(server.listen, "/stream");
    assert!(c.head.starts_with("HTTP/1.0 200"), "{}", c.head);
}

#[test]
fn a_silent_source_is_dropped_after_the_source_timeout() {
    let server = server();
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 5, 50.0);
    let started = Instant::now();
    let mut buf = [0u8; 16];
    source
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = source.stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected the server to close the silent source");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(8),
        "dropped after {waited:?}"
    );
    // The mount is free again.
    let again = Source::mp3(server.source, "/stream");
    assert!(again.response.starts_with("HTTP/1.0 200"));
}

#[test]
fn listeners_stay_through_a_source_change_and_never_get_garbage() {
    let server = server();
    let mut listener = Listener::connect(server.listen, "/stream");
    let mut first = Source::mp3(server.source, "/stream");
    first.send_frames(1, 30, 20.0);
    // Garbage and a cut-off frame, then the source vanishes.
    let mut junk: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    junk.extend_from_slice(&numbered_frames(31, 1)[..200]);
    first.stream.write_all(&junk).unwrap();
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    let mut second = Source::mp3(server.source, "/stream");
    second.send_frames(100, 60, 20.0);
    wait_for_frame(&mut listener, 150, Duration::from_secs(10));
    let offsets = walk_frames(&listener.body)
        .unwrap_or_else(|at| panic!("listener got a non-frame byte at {at}"));
    let numbers: Vec<u32> = offsets
        .iter()
        .filter_map(|&o| frame_number(&listener.body[o..]))
        .collect();
    assert!(
        numbers.contains(&29) && numbers.contains(&100),
        "both sources' audio expected"
    );
    assert!(!numbers.contains(&31), "the cut-off frame was sent");
    assert_exact_suffix(
        &listener.body[find_frame(&listener.body, 100).unwrap()..],
        100,
        60,
    );
}
