//! The Icecast source protocol: `SOURCE` (ICE/1.0 or HTTP/1.0) and `PUT` (with or without
//! `Expect: 100-continue`), Basic auth, the libshout probe, and then the audio itself. The same
//! over plain TCP (`server.source_port`) and TLS (`tls.source_port`), through [`Conn`].

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_lite::future;
use glommio::net::TcpStream;
use glommio::timer::Timer;

use super::feed::MountFeed;
use super::format::{Format, FrameGate, Framer};
use super::silence::{SilenceWatch, Switch};
use super::IngestContext;
use crate::config::{check_mount_name, Config, MountNameRule};
use crate::control::Control;
use crate::http::{response, secret_matches, unauthorized, Request, RequestError};
use crate::logging::escape;
use crate::mount::{MountId, StreamInfo};
use crate::observability::metrics;
use crate::tls::{Conn, Session};

/// Bytes read from a source socket at a time.
const READ_SIZE: usize = 16 * 1024;

/// Serves one connection on the source port until it ends.
pub async fn handle(ctx: Rc<IngestContext>, stream: TcpStream) {
    serve(ctx, Conn { stream, tls: None }, None).await
}

/// Serves one connection on the TLS source port: the handshake and first request head within
/// the header timeout, then the same protocol as on the plain port. Anything but TLS (a
/// plaintext request) fails the handshake and is closed unanswered.
pub async fn handle_tls(ctx: Rc<IngestContext>, mut stream: TcpStream) {
    let Some(certificates) = ctx.shared.tls.as_ref() else {
        return;
    };
    let cfg = ctx.shared.config();
    match Session::accept_any(
        &mut stream,
        certificates.server_config(),
        cfg.limits.max_header_bytes,
        cfg.header_timeout(),
    )
    .await
    {
        Ok((session, request)) => {
            let conn = Conn {
                stream,
                tls: Some(session),
            };
            serve(ctx, conn, Some(request)).await
        }
        Err(e) => {
            let why = e.to_string();
            let why = escape(&why);
            tracing::debug!(peer = ?stream.peer_addr().ok(), "TLS source connection: {why}")
        }
    }
}

/// The source protocol on `conn`, starting with `first` when the head (or what stood in its
/// place: a Shoutcast password line) was already read.
async fn serve(
    ctx: Rc<IngestContext>,
    mut conn: Conn,
    mut first: Option<Result<Request, RequestError>>,
) {
    let peer = conn.stream.peer_addr().ok();
    let cfg = ctx.shared.config();
    loop {
        let next = match first.take() {
            Some(first) => first,
            None => {
                conn.read_request(cfg.limits.max_header_bytes, cfg.header_timeout())
                    .await
            }
        };
        let request = match next {
            Ok(request) => request,
            Err(RequestError::NotHttp(raw)) => {
                match shoutcast_login(&ctx, &mut conn, raw, peer).await {
                    Some(request) => request,
                    None => return,
                }
            }
            Err(e) => {
                tracing::debug!(?peer, "source connection: {e}");
                if let Some(answer) = e.response() {
                    let _ = conn.write_all(&answer).await;
                }
                return;
            }
        };
        let keep_alive = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive"));
        let answer = match request.method.as_str() {
            "SOURCE" | "PUT" => match admit(&ctx, &request) {
                Ok(admitted) => {
                    if let Some(peer) = peer {
                        ctx.shared.auth_failures.succeeded(peer.ip());
                    }
                    run_source(&ctx, conn, request, admitted, peer).await;
                    return;
                }
                Err(refusal) => refusal,
            },
            // DJ software sends title updates to the host and port it streams to.
            "GET" if request.path.starts_with("/admin") => {
                match (ctx.shared.control_plane.admin)(&ctx.shared, &request, ctx.as_ref()) {
                    Some(answer) => answer,
                    None => response(404, "Not Found", &[], "Unknown admin command\n"),
                }
            }
            // libshout probes the server before streaming; it only needs to learn what we allow.
            "OPTIONS" | "GET" | "HEAD" => {
                response(200, "OK", &[("Allow", "GET, PUT, SOURCE, OPTIONS")], "")
            }
            _ => response(
                405,
                "Method Not Allowed",
                &[("Allow", "GET, PUT, SOURCE, OPTIONS")],
                "Method not allowed\n",
            ),
        };
        if crate::auth::is_unauthorized(&answer) {
            if let Some(peer) = peer {
                let delay = ctx.shared.auth_failures.failed(peer.ip(), "source");
                if !delay.is_zero() {
                    Timer::new(delay).await;
                }
            }
        }
        if conn.write_all(&answer).await.is_err() || !keep_alive {
            return;
        }
    }
}

