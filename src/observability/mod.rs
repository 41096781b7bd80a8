//! What operators and station widgets see: per-shard counters and the public status pages.

pub mod access_log;
pub mod admin;
pub mod metrics;
pub mod stats;
pub mod status;
pub mod web;
