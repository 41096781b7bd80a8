//! The station page at `/` and the admin console at `/admin/`, with their stylesheet and
//! scripts under `/web/`. Every asset is compiled into the binary, so a station needs no files
//! and its pages load nothing from other hosts.
//!
//! The pages only read the public status APIs and, for the console, the admin API, from the
//! browser: the server renders just enough HTML for the page to make sense without scripts.

use std::sync::atomic::Ordering;

use super::admin::is_admin;
use crate::http::{response, unauthorized, Request};
use crate::mount::Mount;
use crate::state::Shared;

const STATION_HTML: &str = include_str!("web/station.html");
const ADMIN_HTML: &str = include_str!("web/admin.html");
const STYLE_CSS: &str = include_str!("web/style.css");
const STATION_JS: &str = include_str!("web/station.js");
const ADMIN_JS: &str = include_str!("web/admin.js");
const ICON_SVG: &str = include_str!("web/icon.svg");

/// Only the server's own origin may supply anything, which also keeps injected markup inert.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The answer for a web page or asset path, or `None` for any other path.
pub fn page(shared: &Shared, request: &Request) -> Option<Vec<u8>> {
    if request.method != "GET" && request.method != "HEAD" {
        return None;
    }
    let mut answer = match request.path.as_str() {
        "/" | "/index.html" => html(&station_page(shared)),
        "/admin/" | "/admin" => admin_page(shared, request),
        "/web/style.css" => asset("text/css; charset=utf-8", STYLE_CSS),
        "/web/station.js" => asset("text/javascript; charset=utf-8", STATION_JS),
        "/web/admin.js" => asset("text/javascript; charset=utf-8", ADMIN_JS),
        "/web/icon.svg" | "/favicon.ico" => asset("image/svg+xml", ICON_SVG),
        _ => return None,
    };
    if request.method == "HEAD" {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            answer.truncate(end + 4);
        }
    }
    Some(answer)
}

fn html(body: &str) -> Vec<u8> {
    response(
        200,
        "OK",
        &[
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-cache"),
            ("Content-Security-Policy", CSP),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ],
        body,
    )
}

fn asset(content_type: &str, body: &str) -> Vec<u8> {
    response(
        200,
        "OK",
        &[
            ("Content-Type", content_type),
            // Revalidated on every load, so an upgraded binary never runs with stale scripts.
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ],
        body,
    )
}

/// The console, once the browser presents the admin credentials. A 401 with the realm makes
/// the browser ask for them and then send them with the console's own API calls.
fn admin_page(shared: &Shared, request: &Request) -> Vec<u8> {
    let config = shared.config();
    let server = &config.server;
    if server.admin_password.is_empty() {
        return response(
            403,
            "Forbidden",
            &[],
            "The admin console is off: set server.admin_password\n",
        );
    }
    if !is_admin(&config, request) {
        return unauthorized("You need to authenticate\n");
    }
    let body = ADMIN_HTML.replace("{{station_name}}", &escape(&config.metadata.station_name));
    let mut answer = html(&body);
    // The console's buttons act on the station: never let another site frame it.
    if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
        answer.splice(
            end + 2..end + 2,
            b"X-Frame-Options: DENY\r\n".iter().copied(),
        );
    }
    answer
}

/// The station page with what is on air now filled in; the script keeps it current.
fn station_page(shared: &Shared) -> String {
    let config = shared.config();
    let meta = &config.metadata;
    let main = shared.mounts.find(&config.server.mount_point);
    let info = main.as_ref().map(|m| m.info()).unwrap_or_default();
    let (artist, title) = match info.title.split_once(" - ") {
        Some((a, t)) => (a, t),
        None => ("", info.title.as_str()),
    };
    let mut players = String::new();
    for mount in shared.mounts.public(&shared.config()).iter() {
        let info = mount.info();
        players.push_str(&player(
            &mount.name,
            crate::shard::hls::playlist_path(&config, mount).as_deref(),
            &info.title,
            mount_listeners(shared, mount),
            info.live,
            info.bitrate,
        ));
    }
    if players.is_empty() {
        players.push_str("<p class=\"muted\" id=\"no-mounts\">Nothing is on air yet.</p>");
    }
    let listeners: u64 = shared
        .mounts
        .all()
        .iter()
        .map(|m| mount_listeners(shared, m))
        .sum();
    let warning = if config.default_source_password_exposed() {
        format!(
            "<p class=\"notice error\" role=\"alert\" id=\"warning\">Warning: {}</p>",
            escape(crate::state::DEFAULT_PASSWORD_WARNING)
        )
    } else {
        String::new()
    };
    STATION_HTML
        .replace("{{station_name}}", &escape(&meta.station_name))
        .replace(
            "{{station_description}}",
            &escape(&meta.station_description),
        )
        .replace("{{station_genre}}", &escape(&meta.station_genre))
        .replace(
            "{{now_title}}",
            &escape(if title.is_empty() {
                "Nothing announced"
            } else {
                title
            }),
        )
        .replace("{{now_artist}}", &escape(artist))
        .replace("{{mode}}", mode_label(info.live))
        .replace("{{mode_class}}", if info.live { "live" } else { "auto" })
        .replace("{{listeners}}", &listeners.to_string())
        .replace("{{players}}", &players)
        .replace("{{warning}}", &warning)
}

