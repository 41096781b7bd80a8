//! Icecast's admin API, served on both ports (DJ software sends title updates to the host and
//! port it streams to): `metadata` (and Shoutcast's `/admin.cgi`), `listclients`, `killclient`,
//! `killsource`, `listmounts`, `stats`, `moveclients`, `skip`, each in Icecast's XML and as a
//! `.json` twin.
//!
//! Commands that act on listeners or sources go through [`Control`]: listeners belong to
//! shards and sources to the ingest core, so each port forwards to whoever owns them.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::control::Control;
use crate::http::{response, secret_matches, server_id, Request};
use crate::mount::Mount;
use crate::server::Shared;

/// Longest title accepted from a metadata update, in bytes.
pub const MAX_TITLE_BYTES: usize = 1024;

/// Who a request authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Admin,
    Source,
    None,
}

/// Answers an admin request, or `None` when the path is not part of the admin API.
pub fn handle(shared: &Shared, request: &Request, control: &dyn Control) -> Option<Vec<u8>> {
    if request.path == "/admin.cgi" {
        return Some(shoutcast(shared, request));
    }
    let command = request.path.strip_prefix("/admin/")?;
    let (command, json) = match command.strip_suffix(".json") {
        Some(c) => (c, true),
        None => (command.strip_suffix(".xsl").unwrap_or(command), false),
    };
    let role = role(shared, request);
    let source_allowed = matches!(command, "metadata");
    let allowed = role == Role::Admin || (source_allowed && role == Role::Source);
    if !allowed {
        let why = if shared.config().server.admin_password.is_empty() && !source_allowed {
            "The admin API is off: set server.admin_password\n"
        } else {
            "You need to authenticate\n"
        };
        return Some(response(
            401,
            "Authentication Required",
            &[("WWW-Authenticate", "Basic realm=\"Icecast2 Server\"")],
            why,
        ));
    }
    let answer = match command {
        "metadata" => metadata(shared, request),
        "listclients" => with_mount(shared, request, |m| {
            Ok(Answer::Tree(list_clients(shared, m)))
        }),
        "killclient" => with_mount(shared, request, |m| {
            kill_client(shared, request, m, control)
        }),
        "killsource" => with_mount(shared, request, |m| {
            if !m.info().live {
                return Err((400, "Source is not connected".into()));
            }
            control.kill_source(m.id);
            Ok(Answer::Message("Source Removed".into()))
        }),
        "moveclients" => with_mount(shared, request, |m| {
            let to = mount_named(shared, request, "destination", "Destination does not exist")?;
            if to.id == m.id {
                return Err((400, "Destination is the same as the mount".into()));
            }
            control.move_clients(m.id, to.id);
            Ok(Answer::Message(format!(
                "Clients moved from {} to {}",
                m.name, to.name
            )))
        }),
        "skip" => with_mount(shared, request, |m| {
            control.skip(m.id);
            Ok(Answer::Message("Skipped to the next track".into()))
        }),
        "listmounts" => Ok(Answer::Tree(list_mounts(shared))),
        "stats" => Ok(Answer::Tree(stats(shared))),
        _ => Err((404, format!("Unknown admin command: {command}"))),
    };
    Some(render(answer, json))
}

/// What a command answers: a message (`iceresponse`) or a status tree (`icestats`).
enum Answer {
    Message(String),
    /// A command that ran but found nothing to act on (`return` 0, status 200, as Icecast).
    NotDone(String),
    Tree(Value),
}

type Outcome = Result<Answer, (u16, String)>;

fn with_mount(shared: &Shared, request: &Request, f: impl FnOnce(&Mount) -> Outcome) -> Outcome {
    let mount = mount_named(shared, request, "mount", "Source does not exist")?;
    f(&mount)
}

/// The mount a query parameter names; 400 with `unknown` when there is no such mount.
fn mount_named(
    shared: &Shared,
    request: &Request,
    param: &str,
    unknown: &str,
) -> Result<std::sync::Arc<Mount>, (u16, String)> {
    let name = request
        .query_param(param)
        .ok_or_else(|| (400, format!("Missing parameter: {param}")))?;
    shared
        .mounts
        .find(&name)
        .ok_or_else(|| (400, unknown.to_string()))
}

fn role(shared: &Shared, request: &Request) -> Role {
    let config = shared.config();
    let server = &config.server;
    match request.basic_credentials() {
        Some((user, pass))
            if user == server.admin_user && secret_matches(&pass, &server.admin_password) =>
        {
            Role::Admin
        }
        Some((user, pass))
            if user == server.source_user && secret_matches(&pass, &server.source_password) =>
        {
            Role::Source
        }
        _ => Role::None,
    }
}

