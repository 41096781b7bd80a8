//! The player model: what a real player's buffer would do with the bytes as they arrive.
//!
//! A player waits until `prebuffer` of audio is buffered, then plays at the stream's bitrate.
//! If the audio played catches up with the audio received, the buffer ran dry: an underrun,
//! after which the player buffers `prebuffer` again before resuming, as real players do.

use std::time::{Duration, Instant};

/// One listener's modelled playback buffer. Media time is counted in microseconds of audio.
#[derive(Debug, Clone)]
pub struct Player {
    /// Audio to buffer before playback starts or resumes, in microseconds.
    prebuffer_us: u64,
    /// Stream bitrate in kbps; 0 until known.
    kbps: u32,
    /// Audio bytes received so far.
    bytes: u64,
    /// Media position playback had reached when it last stopped (0 before the start).
    stopped_at_us: u64,
    /// While playing: the wall-clock instant and media position playback (re)started from.
    playing: Option<(Instant, u64)>,
    /// Times the buffer ran dry after playback had started.
    pub underruns: u32,
    /// When the current underrun began, to total the time spent rebuffering.
    dry_since: Option<Instant>,
    /// Total time spent rebuffering after underruns.
    pub rebuffer: Duration,
}

impl Player {
    /// A player that starts after `prebuffer` of audio.
    pub fn new(prebuffer: Duration) -> Player {
        Player {
            prebuffer_us: prebuffer.as_micros() as u64,
            kbps: 0,
            bytes: 0,
            stopped_at_us: 0,
            playing: None,
            underruns: 0,
            dry_since: None,
            rebuffer: Duration::ZERO,
        }
    }

    /// Sets the bitrate used to turn bytes into playing time. Until it is set, bytes are
    /// counted but playback does not start.
    pub fn set_bitrate(&mut self, kbps: u32) {
        self.kbps = kbps;
    }

    /// The bitrate in kbps, once known.
    pub fn bitrate(&self) -> Option<u32> {
        (self.kbps > 0).then_some(self.kbps)
    }

    /// Audio received so far, in microseconds at the bitrate.
    fn received_us(&self) -> u64 {
        (self.bytes * 8000)
            .checked_div(self.kbps as u64)
            .unwrap_or(0)
    }

    /// Detects an underrun at `now`: playback would have passed the end of the received audio.
    pub fn check(&mut self, now: Instant) {
        let Some((since, from_us)) = self.playing else {
            return;
        };
        let played = from_us + now.saturating_duration_since(since).as_micros() as u64;
        let received = self.received_us();
        if played > received {
            self.underruns += 1;
            self.stopped_at_us = received;
            self.playing = None;
            // The buffer ran dry when playback reached the end of the data, not at `now`.
            let dry_for = Duration::from_micros(played - received);
            self.dry_since = Some(now.checked_sub(dry_for).unwrap_or(now));
        }
    }

    /// `len` audio bytes arrived at `now`.
    pub fn on_audio(&mut self, now: Instant, len: usize) {
        self.check(now);
        self.bytes += len as u64;
        if self.playing.is_none()
            && self.kbps > 0
            && self.received_us() >= self.stopped_at_us + self.prebuffer_us
        {
            self.playing = Some((now, self.stopped_at_us));
            if let Some(dry) = self.dry_since.take() {
                self.rebuffer += now.saturating_duration_since(dry);
            }
        }
    }

    /// Ends the run at `now`: a buffer that is dry by now counts as an underrun.
    pub fn finish(&mut self, now: Instant) {
        self.check(now);
        if let Some(dry) = self.dry_since.take() {
            self.rebuffer += now.saturating_duration_since(dry);
        }
    }

    /// Whether playback has started at least once.
    pub fn started(&self) -> bool {
        self.playing.is_some() || self.stopped_at_us > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 128 kbps: 16,000 bytes per second of audio.
    const SECOND: usize = 16_000;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn steady_real_time_never_underruns() {
        let t0 = Instant::now();
        let mut p = Player::new(Duration::from_secs(1));
        p.set_bitrate(128);
        // 400 ms chunks exactly on time for 10 s.
        for i in 0..25 {
            p.on_audio(at(t0, i * 400), SECOND * 4 / 10);
        }
        p.finish(at(t0, 10_000));
        assert!(p.started());
        assert_eq!(p.underruns, 0);
    }

    #[test]
    fn a_gap_longer_than_the_buffer_underruns_once_and_rebuffers() {
        let t0 = Instant::now();
        let mut p = Player::new(Duration::from_secs(1));
        p.set_bitrate(128);
        // 2 s of audio in 100 ms pieces at real time: playback starts at ~0.9 s.
        for i in 0..20 {
            p.on_audio(at(t0, i * 100), SECOND / 10);
        }
        assert!(p.started());
        // Silence for 3 s, then real time again.
        for i in 0..20 {
            p.on_audio(at(t0, 5_000 + i * 100), SECOND / 10);
        }
        p.finish(at(t0, 7_000));
        assert_eq!(p.underruns, 1);
        // Dry from about 2.9 s until 1 s is buffered again at about 5.9 s.
        let ms = p.rebuffer.as_millis();
        assert!((2_800..=3_100).contains(&ms), "rebuffered {ms} ms");
    }

    #[test]
    fn a_burst_then_silence_runs_dry_at_finish() {
        let t0 = Instant::now();
        let mut p = Player::new(Duration::from_secs(1));
        p.set_bitrate(128);
        p.on_audio(t0, SECOND * 3);
        p.finish(at(t0, 2_500));
        assert_eq!(p.underruns, 0);
        p.finish(at(t0, 3_500));
        assert_eq!(p.underruns, 1);
    }

    #[test]
    fn nothing_plays_without_a_bitrate() {
        let t0 = Instant::now();
        let mut p = Player::new(Duration::from_millis(500));
        p.on_audio(t0, SECOND * 5);
        p.finish(at(t0, 60_000));
        assert!(!p.started());
        assert_eq!(p.underruns, 0);
    }
}
