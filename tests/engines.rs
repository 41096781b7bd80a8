//! Both fan-out engines (`fanout.engine = "send"` and `"io_uring"`) over real sockets on
//! loopback: every case runs once per engine and checks the engine it asked for is the one
//! that served.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

/// Small ring and queue, no playlist: only the test's source feeds the mount.
const BASE: &str = r#"
server { admin_password = "adminpw" }
buffer { size_mb = 4 }
limits {
  queue_size = 131072
  burst_size = 16384
  # The cases stall listeners behind loopback-sized socket buffers, as before send buffers
  # were bounded by default.
  send_buffer = 4194304
}
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
metadata { icy_metaint = 1000 }
"#;

/// Runs a case once per engine, as `case::send` and `case::io_uring`.
macro_rules! both_engines {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn send() {
                super::$case("send")
            }
            #[test]
            fn io_uring() {
                super::$case("io_uring")
            }
        }
    )*};
}

both_engines!(
    byte_exact_delivery_plain_and_icy,
    short_writes_resume_exactly_also_inside_icy_blocks,
    peer_resets_leave_the_others_exact,
    stalled_listener_is_dropped_while_others_get_every_byte,
    stalled_listener_is_skipped_on_a_frame_boundary,
    ogg_headers_are_replayed_before_the_audio,
);

/// `config` with the fan-out engine set.
fn with_engine(config: &str, engine: &str) -> String {
    format!("{config}\nfanout {{ engine = \"{engine}\" }}\n")
}

