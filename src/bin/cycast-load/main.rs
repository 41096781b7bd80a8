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
//! - [`verify`], [`icy`]: frame-chain and ICY metadata checks.
//! - [`report`]: percentiles, `/proc` samples and the report.
//! - [`source`]: the real-time source.
//! - [`sys`]: epoll and the clock tick rate, the only `unsafe` of this program.

// `unsafe` only in `sys`, which opts back in.
#![deny(unsafe_code)]

mod client;
mod icy;
mod player;
mod report;
mod source;
#[allow(unsafe_code)]
mod sys;
mod verify;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{Parser, Subcommand};

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
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
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

/// A parsed `http[s]://[user:pass@]host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https://`: listeners speak TLS.
    pub tls: bool,
    /// `user:password`, if given.
    pub credentials: Option<(String, String)>,
    /// Host as written, for the Host header.
    pub host: String,
    /// Port (80, or 443 for https, when omitted).
    pub port: u16,
    /// Path, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses an `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Url, String> {
        let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(format!("{url}: only http:// and https:// URLs")),
        };
        let default_port = if tls { 443 } else { 80 };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (credentials, hostport) = match authority.rfind('@') {
            Some(i) => {
                let (user, pass) = authority[..i]
                    .split_once(':')
                    .unwrap_or((&authority[..i], ""));
                (
                    Some((user.to_string(), pass.to_string())),
                    &authority[i + 1..],
                )
            }
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?),
            None => (hostport, default_port),
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Url {
            tls,
            credentials,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The first IPv4 address the host resolves to.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.host))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| format!("{}: no IPv4 address", self.host))
    }

    /// `host:port` for the Host header.
    pub fn host_header(&self) -> String {
        if self.port == if self.tls { 443 } else { 80 } {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Runs the listeners and prints the report. Returns the process exit code: 0 when the run
/// happened (whatever it measured), 2 for unusable options.
pub fn main_listen(opts: ListenOptions) -> i32 {
    match run_listeners(&opts) {
        Ok(report) => {
            if opts.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("report serialises")
                );
            } else {
                print!("{}", report.text());
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
    let url = Url::parse(&opts.url)?;
    let addr = url.resolve()?;
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
    let nofile = match sys::raise_nofile_limit() {
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
        progress: !opts.quiet,
    };
    let mut report = client::run(&settings).map_err(|e| format!("event loop: {e}"))?;
    report.url = opts.url.clone();
    report.nofile_limit = nofile;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://source:hack:me@127.0.0.1:8000/live.mp3").unwrap();
        assert_eq!(
            u.credentials,
            Some(("source".to_string(), "hack:me".to_string()))
        );
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8000, "/live.mp3")
        );
        let u = Url::parse("http://localhost").unwrap();
        assert_eq!((u.port, u.path.as_str(), &u.credentials), (80, "/", &None));
        assert_eq!(u.host_header(), "localhost");
        let u = Url::parse("https://localhost/live").unwrap();
        assert_eq!(
            (u.tls, u.port, u.host_header()),
            (true, 443, "localhost".into())
        );
        let u = Url::parse("https://localhost:8443/live").unwrap();
        assert_eq!(u.host_header(), "localhost:8443");
        assert!(!Url::parse("http://x/").unwrap().tls);
        assert!(Url::parse("ftp://x/").is_err());
        assert!(Url::parse("http://x:port/").is_err());
        assert!(Url::parse("http://:80/").is_err());
    }
}
