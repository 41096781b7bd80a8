//! A listener connection's request: the stream itself (`GET`/`HEAD` of a mount), CORS
//! preflight, and the public status pages. Everything here runs once per connection; the
//! per-chunk work is in `fanout`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use glommio::net::TcpStream;

use super::admission::Admission;
use super::fanout::Listener;
use super::icy::IcyCursor;
use super::ShardContext;
use crate::config::Config;
use crate::http::{client_addr, read_or_reject, response, server_id, Request};
use crate::logging::escape;
use crate::mount::Mount;
use crate::observability::access_log::AccessLog;
use crate::observability::metrics;
use crate::tls::Conn;
use crate::tls::Session;

/// CORS headers on every listener response; browsers' players need them.
pub(super) const CORS: &str = "Access-Control-Allow-Origin: *\r\n\
Access-Control-Allow-Headers: Origin, Accept, X-Requested-With, Content-Type, Icy-MetaData, Range\r\n\
Access-Control-Allow-Methods: GET, OPTIONS, HEAD\r\n\
Access-Control-Expose-Headers: icy-br, icy-name, icy-description, icy-genre, icy-url, icy-pub, icy-metaint\r\n";

/// Serves one connection on the listen port.
pub async fn handle(ctx: Rc<ShardContext>, mut stream: TcpStream) {
    let accepted = Instant::now();
    let cfg = ctx.shared.config();
    let Some(request) = read_or_reject(&mut stream, &cfg).await else {
        return;
    };
    serve(ctx, Conn { stream, tls: None }, request, accepted).await
}

/// Serves one connection on the HTTPS port: the handshake and request head within the same
/// size and time limits as on the plain port, then exactly what the plain port answers.
pub async fn handle_tls(ctx: Rc<ShardContext>, mut stream: TcpStream) {
    let accepted = Instant::now();
    let Some(certificates) = &ctx.shared.tls else {
        return;
    };
    let cfg = ctx.shared.config();
    let accepted_tls = Session::accept(
        &mut stream,
        certificates.server_config(),
        cfg.limits.max_header_bytes,
        cfg.header_timeout(),
    )
    .await;
    match accepted_tls {
        Ok((session, request)) => {
            let conn = Conn {
                stream,
                tls: Some(session),
            };
            serve(ctx, conn, request, accepted).await
        }
        // Nothing can be answered in the clear on this port; the peer just sees the close.
        Err(e) => tracing::debug!(peer = ?stream.peer_addr().ok(), "HTTPS request refused: {e}"),
    }
}

async fn serve(ctx: Rc<ShardContext>, mut stream: Conn, request: Request, accepted: Instant) {
    let cfg = ctx.shared.config();
    let Ok(peer) = stream.stream.peer_addr() else {
        return;
    };
    let client = SocketAddr::new(
        client_addr(peer.ip(), &request, &cfg.server.trusted_proxies),
        peer.port(),
    );
    let redirect = match (&cfg.tls, &stream.tls) {
        // Pages move to HTTPS; streams stay, for players that only speak HTTP.
        (Some(tls), None)
            if tls.redirect_pages
                && matches!(request.method.as_str(), "GET" | "HEAD")
                && ctx.shared.mounts.find(&request.path).is_none() =>
        {
            crate::tls::redirect_to_https(&request, ctx.shared.tls_port)
        }
        _ => None,
    };
    let routed = match redirect {
        Some(answer) => Route::Reply(answer),
        None => route(&ctx, &cfg, &request),
    };
    match routed {
        Route::Reply(answer) => reply(&ctx, &mut stream, &request, client, &answer).await,
        Route::Hls(answer) => {
            super::hls::respond(&ctx, &mut stream, answer, &request, client.ip()).await;
        }
        // The place stays taken while the auth backend is asked, so an admitted listener
        // always fits; a refusal drops the admission, which gives it back.
        Route::Stream { admission, metaint } => {
            match super::auth::gate(&ctx, &cfg, &request, client.ip()).await {
                Ok(pass) => {
                    let started = Started { accepted, client };
                    start_stream(&ctx, stream, admission, &request, metaint, started, pass).await
                }
                Err(answer) => {
                    drop(admission);
                    reply(&ctx, &mut stream, &request, client, &answer).await
                }
            }
        }
    }
}

