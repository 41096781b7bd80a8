//! The ID3v2.4 tag at the start of every packed-audio segment: the PRIV frame
//! `com.apple.streaming.transportStreamTimestamp` (RFC 8216 §3.4) with the 90 kHz timestamp of
//! the segment's first sample, and `TIT2`/`TPE1` so players show what is playing.

/// Owner of the PRIV frame players read the segment timestamp from.
const TIMESTAMP_OWNER: &[u8] = b"com.apple.streaming.transportStreamTimestamp";

/// The MPEG-2 timestamp is 33 bits wide; it wraps about every 26.5 hours.
pub const TIMESTAMP_MASK: u64 = 0x1_FFFF_FFFF;

/// Longest title text carried, in bytes, so the tag stays small whatever a source sends.
const MAX_TEXT: usize = 1024;

/// 90 kHz ticks of `samples` samples at `sample_rate`, rounded down, from the cumulative count
/// (never as a sum of rounded per-frame steps, which drifts).
pub fn ticks(samples: u64, sample_rate: u32) -> u64 {
    (samples as u128 * 90_000 / sample_rate.max(1) as u128) as u64
}

/// The tag for a segment whose first sample is at `timestamp` (90 kHz ticks, any width:
/// it is masked to 33 bits here) and whose title is `title` (`Artist - Title`, or empty).
pub fn segment_tag(timestamp: u64, title: &str) -> Vec<u8> {
    let mut frames = Vec::with_capacity(64 + title.len() + 24);
    let mut payload = Vec::with_capacity(TIMESTAMP_OWNER.len() + 9);
    payload.extend_from_slice(TIMESTAMP_OWNER);
    payload.push(0);
    payload.extend_from_slice(&(timestamp & TIMESTAMP_MASK).to_be_bytes());
    push_frame(&mut frames, b"PRIV", &payload);
    let (artist, song) = split_title(title);
    if !song.is_empty() {
        push_text_frame(&mut frames, b"TIT2", song);
    }
    if !artist.is_empty() {
        push_text_frame(&mut frames, b"TPE1", artist);
    }
    let mut tag = Vec::with_capacity(10 + frames.len());
    tag.extend_from_slice(b"ID3\x04\x00\x00");
    tag.extend_from_slice(&syncsafe(frames.len() as u32));
    tag.extend_from_slice(&frames);
    tag
}

/// `Artist - Title` split at the first ` - `; a title without one is all title.
fn split_title(title: &str) -> (&str, &str) {
    match title.split_once(" - ") {
        Some((artist, song)) => (artist.trim(), song.trim()),
        None => ("", title.trim()),
    }
}

/// A text frame, UTF-8 (encoding byte 3), cut to [`MAX_TEXT`] bytes on a character boundary.
fn push_text_frame(out: &mut Vec<u8>, id: &[u8; 4], text: &str) {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(end + 1);
    payload.push(3);
    payload.extend_from_slice(&text.as_bytes()[..end]);
    push_frame(out, id, &payload);
}

/// One ID3v2.4 frame: id, syncsafe size, no flags, payload.
fn push_frame(out: &mut Vec<u8>, id: &[u8; 4], payload: &[u8]) {
    out.extend_from_slice(id);
    out.extend_from_slice(&syncsafe(payload.len() as u32));
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

/// A size as four 7-bit bytes (ID3v2.4 sizes; the tag stays far below 2^28).
fn syncsafe(n: u32) -> [u8; 4] {
    [
        (n >> 21) as u8 & 0x7f,
        (n >> 14) as u8 & 0x7f,
        (n >> 7) as u8 & 0x7f,
        n as u8 & 0x7f,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 73-byte tag written out by hand from the packed-audio layout.
    fn hand_made(timestamp_bytes: [u8; 8]) -> Vec<u8> {
        let mut t = vec![0x49, 0x44, 0x33, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3F];
        t.extend_from_slice(&[0x50, 0x52, 0x49, 0x56, 0x00, 0x00, 0x00, 0x35, 0x00, 0x00]);
        t.extend_from_slice(b"com.apple.streaming.transportStreamTimestamp");
        t.push(0x00);
        t.extend_from_slice(&timestamp_bytes);
        t
    }

    #[test]
    fn priv_tag_matches_the_hand_computed_bytes() {
        // 10 s = 900,000 ticks = 0xDBBA0.
        let tag = segment_tag(900_000, "");
        assert_eq!(tag.len(), 73);
        assert_eq!(tag, hand_made([0, 0, 0, 0, 0, 0x0D, 0xBB, 0xA0]));
    }

    #[test]
    fn timestamp_keeps_bit_32_and_wraps_at_2_pow_33() {
        let tag = segment_tag((1 << 32) + 5, "");
        assert_eq!(tag, hand_made([0, 0, 0, 1, 0, 0, 0, 5]));
        // 2^33 + 7 wraps to 7; all-ones stays all 33 bits.
        assert_eq!(
            segment_tag((1 << 33) + 7, ""),
            hand_made([0, 0, 0, 0, 0, 0, 0, 7])
        );
        assert_eq!(
            segment_tag(u64::MAX, ""),
            hand_made([0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF])
        );
    }

    #[test]
    fn ticks_come_from_the_cumulative_sample_count() {
        // One AAC frame at 44.1 kHz is 2089.795... ticks; a million frames must not drift.
        assert_eq!(ticks(1024, 44_100), 2089);
        assert_eq!(ticks(1024 * 1_000_000, 44_100), 2_089_795_918);
        assert_eq!(ticks(44_100 * 10, 44_100), 900_000);
    }

    #[test]
    fn title_frames_follow_the_priv_frame() {
        let tag = segment_tag(0, "Artist - Sång");
        // PRIV (63) + TIT2 (10 + 1 + 5) + TPE1 (10 + 1 + 6).
        assert_eq!(&tag[6..10], &[0, 0, 0, 63 + 16 + 17]);
        assert_eq!(&tag[73..77], b"TIT2");
        assert_eq!(&tag[77..84], &[0, 0, 0, 6, 0, 0, 3]);
        assert_eq!(&tag[84..89], "Sång".as_bytes());
        assert_eq!(&tag[89..93], b"TPE1");
        assert_eq!(&tag[100..106], b"Artist");
        assert_eq!(tag.len(), 106);
        // A title without a separator is all title; an oversized one is cut on a char boundary.
        let long = "é".repeat(600);
        let tag = segment_tag(0, &long);
        assert_eq!(&tag[73..77], b"TIT2");
        assert_eq!(tag.len(), 73 + 10 + 1 + 1024);
        assert_eq!(&tag[77..81], &[0, 0, 0x08, 0x01], "syncsafe 1025");
    }
}
