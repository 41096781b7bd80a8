//! Several mounts: per-mount settings, fallback chains with listeners moved without a
//! disconnect, and formats other than MP3.

mod common;

use std::time::Duration;

use common::*;

const CONFIG: &str = r#"
server {
  admin_password = "adminpw"
}
limits { burst_size = 16384 }
broadcaster { chunk_ms = 200 }
playlist { directory = "/nonexistent/cycast-test-music" }
mount "/live" {
  source_user = "dj"
  source_password = "djpass"
  fallback_mount = "/stream"
  fallback_override = true
  station_name = "Live Show"
  icy_metaint = 2000
}
mount "/small" {
  max_listeners = 1
}
mount "/secret" {
  hidden = true
}
"#;

/// `dj:djpass`
const DJ_AUTH: &str = "Authorization: Basic ZGo6ZGpwYXNz\r\n";

#[test]
fn per_mount_credentials_limits_and_settings() {
    let server = Server::start(CONFIG);
    // The global source password does not open /live; the mount's own does.
    let refused = raw_exchange(
        server.source,
        format!("SOURCE /live HTTP/1.0\r\n{SOURCE_AUTH}Content-Type: audio/mpeg\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(5),
    );
    assert!(String::from_utf8_lossy(&refused).starts_with("HTTP/1.0 401"));
    let mut live = Source::connect(
        server.source,
        &format!("SOURCE /live HTTP/1.0\r\n{DJ_AUTH}Content-Type: audio/mpeg\r\n\r\n"),
    );
    assert!(
        live.response.starts_with("HTTP/1.0 200"),
        "{}",
        live.response
    );
    live.send_frames(1, 10, 50.0);
    let icy = Listener::connect_with(server.listen, "/live", "Icy-MetaData: 1\r\n");
    assert!(icy.head.contains("icy-metaint:2000\r\n"), "{}", icy.head);
    assert!(icy.head.contains("icy-name:Live Show\r\n"), "{}", icy.head);

    let mut small = Source::mp3(server.source, "/small");
    small.send_frames(1, 10, 50.0);
    let first = Listener::connect(server.listen, "/small");
    assert!(first.head.starts_with("HTTP/1.0 200"));
    let (head, _) = server.get("/small");
    assert!(head.starts_with("HTTP/1.0 503"), "{head}");

    let _secret = Source::mp3(server.source, "/secret");
    let status: serde_json::Value =
        serde_json::from_slice(&server.get("/status-json.xsl").1).unwrap();
    let mounts: Vec<String> = status["icestats"]["source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["mount"].as_str().unwrap().to_string())
        .collect();
    assert!(
        mounts.contains(&"/live".to_string()) && !mounts.contains(&"/secret".to_string()),
        "{mounts:?}"
    );
    // Hidden from lists, still playable.
    let hidden = Listener::connect(server.listen, "/secret");
    assert!(hidden.head.starts_with("HTTP/1.0 200"));
}

#[test]
fn fallback_chain_moves_listeners_there_and_back_without_a_disconnect() {
    let server = Server::start(CONFIG);
    let mut autodj = Source::mp3(server.source, "/stream");
    autodj.send_frames(1, 20, 20.0);
    // /live has no source: its listener is served /stream's audio.
    let mut listener = Listener::connect(server.listen, "/live");
    assert!(
        listener.head.starts_with("HTTP/1.0 200"),
        "{}",
        listener.head
    );
    autodj.send_frames(21, 20, 20.0);
    listener.read_for(Duration::from_millis(300));
    assert!(
        find_frame(&listener.body, 35).is_some(),
        "fallback audio did not arrive"
    );

    // The DJ connects: the listener moves back to /live (fallback_override).
    let mut live = Source::connect(
        server.source,
        &format!("SOURCE /live HTTP/1.0\r\n{DJ_AUTH}Content-Type: audio/mpeg\r\n\r\n"),
    );
    assert!(live.response.starts_with("HTTP/1.0 200"));
    live.send_frames(50_000, 40, 20.0);
    autodj.send_frames(41, 20, 20.0);
    listener.read_for(Duration::from_millis(400));
    assert!(
        find_frame(&listener.body, 50_030).is_some(),
        "live audio did not arrive after the move back"
    );

    // The DJ leaves: the listener goes to the fallback again, still connected.
    drop(live);
    std::thread::sleep(Duration::from_millis(300));
    autodj.send_frames(61, 40, 20.0);
    listener.read_for(Duration::from_millis(400));
    assert!(
        find_frame(&listener.body, 90).is_some(),
        "fallback audio did not resume"
    );
    let offsets =
        walk_frames(&listener.body).unwrap_or_else(|at| panic!("a move cut a frame at byte {at}"));
    assert!(!offsets.is_empty());
    let stats = server.stats();
    assert_eq!(
        stats["total_listeners"], 1,
        "the listener was disconnected: {stats}"
    );
}

#[test]
fn moveclients_moves_listeners_between_mounts() {
    let server = Server::start(CONFIG);
    let mut a = Source::mp3(server.source, "/stream");
    let mut b = Source::mp3(server.source, "/small");
    a.send_frames(1, 10, 50.0);
    b.send_frames(70_000, 10, 50.0);
    let mut listener = Listener::connect(server.listen, "/stream");
    let answer = raw_exchange(server.listen, b"GET /admin/moveclients?mount=/stream&destination=/small HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n", Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&answer).contains("Clients moved from /stream to /small"));
    b.send_frames(70_010, 30, 20.0);
    a.send_frames(11, 10, 50.0);
    listener.read_for(Duration::from_millis(400));
    assert!(
        find_frame(&listener.body, 70_030).is_some(),
        "moved listener gets the destination's audio"
    );
    walk_frames(&listener.body).expect("no cut frame across the move");
}

/// An ffmpeg source encoding a tone in real time to `mount` with `codec` and `format`.
fn ffmpeg_source(
    server: &Server,
    mount: &str,
    codec: &[&str],
    content_type: &str,
) -> std::process::Child {
    std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args(codec)
        .args(["-content_type", content_type])
        .arg(format!("icecast://source:hackme@{}{mount}", server.source))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ffmpeg")
}

/// Decodes two seconds of `mount` from a listener joining now; returns PCM bytes.
fn decode_two_seconds(server: &Server, mount: &str) -> usize {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(format!("http://{}{mount}", server.listen))
        .args(["-t", "2", "-f", "s16le", "-ac", "2", "-ar", "48000", "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "{mount}: decoder complained: {errors}"
    );
    out.stdout.len()
}

#[test]
fn aac_and_opus_mounts_decode_from_listeners_joining_mid_stream() {
    if !have("ffmpeg") {
        eprintln!("ffmpeg is not installed (make test installs it): skipping");
        return;
    }
    let server = Server::start(CONFIG);
    let mut aac = ffmpeg_source(
        &server,
        "/aac",
        &["-c:a", "aac", "-b:a", "64k", "-f", "adts"],
        "audio/aac",
    );
    let mut opus = ffmpeg_source(
        &server,
        "/opus",
        &["-c:a", "libopus", "-b:a", "64k", "-f", "ogg"],
        "audio/ogg",
    );
    server.wait_stats(Duration::from_secs(10), "both sources", |s| {
        s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["live"] == true)
            .count()
            == 2
    });
    // Join well after the Ogg header pages went by: they must be replayed.
    std::thread::sleep(Duration::from_millis(2500));
    let full = 2 * 48_000 * 4;
    for mount in ["/aac", "/opus"] {
        let pcm = decode_two_seconds(&server, mount);
        assert!(
            pcm >= full * 9 / 10,
            "{mount}: decoded {pcm} of {full} bytes"
        );
    }
    let (head, _) = server.get("/status-json.xsl");
    assert!(head.starts_with("HTTP/1.0 200"));

    // A title update on the Opus mount reaches a listener that asked for ICY metadata.
    let mut icy = Listener::connect_with(server.listen, "/opus", "Icy-MetaData: 1\r\n");
    assert!(icy.head.contains("Content-Type: audio/ogg"), "{}", icy.head);
    let answer = raw_exchange(
        server.listen,
        b"GET /admin/metadata?mount=/opus&mode=updinfo&song=Opus%20Title HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.0 200"));
    let needle = b"StreamTitle='Opus Title';";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !icy.body.windows(needle.len()).any(|w| w == needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "the title never reached the ICY listener"
        );
        icy.read_for(Duration::from_millis(200));
    }
    // The ICY listener's stream, metadata removed, starts with the Opus header page.
    assert!(
        icy.body.starts_with(b"OggS"),
        "first bytes are not an Ogg page"
    );
    let _ = aac.kill();
    let _ = opus.kill();
    let _ = aac.wait();
    let _ = opus.wait();
}

