//! HLS output: RFC 8216 packed-audio segments cut from a mount's ring.
//!
//! A segment is a run of whole chunks of the ring (so it starts on a frame boundary) plus a
//! small ID3 tag in front. The ingest core knows every frame's sample count, so it keeps the
//! segment list ([`segment`]) the way it keeps the ring: one writer, lock-free readers. Shards
//! render the playlist ([`playlist`]) from that list and send segments as the ID3 tag
//! ([`id3`]) followed by validated reads of the ring (`shard::hls`).

pub mod id3;
pub mod playlist;
pub mod segment;
