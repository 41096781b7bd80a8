//! Redirect when full: a listener refused for lack of room is sent to an edge server, in
//! turn, with the same mount path and query, instead of a 503. Relays are not redirected:
//! an edge pulling from here must get the stream or an error, never another edge.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::http::{response, Request};

/// Which edge the next redirect goes to; shared by every shard, touched only on a refusal.
static NEXT_EDGE: AtomicUsize = AtomicUsize::new(0);

/// Whether the request comes from a relay: cycast's own relays and Icecast's (including
/// Icecast-KH) name their server in `User-Agent`.
pub fn is_relay(request: &Request) -> bool {
    request
        .header("user-agent")
        .is_some_and(|agent| agent.starts_with("cycast/") || agent.starts_with("Icecast"))
}

/// The 302 to the next of `edges` for `request`, or `None` when there is nowhere to send it
/// (no edges, or a relay asked).
pub fn to_edge(edges: &[String], request: &Request) -> Option<Vec<u8>> {
    if edges.is_empty() || is_relay(request) {
        return None;
    }
    let edge = &edges[NEXT_EDGE.fetch_add(1, Ordering::Relaxed) % edges.len()];
    let mut location = format!("{}{}", edge.trim_end_matches('/'), request.path);
    if !request.query.is_empty() {
        location.push('?');
        location.push_str(&request.query);
    }
    Some(response(
        302,
        "Found",
        &[("Location", &location)],
        "Server full: try the edge server\n",
    ))
}
