//! A reload must not quietly fall back to defaults: an emptied or truncated config file keeps
//! the running configuration (admin API on, the operator's source password), and the built-in
//! source password on a public address is announced loudly at start.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
server {
  admin_password = "adminpw"
  source_password = "srcpw"
}
playlist { directory = "/nonexistent/cycast-test-music" }
"#;

/// admin:adminpw
const ADMIN_AUTH: &str = "Authorization: Basic YWRtaW46YWRtaW5wdw==\r\n";
/// source:srcpw
const OWN_SOURCE_AUTH: &str = "Authorization: Basic c291cmNlOnNyY3B3\r\n";

/// Rewrites the config file, sends SIGHUP and waits for the log to say `outcome`.
fn reload(server: &Server, text: &str, outcome: &str) {
    let before = server.log().matches(outcome).count();
    std::fs::write(server.path("cycast.hcl"), text).unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.log().matches(outcome).count() == before {
        assert!(
            Instant::now() < deadline,
            "no {outcome:?} logged:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn admin_status(server: &Server) -> String {
    let answer = raw_exchange(
        server.listen,
        format!("GET /admin/stats HTTP/1.0\r\n{ADMIN_AUTH}\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn source_status(server: &Server, auth: &str) -> String {
    // A mount of its own each time, so a previous probe still being released cannot answer 403.
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let answer = raw_exchange(
        server.source,
        format!("SOURCE /probe{n} HTTP/1.0\r\n{auth}Content-Type: audio/mpeg\r\n\r\n").as_bytes(),
        Duration::from_millis(500),
    );
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn assert_still_running_config(server: &Server) {
    assert!(
        admin_status(server).starts_with("HTTP/1.0 200"),
        "the admin API must stay on"
    );
    assert!(
        source_status(server, SOURCE_AUTH).starts_with("HTTP/1.0 401"),
        "source:hackme must stay refused"
    );
    assert!(
        source_status(server, OWN_SOURCE_AUTH).starts_with("HTTP/1.0 200"),
        "the operator's source password must still work"
    );
}

#[test]
fn reloading_an_empty_file_keeps_the_running_configuration() {
    let server = Server::start(CONFIG);
    assert_still_running_config(&server);
    reload(&server, "", "config reload refused");
    let log = server.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{log}");
    assert!(errors[0].contains("no server block"), "{}", errors[0]);
    assert!(!log.contains("configuration reloaded"), "{log}");
    assert_still_running_config(&server);
}

#[test]
fn reloading_a_partial_file_is_refused_and_an_explicit_one_applied() {
    let server = Server::start(CONFIG);
    // The admin password left out: the admin API would go off.
    reload(
        &server,
        "server {\n  source_password = \"srcpw\"\n}\n",
        "config reload refused",
    );
    assert!(server.log().contains("admin API off"), "{}", server.log());
    assert_still_running_config(&server);
    // The source password left out: the built-in one would come back.
    reload(
        &server,
        "server {\n  admin_password = \"adminpw\"\n}\n",
        "config reload refused",
    );
    assert!(
        server.log().contains("built-in source password"),
        "{}",
        server.log()
    );
    assert_still_running_config(&server);
    // Said explicitly, both changes are applied.
    reload(
        &server,
        "server {\n  admin_password = \"\"\n  source_password = \"hackme\"\n}\n",
        "configuration reloaded",
    );
    assert!(
        admin_status(&server).starts_with("HTTP/1.0 401"),
        "admin API turned off on purpose"
    );
    assert!(source_status(&server, SOURCE_AUTH).starts_with("HTTP/1.0 200"));
}

fn status_json(addr: SocketAddr) -> serde_json::Value {
    serde_json::from_slice(&http_get(addr, "/status-json.xsl").1).unwrap()
}

#[test]
fn the_default_source_password_beyond_loopback_is_announced() {
    // Bound on every address but only ever spoken to over loopback.
    let server = Server::start_with_args("", &["--host", "0.0.0.0"]);
    let listen = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), server.listen.port());
    let log = server.log();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("built-in default"))
        .unwrap_or_else(|| panic!("no start-up warning:\n{log}"));
    assert!(!warning.contains("hackme"), "{warning}");
    let status = status_json(listen);
    assert!(
        status["icestats"]["warning"]
            .as_str()
            .is_some_and(|w| w.contains("source password")),
        "{status}"
    );
    let (_, page) = http_get(listen, "/");
    assert!(String::from_utf8_lossy(&page).contains("id=\"warning\""));

    // On loopback, or with a password of one's own, there is nothing to warn about.
    for server in [
        Server::start(""),
        Server::start_with_args(CONFIG, &["--host", "0.0.0.0"]),
    ] {
        let listen = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), server.listen.port());
        assert!(
            !server.log().contains("built-in default"),
            "{}",
            server.log()
        );
        assert!(status_json(listen)["icestats"].get("warning").is_none());
        let (_, page) = http_get(listen, "/");
        assert!(!String::from_utf8_lossy(&page).contains("id=\"warning\""));
    }
}
