//! `cycast-load`: drives many listeners (to 20,000) against any Icecast-compatible stream URL
//! from one thread with epoll, and reports connects, time to first byte, throughput, stalls,
//! player underruns, frame and ICY metadata integrity, and optionally the server's CPU and
//! memory. Its source mode pushes an MP3 file to a mount in real time, so a benchmark needs no
//! other tool. It works with any server, so it is its own program rather than part of the
//! `cycast` library, from which it borrows only the MP3 frame parser, the URL parser and the
//! ICY demultiplexer.
//!
//! - [`client`]: the listeners and the event loop.
//! - [`player`]: the modelled player buffer that turns arrival times into underruns.
//! - [`verify`]: frame-chain checks; ICY blocks are checked by [`cycast::icy::IcyDemux`].
//! - [`report`]: percentiles, `/proc` samples and the report.
//! - [`source`]: the real-time source.
//! - [`hls`]: `--hls`, clients that play an HLS playlist and check its segments.
//! - [`sys`]: epoll and the clock tick rate, the only `unsafe` of this program.

// `unsafe` only in `sys`, which opts back in.
#![deny(unsafe_code)]

mod client;
mod hls;
mod player;
mod report;
mod source;
#[allow(unsafe_code)]
mod sys;
mod verify;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cycast::url::HttpUrl;

use report::Report;

/// Drive thousands of listeners against a stream, or push an MP3 file as a live source.
#[derive(Parser)]
#[command(name = "cycast-load", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// `source` pushes a file; without a subcommand, listeners are run.
    #[command(subcommand)]
    command: Option<Command>,
    /// Listener options.
    #[command(flatten)]
    listen: ListenOptions,
}

#[derive(Subcommand)]
enum Command {
    /// Push an MP3 file to a mount at real time (PUT or SOURCE).
    Source(SourceOptions),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Source(opts)) => source::main_source(opts),
        None => main_listen(cli.listen),
    };
    std::process::exit(code);
}

/// Options of a listener run.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenOptions {
    /// Stream URL, e.g. http://127.0.0.1:8001/stream or https://localhost:8443/stream (IPv4).
    #[arg(long, default_value = "http://127.0.0.1:8001/stream")]
    pub url: String,
    /// For https:// URLs: PEM file of the CA the server's certificate is checked against
    /// (default: the system's roots).
    #[arg(long)]
    pub ca_file: Option<String>,
    /// For https:// URLs: accept any certificate (a lab server's self-signed one).
    #[arg(long)]
    pub insecure: bool,
    /// Listeners to connect.
    #[arg(long, default_value_t = 100)]
    pub listeners: u32,
    /// Connects started per second.
    #[arg(long, default_value_t = 500.0)]
    pub ramp: f64,
    /// Length of the whole run in seconds, ramp included (extended to ramp + 1 s if shorter).
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Ask for ICY metadata (`Icy-MetaData: 1`) and check every block.
    #[arg(long)]
    pub icy: bool,
    /// Play an HLS playlist (`--url http://host:port/stream/index.m3u8`) like a player: poll
    /// it, fetch and check every new segment, report stalls and underruns.
    #[arg(long, conflicts_with = "icy")]
    pub hls: bool,
    /// Check the frame chain of every Nth listener (1: all, 0: none).
    #[arg(long, default_value_t = 10)]
    pub verify_every: u32,
    /// Stream bitrate in kbps for the player model; default: icy-br, else the first frame.
    #[arg(long)]
    pub bitrate: Option<u32>,
    /// Seconds the modelled player buffers before playing (and after an underrun).
    #[arg(long, default_value_t = 2.0)]
    pub prebuffer: f64,
    /// A gap between arrivals longer than this many milliseconds counts as a stall.
    #[arg(long, default_value_t = 1000)]
    pub stall_ms: u64,
    /// Server process to sample CPU and RSS from at the start and end of the steady phase.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Another process whose CPU and memory count as the server's, beside `--pid` (a TLS proxy
    /// in front of it and its workers); repeatable.
    #[arg(long, requires = "pid")]
    pub also_pid: Vec<u32>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also report every listener's time to first audio byte (`ttfb_samples_us`), so the
    /// reports of several load processes merge into exact percentiles.
    #[arg(long)]
    pub ttfb_samples: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Options of the source mode.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceOptions {
    /// Mount URL with credentials, e.g. http://source:hackme@127.0.0.1:8000/stream.
    #[arg(long)]
    pub url: String,
    /// MP3 file to push.
    #[arg(long)]
    pub file: std::path::PathBuf,
    /// Source protocol: `put` (HTTP PUT) or `source` (the legacy SOURCE method).
    #[arg(long, value_enum, default_value_t = source::Method::Put)]
    pub method: source::Method,
    /// Start over at the end of the file instead of stopping.
    #[arg(long = "loop")]
    pub repeat: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
}

