//! cycast: an internet radio streaming server, a drop-in for the Icecast ecosystem.
//!
//! # Layout
//!
//! Modules follow one byte of audio from a source socket to a listener socket:
//!
//! - [`config`], [`cli`]: the HCL configuration (every key documented, defaults embedded) and the
//!   command-line overrides merged on top; [`config::check_mount_name`] judges mount names.
//! - [`ingest`]: the ingest core. Accepts sources ([`ingest::source`]) and relays
//!   ([`ingest::relay`]), plays playlists when nobody is live ([`ingest::playlist`], paced by
//!   [`ingest::pacing`], titles from [`ingest::id3`] tags), cuts the bytes into whole frames
//!   ([`ingest::format`]: MP3 [`ingest::mp3`], AAC [`ingest::adts`], Ogg [`ingest::ogg`], with
//!   the frame lock-on and input buffer they share in [`ingest::lockon`]) and publishes
//!   frame-aligned chunks to the mount's ring ([`ingest::feed`]), waking every shard.
//! - [`ring`]: the memory-mapped ring of one mount: a single writer, lock-free readers that
//!   detect being lapped by re-reading the writer's `reserved` offset. [`mount`] names the rings.
//! - [`shard`]: one executor per core. Accepts listeners on a SO_REUSEPORT socket, answers their
//!   request ([`shard::listener`]) and feeds them from the ring ([`shard::fanout`]), with ICY
//!   metadata interleaved for players that ask ([`shard::icy`]). A listener is counted by the
//!   [`shard::admission::Admission`] it holds; [`shard::auth`] asks URL-auth backends first.
//! - [`icy`]: the ICY metadata wire format, a leaf both the admin API and the shards use: the
//!   title charsets ([`icy::Charset`], the one list of accepted names) and the metadata block.
//! - [`api`]: the HTTP control plane on top: Icecast's admin API ([`api::admin`]), the public
//!   status pages ([`api::status`]), the station page and admin console ([`api::web`]).
//! - [`hls`]: HLS output: the segment list the ingest core keeps beside each ring, the ID3
//!   tags and playlists; the shards serve them ([`shard::hls`]).
//! - [`observability`]: per-shard and per-mount counters, Prometheus metrics and the access log.
//! - [`state`]: what every core shares ([`state::Shared`]: configuration in force, mounts,
//!   counters, shutdown flag, the control plane's entry points) and the SIGHUP re-read hook;
//!   below the executors, the status pages and [`reload`], so none of them imports [`server`]
//!   and the ports reach [`api`] only through [`state::ControlPlane`].
//! - [`reload`]: SIGHUP re-reads the configuration without dropping anyone.
//! - [`server`]: binds the sockets, creates the executors and wires them together.
//! - [`tls`]: HTTPS on the shards (rustls), the record path the fan-out encrypts through.
//! - [`control`]: messages between cores (new data, operator actions).
//! - [`auth`]: slowing down password guessing; listener authentication by URL ([`auth::url`]).
//! - [`http`]: request parsing and responses shared by both ports; [`sys`]: the only `unsafe`
//!   besides the fan-out's io_uring ([`shard::sys`]) and the ingest core's MP3 decoder
//!   ([`ingest::sys`], for dead-air detection in [`ingest::silence`]).
//! - [`url`]: `http://` and `https://` URLs with optional credentials, for relays, auth backends and
//!   `cycast-load`.
//!
//! `cycast-load`, the load generator and real-time source, is its own program under
//! `src/bin/cycast-load/` (its epoll `unsafe` in its `sys` module); it uses only the library's
//! frame parser ([`ingest::mp3`]), URL parser ([`url`]) and ICY demultiplexer ([`icy`]).

// `unsafe` only in the `sys` modules, each of which opts back in.
#![deny(unsafe_code)]

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod hls;
pub mod http;
pub mod icy;
pub mod ingest;
pub mod logging;
pub mod mount;
pub mod observability;
pub mod reload;
pub mod ring;
pub mod server;
pub mod shard;
pub mod state;
#[allow(unsafe_code)]
pub mod sys;
pub mod tls;
pub mod url;
