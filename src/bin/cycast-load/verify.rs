//! Frame integrity: the audio a listener receives should be MP3 frames back to back.
//!
//! Only headers are parsed (the next header must sit exactly one frame length after the last),
//! so checking costs a few operations per 400-byte frame. Where the chain breaks, the checker
//! slides byte by byte to the next valid header and counts one resync.

use cycast::ingest::mp3::parse_header;

/// Follows the frame chain of one listener's audio.
#[derive(Debug, Clone, Default)]
pub struct FrameChecker {
    /// Bytes of the current frame still to pass after its header.
    skip: usize,
    /// Header bytes gathered so far.
    header: [u8; 4],
    /// How many of `header` are filled.
    header_len: usize,
    /// Whether a first frame has been found: bytes before it are alignment, not a resync.
    synced: bool,
    /// Whether the chain is broken and a header is being searched for.
    lost: bool,
    /// Frames found.
    pub frames: u64,
    /// Times the chain broke after the first frame.
    pub resyncs: u64,
    /// Bytes skipped while searching, the initial alignment included.
    pub skipped: u64,
    /// Bitrate of the first frame, in kbps.
    pub first_kbps: Option<u32>,
}

impl FrameChecker {
    /// A checker that expects the stream to start anywhere (the first header found is the start).
    pub fn new() -> FrameChecker {
        FrameChecker::default()
    }

    /// Feeds the next audio bytes.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (4 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len < 4 {
                break;
            }
            match parse_header(&self.header) {
                Some(h) if h.frame_len >= 4 => {
                    self.frames += 1;
                    self.first_kbps.get_or_insert(h.bitrate_kbps);
                    self.skip = h.frame_len - 4;
                    self.header_len = 0;
                    self.synced = true;
                    self.lost = false;
                }
                _ => {
                    if self.synced && !self.lost {
                        self.resyncs += 1;
                    }
                    self.lost = true;
                    self.skipped += 1;
                    self.header.copy_within(1.., 0);
                    self.header_len = 3;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cycast::ingest::mp3::silence_frame;

    fn frames(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend_from_slice(&silence_frame(128, 44100, true));
        }
        out
    }

    #[test]
    fn clean_frames_in_any_pieces_have_no_resync() {
        let data = frames(50);
        for piece in [1, 2, 5, 417, 1000, 65536] {
            let mut c = FrameChecker::new();
            for p in data.chunks(piece) {
                c.feed(p);
            }
            assert_eq!(
                (c.frames, c.resyncs, c.skipped),
                (50, 0, 0),
                "piece {piece}"
            );
            assert_eq!(c.first_kbps, Some(128));
        }
    }

    #[test]
    fn garbage_between_frames_counts_one_resync_each() {
        let mut data = Vec::new();
        for _ in 0..3 {
            data.extend_from_slice(&frames(5));
            data.extend_from_slice(b"GARBAGE GARBAGE");
        }
        data.extend_from_slice(&frames(5));
        let mut c = FrameChecker::new();
        for p in data.chunks(100) {
            c.feed(p);
        }
        assert_eq!(c.frames, 20);
        assert_eq!(c.resyncs, 3);
        assert_eq!(c.skipped, 45);
    }

    #[test]
    fn a_mid_frame_start_is_alignment_not_a_resync() {
        let data = frames(10);
        let mut c = FrameChecker::new();
        c.feed(&data[200..]);
        assert_eq!(c.resyncs, 0);
        assert_eq!(c.frames, 9);
        assert!(c.skipped > 0);
    }
}
