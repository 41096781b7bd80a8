//! Dead-air detection cost: the ingest core decodes every frame of a live MP3 source
//! (minimp3) and sums its squared samples. Measures one second of 128 kb/s stereo audio
//! (the bundled demo track's frames), so the time reported is directly the fraction of a
//! core one such source costs (1 ms per second of audio = 0.1 %).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use cycast::config::SilenceSettings;
use cycast::ingest::mp3::Mp3Framer;
use cycast::ingest::silence::SilenceWatch;
use std::time::Duration;

/// Frames of the demo track (128 kb/s, 44.1 kHz stereo) with each one's duration.
fn frames() -> Vec<(Vec<u8>, u64)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/music/01-morning-tone.mp3");
    let bytes = std::fs::read(path).expect("demo track");
    let mut framer = Mp3Framer::new();
    framer.push(&bytes);
    framer.finish();
    let mut out = Vec::new();
    while let Some((header, frame)) = framer.next_frame() {
        out.push((frame.to_vec(), header.duration_micros()));
    }
    out
}

fn bench_silence(c: &mut Criterion) {
    let frames = frames();
    // 38.28 frames make a second at 44.1 kHz; 39 rounds it up.
    let second = &frames[..39];
    let settings = SilenceSettings {
        after: Duration::from_secs(15),
        threshold_db: -50.0,
    };
    let mut watch = SilenceWatch::new(settings);
    c.bench_function("silence/decode_and_measure_1s_128k_stereo", |b| {
        b.iter(|| {
            for (frame, micros) in second {
                black_box(watch.observe(black_box(frame), *micros));
            }
        })
    });
}

criterion_group!(benches, bench_silence);
criterion_main!(benches);
