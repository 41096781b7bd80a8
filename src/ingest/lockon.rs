//! Machinery the framers share: a bounded input buffer with skip and resync accounting
//! (`SyncBuffer`, used by all of them) and the lock-on logic of the formats whose frames
//! start with a 0xFF sync byte and a header too weak to trust alone (`SyncFramer`, for MP3
//! and ADTS).
//!
//! Ogg uses only the buffer: its pages carry a CRC, so a page is trusted as soon as it is
//! complete, without the successor check that MPEG-style headers need.

use std::marker::PhantomData;

/// Input bytes not yet handed out, with counters for what was thrown away.
///
/// Keeps at most the latest `push` plus a bounded carry-over, so a caller that never drains
/// cannot grow it without bound, and never copies more than that carry-over per push.
#[derive(Debug, Default)]
pub(crate) struct SyncBuffer {
    /// Received bytes not yet handed out or skipped, from `start`.
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    start: usize,
    /// No more input will arrive: undecidable bytes are garbage.
    finished: bool,
    /// Inside a run of garbage (one run counts as one resync).
    searching: bool,
    /// Bytes discarded as not being a unit of the stream.
    skipped: u64,
    /// Garbage runs seen.
    resyncs: u64,
}

impl SyncBuffer {
    /// Appends `input`, keeping at most `max_carry` unconsumed bytes from before it. Returns
    /// whether old bytes had to be dropped (as garbage) to stay under that cap.
    #[inline]
    pub(crate) fn push(&mut self, input: &[u8], max_carry: usize) -> bool {
        if input.is_empty() {
            return false;
        }
        if self.start > 0 {
            // Carry-over is normally under one unit, so this copy is cheap.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let excess = self.buf.len().saturating_sub(max_carry);
        if excess > 0 {
            self.buf.drain(..excess);
            self.note_garbage(excess);
        }
        self.buf.extend_from_slice(input);
        excess > 0
    }

    /// The unconsumed bytes.
    #[inline]
    pub(crate) fn avail(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// `len` bytes at offset `at` of the buffer, as returned by [`take`](Self::take).
    #[inline]
    pub(crate) fn get(&self, at: usize, len: usize) -> &[u8] {
        &self.buf[at..at + len]
    }

    /// Whether [`finish`](Self::finish) was called since the last reset.
    #[inline]
    pub(crate) fn finished(&self) -> bool {
        self.finished
    }

    /// Consumes a verified unit of `len` bytes at the front, ending any garbage run; returns
    /// its offset for [`get`](Self::get).
    #[inline]
    pub(crate) fn take(&mut self, len: usize) -> usize {
        let at = self.start;
        self.start += len;
        self.searching = false;
        at
    }

    /// Discards up to `max` buffered bytes at the front as skipped (not garbage); returns how
    /// many were there to discard.
    #[inline]
    pub(crate) fn skip(&mut self, max: u64) -> u64 {
        let n = max.min(self.avail().len() as u64);
        self.start += n as usize;
        self.skipped += n;
        n
    }

    /// Counts `n` bytes dropped without going through the buffer, or already consumed.
    #[inline]
    pub(crate) fn count_skipped(&mut self, n: u64) {
        self.skipped += n;
    }

    /// Something recognised (e.g. a tag) ends the current garbage run.
    #[inline]
    pub(crate) fn end_search(&mut self) {
        self.searching = false;
    }

    /// Drops the front byte and everything after it up to the next byte `candidate` accepts
    /// (one that could start something recognisable), as garbage.
    #[inline]
    pub(crate) fn drop_garbage(&mut self, candidate: impl Fn(u8) -> bool) {
        let avail = self.avail();
        let n = 1 + avail[1..]
            .iter()
            .position(|&b| candidate(b))
            .unwrap_or(avail.len() - 1);
        self.start += n;
        self.note_garbage(n);
    }

    /// Drops `n` buffered bytes at the front as garbage (a whole unit found out of place).
    #[inline]
    pub(crate) fn drop_front(&mut self, n: usize) {
        self.start += n;
        self.note_garbage(n);
    }

    /// Counts `n` garbage bytes; the first of a run counts a resync.
    #[inline]
    fn note_garbage(&mut self, n: usize) {
        self.skipped += n as u64;
        if !self.searching {
            self.searching = true;
            self.resyncs += 1;
        }
    }

    /// Marks end of input: what is still undecidable is garbage.
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }

    /// Bytes discarded so far.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Garbage runs seen so far.
    pub(crate) fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Drops buffered data (counted as skipped) and the end-of-input mark; keeps counters.
    pub(crate) fn reset(&mut self) {
        self.skipped += self.avail().len() as u64;
        self.buf.clear();
        self.start = 0;
        self.finished = false;
        self.searching = false;
    }

    /// Allocated size, for tests of the memory bound.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// Total length of the ID3v2 tag at the start of `avail` (non-empty): `Ok(None)` if more bytes
/// are needed to tell, `Err(())` if it is not a tag.
#[inline]
pub(crate) fn id3v2_len(avail: &[u8]) -> Result<Option<u64>, ()> {
    let n = avail.len().min(3);
    if avail[..n] != b"ID3"[..n] {
        return Err(());
    }
    if avail.len() < 10 {
        return Ok(None);
    }
    let (ver, rev, flags, size) = (avail[3], avail[4], avail[5], &avail[6..10]);
    if !(2..=4).contains(&ver) || rev == 0xFF || size.iter().any(|&x| x & 0x80 != 0) {
        return Err(());
    }
    let size = (size[0] as u64) << 21 | (size[1] as u64) << 14 | (size[2] as u64) << 7;
    let size = size | avail[9] as u64;
    let footer = if ver == 4 && flags & 0x10 != 0 { 10 } else { 0 };
    Ok(Some(10 + footer + size))
}

/// A frame format for [`SyncFramer`]: frames start with a 0xFF sync byte and a fixed-size
/// header giving their length; anything else at a frame boundary may be a tag.
pub trait SyncFormat {
    /// A parsed frame header.
    type Header: Copy;
    /// Bytes a header needs; also how much of the successor is checked.
    const HEADER_LEN: usize;
    /// Cap on the carry-over kept across pushes (see [`SyncBuffer::push`]).
    const MAX_CARRY: usize;
    /// Parses the header at the start of `bytes`.
    fn parse(bytes: &[u8]) -> Option<Self::Header>;
    /// Whole frame length, header included.
    fn frame_len(h: &Self::Header) -> usize;
    /// Whether `next` may follow `h` in one stream (fields fixed for a stream agree).
    fn same_stream(next: &Self::Header, h: &Self::Header) -> bool;
    /// Whether `b` may start a frame or a tag: garbage is dropped up to the next such byte.
    fn is_candidate(b: u8) -> bool;
    /// Total length of the tag at the start of `avail` (non-empty, not at a sync byte), in
    /// the manner of [`id3v2_len`].
    // `Err` only means "not a tag here": there is nothing more to say about it.
    #[allow(clippy::result_unit_err)]
    fn tag_len(avail: &[u8]) -> Result<Option<u64>, ()>;
    /// Whether the `HEADER_LEN` bytes right after a frame look like the start of a tag.
    fn starts_tag(next: &[u8]) -> bool;
    /// Frames that parse but carry no audio (e.g. MP3 Xing headers), dropped as skipped.
    #[inline]
    fn is_metadata(_h: &Self::Header, _frame: &[u8]) -> bool {
        false
    }
}

/// What starts at the front of the buffer.
enum Step<H> {
    /// A verified frame of this header; `emit: false` when its start follows garbage, so its
    /// header may be the tail of that garbage (it is consumed and dropped, not aired).
    Frame(H, bool),
    /// A tag of this total length (possibly more than is buffered).
    Tag(u64),
    /// Undecidable until more input arrives.
    NeedMore,
    /// Not a frame or tag: discard and search.
    Garbage,
}

/// Where the framer stands relative to the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum SyncState {
    /// Nothing but tags consumed since the start (or a reset): the first frame's start is the
    /// stream's start, so it is trusted once [`RELOCK_HEADERS`] headers chain from it.
    #[default]
    Start,
    /// The previous unit was a verified frame or tag ending right here.
    Synced,
    /// Garbage was dropped: the next frame needs [`RELOCK_HEADERS`] chained headers, and the
    /// first of them is dropped because garbage, not a frame, may lie right before it.
    Lost,
}

/// Consecutive headers of one stream, each at the end of the previous frame, needed before the
/// first frame is trusted (at the start and after a loss). One stray sync in random bytes
/// passes the header check about once in 4,000; three chained ones almost never do.
const RELOCK_HEADERS: usize = 3;

/// Incremental splitter for a [`SyncFormat`]: arbitrary byte slices in, whole frames out.
///
/// A frame is released only once the bytes right after it start another frame of the same
/// stream (or a tag, while already in sync), or at end of input after [`finish`]: a header
/// alone is too weak a check, garbage is full of sync bytes. At the start and after garbage,
/// three chained headers are needed, and after garbage the first of them is
/// dropped (its start is unverified). The first frame released locks the stream: later frames
/// must agree with it in every field [`SyncFormat::same_stream`] compares until [`reset`] (a
/// new source). Tags are skipped as they stream past, without buffering more of them than
/// arrived in one push.
///
/// [`finish`]: SyncFramer::finish
/// [`reset`]: SyncFramer::reset
#[derive(Debug, Default)]
pub struct SyncFramer<F: SyncFormat> {
    /// Unconsumed input and counters.
    input: SyncBuffer,
    /// Rest of a tag larger than what was buffered; discarded on arrival.
    skip_remaining: u64,
    /// Whether the previous unit was verified (see [`SyncState`]).
    state: SyncState,
    /// Header of the first frame released since the start or a reset: the stream's fixed
    /// fields, which every later frame must keep.
    lock: Option<F::Header>,
    /// The format this framer splits.
    format: PhantomData<F>,
}

impl<F: SyncFormat> SyncFramer<F> {
    /// An empty framer.
    pub fn new() -> Self {
        Self {
            input: SyncBuffer::default(),
            skip_remaining: 0,
            state: SyncState::Start,
            lock: None,
            format: PhantomData,
        }
    }