/// Sum of a metric's samples over its label sets, once the shards have flushed one.
fn metric_sum(server: &Server, name: &str) -> Option<f64> {
    let (_, body) = server.get("/metrics");
    let text = String::from_utf8(body).unwrap();
    let mut found = None;
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        if series == name || series.starts_with(&format!("{name}{{")) {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    found
}

/// Checks that `engine` served: io_uring submissions were made exactly when it is io_uring,
/// and nothing fell back.
fn assert_engine_served(server: &Server, engine: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let submits = metric_sum(server, "cycast_uring_submits_total");
        let sends = metric_sum(server, "cycast_sends_total").unwrap_or(0.0);
        if let (Some(submits), true) = (submits, sends > 0.0) {
            match engine {
                "io_uring" if submits > 0.0 => break,
                "send" => {
                    assert_eq!(submits, 0.0, "the send engine used io_uring");
                    break;
                }
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "no sign of the {engine} engine in the metrics; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !server.log().contains("is not available"),
        "the engine fell back:\n{}",
        server.log()
    );
}

/// Reads an ICY capture back as a player does: (audio, titles with the audio offset they
/// came at). Blocks are checked for their shape.
fn parse_icy(capture: &[u8], metaint: usize) -> (Vec<u8>, Vec<(usize, String)>) {
    let (mut audio, mut titles) = (Vec::new(), Vec::new());
    let mut pos = 0;
    while pos < capture.len() {
        let take = metaint.min(capture.len() - pos);
        audio.extend_from_slice(&capture[pos..pos + take]);
        pos += take;
        if pos >= capture.len() {
            break;
        }
        let len = capture[pos] as usize * 16;
        if pos + 1 + len > capture.len() {
            break;
        }
        let block = &capture[pos + 1..pos + 1 + len];
        if len > 0 {
            let end = block.iter().position(|&b| b == 0).unwrap_or(len);
            assert!(block[end..].iter().all(|&b| b == 0), "block not NUL padded");
            let text = String::from_utf8(block[..end].to_vec()).expect("UTF-8 title");
            assert!(
                text.starts_with("StreamTitle='") && text.ends_with("';"),
                "malformed block {text:?} at capture byte {pos}"
            );
            titles.push((audio.len(), text));
        }
        pos += 1 + len;
    }
    (audio, titles)
}

/// Strips ICY blocks from a capture as it arrives, so a long capture is parsed once.
struct IcyStrip {
    /// Audio bytes between blocks.
    metaint: usize,
    /// Capture bytes consumed so far.
    consumed: usize,
    /// Audio bytes before the next block.
    audio_left: usize,
    /// Block bytes still to skip; `None` when the next byte is audio or a length byte.
    block_left: Option<usize>,
    /// The audio so far.
    audio: Vec<u8>,
}

impl IcyStrip {
    fn new(metaint: usize) -> Self {
        Self {
            metaint,
            consumed: 0,
            audio_left: metaint,
            block_left: None,
            audio: Vec::new(),
        }
    }

    /// Takes in the capture's bytes past those already consumed.
    fn feed(&mut self, capture: &[u8]) {
        while self.consumed < capture.len() {
            let rest = &capture[self.consumed..];
            match self.block_left {
                Some(left) => {
                    let take = left.min(rest.len());
                    self.consumed += take;
                    self.block_left = (left > take).then_some(left - take);
                    if left == take {
                        self.audio_left = self.metaint;
                    }
                }
                None if self.audio_left == 0 => {
                    self.consumed += 1;
                    let len = rest[0] as usize * 16;
                    if len == 0 {
                        self.audio_left = self.metaint;
                    } else {
                        self.block_left = Some(len);
                    }
                }
                None => {
                    let take = self.audio_left.min(rest.len());
                    self.audio.extend_from_slice(&rest[..take]);
                    self.consumed += take;
                    self.audio_left -= take;
                }
            }
        }
    }
}

/// Reads until frame `n` is in the listener's audio (ICY blocks removed when `metaint`).
fn read_until_frame(listener: &mut Listener, n: u32, metaint: Option<usize>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut strip = metaint.map(IcyStrip::new);
    loop {
        let audio = match strip.as_mut() {
            Some(strip) => {
                strip.feed(&listener.body);
                &strip.audio
            }
            None => &listener.body,
        };
        if has_frame(audio, n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "frame {n} never arrived ({} bytes read)",
            listener.body.len()
        );
        listener.read_for(Duration::from_millis(20));
    }
}

/// `audio` up to the end of frame `n`: what came after it (silence the server plays once the
/// test's source goes quiet) is not the test's.
fn through_frame(audio: &[u8], n: u32) -> &[u8] {
    let at = find_frame(audio, n).expect("frame present");
    &audio[..at + FRAME_LEN]
}

/// Sets the mount's title through the admin API.
fn set_title(server: &Server, title: &str) {
    let answer = raw_exchange(
        server.listen,
        format!(
            "GET /admin/metadata?mount=/stream&mode=updinfo&song={title} HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n"
        )
        .as_bytes(),
        Duration::from_secs(5),
    );
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.0 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

fn byte_exact_delivery_plain_and_icy(engine: &str) {
    let server = Server::start_with_args(&with_engine(BASE, engine), &["--shards", "2"]);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 60, 20.0);
    set_title(&server, "First");
    let mut plain: Vec<Listener> = (0..12)
        .map(|_| Listener::connect(server.listen, "/stream"))
        .collect();
    let mut icy: Vec<Listener> = (0..6)
        .map(|_| Listener::connect_with(server.listen, "/stream", "Icy-MetaData: 1\r\n"))
        .collect();
    server.wait_stats(Duration::from_secs(5), "18 listeners", |s| {
        s["total_listeners"] == 18
    });
    let sender = std::thread::spawn(move || {
        source.send_frames(61, 150, 10.0);
        source
    });
    std::thread::sleep(Duration::from_millis(400));
    set_title(&server, "Second");
    let mut source = sender.join().unwrap();
    source.send_frames(211, 150, 10.0);
    for l in &mut plain {
        read_until_frame(l, 359, None, Duration::from_secs(20));
        let first = assert_exact_suffix(&l.body, 1, 360);
        assert!(first <= 60, "listener started at frame {first}");
    }
    for l in &mut icy {
        assert!(l.head.contains("icy-metaint:1000\r\n"), "{}", l.head);
        read_until_frame(l, 359, Some(1000), Duration::from_secs(20));
        let (audio, titles) = parse_icy(&l.body, 1000);
        assert_exact_suffix(&audio, 1, 360);
        let names: Vec<&str> = titles.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            names,
            ["StreamTitle='First';", "StreamTitle='Second';"],
            "titles at {titles:?}"
        );
        assert!(titles.iter().all(|(at, _)| at % 1000 == 0));
    }
    assert_engine_served(&server, engine);
}

/// A listener whose receive buffer is tiny, so the server's sends come up short.
fn small_buffer_listener(server: &Server, extra_headers: &str) -> Listener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    socket.connect(&server.listen.into()).unwrap();
    Listener::from_stream(socket.into(), "/stream", extra_headers)
}

