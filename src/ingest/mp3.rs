//! MPEG audio framing: cuts live sources and playlist files into whole MP3 frames.
//!
//! The server publishes audio in chunks that start on frame boundaries, paces
//! playlist files in real time from frame durations, and must never forward
//! tags or garbage to listeners. All of that needs only the 4-byte frame
//! header (length and duration), so this module is a header parser rather
//! than a decoder: it runs on every ingested byte, must hand frames through
//! byte-for-byte untouched, and must not allocate per frame. Decoding (e.g.
//! with minimp3) would cost orders of magnitude more and tell us nothing
//! extra about framing. Tags are only measured and skipped here; reading a
//! title out of them is [`super::id3`]'s job.

use super::lockon::{id3v2_len, SyncFormat, SyncFramer};

/// MPEG audio version from the frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MpegVersion {
    /// MPEG-1 (32, 44.1, 48 kHz).
    Mpeg1,
    /// MPEG-2 low sample rates (16, 22.05, 24 kHz).
    Mpeg2,
    /// Unofficial low-sample-rate extension (8/11.025/12 kHz).
    Mpeg25,
}

/// A parsed MPEG audio (MPEG-1/2/2.5, Layer I/II/III) frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// MPEG version.
    pub version: MpegVersion,
    /// 1, 2 or 3.
    pub layer: u8,
    /// Bitrate of this frame (it may vary frame to frame).
    pub bitrate_kbps: u32,
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// 1 (mono) or 2.
    pub channels: u8,
    /// Channel mode field: 0 stereo, 1 joint stereo, 2 dual channel, 3 mono.
    pub channel_mode: u8,
    /// Whole frame length in bytes, header and padding included.
    pub frame_len: usize,
    /// PCM samples per channel carried by the frame.
    pub samples: u32,
}

// Bitrates in kbps indexed by the 4-bit header field; index 0 (free format)
// and 15 (invalid) are rejected before lookup.
const BITRATES_V1_L1: [u16; 16] = [
    0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448, 0,
];
const BITRATES_V1_L2: [u16; 16] = [
    0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 0,
];
const BITRATES_V1_L3: [u16; 16] = [
    0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0,
];
const BITRATES_V2_L1: [u16; 16] = [
    0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256, 0,
];
const BITRATES_V2_L23: [u16; 16] = [
    0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0,
];
const SAMPLE_RATES_V1: [u32; 3] = [44100, 48000, 32000];

/// Parses the 4-byte header at the start of `bytes`.
///
/// Returns `None` for anything that is not a usable frame header: missing
/// sync, reserved version/layer/sample-rate/emphasis, bitrate index 15,
/// a combination the standards do not define (MPEG-2.5 exists only for
/// Layer III; MPEG-1 Layer II forbids some bitrates per channel mode), and
/// free format (bitrate index 0): its length is not in the header, so it
/// cannot be framed without trusting the next sync, and broadcast encoders
/// do not produce it.
#[inline]
pub fn parse_header(bytes: &[u8]) -> Option<FrameHeader> {
    if bytes.len() < 4 {
        return None;
    }
    let (b1, b2, b3) = (bytes[1], bytes[2], bytes[3]);
    if bytes[0] != 0xFF || b1 & 0xE0 != 0xE0 {
        return None;
    }
    let version = match (b1 >> 3) & 3 {
        0 => MpegVersion::Mpeg25,
        2 => MpegVersion::Mpeg2,
        3 => MpegVersion::Mpeg1,
        _ => return None,
    };
    let layer = match (b1 >> 1) & 3 {
        1 => 3u8,
        2 => 2,
        3 => 1,
        _ => return None,
    };
    let bitrate_index = (b2 >> 4) as usize;
    let sr_index = ((b2 >> 2) & 3) as usize;
    if bitrate_index == 0 || bitrate_index == 15 || sr_index == 3 || b3 & 3 == 2 {
        return None;
    }
    let channel_mode = b3 >> 6;
    if version == MpegVersion::Mpeg25 && layer != 3 {
        return None;
    }
    if version == MpegVersion::Mpeg1 && layer == 2 {
        // ISO 11172-3 2.4.2.3: 32-56 and 80 kbps only in mono, 224-384 kbps never in mono.
        let mono = channel_mode == 3;
        let allowed = match bitrate_index {
            1..=3 | 5 => mono,
            11..=14 => !mono,
            _ => true,
        };
        if !allowed {
            return None;
        }
    }
    let padding = ((b2 >> 1) & 1) as u32;
    let table = match (version, layer) {
        (MpegVersion::Mpeg1, 1) => &BITRATES_V1_L1,
        (MpegVersion::Mpeg1, 2) => &BITRATES_V1_L2,
        (MpegVersion::Mpeg1, _) => &BITRATES_V1_L3,
        (_, 1) => &BITRATES_V2_L1,
        _ => &BITRATES_V2_L23,
    };
    let bitrate_kbps = table[bitrate_index] as u32;
    let sample_rate = SAMPLE_RATES_V1[sr_index]
        >> match version {
            MpegVersion::Mpeg1 => 0,
            MpegVersion::Mpeg2 => 1,
            MpegVersion::Mpeg25 => 2,
        };
    let bps = bitrate_kbps * 1000;
    let (frame_len, samples) = match (layer, version) {
        (1, _) => ((12 * bps / sample_rate + padding) * 4, 384),
        (2, _) | (3, MpegVersion::Mpeg1) => (144 * bps / sample_rate + padding, 1152),
        _ => (72 * bps / sample_rate + padding, 576),
    };
    Some(FrameHeader {
        version,
        layer,
        bitrate_kbps,
        sample_rate,
        channels: if channel_mode == 3 { 1 } else { 2 },
        channel_mode,
        frame_len: frame_len as usize,
        samples,
    })
}

