//! Prometheus metrics through the `metrics` facade and `metrics-exporter-prometheus`.
//!
//! Nothing here runs per send: the fan-out keeps plain counters per mount, and each shard
//! flushes them into the registry about once a second (counters as absolute values), labelled
//! with its `shard` and the `mount`. The ingest core does the same for source-side series.

use std::sync::atomic::Ordering;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Config;
use crate::http::response;
use crate::mount::Mount;
use crate::observability::stats::{DisconnectReason, ListenerInfo, MountCounters};

/// Listener lags sampled per mount per flush for the lag histogram.
const LAG_SAMPLES: usize = 256;

/// Installs the process-wide recorder and returns the handle that renders scrapes.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("cycast_time_to_first_byte_seconds".into()),
            &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("cycast_listener_lag_bytes".into()),
                &[
                    1024.0, 4096.0, 16384.0, 65536.0, 131072.0, 262144.0, 524288.0, 1048576.0,
                ],
            )
        })
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_gauge!(
        "cycast_listeners",
        "Listeners connected now, per shard and mount."
    );
    describe_counter!(
        "cycast_hls_requests_total",
        "HLS playlists and segments served, by kind."
    );
    describe_counter!("cycast_hls_bytes_sent_total", "HLS response bytes sent.");
    describe_gauge!(
        "cycast_hls_sessions",
        "HLS players seen within twice the target duration."
    );
    describe_counter!("cycast_listener_connects_total", "Listeners accepted.");
    describe_counter!(
        "cycast_listener_disconnects_total",
        "Listeners gone, by reason."
    );
    describe_counter!(
        "cycast_bytes_sent_total",
        Unit::Bytes,
        "Audio bytes written to listeners."
    );
    describe_counter!(
        "cycast_sends_total",
        "Sends made to listeners: system calls, or io_uring entries."
    );
    describe_counter!(
        "cycast_uring_submits_total",
        "io_uring_enter calls made by a shard's fan-out (one per batch of sends)."
    );
    describe_counter!(
        "cycast_listener_skips_total",
        "Slow listeners moved to the live edge."
    );
    describe_histogram!(
        "cycast_time_to_first_byte_seconds",
        Unit::Seconds,
        "From accept to the first audio byte."
    );
    describe_histogram!(
        "cycast_listener_lag_bytes",
        Unit::Bytes,
        "How far listeners are behind the live edge (sampled)."
    );
    describe_gauge!(
        "cycast_source_connected",
        "1 while a live source feeds the mount."
    );
    describe_gauge!(
        "cycast_source_silent",
        "1 while the mount's live source is connected but silent (dead air): its playlist or fallback plays instead."
    );
    describe_counter!(
        "cycast_source_bytes_received_total",
        Unit::Bytes,
        "Audio bytes taken from sources and playlists."
    );
    describe_counter!(
        "cycast_source_connects_total",
        "Source connection attempts, by result."
    );
    describe_counter!("cycast_playlist_tracks_total", "Playlist tracks started.");
    describe_counter!(
        "cycast_dump_errors_total",
        "Chunks a mount's recording (dump_file) lost: queue full, disk full, unwritable path."
    );
    describe_gauge!(
        "cycast_ring_write_position_bytes",
        Unit::Bytes,
        "Stream offset the ingest core has published to."
    );
}

/// Publishes one shard's per-mount counters and samples of its listeners' lag.
pub fn flush_shard(
    shard: usize,
    mounts: &[(std::sync::Arc<Mount>, usize, MountCounters)],
    listeners: &[ListenerInfo],
) {
    let shard = shard.to_string();
    for (mount, count, c) in mounts {
        let labels = [("shard", shard.clone()), ("mount", mount.name.clone())];
        gauge!("cycast_listeners", &labels).set(*count as f64);
        counter!("cycast_listener_connects_total", &labels).absolute(c.connects);
        counter!("cycast_bytes_sent_total", &labels).absolute(c.bytes_sent);
        counter!("cycast_sends_total", &labels).absolute(c.sends);
        counter!("cycast_listener_skips_total", &labels).absolute(c.skips);
        for reason in DisconnectReason::ALL {
            let labels = [
                ("shard", shard.clone()),
                ("mount", mount.name.clone()),
                ("reason", reason.as_str().to_string()),
            ];
            counter!("cycast_listener_disconnects_total", &labels)
                .absolute(c.disconnects[reason as usize]);
        }
        let ttfb = histogram!("cycast_time_to_first_byte_seconds", &labels);
        for t in &c.first_byte_times {
            ttfb.record(t.as_secs_f64());
        }
        let lag = histogram!("cycast_listener_lag_bytes", &labels);
        for l in listeners
            .iter()
            .filter(|l| l.mount == mount.id)
            .take(LAG_SAMPLES)
        {
            lag.record(l.lag as f64);
        }
    }
}