/// Sends a complete response (after the login-failure delay when it refuses credentials)
/// and logs it.
async fn reply(
    ctx: &ShardContext,
    stream: &mut Conn,
    request: &Request,
    client: SocketAddr,
    answer: &[u8],
) {
    if crate::auth::is_unauthorized(answer) {
        let delay = ctx.shared.auth_failures.failed(client.ip(), "listen");
        if !delay.is_zero() {
            glommio::timer::sleep(delay).await;
        }
    }
    let _ = stream.write_all(answer).await;
    if let Some(log) = &ctx.access_log {
        let status = answer
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok())
            .unwrap_or(0);
        let body = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |p| answer.len() - p - 4);
        log.write(
            &AccessLog::prefix(client.ip(), request),
            status,
            body as u64,
            &AccessLog::suffix(request),
            None,
        );
    }
}

/// What a request gets.
enum Route {
    /// A complete response.
    Reply(Vec<u8>),
    /// An HLS playlist or segment.
    Hls(super::hls::Answer),
    /// The audio stream of a mount.
    Stream {
        /// The listener's place in the counts, on the mount it gets.
        admission: Admission,
        /// ICY metadata interval, when the listener asked for it.
        metaint: Option<usize>,
    },
}

/// When and from where a listener came.
struct Started {
    /// When its connection was accepted.
    accepted: Instant,
    /// Its address.
    client: SocketAddr,
}

fn route(ctx: &Rc<ShardContext>, cfg: &Config, request: &Request) -> Route {
    let head_only = match request.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        "OPTIONS" => {
            let answer = format!(
                "HTTP/1.0 204 No Content\r\nServer: {}\r\n{CORS}Access-Control-Max-Age: 86400\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                server_id()
            );
            return Route::Reply(answer.into_bytes());
        }
        _ => {
            return Route::Reply(response(
                405,
                "Method Not Allowed",
                &[("Allow", "GET, HEAD, OPTIONS")],
                "Method not allowed\n",
            ));
        }
    };
    let page = if !cfg.advanced.metrics_path.is_empty() && request.path == cfg.advanced.metrics_path
    {
        Some(metrics::scrape_public(&ctx.shared.metrics, cfg))
    } else {
        (ctx.shared.control_plane.pages)(&ctx.shared, request, ctx.as_ref())
    };
    if let Some(mut answer) = page {
        if head_only {
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                answer.truncate(end + 4);
            }
        }
        return Route::Reply(answer);
    }
    let not_found = || {
        Route::Reply(response(
            404,
            "Not Found",
            &[],
            "The file you requested could not be found\n",
        ))
    };
    let Some(requested) = ctx.shared.mounts.find(&request.path) else {
        return super::hls::route(ctx, cfg, request, head_only).map_or_else(not_found, Route::Hls);
    };
    // A mount a source created has nothing to play once the source left (no playlist, no
    // fallback): Icecast answers 404 too. Listeners already on it stay until they leave.
    if !cfg.is_configured(&requested.name) && !requested.info().live {
        return not_found();
    }
    let edges = cfg.redirect_when_full(&requested.name);
    // A mount nothing feeds serves its fallback's audio.
    let mount = ctx.shared.mounts.on_air(cfg, requested);
    let metaint = wants_icy(cfg, request).then_some(cfg.icy_metaint(&mount.name));
    if head_only {
        return Route::Reply(stream_headers(cfg, &mount, metaint).into_bytes());
    }
    let Some(admission) = Admission::admit(&ctx.shared, &mount) else {
        if mount.is_removed() {
            return not_found();
        }
        if let Some(redirect) = super::redirect::to_edge(edges, request) {
            tracing::info!(shard = ctx.id, mount = %escape(&mount.name), "listener redirected: server full");
            return Route::Reply(redirect);
        }
        tracing::info!(shard = ctx.id, mount = %escape(&mount.name), "listener refused: server full");
        return Route::Reply(response(
            503,
            "Service Unavailable",
            &[],
            "Server full: too many listeners\n",
        ));
    };
    Route::Stream { admission, metaint }
}

/// Whether the listener asked for ICY metadata and the server offers it.
fn wants_icy(cfg: &Config, request: &Request) -> bool {
    cfg.metadata.enable_icy
        && request
            .header("icy-metadata")
            .is_some_and(|v| v.trim() == "1")
}

