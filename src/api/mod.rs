//! The HTTP control plane: what players' widgets, operators and DJ software ask of the server
//! besides audio. Icecast's admin API ([`admin`]), the public status pages ([`status`]) and the
//! station page and admin console ([`web`]), served on the listen port (and the admin API on
//! the source port too). Counters they read come from [`crate::observability`].

pub mod admin;
pub mod status;
pub mod web;

use crate::control::Control;
use crate::http::Request;
use crate::state::{ControlPlane, Shared};

/// The control plane's entry points, for [`Shared::control_plane`].
pub const CONTROL_PLANE: ControlPlane = ControlPlane {
    pages,
    admin: admin::handle,
};

/// Everything the listen port serves besides audio, metrics and HLS: the station page and
/// console, then the admin API, then the status documents.
fn pages(shared: &Shared, request: &Request, control: &dyn Control) -> Option<Vec<u8>> {
    web::page(shared, request)
        .or_else(|| admin::handle(shared, request, control))
        .or_else(|| status::page(shared, request))
}
