//! The segment list of one mount: which byte ranges of the ring make each HLS segment, how
//! many samples they hold and when they start. Written only by the mount's feed on the ingest
//! core (which sees every frame), read by every shard; the list is small and replaced whole
//! once per segment, so readers never lock and never see a half-made entry.

use std::collections::VecDeque;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::id3;
use crate::config::hls::HlsConfig;

/// Codecs RFC 8216 packed audio carries that the server frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// MPEG audio frames, `.mp3` segments.
    Mp3,
    /// AAC in ADTS frames, `.aac` segments.
    Aac,
}

impl Codec {
    /// File extension of this codec's segments.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Mp3 => "mp3",
            Codec::Aac => "aac",
        }
    }

    /// Content-Type of this codec's segments.
    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Mp3 => "audio/mpeg",
            Codec::Aac => "audio/aac",
        }
    }
}

/// What a segment needs to know of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTiming {
    /// The frame's codec.
    pub codec: Codec,
    /// PCM samples per channel in the frame.
    pub samples: u32,
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// Channel count (a change is a discontinuity).
    pub channels: u8,
}

impl FrameTiming {
    /// Whether a decoder can go from `self` to `next` without being reset.
    fn continues_with(&self, next: &FrameTiming) -> bool {
        self.codec == next.codec
            && self.sample_rate == next.sample_rate
            && self.channels == next.channels
    }
}

/// One finished segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number.
    pub sequence: u64,
    /// Ring offset of the first frame (a chunk start).
    pub start: u64,
    /// Ring offset just past the last frame (a chunk end).
    pub end: u64,
    /// Codec of every frame in it.
    pub codec: Codec,
    /// Samples per channel in it.
    pub samples: u64,
    /// Sampling rate of every frame in it.
    pub sample_rate: u32,
    /// Whether an `EXT-X-DISCONTINUITY` goes before it.
    pub discontinuity: bool,
    /// Discontinuity tags up to and including its own.
    pub discontinuity_sequence: u64,
    /// Wall clock of its first sample, Unix milliseconds (`EXT-X-PROGRAM-DATE-TIME`).
    pub started_ms: i64,
    /// Wall clock when it was complete, Unix milliseconds (`Last-Modified`).
    pub finished_ms: i64,
    /// The ID3 tag sent before its audio (timestamp and title).
    pub tag: Arc<[u8]>,
    /// Stream clock (microseconds of audio in the list) from which it is no longer served;
    /// `None` while it is in the playlist window.
    pub expires: Option<u64>,
}

impl Segment {
    /// Its duration in microseconds.
    pub fn micros(&self) -> u64 {
        self.samples * 1_000_000 / self.sample_rate.max(1) as u64
    }

    /// Its exact duration in seconds, as `EXTINF` gives it.
    pub fn seconds(&self) -> f64 {
        self.samples as f64 / self.sample_rate.max(1) as f64
    }

    /// Response body length: tag plus audio.
    pub fn body_len(&self) -> u64 {
        self.tag.len() as u64 + (self.end - self.start)
    }
}

/// A snapshot of a mount's segments.
#[derive(Debug, Clone, Default)]
pub struct SegmentList {
    /// When the list began, Unix milliseconds: part of every segment name, so names never
    /// repeat across restarts or a mount created again.
    pub epoch: i64,
    /// Segments in the playlist.
    pub window: usize,
    /// `hls.segment_seconds` of the mount.
    pub target_seconds: u32,
    /// Retained segments, oldest first; the newest `window` are in the playlist.
    pub segments: VecDeque<Segment>,
    /// Microseconds of audio in every segment ever finished: the clock retention runs on.
    pub clock: u64,
}

impl SegmentList {
    /// The segments the playlist lists, oldest first.
    pub fn window(&self) -> impl Iterator<Item = &Segment> + Clone {
        self.segments
            .iter()
            .skip(self.segments.len().saturating_sub(self.window))
    }

    /// A segment that is still served (listed, or removed less than its retention ago).
    pub fn find(&self, sequence: u64) -> Option<&Segment> {
        let first = self.segments.front()?.sequence;
        self.segments.get(sequence.checked_sub(first)? as usize)
    }

    /// Adds a finished segment: the one it pushes out of the window stays for its own
    /// duration plus that of the playlist that held it (RFC 8216 §6.2.2), on the stream clock.
    fn push(&mut self, segment: Segment) {
        self.clock += segment.micros();
        self.segments.push_back(segment);
        let len = self.segments.len();
        if len > self.window {
            let playlist: u64 = self
                .segments
                .range(len - 1 - self.window..len - 1)
                .map(Segment::micros)
                .sum();
            let clock = self.clock;
            let leaving = &mut self.segments[len - 1 - self.window];
            leaving.expires = Some(clock + leaving.micros() + playlist);
        }
        while self
            .segments
            .front()
            .is_some_and(|s| s.expires.is_some_and(|e| e <= self.clock))
        {
            self.segments.pop_front();
        }
    }
}