/// Whether the last 64 frames of `audio` hold frame `n`.
fn has_frame(audio: &[u8], n: u32) -> bool {
    find_frame(&audio[audio.len().saturating_sub(64 * FRAME_LEN)..], n).is_some()
}

fn short_writes_resume_exactly_also_inside_icy_blocks(engine: &str) {
    let config = BASE
        .replace("queue_size = 131072", "queue_size = 2097152")
        .replace("size_mb = 4", "size_mb = 8");
    let server = Server::start_with_args(&with_engine(&config, engine), &["--shards", "1"]);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 10, 50.0);
    // Titles of about 1 KB, changed all the time: most sends carry a full block, so sends
    // that come up short stop inside blocks as well as inside audio.
    let title = |n: u32| format!("T{n}-{}", "x".repeat(1000));
    set_title(&server, &title(0));
    // Both listeners stall for a while: their socket buffers fill (about 2 MB on loopback)
    // and they fall further behind; then every send while they catch up is cut short.
    let readers: Vec<_> = ["", "Icy-MetaData: 1\r\n"]
        .into_iter()
        .map(|headers| {
            let mut l = small_buffer_listener(&server, headers);
            let metaint = (!headers.is_empty()).then_some(1000);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1500));
                // Then slower than the stream for a while: every send fills the little room
                // the reader made and is cut short somewhere in its pieces.
                let throttled = Instant::now();
                let mut buf = [0u8; 4096];
                l.stream
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                while throttled.elapsed() < Duration::from_secs(2) {
                    if let Ok(n) = l.stream.read(&mut buf) {
                        l.body.extend_from_slice(&buf[..n]);
                    }
                    std::thread::sleep(Duration::from_millis(30));
                }
                read_until_frame(&mut l, 7_509, metaint, Duration::from_secs(60));
                l
            })
        })
        .collect();
    server.wait_stats(Duration::from_secs(5), "2 listeners", |s| {
        s["total_listeners"] == 2
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let titles = {
        let (stop, listen) = (stop.clone(), server.listen);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let answer = raw_exchange(
                    listen,
                    format!("GET /admin/metadata?mount=/stream&mode=updinfo&song={} HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n", title(n)).as_bytes(),
                    Duration::from_secs(5),
                );
                assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.0 200"));
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // About 2.5 MB while the listeners stall, then more while they read slowly and catch up (an
    // ICY send carries at most 16 intervals, so catching up takes many passes).
    source.send_frames(11, 6_000, 200.0);
    source.send_frames(6_011, 1_500, 10.0);
    let mut readers = readers.into_iter().map(|r| r.join().unwrap());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    titles.join().unwrap();
    let plain = readers.next().unwrap();
    assert_exact_suffix(through_frame(&plain.body, 7_509), 1, 7_509);
    let icy = readers.next().unwrap();
    let (audio, titles) = parse_icy(&icy.body, 1000);
    assert_exact_suffix(through_frame(&audio, 7_509), 1, 7_509);
    let numbers: Vec<u32> = titles
        .iter()
        .map(|(at, t)| {
            assert!(at % 1000 == 0, "block at audio byte {at}");
            let text = t
                .strip_prefix("StreamTitle='T")
                .unwrap_or_else(|| panic!("unexpected title {t}"));
            let (n, rest) = text.split_once('-').unwrap();
            assert_eq!(rest, format!("{}';", "x".repeat(1000)), "block torn");
            n.parse().unwrap()
        })
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "titles out of order: {numbers:?}"
    );
    assert!(numbers.len() >= 10, "too few titles: {numbers:?}");
    assert_engine_served(&server, engine);
}

fn peer_resets_leave_the_others_exact(engine: &str) {
    // One shard: every listener is in the same slices, so resets land among live sends.
    let server = Server::start_with_args(&with_engine(BASE, engine), &["--shards", "1"]);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 20, 20.0);
    let mut listeners: Vec<Listener> = (0..24)
        .map(|_| Listener::connect(server.listen, "/stream"))
        .collect();
    server.wait_stats(Duration::from_secs(5), "24 listeners", |s| {
        s["total_listeners"] == 24
    });
    let sender = std::thread::spawn(move || {
        source.send_frames(21, 400, 10.0);
        source
    });
    std::thread::sleep(Duration::from_millis(300));
    // Every other listener resets its connection (linger 0) in the middle of the stream.
    let mut kept = Vec::new();
    for (i, l) in listeners.drain(..).enumerate() {
        if i % 2 == 0 {
            socket2::SockRef::from(&l.stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(l);
        } else {
            kept.push(l);
        }
    }
    drop(sender.join().unwrap());
    for l in &mut kept {
        read_until_frame(l, 419, None, Duration::from_secs(20));
        assert_exact_suffix(&l.body, 1, 420);
    }
    let stats = server.wait_stats(Duration::from_secs(5), "12 resets counted", |s| {
        s["total_listeners"] == 12
    });
    let closed: u64 = stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["disconnects"]["client_closed"].as_u64().unwrap())
        .sum();
    assert_eq!(closed, 12, "{stats}");
    assert_engine_served(&server, engine);
}