/// Shoutcast v1 source login (DSP plug-ins, libshout's ICY mode): a password line, answered
/// `OK2`, then `icy-*` header lines and a blank line, then audio for the default mount. Turned
/// into the equivalent `SOURCE` request so the usual checks apply.
async fn shoutcast_login(
    ctx: &IngestContext,
    conn: &mut Conn,
    mut raw: Vec<u8>,
    peer: Option<SocketAddr>,
) -> Option<Request> {
    let config = ctx.shared.config();
    let mount = config.server.mount_point.clone();
    let line_end = raw.iter().position(|&b| b == b'\n')?;
    let password = String::from_utf8_lossy(&raw[..line_end]).trim().to_string();
    let (user, expected) = config.source_credentials(&mount);
    if !secret_matches(&password, expected) {
        tracing::warn!(?peer, "shoutcast source refused: bad password");
        if let Some(peer) = peer {
            let delay = ctx.shared.auth_failures.failed(peer.ip(), "source");
            if !delay.is_zero() {
                Timer::new(delay).await;
            }
        }
        let _ = conn.write_all(b"invalid password\r\n").await;
        return None;
    }
    conn.write_all(b"OK2\r\nicy-caps:11\r\n\r\n").await.ok()?;
    raw.drain(..=line_end);
    // The icy-* lines may come with the password or only after OK2.
    let deadline = Instant::now() + config.header_timeout();
    let mut chunk = [0u8; 2048];
    // The password line counts towards the limit too.
    let max = config.limits.max_header_bytes.saturating_sub(line_end + 1);
    let head_end = loop {
        // Only the first `max` bytes may hold the end, however the lines were split.
        let window = &raw[..raw.len().min(max)];
        if window.starts_with(b"\r\n") {
            break 2;
        }
        if window.starts_with(b"\n") {
            break 1;
        }
        if let Some(p) = window.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if let Some(p) = window.windows(2).position(|w| w == b"\n\n") {
            break p + 2;
        }
        if raw.len() > max {
            tracing::debug!(
                ?peer,
                "shoutcast source refused: {}",
                RequestError::TooLarge(max)
            );
            return None;
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        let n = future::or(async { conn.read(&mut chunk).await.ok() }, async {
            Timer::new(left).await;
            None
        })
        .await?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let mut headers: Vec<(String, String)> = String::from_utf8_lossy(&raw[..head_end])
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("Content-Type".into(), "audio/mpeg".into()));
    }
    let credentials = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{user}:{password}"),
    );
    headers.push(("Authorization".into(), format!("Basic {credentials}")));
    Some(Request {
        method: "SOURCE".into(),
        path: mount,
        query: String::new(),
        minor_version: 0,
        headers,
        body: raw[head_end..].to_vec(),
        shoutcast: true,
    })
}

/// A source that passed the checks and holds its mount.
struct Admitted {
    feed: Rc<RefCell<MountFeed>>,
    mount: MountId,
}

