//! The shared ring's hot paths: the ingest core publishes a chunk, every listener's send copies
//! a chunk out at the live edge, and every new listener asks where to join.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use cycast::ring::Ring;

/// A typical chunk: about 400 ms at 128 kbps.
const CHUNK: usize = 6 * 1024;
/// A ring like a mount's default one.
const CAPACITY: usize = 4 * 1024 * 1024;

fn bench_ring(c: &mut Criterion) {
    let chunk = vec![0x5Au8; CHUNK];
    let mut group = c.benchmark_group("ring");
    group.throughput(Throughput::Bytes(CHUNK as u64));

    group.bench_function("publish_6k", |b| {
        let (_ring, mut writer) = Ring::new(CAPACITY).expect("ring");
        b.iter(|| writer.publish(black_box(&chunk)));
    });

    group.bench_function("read_6k_at_edge", |b| {
        let (ring, mut writer) = Ring::new(CAPACITY).expect("ring");
        for _ in 0..CAPACITY / CHUNK {
            writer.publish(&chunk);
        }
        let from = ring.committed() - CHUNK as u64;
        let mut dst = vec![0u8; CHUNK];
        b.iter(|| ring.read(black_box(from), &mut dst).expect("not lapped"));
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("join_position_64k_burst", |b| {
        let (ring, mut writer) = Ring::new(CAPACITY).expect("ring");
        for _ in 0..CAPACITY / CHUNK {
            writer.publish(&chunk);
        }
        b.iter(|| ring.join_position(black_box(64 * 1024)));
    });
    group.finish();
}

criterion_group!(benches, bench_ring);
criterion_main!(benches);
