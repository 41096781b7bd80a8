//! Station operator features over loopback: listener time limits, redirect when full,
//! recording and intros.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// No playlist, so only the test source feeds the mount; short chunks so a chunk is little
/// audio. The server-wide limit is long; the mount's own, shorter one must win.
const TIME_LIMIT: &str = r#"
buffer { size_mb = 4 }
limits {
  queue_size = 131072
  burst_size = 16384
  max_listener_duration = 600
}
broadcaster { chunk_ms = 100 }
playlist { directory = "/nonexistent/cycast-test-music" }
mount "/stream" { max_listener_duration = 3 }
"#;

#[test]
fn a_listener_is_ended_at_its_time_limit_on_a_frame_boundary() {
    let server = Server::start(TIME_LIMIT);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 40, 20.0);
    let joined = Instant::now();
    let mut listener = Listener::connect(server.listen, "/stream");
    assert!(
        listener.head.starts_with("HTTP/1.0 200"),
        "{}",
        listener.head
    );
    // Audio in real time for 1.5 s, then a pause past the 3 s limit, then more audio: what
    // the listener gets must end with the last frame before the pause.
    let feeder = std::thread::spawn(move || {
        let mut next = 41;
        while joined.elapsed() < Duration::from_millis(1500) {
            source.send_frames(next, 4, 1.0);
            next += 4;
        }
        let last_before_pause = next - 1;
        std::thread::sleep(Duration::from_millis(4500).saturating_sub(joined.elapsed()));
        source.send_frames(next, 80, 1.0);
        last_before_pause
    });
    assert!(
        listener.closed_within(Duration::from_secs(15)),
        "the listener was not ended at its time limit"
    );
    assert!(
        joined.elapsed() >= Duration::from_secs(3),
        "ended before its time"
    );
    let last_before_pause = feeder.join().unwrap();
    let offsets = walk_frames(&listener.body)
        .unwrap_or_else(|at| panic!("capture is not a frame sequence at byte {at}"));
    let last = *offsets.last().expect("the listener got audio");
    assert_eq!(
        last + FRAME_LEN,
        listener.body.len(),
        "the capture ends inside a frame"
    );
    // The framer holds a source's newest frame until the next header confirms it, so the
    // last frame before the pause may only go out after it.
    let last_frame = frame_number(&listener.body[last..]).unwrap();
    assert!(
        (last_before_pause - 1..=last_before_pause).contains(&last_frame),
        "the listener must get everything before its deadline and nothing after: got up to \
         frame {last_frame}, the pause began after frame {last_before_pause}"
    );
    assert_exact_suffix(&listener.body, 1, last_frame);

    let deadline = Instant::now() + Duration::from_secs(5);
    while server.disconnects("time_limit") != 1.0 {
        assert!(
            Instant::now() < deadline,
            "time_limit disconnect not counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_listener_streaming_without_pause_is_cut_within_one_chunk_of_its_limit() {
    let server = Server::start(TIME_LIMIT);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 40, 20.0);
    let joined = Instant::now();
    let mut listener = Listener::connect(server.listen, "/stream");
    let feeder = std::thread::spawn(move || {
        // Frame number being sent at each moment, to find what was live at the deadline.
        let mut sent_at = Vec::new();
        let mut next = 41;
        while joined.elapsed() < Duration::from_secs(6) {
            sent_at.push((next, joined.elapsed()));
            source.send_frames(next, 4, 1.0);
            next += 4;
        }
        sent_at
    });
    assert!(
        listener.closed_within(Duration::from_secs(15)),
        "the listener was not ended at its time limit"
    );
    let sent_at = feeder.join().unwrap();
    let offsets = walk_frames(&listener.body)
        .unwrap_or_else(|at| panic!("capture is not a frame sequence at byte {at}"));
    let last = *offsets.last().expect("the listener got audio");
    assert_eq!(last + FRAME_LEN, listener.body.len(), "cut inside a frame");
    let last_frame = frame_number(&listener.body[last..]).unwrap();
    // The first frame the source sent after the 3 s limit had passed for the client (the
    // server's clock starts a little later, at accept).
    let after_limit = sent_at
        .iter()
        .find(|(_, at)| *at >= Duration::from_secs(3))
        .map(|(n, _)| *n)
        .unwrap();
    // 100 ms chunks of 26 ms frames: at most 4 frames of the chunk in progress, and 4 more
    // for the chunk that was open at the cut.
    assert!(
        last_frame < after_limit + 8,
        "frame {last_frame} arrived; the limit passed at frame {after_limit}"
    );
}

/// The `Location` of a response head, if any.
fn location(head: &str) -> Option<&str> {
    head.lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .map(str::trim)
}

