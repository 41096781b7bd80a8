#![no_main]
//! The frame splitter on arbitrary bytes arriving in arbitrary pieces: only whole, valid
//! frames that were in the input come out, nothing is lost from the accounting, and (when the
//! caller drains after every push, as ingest does) the split points change nothing.

use cycast::ingest::frames::{parse_header, tag_title, FrameHeader, Mp3Framer};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Out {
    frames: Vec<Vec<u8>>,
    skipped: u64,
    resyncs: u64,
}

fn take(framer: &mut Mp3Framer, frames: &mut Vec<Vec<u8>>) {
    while let Some((h, data)) = framer.next_frame() {
        check_frame(&h, data);
        frames.push(data.to_vec());
    }
}

fn check_frame(h: &FrameHeader, data: &[u8]) {
    assert_eq!(
        data.len(),
        h.frame_len,
        "frame length differs from its header"
    );
    assert_eq!(
        parse_header(data).as_ref(),
        Some(h),
        "returned frame does not parse"
    );
}

fn run(stream: &[u8], sizes: &[usize], drain_each_push: bool) -> Out {
    let mut framer = Mp3Framer::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(rest.len());
        let n = n.clamp(1, rest.len());
        framer.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
        if drain_each_push {
            take(&mut framer, &mut frames);
        }
    }
    // An empty push is legal and must change nothing.
    framer.push(&[]);
    take(&mut framer, &mut frames);
    framer.finish();
    take(&mut framer, &mut frames);
    assert!(
        framer.next_frame().is_none(),
        "a frame appeared after the end"
    );
    Out {
        frames,
        skipped: framer.skipped_bytes(),
        resyncs: framer.resyncs(),
    }
}

/// Each frame occurs in the input, in order and without overlapping the previous one.
fn assert_in_order_substrings(stream: &[u8], frames: &[Vec<u8>]) {
    let mut from = 0;
    for (k, f) in frames.iter().enumerate() {
        let at = stream[from..]
            .windows(f.len())
            .position(|w| w == &f[..])
            .unwrap_or_else(|| {
                panic!(
                    "frame {k} ({} bytes) is not in the input after {from}",
                    f.len()
                )
            });
        from += at + f.len();
    }
}

fuzz_target!(|data: &[u8]| {
    // Layout: mode byte, then (mode & 7) piece sizes, then the stream.
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let count = (mode & 7) as usize;
    if data.len() < count {
        return;
    }
    let (sizes, stream) = data.split_at(count);
    // Small pieces (down to one byte) are where resumption bugs live; bit 6 scales them up.
    let scale = if mode & 0x40 != 0 { 64 } else { 1 };
    let sizes: Vec<usize> = sizes.iter().map(|&s| s as usize * scale + 1).collect();
    let drain_each_push = mode & 0x80 == 0;

    let _ = tag_title(stream);

    let out = run(stream, &sizes, drain_each_push);
    assert_in_order_substrings(stream, &out.frames);
    let emitted: u64 = out.frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!(
        emitted + out.skipped,
        stream.len() as u64,
        "emitted + skipped bytes differ from the input length"
    );

    if drain_each_push {
        let whole = run(stream, &[], true);
        assert_eq!(
            out, whole,
            "the result depends on where the input was split"
        );
    }
});
