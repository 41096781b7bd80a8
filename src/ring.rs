//! The shared ring: one per mount, written only by the ingest core, read by every shard.
//!
//! Positions are absolute stream offsets (`u64`, never wrap in practice); the byte at offset
//! `p` lives at `p % capacity` in the mapping. The writer publishes whole chunks that start on
//! an audio frame boundary and records each chunk's start in an index, so a reader can be placed
//! at "now minus N bytes" on a frame boundary.
//!
//! Lapping is detected without locks, seqlock style: before overwriting, the writer raises
//! `reserved` (the end of the bytes it is about to write); after a reader copies `[from, to)` it
//! re-reads `reserved`, and the copy is good only if `reserved - capacity <= from`, i.e. no write
//! touched those bytes while they were copied. A reader never hands out bytes it has not
//! validated, so a lapped listener is never sent torn data.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

use crate::sys::RingMemory;

/// Chunk starts remembered for placing readers; at 400 ms chunks this covers about 27 minutes.
const CHUNK_INDEX_LEN: usize = 4096;

/// A reader asked for bytes the writer has already overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reader at offset {from} was lapped by the writer")]
pub struct Lapped {
    /// The offset the reader wanted.
    pub from: u64,
}

/// Read side of a mount's ring, shared by every shard.
pub struct Ring {
    /// The audio bytes.
    memory: RingMemory,
    /// Ring size in bytes; positions map to `pos % capacity`.
    capacity: u64,
    /// End of published data: readers may read everything below it.
    committed: AtomicU64,
    /// End of the region the writer may be overwriting right now; bytes below
    /// `reserved - capacity` are gone.
    reserved: AtomicU64,
    /// Start offsets of published chunks, slot `n % CHUNK_INDEX_LEN` for chunk number `n`.
    chunk_starts: Box<[AtomicU64]>,
    /// Number of chunks published so far.
    chunks: AtomicU64,
}

/// The single writer of a ring. Not `Clone`: holding it is the right to write.
pub struct RingWriter {
    /// The ring this handle writes.
    ring: Arc<Ring>,
}

impl Ring {
    /// Maps a ring of `capacity` bytes and returns it with its only writer.
    pub fn new(capacity: usize) -> std::io::Result<(Arc<Ring>, RingWriter)> {
        let memory = RingMemory::new(capacity)?;
        let ring = Arc::new(Ring {
            memory,
            capacity: capacity as u64,
            committed: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            chunk_starts: (0..CHUNK_INDEX_LEN).map(|_| AtomicU64::new(0)).collect(),
            chunks: AtomicU64::new(0),
        });
        Ok((ring.clone(), RingWriter { ring }))
    }

    /// Ring size in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// End of published data (the live edge).
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Number of chunks published so far.
    pub fn chunk_count(&self) -> u64 {
        self.chunks.load(Ordering::Acquire)
    }

    /// Oldest offset that may still be intact.
    pub fn oldest_valid(&self) -> u64 {
        self.reserved
            .load(Ordering::Acquire)
            .saturating_sub(self.capacity)
    }

    /// Copies `[from, from + dst.len())` into `dst` and validates it. The range must lie below
    /// `committed()`.
    pub fn read(&self, from: u64, dst: &mut [u8]) -> Result<(), Lapped> {
        let len = dst.len() as u64;
        debug_assert!(from + len <= self.committed(), "read past the live edge");
        if from < self.oldest_valid() {
            return Err(Lapped { from });
        }
        let start = (from % self.capacity) as usize;
        let first = dst.len().min(self.capacity as usize - start);
        let (head, tail) = dst.split_at_mut(first);
        self.memory.read_at(start, head);
        self.memory.read_at(0, tail);
        // Pairs with the writer's release fence: if the copy saw any byte of a later write,
        // the load below sees that write's `reserved`.
        fence(Ordering::Acquire);
        if from
            < self
                .reserved
                .load(Ordering::Relaxed)
                .saturating_sub(self.capacity)
        {
            return Err(Lapped { from });
        }
        Ok(())
    }

    /// Start of the chunk `n`, if it is still indexed and its bytes are still in the ring.
    fn chunk_start(&self, n: u64) -> Option<u64> {
        let start =
            self.chunk_starts[(n % CHUNK_INDEX_LEN as u64) as usize].load(Ordering::Acquire);
        // A slot reused by a newer chunk (n + k * LEN) reads as a later offset than its
        // successor; the callers' monotonic walk rejects it, and the chunk count re-check below
        // rejects slots overwritten during the walk.
        let count = self.chunks.load(Ordering::Acquire);
        if n >= count || count - n > CHUNK_INDEX_LEN as u64 - 1 || start < self.oldest_valid() {
            return None;
        }
        Some(start)
    }

    /// Where a new listener starts: the earliest chunk start at most `burst` bytes behind the
    /// live edge (at least the newest chunk, so a listener always gets one whole chunk when
    /// there is one). `None` when nothing has been published.
    pub fn join_position(&self, burst: u64) -> Option<u64> {
        let edge = self.committed();
        let count = self.chunk_count();
        if count == 0 {
            return None;
        }
        let mut best = self.chunk_start(count - 1)?;
        let mut n = count - 1;
        while n > 0 {
            n -= 1;
            match self.chunk_start(n) {
                Some(start) if start < best && edge - start <= burst => best = start,
                _ => break,
            }
        }
        Some(best)
    }

    /// The newest chunk start: where a skipped slow listener resumes.
    pub fn newest_chunk_start(&self) -> Option<u64> {
        self.chunk_count()
            .checked_sub(1)
            .and_then(|n| self.chunk_start(n))
    }

