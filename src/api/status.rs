//! Public status on the listen port: Icecast's `/status-json.xsl`, the original Cycast's
//! `/api/status` and `/api/stats`. The station page at `/` is in [`super::web`].
//!
//! Field names follow those servers exactly (widgets parse them); extra fields are additions.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::http::{response, server_id, Request};
use crate::mount::Mount;
use crate::observability::stats::ShardStats;
use crate::state::Shared;

/// The answer for a status path, or `None` when the path is not a status page.
pub fn page(shared: &Shared, request: &Request) -> Option<Vec<u8>> {
    let body = match request.path.as_str() {
        "/status-json.xsl" => icecast_status(shared),
        "/api/status" => api_status(shared),
        "/api/stats" if !shared.config().advanced.enable_stats => {
            return Some(json_response(
                403,
                "Forbidden",
                &json!({"error": "Stats disabled"}),
            ));
        }
        "/api/stats" => match listener_rows_asked(request) {
            Ok(rows) => api_stats(shared, rows),
            Err(why) => return Some(json_response(400, "Bad Request", &json!({ "error": why }))),
        },
        _ => return None,
    };
    Some(json_response(200, "OK", &body))
}

fn json_response(status: u16, reason: &str, body: &Value) -> Vec<u8> {
    response(
        status,
        reason,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Access-Control-Allow-Origin", "*"),
            ("Cache-Control", "no-cache"),
        ],
        &body.to_string(),
    )
}

fn uptime_secs(shared: &Shared) -> u64 {
    SystemTime::now()
        .duration_since(shared.started)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Total listeners over all shards.
fn total_listeners(shared: &Shared) -> u64 {
    shared
        .shards
        .iter()
        .map(|s| ShardStats::get(&s.listeners))
        .sum()
}

/// `/status-json.xsl` in Icecast 2.4's shape: `source` is an object for one mount, an array
/// for several, absent for none.
fn icecast_status(shared: &Shared) -> Value {
    let cfg = shared.config();
    let mounts = shared.mounts.public(&shared.config());
    let sources: Vec<Value> = mounts.iter().map(|m| icecast_source(shared, m)).collect();
    let started: DateTime<Utc> = shared.started.into();
    let mut stats = json!({
        "admin": "",
        "host": cfg.server.host,
        "location": "",
        "server_id": server_id(),
        "server_start": started.format("%a, %d %b %Y %H:%M:%S %z").to_string(),
        "server_start_iso8601": started.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
    });
    if cfg.default_source_password_exposed() {
        stats["warning"] = json!(crate::state::DEFAULT_PASSWORD_WARNING);
    }
    match sources.len() {
        0 => {}
        1 => stats["source"] = sources.into_iter().next().unwrap_or_default(),
        _ => stats["source"] = Value::Array(sources),
    }
    json!({ "icestats": stats })
}

fn icecast_source(shared: &Shared, mount: &Mount) -> Value {
    let cfg = shared.config();
    let station = cfg.station(&mount.name);
    let info = mount.info();
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_string()
        } else {
            s.to_string()
        }
    };
    let listen_host = if cfg.server.host == "0.0.0.0" || cfg.server.host == "::" {
        "localhost"
    } else {
        &cfg.server.host
    };
    let mut source = json!({
        "audio_info": info.audio_info,
        "bitrate": info.bitrate,
        "genre": or(&info.genre, &station.genre),
        "listener_peak": mount.listener_peak.load(Ordering::Relaxed),
        "listeners": mount.listeners.load(Ordering::Relaxed),
        "hls_listeners": crate::observability::stats::hls_listeners(&shared.shards, mount.id),
        "listenurl": format!("http://{listen_host}:{}{}", shared.listen_port, mount.name),
        "server_description": or(&info.description, &station.description),
        "server_name": or(&info.name, &station.name),
        "server_type": or(&info.content_type, "audio/mpeg"),
        "server_url": or(&info.url, &station.url),
        "dummy": null,
        "live": info.live,
        "silent": mount.silent.load(Ordering::Relaxed),
        "mount": mount.name,
    });
    if let Some(since) = info.since {
        let since: DateTime<Utc> = since.into();
        source["stream_start"] = json!(since.format("%a, %d %b %Y %H:%M:%S %z").to_string());
        source["stream_start_iso8601"] = json!(since.format("%Y-%m-%dT%H:%M:%S%z").to_string());
    }
    if !info.title.is_empty() {
        source["title"] = json!(info.title);
    }
    if let Some(path) = crate::shard::hls::playlist_path(&cfg, mount) {
        source["hls_url"] = json!(format!("http://{listen_host}:{}{path}", shared.listen_port));
    }
    source
}

