//! The media playlist of a mount (RFC 8216 §4.3), rendered from a segment list snapshot.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat};

use super::segment::{Segment, SegmentList};

/// Name of a segment in its playlist (relative to the playlist's URL): the list's epoch and
/// the sequence number, unique across restarts.
pub fn segment_name(list: &SegmentList, segment: &Segment) -> String {
    format!(
        "{}-{}.{}",
        list.epoch,
        segment.sequence,
        segment.codec.extension()
    )
}

/// Parses a segment name back into (epoch, sequence, extension); `None` for anything else.
pub fn parse_segment_name(name: &str) -> Option<(i64, u64, &str)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let (epoch, sequence) = stem.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(epoch) || !digits(sequence) {
        return None;
    }
    Some((epoch.parse().ok()?, sequence.parse().ok()?, ext))
}

/// `EXT-X-TARGETDURATION`: the configured target, or more if a listed segment rounds above
/// it (a long last frame), since every `EXTINF` rounded must fit under it.
pub fn target_duration<'a>(target: u32, window: impl Iterator<Item = &'a Segment>) -> u64 {
    window
        .map(|s| s.seconds().round() as u64)
        .fold(target as u64, u64::max)
}

/// The playlist of `list`'s window, limited to segments whose audio starts at or after
/// `oldest` (what the ring still holds); `None` when no segment is left to list.
pub fn render(list: &SegmentList, oldest: u64) -> Option<String> {
    let window: Vec<&Segment> = list.window().filter(|s| s.start >= oldest).collect();
    let first = window.first()?;
    let mut out = String::with_capacity(256 + window.len() * 120);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
        target_duration(list.target_seconds, window.iter().copied()),
        first.sequence,
        // The first segment's own tag counts in the playlist, not in this number.
        first.discontinuity_sequence - u64::from(first.discontinuity),
    );
    for segment in window.iter() {
        if segment.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(date) = DateTime::from_timestamp_millis(segment.started_ms) {
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                date.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
        }
        let _ = write!(
            out,
            "#EXTINF:{:.6},\n{}\n",
            segment.seconds(),
            segment_name(list, segment)
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::hls::segment::Codec;

    fn segment(sequence: u64, samples: u64, discontinuity: bool, dseq: u64) -> Segment {
        Segment {
            sequence,
            start: sequence * 1000,
            end: sequence * 1000 + 1000,
            codec: Codec::Aac,
            samples,
            sample_rate: 44_100,
            discontinuity,
            discontinuity_sequence: dseq,
            started_ms: 1_796_000_000_000 + sequence as i64 * 4000,
            finished_ms: 0,
            tag: Arc::from(&[][..]),
            expires: None,
        }
    }

    fn list(segments: Vec<Segment>, window: usize) -> SegmentList {
        SegmentList {
            epoch: 1_796_000_000_123,
            window,
            target_seconds: 4,
            segments: segments.into(),
            clock: 0,
        }
    }

    #[test]
    fn playlist_lists_the_window_with_exact_durations() {
        let l = list(
            vec![
                segment(7, 173 * 1024, false, 2),
                segment(8, 173 * 1024, false, 2),
                segment(9, 173 * 1024, true, 3),
                segment(10, 172 * 1024, false, 3),
            ],
            3,
        );
        let text = render(&l, 0).unwrap();
        let expected = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:8\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n\
#EXT-X-PROGRAM-DATE-TIME:2026-11-30T00:53:52.000Z\n#EXTINF:4.017052,\n1796000000123-8.aac\n\
#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-11-30T00:53:56.000Z\n#EXTINF:4.017052,\n1796000000123-9.aac\n\
#EXT-X-PROGRAM-DATE-TIME:2026-11-30T00:54:00.000Z\n#EXTINF:3.993832,\n1796000000123-10.aac\n";
        assert_eq!(text, expected);
        // The EXTINF values sum to the audio in the window.
        let sum: f64 = text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("#EXTINF:")?
                    .strip_suffix(',')?
                    .parse::<f64>()
                    .ok()
            })
            .sum();
        assert!((sum - (173.0 + 173.0 + 172.0) * 1024.0 / 44_100.0).abs() < 3e-6);
    }

    #[test]
    fn a_discontinuity_on_the_first_listed_segment_is_counted_once() {
        let l = list(
            vec![segment(9, 173 * 1024, true, 3), segment(10, 1024, false, 3)],
            3,
        );
        let text = render(&l, 0).unwrap();
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n#EXT-X-DISCONTINUITY\n"));
        // Segments whose audio the ring no longer holds are not listed.
        let text = render(&l, 9500).unwrap();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-DISCONTINUITY-SEQUENCE:3\n"));
        assert!(render(&l, 20_000).is_none());
    }

    #[test]
    fn target_duration_covers_a_long_segment() {
        let l = list(vec![segment(1, 5 * 44_100, false, 0)], 3);
        assert!(render(&l, 0).unwrap().contains("#EXT-X-TARGETDURATION:5\n"));
    }

    #[test]
    fn segment_names_round_trip_and_junk_is_refused() {
        let l = list(vec![], 3);
        let s = segment(42, 1024, false, 0);
        let name = segment_name(&l, &s);
        assert_eq!(name, "1796000000123-42.aac");
        assert_eq!(
            parse_segment_name(&name),
            Some((1_796_000_000_123, 42, "aac"))
        );
        for bad in [
            "index.m3u8",
            "1-.mp3",
            "-1.mp3",
            "1-2",
            "a-1.mp3",
            "1-99999999999999999999.mp3",
            "1-+2.mp3",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }
}
