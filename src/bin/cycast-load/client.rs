//! The listeners and the single-threaded epoll loop that drives them.
//!
//! Every listener is a non-blocking socket registered edge-triggered with one epoll instance;
//! all reads go into one shared 64 KiB buffer, and what a listener keeps between reads is a few
//! counters, its player model and, for verified or ICY listeners, a small parser state. That
//! keeps 20,000 listeners to a few megabytes and one core's worth of work at most.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use socket2::{Domain, Protocol, Socket, Type};

use super::player::Player;
use super::report::{self, Connects, Quality, Report, ServerUsage, Throughput, Ttfb};
use super::sys::{self, Epoll, EDGE, HANGUP, READABLE, WRITABLE};
use super::verify::FrameChecker;
use cycast::icy::IcyDemux;
use cycast::ingest::mp3::parse_header;
use cycast::url::HttpUrl;

/// Size of the one receive buffer shared by all listeners.
const READ_BUF: usize = 64 * 1024;
/// A response head larger than this is not an audio stream.
const MAX_HEAD: usize = 16 * 1024;
/// Connects started per loop turn at most, so a steep ramp cannot starve the reads.
const CONNECTS_PER_TURN: usize = 256;
/// Events handled per wait.
const EVENT_BATCH: usize = 1024;

/// What a run does, resolved from the options.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Server address.
    pub addr: SocketAddr,
    /// For `https://`: the client configuration and the name the certificate must hold.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// The request every listener sends.
    pub request: Vec<u8>,
    /// Listeners to connect.
    pub listeners: u32,
    /// Connects started per second.
    pub ramp: f64,
    /// Whole run length (extended to ramp + 1 s if shorter).
    pub duration: Duration,
    /// Check frames of every Nth listener (0: none).
    pub verify_every: u32,
    /// Bitrate for the player model; `None`: from icy-br or the first frame.
    pub bitrate: Option<u32>,
    /// Player prebuffer.
    pub prebuffer: Duration,
    /// Gap between arrivals that counts as a stall.
    pub stall: Duration,
    /// Server process to sample.
    pub pid: Option<u32>,
    /// Processes counted with `pid` (a proxy in front of the server).
    pub also_pids: Vec<u32>,
    /// Print a progress line every second on stderr.
    pub progress: bool,
    /// Keep every time to first byte in the report.
    pub ttfb_samples: bool,
}

