#![no_main]
//! Title updates as a hostile or careless DJ could send them, on `/admin/metadata` and
//! Shoutcast's `/admin.cgi`: query decoding (percent escapes, `+`, Latin-1 and UTF-8 charsets,
//! `song`/`artist`/`title`/`mount`/`pass`) and the authorization in front of it never panic;
//! an accepted title is clean text; nothing from the query reaches a log line unescaped.

use std::sync::OnceLock;

use cycast::config::{Config, MountConfig};
use cycast::http::{form_decode, parse_head, percent_decode, query_pairs, Request};
use cycast::logging::escape;
use cycast::observability::access_log::AccessLog;
use cycast::api::admin::{title_update, MAX_TITLE_BYTES};
use libfuzzer_sys::fuzz_target;

/// The default server plus a mount with its own source password.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut config = Config::default();
        config.server.admin_password = "adminpw".into();
        config.mount.insert(
            "/own".into(),
            MountConfig {
                source_password: Some("djpw".into()),
                ..Default::default()
            },
        );
        config
    })
}

/// Quotes in a log line that delimit fields: those not escaped by a backslash.
fn structural_quotes(line: &str) -> usize {
    let (mut count, mut escaped) = (0, false);
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => count += 1,
            _ => {}
        }
    }
    count
}

fn check(request: &Request) {
    let config = config();
    let shoutcast = request.path == "/admin.cgi";
    match title_update(config, request) {
        Ok(update) => {
            assert!(update.title.len() <= MAX_TITLE_BYTES);
            assert!(!update.title.chars().any(|c| c.is_control() || c == '\u{FFFD}'));
            let named = request.query_param("mount");
            match &named {
                Some(mount) => assert_eq!(&update.mount, mount),
                None => assert!(shoutcast && update.mount == config.server.mount_point),
            }
            // Someone authenticated: the admin, or the mount's own source.
            let has_basic = request.header("authorization").is_some();
            let (_, password) = config.source_credentials(&update.mount);
            let pass = request.query_param("pass").unwrap_or_default();
            assert!(
                has_basic || (shoutcast && (pass == password || pass == "adminpw")),
                "{request:?} accepted without credentials"
            );
            assert!(
                !(update.mount == "/own" && !has_basic && pass == "hackme"),
                "the server-wide password retitled a mount with its own"
            );
        }
        Err((status, message)) => {
            assert!(matches!(status, 400 | 401), "{status} {message}");
        }
    }
    // One decoder: text is the bytes read as UTF-8, and a pair's decoded name finds it.
    for (pair, (key, _)) in request.query.split('&').zip(query_pairs(&request.query)) {
        assert_eq!(percent_decode(pair), String::from_utf8_lossy(&form_decode(pair)));
        let key = String::from_utf8_lossy(&key).into_owned();
        if !key.contains('\u{FFFD}') {
            assert!(request.query_param(&key).is_some());
        }
    }
    // Log lines built from the request stay one line with intact quoting.
    let line = format!(
        "{}{}",
        AccessLog::prefix("127.0.0.1".parse().unwrap(), request),
        AccessLog::suffix(request)
    );
    assert!(!line.chars().any(char::is_control), "{line:?}");
    assert_eq!(structural_quotes(&line), 6, "{line:?}");
    let escaped = escape(&request.query).to_string();
    assert!(!escaped.chars().any(char::is_control));
}

fuzz_target!(|data: &[u8]| {
    // First byte: which path and which credentials; the rest is the query string.
    let Some((&selector, query)) = data.split_first() else {
        return;
    };
    let path = if selector & 1 == 0 {
        "/admin/metadata"
    } else {
        "/admin.cgi"
    };
    let auth = match (selector >> 1) & 3 {
        0 => "",
        1 => "Authorization: Basic YWRtaW46YWRtaW5wdw==\r\n", // admin:adminpw
        2 => "Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n", // source:hackme
        _ => "Authorization: Basic c291cmNlOmRqcHc=\r\n",     // source:djpw
    };
    // As the server sees it: through the request parser.
    let mut head = format!("GET {path}?").into_bytes();
    head.extend_from_slice(query);
    head.extend_from_slice(format!(" HTTP/1.0\r\n{auth}\r\n").as_bytes());
    if let Ok(Some(request)) = parse_head(&head) {
        check(&request);
    }
    // And any query text at all, for what the parser would refuse today.
    if let Some(mut request) = parse_head(format!("GET {path} HTTP/1.0\r\n{auth}\r\n").as_bytes())
        .ok()
        .flatten()
    {
        request.query = String::from_utf8_lossy(query).into_owned();
        check(&request);
    }
});