#[test]
fn an_edge_relays_the_origin_with_titles_and_recovers_when_it_restarts() {
    let origin_config = "server {\n  admin_password = \"adminpw\"\n}\nbroadcaster { chunk_ms = 200 }\nplaylist { directory = \"/nonexistent/x\" }\n";
    let origin = Server::start(origin_config);
    let port = origin.listen.port().to_string();
    let source_port = origin.source.port().to_string();
    let mut source = Source::mp3(origin.source, "/stream");
    source.send_frames(1, 20, 20.0);
    let edge = Server::start(&format!(
        "broadcaster {{ chunk_ms = 200 }}\nplaylist {{ directory = \"/nonexistent/x\" }}\nrelay \"/relayed\" {{\n  url = \"http://{}/stream\"\n  reconnect_min = 0.2\n  reconnect_max = 1.0\n}}\n",
        origin.listen
    ));
    edge.wait_stats(Duration::from_secs(10), "relay connected", |s| {
        s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mount"] == "/relayed" && m["live"] == true)
    });
    let mut listener = Listener::connect_with(edge.listen, "/relayed", "Icy-MetaData: 0\r\n");
    assert!(
        listener.head.starts_with("HTTP/1.0 200"),
        "{}",
        listener.head
    );
    let answer = raw_exchange(
        origin.listen,
        b"GET /admin/metadata?mount=/stream&mode=updinfo&song=Origin%20Title HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.0 200"));
    source.send_frames(21, 60, 20.0);
    listener.read_for(Duration::from_millis(500));
    assert!(
        find_frame(&listener.body, 70).is_some(),
        "origin audio did not reach the edge listener"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&edge.get("/status-json.xsl").1).unwrap();
    let relayed = status["icestats"]["source"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["mount"] == "/relayed")
        .cloned()
        .unwrap();
    assert_eq!(relayed["title"], "Origin Title", "{status}");

    // The origin goes away and comes back on the same ports.
    drop(source);
    drop(origin);
    std::thread::sleep(Duration::from_millis(500));
    let origin = Server::start_with_args(
        origin_config,
        &["--listen-port", &port, "--source-port", &source_port],
    );
    let mut source = Source::mp3(origin.source, "/stream");
    source.send_frames(5_000, 20, 20.0);
    edge.wait_stats(Duration::from_secs(10), "relay reconnected", |s| {
        s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mount"] == "/relayed" && m["live"] == true)
    });
    source.send_frames(5_020, 40, 20.0);
    listener.read_for(Duration::from_millis(500));
    assert!(
        find_frame(&listener.body, 5_040).is_some(),
        "the edge did not recover after the origin restart"
    );
    walk_frames(&listener.body).expect("the edge listener's stream stayed whole");
    assert_eq!(
        edge.stats()["total_listeners"],
        1,
        "the edge listener was dropped"
    );
}