fn stalled_listener_is_dropped_while_others_get_every_byte(engine: &str) {
    let config = BASE
        .replace("queue_size = 131072", "queue_size = 1048576")
        .replace("size_mb = 4", "size_mb = 8");
    let server = Server::start_with_args(&with_engine(&config, engine), &["--shards", "1"]);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 10, 50.0);
    let stalled = small_buffer_listener(&server, "");
    let mut healthy = Listener::connect(server.listen, "/stream");
    let mut icy = Listener::connect_with(server.listen, "/stream", "Icy-MetaData: 1\r\n");
    let reader = std::thread::spawn(move || {
        read_until_frame(&mut healthy, 9_999, None, Duration::from_secs(60));
        healthy
    });
    let icy_reader = std::thread::spawn(move || {
        read_until_frame(&mut icy, 9_999, Some(1000), Duration::from_secs(60));
        icy
    });
    // About 4.2 MB: far more than the queue (1 MiB) plus socket buffers.
    source.send_frames(11, 9_990, 200.0);
    let healthy = reader.join().unwrap();
    assert_exact_suffix(&healthy.body, 1, 10_000);
    let icy = icy_reader.join().unwrap();
    assert_exact_suffix(&parse_icy(&icy.body, 1000).0, 1, 10_000);
    let stats = server.wait_stats(Duration::from_secs(5), "a too_slow disconnect", |s| {
        s["shards"][0]["disconnects"]["too_slow"] == 1
    });
    assert_eq!(stats["total_listeners"], 2, "{stats}");
    drop(stalled);
    assert_engine_served(&server, engine);
}

