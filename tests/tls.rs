//! HTTPS on the shards: a CA and certificates made at test time, curl over TLS for pages and a
//! byte-exact stream, each port refusing the other's protocol, bad certificates refused at
//! start with one line naming the key; ffmpeg as a source over TLS, and a relay pulling an
//! `https://` upstream.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{have, raw_exchange, split_head, Server, Source};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA and a `localhost` certificate it signed, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Writes a CA and a server certificate for `localhost` valid over `[from, to]` (years).
fn make_pki(dir: &Path, from: i32, to: i32) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cycast test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["localhost".into()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.not_before = date_time_ymd(from, 1, 1);
    params.not_after = date_time_ymd(to, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

fn tls_block(cert: &Path, key: &Path) -> String {
    format!(
        "tls {{\n  port = 0\n  certificate = \"{}\"\n  key = \"{}\"\n}}\n",
        cert.display(),
        key.display()
    )
}

/// The HTTPS address from the start-up log.
fn https_addr(server: &Server) -> SocketAddr {
    logged_addr(server, "https=")
}

/// The address logged after `key` at start-up.
fn logged_addr(server: &Server, key: &str) -> SocketAddr {
    server.logged_addr(key)
}

/// curl over HTTPS to `localhost` at `addr`, trusting only `ca`; returns (exit code, body).
fn curl(addr: SocketAddr, path: &str, ca: &Path, extra: &[&str]) -> (i32, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", addr.port()))
        .args(extra)
        .arg(format!("https://localhost:{}{path}", addr.port()))
        .stderr(Stdio::null())
        .output()
        .expect("run curl");
    (out.status.code().unwrap_or(-1), out.stdout)
}

fn server_with_tls() -> (Server, Pki, tempfile::TempDir) {
    server_with_engine("io_uring")
}

fn server_with_engine(engine: &str) -> (Server, Pki, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), 2020, 2090);
    let server = Server::start(&format!(
        "server {{\n  shards = 2\n}}\nfanout {{\n  engine = \"{engine}\"\n}}\n{}",
        tls_block(&pki.cert, &pki.key)
    ));
    (server, pki, dir)
}

