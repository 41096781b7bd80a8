//! Hostile peers and failures: slowloris, reconnect storms, running out of descriptors, and
//! sources that flap. Every load here is bounded in count and time, on loopback.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
limits {
  burst_size = 16384
  header_timeout = 3.0
}
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
"#;

/// Reads whatever is waiting on `stream` without blocking; Err on close.
fn drain(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        match stream.read(buf) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(total),
            Err(e) => return Err(e),
        }
    }
}

/// Connects `n` listeners to /stream without waiting for each answer.
fn open_listeners(server: &Server, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(server.listen).expect("connect");
            s.write_all(b"GET /stream HTTP/1.0\r\n\r\n").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect()
}

/// Waits until every stream has received at least `bytes` bytes; returns how long it took.
fn until_all_receive(streams: &mut [TcpStream], bytes: usize, timeout: Duration) -> Duration {
    let start = Instant::now();
    let mut got = vec![0usize; streams.len()];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        for (s, g) in streams.iter_mut().zip(got.iter_mut()) {
            if *g < bytes {
                *g += drain(s, &mut buf).expect("listener closed");
            }
        }
        let done = got.iter().filter(|g| **g >= bytes).count();
        if done == streams.len() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "only {done} of {} listeners received audio",
            streams.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Feeds real-time frames from a thread until `stop` is set.
fn feed(
    server: &Server,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut source = Source::mp3(server.source, "/stream");
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut n = 1;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            source.send_frames(n, 10, 1.0);
            n += 10;
        }
    });
    (stop, handle)
}

#[test]
fn slowloris_connections_do_not_delay_real_listeners_and_are_cut() {
    let server = Server::start(CONFIG);
    let (stop, feeder) = feed(&server);
    let request = b"GET /stream HTTP/1.1\r\nHost: slow\r\nUser-Agent: slowloris\r\n\r\n";
    let mut slow: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(server.listen).expect("connect"))
        .collect();
    // One byte per second per connection.
    let started = Instant::now();
    for (i, s) in slow.iter_mut().enumerate() {
        s.write_all(&request[..1]).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = i;
    }
    // While they trickle, a real listener joins and plays.
    let join = Instant::now();
    let mut real = Listener::connect(server.listen, "/stream");
    real.read_at_least(16 * 1024, Duration::from_secs(2));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the real listener had to wait for the slow ones ({:?})",
        join.elapsed()
    );
    let mut sent = 1;
    let mut closed = vec![false; slow.len()];
    let mut buf = [0u8; 512];
    while closed.iter().any(|c| !c) {
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "{} slow connections still open",
            closed.iter().filter(|c| !**c).count()
        );
        std::thread::sleep(Duration::from_secs(1));
        for (s, c) in slow.iter_mut().zip(closed.iter_mut()) {
            if *c {
                continue;
            }
            if sent < request.len() && s.write_all(&request[sent..sent + 1]).is_err() {
                *c = true;
                continue;
            }
            match s.read(&mut buf) {
                Ok(0) => *c = true,
                Ok(n) => {
                    assert!(
                        buf[..n].starts_with(b"HTTP/1.0 408"),
                        "unexpected answer {:?}",
                        String::from_utf8_lossy(&buf[..n])
                    );
                    *c = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => *c = true,
            }
        }
        sent += 1;
    }
    // Cut at the 3 s header timeout, not when the request would have completed (~60 s).
    assert!(started.elapsed() < Duration::from_secs(12));
    real.read_for(Duration::from_millis(300));
    walk_frames(&real.body).expect("real listener's audio stayed whole");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.join().unwrap();
}

