//! A mount's feed: the ingest-side owner of the ring writer. Whoever is on air (a live source,
//! the playlist, or silence) hands it whole audio frames; it gathers them into chunks of about
//! `broadcaster.chunk_ms` of audio, publishes each chunk to the ring and wakes the shards.
//!
//! Chunk size sets how often every listener gets a send, and one send costs about the same
//! whatever its size, so fewer, larger chunks are what keeps the server cheap.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::ConnectedSender;

use crate::config::hls::HlsConfig;
use crate::control::ShardMessage;
use crate::hls::segment::{FrameTiming, SegmentWriter};
use crate::mount::{Mount, MountId};
use crate::ring::RingWriter;

/// The line from the ingest core to every shard.
pub struct ShardWakers {
    /// One sender per shard.
    senders: Vec<ConnectedSender<ShardMessage>>,
}

impl ShardWakers {
    /// Wraps the connected senders, one per shard.
    pub fn new(senders: Vec<ConnectedSender<ShardMessage>>) -> Self {
        Self { senders }
    }

    /// Tells every shard that `mount` has new data. A full queue means the shard already has
    /// wake-ups pending and will read up to the live edge anyway, so nothing is lost.
    pub fn notify(&self, mount: MountId) {
        for sender in &self.senders {
            let _ = sender.try_send(ShardMessage::Published(mount));
        }
    }

    /// Sends an operator action to every shard.
    pub fn broadcast(&self, message: ShardMessage) {
        for (shard, sender) in self.senders.iter().enumerate() {
            if sender.try_send(message).is_err() {
                tracing::warn!(shard, ?message, "shard queue full; action dropped");
            }
        }
    }
}

/// Gathers frames into frame-aligned chunks and publishes them.
pub struct MountFeed {
    /// The mount this feed writes.
    pub mount: Arc<Mount>,
    /// The ring's only writer.
    writer: RingWriter,
    /// Frames not yet published; always starts on a frame boundary.
    pending: Vec<u8>,
    /// Audio duration of `pending`, in microseconds (0 for unframed formats).
    pending_micros: u64,
    /// When the oldest pending byte arrived, to bound latency when a source trickles.
    pending_since: Option<Instant>,
    /// Largest chunk in bytes (`broadcaster.chunk_size`).
    chunk_bytes: usize,
    /// Target chunk duration (`broadcaster.chunk_ms`).
    chunk_micros: u64,
    /// Wakes the shards after each publish.
    wakers: Rc<ShardWakers>,
    /// Gets a copy of each published chunk when the mount is recorded (`dump_file`).
    recorder: Option<super::record::Recorder>,
    /// Cuts the mount's HLS segments from the frames as they go by.
    segments: SegmentWriter,
}

impl MountFeed {
    /// A feed for `mount` that publishes chunks of up to `chunk_bytes` bytes or `chunk` of audio.
    pub fn new(
        mount: Arc<Mount>,
        writer: RingWriter,
        chunk_bytes: usize,
        chunk: Duration,
        wakers: Rc<ShardWakers>,
        hls: HlsConfig,
    ) -> Self {
        let segments = SegmentWriter::new(hls, &mount.hls, now_ms());
        Self {
            segments,
            mount,
            writer,
            pending: Vec::with_capacity(chunk_bytes),
            pending_micros: 0,
            pending_since: None,
            chunk_bytes,
            chunk_micros: chunk.as_micros() as u64,
            wakers,
            recorder: None,
        }
    }

    /// Records every chunk published from now on.
    pub fn record_to(&mut self, recorder: super::record::Recorder) {
        self.recorder = Some(recorder);
    }

    /// Adds one whole MP3 or AAC frame: besides the chunk, it goes into the current HLS
    /// segment, which ends (on a chunk boundary) before the frame when it is long enough or
    /// the frame's parameters differ.
    pub fn push_timed_frame(&mut self, frame: &[u8], timing: FrameTiming, micros: u64) {
        if self.segments.enabled() {
            if self.segments.must_cut_before(&timing) {
                self.flush();
                self.segments
                    .close(self.published_end(), &self.mount.hls, now_ms());
            }
            if !self.segments.is_open() {
                let start = self.published_end() + self.pending.len() as u64;
                let title = self.mount.info().title.clone();
                self.segments.open(start, &timing, &title, now_ms());
            }
            self.segments.add(&timing);
        }
        self.append(frame, micros);
    }

    /// Adds one whole frame (an Ogg page) lasting `micros`; publishes when the chunk is full.
    pub fn push_frame(&mut self, frame: &[u8], micros: u64) {
        self.segments.interrupt();
        self.append(frame, micros);
    }

    fn append(&mut self, frame: &[u8], micros: u64) {
        if !self.pending.is_empty() && self.pending.len() + frame.len() > self.chunk_bytes {
            self.flush();
        }
        if self.pending.is_empty() {
            self.pending_since = Some(Instant::now());
        }
        self.pending.extend_from_slice(frame);
        self.pending_micros += micros;
        if self.pending_micros >= self.chunk_micros || self.pending.len() >= self.chunk_bytes {
            self.flush();
        }
    }

    /// Adds bytes of a format the server does not frame, published by size alone.
    pub fn push_unframed(&mut self, mut bytes: &[u8]) {
        self.segments.interrupt();
        while !bytes.is_empty() {
            if self.pending.is_empty() {
                self.pending_since = Some(Instant::now());
            }
            let take = bytes.len().min(self.chunk_bytes - self.pending.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() >= self.chunk_bytes {
                self.flush();
            }
        }
    }

    /// Time left before pending data must go out even though the chunk is not full.
    pub fn flush_due(&self) -> Option<Duration> {
        let since = self.pending_since?;
        let limit = Duration::from_micros(self.chunk_micros);
        Some(limit.saturating_sub(since.elapsed()))
    }

    /// Publishes whatever is pending and wakes the shards.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.writer.publish(&self.pending);
        if let Some(recorder) = &mut self.recorder {
            recorder.record(&self.pending);
        }
        self.mount
            .bytes_in
            .fetch_add(self.pending.len() as u64, Ordering::Relaxed);
        self.pending.clear();
        self.pending_micros = 0;
        self.pending_since = None;
        self.wakers.notify(self.mount.id);
    }

    /// Stream offset just past everything published so far.
    pub fn published_end(&self) -> u64 {
        self.writer.ring().committed()
    }
}

/// Wall clock in Unix milliseconds, for segment dates.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