#[test]
fn an_on_demand_relay_pulls_only_once_someone_listens() {
    let origin = Server::start(
        "broadcaster { chunk_ms = 200 }\nplaylist { directory = \"/nonexistent/x\" }\n",
    );
    let mut source = Source::mp3(origin.source, "/stream");
    source.send_frames(1, 20, 20.0);
    let edge = Server::start(&format!(
        "broadcaster {{ chunk_ms = 200 }}\nplaylist {{ directory = \"/nonexistent/x\" }}\nrelay \"/ondemand\" {{\n  url = \"http://{}/stream\"\n  on_demand = true\n  reconnect_min = 0.2\n  reconnect_max = 1.0\n}}\n",
        origin.listen
    ));
    // Nobody listens on the edge: the origin sees no relay connection.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        origin.stats()["total_listeners"],
        0,
        "the relay pulled without listeners"
    );
    let mut listener = Listener::connect(edge.listen, "/ondemand");
    origin.wait_stats(Duration::from_secs(5), "the relay to connect", |s| {
        s["total_listeners"] == 1
    });
    source.send_frames(21, 40, 20.0);
    listener.read_for(Duration::from_millis(500));
    assert!(
        find_frame(&listener.body, 50).is_some(),
        "on-demand relay audio did not arrive"
    );
}

