//! Framing throughput: the framer sees every byte a source sends, so it must
//! stay far below the cost of the network path. Measures splitting 1 MiB of
//! 128 kbps MP3 frames delivered in 4 KiB socket-sized pieces.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use cycast::ingest::mp3::{silence_frame, Mp3Framer};

const TOTAL: usize = 1 << 20;
const PIECE: usize = 4096;

/// 1 MiB of 128 kbps / 44.1 kHz stereo frames with non-zero payloads and
/// occasional padding, like a real CBR stream.
fn stream() -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(TOTAL + 2048);
    let mut i = 0u32;
    while out.len() < TOTAL {
        let mut frame = silence_frame(128, 44100, true);
        // LAME pads roughly every other frame to hit exactly 128 kbps.
        if i & 1 == 0 {
            frame[2] |= 0x02;
            frame.push(0);
        }
        for b in &mut frame[4..] {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        out.extend_from_slice(&frame);
        i += 1;
    }
    out.truncate(TOTAL);
    out
}

fn bench_framing(c: &mut Criterion) {
    let data = stream();
    let mut group = c.benchmark_group("frames");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("mp3_1mib_4k_pieces", |b| {
        b.iter_batched_ref(
            Mp3Framer::new,
            |framer| {
                let mut frames = 0usize;
                let mut bytes = 0usize;
                for piece in data.chunks(PIECE) {
                    framer.push(black_box(piece));
                    while let Some((_, frame)) = framer.next_frame() {
                        frames += 1;
                        bytes += frame.len();
                    }
                }
                black_box((frames, bytes))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_framing);
criterion_main!(benches);