    /// Appends input. Tag bytes still owed from an earlier tag are dropped here without being
    /// buffered.
    #[inline]
    pub fn push(&mut self, mut input: &[u8]) {
        if self.skip_remaining > 0 {
            let n = self.skip_remaining.min(input.len() as u64);
            self.skip_remaining -= n;
            self.input.count_skipped(n);
            input = &input[n as usize..];
        }
        if self.input.push(input, F::MAX_CARRY) {
            self.state = SyncState::Lost;
        }
    }

    /// Next complete frame (header + payload), valid until the next call, or `None` if more
    /// bytes are needed.
    #[inline]
    pub fn next_frame(&mut self) -> Option<(F::Header, &[u8])> {
        let (h, at) = self.next_frame_at()?;
        Some((h, self.input.get(at, F::frame_len(&h))))
    }

    /// Like [`next_frame`](Self::next_frame), with the frame's offset in the buffer.
    fn next_frame_at(&mut self) -> Option<(F::Header, usize)> {
        loop {
            if self.skip_remaining > 0 {
                self.skip_remaining -= self.input.skip(self.skip_remaining);
                if self.skip_remaining > 0 {
                    if self.input.finished() {
                        // The tag was cut short; nothing more will arrive.
                        self.skip_remaining = 0;
                    }
                    return None;
                }
            }
            let avail = self.input.avail();
            if avail.is_empty() {
                return None;
            }
            match self.classify(avail) {
                Step::Frame(h, emit) => {
                    let len = F::frame_len(&h);
                    let at = self.input.take(len);
                    self.state = SyncState::Synced;
                    if self.lock.is_none() {
                        self.lock = Some(h);
                    }
                    if !emit || F::is_metadata(&h, self.input.get(at, len)) {
                        self.input.count_skipped(len as u64);
                        continue;
                    }
                    return Some((h, at));
                }
                Step::Tag(len) => {
                    self.skip_remaining = len - self.input.skip(len);
                    self.input.end_search();
                }
                Step::NeedMore => return None,
                Step::Garbage => {
                    self.state = SyncState::Lost;
                    self.input.drop_garbage(F::is_candidate);
                }
            }
        }
    }