/// Checks credentials, mount and content type; claims the mount. Err is the answer to send.
fn admit(ctx: &IngestContext, request: &Request) -> Result<Admitted, Vec<u8>> {
    let config = ctx.shared.config();
    let (user, password) = config.source_credentials(&request.path);
    if !request.basic_auth_matches(user, password) {
        tracing::warn!(mount = %escape(&request.path), "source refused: bad or missing credentials");
        metrics::source_connect(&request.path, "bad_auth");
        return Err(unauthorized("You need to authenticate\n"));
    }
    if check_mount_name(&request.path, MountNameRule::Strict).is_err() {
        return Err(response(400, "Bad Request", &[], "Invalid mountpoint\n"));
    }
    if request.method == "PUT" && request.header("content-type").is_none() {
        return Err(response(403, "Forbidden", &[], "No Content-type given\n"));
    }
    let feed = ctx.feed_for(&request.path).map_err(|e| {
        tracing::warn!(mount = %escape(&request.path), "source refused: {e}");
        response(403, "Forbidden", &[], "too many sources connected\n")
    })?;
    let mount = feed.borrow().mount.id;
    if !ctx.claim(mount) {
        tracing::warn!(mount = %escape(&request.path), "source refused: mountpoint in use");
        metrics::source_connect(&request.path, "busy");
        return Err(response(403, "Forbidden", &[], "Mountpoint in use\n"));
    }
    metrics::source_connect(&request.path, "ok");
    Ok(Admitted { feed, mount })
}

/// Releases the mount when the source session ends, however it ends.
pub(super) struct LiveGuard<'a> {
    /// The ingest core's state.
    ctx: &'a IngestContext,
    /// The held mount's feed.
    feed: Rc<RefCell<MountFeed>>,
    /// The held mount.
    mount: MountId,
    /// Whether this source holds the mount and its frames go on air; false while the
    /// dead-air fallback has taken the mount from it.
    on_air: Cell<bool>,
    /// What the source announced, put back when it returns from dead air.
    program: RefCell<Option<(StreamInfo, Format)>>,
    /// The title on air when dead air took the mount, put back with the source.
    title: RefCell<String>,
}

impl<'a> LiveGuard<'a> {
    /// Holds `mount`, which the caller has claimed, until dropped.
    pub(super) fn new(
        ctx: &'a IngestContext,
        feed: Rc<RefCell<MountFeed>>,
        mount: MountId,
    ) -> Self {
        Self {
            ctx,
            feed,
            mount,
            on_air: Cell::new(true),
            program: RefCell::new(None),
            title: RefCell::new(String::new()),
        }
    }

    /// Puts a new program on air: describes it and takes listeners back from the fallback.
    pub(super) fn go_live(&self, info: StreamInfo, format: Format) {
        *self.program.borrow_mut() = Some((info.clone(), format));
        self.put_on_air(&mut self.feed.borrow_mut(), info, format, "");
        // The source is connected (a return from dead air is not a new one).
        self.tell_backend(true);
    }

    /// Describes the source's program on the mount, with `title`, and takes listeners back.
    fn put_on_air(&self, feed: &mut MountFeed, info: StreamInfo, format: Format, title: &str) {
        // What was gathered before belongs to the previous program.
        feed.flush();
        // A new program's title is unknown (empty) until the source or an operator sets one;
        // a source back from dead air gets its own again.
        feed.mount.set_info(info, Some(title));
        if format != Format::Ogg {
            feed.mount.clear_stream_headers();
        }
        reclaim_listeners(self.ctx, self.mount);
    }

    /// Tells the mount's auth backend (`mount_add` / `mount_remove`) without waiting.
    fn tell_backend(&self, live: bool) {
        // Once shutdown began there is no executor left to run the notice on.
        if self
            .ctx
            .shared
            .shutting_down
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let config = self.ctx.shared.config();
        let listen_port = self.ctx.shared.listen_port;
        crate::auth::url::mount_changed(&config, listen_port, &self.feed.borrow().mount.name, live);
    }