/// Reads one request head from `stream`, or what arrived before the peer stopped.
fn read_request_head(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn a_relay_logs_in_with_the_url_credentials_and_never_logs_the_password() {
    use std::io::Write;
    use std::sync::mpsc;
    // A stand-in upstream that wants a login: it refuses the first pull (so the relay logs a
    // failure too), then streams to the second, recording both requests.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    let (requests, requests_seen) = mpsc::channel();
    let (stop, stopped) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        for answer in [
            "HTTP/1.0 401 Unauthorized\r\n\r\n",
            "HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\n\r\n",
        ] {
            let Ok((mut stream, _)) = upstream.accept() else {
                return;
            };
            let _ = requests.send(read_request_head(&mut stream));
            let _ = stream.write_all(answer.as_bytes());
            if answer.contains("200") {
                let _ = stream.write_all(&numbered_frames(1, 50));
                // Hold the stream open until the test is done, or at most 30 s.
                let _ = stopped.recv_timeout(Duration::from_secs(30));
            }
        }
    });
    // `p@ss:w0rd-9x` percent-escaped; the user has a space.
    let edge = Server::start(&format!(
        "broadcaster {{ chunk_ms = 200 }}\nplaylist {{ directory = \"/nonexistent/x\" }}\nrelay \"/relayed\" {{\n  url = \"http://relay%20user:p%40ss%3Aw0rd-9x@127.0.0.1:{port}/stream\"\n  reconnect_min = 0.2\n  reconnect_max = 1.0\n}}\n"
    ));
    for attempt in ["refused", "accepted"] {
        let request = requests_seen
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {attempt} pull reached the upstream"));
        assert!(request.starts_with("GET /stream HTTP/1.0\r\n"), "{request}");
        assert!(
            request.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{request}"
        );
        // base64 of `relay user:p@ss:w0rd-9x`.
        assert!(
            request.contains("\r\nAuthorization: Basic cmVsYXkgdXNlcjpwQHNzOncwcmQtOXg=\r\n"),
            "the {attempt} pull carried no credentials: {request}"
        );
    }
    edge.wait_stats(Duration::from_secs(10), "relay connected", |s| {
        s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mount"] == "/relayed" && m["live"] == true)
    });
    let log = edge.wait_log("relay connected");
    let shown = format!("http://relay user:***@127.0.0.1:{port}/stream");
    assert!(
        log.lines()
            .any(|l| l.contains("upstream answered 401") && l.contains(&shown)),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("relay connected") && l.contains(&shown)),
        "{log}"
    );
    for secret in ["w0rd-9x", "p%40ss", "p@ss"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    drop(stop);
    drop(edge);
    server.join().unwrap();
}