    /// Whether `h` keeps the locked stream's fixed fields (anything does before the lock).
    #[inline]
    fn fits_lock(&self, h: &F::Header) -> bool {
        self.lock
            .as_ref()
            .map_or(true, |lock| F::same_stream(h, lock))
    }

    /// What starts at the front of `avail` (which is non-empty).
    #[inline]
    fn classify(&self, avail: &[u8]) -> Step<F::Header> {
        // Without more input, anything undecidable is garbage.
        let finished = self.input.finished();
        let need_more = if finished {
            Step::Garbage
        } else {
            Step::NeedMore
        };
        if avail[0] != 0xFF {
            return match F::tag_len(avail) {
                Ok(Some(len)) => Step::Tag(len),
                Ok(None) => need_more,
                Err(()) => Step::Garbage,
            };
        }
        if avail.len() < F::HEADER_LEN {
            return need_more;
        }
        let Some(h) = F::parse(avail).filter(|h| self.fits_lock(h)) else {
            return Step::Garbage;
        };
        let synced = self.state == SyncState::Synced;
        let depth = if synced { 2 } else { RELOCK_HEADERS };
        let emit = self.state != SyncState::Lost;
        // Walk the chain of successors: each must start right where the previous frame ends.
        let (mut cur, mut end) = (h, F::frame_len(&h));
        for _ in 1..depth {
            let Some(next) = avail.get(end..end + F::HEADER_LEN) else {
                // Not buffered yet; at end of input a chain of whole frames may end there,
                // with at most a few stray bytes after it.
                if finished && avail.len() >= end {
                    return Step::Frame(h, emit);
                }
                return need_more;
            };
            match F::parse(next) {
                Some(n) if F::same_stream(&n, &cur) && self.fits_lock(&n) => {
                    end += F::frame_len(&n);
                    cur = n;
                }
                // A tag may follow a frame whose start is verified.
                None if synced && F::starts_tag(next) => break,
                _ => return Step::Garbage,
            }
        }
        Step::Frame(h, emit)
    }