/// A mount's segment list as the shards see it.
#[derive(Default)]
pub struct SegmentLog {
    /// The current snapshot, replaced whole by the writer.
    list: ArcSwap<SegmentList>,
}

impl SegmentLog {
    /// The current snapshot.
    pub fn load(&self) -> Arc<SegmentList> {
        self.list.load_full()
    }
}

/// The segment being filled.
struct OpenSegment {
    /// Ring offset of its first frame.
    start: u64,
    /// Parameters of its frames.
    timing: FrameTiming,
    /// Samples per channel so far.
    samples: u64,
    /// Whether a discontinuity goes before it.
    discontinuity: bool,
    /// Wall clock of its first frame, Unix milliseconds.
    started_ms: i64,
    /// Its tag, made when it opened.
    tag: Arc<[u8]>,
}

/// The only writer of a mount's [`SegmentLog`], kept by the mount's feed.
pub struct SegmentWriter {
    /// The mount's settings, fixed for the life of the list.
    settings: HlsConfig,
    /// The segment being filled.
    open: Option<OpenSegment>,
    /// Sequence number of the next segment.
    next_sequence: u64,
    /// Discontinuities so far.
    discontinuities: u64,
    /// The next segment starts after a break (unframed data, a gap).
    broken: bool,
    /// Timestamp at the last sample-rate change, 90 kHz ticks.
    ticks_base: u64,
    /// Samples since then.
    samples_since_base: u64,
    /// Sample rate since then.
    rate: u32,
    /// Wall clock of the end of the last segment, to notice a gap in the audio.
    last_finished_ms: Option<i64>,
    /// Wall clock the program dates count from: the first sample after the last break.
    date_anchor_ms: i64,
    /// Samples since `date_anchor_ms`, so each date is the anchor plus the audio before it
    /// (publishing runs ahead of playing by a varying lead, so its own times would jitter).
    date_samples: u64,
}

impl SegmentWriter {
    /// A writer with `settings`, whose list starts at `now_ms`.
    pub fn new(settings: HlsConfig, log: &SegmentLog, now_ms: i64) -> Self {
        log.list.store(Arc::new(SegmentList {
            epoch: now_ms,
            window: settings.window as usize,
            target_seconds: settings.segment_seconds,
            ..SegmentList::default()
        }));
        Self {
            settings,
            open: None,
            next_sequence: 0,
            discontinuities: 0,
            broken: false,
            ticks_base: 0,
            samples_since_base: 0,
            rate: 0,
            last_finished_ms: None,
            date_anchor_ms: now_ms,
            date_samples: 0,
        }
    }

    /// Whether segments are made at all.
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Whether the open segment must end before a frame like `next`: it is long enough, or
    /// the stream's parameters change.
    pub fn must_cut_before(&self, next: &FrameTiming) -> bool {
        self.open.as_ref().is_some_and(|open| {
            !open.timing.continues_with(next)
                || open.samples * 1000
                    >= self.settings.segment_seconds as u64 * 1000 * open.timing.sample_rate as u64
        })
    }

    /// Whether a segment is being filled.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Starts a segment at ring offset `start` with a frame like `first`, titled `title`.
    pub fn open(&mut self, start: u64, first: &FrameTiming, title: &str, now_ms: i64) {
        let params_changed = self.rate != 0 && self.rate != first.sample_rate;
        if self.rate != first.sample_rate {
            self.ticks_base += id3::ticks(self.samples_since_base, self.rate.max(1));
            self.samples_since_base = 0;
            self.rate = first.sample_rate;
        }
        let gap = self
            .last_finished_ms
            .is_some_and(|t| now_ms - t > self.settings.segment_seconds as i64 * 1000);
        let timestamp = self.ticks_base + id3::ticks(self.samples_since_base, self.rate);
        let discontinuity = self.broken || params_changed || gap;
        let started_ms = self.program_date(discontinuity, now_ms);
        self.open = Some(OpenSegment {
            start,
            timing: *first,
            samples: 0,
            discontinuity,
            started_ms,
            tag: id3::segment_tag(timestamp, title).into(),
        });
        self.broken = false;
    }