async fn start_stream(
    ctx: &ShardContext,
    mut stream: Conn,
    mut admission: Admission,
    request: &Request,
    metaint: Option<usize>,
    Started { accepted, client }: Started,
    pass: super::auth::Pass,
) {
    let cfg = ctx.shared.config();
    admission.authenticated(pass.session, accepted);
    let mount = admission.mount().clone();
    // Returning early drops the admission, which counts the listener out.
    if stream
        .write_all(stream_headers(&cfg, &mount, metaint).as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let socket = match crate::sys::detach_stream(&stream.stream) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::warn!(shard = ctx.id, "cannot hand listener to the fan-out: {e}");
            return;
        }
    };
    let tls = stream.tls.map(Box::new);
    drop(stream.stream);
    let _ = socket.set_nodelay(true);
    // A bounded send buffer, set before the burst goes out, so a listener that stops reading
    // shows as lag within seconds instead of parking megabytes in the kernel. Linux doubles
    // the value asked for; the configured size is the doubled one.
    let send_buffer = cfg.send_buffer(&mount.name, mount.info().bitrate);
    if let Err(e) = socket2::SockRef::from(&socket).set_send_buffer_size(send_buffer / 2) {
        tracing::debug!(shard = ctx.id, "cannot limit a listener's send buffer: {e}");
    }
    let listener = Listener {
        admission,
        socket,
        cursor: 0,
        aligned: true,
        icy: metaint.map(IcyCursor::new),
        headers: None,
        move_to: None,
        id: pass.id,
        peer: client,
        log_line: ctx.access_log.as_ref().map(|_| {
            Box::new((
                AccessLog::prefix(client.ip(), request),
                AccessLog::suffix(request),
            ))
        }),
        user_agent: request.header("user-agent").unwrap_or("").into(),
        connected_at: accepted,
        bytes_sent: 0,
        in_intro: false,
        // An instant too far ahead to represent is no limit; the backend's limit counts from
        // its answer, and the shorter one wins.
        deadline: cfg
            .max_listener_duration(&mount.name)
            .and_then(|limit| accepted.checked_add(limit))
            .into_iter()
            .chain(
                pass.time_limit
                    .and_then(|limit| Instant::now().checked_add(limit)),
            )
            .min(),
        tls,
    };
    tracing::debug!(shard = ctx.id, id = listener.id, peer = %client, mount = %escape(&mount.name), "listener joined");
    ctx.fanout.borrow_mut().join(listener);
}

/// The response head of a stream: Icecast's headers, never chunked, no length.
pub fn stream_headers(cfg: &Config, mount: &Mount, metaint: Option<usize>) -> String {
    let info = mount.info();
    let meta = cfg.station(&mount.name);
    let pick = |from_source: &str, configured: &str| {
        clean(if from_source.is_empty() {
            configured
        } else {
            from_source
        })
    };
    let content_type = if info.content_type.is_empty() {
        "audio/mpeg"
    } else {
        &info.content_type
    };
    let mut head = format!(
        "HTTP/1.0 200 OK\r\nServer: {}\r\nContent-Type: {}\r\nCache-Control: no-cache, no-store\r\nPragma: no-cache\r\n\
Expires: Mon, 26 Jul 1997 05:00:00 GMT\r\nConnection: close\r\n{CORS}",
        server_id(),
        clean(content_type),
    );
    if let Some(br) = info.bitrate {
        head.push_str(&format!("icy-br:{br}\r\n"));
    }
    if let Some(metaint) = metaint {
        head.push_str(&format!("icy-metaint:{metaint}\r\n"));
    }
    head.push_str(&format!(
        "icy-name:{}\r\nicy-description:{}\r\nicy-genre:{}\r\nicy-url:{}\r\nicy-pub:{}\r\n\r\n",
        pick(&info.name, &meta.name),
        pick(&info.description, &meta.description),
        pick(&info.genre, &meta.genre),
        pick(&info.url, &meta.url),
        u8::from(info.public),
    ));
    head
}

/// A header value with line breaks and other control characters removed, so a source cannot
/// inject headers into listener responses.
fn clean(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}