/// Everyone listening to `mount`: stream connections plus HLS sessions.
fn mount_listeners(shared: &Shared, mount: &Mount) -> u64 {
    mount.listeners.load(Ordering::Relaxed)
        + crate::observability::stats::hls_listeners(&shared.shards, mount.id) as u64
}

fn mode_label(live: bool) -> &'static str {
    if live {
        "Live DJ"
    } else {
        "AutoDJ"
    }
}

/// One mount's card; `station.js` builds the same markup for mounts that appear later. The
/// player starts on the stream, which plays without scripts; `station.js` switches it to
/// `hls` (the playlist path, when the mount offers one) where the browser plays HLS itself.
fn player(
    mount: &str,
    hls: Option<&str>,
    title: &str,
    listeners: u64,
    live: bool,
    bitrate: Option<u32>,
) -> String {
    let mount = escape(mount);
    let id = mount_id(&mount);
    let hls = hls
        .map(|path| format!(" data-hls=\"{}\"", escape(path)))
        .unwrap_or_default();
    format!(
        "<article class=\"card player\" data-mount=\"{mount}\" aria-labelledby=\"{id}\">\
<header><h3 id=\"{id}\">{mount}</h3><span class=\"badge {class}\" data-field=\"mode\">{mode}</span></header>\
<p class=\"player-title\" data-field=\"title\">{title}</p>\
<audio controls preload=\"none\" src=\"{mount}\" data-mount=\"{mount}\"{hls} aria-labelledby=\"{id}\"></audio>\
<p class=\"muted small\"><span data-field=\"listeners\">{listeners}</span> listening\
<span data-field=\"bitrate\">{bitrate}</span></p></article>\n",
        class = if live { "live" } else { "auto" },
        mode = mode_label(live),
        title = escape(title),
        bitrate = bitrate.map(|b| format!(" · {b} kbps")).unwrap_or_default(),
    )
}

/// An element id derived from a mount path (mount names are printable ASCII).
fn mount_id(mount: &str) -> String {
    let slug: String = mount
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("mount{slug}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn player_markup_is_escaped() {
        let card = player(
            "/a\"b",
            Some("/a\"b/index.m3u8"),
            "<b>x</b> & y",
            3,
            true,
            Some(128),
        );
        assert!(card.contains("data-mount=\"/a&quot;b\""));
        assert!(card.contains("data-hls=\"/a&quot;b/index.m3u8\""));
        assert!(card.contains("&lt;b&gt;x&lt;/b&gt; &amp; y"));
        assert!(card.contains("Live DJ"));
        assert!(card.contains(" · 128 kbps"));
        assert!(!card.contains("<b>"));
        let card = player("/ogg", None, "", 0, false, None);
        assert!(!card.contains("data-hls"), "no HLS link without a playlist");
    }

    #[test]
    fn templates_have_no_unfilled_placeholders_left_by_typos() {
        for template in [STATION_HTML, ADMIN_HTML] {
            for (start, _) in template.match_indices("{{") {
                let name = &template[start..template[start..].find("}}").unwrap() + start + 2];
                assert!(
                    [
                        "{{station_name}}",
                        "{{station_description}}",
                        "{{station_genre}}",
                        "{{now_title}}",
                        "{{now_artist}}",
                        "{{mode}}",
                        "{{mode_class}}",
                        "{{listeners}}",
                        "{{players}}",
                        "{{warning}}",
                    ]
                    .contains(&name),
                    "unknown placeholder {name}"
                );
            }
        }
    }

    #[test]
    fn assets_only_reference_their_own_origin() {
        for text in [
            STATION_HTML,
            ADMIN_HTML,
            STYLE_CSS,
            STATION_JS,
            ADMIN_JS,
            ICON_SVG,
        ] {
            // The SVG namespace is a name, not something fetched.
            let text = text
                .replace("\"http://www.w3.org/2000/svg\"", "")
                .replace("'http://www.w3.org/2000/svg'", "");
            assert!(
                !text.contains("http://")
                    && !text.contains("https://")
                    && !text.contains("@import")
            );
        }
    }
}
