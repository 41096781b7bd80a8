//! AAC framing for ADTS streams (`audio/aac`, `audio/aacp`).
//!
//! Same approach as the MP3 framer in [`super::frames`]: joins, chunk boundaries and pacing need
//! only each frame's length and duration, which the 7-byte ADTS header gives, so this reads
//! headers and never decodes. It runs on every ingested byte, passes frames through
//! byte-for-byte and does not allocate per frame.
//!
//! HE-AAC (AAC+) in ADTS signals the core sample rate, and each frame still carries 1024 core
//! samples per raw data block, so durations come out right for `audio/aacp` too.

use super::lockon::{id3v2_len, SyncFormat, SyncFramer};

/// Sample rates indexed by the 4-bit `sampling_frequency_index`; 13 to 15 are reserved.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// A parsed ADTS frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// Whole frame length in bytes, header (7, or 9 with CRC) included.
    pub frame_len: usize,
    /// Sampling rate from the header (the core rate for HE-AAC).
    pub sample_rate: u32,
    /// Channel count: 1 to 6, 8 for configuration 7, 0 when a program config element in the
    /// payload defines the layout.
    pub channels: u8,
    /// PCM samples per channel: 1024 × (number_of_raw_data_blocks + 1).
    pub samples: u32,
    /// The ID bit: MPEG-2 AAC (true) or MPEG-4 (false).
    pub mpeg2: bool,
    /// The 2-bit profile (audio object type minus one: 1 is AAC LC).
    pub profile: u8,
}

impl AdtsHeader {
    /// Playback time of this frame in microseconds (truncated).
    #[inline]
    pub fn duration_micros(&self) -> u64 {
        self.samples as u64 * 1_000_000 / self.sample_rate as u64
    }

    /// Whether `other` plausibly belongs to the same elementary stream: frame sizes and
    /// block counts vary, the fixed header (ID, profile, sample rate, channel layout) does not.
    #[inline]
    pub fn same_stream(&self, other: &AdtsHeader) -> bool {
        self.sample_rate == other.sample_rate
            && self.channels == other.channels
            && self.mpeg2 == other.mpeg2
            && self.profile == other.profile
    }
}

/// Parses the ADTS header at the start of `bytes` (at least 7 bytes needed).
///
/// Returns `None` without the 12-bit sync 0xFFF, with a layer other than 0, a reserved
/// sampling index, or a frame length shorter than the header itself.
#[inline]
pub fn parse_adts_header(bytes: &[u8]) -> Option<AdtsHeader> {
    let b = bytes.get(..7)?;
    // Sync (12 bits), ID (any), layer (must be 0), protection_absent (any).
    if b[0] != 0xFF || b[1] & 0xF6 != 0xF0 {
        return None;
    }
    let sample_rate = *SAMPLE_RATES.get(((b[2] >> 2) & 0x0F) as usize)?;
    let config = (b[2] & 1) << 2 | b[3] >> 6;
    let frame_len = ((b[3] & 3) as usize) << 11 | (b[4] as usize) << 3 | (b[5] >> 5) as usize;
    let header_len = if b[1] & 1 == 0 { 9 } else { 7 };
    if frame_len < header_len {
        return None;
    }
    Some(AdtsHeader {
        frame_len,
        sample_rate,
        channels: if config == 7 { 8 } else { config },
        samples: 1024 * ((b[6] & 3) as u32 + 1),
        mpeg2: b[1] & 0x08 != 0,
        profile: b[2] >> 6,
    })
}

/// Unconsumed data kept across `push` calls is capped at this so a caller that never drains
/// cannot grow the buffer without bound. Well above the largest frame (8191 bytes, the 13-bit
/// length field) plus the successor header.
const MAX_CARRY: usize = 32 * 1024;

/// ADTS for [`SyncFramer`]: the only tags are ID3v2 (at the start, or timed metadata between
/// frames).
#[derive(Debug, Default)]
pub struct AdtsSync;

