//! Ogg page framing (`audio/ogg`, `application/ogg`; Vorbis and Opus).
//!
//! Ogg's unit of transport is the page: joins, chunk boundaries and source switches must fall
//! on page boundaries, and a player joining mid-stream needs the stream's header pages
//! (codec setup) before any audio page. This module cuts pages out of a byte stream, checks
//! each page's CRC so garbage never reaches a listener, tracks which pages are codec headers
//! and keeps a copy of the current header pages to replay to new listeners. Durations come
//! from granule positions, so nothing is decoded; pages pass through byte-for-byte and the
//! only allocations are for the (rare) header pages.

use super::id3::join_title;
use super::lockon::SyncBuffer;

/// Ogg CRC-32 tables for slicing-by-8: polynomial 0x04C11DB7, MSB first, no reflection.
/// `CRC_TABLES[k][n]` is the CRC of byte `n` followed by `k` zero bytes.
static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut n = 0;
    while n < 256 {
        let mut r = (n as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04C1_1DB7
            } else {
                r << 1
            };
            bit += 1;
        }
        t[0][n] = r;
        n += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut n = 0;
        while n < 256 {
            let prev = t[k - 1][n];
            t[k][n] = (prev << 8) ^ t[0][(prev >> 24) as usize];
            n += 1;
        }
        k += 1;
    }
    t
}

/// Continues the Ogg CRC `crc` over `bytes`, eight bytes per step (this runs over every page).
#[inline]
fn crc_update(mut crc: u32, bytes: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes(c.try_into().expect("chunks of 8"));
        let hi = crc ^ (w >> 32) as u32;
        let lo = w as u32;
        crc = t[7][(hi >> 24) as usize]
            ^ t[6][(hi >> 16) as u8 as usize]
            ^ t[5][(hi >> 8) as u8 as usize]
            ^ t[4][hi as u8 as usize]
            ^ t[3][(lo >> 24) as usize]
            ^ t[2][(lo >> 16) as u8 as usize]
            ^ t[1][(lo >> 8) as u8 as usize]
            ^ t[0][lo as u8 as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc << 8) ^ t[0][((crc >> 24) as u8 ^ b) as usize];
    }
    crc
}

/// The CRC a whole page (header, segment table and body) must carry in bytes 22..26: the
/// Ogg CRC-32 computed with those four bytes taken as zero. For writers that build or patch
/// pages; input shorter than 26 bytes is not a page and gets the plain CRC of its bytes.
pub fn page_crc(page: &[u8]) -> u32 {
    if page.len() < 26 {
        return crc_update(0, page);
    }
    let crc = crc_update(0, &page[..22]);
    let crc = crc_update(crc, &[0; 4]);
    crc_update(crc, &page[26..])
}

/// Whether the page's stored CRC matches its contents.
#[inline]
fn crc_ok(page: &[u8]) -> bool {
    page_crc(page) == u32::from_le_bytes([page[22], page[23], page[24], page[25]])
}

/// Fixed part of a page header, before the segment table.
const HEADER_LEN: usize = 27;
/// Largest possible page: 255 segments of 255 bytes.
const MAX_PAGE: usize = HEADER_LEN + 255 + 255 * 255;
/// Unconsumed data kept across `push` calls is capped at this so a caller that never drains
/// cannot grow the buffer without bound; above the largest page.
const MAX_CARRY: usize = 96 * 1024;
/// Header pages kept for replay are capped at this (cover art in a comment header can be
/// large); a stream with more gets no replayable headers rather than a truncated set.
const MAX_HEADERS: usize = 2 * 1024 * 1024;
/// Multiplexed logical streams tracked per link; a run of BOS pages beyond this starts over
/// rather than making every page's stream lookup slower.
const MAX_STREAMS: usize = 16;
/// A granule step longer than this is a discontinuity (e.g. joining a relayed stream whose
/// granules started long ago), not audio: it counts as 0 rather than stalling pacing. Real
/// pages hold well under this (encoders flush about every second).
const MAX_PAGE_MICROS: u64 = 10_000_000;

/// A parsed Ogg page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// Flags: 0x01 continued packet, 0x02 beginning of stream, 0x04 end of stream.
    pub header_type: u8,
    /// Codec-defined position after the last packet completed on this page; `u64::MAX` (-1)
    /// when no packet completes here.
    pub granule: u64,
    /// Logical stream this page belongs to.
    pub serial: u32,
    /// Page counter within the logical stream.
    pub sequence: u32,
    /// Whole page length in bytes: header, segment table and body.
    pub page_len: usize,
}

impl PageHeader {
    /// First page of a logical stream.
    #[inline]
    pub fn is_bos(&self) -> bool {
        self.header_type & 0x02 != 0
    }

    /// Last page of a logical stream.
    #[inline]
    pub fn is_eos(&self) -> bool {
        self.header_type & 0x04 != 0
    }

    /// The page starts with the rest of a packet begun on the previous page.
    #[inline]
    pub fn is_continuation(&self) -> bool {
        self.header_type & 0x01 != 0
    }
}

/// Parses the page header at the start of `bytes`.
///
/// Needs the fixed 27 bytes and the whole segment table (to know the page length); returns
/// `None` if they are not all there, without the "OggS" capture pattern, for a version other
/// than 0 or with undefined flag bits. The CRC is not checked here.
#[inline]
pub fn parse_page_header(bytes: &[u8]) -> Option<PageHeader> {
    let h = bytes.get(..HEADER_LEN)?;
    if &h[..4] != b"OggS" || h[4] != 0 || h[5] & !0x07 != 0 {
        return None;
    }
    let lacing = bytes.get(HEADER_LEN..HEADER_LEN + h[26] as usize)?;
    let body: usize = lacing.iter().map(|&l| l as usize).sum();
    let le32 = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    Some(PageHeader {
        header_type: h[5],
        granule: u64::from_le_bytes([h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13]]),
        serial: le32(14),
        sequence: le32(18),
        page_len: HEADER_LEN + lacing.len() + body,
    })
}

