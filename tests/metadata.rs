//! Now-playing metadata, the admin API, status pages and Prometheus metrics over loopback.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;

const CONFIG: &str = r#"
server {
  admin_user = "admin"
  admin_password = "adminpw"
}
limits { burst_size = 16384 }
broadcaster { chunk_ms = 200 }
metadata { icy_metaint = 1000 }
playlist { directory = "/nonexistent/cycast-test-music" }
"#;

const ADMIN_AUTH: &str = "Authorization: Basic YWRtaW46YWRtaW5wdw==\r\n"; // admin:adminpw

fn admin_get(
    server: &Server,
    addr: std::net::SocketAddr,
    path_and_query: &str,
    auth: &str,
) -> (String, String) {
    let answer = raw_exchange(
        addr,
        format!("GET {path_and_query} HTTP/1.0\r\n{auth}\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    let _ = server;
    let (head, body) = split_head(&answer);
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// Splits an ICY stream into audio and the metadata texts, checking every block's framing.
fn parse_icy(capture: &[u8], metaint: usize) -> (Vec<u8>, Vec<(usize, String)>) {
    let (mut audio, mut blocks) = (Vec::new(), Vec::new());
    let mut pos = 0;
    while pos + metaint < capture.len() {
        audio.extend_from_slice(&capture[pos..pos + metaint]);
        pos += metaint;
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
                "malformed block {text:?}"
            );
            blocks.push((audio.len(), text));
        }
        pos += 1 + len;
    }
    (audio, blocks)
}

#[test]
fn icy_listeners_get_titles_at_the_right_offsets_and_others_pure_audio() {
    let server = Server::start(CONFIG);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 20, 20.0);
    let mut icy = Listener::connect_with(server.listen, "/stream", "Icy-MetaData: 1\r\n");
    let mut plain = Listener::connect(server.listen, "/stream");
    assert!(icy.head.contains("icy-metaint:1000\r\n"), "{}", icy.head);
    assert!(!plain.head.contains("icy-metaint:"), "{}", plain.head);

    let titles = ["First Artist - First Song", "日本語 - 'quoted' \"title\""];
    let (head, body) = admin_get(
        &server,
        server.listen,
        "/admin/metadata?mount=/stream&mode=updinfo&song=First%20Artist%20-%20First%20Song",
        ADMIN_AUTH,
    );
    assert!(head.starts_with("HTTP/1.0 200"), "{head}{body}");
    assert_eq!(body, "<?xml version=\"1.0\"?>\n<iceresponse><message>Metadata update successful</message><return>1</return></iceresponse>");
    source.send_frames(21, 40, 20.0);
    // The second update arrives on the source port with the source's own credentials, as DJ
    // software sends it.
    let (head, _) = admin_get(
        &server,
        server.source,
        "/admin/metadata?mount=/stream&mode=updinfo&song=%E6%97%A5%E6%9C%AC%E8%AA%9E%20-%20%27quoted%27%20%22title%22",
        SOURCE_AUTH,
    );
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    source.send_frames(61, 60, 20.0);
    icy.read_for(Duration::from_millis(600));
    plain.read_for(Duration::from_millis(600));

    let (audio, blocks) = parse_icy(&icy.body, 1000);
    let texts: Vec<&str> = blocks.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        texts,
        vec![
            format!("StreamTitle='{}';", titles[0]),
            format!("StreamTitle='{}';", titles[1])
        ]
    );
    // With metadata removed, the ICY listener's audio is the same exact frame sequence.
    assert_exact_suffix(&audio, 1, 120);
    assert_exact_suffix(&plain.body, 1, 120);
    let status: serde_json::Value =
        serde_json::from_slice(&server.get("/status-json.xsl").1).unwrap();
    assert_eq!(status["icestats"]["source"]["title"], titles[1]);
}