/// The original Cycast's `/api/status`.
fn api_status(shared: &Shared) -> Value {
    let cfg = shared.config();
    let mount = shared.mounts.find(&cfg.server.mount_point);
    let info = mount.as_ref().map(|m| m.info()).unwrap_or_default();
    let (artist, title) = match info.title.split_once(" - ") {
        Some((a, t)) => (a.to_string(), t.to_string()),
        None => (String::new(), info.title.clone()),
    };
    let uptime = uptime_secs(shared);
    json!({
        "source_connected": info.live,
        "source_status": if info.live { "Connected" } else { "Playlist Fallback" },
        "metadata": { "title": title, "artist": artist },
        "listeners": total_listeners(shared),
        "hls_listeners": mount.as_ref().map_or(0, |m| crate::observability::stats::hls_listeners(&shared.shards, m.id)),
        "uptime_seconds": uptime,
        "uptime_formatted": format!("{}h {}m", uptime / 3600, uptime / 60 % 60),
        "station_name": cfg.metadata.station_name,
        "station_genre": cfg.metadata.station_genre,
        "station_description": cfg.metadata.station_description,
    })
}

/// Listener rows `/api/stats` lists when the request does not say: with thousands of listeners
/// the full list is megabytes, polled by every open console and widget.
pub const DEFAULT_STATS_LISTENER_ROWS: usize = 250;

/// How many listener rows a `/api/stats` request asks for: `listeners=all`, `listeners=<n>`,
/// or [`DEFAULT_STATS_LISTENER_ROWS`] without the parameter.
fn listener_rows_asked(request: &Request) -> Result<usize, String> {
    match request.query_param("listeners").as_deref().map(str::trim) {
        None => Ok(DEFAULT_STATS_LISTENER_ROWS),
        Some("all") => Ok(usize::MAX),
        Some(n) => n
            .parse()
            .map_err(|_| "Invalid parameter: listeners (a whole number or all)".to_string()),
    }
}

/// The original Cycast's `/api/stats`, plus per-shard and per-mount detail, with at most
/// `max_rows` listener rows (`listeners_total` counts them all).
/// Public: `hidden` mounts and their listeners are left out (totals still count them).
fn api_stats(shared: &Shared, max_rows: usize) -> Value {
    let cfg = shared.config();
    let mounts = shared.mounts.public(&cfg);
    let mut listeners = Vec::new();
    let mut listed = 0usize;
    let mut shards = Vec::new();
    for (id, shard) in shared.shards.iter().enumerate() {
        let snapshot = shard.snapshot.load();
        for l in snapshot.iter() {
            // A listener of a mount not listed (hidden, or already removed) is not shown.
            let Some(mount) = mounts.iter().find(|m| m.id == l.mount) else {
                continue;
            };
            listed += 1;
            if listeners.len() >= max_rows {
                continue;
            }
            listeners.push(json!({
                "id": l.id,
                "bytes_sent": l.bytes_sent,
                "connected_seconds": l.connected_secs,
                "active": true,
                "shard": id,
                "mount": mount.name,
                "lag_bytes": l.lag,
            }));
        }
        shards.push(json!({
            "shard": id,
            "listeners": ShardStats::get(&shard.listeners),
            "connects": ShardStats::get(&shard.connects),
            "bytes_sent": ShardStats::get(&shard.bytes_sent),
            "sends": ShardStats::get(&shard.sends),
            "skipped": ShardStats::get(&shard.skipped),
            "disconnects": {
                "client_closed": ShardStats::get(&shard.closed),
                "too_slow": ShardStats::get(&shard.slow),
                "lapped": ShardStats::get(&shard.lapped),
                "kicked": ShardStats::get(&shard.kicked),
            },
        }));
    }
    let (available, space) = shared
        .mounts
        .find(&cfg.server.mount_point)
        .map(|m| {
            let used = m.ring.committed().min(m.ring.capacity());
            (used, m.ring.capacity() - used)
        })
        .unwrap_or((0, 0));
    json!({
        "total_listeners": total_listeners(shared),
        "total_bytes_sent": shared.shards.iter().map(|s| ShardStats::get(&s.bytes_sent)).sum::<u64>(),
        "listeners_truncated": listeners.len() < listed,
        "listeners_total": listed,
        "listeners": listeners,
        "buffer": {
            "available": available,
            "space": space,
            "fill_percentage": if available + space == 0 { 0.0 } else { available as f64 * 100.0 / (available + space) as f64 },
        },
        "shards": shards,
        "mounts": mounts.iter().map(|m| json!({
            "mount": m.name,
            "listeners": m.listeners.load(Ordering::Relaxed),
            "hls_listeners": crate::observability::stats::hls_listeners(&shared.shards, m.id),
            "live": m.info().live,
            "silent": m.silent.load(Ordering::Relaxed),
            "write_position": m.ring.committed(),
            "bytes_in": m.bytes_in.load(Ordering::Relaxed),
        })).collect::<Vec<_>>(),
    })
}
