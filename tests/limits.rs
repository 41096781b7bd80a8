//! Resource limits a peer cannot talk its way past: the request-head size on both ports, and
//! the kernel memory a listener that never reads can hold.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

const CONFIG: &str = r#"
limits {
  burst_size = 16384
  header_timeout = 5.0
  max_header_bytes = 8192
}
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
"#;

/// An `OPTIONS /stream` head of exactly `len` bytes (both ports answer it with 2xx).
fn head_of(len: usize) -> Vec<u8> {
    let mut head = b"OPTIONS /stream HTTP/1.0\r\nX-Filler: ".to_vec();
    head.resize(len - 4, b'y');
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), len);
    head
}

/// Sends `head` in the pieces `cuts` splits it into, pausing between them so each arrives as
/// its own read, and returns what the server answered before closing.
fn send_split(addr: SocketAddr, head: &[u8], cuts: &[usize]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut from = 0;
    for &cut in cuts.iter().chain([head.len()].iter()) {
        let cut = cut.min(head.len());
        if cut <= from {
            continue;
        }
        // The server may answer and close before the last piece: later writes may then fail.
        if s.write_all(&head[from..cut]).is_err() {
            break;
        }
        from = cut;
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn request_heads_over_the_limit_are_refused_on_both_ports_however_split() {
    let server = Server::start(CONFIG);
    let splits: [&[usize]; 4] = [&[], &[4096, 8192], &[8000], &[1000, 2000, 3000, 8191]];
    for (port, addr) in [("listen", server.listen), ("source", server.source)] {
        for len in [8193, 12_031] {
            for cuts in splits {
                let answer = send_split(addr, &head_of(len), cuts);
                assert!(
                    answer.starts_with("HTTP/1.0 431"),
                    "{port} port, {len}-byte head in pieces {cuts:?}: {answer}"
                );
            }
        }
        for len in [8191, 8192] {
            for cuts in splits {
                let answer = send_split(addr, &head_of(len), cuts);
                assert!(
                    answer.starts_with("HTTP/1.0 20"),
                    "{port} port, {len}-byte head in pieces {cuts:?}: {answer}"
                );
            }
        }
    }
    // The server is still serving.
    let (head, _) = server.get("/status-json.xsl");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
}

/// A Shoutcast v1 login: the password line and the `icy-*` lines, `len` bytes in all.
fn shoutcast_login_of(len: usize) -> Vec<u8> {
    let mut login = b"hackme\r\nicy-name:".to_vec();
    login.resize(len - 4, b'n');
    login.extend_from_slice(b"\r\n\r\n");
    login
}

#[test]
fn a_shoutcast_login_over_the_head_limit_is_cut() {
    let server = Server::start(CONFIG);
    // 9,000 bytes: the read that crosses the limit also brings the blank line.
    for (len, admitted) in [(8193, false), (9000, false), (12_031, false), (8192, true)] {
        let mut s = TcpStream::connect(server.source).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"hackme\r\n").unwrap();
        assert!(read_head(&mut s).starts_with("OK2"));
        let login = shoutcast_login_of(len);
        // The rest of the head in two reads, the last crossing the limit.
        s.write_all(&login[8..4096]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let _ = s.write_all(&login[4096..]);
        let _ = s.write_all(&numbered_frames(1, 20));
        let on_air = |stats: &serde_json::Value| {
            stats["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mount"] == "/stream" && m["live"] == true)
        };
        if admitted {
            server.wait_stats(Duration::from_secs(5), "the source on air", on_air);
        } else {
            // Cut: the server closes at once (well before the source timeout) without taking
            // the mount.
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = [0u8; 1024];
            let closed = loop {
                match s.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => {}
                    Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
                }
            };
            assert!(closed, "{len}-byte login not cut");
            assert!(!on_air(&server.stats()), "{len}-byte login went on air");
        }
    }
}