#[test]
fn a_reconnect_storm_settles_with_everyone_playing() {
    let server = Server::start(CONFIG);
    let (stop, feeder) = feed(&server);
    let count = 5000;
    let mut listeners = open_listeners(&server, count);
    until_all_receive(&mut listeners, 8 * 1024, Duration::from_secs(60));
    server.wait_stats(Duration::from_secs(10), "all listeners counted", |s| {
        s["total_listeners"] == count
    });
    // Everyone drops at once and comes straight back.
    drop(listeners);
    let mut again = open_listeners(&server, count);
    until_all_receive(&mut again, 8 * 1024, Duration::from_secs(60));
    server.wait_stats(Duration::from_secs(10), "the storm to settle", |s| {
        s["total_listeners"] == count
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.join().unwrap();
}

#[test]
fn running_out_of_descriptors_backs_off_keeps_listeners_and_recovers() {
    let server = Server::start_with_fd_limit(CONFIG, 96);
    let (stop, feeder) = feed(&server);
    let mut first = Listener::connect(server.listen, "/stream");
    first.read_at_least(8 * 1024, Duration::from_secs(5));
    // Far more connections than the server has descriptors for.
    let flood: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(server.listen).ok())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("accept failed") {
        assert!(
            Instant::now() < deadline,
            "accept never failed: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu_before = server.cpu_seconds();
    let before = first.body.len();
    first.read_for(Duration::from_secs(2));
    let cpu = server.cpu_seconds() - cpu_before;
    assert!(
        first.body.len() > before + 16 * 1024,
        "the connected listener stopped receiving"
    );
    assert!(
        cpu < 1.0,
        "server spun while out of descriptors: {cpu:.2} CPU s in 2 s"
    );
    drop(flood);
    // Descriptors free up: a new listener gets in.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = TcpStream::connect(server.listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET /stream HTTP/1.0\r\n\r\n").unwrap();
        let mut head = [0u8; 12];
        if s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.0 200" {
            break;
        }
        assert!(Instant::now() < deadline, "server did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.join().unwrap();
}

#[test]
fn a_flapping_garbage_source_never_reaches_listeners_as_garbage() {
    let server = Server::start(CONFIG);
    let mut listener = Listener::connect(server.listen, "/stream");
    let connect = || {
        // The previous connection's close may not be processed yet: the mount is busy until then.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let source = Source::connect(
                server.source,
                &format!(
                    "SOURCE /stream HTTP/1.0\r\n{SOURCE_AUTH}Content-Type: audio/mpeg\r\n\r\n"
                ),
            );
            if source.response.starts_with("HTTP/1.0 200") {
                return source;
            }
            assert!(
                source.response.contains("403") && Instant::now() < deadline,
                "{}",
                source.response
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    for round in 0..30u32 {
        let mut source = connect();
        let mut bytes = numbered_frames(round * 100 + 1, 3);
        // Garbage, then a frame cut in half, then gone.
        bytes.extend(
            (0..700u32).map(|i| (i.wrapping_mul(2654435761).wrapping_add(round) >> 11) as u8),
        );
        bytes.extend_from_slice(&numbered_frames(round * 100 + 50, 1)[..150]);
        let _ = source.stream.write_all(&bytes);
    }
    let mut last = connect();
    last.send_frames(10_000, 40, 20.0);
    listener.read_for(Duration::from_millis(500));
    let offsets = walk_frames(&listener.body)
        .unwrap_or_else(|at| panic!("garbage reached the listener at byte {at}"));
    let numbers: Vec<u32> = offsets
        .iter()
        .filter_map(|&o| frame_number(&listener.body[o..]))
        .collect();
    assert!(numbers.contains(&10_030), "the mount did not recover");
    assert!(
        !numbers.iter().any(|n| n % 100 == 50),
        "a cut-off frame was sent"
    );
}

#[test]
fn wrong_passwords_are_slowed_down_and_never_logged() {
    let server = Server::start(CONFIG);
    let attempt = |password: &str| {
        let auth = base64_basic("source", password);
        let started = Instant::now();
        let answer = raw_exchange(server.source, format!("SOURCE /stream HTTP/1.0\r\nAuthorization: Basic {auth}\r\nContent-Type: audio/mpeg\r\n\r\n").as_bytes(), Duration::from_secs(20));
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.0 401"));
        started.elapsed()
    };
    let first: Vec<Duration> = (0..3).map(|i| attempt(&format!("guess-{i}"))).collect();
    let later: Vec<Duration> = (3..6).map(|i| attempt(&format!("guess-{i}"))).collect();
    assert!(
        first.iter().all(|d| *d < Duration::from_millis(200)),
        "{first:?}"
    );
    assert!(
        later.windows(2).all(|w| w[1] > w[0]) && later[0] >= Duration::from_millis(200),
        "failures were not slowed: {later:?}"
    );
    let (_, body) = server.get("/metrics");
    assert!(
        String::from_utf8_lossy(&body).contains("cycast_auth_failures_total{port=\"source\"} 6")
    );
    assert!(server.log().contains("repeated authentication failures"));
    assert!(
        !server.log().contains("guess-"),
        "a password reached the log"
    );
}

fn base64_basic(user: &str, pass: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{pass}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_listener_hanging_up_on_an_idle_mount_is_not_counted_forever() {
    let server = Server::start(CONFIG);
    let mut source = Source::mp3(server.source, "/quiet");
    source.send_frames(1, 10, 50.0);
    let listener = Listener::connect(server.listen, "/quiet");
    server.wait_stats(Duration::from_secs(5), "one listener", |s| {
        s["total_listeners"] == 1
    });
    // The source leaves and nothing else feeds /quiet: no sends will notice the hang-up.
    drop(source);
    std::thread::sleep(Duration::from_millis(300));
    drop(listener);
    let stats = server.wait_stats(Duration::from_secs(5), "the hang-up to be noticed", |s| {
        s["total_listeners"] == 0
    });
    let closed: u64 = stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["disconnects"]["client_closed"].as_u64().unwrap())
        .sum();
    assert_eq!(closed, 1, "{stats}");
}
