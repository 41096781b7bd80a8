//! Results of a run: percentiles, server process samples from `/proc`, and the report itself
//! (JSON with `--json`, else a short text table).

use std::fmt::Write as _;

use serde::Serialize;

/// Nearest-rank percentile `p` (0..=100) of `sorted` (ascending); `None` when empty.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// CPU time and memory of a process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcSample {
    /// User plus system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Peak resident set size in bytes.
    pub peak_rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (`pid` may be `self`).
pub fn sample_proc(pid: &str, ticks_per_second: u64) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ticks = parse_stat_cpu_ticks(&stat)?;
    Some(ProcSample {
        cpu_seconds: ticks as f64 / ticks_per_second as f64,
        rss_bytes: status_kib(&status, "VmRSS:")? * 1024,
        peak_rss_bytes: status_kib(&status, "VmHWM:").unwrap_or(0) * 1024,
    })
}

/// The server `pid` and the processes in `also` (a TLS proxy and its workers) as one: their
/// CPU seconds and memory added up. `None` when any of them cannot be read, so a figure never
/// silently leaves a process out.
pub fn sample_server(pid: u32, also: &[u32], ticks_per_second: u64) -> Option<ProcSample> {
    std::iter::once(&pid)
        .chain(also)
        .map(|p| sample_proc(&p.to_string(), ticks_per_second))
        .try_fold(ProcSample::default(), |sum, s| Some(sum + s?))
}

impl std::ops::Add for ProcSample {
    type Output = ProcSample;

    fn add(self, other: ProcSample) -> ProcSample {
        ProcSample {
            cpu_seconds: self.cpu_seconds + other.cpu_seconds,
            rss_bytes: self.rss_bytes + other.rss_bytes,
            peak_rss_bytes: self.peak_rss_bytes + other.peak_rss_bytes,
        }
    }
}

/// utime + stime (fields 14 and 15) from a `/proc/PID/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Key:   123 kB` value from `/proc/PID/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Connection outcomes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Connects {
    /// Connections started.
    pub attempted: u64,
    /// Answered `200` (HTTP or ICY).
    pub answered_200: u64,
    /// Failed to connect, or answered something other than 200.
    pub refused: u64,
    /// Of `refused`: the TCP connect or the request failed.
    pub refused_connect: u64,
    /// Of `refused`: an answer other than 200, or no valid answer head.
    pub refused_status: u64,
    /// Answered 200 but the stream ended or failed before the run did.
    pub closed_early: u64,
    /// Answered 200 but no audio byte arrived before the run ended.
    pub no_audio: u64,
    /// Still waiting for the connect or the answer when the run ended.
    pub pending: u64,
}

/// Latencies from connect start (to the first audio byte, or to the end of the TLS handshake),
/// in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ttfb {
    /// Listeners that received audio.
    pub count: u64,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Slowest.
    pub max_ms: Option<f64>,
}

impl Ttfb {
    /// Summarises TTFB samples in microseconds (sorted here).
    pub fn from_micros(mut samples: Vec<u32>) -> Ttfb {
        samples.sort_unstable();
        let ms = |v: Option<u32>| v.map(|us| us as f64 / 1000.0);
        Ttfb {
            count: samples.len() as u64,
            p50_ms: ms(percentile(&samples, 50.0)),
            p99_ms: ms(percentile(&samples, 99.0)),
            max_ms: ms(samples.last().copied()),
        }
    }
}

/// Bytes delivered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    /// Body bytes received by all listeners over the whole run (audio and ICY metadata).
    pub total_bytes: u64,
    /// `total_bytes` over the run's length, in Mbit/s.
    pub aggregate_mbit_s: f64,
    /// Body bytes received during the steady phase.
    pub steady_bytes: u64,
    /// Steady phase length: from when every listener had connected (or failed) to the end.
    pub steady_seconds: f64,
    /// Stream bitrate used by the player model, in kbps (from `--bitrate`, `icy-br` or frames).
    pub bitrate_kbps: Option<u32>,
    /// Lowest receive rate of a listener connected through the steady phase, in kbps.
    pub slowest_kbps: Option<f64>,
    /// `slowest_kbps / bitrate_kbps`: below 1.0 that listener falls behind real time.
    pub slowest_ratio: Option<f64>,
}