/// What the framer knows about a page beyond its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// The page's header.
    pub header: PageHeader,
    /// Audio the page adds, in microseconds: the granule step since the stream's previous
    /// page, 0 for header pages, pages with granule -1, codecs other than Opus and Vorbis and
    /// streams whose first page was not seen.
    pub duration_micros: u64,
    /// The page carries codec headers (part of [`OggFramer::stream_headers`]).
    pub is_header_page: bool,
    /// The page is the first of a new chain link (a BOS page not joining a multiplexed set):
    /// what comes before it belongs to the previous link.
    pub starts_link: bool,
}

/// Codec of a logical stream, from its first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    /// `OpusHead` first: two header packets, 48 kHz granules.
    Opus,
    /// Vorbis identification header first: three header packets, granules at its rate.
    Vorbis,
    /// Anything else (FLAC, Speex, ...): headers run until the first page with granule != 0.
    Other,
}

/// One logical stream of the current chain link.
#[derive(Debug, Clone, Copy)]
struct Stream {
    /// Its serial number.
    serial: u32,
    /// Its codec.
    codec: Codec,
    /// Granule units per second; 0 when unknown (no durations).
    rate: u32,
    /// Header packets still to complete (Opus, Vorbis).
    headers_left: u8,
    /// Still in the header pages.
    in_headers: bool,
    /// Granule of the previous page that had one.
    last_granule: u64,
}

impl Stream {
    /// Recognises the codec from the first packet, at the start of the BOS page's body.
    fn from_bos(serial: u32, packet: &[u8]) -> Self {
        let (codec, rate, headers_left) = if packet.starts_with(b"OpusHead") {
            // Opus granules always count 48 kHz samples, whatever the input rate.
            (Codec::Opus, 48_000, 2)
        } else if packet.starts_with(b"\x01vorbis") && packet.len() >= 16 {
            let rate = u32::from_le_bytes([packet[12], packet[13], packet[14], packet[15]]);
            (Codec::Vorbis, rate, 3)
        } else {
            (Codec::Other, 0, 0)
        };
        Self {
            serial,
            codec,
            rate,
            headers_left,
            in_headers: true,
            last_granule: 0,
        }
    }

    /// Microseconds at granule `g` (for telescoping sums without rounding drift).
    #[inline]
    fn micros_at(&self, g: u64) -> u64 {
        (g as u128 * 1_000_000 / self.rate as u128) as u64
    }
}

/// Logical streams and header pages of the chain link being played.
#[derive(Debug, Default)]
struct Chain {
    /// Logical streams of the current link (normally one; more when multiplexed).
    streams: Vec<Stream>,
    /// The current link's header pages are still being gathered into `pending`.
    collecting: bool,
    /// The previous page was a BOS page, so another BOS joins the same (multiplexed) link.
    after_bos: bool,
    /// Header pages of the link being set up.
    pending: Vec<u8>,
    /// `pending` went over [`MAX_HEADERS`] and was dropped.
    overflow: bool,
    /// Header pages of the most recent complete link.
    headers: Vec<u8>,
    /// `headers` changed since last asked.
    changed: bool,
    /// "Artist - Title" from the comment header of the most recent complete link.
    title: Option<String>,
    /// Serial adopted when the stream was joined mid-link (no BOS seen): the only one accepted
    /// until a BOS page.
    joined_serial: Option<u32>,
}

impl Chain {
    /// Whether a CRC-valid page belongs here: a BOS page, or a page of a logical stream of
    /// the current link. A page of another serial is out of place (spliced or stray data).
    fn accepts(&self, h: &PageHeader) -> bool {
        if h.is_bos() {
            return true;
        }
        if self.streams.is_empty() {
            return self.joined_serial.map_or(true, |s| s == h.serial);
        }
        self.streams.iter().any(|s| s.serial == h.serial)
    }

    /// Accounts for a valid page that [`accepts`](Self::accepts) let through; `page` is its
    /// bytes.
    fn on_page(&mut self, h: &PageHeader, page: &[u8]) -> PageInfo {
        let mut info = PageInfo {
            header: *h,
            duration_micros: 0,
            is_header_page: false,
            starts_link: false,
        };
        if h.is_bos() {
            let joins = self.after_bos
                && self.collecting
                && self.streams.len() < MAX_STREAMS
                && self.streams.iter().all(|s| s.serial != h.serial);
            if !joins {
                // A new source or the next stream of a chain: its headers replace the old.
                self.streams.clear();
                self.pending.clear();
                self.overflow = false;
                self.collecting = true;
                self.joined_serial = None;
                info.starts_link = true;
            }
            let body = &page[HEADER_LEN + page[26] as usize..];
            self.streams.push(Stream::from_bos(h.serial, body));
        }
        self.after_bos = h.is_bos();
        let Some(i) = self.streams.iter().position(|s| s.serial == h.serial) else {
            // Joined mid-stream: no codec known, nothing to replay.
            self.joined_serial = Some(h.serial);
            return info;
        };
        let s = &mut self.streams[i];
        if s.in_headers {
            match s.codec {
                Codec::Opus | Codec::Vorbis => {
                    // Each lacing value under 255 ends a packet.
                    let lacing = &page[HEADER_LEN..HEADER_LEN + page[26] as usize];
                    let ended = lacing.iter().filter(|&&l| l < 255).count();
                    s.headers_left = s.headers_left.saturating_sub(ended.min(255) as u8);
                    s.in_headers = s.headers_left > 0;
                    info.is_header_page = true;
                }
                Codec::Other => {
                    s.in_headers = h.is_bos() || h.granule == 0;
                    info.is_header_page = s.in_headers;
                }
            }
            if info.is_header_page && self.collecting && !self.overflow {
                if self.pending.len() + page.len() > MAX_HEADERS {
                    self.overflow = true;
                    self.pending = Vec::new();
                } else {
                    self.pending.extend_from_slice(page);
                }
            }
            if self.collecting && self.streams.iter().all(|s| !s.in_headers) {
                self.collecting = false;
                if self.overflow {
                    self.headers = Vec::new();
                } else {
                    std::mem::swap(&mut self.headers, &mut self.pending);
                    self.pending.clear();
                }
                self.title = self
                    .streams
                    .iter()
                    .filter(|s| s.codec != Codec::Other)
                    .find_map(|s| comment_title(&self.headers, s.serial, s.codec));
                self.changed = true;
            }
            if info.is_header_page {
                return info;
            }
        }
        let s = &mut self.streams[i];
        if h.granule != u64::MAX && s.rate != 0 {
            if h.granule >= s.last_granule {
                let micros = s.micros_at(h.granule) - s.micros_at(s.last_granule);
                if micros <= MAX_PAGE_MICROS {
                    info.duration_micros = micros;
                }
            }
            s.last_granule = h.granule;
        }
        info
    }

