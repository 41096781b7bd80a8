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
    /// A verified frame of this header.
    Frame(H),
    /// A tag of this total length (possibly more than is buffered).
    Tag(u64),
    /// Undecidable until more input arrives.
    NeedMore,
    /// Not a frame or tag: discard and search.
    Garbage,
}

/// Incremental splitter for a [`SyncFormat`]: arbitrary byte slices in, whole frames out.
///
/// A frame is released only once the bytes right after it start another frame of the same
/// stream (or a tag, while already in sync), or at end of input after [`finish`]: a header
/// alone is too weak a check, garbage is full of sync bytes. Tags are skipped as they stream
/// past, without buffering more of them than arrived in one push.
///
/// [`finish`]: SyncFramer::finish
#[derive(Debug, Default)]
pub struct SyncFramer<F> {
    /// Unconsumed input and counters.
    input: SyncBuffer,
    /// Rest of a tag larger than what was buffered; discarded on arrival.
    skip_remaining: u64,
    /// The previous frame was released with a verified successor.
    synced: bool,
    /// The format this framer splits.
    format: PhantomData<F>,
}

impl<F: SyncFormat> SyncFramer<F> {
    /// An empty framer.
    pub fn new() -> Self {
        Self {
            input: SyncBuffer::default(),
            skip_remaining: 0,
            synced: false,
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
            self.synced = false;
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
                Step::Frame(h) => {
                    let len = F::frame_len(&h);
                    let at = self.input.take(len);
                    self.synced = true;
                    if F::is_metadata(&h, self.input.get(at, len)) {
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
                    self.synced = false;
                    self.input.drop_garbage(F::is_candidate);
                }
            }
        }
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
        let Some(h) = F::parse(avail) else {
            return Step::Garbage;
        };
        let len = F::frame_len(&h);
        let Some(next) = avail.get(len..len + F::HEADER_LEN) else {
            // Successor not buffered yet; at end of input the frame may stand alone if only a
            // few stray bytes follow it.
            if finished && avail.len() >= len {
                return Step::Frame(h);
            }
            return need_more;
        };
        let follows = match F::parse(next) {
            Some(n) => F::same_stream(&n, &h),
            None => self.synced && F::starts_tag(next),
        };
        if follows {
            Step::Frame(h)
        } else {
            Step::Garbage
        }
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

    /// Drops buffered partial data and any tag in progress; keeps counters.
    pub fn reset(&mut self) {
        self.input.reset();
        self.skip_remaining = 0;
        self.synced = false;
    }

    /// Allocated buffer size, for tests of the memory bound.
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.input.capacity()
    }
}