/// Stream quality as a player would notice it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quality {
    /// Gaps between arrivals longer than the stall threshold, over all listeners.
    pub stalls: u64,
    /// Longest gap between arrivals, in milliseconds.
    pub max_gap_ms: f64,
    /// Times a modelled player buffer ran dry, over all listeners.
    pub underruns: u64,
    /// Listeners with at least one underrun.
    pub listeners_with_underruns: u64,
    /// Listeners whose modelled player started playing.
    pub players_started: u64,
    /// Listeners whose frames were checked (`--verify-every`).
    pub verified_listeners: u64,
    /// Frames checked.
    pub frames_verified: u64,
    /// Breaks in the frame chain after the first frame.
    pub resyncs: u64,
    /// Listeners that were offered ICY metadata (`icy-metaint`).
    pub icy_listeners: u64,
    /// ICY metadata blocks seen (empty ones included).
    pub icy_blocks: u64,
    /// Malformed ICY metadata blocks.
    pub icy_errors: u64,
}

/// Server process figures over the steady phase (`--pid`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerUsage {
    /// The process measured.
    pub pid: u32,
    /// CPU seconds (user + system) used during the steady phase.
    pub cpu_seconds: f64,
    /// `cpu_seconds` over the steady phase length: the share of one core.
    pub cpu_share: f64,
    /// Server CPU seconds per GB (10^9 bytes) delivered to listeners during the steady phase.
    pub cpu_seconds_per_gb: Option<f64>,
    /// RSS at the start of the steady phase, MB (10^6 bytes).
    pub rss_start_mb: f64,
    /// RSS at the end, MB.
    pub rss_end_mb: f64,
    /// Peak RSS over the process's life, MB.
    pub rss_peak_mb: f64,
}