/// `mode=updinfo` with `song=` or `artist=`/`title=`; `charset=` for Latin-1 senders.
fn metadata(shared: &Shared, request: &Request) -> Outcome {
    with_mount(shared, request, |mount| {
        let mode = request.query_param("mode").unwrap_or_default();
        if mode != "updinfo" {
            return Err((400, "Missing or unsupported mode (use mode=updinfo)".into()));
        }
        let title = requested_title(request)?;
        mount.set_title(&title);
        tracing::info!(mount = %mount.name, %title, "title updated");
        Ok(Answer::Message("Metadata update successful".into()))
    })
}

/// The title a metadata update asks for, validated.
fn requested_title(request: &Request) -> Result<String, (u16, String)> {
    let latin1 = request.query_param("charset").is_some_and(|c| {
        matches!(
            c.to_ascii_lowercase().as_str(),
            "iso-8859-1" | "latin1" | "latin-1"
        )
    });
    let param = |name: &str| -> Option<String> {
        let raw = request.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })?;
        Some(if latin1 {
            decode_latin1(raw)
        } else {
            crate::http::percent_decode(raw)
        })
    };
    let title = match (param("song"), param("artist"), param("title")) {
        (Some(song), _, _) => song,
        (None, Some(artist), Some(title)) if !artist.is_empty() => format!("{artist} - {title}"),
        (None, _, Some(title)) => title,
        (None, Some(artist), None) => artist,
        (None, None, None) => {
            return Err((400, "Missing parameter: song (or artist and title)".into()))
        }
    };
    if title.len() > MAX_TITLE_BYTES {
        return Err((
            400,
            format!("Metadata too long: at most {MAX_TITLE_BYTES} bytes"),
        ));
    }
    if title.contains('\u{FFFD}') || title.chars().any(|c| c.is_control()) {
        return Err((
            400,
            "Invalid metadata: not valid text in the given charset".into(),
        ));
    }
    Ok(title)
}

/// Percent-decodes bytes and reads them as ISO-8859-1.
fn decode_latin1(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&raw[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(char::from(b));
                    i += 2;
                }
                Err(_) => out.push('%'),
            },
            b => out.push(char::from(b)),
        }
        i += 1;
    }
    out
}

/// Shoutcast v1 `GET /admin.cgi?pass=…&mode=updinfo&song=…` (password alone, or Basic auth).
fn shoutcast(shared: &Shared, request: &Request) -> Vec<u8> {
    let config = shared.config();
    let server = &config.server;
    let pass = request.query_param("pass").unwrap_or_default();
    let authorized = secret_matches(&pass, &server.source_password)
        || secret_matches(&pass, &server.admin_password)
        || role(shared, request) != Role::None;
    if !authorized {
        return response(
            401,
            "Authentication Required",
            &[("WWW-Authenticate", "Basic realm=\"Icecast2 Server\"")],
            "Invalid password\n",
        );
    }
    let mount_name = request
        .query_param("mount")
        .unwrap_or_else(|| server.mount_point.clone());
    let Some(mount) = shared.mounts.find(&mount_name) else {
        return render(Err((400, "Source does not exist".into())), false);
    };
    if request.query_param("mode").as_deref() != Some("updinfo") {
        return render(
            Err((400, "Missing or unsupported mode (use mode=updinfo)".into())),
            false,
        );
    }
    match requested_title(request) {
        Ok(title) => {
            mount.set_title(&title);
            render(
                Ok(Answer::Message("Metadata update successful".into())),
                false,
            )
        }
        Err(e) => render(Err(e), false),
    }
}

fn kill_client(
    shared: &Shared,
    request: &Request,
    mount: &Mount,
    control: &dyn Control,
) -> Outcome {
    let id: u64 = request
        .query_param("id")
        .ok_or((400, "Missing parameter: id".to_string()))?
        .parse()
        .map_err(|_| (400, "Invalid parameter: id".to_string()))?;
    let known = shared.shards.iter().any(|s| {
        s.snapshot
            .load()
            .iter()
            .any(|l| l.id == id && l.mount == mount.id)
    });
    if !known {
        return Ok(Answer::NotDone(format!("Client {id} not found")));
    }
    control.kick(id);
    Ok(Answer::Message(format!("Client {id} removed")))
}

