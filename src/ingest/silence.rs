//! Dead-air detection for live MP3 sources: a DJ whose microphone died sends well-formed
//! frames of silence, which framing alone cannot tell from a programme. Each frame the
//! framer cuts is decoded (minimp3, through [`super::sys`]) and its level measured as the RMS
//! of its samples; a source quieter than `silence_db` for `silence_seconds` of audio is
//! reported silent, and one louder than that again for [`SOUND_TO_RETURN`] is reported back.
//! What the mount does then (playlist or fallback mount, the source kept connected) is the
//! source session's business ([`super::source`]).
//!
//! Cost: one decode per frame, into a buffer allocated with the detector, and a sum of squares;
//! no logarithm per frame (the threshold is turned into a mean square once). Time is counted in
//! audio (frame durations), not wall clock, so a source that sends in bursts is judged by what
//! it sent.

use std::time::Duration;

use super::sys::Mp3Decoder;
use crate::config::SilenceSettings;

/// Audio above the threshold a silent source must send, without a silent frame in between,
/// before it goes back on air: long enough that a click or a cough does not bring dead air
/// back, short enough that a DJ is heard again within a breath. That first second of
/// returning sound is not aired: the fallback is on air while it is judged.
pub const SOUND_TO_RETURN: Duration = Duration::from_secs(1);

/// A change of state, reported with the frame that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// The source has been silent for the configured time.
    Silent,
    /// A silent source has sent sound for [`SOUND_TO_RETURN`].
    Sound,
}

/// The dead-air detector of one live MP3 source.
pub struct SilenceWatch {
    /// Decodes the source's frames in order.
    decoder: Mp3Decoder,
    /// Settings in force.
    settings: SilenceSettings,
    /// Mean square of 16-bit samples below which a frame is silent (the threshold in dBFS,
    /// converted once).
    quiet_below: f64,
    /// Audio time of the silent frames in a row so far, in microseconds.
    quiet_micros: u64,
    /// While silent: audio time of the loud frames in a row so far, in microseconds.
    loud_micros: u64,
    /// The source is reported silent.
    silent: bool,
}

impl SilenceWatch {
    /// A detector for a source that has just connected (and is presumed audible).
    pub fn new(settings: SilenceSettings) -> Self {
        Self {
            decoder: Mp3Decoder::new(),
            quiet_below: mean_square_at(settings.threshold_db),
            settings,
            quiet_micros: 0,
            loud_micros: 0,
            silent: false,
        }
    }

    /// Takes up settings changed by a reload; the silence measured so far still counts.
    pub fn reconfigure(&mut self, settings: SilenceSettings) {
        self.quiet_below = mean_square_at(settings.threshold_db);
        self.settings = settings;
    }

    /// Whether the source is reported silent.
    pub fn is_silent(&self) -> bool {
        self.silent
    }

    /// Decodes the next frame of the stream (`micros` long) and measures it; a switch when
    /// this frame changes the state. A frame that decodes to nothing (the decoder syncing)
    /// changes nothing.
    pub fn observe(&mut self, frame: &[u8], micros: u64) -> Option<Switch> {
        let samples = self.decoder.decode(frame);
        if samples.is_empty() {
            return None;
        }
        let quiet = mean_square(samples) < self.quiet_below;
        self.step(quiet, micros)
    }

    /// Advances the state by one measured frame.
    fn step(&mut self, quiet: bool, micros: u64) -> Option<Switch> {
        if quiet {
            self.loud_micros = 0;
            self.quiet_micros = self.quiet_micros.saturating_add(micros);
            let long_enough = self.quiet_micros >= duration_micros(self.settings.after);
            if !self.silent && long_enough {
                self.silent = true;
                return Some(Switch::Silent);
            }
        } else {
            self.quiet_micros = 0;
            if self.silent {
                self.loud_micros = self.loud_micros.saturating_add(micros);
                if self.loud_micros >= duration_micros(SOUND_TO_RETURN) {
                    self.silent = false;
                    self.loud_micros = 0;
                    return Some(Switch::Sound);
                }
            }
        }
        None
    }
}

