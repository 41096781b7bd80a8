//! Both fan-out engines (`fanout.engine = "send"` and `"io_uring"`) over real sockets on
//! loopback: every case runs once per engine and checks the engine it asked for is the one
//! that served.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Small ring and queue, no playlist: only the test's source feeds the mount.
const BASE: &str = r#"
server { admin_password = "adminpw" }
buffer { size_mb = 4 }
limits {
  queue_size = 131072
  burst_size = 16384
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

both_engines!(byte_exact_delivery_plain_and_icy);

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
                "io_uring" if submits > 0.0 => {
                    // One submission carries many sends only when many listeners share a pass;
                    // at least it never carries fewer than one.
                    assert!(submits <= sends, "{submits} submits for {sends} sends");
                    break;
                }
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

/// Reads until frame `n` is in the listener's audio (ICY blocks removed when `metaint`).
fn read_until_frame(listener: &mut Listener, n: u32, metaint: Option<usize>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let audio = match metaint {
            Some(m) => parse_icy(&listener.body, m).0,
            None => listener.body.clone(),
        };
        let tail = audio.len().saturating_sub(64 * FRAME_LEN);
        if find_frame(&audio[tail..], n).is_some() {
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