fn stalled_listener_is_skipped_on_a_frame_boundary(engine: &str) {
    let config = BASE
        .replace(
            "queue_size = 131072",
            "queue_size = 1048576\n  slow_listener = \"skip\"",
        )
        .replace("size_mb = 4", "size_mb = 8");
    let server = Server::start_with_args(&with_engine(&config, engine), &["--shards", "1"]);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 10, 50.0);
    let mut stalled = small_buffer_listener(&server, "");
    let mut healthy = Listener::connect(server.listen, "/stream");
    let reader = std::thread::spawn(move || {
        read_until_frame(&mut healthy, 9_149, None, Duration::from_secs(60));
        healthy
    });
    // The listener stalls through the flood (far more than the queue plus socket buffers),
    // then reads again: it is moved to the live edge once its current chunk is complete, so
    // the jump lands between frames.
    source.send_frames(11, 8_990, 200.0);
    let sender = std::thread::spawn(move || {
        source.send_frames(9_001, 150, 20.0);
        source
    });
    read_until_frame(&mut stalled, 9_140, None, Duration::from_secs(20));
    drop(sender.join().unwrap());
    let healthy = reader.join().unwrap();
    assert_exact_suffix(&healthy.body, 1, 9_150);
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
    assert!(
        stats["shards"][0]["skipped"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert_eq!(stats["total_listeners"], 2, "{stats}");
    assert_engine_served(&server, engine);
}

/// An Ogg page of one complete packet.
fn ogg_page(flags: u8, granule: u64, seq: u32, packet: &[u8]) -> Vec<u8> {
    let mut lacing = vec![255u8; packet.len() / 255];
    lacing.push((packet.len() % 255) as u8);
    let mut page = b"OggS\0".to_vec();
    page.push(flags);
    page.extend(granule.to_le_bytes());
    page.extend(0x5eed_u32.to_le_bytes());
    page.extend(seq.to_le_bytes());
    page.extend([0; 4]);
    page.push(lacing.len() as u8);
    page.extend(lacing);
    page.extend_from_slice(packet);
    let crc = cycast::ingest::ogg::page_crc(&page);
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    page
}

/// An Opus stream: OpusHead and a large OpusTags (longer than the ICY interval, so blocks
/// fall inside the replayed headers), then `pages` numbered audio pages of 20 ms each.
fn opus_stream(pages: u32) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut head = b"OpusHead\x01\x02".to_vec();
    head.extend(312u16.to_le_bytes());
    head.extend(48000u32.to_le_bytes());
    head.extend([0, 0, 0]);
    let vendor = "cycast-test".repeat(200);
    let mut tags = b"OpusTags".to_vec();
    tags.extend((vendor.len() as u32).to_le_bytes());
    tags.extend(vendor.as_bytes());
    tags.extend(0u32.to_le_bytes());
    let headers = [ogg_page(2, 0, 0, &head), ogg_page(0, 0, 1, &tags)].concat();
    let audio = (0..pages)
        .map(|i| {
            let mut packet = vec![0xfc];
            packet.extend(i.to_be_bytes());
            packet.extend((0..400).map(|j| (i as usize * 7 + j) as u8));
            ogg_page(0, 960 * (i as u64 + 1), 2 + i, &packet)
        })
        .collect();
    (headers, audio)
}

/// Checks a capture is the header pages, then a contiguous run of `audio` pages that ends
/// with the last one.
fn assert_headers_then_pages(capture: &[u8], headers: &[u8], audio: &[Vec<u8>]) {
    assert!(
        capture.starts_with(headers),
        "the capture does not start with the header pages"
    );
    let rest = &capture[headers.len()..];
    let first = audio
        .iter()
        .position(|p| rest.starts_with(p))
        .expect("no audio page right after the headers");
    assert!(first > 0, "the join should be well after the headers");
    let expected = audio[first..].concat();
    assert_eq!(rest.len(), expected.len(), "capture length");
    assert!(rest == expected, "audio pages differ");
}