impl ServerUsage {
    /// The usage of `pid` between samples `a` and `b`, `secs` apart, while `bytes` were
    /// delivered.
    pub fn between(pid: u32, a: ProcSample, b: ProcSample, secs: f64, bytes: u64) -> ServerUsage {
        let cpu = b.cpu_seconds - a.cpu_seconds;
        ServerUsage {
            pid,
            cpu_seconds: cpu,
            cpu_share: if secs > 0.0 { cpu / secs } else { 0.0 },
            cpu_seconds_per_gb: (bytes > 0).then(|| cpu / (bytes as f64 / 1e9)),
            rss_start_mb: a.rss_bytes as f64 / 1e6,
            rss_end_mb: b.rss_bytes as f64 / 1e6,
            rss_peak_mb: b.peak_rss_bytes as f64 / 1e6,
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The stream URL.
    pub url: String,
    /// Listeners requested.
    pub listeners: u64,
    /// Connects started per second.
    pub ramp_per_s: f64,
    /// Length of the whole run in seconds.
    pub run_seconds: f64,
    /// The soft open-files limit after raising it.
    pub nofile_limit: u64,
    /// Connection outcomes.
    pub connects: Connects,
    /// HTTP status codes other than 200, as `(code, count)`.
    pub other_statuses: Vec<(u16, u64)>,
    /// Connect failures by error message, as `(message, count)`.
    pub connect_errors: Vec<(String, u64)>,
    /// Time to first audio byte.
    pub ttfb: Ttfb,
    /// With `--ttfb-samples`: every listener's time to first audio byte, in microseconds, in
    /// no order (reports of several processes merge into exact percentiles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_samples_us: Option<Vec<u32>>,
    /// For `https://`: time from connect start to the end of the TLS handshake (part of the
    /// time to first byte, reported apart).
    pub handshake: Option<Ttfb>,
    /// Bytes delivered.
    pub throughput: Throughput,
    /// Stalls, underruns, frame and metadata integrity.
    pub quality: Quality,
    /// The server's CPU and memory, with `--pid`.
    pub server: Option<ServerUsage>,
    /// CPU seconds the load generator itself used over the whole run.
    pub client_cpu_seconds: Option<f64>,
}

impl Report {
    /// The human-readable form.
    pub fn text(&self) -> String {
        let c = &self.connects;
        let t = &self.throughput;
        let q = &self.quality;
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.1}{unit}"));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "url {}  listeners {}  ramp {}/s  run {:.1} s",
            self.url, self.listeners, self.ramp_per_s, self.run_seconds
        );
        let _ = writeln!(
            s,
            "connects  attempted {}  answered 200 {}  refused {} (connect {}, status {})  closed early {}  no audio {}  pending {}",
            c.attempted, c.answered_200, c.refused, c.refused_connect, c.refused_status, c.closed_early, c.no_audio, c.pending
        );
        for (code, n) in &self.other_statuses {
            let _ = writeln!(s, "          status {code}: {n}");
        }
        for (error, n) in &self.connect_errors {
            let _ = writeln!(s, "          {error}: {n}");
        }
        let _ = writeln!(
            s,
            "ttfb      p50 {}  p99 {}  max {}  ({} listeners)",
            opt(self.ttfb.p50_ms, " ms"),
            opt(self.ttfb.p99_ms, " ms"),
            opt(self.ttfb.max_ms, " ms"),
            self.ttfb.count
        );
        if let Some(h) = &self.handshake {
            let _ = writeln!(
                s,
                "handshake p50 {}  p99 {}  max {}  ({} listeners)",
                opt(h.p50_ms, " ms"),
                opt(h.p99_ms, " ms"),
                opt(h.max_ms, " ms"),
                h.count
            );
        }
        let _ = writeln!(
            s,
            "bytes     total {:.1} MB  aggregate {:.2} Mbit/s  steady {:.1} s  slowest {} vs {} kbps (ratio {})",
            t.total_bytes as f64 / 1e6,
            t.aggregate_mbit_s,
            t.steady_seconds,
            opt(t.slowest_kbps, " kbps"),
            t.bitrate_kbps.map_or("?".to_string(), |b| b.to_string()),
            t.slowest_ratio.map_or("-".to_string(), |r| format!("{r:.3}")),
        );
        let _ = writeln!(
            s,
            "quality   stalls {}  max gap {:.0} ms  underruns {} ({} listeners, {} players started)  resyncs {} ({} frames on {} listeners)  icy errors {} ({} blocks on {} listeners)",
            q.stalls, q.max_gap_ms, q.underruns, q.listeners_with_underruns, q.players_started, q.resyncs,
            q.frames_verified, q.verified_listeners, q.icy_errors, q.icy_blocks, q.icy_listeners
        );
        if let Some(srv) = &self.server {
            let _ = writeln!(
                s,
                "server    pid {}  cpu {:.2} s ({:.3} of a core)  {} cpu s/GB  rss {:.1} -> {:.1} MB (peak {:.1})",
                srv.pid,
                srv.cpu_seconds,
                srv.cpu_share,
                srv.cpu_seconds_per_gb.map_or("-".to_string(), |v| format!("{v:.2}")),
                srv.rss_start_mb,
                srv.rss_end_mb,
                srv.rss_peak_mb
            );
        }
        if let Some(cpu) = self.client_cpu_seconds {
            let _ = writeln!(s, "client    cpu {cpu:.2} s");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // 1,000 samples: p99 is the 990th.
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.0), Some(990));
    }

    #[test]
    fn ttfb_summary_in_ms() {
        let t = Ttfb::from_micros(vec![3000, 1000, 2000]);
        assert_eq!(t.count, 3);
        assert_eq!(t.p50_ms, Some(2.0));
        assert_eq!(t.max_ms, Some(3.0));
    }

    #[test]
    fn stat_cpu_fields_after_a_tricky_name() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 5 1000 200";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn own_process_is_readable() {
        let s = sample_proc("self", 100).expect("/proc/self");
        assert!(s.rss_bytes > 0);
        assert!(s.peak_rss_bytes >= s.rss_bytes);
    }

    #[test]
    fn server_sample_adds_the_other_processes() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let id = child.id();
        // Once asleep (started, and two samples alike) its figures stand still.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let alone = loop {
            let first = sample_proc(&id.to_string(), 100).expect("child");
            std::thread::sleep(std::time::Duration::from_millis(50));
            let stat = std::fs::read_to_string(format!("/proc/{id}/stat")).unwrap_or_default();
            let asleep = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('S'));
            if asleep && sample_proc(&id.to_string(), 100) == Some(first) {
                break first;
            }
            assert!(std::time::Instant::now() < deadline, "sleep never settled");
        };
        assert!(alone.rss_bytes > 0);
        let twice = sample_server(id, &[id], 100).expect("child twice");
        assert_eq!(twice, alone + alone);
        assert_eq!(twice.rss_bytes, 2 * alone.rss_bytes);
        child.kill().unwrap();
        child.wait().unwrap();
        // A process that has gone makes the whole sample unreadable.
        assert_eq!(sample_server(std::process::id(), &[id], 100), None);
    }
}