#[test]
fn metadata_updates_are_checked() {
    let server = Server::start(CONFIG);
    let _source = Source::mp3(server.source, "/stream");
    let cases = [
        (
            "/admin/metadata?mount=/stream&mode=updinfo&song=x",
            "Authorization: Basic YWRtaW46d3Jvbmc=\r\n",
            "401",
        ),
        (
            "/admin/metadata?mount=/stream&mode=updinfo&song=x",
            "",
            "401",
        ),
        (
            "/admin/metadata?mount=/nope&mode=updinfo&song=x",
            ADMIN_AUTH,
            "400",
        ),
        ("/admin/metadata?mode=updinfo&song=x", ADMIN_AUTH, "400"),
        ("/admin/metadata?mount=/stream&song=x", ADMIN_AUTH, "400"),
        (
            "/admin/metadata?mount=/stream&mode=updinfo",
            ADMIN_AUTH,
            "400",
        ),
        (
            "/admin/metadata?mount=/stream&mode=updinfo&song=bad%0d%0aline",
            ADMIN_AUTH,
            "400",
        ),
    ];
    for (path, auth, status) in cases {
        let (head, body) = admin_get(&server, server.listen, path, auth);
        assert!(
            head.starts_with(&format!("HTTP/1.0 {status}")),
            "{path}: {head}{body}"
        );
    }
    let long = format!(
        "/admin/metadata?mount=/stream&mode=updinfo&song={}",
        "a".repeat(2000)
    );
    let (head, body) = admin_get(&server, server.listen, &long, ADMIN_AUTH);
    assert!(
        head.starts_with("HTTP/1.0 400") && body.contains("too long"),
        "{head}{body}"
    );
    // Unknown mount answers Icecast's message.
    let (_, body) = admin_get(
        &server,
        server.listen,
        "/admin/metadata?mount=/nope&mode=updinfo&song=x",
        ADMIN_AUTH,
    );
    assert!(body.contains("Source does not exist"), "{body}");
    // Nothing above changed the title; artist/title and Latin-1 forms work.
    let (head, _) = admin_get(
        &server,
        server.listen,
        "/admin/metadata?mount=/stream&mode=updinfo&artist=Caf%E9&title=Tune&charset=ISO-8859-1",
        ADMIN_AUTH,
    );
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let status: serde_json::Value =
        serde_json::from_slice(&server.get("/status-json.xsl").1).unwrap();
    assert_eq!(status["icestats"]["source"]["title"], "Café - Tune");
    // Shoutcast's form with the source password.
    let (head, _) = admin_get(
        &server,
        server.source,
        "/admin.cgi?pass=hackme&mode=updinfo&song=Shout%20Title",
        "",
    );
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let (head, _) = admin_get(
        &server,
        server.source,
        "/admin.cgi?pass=nope&mode=updinfo&song=x",
        "",
    );
    assert!(head.starts_with("HTTP/1.0 401"), "{head}");
    let api: serde_json::Value = serde_json::from_slice(&server.get("/api/status").1).unwrap();
    assert_eq!(api["metadata"]["title"], "Shout Title");
    assert!(
        !server.log().contains("adminpw") && !server.log().contains("hackme"),
        "a password reached the log"
    );
}