    /// Forgets the link in progress (the source went away); replayable headers stay until a
    /// new link completes.
    fn reset(&mut self) {
        self.streams.clear();
        self.joined_serial = None;
        self.collecting = false;
        self.after_bos = false;
        self.pending.clear();
        self.overflow = false;
    }
}

/// The `index`th packet (from 0) of logical stream `serial` in `pages` (whole pages back to
/// back, as [`OggFramer::stream_headers`] holds them), reassembled across pages.
fn packet(pages: &[u8], serial: u32, index: usize) -> Option<Vec<u8>> {
    let (mut rest, mut n, mut packet) = (pages, 0usize, Vec::new());
    while let Some(h) = parse_page_header(rest) {
        let page = rest.get(..h.page_len)?;
        rest = &rest[h.page_len..];
        if h.serial != serial {
            continue;
        }
        let lacing = &page[HEADER_LEN..HEADER_LEN + page[26] as usize];
        let mut at = HEADER_LEN + lacing.len();
        for &l in lacing {
            if n == index {
                packet.extend_from_slice(&page[at..at + l as usize]);
            }
            at += l as usize;
            if l < 255 {
                if n == index {
                    return Some(packet);
                }
                n += 1;
            }
        }
    }
    None
}

/// "Artist - Title" from the comment header of a Vorbis or Opus stream: the second packet,
/// `\x03vorbis` or `OpusTags`, then a vendor string and `KEY=value` entries (keys compared
/// without case). The first TITLE and the first ARTIST count.
fn comment_title(pages: &[u8], serial: u32, codec: Codec) -> Option<String> {
    let packet = packet(pages, serial, 1)?;
    let magic: &[u8] = match codec {
        Codec::Vorbis => b"\x03vorbis",
        Codec::Opus => b"OpusTags",
        Codec::Other => return None,
    };
    let mut rest = packet.strip_prefix(magic)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        rest = tail;
        Some(head)
    };
    let vendor_len = le32_at(take(4)?) as usize;
    take(vendor_len)?;
    let count = le32_at(take(4)?);
    let (mut artist, mut title) = (None, None);
    for _ in 0..count {
        let len = le32_at(take(4)?) as usize;
        let entry = take(len)?;
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&entry[..eq], &entry[eq + 1..]);
        let value = String::from_utf8_lossy(value).trim().to_string();
        if value.is_empty() {
            continue;
        }
        if key.eq_ignore_ascii_case(b"TITLE") && title.is_none() {
            title = Some(value);
        } else if key.eq_ignore_ascii_case(b"ARTIST") && artist.is_none() {
            artist = Some(value);
        }
    }
    join_title(artist, title)
}