    /// The first chunk start strictly after `pos`: the next frame-aligned place a reader may
    /// leave the stream at. `None` when `pos` is inside the newest chunk or no longer indexed.
    pub fn chunk_boundary_after(&self, pos: u64) -> Option<u64> {
        let count = self.chunk_count();
        let mut n = count.checked_sub(1)?;
        let mut found = None;
        loop {
            let start = self.chunk_start(n)?;
            if start <= pos {
                return found;
            }
            found = Some(start);
            n = n.checked_sub(1)?;
        }
    }
}

impl RingWriter {
    /// The ring this writer feeds.
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// Publishes one chunk that begins on a frame boundary. Chunks larger than half of
    /// the ring are refused by configuration validation long before they get here.
    pub fn publish(&mut self, chunk: &[u8]) {
        let ring = &*self.ring;
        assert!(
            chunk.len() as u64 <= ring.capacity / 2,
            "chunk larger than half the ring"
        );
        if chunk.is_empty() {
            return;
        }
        let start = ring.committed.load(Ordering::Relaxed);
        let end = start + chunk.len() as u64;
        ring.reserved.store(end, Ordering::Relaxed);
        // Orders the `reserved` raise before the byte writes (pairs with the reader's acquire
        // fence after its copy).
        fence(Ordering::Release);
        let offset = (start % ring.capacity) as usize;
        let first = chunk.len().min(ring.capacity as usize - offset);
        ring.memory.write_at(offset, &chunk[..first]);
        ring.memory.write_at(0, &chunk[first..]);
        let n = ring.chunks.load(Ordering::Relaxed);
        ring.chunk_starts[(n % CHUNK_INDEX_LEN as u64) as usize].store(start, Ordering::Release);
        ring.committed.store(end, Ordering::Release);
        ring.chunks.store(n + 1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunk `n` is `len` bytes, each byte a function of its absolute offset and the chunk's
    /// first 8 bytes hold its start offset, so any torn or misplaced byte is detectable.
    fn chunk_bytes(start: u64, len: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len as u64).map(|i| pattern(start + i)).collect();
        v[..8].copy_from_slice(&start.to_le_bytes());
        v
    }

    fn pattern(pos: u64) -> u8 {
        (pos.wrapping_mul(31) ^ (pos >> 8)) as u8
    }

    #[test]
    fn publish_then_read_back_across_the_wrap() {
        let (ring, mut writer) = Ring::new(1000).unwrap();
        let mut pos = 0u64;
        for _ in 0..7 {
            let chunk = chunk_bytes(pos, 300);
            writer.publish(&chunk);
            let mut out = vec![0; 300];
            ring.read(pos, &mut out).unwrap();
            assert_eq!(out, chunk);
            pos += 300;
        }
        assert_eq!(ring.committed(), 2100);
        // 2100 written into 1000 bytes: offset 1099 is gone, 1100 still there.
        let mut one = [0u8; 1];
        assert_eq!(ring.read(1099, &mut one), Err(Lapped { from: 1099 }));
        assert!(ring.read(1210, &mut one).is_ok());
        assert_eq!(one[0], pattern(1210));
    }

    #[test]
    fn join_position_is_a_chunk_start_within_the_burst() {
        let (ring, mut writer) = Ring::new(10_000).unwrap();
        assert_eq!(ring.join_position(1000), None);
        for i in 0..10u64 {
            writer.publish(&chunk_bytes(i * 300, 300));
        }
        // Edge 3000; within 1000 bytes the earliest chunk start is 2100.
        assert_eq!(ring.join_position(1000), Some(2100));
        // A burst smaller than one chunk still gets the newest chunk.
        assert_eq!(ring.join_position(10), Some(2700));
        assert_eq!(ring.newest_chunk_start(), Some(2700));
        assert_eq!(ring.chunk_boundary_after(2150), Some(2400));
        assert_eq!(ring.chunk_boundary_after(2700), None);
    }

    #[test]
    fn join_position_never_points_at_overwritten_bytes() {
        let (ring, mut writer) = Ring::new(1000).unwrap();
        for i in 0..20u64 {
            writer.publish(&chunk_bytes(i * 250, 250));
        }
        let pos = ring.join_position(1_000_000).unwrap();
        assert!(pos >= ring.oldest_valid());
        let mut out = vec![0; (ring.committed() - pos) as usize];
        ring.read(pos, &mut out).unwrap();
    }

    /// A writer races with readers that deliberately fall behind: every read that is accepted
    /// must hold exactly the bytes that were published at that offset.
    #[test]
    fn concurrent_lapped_readers_never_see_torn_data() {
        let (ring, mut writer) = Ring::new(4096).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|r| {
                let ring = ring.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1500];
                    let (mut good, mut lapped) = (0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        let edge = ring.committed();
                        // Aim close to the oldest bytes so writes overtake the copy often.
                        let from = ring.oldest_valid() + (r as u64 * 97) % 512;
                        if from + buf.len() as u64 > edge {
                            continue;
                        }
                        match ring.read(from, &mut buf) {
                            Ok(()) => {
                                for (i, b) in buf.iter().enumerate() {
                                    let p = from + i as u64;
                                    // Skip the 8-byte headers, which hold chunk starts.
                                    if p % 100 >= 8 {
                                        assert_eq!(*b, pattern(p), "torn byte at {p}");
                                    }
                                }
                                good += 1;
                            }
                            Err(_) => lapped += 1,
                        }
                    }
                    (good, lapped)
                })
            })
            .collect();
        let mut pos = 0u64;
        for _ in 0..200_000 {
            writer.publish(&chunk_bytes(pos, 100));
            pos += 100;
        }
        stop.store(true, Ordering::Relaxed);
        let mut total_good = 0;
        for r in readers {
            let (good, _lapped) = r.join().unwrap();
            total_good += good;
        }
        assert!(total_good > 0, "readers never completed a read");
    }
}