/// Starts curl reading `path` over HTTPS into `out` for `seconds`.
fn curl_stream(addr: SocketAddr, path: &str, ca: &Path, out: &Path, seconds: u32) -> Child {
    Command::new("curl")
        .args([
            "-sS",
            "--http1.1",
            "--max-time",
            &seconds.to_string(),
            "--cacert",
        ])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", addr.port()))
        .arg("-o")
        .arg(out)
        .arg(format!("https://localhost:{}{path}", addr.port()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn pages_and_status_are_served_over_https_as_over_http() {
    if !have("curl") {
        eprintln!("skipped: no curl");
        return;
    }
    let (server, pki, _dir) = server_with_tls();
    let https = https_addr(&server);
    let (plain_head, _) = server.get("/status-json.xsl");
    assert!(plain_head.starts_with("HTTP/1.0 200"), "{plain_head}");
    let (code, body) = curl(https, "/status-json.xsl", &pki.ca, &["--max-time", "10"]);
    assert_eq!(code, 0, "curl over HTTPS failed");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("status JSON over HTTPS");
    assert!(json.get("icestats").is_some(), "{json}");
    let (code, body) = curl(https, "/metrics", &pki.ca, &["--max-time", "10"]);
    assert_eq!(code, 0);
    assert!(String::from_utf8_lossy(&body).contains("cycast_tls_certificate_expiry_seconds"));
    // Many in a row over both shards' sockets.
    for _ in 0..6 {
        assert_eq!(curl(https, "/status-json.xsl", &pki.ca, &[]).0, 0);
    }
}

#[test]
fn a_stream_over_https_is_byte_exact_with_send() {
    stream_is_byte_exact("send");
}

#[test]
fn a_stream_over_https_is_byte_exact_with_io_uring() {
    stream_is_byte_exact("io_uring");
}

fn stream_is_byte_exact(engine: &str) {
    if !have("curl") {
        eprintln!("skipped: no curl");
        return;
    }
    let (server, pki, _dir) = server_with_engine(engine);
    let https = https_addr(&server);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(0, 40, 50.0);
    let out = server.path("capture.mp3");
    let mut curl = curl_stream(https, "/stream", &pki.ca, &out, 6);
    // Real-time pace: the listener gets chunks as they are published.
    source.send_frames(40, 120, 1.0);
    let status = curl.wait().unwrap();
    // 28: the time limit ended a stream that never ends by itself.
    assert_eq!(status.code(), Some(28), "curl ended otherwise");
    let capture = std::fs::read(&out).unwrap();
    assert!(capture.len() > 20_000, "only {} bytes", capture.len());
    common::assert_exact_suffix(&capture, 0, 160);
}

#[test]
fn each_port_refuses_the_other_protocol() {
    if !have("curl") {
        eprintln!("skipped: no curl");
        return;
    }
    let (server, pki, _dir) = server_with_tls();
    let https = https_addr(&server);
    // Plain HTTP on the HTTPS port: no HTTP answer, the connection just closes.
    let answer = raw_exchange(
        https,
        b"GET /status-json.xsl HTTP/1.0\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    // TLS on the plain port: the handshake fails.
    let plain = server.listen;
    let (code, _) = curl(plain, "/status-json.xsl", &pki.ca, &["--max-time", "10"]);
    assert_ne!(code, 0);
    // The HTTPS port still works afterwards.
    assert_eq!(curl(https, "/status-json.xsl", &pki.ca, &[]).0, 0);
}

/// Runs cycast with `config` and returns its exit success and standard error.
fn start_fails(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cycast.hcl");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cycast"))
        .arg("--config")
        .arg(&path)
        .args([
            "--host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "--source-port",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let _ = child.wait();
    (status.is_some_and(|s| s.success()), err)
}

#[test]
fn bad_certificates_are_refused_at_start_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_pki(&dir.path().join("good").tap_mkdir(), 2020, 2090);
    let other = make_pki(&dir.path().join("other").tap_mkdir(), 2020, 2090);
    let expired = make_pki(&dir.path().join("expired").tap_mkdir(), 2001, 2002);
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.path().join("missing.pem");
    let cases: [(&Path, &Path, &str, &str); 5] = [
        (&missing, &good.key, "tls.certificate", "cannot read"),
        (&good.cert, &empty, "tls.key", "no private key"),
        (&empty, &good.key, "tls.certificate", "no certificate"),
        (&expired.cert, &expired.key, "tls.certificate", "expired"),
        (&good.cert, &other.key, "tls.key", "does not match"),
    ];
    for (cert, key, named, why) in cases {
        let (ok, err) = start_fails(&tls_block(cert, key));
        assert!(!ok, "started with {named} {why}");
        let line = err
            .lines()
            .find(|l| l.contains(named))
            .unwrap_or_else(|| panic!("no line naming {named}: {err}"));
        assert!(line.contains(why), "{line}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("cycast:")).count(),
            1,
            "{err}"
        );
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn sighup_swaps_the_certificate_and_keeps_tls_listeners() {
    if !have("curl") {
        eprintln!("skipped: no curl");
        return;
    }
    let (server, old, dir) = server_with_tls();
    let https = https_addr(&server);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(0, 40, 50.0);
    let out = server.path("before-reload.mp3");
    let mut listener = curl_stream(https, "/stream", &old.ca, &out, 8);
    let feeder = std::thread::spawn(move || {
        source.send_frames(40, 250, 1.0);
        source
    });
    // The listener is on the old certificate when the files change under it.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(&out).map_or(0, |m| m.len()) == 0 {
        assert!(std::time::Instant::now() < until, "no stream bytes");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A bad pair first: the key of another certificate. The old pair stays in force.
    let other = make_pki(&dir.path().join("other").tap_mkdir(), 2020, 2090);
    std::fs::copy(&other.key, &old.key).unwrap();
    server.signal("HUP");
    server.wait_log("TLS reload failed");
    assert!(server.log().contains("tls.key"), "{}", server.log());
    assert_eq!(curl(https, "/status-json.xsl", &old.ca, &[]).0, 0);
    // Then a good new pair: new handshakes get it, the old CA no longer verifies them.
    let new = make_pki(&dir.path().join("new").tap_mkdir(), 2020, 2090);
    std::fs::copy(&new.cert, &old.cert).unwrap();
    std::fs::copy(&new.key, &old.key).unwrap();
    server.signal("HUP");
    server.wait_log("TLS certificates reloaded");
    assert_eq!(curl(https, "/status-json.xsl", &new.ca, &[]).0, 0);
    assert_ne!(curl(https, "/status-json.xsl", &old.ca, &[]).0, 0);
    let at_reload = std::fs::metadata(&out).unwrap().len();
    // The listener from before ran into its own time limit (28), not a closed connection,
    // and kept receiving after the swap.
    assert_eq!(listener.wait().unwrap().code(), Some(28));
    assert!(std::fs::metadata(&out).unwrap().len() > at_reload);
    drop(feeder);
}

#[test]
fn ffmpeg_decodes_an_https_stream_with_icy_metadata() {
    if !have("ffmpeg") || !have("curl") {
        eprintln!("skipped: no ffmpeg");
        return;
    }
    let (server, pki, _dir) = server_with_tls();
    let https = https_addr(&server);
    let track = format!("{}/music/01-morning-tone.mp3", env!("CARGO_MANIFEST_DIR"));
    let mut source = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            &track,
        ])
        .args(["-c", "copy", "-content_type", "audio/mpeg", "-f", "mp3"])
        .arg(format!("icecast://source:hackme@{}/stream", server.source))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    server.wait_stats(Duration::from_secs(10), "ffmpeg source on air", |s| {
        s["mounts"][0]["live"] == true
    });
    // ffmpeg verifies the certificate against the test CA and asks for ICY metadata (its
    // default), so the interleave is decrypted and taken apart too.
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-tls_verify", "1", "-ca_file"])
        .arg(&pki.ca)
        .args(["-i", &format!("https://localhost:{}/stream", https.port())])
        .args(["-t", "2", "-f", "s16le", "-ac", "2", "-ar", "44100", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = source.kill();
    let _ = source.wait();
    assert!(
        out.status.success(),
        "ffmpeg over HTTPS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two seconds of 16-bit stereo at 44.1 kHz.
    assert!(
        out.stdout.len() >= 2 * 44_100 * 4 * 9 / 10,
        "{}",
        out.stdout.len()
    );
}

/// A TLS connection to `localhost` at `addr` trusting only `ca`, with a 10 s read timeout.
fn tls_client(
    addr: SocketAddr,
    ca: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(ca).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn shutdown_ends_tls_streams_with_close_notify() {
    use std::io::Read;
    let (mut server, pki, _dir) = server_with_tls();
    let https = https_addr(&server);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(0, 40, 50.0);
    let mut tls = tls_client(https, &pki.ca);
    std::io::Write::write_all(&mut tls, b"GET /stream HTTP/1.0\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    while got.len() < 4096 {
        let n = tls.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.0 200"));
    server.signal("TERM");
    // rustls reports a TCP close without close_notify as UnexpectedEof; a clean end is Ok(0).
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("stream ended without close_notify: {e}"),
        }
    }
    server.wait_exit(Duration::from_secs(10));
}

#[test]
fn redirect_pages_sends_pages_to_https_and_leaves_streams() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), 2020, 2090);
    let block =
        tls_block(&pki.cert, &pki.key).replace("port = 0", "port = 0\n  redirect_pages = true");
    let server = Server::start(&block);
    let https = https_addr(&server);
    let answer = raw_exchange(
        server.listen,
        b"GET /status-json.xsl?x=1 HTTP/1.1\r\nHost: localhost:8001\r\n\r\n",
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.0 301"), "{text}");
    let want = format!(
        "Location: https://localhost:{}/status-json.xsl?x=1\r\n",
        https.port()
    );
    assert!(text.contains(&want), "{text}");
    // The stream itself is still played over plain HTTP.
    let mut stream = std::net::TcpStream::connect(server.listen).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /stream HTTP/1.0\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = common::read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
}

#[test]
fn a_silent_or_trickling_tls_client_is_dropped_at_the_header_timeout() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), 2020, 2090);
    let server = Server::start(&format!(
        "limits {{\n  header_timeout = 1\n}}\n{}",
        tls_block(&pki.cert, &pki.key).replace("port = 0\n", "port = 0\n  source_port = 0\n")
    ));
    // The listeners' HTTPS port and the TLS source port alike.
    let ports = [https_addr(&server), logged_addr(&server, "tls_sources=")];
    // One connection to each sends nothing, one trickles the start of a ClientHello.
    let mut silent: Vec<_> = ports
        .iter()
        .map(|&addr| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let mut trickle: Vec<_> = ports
        .iter()
        .map(|&addr| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    for byte in [0x16u8, 0x03, 0x01, 0x02] {
        for stream in &mut trickle {
            let _ = stream.write_all(&[byte]);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for stream in silent.iter_mut().chain(trickle.iter_mut()) {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        // Closed by the server (end of stream or reset), not by our read timeout.
        match stream.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("{n} bytes instead of a close"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
}

/// Replays the `tls_first_bytes` fuzz seeds the way the target does, split at every point:
/// plain HTTP and cut-off hellos end in an error or a wait, never a panic or a loop.
#[test]
fn tls_first_bytes_seeds_end_in_an_error_or_a_wait() {
    use cycast::tls::session::{Handshake, Step};
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), 2020, 2090);
    let tls = cycast::config::TlsConfig {
        certificate: pki.cert.display().to_string(),
        key: pki.key.display().to_string(),
        ..Default::default()
    };
    let config = cycast::tls::Certificates::load(&tls)
        .unwrap()
        .server_config();
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/tls_first_bytes");
    let mut outcomes = Vec::new();
    for entry in std::fs::read_dir(seeds).unwrap() {
        let input = std::fs::read(entry.unwrap().path()).unwrap();
        let input = &input[1..];
        for cut in 0..=input.len() {
            let mut reads = [&input[..cut], &input[cut..]].into_iter();
            let mut handshake = Handshake::new(config.clone(), 8192).unwrap();
            let outcome = loop {
                match handshake.step() {
                    Ok(Step::Again) => {}
                    Ok(Step::Transmit) => handshake.sent(),
                    Ok(Step::NeedInput) => match reads.find(|r| !r.is_empty()) {
                        Some(bytes) => {
                            handshake.input_room().unwrap()[..bytes.len()].copy_from_slice(bytes);
                            handshake.received(bytes.len());
                        }
                        None => break "wait",
                    },
                    Ok(Step::Done(_)) => break "request",
                    Ok(Step::NotHttp(_)) => break "not http",
                    Err(_) => break "error",
                }
            };
            if cut == input.len() {
                outcomes.push(outcome);
            }
        }
    }
    outcomes.sort_unstable();
    // Plain HTTP is refused; curl's whole ClientHello is answered and then waits for the
    // client's next flight.
    assert_eq!(outcomes, ["error", "wait"]);
}

#[test]
fn hls_playlists_and_segments_are_served_over_https_as_over_http() {
    if !have("curl") {
        eprintln!("skipped: no curl");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), 2020, 2090);
    let server = Server::start(&format!(
        "broadcaster {{ chunk_ms = 200 }}\nplaylist {{ directory = \"/nonexistent/cycast-test-music\" }}\nhls {{\n  segment_seconds = 1\n  window = 4\n}}\n{}",
        tls_block(&pki.cert, &pki.key)
    ));
    let https = https_addr(&server);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let segment = loop {
        let (code, body) = curl(https, "/stream/index.m3u8", &pki.ca, &["--max-time", "10"]);
        assert_eq!(code, 0, "curl over HTTPS failed");
        let text = String::from_utf8_lossy(&body).into_owned();
        let listed: Vec<&str> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if listed.len() >= 2 {
            assert!(text.starts_with("#EXTM3U\n"), "{text}");
            break listed[0].to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no playlist: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let path = format!("/stream/{segment}");
    let (head, plain) = server.get(&path);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (code, sealed) = curl(https, &path, &pki.ca, &["--max-time", "10"]);
    assert_eq!(code, 0);
    assert!(!plain.is_empty());
    assert_eq!(sealed, plain, "segment {segment} differs over HTTPS");
    let (code, part) = curl(https, &path, &pki.ca, &["-r", "10-99"]);
    assert_eq!(code, 0);
    assert_eq!(part, plain[10..100]);
}

/// Requests `path` over HTTPS; returns the connection and the response head.
fn tls_listener(
    addr: SocketAddr,
    ca: &Path,
    path: &str,
) -> (
    rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    String,
) {
    use std::io::{Read, Write};
    let mut tls = tls_client(addr, ca);
    write!(tls, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tls.read(&mut byte).expect("response head");
        assert!(n > 0, "closed before the head");
        head.push(byte[0]);
    }
    (tls, String::from_utf8_lossy(&head).into_owned())
}

/// Server, per-mount and per-shard listener counts (admin stats and `/api/stats`).
fn listener_counts(server: &Server) -> (u64, Vec<u64>, u64) {
    let answer = raw_exchange(
        server.listen,
        b"GET /admin/stats.json HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n",
        Duration::from_secs(5),
    );
    let (_, body) = split_head(&answer);
    let stats: serde_json::Value = serde_json::from_slice(&body).expect("admin stats");
    let mounts = stats["icestats"]["source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["listeners"].as_u64().unwrap())
        .collect();
    let shards = server.stats()["total_listeners"].as_u64().unwrap();
    (
        stats["icestats"]["listeners"].as_u64().unwrap(),
        mounts,
        shards,
    )
}

#[test]
fn https_listeners_give_their_places_back_however_they_leave() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), 2020, 2090);
    let server = Server::start(&format!(
        "server {{\n  shards = 2\n  admin_user = \"admin\"\n  admin_password = \"adminpw\"\n}}\n\
         limits {{\n  max_listeners = 2\n}}\n{}",
        tls_block(&pki.cert, &pki.key)
    ));
    let https = https_addr(&server);
    let mut source = Source::mp3(server.source, "/stream");
    source.send_frames(0, 20, 50.0);
    let admitted = |n: usize| -> Vec<_> {
        let listeners: Vec<_> = (0..n)
            .map(|_| tls_listener(https, &pki.ca, "/stream"))
            .collect();
        for (_, head) in &listeners {
            assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        }
        let (_, head) = tls_listener(https, &pki.ca, "/stream");
        assert!(
            head.starts_with("HTTP/1.0 503"),
            "over max_listeners: {head}"
        );
        listeners
    };
    for round in 0..2 {
        let listeners = admitted(2);
        // One is kicked, the other hangs up.
        let deadline = Instant::now() + Duration::from_secs(10);
        let id = loop {
            let answer = raw_exchange(
                server.listen,
                b"GET /admin/listclients.json?mount=/stream HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n",
                Duration::from_secs(5),
            );
            let (_, body) = split_head(&answer);
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let ids = json["icestats"]["source"][0]["listener"]
                .as_array()
                .cloned();
            if let Some(ids) = ids.filter(|ids| ids.len() == 2) {
                break ids[0]["ID"].as_u64().unwrap();
            }
            assert!(Instant::now() < deadline, "listeners not listed: {json}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let answer = raw_exchange(
            server.listen,
            format!("GET /admin/killclient?mount=/stream&id={id} HTTP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW5wdw==\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        assert!(String::from_utf8_lossy(&answer).contains("removed"));
        source.send_frames(20 + round * 40, 20, 50.0);
        drop(listeners);
        // Requests reset right after they are sent.
        for _ in 0..4 {
            let mut tls = tls_client(https, &pki.ca);
            let _ = std::io::Write::write_all(&mut tls, b"GET /stream HTTP/1.0\r\n\r\n");
            let _ = std::io::Write::flush(&mut tls);
            socket2::SockRef::from(&tls.sock)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        source.send_frames(40 + round * 40, 20, 50.0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (total, mounts, shards) = listener_counts(&server);
            if total == 0 && shards == 0 && mounts.iter().all(|n| *n == 0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: server {total}, mounts {mounts:?}, shards {shards}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    drop(admitted(2));
}

/// A server with HTTPS and a TLS source port (both on ephemeral ports); the TLS source address.
fn server_with_tls_sources() -> (Server, Pki, tempfile::TempDir, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), 2020, 2090);
    let tls = tls_block(&pki.cert, &pki.key).replace("port = 0\n", "port = 0\n  source_port = 0\n");
    // Without a source, silence: what listeners decode is the source's.
    let server = Server::start(&format!(
        "server {{\n  shards = 2\n}}\nplaylist {{ directory = \"/nonexistent/x\" }}\n{tls}"
    ));
    let tls_sources = logged_addr(&server, "tls_sources=");
    (server, pki, dir, tls_sources)
}

#[test]
fn ffmpeg_streams_as_a_tls_source_and_a_plain_listener_decodes_it() {
    if !have("ffmpeg") || !have("curl") {
        eprintln!("skipped: no ffmpeg");
        return;
    }
    let (server, pki, _dir, tls_sources) = server_with_tls_sources();
    assert_ne!(tls_sources.port(), server.source.port());
    let track = format!("{}/music/01-morning-tone.mp3", env!("CARGO_MANIFEST_DIR"));
    // ffmpeg's icecast protocol over TLS (PUT with `Expect: 100-continue`), checking the
    // server's certificate against the test CA.
    let mut source = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            &track,
        ])
        .args(["-c", "copy", "-content_type", "audio/mpeg", "-f", "mp3"])
        .args(["-tls", "1", "-tls_verify", "1", "-ca_file"])
        .arg(&pki.ca)
        .arg(format!(
            "icecast://source:hackme@localhost:{}/stream",
            tls_sources.port()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    server.wait_stats(Duration::from_secs(10), "ffmpeg TLS source on air", |s| {
        s["mounts"][0]["live"] == true
    });
    // A plain listener decodes what came in over TLS.
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(format!("http://{}/stream", server.listen))
        .args(["-t", "2", "-f", "s16le", "-ac", "2", "-ar", "44100", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Title updates go to the port the source streams to, here over TLS too.
    let (code, body) = curl(
        tls_sources,
        "/admin/metadata?mount=/stream&mode=updinfo&song=Over%20TLS",
        &pki.ca,
        &["--max-time", "10", "-u", "source:hackme"],
    );
    // Read while the source is on air (without it the fallback takes over).
    let status: serde_json::Value =
        serde_json::from_slice(&server.get("/status-json.xsl").1).unwrap();
    let _ = source.kill();
    let _ = source.wait();
    assert!(
        out.status.success(),
        "ffmpeg listener failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.len() >= 2 * 44_100 * 4 * 9 / 10,
        "{}",
        out.stdout.len()
    );
    // The source's tone, not the fallback's silence.
    let loudest = out
        .stdout
        .chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs())
        .max()
        .unwrap_or(0);
    assert!(loudest > 1000, "silence decoded (peak {loudest})");
    assert_eq!(
        code,
        0,
        "metadata over TLS: {}",
        String::from_utf8_lossy(&body)
    );
    let source_status = &status["icestats"]["source"];
    assert_eq!(source_status["live"], true, "{status}");
    assert_eq!(source_status["title"], "Over TLS", "{status}");
}

#[test]
fn the_tls_source_port_refuses_plaintext_and_bad_credentials() {
    if !have("curl") {
        eprintln!("skipped: no curl");
        return;
    }
    let (server, pki, _dir, tls_sources) = server_with_tls_sources();
    // A plaintext source on the TLS source port: no HTTP answer, the mount stays off the air.
    let answer = raw_exchange(
        tls_sources,
        format!(
            "SOURCE /plain HTTP/1.0\r\n{}Content-Type: audio/mpeg\r\n\r\n",
            common::SOURCE_AUTH
        )
        .as_bytes(),
        Duration::from_secs(10),
    );
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    let status: serde_json::Value =
        serde_json::from_slice(&server.get("/status-json.xsl").1).unwrap();
    assert!(!status.to_string().contains("/plain"), "{status}");
    // Over TLS, a wrong password gets the same 401 as on the plain port.
    let (code, head) = curl(
        tls_sources,
        "/admin/metadata?mount=/stream&mode=updinfo&song=x",
        &pki.ca,
        &[
            "--max-time",
            "10",
            "-u",
            "source:wrong",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(String::from_utf8_lossy(&head), "401");
    // The libshout probe is answered over TLS as in the clear.
    let (code, head) = curl(
        tls_sources,
        "/",
        &pki.ca,
        &["--max-time", "10", "-X", "OPTIONS", "-i"],
    );
    assert_eq!(code, 0);
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(head.contains("SOURCE"), "{head}");
}

/// Reads from `conn` until `end` arrives (or the connection ends); what was read.
fn read_through(conn: &mut impl std::io::Read, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(end) {
        match conn.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => break,
        }
    }
    got
}

#[test]
fn a_shoutcast_source_logs_in_with_its_password_line_over_tls() {
    use std::io::Write;
    let (server, pki, _dir, tls_sources) = server_with_tls_sources();
    // A wrong password line over TLS: refused as in the clear.
    let mut wrong = tls_client(tls_sources, &pki.ca);
    wrong.write_all(b"not-the-password\r\n").unwrap();
    let answer = read_through(&mut wrong, b"\r\n");
    assert_eq!(answer, b"invalid password\r\n");
    // The right one: OK2, the icy-* lines, then audio for the default mount.
    let mut source = tls_client(tls_sources, &pki.ca);
    source.write_all(b"hackme\r\n").unwrap();
    let ok = read_through(&mut source, b"\r\n\r\n");
    assert!(
        ok.starts_with(b"OK2\r\n"),
        "{}",
        String::from_utf8_lossy(&ok)
    );
    source
        .write_all(
            b"icy-name: Shoutcast over TLS\r\nicy-br: 128\r\ncontent-type: audio/mpeg\r\n\r\n",
        )
        .unwrap();
    source.write_all(&common::numbered_frames(1, 60)).unwrap();
    server.wait_stats(
        Duration::from_secs(10),
        "the Shoutcast source on air",
        |s| s["mounts"][0]["live"] == true,
    );
    // A plain listener gets the frames that came in over TLS, in order.
    let mut listener = common::Listener::connect(server.listen, "/stream");
    // The ingest holds a frame back until the next one's header arrives: ten more follow.
    source.write_all(&common::numbered_frames(61, 70)).unwrap();
    listener.read_for(Duration::from_secs(2));
    let numbers: Vec<u32> = common::walk_frames(&listener.body)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|at| common::frame_number(&listener.body[at..]))
        .collect();
    let from_61 = numbers.iter().position(|&n| n == 61);
    assert!(
        from_61.is_some_and(|i| numbers[i..].starts_with(&(61..=120).collect::<Vec<_>>())),
        "frames heard: {numbers:?}"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&server.get("/status-json.xsl").1).unwrap();
    assert_eq!(
        status["icestats"]["source"]["server_name"], "Shoutcast over TLS",
        "{status}"
    );
}

/// An edge relaying `/stream` of `origin_https` as `/relayed`, with `extra` relay settings.
fn edge_relaying(origin_https: SocketAddr, extra: &str) -> Server {
    Server::start(&format!(
        "broadcaster {{ chunk_ms = 200 }}\nplaylist {{ directory = \"/nonexistent/x\" }}\nrelay \"/relayed\" {{\n  url = \"https://localhost:{}/stream\"\n  reconnect_min = 0.2\n  reconnect_max = 1.0\n{extra}}}\n",
        origin_https.port()
    ))
}

fn relayed_live(stats: &serde_json::Value) -> bool {
    stats["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["mount"] == "/relayed" && m["live"] == true)
}

#[test]
fn a_relay_pulls_an_https_upstream_checked_against_its_ca_file() {
    let (origin, pki, _dir) = server_with_tls();
    let https = https_addr(&origin);
    let mut source = Source::mp3(origin.source, "/stream");
    source.send_frames(1, 20, 20.0);
    let edge = edge_relaying(https, &format!("  ca_file = \"{}\"\n", pki.ca.display()));
    edge.wait_stats(Duration::from_secs(10), "relay connected", relayed_live);
    let mut listener =
        common::Listener::connect_with(edge.listen, "/relayed", "Icy-MetaData: 0\r\n");
    assert!(
        listener.head.starts_with("HTTP/1.0 200"),
        "{}",
        listener.head
    );
    source.send_frames(21, 60, 20.0);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while common::find_frame(&listener.body, 70).is_none() {
        assert!(
            std::time::Instant::now() < until,
            "origin audio did not reach the edge listener ({} bytes)",
            listener.body.len()
        );
        listener.read_for(Duration::from_millis(100));
    }

    // The system roots do not know the test CA: the upstream's certificate is refused.
    let untrusting = edge_relaying(https, "");
    untrusting.wait_log("relay: TLS: invalid peer certificate");
    assert!(!relayed_live(&untrusting.stats()));
    // Unless checking is turned off, which is logged as a warning.
    let lab = edge_relaying(https, "  tls_verify = false\n");
    lab.wait_stats(
        Duration::from_secs(10),
        "unverified relay connected",
        relayed_live,
    );
    assert!(lab.log().contains("tls_verify = false"), "{}", lab.log());
}

/// Runs cycast-load with `args`; returns its JSON report.
fn cycast_load(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_cycast-load"))
        .args(args)
        .args(["--json", "--quiet"])
        .stderr(Stdio::piped())
        .output()
        .expect("run cycast-load");
    assert!(
        out.status.success(),
        "cycast-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

#[test]
fn cycast_load_listens_over_https_and_reports_handshakes_apart() {
    let (server, pki, _dir) = server_with_tls();
    let https = https_addr(&server);
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/music/01-morning-tone.mp3");
    let mut source = Command::new(env!("CARGO_BIN_EXE_cycast-load"))
        .args(["source", "--url"])
        .arg(format!("http://source:hackme@{}/stream", server.source))
        .args(["--file", file, "--loop", "--duration", "30"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    server.wait_log("source connected");
    let url = format!("https://localhost:{}/stream", https.port());
    let ca = pki.ca.to_str().unwrap();
    let r = cycast_load(&[
        "--url",
        &url,
        "--ca-file",
        ca,
        "--listeners",
        "40",
        "--ramp",
        "400",
        "--duration",
        "4",
        "--prebuffer",
        "1",
        "--verify-every",
        "1",
    ]);
    // Without the test CA (system roots only) every handshake is refused.
    let refused = cycast_load(&["--url", &url, "--listeners", "3", "--duration", "1"]);
    let _ = source.kill();
    let _ = source.wait();
    let (c, q) = (&r["connects"], &r["quality"]);
    assert_eq!(c["answered_200"], 40, "{r}");
    assert_eq!(c["closed_early"], 0, "{r}");
    assert_eq!(c["no_audio"], 0, "{r}");
    assert_eq!(q["verified_listeners"], 40, "{r}");
    assert_eq!(q["resyncs"], 0, "{r}");
    assert_eq!(r["handshake"]["count"], 40, "{r}");
    // The handshake is a part of the time to the first byte.
    let handshake = r["handshake"]["max_ms"].as_f64().unwrap();
    assert!(handshake > 0.0, "{r}");
    assert!(r["ttfb"]["p50_ms"].as_f64().unwrap() >= r["handshake"]["p50_ms"].as_f64().unwrap());
    assert_eq!(refused["connects"]["refused_connect"], 3, "{refused}");
    assert!(
        refused["connect_errors"].to_string().contains("TLS"),
        "{refused}"
    );
}