    /// Marks end of input so the final frame can be released without its successor check.
    pub fn finish(&mut self) {
        self.input.finish();
    }

    /// Bytes discarded so far.
    pub fn skipped_bytes(&self) -> u64 {
        self.input.skipped()
    }

    /// Garbage runs seen so far.
    pub fn resyncs(&self) -> u64 {
        self.input.resyncs()
    }

    /// Drops buffered partial data, any tag in progress and the stream lock (a new source
    /// follows); keeps counters.
    pub fn reset(&mut self) {
        self.input.reset();
        self.skip_remaining = 0;
        self.state = SyncState::Start;
        self.lock = None;
    }

    /// Allocated buffer size, for tests of the memory bound.
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.input.capacity()
    }
}

/// A soak test shared by the MP3 and ADTS framers: real frames interleaved with long runs of
/// seeded random bytes go through the framer, and what comes out must be real frames only.
#[cfg(test)]
pub(crate) mod soak {
    use std::collections::VecDeque;

    use super::{SyncFormat, SyncFramer};

    /// A seeded generator (64-bit LCG, high bits): deterministic and fast enough for a GB.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        /// The next 64 bits (the upper half of the state is the better half).
        pub(crate) fn next_u64(&mut self) -> u64 {
            let mut out = 0;
            for _ in 0..2 {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                out = out << 32 | self.0 >> 32;
            }
            out
        }