fn list_clients(shared: &Shared, mount: &Mount) -> Value {
    let listeners: Vec<Value> = shared
        .shards
        .iter()
        .enumerate()
        .flat_map(|(shard, s)| {
            s.snapshot
                .load()
                .iter()
                .filter(|l| l.mount == mount.id)
                .map(|l| {
                    json!({
                        "ID": l.id,
                        "IP": l.peer.ip().to_string(),
                        "UserAgent": l.user_agent.as_ref(),
                        "Connected": l.connected_secs,
                        "shard": shard,
                        "bytes_sent": l.bytes_sent,
                        "lag": l.lag,
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    json!({ "source": [{ "mount": mount.name, "Listeners": listeners.len(), "listener": listeners }] })
}

fn list_mounts(shared: &Shared) -> Value {
    let sources: Vec<Value> = shared
        .mounts
        .all()
        .iter()
        .map(|m| {
            let info = m.info();
            json!({
                "mount": m.name,
                "listeners": m.listeners.load(Ordering::Relaxed),
                "Connected": info.connected_secs(),
                "content-type": info.content_type,
                "live": info.live,
            })
        })
        .collect();
    json!({ "source": sources })
}

fn stats(shared: &Shared) -> Value {
    let sources: Vec<Value> = shared
        .mounts
        .all()
        .iter()
        .map(|m| {
            let info = m.info();
            let since = info.since.map(chrono::DateTime::<chrono::Utc>::from);
            json!({
                "connected_seconds": info.connected_secs(),
                "stream_start_iso8601": since.map(|t| t.format("%Y-%m-%dT%H:%M:%S%z").to_string()),
                "mount": m.name,
                "listeners": m.listeners.load(Ordering::Relaxed),
                "listener_peak": m.listener_peak.load(Ordering::Relaxed),
                "title": info.title,
                "server_type": info.content_type,
                "bitrate": info.bitrate,
                "live": info.live,
                "source_ip": info.source_addr.map(|a| a.ip().to_string()),
                "user_agent": info.source_agent,
                "total_bytes_read": m.bytes_in.load(Ordering::Relaxed),
            })
        })
        .collect();
    json!({
        "server_id": server_id(),
        "host": shared.config().server.host,
        "listeners": shared.listeners.load(Ordering::Relaxed),
        "sources": sources.len(),
        "source": sources,
    })
}

fn render(answer: Outcome, json: bool) -> Vec<u8> {
    let (status, reason, body) = match answer {
        Ok(Answer::Message(message)) => (200, "OK", message_body(&message, 1, json)),
        Ok(Answer::NotDone(message)) => (200, "OK", message_body(&message, 0, json)),
        Ok(Answer::Tree(tree)) => (
            200,
            "OK",
            if json {
                json!({ "icestats": tree }).to_string()
            } else {
                xml_tree(&tree)
            },
        ),
        Err((status, message)) => {
            let reason = if status == 404 {
                "Not Found"
            } else {
                "Bad Request"
            };
            (status, reason, message_body(&message, 0, json))
        }
    };
    let content_type = if json {
        "application/json; charset=utf-8"
    } else {
        "text/xml; charset=utf-8"
    };
    response(status, reason, &[("Content-Type", content_type)], &body)
}

fn message_body(message: &str, ret: u8, json: bool) -> String {
    if json {
        json!({ "iceresponse": { "message": message, "return": ret } }).to_string()
    } else {
        format!("<?xml version=\"1.0\"?>\n<iceresponse><message>{}</message><return>{ret}</return></iceresponse>", xml_escape(message))
    }
}

/// Renders the JSON tree as Icecast-style XML: `mount` becomes an attribute of `source`,
/// arrays repeat their element.
fn xml_tree(tree: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n<icestats>");
    if let Value::Object(map) = tree {
        for (key, value) in map {
            xml_element(&mut out, key, value);
        }
    }
    out.push_str("</icestats>");
    out
}

fn xml_element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| xml_element(out, name, item)),
        Value::Object(map) => {
            let attr = match (name, map.get("mount"), map.get("ID")) {
                ("source", Some(Value::String(m)), _) => format!(" mount=\"{}\"", xml_escape(m)),
                ("listener", _, Some(id)) => format!(" id=\"{id}\""),
                _ => String::new(),
            };
            let _ = write!(out, "<{name}{attr}>");
            for (key, v) in map {
                if name == "source" && key == "mount" {
                    continue;
                }
                xml_element(out, key, v);
            }
            let _ = write!(out, "</{name}>");
        }
        Value::Null => {
            let _ = write!(out, "<{name}/>");
        }
        Value::String(s) => {
            let _ = write!(out, "<{name}>{}</{name}>", xml_escape(s));
        }
        other => {
            let _ = write!(out, "<{name}>{other}</{name}>");
        }
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_rendering_follows_icecast() {
        let tree = json!({ "source": [{ "mount": "/a&b", "Listeners": 1, "listener": [{ "ID": 7, "IP": "127.0.0.1", "UserAgent": "x<y" }] }] });
        let xml = xml_tree(&tree);
        assert_eq!(
            xml,
            "<?xml version=\"1.0\"?>\n<icestats><source mount=\"/a&amp;b\"><Listeners>1</Listeners><listener id=\"7\"><ID>7</ID><IP>127.0.0.1</IP><UserAgent>x&lt;y</UserAgent></listener></source></icestats>"
        );
    }

    #[test]
    fn latin1_titles_are_decoded() {
        assert_eq!(decode_latin1("Caf%E9+au+lait"), "Café au lait");
    }
}