impl FrameHeader {
    /// Playback time of this frame in microseconds (truncated).
    #[inline]
    pub fn duration_micros(&self) -> u64 {
        self.samples as u64 * 1_000_000 / self.sample_rate as u64
    }

    /// Whether `other` plausibly belongs to the same elementary stream: the
    /// fields fixed for a stream agree. Bitrate changes frame to frame (VBR),
    /// and so may the choice between stereo and joint stereo (an encoder picks
    /// per frame), but never mono, dual channel or stereo as such.
    #[inline]
    pub fn same_stream(&self, other: &FrameHeader) -> bool {
        // Stereo (0) and joint stereo (1) are one family.
        let family = |mode: u8| if mode < 2 { 0 } else { mode };
        self.version == other.version
            && self.layer == other.layer
            && self.sample_rate == other.sample_rate
            && family(self.channel_mode) == family(other.channel_mode)
    }
}

/// Unconsumed data kept across `push` calls is capped at this; anything older
/// is dropped so a caller that never drains cannot grow the buffer without
/// bound. Comfortably above the largest frame (2881 bytes) plus lookahead.
const MAX_CARRY: usize = 16 * 1024;
/// Upper bound accepted for an APE tag's declared size; larger values are
/// treated as garbage so a corrupt footer cannot swallow the stream.
const MAX_APE_TAG: u32 = 16 * 1024 * 1024;

/// Bytes that may start something we recognise: a frame sync, "ID3",
/// "TAG" or "APETAGEX". Garbage is skipped up to the next such byte.
static CANDIDATE: [bool; 256] = {
    let mut t = [false; 256];
    t[0xFF] = true;
    t[b'I' as usize] = true;
    t[b'T' as usize] = true;
    t[b'A' as usize] = true;
    t
};

/// How buffered bytes compare with a tag's magic.
enum Prefix {
    /// The whole magic is there.
    Full,
    /// What is buffered matches but is shorter than the magic.
    Partial,
    /// Not this tag.
    Mismatch,
}

#[inline]
fn match_prefix(avail: &[u8], magic: &[u8]) -> Prefix {
    let n = avail.len().min(magic.len());
    if avail[..n] != magic[..n] {
        Prefix::Mismatch
    } else if n < magic.len() {
        Prefix::Partial
    } else {
        Prefix::Full
    }
}

/// Whether a Layer III frame is a Xing/Info/VBRI header frame: metadata for
/// seeking, not audio, placed where the side info ends (VBRI: fixed offset).
#[inline]
fn is_vbr_info_frame(h: &FrameHeader, frame: &[u8]) -> bool {
    if h.layer != 3 {
        return false;
    }
    let side = match (h.version, h.channels) {
        (MpegVersion::Mpeg1, 1) => 17,
        (MpegVersion::Mpeg1, _) => 32,
        (_, 1) => 9,
        _ => 17,
    };
    let has = |off: usize, tag: &[u8; 4]| frame.get(off..off + 4) == Some(&tag[..]);
    let off = 4 + side;
    // Some writers count the 2-byte CRC before the tag, some do not.
    let crc = frame[1] & 1 == 0;
    let xing_at = |o: usize| has(o, b"Xing") || has(o, b"Info");
    xing_at(off) || (crc && xing_at(off + 2)) || has(36, b"VBRI")
}

/// MPEG audio for [`SyncFramer`]: tags are ID3v2, ID3v1 and APE, and Xing/Info/VBRI header
/// frames are dropped.
#[derive(Debug, Default)]
pub struct Mp3Sync;

