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

use crate::config::Config;
use crate::control::Control;
use crate::http::{response, secret_matches, server_id, unauthorized, Request};
use crate::icy::Charset;
use crate::logging::escape;
use crate::mount::Mount;
use crate::observability::stats::ListenerInfo;
use crate::state::Shared;

/// Longest title accepted from a metadata update, in bytes.
pub const MAX_TITLE_BYTES: usize = 1024;

/// Answers an admin request, or `None` when the path is not part of the admin API.
pub fn handle(shared: &Shared, request: &Request, control: &dyn Control) -> Option<Vec<u8>> {
    let (command, json) = if request.path == "/admin.cgi" {
        ("metadata", false)
    } else {
        let command = request.path.strip_prefix("/admin/")?;
        match command.strip_suffix(".json") {
            Some(c) => (c, true),
            None => (command.strip_suffix(".xsl").unwrap_or(command), false),
        }
    };
    let config = shared.config();
    // A mount's source may update its title: that check needs the mount, so it is the
    // update's own. Everything else is the admin's.
    if command == "metadata" {
        return Some(set_title(shared, &config, request, json));
    }
    if !is_admin(&config, request) {
        let why = if config.server.admin_password.is_empty() {
            "The admin API is off: set server.admin_password\n"
        } else {
            "You need to authenticate\n"
        };
        return Some(unauthorized(why));
    }
    let answer = match command {
        "listclients" => list_clients(shared, request),
        "killclient" => with_mount(shared, request, |m| {
            kill_client(shared, request, m, control)
        }),
        "killsource" => with_mount(shared, request, |m| {
            // A source silent long enough to be off the air (dead air) is still connected.
            if !m.info().live && !m.silent.load(Ordering::Relaxed) {
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

/// Whether the request carries the admin's Basic credentials; the API and the console both
/// ask here.
pub(crate) fn is_admin(config: &Config, request: &Request) -> bool {
    request.basic_auth_matches(&config.server.admin_user, &config.server.admin_password)
}

/// A title update a request asks for, authorized and validated but not yet applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleUpdate {
    /// The mount to retitle (for `admin.cgi` without `mount=`, the default mount).
    pub mount: String,
    /// The new title.
    pub title: String,
}

/// Checks a title update, `/admin/metadata` (Icecast: `mode=updinfo` with `song=` or
/// `artist=`/`title=`, `charset=` for Latin-1 senders) or Shoutcast v1's `/admin.cgi` (the
/// password alone in `pass=`, or Basic auth). The admin may retitle any mount, a source only
/// with its mount's credentials ([`Config::source_credentials`]). Pure, for the fuzz target.
pub fn title_update(config: &Config, request: &Request) -> Result<TitleUpdate, (u16, String)> {
    let shoutcast = request.path == "/admin.cgi";
    let mount = request
        .query_param("mount")
        .or_else(|| shoutcast.then(|| config.server.mount_point.clone()));
    let source_of = |mount: &str| {
        let (user, password) = config.source_credentials(mount);
        let basic = request.basic_auth_matches(user, password);
        let pass = || {
            let pass = request.query_param("pass").unwrap_or_default();
            secret_matches(&pass, password) || secret_matches(&pass, &config.server.admin_password)
        };
        basic || (shoutcast && pass())
    };
    let authorized = is_admin(config, request) || mount.as_deref().is_some_and(source_of);
    if !authorized {
        let why = if shoutcast {
            "Invalid password\n"
        } else {
            "You need to authenticate\n"
        };
        return Err((401, why.into()));
    }
    let mount = mount.ok_or_else(|| (400, "Missing parameter: mount".to_string()))?;
    if request.query_param("mode").as_deref() != Some("updinfo") {
        return Err((400, "Missing or unsupported mode (use mode=updinfo)".into()));
    }
    let title = requested_title(request)?;
    Ok(TitleUpdate { mount, title })
}

/// Checks and applies a title update.
fn set_title(shared: &Shared, config: &Config, request: &Request, json: bool) -> Vec<u8> {
    let outcome = title_update(config, request).and_then(|update| {
        let mount = shared
            .mounts
            .find(&update.mount)
            .ok_or_else(|| (400, "Source does not exist".to_string()))?;
        mount.set_title(&update.title);
        tracing::info!(mount = %escape(&mount.name), title = %escape(&update.title), "title updated");
        Ok(Answer::Message("Metadata update successful".into()))
    });
    match outcome {
        Err((401, why)) => unauthorized(&why),
        outcome => render(outcome, json),
    }
}

/// The title a metadata update asks for, validated. Values are decoded to bytes first and
/// then read in the declared charset, so no escape can split a character.
fn requested_title(request: &Request) -> Result<String, (u16, String)> {
    // An unknown charset name reads as UTF-8, as Icecast does.
    let charset =
        Charset::from_name(&request.query_param("charset").unwrap_or_default()).unwrap_or_default();
    let param = |name: &str| request.query_bytes(name).map(|v| charset.decode(&v));
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

/// Rows in a `listclients` page when the request gives no `limit`.
pub const DEFAULT_PAGE_ROWS: usize = 100;
/// Most rows in one `listclients` page: a page stays small however many listeners there are.
pub const MAX_PAGE_ROWS: usize = 1000;

/// The window of listeners a `listclients` request asks for with `offset`, `limit` or `q`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Page {
    /// Matching listeners skipped, in id order.
    offset: usize,
    /// Most rows answered, within 1..=[`MAX_PAGE_ROWS`].
    limit: usize,
    /// Lowercased text the address, user agent or mount must contain; empty matches all.
    query: String,
}

impl Page {
    /// The page a request asks for, or `None` when it gives none of the paging parameters
    /// (Icecast's clients, which expect every listener).
    fn from_request(request: &Request) -> Result<Option<Page>, (u16, String)> {
        let (offset, limit, query) = (
            request.query_param("offset"),
            request.query_param("limit"),
            request.query_param("q"),
        );
        if offset.is_none() && limit.is_none() && query.is_none() {
            return Ok(None);
        }
        let number = |value: Option<String>, name: &str, default: usize| match value {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| (400, format!("Invalid parameter: {name} (a whole number)"))),
        };
        Ok(Some(Page {
            offset: number(offset, "offset", 0)?,
            limit: number(limit, "limit", DEFAULT_PAGE_ROWS)?.clamp(1, MAX_PAGE_ROWS),
            query: query.unwrap_or_default().trim().to_lowercase(),
        }))
    }

    fn matches(&self, ip: &str, agent: &str, mount: &str) -> bool {
        self.query.is_empty()
            || [ip, agent, mount]
                .iter()
                .any(|field| field.to_lowercase().contains(&self.query))
    }
}

/// `listclients`: every listener of one mount as Icecast answers it, or, when the request asks
/// for a page, one window of the matching listeners of one mount (`mount=`) or of all, with
/// the count that matched and each mount's listener count apart from the rows.
fn list_clients(shared: &Shared, request: &Request) -> Outcome {
    let Some(page) = Page::from_request(request)? else {
        return with_mount(shared, request, |m| {
            Ok(Answer::Tree(full_client_list(shared, m)))
        });
    };
    let mounts = match request.query_param("mount") {
        Some(_) => vec![mount_named(
            shared,
            request,
            "mount",
            "Source does not exist",
        )?],
        None => shared.mounts.all().to_vec(),
    };
    let snapshots: Vec<_> = shared.shards.iter().map(|s| s.snapshot.load()).collect();
    let mut counts = vec![0usize; mounts.len()];
    let mut matching = Vec::new();
    for (shard, snapshot) in snapshots.iter().enumerate() {
        for l in snapshot.iter() {
            let Some(at) = mounts.iter().position(|m| m.id == l.mount) else {
                continue;
            };
            counts[at] += 1;
            let ip = l.peer.ip().to_string();
            if page.matches(&ip, &l.user_agent, &mounts[at].name) {
                matching.push((l.id, at, shard, l));
            }
        }
    }
    // Id order, so that consecutive windows neither overlap nor miss anyone.
    matching.sort_unstable_by_key(|&(id, ..)| id);
    let mut rows = vec![Vec::new(); mounts.len()];
    for &(_, at, shard, l) in matching.iter().skip(page.offset).take(page.limit) {
        rows[at].push(listener_row(l, shard));
    }
    let sources: Vec<Value> = mounts
        .iter()
        .zip(counts)
        .zip(rows)
        .map(|((m, count), rows)| json!({ "mount": m.name, "Listeners": count, "listener": rows }))
        .collect();
    Ok(Answer::Tree(json!({
        "total": matching.len(),
        "offset": page.offset,
        "limit": page.limit,
        "source": sources,
    })))
}

fn full_client_list(shared: &Shared, mount: &Mount) -> Value {
    let listeners: Vec<Value> = shared
        .shards
        .iter()
        .enumerate()
        .flat_map(|(shard, s)| {
            s.snapshot
                .load()
                .iter()
                .filter(|l| l.mount == mount.id)
                .map(|l| listener_row(l, shard))
                .collect::<Vec<_>>()
        })
        .collect();
    json!({ "source": [{ "mount": mount.name, "Listeners": listeners.len(), "listener": listeners }] })
}

fn listener_row(l: &ListenerInfo, shard: usize) -> Value {
    json!({
        "ID": l.id,
        "IP": l.peer.ip().to_string(),
        "UserAgent": l.user_agent.as_ref(),
        "Connected": l.connected_secs,
        "shard": shard,
        "bytes_sent": l.bytes_sent,
        "lag": l.lag,
    })
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
                "hls_listeners": crate::observability::stats::hls_listeners(&shared.shards, m.id),
                "title": info.title,
                "server_type": info.content_type,
                "bitrate": info.bitrate,
                "live": info.live,
                "silent": m.silent.load(Ordering::Relaxed),
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

    fn get(target: &str) -> Request {
        crate::http::parse_head(format!("GET {target} HTTP/1.0\r\n\r\n").as_bytes())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn paging_parameters_are_read_and_bounded() {
        let page = |target: &str| Page::from_request(&get(target));
        assert_eq!(page("/admin/listclients.json?mount=/a"), Ok(None));
        assert_eq!(
            page("/admin/listclients.json?q=+VLC%20"),
            Ok(Some(Page {
                offset: 0,
                limit: DEFAULT_PAGE_ROWS,
                query: "vlc".into()
            }))
        );
        let bounded = page("/admin/listclients.json?offset=7&limit=999999").unwrap();
        assert_eq!(
            bounded.map(|p| (p.offset, p.limit)),
            Some((7, MAX_PAGE_ROWS))
        );
        let zero = page("/admin/listclients.json?limit=0").unwrap();
        assert_eq!(zero.map(|p| p.limit), Some(1));
        for bad in ["offset=-1", "limit=ten", "offset=99999999999999999999999"] {
            let err = page(&format!("/admin/listclients.json?{bad}")).unwrap_err();
            assert_eq!(err.0, 400, "{bad}");
        }
    }

    #[test]
    fn latin1_titles_are_decoded() {
        let req = get("/admin.cgi?charset=latin1&song=Caf%E9+au+lait");
        assert_eq!(requested_title(&req).unwrap(), "Café au lait");
    }

    #[test]
    fn an_escape_before_a_multibyte_character_is_refused_not_a_panic() {
        for charset in ["latin1", "utf-8"] {
            let req = crate::http::parse_head(
                format!("GET /admin.cgi?pass=hackme&mode=updinfo&charset={charset}&song=%a\u{e9}x HTTP/1.0\r\n\r\n").as_bytes(),
            )
            .unwrap()
            .unwrap();
            // Latin-1 reads the UTF-8 bytes of `é` as two characters; UTF-8 keeps `é`.
            let title = title_update(&Config::default(), &req).unwrap().title;
            assert!(title.starts_with("%a") && title.ends_with('x'), "{title:?}");
        }
    }

    #[test]
    fn a_mount_with_its_own_password_takes_only_that_one() {
        let mut config = Config::default();
        config.mount.insert(
            "/own".into(),
            crate::config::MountConfig {
                source_password: Some("dj".into()),
                ..Default::default()
            },
        );
        let ok = |target: &str| title_update(&config, &get(target)).map(|u| u.mount);
        assert_eq!(
            ok("/admin.cgi?pass=dj&mount=/own&mode=updinfo&song=a").unwrap(),
            "/own"
        );
        assert_eq!(
            ok("/admin.cgi?pass=hackme&mount=/own&mode=updinfo&song=a")
                .unwrap_err()
                .0,
            401
        );
        assert!(ok("/admin.cgi?pass=hackme&mode=updinfo&song=a").is_ok());
        assert_eq!(
            ok("/admin/metadata?mount=/own&mode=updinfo&song=a")
                .unwrap_err()
                .0,
            401
        );
    }
}
