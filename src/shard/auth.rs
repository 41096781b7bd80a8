//! The listener's way past its mount's `auth` block: the backend is asked while the listener
//! waits in its own task, so the shard goes on streaming to everyone else.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ShardContext;
use crate::auth::url::{check_listener, Decision, ListenerParams, ListenerSession};
use crate::config::Config;
use crate::http::{response, unauthorized, Request};

/// What an admitted listener carries from authentication into the fan-out.
#[derive(Debug, Default)]
pub struct Pass {
    /// Its id, chosen before the backend is asked (`client=`).
    pub id: u64,
    /// What to tell the backend when it leaves.
    pub session: Option<Box<ListenerSession>>,
    /// The most it may stay, when the backend set a limit.
    pub time_limit: Option<Duration>,
}

/// Authenticates a listener of the mount `request` names: its pass, or the answer to send
/// instead (401 refused, 503 too many checks in flight).
pub async fn gate(
    ctx: &ShardContext,
    cfg: &Config,
    request: &Request,
    ip: IpAddr,
) -> Result<Pass, Vec<u8>> {
    let id = ctx.shared.next_listener_id.fetch_add(1, Ordering::Relaxed);
    let Some(auth) = cfg.auth_for(&request.path) else {
        return Ok(Pass {
            id,
            ..Pass::default()
        });
    };
    let params = ListenerParams::from_request(request, auth, id, ip);
    match check_listener(cfg, ctx.shared.listen_port, auth, &params).await {
        Decision::Admit(time_limit) => Ok(Pass {
            id,
            session: Some(Box::new(ListenerSession {
                mount: request.path.clone(),
                params,
            })),
            time_limit,
        }),
        Decision::Refuse => Err(unauthorized("You need to authenticate\n")),
        Decision::Busy => {
            tracing::warn!(
                shard = ctx.id,
                "listener refused: too many auth requests in flight"
            );
            Err(response(
                503,
                "Service Unavailable",
                &[("Retry-After", "5")],
                "Authentication busy, try again\n",
            ))
        }
    }
}