/// A little-endian u32 from the first four bytes of `b` (which has them).
fn le32_at(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// What starts at the front of the buffer.
enum Step {
    /// A CRC-verified page of this header at the current position.
    Page(PageHeader),
    /// Undecidable until more input arrives.
    NeedMore,
    /// Not a page: discard and search.
    Garbage,
}

/// Incremental Ogg splitter: feed arbitrary byte slices (as they arrive from a socket), get
/// back whole pages only.
///
/// Pages are returned byte-exact, and only once their CRC checks, so garbage and damaged pages
/// never pass; they are dropped and counted in [`skipped_bytes`], as are whole pages of a
/// serial number outside the current link (a new serial must come with a BOS page). Unlike MP3 no successor is
/// needed: a page is released as soon as its last byte arrives.
///
/// The framer follows logical streams: a BOS page starts a new chain link (a new source or the
/// next stream of a chained stream) unless it directly follows another BOS (multiplexed
/// streams). The link's header pages are marked in [`PageInfo`] and, once complete, become
/// [`stream_headers`], which new listeners must get before any other page.
///
/// The buffer holds at most the latest `push` plus a bounded carry-over (under one page when
/// the caller drains with `next_frame` after each push).
///
/// [`skipped_bytes`]: OggFramer::skipped_bytes
/// [`stream_headers`]: OggFramer::stream_headers
#[derive(Debug, Default)]
pub struct OggFramer {
    /// Unconsumed input and the skip/resync counters, as in the MP3 and ADTS framers.
    input: SyncBuffer,
    /// Logical streams and header pages.
    chain: Chain,
}

impl OggFramer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends input.
    pub fn push(&mut self, input: &[u8]) {
        self.input.push(input, MAX_CARRY);
    }

    /// Next complete, CRC-checked page, valid until the next call, or `None` if more bytes are
    /// needed. After a call that returns the last header page of a new stream,
    /// [`headers_changed`](Self::headers_changed) is true.
    pub fn next_frame(&mut self) -> Option<(PageInfo, &[u8])> {
        loop {
            let avail = self.input.avail();
            if avail.is_empty() {
                return None;
            }
            match self.classify(avail) {
                Step::Page(h) if !self.chain.accepts(&h) => self.input.drop_front(h.page_len),
                Step::Page(h) => {
                    let at = self.input.take(h.page_len);
                    let page = self.input.get(at, h.page_len);
                    let info = self.chain.on_page(&h, page);
                    return Some((info, page));
                }
                Step::NeedMore => return None,
                // Drop up to the next byte that could start a page.
                Step::Garbage => self.input.drop_garbage(|b| b == b'O'),
            }
        }
    }

    /// What starts at the front of `avail` (which is non-empty).
    #[inline]
    fn classify(&self, avail: &[u8]) -> Step {
        // Without more input, anything undecidable is garbage.
        let need_more = if self.input.finished() {
            Step::Garbage
        } else {
            Step::NeedMore
        };
        let n = avail.len().min(4);
        if avail[..n] != b"OggS"[..n] {
            return Step::Garbage;
        }
        if avail.len() < HEADER_LEN {
            return need_more;
        }
        if avail[4] != 0 || avail[5] & !0x07 != 0 {
            return Step::Garbage;
        }
        let Some(h) = parse_page_header(avail) else {
            return need_more; // segment table incomplete
        };
        debug_assert!(h.page_len <= MAX_PAGE);
        match avail.get(..h.page_len) {
            None => need_more,
            Some(page) if crc_ok(page) => Step::Page(h),
            Some(_) => Step::Garbage,
        }
    }

    /// Header pages of the most recent logical stream (all its multiplexed streams), in
    /// stream order: what a new listener must receive before any other page. Empty until a
    /// stream's headers are complete, and when they exceed a sanity limit.
    pub fn stream_headers(&self) -> &[u8] {
        &self.chain.headers
    }

    /// "Artist - Title" (or whichever of the two is there) from the comment header (Vorbis
    /// comments or OpusTags) of the link whose headers [`stream_headers`](Self::stream_headers)
    /// holds; `None` when it has neither.
    pub fn title(&self) -> Option<&str> {
        self.chain.title.as_deref()
    }

    /// Whether [`stream_headers`](Self::stream_headers) changed since the last call (a new
    /// source or the next stream of a chain completed its headers); clears the flag.
    pub fn headers_changed(&mut self) -> bool {
        std::mem::take(&mut self.chain.changed)
    }

    /// Marks end of input so a trailing incomplete page is dropped. Call
    /// [`reset`](Self::reset) before reusing.
    pub fn finish(&mut self) {
        self.input.finish();
    }

    /// Bytes discarded so far as non-pages (garbage, damaged pages, partial pages dropped by
    /// `finish` and `reset`).
    pub fn skipped_bytes(&self) -> u64 {
        self.input.skipped()
    }

    /// Number of times the framer lost sync and had to search (0 for a clean stream).
    pub fn resyncs(&self) -> u64 {
        self.input.resyncs()
    }

    /// Drops buffered partial data and the logical streams in progress (e.g. when a source
    /// disconnects). The last complete [`stream_headers`](Self::stream_headers) and the
    /// counters are kept.
    pub fn reset(&mut self) {
        self.input.reset();
        self.chain.reset();
    }

    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.input.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn next_u8(&mut self) -> u8 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u8
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next_u8()).collect()
        }
    }

    /// Bit-at-a-time reference CRC, independent of the tables.
    fn slow_crc(data: &[u8]) -> u32 {
        let mut crc = 0u32;
        for &b in data {
            crc ^= (b as u32) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04C1_1DB7
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    /// A page whose body is `packets`; each is `(bytes, ends_here)`. A packet that does not
    /// end on this page must be a multiple of 255 bytes long.
    fn page(flags: u8, granule: u64, serial: u32, seq: u32, packets: &[(&[u8], bool)]) -> Vec<u8> {
        let mut lacing = Vec::new();
        for (p, ends) in packets {
            lacing.extend(std::iter::repeat(255u8).take(p.len() / 255));
            if *ends {
                lacing.push((p.len() % 255) as u8);
            } else {
                assert_eq!(p.len() % 255, 0);
            }
        }
        let mut pg = b"OggS\0".to_vec();
        pg.push(flags);
        pg.extend(granule.to_le_bytes());
        pg.extend(serial.to_le_bytes());
        pg.extend(seq.to_le_bytes());
        pg.extend([0; 4]);
        pg.push(lacing.len() as u8);
        pg.extend(lacing);
        for (p, _) in packets {
            pg.extend_from_slice(p);
        }
        let crc = slow_crc(&pg);
        pg[22..26].copy_from_slice(&crc.to_le_bytes());
        pg
    }

    fn opus_head() -> Vec<u8> {
        let mut p = b"OpusHead\x01\x02".to_vec();
        p.extend(312u16.to_le_bytes());
        p.extend(48000u32.to_le_bytes());
        p.extend([0, 0, 0]);
        p
    }

    fn vorbis_ident(rate: u32) -> Vec<u8> {
        let mut p = b"\x01vorbis".to_vec();
        p.extend(0u32.to_le_bytes());
        p.push(2);
        p.extend(rate.to_le_bytes());
        p.extend([0u8; 12]);
        p.extend([0xB8, 1]);
        assert_eq!(p.len(), 30);
        p
    }

    /// A stream's pages: headers first, then `audio` pages of 1 to 3 packets each.
    struct Stream {
        headers: Vec<Vec<u8>>,
        audio: Vec<Vec<u8>>,
        /// Audio duration in microseconds the granules imply.
        micros: u64,
    }

    /// Opus: OpusHead page (BOS), OpusTags page, audio pages with 960 granules per 20 ms
    /// packet.
    fn opus(serial: u32, pages: usize, rng: &mut Lcg) -> Stream {
        let tags = [&b"OpusTags"[..], &[5, 0, 0, 0], b"cycas", &[0; 4]].concat();
        let headers = vec![
            page(2, 0, serial, 0, &[(&opus_head(), true)]),
            page(0, 0, serial, 1, &[(&tags, true)]),
        ];
        let mut granule = 0;
        let audio = (0..pages)
            .map(|i| {
                let n = 1 + i % 3;
                let packets: Vec<Vec<u8>> = (0..n).map(|j| rng.bytes(60 + 97 * j)).collect();
                granule += 960 * n as u64;
                let refs: Vec<_> = packets.iter().map(|p| (&p[..], true)).collect();
                let flags = if i + 1 == pages { 4 } else { 0 };
                page(flags, granule, serial, 2 + i as u32, &refs)
            })
            .collect();
        Stream {
            headers,
            audio,
            micros: granule * 1_000_000 / 48_000,
        }
    }

    /// Vorbis at 44.1 kHz: identification (BOS), then comment and a setup header spanning
    /// two pages, audio pages with 1024 granules per packet.
    fn vorbis(serial: u32, pages: usize, rng: &mut Lcg) -> Stream {
        let comment = [&b"\x03vorbis"[..], &rng.bytes(40)].concat();
        let setup = [&b"\x05vorbis"[..], &rng.bytes(600 - 7)].concat();
        let headers = vec![
            page(2, 0, serial, 0, &[(&vorbis_ident(44100), true)]),
            page(0, 0, serial, 1, &[(&comment, true), (&setup[..510], false)]),
            page(1, 0, serial, 2, &[(&setup[510..], true)]),
        ];
        let mut granule = 0;
        let audio = (0..pages)
            .map(|i| {
                let n = 1 + i % 2;
                let packets: Vec<Vec<u8>> = (0..n).map(|_| rng.bytes(300)).collect();
                granule += 1024 * n as u64;
                let refs: Vec<_> = packets.iter().map(|p| (&p[..], true)).collect();
                page(0, granule, serial, 3 + i as u32, &refs)
            })
            .collect();
        Stream {
            headers,
            audio,
            micros: granule * 1_000_000 / 44_100,
        }
    }

    impl Stream {
        fn bytes(&self) -> Vec<u8> {
            [self.headers.concat(), self.audio.concat()].concat()
        }
        fn pages(&self) -> Vec<Vec<u8>> {
            [self.headers.clone(), self.audio.clone()].concat()
        }
    }

    #[derive(Debug, PartialEq)]
    struct Out {
        pages: Vec<Vec<u8>>,
        infos: Vec<PageInfo>,
        micros: u64,
        skipped: u64,
        resyncs: u64,
        /// Header sets, each time they changed.
        header_sets: Vec<Vec<u8>>,
    }

    fn run(stream: &[u8], chunk: usize) -> Out {
        let mut f = OggFramer::new();
        let mut out = Out {
            pages: Vec::new(),
            infos: Vec::new(),
            micros: 0,
            skipped: 0,
            resyncs: 0,
            header_sets: Vec::new(),
        };
        let mut take = |f: &mut OggFramer| {
            while let Some((info, data)) = f.next_frame() {
                assert_eq!(info.header.page_len, data.len());
                out.micros += info.duration_micros;
                out.pages.push(data.to_vec());
                out.infos.push(info);
                if f.headers_changed() {
                    out.header_sets.push(f.stream_headers().to_vec());
                }
            }
        };
        for piece in stream.chunks(chunk.max(1)) {
            f.push(piece);
            take(&mut f);
        }
        f.finish();
        take(&mut f);
        out.skipped = f.skipped_bytes();
        out.resyncs = f.resyncs();
        out
    }

    fn run_all_chunkings(stream: &[u8]) -> Out {
        let whole = run(stream, stream.len());
        for chunk in [1, 2, 3, 7, 100, 417, 4096] {
            assert_eq!(run(stream, chunk), whole, "chunk {chunk}");
        }
        whole
    }

    #[test]
    fn crc_matches_reference() {
        // The catalogued check value of this CRC (CRC-32 MSB-first, init 0, no final xor).
        assert_eq!(crc_update(0, b"123456789"), 0x89A1_897F);
        let data = Lcg(1).bytes(1000);
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 1000] {
            assert_eq!(crc_update(0, &data[..len]), slow_crc(&data[..len]), "{len}");
        }
        let p = page(2, 0, 7, 0, &[(&opus_head(), true)]);
        assert!(crc_ok(&p));
        assert_eq!(page_crc(&p).to_le_bytes(), p[22..26]);
    }

    #[test]
    fn parses_page_headers() {
        let p = page(0x05, 123_456, 0xDEAD_BEEF, 42, &[(&[7u8; 600], true)]);
        let h = parse_page_header(&p).unwrap();
        assert_eq!(
            h,
            PageHeader {
                header_type: 5,
                granule: 123_456,
                serial: 0xDEAD_BEEF,
                sequence: 42,
                page_len: 27 + 3 + 600,
            }
        );
        assert!(h.is_continuation() && h.is_eos() && !h.is_bos());
        // Needs the segment table, not the body.
        assert_eq!(parse_page_header(&p[..30]), Some(h));
        assert_eq!(parse_page_header(&p[..29]), None);
        let mut bad = p.clone();
        bad[4] = 1; // version
        assert_eq!(parse_page_header(&bad), None);
        let mut bad = p.clone();
        bad[5] = 0x08; // undefined flag
        assert_eq!(parse_page_header(&bad), None);
        assert_eq!(parse_page_header(&p[1..]), None);
    }

    #[test]
    fn opus_stream_any_chunking() {
        let s = opus(0x1234, 40, &mut Lcg(2));
        let o = run_all_chunkings(&s.bytes());
        assert_eq!(o.pages, s.pages());
        assert_eq!((o.skipped, o.resyncs), (0, 0));
        assert_eq!(o.header_sets, vec![s.headers.concat()]);
        let flags: Vec<bool> = o.infos.iter().map(|i| i.is_header_page).collect();
        assert_eq!(flags[..3], [true, true, false]);
        assert!(!flags[3..].contains(&true));
        assert!(o.infos[..2].iter().all(|i| i.duration_micros == 0));
        assert_eq!(o.micros, s.micros);
        // 20 ms packets, 1 to 3 per page.
        assert_eq!(o.infos[2].duration_micros, 20_000);
        assert_eq!(o.infos[4].duration_micros, 60_000);
        assert!(o.infos.last().unwrap().header.is_eos());
    }

    #[test]
    fn vorbis_stream_any_chunking() {
        let s = vorbis(9, 50, &mut Lcg(3));
        let o = run_all_chunkings(&s.bytes());
        assert_eq!(o.pages, s.pages());
        assert_eq!((o.skipped, o.resyncs), (0, 0));
        assert_eq!(o.header_sets, vec![s.headers.concat()]);
        let n_headers = o.infos.iter().filter(|i| i.is_header_page).count();
        assert_eq!(n_headers, 3);
        assert!(o.infos[..3].iter().all(|i| i.is_header_page));
        assert_eq!(o.micros, s.micros);
        assert_eq!(o.infos[3].duration_micros, 1024 * 1_000_000 / 44_100);
    }

    #[test]
    fn headers_are_ready_with_the_last_header_page() {
        let s = opus(1, 3, &mut Lcg(4));
        let mut f = OggFramer::new();
        f.push(&s.headers[0]);
        assert!(f.next_frame().unwrap().0.is_header_page);
        assert!(!f.headers_changed());
        assert!(f.stream_headers().is_empty());
        f.push(&s.headers[1]);
        assert!(f.next_frame().is_some());
        assert!(f.headers_changed());
        assert!(!f.headers_changed());
        assert_eq!(f.stream_headers(), s.headers.concat());
    }

    #[test]
    fn chained_streams_switch_headers() {
        let mut rng = Lcg(5);
        let a = opus(1, 10, &mut rng);
        let b = vorbis(2, 10, &mut rng);
        let c = opus(3, 10, &mut rng);
        let o = run_all_chunkings(&[a.bytes(), b.bytes(), c.bytes()].concat());
        assert_eq!(o.pages, [a.pages(), b.pages(), c.pages()].concat());
        assert_eq!(
            o.header_sets,
            vec![a.headers.concat(), b.headers.concat(), c.headers.concat()]
        );
        assert_eq!(o.micros, a.micros + b.micros + c.micros);
        assert_eq!(o.infos.iter().filter(|i| i.is_header_page).count(), 7);
    }

    #[test]
    fn pages_of_another_serial_are_dropped() {
        // A CRC-valid page of a stream that never began (spliced or stray) mid-link, and the
        // same after a mid-stream join: neither passes.
        let mut rng = Lcg(31);
        let a = opus(1, 10, &mut rng);
        let stray = page(0, 4800, 99, 7, &[(&rng.bytes(200), true)]);
        let mut pages = a.pages();
        pages.insert(6, stray.clone());
        let o = run_all_chunkings(&pages.concat());
        assert_eq!(o.pages, a.pages());
        assert_eq!((o.skipped, o.resyncs), (stray.len() as u64, 1));
        // A listener-style join: the first serial seen is adopted, another is refused.
        let joined = [a.audio[2..5].concat(), stray, a.audio[5..].concat()].concat();
        let o = run_all_chunkings(&joined);
        assert_eq!(o.pages, a.audio[2..]);
        // A BOS page with a new serial starts the next link and is welcome.
        let b = opus(2, 3, &mut rng);
        let o = run_all_chunkings(&[a.bytes(), b.bytes()].concat());
        assert_eq!(o.pages, [a.pages(), b.pages()].concat());
        let starts: Vec<_> = o.infos.iter().map(|i| i.starts_link).collect();
        assert_eq!(starts.iter().filter(|&&s| s).count(), 2);
        assert!(starts[0] && starts[a.pages().len()]);
    }

    /// Opus and Vorbis streams whose comment headers carry `entries`; the Vorbis one spans
    /// two pages.
    fn tagged(entries: &[&str], rng: &mut Lcg) -> (Vec<u8>, Vec<u8>) {
        let mut list = Vec::new();
        list.extend((entries.len() as u32).to_le_bytes());
        for e in entries {
            list.extend((e.len() as u32).to_le_bytes());
            list.extend(e.as_bytes());
        }
        let vendor = [&5u32.to_le_bytes()[..], b"cycas"].concat();
        let opus_tags = [&b"OpusTags"[..], &vendor, &list].concat();
        let mut comment = [&b"\x03vorbis"[..], &vendor, &list, &[1]].concat();
        // Pad the framing bit side so the comment packet needs two pages.
        let split = 255 * (comment.len() / 255).max(1);
        comment.resize(split + 10, 0);
        let setup = [&b"\x05vorbis"[..], &rng.bytes(100)].concat();
        let opus = [
            page(2, 0, 7, 0, &[(&opus_head(), true)]),
            page(0, 0, 7, 1, &[(&opus_tags, true)]),
            page(0, 960, 7, 2, &[(&rng.bytes(80), true)]),
        ]
        .concat();
        let vorbis = [
            page(2, 0, 8, 0, &[(&vorbis_ident(44100), true)]),
            page(0, 0, 8, 1, &[(&comment[..split], false)]),
            page(1, 0, 8, 2, &[(&comment[split..], true), (&setup, true)]),
            page(0, 1024, 8, 3, &[(&rng.bytes(80), true)]),
        ]
        .concat();
        (opus, vorbis)
    }

    /// The title of each link after the whole input went through.
    fn titles(stream: &[u8]) -> Vec<Option<String>> {
        let mut f = OggFramer::new();
        f.push(stream);
        f.finish();
        let mut out = Vec::new();
        while f.next_frame().is_some() {
            if f.headers_changed() {
                out.push(f.title().map(str::to_string));
            }
        }
        out
    }

    #[test]
    fn titles_from_comment_headers() {
        let mut rng = Lcg(32);
        let long = "x".repeat(400);
        let (opus_a, vorbis_b) = tagged(
            &[
                "encoder=test",
                "title=First Song",
                "ARTIST=The Band",
                "TITLE=second",
            ],
            &mut rng,
        );
        let (opus_c, _) = tagged(
            &["Title=Only A Title", &format!("comment={long}")],
            &mut rng,
        );
        let (_, vorbis_d) = tagged(&["genre=none"], &mut rng);
        let chain = [opus_a, vorbis_b, opus_c, vorbis_d].concat();
        assert_eq!(
            titles(&chain),
            vec![
                Some("The Band - First Song".to_string()),
                Some("The Band - First Song".to_string()),
                Some("Only A Title".to_string()),
                None
            ]
        );
    }

    #[test]
    fn multiplexed_streams_share_one_header_set() {
        let mut rng = Lcg(6);
        let a = opus(1, 4, &mut rng);
        let b = vorbis(2, 4, &mut rng);
        // Both BOS pages first, then the remaining headers, then interleaved audio.
        let mut stream = vec![a.headers[0].clone(), b.headers[0].clone()];
        stream.extend([
            a.headers[1].clone(),
            b.headers[1].clone(),
            b.headers[2].clone(),
        ]);
        for (x, y) in a.audio.iter().zip(&b.audio) {
            stream.extend([x.clone(), y.clone()]);
        }
        let o = run_all_chunkings(&stream.concat());
        assert_eq!(o.pages, stream);
        assert_eq!(o.header_sets, vec![stream[..5].concat()]);
        assert_eq!(o.micros, a.micros + b.micros);
    }

    #[test]
    fn bos_flood_stays_bounded() {
        let flood: Vec<u8> = (0..10_000u32)
            .flat_map(|serial| page(2, 0, serial, 0, &[(&opus_head(), true)]))
            .collect();
        let mut f = OggFramer::new();
        f.push(&flood);
        let mut n = 0;
        while f.next_frame().is_some() {
            n += 1;
        }
        assert_eq!(n, 10_000);
        assert!(f.chain.streams.len() <= MAX_STREAMS);
        assert!(!f.headers_changed());
    }

    #[test]
    fn garbage_between_pages_is_skipped() {
        let s = opus(7, 30, &mut Lcg(7));
        let mut garbage = Lcg(8).bytes(777);
        // A fake capture pattern with a plausible header must not pass either.
        garbage[100..106].copy_from_slice(b"OggS\0\0");
        garbage[126] = 1;
        let pages = s.pages();
        let stream = [pages[..10].concat(), garbage.clone(), pages[10..].concat()].concat();
        let o = run_all_chunkings(&stream);
        assert_eq!(o.pages, pages);
        assert_eq!((o.skipped, o.resyncs), (garbage.len() as u64, 1));
        assert_eq!(o.micros, s.micros);
    }

    #[test]
    fn corrupted_page_is_dropped() {
        let s = opus(7, 30, &mut Lcg(9));
        let mut pages = s.pages();
        let bad = {
            let p = &mut pages[12];
            let last = p.len() - 1;
            p[last] ^= 0x40;
            p.clone()
        };
        let o = run_all_chunkings(&pages.concat());
        let mut expect = s.pages();
        let lost = expect.remove(12);
        assert_eq!(o.pages, expect);
        assert_eq!((o.skipped, o.resyncs), (bad.len() as u64, 1));
        // The lost page's audio is folded into the next page's granule step.
        assert_eq!(o.micros, s.micros);
        assert_eq!(lost.len(), bad.len());
    }

    #[test]
    fn mid_stream_join_and_trailing_partial_page() {
        let s = opus(7, 10, &mut Lcg(10));
        let bytes = s.bytes();
        let cut = s.headers.concat().len() + 5;
        let tail = 11;
        let o = run_all_chunkings(&bytes[cut..bytes.len() - tail]);
        // No headers seen: pages pass with no duration and nothing to replay.
        assert_eq!(o.pages, s.audio[1..9]);
        assert!(o.infos.iter().all(|i| i.duration_micros == 0));
        assert!(o.header_sets.is_empty());
        let skipped = s.audio[0].len() - 5 + s.audio[9].len() - tail;
        assert_eq!(o.skipped, skipped as u64);
    }

    #[test]
    fn unknown_granule_and_other_codecs() {
        let mut rng = Lcg(11);
        // A page where no packet ends carries granule -1 and no duration; the next page's step
        // covers it.
        let big = rng.bytes(255 * 2);
        let s = opus(3, 2, &mut rng);
        let mid = [
            page(0, u64::MAX, 3, 2, &[(&big, false)]),
            page(1, 960 * 2, 3, 3, &[(&big[..100], true)]),
        ];
        let stream = [s.headers.concat(), mid.concat()].concat();
        let o = run_all_chunkings(&stream);
        let d: Vec<_> = o.infos.iter().map(|i| i.duration_micros).collect();
        assert_eq!(d, [0, 0, 0, 40_000]);

        // FLAC: headers until the first page with a granule, no durations.
        let flac = [
            page(2, 0, 5, 0, &[(b"\x7FFLAC\x01\x00\x00\x01fLaC", true)]),
            page(0, 0, 5, 1, &[(&rng.bytes(40), true)]),
            page(0, 4096, 5, 2, &[(&rng.bytes(400), true)]),
            page(0, 8192, 5, 3, &[(&rng.bytes(400), true)]),
        ];
        let o = run_all_chunkings(&flac.concat());
        assert_eq!(o.pages, flac);
        assert_eq!(o.header_sets, vec![flac[..2].concat()]);
        let h: Vec<_> = o.infos.iter().map(|i| i.is_header_page).collect();
        assert_eq!(h, [true, true, false, false]);
        assert_eq!(o.micros, 0);
    }

    #[test]
    fn granule_jump_is_not_audio() {
        // A relay joining upstream late: headers, then audio granules from long ago.
        let s = opus(3, 1, &mut Lcg(12));
        let late = 48_000 * 3600;
        let audio = [
            page(0, late, 3, 2, &[(&[1u8; 50], true)]),
            page(0, late + 960, 3, 3, &[(&[2u8; 50], true)]),
        ];
        let o = run_all_chunkings(&[s.headers.concat(), audio.concat()].concat());
        let d: Vec<_> = o.infos.iter().map(|i| i.duration_micros).collect();
        assert_eq!(d, [0, 0, 0, 20_000]);
    }

    #[test]
    fn reset_keeps_headers_until_a_new_stream_completes() {
        let mut rng = Lcg(13);
        let a = opus(1, 5, &mut rng);
        let b = vorbis(2, 5, &mut rng);
        let mut f = OggFramer::new();
        f.push(&a.bytes());
        while f.next_frame().is_some() {}
        assert!(f.headers_changed());
        // The source dies during the next stream's headers.
        f.push(&b.headers[0]);
        f.push(&b.headers[1][..50]);
        assert!(f.next_frame().unwrap().0.is_header_page);
        assert!(f.next_frame().is_none());
        f.reset();
        assert_eq!(f.skipped_bytes(), 50);
        assert!(!f.headers_changed());
        assert_eq!(f.stream_headers(), a.headers.concat());
        // A new source starts over.
        f.push(&b.bytes());
        let mut micros = 0;
        while let Some((info, _)) = f.next_frame() {
            micros += info.duration_micros;
        }
        assert!(f.headers_changed());
        assert_eq!(f.stream_headers(), b.headers.concat());
        assert_eq!(micros, b.micros);
    }

    #[test]
    fn random_bytes_yield_no_pages_and_bounded_buffer() {
        let noise = Lcg(14).bytes(1 << 20);
        let o = run(&noise, 4096);
        assert!(o.pages.is_empty());
        assert_eq!(o.skipped, noise.len() as u64);

        let mut f = OggFramer::new();
        for piece in noise.chunks(4096) {
            f.push(piece);
            while f.next_frame().is_some() {}
            assert!(f.buffer_capacity() <= 4 * 4096, "{}", f.buffer_capacity());
        }
        // A fake page header declaring a maximal page holds data back at most one page.
        let mut fake = b"OggS\0\0".to_vec();
        fake.extend([0u8; 20]);
        fake.push(255);
        fake.extend([255u8; 255]);
        let mut f = OggFramer::new();
        f.push(&fake);
        for piece in noise.chunks(4096) {
            f.push(piece);
            while f.next_frame().is_some() {}
            assert!(f.buffer_capacity() <= 2 * (MAX_PAGE + 4096));
        }
        // A caller that never drains is still bounded.
        let mut f = OggFramer::new();
        for piece in noise.chunks(4096) {
            f.push(piece);
        }
        assert!(f.buffer_capacity() <= 2 * (MAX_CARRY + 4096));
    }

    /// Runs ffmpeg to make 3 s of a sine tone in Ogg with `codec`, or `None` without ffmpeg.
    fn ffmpeg_ogg(codec: &[&str]) -> Option<Vec<u8>> {
        let out = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error"])
            .args(["-f", "lavfi", "-i", "sine=f=440:d=3"])
            .args(codec)
            .args(["-f", "ogg", "-"])
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(out.stdout)
    }

    #[test]
    fn real_encoder_output() {
        for (codec, header_packets) in [
            (&["-c:a", "libopus", "-b:a", "64k"][..], 2),
            (&["-c:a", "libvorbis"][..], 3),
        ] {
            let Some(data) = ffmpeg_ogg(codec) else {
                eprintln!("no ffmpeg; skipping");
                return;
            };
            let o = run_all_chunkings(&data);
            assert_eq!((o.skipped, o.resyncs), (0, 0), "{codec:?}");
            assert_eq!(o.pages.concat(), data);
            let n = o.infos.iter().filter(|i| i.is_header_page).count();
            assert!(o.infos[..n].iter().all(|i| i.is_header_page), "{codec:?}");
            let packets: usize = o.pages[..n]
                .iter()
                .map(|p| {
                    p[27..27 + p[26] as usize]
                        .iter()
                        .filter(|&&l| l < 255)
                        .count()
                })
                .sum();
            assert_eq!(packets, header_packets, "{codec:?}");
            assert_eq!(o.header_sets, vec![o.pages[..n].concat()], "{codec:?}");
            let secs = o.micros as f64 / 1e6;
            eprintln!("{codec:?}: {} pages, {secs} s", o.pages.len());
            assert!((secs - 3.0).abs() / 3.0 < 0.05, "{codec:?}: {secs} s");
        }
    }
}