#[test]
fn a_full_origin_redirects_new_listeners_to_its_edges_in_turn() {
    let edge = Server::start(
        r#"
broadcaster { chunk_ms = 100 }
playlist { directory = "/nonexistent/cycast-test-music" }
"#,
    );
    let mut edge_source = Source::mp3(edge.source, "/stream");
    edge_source.send_frames(1, 40, 20.0);
    // The mount's own list wins over the server-wide one; the second edge need not exist,
    // only the turn taking is checked against it.
    let origin = Server::start(&format!(
        r#"
limits {{
  max_listeners = 1
  redirect_when_full = ["http://127.0.0.1:1"]
}}
broadcaster {{ chunk_ms = 100 }}
playlist {{ directory = "/nonexistent/cycast-test-music" }}
mount "/stream" {{ redirect_when_full = ["http://{}", "http://127.0.0.2:9/"] }}
"#,
        edge.listen
    ));
    let mut origin_source = Source::mp3(origin.source, "/stream");
    origin_source.send_frames(1, 40, 20.0);
    let first = Listener::connect(origin.listen, "/stream");
    assert!(first.head.starts_with("HTTP/1.0 200"), "{}", first.head);

    let (head, _) = origin.get("/stream?token=abc%20d");
    assert!(head.starts_with("HTTP/1.0 302"), "{head}");
    assert_eq!(
        location(&head),
        Some(format!("http://{}/stream?token=abc%20d", edge.listen).as_str())
    );
    let (head, _) = origin.get("/stream");
    assert_eq!(location(&head), Some("http://127.0.0.2:9/stream"), "{head}");
    let (head, _) = origin.get("/stream");
    assert_eq!(
        location(&head),
        Some(format!("http://{}/stream", edge.listen).as_str()),
        "{head}"
    );

    // A relay is never sent elsewhere: it gets the 503.
    let answer = raw_exchange(
        origin.listen,
        b"GET /stream HTTP/1.0\r\nUser-Agent: Icecast 2.4.4\r\n\r\n",
        Duration::from_secs(5),
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.0 503"), "{answer}");

    // A player following redirects lands on the edge and gets its audio. The turn is back on
    // the second edge, so one redirect goes there first.
    let _ = origin.get("/stream");
    assert!(have("curl"), "curl is needed (scripts/install-*-deps.sh)");
    {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-L",
                "--max-time",
                "3",
                "-o",
                "-",
                "-D",
                "-",
                "-w",
                "%{url_effective}",
            ])
            .arg(format!("http://{}/stream", origin.listen))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("302 Found"), "{text}");
        assert!(text.contains("HTTP/1.0 200 OK"), "{text}");
        assert!(
            text.ends_with(&format!("http://{}/stream", edge.listen)),
            "curl did not end on the edge: {}",
            &text[text.len().saturating_sub(200)..]
        );
        let body_start = text.find("\r\n\r\n").unwrap();
        assert!(
            out.stdout.len() > body_start + 1000,
            "no audio from the edge"
        );
    }
}

/// The recording files in `dir` whose names start with `prefix`, in name (so time) order.
fn recordings(dir: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    files.sort();
    files
}

#[test]
fn the_recording_is_what_listeners_got_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    // A new file every 3 s (0.05 minutes), named to the second.
    let server = Server::start(&format!(
        r#"
broadcaster {{ chunk_ms = 100 }}
playlist {{ directory = "/nonexistent/cycast-test-music" }}
mount "/stream" {{
  dump_file = "{}/rec-%Y%m%d-%H%M%S.mp3"
  dump_rotate = 0.05
}}
"#,
        dir.path().display()
    ));
    // The listener is there before any audio, so it gets everything the mount plays.
    let mut listener = Listener::connect(server.listen, "/stream");
    let mut source = Source::mp3(server.source, "/stream");
    let count = 270; // about 7 s in real time
    source.send_frames(1, count, 1.0);
    // The framer holds the newest frame until the next header: one more frame releases it.
    source.send_frames(count + 1, 1, 1.0);
    listener.read_for(Duration::from_millis(500));
    assert_exact_suffix(&listener.body, 1, count);
    assert!(
        find_frame(&listener.body, count).is_some(),
        "the listener did not get the last frame"
    );

    // Until the source came the mount played silence; the recording holds that too, so the
    // listener's capture must be one contiguous span of it, byte for byte.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (files, recorded) = loop {
        let files = recordings(dir.path(), "rec-");
        let recorded: Vec<u8> = files
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap())
            .collect();
        if find_frame(&recorded, count).is_some() {
            break (files, recorded);
        }
        assert!(
            Instant::now() < deadline,
            "the last frame was not recorded ({} bytes in {files:?})",
            recorded.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(files.len() >= 2, "no rotation: {files:?}");
    let got = &listener.body[..find_frame(&listener.body, count).unwrap() + FRAME_LEN];
    let start = find_frame(&recorded, 1).unwrap();
    let listener_first = find_frame(got, 1).unwrap();
    let from = start
        .checked_sub(listener_first)
        .expect("the recording starts after what the listener got");
    assert!(
        recorded.len() >= from + got.len() && recorded[from..from + got.len()] == *got,
        "the recording differs from what the listener got"
    );
    // Every file is whole frames.
    for file in recordings(dir.path(), "rec-") {
        let bytes = std::fs::read(&file).unwrap();
        let offsets = walk_frames(&bytes).unwrap();
        assert_eq!(offsets.last().unwrap() + FRAME_LEN, bytes.len(), "{file:?}");
    }
}

