//! What operators and station widgets see: per-shard counters and the public status pages.

pub mod stats;
pub mod status;