    /// Whether this source's frames go on air.
    fn on_air(&self) -> bool {
        self.on_air.get()
    }

    /// Whether the mount has something to play in this source's place: a playlist or a
    /// fallback mount.
    fn can_step_aside(&self, feed: &MountFeed) -> bool {
        let config = self.ctx.shared.config();
        config.playlist_for(&feed.mount.name).is_some()
            || self
                .ctx
                .shared
                .mounts
                .fallback_of(&config, &feed.mount)
                .is_some()
    }

    /// Takes this source off the air as if it had disconnected (the dead-air fallback):
    /// the mount is released to its playlist, or its listeners go down the fallback chain.
    fn step_aside(&self, feed: &mut MountFeed) {
        *self.title.borrow_mut() = feed.mount.info().title.clone();
        self.leave(feed);
    }

    /// Puts this source back on air after dead air, as when it connected. False when another
    /// source took the mount meanwhile.
    fn step_back(&self, feed: &mut MountFeed) -> bool {
        if self.on_air.get() {
            return true;
        }
        if !self.ctx.claim(self.mount) {
            return false;
        }
        self.on_air.set(true);
        if let Some((info, format)) = self.program.borrow().clone() {
            let since = Some(SystemTime::now());
            let title = self.title.borrow().clone();
            self.put_on_air(feed, StreamInfo { since, ..info }, format, &title);
        }
        true
    }

    /// What a source leaving does to its mount.
    fn leave(&self, feed: &mut MountFeed) {
        self.on_air.set(false);
        // Whole frames already gathered are good audio: publish them rather than lose them.
        feed.flush();
        let info = feed.mount.info();
        feed.mount.info.store(Arc::new(StreamInfo {
            live: false,
            source_addr: None,
            ..StreamInfo::clone(&info)
        }));
        self.ctx.release(self.mount);
        // Nothing feeds this mount now: its listeners go down the fallback chain.
        let config = self.ctx.shared.config();
        if config.playlist_for(&feed.mount.name).is_none() {
            if let Some(fallback) = self.ctx.shared.mounts.fallback_of(&config, &feed.mount) {
                let target = self.ctx.shared.mounts.on_air(&config, fallback);
                tracing::info!(mount = %escape(&feed.mount.name), fallback = %escape(&target.name), "listeners moved to the fallback");
                self.ctx.move_clients(self.mount, target.id);
            }
        }
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        let mut feed = self.feed.borrow_mut();
        // Dead air already took the mount from this source (and another may hold it now).
        if self.on_air.get() {
            self.leave(&mut feed);
        }
        feed.mount.silent.store(false, Ordering::Relaxed);
        tracing::info!(mount = %escape(&feed.mount.name), "source disconnected");
        drop(feed);
        self.tell_backend(false);
    }
}

/// The dead-air fallback of one source session: measures each MP3 frame, takes the source
/// off the air when it has been silent too long and puts it back when sound returns.
struct DeadAir<'g, 'a> {
    /// The session's hold on the mount.
    guard: &'g LiveGuard<'a>,
    /// The detector; `None` while the feature is off for the mount or the format is not MP3.
    watch: Option<SilenceWatch>,
    /// The source sends MP3, the only format measured.
    mp3: bool,
    /// The configuration the settings were taken from, to notice a reload.
    config: Arc<Config>,
    /// Another source took the mount during dead air: this session must end.
    superseded: bool,
}

impl<'g, 'a> DeadAir<'g, 'a> {
    fn new(guard: &'g LiveGuard<'a>, format: Format, mount: &str) -> Self {
        let config = guard.ctx.shared.config();
        let mp3 = format == Format::Mp3;
        let watch = config
            .silence_for(mount)
            .filter(|_| mp3)
            .map(SilenceWatch::new);
        Self {
            guard,
            watch,
            mp3,
            config,
            superseded: false,
        }
    }