#[test]
fn an_unwritable_recording_leaves_the_stream_alone_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file cannot be created, whoever the server runs as (a read-only
    // directory does not stop root).
    std::fs::write(dir.path().join("not-a-dir"), b"").unwrap();
    let server = Server::start(&format!(
        r#"
broadcaster {{ chunk_ms = 100 }}
playlist {{ directory = "/nonexistent/cycast-test-music" }}
mount "/stream" {{ dump_file = "{}/not-a-dir/%H%M%S.mp3" }}
"#,
        dir.path().display()
    ));
    let mut listener = Listener::connect(server.listen, "/stream");
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 60, 4.0);
    source.send_frames(61, 1, 4.0);
    listener.read_for(Duration::from_millis(500));
    assert_exact_suffix(&listener.body, 1, 60);
    assert!(
        find_frame(&listener.body, 60).is_some(),
        "the stream stalled"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = server.get("/metrics");
        let errors: f64 = String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with("cycast_dump_errors_total{") && l.contains("/stream"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        if errors >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "dump errors not counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = server.wait_log("cannot write the recording");
    assert_eq!(
        log.matches("cannot write the recording").count(),
        1,
        "logged once: {log}"
    );
}

/// Encodes `seconds` of a sine tone at `rate` Hz to a 128 kbps stereo MP3 with an ID3 tag.
fn tone_mp3(path: &std::path::Path, freq: u32, rate: u32, seconds: u32) -> Vec<u8> {
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency={freq}:duration={seconds}:sample_rate={rate}"
        ))
        .args(["-ac", "2", "-b:a", "128k", "-metadata", "title=Station ID"])
        .arg(path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success());
    std::fs::read(path).unwrap()
}

/// The MP3 audio frames of `file`: what follows its ID3v2 tag and its Xing/Info frame, up
/// to the last whole frame.
fn frames_of(file: &[u8]) -> &[u8] {
    let start = if file.starts_with(b"ID3") {
        let size = file[6..10]
            .iter()
            .fold(0usize, |acc, &b| (acc << 7) | (b & 0x7F) as usize);
        10 + size
    } else {
        0
    };
    let mut audio = &file[start..];
    let first = cycast::ingest::mp3::parse_header(audio).unwrap().frame_len;
    if audio[..first]
        .windows(4)
        .any(|w| w == b"Info" || w == b"Xing")
    {
        audio = &audio[first..];
    }
    let offsets = walk_frames(audio).unwrap();
    let last = *offsets.last().unwrap();
    let end = last
        + cycast::ingest::mp3::parse_header(&audio[last..])
            .unwrap()
            .frame_len;
    &audio[..end.min(audio.len())]
}