    /// Wall clock of the first sample of a segment opening at `now_ms`: the previous one's
    /// plus its audio while the stream runs on, so the dates step by exactly the `#EXTINF`s;
    /// `now_ms` after a break, or once the audio's clock has drifted a second from the wall's.
    fn program_date(&mut self, discontinuity: bool, now_ms: i64) -> i64 {
        let rate = self.rate.max(1) as u64;
        let expected = self.date_anchor_ms + (self.date_samples * 1000 / rate) as i64;
        if discontinuity || self.next_sequence == 0 || (expected - now_ms).abs() > 1000 {
            self.date_anchor_ms = now_ms;
            self.date_samples = 0;
            return now_ms;
        }
        expected
    }

    /// Counts one frame into the open segment.
    pub fn add(&mut self, timing: &FrameTiming) {
        if let Some(open) = self.open.as_mut() {
            if !open.timing.continues_with(timing) {
                // Callers cut before such a frame; one that slips in breaks the segment.
                return self.interrupt();
            }
            open.samples += timing.samples as u64;
            self.samples_since_base += timing.samples as u64;
            self.date_samples += timing.samples as u64;
        }
    }

    /// Ends the open segment at ring offset `end` (everything below it published) and puts it
    /// in the list.
    pub fn close(&mut self, end: u64, log: &SegmentLog, now_ms: i64) {
        let Some(open) = self.open.take() else {
            return;
        };
        if open.samples == 0 || end <= open.start {
            return;
        }
        // A discontinuity on a stream's first segment tells players nothing.
        let discontinuity = open.discontinuity && self.next_sequence > 0;
        self.discontinuities += u64::from(discontinuity);
        let segment = Segment {
            sequence: self.next_sequence,
            start: open.start,
            end,
            codec: open.timing.codec,
            samples: open.samples,
            sample_rate: open.timing.sample_rate,
            discontinuity,
            discontinuity_sequence: self.discontinuities,
            started_ms: open.started_ms,
            finished_ms: now_ms,
            tag: open.tag,
            expires: None,
        };
        self.next_sequence += 1;
        self.last_finished_ms = Some(now_ms);
        let mut next = SegmentList::clone(&log.list.load());
        next.push(segment);
        log.list.store(Arc::new(next));
    }

    /// Bytes the writer cannot time went into the ring: the open segment is dropped and the
    /// next one starts with a discontinuity.
    pub fn interrupt(&mut self) {
        if self.open.take().is_some() || self.next_sequence > 0 {
            self.broken = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MP3: FrameTiming = FrameTiming {
        codec: Codec::Mp3,
        samples: 1152,
        sample_rate: 44_100,
        channels: 2,
    };

    /// Feeds `frames` frames of `timing`, cutting like the feed does; each frame is 100 bytes.
    fn feed(
        w: &mut SegmentWriter,
        log: &SegmentLog,
        pos: &mut u64,
        timing: FrameTiming,
        frames: usize,
    ) {
        for _ in 0..frames {
            if w.must_cut_before(&timing) {
                w.close(*pos, log, 0);
            }
            if !w.is_open() {
                w.open(*pos, &timing, "A - B", 0);
            }
            w.add(&timing);
            *pos += 100;
        }
    }

    fn writer(window: u32) -> (SegmentWriter, SegmentLog) {
        let log = SegmentLog::default();
        let settings = HlsConfig {
            window,
            ..HlsConfig::default()
        };
        (SegmentWriter::new(settings, &log, 1_000), log)
    }

    fn timestamp(s: &Segment) -> u64 {
        u64::from_be_bytes(s.tag[65..73].try_into().unwrap())
    }

    #[test]
    fn segments_are_whole_frames_just_past_the_target_and_timestamps_sum_their_extinf() {
        let (mut w, log) = writer(6);
        let mut pos = 0;
        feed(&mut w, &log, &mut pos, MP3, 1000);
        let list = log.load();
        // 4 s at 44.1 kHz is 153.1 frames of 1152 samples: 154 frames per segment.
        let segs: Vec<_> = list.segments.iter().collect();
        assert_eq!(segs.len(), 6);
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.sequence, i as u64);
            assert_eq!(s.samples, 154 * 1152);
            assert_eq!(
                (s.start, s.end),
                (i as u64 * 15_400, (i as u64 + 1) * 15_400)
            );
            // Each timestamp is the cumulative sample count in 90 kHz ticks, rounded down.
            assert_eq!(timestamp(s), (i as u64 * 154 * 1152 * 90_000) / 44_100);
            assert!(!s.discontinuity);
        }
        let extinf: f64 = segs[..5].iter().map(|s| s.seconds()).sum();
        let ticks = timestamp(segs[5]) - timestamp(segs[0]);
        assert!(
            (extinf * 90_000.0 - ticks as f64).abs() < 1.0,
            "{extinf} vs {ticks}"
        );
        assert_eq!(list.epoch, 1_000);
    }

