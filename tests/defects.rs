//! Defects an outside probe found on the admin and metadata path: a title that panicked a
//! core, log injection, per-mount source credentials, and the login throttle.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
server {
  admin_user = "admin"
  admin_password = "adminpw"
  source_password = "s3cr3tpw"
}
mount "/own" {
  source_password = "djpw"
}
limits { burst_size = 16384 }
broadcaster { chunk_ms = 100 }
playlist { directory = "/nonexistent/cycast-test-music" }
advanced { access_log = "-" }
"#;

const ADMIN_AUTH: &str = "Authorization: Basic YWRtaW46YWRtaW5wdw==\r\n"; // admin:adminpw

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Authorization: Basic {token}\r\n")
}

/// Sends one raw request and returns the status line ("" when the connection failed or
/// nothing came back in time: the server may be gone).
fn status_of(addr: SocketAddr, request: &[u8]) -> String {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut answer = Vec::new();
    if stream.write_all(request).is_ok() {
        let _ = stream.read_to_end(&mut answer);
    }
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or("").to_string()
}

fn source_login(addr: SocketAddr, password: &str) -> Source {
    let head = format!(
        "SOURCE /stream HTTP/1.0\r\n{}Content-Type: audio/mpeg\r\n\r\n",
        basic("source", password)
    );
    let source = Source::connect(addr, &head);
    assert!(
        source.response.starts_with("HTTP/1.0 200"),
        "{}",
        source.response
    );
    source
}

/// Everything the server must still do after a hostile request, or why not.
fn fully_serving(
    server: &Server,
    source: &mut Source,
    listeners: &mut [Listener],
) -> Result<(), String> {
    // New requests on both ports, enough connections to reach every shard.
    for i in 0..12 {
        let status = status_of(server.listen, b"GET /status-json.xsl HTTP/1.0\r\n\r\n");
        if !status.starts_with("HTTP/1.0 200") {
            return Err(format!("listen port request {i} got {status:?}"));
        }
    }
    for i in 0..3 {
        let status = status_of(server.source, b"OPTIONS / HTTP/1.0\r\n\r\n");
        if !status.starts_with("HTTP/1.0 200") {
            return Err(format!("source port request {i} got {status:?}"));
        }
    }
    // New audio reaches every listener that was there before.
    source
        .stream
        .write_all(&numbered_frames(100, 40))
        .map_err(|e| format!("source write failed: {e}"))?;
    for (i, listener) in listeners.iter_mut().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while find_frame(&listener.body, 130).is_none() && Instant::now() < deadline {
            listener.read_for(Duration::from_millis(100));
        }
        if find_frame(&listener.body, 130).is_none() {
            return Err(format!("listener {i} got no new audio"));
        }
    }
    Ok(())
}

#[test]
fn a_split_escape_in_a_latin1_title_leaves_the_server_whole_or_gone() {
    let mut server = Server::start_with_args(CONFIG, &["--shards", "2"]);
    let mut source = source_login(server.source, "s3cr3tpw");
    source.send_frames(1, 20, 20.0);
    let mut listeners: Vec<Listener> = (0..8)
        .map(|_| Listener::connect(server.listen, "/stream"))
        .collect();
    // `%a` followed by the two bytes of `é`: the old Latin-1 decoder sliced inside the `é`.
    let listen_request = format!(
        "GET /admin/metadata?mount=/stream&mode=updinfo&charset=latin1&song=%a\u{e9} HTTP/1.0\r\n{ADMIN_AUTH}\r\n"
    );
    // Several connections, so that every shard gets one.
    for _ in 0..8 {
        status_of(server.listen, listen_request.as_bytes());
    }
    status_of(
        server.source,
        b"GET /admin.cgi?pass=s3cr3tpw&mode=updinfo&charset=latin1&song=%a\xc3\xa9x HTTP/1.0\r\n\r\n",
    );
    // Either still whole, or gone with a failure status for the supervisor: never half alive.
    if let Err(why) = fully_serving(&server, &mut source, &mut listeners) {
        match server.wait_exit(Duration::from_secs(5)) {
            Some(status) => assert!(!status.success(), "exited with success after: {why}"),
            None => panic!("half alive: {why}; log:\n{}", server.log()),
        }
    }
}