/// Publishes a shard's fan-out engine counters.
pub fn flush_engine(shard: usize, uring_submits: u64) {
    counter!("cycast_uring_submits_total", "shard" => shard.to_string()).absolute(uring_submits);
}

/// Publishes the source-side series of every mount.
pub fn flush_ingest(mounts: &[std::sync::Arc<Mount>]) {
    for mount in mounts {
        let labels = [("mount", mount.name.clone())];
        gauge!("cycast_source_connected", &labels).set(if mount.info().live { 1.0 } else { 0.0 });
        let silent = mount.silent.load(Ordering::Relaxed);
        gauge!("cycast_source_silent", &labels).set(if silent { 1.0 } else { 0.0 });
        counter!("cycast_source_bytes_received_total", &labels)
            .absolute(mount.bytes_in.load(Ordering::Relaxed));
        gauge!("cycast_ring_write_position_bytes", &labels).set(mount.ring.committed() as f64);
    }
}

/// Counts a source connection attempt: `ok`, `bad_auth`, `busy` or `refused`.
pub fn source_connect(mount: &str, result: &'static str) {
    counter!("cycast_source_connects_total", "mount" => mount.to_string(), "result" => result)
        .increment(1);
}

/// Counts a chunk a mount's recording could not write.
pub fn dump_error(mount: &str) {
    counter!("cycast_dump_errors_total", "mount" => mount.to_string()).increment(1);
}

/// Counts a playlist track start.
pub fn track_played(mount: &str) {
    counter!("cycast_playlist_tracks_total", "mount" => mount.to_string()).increment(1);
}

/// The scrape response with every series, for the separate `metrics_port` (kept off the
/// public network by the operator).
pub fn scrape(handle: &PrometheusHandle) -> Vec<u8> {
    handle.run_upkeep();
    text_response(&handle.render())
}

/// The scrape response for the public listen port: series of `hidden` mounts are left out,
/// as on every other public page.
pub fn scrape_public(handle: &PrometheusHandle, config: &Config) -> Vec<u8> {
    handle.run_upkeep();
    let all = handle.render();
    let mut shown = String::with_capacity(all.len());
    for line in all.lines() {
        if mount_label(line).is_some_and(|m| config.is_hidden(&m)) {
            continue;
        }
        shown.push_str(line);
        shown.push('\n');
    }
    text_response(&shown)
}

fn text_response(body: &str) -> Vec<u8> {
    response(
        200,
        "OK",
        &[("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}

/// The `mount` label of one sample line of the text exposition format, unescaped.
fn mount_label(line: &str) -> Option<String> {
    if line.starts_with('#') {
        return None;
    }
    let mut rest = &line[line.find('{')? + 1..];
    loop {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        if name == "mount" {
            return Some(value);
        }
        rest = after[end + 1..].strip_prefix(',')?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_label_is_found_and_unescaped() {
        let line = r#"cycast_listeners{shard="0",mount="/a\"b\\c"} 3"#;
        assert_eq!(mount_label(line).as_deref(), Some(r#"/a"b\c"#));
        let line = r#"cycast_x{mount="/m",reason="x"} 1"#;
        assert_eq!(mount_label(line).as_deref(), Some("/m"));
        // A value that only looks like a mount label inside another label is not one.
        let line = r#"cycast_x{result="mount=\"/m\"",shard="1"} 1"#;
        assert_eq!(mount_label(line), None);
        assert_eq!(mount_label("# HELP cycast_listeners mount=\"/m\""), None);
        assert_eq!(mount_label("cycast_up 1"), None);
    }
}