/// Sends `bytes` to the source in real time (128 kbps) on a thread, until `stop`.
fn stream_file(mut source: Source, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    std::thread::spawn(move || {
        for piece in bytes.chunks(4000) {
            if source.stream.write_all(piece).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

#[test]
fn a_new_listener_hears_the_intro_then_the_live_stream() {
    assert!(
        have("ffmpeg"),
        "ffmpeg is needed (scripts/install-*-deps.sh)"
    );
    let dir = tempfile::tempdir().unwrap();
    let intro_file = tone_mp3(&dir.path().join("intro.mp3"), 880, 44100, 1);
    let live_file = tone_mp3(&dir.path().join("live.mp3"), 440, 44100, 20);
    let server = Server::start(&format!(
        r#"
broadcaster {{ chunk_ms = 100 }}
playlist {{ directory = "/nonexistent/cycast-test-music" }}
mount "/stream" {{ intro = "{}" }}
"#,
        dir.path().join("intro.mp3").display()
    ));
    let source = Source::mp3(server.source, "/stream");
    let feeder = stream_file(source, live_file.clone());
    std::thread::sleep(Duration::from_millis(1500));
    let mut listener = Listener::connect(server.listen, "/stream");
    let intro = frames_of(&intro_file);
    listener.read_at_least(intro.len() + 40_000, Duration::from_secs(15));
    assert!(
        listener.body.starts_with(intro),
        "the listener did not start with the intro's frames ({} intro bytes)",
        intro.len()
    );
    // Then the mount's own frames, from a frame boundary of what the source sent.
    let after = &listener.body[intro.len()..intro.len() + 8000];
    let live = frames_of(&live_file);
    assert!(
        live.windows(after.len()).any(|w| w == after),
        "what follows the intro is not the live stream"
    );
    // The whole capture decodes cleanly.
    let offsets = walk_frames(&listener.body).expect("capture is whole frames");
    let whole = &listener.body[..*offsets.last().unwrap()];
    let capture = dir.path().join("capture.mp3");
    std::fs::write(&capture, whole).unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&capture)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "ffmpeg reported: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(listener);
    drop(server);
    let _ = feeder.join();
}

#[test]
fn an_intro_of_another_sample_rate_is_left_out_with_one_warning() {
    assert!(
        have("ffmpeg"),
        "ffmpeg is needed (scripts/install-*-deps.sh)"
    );
    let dir = tempfile::tempdir().unwrap();
    let intro_file = tone_mp3(&dir.path().join("intro.mp3"), 880, 22050, 1);
    let live_file = tone_mp3(&dir.path().join("live.mp3"), 440, 44100, 20);
    let server = Server::start(&format!(
        r#"
broadcaster {{ chunk_ms = 100 }}
playlist {{ directory = "/nonexistent/cycast-test-music" }}
mount "/stream" {{ intro = "{}" }}
"#,
        dir.path().join("intro.mp3").display()
    ));
    let source = Source::mp3(server.source, "/stream");
    let feeder = stream_file(source, live_file.clone());
    std::thread::sleep(Duration::from_millis(1500));
    let intro = frames_of(&intro_file);
    for _ in 0..2 {
        let mut listener = Listener::connect(server.listen, "/stream");
        listener.read_at_least(8000, Duration::from_secs(15));
        assert!(
            !listener.body.starts_with(&intro[..1000]),
            "the intro was sent"
        );
        let head = parse_header_of(&listener.body);
        assert_eq!(head, 44100, "the listener did not get the mount's stream");
    }
    // The log is read by another thread: wait for the line before counting.
    let log = server.wait_log("intro not used");
    assert_eq!(
        log.matches("intro not used").count(),
        1,
        "one warning expected: {log}"
    );
    drop(server);
    let _ = feeder.join();
}

/// Sample rate of the first frame of `bytes`.
fn parse_header_of(bytes: &[u8]) -> u32 {
    cycast::ingest::mp3::parse_header(bytes)
        .expect("starts with a frame")
        .sample_rate
}

#[test]
fn a_reload_reads_the_intro_again() {
    assert!(
        have("ffmpeg"),
        "ffmpeg is needed (scripts/install-*-deps.sh)"
    );
    let dir = tempfile::tempdir().unwrap();
    let first = tone_mp3(&dir.path().join("first.mp3"), 880, 44100, 1);
    let second = tone_mp3(&dir.path().join("second.mp3"), 660, 44100, 1);
    let live_file = tone_mp3(&dir.path().join("live.mp3"), 440, 44100, 20);
    let config = |intro: &str| {
        format!(
            r#"
server {{}}
broadcaster {{ chunk_ms = 100 }}
playlist {{ directory = "/nonexistent/cycast-test-music" }}
mount "/stream" {{ intro = "{}" }}
"#,
            dir.path().join(intro).display()
        )
    };
    let server = Server::start(&config("first.mp3"));
    let source = Source::mp3(server.source, "/stream");
    let feeder = stream_file(source, live_file);
    std::thread::sleep(Duration::from_millis(1000));
    let mut listener = Listener::connect(server.listen, "/stream");
    listener.read_at_least(frames_of(&first).len(), Duration::from_secs(15));
    assert!(
        listener.body.starts_with(frames_of(&first)),
        "not the first intro"
    );

    std::fs::write(server.path("cycast.hcl"), config("second.mp3")).unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut listener = Listener::connect(server.listen, "/stream");
    listener.read_at_least(frames_of(&second).len(), Duration::from_secs(15));
    assert!(
        listener.body.starts_with(frames_of(&second)),
        "the reloaded intro was not played"
    );
    drop(server);
    let _ = feeder.join();
}