/// Waits until the server log contains `what`; returns the log.
fn log_with(server: &Server, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log();
        if log.contains(what) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_user_name_cannot_forge_access_log_lines() {
    let server = Server::start(CONFIG);
    // The issue's request: a Basic user name with a newline and tabs, no credentials needed.
    let forged = basic("x\n6.6.6.6\t-\t-\t[01/Jan/2026:00:00:00\t+0000]", "pw");
    let status = status_of(
        server.listen,
        format!("GET /api/status HTTP/1.0\r\n{forged}\r\n").as_bytes(),
    );
    assert!(!status.is_empty());
    let log = log_with(&server, "/api/status");
    assert!(
        !log.lines().any(|l| l.starts_with("6.6.6.6")),
        "a forged access-log line:\n{log}"
    );
    assert!(
        log.contains("x\\x0a6.6.6.6\\x09-"),
        "user name not escaped:\n{log}"
    );
}

#[test]
fn a_password_under_an_escaped_name_is_redacted() {
    let server = Server::start(CONFIG);
    // `p%61ss` is `pass` to the admin API: it authenticates, so it must be redacted too.
    let status = status_of(
        server.listen,
        b"GET /admin.cgi?p%61ss=s3cr3tpw&mode=updinfo&song=Escaped HTTP/1.0\r\n\r\n",
    );
    assert!(status.starts_with("HTTP/1.0 200"), "{status}");
    let log = log_with(&server, "admin.cgi");
    assert!(log.contains("p%61ss=<redacted>"), "{log}");
    assert!(
        !log.contains("s3cr3tpw"),
        "a password reached the log:\n{log}"
    );
}

#[test]
fn a_shoutcast_user_agent_is_logged_escaped() {
    let server = Server::start(CONFIG);
    let mut stream = TcpStream::connect(server.source).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"s3cr3tpw\r\nUser-Agent: evil\x1b[2J\rFAKE LINE\r\nicy-name: x\r\n\r\n")
        .unwrap();
    let mut ok = [0u8; 3];
    stream.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"OK2");
    stream.write_all(&numbered_frames(1, 10)).unwrap();
    let log = log_with(&server, "source connected");
    let connected = log
        .lines()
        .find(|l| l.contains("source connected"))
        .unwrap_or_else(|| panic!("no source log line:\n{log}"));
    assert!(
        !connected.contains('\x1b') && !connected.contains('\r'),
        "raw control characters in {connected:?}"
    );
    assert!(
        connected.contains("evil\\x1b[2J\\x0dFAKE LINE"),
        "{connected:?}"
    );
}

#[test]
fn title_updates_take_the_mounts_own_source_credentials_on_both_ports() {
    let server = Server::start(CONFIG);
    for port in [server.listen, server.source] {
        let update = |target: &str, auth: &str| {
            status_of(
                port,
                format!("GET {target} HTTP/1.0\r\n{auth}\r\n").as_bytes(),
            )
        };
        let icecast = "/admin/metadata?mount=/own&mode=updinfo&song=Own";
        assert!(
            update(icecast, &basic("source", "djpw")).starts_with("HTTP/1.0 200"),
            "{port}: the mount's own password refused"
        );
        assert!(
            update(icecast, &basic("source", "s3cr3tpw")).starts_with("HTTP/1.0 401"),
            "{port}: the server-wide password accepted for a mount with its own"
        );
        assert!(
            update("/admin.cgi?pass=djpw&mount=/own&mode=updinfo&song=Own", "")
                .starts_with("HTTP/1.0 200"),
            "{port}: admin.cgi refused the mount's own password"
        );
        assert!(
            update(
                "/admin.cgi?pass=s3cr3tpw&mount=/own&mode=updinfo&song=Own",
                ""
            )
            .starts_with("HTTP/1.0 401"),
            "{port}: admin.cgi took the server-wide password for a mount with its own"
        );
        // A mount without its own keeps the server-wide password, and the admin may do both.
        assert!(update(
            "/admin/metadata?mount=/stream&mode=updinfo&song=S",
            &basic("source", "s3cr3tpw")
        )
        .starts_with("HTTP/1.0 200"));
        assert!(update(icecast, ADMIN_AUTH).starts_with("HTTP/1.0 200"));
    }
}

/// One failed login; returns how long its `401` took.
fn fail_once(addr: SocketAddr, request: &str) -> Duration {
    let started = Instant::now();
    let status = status_of(addr, request.as_bytes());
    assert!(status.starts_with("HTTP/1.0 401"), "{status}");
    started.elapsed()
}

#[test]
fn failed_logins_are_counted_server_wide() {
    let server = Server::start_with_args(CONFIG, &["--shards", "2"]);
    let on_source = format!(
        "SOURCE /stream HTTP/1.0\r\n{}Content-Type: audio/mpeg\r\n\r\n",
        basic("source", "guess")
    );
    let on_listen = format!(
        "GET /admin/stats HTTP/1.0\r\n{}\r\n",
        basic("admin", "guess")
    );
    // Alternating ports (the ingest core, then whichever shard takes the connection): no one
    // core sees more than the free failures, the server does.
    let free: Vec<Duration> = [&on_source, &on_listen, &on_source]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            fail_once(
                if i % 2 == 0 {
                    server.source
                } else {
                    server.listen
                },
                r,
            )
        })
        .collect();
    let fourth = fail_once(server.listen, &on_listen);
    let fifth = fail_once(server.source, &on_source);
    // Generous margins: the delays are 250 ms and 500 ms; the free answers take milliseconds.
    assert!(
        free.iter().all(|d| *d < Duration::from_millis(200)),
        "{free:?}"
    );
    assert!(fourth >= Duration::from_millis(200), "4th: {fourth:?}");
    assert!(fifth >= Duration::from_millis(450), "5th: {fifth:?}");
}
