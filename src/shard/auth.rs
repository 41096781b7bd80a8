//! The listener's way past its mount's `auth` block: the backend is asked while the listener
//! waits in its own task, so the shard goes on streaming to everyone else.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ShardContext;
use crate::auth::url::{check_listener, Decision, ListenerParams, ListenerSession, Slot};
use crate::auth::users;
use crate::config::{AuthConfig, Config, OnError};
use crate::http::{response, unauthorized, Request};
use crate::logging::escape;

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
    if !auth.users_file.is_empty() {
        local_account(ctx, auth, request).await?;
    }
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
        Decision::Refuse => Err(refused()),
        Decision::Busy => Err(busy(ctx)),
    }
}

/// Checks the listener's Basic credentials against `users_file`.
async fn local_account(
    ctx: &ShardContext,
    auth: &AuthConfig,
    request: &Request,
) -> Result<(), Vec<u8>> {
    let Some((user, password)) = request.basic_credentials() else {
        return Err(refused());
    };
    let Some(_slot) = Slot::take(auth.max_pending) else {
        return Err(busy(ctx));
    };
    match users::check(&auth.users_file, &user, &password).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::info!(shard = ctx.id, user = %escape(&user), mount = %escape(&request.path), "listener refused: wrong user or password");
            Err(refused())
        }
        Err(e) => {
            tracing::warn!(shard = ctx.id, path = %auth.users_file, on_error = ?auth.on_error, "cannot read users_file: {e}");
            match auth.on_error {
                OnError::Allow => Ok(()),
                OnError::Deny => Err(refused()),
            }
        }
    }
}

/// The answer to a listener that may not listen.
fn refused() -> Vec<u8> {
    unauthorized("You need to authenticate\n")
}

/// The answer to a listener arriving while `max_pending` checks are in flight.
fn busy(ctx: &ShardContext) -> Vec<u8> {
    tracing::warn!(
        shard = ctx.id,
        "listener refused: too many auth requests in flight"
    );
    response(
        503,
        "Service Unavailable",
        &[("Retry-After", "5")],
        "Authentication busy, try again\n",
    )
}