    /// Takes up settings a reload changed; turned off during dead air, the source returns.
    fn refresh(&mut self, feed: &mut MountFeed) {
        let config = self.guard.ctx.shared.config();
        if Arc::ptr_eq(&config, &self.config) || !self.mp3 {
            return;
        }
        let settings = config.silence_for(&feed.mount.name);
        self.config = config;
        match (&mut self.watch, settings) {
            (Some(watch), Some(settings)) => watch.reconfigure(settings),
            (None, Some(settings)) => self.watch = Some(SilenceWatch::new(settings)),
            (watch @ Some(_), None) => {
                let was_silent = watch.as_ref().is_some_and(SilenceWatch::is_silent);
                *watch = None;
                if was_silent {
                    self.on_sound(feed);
                }
            }
            (None, None) => {}
        }
    }

    fn on_silence(&mut self, feed: &mut MountFeed) {
        let mount = feed.mount.clone();
        mount.silent.store(true, Ordering::Relaxed);
        let name = escape(&mount.name);
        if self.guard.can_step_aside(feed) {
            tracing::warn!(mount = %name, "dead air: live source silent; fallback on air, source kept connected");
            self.guard.step_aside(feed);
        } else {
            tracing::warn!(mount = %name, "dead air: live source silent, and the mount has no playlist or fallback to play instead");
        }
    }

    fn on_sound(&mut self, feed: &mut MountFeed) {
        let mount = feed.mount.clone();
        mount.silent.store(false, Ordering::Relaxed);
        let name = escape(&mount.name);
        if self.guard.step_back(feed) {
            tracing::info!(mount = %name, "dead air over: live source on air again");
        } else {
            tracing::info!(mount = %name, "dead air over, but another source holds the mount now");
            self.superseded = true;
        }
    }
}

impl FrameGate for DeadAir<'_, '_> {
    fn admit(&mut self, frame: &[u8], micros: u64, feed: &mut MountFeed) -> bool {
        if let Some(watch) = &mut self.watch {
            match watch.observe(frame, micros) {
                Some(Switch::Silent) => self.on_silence(feed),
                Some(Switch::Sound) => self.on_sound(feed),
                None => {}
            }
        }
        self.guard.on_air()
    }
}

async fn run_source(
    ctx: &IngestContext,
    mut conn: Conn,
    request: Request,
    admitted: Admitted,
    peer: Option<SocketAddr>,
) {
    let Admitted { feed, mount } = admitted;
    let guard = LiveGuard::new(ctx, feed.clone(), mount);
    let expects_continue = request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue
        && conn
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return;
    }
    // A Shoutcast login was already answered `OK2`.
    if !request.shoutcast && conn.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await.is_err() {
        return;
    }
    let info = stream_info(&request, peer);
    let format = Format::from_content_type(&info.content_type);
    tracing::info!(mount = %escape(&request.path), ?peer, content_type = %escape(&info.content_type), agent = %escape(&info.source_agent), "source connected");
    if format == Format::Unframed {
        tracing::warn!(mount = %escape(&request.path), content_type = %escape(&info.content_type), "format not framed: audio passes through unaligned");
    }
    guard.go_live(info, format);
    let timeout = ctx.shared.config().source_timeout();
    let _ = conn.stream.set_read_timeout(Some(timeout));
    let mut framer = Framer::new(format);
    let mut dead_air = DeadAir::new(&guard, format, &request.path);
    let mut take = |bytes: &[u8], end: bool| {
        let mut feed = feed.borrow_mut();
        dead_air.refresh(&mut feed);
        framer.feed_gated(bytes, end, &mut feed, &mut dead_air);
        dead_air.superseded
    };
    take(&request.body, false);
    let mut buf = vec![0u8; READ_SIZE];
    let kill = ctx.watch_kill(mount);
    loop {
        let flush_due = feed.borrow().flush_due();
        let read = async { Event::Read(conn.read(&mut buf).await) };
        let flush = async {
            match flush_due {
                Some(due) => {
                    Timer::new(due).await;
                }
                None => future::pending::<()>().await,
            }
            Event::FlushDue
        };
        let killed = async {
            match kill.recv().await {
                Some(()) => Event::Killed,
                // Another session registered its own switch: it took the mount.
                None => Event::Superseded,
            }
        };
        match future::or(read, future::or(flush, killed)).await {
            Event::FlushDue => feed.borrow_mut().flush(),
            Event::Killed => {
                tracing::info!(mount = %escape(&request.path), "source removed by an operator");
                break;
            }
            Event::Superseded => {
                tracing::info!(mount = %escape(&request.path), "another source took the mount during dead air");
                break;
            }
            Event::Read(Ok(0)) => {
                // A clean end: the last frame has all its bytes, release it.
                take(&[], true);
                break;
            }
            Event::Read(Ok(n)) => {
                if take(&buf[..n], false) {
                    break;
                }
            }
            Event::Read(Err(e)) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    tracing::warn!(mount = %escape(&request.path), "source silent for {timeout:?}: dropped");
                } else {
                    tracing::info!(mount = %escape(&request.path), "source read failed: {e}");
                }
                break;
            }
        }
    }
    drop(guard);
}

