//! ICY metadata interleaving: building a title block, and one listener's send of a chunk with
//! blocks spliced in (`writev` of ring bytes and the shared block) against a plain `write` of
//! the same audio. Sends go to a real loopback TCP connection whose other end a thread drains,
//! so the figures include the system call, as on the server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use cycast::icy::{metadata_block, Charset};
use cycast::shard::icy::{IcyCursor, TitleBlock};

/// About 400 ms of 128 kbps audio: one published chunk, so one send per listener.
const CHUNK: usize = 6400;
/// The default burst a new listener starts with.
const BURST: usize = 64 * 1024;
/// The default `metadata.icy_metaint`.
const METAINT: usize = 16000;

/// A connected loopback pair: the sending end, and a thread reading everything from the other.
struct Sink {
    socket: TcpStream,
    reader: Option<JoinHandle<u64>>,
}

impl Sink {
    fn new() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (socket, _) = listener.accept().expect("accept");
        socket.set_nodelay(true).expect("nodelay");
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                match (&client).read(&mut buf) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n as u64,
                }
            }
        });
        Sink {
            socket,
            reader: Some(reader),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Write);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Sends all of `audio` through `cursor` (the socket is blocking, so a short send only happens
/// at a signal; the loop covers it).
fn send_all(cursor: &mut IcyCursor, socket: &TcpStream, audio: &[u8], title: &TitleBlock) {
    let mut sent = 0;
    while sent < audio.len() {
        sent += cursor
            .send(socket, &audio[sent..], title)
            .expect("send to the draining reader");
    }
}

fn bench_blocks(c: &mut Criterion) {
    let mut group = c.benchmark_group("icy_block");
    group.throughput(Throughput::Elements(1));
    let typical = "Artist Name - A Track Title (Radio Edit)";
    let long = "日本語のタイトル ".repeat(300);
    group.bench_function("metadata_block_typical", |b| {
        b.iter(|| metadata_block(black_box(typical), Charset::Utf8))
    });
    group.bench_function("metadata_block_latin1", |b| {
        b.iter(|| metadata_block(black_box("Café del Mar – Énergie"), Charset::Latin1))
    });
    group.bench_function("metadata_block_truncated_4k", |b| {
        b.iter(|| metadata_block(black_box(&long), Charset::Utf8))
    });
    group.bench_function("title_block_new", |b| {
        b.iter(|| TitleBlock::new(black_box(typical), 7, Charset::Utf8))
    });
    group.finish();
}

fn bench_sends(c: &mut Criterion) {
    let audio: Vec<u8> = (0..BURST as u32).map(|i| (i % 251) as u8).collect();
    let title = TitleBlock::new("Artist Name - A Track Title (Radio Edit)", 1, Charset::Utf8);
    let mut group = c.benchmark_group("icy_send");
    for (label, len) in [("chunk_6400", CHUNK), ("burst_64k", BURST)] {
        let audio = &audio[..len];
        group.throughput(Throughput::Bytes(len as u64));

        group.bench_with_input(BenchmarkId::new("plain_write", label), audio, |b, audio| {
            let sink = Sink::new();
            b.iter(|| (&sink.socket).write_all(black_box(audio)).expect("write"));
        });

        for metaint in [METAINT, 8192, 1024] {
            group.bench_with_input(
                BenchmarkId::new(format!("interleaved_metaint_{metaint}"), label),
                audio,
                |b, audio| {
                    let sink = Sink::new();
                    let mut cursor = IcyCursor::new(metaint);
                    b.iter(|| send_all(&mut cursor, &sink.socket, black_box(audio), &title));
                },
            );
        }

        // A new title every send: the full block goes out each time instead of the one-byte
        // "unchanged" block.
        group.bench_with_input(
            BenchmarkId::new("interleaved_title_changes", label),
            audio,
            |b, audio| {
                let sink = Sink::new();
                let mut cursor = IcyCursor::new(METAINT);
                let titles = [
                    TitleBlock::new("First Artist - First Title", 1, Charset::Utf8),
                    TitleBlock::new("Second Artist - Second Title", 2, Charset::Utf8),
                ];
                let mut turn = 0usize;
                b.iter(|| {
                    turn += 1;
                    send_all(
                        &mut cursor,
                        &sink.socket,
                        black_box(audio),
                        &titles[turn % 2],
                    );
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_blocks, bench_sends);
criterion_main!(benches);
