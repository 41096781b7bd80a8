//! The HTTP control plane: what players' widgets, operators and DJ software ask of the server
//! besides audio. Icecast's admin API ([`admin`]), the public status pages ([`status`]) and the
//! station page and admin console ([`web`]), served on the listen port (and the admin API on
//! the source port too). Counters they read come from [`crate::observability`].

pub mod admin;
pub mod status;
pub mod web;