/// With `fallback_override`, a returning source takes its listeners back from every mount of
/// its fallback chain (Icecast moves the whole fallback mount's audience).
fn reclaim_listeners(ctx: &IngestContext, mount: MountId) {
    let config = ctx.shared.config();
    let Some(this) = ctx.shared.mounts.get(mount) else {
        return;
    };
    if !config
        .mount
        .get(&this.name)
        .is_some_and(|m| m.fallback_override)
    {
        return;
    }
    let mut next = ctx.shared.mounts.fallback_of(&config, &this);
    for _ in 0..crate::mount::MAX_MOUNTS {
        let Some(fallback) = next else { break };
        ctx.move_clients(fallback.id, mount);
        next = ctx.shared.mounts.fallback_of(&config, &fallback);
    }
}

/// What woke a source session.
enum Event {
    /// The socket read finished.
    Read(std::io::Result<usize>),
    /// Gathered frames have waited a whole chunk duration.
    FlushDue,
    /// An operator removed the source.
    Killed,
    /// Another source holds the mount now (it took it while this one was dead air).
    Superseded,
}

/// The mount's description from the source's `ice-*` / `icy-*` headers.
fn stream_info(request: &Request, peer: Option<SocketAddr>) -> StreamInfo {
    let ice = |name: &str| {
        request
            .header(&format!("ice-{name}"))
            .or_else(|| request.header(&format!("icy-{name}")))
            .unwrap_or("")
            .to_string()
    };
    let audio_info = ice("audio-info");
    let bitrate = ice("bitrate")
        .parse()
        .ok()
        .or_else(|| audio_info_field(&audio_info, "bitrate").and_then(|v| v.parse().ok()));
    StreamInfo {
        content_type: request
            .header("content-type")
            .unwrap_or("audio/mpeg")
            .to_string(),
        live: true,
        name: ice("name"),
        description: ice("description"),
        genre: ice("genre"),
        url: ice("url"),
        public: matches!(ice("public").as_str(), "1" | "true" | "yes"),
        bitrate,
        audio_info,
        title: String::new(),
        title_version: 0,
        source_agent: request.header("user-agent").unwrap_or("").to_string(),
        source_addr: peer,
        since: Some(SystemTime::now()),
    }
}

/// One `key=value` of `ice-audio-info` (`ice-samplerate=44100;ice-bitrate=128;…`).
fn audio_info_field<'a>(audio_info: &'a str, key: &str) -> Option<&'a str> {
    audio_info.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        let k = k.trim();
        (k.eq_ignore_ascii_case(key)
            || k.strip_prefix("ice-")
                .is_some_and(|k| k.eq_ignore_ascii_case(key)))
        .then_some(v.trim())
    })
}