impl SyncFormat for AdtsSync {
    type Header = AdtsHeader;
    const HEADER_LEN: usize = 7;
    const MAX_CARRY: usize = MAX_CARRY;

    #[inline]
    fn parse(bytes: &[u8]) -> Option<AdtsHeader> {
        parse_adts_header(bytes)
    }

    #[inline]
    fn frame_len(h: &AdtsHeader) -> usize {
        h.frame_len
    }

    #[inline]
    fn same_stream(next: &AdtsHeader, h: &AdtsHeader) -> bool {
        next.same_stream(h)
    }

    /// A frame sync or "ID3".
    #[inline]
    fn is_candidate(b: u8) -> bool {
        b == 0xFF || b == b'I'
    }

    #[inline]
    fn tag_len(avail: &[u8]) -> Result<Option<u64>, ()> {
        id3v2_len(avail)
    }

    #[inline]
    fn starts_tag(next: &[u8]) -> bool {
        next.starts_with(b"ID3")
    }
}

/// Incremental ADTS splitter: feed arbitrary byte slices (as they arrive from a socket), get
/// back whole frames only.
///
/// Frames are returned byte-exact. ID3v2 tags (at the start, or timed metadata between
/// frames) and garbage are dropped and counted in [`skipped_bytes`]. A frame is released only
/// once the bytes right after it start another frame with the same fixed header (or a tag,
/// while already in sync), or at end of input after [`finish`], so a stray
/// 0xFFF in garbage cannot be mistaken for audio. As with MP3, the frames either side of
/// garbage are dropped too, three chained headers are needed to lock on, and the first frame
/// released fixes ID, profile, sample rate and channel layout until a reset.
///
/// The buffer holds at most the latest `push` plus a bounded carry-over; large tags are
/// skipped as they stream past without buffering.
///
/// [`skipped_bytes`]: AdtsFramer::skipped_bytes
/// [`finish`]: AdtsFramer::finish
pub type AdtsFramer = SyncFramer<AdtsSync>;

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

    /// An ADTS frame with a random payload so byte-exactness is actually checked.
    fn frame(
        sr_index: u8,
        config: u8,
        len: usize,
        crc: bool,
        blocks: u8,
        rng: &mut Lcg,
    ) -> Vec<u8> {
        let mut f = rng.bytes(len);
        f[0] = 0xFF;
        f[1] = 0xF0 | u8::from(!crc); // MPEG-4, layer 0
        f[2] = 1 << 6 | sr_index << 2 | config >> 2; // AAC LC
        f[3] = (config & 3) << 6 | (len >> 11) as u8;
        f[4] = (len >> 3) as u8;
        f[5] = (len as u8) << 5 | 0x1F;
        f[6] = 0xFC | blocks;
        let h = parse_adts_header(&f).unwrap();
        assert_eq!(h.frame_len, len);
        f
    }

    fn frames(n: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = Lcg(seed);
        (0..n)
            .map(|i| {
                let len = 9 + (i * 131 + 17) % 900;
                frame(4, 2, len, i % 4 == 0, (i % 7 == 0) as u8, &mut rng)
            })
            .collect()
    }

    struct Out {
        frames: Vec<Vec<u8>>,
        micros: u64,
        skipped: u64,
        resyncs: u64,
    }

    fn run(stream: &[u8], chunk: usize) -> Out {
        let mut f = AdtsFramer::new();
        let mut out = Out {
            frames: Vec::new(),
            micros: 0,
            skipped: 0,
            resyncs: 0,
        };
        let mut take = |f: &mut AdtsFramer| {
            while let Some((h, data)) = f.next_frame() {
                assert_eq!(h.frame_len, data.len());
                out.micros += h.duration_micros();
                out.frames.push(data.to_vec());
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
            let o = run(stream, chunk);
            assert_eq!(o.frames, whole.frames, "chunk {chunk}");
            assert_eq!(
                (o.micros, o.skipped, o.resyncs),
                (whole.micros, whole.skipped, whole.resyncs),
                "chunk {chunk}"
            );
        }
        whole
    }

    fn id3v2(body_len: usize) -> Vec<u8> {
        let s = body_len as u32;
        let mut t = b"ID3\x04\x00\x00".to_vec();
        t.extend([21, 14, 7, 0].map(|sh| (s >> sh) as u8 & 0x7F));
        // Body full of sync-looking bytes that must not be taken as frames.
        t.extend((0..body_len).map(|i| [0xFF, 0xF1, 0x50, 0x80][i % 4]));
        t
    }

    #[test]
    fn parses_headers() {
        // AAC LC, 44.1 kHz, stereo, 371 bytes, no CRC, one block.
        let h = parse_adts_header(&[0xFF, 0xF1, 0x50, 0x80, 0x2E, 0x7F, 0xFC]).unwrap();
        assert_eq!(
            h,
            AdtsHeader {
                frame_len: 371,
                sample_rate: 44100,
                channels: 2,
                samples: 1024,
                mpeg2: false,
                profile: 1,
            }
        );
        assert_eq!(h.duration_micros(), 23219);
        // MPEG-2 ID, with CRC, 48 kHz, 7.1, four blocks.
        let h = parse_adts_header(&[0xFF, 0xF8, 0x4D, 0xC0, 0x01, 0x3F, 0xFF]).unwrap();
        assert_eq!(
            (h.frame_len, h.sample_rate, h.channels, h.samples),
            (9, 48000, 8, 4096)
        );
        // 24 kHz core (HE-AAC), channels from a PCE.
        let h = parse_adts_header(&[0xFF, 0xF1, 0x58, 0x00, 0x10, 0x00, 0x00]).unwrap();
        assert_eq!((h.sample_rate, h.channels, h.frame_len), (24000, 0, 128));
        assert_eq!(h.duration_micros(), 42666);

        for bad in [
            &[0xFF, 0xF1, 0x50, 0x80, 0x2E, 0x7F][..],   // too short
            &[0xFE, 0xF1, 0x50, 0x80, 0x2E, 0x7F, 0xFC], // no sync
            &[0xFF, 0xE1, 0x50, 0x80, 0x2E, 0x7F, 0xFC], // no sync (12th bit)
            &[0xFF, 0xF3, 0x50, 0x80, 0x2E, 0x7F, 0xFC], // layer 1 (MP3 territory)
            &[0xFF, 0xFB, 0x50, 0x80, 0x2E, 0x7F, 0xFC], // MPEG-1 Layer III
            &[0xFF, 0xF1, 0x74, 0x80, 0x2E, 0x7F, 0xFC], // reserved sampling index 13
            &[0xFF, 0xF1, 0x50, 0x80, 0x00, 0xDF, 0xFC], // length 6 < 7
            &[0xFF, 0xF0, 0x50, 0x80, 0x01, 0x1F, 0xFC], // length 8 < 9 with CRC
        ] {
            assert_eq!(parse_adts_header(bad), None, "{bad:02X?}");
        }
    }

    #[test]
    fn clean_stream_any_chunking() {
        let fs = frames(300, 1);
        let o = run_all_chunkings(&fs.concat());
        assert_eq!(o.frames, fs);
        assert_eq!((o.skipped, o.resyncs), (0, 0));
        let expect: u64 = fs
            .iter()
            .map(|f| parse_adts_header(f).unwrap().duration_micros())
            .sum();
        assert_eq!(o.micros, expect);
    }

    #[test]
    fn last_frame_needs_finish() {
        let fs = frames(5, 2);
        let mut f = AdtsFramer::new();
        f.push(&fs.concat());
        let mut n = 0;
        while f.next_frame().is_some() {
            n += 1;
        }
        assert_eq!(n, 4);
        f.finish();
        assert_eq!(f.next_frame().unwrap().1, &fs[4][..]);
        assert!(f.next_frame().is_none());
        assert_eq!(f.skipped_bytes(), 0);
    }

    #[test]
    fn strips_id3_tags() {
        let fs = frames(60, 3);
        let head = id3v2(3000);
        let mid = id3v2(40);
        let stream = [
            head.clone(),
            fs[..30].concat(),
            mid.clone(),
            fs[30..].concat(),
        ]
        .concat();
        let o = run_all_chunkings(&stream);
        assert_eq!(o.frames, fs);
        assert_eq!((o.skipped, o.resyncs), ((head.len() + mid.len()) as u64, 0));
    }

    #[test]
    fn garbage_between_frames_is_a_resync() {
        let fs = frames(40, 4);
        let garbage = Lcg(5).bytes(777);
        let stream = [fs[..20].concat(), garbage.clone(), fs[20..].concat()].concat();
        let o = run_all_chunkings(&stream);
        // The frames either side of the garbage cannot be verified and are dropped.
        let expect: Vec<_> = fs[..19].iter().chain(&fs[21..]).cloned().collect();
        assert_eq!(o.frames, expect);
        assert_eq!(o.resyncs, 1);
        let lost = fs[19].len() + fs[20].len();
        assert_eq!(o.skipped, (garbage.len() + lost) as u64);
    }

    #[test]
    fn leading_garbage_and_mid_frame_join() {
        let fs = frames(20, 6);
        let stream = fs.concat()[5..].to_vec();
        let o = run_all_chunkings(&stream);
        // The first whole frame follows garbage, so its start is unverified.
        assert_eq!(o.frames, fs[2..]);
        let skipped = fs[0].len() - 5 + fs[1].len();
        assert_eq!((o.skipped, o.resyncs), (skipped as u64, 1));
    }

    #[test]
    fn format_locked_until_reset() {
        // A 44.1 kHz stereo stream followed by a 48 kHz mono one on the same connection: the
        // second does not fit the lock and never passes; after a reset (a new source) it does.
        let mut rng = Lcg(7);
        let a: Vec<_> = (0..10)
            .map(|_| frame(4, 2, 300, false, 0, &mut rng))
            .collect();
        let b: Vec<_> = (0..10)
            .map(|_| frame(3, 1, 200, false, 0, &mut rng))
            .collect();
        let o = run_all_chunkings(&[a.concat(), b.concat()].concat());
        assert_eq!(o.frames, a[..9]);
        assert_eq!((o.skipped, o.resyncs), (300 + 2000, 1));

        let mut f = AdtsFramer::new();
        f.push(&a.concat());
        while f.next_frame().is_some() {}
        f.reset();
        f.push(&b.concat());
        f.finish();
        let mut got = Vec::new();
        while let Some((_, d)) = f.next_frame() {
            got.push(d.to_vec());
        }
        assert_eq!(got, b);
    }

    #[test]
    fn profile_and_id_are_locked() {
        // Same rate and layout, other profile (HE-AAC signalled as main) or ID: not the stream.
        let mut rng = Lcg(17);
        let fs: Vec<_> = (0..12)
            .map(|_| frame(4, 2, 250, false, 0, &mut rng))
            .collect();
        let mut odd = fs.clone();
        odd[6][2] &= 0x3F; // profile 0 (AAC Main)
        odd[7][1] |= 0x08; // ID: MPEG-2
        let o = run_all_chunkings(&odd.concat());
        assert_eq!(o.frames, [&fs[..5], &fs[9..]].concat());
    }

    #[test]
    fn random_bytes_yield_no_frames_and_bounded_buffer() {
        let noise = Lcg(11).bytes(1 << 20);
        let o = run(&noise, 4096);
        assert!(o.frames.len() <= 1, "{} frames from noise", o.frames.len());
        let passed: u64 = o.frames.iter().map(|f| f.len() as u64).sum();
        assert_eq!(o.skipped, noise.len() as u64 - passed);

        let mut f = AdtsFramer::new();
        for piece in noise.chunks(4096) {
            f.push(piece);
            while f.next_frame().is_some() {}
            assert!(f.buffer_capacity() <= 4 * 4096, "{}", f.buffer_capacity());
        }
        // A caller that never drains is still bounded.
        let mut f = AdtsFramer::new();
        for piece in noise.chunks(4096) {
            f.push(piece);
        }
        assert!(f.buffer_capacity() <= 2 * (MAX_CARRY + 4096));
    }

    /// Real frames between runs of seeded random bytes (see the MP3 framer's twin test).
    #[test]
    fn random_bytes_between_frames_never_come_out() {
        use crate::ingest::lockon::soak;
        // AAC LC, 44.1 kHz stereo, sizes as a VBR encoder writes them, some with CRC.
        let make = |rng: &mut soak::Rng| {
            let len = 100 + rng.below(700) as usize;
            let crc = rng.below(8) == 0;
            let mut f = vec![0u8; len];
            rng.fill(&mut f);
            f[0] = 0xFF;
            f[1] = 0xF0 | u8::from(!crc);
            f[2] = 1 << 6 | 4 << 2;
            f[3] = 2 << 6 | (len >> 11) as u8;
            f[4] = (len >> 3) as u8;
            f[5] = (len as u8) << 5 | 0x1F;
            f[6] = 0xFC;
            f
        };
        let r = soak::run::<AdtsSync>(0x5eed_0002, soak::soak_megabytes() << 20, make);
        eprintln!("{r:?}");
        let lost = r.frames - r.passed;
        assert!(lost <= 2 * r.runs + r.runs / 100, "{r:?}");
    }

    #[test]
    fn reset_drops_partial_frame() {
        let fs = frames(6, 12);
        let mut f = AdtsFramer::new();
        f.push(&fs[0][..5]);
        assert!(f.next_frame().is_none());
        f.reset();
        f.push(&fs.concat());
        f.finish();
        let mut got = Vec::new();
        while let Some((_, d)) = f.next_frame() {
            got.push(d.to_vec());
        }
        assert_eq!(got, fs);
        assert_eq!((f.skipped_bytes(), f.resyncs()), (5, 0));
    }

    /// Runs ffmpeg to make `seconds` of a sine tone as ADTS, or `None` without ffmpeg.
    fn ffmpeg_adts(seconds: u32, extra: &[&str]) -> Option<Vec<u8>> {
        let src = format!("sine=f=440:d={seconds}");
        let out = std::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                &src,
            ])
            .args(["-c:a", "aac", "-b:a", "64k"])
            .args(extra)
            .args(["-f", "adts", "-"])
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
        let Some(plain) = ffmpeg_adts(3, &[]) else {
            eprintln!("no ffmpeg; skipping");
            return;
        };
        let tagged = ffmpeg_adts(3, &["-write_id3v2", "1", "-metadata", "title=Tone"]).unwrap();
        for data in [plain, tagged] {
            let tag = match id3v2_len(&data) {
                Ok(Some(n)) => n,
                _ => 0,
            };
            let o = run_all_chunkings(&data);
            assert_eq!((o.skipped, o.resyncs), (tag, 0));
            let passed: usize = o.frames.iter().map(Vec::len).sum();
            assert_eq!(passed as u64 + tag, data.len() as u64);
            let secs = o.micros as f64 / 1e6;
            eprintln!("{} frames after a {tag}-byte tag, {secs} s", o.frames.len());
            assert!((secs - 3.0).abs() / 3.0 < 0.05, "{secs} s");
            let h = parse_adts_header(&o.frames[0]).unwrap();
            assert_eq!((h.sample_rate, h.channels), (44100, 1));
        }
    }
}