    #[test]
    fn program_dates_step_by_the_audio_and_start_again_after_a_drift() {
        let (mut w, log) = writer(20);
        let mut pos = 0;
        // Published ahead of time by a lead that varies between 0 and 300 ms.
        let mut frame = 0i64;
        let mut publish = |w: &mut SegmentWriter, frames: usize, late_ms: i64| {
            for _ in 0..frames {
                let now = 5_000 + frame * 1152 * 1000 / 44_100 - (frame * 37) % 300 + late_ms;
                if w.must_cut_before(&MP3) {
                    w.close(pos, &log, now);
                }
                if !w.is_open() {
                    w.open(pos, &MP3, "A - B", now);
                }
                w.add(&MP3);
                pos += 100;
                frame += 1;
            }
        };
        publish(&mut w, 154 * 4 + 1, 0);
        let list = log.load();
        let segs: Vec<_> = list.segments.iter().collect();
        assert_eq!(segs.len(), 4);
        assert_eq!(segs[0].started_ms, 5_000);
        for (i, s) in segs.iter().enumerate() {
            // The anchor plus the audio before it, to the millisecond.
            let audio_ms = (i as u64 * 154 * 1152 * 1000 / 44_100) as i64;
            assert_eq!(s.started_ms, 5_000 + audio_ms, "segment {i}");
        }
        // The wall clock moves 2 s away from the audio: the next date follows the wall clock.
        publish(&mut w, 154 * 2, 2_000);
        let list = log.load();
        let last = list.segments.iter().last().unwrap();
        assert_eq!(last.sequence, 5);
        let audio_ms = (5 * 154 * 1152 * 1000 / 44_100) as i64;
        assert!(
            last.started_ms >= 5_000 + audio_ms + 1_700,
            "{}",
            last.started_ms
        );
    }

    #[test]
    fn a_removed_segment_stays_for_its_duration_plus_the_playlist() {
        let (mut w, log) = writer(3);
        let mut pos = 0;
        // Segments 0..=3 finished: 0 left the window when 3 arrived.
        feed(&mut w, &log, &mut pos, MP3, 154 * 4 + 1);
        let list = log.load();
        assert_eq!(
            list.window().map(|s| s.sequence).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let seg = list.find(0).unwrap().micros();
        assert_eq!(list.find(0).unwrap().expires, Some(4 * seg + seg + 3 * seg));
        // It is served until the clock reaches 8 segments: it goes when segment 7 is done.
        feed(&mut w, &log, &mut pos, MP3, 154 * 3);
        assert!(
            log.load().find(0).is_some(),
            "gone before its retention ended"
        );
        feed(&mut w, &log, &mut pos, MP3, 154);
        let list = log.load();
        assert!(list.find(0).is_none());
        assert_eq!(list.segments.front().unwrap().sequence, 1);
        assert_eq!(list.window().count(), 3);
        assert!(list.find(99).is_none());
    }

    #[test]
    fn parameter_changes_and_breaks_start_a_discontinuity() {
        let (mut w, log) = writer(10);
        let mut pos = 0;
        feed(&mut w, &log, &mut pos, MP3, 200);
        // A 48 kHz source: the 44.1 kHz segment ends early and the new one is flagged.
        let at48 = FrameTiming {
            sample_rate: 48_000,
            ..MP3
        };
        feed(&mut w, &log, &mut pos, at48, 200);
        w.interrupt();
        feed(&mut w, &log, &mut pos, at48, 200);
        let list = log.load();
        let flags: Vec<_> = list
            .segments
            .iter()
            .map(|s| {
                (
                    s.sequence,
                    s.discontinuity,
                    s.discontinuity_sequence,
                    s.sample_rate,
                )
            })
            .collect();
        assert_eq!(
            flags,
            [
                (0, false, 0, 44_100),
                (1, false, 0, 44_100),
                (2, true, 1, 48_000),
                // 167 frames make 4 s at 48 kHz; the break drops the unfinished one.
                (3, true, 2, 48_000),
            ]
        );
        let segs = &list.segments;
        assert_eq!(segs[1].samples, (200 - 154) * 1152);
        // Timestamps go on across the rate change: 200 frames at 44.1 kHz, then at 48 kHz.
        let at_change = 200 * 1152 * 90_000 / 44_100;
        assert_eq!(timestamp(&segs[2]), at_change);
        assert_eq!(
            timestamp(&segs[3]),
            at_change + 200 * 1152 * 90_000 / 48_000,
            "the dropped partial segment still counts"
        );
        // Another codec also cuts.
        let aac = FrameTiming {
            codec: Codec::Aac,
            samples: 1024,
            ..at48
        };
        assert!(w.must_cut_before(&aac));
    }
}