/// `d` in whole microseconds, saturating.
fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Mean square of 16-bit samples at `db` dBFS RMS (0 dBFS: a full-scale square wave).
fn mean_square_at(db: f64) -> f64 {
    let amplitude = 32768.0 * 10f64.powf(db / 20.0);
    amplitude * amplitude
}

/// Mean square of `samples` (all channels together).
fn mean_square(samples: &[i16]) -> f64 {
    // At most 2304 squares of at most 2^30: far from overflowing.
    let sum: i64 = samples.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
    sum as f64 / samples.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::mp3::silence_frame;

    /// One 128 kbps 44.1 kHz frame: 26122 µs.
    const FRAME_MICROS: u64 = 26_122;

    fn settings(after_ms: u64) -> SilenceSettings {
        SilenceSettings {
            after: Duration::from_millis(after_ms),
            threshold_db: -50.0,
        }
    }

    #[test]
    fn silence_must_last_and_sound_must_last_to_switch() {
        let mut watch = SilenceWatch::new(settings(2000));
        // 76 frames are 1.985 s: not yet.
        for _ in 0..76 {
            assert_eq!(watch.step(true, FRAME_MICROS), None);
        }
        // One loud frame starts the count over.
        assert_eq!(watch.step(false, FRAME_MICROS), None);
        for _ in 0..76 {
            assert_eq!(watch.step(true, FRAME_MICROS), None);
        }
        assert_eq!(watch.step(true, FRAME_MICROS), Some(Switch::Silent));
        assert!(watch.is_silent());
        // Staying silent reports nothing more.
        assert_eq!(watch.step(true, FRAME_MICROS), None);
        // A click (a few loud frames) does not bring the source back.
        for _ in 0..10 {
            assert_eq!(watch.step(false, FRAME_MICROS), None);
        }
        assert_eq!(watch.step(true, FRAME_MICROS), None);
        // A second of sound does: 38 frames are 0.993 s, the 39th crosses.
        for _ in 0..38 {
            assert_eq!(watch.step(false, FRAME_MICROS), None);
        }
        assert_eq!(watch.step(false, FRAME_MICROS), Some(Switch::Sound));
        assert!(!watch.is_silent());
    }

    #[test]
    fn digital_silence_decodes_below_any_threshold() {
        let frame = silence_frame(128, 44100, true);
        let mut watch = SilenceWatch::new(settings(100));
        let switches: Vec<_> = (0..10)
            .filter_map(|_| watch.observe(&frame, FRAME_MICROS))
            .collect();
        assert_eq!(switches, [Switch::Silent]);
    }

    #[test]
    fn undecodable_frames_change_nothing() {
        let mut watch = SilenceWatch::new(settings(100));
        for _ in 0..20 {
            assert_eq!(watch.observe(&[0xFF, 0xFB, 0x90], FRAME_MICROS), None);
            assert_eq!(watch.observe(b"not audio at all", FRAME_MICROS), None);
        }
        assert!(!watch.is_silent());
    }

    #[test]
    fn threshold_is_a_mean_square() {
        // A full-scale square wave is 0 dBFS; -6.02 dB halves the amplitude.
        assert!((mean_square_at(0.0) - 32768.0 * 32768.0).abs() < 1.0);
        assert!((mean_square_at(-6.0206) / mean_square_at(0.0) - 0.25).abs() < 1e-4);
        assert_eq!(mean_square(&[100, -100, 100, -100]), 10_000.0);
        // -50 dBFS is an amplitude of about 104 of 32768.
        assert!(mean_square(&[103; 8]) < mean_square_at(-50.0));
        assert!(mean_square(&[105; 8]) > mean_square_at(-50.0));
    }
}