        /// A number below `n`.
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }

        /// Fills `buf` with random bytes.
        pub(crate) fn fill(&mut self, buf: &mut [u8]) {
            for chunk in buf.chunks_mut(8) {
                let v = self.next_u64().to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
        }
    }

    /// Megabytes of random bytes to mix in: `CYCAST_FRAMER_SOAK_MB`, else 1024 in an optimised
    /// build and 64 in a debug one (same seed, so a run is exactly reproducible).
    pub(crate) fn soak_megabytes() -> u64 {
        std::env::var("CYCAST_FRAMER_SOAK_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if cfg!(debug_assertions) { 64 } else { 1024 })
    }

    /// Totals of a soak run.
    #[derive(Debug)]
    pub(crate) struct Report {
        /// Real frames sent.
        pub(crate) frames: u64,
        /// Real frames that came out.
        pub(crate) passed: u64,
        /// Garbage runs sent.
        pub(crate) runs: u64,
        /// Random bytes sent.
        pub(crate) garbage: u64,
    }

    /// Sends runs of 1 to 24 real frames from `make_frame`, each followed by 1 to 12,000 random
    /// bytes, until `garbage_bytes` random bytes went in, in pieces of random size, draining
    /// after every piece as ingest does. Panics if anything but a real frame comes out, out of
    /// order or altered, or if the bytes do not add up.
    pub(crate) fn run<F: SyncFormat>(
        seed: u64,
        garbage_bytes: u64,
        mut make_frame: impl FnMut(&mut Rng) -> Vec<u8>,
    ) -> Report {
        let mut rng = Rng(seed);
        let mut framer = SyncFramer::<F>::new();
        let mut expected: VecDeque<Vec<u8>> = VecDeque::new();
        let mut report = Report {
            frames: 0,
            passed: 0,
            runs: 0,
            garbage: 0,
        };
        let (mut sent, mut out) = (0u64, 0u64);
        let mut piece = Vec::new();
        let mut garbage = vec![0u8; 12_000];
        while report.garbage < garbage_bytes {
            for _ in 0..1 + rng.below(24) {
                let f = make_frame(&mut rng);
                piece.extend_from_slice(&f);
                expected.push_back(f);
                report.frames += 1;
            }
            let n = 1 + rng.below(garbage.len() as u64) as usize;
            rng.fill(&mut garbage[..n]);
            piece.extend_from_slice(&garbage[..n]);
            report.garbage += n as u64;
            report.runs += 1;
            // Feed in pieces of up to 16 KB, split at random.
            let mut rest = &piece[..];
            while !rest.is_empty() {
                let k = (1 + rng.below(16 * 1024) as usize).min(rest.len());
                framer.push(&rest[..k]);
                sent += k as u64;
                rest = &rest[k..];
                drain(&mut framer, &mut expected, &mut out, &mut report.passed);
            }
            piece.clear();
        }
        framer.finish();
        drain(&mut framer, &mut expected, &mut out, &mut report.passed);
        assert_eq!(out + framer.skipped_bytes(), sent, "bytes do not add up");
        report
    }

    /// Takes every frame the framer has ready, checking each against the real frames sent.
    fn drain<F: SyncFormat>(
        framer: &mut SyncFramer<F>,
        expected: &mut VecDeque<Vec<u8>>,
        out: &mut u64,
        passed: &mut u64,
    ) {
        while let Some((h, data)) = framer.next_frame() {
            assert_eq!(F::frame_len(&h), data.len());
            // Real frames that did not come out before this one were dropped (next to
            // garbage); this one must be the next real frame that matches, byte for byte.
            loop {
                let Some(want) = expected.pop_front() else {
                    panic!("a {}-byte frame of random bytes came out", data.len());
                };
                if want == data {
                    break;
                }
            }
            *out += data.len() as u64;
            *passed += 1;
        }
    }
}