#[test]
fn admin_lists_kicks_moves_and_removes() {
    let server = Server::start(CONFIG);
    let mut main = Source::mp3(server.source, "/stream");
    let mut other = Source::mp3(server.source, "/other");
    main.send_frames(1, 20, 50.0);
    other.send_frames(1, 20, 50.0);
    let mut listeners: Vec<Listener> = (0..4)
        .map(|_| Listener::connect(server.listen, "/stream"))
        .collect();
    server.wait_stats(Duration::from_secs(5), "listener snapshot", |s| {
        s["listeners"].as_array().unwrap().len() == 4
    });

    let (head, xml) = admin_get(
        &server,
        server.listen,
        "/admin/listclients?mount=/stream",
        ADMIN_AUTH,
    );
    assert!(
        head.starts_with("HTTP/1.0 200") && head.contains("text/xml"),
        "{head}"
    );
    assert!(
        xml.contains("<source mount=\"/stream\"><Listeners>4</Listeners>"),
        "{xml}"
    );
    assert_eq!(
        xml.matches("<UserAgent>cycast-test</UserAgent>").count(),
        4,
        "{xml}"
    );
    let (_, json) = admin_get(
        &server,
        server.listen,
        "/admin/listclients.json?mount=/stream",
        ADMIN_AUTH,
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ids: Vec<u64> = json["icestats"]["source"][0]["listener"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ID"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 4);

    // Kick exactly one listener.
    let victim = ids[0];
    let (_, body) = admin_get(
        &server,
        server.source,
        &format!("/admin/killclient?mount=/stream&id={victim}"),
        ADMIN_AUTH,
    );
    assert!(body.contains(&format!("Client {victim} removed")), "{body}");
    let (_, body) = admin_get(
        &server,
        server.listen,
        "/admin/killclient?mount=/stream&id=999999",
        ADMIN_AUTH,
    );
    assert!(
        body.contains("Client 999999 not found") && body.contains("<return>0</return>"),
        "{body}"
    );
    main.send_frames(21, 20, 50.0);
    let closed: Vec<bool> = listeners
        .iter_mut()
        .map(|l| l.closed_within(Duration::from_millis(700)))
        .collect();
    assert_eq!(
        closed.iter().filter(|c| **c).count(),
        1,
        "exactly one listener must be dropped: {closed:?}"
    );
    server.wait_stats(Duration::from_secs(5), "three listeners", |s| {
        s["total_listeners"] == 3
    });

    // Move the rest to /other; they keep streaming, now /other's frames.
    let (_, body) = admin_get(
        &server,
        server.listen,
        "/admin/moveclients?mount=/stream&destination=/other",
        ADMIN_AUTH,
    );
    assert!(
        body.contains("Clients moved from /stream to /other"),
        "{body}"
    );
    other.send_frames(21, 30, 20.0);
    server.wait_stats(Duration::from_secs(5), "moved listeners", |s| {
        s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mount"] == "/other" && m["listeners"] == 3)
    });
    let (_, body) = admin_get(
        &server,
        server.listen,
        "/admin/moveclients?mount=/stream&destination=/none",
        ADMIN_AUTH,
    );
    assert!(body.contains("Destination does not exist"), "{body}");

    // Kill the /other source: listeners stay, the source socket closes.
    let (_, body) = admin_get(
        &server,
        server.listen,
        "/admin/killsource?mount=/other",
        ADMIN_AUTH,
    );
    assert!(body.contains("Source Removed"), "{body}");
    let mut buf = [0u8; 8];
    other
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        other.stream.read(&mut buf).unwrap_or(0),
        0,
        "killed source still connected"
    );
    server.wait_stats(Duration::from_secs(5), "listeners kept", |s| {
        s["total_listeners"] == 3
    });

    let (_, body) = admin_get(&server, server.listen, "/admin/listmounts", ADMIN_AUTH);
    assert!(
        body.contains("<source mount=\"/stream\">") && body.contains("<source mount=\"/other\">"),
        "{body}"
    );
    let (_, body) = admin_get(&server, server.listen, "/admin/stats.json", ADMIN_AUTH);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["icestats"]["sources"], 2);
    let (head, _) = admin_get(
        &server,
        server.listen,
        "/admin/listclients?mount=/stream",
        "",
    );
    assert!(
        head.starts_with("HTTP/1.0 401") && head.contains("WWW-Authenticate"),
        "{head}"
    );
    let (head, _) = admin_get(&server, server.listen, "/admin/bogus", ADMIN_AUTH);
    assert!(head.starts_with("HTTP/1.0 404"), "{head}");
}

#[test]
fn admin_api_is_off_without_a_password_but_source_titles_still_work() {
    let server = Server::start("playlist { directory = \"/nonexistent/x\" }\n");
    let _source = Source::mp3(server.source, "/stream");
    let (head, body) = admin_get(
        &server,
        server.listen,
        "/admin/listclients?mount=/stream",
        "Authorization: Basic YWRtaW46\r\n",
    );
    assert!(
        head.starts_with("HTTP/1.0 401") && body.contains("admin API is off"),
        "{head}{body}"
    );
    let (head, _) = admin_get(
        &server,
        server.listen,
        "/admin/metadata?mount=/stream&mode=updinfo&song=ok",
        SOURCE_AUTH,
    );
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
}