/// The GET request for `url`, asking for ICY metadata when `icy`.
pub fn request(url: &HttpUrl, icy: bool) -> Vec<u8> {
    let mut r = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: cycast-load/{}\r\nAccept: */*\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    if icy {
        r.push_str("Icy-MetaData: 1\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Where a listener is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// TCP connect in progress, or the request not fully written.
    Connecting,
    /// Waiting for the response head.
    Head,
    /// Receiving the stream.
    Streaming,
    /// Closed (refused, failed or ended); nothing more happens.
    Done,
}

/// What a listener does with audio bytes: check frames, learn the bitrate, model playback.
struct AudioSink {
    /// The modelled player buffer.
    player: Player,
    /// Frame-chain checker, on every Nth listener.
    checker: Option<Box<FrameChecker>>,
}

impl AudioSink {
    /// Handles one run of audio bytes that arrived at `now`.
    fn audio(&mut self, now: Instant, data: &[u8]) {
        if let Some(c) = &mut self.checker {
            c.feed(data);
        }
        if self.player.bitrate().is_none() {
            let kbps = match &self.checker {
                Some(c) => c.first_kbps,
                None => sniff_bitrate(data),
            };
            if let Some(kbps) = kbps {
                self.player.set_bitrate(kbps);
            }
        }
        self.player.on_audio(now, data.len());
    }
}

/// One listener's state between reads.
struct Listener {
    /// The socket; `None` once closed.
    stream: Option<TcpStream>,
    /// Life phase.
    phase: Phase,
    /// Request bytes already written.
    sent: usize,
    /// When the connect started.
    started: Instant,
    /// Response head gathered so far; emptied (and freed) once parsed.
    head: Vec<u8>,
    /// Time of the last body arrival.
    last_data: Option<Instant>,
    /// Body bytes received (audio and metadata).
    bytes: u64,
    /// `bytes` when the steady phase began.
    bytes_at_steady: u64,
    /// Whether it was streaming when the steady phase began.
    in_steady: bool,
    /// Gaps longer than the stall threshold.
    stalls: u32,
    /// Longest gap between arrivals.
    max_gap: Duration,
    /// ICY demultiplexer, when the server interleaves metadata.
    icy: Option<Box<IcyDemux>>,
    /// Audio handling.
    sink: AudioSink,
    /// The TLS connection, for `https://`.
    tls: Option<Box<rustls::ClientConnection>>,
    /// Whether the TLS handshake finished (its time is counted once).
    handshaken: bool,
}

/// Run-wide counters updated as listeners change phase.
#[derive(Default)]
struct Totals {
    /// Connection outcomes so far.
    connects: Connects,
    /// Status codes other than 200.
    statuses: BTreeMap<u16, u64>,
    /// Connect failures by message.
    connect_errors: BTreeMap<String, u64>,
    /// Listeners in `Connecting` or `Head`.
    pending: u64,
    /// Listeners streaming now.
    streaming: u64,
    /// Body bytes received by everyone.
    bytes: u64,
    /// Times to first audio byte, microseconds.
    ttfb_us: Vec<u32>,
    /// Times from connect start to the end of the TLS handshake, microseconds.
    handshake_us: Vec<u32>,
    /// Bitrate of the stream as first learned (option, icy-br or frame).
    bitrate: Option<u32>,
}

impl Totals {
    fn connect_failed(&mut self, e: &io::Error) {
        self.connects.refused += 1;
        self.connects.refused_connect += 1;
        *self.connect_errors.entry(e.to_string()).or_default() += 1;
    }
}

/// Runs the listeners and returns what they measured.
pub fn run(s: &Settings) -> io::Result<Report> {
    let ticks = sys::clock_ticks_per_second();
    let client_start = report::sample_proc("self", ticks);
    let mut epoll = Epoll::new(EVENT_BATCH)?;
    let n = s.listeners as usize;
    let mut listeners: Vec<Listener> = Vec::with_capacity(n);
    let mut totals = Totals {
        bitrate: s.bitrate,
        ..Totals::default()
    };
    let mut buf = vec![0u8; READ_BUF];
    let mut events = Vec::with_capacity(EVENT_BATCH);

    let start = Instant::now();
    let ramp_time = Duration::from_secs_f64(n as f64 / s.ramp);
    let run_len = s.duration.max(ramp_time + Duration::from_secs(1));
    if run_len > s.duration {
        eprintln!(
            "cycast-load: the ramp takes {:.1} s; running {:.1} s instead of {:.1} s",
            ramp_time.as_secs_f64(),
            run_len.as_secs_f64(),
            s.duration.as_secs_f64()
        );
    }
    let end = start + run_len;
    let mut next_progress = start + Duration::from_secs(1);
    let mut last_progress_bytes = 0u64;
    // (when, total bytes, server sample) at the start of the steady phase.
    let mut steady: Option<(Instant, u64, Option<report::ProcSample>)> = None;

    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = ((now - start).as_secs_f64() * s.ramp) as usize + 1;
        let mut started = 0;
        while listeners.len() < due.min(n) && started < CONNECTS_PER_TURN {
            let token = listeners.len() as u64;
            listeners.push(connect(s, token, &epoll, &mut totals));
            started += 1;
        }
        if steady.is_none()
            && listeners.len() == n
            && (totals.pending == 0 || now >= start + ramp_time + Duration::from_secs(2))
        {
            for l in &mut listeners {
                l.bytes_at_steady = l.bytes;
                l.in_steady = l.phase == Phase::Streaming;
            }
            let sample = s
                .pid
                .and_then(|pid| report::sample_server(pid, &s.also_pids, ticks));
            steady = Some((now, totals.bytes, sample));
        }
        if now >= next_progress {
            let (underruns, resyncs, stalls) = check_all(&mut listeners, now);
            if s.progress {
                let rate = (totals.bytes - last_progress_bytes) as f64 * 8.0 / 1e6;
                eprintln!(
                    "[{:>4.0}s] connected {}/{} streaming {} pending {} refused {} closed {}  {:.1} MB  {:.1} Mbit/s  stalls {} underruns {} resyncs {}",
                    (now - start).as_secs_f64(),
                    totals.connects.attempted,
                    n,
                    totals.streaming,
                    totals.pending,
                    totals.connects.refused,
                    totals.connects.closed_early,
                    totals.bytes as f64 / 1e6,
                    rate,
                    stalls,
                    underruns,
                    resyncs
                );
            }
            last_progress_bytes = totals.bytes;
            next_progress += Duration::from_secs(1);
        }
        let next_connect = if listeners.len() < n {
            start + Duration::from_secs_f64(listeners.len() as f64 / s.ramp)
        } else {
            end
        };
        let wake = next_connect.min(next_progress).min(end);
        let timeout_ms = wake
            .saturating_duration_since(Instant::now())
            .as_micros()
            .div_ceil(1000) as i32;
        events.clear();
        events.extend(epoll.wait(timeout_ms)?);
        let now = Instant::now();
        for ev in &events {
            if let Some(l) = listeners.get_mut(ev.token as usize) {
                handle(l, ev.events, now, s, &mut buf, &mut totals);
            }
        }
    }

    // End of the run: the steady phase ends here too.
    let now = Instant::now();
    let server_end = s
        .pid
        .and_then(|pid| report::sample_server(pid, &s.also_pids, ticks));
    let (steady_at, steady_bytes_start, server_start) = steady.unwrap_or((now, totals.bytes, None));
    let steady_secs = (now - steady_at).as_secs_f64();
    let steady_bytes = totals.bytes - steady_bytes_start;

    let mut quality = Quality::default();
    let mut slowest: Option<f64> = None;
    for l in &mut listeners {
        match l.phase {
            Phase::Connecting | Phase::Head => totals.connects.pending += 1,
            Phase::Streaming => {
                l.sink.player.finish(now);
                if let Some(last) = l.last_data {
                    note_gap(l, now - last, s.stall);
                } else {
                    totals.connects.no_audio += 1;
                }
                if l.in_steady && steady_secs >= 1.0 {
                    let kbps = (l.bytes - l.bytes_at_steady) as f64 * 8.0 / steady_secs / 1000.0;
                    slowest = Some(slowest.map_or(kbps, |s: f64| s.min(kbps)));
                }
            }
            Phase::Done => {}
        }
        let p = &l.sink.player;
        quality.stalls += l.stalls as u64;
        quality.max_gap_ms = quality.max_gap_ms.max(l.max_gap.as_secs_f64() * 1000.0);
        quality.underruns += p.underruns as u64;
        quality.listeners_with_underruns += u64::from(p.underruns > 0);
        quality.players_started += u64::from(p.started());
        if let Some(c) = &l.sink.checker {
            if c.frames > 0 || l.bytes > 0 {
                quality.verified_listeners += 1;
            }
            quality.frames_verified += c.frames;
            quality.resyncs += c.resyncs;
        }
        if let Some(icy) = &l.icy {
            quality.icy_listeners += 1;
            quality.icy_blocks += icy.blocks;
            quality.icy_errors += icy.errors;
        }
        // Closes the socket.
        l.stream = None;
    }
    let run_seconds = (now - start).as_secs_f64();
    let server = match (s.pid, server_start, server_end) {
        (Some(pid), Some(a), Some(b)) => {
            Some(ServerUsage::between(pid, a, b, steady_secs, steady_bytes))
        }
        (Some(pid), _, _) => {
            eprintln!("cycast-load: could not read /proc/{pid} at both ends of the steady phase");
            None
        }
        _ => None,
    };
    let client_cpu = match (client_start, report::sample_proc("self", ticks)) {
        (Some(a), Some(b)) => Some(b.cpu_seconds - a.cpu_seconds),
        _ => None,
    };
    let bitrate = totals.bitrate;
    let mut statuses: Vec<(u16, u64)> = totals.statuses.into_iter().collect();
    statuses.sort();
    Ok(Report {
        url: String::new(),
        listeners: n as u64,
        ramp_per_s: s.ramp,
        run_seconds,
        nofile_limit: 0,
        connects: totals.connects,
        other_statuses: statuses,
        connect_errors: totals.connect_errors.into_iter().collect(),
        ttfb_samples_us: s.ttfb_samples.then(|| totals.ttfb_us.clone()),
        ttfb: Ttfb::from_micros(totals.ttfb_us),
        handshake: s
            .tls
            .is_some()
            .then(|| Ttfb::from_micros(totals.handshake_us)),
        throughput: Throughput {
            total_bytes: totals.bytes,
            aggregate_mbit_s: totals.bytes as f64 * 8.0 / 1e6 / run_seconds.max(1e-9),
            steady_bytes,
            steady_seconds: steady_secs,
            bitrate_kbps: bitrate,
            slowest_kbps: slowest,
            slowest_ratio: match (slowest, bitrate) {
                (Some(s), Some(b)) if b > 0 => Some(s / b as f64),
                _ => None,
            },
        },
        quality,
        server,
        client_cpu_seconds: client_cpu,
    })
}

/// Runs every streaming player's underrun check; returns (underruns, resyncs, stalls) so far.
fn check_all(listeners: &mut [Listener], now: Instant) -> (u64, u64, u64) {
    let (mut underruns, mut resyncs, mut stalls) = (0, 0, 0);
    for l in listeners {
        if l.phase == Phase::Streaming {
            l.sink.player.check(now);
        }
        underruns += l.sink.player.underruns as u64;
        stalls += l.stalls as u64;
        resyncs += l.sink.checker.as_ref().map_or(0, |c| c.resyncs);
    }
    (underruns, resyncs, stalls)
}

/// Starts one listener's connect and registers it.
fn connect(s: &Settings, token: u64, epoll: &Epoll, totals: &mut Totals) -> Listener {
    totals.connects.attempted += 1;
    let verify = s.verify_every > 0 && token % s.verify_every as u64 == 0;
    let mut player = Player::new(s.prebuffer);
    if let Some(kbps) = s.bitrate {
        player.set_bitrate(kbps);
    }
    let mut l = Listener {
        stream: None,
        phase: Phase::Done,
        sent: 0,
        started: Instant::now(),
        head: Vec::new(),
        last_data: None,
        bytes: 0,
        bytes_at_steady: 0,
        in_steady: false,
        stalls: 0,
        max_gap: Duration::ZERO,
        icy: None,
        sink: AudioSink {
            player,
            checker: verify.then(|| Box::new(FrameChecker::new())),
        },
        tls: None,
        handshaken: false,
    };
    if let Some((config, name)) = &s.tls {
        // The request waits in rustls until the handshake is done.
        match rustls::ClientConnection::new(config.clone(), name.clone()) {
            Ok(mut conn) => {
                let _ = conn.writer().write_all(&s.request);
                l.tls = Some(Box::new(conn));
            }
            Err(e) => {
                totals.connect_failed(&io::Error::other(format!("TLS: {e}")));
                return l;
            }
        }
    }
    match start_connect(s.addr) {
        Ok(stream) => match epoll.add(stream.as_fd(), token, READABLE | WRITABLE | HANGUP | EDGE) {
            Ok(()) => {
                l.stream = Some(stream);
                l.phase = Phase::Connecting;
                totals.pending += 1;
            }
            Err(e) => totals.connect_failed(&e),
        },
        Err(e) => totals.connect_failed(&e),
    }
    l
}

/// A non-blocking socket with its connect under way.
fn start_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// Ends a listener: closes its socket and moves it out of the counted phases.
fn close(l: &mut Listener, totals: &mut Totals) {
    match l.phase {
        Phase::Connecting | Phase::Head => totals.pending -= 1,
        Phase::Streaming => totals.streaming -= 1,
        Phase::Done => {}
    }
    l.phase = Phase::Done;
    l.stream = None;
    l.tls = None;
    l.head = Vec::new();
}

/// Handles readiness `events` of one listener.
fn handle(
    l: &mut Listener,
    events: u32,
    now: Instant,
    s: &Settings,
    buf: &mut [u8],
    totals: &mut Totals,
) {
    if l.tls.is_some() {
        return handle_tls(l, events, now, s, buf, totals);
    }
    if l.phase == Phase::Connecting {
        if events & (WRITABLE | HANGUP) == 0 {
            return;
        }
        let Some(stream) = l.stream.as_ref() else {
            return;
        };
        match send_request(stream, &s.request, &mut l.sent) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                totals.connect_failed(&e);
                close(l, totals);
                return;
            }
        }
        l.phase = Phase::Head;
        // Edge-triggered: the answer may already be waiting, so read now.
    }
    if events & (READABLE | HANGUP) == 0 && l.phase != Phase::Head {
        return;
    }
    loop {
        let Some(mut stream) = l.stream.as_ref() else {
            return;
        };
        let n = match stream.read(buf) {
            Ok(0) => {
                end_of_stream(l, totals);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                end_of_stream(l, totals);
                return;
            }
        };
        let data = &buf[..n];
        match l.phase {
            Phase::Head => on_head_bytes(l, data, now, s, totals),
            Phase::Streaming => on_body(l, data, now, s.stall, totals),
            Phase::Connecting | Phase::Done => return,
        }
    }
}

/// Handles readiness `events` of an HTTPS listener: whatever rustls has to send (handshake,
/// request) goes out as the socket takes it, and what arrives is decrypted into `buf`.
fn handle_tls(
    l: &mut Listener,
    events: u32,
    now: Instant,
    s: &Settings,
    buf: &mut [u8],
    totals: &mut Totals,
) {
    if l.phase == Phase::Connecting {
        if events & (WRITABLE | HANGUP) == 0 {
            return;
        }
        let error = match l.stream.as_ref().map(TcpStream::take_error) {
            Some(Ok(None)) => None,
            Some(Ok(Some(e)) | Err(e)) => Some(e),
            None => return,
        };
        if let Some(e) = error {
            totals.connect_failed(&e);
            close(l, totals);
            return;
        }
        l.phase = Phase::Head;
    }
    loop {
        let (Some(mut stream), Some(tls)) = (l.stream.as_ref(), l.tls.as_mut()) else {
            return;
        };
        while tls.wants_write() {
            match tls.write_tls(&mut stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return end_of_stream(l, totals),
            }
        }
        match tls.read_tls(&mut stream) {
            Ok(0) => return end_of_stream(l, totals),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return end_of_stream(l, totals),
        }
        if let Err(e) = tls.process_new_packets() {
            let failed = io::Error::other(format!("TLS: {e}"));
            if l.handshaken {
                return end_of_stream(l, totals);
            }
            totals.connect_failed(&failed);
            return close(l, totals);
        }
        if !l.handshaken && !tls.is_handshaking() {
            l.handshaken = true;
            let us = (now - l.started).as_micros().min(u32::MAX as u128) as u32;
            totals.handshake_us.push(us);
        }
        loop {
            let Some(tls) = l.tls.as_mut() else {
                return;
            };
            let n = match tls.reader().read(buf) {
                Ok(0) => return end_of_stream(l, totals),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return end_of_stream(l, totals),
            };
            match l.phase {
                Phase::Head => on_head_bytes(l, &buf[..n], now, s, totals),
                Phase::Streaming => on_body(l, &buf[..n], now, s.stall, totals),
                Phase::Connecting | Phase::Done => return,
            }
        }
    }
}

/// Checks the finished connect and writes what is left of the request; `Ok(true)` once all of
/// it is sent, `Ok(false)` when the socket is full.
fn send_request(mut stream: &TcpStream, request: &[u8], sent: &mut usize) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    while *sent < request.len() {
        match stream.write(&request[*sent..]) {
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The server closed the connection (or it failed).
fn end_of_stream(l: &mut Listener, totals: &mut Totals) {
    match l.phase {
        Phase::Head => {
            totals.connects.refused += 1;
            totals.connects.refused_status += 1;
        }
        Phase::Streaming => totals.connects.closed_early += 1,
        _ => {}
    }
    close(l, totals);
}

/// Gathers the response head; on a 200, switches to streaming and passes on the body bytes.
fn on_head_bytes(l: &mut Listener, data: &[u8], now: Instant, s: &Settings, totals: &mut Totals) {
    l.head.extend_from_slice(data);
    let Some((head_len, body_at)) = find_head_end(&l.head) else {
        if l.head.len() > MAX_HEAD {
            totals.connects.refused += 1;
            totals.connects.refused_status += 1;
            close(l, totals);
        }
        return;
    };
    let head = std::mem::take(&mut l.head);
    let parsed = parse_head(&head[..head_len]);
    if parsed.status != 200 {
        totals.connects.refused += 1;
        totals.connects.refused_status += 1;
        *totals.statuses.entry(parsed.status).or_default() += 1;
        close(l, totals);
        return;
    }
    totals.connects.answered_200 += 1;
    totals.pending -= 1;
    totals.streaming += 1;
    l.phase = Phase::Streaming;
    if s.bitrate.is_none() {
        if let Some(br) = parsed.bitrate {
            l.sink.player.set_bitrate(br);
        }
    }
    if let Some(metaint) = parsed.metaint {
        l.icy = Some(Box::new(IcyDemux::new(metaint)));
    }
    if body_at < head.len() {
        on_body(l, &head[body_at..], now, s.stall, totals);
    }
}

/// Body bytes arrived at `now`.
fn on_body(l: &mut Listener, data: &[u8], now: Instant, stall: Duration, totals: &mut Totals) {
    match l.last_data {
        Some(last) => note_gap(l, now - last, stall),
        None => {
            let us = (now - l.started).as_micros().min(u32::MAX as u128) as u32;
            totals.ttfb_us.push(us);
        }
    }
    l.last_data = Some(now);
    l.bytes += data.len() as u64;
    totals.bytes += data.len() as u64;
    let sink = &mut l.sink;
    match &mut l.icy {
        Some(icy) => icy.feed(data, |audio| sink.audio(now, audio), |_| {}),
        None => sink.audio(now, data),
    }
    if totals.bitrate.is_none() {
        totals.bitrate = sink.player.bitrate();
    }
}

/// Records a gap between arrivals.
fn note_gap(l: &mut Listener, gap: Duration, stall: Duration) {
    if gap > stall {
        l.stalls += 1;
    }
    l.max_gap = l.max_gap.max(gap);
}

/// The bitrate of the first frame in `data` whose successor header is also valid (so a stray
/// sync pattern is not taken for a frame).
fn sniff_bitrate(data: &[u8]) -> Option<u32> {
    (0..data.len().saturating_sub(4)).find_map(|i| {
        let h = parse_header(&data[i..])?;
        match data.get(i + h.frame_len..) {
            Some(next) if next.len() >= 4 => parse_header(next).map(|_| h.bitrate_kbps),
            _ => None,
        }
    })
}

/// End of the head (`\r\n\r\n` or a bare `\n\n`): (head length, body start).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, p + 4));
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| (p, p + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// What matters in a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// Status code (0 when the status line is unreadable).
    status: u16,
    /// `icy-metaint`, if non-zero.
    metaint: Option<usize>,
    /// `icy-br` in kbps.
    bitrate: Option<u32>,
}

/// Parses an `HTTP/1.x` or `ICY` response head.
fn parse_head(head: &[u8]) -> Head {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| {
            let mut parts = l.split_whitespace();
            let proto = parts.next()?;
            (proto.starts_with("HTTP/") || proto == "ICY")
                .then(|| parts.next()?.parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut out = Head {
        status,
        metaint: None,
        bitrate: None,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let leading_number = |v: &str| -> Option<u64> {
            let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        };
        if name.trim().eq_ignore_ascii_case("icy-metaint") {
            out.metaint = leading_number(value).filter(|&m| m > 0).map(|m| m as usize);
        } else if name.trim().eq_ignore_ascii_case("icy-br") {
            out.bitrate = leading_number(value).filter(|&b| b > 0).map(|b| b as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cycast::ingest::mp3::silence_frame;

    #[test]
    fn heads() {
        let h = parse_head(
            b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\nicy-br:128\r\nICY-METAINT: 16000",
        );
        assert_eq!(
            h,
            Head {
                status: 200,
                metaint: Some(16000),
                bitrate: Some(128)
            }
        );
        assert_eq!(parse_head(b"ICY 200 OK\nicy-br: 96, 96").bitrate, Some(96));
        assert_eq!(parse_head(b"HTTP/1.1 404 Not Found").status, 404);
        assert_eq!(parse_head(b"garbage").status, 0);
        assert_eq!(find_head_end(b"A\r\nB\r\n\r\nxx"), Some((4, 8)));
        assert_eq!(find_head_end(b"A\nB\n\nxx"), Some((3, 5)));
        assert_eq!(find_head_end(b"A\r\nB\r\n"), None);
    }

    #[test]
    fn bitrate_from_frames_ignores_a_lone_sync() {
        let mut data = vec![0xFF, 0xFB, 0x50, 0x00, 1, 2, 3];
        data.extend_from_slice(&silence_frame(128, 44100, true));
        data.extend_from_slice(&silence_frame(128, 44100, true));
        assert_eq!(sniff_bitrate(&data), Some(128));
        assert_eq!(sniff_bitrate(&silence_frame(128, 44100, true)), None);
    }

    #[test]
    fn request_asks_for_metadata_only_with_icy() {
        let url = HttpUrl::parse("http://127.0.0.1:8001/stream").unwrap();
        let r = String::from_utf8(request(&url, true)).unwrap();
        assert!(r.starts_with("GET /stream HTTP/1.0\r\nHost: 127.0.0.1:8001\r\n"));
        assert!(r.contains("Icy-MetaData: 1\r\n") && r.ends_with("\r\n\r\n"));
        assert!(!String::from_utf8(request(&url, false))
            .unwrap()
            .contains("Icy"));
    }
}