impl SyncFormat for Mp3Sync {
    type Header = FrameHeader;
    const HEADER_LEN: usize = 4;
    const MAX_CARRY: usize = MAX_CARRY;

    #[inline]
    fn parse(bytes: &[u8]) -> Option<FrameHeader> {
        parse_header(bytes)
    }

    #[inline]
    fn frame_len(h: &FrameHeader) -> usize {
        h.frame_len
    }

    #[inline]
    fn same_stream(next: &FrameHeader, h: &FrameHeader) -> bool {
        next.same_stream(h)
    }

    #[inline]
    fn is_candidate(b: u8) -> bool {
        CANDIDATE[b as usize]
    }

    #[inline]
    fn tag_len(avail: &[u8]) -> Result<Option<u64>, ()> {
        match avail[0] {
            b'I' => id3v2_len(avail),
            b'T' => match match_prefix(avail, b"TAG") {
                Prefix::Mismatch => Err(()),
                Prefix::Partial => Ok(None),
                Prefix::Full => Ok(Some(128)),
            },
            b'A' => match match_prefix(avail, b"APETAGEX") {
                Prefix::Mismatch => Err(()),
                Prefix::Partial => Ok(None),
                Prefix::Full if avail.len() < 32 => Ok(None),
                Prefix::Full => {
                    // Size covers the items and footer but not the header.
                    let size = u32::from_le_bytes([avail[12], avail[13], avail[14], avail[15]]);
                    let flags = u32::from_le_bytes([avail[20], avail[21], avail[22], avail[23]]);
                    let is_header = flags & (1 << 29) != 0;
                    if !is_header {
                        // A footer: the items before it have already gone by.
                        Ok(Some(32))
                    } else if (32..=MAX_APE_TAG).contains(&size) {
                        Ok(Some(32 + size as u64))
                    } else {
                        Err(())
                    }
                }
            },
            _ => Err(()),
        }
    }

    #[inline]
    fn starts_tag(next: &[u8]) -> bool {
        next.starts_with(b"ID3") || next.starts_with(b"TAG") || next.starts_with(b"APET")
    }

    #[inline]
    fn is_metadata(h: &FrameHeader, frame: &[u8]) -> bool {
        is_vbr_info_frame(h, frame)
    }
}

/// Incremental splitter: feed arbitrary byte slices (as they arrive from a
/// socket), get back whole frames only.
///
/// Frames are returned byte-exact. Tags (ID3v2, ID3v1, APE), Xing/Info/VBRI
/// header frames and garbage are dropped and counted in [`skipped_bytes`].
/// A frame is released only once the bytes right after it are known to start
/// another frame of the same stream (or a tag, while already in sync), so a
/// stray 0xFFE in garbage cannot be mistaken for audio. As a consequence the
/// frame immediately preceding garbage is dropped too: it cannot be told
/// apart from a truncated frame. Likewise the first frame after garbage: its
/// header may be the garbage's tail. Locking on (at the start and after
/// garbage) takes three chained headers, and the first frame released fixes
/// version, layer, sample rate and channel mode until [`reset`].
///
/// The buffer holds at most the latest `push` plus a bounded carry-over
/// (about one frame when the caller drains with `next_frame` after each
/// push); large tags are skipped as they stream past without buffering.
///
/// [`skipped_bytes`]: Mp3Framer::skipped_bytes
/// [`reset`]: Mp3Framer::reset
pub type Mp3Framer = SyncFramer<Mp3Sync>;

