//! Real-time pacing for audio the server produces itself (playlist files, silence).
//!
//! Every frame gets an absolute deadline: the pacing origin plus the audio played before it,
//! counted in samples per sample rate rather than summed per-frame microseconds (a 44.1 kHz
//! MP3 frame lasts 26 122.45 µs; truncating that loses 0.6 s over ten hours). A late wake-up
//! therefore never accumulates: the next deadline is computed from the origin, not from when
//! the previous frame went out.
//!
//! The clock is passed in (`now` arguments) so tests can simulate hours in milliseconds.

use std::time::{Duration, Instant};

/// Decides when the next frame may be handed to the mount's feed.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// When audio time zero was (or would have been) on air.
    origin: Instant,
    /// Audio before the current sample-rate run, in nanoseconds (exact to 1 ns per run).
    base_nanos: u64,
    /// Sample rate of the current run; 0 before the first frame.
    rate: u32,
    /// Samples per channel played in the current run.
    samples: u64,
    /// How far ahead of real time frames are released, so listeners always have the next
    /// chunk before the previous one has finished playing.
    lead: Duration,
    /// How far the released audio may fall behind real time before the schedule restarts from
    /// now instead of catching up in a burst (the process was stopped or the thread stalled).
    max_lag: Duration,
}

impl Pacer {
    /// A pacer whose audio starts now, releasing frames `lead` early.
    pub fn new(now: Instant, lead: Duration, max_lag: Duration) -> Self {
        Self {
            origin: now,
            base_nanos: 0,
            rate: 0,
            samples: 0,
            lead,
            max_lag,
        }
    }

    /// Starts the schedule over at `now` (after a live source leaves: its backlog is not owed).
    pub fn restart(&mut self, now: Instant) {
        self.origin = now;
        self.base_nanos = 0;
        self.rate = 0;
        self.samples = 0;
    }

    /// Audio released since the origin.
    pub fn played(&self) -> Duration {
        Duration::from_nanos(self.played_nanos())
    }

    fn played_nanos(&self) -> u64 {
        if self.rate == 0 {
            return self.base_nanos;
        }
        self.base_nanos + (self.samples as u128 * 1_000_000_000 / self.rate as u128) as u64
    }

    /// When the next frame is due: its start time minus the lead.
    pub fn deadline(&self) -> Instant {
        (self.origin + self.played())
            .checked_sub(self.lead)
            .unwrap_or(self.origin)
    }

    /// How long to wait before the next frame may go out; zero when it is due. Restarts the
    /// schedule when the audio released so far ends more than `max_lag` in the past.
    pub fn wait(&mut self, now: Instant) -> Duration {
        let on_air = self.origin + self.played();
        let lag = now.saturating_duration_since(on_air);
        if lag > self.max_lag {
            tracing::debug!(lag_ms = lag.as_millis() as u64, "pacing restarted");
            self.restart(now);
            return Duration::ZERO;
        }
        self.deadline().saturating_duration_since(now)
    }

    /// Records one released frame of `samples` samples per channel at `sample_rate`.
    pub fn advance(&mut self, samples: u32, sample_rate: u32) {
        if sample_rate != self.rate {
            self.base_nanos = self.played_nanos();
            self.rate = sample_rate;
            self.samples = 0;
        }
        self.samples += samples as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAD: Duration = Duration::from_millis(600);
    const MAX_LAG: Duration = Duration::from_secs(2);

    /// Small deterministic generator for simulated timer lateness.
    fn jitter(state: &mut u64) -> Duration {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        // Timers fire up to 4 ms late, and now and then 150 ms late (a busy core).
        let us = if *state % 1000 == 0 {
            150_000
        } else {
            *state % 4_000
        };
        Duration::from_micros(us)
    }

    /// Drives the pacer like the playlist loop does, with a clock that only moves when the
    /// loop sleeps (and always oversleeps a little). Returns the simulated time when the frame
    /// after the last one would be released, and the exact audio time released.
    fn simulate(start: Instant, hours: u64, rates: &[u32]) -> (Instant, f64, Pacer) {
        let mut pacer = Pacer::new(start, LEAD, MAX_LAG);
        let mut now = start;
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut exact = 0f64;
        let total = Duration::from_secs(hours * 3600).as_secs_f64();
        // Tracks of about three minutes, alternating sample rates.
        let mut track = 0usize;
        while exact < total {
            let rate = rates[track % rates.len()];
            let frames_per_track = 180 * rate / 1152;
            for _ in 0..frames_per_track {
                let wait = pacer.wait(now);
                if !wait.is_zero() {
                    now += wait + jitter(&mut rng);
                }
                pacer.advance(1152, rate);
                exact += 1152.0 / rate as f64;
            }
            track += 1;
        }
        let wait = pacer.wait(now);
        now += wait;
        (now, exact, pacer)
    }

    #[test]
    fn no_drift_over_ten_hours() {
        let start = Instant::now();
        let (end, exact, pacer) = simulate(start, 10, &[44100, 48000, 32000]);
        // The release time of the next frame is its audio start minus the lead.
        let expected = exact - LEAD.as_secs_f64();
        let actual = end.duration_since(start).as_secs_f64();
        let drift = (actual - expected).abs();
        assert!(
            drift < 0.050,
            "drift {drift:.6} s over {exact:.0} s of audio"
        );
        // The books themselves are exact: within a microsecond per sample-rate change.
        let books = (pacer.played().as_secs_f64() - exact).abs();
        assert!(books < 0.001, "accounting error {books:.9} s");
        // Summing truncated per-frame microseconds, as a naive loop would, drifts far more.
        let frames = exact * 44100.0 / 1152.0;
        let naive_loss = frames * (1152.0 * 1e6 / 44100.0 - (1152u64 * 1_000_000 / 44100) as f64);
        assert!(naive_loss / 1e6 > 0.5, "the test would not notice drift");
    }

    #[test]
    fn releases_lead_at_once_then_real_time() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, LEAD, MAX_LAG);
        let mut released = 0;
        while pacer.wait(start).is_zero() {
            pacer.advance(1152, 44100);
            released += 1;
        }
        // 600 ms of lead is 23 frames of 26.1 ms (the 24th starts after the lead).
        assert_eq!(released, 23);
        let wait = pacer.wait(start);
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(27),
            "{wait:?}"
        );
    }

    #[test]
    fn restart_forgets_backlog() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, LEAD, MAX_LAG);
        for _ in 0..100 {
            pacer.advance(1152, 44100);
        }
        let later = start + Duration::from_secs(60);
        pacer.restart(later);
        assert_eq!(pacer.played(), Duration::ZERO);
        assert!(pacer.wait(later).is_zero());
        pacer.advance(1152, 44100);
        assert_eq!(pacer.deadline() + LEAD, later + pacer.played());
    }

    #[test]
    fn a_long_stall_restarts_instead_of_bursting() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, LEAD, MAX_LAG);
        pacer.advance(1152, 44100);
        let stalled = start + Duration::from_secs(30);
        assert!(pacer.wait(stalled).is_zero());
        assert_eq!(pacer.played(), Duration::ZERO);
        // A short stall is caught up frame by frame instead.
        pacer.advance(1152, 44100);
        let late = stalled + Duration::from_secs(1);
        assert!(pacer.wait(late).is_zero());
        assert!(pacer.played() > Duration::ZERO);
    }
}