/// The first IPv4 address `url`'s host resolves to: the listeners connect over IPv4.
pub fn resolve_ipv4(url: &HttpUrl) -> Result<SocketAddr, String> {
    url.socket_addrs()
        .map_err(|e| format!("{}: {e}", url.host))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{}: no IPv4 address", url.host))
}

/// Runs the listeners and prints the report. Returns the process exit code: 0 when the run
/// happened (whatever it measured), 2 for unusable options.
pub fn main_listen(opts: ListenOptions) -> i32 {
    if opts.hls {
        return print_report(hls::run(&opts), opts.json, hls::HlsReport::text);
    }
    print_report(run_listeners(&opts), opts.json, Report::text)
}

/// Prints a run's report (JSON or text) or its error; the process exit code.
fn print_report<R: serde::Serialize>(
    result: Result<R, String>,
    json: bool,
    text: fn(&R) -> String,
) -> i32 {
    match result {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("report serialises")
                );
            } else {
                print!("{}", text(&report));
            }
            0
        }
        Err(e) => {
            eprintln!("cycast-load: {e}");
            2
        }
    }
}

/// Validates the options and runs the listeners.
pub fn run_listeners(opts: &ListenOptions) -> Result<Report, String> {
    let url = HttpUrl::parse(&opts.url).map_err(|e| format!("--url: {e}"))?;
    let addr = resolve_ipv4(&url)?;
    if opts.listeners == 0 {
        return Err("--listeners must be at least 1".into());
    }
    if !opts.ramp.is_finite() || opts.ramp <= 0.0 {
        return Err("--ramp must be positive".into());
    }
    if !opts.duration.is_finite()
        || opts.duration <= 0.0
        || !opts.prebuffer.is_finite()
        || opts.prebuffer < 0.0
    {
        return Err("--duration must be positive and --prebuffer not negative".into());
    }
    // Soft limit up to the hard one, as the server does.
    let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cycast-load: cannot raise the open-files limit: {e}");
            0
        }
    };
    // Each listener holds one descriptor; leave a few for stdio, epoll and /proc reads.
    if nofile > 0 && nofile < opts.listeners as u64 + 16 {
        eprintln!(
            "cycast-load: open-files limit is {nofile}, too low for {} listeners; later connects will fail (raise the hard limit, e.g. ulimit -Hn)",
            opts.listeners
        );
    }
    let tls = match url.tls {
        true => {
            let config =
                cycast::tls::client::client_config(opts.ca_file.as_deref(), !opts.insecure)?;
            let name = cycast::tls::client::server_name(&url.host)?;
            Some((config, name))
        }
        false => None,
    };
    let settings = client::Settings {
        addr,
        tls,
        request: client::request(&url, opts.icy),
        listeners: opts.listeners,
        ramp: opts.ramp,
        duration: Duration::from_secs_f64(opts.duration),
        verify_every: opts.verify_every,
        bitrate: opts.bitrate,
        prebuffer: Duration::from_secs_f64(opts.prebuffer),
        stall: Duration::from_millis(opts.stall_ms),
        pid: opts.pid,
        also_pids: opts.also_pid.clone(),
        progress: !opts.quiet,
        ttfb_samples: opts.ttfb_samples,
    };
    let mut report = client::run(&settings).map_err(|e| format!("event loop: {e}"))?;
    report.url = url.redacted();
    report.nofile_limit = nofile;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_connect_over_ipv4() {
        let url = HttpUrl::parse("http://127.0.0.1:8000/live.mp3").unwrap();
        assert_eq!(resolve_ipv4(&url), Ok("127.0.0.1:8000".parse().unwrap()));
        let url = HttpUrl::parse("http://[::1]:8000/live.mp3").unwrap();
        assert_eq!(resolve_ipv4(&url), Err("::1: no IPv4 address".to_string()));
    }
}