/// One Layer III frame of digital silence (header + zeroed side info and
/// main data), for keeping players connected when nothing is on air.
///
/// 32/44.1/48 kHz give an MPEG-1 frame; MPEG-2/2.5 rates (8-24 kHz) give the
/// matching lower-rate frame so the silence never forces a decoder reset.
/// Other values are rounded to the nearest valid sample rate and bitrate.
/// Frames carry no padding, so the real bitrate can be a hair below nominal.
pub fn silence_frame(bitrate_kbps: u32, sample_rate: u32, stereo: bool) -> Vec<u8> {
    const RATES: [(u32, u8, usize); 9] = [
        (44100, 0b11, 0),
        (48000, 0b11, 1),
        (32000, 0b11, 2),
        (22050, 0b10, 0),
        (24000, 0b10, 1),
        (16000, 0b10, 2),
        (11025, 0b00, 0),
        (12000, 0b00, 1),
        (8000, 0b00, 2),
    ];
    let &(_, version_bits, sr_index) = RATES
        .iter()
        .min_by_key(|r| r.0.abs_diff(sample_rate))
        .expect("non-empty table");
    let table = if version_bits == 0b11 {
        &BITRATES_V1_L3
    } else {
        &BITRATES_V2_L23
    };
    let bitrate_index = (1..15)
        .min_by_key(|&i| (table[i] as u32).abs_diff(bitrate_kbps))
        .expect("non-empty range");
    let header = [
        0xFF,
        0xE0 | version_bits << 3 | 0b01 << 1 | 1, // Layer III, no CRC
        (bitrate_index as u8) << 4 | (sr_index as u8) << 2,
        if stereo { 0b00 << 6 } else { 0b11 << 6 },
    ];
    let len = parse_header(&header)
        .expect("valid by construction")
        .frame_len;
    let mut frame = vec![0u8; len];
    frame[..4].copy_from_slice(&header);
    frame
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ingest::id3::{be32, syncsafe, tag_title};

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

    /// A Layer III frame with a non-silent payload so byte-exactness is
    /// actually checked.
    fn frame(br: u32, sr: u32, stereo: bool, padding: bool, rng: &mut Lcg) -> Vec<u8> {
        let mut f = silence_frame(br, sr, stereo);
        if padding {
            f[2] |= 0x02;
            f.push(0);
        }
        for b in &mut f[4..] {
            *b = rng.next_u8();
        }
        assert_eq!(parse_header(&f).unwrap().frame_len, f.len());
        f
    }

    pub(crate) fn frames(n: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = Lcg(seed);
        let brs = [128, 64, 320, 160, 32, 256];
        (0..n)
            .map(|i| frame(brs[i % brs.len()], 44100, true, i % 3 == 0, &mut rng))
            .collect()
    }

    struct Out {
        frames: Vec<Vec<u8>>,
        skipped: u64,
        resyncs: u64,
    }

    fn run(stream: &[u8], chunk: usize) -> Out {
        let mut f = Mp3Framer::new();
        let mut frames = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            f.push(piece);
            while let Some((h, data)) = f.next_frame() {
                assert_eq!(h.frame_len, data.len());
                frames.push(data.to_vec());
            }
        }
        f.finish();
        while let Some((_, data)) = f.next_frame() {
            frames.push(data.to_vec());
        }
        Out {
            frames,
            skipped: f.skipped_bytes(),
            resyncs: f.resyncs(),
        }
    }

    fn run_all_chunkings(stream: &[u8]) -> Out {
        let whole = run(stream, stream.len());
        for chunk in [1, 2, 3, 7, 100, 417, 4096] {
            let o = run(stream, chunk);
            assert_eq!(o.frames, whole.frames, "chunk {chunk}");
            assert_eq!(o.skipped, whole.skipped, "chunk {chunk}");
            assert_eq!(o.resyncs, whole.resyncs, "chunk {chunk}");
        }
        whole
    }

    fn id3v2(ver: u8, body_len: usize, footer: bool) -> Vec<u8> {
        let mut t = b"ID3".to_vec();
        t.extend([ver, 0, if footer { 0x10 } else { 0 }]);
        let s = body_len as u32;
        t.extend([
            (s >> 21) as u8 & 0x7F,
            (s >> 14) as u8 & 0x7F,
            (s >> 7) as u8 & 0x7F,
            s as u8 & 0x7F,
        ]);
        // Body full of sync-looking bytes that must not be taken as frames.
        t.extend((0..body_len).map(|i| if i % 2 == 0 { 0xFF } else { 0xFB }));
        if footer {
            let mut f = t[..10].to_vec();
            f[..3].copy_from_slice(b"3DI");
            t.extend(f);
        }
        t
    }

    fn ape(items: usize, with_header: bool) -> Vec<u8> {
        let block = |is_header: bool| {
            let mut b = b"APETAGEX".to_vec();
            b.extend(2000u32.to_le_bytes());
            b.extend((items as u32 + 32).to_le_bytes());
            b.extend(1u32.to_le_bytes());
            let mut flags = 0u32;
            if with_header {
                flags |= 1 << 31;
            }
            if is_header {
                flags |= 1 << 29;
            }
            b.extend(flags.to_le_bytes());
            b.extend([0u8; 8]);
            b
        };
        let mut t = Vec::new();
        if with_header {
            t.extend(block(true));
        }
        t.extend((0..items).map(|i| b"Title\0Some Song\xFF\xFB"[i % 17]));
        t.extend(block(false));
        t
    }

    pub(crate) fn id3v1(title: &str, artist: &str) -> Vec<u8> {
        let mut t = b"TAG".to_vec();
        let mut field = |s: &str, n: usize| {
            let mut f = s.as_bytes().to_vec();
            f.resize(n, 0);
            t.extend(f);
        };
        field(title, 30);
        field(artist, 30);
        field("", 30);
        field("2024", 4);
        field("", 30);
        t.push(255);
        assert_eq!(t.len(), 128);
        t
    }

    fn xing_frame(kind: &[u8; 4], rng: &mut Lcg) -> Vec<u8> {
        let mut f = frame(128, 44100, true, false, rng);
        f[4..].fill(0);
        // Xing/Info follow the 32-byte stereo side info; VBRI sits at 36 too.
        f[36..40].copy_from_slice(kind);
        f
    }

    #[test]
    fn parses_headers() {
        let h = parse_header(&[0xFF, 0xFB, 0x90, 0x64]).unwrap();
        assert_eq!(
            h,
            FrameHeader {
                version: MpegVersion::Mpeg1,
                layer: 3,
                bitrate_kbps: 128,
                sample_rate: 44100,
                channels: 2,
                channel_mode: 1,
                frame_len: 417,
                samples: 1152
            }
        );
        assert_eq!(h.duration_micros(), 26122);
        // Padding, mono.
        let h = parse_header(&[0xFF, 0xFB, 0x92, 0xC0]).unwrap();
        assert_eq!((h.frame_len, h.channels), (418, 1));
        // MPEG-1 Layer II, 192 kbps, 48 kHz.
        let h = parse_header(&[0xFF, 0xFD, 0xA4, 0x00]).unwrap();
        assert_eq!(
            (h.layer, h.bitrate_kbps, h.sample_rate, h.frame_len),
            (2, 192, 48000, 576)
        );
        // MPEG-1 Layer I, 384 kbps, 44.1 kHz.
        let h = parse_header(&[0xFF, 0xFF, 0xC0, 0x00]).unwrap();
        assert_eq!((h.layer, h.frame_len, h.samples), (1, 416, 384));
        // MPEG-2 Layer III, 64 kbps, 22.05 kHz.
        let h = parse_header(&[0xFF, 0xF3, 0x80, 0x00]).unwrap();
        assert_eq!(
            (
                h.version,
                h.bitrate_kbps,
                h.sample_rate,
                h.frame_len,
                h.samples
            ),
            (MpegVersion::Mpeg2, 64, 22050, 208, 576)
        );
        // MPEG-2.5 Layer III, 8 kbps, 8 kHz.
        let h = parse_header(&[0xFF, 0xE3, 0x18, 0x00]).unwrap();
        assert_eq!(
            (h.version, h.sample_rate, h.frame_len),
            (MpegVersion::Mpeg25, 8000, 72)
        );
        assert_eq!(h.duration_micros(), 72000);
        assert!(h.same_stream(&parse_header(&[0xFF, 0xE3, 0x28, 0x00]).unwrap()));
        assert!(!h.same_stream(&parse_header(&[0xFF, 0xF3, 0x80, 0x00]).unwrap()));
        // Stereo and joint stereo mix within a stream; mono and dual channel do not.
        assert!(h.same_stream(&parse_header(&[0xFF, 0xE3, 0x28, 0x40]).unwrap()));
        assert!(!h.same_stream(&parse_header(&[0xFF, 0xE3, 0x28, 0xC0]).unwrap()));
        assert!(!h.same_stream(&parse_header(&[0xFF, 0xE3, 0x28, 0x80]).unwrap()));
        // MPEG-1 Layer II at 32 kbps, mono; 384 kbps, stereo.
        assert!(parse_header(&[0xFF, 0xFD, 0x14, 0xC0]).is_some());
        assert!(parse_header(&[0xFF, 0xFD, 0xE4, 0x00]).is_some());

        for bad in [
            &[0xFF, 0xFB, 0x90][..],   // too short
            &[0xFE, 0xFB, 0x90, 0x64], // no sync
            &[0xFF, 0xDB, 0x90, 0x64], // no sync (11th bit)
            &[0xFF, 0xEB, 0x90, 0x64], // reserved version
            &[0xFF, 0xF9, 0x90, 0x64], // reserved layer
            &[0xFF, 0xFB, 0x00, 0x64], // free format
            &[0xFF, 0xFB, 0xF0, 0x64], // bitrate index 15
            &[0xFF, 0xFB, 0x9C, 0x64], // reserved sample rate
            &[0xFF, 0xFB, 0x90, 0x66], // reserved emphasis
            &[0xFF, 0xE4, 0x97, 0x48], // MPEG-2.5 Layer II (aired from random bytes once)
            &[0xFF, 0xE6, 0x90, 0x00], // MPEG-2.5 Layer I
            &[0xFF, 0xFD, 0x14, 0x00], // MPEG-1 Layer II, 32 kbps stereo
            &[0xFF, 0xFD, 0xE4, 0xC0], // MPEG-1 Layer II, 384 kbps mono
        ] {
            assert_eq!(parse_header(bad), None, "{bad:02X?}");
        }
    }

    #[test]
    fn silence_frames_are_valid_and_decode_to_silence() {
        for (br, sr, stereo, len) in [
            (128, 44100, true, 417),
            (32, 48000, false, 96),
            (320, 32000, true, 1440),
            (64, 22050, true, 208),
            (16, 8000, false, 144),
        ] {
            let f = silence_frame(br, sr, stereo);
            let h = parse_header(&f).unwrap();
            assert_eq!(
                (h.bitrate_kbps, h.sample_rate, h.channels, f.len()),
                (br, sr, 1 + stereo as u8, len)
            );
            if sr >= 32000 {
                assert_eq!(h.version, MpegVersion::Mpeg1);
            }
            let stream: Vec<u8> = f.repeat(10);
            let mut dec = minimp3::Decoder::new(std::io::Cursor::new(stream));
            let mut decoded = 0;
            loop {
                match dec.next_frame() {
                    Ok(fr) => {
                        assert_eq!(fr.sample_rate as u32, sr);
                        assert_eq!(fr.channels, 1 + stereo as usize);
                        assert!(fr.data.iter().all(|&s| s == 0));
                        decoded += 1;
                    }
                    Err(minimp3::Error::Eof) => break,
                    Err(e) => panic!("{e:?}"),
                }
            }
            assert!(decoded >= 9, "decoded {decoded}");
        }
        // Out-of-table values snap to the nearest valid ones.
        let h = parse_header(&silence_frame(100, 44000, true)).unwrap();
        assert_eq!((h.bitrate_kbps, h.sample_rate), (96, 44100));
    }

    #[test]
    fn clean_stream_any_chunking() {
        let fs = frames(200, 1);
        let stream = fs.concat();
        let o = run_all_chunkings(&stream);
        assert_eq!(o.frames, fs);
        assert_eq!((o.skipped, o.resyncs), (0, 0));
    }

    #[test]
    fn last_frame_needs_finish() {
        let fs = frames(5, 2);
        let mut f = Mp3Framer::new();
        f.push(&fs.concat());
        let mut n = 0;
        while f.next_frame().is_some() {
            n += 1;
        }
        assert_eq!(n, 4);
        f.finish();
        assert_eq!(f.next_frame().unwrap().1, &fs[4][..]);
        assert!(f.next_frame().is_none());
    }

    #[test]
    fn strips_tags_and_xing() {
        let mut rng = Lcg(3);
        let fs = frames(50, 4);
        for footer in [false, true] {
            let head = id3v2(if footer { 4 } else { 3 }, 3000, footer);
            let mid = id3v2(4, 20, false);
            let xing = xing_frame(b"Xing", &mut rng);
            let ape_t = ape(300, true);
            let v1 = id3v1("Song", "Band");
            let stream = [
                head.clone(),
                xing.clone(),
                fs[..20].concat(),
                mid.clone(),
                fs[20..].concat(),
                ape_t.clone(),
                v1.clone(),
            ]
            .concat();
            let o = run_all_chunkings(&stream);
            assert_eq!(o.frames, fs);
            assert_eq!(o.resyncs, 0);
            let tags = head.len() + xing.len() + mid.len() + ape_t.len() + v1.len();
            assert_eq!(o.skipped, tags as u64);
        }
    }

    #[test]
    fn strips_info_vbri_and_footer_only_ape() {
        let mut rng = Lcg(5);
        let fs = frames(10, 6);
        for kind in [b"Info", b"VBRI"] {
            let x = xing_frame(kind, &mut rng);
            let o = run_all_chunkings(&[x.clone(), fs.concat()].concat());
            assert_eq!(o.frames, fs);
            assert_eq!((o.skipped, o.resyncs), (x.len() as u64, 0));
        }
        // A tag without header (APEv1 style): its items look like garbage,
        // so the last frame cannot be verified; the footer is recognised.
        let a = ape(40, false);
        let o = run_all_chunkings(&[fs.concat(), a.clone(), id3v1("x", "y")].concat());
        assert_eq!(o.frames, fs[..9]);
        assert_eq!(o.skipped, (fs[9].len() + a.len() + 128) as u64);
        assert_eq!(o.resyncs, 1);
    }

    #[test]
    fn garbage_between_frames_is_a_resync() {
        let fs = frames(40, 7);
        let garbage = Lcg(8).bytes(777);
        let stream = [fs[..20].concat(), garbage.clone(), fs[20..].concat()].concat();
        let o = run_all_chunkings(&stream);
        // The frames either side of the garbage cannot be verified and are dropped: the end
        // of the one before, the start of the one after.
        let expect: Vec<_> = fs[..19].iter().chain(&fs[21..]).cloned().collect();
        assert_eq!(o.frames, expect);
        assert_eq!(o.resyncs, 1);
        let lost = fs[19].len() + fs[20].len();
        assert_eq!(o.skipped, (garbage.len() + lost) as u64);
    }

    #[test]
    fn truncated_frame_is_never_emitted() {
        // A source that died mid-frame and came back without a reset.
        let fs = frames(20, 9);
        let stream = [fs[..12].concat(), fs[12][..200].to_vec(), fs[13..].concat()].concat();
        let o = run_all_chunkings(&stream);
        // The first whole frame after the damage is dropped too: its start is unverified.
        let expect: Vec<_> = fs[..12].iter().chain(&fs[14..]).cloned().collect();
        assert_eq!(o.frames, expect);
        assert_eq!((o.skipped, o.resyncs), (200 + fs[13].len() as u64, 1));
    }

    #[test]
    fn joins_mid_frame() {
        let fs = frames(20, 10);
        let stream = fs.concat()[100..].to_vec();
        let o = run_all_chunkings(&stream);
        // The partial frame is garbage, so the first whole one has an unverified start.
        assert_eq!(o.frames, fs[2..]);
        assert_eq!(o.skipped, (fs[0].len() - 100 + fs[1].len()) as u64);
    }

    #[test]
    fn random_bytes_yield_no_frames_and_bounded_buffer() {
        let noise = Lcg(11).bytes(1 << 20);
        let o = run(&noise, 4096);
        assert!(o.frames.len() <= 1, "{} frames from noise", o.frames.len());
        assert_eq!(
            o.skipped,
            noise.len() as u64 - o.frames.iter().map(|f| f.len() as u64).sum::<u64>()
        );

        let mut f = Mp3Framer::new();
        for piece in noise.chunks(4096) {
            f.push(piece);
            while f.next_frame().is_some() {}
            assert!(f.buffer_capacity() <= 4 * 4096, "{}", f.buffer_capacity());
        }
        // A caller that never drains is still bounded.
        let mut f = Mp3Framer::new();
        for piece in noise.chunks(4096) {
            f.push(piece);
        }
        assert!(f.buffer_capacity() <= 2 * (MAX_CARRY + 4096));
    }

    /// Each way a stray header in garbage used to pass: an undefined version/layer, a chain of
    /// another stream's headers, a lone header whose length lands on a real frame, and a
    /// two-header chain at the start.
    #[test]
    fn headers_in_garbage_never_pass() {
        let mut rng = Lcg(21);
        let fs = frames(12, 22);
        // MPEG-2.5 Layer II, as aired from random bytes: 961 bytes, chained.
        let mut bogus = vec![0u8; 961];
        bogus[..4].copy_from_slice(&[0xFF, 0xE4, 0x97, 0x48]);
        let o = run_all_chunkings(&[bogus.clone(), bogus.clone(), bogus.clone(), bogus].concat());
        assert!(o.frames.is_empty());

        // 48 kHz mono frames that chain among themselves, between 44.1 kHz stereo ones.
        let other: Vec<_> = (0..4)
            .map(|_| frame(64, 48000, false, false, &mut rng))
            .collect();
        let o = run_all_chunkings(&[fs[..6].concat(), other.concat(), fs[6..].concat()].concat());
        assert!(
            o.frames.iter().all(|f| fs.contains(f)),
            "another stream passed"
        );

        // Garbage ending in a matching header whose length reaches exactly the next real frame.
        let mut fake = fs[0].clone();
        for b in &mut fake[4..] {
            *b = rng.next_u8();
        }
        let mut garbage = Lcg(23).bytes(300);
        garbage.retain(|&b| b != 0xFF);
        let stream = [fs[..6].concat(), garbage, fake, fs[6..].concat()].concat();
        let o = run_all_chunkings(&stream);
        assert!(
            o.frames.iter().all(|f| fs.contains(f)),
            "garbage frame passed"
        );

        // Two chained headers then garbage, at the start: not enough to lock.
        let stream = [fs[..2].concat(), Lcg(24).bytes(50)].concat();
        assert!(run_all_chunkings(&stream).frames.is_empty());
    }

    /// Real frames between runs of seeded random bytes (64 MB of them in a debug build, 1 GB
    /// optimised, or `CYCAST_FRAMER_SOAK_MB`): not one random byte comes out, and at most
    /// about the frames either side of each run are lost.
    #[test]
    fn random_bytes_between_frames_never_come_out() {
        use crate::ingest::lockon::soak;
        // VBR Layer III at 44.1 kHz, stereo and joint stereo mixed, as encoders write it.
        let make = |rng: &mut soak::Rng| {
            let brs = [32, 64, 96, 128, 160, 192, 256, 320];
            let br = brs[rng.below(brs.len() as u64) as usize];
            let mut f = silence_frame(br, 44100, true);
            if rng.below(2) == 1 {
                f[2] |= 0x02;
                f.push(0);
            }
            f[3] |= (rng.below(2) as u8) << 6;
            rng.fill(&mut f[4..]);
            f
        };
        let r = soak::run::<Mp3Sync>(0x5eed_0001, soak::soak_megabytes() << 20, make);
        eprintln!("{r:?}");
        let lost = r.frames - r.passed;
        assert!(lost <= 2 * r.runs + r.runs / 100, "{r:?}");
    }

    #[test]
    fn large_tag_is_not_buffered() {
        let fs = frames(5, 12);
        let tag = id3v2(3, 500_000, false);
        let stream = [tag.clone(), fs.concat()].concat();
        let mut f = Mp3Framer::new();
        let mut got = Vec::new();
        for piece in stream.chunks(4096) {
            f.push(piece);
            while let Some((_, d)) = f.next_frame() {
                got.push(d.to_vec());
            }
            assert!(f.buffer_capacity() <= 3 * 4096);
        }
        f.finish();
        while let Some((_, d)) = f.next_frame() {
            got.push(d.to_vec());
        }
        assert_eq!(got, fs);
        assert_eq!(f.skipped_bytes(), tag.len() as u64);
    }

    #[test]
    fn reset_drops_partial_frame() {
        let fs = frames(6, 13);
        let mut f = Mp3Framer::new();
        f.push(&fs[0][..150]);
        assert!(f.next_frame().is_none());
        f.reset();
        f.push(&fs.concat());
        f.finish();
        let mut got = Vec::new();
        while let Some((_, d)) = f.next_frame() {
            got.push(d.to_vec());
        }
        assert_eq!(got, fs);
        assert_eq!((f.skipped_bytes(), f.resyncs()), (150, 0));
    }

    /// Demo files generated by scripts/make-demo-playlist.sh: ~20 s each,
    /// ID3v2 + LAME Info frame + ID3v1.
    #[test]
    fn real_demo_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("music");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("no {dir:?}; skipping");
            return;
        };
        let mut checked = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("mp3") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let id3 = if &data[..3] == b"ID3" {
                10 + syncsafe(&data[6..10]).unwrap() as usize
            } else {
                0
            };
            let first = parse_header(&data[id3..]).expect("audio right after ID3v2");
            let info = &data[id3..id3 + first.frame_len];
            assert!(
                is_vbr_info_frame(&first, info),
                "{path:?} has no Info frame"
            );
            let info_frames = be32(&info[36 + 8..36 + 12]) as usize; // LAME: tag, flags, frames
            let v1 = if &data[data.len() - 128..data.len() - 125] == b"TAG" {
                128
            } else {
                0
            };

            let o = run_all_chunkings(&data);
            assert_eq!(o.resyncs, 0, "{path:?}");
            assert_eq!(o.skipped, (id3 + first.frame_len + v1) as u64, "{path:?}");
            assert_eq!(o.frames.len(), info_frames, "{path:?}");
            let audio_bytes: usize = o.frames.iter().map(Vec::len).sum();
            assert_eq!(audio_bytes + o.skipped as usize, data.len());

            let micros: u64 = o
                .frames
                .iter()
                .map(|f| parse_header(f).unwrap().duration_micros())
                .sum();
            let secs = micros as f64 / 1e6;
            assert!((secs - 20.0).abs() / 20.0 < 0.01, "{path:?}: {secs} s");
            assert!(tag_title(&data).unwrap().starts_with("Cycast Demo - "));

            // Frames passed through must still decode.
            let mut dec = minimp3::Decoder::new(std::io::Cursor::new(o.frames.concat()));
            let mut decoded = 0;
            while let Ok(fr) = dec.next_frame() {
                assert_eq!((fr.sample_rate, fr.channels), (44100, 2));
                decoded += 1;
            }
            assert!(
                decoded + 2 >= o.frames.len(),
                "{decoded} of {}",
                o.frames.len()
            );
            checked += 1;
        }
        eprintln!("checked {checked} demo files");
    }
}
