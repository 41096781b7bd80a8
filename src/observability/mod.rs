//! What operators see of the server's work: per-shard counters, Prometheus metrics and the
//! access log. The pages and the admin API that show them are in [`crate::api`].

pub mod access_log;
pub mod metrics;
pub mod stats;