fn ogg_headers_are_replayed_before_the_audio(engine: &str) {
    let server = Server::start_with_args(&with_engine(BASE, engine), &["--shards", "1"]);
    let (headers, audio) = opus_stream(600);
    let mut source = Source::connect(
        server.source,
        &format!("SOURCE /stream HTTP/1.0\r\n{SOURCE_AUTH}Content-Type: audio/ogg\r\n\r\n"),
    );
    assert!(
        source.response.starts_with("HTTP/1.0 200"),
        "{}",
        source.response
    );
    source.stream.write_all(&headers).unwrap();
    // Well past the burst, so the headers are no longer in what a joining listener is sent.
    for page in &audio[..200] {
        source.stream.write_all(page).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut plain = Listener::connect(server.listen, "/stream");
    let mut icy = Listener::connect_with(server.listen, "/stream", "Icy-MetaData: 1\r\n");
    assert!(
        plain.head.contains("Content-Type: audio/ogg"),
        "{}",
        plain.head
    );
    for chunk in audio[200..].chunks(20) {
        for page in chunk {
            source.stream.write_all(page).unwrap();
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let last = audio.last().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !plain.body.ends_with(&last) {
        assert!(Instant::now() < deadline, "the last page never came");
        plain.read_for(Duration::from_millis(50));
    }
    assert_headers_then_pages(&plain.body, &headers, &audio);
    loop {
        let stripped = parse_icy(&icy.body, 1000).0;
        if stripped.ends_with(&last) {
            assert_headers_then_pages(&stripped, &headers, &audio);
            break;
        }
        assert!(Instant::now() < deadline, "the last page never came (ICY)");
        icy.read_for(Duration::from_millis(50));
    }
    assert_engine_served(&server, engine);
}

#[test]
fn io_uring_setup_failure_falls_back_to_send_with_one_warning() {
    // A ring of 0 entries is refused by the kernel: a real setup failure on every shard.
    let server = Server::start_with_env(
        &with_engine(BASE, "io_uring"),
        &["--shards", "2"],
        &[("CYCAST_URING_ENTRIES", "0")],
    );
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 30, 20.0);
    let mut listeners: Vec<Listener> = (0..8)
        .map(|_| Listener::connect(server.listen, "/stream"))
        .collect();
    server.wait_stats(Duration::from_secs(5), "8 listeners", |s| {
        s["total_listeners"] == 8
    });
    source.send_frames(31, 100, 10.0);
    for l in &mut listeners {
        read_until_frame(l, 129, None, Duration::from_secs(20));
        assert_exact_suffix(&l.body, 1, 130);
    }
    let log = server.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("is not available"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("io_uring"),
        "{}",
        warnings[0]
    );
    // The kernel's reason is in the warning.
    assert!(warnings[0].contains("Invalid argument"), "{}", warnings[0]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_sum(&server, "cycast_uring_submits_total").is_none() {
        assert!(Instant::now() < deadline, "no submit metric");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric_sum(&server, "cycast_uring_submits_total"), Some(0.0));
}

#[test]
fn engine_switches_on_reload_without_losing_a_byte() {
    let server = Server::start_with_args(&with_engine(BASE, "send"), &["--shards", "2"]);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 30, 20.0);
    let mut listeners: Vec<Listener> = (0..8)
        .map(|_| Listener::connect(server.listen, "/stream"))
        .collect();
    let mut icy = Listener::connect_with(server.listen, "/stream", "Icy-MetaData: 1\r\n");
    server.wait_stats(Duration::from_secs(5), "9 listeners", |s| {
        s["total_listeners"] == 9
    });
    let path = server.path("cycast.hcl");
    let mut first = 31;
    for engine in ["io_uring", "send", "io_uring"] {
        let text = std::fs::read_to_string(&path).unwrap();
        let (_, rest) = text.split_once("engine = \"").unwrap();
        let (old, _) = rest.split_once('"').unwrap();
        let changed = text.replace(
            &format!("engine = \"{old}\""),
            &format!("engine = \"{engine}\""),
        );
        std::fs::write(&path, changed).unwrap();
        server.signal("HUP");
        // Keep streaming while the shards take the new engine up (within a second).
        source.send_frames(first, 100, 10.0);
        first += 100;
        for l in &mut listeners {
            l.read_for(Duration::from_millis(10));
        }
        icy.read_for(Duration::from_millis(10));
    }
    source.send_frames(first, 100, 10.0);
    let last = first + 100 - 1;
    for l in &mut listeners {
        read_until_frame(l, last - 1, None, Duration::from_secs(20));
        assert_exact_suffix(through_frame(&l.body, last - 1), 1, last - 1);
    }
    read_until_frame(&mut icy, last - 1, Some(1000), Duration::from_secs(20));
    let (audio, _) = parse_icy(&icy.body, 1000);
    assert_exact_suffix(through_frame(&audio, last - 1), 1, last - 1);
    assert_eq!(server.stats()["total_listeners"], 9);
    assert_engine_served(&server, "io_uring");
}