#[test]
fn status_pages_have_the_icecast_and_cycast_shapes() {
    let server = Server::start(CONFIG);
    let (_, body) = server.get("/status-json.xsl");
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let ice = &status["icestats"];
    for key in [
        "admin",
        "host",
        "location",
        "server_id",
        "server_start",
        "server_start_iso8601",
    ] {
        assert!(ice.get(key).is_some(), "icestats.{key} missing: {ice}");
    }
    let mut source = Source::connect(
        server.source,
        &format!("SOURCE /stream HTTP/1.0\r\n{SOURCE_AUTH}Content-Type: audio/mpeg\r\nice-name: Night Show\r\nice-genre: Jazz\r\nice-description: Late\r\nice-url: http://x.test\r\nice-bitrate: 128\r\nice-public: 1\r\n\r\n"),
    );
    source.send_frames(1, 10, 50.0);
    let _l1 = Listener::connect(server.listen, "/stream");
    let _l2 = Listener::connect(server.listen, "/stream");
    let (_, body) = server.get("/status-json.xsl");
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let src = &status["icestats"]["source"];
    assert!(src.is_object(), "one mount is an object: {status}");
    assert_eq!(src["server_name"], "Night Show");
    assert_eq!(src["genre"], "Jazz");
    assert_eq!(src["server_description"], "Late");
    assert_eq!(src["server_url"], "http://x.test");
    assert_eq!(src["bitrate"], 128);
    assert_eq!(src["listeners"], 2);
    assert_eq!(src["listener_peak"], 2);
    assert_eq!(src["server_type"], "audio/mpeg");
    assert!(src["listenurl"].as_str().unwrap().ends_with("/stream"));
    assert!(src.get("title").is_none(), "title is absent until set");
    assert!(src.get("stream_start_iso8601").is_some());
    let _two = Source::mp3(server.source, "/second");
    let (_, body) = server.get("/status-json.xsl");
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        status["icestats"]["source"].as_array().map(Vec::len),
        Some(2),
        "several mounts are an array"
    );

    let (_, body) = server.get("/api/status");
    let api: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(api["source_connected"], true);
    assert_eq!(api["source_status"], "Connected");
    assert_eq!(api["listeners"], 2);
    assert_eq!(api["station_name"], "Cycast Radio");
    assert!(api["uptime_formatted"].as_str().unwrap().ends_with('m'));
    for key in ["metadata", "uptime_seconds", "station_genre"] {
        assert!(api.get(key).is_some(), "{key} missing");
    }
    let stats = server.wait_stats(Duration::from_secs(5), "listener list", |s| {
        s["listeners"].as_array().unwrap().len() == 2
    });
    for key in ["total_listeners", "total_bytes_sent", "buffer"] {
        assert!(stats.get(key).is_some(), "{key} missing: {stats}");
    }
    let l = &stats["listeners"][0];
    for key in ["id", "bytes_sent", "connected_seconds", "active"] {
        assert!(l.get(key).is_some(), "listener.{key} missing: {l}");
    }
}

#[test]
fn stats_can_be_disabled() {
    let server = Server::start(
        "advanced { enable_stats = false }\nplaylist { directory = \"/nonexistent/x\" }\n",
    );
    let (head, body) = server.get("/api/stats");
    assert!(head.starts_with("HTTP/1.0 403"), "{head}");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "{\"error\":\"Stats disabled\"}"
    );
}

#[test]
fn prometheus_series_per_shard_add_up_to_the_real_total() {
    let server = Server::start_with_args(CONFIG, &["--shards", "2"]);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(1, 10, 50.0);
    let listeners: Vec<Listener> = (0..12)
        .map(|_| Listener::connect(server.listen, "/stream"))
        .collect();
    source.send_frames(11, 30, 20.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (head, body) = server.get("/metrics");
        assert!(head.contains("text/plain"), "{head}");
        let text = String::from_utf8(body).unwrap();
        let mut shards = std::collections::BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            if let Some(labels) = series.strip_prefix("cycast_listeners{") {
                let shard = labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("shard=\""))
                    .unwrap()
                    .trim_end_matches(['"', '}'])
                    .to_string();
                assert!(labels.contains("mount=\"/stream\""), "{line}");
                shards.insert(shard, value);
            }
        }
        let total: f64 = shards.values().sum();
        if shards.len() == 2 && total == listeners.len() as f64 {
            assert!(text.contains("cycast_bytes_sent_total{"), "{text}");
            assert!(
                text.contains("cycast_time_to_first_byte_seconds_bucket{"),
                "{text}"
            );
            assert!(
                text.contains("cycast_source_connects_total{mount=\"/stream\",result=\"ok\"} 1"),
                "{text}"
            );
            assert!(
                text.contains("cycast_source_connected{mount=\"/stream\"} 1"),
                "{text}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "per-shard listener series {shards:?} never added up to {}",
            listeners.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
